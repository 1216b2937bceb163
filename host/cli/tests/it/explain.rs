//! Explanations and root-cause walks on `weir serve`, checked against
//! figures the tests compute themselves: the breast-cancer model's exact
//! linear attributions (read from the ONNX file by
//! examples/diagnosis/linear.py), the recorded baseline from the requests
//! the test sent, and on ride-eta, a fare made odd by one extreme input
//! traced back to that input.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::common::server::{create_key, get, post, request, start, start_with, Server};
use crate::common::{example_manifest, examples_dir, floats, trip};

fn read(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(examples_dir().join(path)).unwrap()).unwrap()
}

fn diagnosis(dir: &Path, extra: &str) -> PathBuf {
    let provenance = format!("[provenance]\npath = \"{}\"\nkeep_tensors = true\n", dir.join("records.redb").display());
    example_manifest(dir, &["diagnosis"], &["[triggers", "[provenance"], &format!("{provenance}{extra}"))
}

fn features(values: &[f64]) -> Value {
    json!([{"name": "features", "shape": [1, 30], "datatype": "FP32", "data": values}])
}

/// The exact Shapley values of the log-odds against `baseline`: w_i (x_i - b_i), in float32 inputs.
fn exact(weights: &[f64], x: &[f64], baseline: &[f64]) -> Vec<f64> {
    (0..30).map(|i| weights[i] * (x[i] as f32 as f64 - baseline[i] as f32 as f64)).collect()
}

/// Attributions by feature index (`features[0,i]` is named `features[i]`).
fn by_feature(explanation: &Value) -> Vec<f64> {
    let mut out = vec![0.0; 30];
    for a in explanation["attributions"].as_array().unwrap() {
        let name = a["feature"].as_str().unwrap();
        let i: usize = name.trim_start_matches("features[").trim_end_matches(']').parse().unwrap();
        out[i] = a["attribution"].as_f64().unwrap();
    }
    out
}

fn max_error(got: &[f64], want: &[f64]) -> f64 {
    got.iter().zip(want).map(|(g, w)| (g - w).abs()).fold(0.0, f64::max)
}

/// Held-out samples whose probability is not saturated in float32 (the
/// log-odds of a probability of exactly 1.0 cannot be read back).
fn moderate(linear: &Value, test: &Value) -> Vec<Vec<f64>> {
    let (w, b) = (floats(&linear["weights"]), linear["intercept"].as_f64().unwrap());
    test["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(floats)
        .filter(|x| {
            let logit: f64 = x.iter().zip(&w).map(|(x, w)| x * w).sum::<f64>() + b;
            logit.abs() < 3.0
        })
        .collect()
}

#[test]
fn breast_cancer_attributions_match_the_models_exact_linear_ones() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&diagnosis(dir.path(), ""));
    let linear = read("diagnosis/breast_cancer_linear.json");
    let test = read("models/breast_cancer_test.json");
    let (weights, mean) = (floats(&linear["weights"]), floats(&linear["training_mean"]));
    let samples = moderate(&linear, &test);
    assert!(samples.len() >= 5, "{} moderate samples", samples.len());
    let mut worst: f64 = 0.0;
    for x in samples.iter().take(5) {
        let want = exact(&weights, x, &mean);
        let scale: f64 = want.iter().map(|v| v.abs()).sum();
        let body = json!({"inputs": features(x), "target": "probabilities", "index": 1, "link": "logit",
                          "baseline": features(&mean), "method": "kernel_shap", "budget": 400});
        let (status, explanation) = post(&server, "/v2/models/diagnosis/explain", &body.to_string());
        assert_eq!(status, 200, "{explanation}");
        assert_eq!(explanation["method"], "kernel_shap");
        assert!(explanation["evaluations"].as_u64().unwrap() <= 400, "{explanation}");
        assert!(explanation["cpu_us"].as_u64().unwrap() > 0);
        let got = by_feature(&explanation);
        let error = max_error(&got, &want);
        worst = worst.max(error / scale);
        assert!(error <= 0.01 * scale + 0.02, "max error {error:.4} over Σ|φ| {scale:.3}: {got:?} vs {want:?}");
        // Efficiency: they sum to the change of the log-odds.
        let change = explanation["value"].as_f64().unwrap() - explanation["baseline_value"].as_f64().unwrap();
        assert!((got.iter().sum::<f64>() - change).abs() < 1e-6, "{explanation}");
        // The largest is first.
        let first = explanation["attributions"][0]["attribution"].as_f64().unwrap().abs();
        assert!(got.iter().all(|g| g.abs() <= first + 1e-12));
    }
    println!("kernel_shap, 400 evaluations: worst error {:.2e} of Σ|φ| over 5 samples", worst);
    // Permutation sampling: an estimate with standard errors, near the exact values.
    let x = &samples[0];
    let body = json!({"inputs": features(x), "target": "output.probabilities", "index": 1, "link": "logit",
                      "baseline": features(&mean), "method": "permutation", "budget": 1200});
    let (status, explanation) = post(&server, "/v2/models/diagnosis/explain", &body.to_string());
    assert_eq!(status, 200, "{explanation}");
    let want = exact(&weights, x, &mean);
    let scale: f64 = want.iter().map(|v| v.abs()).sum();
    let error = max_error(&by_feature(&explanation), &want);
    assert!(error <= 0.02 * scale + 0.02, "permutation: {error} over {scale}");
    assert!(explanation["attributions"][0]["std_error"].is_number(), "{explanation}");
}

