//! The local content-addressed cache of pulled blobs (manifests and layers),
//! shared by every pipeline and process on the machine.
//!
//! A blob is written to a temporary file in the same directory tree,
//! verified against its digest and size, and renamed into place, so readers
//! only ever see complete, verified content and two processes pulling the
//! same blob at once both succeed (the second rename replaces identical bytes).
//!
//! The cache is not trusted either: a layer taken from it is hashed again
//! ([`BlobStore::verified`]) and a manifest is checked against its digest on
//! every read; what no longer matches is deleted, so it is pulled again.
//! (A layer is re-hashed once per process while its file stays the same
//! inode with the same size, mtime and ctime: any write changes the ctime.)

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::Digest as _;

use crate::error::RegistryError;
use weir_core::Digest;

#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
    /// Layers hashed in this process, with the file they were hashed in.
    verified: Arc<Mutex<HashMap<Digest, Stamp>>>,
}

/// What identifies one version of a file: rewriting it (even with the same
/// bytes and a forged mtime) changes the ctime.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    #[cfg(unix)]
    unix: (u64, u64, i64, i64, i64, i64),
    #[cfg(not(unix))]
    modified: Option<std::time::SystemTime>,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Stamp {
                len: meta.len(),
                unix: (meta.dev(), meta.ino(), meta.mtime(), meta.mtime_nsec(), meta.ctime(), meta.ctime_nsec()),
            }
        }
        #[cfg(not(unix))]
        Stamp { len: meta.len(), modified: meta.modified().ok() }
    }
}

/// A layer in the cache whose bytes were just checked against its digest.
#[derive(Debug, Clone)]
pub struct CachedBlob {
    pub path: PathBuf,
    pub size: u64,
    /// Its first bytes (enough to tell a component from a model).
    pub head: Vec<u8>,
}

/// Cached manifests are never read past this, whatever the options say.
const MAX_CACHED_MANIFEST: u64 = 64 << 20;

impl BlobStore {
    pub fn new(root: impl Into<PathBuf>) -> BlobStore {
        BlobStore { root: root.into(), verified: Default::default() }
    }

    /// `$WEIR_OCI_CACHE`, else `$XDG_CACHE_HOME/weir/oci`, else `~/.cache/weir/oci`.
    pub fn default_root() -> PathBuf {
        weir_core::paths::oci_cache_dir()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the layer blob with this digest lives (whether or not it is there).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs").join("sha256").join(digest.hex())
    }

