//! Monitors on the executor: an observer copies the monitored edges of
//! each finished invocation into the monitor's bounded queue — never
//! waiting: a full queue sheds the invocation and counts it — and one task
//! per monitor stacks rows into windows and runs the monitor's component
//! on each (with the reference as `reference.NAME`), in the sandbox, under
//! the monitor's own grants and limits.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use tokio::sync::mpsc;
use weir_core::Tensor;
use weir_executor::{Executor, InvocationFinished, InvocationObserver, InvocationStarted, Observer, StepFinished};
use weir_manifest::offpath::{Monitor, Reference};
use weir_manifest::{Manifest, Source};
use weir_observe::provenance::ProvenanceStore;

use crate::reference::read_reference;
use crate::results::{result_of, MonitorBoard, MonitorFigures, MonitorResult};
use crate::window::Gathering;
use crate::MonitorError;

/// Bytes of edges waiting in one monitor's queue: past it, invocations are
/// shed as when the queue is full (`queue` bounds the count, this the size).
pub const QUEUE_BYTES: usize = 64 << 20;
/// Bytes of rows one monitor gathers: a window that would hold more is run
/// early on the rows there (`rows` in its result says how many).
pub const WINDOW_BYTES: usize = 256 << 20;
/// Windows run for one invocation's rows: the rows of a batch past them are
/// dropped and counted (`rows_dropped`), so one caller's huge batch cannot
/// queue hundreds of monitor runs.
pub const WINDOWS_PER_INVOCATION: usize = 8;

/// One monitor, ready to start: its reference file read and checked.
struct Prepared {
    pipeline: String,
    monitor: Monitor,
    reference: Option<Vec<Tensor>>,
}

/// A manifest's monitors with their reference files read.
pub struct PreparedMonitors(Vec<Prepared>);

impl PreparedMonitors {
    /// Read every monitor's reference file: a missing or malformed one stops here.
    pub fn read(manifest: &Manifest) -> Result<PreparedMonitors, MonitorError> {
        let mut prepared = Vec::new();
        for pipeline in manifest.pipelines.values() {
            for monitor in &pipeline.monitors {
                let reference = match &monitor.reference {
                    Reference::File(path) => Some(read_reference(path, monitor)?),
                    Reference::First(_) => None,
                };
                prepared.push(Prepared { pipeline: pipeline.name.clone(), monitor: monitor.clone(), reference });
            }
        }
        Ok(PreparedMonitors(prepared))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Start each monitor's task (on the current tokio runtime) and return
    /// the observer that feeds them.
    pub fn start(
        self,
        executor: Weak<Executor>,
        board: Arc<MonitorBoard>,
        records: Option<Arc<ProvenanceStore>>,
    ) -> Arc<Monitors> {
        let runtime = tokio::runtime::Handle::try_current();
        let mut pipelines: HashMap<String, Vec<Feed>> = HashMap::new();
        // References learned by monitors this manifest no longer declares are let go.
        board.keep_learned(self.0.iter().map(|p| (p.pipeline.clone(), p.monitor.name.clone())).collect());
        for Prepared { pipeline, monitor, reference } in self.0 {
            let source = match &monitor.reference {
                Reference::File(path) => format!("file {}", path.display()),
                Reference::First(n) => format!("the first {n} rows"),
            };
            board.register(MonitorFigures {
                pipeline: pipeline.clone(),
                monitor: monitor.name.clone(),
                component: monitor.run.component.clone(),
                inputs: monitor.run.inputs.iter().map(|r| format!("{}={}", r.name, r.source)).collect(),
                window: monitor.window,
                queue: monitor.queue,
                reference: source,
                reference_rows: reference.as_ref().and_then(|r| r.first()).map_or(0, rows),
                ..MonitorFigures::default()
            });
            // A reference learned from the first rows survives a reload that
            // keeps the monitor as it was: otherwise traffic that had already
            // drifted would become the new reference.
            let reference = reference.map(Arc::new).or_else(|| board.learned(&pipeline, &monitor));
            if let Some(learned) = &reference {
                let n = learned.first().map_or(0, rows);
                board.update(&pipeline, &monitor.name, |f| f.reference_rows = n);
            }
            let (sender, receiver) = mpsc::channel(monitor.queue);
            let queued = Arc::new(AtomicUsize::new(0));
            let monitor = Arc::new(monitor);
            match &runtime {
                Ok(handle) => {
                    let task = Runner {
                        pipeline: pipeline.clone(),
                        monitor: monitor.clone(),
                        executor: executor.clone(),
                        board: board.clone(),
                        reference,
                        queued: queued.clone(),
                        records: records.clone(),
                    };
                    handle.spawn(task.run(receiver));
                }
                Err(_) => {
                    tracing::warn!(%pipeline, monitor = %monitor.name, "no async runtime: the monitor does not run")
                }
            }
            pipelines.entry(pipeline.clone()).or_default().push(Feed {
                pipeline: pipeline.clone(),
                monitor,
                sender,
                queued,
                board: board.clone(),
            });
        }
        Arc::new(Monitors { pipelines: pipelines.into_iter().map(|(p, feeds)| (p, Arc::new(feeds))).collect() })
    }
}

fn rows(tensor: &Tensor) -> usize {
    tensor.shape.first().copied().unwrap_or(0) as usize
}

struct Feed {
    pipeline: String,
    monitor: Arc<Monitor>,
    sender: mpsc::Sender<Vec<Tensor>>,
    /// Bytes sent and not yet taken by the monitor's task.
    queued: Arc<AtomicUsize>,
    board: Arc<MonitorBoard>,
}

impl Feed {
    fn has_room(&self) -> bool {
        self.sender.capacity() > 0 && self.queued.load(Ordering::Relaxed) < QUEUE_BYTES
    }

