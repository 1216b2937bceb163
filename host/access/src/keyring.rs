//! Checking a presented key against the key file, which is read again
//! (at most once a second) when it changes: `weir keys revoke` takes effect
//! on a running server without a restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime};

use thiserror::Error;
use weir_core::secret::constant_time_eq;

use crate::keyfile::{hash_secret, split_key};
use crate::{AccessError, KeyFile, KeyRecord, Quota, Requirement, Scope};

/// How often the key file's modification time is looked at.
const RECHECK: Duration = Duration::from_secs(1);

/// Why a request was not authenticated (all answered 401).
#[derive(Debug, Error, PartialEq)]
pub enum AuthError {
    #[error("this endpoint needs an API key: send `Authorization: Bearer weir_...` (an operator makes keys with `weir keys create`)")]
    Missing,
    #[error("the Authorization header is not `Bearer <key>` with a weir key (`weir_<id>_<secret>`)")]
    Malformed,
    #[error("the API key is not known, or it was revoked")]
    Unknown,
}

/// Who is calling, and what they may do.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// The key's public id (`anonymous` when access control is off).
    pub key_id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub quota: Quota,
}

impl Principal {
    /// The caller when the operator turned access control off: may do all.
    pub fn operator() -> Principal {
        Principal {
            key_id: "anonymous".into(),
            name: "anonymous".into(),
            scopes: vec![Scope::Admin],
            quota: Quota::default(),
        }
    }

    pub fn may(&self, requirement: &Requirement) -> bool {
        requirement.met_by(&self.scopes)
    }

    pub fn is_admin(&self) -> bool {
        self.scopes.contains(&Scope::Admin)
    }
}

/// How callers are told apart.
pub enum Access {
    /// No checks: every caller may do everything (the operator's explicit
    /// choice, for a loopback listener).
    Off,
    Keys(Keyring),
}

impl Access {
    /// The caller presenting `authorization` (the header's value, if any).
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        match self {
            Access::Off => Ok(Principal::operator()),
            Access::Keys(keyring) => keyring.authenticate(authorization),
        }
    }
}

struct Loaded {
    /// Modification time and length of the file this was read from.
    stamp: Option<(SystemTime, u64)>,
    checked: Instant,
    keys: HashMap<String, KeyRecord>,
}

/// The active keys of a key file, by id.
pub struct Keyring {
    path: PathBuf,
    loaded: RwLock<Loaded>,
    /// Keys declared by hash in the manifest (fixed while serving).
    declared: HashMap<String, KeyRecord>,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn active(file: KeyFile) -> HashMap<String, KeyRecord> {
    file.keys.into_iter().filter(KeyRecord::active).map(|k| (k.id.clone(), k)).collect()
}

impl Keyring {
    pub fn open(path: &Path) -> Result<Keyring, AccessError> {
        let stamp = stamp(path);
        let keys = active(KeyFile::load(path)?);
        let loaded = RwLock::new(Loaded { stamp, checked: Instant::now(), keys });
        Ok(Keyring { path: path.to_path_buf(), loaded, declared: HashMap::new() })
    }

    /// Add keys declared in the manifest (checked: well-formed, not in the file).
    pub fn with_declared(mut self, keys: Vec<KeyRecord>) -> Result<Keyring, String> {
        for key in keys {
            key.well_formed()?;
            if self.declared.contains_key(&key.id) {
                return Err(format!("key `{}` is declared twice", key.id));
            }
            self.declared.insert(key.id.clone(), key);
        }
        Ok(self)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keys that may be used now.
    pub fn active_keys(&self) -> usize {
        self.refresh();
        self.loaded.read().unwrap_or_else(|p| p.into_inner()).keys.len() + self.declared.len()
    }

    /// Read the file again if it changed. A file that cannot be read now
    /// leaves no key usable (failing closed), until it can be read again.
    fn refresh(&self) {
        {
            let loaded = self.loaded.read().unwrap_or_else(|p| p.into_inner());
            if loaded.checked.elapsed() < RECHECK {
                return;
            }
        }
        let mut loaded = self.loaded.write().unwrap_or_else(|p| p.into_inner());
        loaded.checked = Instant::now();
        let now = stamp(&self.path);
        if now == loaded.stamp {
            return;
        }
        loaded.stamp = now;
        loaded.keys = KeyFile::load(&self.path).map(active).unwrap_or_default();
    }

    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        let header = authorization.ok_or(AuthError::Missing)?;
        let (scheme, key) = header.trim().split_once(' ').ok_or(AuthError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Malformed);
        }
        let (id, secret) = split_key(key.trim()).ok_or(AuthError::Malformed)?;
        self.refresh();
        let loaded = self.loaded.read().unwrap_or_else(|p| p.into_inner());
        // Hash first, whatever the id: an unknown id costs the same time.
        let presented = hash_secret(secret);
        let record = loaded.keys.get(id).or_else(|| self.declared.get(id)).ok_or(AuthError::Unknown)?;
        if !constant_time_eq(presented.as_bytes(), record.hash.as_bytes()) {
            return Err(AuthError::Unknown);
        }
        Ok(Principal {
            key_id: record.id.clone(),
            name: record.name.clone(),
            scopes: record.scopes.clone(),
            quota: record.quota.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_authenticate_and_revocation_takes_effect_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let mut file = KeyFile::default();
        let (record, key) = file.create("app", vec![Scope::Invoke(Some("digits".into()))], Quota::default()).unwrap();
        file.save(&path).unwrap();
        let keyring = Keyring::open(&path).unwrap();
        let bearer = format!("Bearer {key}");
        let principal = keyring.authenticate(Some(&bearer)).unwrap();
        assert_eq!(principal.key_id, record.id);
        assert!(principal.may(&Requirement::Invoke("digits".into())));
        assert!(!principal.may(&Requirement::Status));

        assert_eq!(keyring.authenticate(None), Err(AuthError::Missing));
        assert_eq!(keyring.authenticate(Some("Basic abc")), Err(AuthError::Malformed));
        assert_eq!(keyring.authenticate(Some(&format!("Bearer {key}x"))), Err(AuthError::Malformed));
        let forged = format!("Bearer {}{}", &key[..key.len() - 1], if key.ends_with('0') { "1" } else { "0" });
        assert_eq!(keyring.authenticate(Some(&forged)), Err(AuthError::Unknown));

        file.revoke(&record.id).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        file.save(&path).unwrap();
        std::thread::sleep(RECHECK + Duration::from_millis(50));
        assert_eq!(keyring.authenticate(Some(&bearer)), Err(AuthError::Unknown));
        assert_eq!(keyring.active_keys(), 0);
    }
}
