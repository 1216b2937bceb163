//! The audit log: who (key id) did what, when, and how it ended, one JSON
//! object per line in a file of its own that is only ever appended to. At
//! `max_bytes` it is rotated (`audit.log` → `audit.log.1` → ... up to
//! `keep` old files). Every authenticated request is written, and every key
//! change made with `weir keys`. A data subject's id in an erasure's path is
//! written as its keyed hash (`<log>.key`), so the log that proves an
//! erasure happened does not keep the id that was erased; whoever holds the
//! key can check which subject a line names.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use weir_core::hash_key::HashKey;

use crate::AccessError;

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub unix_ms: u64,
    /// The key's id (`anonymous` with access control off, `operator` for
    /// `weir keys` on the command line).
    pub key_id: String,
    /// `POST /v2/models/digits/infer`, `keys create`, ...
    pub action: String,
    /// The HTTP status, or 0 for a command that succeeded.
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl AuditEvent {
    pub fn now(key_id: &str, action: String, status: u16, detail: Option<String>) -> AuditEvent {
        AuditEvent { unix_ms: weir_core::clock::unix_ms(), key_id: key_id.into(), action, status, detail }
    }
}

pub struct AuditLog {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: Mutex<Option<File>>,
    pseudonyms: HashKey,
}

impl AuditLog {
    /// Default: rotate at 64 MiB, keep 5 old files.
    pub fn open(path: &Path) -> Result<AuditLog, AccessError> {
        let mut key_path = path.as_os_str().to_owned();
        key_path.push(".key");
        let pseudonyms = HashKey::load(Path::new(&key_path), true)
            .map_err(|e| AccessError::File { path: path.display().to_string(), why: e.to_string() })?;
        let log =
            AuditLog { path: path.to_path_buf(), max_bytes: 64 << 20, keep: 5, file: Mutex::new(None), pseudonyms };
        *log.file.lock().unwrap_or_else(|p| p.into_inner()) = Some(log.open_file()?);
        Ok(log)
    }

    pub fn with_rotation(mut self, max_bytes: u64, keep: usize) -> AuditLog {
        (self.max_bytes, self.keep) = (max_bytes.max(1), keep.max(1));
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How a data subject's id is written: `subject:` and its keyed hash.
    pub fn pseudonym(&self, subject: &str) -> String {
        let hash = self.pseudonyms.hash(subject.as_bytes());
        format!("subject:{}", &hash["hmac-sha256:".len()..])
    }

    fn fail(&self, why: impl std::fmt::Display) -> AccessError {
        AccessError::File { path: self.path.display().to_string(), why: why.to_string() }
    }

    fn open_file(&self) -> Result<File, AccessError> {
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| self.fail(e))?;
        }
        let mut options = OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options.open(&self.path).map_err(|e| self.fail(e))
    }

    fn rotated(&self, n: usize) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Append one event (one `write` of one line).
    pub fn record(&self, event: &AuditEvent) -> Result<(), AccessError> {
        let mut line = serde_json::to_vec(event).map_err(|e| self.fail(e))?;
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let size = file.as_ref().and_then(|f| f.metadata().ok()).map_or(0, |m| m.len());
        if size > 0 && size + line.len() as u64 > self.max_bytes {
            *file = None;
            for n in (1..self.keep).rev() {
                let _ = std::fs::rename(self.rotated(n), self.rotated(n + 1));
            }
            std::fs::rename(&self.path, self.rotated(1)).map_err(|e| self.fail(e))?;
        }
        if file.is_none() {
            *file = Some(self.open_file()?);
        }
        file.as_mut().expect("opened above").write_all(&line).map_err(|e| self.fail(e))
    }

    /// The last `limit` events (across the rotated files), oldest first.
    pub fn tail(&self, limit: usize) -> Result<Vec<AuditEvent>, AccessError> {
        let _writing = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let mut events = std::collections::VecDeque::with_capacity(limit.min(10_000));
        let files = (1..=self.keep).rev().map(|n| self.rotated(n)).chain([self.path.clone()]);
        let lines = files.filter_map(|path| File::open(path).ok()).flat_map(|file| BufReader::new(file).lines());
        for line in lines {
            let line = line.map_err(|e| self.fail(e))?;
            if let Ok(event) = serde_json::from_str::<AuditEvent>(&line) {
                if events.len() == limit {
                    events.pop_front();
                }
                if limit > 0 {
                    events.push_back(event);
                }
            }
        }
        Ok(events.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_appended_read_back_and_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path).unwrap().with_rotation(400, 2);
        for i in 0..10 {
            log.record(&AuditEvent::now("k1", format!("POST /v2/models/p{i}/infer"), 200, None)).unwrap();
        }
        let tail = log.tail(3).unwrap();
        assert_eq!(tail.len(), 3);
        assert_eq!(tail[2].action, "POST /v2/models/p9/infer");
        assert!(std::fs::metadata(&path).unwrap().len() <= 400);
        assert!(log.rotated(1).exists() && log.rotated(2).exists() && !log.rotated(3).exists(), "keeps 2 old files");
        // Another writer (weir keys) appends to the same file.
        AuditLog::open(&path).unwrap().record(&AuditEvent::now("operator", "keys revoke".into(), 0, None)).unwrap();
        assert_eq!(log.tail(1).unwrap()[0].action, "keys revoke");
    }
}
