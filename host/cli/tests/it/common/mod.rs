//! Helpers shared by weir's integration tests.

pub mod server;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use weir_core::tensor::split_bytes_elements;
use weir_core::{Datatype, StepGrants, Tensor};

pub fn f32_tensor(name: &str, shape: &[u64], values: &[f32]) -> Tensor {
    Tensor {
        name: name.into(),
        datatype: Datatype::Fp32,
        shape: shape.to_vec(),
        data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

pub fn f32_values(tensor: &Tensor) -> Vec<f32> {
    assert_eq!(tensor.datatype, Datatype::Fp32, "tensor `{}`", tensor.name);
    tensor.data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

/// The single string of a BYTES tensor.
pub fn only_string(tensor: &Tensor) -> String {
    let elements = split_bytes_elements(&tensor.name, &tensor.data).unwrap();
    assert_eq!(elements.len(), 1);
    String::from_utf8(elements[0].to_vec()).unwrap()
}

pub fn config(pairs: &[(&str, &str)]) -> StepGrants {
    StepGrants { config: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), ..Default::default() }
}

/// A compiled-component cache shared by the tests (keyed by digest and engine
/// settings, so sharing is safe); tests about the cache itself use their own.
pub fn shared_cache_dir() -> std::path::PathBuf {
    std::path::Path::new(weir_tests::GUEST_TARGET_DIR).join("compiled-cache")
}

/// Run the `weir` binary with the tests' shared compiled cache, modelled
/// energy (no RAPL counters), extra environment, and `stdin` piped in.
pub fn weir_with(args: &[&str], env: &[(&str, &Path)], stdin: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    command
        .args(args)
        .env("WEIR_CACHE_DIR", shared_cache_dir())
        .env("WEIR_POWERCAP_ROOT", "/nonexistent")
        .env_remove("WEIR_REGISTRY_USERNAME")
        .env_remove("WEIR_REGISTRY_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let mut pipe = child.stdin.take().unwrap();
    // A weir that fails before reading its input closes the pipe first:
    // a broken pipe here is expected, the exit status tells the story.
    let _ = pipe.write_all(stdin.unwrap_or("").as_bytes());
    drop(pipe);
    child.wait_with_output().unwrap()
}

/// [`weir_with`] without extra environment.
pub fn weir(args: &[&str], stdin: Option<&str>) -> Output {
    weir_with(args, &[], stdin)
}

/// `weir.toml` in `dir`: [`test_components`], then `pipelines`.
pub fn manifest_with_components(dir: &Path, pipelines: &str) -> std::path::PathBuf {
    let path = dir.join("weir.toml");
    std::fs::write(&path, format!("{}\n{pipelines}", test_components())).unwrap();
    path
}

/// `[components.hostile]` and `[components.scale]`, the guests most test
/// manifests start with.
pub fn test_components() -> String {
    format!(
        "[components.hostile]\nsource = \"{}\"\n[components.scale]\nsource = \"{}\"\n",
        weir_tests::HOSTILE,
        weir_tests::SCALE
    )
}

/// `weir.toml` in `dir`: the digits and ride-eta examples' manifests in one
/// (their sources made absolute, their listeners left out: tests pick the
/// ports), then `extra`.
pub fn examples_manifest(dir: &Path, extra: &str) -> std::path::PathBuf {
    example_manifest(dir, &["digits", "ride-eta"], &["[triggers"], extra)
}

/// `weir.toml` in `dir`: the named examples' manifests in one, their
/// sources made absolute, without the sections that start with any of
/// `skip` (e.g. `[triggers`), then `extra`.
pub fn example_manifest(dir: &Path, examples: &[&str], skip: &[&str], extra: &str) -> std::path::PathBuf {
    let root = examples_dir();
    let mut text = String::new();
    for example in examples {
        let folder = root.join(example);
        let mut skipped = false;
        for line in std::fs::read_to_string(folder.join("weir.toml")).unwrap().lines() {
            if line.starts_with('[') {
                skipped = skip.iter().any(|prefix| line.starts_with(prefix));
            }
            if skipped {
                continue;
            }
            match line.strip_prefix("source = \"").and_then(|rest| rest.strip_suffix('"')) {
                Some(source) => text.push_str(&format!("source = \"{}\"\n", folder.join(source).display())),
                None => text.push_str(&format!("{line}\n")),
            }
        }
    }
    text.push_str(extra);
    let path = dir.join("weir.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Give every component of `manifest` a `precompiled = [...]` list: the
/// files `weir compile -o folder` writes for `targets`.
pub fn list_precompiled(manifest: &Path, folder: &Path, targets: &[&str]) {
    let mut text = String::new();
    for line in std::fs::read_to_string(manifest).unwrap().lines() {
        text.push_str(line);
        text.push('\n');
        if let Some(name) = line.strip_prefix("[components.").and_then(|l| l.strip_suffix(']')) {
            let files: Vec<String> =
                targets.iter().map(|t| format!("\"{}\"", folder.join(format!("{name}.{t}.cwasm")).display())).collect();
            text.push_str(&format!("precompiled = [{}]\n", files.join(", ")));
        }
    }
    std::fs::write(manifest, text).unwrap();
}

/// The repository's `examples/`, absolute.
pub fn examples_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").canonicalize().unwrap()
}

/// The numbers of a JSON array.
pub fn floats(value: &serde_json::Value) -> Vec<f64> {
    value.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
}

/// A ride-eta request for one trip row of `ride_test.json` (distance, hour,
/// congestion, then the driver's three numbers).
pub fn trip(row: &[f64]) -> String {
    serde_json::json!({"inputs": [
        {"name": "distance_km", "shape": [1], "datatype": "FP32", "data": [row[0]]},
        {"name": "hour", "shape": [1], "datatype": "FP32", "data": [row[1]]},
        {"name": "congestion", "shape": [1], "datatype": "FP32", "data": [row[2]]},
        {"name": "driver", "shape": [1, 3], "datatype": "FP32", "data": [[row[3], row[4], row[5]]]},
    ]})
    .to_string()
}
