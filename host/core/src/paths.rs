//! Where weir keeps things on disk, decided once: each folder can be moved
//! with its own environment variable, else it follows the XDG base
//! directories (via `directories`). Without a home directory the compiled
//! cache is off (it holds native code: never in a shared temp folder), and
//! the others go to a folder of this user's own under the temp folder.

use std::path::PathBuf;

fn base() -> Option<directories::BaseDirs> {
    directories::BaseDirs::new()
}

/// Compiled components: `$WEIR_CACHE_DIR`, else `$XDG_CACHE_HOME/weir`;
/// `None` (no cache) when there is no home directory. Never a shared temp
/// folder: what is cached there is native code that is loaded and run.
pub fn compiled_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WEIR_CACHE_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    base().map(|b| b.cache_dir().join("weir"))
}

/// `<temp>/weir-<uid>/<name>`: apart from other users' (not shared).
fn per_user_temp(name: &str) -> PathBuf {
    #[cfg(unix)]
    // SAFETY: geteuid has no preconditions and cannot fail.
    let user = unsafe { libc::geteuid() }.to_string();
    #[cfg(not(unix))]
    let user = std::env::var("USERNAME").unwrap_or_default();
    std::env::temp_dir().join(format!("weir-{user}")).join(name)
}

/// Pulled OCI blobs: `$WEIR_OCI_CACHE`, else `$XDG_CACHE_HOME/weir/oci`.
pub fn oci_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WEIR_OCI_CACHE") {
        return PathBuf::from(dir);
    }
    base().map_or_else(|| per_user_temp("oci"), |b| b.cache_dir().join("weir").join("oci"))
}

/// Durable state (job stores, the ONNX Runtime install): `$WEIR_DATA_DIR`,
/// else `$XDG_DATA_HOME/weir`.
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WEIR_DATA_DIR") {
        return PathBuf::from(dir);
    }
    base().map_or_else(|| per_user_temp("data"), |b| b.data_dir().join("weir"))
}
