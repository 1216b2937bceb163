//! Feedback on `weir serve`: true outcomes attached to recorded
//! invocations, scored against what each answered, and the live quality per
//! pipeline and experiment variant — checked against the answers the test
//! itself received; every malformed or misplaced feedback refused plainly.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::common::server::{get, metrics, post, start, Server};
use crate::common::{example_manifest, examples_dir};

fn manifest(dir: &Path, extra: &str) -> PathBuf {
    let provenance = format!("[provenance]\npath = \"{}\"\nkeep_tensors = true\n", dir.join("records.redb").display());
    example_manifest(dir, &["digits"], &["[triggers"], &format!("{provenance}{extra}"))
}

fn digits_test() -> Value {
    serde_json::from_str(&std::fs::read_to_string(examples_dir().join("models/digits_test.json")).unwrap()).unwrap()
}

/// Classify held-out digit `i`: (invocation id, the label answered).
fn classify(server: &Server, test: &Value, i: usize) -> (String, i64) {
    let pixels: Vec<f64> =
        test["inputs"][i].as_array().unwrap().iter().map(|v| (v.as_f64().unwrap() * 16.0).round()).collect();
    let body = json!({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": pixels}]});
    let (status, answer) = post(server, "/v2/models/digits/infer", &body.to_string());
    assert_eq!(status, 200, "{answer}");
    let label = answer["outputs"].as_array().unwrap().iter().find(|o| o["name"] == "label").unwrap()["data"][0]
        .as_i64()
        .unwrap();
    (answer["parameters"]["receipt"]["invocation_id"].as_str().unwrap().to_string(), label)
}

fn truth(label: i64) -> String {
    json!({"outputs": [{"name": "label", "shape": [1], "datatype": "INT64", "data": [label]}]}).to_string()
}

#[test]
fn feedback_scores_each_answer_and_the_live_accuracy_is_what_callers_got() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&manifest(dir.path(), ""));
    let test = digits_test();
    let mut right = 0;
    let n = 60;
    let mut ids = Vec::new();
    for i in 0..n {
        let (id, label) = classify(&server, &test, i);
        let true_label = test["labels"][i].as_i64().unwrap();
        right += usize::from(label == true_label);
        let (status, given) = post(&server, &format!("/v2/invocations/{id}/feedback"), &truth(true_label));
        assert_eq!(status, 200, "{given}");
        assert_eq!(given["feedback"]["scores"][0]["correct"], u64::from(label == true_label), "{given}");
        ids.push(id);
    }
    let (status, quality) = get(&server, "/v2/quality");
    assert_eq!(status, 200);
    let label = quality.as_array().unwrap().iter().find(|q| q["output"] == "label").expect("the label's quality");
    assert_eq!((label["pipeline"].as_str(), label["metric"].as_str()), (Some("digits"), Some("accuracy")));
    assert_eq!(label["total"]["feedback"], n);
    let accuracy = label["total"]["value"].as_f64().unwrap();
    assert!((accuracy - right as f64 / n as f64).abs() < 1e-12, "{accuracy} vs {right}/{n} the test counted");
    assert_eq!(label["last_hour"]["feedback"], n, "all of it within the last hour");
    assert!(accuracy > 0.9, "the digits model is ~98% accurate held out: {accuracy}");
    let text = metrics(&server);
    let line = format!("weir_feedback_correct_total{{pipeline=\"digits\",variant=\"\",output=\"label\"}} {right}");
    assert!(text.contains(&line), "no `{line}`");
    let eof = text.find("# EOF").unwrap_or(text.len());
    assert!(text.find("weir_feedback_total").unwrap() < eof, "families come before # EOF");
    // The record keeps it; feedback is given once.
    let (_, record) = get(&server, &format!("/v2/invocations/{}", ids[0]));
    assert_eq!(record["feedback"]["truth"][0]["name"], "label", "{record}");
    let (status, again) = post(&server, &format!("/v2/invocations/{}/feedback", ids[0]), &truth(1));
    assert_eq!(status, 409, "{again}");
    assert!(again["error"].as_str().unwrap().contains("already has feedback"), "{again}");
}