#[test]
fn a_recorded_invocation_is_explained_against_the_mean_of_recorded_requests() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&diagnosis(dir.path(), ""));
    let linear = read("diagnosis/breast_cancer_linear.json");
    let test = read("models/breast_cancer_test.json");
    let weights = floats(&linear["weights"]);
    let samples = moderate(&linear, &test);
    let mut ids = Vec::new();
    for x in samples.iter().take(12) {
        let body = json!({"inputs": features(x)});
        let (status, answer) = post(&server, "/v2/models/diagnosis/infer", &body.to_string());
        assert_eq!(status, 200, "{answer}");
        ids.push(answer["parameters"]["receipt"]["invocation_id"].as_str().unwrap().to_string());
    }
    // The baseline the test computes from what it sent, in float32.
    let n = ids.len() as f64;
    let mean: Vec<f64> =
        (0..30).map(|i| samples.iter().take(12).map(|x| x[i] as f32 as f64).sum::<f64>() / n).collect();
    let body = json!({"invocation_id": ids[3], "target": "probabilities", "index": 1, "link": "logit",
                      "method": "kernel_shap", "budget": 400});
    let (status, explanation) = post(&server, "/v2/models/diagnosis/explain", &body.to_string());
    assert_eq!(status, 200, "{explanation}");
    let want = exact(&weights, &samples[3], &mean);
    let scale: f64 = want.iter().map(|v| v.abs()).sum();
    let error = max_error(&by_feature(&explanation), &want);
    assert!(error <= 0.01 * scale + 0.02, "recorded baseline: {error} over {scale}");
    let baselines: Vec<f64> =
        explanation["attributions"].as_array().unwrap().iter().map(|a| a["baseline"].as_f64().unwrap()).collect();
    assert!(!baselines.is_empty());
    // The explanation was not an invocation: no new records.
    let (_, records) = get(&server, "/v2/invocations?pipeline=diagnosis&limit=100");
    if let Some(list) = records.as_array() {
        assert_eq!(list.len(), ids.len(), "explanations leave no records");
    }
}

