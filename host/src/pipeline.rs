//! The dataflow executor: a step runs once all its inputs are ready;
//! independent steps run concurrently (each on its own task); tensors are
//! routed by `step.tensor` name. A failing step fails the invocation with an
//! error naming it; the other steps are cancelled, nothing hangs.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::task::JoinSet;

use crate::accounting::{new_invocation_id, price_step, receipt, EnergyMethod, Pricing, Receipt, StepUsage};
use crate::energy::EnergyMeter;
use crate::artifacts::Resolver;
use crate::component::StepComponent;
use crate::residency::{ColdStart, Residency, ResidencyError};
use crate::provenance::ProvenanceStore;
use crate::recording::Recording;
use crate::invoke::{InvokeError, StepStats};
use crate::manifest::{Manifest, Pipeline, Route, Source, Step};
use crate::runtime::Runtime;
use crate::tensor::Tensor;

#[derive(Debug, Error)]
pub enum PipelineError {
    #[error("no pipeline named `{name}` (pipelines: {})", known.join(", "))]
    UnknownPipeline { name: String, known: Vec<String> },
    #[error("pipeline `{pipeline}` has no step named `{step}` to stop at")]
    UnknownStep { pipeline: String, step: String },
    #[error("the request has no input tensor `{name}` (pipeline `{pipeline}` needs it; the request has: {given:?})")]
    MissingInput { pipeline: String, name: String, given: Vec<String> },
    #[error("step `{step}` needs `{wanted}`, but step `{from}` produced only {produced:?}")]
    MissingTensor { step: String, wanted: String, from: String, produced: Vec<String> },
    #[error("component `{component}` of step `{step}` could not be loaded: {error}")]
    Load { step: String, component: String, error: ResidencyError },
    #[error("output `{output}` of pipeline `{pipeline}` is {got}, but the manifest declares {declared}")]
    OutputType { pipeline: String, output: String, declared: String, got: String },
    #[error(transparent)]
    Step(#[from] InvokeError),
}

impl PipelineError {
    /// The caller's request was at fault (HTTP 400).
    pub fn is_caller_error(&self) -> bool {
        match self {
            PipelineError::MissingInput { .. } | PipelineError::UnknownStep { .. } => true,
            PipelineError::Step(error) => error.is_caller_error(),
            _ => false,
        }
    }
}

/// What to run and what to return.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Return every step's outputs (the data on every edge) and timings.
    pub trace: bool,
    /// Run only this step and the steps it depends on; return its outputs.
    pub until: Option<String>,
    /// Whose data this is (request parameter `subject`), for erasure.
    pub subject: Option<String>,
    /// Return the full receipt (every step) rather than its totals.
    pub full_receipt: bool,
    /// When the request arrived (for the receipt's queue wait).
    pub received: Option<Instant>,
}

/// One step as it ran, for traces.
#[derive(Debug, Clone)]
pub struct StepTrace {
    pub step: String,
    pub started_after: Duration,
    pub stats: StepStats,
    /// The step's outputs, when tracing.
    pub outputs: Vec<Tensor>,
    /// Set when this invocation had to load the step's component.
    pub cold_start: Option<ColdStart>,
    /// Joules attributed when the step finished, and how.
    pub energy: (f64, EnergyMethod),
}

#[derive(Debug, Clone)]
pub struct PipelineOutput {
    /// Names this invocation in receipts, logs and the response header.
    pub invocation_id: String,
    pub outputs: Vec<Tensor>,
    /// Every step that ran, in completion order.
    pub steps: Vec<StepTrace>,
    pub wall: Duration,
    /// From arrival to the start of the pipeline.
    pub queue_wait: Duration,
}

/// Runs a manifest's pipelines, loading each component on first use.
pub struct Executor {
    runtime: Arc<Runtime>,
    manifest: Arc<Manifest>,
    residency: Residency,
    energy: EnergyMeter,
    provenance: Option<Arc<ProvenanceStore>>,
}

impl Executor {
    /// Get ready to run; nothing is fetched or compiled until first use.
    pub fn new(runtime: Arc<Runtime>, manifest: Manifest) -> Self {
        Self::with_resolver(runtime, manifest, Resolver::default())
    }

    /// Like `new`, fetching registry artifacts through `resolver`.
    pub fn with_resolver(runtime: Arc<Runtime>, manifest: Manifest, resolver: Resolver) -> Self {
        let manifest = Arc::new(manifest);
        let residency = Residency::new(runtime.clone(), manifest.clone(), resolver);
        let energy = EnergyMeter::detect();
        Executor { runtime, manifest, residency, energy, provenance: None }
    }

    /// What is loaded, and what the cold starts cost.
    pub fn residency(&self) -> &Residency {
        &self.residency
    }

    /// Measure (or model) energy with `meter` instead of what was detected.
    pub fn with_energy(mut self, meter: EnergyMeter) -> Self {
        self.energy = meter;
        self
    }

