//! Components and models from a real OCI registry: `weir push` / `weir pull`,
//! `weir serve` fetching on first use, scale-to-zero, pins and tampering,
//! and how little an idle registered pipeline costs.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use crate::common::server::{get, post, start_with, Server};
use serde_json::Value;
use weir_tests::services::TestRegistry;
use weir_tests::{CLASSIFY, NOOP, SCALE, TOPK};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// `weir ARGS` with its own OCI cache; `stdin` is written when given.
pub(crate) fn weir(args: &[&str], oci_cache: &Path, stdin: Option<&str>) -> Output {
    crate::common::weir_with(args, &[("WEIR_OCI_CACHE", oci_cache)], stdin)
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

pub(crate) fn assert_exit(out: &Output, code: i32, needle: &str) {
    let text = text(out);
    assert_eq!(out.status.code(), Some(code), "{text}");
    assert!(text.contains(needle), "expected `{needle}` in: {text}");
    assert!(!text.contains("panicked"), "{text}");
}

/// A manifest with one component per (name, source, extra keys) and a
/// pipeline of the same name running it on `input.x`.
pub(crate) fn one_step_pipelines(components: &[(&str, &str, &str)]) -> String {
    let mut text = String::new();
    for (name, source, extra) in components {
        text += &format!("[components.{name}]\nsource = \"{source}\"\n{extra}\n");
    }
    for (name, _, _) in components {
        text += &format!(
            "[pipelines.{name}]\nsteps = [{{ name = \"s\", component = \"{name}\", inputs = [\"input.x\"] }}]\noutputs = {{ y = \"s.x\" }}\n"
        );
    }
    text
}

/// The `content  sha256:…` line `weir push` prints.
fn pushed_digest(out: &Output, which: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix(which))
        .map(|d| d.trim().to_string())
        .unwrap_or_else(|| panic!("{stdout}"))
}

#[test]
fn push_and_pull_from_the_command_line() {
    let Some(registry) = TestRegistry::start() else { return };
    let cache = tempfile::tempdir().unwrap();
    let reference = registry.reference("steps/scale:1");
    let out = weir(&["push", SCALE, &reference], cache.path(), None);
    assert_exit(&out, 0, "pushed component");
    let model = examples().join("models/digits.onnx");
    let out = weir(&["push", model.to_str().unwrap(), &registry.reference("models/digits:1")], cache.path(), None);
    assert_exit(&out, 0, "pushed model");

    let fresh = tempfile::tempdir().unwrap();
    let copy = fresh.path().join("scale.wasm");
    let out = weir(&["pull", &reference, "-o", copy.to_str().unwrap()], fresh.path(), None);
    assert_exit(&out, 0, "downloaded");
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(SCALE).unwrap());
    assert_exit(&weir(&["pull", &reference], fresh.path(), None), 0, "from the local cache");

    // `weir run` takes a reference as well as a file.
    let noop = registry.reference("steps/noop:1");
    assert_exit(&weir(&["push", NOOP, &noop], cache.path(), None), 0, "pushed component");
    let request = r#"{"inputs": [{"name": "x", "datatype": "INT32", "shape": [2], "data": [4, 2]}]}"#;
    let out = weir(&["run", &noop, "--input", "-"], fresh.path(), Some(request));
    assert_exit(&out, 0, "\"data\":[4,2]");

    // Bad input is exit 2, what the registry says is exit 5.
    assert_exit(&weir(&["push", SCALE, "not a reference"], cache.path(), None), 2, "not an OCI reference");
    assert_exit(&weir(&["push", "/nonexistent.wasm", &reference], cache.path(), None), 2, "cannot read");
    assert_exit(&weir(&["pull", &registry.reference("steps/absent:1")], cache.path(), None), 5, "not found");
    let closed = format!("oci://127.0.0.1:{}/x:1", weir_tests::services::free_port());
    assert_exit(&weir(&["pull", &closed], cache.path(), None), 5, "could not be reached");
}

#[test]
fn push_with_basic_auth_from_stdin() {
    let Some(registry) = TestRegistry::start_with_auth("ci", "hunter2") else { return };
    let cache = tempfile::tempdir().unwrap();
    let reference = registry.reference("private/noop:1");
    assert_exit(&weir(&["push", NOOP, &reference], cache.path(), None), 5, "refused our credentials");
    let wrong = weir(&["push", NOOP, &reference, "--username", "ci", "--password-stdin"], cache.path(), Some("nope\n"));
    assert_exit(&wrong, 5, "refused our credentials");
    let right =
        weir(&["push", NOOP, &reference, "--username", "ci", "--password-stdin"], cache.path(), Some("hunter2\n"));
    assert_exit(&right, 0, "pushed component");
    let pulled = weir(
        &["pull", &reference, "--username", "ci", "--password-stdin"],
        tempfile::tempdir().unwrap().path(),
        Some("hunter2"),
    );
    assert_exit(&pulled, 0, "pulled component");
}

