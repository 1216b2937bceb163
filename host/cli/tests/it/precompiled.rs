//! Code compiled ahead of time (`weir compile`): made for this host and for
//! another architecture, taken by a host only when it is the component's
//! own code for its target and engine settings, compiled otherwise, and
//! never loaded when wasmtime says its settings differ.

use std::path::{Path, PathBuf};

use crate::common::server::{get, post, start_with};
use crate::common::{config, f32_tensor, f32_values, weir};
use weir_sandbox::compiled::CompileSource;
use weir_sandbox::component::Offered;
use weir_sandbox::engine::{self, EngineOptions};
use weir_sandbox::precompiled::{self, host_target};
use weir_sandbox::{Sandbox, SandboxOptions, StepLimits};
use weir_tests::{HOSTILE, SCALE};

const AARCH64: &str = "aarch64-unknown-linux-gnu";

/// Another architecture than this host's, and its ELF machine number.
fn elsewhere() -> (&'static str, u16) {
    if host_target().starts_with("x86_64") {
        (AARCH64, 183)
    } else {
        ("x86_64-unknown-linux-gnu", 62)
    }
}

fn sandbox(fuel: bool) -> (Sandbox, EngineOptions) {
    let options = EngineOptions { max_instances: 8, fuel, ..EngineOptions::default() };
    let sandbox =
        Sandbox::new(SandboxOptions { engine: options.clone(), cache_dir: None, ..SandboxOptions::default() });
    (sandbox.unwrap(), options)
}

/// `component`'s code for `target`, made with `options`.
fn precompile(options: &EngineOptions, target: &str, component: &str) -> Offered {
    let engine = engine::for_target(options, target).unwrap();
    let bytes = std::fs::read(component).unwrap();
    let code = precompiled::compile(&engine, options, target, component, &bytes).unwrap();
    Offered { name: format!("{component} for {target}"), bytes: code }
}

/// The ELF machine of a precompiled file's code (62 x86-64, 183 AArch64).
fn elf_machine(file: &[u8]) -> u16 {
    let (_, code) = precompiled::parse("file", file).unwrap();
    assert_eq!(&code[..4], b"\x7fELF");
    u16::from_le_bytes([code[18], code[19]])
}

#[tokio::test]
async fn a_host_takes_only_its_own_code_and_compiles_otherwise() {
    let (host, options) = sandbox(false);
    let bytes = std::fs::read(SCALE).unwrap();
    let mine = precompile(&options, &host_target(), SCALE);
    let (other_target, other_machine) = elsewhere();
    let arm = precompile(&options, other_target, SCALE);
    assert_eq!(elf_machine(&arm.bytes), other_machine, "another architecture's code, compiled on this machine");
    let other_component = precompile(&options, &host_target(), HOSTILE);
    let (fueled, _) = sandbox(true);
    let with_fuel = precompile(&EngineOptions { fuel: true, ..options.clone() }, &host_target(), SCALE);

    // Its own code, offered last: taken, and it runs as compiled code does.
    let offered = [arm, other_component, mine];
    let loaded = host.load_with("scale", &bytes, &offered).unwrap();
    assert_eq!(loaded.load.compile_source, CompileSource::Precompiled);
    let compiled = host.load_bytes("scale", &bytes).unwrap();
    assert_eq!(compiled.load.compile_source, CompileSource::Compiled);
    let limits = StepLimits { memory_bytes: 64 << 20, timeout: std::time::Duration::from_secs(2), fuel: None };
    let grants = config(&[("mean", "1"), ("std", "2")]);
    let input = || vec![f32_tensor("x", &[3], &[1.0, 3.0, 5.0])];
    let a = host.invoke(&loaded, "scale", &grants, &limits, input()).await.unwrap();
    let b = host.invoke(&compiled, "scale", &grants, &limits, input()).await.unwrap();
    assert_eq!(f32_values(&a.outputs[0]), f32_values(&b.outputs[0]));

    // Another architecture's, another component's: passed over, compiled.
    let passed = host.load_with("scale", &bytes, &offered[..2]).unwrap();
    assert_eq!(passed.load.compile_source, CompileSource::Compiled);
    // Code made with other engine settings (fuel metering) is refused by
    // wasmtime's own check: compiled instead, never loaded.
    let refused = host.load_with("scale", &bytes, std::slice::from_ref(&with_fuel)).unwrap();
    assert_eq!(refused.load.compile_source, CompileSource::Compiled);
    let taken = fueled.load_with("scale", &bytes, std::slice::from_ref(&with_fuel)).unwrap();
    assert_eq!(taken.load.compile_source, CompileSource::Precompiled, "a host with fuel takes it");
    // Not a precompiled file at all (a component offered as one).
    let bogus = Offered { name: "scale.wasm".into(), bytes: bytes.clone() };
    assert_eq!(host.load_with("scale", &bytes, &[bogus]).unwrap().load.compile_source, CompileSource::Compiled);
}

fn digits_manifest(dir: &Path, precompiled: Option<&Path>) -> PathBuf {
    let manifest = crate::common::example_manifest(dir, &["digits"], &["[triggers"], "");
    if let Some(folder) = precompiled {
        crate::common::list_precompiled(&manifest, folder, &[&host_target(), AARCH64]);
    }
    manifest
}

