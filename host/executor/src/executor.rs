//! The dataflow executor: a step runs once all its inputs are ready;
//! independent steps run concurrently (each on its own task); tensors are
//! routed by `step.tensor` name. A failing step fails the invocation with an
//! error naming it; the other steps are cancelled, nothing hangs.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use weir_core::energy::CpuModel;
use weir_core::ids::new_invocation_id;
use weir_core::{EnergySource, Tensor};
use weir_manifest::{Manifest, Pipeline, Route, Source, Step};
use weir_sandbox::{InvokeError, Sandbox, StepComponent};

use crate::artifacts::Resolver;
use crate::events::{InvocationFinished, InvocationStarted, Observer, Session, StepFinished, StepStarted};
use crate::outcome::{PipelineError, PipelineOutput, RunOptions, Seeded, StepTrace};
use crate::residency::{ColdStart, Residency, ResidencyPolicy};

/// Runs a manifest's pipelines, loading each component on first use.
pub struct Executor {
    sandbox: Arc<Sandbox>,
    manifest: Arc<Manifest>,
    residency: Arc<Residency>,
    energy: Arc<dyn EnergySource>,
    observers: Vec<Arc<dyn Observer>>,
}

impl Executor {
    /// Get ready to run; nothing is fetched or compiled until first use.
    /// Energy is modelled from CPU time until [`Executor::with_energy`].
    pub fn new(sandbox: Arc<Sandbox>, manifest: Manifest) -> Self {
        Self::with_resolver(sandbox, manifest, Resolver::default(), ResidencyPolicy::default())
    }

    /// Like `new`, fetching registry artifacts through `resolver` and keeping
    /// things in memory by `policy`.
    pub fn with_resolver(
        sandbox: Arc<Sandbox>,
        manifest: Manifest,
        resolver: Resolver,
        policy: ResidencyPolicy,
    ) -> Self {
        let manifest = Arc::new(manifest);
        let residency = Arc::new(Residency::new(sandbox.clone(), manifest.clone(), resolver, policy));
        let energy = Arc::new(CpuModel { watts_per_core: manifest.accounting.watts_per_core });
        Executor { sandbox, manifest, residency, energy, observers: Vec::new() }
    }

    /// What is loaded, and what the cold starts cost.
    pub fn residency(&self) -> &Arc<Residency> {
        &self.residency
    }

    /// The energy source receipts are priced with.
    pub fn energy(&self) -> &Arc<dyn EnergySource> {
        &self.energy
    }

    /// Measure (or model) step energy with `source`.
    pub fn with_energy(mut self, source: Arc<dyn EnergySource>) -> Self {
        self.energy = source;
        self
    }

