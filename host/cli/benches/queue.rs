//! The digits pipeline through NATS JetStream next to the same pipeline over
//! HTTP, in one run: closed loops of 1 and 2 clients (each sends a request
//! and waits for its answer), throughput and end-to-end latency p50/p99.
//!
//!   cargo bench -p weir --bench queue [-- SECONDS]
//!
//! Needs `nats-server` (scripts/setup.sh installs it) and the guests built by
//! weir-tests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures_util::StreamExt;
use tokio::sync::oneshot;
use weir_tests::services::TestNats;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The digits example with absolute paths, a NATS consumer of `concurrency`.
fn manifest(dir: &Path, url: &str, concurrency: usize) -> PathBuf {
    let root = root();
    let text = std::fs::read_to_string(root.join("examples/digits/weir.toml"))
        .unwrap()
        .replace("\"../../target/", &format!("\"{}/target/", root.display()))
        .replace("\"../models/", &format!("\"{}/examples/models/", root.display()));
    let text = format!(
        "{text}\n[pipelines.digits.triggers.nats]\nstream = \"DIGITS\"\nsubject = \"infer.digits\"\ndurable = \"bench\"\nresults = \"results.digits\"\nconcurrency = {concurrency}\n\n[triggers.nats]\nurl = \"{url}\"\n"
    )
    .replace("[triggers.http]\nlisten = \"127.0.0.1:8080\"", "");
    let path = dir.join(format!("weir-{concurrency}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

struct Serve(Child, String);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(manifest: &Path) -> Serve {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["serve", manifest.to_str().unwrap(), "--listen", "127.0.0.1:0", "--no-auth"])
        .env("WEIR_LOG", "error")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line =
        lines.by_ref().map_while(Result::ok).find(|l| l.starts_with("weir: serving")).expect("weir serve started");
    std::thread::spawn(move || lines.for_each(drop));
    let base = format!("http://{}", line.split("http://").nth(1).unwrap().trim_end_matches("/v2"));
    Serve(child, base)
}

/// The example request, read once.
fn template() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(root().join("examples/digits/request.json")).unwrap()).unwrap()
}

/// The request with id `q{id}` (built outside the timed region: both loops
/// time only the round trip).
fn request(template: &serde_json::Value, id: u64) -> String {
    let mut json = template.clone();
    json["id"] = format!("q{id}").into();
    json.to_string()
}

struct Figures {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

fn figures(mut latencies: Vec<Duration>, elapsed: Duration) -> Figures {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Figures { per_second: latencies.len() as f64 / elapsed.as_secs_f64(), p50: at(0.5), p99: at(0.99) }
}

/// `clients` closed loops for `seconds` through NATS.
async fn through_nats(url: &str, clients: usize, seconds: u64) -> Figures {
    let client = async_nats::connect(url).await.unwrap();
    let waiting: Arc<Mutex<HashMap<String, oneshot::Sender<()>>>> = Arc::default();
    let mut results = client.subscribe("results.digits").await.unwrap();
    let router = waiting.clone();
    tokio::spawn(async move {
        while let Some(message) = results.next().await {
            let id = serde_json::from_slice::<serde_json::Value>(&message.payload)
                .ok()
                .and_then(|v| v["id"].as_str().map(String::from));
            if let Some(done) = id.and_then(|id| router.lock().unwrap().remove(&id)) {
                let _ = done.send(());
            }
        }
    });
    let js = jetstream::new(client);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut loops = Vec::new();
    for c in 0..clients {
        let (js, waiting) = (js.clone(), waiting.clone());
        loops.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = (c as u64) << 32;
            let template = template();
            while Instant::now() < deadline {
                n += 1;
                let (done, answered) = oneshot::channel();
                waiting.lock().unwrap().insert(format!("q{n}"), done);
                let body = request(&template, n);
                let sent = Instant::now();
                js.publish("infer.digits", body.into()).await.unwrap().await.unwrap();
                answered.await.unwrap();
                latencies.push(sent.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for handle in loops {
        all.extend(handle.await.unwrap());
    }
    figures(all, started.elapsed())
}

/// The same loops over HTTP.
fn through_http(base: &str, clients: usize, seconds: u64) -> Figures {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let loops: Vec<_> = (0..clients)
        .map(|_| {
            let url = format!("{base}/v2/models/digits/infer");
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
                let body = request(&template(), 0);
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    agent
                        .post(&url)
                        .header("content-type", "application/json")
                        .send(body.as_str())
                        .unwrap()
                        .body_mut()
                        .read_to_string()
                        .unwrap();
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    let all = loops.into_iter().flat_map(|h| h.join().unwrap()).collect();
    figures(all, started.elapsed())
}

fn main() {
    let seconds: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(8);
    let Some(nats) = TestNats::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    println!("digits pipeline, closed loops, {seconds} s each (one 2-core machine runs everything)");
    println!("{:>6} {:>8} {:>10} {:>10} {:>10}", "via", "clients", "per s", "p50", "p99");
    for clients in [1, 2] {
        let server = serve(&manifest(dir.path(), &nats.url, clients));
        // Warm both paths (cold start, consumer creation).
        runtime.block_on(through_nats(&nats.url, 1, 1));
        through_http(&server.1, 1, 1);
        let queue = runtime.block_on(through_nats(&nats.url, clients, seconds));
        let http = through_http(&server.1, clients, seconds);
        for (via, f) in [("nats", queue), ("http", http)] {
            println!("{via:>6} {clients:>8} {:>10.0} {:>10.2?} {:>10.2?}", f.per_second, f.p50, f.p99);
        }
    }
}
