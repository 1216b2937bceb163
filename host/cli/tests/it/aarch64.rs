//! weir itself on another architecture: built for aarch64 with Debian's
//! cross toolchain (the lean build, which has no compiler), run under
//! `qemu-aarch64` with the aarch64 ONNX Runtime of the same PyPI release,
//! serving the digits and ride-eta examples from code that `weir compile`
//! made on this x86-64 machine. Its answers must be this host's answers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use crate::common::{examples_manifest, list_precompiled, weir};
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

    fn run(&self, args: &[&str], cache: &Path) -> Output {
        let library_path = format!("{CROSS_SYSROOT}/lib:/usr/lib/aarch64-linux-gnu");
        Command::new(&self.qemu)
            .args(["-L", CROSS_SYSROOT, "-E", &format!("LD_LIBRARY_PATH={library_path}")])
            .arg(&self.weir)
            .args(args)
            .env("WEIR_ORT_DYLIB", &self.onnxruntime)
            .env("WEIR_CACHE_DIR", cache)
            .env("WEIR_POWERCAP_ROOT", "/nonexistent")
            .output()
            .unwrap()
    }
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
    let code = dir.path().join("precompiled");
    let compiled =
        weir(&["compile", manifest.to_str().unwrap(), "--target", AARCH64, "-o", code.to_str().unwrap()], None);
    assert!(compiled.status.success(), "{}", String::from_utf8_lossy(&compiled.stderr));
    // Only aarch64 code is listed: the lean build cannot compile, so an
    // answer at all means it ran the code made here.
    list_precompiled(&manifest, &code, &[AARCH64]);
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
