//! `weir serve` end to end: the real binary on a free loopback port, real
//! HTTP, Open Inference Protocol v2 requests and every error status.

use crate::common::server::{agent, get, post, start};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use weir_tests::SCALE;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/digits/weir.toml")
}

#[test]
fn the_digits_pipeline_speaks_open_inference_protocol() {
    let server = start(&example());
    assert_eq!(get(&server, "/v2/health/live"), (200, json!({"live": true})));
    assert_eq!(get(&server, "/v2/health/ready"), (200, json!({"ready": true})));
    let (status, meta) = get(&server, "/v2");
    assert_eq!((status, &meta["name"], &meta["models"]), (200, &json!("weir"), &json!(["digits"])));
    let (status, meta) = get(&server, "/v2/models/digits");
    assert_eq!(status, 200);
    assert_eq!(meta["inputs"], json!([{"name": "pixels", "datatype": "FP32", "shape": [-1, 64]}]));
    assert_eq!(meta["outputs"][0], json!({"name": "label", "datatype": "INT64", "shape": [-1]}));
    assert_eq!(meta["outputs"][1], json!({"name": "top_classes", "datatype": "INT64", "shape": [-1, 3]}));
    assert_eq!(get(&server, "/v2/models/digits/ready"), (200, json!({"name": "digits", "ready": true})));

    let request = std::fs::read_to_string(example().with_file_name("request.json")).unwrap();
    let raw = agent().post(format!("{}/v2/models/digits/infer", server.base)).send(request.as_str()).unwrap();
    let id = raw.headers().get("weir-invocation-id").expect("invocation id header").to_str().unwrap().to_string();
    let (status, response) = post(&server, "/v2/models/digits/infer", &request);
    assert_eq!(status, 200, "{response}");
    let receipt = &response["parameters"]["receipt"];
    assert!(receipt.get("steps").is_none(), "responses carry the compact receipt by default: {receipt}");
    assert_eq!(receipt["energy_method"], "cpu-model");
    let mut full: Value = serde_json::from_str(&request).unwrap();
    full["parameters"] = json!({"receipt": "full"});
    let (_, with_steps) = post(&server, "/v2/models/digits/infer", &full.to_string());
    assert_eq!(with_steps["parameters"]["receipt"]["steps"].as_array().unwrap().len(), 3, "{with_steps}");
    assert!(receipt["cpu_us"].as_u64().unwrap() > 0 && receipt["cost"].as_f64().unwrap() > 0.0, "{receipt}");
    assert_ne!(receipt["invocation_id"].as_str().unwrap(), id, "each invocation gets its own id");
    assert_eq!(response["id"], "digits-request-1");
    assert_eq!(response["model_name"], "digits");
    let label = response["outputs"].as_array().unwrap().iter().find(|o| o["name"] == "label").unwrap();
    assert_eq!(label["data"], json!([2, 0, 4]));
    assert_eq!(label["datatype"], "INT64");

    // Requested outputs, and a trace of every edge.
    let mut traced: Value = serde_json::from_str(&request).unwrap();
    traced["parameters"] = json!({"trace": true});
    traced["outputs"] = json!([{"name": "top_classes"}]);
    let (status, response) = post(&server, "/v2/models/digits/infer", &traced.to_string());
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["outputs"].as_array().unwrap().len(), 1);
    let trace = response["parameters"]["trace"].as_array().unwrap();
    let steps: Vec<&str> = trace.iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(steps, ["normalise", "classify", "top3"]);
    assert_eq!(trace[0]["outputs"][0]["name"], "y", "the normalised pixels are visible");
    assert!(trace[1]["inference_us"].as_u64().unwrap() > 0);

    // Prometheus metrics count what happened, energy labelled with its method.
    let metrics = agent().get(format!("{}/metrics", server.base)).call().unwrap().body_mut().read_to_string().unwrap();
    for needle in [
        "weir_requests_total{pipeline=\"digits\",status=\"200\"} 4",
        "weir_step_cpu_seconds_total{pipeline=\"digits\",step=\"classify\"}",
        "weir_energy_joules_total{pipeline=\"digits\",step=\"top3\",method=\"cpu-model\"}",
        "weir_request_duration_seconds_count{pipeline=\"digits\"} 4",
        "weir_models_loaded 1",
    ] {
        assert!(metrics.contains(needle), "{needle} not in:\n{metrics}");
    }

    // Up to a named step.
    let mut until: Value = serde_json::from_str(&request).unwrap();
    until["parameters"] = json!({"until": "normalise"});
    let (status, response) = post(&server, "/v2/models/digits/infer", &until.to_string());
    assert_eq!((status, &response["outputs"][0]["name"]), (200, &json!("y")));
}

