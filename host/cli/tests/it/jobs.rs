//! Asynchronous invocations with no broker: `Prefer: respond-async` gives a
//! 202 and a job; jobs live in an embedded store that survives `kill -9`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::server::{agent, get, post, start_with, Server};
use serde_json::{json, Value};

const X: &str = r#"{"id": "req-1", "inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1.0, 3.0]}]}"#;

fn write_manifest(dir: &Path, jobs: &str) -> PathBuf {
    let components = crate::common::test_components();
    let path = dir.join("weir.toml");
    let store = dir.join("jobs.redb");
    std::fs::write(
        &path,
        format!(
            r#"
{components}
[pipelines.slow]
steps = [{{ name = "busy", component = "hostile", inputs = ["input.x"], config = {{ mode = "busy", ms = 400 }} }}]
outputs = {{ x = "busy.x" }}
[pipelines.broken]
steps = [{{ name = "boom", component = "hostile", inputs = ["input.x"], config = {{ mode = "panic" }} }}]
outputs = {{ x = "boom.x" }}
[pipelines.fast]
steps = [{{ name = "scale", component = "scale", inputs = ["input.x"], config = {{ mean = 1, std = 2 }} }}]
outputs = {{ y = "scale.y" }}
[triggers.jobs]
path = "{}"
{jobs}
"#,
            store.display()
        ),
    )
    .unwrap();
    path
}

/// POST with `Prefer: respond-async`: (status, body, Location).
fn submit(server: &Server, pipeline: &str, body: &str) -> (u16, Value, Option<String>) {
    let mut response = agent()
        .post(format!("{}/v2/models/{pipeline}/infer", server.base))
        .header("content-type", "application/json")
        .header("prefer", "respond-async")
        .send(body)
        .unwrap();
    let location = response.headers().get("location").map(|l| l.to_str().unwrap().to_string());
    let status = response.status().as_u16();
    (status, serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap_or(Value::Null), location)
}

fn wait_finished(server: &Server, location: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, job) = get(server, location);
        assert_eq!(status, 200, "{job}");
        if job["status"] == "succeeded" || job["status"] == "failed" {
            return job;
        }
        assert!(Instant::now() < deadline, "job still {} after 30 s", job["status"]);
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_async_request_gets_202_and_its_result_later() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(&write_manifest(dir.path(), ""), &[], &[]);
    let (status, body, location) = submit(&server, "fast", X);
    assert_eq!(status, 202, "{body}");
    let location = location.expect("a Location header");
    assert_eq!(body["location"], location.as_str());
    assert_eq!(location, format!("/v2/jobs/{}", body["id"].as_str().unwrap()));

    let job = wait_finished(&server, &location);
    assert_eq!(job["status"], "succeeded", "{job}");
    let (_, direct) = post(&server, "/v2/models/fast/infer", X);
    assert_eq!(job["response"]["outputs"], direct["outputs"], "the same answer as a synchronous call");
    assert_eq!(job["response"]["id"], "req-1");

    // A step failure is a failed job with the status a synchronous call gets.
    let (_, _, location) = submit(&server, "broken", X);
    let job = wait_finished(&server, &location.unwrap());
    assert_eq!((&job["status"], &job["error"]["status"]), (&json!("failed"), &json!(500)), "{job}");
    assert!(job["error"]["message"].as_str().unwrap().contains("boom"), "{job}");

    // A malformed request is refused at once, never queued.
    let (status, body, _) = submit(&server, "fast", "{not json");
    assert_eq!(status, 400, "{body}");
    assert_eq!(get(&server, "/v2/jobs/does-not-exist").0, 404);
}

#[test]
fn the_queue_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(&write_manifest(dir.path(), "max_queued = 2\nworkers = 1"), &[], &[]);
    let statuses: Vec<u16> = (0..4).map(|_| submit(&server, "slow", X).0).collect();
    assert_eq!(statuses, vec![202, 202, 429, 429], "two unfinished jobs at most");
}

#[test]
fn jobs_survive_kill_9_and_results_stay_readable_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(dir.path(), "workers = 1");
    let server = start_with(&manifest, &[], &[]);
    let (_, _, done) = submit(&server, "fast", X);
    let done = done.unwrap();
    assert_eq!(wait_finished(&server, &done)["status"], "succeeded");
    // Five slow jobs on one worker: the first is running when the server
    // dies, the rest still queued.
    let pending: Vec<String> = (0..5).map(|_| submit(&server, "slow", X).2.unwrap()).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&server, &pending[0]).1["status"] != "running" {
        assert!(Instant::now() < deadline, "the first job never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    server.kill9();

    let server = start_with(&manifest, &[], &[]);
    assert_eq!(get(&server, &done).1["status"], "succeeded", "finished results outlive the process");
    for (i, location) in pending.iter().enumerate() {
        let job = wait_finished(&server, location);
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["response"]["outputs"][0]["data"], json!([1.0, 3.0]));
        // The one cut short ran again (its second start); the queued ones once.
        let attempts = if i == 0 { 2 } else { 1 };
        assert_eq!(job["attempts"], attempts, "job {i}: {job}");
    }
}

