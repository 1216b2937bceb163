//! The console's live board: per pipeline, per step and per edge, what
//! happened in the last seconds (rate, latency quantiles, errors, cold
//! starts, CPU and energy per call) and receipt history (energy, cost and
//! CO2 over time). It observes the executor like provenance does; each
//! invocation's facts are buffered and applied under one short lock when it
//! ends, so the board costs the hot path little.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use weir_core::clock::unix_ms;
use weir_core::Pricing;
use weir_executor::{
    InvocationFinished, InvocationObserver, InvocationStarted, Observer, PipelineError, StepFinished, StepStarted,
};
use weir_manifest::Pipeline;
use weir_observe::receipts::gib_seconds;

use crate::layout::source_node;
use crate::series::{quantiles, Series, Slot};

/// Live figures: one-second slots, the last minute.
const LIVE_SLOT_SECS: u64 = 1;
const LIVE_SLOTS: usize = 60;
/// Receipt history: ten-second slots, the last hour.
const HISTORY_SLOT_SECS: u64 = 10;
const HISTORY_SLOTS: usize = 360;
/// The longest error message kept per step.
const ERROR_CHARS: usize = 500;

/// What one call of a step, an edge or a pipeline cost.
#[derive(Debug, Clone, Default)]
struct Fact {
    latency_us: Option<u64>,
    failed: bool,
    cold: bool,
    cpu_us: u64,
    energy_j: f64,
    /// Peak memory × wall time (cost is linear in it, so it is summed and priced when read).
    gib_seconds: f64,
    bytes: u64,
}

#[derive(Debug, Clone)]
struct Track {
    calls: u64,
    errors: u64,
    cold_starts: u64,
    live: Series,
    history: Series,
}

impl Track {
    fn new() -> Track {
        Track {
            calls: 0,
            errors: 0,
            cold_starts: 0,
            live: Series::new(LIVE_SLOT_SECS, LIVE_SLOTS),
            history: Series::new(HISTORY_SLOT_SECS, HISTORY_SLOTS),
        }
    }

    fn record(&mut self, now_secs: u64, fact: &Fact) {
        self.calls += 1;
        self.errors += u64::from(fact.failed);
        self.cold_starts += u64::from(fact.cold);
        // Latencies only in the live slots: history charts costs, not quantiles.
        if let Some(latency) = fact.latency_us {
            self.live.at(now_secs).record_latency(latency);
        }
        for slot in [self.live.at(now_secs), self.history.at(now_secs)] {
            slot.calls += 1;
            slot.errors += u64::from(fact.failed);
            slot.cold_starts += u64::from(fact.cold);
            slot.cpu_us += fact.cpu_us;
            slot.energy_j += fact.energy_j;
            slot.gib_seconds += fact.gib_seconds;
            slot.bytes += fact.bytes;
        }
    }

    fn figures(&self, now_secs: u64, window_secs: u64, observed_secs: u64) -> Figures {
        let recent: Vec<&Slot> = self.live.recent(now_secs, window_secs).collect();
        let calls: u64 = recent.iter().map(|s| s.calls).sum();
        let errors: u64 = recent.iter().map(|s| s.errors).sum();
        // A step that failed measured nothing: costs are averaged over the calls that finished.
        let measured = calls - errors;
        let per_call = |total: f64| (measured > 0).then(|| total / measured as f64);
        let q = quantiles(recent.iter().copied(), &[0.5, 0.99]);
        Figures {
            total_calls: self.calls,
            total_errors: self.errors,
            total_cold_starts: self.cold_starts,
            per_second: calls as f64 / window_secs.min(observed_secs).max(1) as f64,
            error_rate: if calls > 0 { errors as f64 / calls as f64 } else { 0.0 },
            p50_us: q[0],
            p99_us: q[1],
            cold_starts: recent.iter().map(|s| s.cold_starts).sum(),
            cpu_us_per_call: per_call(recent.iter().map(|s| s.cpu_us).sum::<u64>() as f64),
            energy_j_per_call: per_call(recent.iter().map(|s| s.energy_j).sum()),
            bytes_per_call: per_call(recent.iter().map(|s| s.bytes).sum::<u64>() as f64),
        }
    }