fn write_manifest(dir: &Path, http: &str) -> PathBuf {
    let components = crate::common::test_components();
    let path = dir.join("weir.toml");
    std::fs::write(
        &path,
        format!(
            r#"
{components}

[[pipelines.slow.steps]]
name = "busy"
component = "hostile"
inputs = ["input.x"]
config = {{ mode = "busy", ms = 1500 }}
[pipelines.slow.outputs]
x = "busy.x"

[[pipelines.runaway.steps]]
name = "spin"
component = "hostile"
inputs = ["input.x"]
config = {{ mode = "infinite-loop" }}
limits = {{ timeout = "300ms" }}
[pipelines.runaway.outputs]
x = "spin.x"

[[pipelines.broken.steps]]
name = "boom"
component = "hostile"
inputs = ["input.x"]
config = {{ mode = "panic" }}
[pipelines.broken.outputs]
x = "boom.x"

[[pipelines.fast.steps]]
name = "scale"
component = "scale"
inputs = ["input.x"]
[pipelines.fast.outputs]
y = "scale.y"

[triggers.http]
{http}
"#
        ),
    )
    .unwrap();
    path
}

const X: &str = r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}"#;

#[test]
fn limits_answer_413_429_504_and_step_failures_500() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&write_manifest(dir.path(), "max_body = \"1KiB\"\nmax_concurrency = 1\ntimeout = \"800ms\""));
    let big = format!(
        r#"{{"inputs":[{{"name":"x","shape":[1000],"datatype":"FP32","data":[{}]}}]}}"#,
        vec!["1.0"; 1000].join(",")
    );
    assert_eq!(post(&server, "/v2/models/fast/infer", &big).0, 413);

    let (status, response) = post(&server, "/v2/models/broken/infer", X);
    assert_eq!(status, 500, "{response}");
    assert!(response["error"].as_str().unwrap().contains("step `boom` trapped"), "{response}");

    let (status, response) = post(&server, "/v2/models/runaway/infer", X);
    assert_eq!(status, 504, "{response}");
    assert!(response["error"].as_str().unwrap().contains("step `spin` timed out after 300ms"), "{response}");

    // One slot: a second request while the slow one runs is refused at once.
    let base = server.base.clone();
    let slow = std::thread::spawn(move || {
        let mut r = agent().post(format!("{base}/v2/models/slow/infer")).send(X).unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    });
    // Once the slow request holds the slot (on a loaded machine that can
    // take a moment), a second one is refused at once.
    wait_in_flight(&server, 1);
    let started = Instant::now();
    let (status, response) = post(&server, "/v2/models/fast/infer", X);
    assert_eq!(status, 429, "{response}");
    assert!(started.elapsed() < Duration::from_millis(500), "429 must come at once, took {:?}", started.elapsed());
    let (status, body) = slow.join().unwrap();
    assert_eq!(status, 504, "the slow pipeline outlived the 800ms request timeout: {body}");
    assert_eq!(post(&server, "/v2/models/fast/infer", X).0, 200, "the server keeps serving");
}

