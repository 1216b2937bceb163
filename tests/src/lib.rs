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
