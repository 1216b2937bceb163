//! The provenance store: for every invocation, which component and model
//! digests ran, the grants each step had, the hash of every tensor on every
//! edge, the timings and the receipt — kept in an embedded database (redb)
//! for a retention period, and erasable by invocation id or by the subject
//! the caller named (right to erasure: the records are deleted, not hidden).

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::Duration;

use redb::{Database, MultimapTableDefinition, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use weir_core::clock::unix_ms as now_ms;

use crate::receipts::Receipt;
use crate::rewrite::{copy_multimap, copy_table, rewrite};

const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("invocations");
/// subject -> invocation ids
const SUBJECTS: MultimapTableDefinition<&str, &str> = MultimapTableDefinition::new("subjects");
/// written-at (unix ms) -> invocation ids, for retention
const BY_TIME: MultimapTableDefinition<u64, &str> = MultimapTableDefinition::new("by_time");
/// subject -> `stream/sequence` of broker messages holding its data
const PUBLISHED: MultimapTableDefinition<&str, &str> = MultimapTableDefinition::new("broker_messages");

/// A message in a JetStream stream that holds a subject's data (a request
/// weir consumed, a result or dead letter it published), so that erasing the
/// subject can reach the broker too.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BrokerMessage {
    pub stream: String,
    pub sequence: u64,
}

#[derive(Debug, Error)]
#[error("provenance store: {0}")]
pub struct ProvenanceError(String);

/// What [`ProvenanceStore::add_feedback`] did.
#[derive(Debug)]
pub enum FeedbackAdded<E> {
    /// The record, with its feedback.
    Added(Box<InvocationRecord>),
    NoRecord,
    /// Feedback is given once per invocation.
    AlreadyGiven,
    Refused(E),
}

impl weir_core::Classify for ProvenanceError {
    fn kind(&self) -> weir_core::ErrorKind {
        weir_core::ErrorKind::Internal
    }
}

pub(crate) fn err(e: impl std::fmt::Display) -> ProvenanceError {
    ProvenanceError(e.to_string())
}

/// One tensor on an edge: its hash always, its data only when kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeTensor {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<u64>,
    /// SHA-256 of the data (tensors not marked sensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// HMAC-SHA256 of the data under the operator's hash key (sensitive
    /// tensors: never a plain hash, which a guess could be checked against).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: String,
    pub component: String,
    pub component_digest: String,
    /// (model name, model digest, device) for every model the step used.
    pub models: Vec<(String, String, String)>,
    pub granted_models: Vec<String>,
    pub config_keys: Vec<String>,
    /// Granted read-only directories, as `guest path <- host path`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub granted_dirs: Vec<String>,
    /// Names of the environment variables the step saw (not their values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_keys: Vec<String>,
    /// Hosts the step could call over HTTP, as `host:port`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub granted_http: Vec<String>,
    /// When it started, after the invocation began (µs).
    #[serde(default)]
    pub started_after_us: u64,
    pub inputs: Vec<EdgeTensor>,
    pub outputs: Vec<EdgeTensor>,
}

/// Why a recorded invocation failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedError {
    /// The error's kind, as `weir_core::ErrorKind` names it.
    pub kind: String,
    pub message: String,
    /// The step it happened in, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
}

/// Whether an invocation produced its outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Failed,
}

/// Which records [`ProvenanceStore::search`] returns.
#[derive(Debug, Clone, Default)]
pub struct RecordQuery {
    pub pipeline: Option<String>,
    pub outcome: Option<Outcome>,
    /// Written at or after (unix ms).
    pub since_ms: u64,
    /// Written before (unix ms); `None`: now.
    pub until_ms: Option<u64>,
    pub limit: usize,
}

/// The most records one search looks at.
pub const MAX_SCANNED: usize = 20_000;
/// The longest error message a summary carries (the record keeps more).
const SUMMARY_ERROR_CHARS: usize = 500;