    fn points(&self, pricing: &Pricing) -> Vec<ReceiptPoint> {
        let slot_secs = self.history.slot_secs();
        self.history
            .all()
            .map(|s| ReceiptPoint {
                unix_s: s.index * slot_secs,
                calls: s.calls,
                cpu_us: s.cpu_us,
                energy_j: s.energy_j,
                cost: pricing.cost(s.cpu_us as f64 / 1e6, s.gib_seconds, s.energy_j),
                gco2e: pricing.gco2e(s.energy_j),
            })
            .collect()
    }
}

struct StepTrack {
    name: String,
    track: Track,
    last_error: Option<LastError>,
    energy_methods: Vec<&'static str>,
}

/// A pipeline's steps and edges by index, worked out once, so that an
/// invocation's events are tallied without building keys.
struct Shape {
    steps: HashMap<String, usize>,
    /// (from, to) node ids of every edge.
    edges: Vec<(String, String)>,
    /// Per step (by index), the edge of each input route, in route order.
    step_inputs: Vec<Vec<usize>>,
    /// The pipeline's outputs: name and edge.
    outputs: Vec<(String, usize)>,
}

impl Shape {
    fn of(pipeline: &Pipeline) -> Shape {
        let mut edges: Vec<(String, String)> = Vec::new();
        let mut edge = |from: String, to: String| match edges.iter().position(|e| e.0 == from && e.1 == to) {
            Some(index) => index,
            None => {
                edges.push((from, to));
                edges.len() - 1
            }
        };
        let step_inputs = pipeline
            .steps
            .iter()
            .map(|s| s.inputs.iter().map(|r| edge(source_node(&r.source), format!("step:{}", s.name))).collect())
            .collect();
        let outputs = pipeline
            .outputs
            .iter()
            .map(|r| (r.name.clone(), edge(source_node(&r.source), format!("output:{}", r.name))))
            .collect();
        let steps = pipeline.steps.iter().enumerate().map(|(i, s)| (s.name.clone(), i)).collect();
        Shape { steps, edges, step_inputs, outputs }
    }
}

struct PipelineBoard {
    invocations: Track,
    steps: Vec<StepTrack>,
    edges: Vec<Track>,
}

struct Entry {
    name: String,
    shape: Shape,
    board: Mutex<PipelineBoard>,
}

impl Entry {
    fn board(&self) -> std::sync::MutexGuard<'_, PipelineBoard> {
        self.board.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Inner {
    pricing: Pricing,
    started: Instant,
    /// Sorted by name.
    pipelines: Vec<Entry>,
}

/// Live traffic and receipt history of a manifest's pipelines.
#[derive(Clone)]
pub struct Board {
    inner: Arc<Inner>,
}

impl Board {
    pub fn new<'a>(pipelines: impl IntoIterator<Item = &'a Pipeline>, pricing: Pricing) -> Board {
        let mut pipelines: Vec<Entry> = pipelines
            .into_iter()
            .map(|p| {
                let shape = Shape::of(p);
                let steps = p
                    .steps
                    .iter()
                    .map(|s| StepTrack {
                        name: s.name.clone(),
                        track: Track::new(),
                        last_error: None,
                        energy_methods: Vec::new(),
                    })
                    .collect();
                let edges = shape.edges.iter().map(|_| Track::new()).collect();
                let board = PipelineBoard { invocations: Track::new(), steps, edges };
                Entry { name: p.name.clone(), shape, board: Mutex::new(board) }
            })
            .collect();
        pipelines.sort_by(|a, b| a.name.cmp(&b.name));
        Board { inner: Arc::new(Inner { pricing, started: Instant::now(), pipelines }) }
    }