/// Push the digits pipeline's parts; returns the manifest text using them.
fn push_digits(registry: &TestRegistry, cache: &Path) -> String {
    let mut manifest = std::fs::read_to_string(examples().join("digits/weir.toml")).unwrap();
    for (name, file) in [("scale", SCALE), ("classify", CLASSIFY), ("topk", TOPK)] {
        let reference = registry.reference(&format!("steps/{name}:1"));
        assert_exit(&weir(&["push", file, &reference], cache, None), 0, "pushed");
        let local = format!("../../target/guests/wasm32-wasip1/release/{name}.wasm");
        manifest = manifest.replace(&format!("\"{local}\""), &format!("\"{reference}\""));
    }
    let model = registry.reference("models/digits:1");
    assert_exit(
        &weir(&["push", examples().join("models/digits.onnx").to_str().unwrap(), &model], cache, None),
        0,
        "pushed model",
    );
    manifest.replace("\"../models/digits.onnx\"", &format!("\"{model}\""))
}

fn status(server: &Server) -> Value {
    get(server, "/v2/status").1
}

fn component<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["components"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_pulls_on_first_use_and_scales_to_zero() {
    let Some(registry) = TestRegistry::start() else { return };
    let push_cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("weir.toml");
    std::fs::write(&manifest, push_digits(&registry, push_cache.path())).unwrap();
    let (oci, compiled) = (dir.path().join("oci"), dir.path().join("compiled"));
    let env = [("WEIR_OCI_CACHE", oci.as_path()), ("WEIR_CACHE_DIR", compiled.as_path())];
    // Long enough that a debug build's compile of the next step does not
    // make the previous one idle mid-request.
    let server = start_with(&manifest, &["--idle-timeout", "6s"], &env);

    // Nothing pulled or compiled at start.
    let before = status(&server);
    assert!(
        before["components"].as_array().unwrap().iter().all(|c| c["state"] == "cold" && c["cold_starts"] == 0),
        "{before}"
    );
    assert!(!oci.exists(), "nothing is pulled before the first invocation");

    let mut request: Value =
        serde_json::from_str(&std::fs::read_to_string(examples().join("digits/request.json")).unwrap()).unwrap();
    request["parameters"] = serde_json::json!({"receipt": "full"});
    let request = request.to_string();
    let (code, response) = post(&server, "/v2/models/digits/infer", &request);
    assert_eq!(code, 200, "{response}");
    assert_eq!(response["outputs"][0]["data"], serde_json::json!([2, 0, 4]));
    let receipt_steps = response["parameters"]["receipt"]["steps"].as_array().unwrap();
    assert!(receipt_steps.iter().all(|s| s["cold_start"]["pull_us"].as_u64() > Some(0)), "{receipt_steps:?}");

    let warm = status(&server);
    // topk ran last, so it is warm whatever the machine's speed.
    let topk = component(&warm, "topk");
    assert_eq!((&topk["state"], &topk["cold_starts"]), (&"warm".into(), &1.into()), "{warm}");
    let classify = component(&warm, "classify");
    assert_eq!(classify["cold_starts"], 1, "{warm}");
    let cold = &classify["last_cold_start"];
    assert!(cold["downloaded_bytes"].as_u64() > Some(0) && cold["instantiate_us"].as_u64().is_some(), "{cold}");
    assert_eq!(cold["compile_source"], "compiled");
    assert_eq!(warm["models"]["loaded"], serde_json::json!(["digits"]));

    // A second request is warm: no cold start in its receipt.
    let (_, response) = post(&server, "/v2/models/digits/infer", &request);
    assert!(response["parameters"]["receipt"]["steps"][0].get("cold_start").is_none(), "{response}");

    // Idle for longer than the timeout: everything leaves memory.
    wait_until("components and models are dropped", || {
        let now = status(&server);
        now["components"].as_array().unwrap().iter().all(|c| c["state"] == "cold")
            && now["models"]["loaded"] == serde_json::json!([])
    });
    let dropped = status(&server);
    assert!(
        component(&dropped, "topk")["last_used_unix_ms"].as_u64().is_some(),
        "a cold component still says when it was last used"
    );
    assert_eq!(dropped["models"]["loaded_bytes"], 0);
    let metrics = crate::common::server::metrics(&server);
    assert!(metrics.contains("weir_components_resident 0"), "{metrics}");

    // The next cold start takes the compiled cache and downloads nothing.
    let (code, _) = post(&server, "/v2/models/digits/infer", &request);
    assert_eq!(code, 200);
    let again = component(&status(&server), "classify").clone();
    assert_eq!(again["cold_starts"], 2);
    // Two clocks a millisecond apart at most: the use is not before the load.
    let (used, loaded) =
        (again["last_used_unix_ms"].as_u64().unwrap(), again["last_cold_start"]["at_unix_ms"].as_u64().unwrap());
    assert!(used + 5 >= loaded, "{again}");
    assert_eq!(
        (&again["last_cold_start"]["compile_source"], &again["last_cold_start"]["downloaded_bytes"]),
        (&"cache".into(), &0.into())
    );
}

#[test]
fn a_wrong_pin_or_a_tampered_blob_is_never_run() {
    let Some(registry) = TestRegistry::start() else { return };
    let cache = tempfile::tempdir().unwrap();
    let reference = registry.reference("steps/noop:1");
    let out = weir(&["push", NOOP, &reference], cache.path(), None);
    let content = pushed_digest(&out, "content");
    let wrong_pin = format!("sha256:{}", "0".repeat(64));
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("weir.toml");
    let pin = format!("digest = \"{wrong_pin}\"");
    let text = one_step_pipelines(&[("pinned", &reference, &pin), ("tampered", &reference, ""), ("local", NOOP, "")]);
    std::fs::write(&manifest, text).unwrap();
    let blob = registry.blob_file(&content);
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&blob, bytes).unwrap();

    let oci = dir.path().join("oci");
    let server = start_with(&manifest, &[], &[("WEIR_OCI_CACHE", oci.as_path())]);
    let x = r#"{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}]}"#;
    let (code, response) = post(&server, "/v2/models/pinned/infer", x);
    assert_eq!(code, 503, "{response}");
    let error = response["error"].as_str().unwrap();
    assert!(error.contains("steps/noop:1") && error.contains(&wrong_pin), "{error}");
    let (code, response) = post(&server, "/v2/models/tampered/infer", x);
    assert_eq!(code, 503, "{response}");
    assert!(response["error"].as_str().unwrap().contains("failed verification"), "{response}");
    // The host keeps serving everyone else.
    assert_eq!(post(&server, "/v2/models/local/infer", x).0, 200);
}