/// One line of a search's answer: enough to choose a record to open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordSummary {
    pub invocation_id: String,
    pub pipeline: String,
    pub unix_ms: u64,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub wall_us: u64,
    pub cpu_us: u64,
    pub energy_j: f64,
    pub cost: f64,
    pub steps: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvocationRecord {
    pub invocation_id: String,
    pub pipeline: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub unix_ms: u64,
    pub inputs: Vec<EdgeTensor>,
    pub outputs: Vec<EdgeTensor>,
    pub steps: Vec<StepRecord>,
    /// For a failed invocation, the steps that finished before the failure.
    pub receipt: Receipt,
    /// Set when the invocation failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RecordedError>,
    /// The experiment variant that served it, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<crate::receipts::Served>,
    /// The true outcome, when someone sent it, and how the answer scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<crate::feedback::Feedback>,
}

impl InvocationRecord {
    pub fn outcome(&self) -> Outcome {
        if self.error.is_some() {
            Outcome::Failed
        } else {
            Outcome::Ok
        }
    }

    pub fn summary(&self) -> RecordSummary {
        RecordSummary {
            invocation_id: self.invocation_id.clone(),
            pipeline: self.pipeline.clone(),
            unix_ms: self.unix_ms,
            outcome: self.outcome(),
            error: self.error.as_ref().map(|e| e.message.chars().take(SUMMARY_ERROR_CHARS).collect()),
            wall_us: self.receipt.wall_us,
            cpu_us: self.receipt.cpu_us,
            energy_j: self.receipt.energy_j,
            cost: self.receipt.cost,
            steps: self.steps.len(),
        }
    }
}

pub struct ProvenanceStore {
    /// Replaced whole when erasures rewrite the file.
    db: RwLock<Database>,
    path: PathBuf,
    retention: Duration,
}

