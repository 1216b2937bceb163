//! Monitors on the executor: an observer copies the monitored edges of
//! each finished invocation into the monitor's bounded queue — never
//! waiting: a full queue sheds the invocation and counts it — and one task
//! per monitor stacks rows into windows and runs the monitor's component
//! on each (with the reference as `reference.NAME`), in the sandbox, under
//! the monitor's own grants and limits.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};

use tokio::sync::mpsc;
use weir_core::Tensor;
use weir_executor::{Executor, InvocationFinished, InvocationObserver, InvocationStarted, Observer, StepFinished};
use weir_manifest::offpath::{Monitor, Reference};
use weir_manifest::{Manifest, Source};

use crate::reference::read_reference;
use crate::results::{result_of, MonitorBoard, MonitorFigures, MonitorResult};
use crate::window::Gathering;
use crate::MonitorError;

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
    pub fn start(self, executor: Weak<Executor>, board: Arc<MonitorBoard>) -> Arc<Monitors> {
        let runtime = tokio::runtime::Handle::try_current();
        let mut pipelines: HashMap<String, Vec<Feed>> = HashMap::new();
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
            let (sender, receiver) = mpsc::channel(monitor.queue);
            let monitor = Arc::new(monitor);
            match &runtime {
                Ok(handle) => {
                    let task = Runner {
                        pipeline: pipeline.clone(),
                        monitor: monitor.clone(),
                        executor: executor.clone(),
                        board: board.clone(),
                        reference,
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
    board: Arc<MonitorBoard>,
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
        let mut inputs = HashMap::new();
        let mut steps = HashSet::new();
        for route in feeds.iter().flat_map(|f| &f.monitor.run.inputs) {
            match &route.source {
                Source::Input(name) => {
                    if let Some(tensor) = started.inputs.get(name) {
                        inputs.insert(name.clone(), tensor.clone());
                    }
                }
                Source::Step { step, .. } => {
                    steps.insert(step.clone());
                }
            }
        }
        Some(Box::new(Capture { feeds, inputs, wanted: steps, produced: HashMap::new() }))
    }
}

/// One invocation's monitored edges, as they appear.
struct Capture {
    feeds: Arc<Vec<Feed>>,
    inputs: HashMap<String, Tensor>,
    wanted: HashSet<String>,
    produced: HashMap<String, Vec<Tensor>>,
}

impl InvocationObserver for Capture {
    fn step_finished(&mut self, event: &StepFinished) {
        if self.wanted.contains(&event.step.name) {
            self.produced.insert(event.step.name.clone(), event.outputs.to_vec());
        }
    }

    fn finished(self: Box<Self>, _event: &InvocationFinished) {
        for feed in self.feeds.iter() {
            let monitor = &feed.monitor;
            let tensors: Option<Vec<Tensor>> = monitor
                .run
                .inputs
                .iter()
                .map(|route| {
                    let found = match &route.source {
                        Source::Input(name) => self.inputs.get(name),
                        Source::Step { step, tensor } => {
                            self.produced.get(step).and_then(|ts| ts.iter().find(|t| &t.name == tensor))
                        }
                    };
                    found.map(|t| Tensor { name: route.name.clone(), ..t.clone() })
                })
                .collect();
            let pipeline = &feed.pipeline;
            match tensors {
                None => feed.board.update(pipeline, &monitor.name, |f| f.invocations_refused += 1),
                Some(tensors) => {
                    if feed.sender.try_send(tensors).is_err() {
                        feed.board.update(pipeline, &monitor.name, |f| f.invocations_dropped += 1);
                    }
                }
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
    reference: Option<Vec<Tensor>>,
}

impl Runner {
    async fn run(mut self, mut receiver: mpsc::Receiver<Vec<Tensor>>) {
        let monitor = self.monitor.clone();
        let mut gathering = Gathering::new(monitor.run.inputs.len());
        while let Some(tensors) = receiver.recv().await {
            let batch = tensors.first().map_or(0, rows) as u64;
            self.board.update(&self.pipeline, &monitor.name, |f| f.rows_seen += batch);
            if let Err(mismatch) = gathering.add(&tensors) {
                tracing::warn!(pipeline = %self.pipeline, monitor = %monitor.name, reason = %mismatch.0, "edges refused");
                self.board.update(&self.pipeline, &monitor.name, |f| f.invocations_refused += 1);
                continue;
            }
            if self.reference.is_none() {
                let Reference::First(n) = monitor.reference else { continue };
                if let Some(reference) = gathering.take(n) {
                    self.board.update(&self.pipeline, &monitor.name, |f| f.reference_rows = n);
                    self.reference = Some(reference);
                }
                continue;
            }
            while let Some(window) = gathering.take(monitor.window) {
                let Some(executor) = self.executor.upgrade() else { return };
                let result = self.evaluate(&executor, window).await;
                self.board.finished(&self.pipeline, &monitor.name, result);
            }
        }
    }

    async fn evaluate(&self, executor: &Executor, window: Vec<Tensor>) -> MonitorResult {
        let monitor = &self.monitor;
        let rows = window.first().map_or(0, rows);
        let mut inputs = window;
        for tensor in self.reference.iter().flatten() {
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
