//! The retraining loop, end to end, on ride-eta: the service expands to
//! longer trips on slower roads; a drift monitor on the distance alarms;
//! the true ETAs come back as feedback and show the champion is now wrong;
//! `weir retrain` exports the recorded trips with their feedback to
//! Parquet, runs the trainer (examples/rollout/retrain.py), checks the
//! candidate's signature, pushes it to a real registry and writes a
//! manifest with a canary; served from that manifest, the canary's gate
//! judges the candidate on feedback and promotes it.

use serde_json::{json, Value};

use crate::common::server::{get, post, start, Server};
use crate::common::{example_manifest, examples_dir, floats, trip, weir};

/// The ETA of a trip where roads are `slower` times slower than the
/// example's data generator assumes (examples/ride-eta/train.py, without its noise).
fn true_eta(row: &[f64], slower: f64) -> f64 {
    let speed = (38.0 * (1.0 - 0.6 * row[2]) / slower).max(5.0);
    row[0] / speed * 60.0 + row[3] / 30.0 * 60.0
}

/// Ride, and send the true ETA as feedback: the ETA answered.
fn ride(server: &Server, row: &[f64], truth: Option<f64>) -> f64 {
    let (status, answer) = post(server, "/v2/models/ride/infer", &trip(row));
    assert_eq!(status, 200, "{answer}");
    let eta = answer["outputs"].as_array().unwrap().iter().find(|o| o["name"] == "eta_minutes").unwrap()["data"][0]
        .as_f64()
        .unwrap();
    if let Some(truth) = truth {
        let id = answer["parameters"]["receipt"]["invocation_id"].as_str().unwrap();
        let body =
            json!({"outputs": [{"name": "eta_minutes", "shape": [1, 1], "datatype": "FP32", "data": [[truth]]}]});
        let (status, given) = post(server, &format!("/v2/invocations/{id}/feedback"), &body.to_string());
        assert_eq!(status, 200, "{given}");
    }
    eta
}

/// Trips of the new region: longer (x1.6), on roads 1.3 times slower.
fn expanded(row: &[f64]) -> Vec<f64> {
    let mut row = row.to_vec();
    row[0] *= 1.6;
    row
}

