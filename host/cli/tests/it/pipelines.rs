//! The dataflow executor: pipelines route, join, fan out, run independent
//! steps concurrently, trace every edge, and fail with the step's name.
//! (Every bad manifest is a case in `tests/ui`, see `ui.rs`.)

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{f32_tensor, f32_values};
use weir_executor::{Executor, PipelineError, RunOptions};
use weir_manifest::Manifest;
use weir_sandbox::{Sandbox, SandboxOptions};
use weir_tests::{CLASSIFY, HOSTILE, SCALE, TOPK};

fn header() -> String {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models");
    format!(
        r#"
[models.digits]
source = "{}"

[components.scale]
source = "{SCALE}"

[components.hostile]
source = "{HOSTILE}"

[components.classify]
source = "{CLASSIFY}"

[components.topk]
source = "{TOPK}"
"#,
        models.join("digits.onnx").display()
    )
}

fn write(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("weir.toml");
    std::fs::write(&path, format!("{}{body}", header())).unwrap();
    path
}

fn executor(body: &str) -> (tempfile::TempDir, Executor) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = Manifest::load(&write(dir.path(), body)).unwrap();
    let runtime = Sandbox::new(SandboxOptions {
        cache_dir: Some(crate::common::shared_cache_dir()),
        ..SandboxOptions::default()
    })
    .unwrap();
    // Energy is modelled here whatever the machine offers, for exact figures.
    (dir, Executor::new(Arc::new(runtime), manifest))
}

/// Fan-out (input.x read by two steps), join (`both` reads both), renames,
/// several pipeline inputs and outputs.
const DIAMOND: &str = r#"
[[pipelines.diamond.steps]]
name = "double"
component = "scale"
inputs = ["input.x"]
config = { std = 0.5 }

[[pipelines.diamond.steps]]
name = "shift"
component = "scale"
inputs = ["input.x"]
config = { mean = -10 }

[[pipelines.diamond.steps]]
name = "both"
component = "hostile"
inputs = ["doubled=double.y", "shifted=shift.y", "extra=input.z"]
config = { mode = "echo" }