    /// Figures over the last `window_secs` (at most a minute).
    pub fn live(&self, window_secs: u64) -> LiveSnapshot {
        let window_secs = window_secs.clamp(1, LIVE_SLOTS as u64 * LIVE_SLOT_SECS);
        let now_ms = unix_ms();
        let now = now_ms / 1000;
        let observed = self.inner.started.elapsed().as_secs() + 1;
        let pipelines = self
            .inner
            .pipelines
            .iter()
            .map(|entry| {
                let board = entry.board();
                PipelineLive {
                    pipeline: entry.name.clone(),
                    invocations: board.invocations.figures(now, window_secs, observed),
                    steps: board
                        .steps
                        .iter()
                        .map(|t| StepLive {
                            step: t.name.clone(),
                            node: format!("step:{}", t.name),
                            figures: t.track.figures(now, window_secs, observed),
                            last_error: t.last_error.clone(),
                            energy_methods: t.energy_methods.clone(),
                        })
                        .collect(),
                    edges: entry
                        .shape
                        .edges
                        .iter()
                        .zip(&board.edges)
                        .map(|((from, to), t)| EdgeLive {
                            from: from.clone(),
                            to: to.clone(),
                            figures: t.figures(now, window_secs, observed),
                        })
                        .collect(),
                }
            })
            .collect();
        LiveSnapshot { unix_ms: now_ms, window_secs, pipelines }
    }

    /// Energy, cost and CO2 per pipeline and step, per slot, for the last hour.
    pub fn receipts(&self) -> ReceiptHistory {
        let pricing = &self.inner.pricing;
        let pipelines = self
            .inner
            .pipelines
            .iter()
            .map(|entry| {
                let board = entry.board();
                PipelineReceipts {
                    pipeline: entry.name.clone(),
                    total: board.invocations.points(pricing),
                    steps: board
                        .steps
                        .iter()
                        .map(|t| StepReceipts {
                            step: t.name.clone(),
                            modelled: t.energy_methods.contains(&weir_core::EnergyMethod::CpuModel.as_str()),
                            energy_methods: t.energy_methods.clone(),
                            points: t.track.points(pricing),
                        })
                        .collect(),
                }
            })
            .collect();
        ReceiptHistory { slot_secs: HISTORY_SLOT_SECS, pipelines }
    }
}

impl Board {
    /// A tally for one invocation of `pipeline`; `None` for a pipeline the
    /// board was not built with (none today).
    fn tally(&self, pipeline: &str) -> Option<Tally> {
        let pipelines = &self.inner.pipelines;
        let index = pipelines.binary_search_by(|e| e.name.as_str().cmp(pipeline)).ok()?;
        let entry = &pipelines[index];
        Some(Tally {
            inner: self.inner.clone(),
            pipeline: index,
            began: Instant::now(),
            steps: Vec::with_capacity(entry.shape.steps.len()),
            edges: vec![None; entry.shape.edges.len()],
            applied: false,
        })
    }
}

impl Observer for Board {
    fn begin(&self, started: &InvocationStarted) -> Option<Box<dyn InvocationObserver>> {
        self.tally(&started.pipeline.name).map(|tally| Box::new(tally) as Box<dyn InvocationObserver>)
    }
}

/// One invocation's facts, applied when it ends.
struct Tally {
    inner: Arc<Inner>,
    pipeline: usize,
    began: Instant,
    /// (step index, fact, energy method)
    steps: Vec<(usize, Fact, &'static str)>,
    /// Bytes over each edge it used.
    edges: Vec<Option<u64>>,
    /// Whether it ended (finished or failed) and was counted.
    applied: bool,
}

/// An invocation its trigger cancelled (its time limit) ends without a
/// `finished` or `failed` event: it is counted as failed when dropped.
impl Drop for Tally {
    fn drop(&mut self) {
        if !self.applied {
            let invocation =
                Fact { latency_us: Some(self.began.elapsed().as_micros() as u64), failed: true, ..Fact::default() };
            self.apply(invocation, None);
        }
    }
}

impl Tally {
    fn entry(&self) -> &Entry {
        &self.inner.pipelines[self.pipeline]
    }