#[test]
fn a_runaway_pipeline_does_not_block_others() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&write_manifest(dir.path(), "max_concurrency = 8\ntimeout = \"10s\""));
    assert_eq!(post(&server, "/v2/models/fast/infer", X).0, 200, "warm up");
    let base = server.base.clone();
    let runaway = std::thread::spawn(move || {
        agent().post(format!("{base}/v2/models/slow/infer")).send(X).unwrap().status().as_u16()
    });
    // Timed only once the runaway is running, and checked still running after.
    wait_in_flight(&server, 1);
    let started = Instant::now();
    let (status, response) = post(&server, "/v2/models/fast/infer", X);
    assert_eq!(status, 200, "{response}");
    assert!(started.elapsed() < Duration::from_millis(1000), "fast pipeline waited {:?}", started.elapsed());
    assert!(!runaway.is_finished(), "the runaway ended before the fast pipeline was timed beside it");
    // What a scaler reads, per pipeline: the runaway is in flight, the fast one is not.
    let text = crate::common::server::metrics(&server);
    assert!(text.contains("weir_pipeline_in_flight{pipeline=\"slow\"} 1"), "{text}");
    assert!(text.contains("weir_pipeline_in_flight{pipeline=\"fast\"} 0"), "{text}");
    assert_eq!(runaway.join().unwrap(), 200);
    let text = crate::common::server::metrics(&server);
    assert!(text.contains("weir_pipeline_in_flight{pipeline=\"slow\"} 0"), "{text}");
    assert!(text.contains("weir_queue_wait_seconds_count{pipeline=\"fast\"} 2"), "{text}");
    // Only the first invocation of each pipeline loaded its step's component.
    assert!(text.contains("weir_step_cold_starts_total{pipeline=\"fast\"} 1"), "{text}");
    assert!(text.contains("weir_step_cold_starts_total{pipeline=\"slow\"} 1"), "{text}");
}