#[test]
fn bad_explain_requests_are_refused_with_what_was_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&diagnosis(dir.path(), ""));
    let x = vec![1.0; 30];
    let ok = |extra: Value| {
        let mut body = json!({"inputs": features(&x), "target": "probabilities", "index": 1, "baseline": "zeros"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body.to_string()
    };
    let cases: Vec<(String, u16, &str)> = vec![
        (ok(json!({"target": "nonexistent"})), 404, "no edge `output.nonexistent`"),
        (ok(json!({"target": "classify.nothing"})), 400, "produced no tensor `nothing`"),
        (ok(json!({"index": null})), 400, "say which with `index`"),
        (ok(json!({"index": 7})), 400, "index 7 is outside"),
        (ok(json!({"budget": 0})), 400, "at least 1"),
        (ok(json!({"budget": 100000})), 413, "over the limit"),
        (ok(json!({"method": "exact"})), 400, "exact Shapley values of 30 features"),
        (ok(json!({"method": "kernel_shap", "budget": 10})), 400, "too small"),
        (ok(json!({"baseline": "average"})), 400, "is not \"recorded\""),
        (ok(json!({"invocation_id": "abc"})), 400, "exactly one of"),
        (ok(json!({"colour": "red"})), 400, "unknown field"),
        (ok(json!({"baseline": 7})), 400, "is not \"recorded\""),
        (
            ok(json!({"baseline": [{"name": "features", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]})),
            400,
            "input `features` of the baseline is FP32 [1, 2]",
        ),
        (
            json!({"inputs": [{"name": "features", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}],
                "target": "probabilities", "index": 1, "baseline": "zeros"})
            .to_string(),
            400,
            "takes FP32 [-1, 30]",
        ),
        ("{not json".into(), 400, "not an explain request"),
        // A batch of ten rows is 300 features: refused before any is named or evaluated.
        (
            json!({"inputs": [{"name": "features", "shape": [10, 30], "datatype": "FP32", "data": vec![1.0; 300]}],
                "target": "probabilities", "index": 1, "baseline": "zeros"})
            .to_string(),
            413,
            "300 elements differ from the baseline, over the limit of 256",
        ),
        // The server's max_body holds for explanations as for inferences.
        (format!("{{\"target\":\"probabilities\",\"pad\":\"{}\"}}", "x".repeat(9 << 20)), 413, "max_body"),
    ];
    for (body, status, message) in cases {
        let (got, answer) = post(&server, "/v2/models/diagnosis/explain", &body);
        assert_eq!(got, status, "{body}: {answer}");
        assert!(answer["error"].as_str().unwrap_or("").contains(message), "{body}: want `{message}` in {answer}");
    }
    let (status, answer) = post(&server, "/v2/models/nothing/explain", &ok(json!({})));
    assert_eq!(status, 404, "{answer}");
    // No records yet: the default baseline cannot be had, and says how to give one.
    let body = json!({"inputs": features(&x), "target": "probabilities", "index": 1});
    let (status, answer) = post(&server, "/v2/models/diagnosis/explain", &body.to_string());
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("send `baseline`"), "{answer}");
    // The server serves on.
    let (status, _) = post(&server, "/v2/models/diagnosis/infer", &json!({"inputs": features(&x)}).to_string());
    assert_eq!(status, 200);
}

fn ride(dir: &Path, extra: &str) -> PathBuf {
    let provenance = format!("[provenance]\npath = \"{}\"\nkeep_tensors = true\n", dir.join("records.redb").display());
    example_manifest(dir, &["ride-eta"], &["[triggers"], &format!("{provenance}{extra}"))
}

/// 40 ordinary trips recorded, then another with the congestion index at
/// its maximum: that invocation's id.
fn odd_trip(server: &Server) -> String {
    let test = read("ride-eta/ride_test.json");
    let rows: Vec<Vec<f64>> = test["rows"].as_array().unwrap().iter().map(floats).collect();
    for row in rows.iter().take(40) {
        let (status, answer) = post(server, "/v2/models/ride/infer", &trip(row));
        assert_eq!(status, 200, "{answer}");
    }
    // An ordinary trip of the held-out set, but in a jam.
    let mut odd = rows[40].clone();
    odd[2] = 1.0;
    let (status, answer) = post(server, "/v2/models/ride/infer", &trip(&odd));
    assert_eq!(status, 200, "{answer}");
    answer["parameters"]["receipt"]["invocation_id"].as_str().unwrap().to_string()
}

/// Explanations and walks are charged to the caller's budget, one row per
/// sandboxed step run: a walk too, and work that failed part way.
#[test]
fn explanations_and_walks_are_charged_to_the_callers_budget() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    let keys_arg = keys.to_str().unwrap();
    let recorder = create_key(&keys, "recorder", &["invoke:ride", "records:read"]);
    let analyst = {
        let audit = dir.path().join("audit.log");
        let args = ["keys", "--keys", keys_arg, "--audit-log", audit.to_str().unwrap(), "create", "--name", "analyst"];
        let scopes = ["--scope", "invoke:ride", "--scope", "records:read", "--budget", "400"];
        let out = crate::common::weir(&[&args[..], &scopes[..]].concat(), None);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let server = start_with(&ride(dir.path(), ""), &["--keys", keys_arg], &[]);
    let test = read("ride-eta/ride_test.json");
    let rows: Vec<Vec<f64>> = test["rows"].as_array().unwrap().iter().map(floats).collect();
    let mut id = String::new();
    for row in rows.iter().take(20) {
        let (status, answer) = request(&server, "POST", "/v2/models/ride/infer", Some(&recorder), Some(&trip(row)));
        assert_eq!(status, 200, "{answer}");
        id = answer["parameters"]["receipt"]["invocation_id"].as_str().unwrap().to_string();
    }
    // A walk of 3 steps costs well over one row; the analyst's budget of 400 takes a few.
    let path = format!("/v2/invocations/{id}/rca?output=fare&budget=200");
    let mut charged = 0;
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let (status, answer) = request(&server, "GET", &path, Some(&analyst), None);
        statuses.push(status);
        if status != 200 {
            assert_eq!(status, 429, "{answer}");
            assert!(answer["error"].as_str().unwrap().contains("is over its budget"), "{answer}");
            break;
        }
        charged += answer["step_runs"].as_u64().unwrap();
    }
    assert_eq!(statuses.last(), Some(&429), "walks are charged: {statuses:?} after {charged} step runs");
    assert!(charged >= 400, "refused only once the budget was spent: {charged}");
    // Another caller's budget is untouched.
    let (status, _) = request(&server, "GET", &path, Some(&recorder), None);
    assert_eq!(status, 200);
}

