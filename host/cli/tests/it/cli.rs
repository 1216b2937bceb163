//! `weir run` and `weir new` as a user runs them: the real binary, real
//! components, every failure a clear message and a documented exit code.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::weir;

use weir_tests::{HOSTILE, SCALE, TOPK};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "weir failed: {}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A failure: the expected exit code, one clear `error:` line, no panic.
fn assert_fails(out: &Output, code: i32, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    // (A guest's own panic message may appear; weir itself must not panic.)
    assert!(!err.contains("thread 'main'") && !err.contains("stack backtrace"), "no host panic or backtrace: {err}");
    assert_eq!(err.matches("error:").count(), 1, "one error message: {err}");
}

const REQUEST: &str = r#"{"id":"r1","inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4]]}]}"#;

#[test]
fn runs_a_step_from_stdin_and_from_a_file() {
    let out = weir(&["run", SCALE, "--input", "-", "--config", "mean=1,2", "--config", "std=2"], Some(REQUEST));
    let response = json(&out);
    assert_eq!(response["id"], "r1");
    assert_eq!(response["model_name"], "scale");
    assert_eq!(response["outputs"][0]["name"], "y");
    assert_eq!(response["outputs"][0]["datatype"], "FP32");
    assert_eq!(response["outputs"][0]["shape"], serde_json::json!([2, 2]));
    assert_eq!(response["outputs"][0]["data"], serde_json::json!([0.0, 0.0, 1.0, 1.0]));

    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("request.json");
    std::fs::write(&input, r#"{"inputs":[{"name":"probabilities","shape":[2,4],"datatype":"FP32","data":[0.1,0.5,0.2,0.2, 0.7,0.1,0.1,0.1]}],"outputs":[{"name":"indices"}]}"#).unwrap();
    let response = json(&weir(&["run", TOPK, "--input", input.to_str().unwrap(), "-c", "k=2"], None));
    let outputs = response["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 1, "only the requested output");
    assert_eq!(outputs[0]["datatype"], "INT64");
    assert_eq!(outputs[0]["data"], serde_json::json!([1, 2, 0, 1]));
}

#[test]
fn step_logs_go_to_stderr_tagged_with_the_step() {
    let out = weir(&["run", HOSTILE, "--input", "-", "-c", "mode=chatty"], Some(REQUEST));
    json(&out);
    let err = stderr(&out);
    assert!(err.contains("step=\"hostile\"") || err.contains("step=hostile"), "{err}");
    assert!(err.contains("hello from stdout") && err.contains("hello from stderr"), "{err}");
}

#[test]
fn limits_are_enforced_from_the_command_line() {
    let out = weir(&["run", HOSTILE, "--input", "-", "-c", "mode=infinite-loop", "--timeout", "200ms"], Some(REQUEST));
    assert_fails(&out, 4, "timed out after 200ms");
    let out = weir(&["run", HOSTILE, "--input", "-", "-c", "mode=memory-bomb", "--memory", "16MiB"], Some(REQUEST));
    assert_fails(&out, 4, "exceeded its memory limit of 16777216 bytes");
    let out = weir(&["run", HOSTILE, "--input", "-", "-c", "mode=infinite-loop", "--fuel", "1000000"], Some(REQUEST));
    assert_fails(&out, 4, "ran out of fuel");
    let out = weir(&["run", HOSTILE, "--input", "-", "-c", "mode=panic"], Some(REQUEST));
    assert_fails(&out, 4, "hostile guest panics on purpose");
}

#[test]
fn bad_input_gets_one_clear_message_and_a_nonzero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, "just some text").unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    // The smallest valid component: it exports nothing.
    let empty = dir.path().join("empty.wasm");
    std::fs::write(&empty, b"\0asm\x0d\0\x01\0").unwrap();

    assert_fails(
        &weir(&["run", "/nonexistent/step.wasm", "--input", "-"], Some(REQUEST)),
        3,
        "cannot read component `/nonexistent/step.wasm`",
    );
    assert_fails(&weir(&["run", text.to_str().unwrap(), "--input", "-"], Some(REQUEST)), 3, "is not WebAssembly");
    assert_fails(
        &weir(&["run", core.to_str().unwrap(), "--input", "-"], Some(REQUEST)),
        3,
        "core WebAssembly module, not a component",
    );
    assert_fails(
        &weir(&["run", empty.to_str().unwrap(), "--input", "-"], Some(REQUEST)),
        3,
        "does not export `weir:pipeline/step@0.1.0`",
    );

    assert_fails(&weir(&["run", SCALE, "--input", "/nonexistent/request.json"], None), 2, "cannot read input file");
    assert_fails(
        &weir(&["run", SCALE, "--input", "-"], Some("{\"inputs\": 3}")),
        2,
        "not an Open Inference Protocol v2 inference request",
    );
    assert_fails(&weir(&["run", SCALE, "--input", "-"], Some("not json")), 2, "standard input:");
    let wrong_type = r#"{"inputs":[{"name":"x","shape":[1],"datatype":"float","data":[1]}]}"#;
    assert_fails(&weir(&["run", SCALE, "--input", "-"], Some(wrong_type)), 2, "unknown datatype `float`");
    let wrong_dtype_for_step = r#"{"inputs":[{"name":"x","shape":[1],"datatype":"INT32","data":[1]}]}"#;
    assert_fails(
        &weir(&["run", SCALE, "--input", "-"], Some(wrong_dtype_for_step)),
        2,
        "expected datatype FP32, got INT32",
    );
    assert_fails(&weir(&["run", SCALE, "--input", "-", "--config", "novalue"], Some(REQUEST)), 2, "is not KEY=VALUE");
    assert_fails(&weir(&["run", SCALE, "--input", "-", "--memory", "lots"], Some(REQUEST)), 2, "--memory");
    assert_fails(&weir(&["run", SCALE, "--input", "-", "--timeout", "5"], Some(REQUEST)), 2, "has no unit");
    assert_fails(&weir(&["run", SCALE], None), 2, "--input");
    let missing = r#"{"inputs":[{"name":"probabilities","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"outputs":[{"name":"labels"}]}"#;
    assert_fails(&weir(&["run", TOPK, "--input", "-"], Some(missing)), 2, "requested output `labels` does not exist");
}

