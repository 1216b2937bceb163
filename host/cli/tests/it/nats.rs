//! The NATS JetStream trigger against a real `nats-server -js`: results,
//! dead letters, two hosts sharing one durable consumer, and a host killed
//! with `kill -9` mid-stream losing nothing.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::server::start_with;
use async_nats::jetstream;
use futures_util::StreamExt;
use serde_json::Value;
use weir_tests::services::TestNats;
use weir_tests::{HOSTILE, SCALE};

fn write_manifest(dir: &Path, url: &str) -> PathBuf {
    let consumer = |name: &str, extra: &str| {
        format!(
            "[pipelines.{name}.triggers.nats]\nstream = \"{}\"\nsubject = \"infer.{name}\"\ndurable = \"weir-{name}\"\nack_wait = \"2s\"\nmax_deliver = 2\ndead_letter = \"dlq.{name}\"\n{extra}\n",
            name.to_uppercase()
        )
    };
    let text = format!(
        r#"
[components.scale]
source = "{SCALE}"
[components.hostile]
source = "{HOSTILE}"
[pipelines.fast]
steps = [{{ name = "scale", component = "scale", inputs = ["input.x"], config = {{ mean = 1, std = 2 }} }}]
outputs = {{ y = "scale.y" }}
{}
[pipelines.reply]
steps = [{{ name = "scale", component = "scale", inputs = ["input.x"] }}]
outputs = {{ y = "scale.y" }}
{}
[pipelines.broken]
steps = [{{ name = "boom", component = "hostile", inputs = ["input.x"], config = {{ mode = "panic" }} }}]
outputs = {{ x = "boom.x" }}
{}
[pipelines.slow]
steps = [{{ name = "busy", component = "hostile", inputs = ["input.x"], config = {{ mode = "busy", ms = 100 }} }}]
outputs = {{ x = "busy.x" }}
{}
[pipelines.long]
steps = [{{ name = "busy", component = "hostile", inputs = ["input.x"], config = {{ mode = "busy", ms = 2500 }} }}]
outputs = {{ x = "busy.x" }}
[pipelines.poison]
steps = [{{ name = "busy", component = "hostile", inputs = ["input.x"], config = {{ mode = "busy", ms = 2500 }} }}]
outputs = {{ x = "busy.x" }}
[pipelines.poison.triggers.nats]
stream = "POISON"
subject = "infer.poison"
durable = "weir-poison"
results = "results.poison"
ack_wait = "1s"
max_deliver = 1
dead_letter = "dlq.poison"
# The older place of a pipeline's NATS section still works.
[pipelines.long.nats]
stream = "LONG"
subject = "infer.long"
durable = "weir-long"
results = "results.long"
concurrency = 2
ack_wait = "1s"
max_deliver = 3
[triggers.nats]
url = "{url}"
"#,
        consumer("fast", "results = \"results.fast\"\nconcurrency = 2"),
        consumer("reply", ""),
        consumer("broken", "results = \"results.broken\""),
        consumer("slow", "results = \"results.slow\"\nconcurrency = 2"),
    );
    let path = dir.join("weir.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn request(id: &str) -> String {
    format!(r#"{{"id": "{id}", "inputs": [{{"name": "x", "datatype": "FP32", "shape": [2], "data": [1.0, 3.0]}}]}}"#)
}

async fn publish(js: &jetstream::Context, subject: &str, body: String) {
    js.publish(subject.to_string(), body.into()).await.unwrap().await.expect("JetStream stored the message");
}

/// Collect messages from `subscriber` until `done` says so (or 60 s pass).
async fn collect(
    subscriber: &mut async_nats::Subscriber,
    mut done: impl FnMut(&[async_nats::Message]) -> bool,
) -> Vec<async_nats::Message> {
    let mut messages = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done(&messages) {
        match tokio::time::timeout_at(deadline, subscriber.next()).await {
            Ok(Some(message)) => messages.push(message),
            _ => panic!("timed out with {} messages", messages.len()),
        }
    }
    messages
}

fn json(message: &async_nats::Message) -> Value {
    serde_json::from_slice(&message.payload).unwrap()
}

/// Which host answered (`Weir-Instance`, random per process).
fn host_of(message: &async_nats::Message) -> String {
    message.headers.as_ref().unwrap().get("Weir-Instance").expect("a Weir-Instance header").as_str().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn results_come_back_and_bad_messages_are_dead_lettered() {
    let Some(nats) = TestNats::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let client = async_nats::connect(&nats.url).await.unwrap();
    let mut results = client.subscribe("results.fast").await.unwrap();
    let mut dead_fast = client.subscribe("dlq.fast").await.unwrap();
    let mut dead_broken = client.subscribe("dlq.broken").await.unwrap();
    let mut inbox = client.subscribe("weir.replies.me").await.unwrap();
    let mut dead_reply = client.subscribe("dlq.reply").await.unwrap();
    let server = start_with(&write_manifest(dir.path(), &nats.url), &[], &[]);

    let js = jetstream::new(client.clone());
    for i in 0..10 {
        publish(&js, "infer.fast", request(&format!("r{i}"))).await;
    }
    publish(&js, "infer.fast", "{not json".into()).await;
    publish(&js, "infer.broken", request("doomed")).await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Weir-Reply-To", "weir.replies.me");
    js.publish_with_headers("infer.reply", headers, request("to-me").into()).await.unwrap().await.unwrap();
    // A reply subject outside `reply_prefix` (here JetStream's API, which
    // would delete the stream) is refused and dead-lettered, never used.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Weir-Reply-To", "$JS.API.STREAM.DELETE.FAST");
    js.publish_with_headers("infer.reply", headers, request("hijack").into()).await.unwrap().await.unwrap();

    let got = collect(&mut results, |m| m.len() == 10).await;
    let ids: HashSet<String> = got.iter().map(|m| json(m)["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, (0..10).map(|i| format!("r{i}")).collect());
    let first = json(&got[0]);
    assert_eq!(first["outputs"][0]["data"], serde_json::json!([0.0, 1.0]));
    assert_eq!(
        first["parameters"]["receipt"]["steps"].as_array().unwrap().len(),
        1,
        "queue results carry the full receipt"
    );

    // Malformed: dead-lettered on its first delivery, never retried.
    let letter = json(&collect(&mut dead_fast, |m| m.len() == 1).await[0]);
    assert_eq!((&letter["error"]["status"], &letter["delivered"]), (&400.into(), &1.into()), "{letter}");
    assert_eq!(letter["request"], "{not json");
    // A failing step: retried until max_deliver (2), then dead-lettered.
    let letter = json(&collect(&mut dead_broken, |m| m.len() == 1).await[0]);
    assert_eq!((&letter["error"]["status"], &letter["delivered"]), (&500.into(), &2.into()), "{letter}");
    assert!(letter["error"]["message"].as_str().unwrap().contains("boom"));
    // No `results` subject: the answer goes where the message asked.
    assert_eq!(json(&collect(&mut inbox, |m| m.len() == 1).await[0])["id"], "to-me");
    let letter = json(&collect(&mut dead_reply, |m| m.len() == 1).await[0]);
    assert_eq!((&letter["error"]["status"], &letter["delivered"]), (&400.into(), &1.into()), "{letter}");
    assert!(letter["error"]["message"].as_str().unwrap().contains("weir.replies."), "{letter}");
    assert!(js.get_stream("FAST").await.is_ok(), "the stream is still there");
    // Results and dead letters are stored by JetStream (acknowledged publishes).
    let mut out = js.get_stream("FAST_OUT").await.expect("a stream stores the results");
    assert!(out.info().await.unwrap().state.messages >= 11, "10 results and a dead letter stored");
    // Queue invocations count in the same metrics as HTTP ones.
    let metrics = crate::common::server::metrics(&server);
    for needle in [
        "weir_requests_total{pipeline=\"fast\",status=\"200\"} 10",
        "weir_requests_total{pipeline=\"fast\",status=\"400\"} 1",
    ] {
        assert!(metrics.contains(needle), "{needle} not in:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hosts_on_one_durable_consumer_share_the_work() {
    let Some(nats) = TestNats::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(dir.path(), &nats.url);
    let client = async_nats::connect(&nats.url).await.unwrap();
    let mut results = client.subscribe("results.slow").await.unwrap();
    let (a, b) = (start_with(&manifest, &[], &[]), start_with(&manifest, &[], &[]));
    let js = jetstream::new(client.clone());
    const N: usize = 40;
    for i in 0..N {
        publish(&js, "infer.slow", request(&format!("m{i}"))).await;
    }
    let got = collect(&mut results, |m| m.len() == N).await;
    let ids: HashSet<String> = got.iter().map(|m| json(m)["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), N, "exactly N unique results");
    let mut per_host: HashMap<String, usize> = HashMap::new();
    for message in &got {
        *per_host.entry(host_of(message)).or_default() += 1;
    }
    assert_eq!(per_host.len(), 2, "both hosts worked: {per_host:?} (pids {} and {})", a.pid(), b.pid());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_killed_mid_stream_loses_nothing() {
    let Some(nats) = TestNats::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(dir.path(), &nats.url);
    let client = async_nats::connect(&nats.url).await.unwrap();
    let mut results = client.subscribe("results.slow").await.unwrap();
    let first = start_with(&manifest, &[], &[]);
    let js = jetstream::new(client.clone());
    const N: usize = 20;
    for i in 0..N {
        publish(&js, "infer.slow", request(&format!("k{i}"))).await;
    }
    let mut got = collect(&mut results, |m| m.len() >= 3).await;
    first.kill9();
    // Another host picks up what the dead one left, unacked ones included.
    let _second = start_with(&manifest, &[], &[]);
    let unique = |messages: &[async_nats::Message]| {
        messages.iter().map(|m| json(m)["id"].as_str().unwrap().to_string()).collect::<HashSet<_>>()
    };
    let rest = collect(&mut results, |m| {
        let mut all = unique(&got);
        all.extend(unique(m));
        all.len() == N
    })
    .await;
    got.extend(rest);
    assert_eq!(unique(&got).len(), N, "every message was processed");
}

/// A message whose deliveries all took their host down (kill -9 while it
/// runs) is dead-lettered, unrun, by the next host that gets it after
/// `max_deliver` deliveries: not lost, and not run forever.
#[tokio::test(flavor = "multi_thread")]
async fn a_message_that_keeps_killing_its_host_is_dead_lettered() {
    let Some(nats) = TestNats::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(dir.path(), &nats.url);
    let client = async_nats::connect(&nats.url).await.unwrap();
    let mut dead = client.subscribe("dlq.poison").await.unwrap();
    let first = start_with(&manifest, &[], &[]);
    publish(&jetstream::new(client.clone()), "infer.poison", request("poison")).await;
    // The step takes 2.5 s: the host dies while it runs.
    tokio::time::sleep(Duration::from_millis(800)).await;
    first.kill9();
    let _second = start_with(&manifest, &[], &[]);
    let letter = json(&collect(&mut dead, |m| m.len() == 1).await[0]);
    assert_eq!(letter["delivered"], 2, "{letter}");
    assert!(letter["error"]["message"].as_str().unwrap().contains("without an answer"), "{letter}");
    assert_eq!(letter["request"].as_str().unwrap(), request("poison"));
}

/// An invocation longer than `ack_wait` is kept alive by progress acks:
/// JetStream does not redeliver it, so it runs and answers once.
#[tokio::test(flavor = "multi_thread")]
async fn long_invocations_send_progress_and_are_not_redelivered() {
    let Some(nats) = TestNats::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let client = async_nats::connect(&nats.url).await.unwrap();
    let mut results = client.subscribe("results.long").await.unwrap();
    let _server = start_with(&write_manifest(dir.path(), &nats.url), &[], &[]);
    publish(&jetstream::new(client.clone()), "infer.long", request("slow-one")).await;
    let first = collect(&mut results, |m| m.len() == 1).await;
    assert_eq!(json(&first[0])["id"], "slow-one");
    // A redelivery (ack_wait is 1 s, the step takes 2.5 s) would answer again.
    let again = tokio::time::timeout(Duration::from_secs(4), results.next()).await;
    assert!(again.is_err(), "answered twice: the message was redelivered while it ran");
}

/// With access control on, a message needs the `Authorization` header of a
/// key that may invoke the pipeline: without one it is dead-lettered (401),
/// with the wrong one too (403); the key's own scope is served.
#[tokio::test(flavor = "multi_thread")]
async fn with_keys_messages_need_a_key_that_may_invoke_the_pipeline() {
    let Some(nats) = TestNats::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    let mut file = weir_access::KeyFile::default();
    let scope = |s: &str| s.parse::<weir_access::Scope>().unwrap();
    let (_, app) = file.create("app", vec![scope("invoke:fast")], Default::default()).unwrap();
    let (_, other) = file.create("other", vec![scope("invoke:slow")], Default::default()).unwrap();
    file.save(&keys).unwrap();
    let client = async_nats::connect(&nats.url).await.unwrap();
    let mut results = client.subscribe("results.fast").await.unwrap();
    let mut dead = client.subscribe("dlq.fast").await.unwrap();
    let audit = dir.path().join("audit.log");
    let args = ["--keys", keys.to_str().unwrap(), "--audit-log", audit.to_str().unwrap()];
    let _server = start_with(&write_manifest(dir.path(), &nats.url), &args, &[]);
    let js = jetstream::new(client.clone());
    for (id, key) in [("none", None), ("wrong", Some(&other)), ("right", Some(&app))] {
        let mut headers = async_nats::HeaderMap::new();
        if let Some(key) = key {
            headers.insert("Authorization", format!("Bearer {key}").as_str());
        }
        js.publish_with_headers("infer.fast", headers, request(id).into()).await.unwrap().await.unwrap();
    }
    let served = collect(&mut results, |m| m.len() == 1).await;
    assert_eq!(json(&served[0])["id"], "right");
    let letters = collect(&mut dead, |m| m.len() == 2).await;
    let mut statuses: Vec<(String, u64)> = letters
        .iter()
        .map(|m| {
            let letter = json(m);
            let request: Value = serde_json::from_str(letter["request"].as_str().unwrap()).unwrap();
            (request["id"].as_str().unwrap().to_string(), letter["error"]["status"].as_u64().unwrap())
        })
        .collect();
    statuses.sort();
    assert_eq!(statuses, vec![("none".into(), 401), ("wrong".into(), 403)]);
    assert!(
        letters.iter().all(|m| !String::from_utf8_lossy(&m.payload).contains(&app[22..])),
        "no key in dead letters"
    );
}

/// Whether any file under `dir` holds `needle`.
fn any_file_holds(dir: &Path, needle: &str) -> bool {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if let Ok(bytes) = std::fs::read(&path) {
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                return true;
            }
        }
    }
    false
}

/// `DELETE /v2/subjects/{s}` reaches the broker: the subject's request, its
/// result and a dead letter holding another of its requests are deleted
/// from their streams, and no byte of them remains in JetStream's files;
/// another subject's messages stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_a_subject_deletes_its_messages_from_the_broker() {
    let Some(nats) = TestNats::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("weir.toml");
    std::fs::write(
        &manifest,
        format!(
            r#"
[components.hostile]
source = "{HOSTILE}"
[pipelines.echo]
steps = [{{ name = "e", component = "hostile", inputs = ["input.x"], config = {{ mode = "echo" }} }}]
outputs = {{ x = "e.x" }}
[pipelines.echo.triggers.nats]
stream = "ECHO"
subject = "infer.echo"
durable = "weir-echo"
results = "results.echo"
dead_letter = "dlq.echo"
[provenance]
path = "records/provenance.redb"
[triggers.nats]
url = "{}"
"#,
            nats.url
        ),
    )
    .unwrap();
    let server = start_with(&manifest, &[], &[]);
    let client = async_nats::connect(&nats.url).await.unwrap();
    let js = jetstream::new(client.clone());
    let mut results = client.subscribe("results.echo").await.unwrap();
    let mut letters = client.subscribe("dlq.echo").await.unwrap();
    let request = |subject: &str, marker: &str, datatype: &str| {
        format!(
            r#"{{"id": "{marker}", "parameters": {{"subject": "{subject}"}}, "inputs": [{{"name": "x", "datatype": "{datatype}", "shape": [1], "data": ["{marker}"]}}]}}"#
        )
    };
    publish(&js, "infer.echo", request("patient-9", "MARKER-7f3a9c", "BYTES")).await;
    publish(&js, "infer.echo", request("patient-9", "MARKER-dead-41", "NOT-A-TYPE")).await;
    publish(&js, "infer.echo", request("patient-10", "KEEPME-55d1", "BYTES")).await;
    collect(&mut results, |m| m.len() == 2).await;
    collect(&mut letters, |m| m.len() == 1).await;
    let store = nats.store_dir();
    for marker in ["MARKER-7f3a9c", "MARKER-dead-41", "KEEPME-55d1"] {
        assert!(any_file_holds(&store, marker), "{marker} should be in the broker's files before erasure");
    }

    let base = server.base.clone();
    let erased: Value = tokio::task::spawn_blocking(move || {
        let mut response =
            crate::common::server::agent().delete(format!("{base}/v2/subjects/patient-9")).call().unwrap();
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
    })
    .await
    .unwrap();
    // Two requests consumed, one result and one dead letter published.
    assert_eq!(erased["broker_messages"], 4, "{erased}");
    assert_eq!(erased["erased"], 1, "{erased}");
    for marker in ["MARKER-7f3a9c", "MARKER-dead-41"] {
        assert!(!any_file_holds(&store, marker), "{marker} remains in the broker's files after erasure");
    }
    assert!(any_file_holds(&store, "KEEPME-55d1"), "another subject's messages are kept");
}

/// A broker that is not there, or one without JetStream: `weir serve`
/// stops at once with a message that says which and what to run.
#[test]
fn nats_start_up_failures_are_clear() {
    let Some(nats_server) = weir_tests::services::require("nats-server") else { return };
    let dir = tempfile::tempdir().unwrap();
    let serve = |url: &str| {
        let manifest = dir.path().join("weir.toml");
        std::fs::write(
            &manifest,
            format!(
                "[components.scale]\nsource = \"{SCALE}\"\n[pipelines.fast]\nsteps = [{{ name = \"scale\", component = \
                 \"scale\", inputs = [\"input.x\"] }}]\noutputs = {{ y = \"scale.y\" }}\n[triggers.nats]\nurl = \
                 \"{url}\"\n[pipelines.fast.triggers.nats]\nstream = \"FAST\"\nsubject = \"infer.fast\"\ndurable = \
                 \"weir-fast\"\n"
            ),
        )
        .unwrap();
        let out =
            crate::common::weir(&["serve", manifest.to_str().unwrap(), "--no-auth", "--listen", "127.0.0.1:0"], None);
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let closed = weir_tests::services::free_port();
    let (code, stderr) = serve(&format!("nats://127.0.0.1:{closed}"));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&format!("cannot connect to NATS at nats://127.0.0.1:{closed}")), "{stderr}");
    assert!(stderr.contains("nats-server -js"), "{stderr}");

    // A broker without JetStream.
    let port = weir_tests::services::free_port();
    let mut plain = std::process::Command::new(nats_server)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, stderr) = serve(&format!("nats://127.0.0.1:{port}"));
    let _ = plain.kill();
    let _ = plain.wait();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot set up stream `FAST` / consumer `weir-fast`"), "{stderr}");
    assert!(stderr.contains("nats-server -js"), "{stderr}");
}

/// Back-pressure: a host pulls no more messages than it has free slots
/// (`concurrency = 2`), so the rest wait in the stream for any host,
/// rather than in this one's memory.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_pulls_only_as_many_messages_as_it_has_free_slots() {
    let Some(nats) = TestNats::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(dir.path(), &nats.url);
    let client = async_nats::connect(&nats.url).await.unwrap();
    let host = start_with(&manifest, &[], &[]);
    let js = jetstream::new(client.clone());
    for i in 0..8 {
        publish(&js, "infer.long", request(&format!("b{i}"))).await;
    }
    let mut consumer = js
        .get_stream("LONG")
        .await
        .unwrap()
        .get_consumer::<jetstream::consumer::pull::Config>("weir-long")
        .await
        .unwrap();
    // Each message runs 2.5 s: watch the first few seconds of the queue.
    let (mut most_in_flight, mut least_waiting) = (0, u64::MAX);
    let until = tokio::time::Instant::now() + Duration::from_secs(4);
    while tokio::time::Instant::now() < until {
        let info = consumer.info().await.unwrap();
        most_in_flight = most_in_flight.max(info.num_ack_pending);
        least_waiting = least_waiting.min(info.num_pending);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(most_in_flight, 2, "the host held more messages than its 2 slots");
    assert!(least_waiting >= 4, "the rest stayed in the stream (at least {least_waiting} waiting)");
    // The host exports the consumer's lag, as the server counts it, for a scaler.
    let text = tokio::task::spawn_blocking(move || crate::common::server::metrics(&host)).await.unwrap();
    let label = "{pipeline=\"long\",stream=\"LONG\",consumer=\"weir-long\"}";
    let gauge = |name: &str| -> u64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{name}{label} ")))
            .unwrap_or_else(|| panic!("{name}: {text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(gauge("weir_consumer_pending_messages") >= 2, "{text}");
    assert_eq!(gauge("weir_consumer_ack_pending_messages"), 2, "{text}");
}
