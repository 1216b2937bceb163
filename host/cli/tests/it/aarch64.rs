//! weir itself on another architecture: built for aarch64 with Debian's
//! cross toolchain (the lean build, which has no compiler), run under
//! `qemu-aarch64` with the aarch64 ONNX Runtime of the same PyPI release,
//! serving the digits and ride-eta examples from code that `weir compile`
//! made on this x86-64 machine. Its answers must be this host's answers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use crate::common::server::{get, post, spawn};
use crate::common::{examples_manifest, list_precompiled, weir};
use crate::variants::{declared, digits_with, variants_block};
use weir_sandbox::precompiled::host_target;
use weir_tests::services::{data_dir, missing, require};

const AARCH64: &str = "aarch64-unknown-linux-gnu";
/// Where Debian's cross packages put the aarch64 C and C++ runtime.
const CROSS_SYSROOT: &str = "/usr/aarch64-linux-gnu";

/// weir built for aarch64, and how to run it.
struct Emulated {
    qemu: PathBuf,
    weir: PathBuf,
    onnxruntime: PathBuf,
}

impl Emulated {
    /// Build weir for aarch64 (scripts/cross-build.sh); `None` (skip) when
    /// this machine is not x86-64 or lacks what scripts/setup.sh installs.
    fn build() -> Option<Self> {
        if !host_target().starts_with("x86_64") {
            eprintln!("SKIPPED: the emulated aarch64 run is made from an x86-64 host");
            return None;
        }
        let qemu = require("qemu-aarch64")?;
        require("aarch64-linux-gnu-gcc")?;
        let onnxruntime = data_dir().join("onnxruntime-aarch64/libonnxruntime.so");
        if !onnxruntime.is_file() {
            missing(&format!("no aarch64 ONNX Runtime at {}; run scripts/setup.sh", onnxruntime.display()));
            return None;
        }
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let started = Instant::now();
        let built = Command::new("bash").arg(repo.join("scripts/cross-build.sh")).arg(AARCH64).output().unwrap();
        assert!(built.status.success(), "cross build failed:\n{}", String::from_utf8_lossy(&built.stderr));
        let weir = PathBuf::from(String::from_utf8(built.stdout).unwrap().trim());
        eprintln!("aarch64 weir built in {:.0} s: {}", started.elapsed().as_secs_f64(), weir.display());
        let elf = std::fs::read(&weir).unwrap();
        assert_eq!(u16::from_le_bytes([elf[18], elf[19]]), 183, "an AArch64 executable");
        Some(Self { qemu, weir, onnxruntime })
    }

    /// `weir ARGS` under qemu-aarch64, with the aarch64 ONNX Runtime.
    fn command(&self, args: &[&str], cache: &Path) -> Command {
        let library_path = format!("{CROSS_SYSROOT}/lib:/usr/lib/aarch64-linux-gnu");
        let mut command = Command::new(&self.qemu);
        command
            .args(["-L", CROSS_SYSROOT, "-E", &format!("LD_LIBRARY_PATH={library_path}")])
            .arg(&self.weir)
            .args(args)
            .env("WEIR_ORT_DYLIB", &self.onnxruntime)
            .env("WEIR_CACHE_DIR", cache)
            .env("WEIR_POWERCAP_ROOT", "/nonexistent");
        command
    }

    fn run(&self, args: &[&str], cache: &Path) -> Output {
        self.command(args, cache).output().unwrap()
    }
}

/// Compile `manifest`'s components here for aarch64 and list the code in it.
fn precompile_for_aarch64(manifest: &Path) {
    let code = manifest.with_file_name("precompiled");
    let compiled =
        weir(&["compile", manifest.to_str().unwrap(), "--target", AARCH64, "-o", code.to_str().unwrap()], None);
    assert!(compiled.status.success(), "{}", String::from_utf8_lossy(&compiled.stderr));
    // Only aarch64 code is listed: the lean build cannot compile, so an
    // answer at all means it ran the code made here.
    list_precompiled(manifest, &code, &[AARCH64]);
}

/// The response's outputs by name: (datatype, shape, values).
fn outputs(run: &Output, who: &str) -> Vec<(String, String, serde_json::Value, Vec<f64>)> {
    assert!(run.status.success(), "{who}: {}", String::from_utf8_lossy(&run.stderr));
    let response: serde_json::Value = serde_json::from_slice(&run.stdout)
        .unwrap_or_else(|e| panic!("{who} printed no response ({e}): {}", String::from_utf8_lossy(&run.stdout)));
    let mut outputs: Vec<_> = response["outputs"]
        .as_array()
        .unwrap_or_else(|| panic!("{who}: no outputs in {response}"))
        .iter()
        .map(|o| {
            let values = o["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            (
                o["name"].as_str().unwrap().to_string(),
                o["datatype"].as_str().unwrap().to_string(),
                o["shape"].clone(),
                values,
            )
        })
        .collect();
    outputs.sort_by(|a, b| a.0.cmp(&b.0));
    outputs
}