#[test]
fn a_second_run_loads_the_compiled_cache() {
    let cache = tempfile::tempdir().unwrap();
    let args = ["run", SCALE, "--input", "-", "-v", "--cache-dir", cache.path().to_str().unwrap()];
    let first = weir(&args, Some(REQUEST));
    assert!(stderr(&first).contains(": Compiled in"), "{}", stderr(&first));
    let second = weir(&args, Some(REQUEST));
    assert!(stderr(&second).contains(": Cache in"), "{}", stderr(&second));
    assert_eq!(json(&first)["outputs"], json(&second)["outputs"]);
}

#[test]
fn weir_new_scaffolds_a_component_that_builds_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = weir(&["new", "hello-step", "--path", dir.path().to_str().unwrap()], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let crate_dir = dir.path().join("hello-step");

    let guest_env = weir_tests::guest_build_env();
    let cargo = guest_env.iter().find(|(k, _)| *k == "CARGO").map(|(_, v)| v.to_string());
    let build = Command::new(cargo.or_else(|| std::env::var("CARGO").ok()).unwrap_or_else(|| "cargo".into()))
        .args(["component", "build", "--release"])
        .envs(guest_env)
        .current_dir(&crate_dir)
        // Reuse the guest build's compiled weir-sdk and wit-bindgen.
        .env("CARGO_TARGET_DIR", weir_tests::GUEST_TARGET_DIR)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .unwrap();
    assert!(build.status.success(), "cargo component build failed: {}", String::from_utf8_lossy(&build.stderr));
    let wasm = Path::new(weir_tests::GUEST_TARGET_DIR).join("wasm32-wasip1/release/hello_step.wasm");
    let input = crate_dir.join("input.json");
    let response =
        json(&weir(&["run", wasm.to_str().unwrap(), "--input", input.to_str().unwrap(), "-c", "factor=3"], None));
    assert_eq!(response["outputs"][0]["data"], serde_json::json!([3.0, 6.0, 9.0, 12.0]));

    assert_fails(&weir(&["new", "hello-step", "--path", dir.path().to_str().unwrap()], None), 2, "already exists");
    assert_fails(
        &weir(&["new", "Bad Name", "--path", dir.path().to_str().unwrap()], None),
        2,
        "not a valid component name",
    );
}