/// A registry that accepts connections and never answers holds up only the
/// components that come from it: a local component's cold start runs
/// meanwhile (loads are locked per artifact, not globally).
#[test]
fn a_stuck_registry_does_not_hold_up_other_cold_starts() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("weir.toml");
    let stuck = format!("oci://127.0.0.1:{port}/steps/noop:1");
    std::fs::write(&manifest, one_step_pipelines(&[("stuck", &stuck, ""), ("local", NOOP, "")])).unwrap();
    let oci = dir.path().join("oci");
    let server = start_with(&manifest, &[], &[("WEIR_OCI_CACHE", oci.as_path())]);
    let x = r#"{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}]}"#;
    let stuck = {
        let base = server.base.clone();
        std::thread::spawn(move || {
            crate::common::server::agent().post(format!("{base}/v2/models/stuck/infer")).send(x).map(|r| r.status())
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(post(&server, "/v2/models/local/infer", x).0, 200);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(3), "the local cold start waited {waited:?} behind the stuck registry");
    assert!(!stuck.is_finished(), "the stuck pull is still waiting on the silent registry");
    drop(silent);
}

/// Idle memory of registered pipelines: `weir serve` with 1 and with N
/// pipelines over the same few components, RSS compared.
#[test]
fn thousands_of_registered_pipelines_cost_little_memory_when_idle() {
    const N: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let manifest_with = |n: usize| {
        let mut text = format!("[components.scale]\nsource = \"{SCALE}\"\n[components.noop]\nsource = \"{NOOP}\"\n");
        for i in 0..n {
            let component = if i % 2 == 0 { "scale" } else { "noop" };
            text += &format!(
                "[pipelines.p{i}]\nsteps = [{{ name = \"s\", component = \"{component}\", inputs = [\"x=input.x\"], config = {{ mean = 0, std = 1 }} }}]\noutputs = {{ y = \"s.{}\" }}\n",
                if component == "scale" { "y" } else { "x" }
            );
        }
        let path = dir.path().join(format!("weir-{n}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    };
    let rss = |server: &Server| status(server)["resident_memory_bytes"].as_u64().unwrap();
    let one = start_with(&manifest_with(1), &[], &[]);
    let many = start_with(&manifest_with(N), &[], &[]);
    let (rss_one, rss_many) = (rss(&one), rss(&many));
    let per_pipeline = rss_many.saturating_sub(rss_one) / (N as u64 - 1);
    eprintln!("idle RSS: 1 pipeline {rss_one} B, {N} pipelines {rss_many} B, {per_pipeline} B per registered pipeline");
    assert!(per_pipeline < 16 * 1024, "{per_pipeline} bytes per idle pipeline");

    let x = r#"{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1.0, 2.0]}]}"#;
    for i in 0..N {
        let (code, response) = post(&many, &format!("/v2/models/p{i}/infer"), x);
        assert_eq!(code, 200, "p{i}: {response}");
    }
    let touched = rss(&many);
    eprintln!("after touching each of {N} pipelines once: {touched} B");
    let now = status(&many);
    assert_eq!(component(&now, "scale")["cold_starts"], 1, "components are shared by pipelines");
    assert_eq!(component(&now, "noop")["cold_starts"], 1);
}

/// An idle server spends (almost) no CPU: nothing wakes it a thousand
/// times a second once no step is running (the epoch thread parks).
#[test]
fn an_idle_server_spends_almost_no_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("weir.toml");
    let pipeline = "[pipelines.p]\nsteps = [{ name = \"s\", component = \"scale\", inputs = [\"x=input.x\"], config = \
                    { mean = 0, std = 1 } }]\noutputs = { y = \"s.y\" }\n";
    std::fs::write(&manifest, format!("[components.scale]\nsource = \"{SCALE}\"\n{pipeline}")).unwrap();
    let server = start_with(&manifest, &[], &[]);
    let x = r#"{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1.0, 2.0]}]}"#;
    let (code, response) = post(&server, "/v2/models/p/infer", x);
    assert_eq!(code, 200, "{response}");
    // utime + stime of the whole process, in clock ticks (1/100 s here).
    let cpu_ticks = || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.pid())).unwrap();
        let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_ticks();
    std::thread::sleep(Duration::from_secs(5));
    let spent = cpu_ticks() - before;
    eprintln!("idle for 5 s after one request: {spent} clock ticks of CPU");
    // Before the epoch thread parked it was ~2 % of a core (10+ ticks in 5 s).
    assert!(spent <= 3, "an idle server spent {spent} clock ticks of CPU in 5 s");
}

/// Two processes pulling the same artifacts into one cache at once, several
/// times over: every pull succeeds with the right bytes, and the cache holds
/// each blob once, whole, with no half-written files left behind.
#[test]
fn concurrent_pulls_from_two_processes_share_one_cache_safely() {
    let Some(registry) = TestRegistry::start() else { return };
    let publish = tempfile::tempdir().unwrap();
    let model = examples().join("models/digits.onnx");
    let reference = registry.reference("models/digits:1");
    assert_exit(&weir(&["push", model.to_str().unwrap(), &reference], publish.path(), None), 0, "pushed model");
    let cache = tempfile::tempdir().unwrap();
    let expected = std::fs::read(&model).unwrap();
    for round in 0..3 {
        // A fresh cache each round (the first pull downloads, the race is real).
        let shared = cache.path().join(format!("round-{round}"));
        let pullers: Vec<_> = (0..2)
            .map(|i| {
                let (shared, reference) = (shared.clone(), reference.clone());
                let out = shared.with_file_name(format!("copy-{round}-{i}.onnx"));
                std::thread::spawn(move || {
                    let result = weir(&["pull", &reference, "-o", out.to_str().unwrap()], &shared, None);
                    (result, out)
                })
            })
            .collect();
        for puller in pullers {
            let (result, out) = puller.join().unwrap();
            assert_exit(&result, 0, "");
            assert_eq!(std::fs::read(&out).unwrap(), expected, "round {round}: the pulled copy is the model");
        }
        let files: Vec<std::path::PathBuf> = weir_tests::files_under(&shared);
        let blobs: Vec<_> = files.iter().filter(|p| std::fs::read(p).is_ok_and(|b| b == expected)).collect();
        assert_eq!(blobs.len(), 1, "round {round}: the model is cached once: {files:?}");
        // Downloads are staged in the cache's `tmp/` and renamed into place.
        let partial: Vec<_> = files.iter().filter(|p| p.starts_with(shared.join("tmp"))).collect();
        assert!(partial.is_empty(), "round {round}: half-written files left: {partial:?}");
    }
}

/// `path` pulled with ORAS's Python SDK: the manifest, and each pulled
/// file's sha256 and first bytes.
fn oras_pull(python: &Path, registry: &TestRegistry, path: &str) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/oras_pull.py");
    let out = std::process::Command::new(python).arg(script).args([&registry.addr, path]).output().unwrap();
    assert!(out.status.success(), "oras pull {path}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sha256_hex(file: &Path) -> String {
    weir_core::Digest::of(&std::fs::read(file).unwrap()).to_string().trim_start_matches("sha256:").to_string()
}

/// What `weir push` writes — a component (the CNCF Wasm OCI artifact
/// layout), a model, and precompiled code attached to the component — is
/// pulled byte for byte by ORAS, an OCI client that knows nothing of weir.
#[test]
fn oras_pulls_what_weir_pushes() {
    let (Some(python), Some(registry)) = (weir_tests::services::oras_python(), TestRegistry::start()) else { return };
    let cache = tempfile::tempdir().unwrap();
    let target = weir_sandbox::precompiled::host_target();
    let out = weir(&["push", SCALE, &registry.reference("steps/scale:1"), "--precompile", &target], cache.path(), None);
    assert_exit(&out, 0, "pushed component");
    let component_manifest = pushed_digest(&out, "manifest");
    let pulled = oras_pull(&python, &registry, "steps/scale:1");
    assert_eq!(pulled["manifest"]["config"]["mediaType"], "application/vnd.wasm.config.v0+json", "{pulled}");
    assert_eq!(pulled["manifest"]["layers"][0]["mediaType"], "application/wasm", "{pulled}");
    assert_eq!(pulled["files"].as_array().unwrap().len(), 1, "{pulled}");
    assert_eq!(pulled["files"][0]["sha256"], sha256_hex(Path::new(SCALE)), "{pulled}");

    let model = examples().join("models/digits.onnx");
    let out = weir(&["push", model.to_str().unwrap(), &registry.reference("models/digits:1")], cache.path(), None);
    assert_exit(&out, 0, "pushed model");
    let pulled = oras_pull(&python, &registry, "models/digits:1");
    assert_eq!(pulled["files"][0]["sha256"], sha256_hex(&model), "{pulled}");

    // The precompiled code, by the tag registries without the referrers API serve.
    let hex = component_manifest.trim_start_matches("sha256:");
    let pulled = oras_pull(&python, &registry, &format!("steps/scale:sha256-{hex}.{target}.cwasm"));
    assert_eq!(pulled["manifest"]["artifactType"], "application/vnd.weir.precompiled.v1", "{pulled}");
    assert_eq!(pulled["manifest"]["subject"]["digest"], component_manifest.as_str(), "{pulled}");
    assert_eq!(pulled["files"][0]["head"], hex_of(b"weirpc1\n"), "{pulled}");
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// weir and wkg, the Bytecode Alliance's Wasm package tool, read each
/// other's pushes: `wkg oci pull` gets what `weir push` wrote byte for
/// byte, and weir runs a component `wkg oci push` wrote.
#[test]
fn wkg_pulls_what_weir_pushes_and_weir_runs_what_wkg_pushed() {
    let (Some(wkg), Some(registry)) = (weir_tests::services::require("wkg"), TestRegistry::start()) else { return };
    let cache = tempfile::tempdir().unwrap();
    let wkg_oci = |args: &[&str]| {
        let out = std::process::Command::new(&wkg).arg("oci").args(args).args(["--insecure", &registry.addr]).output();
        let out = out.unwrap();
        assert!(out.status.success(), "wkg oci {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    assert_exit(&weir(&["push", SCALE, &registry.reference("steps/scale:1")], cache.path(), None), 0, "pushed");
    let pulled = cache.path().join("scale-by-wkg.wasm");
    wkg_oci(&["pull", &format!("{}/steps/scale:1", registry.addr), "-o", pulled.to_str().unwrap()]);
    assert_eq!(std::fs::read(&pulled).unwrap(), std::fs::read(SCALE).unwrap());

    wkg_oci(&["push", &format!("{}/wkg/noop:1", registry.addr), NOOP]);
    let request = r#"{"inputs": [{"name": "x", "datatype": "INT32", "shape": [2], "data": [4, 2]}]}"#;
    let fresh = tempfile::tempdir().unwrap();
    let out = weir(&["run", &registry.reference("wkg/noop:1"), "--input", "-"], fresh.path(), Some(request));
    assert_exit(&out, 0, "\"data\":[4,2]");
}