#[test]
fn an_odd_fare_is_walked_back_to_the_extreme_congestion() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&ride(dir.path(), ""));
    let id = odd_trip(&server);
    let (status, rca) = get(&server, &format!("/v2/invocations/{id}/rca?output=fare"));
    assert_eq!(status, 200, "{rca}");
    println!("{}", serde_json::to_string_pretty(&rca["paths"]).unwrap());
    assert_eq!(rca["inputs"][0]["feature"], "input.congestion", "{rca}");
    let change = rca["value"].as_f64().unwrap() - rca["baseline_value"].as_f64().unwrap();
    assert!(change > 1.0, "congestion makes the fare higher: {rca}");
    let congestion = rca["inputs"][0]["attribution"].as_f64().unwrap();
    assert!(congestion > 0.6 * change, "congestion explains most of the change: {congestion} of {change}");
    let attributed: f64 = rca["inputs"].as_array().unwrap().iter().map(|a| a["attribution"].as_f64().unwrap()).sum();
    let unexplained = rca["unexplained"].as_f64().unwrap();
    assert!((attributed + unexplained - change).abs() < 1e-6, "the shares add up: {rca}");
    assert!(unexplained.abs() < 0.05 * change.abs(), "little is lost on the way: {unexplained} of {change}");
    // It went through the ETA model and the features step, and directly into the fare.
    let steps: Vec<&str> = rca["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
    for step in ["fare", "eta", "features"] {
        assert!(steps.contains(&step), "{steps:?}");
    }
    let paths: Vec<String> = rca["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect::<Vec<_>>().join(" <- "))
        .collect();
    assert!(paths.iter().any(|p| p == "output.fare <- input.congestion"), "{paths:?}");
    assert!(
        paths.iter().any(|p| p.starts_with("output.fare <- eta.variable") && p.ends_with("input.congestion")),
        "{paths:?}"
    );
    // The ETA output alone: congestion again, through the model.
    let (status, eta) = get(&server, &format!("/v2/invocations/{id}/rca?output=eta_minutes"));
    assert_eq!(status, 200, "{eta}");
    assert_eq!(eta["inputs"][0]["feature"], "input.congestion", "{eta}");
    // Mistakes.
    let (status, answer) = get(&server, &format!("/v2/invocations/{id}/rca?output=nothing"));
    assert_eq!(status, 404, "{answer}");
    let (status, answer) = get(&server, "/v2/invocations/nonexistent/rca?output=fare");
    assert_eq!(status, 404, "{answer}");
    let (status, _) = get(&server, &format!("/v2/invocations/{id}/rca"));
    assert_eq!(status, 400, "output is required");
}

#[test]
fn a_sensitive_edge_is_walked_by_hash_only_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = ride(dir.path(), "");
    // The ride pipeline with the driver's data sensitive.
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("[pipelines.ride]\n", "[pipelines.ride]\nsensitive = [\"input.driver\"]\n");
    std::fs::write(&manifest, text).unwrap();
    let server = start(&manifest);
    let id = odd_trip(&server);
    let (status, rca) = get(&server, &format!("/v2/invocations/{id}/rca?output=fare"));
    assert_eq!(status, 200, "{rca}");
    let notes = rca["notes"].to_string();
    assert!(notes.contains("sensitive: walked by hash only") && notes.contains("input.driver"), "{rca}");
    let features = rca["steps"].as_array().unwrap().iter().find(|s| s["step"] == "features").unwrap();
    assert!(features["stopped"].as_str().unwrap().contains("hmac-sha256"), "{features}");
    // The fare's own direct share of the congestion is still there.
    assert!(rca["inputs"].as_array().unwrap().iter().any(|a| a["feature"] == "input.congestion"), "{rca}");
    assert!(!rca.to_string().contains("\"input.driver["), "no value of the sensitive edge: {rca}");
    // An explanation of an inner edge would tap it: refused.
    let mut body: Value = serde_json::from_str(&trip(&[3.0, 8.0, 0.5, 1.0, 4.8, 2.0])).unwrap();
    body["target"] = json!("eta.variable");
    body["baseline"] = json!("zeros");
    let (status, answer) = post(&server, "/v2/models/ride/explain", &body.to_string());
    assert_eq!(status, 403, "{answer}");
}

