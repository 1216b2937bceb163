//! Where weir keeps things on disk, decided once: each folder can be moved
//! with its own environment variable, else it follows the XDG base
//! directories (via `directories`), else the temp folder.

use std::path::PathBuf;

fn base() -> Option<directories::BaseDirs> {
    directories::BaseDirs::new()
}

/// Compiled components: `$WEIR_CACHE_DIR`, else `$XDG_CACHE_HOME/weir`.
pub fn compiled_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WEIR_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    base().map_or_else(|| std::env::temp_dir().join("weir-cache"), |b| b.cache_dir().join("weir"))
}

/// Pulled OCI blobs: `$WEIR_OCI_CACHE`, else `$XDG_CACHE_HOME/weir/oci`.
pub fn oci_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WEIR_OCI_CACHE") {
        return PathBuf::from(dir);
    }
    base().map_or_else(|| std::env::temp_dir().join("weir-oci"), |b| b.cache_dir().join("weir").join("oci"))
}

/// Durable state (job stores, the ONNX Runtime install): `$WEIR_DATA_DIR`,
/// else `$XDG_DATA_HOME/weir`.
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WEIR_DATA_DIR") {
        return PathBuf::from(dir);
    }
    base().map_or_else(|| std::env::temp_dir().join("weir-data"), |b| b.data_dir().join("weir"))
}