/// Wait until the server has `n` invocations in flight (its metric).
fn wait_in_flight(server: &crate::common::server::Server, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics =
            agent().get(format!("{}/metrics", server.base)).call().unwrap().body_mut().read_to_string().unwrap();
        if metrics.contains(&format!("weir_in_flight {n}")) {
            return;
        }
        assert!(Instant::now() < deadline, "{n} invocations never ran at once:\n{metrics}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn bad_serve_arguments_are_clear_errors() {
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_weir")).args(args).output().unwrap();
    let manifest = example();
    let manifest = manifest.to_str().unwrap();
    let out = run(&["serve", manifest, "--model-idle-timeout", "5", "--no-auth"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--model-idle-timeout: `5` has no unit"));
    let out = run(&["serve", "/nonexistent/weir.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the manifest"));
    let out = run(&["serve", manifest, "--listen", "not-an-address", "--no-auth"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not `not-an-address`"));
    let keys = tempfile::tempdir().unwrap();
    let keys = keys.path().join("keys.json");
    let out = run(&["serve", manifest, "--listen", "not-an-address", "--keys", keys.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no API keys"));
}

#[test]
fn provenance_records_every_invocation_and_erasure_deletes_it() {
    let dir = tempfile::tempdir().unwrap();
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models");
    let manifest = dir.path().join("weir.toml");
    std::fs::write(
        &manifest,
        format!(
            r#"
[provenance]
path = "records/provenance.redb"
retention = "1d"
keep_tensors = true

[models.digits]
source = "{digits}"
[components.scale]
source = "{SCALE}"
[components.classify]
source = "{classify}"

[pipelines.digits]
sensitive = ["input.pixels"]
[[pipelines.digits.steps]]
name = "normalise"
component = "scale"
inputs = ["x=input.pixels"]
config = {{ std = 16 }}
env = {{ MODE = "fast" }}
http = [{{ host = "Features.Internal", port = 8080 }}]
[[pipelines.digits.steps]]
name = "classify"
component = "classify"
inputs = ["x=normalise.y"]
models = ["digits"]
[pipelines.digits.outputs]
label = "classify.label"

# Taps allowed by the operator, on a pipeline with a sensitive step output.
[pipelines.tapped]
sensitive = ["normalise.y"]
taps = true
steps = [{{ name = "normalise", component = "scale", inputs = ["x=input.pixels"], config = {{ std = 16 }} }}]
outputs = {{ y = "normalise.y" }}
"#,
            digits = models.join("digits.onnx").display(),
            classify = weir_tests::CLASSIFY,
        ),
    )
    .unwrap();
    let server = start(&manifest);
    let pixels: Vec<f32> = (0..64).map(|i| (i % 17) as f32).collect();
    let request = json!({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": pixels}], "parameters": {"subject": "patient-7"}});
    let mut ids = Vec::new();
    for _ in 0..2 {
        let response =
            agent().post(format!("{}/v2/models/digits/infer", server.base)).send(request.to_string().as_str()).unwrap();
        assert_eq!(response.status().as_u16(), 200);
        ids.push(response.headers().get("weir-invocation-id").unwrap().to_str().unwrap().to_string());
    }
    let (status, record) = get(&server, &format!("/v2/invocations/{}", ids[0]));
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["subject"], "patient-7");
    let steps = record["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    let classify_digest = format!("sha256:{}", sha256_hex(&std::fs::read(weir_tests::CLASSIFY).unwrap()));
    assert_eq!(steps[1]["component_digest"], classify_digest.as_str());
    let model_digest = format!("sha256:{}", sha256_hex(&std::fs::read(models.join("digits.onnx")).unwrap()));
    assert_eq!(steps[1]["models"][0][1], model_digest.as_str(), "the model's digest is recorded");
    assert_eq!(steps[1]["granted_models"], json!(["digits"]));
    assert_eq!(steps[0]["granted_http"], json!(["features.internal:8080"]), "grants are in the record");
    assert_eq!(steps[0]["env_keys"], json!(["MODE"]), "variable names, never values");
    assert!(steps[1].get("granted_http").is_none(), "{record}");
    // The sensitive request tensor: a keyed hash only (no plain SHA-256 a
    // guess could be checked against). The normalised edge: kept.
    let raw: Vec<u8> = pixels.iter().flat_map(|v| v.to_le_bytes()).collect();
    let keyed = record["inputs"][0]["hmac_sha256"].as_str().unwrap();
    assert!(keyed.starts_with("hmac-sha256:") && !keyed.contains(&sha256_hex(&raw)), "{record}");
    assert!(record["inputs"][0].get("sha256").is_none(), "{record}");
    let key = std::fs::read(dir.path().join("records/provenance.redb.hashkey")).expect("a key made next to the store");
    assert_eq!(key.len(), 32);
    assert!(record["inputs"][0].get("data").is_none(), "sensitive data is never stored");
    assert!(steps[0]["inputs"][0].get("data").is_none(), "the same tensor entering a step stays hashed");
    assert!(steps[0]["outputs"][0]["data"].is_array(), "non-sensitive edges are kept when keep_tensors");
    assert_eq!(steps[1]["inputs"][0]["sha256"], steps[0]["outputs"][0]["sha256"], "edges link up");
    assert!(record["receipt"]["energy_j"].as_f64().unwrap() > 0.0);

    // Taps are off on a pipeline with sensitive tensors: `trace` and `until` are 403.
    for parameters in [json!({"trace": true}), json!({"until": "normalise"})] {
        let mut tapped = request.clone();
        tapped["parameters"] = parameters;
        let (status, body) = crate::common::server::post(&server, "/v2/models/digits/infer", &tapped.to_string());
        assert_eq!(status, 403, "{body}");
        assert!(body["error"].as_str().unwrap().contains("taps = true"), "{body}");
    }
    // Allowed, a sensitive edge still never leaves in the clear: no data in
    // the trace or the `until` answer, and a keyed hash in the record.
    let mut traced = request.clone();
    traced["parameters"] = json!({"trace": true});
    let (status, body) = crate::common::server::post(&server, "/v2/models/tapped/infer", &traced.to_string());
    assert_eq!(status, 200, "{body}");
    let edge = &body["parameters"]["trace"][0]["outputs"][0];
    assert_eq!((&edge["data"], &edge["parameters"]["redacted"]), (&json!([]), &json!("sensitive")), "{body}");
    let mut until = request.clone();
    until["parameters"] = json!({"until": "normalise", "subject": "patient-8"});
    let response =
        agent().post(format!("{}/v2/models/tapped/infer", server.base)).send(until.to_string().as_str()).unwrap();
    let id = response.headers().get("weir-invocation-id").unwrap().to_str().unwrap().to_string();
    let body: Value = serde_json::from_str(&response.into_body().read_to_string().unwrap()).unwrap();
    assert_eq!(body["outputs"][0]["parameters"]["redacted"], "sensitive", "{body}");
    let (_, record) = get(&server, &format!("/v2/invocations/{id}"));
    let output = &record["outputs"][0];
    assert!(
        output.get("data").is_none() && output["hmac_sha256"].is_string(),
        "`until` does not bypass sensitive: {record}"
    );

    // Erasure by invocation, then by subject: the records are gone.
    let erase = |path: &str| {
        let mut r = agent().delete(format!("{}{path}", server.base)).call().unwrap();
        (r.status().as_u16(), serde_json::from_str::<Value>(&r.body_mut().read_to_string().unwrap()).unwrap())
    };
    assert_eq!(erase(&format!("/v2/invocations/{}", ids[0])), (200, json!({"erased": 1})));
    assert_eq!(get(&server, &format!("/v2/invocations/{}", ids[0])).0, 404);
    assert_eq!(erase("/v2/subjects/patient-7"), (200, json!({"erased": 1})));
    assert_eq!(get(&server, &format!("/v2/invocations/{}", ids[1])).0, 404);
    drop(server);
    // And on disk, after the server is gone.
    let store = weir_observe::provenance::ProvenanceStore::open(
        &dir.path().join("records/provenance.redb"),
        Duration::from_secs(86_400),
    )
    .unwrap();
    assert!(ids.iter().all(|id| store.get(id).unwrap().is_none()));
    drop(store);
    // Not a byte left: the file's raw bytes hold neither the subject nor
    // the erased invocations' ids (the store was rewritten, not only unlinked
    // from its index), while a record that was not erased is still there.
    let raw = std::fs::read(dir.path().join("records/provenance.redb")).unwrap();
    let holds = |needle: &str| raw.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(!holds("patient-7"), "the erased subject's bytes remain in the store file");
    assert!(ids.iter().all(|id| !holds(id)), "an erased record's bytes remain in the store file");
    assert!(holds("patient-8"), "records not erased are kept");
}

fn sha256_hex(bytes: &[u8]) -> String {
    weir_registry::Digest::of(bytes).hex().to_string()
}

/// Powercap counters in a temporary folder, advanced by a thread at 50 W
/// (which also keeps a CPU busy, so that busy time moves).
struct FakeRapl {
    root: tempfile::TempDir,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ticking: Option<std::thread::JoinHandle<()>>,
}

impl FakeRapl {
    fn start() -> FakeRapl {
        let root = tempfile::tempdir().unwrap();
        let zone = root.path().join("intel-rapl:0");
        std::fs::create_dir_all(&zone).unwrap();
        std::fs::write(zone.join("max_energy_range_uj"), u64::MAX.to_string()).unwrap();
        std::fs::write(zone.join("energy_uj"), "0").unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (stopping, counter) = (stop.clone(), zone.join("energy_uj"));
        let ticking = std::thread::spawn(move || {
            let started = std::time::Instant::now();
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                // 50 W: 50 µJ per µs.
                let uj = started.elapsed().as_micros() as u64 * 50;
                // Replace the file whole, as sysfs reads are: never half-written.
                let next = counter.with_extension("next");
                std::fs::write(&next, uj.to_string()).unwrap();
                std::fs::rename(&next, &counter).unwrap();
            }
        });
        FakeRapl { root, stop, ticking: Some(ticking) }
    }

    fn serve(&self, manifest: &Path) -> crate::common::server::Server {
        crate::common::server::start_with(manifest, &[], &[("WEIR_POWERCAP_ROOT", self.root.path())])
    }

    /// Post `request` until the receipt says `rapl` (the meter's first interval).
    fn measured_receipt(server: &crate::common::server::Server, path: &str, request: &str) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let (status, response) = post(server, path, request);
            assert_eq!(status, 200, "{response}");
            let receipt = response["parameters"]["receipt"].clone();
            if receipt["energy_method"] == "rapl" || std::time::Instant::now() > deadline {
                assert_eq!(receipt["energy_method"], "rapl", "{receipt}");
                return receipt;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Drop for FakeRapl {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(ticking) = self.ticking.take() {
            let _ = ticking.join();
        }
    }
}

/// Two steps side by side doing 4x and 1x the same work under RAPL: each
/// is charged its own CPU time at the same measured rate, so their joules
/// split 4:1 and add up to the invocation's.
#[test]
fn rapl_energy_splits_between_concurrent_steps_by_their_cpu_time() {
    let rapl = FakeRapl::start();
    let dir = tempfile::tempdir().unwrap();
    let manifest = crate::common::manifest_with_components(
        dir.path(),
        "[pipelines.p]\nsteps = [\n  { name = \"heavy\", component = \"hostile\", inputs = [\"input.x\"], config = { mode = \"work\", iterations = 160000000 } },\n  { name = \"light\", component = \"hostile\", inputs = [\"input.x\"], config = { mode = \"work\", iterations = 40000000 } },\n]\noutputs = { a = \"heavy.x\", b = \"light.x\" }\n",
    );
    let server = rapl.serve(&manifest);
    let request =
        r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}],"parameters":{"receipt":"full"}}"#;
    // Warm: the component's one-time load must land on neither step.
    assert_eq!(post(&server, "/v2/models/p/infer", request).0, 200);
    let receipt = FakeRapl::measured_receipt(&server, "/v2/models/p/infer", request);
    let step = |name: &str| receipt["steps"].as_array().unwrap().iter().find(|s| s["step"] == name).unwrap().clone();
    let (heavy, light) = (step("heavy"), step("light"));
    let joules = |s: &Value| s["energy_j"].as_f64().unwrap();
    let cpu = |s: &Value| s["cpu_us"].as_f64().unwrap();
    // Joules split as the CPU time did (one rate, which moves only every
    // 200 ms), and the CPU time as the work did (loosely: other tests share
    // the machine).
    let (split, cpu_split) = (joules(&heavy) / joules(&light), cpu(&heavy) / cpu(&light));
    assert!((split / cpu_split - 1.0).abs() < 0.35, "joules split {split}, CPU split {cpu_split}: {heavy} {light}");
    assert!((2.5..6.0).contains(&cpu_split), "heavy/light CPU {cpu_split} for 4x the work: {heavy} {light}");
    assert!((receipt["energy_j"].as_f64().unwrap() - joules(&heavy) - joules(&light)).abs() < 1e-9, "{receipt}");
}

/// With readable powercap counters, energy is measured (`rapl`): package
/// joules per busy CPU-second, times each step's CPU time.
#[test]
fn energy_is_measured_with_rapl_when_the_counters_can_be_read() {
    let rapl = FakeRapl::start();
    let server = rapl.serve(&example());
    let mut request: Value =
        serde_json::from_str(&std::fs::read_to_string(example().with_file_name("request.json")).unwrap()).unwrap();
    request["parameters"] = json!({"receipt": "full"});
    let request = request.to_string();
    FakeRapl::measured_receipt(&server, "/v2/models/digits/infer", &request);
    // The rate, measured here the way the meter does (counter joules over
    // the machine's busy CPU-seconds) across a window, then a fresh receipt:
    // each step's joules per CPU-second must be that rate, give or take how
    // busy the machine was in the meter's own last interval.
    let (busy0, at0) = (busy_cpu_seconds(), std::time::Instant::now());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (busy1, window) = (busy_cpu_seconds(), at0.elapsed().as_secs_f64());
    let expected = 50.0 * window / (busy1 - busy0);
    let (_, response) = post(&server, "/v2/models/digits/infer", &request);
    drop(rapl);
    let receipt = &response["parameters"]["receipt"];
    for step in receipt["steps"].as_array().unwrap() {
        assert_eq!(step["energy_method"], "rapl");
        let per_cpu_second = step["energy_j"].as_f64().unwrap() / (step["cpu_us"].as_f64().unwrap() / 1e6);
        assert!(
            (0.6 * expected..1.6 * expected).contains(&per_cpu_second),
            "{per_cpu_second} J per CPU-second charged, {expected} measured: {step}"
        );
    }
    assert!(receipt["queue_wait_us"].as_u64().is_some());
}

/// Busy CPU-seconds of the whole machine (`/proc/stat`: all but idle and iowait).
fn busy_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let fields: Vec<f64> =
        stat.lines().next().unwrap().split_whitespace().skip(1).map(|f| f.parse().unwrap()).collect();
    let busy: f64 = fields.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    busy / 100.0
}

/// A minimal OTLP/HTTP collector: every POSTed JSON body comes out of the channel.
pub(crate) fn collector() -> (String, std::sync::mpsc::Receiver<Value>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (sender, bodies) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let sender = sender.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    let mut length = 0;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = value.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let _ = sender.send(serde_json::from_slice(&body).unwrap_or(Value::Null));
                    stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").unwrap();
                }
            });
        }
    });
    (format!("http://{addr}"), bodies)
}

