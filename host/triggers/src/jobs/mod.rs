//! Asynchronous invocations without a broker: jobs kept in an embedded
//! durable store (redb). A job is written before it is acknowledged (202),
//! runs on a fixed set of workers through the shared dispatcher (under the
//! jobs trigger's own time limit), and its result stays readable until its
//! retention ends. Jobs queued or running when the process stopped run
//! again after a restart (at least once), up to `max_attempts` starts; a
//! job that keeps taking its host down ends as failed. The queue is bounded: beyond
//! `max_queued` unfinished jobs, submissions are refused (429).

mod settings;
mod store;

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::sync::{mpsc, Mutex};
use weir_core::ErrorKind;

pub use settings::JobSettings;
pub use store::{Job, JobError, JobFailure, JobStatus, JobStore};

use crate::dispatch::{Dispatcher, Failure, Invocation, TriggerKind};

/// The store and its workers.
pub struct Jobs {
    store: Arc<JobStore>,
    queue: mpsc::UnboundedSender<String>,
    unfinished: Arc<AtomicUsize>,
    max_queued: usize,
}

impl Jobs {
    /// Open the store, requeue what a previous run left unfinished, and
    /// start the workers (on the current tokio runtime).
    pub fn start(dispatcher: Arc<Dispatcher>, settings: &JobSettings) -> Result<Jobs, JobError> {
        let store = Arc::new(JobStore::open(&settings.path)?);
        let (queue, receiver) = mpsc::unbounded_channel();
        let pending = store.unfinished()?;
        if !pending.is_empty() {
            tracing::info!(jobs = pending.len(), "resuming unfinished asynchronous jobs");
        }
        let unfinished = Arc::new(AtomicUsize::new(pending.len()));
        for id in pending {
            let _ = queue.send(id);
        }
        let receiver = Arc::new(Mutex::new(receiver));
        let (timeout, max_attempts) = (settings.timeout, settings.max_attempts);
        for _ in 0..settings.workers.max(1) {
            let (store, receiver, dispatcher, unfinished) =
                (store.clone(), receiver.clone(), dispatcher.clone(), unfinished.clone());
            tokio::spawn(async move {
                loop {
                    let Some(id) = receiver.lock().await.recv().await else { return };
                    // The dispatcher turns a panicking invocation into a 500;
                    // this keeps the worker alive whatever else panics.
                    let run = AssertUnwindSafe(run_job(&store, &dispatcher, &id, timeout, max_attempts));
                    if run.catch_unwind().await.is_err() {
                        tracing::error!(job = %id, "a job worker panicked; the worker goes on");
                    }
                    unfinished.fetch_sub(1, Ordering::AcqRel);
                }
            });
        }
        let (sweeper, retention) = (store.clone(), settings.retention);
        tokio::spawn(async move {
            let mut every =
                tokio::time::interval((retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(600)));
            loop {
                every.tick().await;
                if let Err(error) = sweeper.sweep(retention) {
                    tracing::error!(%error, "could not delete expired jobs");
                }
            }
        });
        Ok(Jobs { store, queue, unfinished, max_queued: settings.max_queued })
    }

    /// Accept a request for later; refused when the queue is full.
    pub fn submit(&self, pipeline: &str, request: &[u8], owner: &str, subject: Option<&str>) -> Result<Job, JobError> {
        let waiting = self.unfinished.fetch_add(1, Ordering::AcqRel);
        if waiting >= self.max_queued {
            self.unfinished.fetch_sub(1, Ordering::AcqRel);
            return Err(JobError::Full(waiting));
        }
        let job = self.store.submit(pipeline, request, owner, subject).inspect_err(|_| {
            self.unfinished.fetch_sub(1, Ordering::AcqRel);
        })?;
        let _ = self.queue.send(job.id.clone());
        Ok(job)
    }

    pub fn get(&self, id: &str) -> Result<Option<Job>, JobError> {
        self.store.get(id)
    }

    /// Erase the jobs of `subject` (requests and results), for good.
    pub fn erase_subject(&self, subject: &str) -> Result<usize, JobError> {
        self.store.erase_subject(subject)
    }
}

async fn run_job(store: &JobStore, dispatcher: &Dispatcher, id: &str, timeout: Duration, max_attempts: u32) {
    let job = match store.start(id) {
        Ok(Some(job)) => job,
        Ok(None) => return,
        Err(error) => return tracing::error!(job = id, %error, "could not start a job"),
    };
    if job.attempts > max_attempts {
        // Every earlier start ended without a result: a poison job.
        let message = format!(
            "the job was started {} times without finishing (its host stopped or crashed while running it); \
             it is not tried again (triggers.jobs.max_attempts = {max_attempts})",
            job.attempts - 1
        );
        tracing::error!(job = id, attempts = job.attempts - 1, "giving up on a job that never finished");
        if let Err(error) = store.finish(id, Err(Failure::new(ErrorKind::Internal, message))) {
            tracing::error!(job = id, %error, "could not record a job's failure");
        }
        return;
    }
    // Queue wait counts from submission (across restarts too).
    let waited = Duration::from_millis(weir_core::clock::unix_ms().saturating_sub(job.submitted_unix_ms));
    let received = Instant::now().checked_sub(waited).unwrap_or_else(Instant::now);
    let outcome = match dispatcher.prepare(job.request.as_bytes(), received) {
        Ok(prepared) => {
            let invocation = Invocation {
                trigger: TriggerKind::Jobs,
                pipeline: &job.pipeline,
                prepared,
                timeout,
                trace: dispatcher.trace(None),
                sticky_header: None,
            };
            dispatcher.invoke(invocation).await.map(|done| done.response)
        }
        Err(failure) => Err(failure),
    };
    if let Err(error) = store.finish(id, outcome) {
        tracing::error!(job = id, %error, "could not record a job's result");
    }
}
