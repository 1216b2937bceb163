//! Compiled components cached on disk by content digest, so a component is
//! compiled once per engine configuration and loaded in milliseconds after.
//!
//! What is cached is native code that wasmtime maps executable without
//! further checks (`Component::deserialize` is `unsafe` for that reason), so
//! the cache only ever loads files it wrote itself:
//!
//! - the directory must be private: created with mode 0700, and a directory
//!   (or key file) that is group/world-writable or owned by another user is
//!   not used at all (a warning, then every component is compiled);
//! - each entry is `MAGIC ‖ HMAC-SHA256(key, engine ‖ digest ‖ code) ‖ code`,
//!   where `key` is a random per-cache secret in `compiled-cache.key` (mode
//!   0600) made on first use. An entry that fails the check (tampered,
//!   truncated, copied from another cache, written by something else) is
//!   deleted and the component recompiled. The bytes checked are the bytes
//!   deserialized: the file is read once, into memory.

use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use thiserror::Error;
use wasmtime::component::Component;
use wasmtime::Engine;
use weir_core::secret::constant_time_eq;
use weir_core::Digest;

#[derive(Debug, Error)]
pub enum CacheError {
    #[error("compiled-component cache at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "compiled-component cache at {path} is not used: {why}; compiled code is only loaded from a directory \
         only this user can write (`chmod 700` it, or point $WEIR_CACHE_DIR / --cache-dir elsewhere)"
    )]
    Insecure { path: PathBuf, why: String },
}

/// Where a component came from this time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompileSource {
    /// Compiled now (and written to the cache when there is one).
    Compiled,
    /// Loaded from the on-disk cache: no compilation.
    Cache,
    /// Loaded from a precompiled file the manifest names (`weir compile`).
    Precompiled,
}

/// A compiled component and how long it took to get it.
pub struct Compiled {
    pub component: Component,
    pub source: CompileSource,
    pub elapsed: Duration,
}

/// First bytes of every entry (the format's version is in it).
const MAGIC: &[u8; 8] = b"weircc1\n";
const MAC_LEN: usize = 32;
/// The per-cache secret, in the cache's root.
const KEY_FILE: &str = "compiled-cache.key";

/// The per-cache secret (never printed).
#[derive(Clone)]
struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

/// The on-disk cache: `<root>/<engine-hash>/<sha256>.cwasm`, keyed by
/// `<root>/compiled-cache.key`. Entries are written to a temporary file and
/// renamed, so concurrent writers (two processes) never expose a
/// half-written file.
#[derive(Debug, Clone)]
pub struct CompiledCache {
    root: PathBuf,
    dir: PathBuf,
    /// Checked on first use: the key when the directory is fit to use,
    /// `None` when it is not (then every component is compiled).
    key: Arc<OnceLock<Option<Key>>>,
}

impl CompiledCache {
    /// A cache under `root` (an empty path: no cache). Nothing is touched
    /// until first use.
    pub fn new(root: impl Into<PathBuf>, engine: &Engine) -> Self {
        let root = root.into();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        #[cfg(feature = "compiler")]
        engine.precompile_compatibility_hash().hash(&mut hasher);
        // Without a compiler nothing is ever written here (entries are
        // stored only after compiling); one folder is enough.
        #[cfg(not(feature = "compiler"))]
        let _ = (engine, "no compiler".hash(&mut hasher));
        let dir = root.join(format!("{:016x}", hasher.finish()));
        CompiledCache { root, dir, key: Arc::new(OnceLock::new()) }
    }

