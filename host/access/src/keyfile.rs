//! The key file: one JSON document listing every key by id, with a SHA-256
//! hash of its secret (never the secret), its scopes, and when it was made
//! and revoked. Written whole to a temporary file (mode 0600) and renamed
//! into place, so a reader never sees half of one.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::{AccessError, Quota, Scope};

/// Every key starts with this: `weir_<16 hex id>_<64 hex secret>`.
pub const KEY_PREFIX: &str = "weir_";

/// The key file is read up to this size, no further.
const MAX_FILE_BYTES: u64 = 16 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    /// Public: shown in logs, listings and the audit trail.
    pub id: String,
    pub name: String,
    /// `sha256:<hex>` of the secret part.
    pub hash: String,
    pub scopes: Vec<Scope>,
    /// What it may use of each pipeline (none: no limit).
    #[serde(default, skip_serializing_if = "Quota::is_unlimited")]
    pub quota: Quota,
    #[serde(default)]
    pub created_unix_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_unix_ms: Option<u64>,
}

impl KeyRecord {
    pub fn active(&self) -> bool {
        self.revoked_unix_ms.is_none()
    }

    /// Whether the id and hash have the shapes keys are made with.
    pub fn well_formed(&self) -> Result<(), String> {
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex(&self.id, 16) {
            return Err(format!("key id `{}` is not 16 hex digits", self.id));
        }
        match self.hash.strip_prefix("sha256:") {
            Some(digest) if hex(digest, 64) => Ok(()),
            _ => Err(format!("key `{}`: hash must be `sha256:` and 64 hex digits (see `weir keys hash`)", self.id)),
        }
    }
}

/// `[access]` in a manifest: keys declared by hash, besides the key file.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredKeys {
    #[serde(default)]
    pub keys: Vec<KeyRecord>,
}

/// The manifest lines that declare `key` (id, hash), for `weir keys hash`.
pub fn declaration(key: &str) -> Option<String> {
    let (id, secret) = split_key(key)?;
    Some(format!(
        "[[access.keys]]\nid = \"{id}\"\nname = \"NAME\"\nhash = \"{}\"\nscopes = [\"invoke:*\"]",
        hash_secret(secret)
    ))
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    pub keys: Vec<KeyRecord>,
}

/// The hash kept for a secret.
pub(crate) fn hash_secret(secret: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(secret.as_bytes())))
}

/// `(id, secret)` of a presented key, if it has the key's shape.
pub(crate) fn split_key(key: &str) -> Option<(&str, &str)> {
    let (id, secret) = key.strip_prefix(KEY_PREFIX)?.split_once('_')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, 16) && hex(secret, 64)).then_some((id, secret))
}

impl KeyFile {
    /// The file at `path`; an absent file is an empty one.
    pub fn load(path: &Path) -> Result<KeyFile, AccessError> {
        let fail = |why: String| AccessError::File { path: path.display().to_string(), why };
        let text = match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(KeyFile::default()),
            Err(e) => return Err(fail(e.to_string())),
            Ok(meta) if meta.len() > MAX_FILE_BYTES => return Err(fail(format!("larger than {MAX_FILE_BYTES} bytes"))),
            Ok(_) => std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?,
        };
        serde_json::from_str(&text).map_err(|e| fail(format!("not a weir key file: {e}")))
    }

    /// Write the file (0600), atomically.
    pub fn save(&self, path: &Path) -> Result<(), AccessError> {
        let fail = |why: String| AccessError::File { path: path.display().to_string(), why };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| fail(e.to_string()))?;
        }
        let text = serde_json::to_string_pretty(self).map_err(|e| fail(e.to_string()))?;
        let tmp = path.with_extension(format!("tmp.{}", weir_core::secret::random_hex128()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = options.open(&tmp).and_then(|mut file| {
            std::io::Write::write_all(&mut file, text.as_bytes())?;
            file.sync_all()
        });
        let renamed = written.and_then(|()| std::fs::rename(&tmp, path));
        if renamed.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        renamed.map_err(|e| fail(e.to_string()))
    }

    /// Add a key; returns the key itself (shown once, kept nowhere).
    pub fn create(&mut self, name: &str, scopes: Vec<Scope>, quota: Quota) -> Result<(KeyRecord, String), AccessError> {
        let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if name.is_empty() || name.len() > 64 || !name.chars().all(fine) {
            return Err(AccessError::BadName(name.to_string()));
        }
        let id = hex::encode(weir_core::secret::random_bytes::<8>());
        let secret = hex::encode(weir_core::secret::random_bytes::<32>());
        let record = KeyRecord {
            id: id.clone(),
            name: name.to_string(),
            hash: hash_secret(&secret),
            scopes,
            quota,
            created_unix_ms: weir_core::clock::unix_ms(),
            revoked_unix_ms: None,
        };
        self.keys.push(record.clone());
        Ok((record, format!("{KEY_PREFIX}{id}_{secret}")))
    }

    /// Mark a key revoked (kept, for the record of who it was).
    pub fn revoke(&mut self, id: &str) -> Result<&KeyRecord, AccessError> {
        let record = self.keys.iter_mut().find(|k| k.id == id).ok_or_else(|| AccessError::UnknownKey(id.into()))?;
        record.revoked_unix_ms.get_or_insert_with(weir_core::clock::unix_ms);
        Ok(record)
    }

    pub fn active(&self) -> impl Iterator<Item = &KeyRecord> {
        self.keys.iter().filter(|k| k.active())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_kept_hashed_and_survive_a_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let mut file = KeyFile::load(&path).unwrap();
        let (record, key) = file.create("ci", vec![Scope::Status], Quota::default()).unwrap();
        file.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let (_, secret) = split_key(&key).unwrap();
        assert!(!text.contains(secret), "the secret is never written");
        assert!(text.contains(&record.hash) && text.contains("\"status\""));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let mut again = KeyFile::load(&path).unwrap();
        assert_eq!(again, file);
        again.revoke(&record.id).unwrap();
        assert_eq!(again.active().count(), 0);
        assert!(matches!(again.revoke("0000000000000000"), Err(AccessError::UnknownKey(_))));
        assert!(file.create("has space", vec![], Quota::default()).is_err());
    }

    #[test]
    fn a_broken_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        std::fs::write(&path, "{\"keys\": 3}").unwrap();
        let error = KeyFile::load(&path).unwrap_err().to_string();
        assert!(error.contains("keys.json") && error.contains("not a weir key file"), "{error}");
    }

    #[test]
    fn only_well_formed_keys_split() {
        let good = format!("weir_{}_{}", "a".repeat(16), "b".repeat(64));
        assert!(split_key(&good).is_some());
        for bad in ["", "weir_", "weir_abc_def", &good[1..], &format!("{good}x"), &good.replace('b', "z")] {
            assert!(split_key(bad).is_none(), "{bad}");
        }
    }
}
