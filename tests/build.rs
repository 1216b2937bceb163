//! Builds every guest component the tests run — the reference steps in
//! `components/` and the test guests in `tests/guests/` — from source with
//! `cargo component build --release`, into `target/guests/`, and hands their
//! paths to the library as compile-time constants.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// (workspace folder, crates in it) relative to the repository root.
const GUEST_WORKSPACES: &[(&str, &[&str])] = &[
    ("components", &["scale", "topk", "classify", "concat", "fare", "gradients", "drift", "context_drift", "outlier"]),
    ("tests/guests", &["hostile", "noop"]),
];

fn main() {
    let root =
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ lives in the repository root").to_path_buf();
    let target_dir = root.join("target").join("guests");
    for watched in ["sdk/src", "sdk/Cargo.toml", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let guest_env = guest_build_env();
    check_cargo_component(&guest_env);
    for (workspace, crates) in GUEST_WORKSPACES {
        let dir = root.join(workspace);
        println!("cargo:rerun-if-changed={}", dir.join("Cargo.toml").display());
        for krate in *crates {
            println!("cargo:rerun-if-changed={}", dir.join(krate).join("src").display());
            println!("cargo:rerun-if-changed={}", dir.join(krate).join("Cargo.toml").display());
        }
        build_workspace(&dir, &target_dir, &guest_env);
        for krate in *crates {
            let wasm = wasm_path(&target_dir, krate);
            assert!(wasm.is_file(), "{} was not produced by the guest build", wasm.display());
            println!("cargo:rustc-env=WEIR_GUEST_{}={}", krate.to_uppercase(), wasm.display());
        }
    }
    println!("cargo:rustc-env=WEIR_GUEST_TARGET_DIR={}", target_dir.display());
    let joined: Vec<String> = guest_env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("cargo:rustc-env=WEIR_GUEST_BUILD_ENV={}", joined.join(";"));
}

/// Settings for guest builds written by `scripts/setup.sh` when the Wasm
/// targets come from Debian's packages instead of rustup (see its
/// `wasm_from_debian`); empty on a normal rustup set-up.
fn guest_build_env() -> Vec<(String, String)> {
    println!("cargo:rerun-if-env-changed=WEIR_DATA_DIR");
    let data_dir = std::env::var_os("WEIR_DATA_DIR").map(PathBuf::from).or_else(|| {
        let base = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local").join("share")))?;
        Some(base.join("weir"))
    });
    let Some(file) = data_dir.map(|d| d.join("guest-build.env")) else { return Vec::new() };
    println!("cargo:rerun-if-changed={}", file.display());
    let Ok(text) = std::fs::read_to_string(&file) else { return Vec::new() };
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn wasm_path(target_dir: &Path, krate: &str) -> PathBuf {
    target_dir.join("wasm32-wasip1").join("release").join(format!("{}.wasm", krate.replace('-', "_")))
}

/// The cargo that drives guest builds: the fallback's, else the one running us.
fn cargo(guest_env: &[(String, String)]) -> String {
    let fallback = guest_env.iter().find(|(k, _)| k == "CARGO").map(|(_, v)| v.clone());
    fallback.or_else(|| std::env::var("CARGO").ok()).unwrap_or_else(|| "cargo".into())
}

fn check_cargo_component(guest_env: &[(String, String)]) {
    let found = Command::new(cargo(guest_env))
        .args(["component", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "cargo-component is not installed, so the guest components cannot be built. \
         Run `scripts/setup.sh` (or `cargo install --locked cargo-component@0.21.1`)."
    );
}

fn build_workspace(dir: &Path, target_dir: &Path, guest_env: &[(String, String)]) {
    let mut cmd = Command::new(cargo(guest_env));
    cmd.args(["component", "build", "--release", "--workspace"])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir)
        // Flags meant for the host build (coverage, sanitizers, a host
        // target) must not leak into the wasm build.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        // Cargo reads build-script stdout for directives; keep the nested
        // build's chatter on stderr.
        .envs(guest_env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::from(std::io::stderr()));
    let status = cmd.status().unwrap_or_else(|e| panic!("running cargo component in {}: {e}", dir.display()));
    assert!(status.success(), "`cargo component build --release` failed in {}", dir.display());
}
