//! Scale-out on a clustered broker: three `nats-server` nodes with
//! JetStream (streams replicated ×3) and three `weir serve` hosts on one
//! durable consumer. Under steady load one broker node and one host are
//! killed with SIGKILL; every request still gets exactly one stored
//! result. Throughput before, during and after is printed (run with
//! `--nocapture` to see it; docs/scaling.md records a run).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use serde_json::Value;
use weir_tests::services::TestNatsCluster;
use weir_tests::SCALE;

use crate::common::server::{agent, metrics, start_with, Server};

/// Requests published per second, at a steady pace.
const RATE: u64 = 40;
/// Load before the kills, and each window after them.
const PHASE: Duration = Duration::from_secs(6);

fn write_manifest(dir: &Path, url: &str) -> PathBuf {
    let text = format!(
        r#"
[components.scale]
source = "{SCALE}"
[pipelines.cluster]
steps = [{{ name = "scale", component = "scale", inputs = ["input.x"] }}]
outputs = {{ y = "scale.y" }}
[pipelines.cluster.triggers.nats]
stream = "CLUSTER"
subject = "infer.cluster"
durable = "weir-cluster"
results = "results.cluster"
dead_letter = "dlq.cluster"
replicas = 3
concurrency = 4
ack_wait = "2s"
[triggers.nats]
url = "{url}"
"#
    );
    let path = dir.join("weir.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn now_nanos() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as i128
}

/// Wait until the cluster has a JetStream leader and takes replicated streams.
async fn wait_for_jetstream(js: &jetstream::Context) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let config = jetstream::stream::Config { name: "READY".into(), num_replicas: 3, ..Default::default() };
        match js.get_or_create_stream(config).await {
            Ok(_) => break,
            Err(error) if tokio::time::Instant::now() < deadline => {
                eprintln!("waiting for the JetStream cluster: {error}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => panic!("the JetStream cluster never took a replicated stream: {error}"),
        }
    }
    js.delete_stream("READY").await.unwrap();
}

/// Publish request `id` until JetStream acknowledges storing it. The
/// message id makes a retried publish (its ack lost to a dying node) a
/// duplicate JetStream drops, not a second request. Returns the retries.
async fn publish_until_stored(js: jetstream::Context, id: String) -> u32 {
    let body =
        format!(r#"{{"id": "{id}", "inputs": [{{"name": "x", "datatype": "FP32", "shape": [1], "data": [2.0]}}]}}"#);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut retries = 0;
    loop {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.as_str());
        let sent = js.publish_with_headers("infer.cluster", headers, body.clone().into()).await;
        if let Ok(ack) = sent {
            if ack.await.is_ok() {
                return retries;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "request {id} was never stored");
        retries += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The node serving most of weir's connections (from its `/connz`).
async fn busiest_node(cluster: &TestNatsCluster) -> (usize, usize) {
    let monitors = cluster.monitors.clone();
    let counts: Vec<usize> = tokio::task::spawn_blocking(move || {
        monitors
            .iter()
            .map(|port| {
                let url = format!("http://127.0.0.1:{port}/connz?limit=1024");
                let text = agent().get(url).call().unwrap().body_mut().read_to_string().unwrap();
                let connz: Value = serde_json::from_str(&text).unwrap();
                connz["connections"].as_array().map_or(0, |c| c.iter().filter(|c| c["name"] == "weir").count())
            })
            .collect()
    })
    .await
    .unwrap();
    counts.iter().copied().enumerate().max_by_key(|&(_, n)| n).unwrap()
}

/// One stored result: which request, which host, when it was stored.
struct Stored {
    id: String,
    host: String,
    at: i128,
}

/// Every message of `stream`, once it holds at least `expected` and has
/// stopped growing.
async fn read_stream(js: &jetstream::Context, name: &str, expected: u64) -> Vec<Stored> {
    let stream = js.get_stream(name).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut last = 0;
    loop {
        let state = stream.get_info().await.map(|i| i.state);
        if let Ok(state) = state {
            if state.messages >= expected && state.messages == last {
                break;
            }
            last = state.messages;
        }
        assert!(tokio::time::Instant::now() < deadline, "{name} holds {last} of {expected} results after 90 s");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let last_sequence = stream.get_info().await.unwrap().state.last_sequence;
    let mut stored = Vec::new();
    for sequence in 1..=last_sequence {
        let message = stream.get_raw_message(sequence).await.unwrap();
        let body: Value = serde_json::from_slice(&message.payload).unwrap();
        let host = message.headers.get("Weir-Instance").map(|v| v.as_str().to_string()).unwrap_or_default();
        let id = body["id"].as_str().unwrap_or_else(|| panic!("not a result: {body}")).to_string();
        stored.push(Stored { id, host, at: message.time.unix_timestamp_nanos() });
    }
    stored
}

/// The nodes leading the input stream, its consumer and the results stream.
async fn leaders(js: &jetstream::Context) -> [String; 3] {
    let leader = |cluster: Option<jetstream::stream::ClusterInfo>| cluster.and_then(|c| c.leader).unwrap_or_default();
    let mut input = js.get_stream("CLUSTER").await.unwrap();
    let stream = leader(input.info().await.unwrap().cluster.clone());
    let mut consumer = input.get_consumer::<jetstream::consumer::pull::Config>("weir-cluster").await.unwrap();
    let consumer = leader(consumer.info().await.unwrap().cluster.clone());
    let results = leader(js.get_stream("CLUSTER_OUT").await.unwrap().info().await.unwrap().cluster.clone());
    [stream, consumer, results]
}

fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0, |v| v.parse::<f64>().unwrap() as u64)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_node_and_a_host_killed_under_load_lose_nothing() {
    let Some(mut cluster) = TestNatsCluster::start(3) else { return };
    let client = async_nats::ConnectOptions::new().connect(cluster.urls.clone()).await.unwrap();
    let js = jetstream::new(client.clone());
    wait_for_jetstream(&js).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(dir.path(), &cluster.url());
    let mut hosts: Vec<Option<Server>> = (0..3).map(|_| Some(start_with(&manifest, &[], &[]))).collect();
    for stream in ["CLUSTER", "CLUSTER_OUT"] {
        let info = js.get_stream(stream).await.unwrap().get_info().await.unwrap();
        assert_eq!(info.config.num_replicas, 3, "weir creates {stream} replicated on every node");
    }

    // Steady load: RATE requests a second for three phases, each publish
    // on its own task so a stalled one does not slow the pace.
    let total = RATE * 3 * PHASE.as_secs();
    let started = now_nanos();
    let load = {
        let js = js.clone();
        tokio::spawn(async move {
            let mut pace = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
            let mut publishes = Vec::new();
            for i in 0..total {
                pace.tick().await;
                publishes.push(tokio::spawn(publish_until_stored(js.clone(), format!("c{i}"))));
            }
            let mut retries = 0;
            for publish in publishes {
                retries += publish.await.unwrap();
            }
            retries
        })
    };
    tokio::time::sleep(PHASE).await;
    let (victim, weir_connections) = busiest_node(&cluster).await;
    assert!(weir_connections >= 1, "some weir host is connected to the node killed");
    let leaders = leaders(&js).await;
    let killed = now_nanos();
    cluster.kill9(victim);
    hosts[0].take().unwrap().kill9();
    let publish_retries = load.await.unwrap();

    let results = read_stream(&js, "CLUSTER_OUT", total).await;
    let mut per_request: HashMap<&str, usize> = HashMap::new();
    for result in &results {
        *per_request.entry(&result.id).or_default() += 1;
    }
    let missing: Vec<String> =
        (0..total).map(|i| format!("c{i}")).filter(|id| !per_request.contains_key(id.as_str())).collect();
    assert!(missing.is_empty(), "{} requests have no result: {:?}", missing.len(), &missing[..missing.len().min(10)]);
    let repeated: Vec<_> = per_request.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "results stored more than once: {repeated:?}");
    assert_eq!(results.len() as u64, total, "one stored result per request, nothing else");

    // Work moved to the surviving hosts.
    let hosts_before: HashSet<&str> = results.iter().filter(|r| r.at < killed).map(|r| r.host.as_str()).collect();
    let hosts_after: HashSet<&str> =
        results.iter().filter(|r| r.at > killed + 3_000_000_000).map(|r| r.host.as_str()).collect();
    assert_eq!(hosts_before.len(), 3, "all three hosts worked before the kill");
    assert_eq!(hosts_after.len(), 2, "the two surviving hosts took over");
    assert!(hosts_after.is_subset(&hosts_before));

    // Throughput: results stored per second in each window.
    let phase = PHASE.as_nanos() as i128;
    let per_second = |from: i128, to: i128| {
        results.iter().filter(|r| r.at >= from && r.at < to).count() as f64 / ((to - from) as f64 / 1e9)
    };
    let before = per_second(started + 1_000_000_000, killed);
    let during = per_second(killed, killed + phase);
    let after = per_second(killed + phase, killed + 2 * phase);
    // The longest time no result was stored, from the kill on.
    let mut times: Vec<i128> = results.iter().map(|r| r.at).filter(|&at| at >= killed).collect();
    times.sort_unstable();
    let stalled =
        times.iter().scan(killed, |previous, &at| Some(at - std::mem::replace(previous, at))).max().unwrap_or(0);
    let late = results.iter().filter(|r| r.at >= killed + 2 * phase).count();
    let mut duplicates = 0;
    for host in hosts.iter().flatten() {
        let text = tokio::task::block_in_place(|| metrics(host));
        duplicates += counter(&text, "weir_nats_duplicate_outputs_total{pipeline=\"cluster\"}");
    }
    eprintln!(
        "cluster: {total} requests at {RATE}/s; node{victim} (serving {weir_connections} weir connections) and one \
         host killed at {:.1} s (leaders of stream, consumer and results: {leaders:?}); no result stored for {:.1} s at most after it; results/s before {before:.1}, during (6 s) {during:.1}, after {after:.1}; {late} \
         stored after the load ended; {duplicates} duplicate results dropped by JetStream (surviving hosts' count); \
         {publish_retries} publish retries",
        (killed - started) as f64 / 1e9,
        stalled as f64 / 1e9
    );
    assert!(after >= 0.5 * before, "throughput recovered after the kills: {after:.1}/s vs {before:.1}/s before");
}