#[test]
fn weir_compile_makes_code_a_server_loads_without_compiling() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("precompiled");
    let plain = digits_manifest(dir.path(), None);
    let run = weir(
        &[
            "compile",
            plain.to_str().unwrap(),
            "--target",
            &host_target(),
            "--target",
            AARCH64,
            "-o",
            out.to_str().unwrap(),
        ],
        None,
    );
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    for name in ["scale", "classify", "topk"] {
        let arm = std::fs::read(out.join(format!("{name}.{AARCH64}.cwasm"))).unwrap();
        assert_eq!(elf_machine(&arm), 183, "{name} for AArch64");
    }
    // A fresh cache, so nothing is taken from an earlier compile.
    let cache = tempfile::tempdir().unwrap();
    let manifest = digits_manifest(dir.path(), Some(&out));
    let server = start_with(&manifest, &[], &[("WEIR_CACHE_DIR", cache.path())]);
    let request = std::fs::read_to_string(crate::common::examples_dir().join("digits/request.json")).unwrap();
    let (status, body) = post(&server, "/v2/models/digits/infer", &request);
    assert_eq!(status, 200, "{body}");
    let (_, status) = get(&server, "/v2/status");
    assert_eq!(status["components"].as_array().unwrap().len(), 3, "{status}");
    for component in status["components"].as_array().unwrap() {
        assert_eq!(component["last_cold_start"]["compile_source"], "precompiled", "{component}");
    }
}

#[test]
fn bad_targets_and_registry_code_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let riscv = weir(&["compile", SCALE, "--target", "riscv64gc-unknown-linux-gnu", "-o", out], None);
    let text = String::from_utf8_lossy(&riscv.stderr);
    assert_eq!(riscv.status.code(), Some(2), "{text}");
    assert!(text.contains("weir compiles for x86_64 and aarch64 only"), "{text}");
    let nonsense =
        weir(&["compile", SCALE, "--target", "x86_64-unknown-linux-gnu", "--target", "no-such-cpu", "-o", out], None);
    assert_eq!(nonsense.status.code(), Some(2));
    assert!(!Path::new(out).exists(), "nothing is written when a target is bad");
    // Native code from a registry is never loaded: the manifest says so.
    let manifest = crate::common::manifest_with_components(dir.path(), "");
    let text = std::fs::read_to_string(&manifest).unwrap().replacen(
        "[components.scale]\n",
        "[components.scale]\nprecompiled = \"oci://localhost:5000/code/scale:1\"\n",
        1,
    );
    std::fs::write(&manifest, text).unwrap();
    let run = weir(&["graph", manifest.to_str().unwrap(), "fast"], None);
    let said = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{said}");
    assert!(said.contains("list local files here"), "{said}");
}

/// `weir push --precompile` puts code for this host and for AArch64 beside
/// a signed component; a host that requires the signature takes its own
/// from the registry instead of compiling, one that requires none compiles.
#[test]
fn code_pushed_with_a_signed_component_is_taken_from_the_registry() {
    let Some(registry) = weir_tests::services::TestRegistry::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("release");
    assert!(weir(&["signing-key", "new", key.to_str().unwrap()], None).status.success());
    let reference = registry.reference("steps/scale:1");
    let key_file = format!("{}.key", key.display());
    let host = host_target();
    let pushed =
        weir(&["push", SCALE, &reference, "--sign", &key_file, "--precompile", &host, "--precompile", AARCH64], None);
    let said = String::from_utf8_lossy(&pushed.stdout);
    assert!(pushed.status.success(), "{said}{}", String::from_utf8_lossy(&pushed.stderr));
    assert!(said.contains(&format!("precompiled for {AARCH64}")) && said.contains("signed by key"), "{said}");

    let serve = |signed: bool| {
        let signed_by = if signed { format!("signed_by = \"{}.pub\"\n", key.display()) } else { String::new() };
        let manifest = dir.path().join(format!("signed-{signed}.toml"));
        std::fs::write(
            &manifest,
            format!(
                "[components.scale]\nsource = \"{reference}\"\n{signed_by}[pipelines.fast]\nsteps = [{{ name = \
                 \"scale\", component = \"scale\", inputs = [\"input.x\"] }}]\noutputs = {{ y = \"scale.y\" }}\n"
            ),
        )
        .unwrap();
        let cache = tempfile::tempdir().unwrap();
        let server = start_with(&manifest, &[], &[("WEIR_CACHE_DIR", cache.path())]);
        let body = r#"{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1.0, 3.0]}]}"#;
        assert_eq!(post(&server, "/v2/models/fast/infer", body).0, 200);
        let (_, status) = get(&server, "/v2/status");
        status["components"][0]["last_cold_start"]["compile_source"].as_str().unwrap().to_string()
    };
    assert_eq!(serve(true), "precompiled", "signed code for this host is taken from the registry");
    assert_eq!(serve(false), "compiled", "without a signature requirement, native code is never pulled");
}