impl ProvenanceStore {
    /// Open (or create) the store at `path`; records older than `retention`
    /// are purged now and on every later write.
    pub fn open(path: &Path, retention: Duration) -> Result<Self, ProvenanceError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let db = Database::create(path).map_err(|e| ProvenanceError(format!("opening {}: {e}", path.display())))?;
        let store = ProvenanceStore { db: RwLock::new(db), path: path.to_path_buf(), retention };
        store.purge_expired(now_ms())?;
        store.purge_monitor_results(now_ms())?;
        Ok(store)
    }

    pub(crate) fn db(&self) -> std::sync::RwLockReadGuard<'_, Database> {
        self.db.read().unwrap_or_else(|p| p.into_inner())
    }

    /// How long records (and monitor results) are kept.
    pub fn retention(&self) -> Duration {
        self.retention
    }

    pub fn put(&self, record: &InvocationRecord) -> Result<(), ProvenanceError> {
        let bytes = serde_json::to_vec(record).map_err(err)?;
        // The guard is held to the commit, so a rewrite (erasure) waits for it.
        let db = self.db();
        let mut tx = db.begin_write().map_err(err)?;
        // Records are an audit trail, not a ledger: flushed by the next
        // durable commit or shutdown rather than fsync'd on every request.
        tx.set_durability(redb::Durability::Eventual);
        {
            tx.open_table(RECORDS)
                .map_err(err)?
                .insert(record.invocation_id.as_str(), bytes.as_slice())
                .map_err(err)?;
            tx.open_multimap_table(BY_TIME)
                .map_err(err)?
                .insert(record.unix_ms, record.invocation_id.as_str())
                .map_err(err)?;
            if let Some(subject) = &record.subject {
                tx.open_multimap_table(SUBJECTS)
                    .map_err(err)?
                    .insert(subject.as_str(), record.invocation_id.as_str())
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        drop(db);
        self.purge_expired(now_ms()).map(drop)
    }

    pub fn get(&self, invocation_id: &str) -> Result<Option<InvocationRecord>, ProvenanceError> {
        let tx = self.db().begin_read().map_err(err)?;
        let table = match tx.open_table(RECORDS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(err(e)),
        };
        let Some(bytes) = table.get(invocation_id).map_err(err)? else { return Ok(None) };
        serde_json::from_slice(bytes.value()).map(Some).map_err(err)
    }

    /// Attach feedback to a record, once, in one transaction: `make`
    /// builds it from the record (and may refuse it).
    pub fn add_feedback<E>(
        &self,
        invocation_id: &str,
        make: impl FnOnce(&InvocationRecord) -> Result<crate::feedback::Feedback, E>,
    ) -> Result<FeedbackAdded<E>, ProvenanceError> {
        // Held to the commit, so an erasure's rewrite of the store waits for it.
        let db = self.db();
        let tx = db.begin_write().map_err(err)?;
        let record = {
            let mut table = tx.open_table(RECORDS).map_err(err)?;
            let Some(bytes) = table.get(invocation_id).map_err(err)?.map(|b| b.value().to_vec()) else {
                return Ok(FeedbackAdded::NoRecord);
            };
            let mut record: InvocationRecord = serde_json::from_slice(&bytes).map_err(err)?;
            if record.feedback.is_some() {
                return Ok(FeedbackAdded::AlreadyGiven);
            }
            match make(&record) {
                Ok(feedback) => record.feedback = Some(feedback),
                Err(refused) => return Ok(FeedbackAdded::Refused(refused)),
            }
            let bytes = serde_json::to_vec(&record).map_err(err)?;
            table.insert(invocation_id, bytes.as_slice()).map_err(err)?;
            record
        };
        tx.commit().map_err(err)?;
        Ok(FeedbackAdded::Added(Box::new(record)))
    }

    /// Every record written at or after `since_ms` (unix milliseconds), oldest first.
    pub fn records_since(&self, since_ms: u64) -> Result<Vec<InvocationRecord>, ProvenanceError> {
        let ids = self.ids_written(since_ms..)?;
        let mut records = Vec::with_capacity(ids.len());
        for id in ids {
            records.extend(self.get(&id)?);
        }
        Ok(records)
    }

    /// The newest records that match `query`, newest first, at most
    /// `query.limit`; walks back through the time index in one read
    /// transaction and looks at no more than [`MAX_SCANNED`] records, so a
    /// rare filter over a large store costs a bounded amount.
    pub fn search(&self, query: &RecordQuery) -> Result<Vec<RecordSummary>, ProvenanceError> {
        Ok(self.newest(query)?.iter().map(InvocationRecord::summary).collect())
    }

    /// Like [`ProvenanceStore::search`], with the whole records.
    pub fn newest(&self, query: &RecordQuery) -> Result<Vec<InvocationRecord>, ProvenanceError> {
        let until = query.until_ms.unwrap_or(u64::MAX);
        if query.since_ms >= until {
            return Ok(Vec::new());
        }
        let tx = self.db().begin_read().map_err(err)?;
        let (by_time, records) = match (tx.open_multimap_table(BY_TIME), tx.open_table(RECORDS)) {
            (Ok(by_time), Ok(records)) => (by_time, records),
            (Err(redb::TableError::TableDoesNotExist(_)), _) | (_, Err(redb::TableError::TableDoesNotExist(_))) => {
                return Ok(Vec::new())
            }
            (Err(e), _) | (_, Err(e)) => return Err(err(e)),
        };
        let mut found = Vec::new();
        let mut scanned = 0;
        for entry in by_time.range::<u64>(query.since_ms..until).map_err(err)?.rev() {
            let (_, ids) = entry.map_err(err)?;
            for id in ids {
                if found.len() >= query.limit || scanned >= MAX_SCANNED {
                    return Ok(found);
                }
                scanned += 1;
                let id = id.map_err(err)?;
                let Some(bytes) = records.get(id.value()).map_err(err)? else { continue };
                let record: InvocationRecord = serde_json::from_slice(bytes.value()).map_err(err)?;
                let wanted = query.pipeline.as_ref().is_none_or(|p| *p == record.pipeline)
                    && query.outcome.is_none_or(|o| o == record.outcome());
                if wanted {
                    found.push(record);
                }
            }
        }
        Ok(found)
    }

    /// Erase one invocation's record for good (the file is rewritten, so no
    /// byte of it stays behind); whether there was one.
    pub fn erase(&self, invocation_id: &str) -> Result<bool, ProvenanceError> {
        let erased = self.remove(invocation_id)?;
        if erased {
            self.rewrite()?;
        }
        Ok(erased)
    }

    /// Delete one record from the tables (its bytes may stay in free pages).
    fn remove(&self, invocation_id: &str) -> Result<bool, ProvenanceError> {
        let Some(record) = self.get(invocation_id)? else { return Ok(false) };
        let db = self.db();
        let tx = db.begin_write().map_err(err)?;
        {
            tx.open_table(RECORDS).map_err(err)?.remove(invocation_id).map_err(err)?;
            tx.open_multimap_table(BY_TIME).map_err(err)?.remove(record.unix_ms, invocation_id).map_err(err)?;
            if let Some(subject) = &record.subject {
                tx.open_multimap_table(SUBJECTS).map_err(err)?.remove(subject.as_str(), invocation_id).map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        Ok(true)
    }

    /// Remember broker messages that hold `subject`'s data.
    pub fn remember_published(&self, subject: &str, messages: &[BrokerMessage]) -> Result<(), ProvenanceError> {
        let db = self.db();
        let mut tx = db.begin_write().map_err(err)?;
        tx.set_durability(redb::Durability::Eventual);
        {
            let mut table = tx.open_multimap_table(PUBLISHED).map_err(err)?;
            for message in messages {
                let entry = format!("{}/{}", message.stream, message.sequence);
                table.insert(subject, entry.as_str()).map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// The broker messages remembered for `subject`.
    pub fn published(&self, subject: &str) -> Result<Vec<BrokerMessage>, ProvenanceError> {
        let entries = self.values_of(PUBLISHED, subject)?;
        let parse = |entry: &String| {
            let (stream, sequence) = entry.rsplit_once('/')?;
            Some(BrokerMessage { stream: stream.to_string(), sequence: sequence.parse().ok()? })
        };
        Ok(entries.iter().filter_map(parse).collect())
    }

    /// The values under `key` in a multimap table (none when the table does not exist yet).
    fn values_of(&self, table: MultimapTableDefinition<&str, &str>, key: &str) -> Result<Vec<String>, ProvenanceError> {
        let tx = self.db().begin_read().map_err(err)?;
        let table = match tx.open_multimap_table(table) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(err(e)),
        };
        let values = table.get(key).map_err(err)?;
        values.map(|v| v.map(|v| v.value().to_string()).map_err(err)).collect()
    }

    /// Delete every record of a subject (and what it remembered of the
    /// subject's broker messages); how many records there were.
    pub fn erase_subject(&self, subject: &str) -> Result<usize, ProvenanceError> {
        let ids = self.values_of(SUBJECTS, subject)?;
        let mut erased = 0;
        for id in ids {
            erased += usize::from(self.remove(&id)?);
        }
        let forgot = self.forget_published(subject)?;
        if erased > 0 || forgot {
            self.rewrite()?;
        }
        Ok(erased)
    }

    fn forget_published(&self, subject: &str) -> Result<bool, ProvenanceError> {
        if self.published(subject)?.is_empty() {
            return Ok(false);
        }
        let db = self.db();
        let tx = db.begin_write().map_err(err)?;
        tx.open_multimap_table(PUBLISHED).map_err(err)?.remove_all(subject).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(true)
    }

    /// Copy the live records into a new file and put it in place of the old
    /// one: redb reuses freed pages but does not clear them, so this is what
    /// makes an erasure leave nothing on disk. Costs a copy of the store.
    fn rewrite(&self) -> Result<(), ProvenanceError> {
        let mut db = self.db.write().unwrap_or_else(|p| p.into_inner());
        rewrite(&self.path, &mut db, |from, to| {
            copy_table(from, to, RECORDS)?;
            copy_multimap(from, to, SUBJECTS)?;
            copy_multimap(from, to, PUBLISHED)?;
            copy_table(from, to, crate::monitor_records::MONITOR_RESULTS)?;
            copy_multimap(from, to, BY_TIME)
        })
        .map_err(err)
    }

    /// Ids of the records written in a range of unix milliseconds.
    fn ids_written(&self, range: impl std::ops::RangeBounds<u64>) -> Result<Vec<String>, ProvenanceError> {
        let tx = self.db().begin_read().map_err(err)?;
        let table = match tx.open_multimap_table(BY_TIME) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(err(e)),
        };
        let mut ids = Vec::new();
        for entry in table.range::<u64>(range).map_err(err)? {
            let (_, values) = entry.map_err(err)?;
            for value in values {
                ids.push(value.map_err(err)?.value().to_string());
            }
        }
        Ok(ids)
    }

    /// Delete records written before `now - retention`.
    pub fn purge_expired(&self, now: u64) -> Result<usize, ProvenanceError> {
        let cutoff = now.saturating_sub(self.retention.as_millis() as u64);
        let expired = self.ids_written(..cutoff)?;
        let mut purged = 0;
        for id in expired {
            purged += usize::from(self.remove(&id)?);
        }
        Ok(purged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, subject: Option<&str>, unix_ms: u64) -> InvocationRecord {
        InvocationRecord {
            invocation_id: id.into(),
            pipeline: "p".into(),
            subject: subject.map(String::from),
            unix_ms,
            inputs: vec![],
            outputs: vec![],
            steps: vec![],
            receipt: crate::receipts::receipt(id.into(), Duration::ZERO, Duration::ZERO, vec![]),
            error: None,
            variant: None,
            feedback: None,
        }
    }

    #[test]
    fn search_filters_by_pipeline_outcome_and_time_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = ProvenanceStore::open(&dir.path().join("p.redb"), Duration::from_secs(3600)).unwrap();
        let now = now_ms();
        for (i, (pipeline, failed)) in [("p", false), ("q", false), ("p", true), ("p", false)].into_iter().enumerate() {
            let mut r = record(&format!("r{i}"), None, now + i as u64);
            r.pipeline = pipeline.into();
            r.error = failed.then(|| RecordedError { kind: "step-failed".into(), message: "boom".into(), step: None });
            store.put(&r).unwrap();
        }
        let ids = |query: RecordQuery| -> Vec<String> {
            store.search(&RecordQuery { limit: 10, ..query }).unwrap().into_iter().map(|s| s.invocation_id).collect()
        };
        assert_eq!(ids(RecordQuery::default()), ["r3", "r2", "r1", "r0"]);
        assert_eq!(ids(RecordQuery { pipeline: Some("p".into()), ..Default::default() }), ["r3", "r2", "r0"]);
        assert_eq!(ids(RecordQuery { outcome: Some(Outcome::Failed), ..Default::default() }), ["r2"]);
        assert_eq!(
            ids(RecordQuery { outcome: Some(Outcome::Ok), since_ms: now + 1, ..Default::default() }),
            ["r3", "r1"]
        );
        assert_eq!(ids(RecordQuery { until_ms: Some(now + 2), ..Default::default() }), ["r1", "r0"]);
        let summary = &store.search(&RecordQuery { limit: 1, ..RecordQuery::default() }).unwrap();
        assert_eq!(summary.len(), 1, "the limit holds");
        let failed = store.search(&RecordQuery { limit: 9, outcome: Some(Outcome::Failed), ..Default::default() });
        assert_eq!(failed.unwrap()[0].error.as_deref(), Some("boom"));
    }

    #[test]
    fn records_round_trip_and_erasure_deletes_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prov.redb");
        let store = ProvenanceStore::open(&path, Duration::from_secs(3600)).unwrap();
        let now = now_ms();
        store.put(&record("a", Some("alice"), now)).unwrap();
        store.put(&record("b", Some("alice"), now)).unwrap();
        store.put(&record("c", Some("bob"), now)).unwrap();
        assert_eq!(store.get("a").unwrap().unwrap().subject.as_deref(), Some("alice"));
        assert!(store.erase("c").unwrap());
        assert!(!store.erase("c").unwrap());
        assert_eq!(store.erase_subject("alice").unwrap(), 2);
        drop(store);
        // Reopened from disk: gone for good.
        let store = ProvenanceStore::open(&path, Duration::from_secs(3600)).unwrap();
        for id in ["a", "b", "c"] {
            assert!(store.get(id).unwrap().is_none(), "{id} survived erasure");
        }
    }

    #[test]
    fn records_past_retention_are_purged() {
        let dir = tempfile::tempdir().unwrap();
        let store = ProvenanceStore::open(&dir.path().join("prov.redb"), Duration::from_secs(60)).unwrap();
        let now = now_ms();
        store.put(&record("old", None, now - 120_000)).unwrap();
        store.put(&record("new", None, now)).unwrap();
        assert!(store.get("old").unwrap().is_none(), "purged on write");
        assert!(store.get("new").unwrap().is_some());
    }
}
