//! Paths of the guest components built from source by this crate's build
//! script, for weir's tests and benchmarks.

/// `components/scale`: standardise features.
pub const SCALE: &str = env!("WEIR_GUEST_SCALE");
/// `components/topk`: top-k of a probability tensor.
pub const TOPK: &str = env!("WEIR_GUEST_TOPK");
/// `tests/guests/hostile`: misbehaves on purpose, chosen by config `mode`.
pub const HOSTILE: &str = env!("WEIR_GUEST_HOSTILE");
/// The target folder the guests are built in; reuse it to build other guests fast.
pub const GUEST_TARGET_DIR: &str = env!("WEIR_GUEST_TARGET_DIR");
/// `tests/guests/noop`: returns its inputs; the host's own cost per call.
pub const NOOP: &str = env!("WEIR_GUEST_NOOP");

/// Extra environment for building guests (set only when `scripts/setup.sh`
/// fell back to Debian's Wasm toolchain); pass it to any `cargo component`.
pub fn guest_build_env() -> Vec<(&'static str, &'static str)> {
    env!("WEIR_GUEST_BUILD_ENV").split(';').filter_map(|pair| pair.split_once('=')).collect()
}
/// `components/classify`: runs a granted classifier model.
pub const CLASSIFY: &str = env!("WEIR_GUEST_CLASSIFY");
/// `components/concat`: joins feature blocks.
pub const CONCAT: &str = env!("WEIR_GUEST_CONCAT");
/// `components/fare`: prices a ride.
pub const FARE: &str = env!("WEIR_GUEST_FARE");

pub mod browser;
pub mod onnx;
pub mod services;

/// Every file under `dir`, recursively (none when it does not exist).
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}