    /// The finished invocation's fact: its steps' costs summed.
    fn summed(&self, latency_us: u64, bytes: u64) -> Fact {
        let steps = self.steps.iter().map(|(_, fact, _)| fact);
        steps.fold(Fact { latency_us: Some(latency_us), bytes, ..Fact::default() }, |sum, f| Fact {
            cold: sum.cold || f.cold,
            cpu_us: sum.cpu_us + f.cpu_us,
            energy_j: sum.energy_j + f.energy_j,
            gib_seconds: sum.gib_seconds + f.gib_seconds,
            ..sum
        })
    }

    fn apply(&mut self, invocation: Fact, failure: Option<(Option<&str>, String)>) {
        self.applied = true;
        let entry = &self.inner.pipelines[self.pipeline];
        let failed_step = failure.as_ref().and_then(|(step, _)| step.and_then(|s| entry.shape.steps.get(s).copied()));
        let now_ms = unix_ms();
        let now = now_ms / 1000;
        let mut board = entry.board();
        board.invocations.record(now, &invocation);
        for (index, fact, method) in &self.steps {
            if let Some(track) = board.steps.get_mut(*index) {
                track.track.record(now, fact);
                if !track.energy_methods.contains(method) {
                    track.energy_methods.push(method);
                }
            }
        }
        for (track, bytes) in board.edges.iter_mut().zip(&self.edges) {
            if let Some(bytes) = bytes {
                track.record(now, &Fact { bytes: *bytes, ..Fact::default() });
            }
        }
        if let (Some(index), Some((_, message))) = (failed_step, failure) {
            if let Some(track) = board.steps.get_mut(index) {
                track.track.record(now, &Fact { failed: true, ..Fact::default() });
                let message: String = message.chars().take(ERROR_CHARS).collect();
                track.last_error = Some(LastError { unix_ms: now_ms, message });
            }
        }
    }
}

fn add_bytes(edges: &mut [Option<u64>], index: usize, bytes: usize) {
    if let Some(slot) = edges.get_mut(index) {
        *slot = Some(slot.unwrap_or(0) + bytes as u64);
    }
}

/// The observer's events, as plain facts (what the tests drive).
impl Tally {
    fn step_began(&mut self, step: &str, input_bytes: impl Iterator<Item = usize>) {
        let shape = &self.inner.pipelines[self.pipeline].shape;
        let Some(&index) = shape.steps.get(step) else { return };
        for (&edge, bytes) in shape.step_inputs[index].iter().zip(input_bytes) {
            add_bytes(&mut self.edges, edge, bytes);
        }
    }

    fn step_ended(&mut self, step: &str, fact: Fact, energy_method: &'static str) {
        let Some(&index) = self.entry().shape.steps.get(step) else { return };
        self.steps.push((index, fact, energy_method));
    }

    /// The invocation produced `outputs` (name, bytes); with `until` they
    /// are a step's tensors, not the pipeline's outputs.
    fn completed(&mut self, wall_us: u64, outputs: &[(&str, usize)], until: bool) {
        if !until {
            for (name, edge) in &self.inner.pipelines[self.pipeline].shape.outputs {
                let bytes = outputs.iter().find(|(n, _)| n == name).map_or(0, |(_, b)| *b);
                add_bytes(&mut self.edges, *edge, bytes);
            }
        }
        let bytes = outputs.iter().map(|(_, b)| *b as u64).sum();
        let invocation = self.summed(wall_us, bytes);
        self.apply(invocation, None);
    }

