//! The local content-addressed cache of pulled blobs (manifests and layers),
//! shared by every pipeline and process on the machine.
//!
//! A blob is written to a temporary file in the same directory tree,
//! verified against its digest and size, and renamed into place, so readers
//! only ever see complete, verified content and two processes pulling the
//! same blob at once both succeed (the second rename replaces identical bytes).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::RegistryError;
use weir_core::Digest;

#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    pub fn new(root: impl Into<PathBuf>) -> BlobStore {
        BlobStore { root: root.into() }
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

    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    pub fn manifest(&self, digest: &Digest) -> Option<Vec<u8>> {
        std::fs::read(self.manifest_path(digest)).ok()
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
}
