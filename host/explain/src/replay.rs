//! Steps run again, on chosen inputs, with the pipeline's components,
//! grants and limits — and no observers. Counts what the replays cost.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use weir_core::Tensor;
use weir_executor::{Executor, PipelineError};
use weir_manifest::{Pipeline, Route, Source, Step};

use crate::ExplainError;

/// Outputs of steps, by step name.
pub(crate) type Produced = HashMap<String, Vec<Tensor>>;

/// What replays cost: held by the caller, so that work which failed or ran
/// past its time limit (the explanation's future dropped) is still known
/// and can be charged.
#[derive(Debug, Default)]
pub struct Meter {
    cpu_us: AtomicU64,
    steps: AtomicU64,
}

impl Meter {
    /// CPU the replays spent so far (µs), and how many step runs started.
    pub fn cost(&self) -> (u64, u64) {
        (self.cpu_us.load(Ordering::Relaxed), self.steps.load(Ordering::Relaxed))
    }
}

pub(crate) struct Replay<'a> {
    pub executor: &'a Executor,
    pub pipeline: &'a Pipeline,
    meter: &'a Meter,
}

impl<'a> Replay<'a> {
    pub fn new(executor: &'a Executor, pipeline: &'a Pipeline, meter: &'a Meter) -> Self {
        Replay { executor, pipeline, meter }
    }

    pub fn cost(&self) -> (u64, u64) {
        self.meter.cost()
    }

    /// Run one step on `inputs` (named as the step reads them); counted
    /// when it starts, so a run that fails or is abandoned is counted too.
    pub async fn step(&self, step: &Step, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, ExplainError> {
        self.meter.steps.fetch_add(1, Ordering::Relaxed);
        let output = self.executor.replay_step(step, inputs).await?;
        self.meter.cpu_us.fetch_add(output.stats.cpu.as_micros() as u64, Ordering::Relaxed);
        Ok(output.outputs)
    }

    /// Run `wanted` steps in the pipeline's order from the request's
    /// tensors; steps already in `produced` are not run again. A step whose
    /// inputs cannot be had, or that fails on them, is left out when
    /// `lenient` (its readers then cannot run either), an error otherwise.
    pub async fn run(
        &self,
        request: &HashMap<String, Tensor>,
        mut produced: Produced,
        wanted: &HashSet<&str>,
        lenient: bool,
    ) -> Result<Produced, ExplainError> {
        for step in &self.pipeline.steps {
            if !wanted.contains(step.name.as_str()) || produced.contains_key(&step.name) {
                continue;
            }
            let inputs: Result<Vec<Tensor>, ExplainError> =
                step.inputs.iter().map(|r| route(self.pipeline, &step.name, r, request, &produced)).collect();
            let outputs = match inputs {
                Ok(inputs) => self.step(step, inputs).await,
                Err(error) => Err(error),
            };
            match outputs {
                Ok(outputs) => {
                    produced.insert(step.name.clone(), outputs);
                }
                Err(_) if lenient => continue,
                Err(error) => return Err(error),
            }
        }
        Ok(produced)
    }
}

/// The tensor on `route`, renamed as its reader calls it.
pub(crate) fn route(
    pipeline: &Pipeline,
    reader: &str,
    route: &Route,
    request: &HashMap<String, Tensor>,
    produced: &Produced,
) -> Result<Tensor, ExplainError> {
    let found = match &route.source {
        Source::Input(name) => request.get(name),
        Source::Step { step, tensor } => produced.get(step).and_then(|ts| ts.iter().find(|t| &t.name == tensor)),
    };
    let mut tensor = found
        .ok_or_else(|| {
            ExplainError::Run(PipelineError::MissingInput {
                pipeline: pipeline.name.clone(),
                name: format!("{} (read by `{reader}`)", route.source),
                given: request.keys().cloned().collect(),
            })
        })?
        .clone();
    tensor.name = route.name.clone();
    Ok(tensor)
}

/// `step` and every step it reads from, directly or not.
pub(crate) fn ancestors<'p>(pipeline: &'p Pipeline, step: &str) -> HashSet<&'p str> {
    let mut wanted = HashSet::new();
    let mut stack: Vec<&Step> = pipeline.step(step).into_iter().collect();
    while let Some(step) = stack.pop() {
        if wanted.insert(step.name.as_str()) {
            for route in &step.inputs {
                if let Source::Step { step: from, .. } = &route.source {
                    stack.extend(pipeline.step(from));
                }
            }
        }
    }
    wanted
}
