//! Asynchronous invocations without a broker: jobs kept in an embedded
//! durable store (redb). A job is written before it is acknowledged (202),
//! runs on a fixed set of workers through the shared dispatcher (under the
//! jobs trigger's own time limit), and its result stays readable until its
//! retention ends. Jobs queued or running when the process stopped run
//! again after a restart (at least once). The queue is bounded: beyond
//! `max_queued` unfinished jobs, submissions are refused (429).

mod settings;
mod store;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Mutex};

pub use settings::JobSettings;
pub use store::{Job, JobError, JobFailure, JobStatus, JobStore};

use crate::dispatch::{Dispatcher, Invocation, Prepared, TriggerKind};

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
        let timeout = settings.timeout;
        for _ in 0..settings.workers.max(1) {
            let (store, receiver, dispatcher, unfinished) =
                (store.clone(), receiver.clone(), dispatcher.clone(), unfinished.clone());
            tokio::spawn(async move {
                loop {
                    let Some(id) = receiver.lock().await.recv().await else { return };
                    run_job(&store, &dispatcher, &id, timeout).await;
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
    pub fn submit(&self, pipeline: &str, request: &[u8]) -> Result<Job, JobError> {
        let waiting = self.unfinished.fetch_add(1, Ordering::AcqRel);
        if waiting >= self.max_queued {
            self.unfinished.fetch_sub(1, Ordering::AcqRel);
            return Err(JobError::Full(waiting));
        }
        let job = self.store.submit(pipeline, request).inspect_err(|_| {
            self.unfinished.fetch_sub(1, Ordering::AcqRel);
        })?;
        let _ = self.queue.send(job.id.clone());
        Ok(job)
    }

    pub fn get(&self, id: &str) -> Result<Option<Job>, JobError> {
        self.store.get(id)
    }
}

async fn run_job(store: &JobStore, dispatcher: &Dispatcher, id: &str, timeout: Duration) {
    let job = match store.start(id) {
        Ok(Some(job)) => job,
        Ok(None) => return,
        Err(error) => return tracing::error!(job = id, %error, "could not start a job"),
    };
    // Queue wait counts from submission (across restarts too).
    let waited = Duration::from_millis(weir_core::clock::unix_ms().saturating_sub(job.submitted_unix_ms));
    let received = Instant::now().checked_sub(waited).unwrap_or_else(Instant::now);
    let outcome = match Prepared::parse(job.request.as_bytes(), received) {
        Ok(prepared) => {
            let invocation = Invocation {
                trigger: TriggerKind::Jobs,
                pipeline: &job.pipeline,
                prepared,
                timeout,
                trace: dispatcher.trace(None),
            };
            dispatcher.invoke(invocation).await.map(|done| done.response)
        }
        Err(failure) => Err(failure),
    };
    if let Err(error) = store.finish(id, outcome) {
        tracing::error!(job = id, %error, "could not record a job's result");
    }
}
