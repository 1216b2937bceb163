//! Compiled components cached on disk by content digest, so a component is
//! compiled once per engine configuration and loaded in milliseconds after.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use thiserror::Error;
use wasmtime::component::Component;
use wasmtime::Engine;
use weir_core::Digest;

#[derive(Debug, Error)]
pub enum CacheError {
    #[error("compiled-component cache at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Where a component came from this time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompileSource {
    /// Compiled now (and written to the cache when there is one).
    Compiled,
    /// Loaded from the on-disk cache: no compilation.
    Cache,
}

/// A compiled component and how long it took to get it.
pub struct Compiled {
    pub component: Component,
    pub source: CompileSource,
    pub elapsed: Duration,
}

/// The on-disk cache: `<dir>/<engine-hash>/<sha256>.cwasm`. Entries are
/// written to a temporary file and renamed, so concurrent writers (two
/// processes) never expose a half-written file.
#[derive(Debug, Clone)]
pub struct CompiledCache {
    dir: PathBuf,
}

impl CompiledCache {
    pub fn new(root: impl Into<PathBuf>, engine: &Engine) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let dir = root.into().join(format!("{:016x}", hasher.finish()));
        CompiledCache { dir }
    }

    /// The default location: `$WEIR_CACHE_DIR`, else `$XDG_CACHE_HOME/weir`.
    pub fn default_root() -> PathBuf {
        weir_core::paths::compiled_cache_dir()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{}.cwasm", digest.hex()))
    }

    /// Load the compiled form of `bytes` (whose digest is `digest`), compiling
    /// and storing it on a miss. A corrupt or stale entry is recompiled.
    pub fn get_or_compile(
        &self,
        engine: &Engine,
        digest: &Digest,
        bytes: &[u8],
    ) -> Result<Compiled, CompileOrCacheError> {
        let started = Instant::now();
        let entry = self.entry(digest);
        if entry.is_file() {
            // SAFETY: the file was written by `store` below from
            // `Component::serialize` of this engine configuration (the
            // directory is keyed by the engine's compatibility hash and the
            // file by the source digest). wasmtime still checks the header
            // and rejects incompatible artifacts with an error.
            match unsafe { Component::deserialize_file(engine, &entry) } {
                Ok(component) => {
                    return Ok(Compiled { component, source: CompileSource::Cache, elapsed: started.elapsed() })
                }
                Err(error) => {
                    tracing::warn!(path = %entry.display(), error = %error, "ignoring unusable compiled-cache entry");
                }
            }
        }
        let component = Component::new(engine, bytes).map_err(|e| CompileOrCacheError::Compile(format!("{e:?}")))?;
        if let Err(error) = self.store(&entry, &component) {
            // A read-only or full disk only costs a recompile next time.
            tracing::warn!(error = %error, "could not write compiled component to the cache");
        }
        Ok(Compiled { component, source: CompileSource::Compiled, elapsed: started.elapsed() })
    }

    fn store(&self, entry: &Path, component: &Component) -> Result<(), CacheError> {
        let io = |source| CacheError::Io { path: entry.to_path_buf(), source };
        let bytes = component.serialize().map_err(|e| io(std::io::Error::other(format!("{e}"))))?;
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let tmp = self.dir.join(format!(".{}.{}.tmp", std::process::id(), unique()));
        std::fs::write(&tmp, &bytes).map_err(io)?;
        std::fs::rename(&tmp, entry).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[derive(Debug, Error)]
pub enum CompileOrCacheError {
    #[error("compiling the component failed: {0}")]
    Compile(String),
}
