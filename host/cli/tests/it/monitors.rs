//! Monitors on `weir serve` (examples/monitoring): components fed edges off
//! the critical path, a window at a time — tested on real data with shifts
//! the tests introduce: drift of the breast-cancer features against the
//! training rows, outliers among requests, and the ETA's drift judged given
//! the distance on ride-eta — each detecting the shift and not alarming on
//! held-out data at the stated rate; and a slow monitor shedding work,
//! counted, while callers are answered at full speed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::server::{get, metrics, post, start, Server};
use crate::common::{example_manifest, examples_dir, floats, trip};

fn manifest(dir: &Path, extra: &str) -> PathBuf {
    let path = example_manifest(dir, &["monitoring"], &["[triggers"], extra);
    let reference = examples_dir().join("monitoring/breast_cancer_reference.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("file = \"breast_cancer_reference.json\"", &format!("file = \"{}\"", reference.display()));
    std::fs::write(&path, text).unwrap();
    path
}

fn read(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(examples_dir().join(path)).unwrap()).unwrap()
}

fn diagnose(server: &Server, x: &[f64]) {
    let body = json!({"inputs": [{"name": "features", "shape": [1, 30], "datatype": "FP32", "data": x}]});
    let (status, answer) = post(server, "/v2/models/diagnosis/infer", &body.to_string());
    assert_eq!(status, 200, "{answer}");
}

/// The monitor's figures once it has run `windows` windows.
fn after_windows(server: &Server, pipeline: &str, monitor: &str, windows: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, all) = get(server, "/v2/monitors");
        assert_eq!(status, 200, "{all}");
        let found =
            all.as_array().unwrap().iter().find(|m| m["pipeline"] == pipeline && m["monitor"] == monitor).cloned();
        let found = found.unwrap_or_else(|| panic!("no monitor {pipeline}/{monitor} in {all}"));
        if found["windows"].as_u64().unwrap() >= windows {
            return found;
        }
        assert!(Instant::now() < deadline, "{monitor} ran {} of {windows} windows: {found}", found["windows"]);
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn alert(result: &Value) -> bool {
    assert!(result["error"].is_null(), "the monitor failed: {result}");
    result["outputs"]["alert"].as_array().unwrap().iter().any(|v| v.as_f64() == Some(1.0))
}

#[test]
fn feature_drift_is_detected_and_held_out_data_does_not_alarm() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&manifest(dir.path(), ""));
    let test = read("models/breast_cancer_test.json");
    let rows: Vec<Vec<f64>> = test["inputs"].as_array().unwrap().iter().map(floats).collect();
    // Ten windows of 40 distinct held-out rows: the 143 rows shuffled
    // (a fixed seed), three windows per shuffle.
    let held_out = 10;
    let mut seed = 7u64;
    let mut order: Vec<usize> = Vec::new();
    for _ in 0..held_out {
        if order.len() < 40 {
            order = (0..rows.len()).collect();
            for i in (1..order.len()).rev() {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                order.swap(i, (seed >> 33) as usize % (i + 1));
            }
        }
        for i in order.drain(..40) {
            diagnose(&server, &rows[i]);
        }
    }
    let figures = after_windows(&server, "diagnosis", "drift", held_out as u64);
    let false_alarms = figures["recent"].as_array().unwrap().iter().filter(|r| alert(r)).count();
    // Each window alarms with probability at most alpha = 0.05 on unshifted data.
    assert!(false_alarms <= 2, "{false_alarms} of {held_out} held-out windows alarmed: {figures}");
    // A new instrument reads sizes 15% high: the same rows, shifted.
    let shifted = 3;
    for w in 0..shifted {
        for k in 0..40 {
            let x: Vec<f64> = rows[(w * 40 + k) % rows.len()].iter().map(|v| v * 1.15).collect();
            diagnose(&server, &x);
        }
    }
    let figures = after_windows(&server, "diagnosis", "drift", (held_out + shifted) as u64);
    let recent = figures["recent"].as_array().unwrap();
    let last: Vec<&Value> = recent.iter().rev().take(shifted).collect();
    for result in &last {
        assert!(alert(result), "a shifted window did not alarm: {result}");
        let threshold = result["outputs"]["threshold"][0].as_f64().unwrap();
        assert!((threshold - 0.05 / 30.0).abs() < 1e-9, "Bonferroni over 30 features: {threshold}");
        assert!(result["outputs"]["min_p_value"][0].as_f64().unwrap() < threshold);
        assert_eq!(result["rows"], 40);
    }
    println!(
        "drift: {false_alarms}/{held_out} held-out windows alarmed; shifted windows: {:?} features drifted",
        last.iter().map(|r| r["outputs"]["drifted"][0].as_f64().unwrap()).collect::<Vec<_>>()
    );
    assert_eq!(figures["reference_rows"], 426);
    let text = metrics(&server);
    assert!(text.contains("weir_monitor_windows_total{pipeline=\"diagnosis\",monitor=\"drift\"} 13"), "{text}");
    assert!(text.contains("weir_monitor_value{pipeline=\"diagnosis\",monitor=\"drift\",output=\"threshold\"}"));
}