    fn failed_in(&mut self, step: Option<&str>, message: String) {
        // Its finished steps' costs are on their own tracks; the pipeline's
        // per-call figures average the invocations that finished.
        let invocation =
            Fact { latency_us: Some(self.began.elapsed().as_micros() as u64), failed: true, ..Fact::default() };
        self.apply(invocation, Some((step, message)));
    }
}

impl InvocationObserver for Tally {
    fn step_started(&mut self, event: &StepStarted) {
        self.step_began(&event.step.name, event.inputs.iter().map(|t| t.data.len()));
    }

    fn step_finished(&mut self, event: &StepFinished) {
        // Measured facts only: pricing is linear, so it is done when read.
        let trace = event.trace;
        let fact = Fact {
            latency_us: Some(trace.stats.wall.as_micros() as u64),
            failed: false,
            cold: trace.cold_start.is_some(),
            cpu_us: trace.stats.cpu.as_micros() as u64,
            energy_j: trace.energy.joules,
            gib_seconds: gib_seconds(trace.stats.peak_memory_bytes, trace.stats.wall),
            bytes: event.outputs.iter().map(|t| t.data.len() as u64).sum(),
        };
        self.step_ended(&event.step.name, fact, trace.energy.method.as_str());
    }

    fn finished(mut self: Box<Self>, event: &InvocationFinished) {
        let outputs: Vec<(&str, usize)> =
            event.output.outputs.iter().map(|t| (t.name.as_str(), t.data.len())).collect();
        self.completed(event.output.wall.as_micros() as u64, &outputs, event.options.until.is_some());
    }

    fn failed(mut self: Box<Self>, error: &PipelineError) {
        self.failed_in(error.step(), error.to_string());
    }
}

/// Rates and costs of a pipeline, a step or an edge over the window, and
/// its totals since the server started.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub total_calls: u64,
    pub total_errors: u64,
    pub total_cold_starts: u64,
    pub per_second: f64,
    /// Failed calls / calls, in the window.
    pub error_rate: f64,
    /// Latency quantiles (upper bounds of ±19% buckets), µs.
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub cold_starts: u64,
    /// Per call that finished (a failed call measured nothing), in the window.
    pub cpu_us_per_call: Option<f64>,
    pub energy_j_per_call: Option<f64>,
    /// Tensor bytes per call (on an edge: what crossed it).
    pub bytes_per_call: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastError {
    pub unix_ms: u64,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepLive {
    pub step: String,
    /// The layout's node id.
    pub node: String,
    #[serde(flatten)]
    pub figures: Figures,
    pub last_error: Option<LastError>,
    /// How its energy was obtained (`cpu-model` = modelled, not measured).
    pub energy_methods: Vec<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EdgeLive {
    pub from: String,
    pub to: String,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(Debug, Clone, Serialize)]
pub struct PipelineLive {
    pub pipeline: String,
    pub invocations: Figures,
    pub steps: Vec<StepLive>,
    pub edges: Vec<EdgeLive>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LiveSnapshot {
    pub unix_ms: u64,
    pub window_secs: u64,
    pub pipelines: Vec<PipelineLive>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReceiptPoint {
    /// Start of the slot.
    pub unix_s: u64,
    pub calls: u64,
    pub cpu_us: u64,
    pub energy_j: f64,
    pub cost: f64,
    pub gco2e: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReceipts {
    pub step: String,
    pub energy_methods: Vec<&'static str>,
    /// Whether any of its energy was modelled from CPU time, not measured.
    pub modelled: bool,
    pub points: Vec<ReceiptPoint>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PipelineReceipts {
    pub pipeline: String,
    pub total: Vec<ReceiptPoint>,
    pub steps: Vec<StepReceipts>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReceiptHistory {
    pub slot_secs: u64,
    pub pipelines: Vec<PipelineReceipts>,
}

#[cfg(test)]
mod tests;