#[test]
fn bad_feedback_is_refused_with_what_was_wrong_and_a_batch_answers_each_item() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&manifest(dir.path(), ""));
    let test = digits_test();
    let (id, _) = classify(&server, &test, 0);
    let path = format!("/v2/invocations/{id}/feedback");
    let cases: &[(&str, String, u16, &str)] = &[
        (
            "unknown output",
            json!({"outputs": [{"name": "nope", "shape": [1], "datatype": "INT64", "data": [1]}]}).to_string(),
            400,
            "has no output `nope`",
        ),
        (
            "wrong length",
            json!({"outputs": [{"name": "label", "shape": [2], "datatype": "INT64", "data": [1, 2]}]}).to_string(),
            400,
            "the truth has 2 elements",
        ),
        (
            "data and shape disagree",
            json!({"outputs": [{"name": "label", "shape": [3], "datatype": "INT64", "data": [1]}]}).to_string(),
            400,
            "label",
        ),
        ("no outputs", json!({"outputs": []}).to_string(), 400, "names no output"),
        ("not feedback", "{\"inputs\": []}".into(), 400, "send {\"outputs\""),
        ("not JSON", "label=3".into(), 400, "not feedback JSON"),
    ];
    for (what, body, status, expected) in cases {
        let (got, answer) = post(&server, &path, body);
        assert_eq!(got, *status, "{what}: {answer}");
        assert!(answer["error"].as_str().unwrap_or_default().contains(expected), "{what}: {answer}");
    }
    let (status, answer) = post(&server, "/v2/invocations/0123456789abcdef0123456789abcdef/feedback", &truth(1));
    assert_eq!(status, 404, "{answer}");
    // A batch: one good, one unknown, one malformed; each answered on its own.
    let (other, _) = classify(&server, &test, 1);
    let batch = json!({"feedback": [
        {"id": other, "outputs": [{"name": "label", "shape": [1], "datatype": "INT64", "data": [test["labels"][1]]}]},
        {"id": "0123456789abcdef0123456789abcdef", "outputs": [{"name": "label", "shape": [1], "datatype": "INT64", "data": [1]}]},
        {"id": id, "outputs": [{"name": "label", "shape": [1], "datatype": "FP32", "data": ["x"]}]},
    ]});
    let (status, answer) = post(&server, "/v2/feedback", &batch.to_string());
    assert_eq!(status, 200, "{answer}");
    let statuses: Vec<u64> =
        answer["results"].as_array().unwrap().iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [200, 404, 400], "{answer}");
    let too_many: Vec<Value> = (0..1001).map(|_| json!({"id": "x", "outputs": []})).collect();
    let (status, answer) = post(&server, "/v2/feedback", &json!({ "feedback": too_many }).to_string());
    assert_eq!(status, 413, "{answer}");
    // Without [provenance] there is nothing to attach feedback to.
    let plain = start(&example_manifest(dir.path(), &["digits"], &["[triggers"], ""));
    let (status, answer) = post(&plain, &path, &truth(1));
    assert_eq!(status, 404);
    assert!(answer["error"].as_str().unwrap().contains("provenance is off"), "{answer}");
}

#[test]
fn quality_is_kept_per_experiment_variant() {
    let dir = tempfile::tempdir().unwrap();
    // A challenger that runs the same code as a version of its own: it answers the same.
    let split = "[experiments.half]\npipeline = \"digits\"\nmode = \"split\"\n[[experiments.half.variants]]\n\
                 name = \"same\"\ncomponents = { top3 = \"topk\" }\nweight = 50\n";
    let server = start(&manifest(dir.path(), split));
    let test = digits_test();
    for i in 0..40 {
        let (id, _) = classify(&server, &test, i);
        let (status, given) =
            post(&server, &format!("/v2/invocations/{id}/feedback"), &truth(test["labels"][i].as_i64().unwrap()));
        assert_eq!(status, 200, "{given}");
    }
    let (_, quality) = get(&server, "/v2/quality");
    let variants: Vec<&str> = quality.as_array().unwrap().iter().map(|q| q["variant"].as_str().unwrap()).collect();
    assert!(variants.contains(&"half/champion") && variants.contains(&"half/same"), "{quality:#}");
    let total: u64 = quality.as_array().unwrap().iter().map(|q| q["total"]["feedback"].as_u64().unwrap()).sum();
    assert_eq!(total, 40);
}