#[test]
fn outliers_are_scored_per_request_at_the_stated_rate() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&manifest(dir.path(), ""));
    let test = read("models/breast_cancer_test.json");
    let rows: Vec<Vec<f64>> = test["inputs"].as_array().unwrap().iter().map(floats).collect();
    for x in &rows {
        diagnose(&server, x);
    }
    let figures = after_windows(&server, "diagnosis", "outlier", rows.len() as u64);
    let held_out_alerts = figures["alerts"].as_u64().unwrap();
    let rate = held_out_alerts as f64 / rows.len() as f64;
    // alpha = 0.01 of the reference rows lie over the threshold; held-out rows may a little more.
    assert!(rate <= 0.05, "{held_out_alerts} of {} held-out rows flagged", rows.len());
    // Corrupted measurements: one feature read ten times too large.
    let corrupted = 40;
    for (k, x) in rows.iter().take(corrupted).enumerate() {
        let mut x = x.clone();
        x[k % 30] *= 10.0;
        diagnose(&server, &x);
    }
    let figures = after_windows(&server, "diagnosis", "outlier", (rows.len() + corrupted) as u64);
    let flagged = figures["alerts"].as_u64().unwrap() - held_out_alerts;
    println!(
        "outlier: {held_out_alerts}/{} held-out rows flagged ({:.1}%); {flagged}/{corrupted} corrupted",
        rows.len(),
        rate * 100.0
    );
    assert!(flagged as f64 >= 0.95 * corrupted as f64, "{flagged} of {corrupted} corrupted rows flagged");
    let last = figures["recent"].as_array().unwrap().last().unwrap().clone();
    assert!(last["outputs"]["score"][0].as_f64().unwrap() > last["outputs"]["threshold"][0].as_f64().unwrap());
}

#[test]
fn eta_drift_is_judged_given_the_distance() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&manifest(dir.path(), ""));
    let test = read("ride-eta/ride_test.json");
    let rows: Vec<Vec<f64>> = test["rows"].as_array().unwrap().iter().map(floats).collect();
    let ride = |row: &[f64]| {
        let (status, answer) = post(&server, "/v2/models/ride/infer", &trip(row));
        assert_eq!(status, 200, "{answer}");
    };
    // The reference: the first 100 trips.
    rows.iter().take(100).for_each(|r| ride(r));
    // 1: more trips of the same kind: no alarm, given the distance or not.
    rows.iter().skip(100).take(50).for_each(|r| ride(r));
    // 2: longer trips (x1.6): the ETAs drift, and the distance explains it.
    rows.iter().skip(150).take(50).for_each(|r| ride(&[r[0] * 1.6, r[1], r[2], r[3], r[4], r[5]]));
    // 3: the same trips in a jam: the ETAs drift, and the distance does not explain it.
    rows.iter().skip(100).take(50).for_each(|r| ride(&[r[0], r[1], (r[2] + 0.5).min(1.0), r[3], r[4], r[5]]));
    let figures = after_windows(&server, "ride", "eta-given-distance", 3);
    assert_eq!(figures["reference_rows"], 100);
    let recent = figures["recent"].as_array().unwrap();
    let p = |r: &Value, k: &str| r["outputs"][k][0].as_f64().unwrap();
    for (i, r) in recent.iter().enumerate() {
        println!(
            "window {}: p given distance {:.4}, p of the ETA alone {:.2e}",
            i + 1,
            p(r, "p_value"),
            p(r, "marginal_p_value")
        );
    }
    assert!(!alert(&recent[0]) && p(&recent[0], "marginal_p_value") > 0.05, "same kind of trips: {}", recent[0]);
    assert!(p(&recent[1], "marginal_p_value") < 0.05, "the ETAs alone drift with longer trips: {}", recent[1]);
    assert!(!alert(&recent[1]), "...but the distance explains it: {}", recent[1]);
    assert!(alert(&recent[2]), "a jam is not explained by the distance: {}", recent[2]);
}

