//! Running weir on Kubernetes: the manifests under `deploy/kubernetes`
//! render and validate offline (and the validation fails on what it should
//! catch), and the container image is built without a daemon, pushed to a
//! real registry, pulled back, and serves the digits pipeline from its own
//! files, its components and model pulled from the registry.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use weir_tests::services::{deploy_python, require, TestRegistry};

use crate::common::server::{agent, metrics, post, spawn, start_with};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn deploy_dir() -> PathBuf {
    root().join("deploy/kubernetes")
}

/// scripts/validate-deploy.py on `dir`: (passed, what it printed).
fn validate(python: &Path, dir: &Path, metrics: &Path) -> (bool, String) {
    let out = Command::new(python)
        .arg(root().join("scripts/validate-deploy.py"))
        .arg(dir)
        .arg("--metrics")
        .arg(metrics)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[test]
fn the_kubernetes_manifests_render_and_validate_offline() {
    let (Some(python), Some(_)) = (deploy_python(), require("kubectl")) else { return };
    // The manifest the ConfigMap carries is one weir takes, triggers and all.
    let text = std::fs::read_to_string(deploy_dir().join("base/weir.toml")).unwrap();
    let manifest = weir_manifest::parse(Path::new("weir.toml"), &text).expect("deploy's weir.toml parses");
    weir_triggers::Triggers::from_manifest(&manifest).expect("deploy's triggers are valid");

    // What a running weir exports, for the HPA's metric.
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(&crate::common::example_manifest(dir.path(), &["digits"], &["[triggers"], ""), &[], &[]);
    let request = std::fs::read_to_string(root().join("examples/digits/request.json")).unwrap();
    assert_eq!(post(&server, "/v2/models/digits/infer", &request).0, 200);
    let exported = dir.path().join("metrics.txt");
    std::fs::write(&exported, metrics(&server)).unwrap();

    let (passed, text) = validate(&python, &deploy_dir(), &exported);
    assert!(passed, "{text}");
    assert!(text.contains("deploy: valid (2 overlays"), "{text}");

    // Each mistake is caught, said where.
    let mistakes: [(&str, &str, &str, &str); 5] = [
        ("base/deployment.yaml", "livenessProbe:", "livenesProbe:", "'livenesProbe' was unexpected"),
        (
            "keda/scaledobject.yaml",
            "consumer: weir-digits",
            "consumer: weir-other",
            "consumer weir-other is no NATS consumer",
        ),
        ("hpa/hpa.yaml", "pipeline: digits", "pipeline: digitz", "weir exports no weir_pipeline_in_flight"),
        (
            "base/deployment.yaml",
            "path: /v2/health/ready",
            "path: /healthz",
            "readinessProbe must GET /v2/health/ready",
        ),
        ("keda/kustomization.yaml", "  - scaledobject.yaml", "", "the overlay renders no ScaledObject"),
    ];
    for (file, from, to, expected) in mistakes {
        let copy = tempfile::tempdir().unwrap();
        copy_tree(&deploy_dir(), copy.path());
        let path = copy.path().join(file);
        let original = std::fs::read_to_string(&path).unwrap();
        assert!(original.contains(from), "{file} no longer holds `{from}`");
        std::fs::write(&path, original.replacen(from, to, 1)).unwrap();
        let (passed, text) = validate(&python, copy.path(), &exported);
        assert!(!passed && text.contains(expected), "{file}: `{to}` should fail with `{expected}`:\n{text}");
    }
}

/// The image's config, and its layers unpacked into `rootfs`.
fn pull_image(reference: &str, into: &Path, rootfs: &Path) -> Value {
    let skopeo = require("skopeo").unwrap();
    let layout = into.join("oci");
    let out = Command::new(skopeo)
        .args(["copy", "--quiet", "--src-tls-verify=false", &format!("docker://{reference}")])
        .arg(format!("oci:{}:pulled", layout.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo copy: {}", String::from_utf8_lossy(&out.stderr));
    let blob = |digest: &str| layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
    let read = |digest: &str| -> Value { serde_json::from_slice(&std::fs::read(blob(digest)).unwrap()).unwrap() };
    let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = read(index["manifests"][0]["digest"].as_str().unwrap());
    std::fs::create_dir_all(rootfs).unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        let out = Command::new("tar")
            .arg("-xzf")
            .arg(blob(layer["digest"].as_str().unwrap()))
            .arg("-C")
            .arg(rootfs)
            .output()
            .unwrap();
        assert!(out.status.success(), "unpacking a layer: {}", String::from_utf8_lossy(&out.stderr));
    }
    read(manifest["config"]["digest"].as_str().unwrap())
}

#[test]
fn the_image_is_built_without_a_daemon_and_serves_from_a_registry() {
    let (Some(_), Some(_), Some(chroot)) = (require("buildah"), require("skopeo"), require("chroot")) else { return };
    let Some(registry) = TestRegistry::start() else { return };
    let weir = env!("CARGO_BIN_EXE_weir");
    let reference = format!("{}/weir/weir:test", registry.addr);
    let out = Command::new("bash")
        .arg(root().join("scripts/build-image.sh"))
        .args([reference.as_str(), "--binary", weir, "--insecure"])
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "build-image.sh failed:\n{said}");

    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    let config = pull_image(&reference, dir.path(), &rootfs);
    let settings = &config["config"];
    assert_eq!(settings["Entrypoint"], serde_json::json!(["/usr/local/bin/weir"]), "{config}");
    assert_eq!(settings["User"], "65532:65532", "runs as a non-root user");
    assert!(settings["ExposedPorts"].get("8080/tcp").is_some(), "{config}");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], if cfg!(target_arch = "x86_64") { "amd64" } else { "arm64" });
    let env: Vec<String> =
        settings["Env"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    let ort = env.iter().find_map(|e| e.strip_prefix("WEIR_ORT_DYLIB=")).expect("the image says where ONNX Runtime is");
    // What is in it: weir, ONNX Runtime, their libraries; no shell.
    let loader = if cfg!(target_arch = "x86_64") { "lib64/ld-linux-x86-64.so.2" } else { "lib/ld-linux-aarch64.so.1" };
    for file in ["usr/local/bin/weir", &ort[1..], loader, "etc/ssl/certs/ca-certificates.crt"] {
        assert!(rootfs.join(file).is_file(), "the image has no /{file}");
    }
    assert!(!rootfs.join("bin/sh").exists() && !rootfs.join("usr/bin/sh").exists(), "no shell in the image");
    let size: u64 = walk(&rootfs).iter().map(|p| p.metadata().unwrap().len()).sum();
    assert!(size < 400 << 20, "the image unpacks to {} MiB", size >> 20);

    // Components and the model go to the registry; the image pulls them.
    for (file, path) in [
        ("target/guests/wasm32-wasip1/release/scale.wasm", "weir/steps/scale:1"),
        ("target/guests/wasm32-wasip1/release/classify.wasm", "weir/steps/classify:1"),
        ("target/guests/wasm32-wasip1/release/topk.wasm", "weir/steps/topk:1"),
        ("examples/models/digits.onnx", "weir/models/digits:1"),
    ] {
        let out = crate::common::weir(&["push", root().join(file).to_str().unwrap(), &registry.reference(path)], None);
        assert!(out.status.success(), "weir push {file}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let manifest = std::fs::read_to_string(deploy_dir().join("base/weir.toml")).unwrap();
    let manifest = manifest.replace("registry.example.com/", &format!("{}/", registry.addr));
    // Over HTTP only, on loopback: no NATS cluster here.
    let manifest = manifest.split("[pipelines.digits.triggers.nats]").next().unwrap().to_string()
        + "[triggers.http]\nlisten = \"127.0.0.1:0\"\n";
    std::fs::write(rootfs.join("etc/weir/weir.toml"), manifest).unwrap();

    let mut command = Command::new(chroot);
    command
        .arg("--userspec=65532:65532")
        .arg(&rootfs)
        .args(["/usr/local/bin/weir", "serve", "/etc/weir/weir.toml", "--no-auth"])
        .env_clear()
        .envs(env.iter().filter_map(|e| e.split_once('=')));
    let server = spawn(command);
    let request = std::fs::read_to_string(root().join("examples/digits/request.json")).unwrap();
    let (status, body) = post(&server, "/v2/models/digits/infer", &request);
    assert_eq!(status, 200, "{body}");
    // The same answers as the host's own build, on the example's files.
    let local = tempfile::tempdir().unwrap();
    let host = start_with(&crate::common::example_manifest(local.path(), &["digits"], &["[triggers"], ""), &[], &[]);
    let (_, expected) = post(&host, "/v2/models/digits/infer", &request);
    assert_eq!(body["outputs"], expected["outputs"], "the image answers as the host does");
    let live = agent().get(format!("{}/v2/health/ready", server.base)).call().unwrap();
    assert_eq!(live.status(), 200, "the readiness probe's endpoint answers");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_symlink() {
            continue;
        } else if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
