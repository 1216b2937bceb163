//! The host stays up whatever a caller or a component does: hostile
//! requests, slow and idle connections, components that flood `wasi:nn`
//! with host-side resources, and slow models, all against the real binary.

use crate::common::server::{agent, get, post, start, Server};

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

fn digits() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/digits/weir.toml")
}

fn digits_model() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models/digits.onnx").display().to_string()
}

/// The server's peak resident set so far (`VmHWM`), in bytes.
fn peak_rss(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/PID/status");
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// CPU time the server process has used so far.
fn cpu_time(server: &Server) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.pid())).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

fn alive(server: &Server) {
    assert_eq!(get(server, "/v2/health/live"), (200, json!({"live": true})), "the server must still be up");
}

fn input(shape: &str, data: &str) -> String {
    format!(r#"{{"inputs":[{{"name":"pixels","shape":{shape},"datatype":"FP32","data":{data}}}]}}"#)
}

#[test]
fn hostile_requests_get_a_4xx_and_the_server_serves_on() {
    let server = start(&digits());
    let many_inputs: Vec<String> =
        (0..300).map(|i| format!(r#"{{"name":"x{i}","shape":[1],"datatype":"FP32","data":[1]}}"#)).collect();
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let cases: Vec<(&str, String, u16)> = vec![
        ("a shape of 2^46 elements", input("[70368744177664]", "[]"), 400),
        ("a shape of u64::MAX elements", input("[18446744073709551615]", "[]"), 400),
        ("a shape whose product overflows", input("[4294967296,4294967296,4294967296]", "[]"), 400),
        ("more data than the shape", input("[1,64]", &format!("[{}]", vec!["1"; 65].join(","))), 400),
        ("less data than the shape", input("[1,64]", "[1,2,3]"), 400),
        ("an object as an element", input("[1]", r#"[{"a":1}]"#), 400),
        ("data nested 10 000 deep", input("[1]", &deep), 400),
        ("300 inputs", format!(r#"{{"inputs":[{}]}}"#, many_inputs.join(",")), 400),
        (
            "an output requested twice",
            r#"{"inputs":[],"outputs":[{"name":"label"},{"name":"label"}]}"#.to_string(),
            400,
        ),
        (
            "a 10 KB tensor name",
            format!(r#"{{"inputs":[{{"name":"{}","shape":[1],"datatype":"FP32","data":[1]}}]}}"#, "n".repeat(10_000)),
            400,
        ),
        ("not JSON", "{\"inputs\": [".into(), 400),
        ("a body over max_body", format!("{{\"inputs\":[],\"pad\":\"{}\"}}", "x".repeat(9 << 20)), 413),
    ];
    for (case, body, expected) in &cases {
        let (status, answer) = post(&server, "/v2/models/digits/infer", body);
        assert_eq!(status, *expected, "{case}: {answer}");
        if status == 400 {
            assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()), "{case}: a message says why: {answer}");
        }
        alive(&server);
    }
    let request = std::fs::read_to_string(digits().with_file_name("request.json")).unwrap();
    assert_eq!(post(&server, "/v2/models/digits/infer", &request).0, 200, "good requests are still answered");
}

#[test]
fn a_body_of_millions_of_tiny_elements_decodes_within_a_bound() {
    let server = start(&digits());
    alive(&server);
    let before = peak_rss(&server);
    // ~8 MiB of `0,`: 4 million FP64 elements, the densest JSON there is.
    let n = (8 << 20) / 2 - 64;
    let body = format!(
        r#"{{"inputs":[{{"name":"pixels","shape":[{n}],"datatype":"FP64","data":[{}0]}}]}}"#,
        "0,".repeat(n - 1)
    );
    let (status, answer) = post(&server, "/v2/models/digits/infer", &body);
    assert!((400..500).contains(&status), "{status}: {answer}");
    let grown = peak_rss(&server).saturating_sub(before);
    eprintln!("peak RSS grew by {} MiB decoding an 8 MiB body of 4M elements", grown >> 20);
    // Decoded: 32 MiB of tensor bytes plus the body (one JSON value per
    // element would be ~160 MiB).
    assert!(grown < 100 << 20, "decoding held {} MiB", grown >> 20);
    alive(&server);
}

fn hostile_manifest(dir: &Path, body: &str, http: &str) -> PathBuf {
    let path = dir.join("weir.toml");
    let text = format!("{}\n{body}\n[triggers.http]\n{http}\n", crate::common::test_components());
    std::fs::write(&path, text).unwrap();
    path
}

const X: &str = r#"{"inputs":[{"name":"x","shape":[4],"datatype":"FP32","data":[1,2,3,4]}]}"#;

#[test]
fn responses_over_max_response_are_refused_not_built() {
    let dir = tempfile::tempdir().unwrap();
    let echo = r#"
[[pipelines.echo.steps]]
name = "echo"
component = "hostile"
inputs = ["input.x"]
config = { mode = "echo" }
[pipelines.echo.outputs]
x = "echo.x"
"#;
    let server = start(&hostile_manifest(dir.path(), echo, "max_response = \"4KiB\""));
    let values = vec!["0.125"; 600].join(",");
    let body = format!(r#"{{"inputs":[{{"name":"x","shape":[600],"datatype":"FP32","data":[{values}]}}]}}"#);
    let (status, answer) = post(&server, "/v2/models/echo/infer", &body);
    assert_eq!(status, 200, "{answer}");
    let traced = body.replacen('{', r#"{"parameters":{"trace":true},"#, 1);
    let (status, answer) = post(&server, "/v2/models/echo/infer", &traced);
    assert_eq!(status, 413, "a trace doubles the response past the limit: {answer}");
    assert!(answer["error"].as_str().unwrap().contains("max_response"), "{answer}");
    alive(&server);
}

/// Read what the server sends until it closes, or `wait` passes.
fn read_until_closed(stream: &mut TcpStream, wait: Duration) -> (String, bool) {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into(), true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (String::from_utf8_lossy(&got).into(), true)
            }
            Err(_) => return (String::from_utf8_lossy(&got).into(), false),
        }
    }
}

#[test]
fn slow_and_idle_clients_cannot_hold_connections() {
    let dir = tempfile::tempdir().unwrap();
    let http =
        "max_connections = 3\nheader_timeout = \"500ms\"\nbody_timeout = \"500ms\"\nmax_requests_per_connection = 2";
    let echo = "[[pipelines.echo.steps]]\nname = \"echo\"\ncomponent = \"hostile\"\ninputs = [\"input.x\"]\nconfig = { mode = \"echo\" }\n[pipelines.echo.outputs]\nx = \"echo.x\"\n";
    let server = start(&hostile_manifest(dir.path(), echo, http));
    let addr = server.base.trim_start_matches("http://").to_string();

    // A slow-loris: half a header, then nothing. It is cut off.
    let mut loris = TcpStream::connect(&addr).unwrap();
    loris.write_all(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n").unwrap();
    // A body that never finishes: 408.
    let mut slow_body = TcpStream::connect(&addr).unwrap();
    slow_body
        .write_all(b"POST /v2/models/echo/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"inputs\":")
        .unwrap();
    // An idle connection that sent nothing at all.
    let mut idle = TcpStream::connect(&addr).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    // The cap is reached: one more is answered 503 at once.
    let mut extra = TcpStream::connect(&addr).unwrap();
    let (answer, closed) = read_until_closed(&mut extra, Duration::from_secs(2));
    assert!(answer.starts_with("HTTP/1.1 503") && closed, "over max_connections: {answer:?}");
    assert!(answer.contains("max_connections"), "{answer}");

    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut loris, Duration::from_secs(3));
    assert!(closed && started.elapsed() < Duration::from_secs(2), "the slow header is cut off");
    let (answer, _) = read_until_closed(&mut slow_body, Duration::from_secs(3));
    assert!(answer.starts_with("HTTP/1.1 408"), "the slow body gets 408: {answer:?}");
    let (_, closed) = read_until_closed(&mut idle, Duration::from_secs(3));
    assert!(closed, "an idle connection is closed after header_timeout");

    // Freed: requests are served again, and a keep-alive connection is
    // closed after max_requests_per_connection.
    let mut kept = TcpStream::connect(&addr).unwrap();
    let get = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n";
    kept.write_all(get).unwrap();
    kept.write_all(get).unwrap();
    let (answer, closed) = read_until_closed(&mut kept, Duration::from_secs(3));
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 2, "{answer}");
    assert!(closed && answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    assert_eq!(post(&server, "/v2/models/echo/infer", X).0, 200);
}

#[test]
fn components_flooding_wasi_nn_fail_alone_and_the_host_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let model = digits_model();
    let body = format!(
        r#"
[models.digits]
source = "{model}"

[[pipelines.tensors.steps]]
name = "flood"
component = "hostile"
inputs = ["input.x"]
config = {{ mode = "nn-tensor-flood", mib = 4 }}
limits = {{ memory = "64MiB", timeout = "20s" }}
[pipelines.tensors.outputs]
x = "flood.x"

[[pipelines.contexts.steps]]
name = "flood"
component = "hostile"
inputs = ["input.x"]
models = ["digits"]
config = {{ mode = "nn-context-flood", model = "digits" }}
limits = {{ memory = "16MiB", timeout = "20s" }}
[pipelines.contexts.outputs]
x = "flood.x"

[[pipelines.outputs.steps]]
name = "flood"
component = "hostile"
inputs = ["input.input"]
models = ["digits"]
config = {{ mode = "nn-output-flood", model = "digits", input = "input" }}
limits = {{ memory = "4MiB", timeout = "30s" }}
[pipelines.outputs.outputs]
x = "flood.x"
"#
    );
    let server = start(&hostile_manifest(dir.path(), &body, ""));
    alive(&server);
    let baseline = peak_rss(&server);
    let pixels = format!(
        r#"{{"inputs":[{{"name":"input","shape":[1,64],"datatype":"FP32","data":[{}]}}]}}"#,
        vec!["0.5"; 64].join(",")
    );
    for (pipeline, request) in [("tensors", X), ("contexts", X), ("outputs", pixels.as_str())] {
        let (status, answer) = post(&server, &format!("/v2/models/{pipeline}/infer"), request);
        let error = answer["error"].as_str().unwrap_or_default();
        assert_eq!(status, 500, "{pipeline}: {answer}");
        assert!(error.contains("host memory") && error.contains("memory limit"), "{pipeline}: {error}");
        alive(&server);
    }
    let grown = peak_rss(&server).saturating_sub(baseline);
    eprintln!("peak RSS grew by {} MiB while three steps flooded wasi:nn", grown >> 20);
    // The tensor flood step is allowed 64 MiB of host memory (and 64 MiB of
    // its own); before, it made the host hold 6.3 GB.
    assert!(grown < 256 << 20, "the host held {} MiB", grown >> 20);
}

fn slow_model_manifest(dir: &Path) -> PathBuf {
    let model = dir.join("slow.onnx");
    std::fs::write(&model, weir_tests::onnx::matmul_chain(8)).unwrap();
    let body = format!(
        r#"
[models.slow]
source = "{}"

[[pipelines.heavy.steps]]
name = "run"
component = "hostile"
inputs = ["input.n"]
models = ["slow"]
config = {{ mode = "nn-run", model = "slow" }}
limits = {{ timeout = "200ms" }}
[pipelines.heavy.outputs]
sum = "run.sum"

[[pipelines.heavy_unlimited.steps]]
name = "run"
component = "hostile"
inputs = ["input.n"]
models = ["slow"]
config = {{ mode = "nn-run", model = "slow" }}
limits = {{ timeout = "60s" }}
[pipelines.heavy_unlimited.outputs]
sum = "run.sum"

[[pipelines.light.steps]]
name = "echo"
component = "hostile"
inputs = ["input.x"]
config = {{ mode = "echo" }}
[pipelines.light.outputs]
x = "echo.x"
"#,
        model.display()
    );
    hostile_manifest(dir, &body, "timeout = \"120s\"")
}

fn n_request(n: u64) -> String {
    format!(r#"{{"inputs":[{{"name":"n","shape":[1],"datatype":"INT64","data":[{n}]}}]}}"#)
}

/// Pick `n` so that one run of the 8-round chain takes about `target`.
fn calibrate(server: &Server, target: Duration) -> u64 {
    // The first call pays the cold start (compile, model load): not timed.
    assert_eq!(post(server, "/v2/models/heavy_unlimited/infer", &n_request(8)).0, 200);
    let mut n = 64u64;
    loop {
        let started = Instant::now();
        let (status, answer) = post(server, "/v2/models/heavy_unlimited/infer", &n_request(n));
        assert_eq!(status, 200, "{answer}");
        let took = started.elapsed();
        if took >= target || n >= 4096 {
            eprintln!("the slow model takes {took:?} at n = {n}");
            return n;
        }
        let scale = (target.as_secs_f64() / took.as_secs_f64().max(1e-3)).cbrt().clamp(1.2, 4.0);
        n = ((n as f64) * scale) as u64;
    }
}

fn percentile(mut samples: Vec<Duration>, p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

/// p99 latencies of a light pipeline and of the health check, alone and
/// beside two slow inferences saturating the cores.
struct Isolation {
    quiet: Duration,
    busy: Duration,
    quiet_health: Duration,
    busy_health: Duration,
}

impl Isolation {
    fn print(&self) {
        eprintln!("light pipeline p99: {:?} alone, {:?} beside two slow inferences", self.quiet, self.busy);
        eprintln!("health check p99: {:?} alone, {:?} beside two slow inferences", self.quiet_health, self.busy_health);
    }
}

fn light_beside_heavy(server: &Server, n: u64) -> Isolation {
    let light = |count: usize| -> (Vec<Duration>, Vec<Duration>) {
        let (mut pipeline, mut health) = (Vec::new(), Vec::new());
        for _ in 0..count {
            let started = Instant::now();
            assert_eq!(post(server, "/v2/models/light/infer", X).0, 200);
            pipeline.push(started.elapsed());
            let started = Instant::now();
            alive(server);
            health.push(started.elapsed());
        }
        (pipeline, health)
    };
    let (quiet, quiet_health) = light(50);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let heavy: Vec<_> = (0..2)
        .map(|_| {
            let (base, stop) = (server.base.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let response =
                        agent().post(format!("{base}/v2/models/heavy_unlimited/infer")).send(n_request(n).as_str());
                    assert_eq!(response.unwrap().status().as_u16(), 200);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let (busy, busy_health) = light(50);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    heavy.into_iter().for_each(|t| t.join().unwrap());
    Isolation {
        quiet: percentile(quiet, 0.99),
        busy: percentile(busy, 0.99),
        quiet_health: percentile(quiet_health, 0.99),
        busy_health: percentile(busy_health, 0.99),
    }
}

/// The isolation figures alone, for any build: `WEIR_TEST_BINARY=PATH` runs
/// another one (an older revision) for before/after figures.
#[test]
#[ignore = "a measurement; run by scripts/bench-isolation.sh"]
fn isolation_figures() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&slow_model_manifest(dir.path()));
    let n = calibrate(&server, Duration::from_millis(1500));
    light_beside_heavy(&server, n).print();
}

#[test]
fn a_slow_model_is_stopped_at_the_step_limit_and_holds_up_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&slow_model_manifest(dir.path()));
    let n = calibrate(&server, Duration::from_millis(1500));

    // The step limit stops the inference: the answer comes at the limit,
    // and ONNX Runtime stops computing soon after (terminate between nodes).
    let started = Instant::now();
    let (status, answer) = post(&server, "/v2/models/heavy/infer", &n_request(n));
    let answered = started.elapsed();
    assert_eq!(status, 504, "{answer}");
    assert!(answered < Duration::from_millis(400), "the 200 ms step answered after {answered:?}");
    std::thread::sleep(Duration::from_millis(600));
    let cpu = cpu_time(&server);
    std::thread::sleep(Duration::from_millis(1000));
    let burned = cpu_time(&server).saturating_sub(cpu);
    assert!(burned < Duration::from_millis(300), "the stopped inference went on: {burned:?} of CPU in 1 s");

    let figures = light_beside_heavy(&server, n);
    figures.print();
    let (b99, bh99) = (figures.busy, figures.busy_health);
    // Before, each waited behind a running inference (~190 ms with a 1 s
    // model); the bound leaves room for sharing two cores with it.
    let bound = Duration::from_millis(100);
    assert!(b99 < bound && bh99 < bound, "light work waited behind inference: {b99:?} / {bh99:?}");
}

/// When one step fails, the steps still running beside it are cancelled:
/// the answer comes at once, and the server stops spending CPU on a
/// result nobody will read.
#[test]
fn a_failing_step_cancels_the_steps_running_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = crate::common::manifest_with_components(
        dir.path(),
        "[pipelines.p]\nsteps = [\n  { name = \"spin\", component = \"hostile\", inputs = [\"input.x\"], config = \
             { mode = \"busy\", ms = 4000 } },\n  { name = \"boom\", component = \"hostile\", inputs = [\"input.x\"], \
             config = { mode = \"panic\" } },\n]\noutputs = { a = \"spin.x\", b = \"boom.x\" }\n[triggers.http]\ntimeout \
             = \"20s\"\n",
    );
    let server = start(&manifest);
    let x = r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}"#;
    let started = Instant::now();
    let (status, response) = post(&server, "/v2/models/p/infer", x);
    assert_eq!(status, 500, "{response}");
    assert!(response["error"].as_str().unwrap().contains("boom"), "{response}");
    assert!(started.elapsed() < Duration::from_secs(2), "answered after {:?}: the failure waited", started.elapsed());
    // Had `spin` lived on, it would burn a whole core for ~3 s more.
    let before = cpu_time(&server);
    std::thread::sleep(Duration::from_millis(1500));
    let spent = cpu_time(&server) - before;
    assert!(spent < Duration::from_millis(300), "the server spent {spent:?} of CPU after answering");
    alive(&server);
}