    /// Reserve `bytes` of the queue's byte budget before sending (so that
    /// the task, which releases them on receipt, never sees them unaccounted,
    /// and many invocations finishing at once cannot all pass one check).
    fn reserve(&self, bytes: usize) -> bool {
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                queued.checked_add(bytes).filter(|total| *total <= QUEUE_BYTES)
            })
            .is_ok()
    }
}

/// The observer that copies monitored edges off each invocation.
pub struct Monitors {
    pipelines: HashMap<String, Arc<Vec<Feed>>>,
}

impl Observer for Monitors {
    fn begin(&self, started: &InvocationStarted) -> Option<Box<dyn InvocationObserver>> {
        // `until` runs part of the graph: not a whole invocation to monitor.
        if started.options.until.is_some() {
            return None;
        }
        let feeds = self.pipelines.get(&started.pipeline.name)?.clone();
        // No monitor has room: the invocation is shed before anything is copied.
        if !feeds.iter().any(Feed::has_room) {
            for feed in feeds.iter() {
                feed.board.update(&feed.pipeline, &feed.monitor.name, |f| f.invocations_dropped += 1);
            }
            return None;
        }
        let mut inputs = HashMap::new();
        let mut wanted = HashSet::new();
        for route in feeds.iter().flat_map(|f| &f.monitor.run.inputs) {
            match &route.source {
                Source::Input(name) => {
                    if let Some(tensor) = started.inputs.get(name) {
                        inputs.insert(name.clone(), tensor.clone());
                    }
                }
                Source::Step { step, tensor } => {
                    wanted.insert((step.clone(), tensor.clone()));
                }
            }
        }
        Some(Box::new(Capture { feeds, inputs, wanted, produced: HashMap::new() }))
    }
}

/// One invocation's monitored edges, as they appear.
struct Capture {
    feeds: Arc<Vec<Feed>>,
    inputs: HashMap<String, Tensor>,
    /// (step, tensor) pairs some monitor reads.
    wanted: HashSet<(String, String)>,
    produced: HashMap<(String, String), Tensor>,
}

impl InvocationObserver for Capture {
    fn step_finished(&mut self, event: &StepFinished) {
        // Only the monitored tensors of a step, not all its outputs.
        for tensor in event.outputs {
            let key = (event.step.name.clone(), tensor.name.clone());
            if self.wanted.contains(&key) {
                self.produced.insert(key, tensor.clone());
            }
        }
    }

    fn finished(self: Box<Self>, _event: &InvocationFinished) {
        for feed in self.feeds.iter() {
            let monitor = &feed.monitor;
            let found: Option<Vec<(&str, &Tensor)>> = monitor
                .run
                .inputs
                .iter()
                .map(|route| {
                    let found = match &route.source {
                        Source::Input(name) => self.inputs.get(name),
                        Source::Step { step, tensor } => self.produced.get(&(step.clone(), tensor.clone())),
                    };
                    found.map(|t| (route.name.as_str(), t))
                })
                .collect();
            let pipeline = &feed.pipeline;
            let Some(found) = found else {
                feed.board.update(pipeline, &monitor.name, |f| f.invocations_refused += 1);
                continue;
            };
            // Room is reserved before anything is copied, and given back if the send fails.
            let bytes: usize = found.iter().map(|(_, t)| t.data.len()).sum();
            let sent = feed.sender.capacity() > 0 && feed.reserve(bytes) && {
                let tensors = found.iter().map(|(name, t)| Tensor { name: name.to_string(), ..(*t).clone() });
                let sent = feed.sender.try_send(tensors.collect()).is_ok();
                if !sent {
                    feed.queued.fetch_sub(bytes, Ordering::AcqRel);
                }
                sent
            };
            if !sent {
                feed.board.update(pipeline, &monitor.name, |f| f.invocations_dropped += 1);
            }
        }
    }
}