#[test]
fn a_slow_monitor_sheds_work_and_never_slows_callers() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = weir_tests::HOSTILE;
    let extra = format!(
        "\n[components.slow]\nsource = \"{hostile}\"\n\n[[pipelines.diagnosis.monitors]]\nname = \"slow\"\n\
         component = \"slow\"\ninputs = [\"input.features\"]\nwindow = 1\nqueue = 2\nreference = {{ first = 1 }}\n\
         config = {{ mode = \"sleep\", ms = 300 }}\n"
    );
    let server = start(&manifest(dir.path(), &extra));
    let x = vec![10.0; 30];
    let started = Instant::now();
    let requests = 30;
    for _ in 0..requests {
        diagnose(&server, &x);
    }
    let took = started.elapsed();
    // 30 windows of a 300-ms monitor would take 9 s: callers never wait for it.
    assert!(took < Duration::from_secs(6), "30 requests took {took:?}");
    let (_, all) = get(&server, "/v2/monitors");
    let slow = all.as_array().unwrap().iter().find(|m| m["monitor"] == "slow").unwrap().clone();
    let dropped = slow["invocations_dropped"].as_u64().unwrap();
    assert!(dropped > 0, "a full queue sheds: {slow}");
    assert!(slow["windows"].as_u64().unwrap() < requests, "{slow}");
    let text = metrics(&server);
    assert!(
        text.contains(&format!("weir_monitor_dropped_total{{pipeline=\"diagnosis\",monitor=\"slow\"}} {dropped}"))
            || text.contains("weir_monitor_dropped_total{pipeline=\"diagnosis\",monitor=\"slow\"}")
    );
    println!("slow monitor: {requests} requests in {took:?}, {dropped} invocations shed");
}

#[test]
fn bad_monitor_declarations_are_refused_with_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "inputs = [\"features=input.features\"]",
            "inputs = [\"input.nothing\"]",
            "the pipeline has no input `nothing`",
        ),
        ("inputs = [\"features=input.features\"]", "inputs = [\"nostep.x\"]", "no step named `nostep`"),
        ("inputs = [\"features=input.features\"]", "inputs = []", "needs at least one edge"),
        ("window = 40", "window = 0", "window: must be between 1 and 100000"),
        // Monitor results are shown to `status` callers: a sensitive edge may not feed them.
        (
            "watched for drift and outliers\"",
            "watched for drift and outliers\"\nsensitive = [\"input.features\"]",
            "`input.features` is sensitive",
        ),
        ("component = \"drift\"", "component = \"nothing\"", "no component named `nothing`"),
        (
            "reference = { file = \"breast_cancer_reference.json\" }\nconfig = { alpha = 0.05 }",
            "reference = { first = 0 }",
            "reference.first",
        ),
    ];
    for (from, to, message) in cases {
        let path = example_manifest(dir.path(), &["monitoring"], &["[triggers"], "");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{from}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let err = weir_manifest::parse(&path, &text).expect_err(to).to_string();
        assert!(err.contains(message) && err.contains("monitors"), "{to}: want `{message}` in {err}");
        assert!(err.contains("weir.toml:"), "located: {err}");
    }
    // A reference file that is not there stops the server at start, with the monitor named.
    let path = example_manifest(dir.path(), &["monitoring"], &["[triggers"], "");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["serve", path.to_str().unwrap(), "--listen", "127.0.0.1:0", "--no-auth"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("monitor `drift`: reference file") && err.contains("breast_cancer_reference.json"), "{err}");
}

/// With `[provenance]`, every window's result is kept as a record: read
/// back newest first, and still there after the server restarts.
#[test]
fn monitor_results_are_kept_as_records_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let provenance = format!("[provenance]\npath = \"{}\"\n", dir.path().join("records.redb").display());
    let path = manifest(dir.path(), &provenance);
    let test = read("models/breast_cancer_test.json");
    let rows: Vec<Vec<f64>> = test["inputs"].as_array().unwrap().iter().map(floats).collect();
    let server = start(&path);
    for x in rows.iter().take(5) {
        diagnose(&server, x);
    }
    let figures = after_windows(&server, "diagnosis", "outlier", 5);
    let (status, kept) = get(&server, "/v2/monitors/diagnosis/outlier/results?limit=3");
    assert_eq!(status, 200, "{kept}");
    let kept = kept.as_array().unwrap().clone();
    assert_eq!(kept.len(), 3, "{kept:?}");
    let recent = figures["recent"].as_array().unwrap();
    assert_eq!(kept[0], recent[recent.len() - 1], "newest first, as the board has it");
    assert!(kept[0]["unix_ms"].as_u64() >= kept[1]["unix_ms"].as_u64());
    // Mistakes are named.
    let (status, answer) = get(&server, "/v2/monitors/diagnosis/nothing/results");
    assert_eq!(status, 404, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("no monitor `nothing`"), "{answer}");
    let (status, _) = get(&server, "/v2/monitors/diagnosis/outlier/results?limit=0");
    assert_eq!(status, 400);
    drop(server);
    // A new process on the same store reads what the old one found.
    let server = start(&path);
    let (status, again) = get(&server, "/v2/monitors/diagnosis/outlier/results");
    assert_eq!(status, 200, "{again}");
    let again = again.as_array().unwrap();
    assert_eq!(again.len(), 5, "{again:?}");
    assert_eq!(again[..3], kept[..]);
    // Without provenance there is nothing kept, and the answer says why.
    std::fs::create_dir_all(dir.path().join("bare")).unwrap();
    let bare = start(&manifest(&dir.path().join("bare"), ""));
    let (status, answer) = get(&bare, "/v2/monitors/diagnosis/outlier/results");
    assert_eq!(status, 404, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("provenance is off"), "{answer}");
}