#[test]
fn the_examples_run_on_aarch64_from_code_compiled_here_and_answer_as_here() {
    let Some(emulated) = Emulated::build() else { return };
    let dir = tempfile::tempdir().unwrap();
    let manifest = examples_manifest(dir.path(), "");
    precompile_for_aarch64(&manifest);
    let manifest = manifest.to_str().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let examples = crate::common::examples_dir();

    for (pipeline, request) in [("digits", "digits/request.json"), ("ride", "ride-eta/request.json")] {
        let request = examples.join(request);
        let args = ["run", manifest, pipeline, "--input", request.to_str().unwrap()];
        let native = outputs(&weir(&args, None), "x86-64 weir");
        let started = Instant::now();
        let arm = outputs(&emulated.run(&args, cache.path()), "aarch64 weir under qemu");
        eprintln!("{pipeline}: aarch64 weir under qemu answered in {:.2} s", started.elapsed().as_secs_f64());
        assert_eq!(native.len(), arm.len(), "{pipeline}: the same outputs");
        for ((name, datatype, shape, here), (arm_name, arm_datatype, arm_shape, there)) in native.iter().zip(&arm) {
            assert_eq!((name, datatype, shape), (arm_name, arm_datatype, arm_shape), "{pipeline}");
            assert_eq!(here.len(), there.len(), "{pipeline}.{name}");
            for (a, b) in here.iter().zip(there) {
                // Integers (labels, classes) exactly; floats as far as
                // ONNX Runtime's x86-64 and NEON kernels round alike.
                let tolerance = if datatype.starts_with("FP") { 1e-5 * a.abs().max(1.0) } else { 0.0 };
                assert!((a - b).abs() <= tolerance, "{pipeline}.{name}: x86-64 {here:?}, aarch64 {there:?}");
            }
        }
    }
}

/// One pipeline per digits variant (the classify step alone, on pixels
/// already scaled to 0..1), each with its own plain model.
fn one_pipeline_per_variant() -> String {
    let mut text = String::new();
    for (name, file, _) in declared() {
        let source = crate::models::models_dir().join(file);
        let p = format!("pipelines.v_{name}");
        text.push_str(&format!("\n[models.digits_{name}]\nsource = \"{}\"\n\n[{p}]\n", source.display()));
        text.push_str(&format!("[[{p}.inputs]]\nname = \"x\"\ndatatype = \"FP32\"\nshape = [-1, 64]\n"));
        text.push_str(&format!(
            "[[{p}.steps]]\nname = \"classify\"\ncomponent = \"classify\"\ninputs = [\"x=input.x\"]\n"
        ));
        text.push_str(&format!("models = [\"digits_{name}\"]\nconfig = {{ model = \"digits_{name}\" }}\n"));
        text.push_str(&format!("[{p}.outputs]\nlabel = \"classify.label\"\n"));
    }
    text
}

/// The digits variants under qemu-aarch64: the emulated host times them
/// itself and serves the fastest there, and each is as accurate there as
/// declared (measured on x86-64 by the training script).
#[test]
fn the_digits_variants_are_chosen_on_aarch64_by_its_own_timing_and_keep_their_accuracy() {
    let Some(emulated) = Emulated::build() else { return };
    let dir = tempfile::tempdir().unwrap();
    let model = variants_block("objective = \"latency\"", &[]) + &one_pipeline_per_variant();
    let manifest = digits_with(dir.path(), &model);
    precompile_for_aarch64(&manifest);
    let cache = tempfile::tempdir().unwrap();
    let args = ["serve", manifest.to_str().unwrap(), "--listen", "127.0.0.1:0", "--no-auth"];
    let started = Instant::now();
    let server = spawn(emulated.command(&args, cache.path()));
    eprintln!("aarch64 weir serve under qemu listening after {:.1} s", started.elapsed().as_secs_f64());

    // The lean build has no console (cargo feature `console`).
    for path in ["/ui", "/v2/console/pipelines"] {
        assert_eq!(get(&server, path).0, 404, "{path} on the lean build");
    }

    let request = std::fs::read_to_string(crate::common::examples_dir().join("digits/request.json")).unwrap();
    let mut full: serde_json::Value = serde_json::from_str(&request).unwrap();
    full["parameters"] = serde_json::json!({"receipt": "full"});
    let (status, response) = post(&server, "/v2/models/digits/infer", &full.to_string());
    assert_eq!(status, 200, "{response}");
    let (_, state) = get(&server, "/v2/status");
    let pick = &state["models"]["variants"][0];
    assert_eq!(pick["arch"], "aarch64", "{pick}");
    let candidates = pick["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), declared().len(), "{pick}");
    let latency = |c: &serde_json::Value| c["latency_us"].as_f64().unwrap();
    let fastest = candidates.iter().min_by(|a, b| latency(a).total_cmp(&latency(b))).unwrap();
    assert_eq!(pick["chosen"], fastest["variant"], "{pick}");
    let steps = response["parameters"]["receipt"]["steps"].as_array().unwrap();
    let classify = steps.iter().find(|s| s["step"] == "classify").unwrap();
    assert_eq!(classify["models"][0]["variant"], pick["chosen"], "{classify}");

    let test_file = crate::models::models_dir().join("digits_test.json");
    let test: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(test_file).unwrap()).unwrap();
    let rows = test["inputs"].as_array().unwrap();
    let held_out =
        serde_json::json!({"inputs": [{"name": "x", "shape": [rows.len(), 64], "datatype": "FP32", "data": rows}]});
    let labels = test["labels"].as_array().unwrap();
    for (name, _, declared) in declared() {
        let (status, response) = post(&server, &format!("/v2/models/v_{name}/infer"), &held_out.to_string());
        assert_eq!(status, 200, "{response}");
        let predicted = response["outputs"][0]["data"].as_array().unwrap();
        let accuracy = predicted.iter().zip(labels).filter(|(p, l)| p == l).count() as f64 / labels.len() as f64;
        let c = candidates.iter().find(|c| c["variant"] == name.as_str()).unwrap();
        let (bytes, cpu) = (c["bytes"].as_u64().unwrap(), c["cpu_us"].as_f64().unwrap());
        eprintln!(
            "aarch64 under qemu: {name} accuracy {accuracy:.4} (declared {declared:.4}), {bytes} bytes, latency {:.1} us, \
             cpu {cpu:.1} us",
            latency(c)
        );
        assert!((accuracy - declared).abs() <= 0.0025, "{name}: {accuracy} under qemu, declared {declared}");
    }
}