#[test]
fn an_explainer_component_added_at_runtime_gives_integrated_gradients() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = diagnosis(dir.path(), "");
    let server = start(&manifest);
    let linear = read("diagnosis/breast_cancer_linear.json");
    let test = read("models/breast_cancer_test.json");
    let (weights, mean) = (floats(&linear["weights"]), floats(&linear["training_mean"]));
    let x = &moderate(&linear, &test)[1];
    let body = json!({"inputs": features(x), "target": "probabilities", "index": 1, "link": "logit",
                      "baseline": features(&mean), "explainer": "gradients"})
    .to_string();
    let (status, answer) = post(&server, "/v2/models/diagnosis/explain", &body);
    assert_eq!(status, 404, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("no explainer `gradients`"), "{answer}");
    // Added while serving: declared, then reloaded.
    let gradients = examples_dir().join("../target/guests/wasm32-wasip1/release/gradients.wasm");
    let extra = format!(
        "\n[components.gradients]\nsource = \"{}\"\n\n[[pipelines.diagnosis.explainers]]\nname = \"gradients\"\n\
         step = \"classify\"\ncomponent = \"gradients\"\nmodels = [\"breast_cancer\"]\n\
         config = {{ model = \"breast_cancer\", link = \"logit\" }}\n",
        gradients.display()
    );
    let text = std::fs::read_to_string(&manifest).unwrap();
    let text = text.replace("\n[provenance]", &format!("{extra}\n[provenance]"));
    std::fs::write(&manifest, text).unwrap();
    let (status, reloaded) = post(&server, "/v2/admin/reload", "");
    assert_eq!(status, 200, "{reloaded}");
    let (status, explanation) = post(&server, "/v2/models/diagnosis/explain", &body);
    assert_eq!(status, 200, "{explanation}");
    assert_eq!(explanation["method"], "explainer:gradients");
    let mut got = vec![0.0; 30];
    for a in explanation["attributions"].as_array().unwrap() {
        let i: usize = a["feature"].as_str().unwrap().trim_start_matches("x[").trim_end_matches(']').parse().unwrap();
        got[i] = a["attribution"].as_f64().unwrap();
    }
    let want = exact(&weights, x, &mean);
    let scale: f64 = want.iter().map(|v| v.abs()).sum();
    let error = max_error(&got, &want);
    println!("integrated gradients: max error {error:.2e}, Σ|φ| {scale:.3}");
    assert!(error <= 0.02 * scale + 0.02, "integrated gradients: {error} over {scale}: {got:?} vs {want:?}");
    // The explainer refuses a target it cannot differentiate (the label is an integer with one element).
    let other = body.replace("\"probabilities\"", "\"classify.label\"");
    let (status, _) = post(&server, "/v2/models/diagnosis/explain", &other);
    assert_eq!(status, 400);
}