#[test]
fn weir_receipts_summarises_the_provenance_store() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("weir.toml");
    std::fs::write(
        &manifest,
        format!(
            "[provenance]\npath = \"prov.redb\"\n\n[components.scale]\nsource = \"{SCALE}\"\n\n\
             [[pipelines.p.steps]]\nname = \"first\"\ncomponent = \"scale\"\ninputs = [\"input.x\"]\n\
             [[pipelines.p.steps]]\nname = \"second\"\ncomponent = \"scale\"\ninputs = [\"x=first.y\"]\n\
             [pipelines.p.outputs]\ny = \"second.y\"\n"
        ),
    )
    .unwrap();
    let manifest = manifest.to_str().unwrap();
    for _ in 0..2 {
        json(&weir(&["run", manifest, "p", "--input", "-"], Some(REQUEST)));
    }
    let chart = dir.path().join("energy.svg");
    let out = weir(&["receipts", manifest, "--since", "1h", "--chart", chart.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    let row = |step: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(step))
            .unwrap_or_else(|| panic!("no {step} row:\n{table}"))
            .to_string()
    };
    for step in ["*", "first", "second"] {
        let row = row(step);
        assert_eq!(row.split_whitespace().nth(2), Some("2"), "two invocations: {row}");
        assert!(row.ends_with("cpu-model"), "{row}");
    }
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(svg.starts_with("<svg") && svg.matches("<rect").count() == 2, "{svg}");

    let no_store = dir.path().join("plain.toml");
    std::fs::write(&no_store, format!("[components.scale]\nsource = \"{SCALE}\"\n[[pipelines.p.steps]]\nname = \"a\"\ncomponent = \"scale\"\ninputs = [\"input.x\"]\n[pipelines.p.outputs]\ny = \"a.y\"\n")).unwrap();
    assert_fails(&weir(&["receipts", no_store.to_str().unwrap()], None), 2, "has no [provenance] table");
}

#[test]
fn weir_graph_draws_mermaid_with_every_edge() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/ride-eta/weir.toml");
    let out = weir(&["graph", example.to_str().unwrap(), "ride", "--format", "mermaid"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("flowchart LR\n"), "{text}");
    for line in [
        "  step_features[\"features (concat)\"]",
        "  in_driver -->|driver| step_features",
        "  step_features -->|features as x| step_eta",
        "  step_features -->|features as x| step_acceptance",
        "  step_eta -->|variable as eta_minutes| step_fare",
        "  in_congestion -->|congestion| step_fare",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
    }
    // One edge per step input and per pipeline output: 4 + 1 + 1 + 3 + 3.
    assert_eq!(text.matches(" -->|").count(), 12, "{text}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/digits/weir.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["serve", example.to_str().unwrap(), "--listen", "127.0.0.1:0", "--no-auth"])
        .env("WEIR_LOG_FORMAT", "json")
        .env("WEIR_LOG", "warn")
        .env("WEIR_CACHE_DIR", crate::common::shared_cache_dir())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines: Vec<String> = std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap()))
        .map_while(Result::ok)
        .take_while(|line| !line.starts_with("weir: serving"))
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    assert!(!lines.is_empty(), "--no-auth logs a warning before serving");
    for line in &lines {
        let log: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(log["timestamp"].is_string() && log["level"].is_string(), "{log}");
    }
    let warning: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(warning["level"], "WARN");
    assert!(warning["fields"]["message"].as_str().unwrap().contains("access control is off"), "{warning}");
}