#[test]
fn invocations_and_steps_are_exported_as_opentelemetry_spans() {
    let (endpoint, bodies) = collector();
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", Path::new(&endpoint)), ("OTEL_BSP_SCHEDULE_DELAY", Path::new("50"))];
    let server = crate::common::server::start_with(&example(), &[], &env);
    let request = std::fs::read_to_string(example().with_file_name("request.json")).unwrap();
    let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let response = agent()
        .post(format!("{}/v2/models/digits/infer", server.base))
        .header("traceparent", caller)
        .send(request.as_str())
        .unwrap();
    let traceparent =
        response.headers().get("traceparent").expect("traceparent in the response").to_str().unwrap().to_string();
    assert!(traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{traceparent}");
    // A failure is a span too, with an error status.
    assert_eq!(post(&server, "/v2/models/digits/infer", r#"{"inputs": []}"#).0, 400);

    let mut spans: Vec<Value> = Vec::new();
    while spans.len() < 5 {
        let body = bodies.recv_timeout(std::time::Duration::from_secs(20)).expect("spans exported within 20 s");
        assert_eq!(body["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"], "weir");
        spans.extend(body["resourceSpans"][0]["scopeSpans"][0]["spans"].as_array().unwrap().iter().cloned());
    }
    let named = |name: &str| spans.iter().filter(|s| s["name"] == name).cloned().collect::<Vec<_>>();
    let invocations = named("invoke digits");
    let ok = invocations.iter().find(|s| s["status"]["code"] == 1).expect("the successful invocation");
    assert_eq!(ok["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(ok["parentSpanId"], "00f067aa0ba902b7", "a child of the caller's span");
    assert!(traceparent.contains(ok["spanId"].as_str().unwrap()));
    for step in ["normalise", "classify", "top3"] {
        let span = &named(&format!("step {step}"))[0];
        assert_eq!(span["parentSpanId"], ok["spanId"], "{span}");
        assert_eq!(span["traceId"], ok["traceId"]);
        let start: u128 = span["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
        let end: u128 = span["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
        assert!(start <= end);
    }
    let failed = invocations.iter().find(|s| s["status"]["code"] == 2).expect("the failed invocation");
    assert!(failed["status"]["message"].as_str().unwrap().contains("pixels"), "{failed}");
}

#[test]
fn preload_loads_every_component_and_model_before_serving() {
    let lazy = start(&example());
    let (_, status) = get(&lazy, "/v2/status");
    let states: Vec<&str> =
        status["components"].as_array().unwrap().iter().map(|c| c["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["cold", "cold", "cold"], "without --preload nothing loads before a request: {status}");
    drop(lazy);
    let eager = crate::common::server::start_with(&example(), &["--preload"], &[]);
    let (_, status) = get(&eager, "/v2/status");
    for component in status["components"].as_array().unwrap() {
        assert_eq!(component["state"], "warm", "{status}");
        assert_eq!(component["cold_starts"], 1, "{status}");
    }
    assert_eq!(status["models"]["loaded"], json!(["digits"]), "{status}");
}

/// A collector that takes connections and never answers: the exporter
/// falls behind, spans are dropped and counted, and requests never wait.
#[test]
fn spans_are_dropped_never_requests_when_the_collector_stalls() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().flatten().collect();
        drop(held);
    });
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", Path::new(&endpoint)), ("OTEL_BSP_SCHEDULE_DELAY", Path::new("50"))];
    let server = crate::common::server::start_with(&example(), &[], &env);
    let request = std::fs::read_to_string(example().with_file_name("request.json")).unwrap();
    let dropped = |server: &crate::common::server::Server| -> u64 {
        let text = agent().get(format!("{}/metrics", server.base)).call().unwrap().body_mut().read_to_string().unwrap();
        let line = text.lines().find(|l| l.starts_with("weir_spans_dropped_total ")).expect("the metric");
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(dropped(&server), 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut slowest = Duration::ZERO;
    // 4 spans per request: past the 8 192-span queue, spans must go.
    while dropped(&server) == 0 {
        assert!(Instant::now() < deadline, "no span was dropped after a minute of requests");
        let callers: Vec<_> = (0..4)
            .map(|_| {
                let (base, request) = (server.base.clone(), request.clone());
                std::thread::spawn(move || {
                    let agent = agent();
                    let mut slowest = Duration::ZERO;
                    for _ in 0..250 {
                        let started = Instant::now();
                        let status = agent
                            .post(format!("{base}/v2/models/digits/infer"))
                            .send(request.as_str())
                            .unwrap()
                            .status();
                        assert_eq!(status.as_u16(), 200);
                        slowest = slowest.max(started.elapsed());
                    }
                    slowest
                })
            })
            .collect();
        slowest = callers.into_iter().map(|c| c.join().unwrap()).fold(slowest, Duration::max);
    }
    assert!(slowest < Duration::from_secs(2), "a request waited {slowest:?} behind the stalled exporter");
}

/// `weir receipts --reconcile`: over a load run of CPU-heavy steps, the
/// receipts' CPU time and energy add up to what the whole process used,
/// but for the serving work no step is charged for. In this debug build,
/// where that work is unoptimised (and a step yields to the scheduler every
/// millisecond), it measured 14-22 % on a 2-core machine (2026-12-03).
#[test]
fn receipts_reconcile_with_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = crate::common::manifest_with_components(
        dir.path(),
        "[pipelines.work]\nsteps = [{ name = \"w\", component = \"hostile\", inputs = [\"input.x\"], config = \
             { mode = \"work\", iterations = 20000000 } }]\noutputs = { x = \"w.x\" }\n",
    );
    let server = start(&manifest);
    let x = r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}"#;
    assert_eq!(post(&server, "/v2/models/work/infer", x).0, 200, "warm");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (base, stop) = (server.base.clone(), stop.clone());
        std::thread::spawn(move || {
            let agent = agent();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                agent.post(format!("{base}/v2/models/work/infer")).send(x).unwrap();
            }
        })
    };
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["receipts", "--reconcile", &server.base, "--window", "2s"])
        .output()
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let row = |name: &str| -> Vec<f64> {
        let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} row:\n{text}"));
        line[name.len()..].split_whitespace().take(3).map(|v| v.trim_start_matches('(').parse().unwrap()).collect()
    };
    for name in ["CPU s", "energy J"] {
        let (receipts, process) = (row(name)[0], row(name)[1]);
        assert!(
            receipts > 0.0 && receipts <= process * 1.01,
            "{name}: receipts {receipts} vs process {process}:\n{text}"
        );
        assert!(receipts >= process * 0.75, "{name}: more than 25 % of the process not charged:\n{text}");
    }
    // Without --reconcile's URL the manifest is needed, and vice versa.
    let bad = Command::new(env!("CARGO_BIN_EXE_weir")).args(["receipts"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", String::from_utf8_lossy(&bad.stderr));
}