/// One monitor's task.
struct Runner {
    pipeline: String,
    monitor: Arc<Monitor>,
    executor: Weak<Executor>,
    board: Arc<MonitorBoard>,
    reference: Option<Arc<Vec<Tensor>>>,
    queued: Arc<AtomicUsize>,
    /// Where each result is kept, when the manifest keeps records.
    records: Option<Arc<ProvenanceStore>>,
}

impl Runner {
    async fn run(mut self, mut receiver: mpsc::Receiver<Vec<Tensor>>) {
        let monitor = self.monitor.clone();
        let mut gathering = Gathering::new(monitor.run.inputs.len());
        while let Some(tensors) = receiver.recv().await {
            self.queued.fetch_sub(tensors.iter().map(|t| t.data.len()).sum(), Ordering::AcqRel);
            let batch = tensors.first().map_or(0, rows) as u64;
            self.board.update(&self.pipeline, &monitor.name, |f| f.rows_seen += batch);
            if let Err(mismatch) = gathering.add(&tensors) {
                tracing::warn!(pipeline = %self.pipeline, monitor = %monitor.name, reason = %mismatch.0, "edges refused");
                self.board.update(&self.pipeline, &monitor.name, |f| f.invocations_refused += 1);
                continue;
            }
            drop(tensors);
            if self.reference.is_none() {
                let Reference::First(n) = monitor.reference else { continue };
                if let Some(reference) =
                    gathering.take(n).or_else(|| over(&gathering).then(|| gathering.take_all()).flatten())
                {
                    let rows = reference.first().map_or(0, rows);
                    self.board.update(&self.pipeline, &monitor.name, |f| f.reference_rows = rows);
                    let reference = Arc::new(reference);
                    self.board.learn(&self.pipeline, &monitor, reference.clone());
                    self.reference = Some(reference);
                }
                continue;
            }
            let mut windows = gathering.take_windows(monitor.window, WINDOWS_PER_INVOCATION);
            if windows.len() == WINDOWS_PER_INVOCATION && gathering.rows() >= monitor.window {
                let dropped = gathering.rows() as u64;
                gathering.clear();
                self.board.update(&self.pipeline, &monitor.name, |f| f.rows_dropped += dropped);
            }
            if windows.is_empty() && over(&gathering) {
                windows.extend(gathering.take_all());
            }
            for window in windows {
                let Some(executor) = self.executor.upgrade() else { return };
                let result = self.evaluate(&executor, window).await;
                self.keep(&result).await;
                self.board.finished(&self.pipeline, &monitor.name, result);
            }
        }
    }

    /// Store the result as a record (off the async workers); a failed write is logged, not fatal.
    async fn keep(&self, result: &MonitorResult) {
        let Some(store) = self.records.clone() else { return };
        let (pipeline, monitor, result) = (self.pipeline.clone(), self.monitor.name.clone(), result.clone());
        let written = tokio::task::spawn_blocking(move || store.put_monitor_result(&pipeline, &monitor, &result)).await;
        if let Ok(Err(error)) = written {
            tracing::warn!(pipeline = %self.pipeline, monitor = %self.monitor.name, %error, "keeping a monitor result failed");
        }
    }

    async fn evaluate(&self, executor: &Executor, window: Vec<Tensor>) -> MonitorResult {
        let monitor = &self.monitor;
        let rows = window.first().map_or(0, rows);
        let mut inputs = window;
        for tensor in self.reference.iter().flat_map(|r| r.iter()) {
            inputs.push(Tensor { name: format!("reference.{}", tensor.name), ..tensor.clone() });
        }
        match executor.replay_step(&monitor.run, inputs).await {
            Ok(output) => {
                let result = result_of(rows, &output.outputs);
                let figures = serde_json::to_string(&result.outputs).unwrap_or_default();
                if result.alerts > 0 {
                    tracing::warn!(pipeline = %self.pipeline, monitor = %monitor.name, rows, alerts = result.alerts, %figures, "monitor alert");
                } else {
                    tracing::info!(pipeline = %self.pipeline, monitor = %monitor.name, rows, %figures, "monitor window");
                }
                result
            }
            Err(error) => {
                tracing::warn!(pipeline = %self.pipeline, monitor = %monitor.name, %error, "monitor failed");
                MonitorResult {
                    unix_ms: weir_core::clock::unix_ms(),
                    rows,
                    outputs: Default::default(),
                    alerts: 0,
                    error: Some(error.to_string()),
                }
            }
        }
    }
}

/// Whether the rows gathered hold more bytes than a window may.
fn over(gathering: &Gathering) -> bool {
    gathering.bytes() > WINDOW_BYTES
}