/// A job whose every start ended with its host gone (a poison job) ends
/// as failed after `max_attempts` starts instead of taking hosts down forever.
#[test]
fn a_job_that_keeps_killing_its_host_ends_as_failed() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(
        dir.path(),
        "workers = 1
max_attempts = 2",
    );
    let mut location = None;
    // Two starts, each cut short by kill -9 while the 400 ms step runs.
    for _ in 0..2 {
        let server = start_with(&manifest, &[], &[]);
        let at = location.get_or_insert_with(|| submit(&server, "slow", X).2.unwrap()).clone();
        let deadline = Instant::now() + Duration::from_secs(10);
        while get(&server, &at).1["status"] != "running" {
            assert!(Instant::now() < deadline, "the job never started");
            std::thread::sleep(Duration::from_millis(10));
        }
        server.kill9();
    }
    let server = start_with(&manifest, &[], &[]);
    let job = wait_finished(&server, location.as_ref().unwrap());
    assert_eq!((&job["status"], &job["attempts"]), (&json!("failed"), &json!(3)), "{job}");
    let message = job["error"]["message"].as_str().unwrap();
    assert!(message.contains("started 2 times without finishing"), "{message}");
    // The worker lives on: the next job runs.
    let (_, _, next) = submit(&server, "fast", X);
    assert_eq!(wait_finished(&server, &next.unwrap())["status"], "succeeded");
}

/// Erasing a subject erases its jobs too: request and result, and no byte
/// of them stays in the job store's file.
#[test]
fn erasing_a_subject_erases_its_jobs_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(dir.path(), "workers = 1");
    let server = start_with(&manifest, &[], &[]);
    let marked = r#"{"id": "req-1", "parameters": {"subject": "erase-me-4711"}, "inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [98765.4375, 3.0]}]}"#;
    let (_, _, location) = submit(&server, "fast", marked);
    let location = location.unwrap();
    assert_eq!(wait_finished(&server, &location)["status"], "succeeded");
    let (_, _, kept) = submit(&server, "fast", X);
    let kept = kept.unwrap();
    wait_finished(&server, &kept);
    let mut erased = agent().delete(format!("{}/v2/subjects/erase-me-4711", server.base)).call().unwrap();
    let body: Value = serde_json::from_str(&erased.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(body, json!({"erased": 0, "jobs": 1}));
    assert_eq!(get(&server, &location).0, 404);
    assert_eq!(get(&server, &kept).1["status"], "succeeded", "other jobs are kept");
    server.kill9();
    let raw = std::fs::read(dir.path().join("jobs.redb")).unwrap();
    let holds = |needle: &str| raw.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(!holds("erase-me-4711") && !holds("98765.4375"), "the erased job's bytes remain in jobs.redb");
    assert!(!holds(location.rsplit('/').next().unwrap()));
}

/// Jobs go through the same dispatcher as HTTP: their own time limit
/// (`[triggers.jobs] timeout`, not the HTTP one), and the same invocation
/// metrics (latency, CPU, energy) as a synchronous call.
#[test]
fn jobs_have_their_own_time_limit_and_the_same_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(dir.path(), "timeout = \"150ms\"\n[triggers.http]\ntimeout = \"30s\"");
    let server = start_with(&manifest, &[], &[]);
    // 400 ms of work: within the HTTP limit, over the jobs limit.
    let (status, direct) = post(&server, "/v2/models/slow/infer", X);
    assert_eq!(status, 200, "{direct}");
    let (_, _, location) = submit(&server, "slow", X);
    let job = wait_finished(&server, &location.unwrap());
    assert_eq!((&job["status"], &job["error"]["status"]), (&json!("failed"), &json!(504)), "{job}");
    assert!(job["error"]["message"].as_str().unwrap().contains("150ms"), "{job}");

    let (_, _, location) = submit(&server, "fast", X);
    assert_eq!(wait_finished(&server, &location.unwrap())["status"], "succeeded");
    let metrics = crate::common::server::metrics(&server);
    // Only the job ran `fast`: its invocation is in the step and energy series.
    for needle in [
        "weir_requests_total{pipeline=\"fast\",status=\"202\"} 1",
        "weir_requests_total{pipeline=\"fast\",status=\"200\"} 1",
        "weir_requests_total{pipeline=\"slow\",status=\"504\"} 1",
        "weir_request_duration_seconds_count{pipeline=\"fast\"} 1",
        "weir_step_cpu_seconds_total{pipeline=\"fast\",step=\"scale\"}",
        "weir_energy_joules_total{pipeline=\"fast\",step=\"scale\",method=\"cpu-model\"}",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in:\n{metrics}");
    }
}

#[test]
fn a_second_server_on_a_locked_job_store_answers_503_or_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(dir.path(), "");
    let first = start_with(&manifest, &[], &[]);
    assert_eq!(submit(&first, "fast", X).0, 202);
    // Its own store configured (`[triggers.jobs] path`) and locked: the
    // second server does not start, and says why.
    let mut second = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["serve", manifest.to_str().unwrap(), "--listen", "127.0.0.1:0", "--no-auth"])
        .env("WEIR_CACHE_DIR", crate::common::shared_cache_dir())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            panic!("a second server on a locked, configured job store kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success() && stderr.contains("jobs.redb"), "{status}: {stderr}");

    // The default store (no section): the second server serves synchronous
    // requests and answers asynchronous ones 503, naming the way out.
    let default = dir.path().join("default.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&default, &text[..text.find("[triggers.jobs]").unwrap()]).unwrap();
    let home = tempfile::tempdir().unwrap();
    let env = [("XDG_DATA_HOME", home.path())];
    let a = start_with(&default, &[], &env);
    let b = start_with(&default, &[], &env);
    assert_eq!(submit(&a, "fast", X).0, 202);
    let (status, body, _) = submit(&b, "fast", X);
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().unwrap().contains("asynchronous invocations are off"), "{body}");
    assert_eq!(post(&b, "/v2/models/fast/infer", X).0, 200, "synchronous requests are served");
}