    /// Manifests live apart from layers, so a digest that could name either
    /// (a pin) is never read as the wrong thing.
    fn manifest_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("manifests").join("sha256").join(digest.hex())
    }

    /// Whether a file is cached under this digest (unverified: see [`BlobStore::verified`]).
    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// The cached layer `digest`, if it is there and its bytes still hash to
    /// `digest`. One that does not is deleted (with a warning) and reported
    /// as absent, so that it is pulled again. Blocking: it reads the file.
    pub fn verified(&self, digest: &Digest) -> Result<Option<CachedBlob>, RegistryError> {
        let path = self.path(digest);
        let mut file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.error(format!("cannot open {}: {e}", path.display()))),
        };
        let meta = file.metadata().map_err(|e| self.error(e))?;
        if !meta.is_file() {
            return Ok(None);
        }
        let stamp = Stamp::of(&meta);
        let mut head = vec![0; 16.min(meta.len() as usize)];
        file.read_exact(&mut head).map_err(|e| self.error(format!("cannot read {}: {e}", path.display())))?;
        let blob = CachedBlob { path: path.clone(), size: meta.len(), head };
        if lock(&self.verified).get(digest) == Some(&stamp) {
            return Ok(Some(blob));
        }
        let mut hasher = sha2::Sha256::new();
        std::io::Write::write_all(&mut hasher, &blob.head).expect("hashing cannot fail");
        std::io::copy(&mut file, &mut hasher)
            .map_err(|e| self.error(format!("cannot read {}: {e}", path.display())))?;
        let actual = hex::encode(hasher.finalize());
        if actual != digest.hex() {
            tracing::warn!(
                path = %path.display(),
                expected = %digest,
                actual = %format!("sha256:{actual}"),
                "a cached blob no longer matches its digest (tampered or corrupted); deleting it to pull it again"
            );
            self.discard(&path)?;
            return Ok(None);
        }
        lock(&self.verified).insert(digest.clone(), stamp);
        Ok(Some(blob))
    }

    /// A cached manifest, if it is there and matches its digest.
    pub fn manifest(&self, digest: &Digest) -> Option<Vec<u8>> {
        self.manifest_limited(digest, MAX_CACHED_MANIFEST)
    }

    /// A cached manifest of at most `limit` bytes, if it matches its digest
    /// (one that does not is deleted, so that it is pulled again).
    pub(crate) fn manifest_limited(&self, digest: &Digest, limit: u64) -> Option<Vec<u8>> {
        let path = self.manifest_path(digest);
        let file = std::fs::File::open(&path).ok()?;
        let mut bytes = Vec::new();
        file.take(limit.min(MAX_CACHED_MANIFEST) + 1).read_to_end(&mut bytes).ok()?;
        if bytes.len() as u64 <= limit && Digest::of(&bytes) == *digest {
            return Some(bytes);
        }
        tracing::warn!(path = %path.display(), "a cached manifest no longer matches its digest or is too large; deleting it");
        let _ = self.discard(&path);
        None
    }

    fn discard(&self, path: &Path) -> Result<(), RegistryError> {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.error(format!(
                "{} does not match its digest and cannot be deleted ({e}); delete it by hand",
                path.display()
            ))),
        }
    }

    fn error(&self, why: impl std::fmt::Display) -> RegistryError {
        RegistryError::Store { path: self.root.display().to_string(), why: why.to_string() }
    }

    /// A temporary file to stream a blob into, then hand to [`BlobStore::commit`].
    pub(crate) fn staging(&self) -> Result<tempfile::NamedTempFile, RegistryError> {
        let dir = self.root.join("tmp");
        std::fs::create_dir_all(&dir).map_err(|e| self.error(format!("cannot create {}: {e}", dir.display())))?;
        tempfile::NamedTempFile::new_in(&dir).map_err(|e| self.error(e))
    }

    /// Move a staged blob into place once its content is known to be `digest`.
    pub(crate) fn commit(&self, staged: tempfile::NamedTempFile, digest: &Digest) -> Result<PathBuf, RegistryError> {
        self.commit_at(staged, self.path(digest))
    }

    fn commit_at(&self, staged: tempfile::NamedTempFile, path: PathBuf) -> Result<PathBuf, RegistryError> {
        let dir = path.parent().expect("blob paths have a parent");
        std::fs::create_dir_all(dir).map_err(|e| self.error(format!("cannot create {}: {e}", dir.display())))?;
        staged.as_file().sync_all().map_err(|e| self.error(e))?;
        staged.persist(&path).map_err(|e| self.error(e.error))?;
        Ok(path)
    }

    /// Keep a manifest (verified against its digest first).
    pub(crate) fn put_manifest(&self, digest: &Digest, bytes: &[u8]) -> Result<PathBuf, RegistryError> {
        digest.verify(bytes, None).map_err(|e| self.error(e))?;
        let path = self.manifest_path(digest);
        if path.is_file() {
            return Ok(path);
        }
        let mut staged = self.staging()?;
        staged.write_all(bytes).map_err(|e| self.error(e))?;
        self.commit_at(staged, path)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_verified_manifests_apart_from_layers() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path());
        let digest = Digest::of(b"{}");
        store.put_manifest(&digest, b"{}").unwrap();
        assert_eq!(store.manifest(&digest).unwrap(), b"{}");
        assert!(!store.contains(&digest), "a manifest is not a layer");
        // Writing it again (a second process) is harmless; wrong bytes are refused.
        store.put_manifest(&digest, b"{}").unwrap();
        assert!(store.put_manifest(&Digest::of(b"x"), b"y").is_err());
    }

    #[test]
    fn commits_staged_layers_by_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path());
        let digest = Digest::of(b"layer");
        let mut staged = store.staging().unwrap();
        staged.write_all(b"layer").unwrap();
        store.commit(staged, &digest).unwrap();
        assert!(store.contains(&digest));
        assert_eq!(std::fs::read(store.path(&digest)).unwrap(), b"layer");
    }

    fn put_layer(store: &BlobStore, bytes: &[u8]) -> Digest {
        let digest = Digest::of(bytes);
        let mut staged = store.staging().unwrap();
        staged.write_all(bytes).unwrap();
        store.commit(staged, &digest).unwrap();
        digest
    }

    #[test]
    fn a_tampered_cached_layer_is_detected_and_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path());
        let digest = put_layer(&store, b"\0asm the real component bytes");
        let cached = store.verified(&digest).unwrap().expect("an intact layer is served");
        assert_eq!((cached.size, &cached.head[..4]), (29, &b"\0asm"[..]));

        // Same size, one byte changed, after it was verified once in this process.
        let mut bytes = std::fs::read(store.path(&digest)).unwrap();
        bytes[10] ^= 0xff;
        std::fs::write(store.path(&digest), &bytes).unwrap();
        assert!(store.verified(&digest).unwrap().is_none(), "a tampered layer must not be served");
        assert!(!store.contains(&digest), "a tampered layer is deleted so that it is pulled again");

        // A fresh store (another process) sees a planted file the same way.
        let digest = put_layer(&store, b"model bytes");
        std::fs::write(store.path(&digest), b"evil bytes!").unwrap();
        assert!(BlobStore::new(dir.path()).verified(&digest).unwrap().is_none());
        assert!(!store.contains(&digest));
        assert!(store.verified(&Digest::of(b"absent")).unwrap().is_none());
    }

    #[test]
    fn a_tampered_cached_manifest_is_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path());
        let digest = Digest::of(br#"{"layers":[]}"#);
        store.put_manifest(&digest, br#"{"layers":[]}"#).unwrap();
        assert!(store.manifest(&digest).is_some());
        assert!(store.manifest_limited(&digest, 4).is_none(), "over the limit");
        store.put_manifest(&digest, br#"{"layers":[]}"#).unwrap();
        std::fs::write(store.manifest_path(&digest), br#"{"layers":[1]}"#).unwrap();
        assert!(store.manifest(&digest).is_none());
        assert!(!store.manifest_path(&digest).exists());
    }
}