#[test]
fn drift_then_export_retrain_push_and_a_canary_that_promotes_the_candidate() {
    let Some(python) = weir_tests::services::data_python() else { return };
    let Some(registry) = weir_tests::services::TestRegistry::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let drift = examples_dir().join("../target/guests/wasm32-wasip1/release/drift.wasm");
    let extra = format!(
        "[provenance]\npath = \"{}\"\nkeep_tensors = true\n\n[components.drift]\nsource = \"{}\"\n\n\
         [[pipelines.ride.monitors]]\nname = \"distance\"\ncomponent = \"drift\"\ninputs = [\"input.distance_km\"]\n\
         window = 50\nreference = {{ first = 100 }}\n",
        dir.path().join("records.redb").display(),
        drift.display()
    );
    let manifest = example_manifest(dir.path(), &["ride-eta"], &["[triggers"], &extra);
    let test: Value =
        serde_json::from_str(&std::fs::read_to_string(examples_dir().join("ride-eta/ride_test.json")).unwrap())
            .unwrap();
    let rows: Vec<Vec<f64>> = test["rows"].as_array().unwrap().iter().map(floats).collect();
    let slower = 1.3;
    let server = start(&manifest);
    // The usual trips: the monitor's reference.
    rows.iter().take(100).for_each(|r| {
        ride(&server, r, None);
    });
    // The new region, with the true ETAs fed back.
    let mut champion_error = 0.0;
    for r in rows.iter().take(100) {
        let r = expanded(r);
        let truth = true_eta(&r, slower);
        champion_error += (ride(&server, &r, Some(truth)) - truth).abs() / 100.0;
    }
    let monitors = loop {
        let (_, all) = get(&server, "/v2/monitors");
        if all[0]["windows"].as_u64().unwrap_or(0) >= 2 {
            break all;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let alerts = monitors[0]["recent"].as_array().unwrap().iter().filter(|r| r["alerts"].as_u64() == Some(1)).count();
    assert_eq!(alerts, 2, "the distances drifted, in both windows: {monitors}");
    println!("drift detected; the champion's MAE on the new region: {champion_error:.2} min");
    drop(server); // the store has one user
                  // Retrain: export, train, check, push, write the canary.
    let out = dir.path().join("weir-v3.toml");
    let trainer = format!("{} {}", python.display(), examples_dir().join("rollout/retrain.py").display());
    let reference = registry.reference("weir/eta:v3");
    let retrained = weir(
        &[
            "retrain",
            manifest.to_str().unwrap(),
            "--step",
            "eta",
            "--version",
            "v3",
            "--trainer",
            &trainer,
            "--push",
            &reference,
            "--manifest-out",
            out.to_str().unwrap(),
            "--min-requests",
            "10",
        ],
        None,
    );
    let said = String::from_utf8_lossy(&retrained.stderr).to_string();
    let trained = String::from_utf8_lossy(&retrained.stdout).to_string();
    assert!(retrained.status.success(), "{said}\n{trained}");
    println!("{said}{trained}");
    assert!(said.contains("100 invocations of ride exported"), "only those with feedback: {said}");
    let written = std::fs::read_to_string(&out).unwrap();
    assert!(written.contains("[models.\"eta@v3\"]") && written.contains(&reference), "{written}");
    assert!(written.contains("digest = \"sha256:"), "pinned to what was pushed: {written}");
    // Served from the new manifest: the canary judges the candidate on feedback.
    let server = start(&out);
    let mut served = 0;
    let (mut candidate_error, mut candidate_answers) = (0.0, 0);
    let experiment = loop {
        let (_, status) = get(&server, "/v2/experiments/retrain-eta-v3");
        if status["phase"] != "running" || served >= 600 {
            break status;
        }
        let r = expanded(&rows[100 + served % 100]);
        let truth = true_eta(&r, slower);
        let (status, answer) = post(&server, "/v2/models/ride/infer", &trip(&r));
        assert_eq!(status, 200, "{answer}");
        let id = answer["parameters"]["receipt"]["invocation_id"].as_str().unwrap();
        let body =
            json!({"outputs": [{"name": "eta_minutes", "shape": [1, 1], "datatype": "FP32", "data": [[truth]]}]});
        assert_eq!(post(&server, &format!("/v2/invocations/{id}/feedback"), &body.to_string()).0, 200);
        if answer["parameters"]["receipt"]["variant"]["variant"] == "v3" {
            let eta = answer["outputs"].as_array().unwrap().iter().find(|o| o["name"] == "eta_minutes").unwrap()
                ["data"][0]
                .as_f64()
                .unwrap();
            candidate_error += (eta - truth).abs();
            candidate_answers += 1;
        }
        served += 1;
    };
    let candidate_mae = candidate_error / candidate_answers.max(1) as f64;
    println!(
        "canary: {} after {served} requests; the candidate's MAE on the new region {candidate_mae:.2} min over {candidate_answers} answers, the champion's {champion_error:.2}",
        experiment["phase"]
    );
    assert_eq!(experiment["phase"], "promoted", "{experiment:#}");
    assert!(candidate_mae < 0.5 * champion_error, "{candidate_mae} vs {champion_error}");
}

#[test]
fn retrain_refuses_what_it_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let extra =
        format!("[provenance]\npath = \"{}\"\nkeep_tensors = true\n", dir.path().join("records.redb").display());
    let manifest = example_manifest(dir.path(), &["ride-eta"], &["[triggers"], &extra);
    let out = dir.path().join("next.toml");
    let run = |args: &[&str]| {
        let mut all =
            vec!["retrain", manifest.to_str().unwrap(), "--version", "v3", "--manifest-out", out.to_str().unwrap()];
        all.extend_from_slice(args);
        let output = weir(&all, None);
        (output.status.code(), String::from_utf8_lossy(&output.stderr).to_string())
    };
    let (code, said) = run(&["--step", "nothing", "--trainer", "true"]);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("has no step `nothing`"), "{said}");
    let (code, said) = run(&["--step", "features", "--trainer", "true"]);
    assert_eq!(code, Some(2));
    assert!(said.contains("exactly one model"), "{said}");
    let (code, said) = run(&["--step", "eta", "--trainer", "true"]);
    assert_eq!(code, Some(2));
    assert!(said.contains("only 0 invocations with feedback"), "{said}");
    let elsewhere = tempfile::tempdir().unwrap();
    let output = weir(
        &[
            "retrain",
            manifest.to_str().unwrap(),
            "--step",
            "eta",
            "--version",
            "v3",
            "--trainer",
            "true",
            "--manifest-out",
            elsewhere.path().join("x.toml").to_str().unwrap(),
        ],
        None,
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("must be in the manifest's folder"));
}