    /// The default location: `$WEIR_CACHE_DIR`, else `$XDG_CACHE_HOME/weir`
    /// (`~/.cache/weir`). Empty when there is no such place (no home
    /// directory): a cache there is off, never in a shared temp folder.
    pub fn default_root() -> PathBuf {
        weir_core::paths::compiled_cache_dir().unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the cache is in use (its directory passed the checks).
    pub fn enabled(&self) -> bool {
        self.key().is_some()
    }

    fn entry(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{}.cwasm", digest.hex()))
    }

    fn key(&self) -> Option<&Key> {
        self.key
            .get_or_init(|| {
                if self.root.as_os_str().is_empty() {
                    tracing::warn!("no compiled-component cache directory (no home directory, no $WEIR_CACHE_DIR): compiling every time");
                    return None;
                }
                match self.open() {
                    Ok(key) => Some(key),
                    Err(error) => {
                        tracing::warn!(error = %error, "compiling every component, caching none");
                        None
                    }
                }
            })
            .as_ref()
    }

    /// Make (or check) the directories and the key.
    fn open(&self) -> Result<Key, CacheError> {
        for dir in [&self.root, &self.dir] {
            private_dir(dir)?;
        }
        read_or_make_key(&self.root.join(KEY_FILE))
    }

    /// The MAC an entry for `digest` with this code must carry.
    fn mac(&self, key: &Key, digest: &Digest, code: &[u8]) -> [u8; MAC_LEN] {
        let engine = self.dir.file_name().map(|n| n.as_encoded_bytes()).unwrap_or_default();
        hmac_sha256(&key.0, &[MAGIC, engine, digest.hex().as_bytes(), code])
    }

    /// Load the compiled form of `bytes` (whose digest is `digest`), compiling
    /// and storing it on a miss. An entry that fails verification or does
    /// not load is deleted and recompiled.
    pub fn get_or_compile(
        &self,
        engine: &Engine,
        digest: &Digest,
        bytes: &[u8],
    ) -> Result<Compiled, CompileOrCacheError> {
        let started = Instant::now();
        let key = self.key();
        if let Some(key) = key {
            if let Some(component) = self.load(engine, key, digest) {
                return Ok(Compiled { component, source: CompileSource::Cache, elapsed: started.elapsed() });
            }
        }
        let component = compile(engine, bytes)?;
        if let Some(key) = key {
            if let Err(error) = self.store(key, digest, &component) {
                // A read-only or full disk only costs a recompile next time.
                tracing::warn!(error = %error, "could not write compiled component to the cache");
            }
        }
        Ok(Compiled { component, source: CompileSource::Compiled, elapsed: started.elapsed() })
    }

    /// The cached component for `digest`, if there is a verified entry.
    fn load(&self, engine: &Engine, key: &Key, digest: &Digest) -> Option<Component> {
        let entry = self.entry(digest);
        let bytes = match std::fs::read(&entry) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(error) => {
                tracing::warn!(path = %entry.display(), error = %error, "cannot read compiled-cache entry");
                return None;
            }
        };
        let verified = bytes.len() >= MAGIC.len() + MAC_LEN && bytes.starts_with(MAGIC) && {
            let (mac, code) = bytes[MAGIC.len()..].split_at(MAC_LEN);
            constant_time_eq(mac, &self.mac(key, digest, code))
        };
        if !verified {
            tracing::warn!(
                path = %entry.display(),
                "compiled-cache entry was not written by this cache (tampered, corrupt or foreign); deleting it and recompiling"
            );
            let _ = std::fs::remove_file(&entry);
            return None;
        }
        let code = &bytes[MAGIC.len() + MAC_LEN..];
        // SAFETY: `code` is exactly the bytes `store` below wrote from
        // `Component::serialize` of this engine configuration: their MAC
        // under this cache's private key was checked above, on the same
        // bytes, in memory (the directory is keyed by the engine's
        // compatibility hash and the entry by the source digest). wasmtime
        // still checks the header and rejects incompatible artifacts.
        match unsafe { Component::deserialize(engine, code) } {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(path = %entry.display(), error = %error, "ignoring unusable compiled-cache entry");
                let _ = std::fs::remove_file(&entry);
                None
            }
        }
    }

    fn store(&self, key: &Key, digest: &Digest, component: &Component) -> Result<(), CacheError> {
        let entry = self.entry(digest);
        let io = |source| CacheError::Io { path: entry.clone(), source };
        let code = component.serialize().map_err(|e| io(std::io::Error::other(format!("{e}"))))?;
        let mac = self.mac(key, digest, &code);
        let tmp = self.dir.join(format!(".{}.{}.tmp", std::process::id(), unique()));
        let written = create_private(&tmp).and_then(|mut file| {
            file.write_all(MAGIC)?;
            file.write_all(&mac)?;
            file.write_all(&code)
        });
        written.and_then(|()| std::fs::rename(&tmp, &entry)).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })
    }
}

/// `dir`, made with mode 0700 if missing, and checked: a directory, owned
/// by this user, not writable by group or others.
fn private_dir(dir: &Path) -> Result<(), CacheError> {
    let io = |source| CacheError::Io { path: dir.to_path_buf(), source };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(io)?;
    let meta = std::fs::metadata(dir).map_err(io)?;
    if !meta.is_dir() {
        return Err(CacheError::Insecure { path: dir.into(), why: "it is not a directory".into() });
    }
    check_owner_and_mode(dir, &meta, 0o022)
}

