//! Builds every guest component the tests run — the reference steps in
//! `components/` and the test guests in `tests/guests/` — from source with
//! `cargo component build --release`, into `target/guests/`, and hands their
//! paths to the library as compile-time constants.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// (workspace folder, crates in it) relative to the repository root.
const GUEST_WORKSPACES: &[(&str, &[&str])] = &[("components", &["scale", "topk"]), ("tests/guests", &["hostile", "noop"])];

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ lives in the repository root").to_path_buf();
    let target_dir = root.join("target").join("guests");
    for watched in ["sdk/src", "sdk/Cargo.toml", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    check_cargo_component();
    for (workspace, crates) in GUEST_WORKSPACES {
        let dir = root.join(workspace);
        println!("cargo:rerun-if-changed={}", dir.join("Cargo.toml").display());
        for krate in *crates {
            println!("cargo:rerun-if-changed={}", dir.join(krate).join("src").display());
            println!("cargo:rerun-if-changed={}", dir.join(krate).join("Cargo.toml").display());
        }
        build_workspace(&dir, &target_dir);
        for krate in *crates {
            let wasm = wasm_path(&target_dir, krate);
            assert!(wasm.is_file(), "{} was not produced by the guest build", wasm.display());
            println!("cargo:rustc-env=WEIR_GUEST_{}={}", krate.to_uppercase(), wasm.display());
        }
    }
    println!("cargo:rustc-env=WEIR_GUEST_TARGET_DIR={}", target_dir.display());
}

fn wasm_path(target_dir: &Path, krate: &str) -> PathBuf {
    target_dir.join("wasm32-wasip1").join("release").join(format!("{}.wasm", krate.replace('-', "_")))
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn check_cargo_component() {
    let found = Command::new(cargo())
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

fn build_workspace(dir: &Path, target_dir: &Path) {
    let mut cmd = Command::new(cargo());
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
        .stdout(Stdio::from(std::io::stderr()));
    let status = cmd.status().unwrap_or_else(|e| panic!("running cargo component in {}: {e}", dir.display()));
    assert!(status.success(), "`cargo component build --release` failed in {}", dir.display());
}