    /// Tell `observer` about every invocation.
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observers.push(observer);
        self
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.sandbox
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
        let load_error = |error| PipelineError::Load {
            step: step.name.clone(),
            component: step.component.clone(),
            error: Box::new(error),
        };
        let loaded = self.residency.component(&step.component).await.map_err(load_error)?;
        self.residency.models_for(step).await.map_err(load_error)?;
        Ok(loaded)
    }

    /// Run one step again on chosen inputs, with its component, grants
    /// and limits, outside any invocation (no observers see it): what
    /// explanations are computed from.
    pub async fn replay_step(
        &self,
        step: &Step,
        inputs: Vec<Tensor>,
    ) -> Result<weir_sandbox::StepOutput, PipelineError> {
        let (component, _) = self.component(step).await?;
        Ok(self.sandbox.invoke(&component, &step.name, &step.grants, &step.limits, inputs).await?)
    }

    /// Run one invocation of `pipeline` on the request's tensors.
    pub async fn run(
        &self,
        pipeline: &str,
        inputs: Vec<Tensor>,
        options: &RunOptions,
    ) -> Result<PipelineOutput, PipelineError> {
        let pipeline = self.pipeline(pipeline)?;
        self.run_pipeline(pipeline, inputs, options, Seeded::new()).await
    }

    /// Run `pipeline` (declared, or an experiment's challenger) on the
    /// request's tensors; the steps in `seeded` already ran for this
    /// request and are not run again.
    pub async fn run_pipeline(
        &self,
        pipeline: &Pipeline,
        inputs: Vec<Tensor>,
        options: &RunOptions,
        seeded: Seeded,
    ) -> Result<PipelineOutput, PipelineError> {
        let started = Instant::now();
        let invocation_id = options.invocation_id.clone().unwrap_or_else(new_invocation_id);
        if (options.trace || options.until.is_some()) && !pipeline.taps {
            return Err(PipelineError::TapsOff { pipeline: pipeline.name.clone() });
        }
        check_declared_inputs(pipeline, &inputs)?;
        let inputs: HashMap<String, Tensor> = inputs.into_iter().map(|t| (t.name.clone(), t)).collect();
        // A shadow run answers nobody: the board and records see only what callers got.
        let shadow = options.variant.as_ref().is_some_and(|v| v.shadow);
        let mut session = Session::begin(
            if shadow { &[] } else { &self.observers },
            &InvocationStarted { invocation_id: &invocation_id, pipeline, inputs: &inputs, options },
        );
        match self.schedule(pipeline, &invocation_id, &inputs, options, started, seeded, &mut session).await {
            Ok(output) => {
                session.finished(&InvocationFinished { pipeline, inputs: &inputs, options, output: &output });
                Ok(output)
            }
            Err(error) => {
                session.failed(&error);
                Err(error)
            }
        }
    }

    /// Start every step whose inputs are there, until all have run.
    #[allow(clippy::too_many_arguments)]
    async fn schedule(
        &self,
        pipeline: &Pipeline,
        invocation_id: &str,
        inputs: &HashMap<String, Tensor>,
        options: &RunOptions,
        started: Instant,
        seeded: Seeded,
        session: &mut Session,
    ) -> Result<PipelineOutput, PipelineError> {
        let wanted = wanted_steps(pipeline, options.until.as_deref())?;
        let mut produced: HashMap<String, Vec<Tensor>> = seeded;
        // Steps by their index in the pipeline (tasks hand back the index).
        let mut pending: Vec<(usize, &Step)> = pipeline
            .steps
            .iter()
            .enumerate()
            .filter(|(_, s)| wanted.contains(s.name.as_str()) && !produced.contains_key(&s.name))
            .collect();
        let mut running = JoinSet::new();
        let mut traces = Vec::new();
        loop {
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
                let step_inputs = route_inputs(pipeline, step, inputs, &produced)?;
                let (component, cold) = self.component(step).await?;
                session.step_started(&StepStarted { invocation_id, step, component: &component, inputs: &step_inputs });
                let started_after = started.elapsed();
                let result = self.sandbox.invoke(&component, &step.name, &step.grants, &step.limits, step_inputs).await;
                (index, started_after, cold, result)
            } else {
                for (index, step) in ready {
                    let step_inputs = route_inputs(pipeline, step, inputs, &produced)?;
                    let (component, cold) = self.component(step).await?;
                    session.step_started(&StepStarted {
                        invocation_id,
                        step,
                        component: &component,
                        inputs: &step_inputs,
                    });
                    let (sandbox, owned) = (self.sandbox.clone(), step.clone());
                    let started_after = started.elapsed();
                    running.spawn(async move {
                        let result =
                            sandbox.invoke(&component, &owned.name, &owned.grants, &owned.limits, step_inputs).await;
                        (index, started_after, cold, result)
                    });
                }
                let Some(done) = running.join_next().await else { break };
                done.map_err(|e| {
                    PipelineError::Step(InvokeError::StepFailed {
                        step: "?".into(),
                        message: format!("step task failed: {e}"),
                    })
                })?
            };
            let (index, started_after, mut cold, result) = done;
            let step = &pipeline.steps[index];
            let output = result?;
            if let Some(cold) = &mut cold {
                self.residency.cold_start_instantiated(&step.component, cold, output.stats.instantiate);
            }
            let energy = self.energy.attribute_step(output.stats.cpu, output.stats.nn.gpu_time);
            let trace = StepTrace {
                step: step.name.clone(),
                started_after,
                stats: output.stats,
                outputs: if options.trace { output.outputs.clone() } else { Vec::new() },
                cold_start: cold,
                energy,
            };
            let event =
                StepFinished { invocation_id, step, outputs: &output.outputs, logs: &output.logs, trace: &trace };
            session.step_finished(&event);
            traces.push(trace);
            produced.insert(step.name.clone(), output.outputs);
        }
        let outputs = match &options.until {
            Some(step) => produced.remove(step).unwrap_or_default(),
            None => pipeline
                .outputs
                .iter()
                .map(|route| fetch(pipeline, "the pipeline's outputs", route, inputs, &produced))
                .collect::<Result<_, _>>()?,
        };
        check_declared(pipeline, &outputs)?;
        let outputs = protect(pipeline, outputs, options.until.is_some())?;
        let queue_wait =
            options.received.map_or(Duration::ZERO, |received| started.saturating_duration_since(received));
        let kept = match &options.keep_steps {
            Some(names) => names.iter().filter_map(|n| produced.remove_entry(n)).collect(),
            None => Seeded::new(),
        };
        Ok(PipelineOutput {
            invocation_id: invocation_id.to_string(),
            outputs,
            steps: traces,
            wall: started.elapsed(),
            queue_wait,
            kept,
            variant: options.variant.clone(),
        })
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

/// The pipeline's output policies, after the last step (not on `until`
/// answers, which are step tensors; taps are off by default where there are
/// policies).
fn protect(pipeline: &Pipeline, outputs: Vec<Tensor>, until: bool) -> Result<Vec<Tensor>, PipelineError> {
    if until || pipeline.protect.is_empty() {
        return Ok(outputs);
    }
    let mut kept = Vec::with_capacity(outputs.len());
    for mut tensor in outputs {
        match pipeline.protect.get(&tensor.name) {
            Some(policy) if policy.remove => continue,
            Some(policy) => policy
                .apply(&mut tensor)
                .map_err(|message| PipelineError::Policy { pipeline: pipeline.name.clone(), message })?,
            None => {}
        }
        kept.push(tensor);
    }
    Ok(kept)
}

fn describe(datatype: weir_core::tensor::Datatype, shape: &dyn std::fmt::Debug) -> String {
    format!("{} {shape:?}", weir_core::tensor::datatype_name(datatype))
}

/// A request's tensors match the pipeline's declared inputs (a caller's
/// mistake, refused before any step runs or sizes a buffer from them).
fn check_declared_inputs(pipeline: &Pipeline, inputs: &[Tensor]) -> Result<(), PipelineError> {
    for tensor in inputs {
        if let Some(declared) = pipeline.inputs.iter().find(|d| d.name == tensor.name) {
            if !declared.admits(tensor) {
                return Err(PipelineError::InputType {
                    pipeline: pipeline.name.clone(),
                    input: tensor.name.clone(),
                    declared: describe(declared.datatype, &declared.shape),
                    got: describe(tensor.datatype, &tensor.shape),
                });
            }
        }
    }
    Ok(())
}

/// Declared output types hold on every invocation.
fn check_declared(pipeline: &Pipeline, outputs: &[Tensor]) -> Result<(), PipelineError> {
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