#[cfg(unix)]
fn check_owner_and_mode(path: &Path, meta: &std::fs::Metadata, forbidden: u32) -> Result<(), CacheError> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let insecure = |why: String| CacheError::Insecure { path: path.into(), why };
    if meta.uid() != me {
        return Err(insecure(format!("it is owned by uid {}, not by this user (uid {me})", meta.uid())));
    }
    let mode = meta.mode() & 0o777;
    if mode & forbidden != 0 {
        return Err(insecure(format!(
            "its mode is {mode:o}: others can {}",
            if forbidden == 0o022 { "write to it" } else { "read or write it" }
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_owner_and_mode(_: &Path, _: &std::fs::Metadata, _: u32) -> Result<(), CacheError> {
    Ok(())
}

/// A new file only this user can read (fails if it exists).
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// The cache's key: read (and checked: a private regular file of 32 bytes
/// owned by this user), or made from the OS's randomness on first use.
fn read_or_make_key(path: &Path) -> Result<Key, CacheError> {
    let io = |source| CacheError::Io { path: path.to_path_buf(), source };
    for _ in 0..2 {
        match std::fs::symlink_metadata(path) {
            Ok(meta) => {
                if !meta.is_file() {
                    return Err(CacheError::Insecure {
                        path: path.into(),
                        why: "the key is not a regular file".into(),
                    });
                }
                check_owner_and_mode(path, &meta, 0o077)?;
                let mut key = [0u8; 32];
                let mut file = std::fs::File::open(path).map_err(io)?;
                file.read_exact(&mut key).map_err(io)?;
                if file.read(&mut [0u8; 1]).map_err(io)? != 0 {
                    return Err(CacheError::Insecure { path: path.into(), why: "the key is not 32 bytes".into() });
                }
                return Ok(Key(key));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = weir_core::secret::random_bytes::<32>();
                // Written aside, then linked into place: a second process
                // making one at the same time keeps the first, never half of one.
                let tmp = path.with_extension(format!("{}.{}.tmp", std::process::id(), unique()));
                let made = create_private(&tmp).and_then(|mut f| f.write_all(&key).and_then(|()| f.sync_all()));
                let linked = made.and_then(|()| std::fs::hard_link(&tmp, path));
                let _ = std::fs::remove_file(&tmp);
                match linked {
                    Ok(()) => return Ok(Key(key)),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(io(e)),
                }
            }
            Err(e) => return Err(io(e)),
        }
    }
    Err(io(std::io::Error::other("the key file keeps changing")))
}

/// HMAC-SHA256 (RFC 2104) of the length-prefixed `parts`.
fn hmac_sha256(key: &[u8; 32], parts: &[&[u8]]) -> [u8; MAC_LEN] {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    for part in parts {
        inner.update((part.len() as u64).to_le_bytes());
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
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
    #[error("this weir was built without a compiler")]
    NoCompiler,
}

/// Compile `bytes` here (with the `compiler` feature).
pub fn compile(engine: &Engine, bytes: &[u8]) -> Result<Component, CompileOrCacheError> {
    #[cfg(feature = "compiler")]
    return Component::new(engine, bytes).map_err(|e| CompileOrCacheError::Compile(format!("{e:?}")));
    #[cfg(not(feature = "compiler"))]
    {
        let _ = (engine, bytes);
        Err(CompileOrCacheError::NoCompiler)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// The smallest component: the preamble alone.
    const EMPTY: &[u8] = b"\0asm\x0d\0\x01\0";

    fn setup() -> (tempfile::TempDir, PathBuf, Engine, Digest) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cache");
        (dir, root, Engine::default(), Digest::of(EMPTY))
    }

    fn source(cache: &CompiledCache, engine: &Engine, digest: &Digest) -> CompileSource {
        cache.get_or_compile(engine, digest, EMPTY).unwrap().source
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn entries_round_trip_in_a_private_directory() {
        let (_tmp, root, engine, digest) = setup();
        let cache = CompiledCache::new(&root, &engine);
        assert_eq!(source(&cache, &engine, &digest), CompileSource::Compiled);
        assert_eq!(source(&cache, &engine, &digest), CompileSource::Cache);
        // Another process (a fresh cache on the same root) loads it too.
        assert_eq!(source(&CompiledCache::new(&root, &engine), &engine, &digest), CompileSource::Cache);
        assert_eq!((mode(&root), mode(cache.dir())), (0o700, 0o700));
        assert_eq!(mode(&root.join(KEY_FILE)), 0o600);
        assert_eq!(mode(&cache.entry(&digest)), 0o600);
    }

    #[test]
    fn a_tampered_entry_is_deleted_and_recompiled() {
        let (_tmp, root, engine, digest) = setup();
        let cache = CompiledCache::new(&root, &engine);
        source(&cache, &engine, &digest);
        let entry = cache.entry(&digest);
        let mut bytes = std::fs::read(&entry).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        std::fs::write(&entry, &bytes).unwrap();
        assert_eq!(source(&cache, &engine, &digest), CompileSource::Compiled, "a tampered entry must not load");
        // Rewritten, verified again.
        assert_eq!(source(&cache, &engine, &digest), CompileSource::Cache);
        // Truncated to less than a header.
        std::fs::write(&entry, b"weircc1\n").unwrap();
        assert_eq!(source(&cache, &engine, &digest), CompileSource::Compiled);
    }

    #[test]
    fn a_file_the_cache_did_not_write_is_refused() {
        let (_tmp, root, engine, digest) = setup();
        let cache = CompiledCache::new(&root, &engine);
        assert!(cache.enabled());
        // A genuine wasmtime artifact, planted without the cache's MAC.
        let foreign = Component::new(&engine, EMPTY).unwrap().serialize().unwrap();
        std::fs::write(cache.entry(&digest), &foreign).unwrap();
        assert_eq!(source(&cache, &engine, &digest), CompileSource::Compiled, "a foreign file must not load");
        assert_ne!(std::fs::read(cache.entry(&digest)).unwrap(), foreign, "replaced by the cache's own entry");

        // An entry written by another cache (another key) is foreign too.
        let other_root = root.with_file_name("other");
        let other = CompiledCache::new(&other_root, &engine);
        source(&other, &engine, &digest);
        std::fs::copy(other.entry(&digest), cache.entry(&digest)).unwrap();
        assert_eq!(source(&cache, &engine, &digest), CompileSource::Compiled);

        // A valid entry renamed to another digest does not load as that one.
        let elsewhere = Digest::of(b"another component");
        std::fs::copy(cache.entry(&digest), cache.entry(&elsewhere)).unwrap();
        assert!(cache.load(&engine, cache.key().unwrap(), &elsewhere).is_none());
    }

    #[test]
    fn an_insecure_directory_is_not_used() {
        for insecure in [0o777, 0o775, 0o757] {
            let (_tmp, root, engine, digest) = setup();
            std::fs::create_dir(&root).unwrap();
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(insecure)).unwrap();
            let cache = CompiledCache::new(&root, &engine);
            assert!(!cache.enabled(), "mode {insecure:o}");
            assert_eq!(source(&cache, &engine, &digest), CompileSource::Compiled);
            assert_eq!(source(&cache, &engine, &digest), CompileSource::Compiled);
            assert!(!cache.entry(&digest).exists() && !root.join(KEY_FILE).exists(), "nothing written there");
        }

        // A key file others can read is not a secret.
        let (_tmp, root, engine, digest) = setup();
        source(&CompiledCache::new(&root, &engine), &engine, &digest);
        std::fs::set_permissions(root.join(KEY_FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
        let cache = CompiledCache::new(&root, &engine);
        assert!(!cache.enabled());
        assert_eq!(source(&cache, &engine, &digest), CompileSource::Compiled);

        // No directory at all (no home): no cache, never a shared temp folder.
        assert!(!CompiledCache::new("", &engine).enabled());
    }

    #[test]
    fn a_directory_owned_by_another_user_is_not_used() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: only root can give a directory to another user");
            return;
        }
        let (_tmp, root, engine, digest) = setup();
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::chown(&root, Some(65534), Some(65534)).unwrap();
        let cache = CompiledCache::new(&root, &engine);
        assert!(!cache.enabled());
        assert_eq!(source(&cache, &engine, &digest), CompileSource::Compiled);
        assert!(!cache.entry(&digest).exists());
    }

    #[test]
    fn hmac_depends_on_the_key_and_every_part() {
        // Same key, same parts: same MAC; any change: another.
        let key = [7u8; 32];
        let a = hmac_sha256(&key, &[b"ab", b"c"]);
        assert_eq!(a, hmac_sha256(&key, &[b"ab", b"c"]));
        assert_ne!(a, hmac_sha256(&key, &[b"a", b"bc"]), "parts are length-prefixed");
        assert_ne!(a, hmac_sha256(&[8u8; 32], &[b"ab", b"c"]));
    }
}