[pipelines.diamond.outputs]
doubled = "both.doubled"
shifted = "both.shifted"
passthrough = "input.z"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tensors_are_routed_through_joins_and_fan_outs() {
    let (_dir, executor) = executor(DIAMOND);
    let inputs = vec![f32_tensor("x", &[2], &[1.0, 2.0]), f32_tensor("z", &[1], &[7.0])];
    let out = executor.run("diamond", inputs.clone(), &RunOptions::default()).await.unwrap();
    let names: Vec<&str> = out.outputs.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["doubled", "passthrough", "shifted"]);
    assert_eq!(f32_values(&out.outputs[0]), vec![2.0, 4.0]);
    assert_eq!(f32_values(&out.outputs[1]), vec![7.0]);
    assert_eq!(f32_values(&out.outputs[2]), vec![11.0, 12.0]);
    assert!(out.steps.iter().all(|s| s.outputs.is_empty()), "no trace unless asked");

    let traced =
        executor.run("diamond", inputs.clone(), &RunOptions { trace: true, ..RunOptions::default() }).await.unwrap();
    assert_eq!(traced.steps.len(), 3);
    let shift = traced.steps.iter().find(|s| s.step == "shift").unwrap();
    assert_eq!(f32_values(&shift.outputs[0]), vec![11.0, 12.0], "the edge shift.y is visible");

    let until = executor
        .run("diamond", inputs.clone(), &RunOptions { until: Some("double".into()), ..RunOptions::default() })
        .await
        .unwrap();
    assert_eq!(until.steps.len(), 1, "only the step and its ancestors run");
    assert_eq!(f32_values(&until.outputs[0]), vec![2.0, 4.0]);

    let err = executor.run("diamond", vec![inputs[0].clone()], &RunOptions::default()).await.unwrap_err();
    assert!(matches!(&err, PipelineError::MissingInput { name, .. } if name == "z"), "{err}");
    assert!(err.is_caller_error());
    let err = executor.run("nope", vec![], &RunOptions::default()).await.unwrap_err();
    assert!(err.to_string().contains("no pipeline named `nope` (pipelines: diamond)"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_steps_run_concurrently() {
    let body = r#"
[[pipelines.p.steps]]
name = "left"
component = "hostile"
inputs = ["input.x"]
config = { mode = "busy", ms = 300 }

[[pipelines.p.steps]]
name = "right"
component = "hostile"
inputs = ["input.x"]
config = { mode = "busy", ms = 300 }

[pipelines.p.outputs]
a = "left.x"
b = "right.x"
"#;
    let (_dir, executor) = executor(body);
    let out = executor.run("p", vec![f32_tensor("x", &[1], &[1.0])], &RunOptions::default()).await.unwrap();
    let [first, second] = [&out.steps[0], &out.steps[1]];
    // The second started before the first finished: they overlapped.
    assert!(second.started_after < first.started_after + first.stats.wall, "{:?} vs {:?}", first, second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_step_fails_the_invocation_by_name() {
    let body = r#"
[[pipelines.p.steps]]
name = "ok"
component = "scale"
inputs = ["input.x"]

[[pipelines.p.steps]]
name = "boom"
component = "hostile"
inputs = ["ok.y"]
config = { mode = "panic" }

[[pipelines.p.steps]]
name = "after"
component = "scale"
inputs = ["x=boom.y"]

[pipelines.p.outputs]
y = "after.y"
"#;
    let (_dir, executor) = executor(body);
    let err = executor.run("p", vec![f32_tensor("x", &[1], &[1.0])], &RunOptions::default()).await.unwrap_err();
    assert!(err.to_string().starts_with("step `boom` trapped"), "{err}");
    assert!(!err.is_caller_error());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_digits_example_classifies_raw_pixels() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/digits/weir.toml");
    let manifest = Manifest::load(&example).unwrap();
    let runtime = Sandbox::new(SandboxOptions {
        cache_dir: Some(crate::common::shared_cache_dir()),
        ..SandboxOptions::default()
    })
    .unwrap();
    let executor = Executor::new(Arc::new(runtime), manifest);
    let test: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(example.with_file_name("../models/digits_test.json")).unwrap())
            .unwrap();
    // Every held-out digit, as raw pixels (the pipeline divides by 16).
    let samples = test["inputs"].as_array().unwrap();
    let n = samples.len();
    let rows: Vec<f32> = samples
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| (v.as_f64().unwrap() * 16.0).round() as f32))
        .collect();
    let out = executor
        .run("digits", vec![f32_tensor("pixels", &[n as u64, 64], &rows)], &RunOptions::default())
        .await
        .unwrap();
    let label = out.outputs.iter().find(|t| t.name == "label").unwrap();
    let predicted: Vec<i64> = label.data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
    // scikit-learn's own prediction for each sample, not only the truth.
    let sklearn: Vec<i64> =
        test["predictions_sklearn"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    assert_eq!((predicted.len(), sklearn.len()), (n, n));
    let differ: Vec<usize> = (0..n).filter(|&i| predicted[i] != sklearn[i]).collect();
    assert!(differ.is_empty(), "samples {differ:?} are labelled differently from scikit-learn");
    // The top-3 are the three likeliest of scikit-learn's probabilities, in order.
    let top = out.outputs.iter().find(|t| t.name == "top_classes").unwrap();
    assert_eq!(top.shape, vec![n as u64, 3]);
    let classes: Vec<i64> = top.data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
    let scores = f32_values(out.outputs.iter().find(|t| t.name == "top_scores").unwrap());
    for (i, probabilities) in test["probabilities_sklearn"].as_array().unwrap().iter().enumerate() {
        let p: Vec<f64> = probabilities.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(classes[i * 3], predicted[i], "sample {i}: the best class is the label");
        for k in 0..3 {
            let class = classes[i * 3 + k] as usize;
            assert!((scores[i * 3 + k] as f64 - p[class]).abs() < 1e-4, "sample {i}: top {k} is {class}: {p:?}");
        }
        assert!(scores[i * 3] >= scores[i * 3 + 1] && scores[i * 3 + 1] >= scores[i * 3 + 2], "sample {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ride_eta_example_matches_scikit_learn() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/ride-eta/weir.toml");
    let manifest = Manifest::load(&example).unwrap();
    let graph = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["graph", example.to_str().unwrap(), "ride"])
        .output()
        .unwrap();
    let dot = String::from_utf8(graph.stdout).unwrap();
    assert!(dot.contains("step_features -> step_eta [label=\"features as x\"]"), "{dot}");
    assert!(dot.contains("step_eta -> step_fare [label=\"variable as eta_minutes\"]"), "{dot}");
    let runtime = Sandbox::new(SandboxOptions {
        cache_dir: Some(crate::common::shared_cache_dir()),
        ..SandboxOptions::default()
    })
    .unwrap();
    let executor = Executor::new(Arc::new(runtime), manifest);
    let test: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(example.with_file_name("ride_test.json")).unwrap()).unwrap();
    let rows: Vec<Vec<f32>> = test["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect())
        .collect();
    let n = rows.len() as u64;
    let column = |i: usize| rows.iter().map(|r| r[i]).collect::<Vec<f32>>();
    let driver: Vec<f32> = rows.iter().flat_map(|r| r[3..6].to_vec()).collect();
    let inputs = vec![
        f32_tensor("distance_km", &[n], &column(0)),
        f32_tensor("hour", &[n], &column(1)),
        f32_tensor("congestion", &[n], &column(2)),
        f32_tensor("driver", &[n, 3], &driver),
    ];
    let out = executor.run("ride", inputs, &RunOptions { trace: true, ..RunOptions::default() }).await.unwrap();
    let get = |name: &str| f32_values(out.outputs.iter().find(|t| t.name == name).unwrap());
    let eta = get("eta_minutes");
    let sklearn: Vec<f64> =
        test["eta_predictions_sklearn"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(eta.len(), sklearn.len(), "one ETA per held-out row");
    for (ours, theirs) in eta.iter().zip(&sklearn) {
        assert!((*ours as f64 - theirs).abs() < 1e-3, "eta {ours} vs scikit-learn {theirs}");
    }
    let truth: Vec<f64> = test["eta_minutes"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let mae = eta.iter().zip(&truth).map(|(p, t)| (*p as f64 - t).abs()).sum::<f64>() / truth.len() as f64;
    assert!(mae < 2.0 * test["eta_mae_sklearn"].as_f64().unwrap(), "ETA error {mae:.2} min");
    // Every row's fare against the rule computed here from scikit-learn's
    // ETA (not weir's), surge rows and fares above the minimum included.
    let fare = get("fare");
    assert_eq!((fare.len(), eta.len(), sklearn.len()), (rows.len(), rows.len(), rows.len()));
    let (km, congestion) = (column(0), column(2));
    let mut surged_above_minimum = 0;
    for i in 0..rows.len() {
        let surge = 1.0 + ((congestion[i] as f64 - 0.6) / 0.4).clamp(0.0, 1.0) * 0.8;
        let expected = ((2.5 + 1.2 * km[i] as f64 + 0.3 * sklearn[i].max(0.0)) * surge).max(6.0);
        assert!((fare[i] as f64 - expected).abs() < 2e-3, "row {i}: fare {} vs {expected} by hand", fare[i]);
        surged_above_minimum += usize::from(surge > 1.0 && expected > 6.0);
    }
    assert!(surged_above_minimum >= 10, "the rows exercise the surge: {surged_above_minimum}");
    let accept = get("accept_probability");
    let sklearn_accept: Vec<f64> = test["accept_probabilities_sklearn"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    assert_eq!((accept.len(), sklearn_accept.len()), (2 * rows.len(), 2 * rows.len()));
    for (i, (ours, theirs)) in accept.iter().zip(&sklearn_accept).enumerate() {
        assert!((*ours as f64 - theirs).abs() < 1e-4, "acceptance {i}: {ours} vs scikit-learn {theirs}");
    }
    // The two models ran side by side: both started before either finished.
    let step = |name: &str| out.steps.iter().find(|s| s.step == name).unwrap();
    let (eta_step, acceptance) = (step("eta"), step("acceptance"));
    assert!(acceptance.started_after < eta_step.started_after + eta_step.stats.wall);
    assert!(eta_step.started_after < acceptance.started_after + acceptance.stats.wall);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_output_types_are_enforced() {
    let body = r#"
[[pipelines.p.steps]]
name = "s"
component = "scale"
inputs = ["input.x"]

[pipelines.p.outputs]
y = { from = "s.y", datatype = "INT64", shape = [-1] }
"#;
    let (_dir, executor) = executor(body);
    let err = executor.run("p", vec![f32_tensor("x", &[2], &[1.0, 2.0])], &RunOptions::default()).await.unwrap_err();
    assert_eq!(err.to_string(), "output `y` of pipeline `p` is FP32 [2], but the manifest declares INT64 [-1]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_attribute_cpu_energy_cost_and_co2_per_step() {
    // Two steps side by side doing 4x and 1x the same work.
    let body = r#"
[accounting]
watts_per_core = 20
grid_gco2e_per_kwh = 300

[[pipelines.p.steps]]
name = "heavy"
component = "hostile"
inputs = ["input.x"]
config = { mode = "work", iterations = 160000000 }

[[pipelines.p.steps]]
name = "light"
component = "hostile"
inputs = ["input.x"]
config = { mode = "work", iterations = 40000000 }

# Waits 300 ms and does nothing: wall time, next to no CPU time.
[[pipelines.p.steps]]
name = "sleeper"
component = "hostile"
inputs = ["input.x"]
config = { mode = "sleep", ms = 300 }

[pipelines.p.outputs]
a = "heavy.x"
b = "light.x"
c = "sleeper.x"
"#;
    let (_dir, executor) = executor(body);
    // Warm: the component's one-time load must not land on either step.
    executor.run("p", vec![f32_tensor("x", &[1], &[1.0])], &RunOptions::default()).await.unwrap();
    let out = executor.run("p", vec![f32_tensor("x", &[1], &[1.0])], &RunOptions::default()).await.unwrap();
    let receipt = weir_observe::receipts::invocation_receipt(&out, &executor.manifest().accounting);
    assert_eq!(receipt.invocation_id, out.invocation_id);
    let step = |name: &str| receipt.steps.iter().find(|s| s.step == name).unwrap().clone();
    let (heavy, light, sleeper) = (step("heavy"), step("light"), step("sleeper"));
    // CPU time follows the work done, whatever else the machine is doing.
    assert!(heavy.cpu_us > 20_000 && heavy.cpu_us <= heavy.wall_us + 1_000, "{heavy:?}");
    assert!(light.cpu_us > 5_000 && light.cpu_us < heavy.cpu_us, "{light:?}");
    // Energy follows measured CPU time at the configured wattage.
    for s in [&heavy, &light] {
        assert!((s.energy_j - s.cpu_us as f64 / 1e6 * 20.0).abs() < 1e-4, "{s:?}");
        assert!((s.gco2e - s.energy_j / 3.6e6 * 300.0).abs() < 1e-12);
        assert!(s.cost > 0.0);
        assert_eq!(s.bytes_in, 4);
    }
    // 4x the work: 4x the CPU time (give or take instantiation and the
    // machine's noise), so 4x the energy. A clock that counted the whole
    // process would give the two steps running side by side about the same.
    let ratio = heavy.energy_j / light.energy_j;
    assert!((3.0..5.0).contains(&ratio), "heavy/light energy {ratio} for 4x the work: {heavy:?} {light:?}");
    // Sleeping is not working: wall time, and CPU time far below it.
    assert!(sleeper.wall_us >= 300_000, "{sleeper:?}");
    assert!(sleeper.cpu_us < sleeper.wall_us / 20, "a sleeping step is billed its wall time: {sleeper:?}");
    // Cost is the whole formula, with [accounting]'s defaults for the prices
    // not set here: USD 0.0000125 per CPU-second, 0.0000012 per GiB-second
    // of peak memory, 0.15 per kWh.
    for s in [&heavy, &light, &sleeper] {
        // (cpu_us is rounded to the microsecond; the joules were checked against it above.)
        assert!((s.energy_j - s.cpu_us as f64 / 1e6 * 20.0).abs() < 1e-4, "{s:?}");
        let kwh = s.energy_j / 3.6e6;
        let gib_seconds = s.peak_memory_bytes as f64 / 1073741824.0 * s.wall_us as f64 / 1e6;
        let cost = s.cpu_us as f64 / 1e6 * 0.0000125 + gib_seconds * 0.0000012 + kwh * 0.15;
        assert!((s.cost - cost).abs() < cost * 1e-3, "cost {} vs {cost} by hand: {s:?}", s.cost);
        assert!((s.gco2e - kwh * 300.0).abs() < 1e-9, "{s:?}");
    }
    assert!((receipt.energy_j - heavy.energy_j - light.energy_j - sleeper.energy_j).abs() < 1e-9);
    assert!((receipt.cost - heavy.cost - light.cost - sleeper.cost).abs() < 1e-15);
    let json = serde_json::to_value(&receipt).unwrap();
    assert_eq!(json["energy_method"], "cpu-model", "a modelled figure says so");
}

/// A model with ONNX Runtime pool threads: the step's receipt carries their
/// CPU time in `ort_threads_cpu_us`, inside its `cpu_us`, and the energy
/// follows the total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_count_onnx_runtime_pool_threads() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models");
    let body = format!(
        r#"
[models.wide]
source = "{}"
threads = 3

[[pipelines.p.steps]]
name = "classify"
component = "classify"
inputs = ["x=input.pixels"]
models = ["wide"]
config = {{ model = "wide" }}

[pipelines.p.outputs]
label = "classify.label"
"#,
        models.join("digits.onnx").display()
    );
    let (_dir, executor) = executor(&body);
    let rows = 4096;
    let pixels: Vec<f32> = (0..rows * 64).map(|i| (i % 17) as f32 / 16.0).collect();
    let input = || vec![f32_tensor("pixels", &[rows as u64, 64], &pixels)];
    executor.run("p", input(), &RunOptions::default()).await.unwrap();
    let out = executor.run("p", input(), &RunOptions::default()).await.unwrap();
    let receipt = weir_observe::receipts::invocation_receipt(&out, &executor.manifest().accounting);
    let step = &receipt.steps[0];
    assert!(step.ort_threads_cpu_us > 0, "pool threads worked on a 4096-row batch: {step:?}");
    assert!(step.ort_threads_cpu_us < step.cpu_us, "pool CPU is part of the step's CPU: {step:?}");
    assert!((step.energy_j - step.cpu_us as f64 / 1e6 * 10.0).abs() < 1e-4, "energy covers all of it: {step:?}");
}

/// Scale-to-zero never takes a component from under a running invocation:
/// held (by a caller, or by a step still running), it stays however idle the
/// policy says it is; released, it goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_sweeper_never_drops_a_component_in_use() {
    let body = r#"
[pipelines.p]
steps = [{ name = "busy", component = "hostile", inputs = ["input.x"], config = { mode = "busy", ms = 600 } }]
outputs = { x = "busy.x" }
"#;
    let (_dir, executor) = executor(body);
    let executor = Arc::new(executor);
    let residency = executor.residency();
    let (held, _) = residency.component("scale").await.unwrap();
    assert_eq!(residency.evict_idle(Duration::ZERO), 0, "a held component is in use");
    drop(held);
    assert_eq!(residency.evict_idle(Duration::ZERO), 1, "released, it goes at once");
    let running = {
        let executor = executor.clone();
        tokio::spawn(
            async move { executor.run("p", vec![f32_tensor("x", &[1], &[1.0])], &RunOptions::default()).await },
        )
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while residency.resident_components() == 0 {
        assert!(std::time::Instant::now() < deadline, "the step never loaded its component");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!running.is_finished(), "the step still runs");
    assert_eq!(residency.evict_idle(Duration::ZERO), 0, "a running step's component stays");
    running.await.unwrap().expect("the invocation finishes with its component");
    assert_eq!(residency.evict_idle(Duration::ZERO), 1);
    assert_eq!(residency.resident_components(), 0);
}
