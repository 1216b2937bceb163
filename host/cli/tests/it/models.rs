//! Models through wasi:nn, end to end: the real `weir` binary, the real
//! `classify` component, ONNX Runtime, and models trained on real data.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{config, only_string};
use weir_nn::{ModelGrants, ModelSpec};
use weir_sandbox::{Sandbox, SandboxOptions, StepGrants, StepLimits};
use weir_tests::{CLASSIFY, HOSTILE};

pub fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models")
}

fn weir(args: &[&str]) -> Output {
    crate::common::weir(args, None)
}

/// Classify every held-out sample in one request; compare with the labels
/// and with the accuracy scikit-learn reported at training time.
fn held_out_accuracy(model: &str) -> (f64, f64) {
    held_out_accuracy_of(model, &format!("{model}.onnx"))
}

/// [`held_out_accuracy`] of another file of the model (a variant).
pub fn held_out_accuracy_of(model: &str, file: &str) -> (f64, f64) {
    let dir = models_dir();
    let test: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{model}_test.json"))).unwrap()).unwrap();
    let rows = test["inputs"].as_array().unwrap();
    let features = test["features"].as_u64().unwrap();
    let request = serde_json::json!({"inputs": [{"name": "x", "shape": [rows.len(), features], "datatype": "FP32", "data": rows}]});
    let input = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(input.path(), request.to_string()).unwrap();
    let grant = format!("{model}={}", dir.join(file).display());
    let out = weir(&[
        "run",
        CLASSIFY,
        "--input",
        input.path().to_str().unwrap(),
        "--model",
        &grant,
        "-c",
        &format!("model={model}"),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let response: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let label = response["outputs"].as_array().unwrap().iter().find(|o| o["name"] == "label").unwrap();
    assert_eq!(label["datatype"], "INT64");
    let predicted = label["data"].as_array().unwrap();
    let expected = test["labels"].as_array().unwrap();
    assert_eq!(predicted.len(), expected.len());
    let correct = predicted.iter().zip(expected).filter(|(p, e)| p == e).count();
    (correct as f64 / expected.len() as f64, test["accuracy"].as_f64().unwrap())
}

#[test]
fn digits_accuracy_matches_scikit_learn() {
    let (weir, sklearn) = held_out_accuracy("digits");
    assert!((weir - sklearn).abs() <= 0.01, "weir {weir:.4} vs scikit-learn {sklearn:.4}");
    assert!(weir > 0.9);
}

#[test]
fn breast_cancer_accuracy_matches_scikit_learn() {
    let (weir, sklearn) = held_out_accuracy("breast_cancer");
    assert!((weir - sklearn).abs() <= 0.01, "weir {weir:.4} vs scikit-learn {sklearn:.4}");
}

#[test]
fn a_step_without_a_grant_gets_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.json");
    let request =
        serde_json::json!({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": vec![0.0; 64]}]});
    std::fs::write(&input, request.to_string()).unwrap();
    let out = weir(&["run", CLASSIFY, "--input", input.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no model named `digits` is available to this step"), "{err}");
}

#[test]
fn bad_model_arguments_are_clear_errors() {
    let request = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(request.path(), r#"{"inputs":[]}"#).unwrap();
    let input = request.path().to_str().unwrap();
    let digits = models_dir().join("digits.onnx");
    let digits = digits.to_str().unwrap();
    let cases = [
        ("digits".to_string(), "is not NAME=PATH.onnx"),
        ("digits=/nonexistent.onnx".to_string(), "does not exist"),
        (format!("digits={digits},device=tpu"), "unknown device `tpu`"),
        (format!("digits={digits},threads=0"), "threads must be a positive number"),
        (format!("digits={digits},color=red"), "unknown option `color`"),
    ];
    for (arg, needle) in cases {
        let out = weir(&["run", CLASSIFY, "--input", input, "--model", &arg]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{arg}: {err}");
        assert!(err.contains(needle), "{arg}: {err}");
    }
    // `gpu` is never a silent fallback; `auto` falls back and says so.
    if weir_nn::device::place(weir_nn::DeviceChoice::Gpu).is_err() {
        let gpu = format!("digits={digits},device=gpu");
        let out = weir(&["run", CLASSIFY, "--input", input, "--model", &gpu]);
        assert_eq!(out.status.code(), Some(2));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("device=gpu, but"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_missing_onnx_runtime_library_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "run",
            CLASSIFY,
            "--input",
            "-",
            "--model",
            &format!("digits={}", models_dir().join("digits.onnx").display()),
        ])
        .env("WEIR_ORT_DYLIB", "/nonexistent/libonnxruntime.so")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("ONNX Runtime library not found")
            && err.contains("/nonexistent/libonnxruntime.so (from WEIR_ORT_DYLIB)"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn auto_device_reports_where_the_model_ran() {
    let digits = models_dir().join("digits.onnx");
    let request =
        serde_json::json!({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": vec![0.0; 64]}]});
    let input = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(input.path(), request.to_string()).unwrap();
    let grant = format!("digits={},device=auto", digits.display());
    let out = weir(&["run", CLASSIFY, "--input", input.path().to_str().unwrap(), "--model", &grant, "-v"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    match weir_nn::device::place(weir_nn::DeviceChoice::Auto).unwrap().fallback_reason {
        Some(_) => assert!(err.contains("model digits on cpu (auto fell back:"), "{err}"),
        None => assert!(err.contains("model digits on gpu:"), "{err}"),
    }
}

#[tokio::test]
async fn grants_decide_which_models_a_step_may_load() {
    let runtime = Sandbox::new(SandboxOptions {
        cache_dir: Some(crate::common::shared_cache_dir()),
        ..SandboxOptions::default()
    })
    .unwrap();
    runtime.register_model(ModelSpec::new("digits", models_dir().join("digits.onnx")));
    runtime.register_model(ModelSpec::new("breast_cancer", models_dir().join("breast_cancer.onnx")));
    let hostile = runtime.load_file(HOSTILE.as_ref()).unwrap();
    let limits = StepLimits::default();
    let probe = |model: &str, granted: &[&str]| {
        let mut grants = config(&[("mode", "nn-load-by-name"), ("model", model)]);
        grants.nn = ModelGrants { models: granted.iter().map(|s| s.to_string()).collect(), load_model_bytes: false };
        grants
    };
    let outcome = |out: weir_sandbox::StepOutput| only_string(&out.outputs[0]);

    let granted = runtime.invoke(&hostile, "probe", &probe("digits", &["digits"]), &limits, vec![]).await.unwrap();
    assert!(outcome(granted).starts_with("LEAKED: loaded model digits"), "a granted model loads");
    // Registered but not granted, and not registered at all, look the same.
    let ungranted = outcome(
        runtime.invoke(&hostile, "probe", &probe("breast_cancer", &["digits"]), &limits, vec![]).await.unwrap(),
    );
    let unknown =
        outcome(runtime.invoke(&hostile, "probe", &probe("nonexistent", &["digits"]), &limits, vec![]).await.unwrap());
    assert!(ungranted.starts_with("denied:") && ungranted.contains("NotFound"), "{ungranted}");
    assert_eq!(
        ungranted.replace("breast_cancer", "X"),
        unknown.replace("nonexistent", "X"),
        "no hint that a model exists"
    );

    let bytes = StepGrants { config: vec![("mode".into(), "nn-load-bytes".into())], ..StepGrants::default() };
    let out = outcome(runtime.invoke(&hostile, "probe", &bytes, &limits, vec![]).await.unwrap());
    assert!(out.starts_with("denied: ErrorCode::Security"), "{out}");
    let allowed = StepGrants { nn: ModelGrants { models: vec![], load_model_bytes: true }, ..bytes };
    let out = outcome(runtime.invoke(&hostile, "probe", &allowed, &limits, vec![]).await.unwrap());
    assert!(
        out.contains("RuntimeError") && out.contains("loading model"),
        "granted, but the bytes are not a model: {out}"
    );
}
