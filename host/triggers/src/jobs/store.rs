//! The durable part of asynchronous jobs: each job and the order they were
//! submitted in, in one redb file.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use weir_core::clock::unix_ms as now_ms;
use weir_core::{Classify, ErrorKind};

use weir_observe::rewrite::{copy_table, rewrite};

use crate::dispatch::Failure;
use crate::oip::InferenceResponse;

/// Job id → the job (JSON).
const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
/// Submission order → job id, for unfinished jobs only.
const QUEUE: TableDefinition<u64, &str> = TableDefinition::new("queue");

#[derive(Debug, Error)]
pub enum JobError {
    #[error("the job store at `{}` cannot be used: {message}", path.display())]
    Store { path: PathBuf, message: String },
    #[error("{0} jobs are already waiting or running (max_queued); retry later")]
    Full(usize),
}

impl Classify for JobError {
    fn kind(&self) -> ErrorKind {
        match self {
            JobError::Store { .. } => ErrorKind::Internal,
            JobError::Full(_) => ErrorKind::Overloaded,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

/// One asynchronous invocation, as `GET /v2/jobs/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub pipeline: String,
    pub status: JobStatus,
    pub submitted_unix_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_unix_ms: Option<u64>,
    /// Times it was started (more than 1 after a restart interrupted it).
    pub attempts: u32,
    /// The OIP response, once it succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<InferenceResponse>,
    /// Why it failed: the HTTP status a synchronous call would have had, and the message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<JobFailure>,
    /// The id of the key that submitted it (`anonymous` with access
    /// control off): only that key (or an admin) may read it.
    #[serde(skip_serializing)]
    pub owner: String,
    /// Whose data it is (`parameters.subject`): erased with the subject.
    #[serde(skip_serializing)]
    pub subject: Option<String>,
    #[serde(skip_serializing)]
    pub(crate) request: String,
    #[serde(skip_serializing)]
    sequence: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFailure {
    pub status: u16,
    pub message: String,
}

impl From<Failure> for JobFailure {
    fn from(failure: Failure) -> Self {
        JobFailure { status: failure.status(), message: failure.message }
    }
}

/// The durable part: jobs and the order they were submitted in.
pub struct JobStore {
    /// Replaced whole when an erasure rewrites the file.
    db: RwLock<Database>,
    path: PathBuf,
    next: AtomicU64,
}

impl JobStore {
    pub fn open(path: &Path) -> Result<JobStore, JobError> {
        let fail = |e: &dyn std::fmt::Display| JobError::Store { path: path.to_path_buf(), message: e.to_string() };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
        }
        let db = Database::create(path).map_err(|e| fail(&e))?;
        let store = JobStore { db: RwLock::new(db), path: path.to_path_buf(), next: AtomicU64::new(0) };
        let txn = store.db().begin_write().map_err(|e| fail(&e))?;
        let last = {
            txn.open_table(JOBS).map_err(|e| fail(&e))?;
            let queue = txn.open_table(QUEUE).map_err(|e| fail(&e))?;
            let last = queue.last().map_err(|e| fail(&e))?.map(|(k, _)| k.value());
            last
        };
        txn.commit().map_err(|e| fail(&e))?;
        store.next.store(last.map_or(0, |l| l + 1), Ordering::Relaxed);
        Ok(store)
    }

    fn db(&self) -> std::sync::RwLockReadGuard<'_, Database> {
        self.db.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Erase every job whose request named `subject`, for good (the file is
    /// rewritten so that no byte of them stays); how many there were.
    pub fn erase_subject(&self, subject: &str) -> Result<usize, JobError> {
        let txn = self.db().begin_write().map_err(|e| self.error(e))?;
        let erased = {
            let mut jobs = txn.open_table(JOBS).map_err(|e| self.error(e))?;
            let mut queue = txn.open_table(QUEUE).map_err(|e| self.error(e))?;
            let mut doomed = Vec::new();
            for entry in jobs.iter().map_err(|e| self.error(e))? {
                let (id, bytes) = entry.map_err(|e| self.error(e))?;
                if let Ok(job) = serde_json::from_slice::<StoredJob>(bytes.value()) {
                    if job.subject.as_deref() == Some(subject) {
                        doomed.push((id.value().to_string(), job.sequence));
                    }
                }
            }
            for (id, sequence) in &doomed {
                jobs.remove(id.as_str()).map_err(|e| self.error(e))?;
                queue.remove(*sequence).map_err(|e| self.error(e))?;
            }
            doomed.len()
        };
        txn.commit().map_err(|e| self.error(e))?;
        if erased > 0 {
            let mut db = self.db.write().unwrap_or_else(|p| p.into_inner());
            rewrite(&self.path, &mut db, |from, to| {
                copy_table(from, to, JOBS)?;
                copy_table(from, to, QUEUE)
            })
            .map_err(|e| self.error(e))?;
        }
        Ok(erased)
    }

    fn error(&self, e: impl std::fmt::Display) -> JobError {
        JobError::Store { path: self.path.clone(), message: e.to_string() }
    }

    fn put(&self, txn: &redb::WriteTransaction, job: &Job) -> Result<(), JobError> {
        let bytes = serde_json::to_vec(&StoredJob::from(job)).map_err(|e| self.error(e))?;
        txn.open_table(JOBS)
            .map_err(|e| self.error(e))?
            .insert(job.id.as_str(), bytes.as_slice())
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Record a new job; it is durable when this returns.
    pub fn submit(&self, pipeline: &str, request: &[u8], owner: &str, subject: Option<&str>) -> Result<Job, JobError> {
        let sequence = self.next.fetch_add(1, Ordering::Relaxed);
        let job = Job {
            id: weir_core::ids::new_invocation_id(),
            pipeline: pipeline.into(),
            status: JobStatus::Queued,
            submitted_unix_ms: now_ms(),
            finished_unix_ms: None,
            attempts: 0,
            response: None,
            error: None,
            owner: owner.into(),
            subject: subject.map(str::to_string),
            request: String::from_utf8_lossy(request).into_owned(),
            sequence,
        };
        let txn = self.db().begin_write().map_err(|e| self.error(e))?;
        self.put(&txn, &job)?;
        txn.open_table(QUEUE)
            .map_err(|e| self.error(e))?
            .insert(sequence, job.id.as_str())
            .map_err(|e| self.error(e))?;
        txn.commit().map_err(|e| self.error(e))?;
        Ok(job)
    }

    pub fn get(&self, id: &str) -> Result<Option<Job>, JobError> {
        let txn = self.db().begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(JOBS).map_err(|e| self.error(e))?;
        let Some(bytes) = table.get(id).map_err(|e| self.error(e))? else { return Ok(None) };
        let stored: StoredJob = serde_json::from_slice(bytes.value()).map_err(|e| self.error(e))?;
        Ok(Some(stored.into()))
    }

    /// Unfinished jobs, oldest first.
    pub fn unfinished(&self) -> Result<Vec<String>, JobError> {
        let txn = self.db().begin_read().map_err(|e| self.error(e))?;
        let queue = txn.open_table(QUEUE).map_err(|e| self.error(e))?;
        let mut ids = Vec::new();
        for entry in queue.iter().map_err(|e| self.error(e))? {
            let (_, id) = entry.map_err(|e| self.error(e))?;
            ids.push(id.value().to_string());
        }
        Ok(ids)
    }

    fn update(&self, id: &str, change: impl FnOnce(&mut Job)) -> Result<Option<Job>, JobError> {
        let Some(mut job) = self.get(id)? else { return Ok(None) };
        change(&mut job);
        let txn = self.db().begin_write().map_err(|e| self.error(e))?;
        self.put(&txn, &job)?;
        if matches!(job.status, JobStatus::Succeeded | JobStatus::Failed) {
            txn.open_table(QUEUE).map_err(|e| self.error(e))?.remove(job.sequence).map_err(|e| self.error(e))?;
        }
        txn.commit().map_err(|e| self.error(e))?;
        Ok(Some(job))
    }

    /// Mark a job running; returns it (with its request) to run.
    pub fn start(&self, id: &str) -> Result<Option<Job>, JobError> {
        self.update(id, |job| {
            job.status = JobStatus::Running;
            job.attempts += 1;
        })
    }

    pub fn finish(&self, id: &str, outcome: Result<InferenceResponse, Failure>) -> Result<(), JobError> {
        self.update(id, |job| {
            job.finished_unix_ms = Some(now_ms());
            job.request.clear();
            match outcome {
                Ok(response) => {
                    job.status = JobStatus::Succeeded;
                    job.response = Some(response);
                }
                Err(failure) => {
                    job.status = JobStatus::Failed;
                    job.error = Some(failure.into());
                }
            }
        })?;
        Ok(())
    }

    /// Delete finished jobs older than `retention`; returns how many went.
    pub fn sweep(&self, retention: Duration) -> Result<usize, JobError> {
        let cutoff = now_ms().saturating_sub(retention.as_millis() as u64);
        let txn = self.db().begin_write().map_err(|e| self.error(e))?;
        let removed = {
            let mut jobs = txn.open_table(JOBS).map_err(|e| self.error(e))?;
            let mut expired = Vec::new();
            for entry in jobs.iter().map_err(|e| self.error(e))? {
                let (id, bytes) = entry.map_err(|e| self.error(e))?;
                let finished = serde_json::from_slice::<StoredJob>(bytes.value()).ok().and_then(|j| j.finished_unix_ms);
                if finished.is_some_and(|f| f < cutoff) {
                    expired.push(id.value().to_string());
                }
            }
            for id in &expired {
                jobs.remove(id.as_str()).map_err(|e| self.error(e))?;
            }
            expired.len()
        };
        txn.commit().map_err(|e| self.error(e))?;
        Ok(removed)
    }
}

/// What is kept on disk (the request too, unlike the API view).
#[derive(Serialize, Deserialize)]
struct StoredJob {
    id: String,
    pipeline: String,
    status: JobStatus,
    submitted_unix_ms: u64,
    finished_unix_ms: Option<u64>,
    attempts: u32,
    response: Option<InferenceResponse>,
    error: Option<JobFailure>,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    subject: Option<String>,
    request: String,
    sequence: u64,
}

impl From<&Job> for StoredJob {
    fn from(job: &Job) -> Self {
        StoredJob {
            id: job.id.clone(),
            pipeline: job.pipeline.clone(),
            status: job.status,
            submitted_unix_ms: job.submitted_unix_ms,
            finished_unix_ms: job.finished_unix_ms,
            attempts: job.attempts,
            response: job.response.clone(),
            error: job.error.clone(),
            owner: job.owner.clone(),
            subject: job.subject.clone(),
            request: job.request.clone(),
            sequence: job.sequence,
        }
    }
}

impl From<StoredJob> for Job {
    fn from(s: StoredJob) -> Self {
        Job {
            id: s.id,
            pipeline: s.pipeline,
            status: s.status,
            submitted_unix_ms: s.submitted_unix_ms,
            finished_unix_ms: s.finished_unix_ms,
            attempts: s.attempts,
            response: s.response,
            error: s.error,
            owner: s.owner,
            subject: s.subject,
            request: s.request,
            sequence: s.sequence,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_survive_reopening_and_leave_the_queue_when_done() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.redb");
        let (first, second) = {
            let store = JobStore::open(&path).unwrap();
            let first = store.submit("p", b"{\"inputs\": []}", "k", None).unwrap();
            let second = store.submit("p", b"{}", "k", None).unwrap();
            store.start(&first.id).unwrap();
            let response = InferenceResponse {
                model_name: "p".into(),
                model_version: None,
                id: None,
                parameters: None,
                outputs: vec![],
            };
            store.finish(&first.id, Ok(response)).unwrap();
            (first, second)
        };
        let store = JobStore::open(&path).unwrap();
        assert_eq!(store.unfinished().unwrap(), vec![second.id.clone()]);
        let done = store.get(&first.id).unwrap().unwrap();
        assert_eq!((done.status, done.attempts), (JobStatus::Succeeded, 1));
        assert!(done.request.is_empty(), "requests are not kept once answered");
        let third = store.submit("p", b"{}", "k", None).unwrap();
        assert!(third.sequence > second.sequence, "order continues after reopening");
        store.finish(&second.id, Err(Failure::new(ErrorKind::InvalidInput, "bad"))).unwrap();
        assert_eq!(store.sweep(Duration::from_secs(3600)).unwrap(), 0, "nothing is that old");
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(store.sweep(Duration::from_millis(1)).unwrap(), 2);
        assert!(store.get(&first.id).unwrap().is_none(), "expired results are deleted");
        assert!(store.get(&third.id).unwrap().is_some(), "unfinished jobs are never expired");
    }
}
