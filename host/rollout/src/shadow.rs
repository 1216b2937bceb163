//! Shadow copies of requests, off the callers' path: a bounded queue per
//! experiment, a worker running at most two copies at once, and counts of
//! what was run and what was dropped because the queue was full.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use weir_core::{Pricing, Tensor};
use weir_executor::{Executor, RunOptions, Seeded};

use crate::rollout::Shared;
use crate::stats::Run;

/// Shadow copies running at once per experiment.
const PARALLEL: usize = 2;
/// The longest a shadow copy may run.
const TIME_LIMIT: Duration = Duration::from_secs(60);
/// Tensor bytes that queued and running copies may hold at once per
/// experiment (inputs, reused outputs, the answer compared against); a copy
/// that would pass it is dropped like one that finds the queue full.
pub const MAX_HELD_BYTES: u64 = 256 << 20;

/// A copy of one request for one variant.
pub struct ShadowJob {
    pub executor: Arc<Executor>,
    /// The variant that runs the copy.
    pub variant: usize,
    /// The variant that answered the caller, and what it answered.
    pub served: usize,
    pub served_outputs: Vec<Tensor>,
    pub inputs: Vec<Tensor>,
    /// The served run's outputs of steps both variants share.
    pub seeded: Seeded,
    /// Carries the shadow's variant tag.
    pub options: RunOptions,
    pub pricing: Pricing,
}

#[derive(Debug, Default)]
struct Counts {
    queued: AtomicU64,
    dropped: AtomicU64,
    finished: AtomicU64,
    /// Tensor bytes held by copies queued or running.
    held_bytes: AtomicU64,
}

impl ShadowJob {
    /// The tensor bytes this copy holds until it ends.
    fn bytes(&self) -> u64 {
        let seeded = self.seeded.values().flatten();
        let all = self.inputs.iter().chain(&self.served_outputs).chain(seeded);
        all.map(|t| t.data.len() as u64).sum()
    }
}

/// The shadow queue's counts for the API and `/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShadowFigures {
    pub capacity: usize,
    pub queued: u64,
    pub finished: u64,
    /// Copies not run because the queue (or its byte budget) was full.
    pub dropped: u64,
    /// Tensor bytes held by copies queued or running now.
    pub held_bytes: u64,
}

pub(crate) struct ShadowQueue {
    capacity: usize,
    sender: OnceLock<mpsc::Sender<ShadowJob>>,
    counts: Arc<Counts>,
}

impl ShadowQueue {
    pub(crate) fn new(capacity: usize) -> ShadowQueue {
        ShadowQueue { capacity, sender: OnceLock::new(), counts: Arc::default() }
    }

    /// Queue `job`, or drop and count it when the queue is full. The worker
    /// starts on the first job (on the caller's runtime) and ends when the
    /// experiment is dropped.
    pub(crate) fn push(&self, shared: &Arc<Shared>, job: ShadowJob) {
        let sender = self.sender.get_or_init(|| {
            let (sender, receiver) = mpsc::channel(self.capacity);
            tokio::spawn(work(shared.clone(), self.counts.clone(), receiver));
            sender
        });
        let bytes = job.bytes();
        let held = self.counts.held_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if held > MAX_HELD_BYTES || sender.try_send(job).is_err() {
            self.counts.held_bytes.fetch_sub(bytes, Ordering::Relaxed);
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.counts.queued.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn figures(&self) -> ShadowFigures {
        ShadowFigures {
            capacity: self.capacity,
            queued: self.counts.queued.load(Ordering::Relaxed),
            finished: self.counts.finished.load(Ordering::Relaxed),
            dropped: self.counts.dropped.load(Ordering::Relaxed),
            held_bytes: self.counts.held_bytes.load(Ordering::Relaxed),
        }
    }
}

async fn work(shared: Arc<Shared>, counts: Arc<Counts>, mut jobs: mpsc::Receiver<ShadowJob>) {
    let mut running = JoinSet::new();
    while let Some(job) = jobs.recv().await {
        let finished = Finished { counts: counts.clone(), bytes: job.bytes() };
        let experiment = shared.clone();
        running.spawn(async move {
            let _finished = finished;
            run(experiment, job).await
        });
        while running.len() >= PARALLEL {
            joined(running.join_next().await);
        }
        // Reap what ended meanwhile (without waiting) so the set stays small.
        while let Some(done) = running.try_join_next() {
            joined(Some(done));
        }
    }
    while let Some(done) = running.join_next().await {
        joined(Some(done));
    }
}

/// Counts a copy as finished, and its bytes as freed, when its task ends,
/// however it ends.
struct Finished {
    counts: Arc<Counts>,
    bytes: u64,
}

impl Drop for Finished {
    fn drop(&mut self) {
        self.counts.held_bytes.fetch_sub(self.bytes, Ordering::Relaxed);
        self.counts.finished.fetch_add(1, Ordering::Relaxed);
    }
}

fn joined(done: Option<Result<(), tokio::task::JoinError>>) {
    if let Some(Err(error)) = done {
        tracing::error!(%error, "a shadow run panicked (a bug in weir, please report it)");
    }
}

async fn run(shared: Arc<Shared>, job: ShadowJob) {
    let ShadowJob { executor, variant, served, served_outputs, inputs, seeded, options, pricing } = job;
    let pipeline = shared.pipeline(variant);
    let result = tokio::time::timeout(TIME_LIMIT, executor.run_pipeline(pipeline, inputs, &options, seeded)).await;
    match result {
        Ok(Ok(output)) => {
            shared.record(variant, &Run::of(&output, &pricing), true);
            if variant == 0 {
                shared.compare(served, &output.outputs, &served_outputs);
            } else {
                shared.compare(variant, &served_outputs, &output.outputs);
            }
        }
        failed => {
            let why = match failed {
                Ok(Err(error)) => error.to_string(),
                _ => format!("took longer than {TIME_LIMIT:?}"),
            };
            tracing::debug!(experiment = %shared.decl.name, variant = shared.variant_name(variant), error = %why, "a shadow run failed");
            shared.record(variant, &Run::failed(), true);
        }
    }
}