#[test]
fn a_canary_gate_judges_the_challenger_on_feedback() {
    let dir = tempfile::tempdir().unwrap();
    let canary = "[experiments.c]\npipeline = \"digits\"\nmode = \"canary\"\n[[experiments.c.variants]]\n\
                  name = \"v2\"\ncomponents = { top3 = \"topk\" }\n[experiments.c.gate]\nstages = [50, 100]\n\
                  min_requests = 10\nfeedback = { output = \"label\", min_accuracy = 0.9, min_feedback = 10 }\n";
    let server = start(&manifest(dir.path(), canary));
    let test = digits_test();
    // Send digits, and the truth for those the challenger answered (`lie`: a wrong label).
    let drive = |lie: bool| {
        for i in 0..400 {
            let (_, status) = get(&server, "/v2/experiments/c");
            if status["phase"] != "running" {
                return status;
            }
            let pixels: Vec<f64> = test["inputs"][i % 450]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| (v.as_f64().unwrap() * 16.0).round())
                .collect();
            let body = json!({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": pixels}]});
            let (_, answer) = post(&server, "/v2/models/digits/infer", &body.to_string());
            let receipt = &answer["parameters"]["receipt"];
            if receipt["variant"]["variant"] == "v2" {
                let label = test["labels"][i % 450].as_i64().unwrap();
                let label = if lie { (label + 1) % 10 } else { label };
                let id = receipt["invocation_id"].as_str().unwrap();
                assert_eq!(post(&server, &format!("/v2/invocations/{id}/feedback"), &truth(label)).0, 200);
            }
        }
        panic!("the gate never decided: {:#}", get(&server, "/v2/experiments/c").1);
    };
    let status = drive(false);
    assert_eq!(status["phase"], "promoted", "{status:#}");
    let last = status["decisions"].as_array().unwrap().last().unwrap().clone();
    assert!(last["figures"]["feedback"].as_u64().unwrap() >= 10, "{last}");
    assert!(last["figures"]["feedback_value"].as_f64().unwrap() >= 0.9, "{last}");
    assert!(status["gate"]["criteria"].to_string().contains("accuracy on `label` from feedback >= 0.9"), "{status}");
    // Started again, with feedback that says the challenger is wrong.
    assert_eq!(post(&server, "/v2/experiments/c/start", "").0, 200);
    let status = drive(true);
    assert_eq!(status["phase"], "rolled-back", "{status:#}");
    let last = status["decisions"].as_array().unwrap().last().unwrap();
    assert!(last["reason"].as_str().unwrap().contains("accuracy on `label` from feedback 0.0000 < 0.9"), "{last}");
}

#[test]
fn exported_edges_and_feedback_train_a_model_and_sensitive_edges_stay_out() {
    let dir = tempfile::tempdir().unwrap();
    let provenance =
        format!("[provenance]\npath = \"{}\"\nkeep_tensors = true\n", dir.path().join("records.redb").display());
    let manifest = example_manifest(dir.path(), &["ride-eta"], &["[triggers"], &provenance);
    // The driver's state is personal: sensitive, so only its keyed hash is recorded.
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("[pipelines.ride]\n", "[pipelines.ride]\nsensitive = [\"input.driver\"]\n");
    std::fs::write(&manifest, text).unwrap();
    let server = start(&manifest);
    let test: Value =
        serde_json::from_str(&std::fs::read_to_string(examples_dir().join("ride-eta/ride_test.json")).unwrap())
            .unwrap();
    let n = 160;
    for i in 0..n {
        let r: Vec<f64> = test["rows"][i].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let body = json!({"inputs": [
            {"name": "distance_km", "shape": [1], "datatype": "FP32", "data": [r[0]]},
            {"name": "hour", "shape": [1], "datatype": "FP32", "data": [r[1]]},
            {"name": "congestion", "shape": [1], "datatype": "FP32", "data": [r[2]]},
            {"name": "driver", "shape": [1, 3], "datatype": "FP32", "data": [[r[3], r[4], r[5]]]}
        ]});
        let (status, answer) = post(&server, "/v2/models/ride/infer", &body.to_string());
        assert_eq!(status, 200, "{answer}");
        // Feedback for all but the last 10: those are exported only without --with-feedback.
        if i < n - 10 {
            let id = answer["parameters"]["receipt"]["invocation_id"].as_str().unwrap();
            let eta = test["eta_minutes"][i].as_f64().unwrap();
            let truth =
                json!({"outputs": [{"name": "eta_minutes", "shape": [1, 1], "datatype": "FP32", "data": [[eta]]}]});
            assert_eq!(post(&server, &format!("/v2/invocations/{id}/feedback"), &truth.to_string()).0, 200);
        }
    }
    drop(server); // the store has one user
    let out = dir.path().join("rides.jsonl");
    let exported = crate::common::weir(
        &["export", manifest.to_str().unwrap(), "--with-feedback", "--out", out.to_str().unwrap()],
        None,
    );
    let said = String::from_utf8_lossy(&exported.stderr).to_string();
    assert!(exported.status.success(), "{said}");
    assert!(said.contains(&format!("exported {} invocations of ride", n - 10)), "{said}");
    assert!(said.contains("10 without feedback") && said.contains(&format!("{} sensitive values", n - 10)), "{said}");
    let rows: Vec<Value> =
        std::fs::read_to_string(&out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), n - 10);
    assert!(rows.iter().all(|r| r["input.driver"].is_null()), "a sensitive edge is never exported");
    assert!(rows.iter().all(|r| r["feedback.eta_minutes"].is_array() && r["output.eta_minutes"].is_array()));
    // Train on the export: a least-squares ETA model from distance, hour and
    // congestion, fitted on the first 120 rows and tested on the rest.
    let Some(python) = weir_tests::services::tritonclient_python() else { return };
    let script = r#"
import json, sys
import numpy as np
rows = [json.loads(l) for l in open(sys.argv[1])]
flat = lambda v: float(np.ravel(v)[0])
x = np.array([[flat(r["input.distance_km"]), flat(r["input.congestion"]), flat(r["input.distance_km"]) * flat(r["input.congestion"]), 1.0] for r in rows])
y = np.array([flat(r["feedback.eta_minutes"]) for r in rows])
w, *_ = np.linalg.lstsq(x[:120], y[:120], rcond=None)
model = float(np.mean(np.abs(x[120:] @ w - y[120:])))
mean = float(np.mean(np.abs(np.mean(y[:120]) - y[120:])))
print(json.dumps({"mae": model, "mean_baseline_mae": mean, "rows": len(rows)}))
"#;
    let trained = std::process::Command::new(python).args(["-c", script, out.to_str().unwrap()]).output().unwrap();
    assert!(trained.status.success(), "{}", String::from_utf8_lossy(&trained.stderr));
    let figures: Value = serde_json::from_slice(&trained.stdout).unwrap();
    println!("a model trained on the export: {figures}");
    let (mae, baseline) = (figures["mae"].as_f64().unwrap(), figures["mean_baseline_mae"].as_f64().unwrap());
    assert!(mae < 0.6 * baseline, "the exported data teaches something: MAE {mae} vs {baseline} predicting the mean");
    // The same export as Parquet, read with pyarrow: the same rows, the same model.
    let Some(python) = weir_tests::services::data_python() else { return };
    let parquet = dir.path().join("rides.parquet");
    let exported = crate::common::weir(
        &["export", manifest.to_str().unwrap(), "--with-feedback", "--out", parquet.to_str().unwrap()],
        None,
    );
    assert!(exported.status.success(), "{}", String::from_utf8_lossy(&exported.stderr));
    let script = r#"
import json, sys
import numpy as np
import pyarrow.parquet as pq
table = pq.read_table(sys.argv[1])
rows = table.to_pydict()
flat = lambda v: float(np.ravel(v)[0])
d, c = [flat(v) for v in rows["input.distance_km"]], [flat(v) for v in rows["input.congestion"]]
x = np.array([[a, b, a * b, 1.0] for a, b in zip(d, c)])
y = np.array([flat(v) for v in rows["feedback.eta_minutes"]])
w, *_ = np.linalg.lstsq(x[:120], y[:120], rcond=None)
print(json.dumps({"mae": float(np.mean(np.abs(x[120:] @ w - y[120:]))), "rows": table.num_rows,
                  "driver_nulls": rows["input.driver"].count(None),
                  "types": {f.name: str(f.type) for f in table.schema}}))
"#;
    let read = std::process::Command::new(python).args(["-c", script, parquet.to_str().unwrap()]).output().unwrap();
    assert!(read.status.success(), "{}", String::from_utf8_lossy(&read.stderr));
    let parquet_figures: Value = serde_json::from_slice(&read.stdout).unwrap();
    println!("the same from Parquet: {parquet_figures}");
    assert_eq!(parquet_figures["rows"], n - 10);
    assert_eq!(parquet_figures["driver_nulls"], n - 10, "a sensitive edge is null in Parquet too");
    assert_eq!(parquet_figures["types"]["input.distance_km"], "double", "one element a row: a plain column");
    assert_eq!(parquet_figures["types"]["unix_ms"], "int64");
    let same = (parquet_figures["mae"].as_f64().unwrap() - mae).abs();
    assert!(same < 1e-9, "the Parquet rows are the JSON rows: {parquet_figures} vs {figures}");
}