    /// Keep a provenance record of every invocation in `store`.
    pub fn with_provenance(mut self, store: Arc<ProvenanceStore>) -> Self {
        self.provenance = Some(store);
        self
    }

    pub fn provenance(&self) -> Option<&Arc<ProvenanceStore>> {
        self.provenance.as_ref()
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    pub fn pipeline(&self, name: &str) -> Result<&Pipeline, PipelineError> {
        self.manifest.pipelines.get(name).ok_or_else(|| PipelineError::UnknownPipeline {
            name: name.into(),
            known: self.manifest.pipelines.keys().cloned().collect(),
        })
    }

    /// The loaded component of a step (fetched, compiled or taken from the
    /// cache when cold), with the models it may use made available.
    pub async fn component(&self, step: &Step) -> Result<(Arc<StepComponent>, Option<ColdStart>), PipelineError> {
        let load_error = |error| PipelineError::Load { step: step.name.clone(), component: step.component.clone(), error };
        let loaded = self.residency.component(&step.component).await.map_err(load_error)?;
        self.residency.models_for(step).await.map_err(load_error)?;
        Ok(loaded)
    }

    /// Run one invocation of `pipeline` on the request's tensors.
    pub async fn run(&self, pipeline: &str, inputs: Vec<Tensor>, options: &RunOptions) -> Result<PipelineOutput, PipelineError> {
        let started = Instant::now();
        let invocation_id = new_invocation_id();
        let pipeline = self.pipeline(pipeline)?;
        let wanted = wanted_steps(pipeline, options.until.as_deref())?;
        let inputs: HashMap<String, Tensor> = inputs.into_iter().map(|t| (t.name.clone(), t)).collect();
        let mut produced: HashMap<String, Vec<Tensor>> = HashMap::new();
        // Steps by their index in the pipeline (tasks hand back the index).
        let mut pending: Vec<(usize, &Step)> =
            pipeline.steps.iter().enumerate().filter(|(_, s)| wanted.contains(s.name.as_str())).collect();
        let mut running = JoinSet::new();
        let mut traces = Vec::new();
        let keep_tensors = self.manifest.provenance.as_ref().is_some_and(|p| p.keep_tensors);
        let mut recording = self.provenance.as_ref().map(|_| Recording::new(pipeline, keep_tensors));
        loop {
            // Start every step whose inputs are all there.
            let (ready, waiting): (Vec<_>, Vec<_>) = pending.into_iter().partition(|(_, step)| {
                step.inputs.iter().all(|r| match &r.source {
                    Source::Input(_) => true,
                    Source::Step { step, .. } => produced.contains_key(step),
                })
            });
            pending = waiting;
            let done = if ready.len() == 1 && running.is_empty() {
                // A chain link with nothing beside it: run it right here,
                // sparing a task spawn and a cross-thread wake-up.
                let (index, step) = ready[0];
                let step_inputs = route_inputs(pipeline, step, &inputs, &produced)?;
                let (component, cold) = self.component(step).await?;
                if let Some(recording) = &mut recording {
                    recording.step_started(step, &component, &step_inputs);
                }
                let started_after = started.elapsed();
                let result = self.runtime.invoke(&component, &step.name, &step.grants, &step.limits, step_inputs).await;
                (index, started_after, cold, result)
            } else {
                for (index, step) in ready {
                    let step_inputs = route_inputs(pipeline, step, &inputs, &produced)?;
                    let (component, cold) = self.component(step).await?;
                    if let Some(recording) = &mut recording {
                        recording.step_started(step, &component, &step_inputs);
                    }
                    let (runtime, owned) = (self.runtime.clone(), step.clone());
                    let started_after = started.elapsed();
                    running.spawn(async move {
                        let result = runtime.invoke(&component, &owned.name, &owned.grants, &owned.limits, step_inputs).await;
                        (index, started_after, cold, result)
                    });
                }
                let Some(done) = running.join_next().await else { break };
                done.map_err(|e| {
                    PipelineError::Step(InvokeError::StepFailed { step: "?".into(), message: format!("step task failed: {e}") })
                })?
            };
            let (index, started_after, mut cold, result) = done;
            let step = &pipeline.steps[index];
            let output = result?;
            if let Some(cold) = &mut cold {
                self.residency.cold_start_instantiated(&step.component, cold, output.stats.instantiate);
            }
            crate::logs::emit(&step.name, Some(&invocation_id), &output.logs);
            let energy = self.energy.attribute(output.stats.cpu, self.manifest.accounting.watts_per_core);
            let step = step.name.clone();
            if let Some(recording) = &mut recording {
                recording.step_finished(&step, &output.stats, &output.outputs);
            }
            traces.push(StepTrace {
                step: step.clone(),
                started_after,
                stats: output.stats,
                outputs: if options.trace { output.outputs.clone() } else { Vec::new() },
                cold_start: cold,
                energy,
            });
            produced.insert(step, output.outputs);
        }
        let outputs = match &options.until {
            Some(step) => produced.remove(step).unwrap_or_default(),
            None => pipeline
                .outputs
                .iter()
                .map(|route| fetch(pipeline, "the pipeline's outputs", route, &inputs, &produced))
                .collect::<Result<_, _>>()?,
        };
        check_declared(pipeline, &outputs)?;
        let queue_wait = options.received.map_or(Duration::ZERO, |received| started.saturating_duration_since(received));
        let output = PipelineOutput { invocation_id, outputs, steps: traces, wall: started.elapsed(), queue_wait };
        if let (Some(store), Some(recording)) = (&self.provenance, recording) {
            let receipt = serde_json::to_value(output.receipt(&self.manifest.accounting)).unwrap_or_default();
            let record = recording.finish(pipeline, &output.invocation_id, options.subject.clone(), &inputs, &output.outputs, receipt);
            // A provenance failure is logged, not turned into a failed inference.
            if let Err(error) = store.put(&record) {
                tracing::error!(invocation = %output.invocation_id, %error, "could not write the provenance record");
            }
        }
        Ok(output)
    }
}

impl PipelineOutput {
    /// The invocation's receipt, priced with the manifest's `[accounting]`.
    pub fn receipt(&self, pricing: &Pricing) -> Receipt {
        let steps = self
            .steps
            .iter()
            .map(|step| {
                let s = &step.stats;
                let usage = StepUsage {
                    wall: s.wall,
                    cpu: s.cpu,
                    ort_threads_cpu: s.nn.pool_cpu,
                    energy: Some(step.energy),
                    inference: s.nn.inference_time,
                    fuel: s.fuel_consumed,
                    peak_memory_bytes: s.peak_memory_bytes,
                    bytes_in: s.bytes_in,
                    bytes_out: s.bytes_out,
                };
                let mut priced = price_step(&step.step, &usage, pricing);
                priced.cold_start = step.cold_start.clone();
                priced
            })
            .collect();
        receipt(self.invocation_id.clone(), self.wall, self.queue_wait, steps)
    }
}

/// The steps to run: all of them, or `until` and its ancestors.
fn wanted_steps<'a>(pipeline: &'a Pipeline, until: Option<&str>) -> Result<HashSet<&'a str>, PipelineError> {
    let Some(until) = until else { return Ok(pipeline.steps.iter().map(|s| s.name.as_str()).collect()) };
    let target = pipeline
        .step(until)
        .ok_or_else(|| PipelineError::UnknownStep { pipeline: pipeline.name.clone(), step: until.into() })?;
    let mut wanted = HashSet::new();
    let mut stack = vec![target];
    while let Some(step) = stack.pop() {
        if wanted.insert(step.name.as_str()) {
            for route in &step.inputs {
                if let Source::Step { step: from, .. } = &route.source {
                    stack.extend(pipeline.step(from));
                }
            }
        }
    }
    Ok(wanted)
}

