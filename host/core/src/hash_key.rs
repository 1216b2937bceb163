//! Keyed hashes of values that must not be stored as they are (sensitive
//! tensors, data subjects' ids in the audit log). A plain SHA-256 of a
//! low-entropy value (an age, a postcode, a patient number) is undone by
//! hashing every candidate; an HMAC-SHA256 under a secret key the operator
//! holds is not. The key is a file of at least 32 bytes, made on first use
//! (mode 0600) where the operator names none.

use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

#[derive(Debug, Error)]
#[error("hash key {path}: {why}")]
pub struct HashKeyError {
    path: String,
    why: String,
}

impl crate::Classify for HashKeyError {
    fn kind(&self) -> crate::ErrorKind {
        crate::ErrorKind::InvalidInput
    }
}

/// A secret values are hashed with.
#[derive(Clone)]
pub struct HashKey(Vec<u8>);

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashKey(..)")
    }
}

/// Where the key goes when the manifest names none: `<store>.hashkey`.
pub fn default_path(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".hashkey");
    PathBuf::from(name)
}

impl HashKey {
    /// Read the key at `path`; when `create` and it is absent, make one.
    pub fn load(path: &Path, create: bool) -> Result<HashKey, HashKeyError> {
        let fail = |why: String| HashKeyError { path: path.display().to_string(), why };
        match std::fs::read(path) {
            Ok(bytes) if bytes.len() >= 32 && bytes.len() <= 4096 => Ok(HashKey(bytes)),
            Ok(bytes) => {
                Err(fail(format!("{} bytes; a key is 32 to 4096 bytes (e.g. `head -c 32 /dev/urandom`)", bytes.len())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let key = crate::secret::random_bytes::<32>().to_vec();
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                match options.open(path) {
                    Ok(mut file) => {
                        file.write_all(&key).and_then(|()| file.sync_all()).map_err(|e| fail(e.to_string()))?;
                        Ok(HashKey(key))
                    }
                    // Another process made it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => HashKey::load(path, false),
                    Err(e) => Err(fail(e.to_string())),
                }
            }
            Err(e) => Err(fail(e.to_string())),
        }
    }

    /// `hmac-sha256:<hex>` of `data`.
    pub fn hash(&self, data: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(data);
        format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_made_once_and_hashes_depend_on_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = default_path(&dir.path().join("records.redb"));
        let key = HashKey::load(&path, true).unwrap();
        let again = HashKey::load(&path, true).unwrap();
        assert_eq!(key.hash(b"42"), again.hash(b"42"));
        assert_ne!(key.hash(b"42"), key.hash(b"43"));
        let other = dir.path().join("other");
        std::fs::write(&other, [7u8; 32]).unwrap();
        assert_ne!(HashKey::load(&other, false).unwrap().hash(b"42"), key.hash(b"42"));
        std::fs::write(&other, b"short").unwrap();
        assert!(HashKey::load(&other, false).unwrap_err().to_string().contains("5 bytes"));
        assert!(HashKey::load(&dir.path().join("absent"), false).is_err());
    }
}