fn route_inputs(
    pipeline: &Pipeline,
    step: &Step,
    inputs: &HashMap<String, Tensor>,
    produced: &HashMap<String, Vec<Tensor>>,
) -> Result<Vec<Tensor>, PipelineError> {
    step.inputs.iter().map(|route| fetch(pipeline, &step.name, route, inputs, produced)).collect()
}

/// The tensor a route names, renamed to what the reader calls it.
fn fetch(
    pipeline: &Pipeline,
    reader: &str,
    route: &Route,
    inputs: &HashMap<String, Tensor>,
    produced: &HashMap<String, Vec<Tensor>>,
) -> Result<Tensor, PipelineError> {
    let tensor = match &route.source {
        Source::Input(name) => inputs.get(name).ok_or_else(|| PipelineError::MissingInput {
            pipeline: pipeline.name.clone(),
            name: name.clone(),
            given: inputs.keys().cloned().collect(),
        })?,
        Source::Step { step, tensor } => {
            let outputs = produced.get(step).map(Vec::as_slice).unwrap_or_default();
            outputs.iter().find(|t| &t.name == tensor).ok_or_else(|| PipelineError::MissingTensor {
                step: reader.into(),
                wanted: route.source.to_string(),
                from: step.clone(),
                produced: outputs.iter().map(|t| t.name.clone()).collect(),
            })?
        }
    };
    let mut tensor = tensor.clone();
    tensor.name = route.name.clone();
    Ok(tensor)
}

/// Declared output types hold on every invocation.
fn check_declared(pipeline: &Pipeline, outputs: &[Tensor]) -> Result<(), PipelineError> {
    let describe = |datatype, shape: &dyn std::fmt::Debug| format!("{} {shape:?}", crate::tensor::datatype_name(datatype));
    for tensor in outputs {
        if let Some(declared) = pipeline.output_types.get(&tensor.name) {
            if !declared.admits(tensor) {
                return Err(PipelineError::OutputType {
                    pipeline: pipeline.name.clone(),
                    output: tensor.name.clone(),
                    declared: describe(declared.datatype, &declared.shape),
                    got: describe(tensor.datatype, &tensor.shape),
                });
            }
        }
    }
    Ok(())
}
