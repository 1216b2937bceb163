//! What an invocation asks for ([`RunOptions`]) and what it gives back: its
//! outputs with every step's measured facts ([`PipelineOutput`]), or the
//! error that ended it ([`PipelineError`]).

use std::time::{Duration, Instant};

use thiserror::Error;
use weir_core::{Classify, Energy, ErrorKind, Tensor};
use weir_sandbox::{InvokeError, StepStats};

use crate::residency::{ColdStart, ResidencyError};

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
    Load { step: String, component: String, error: Box<ResidencyError> },
    #[error(
        "pipeline `{pipeline}` does not allow `trace` or `until` (it has sensitive tensors); the operator may set \
         `taps = true` in its manifest section"
    )]
    TapsOff { pipeline: String },
    #[error("pipeline `{pipeline}`: the output policy cannot apply: {message}")]
    Policy { pipeline: String, message: String },
    #[error(
        "input `{input}` of pipeline `{pipeline}` is {got}, but the pipeline takes {declared} (-1: any size); \
         send a tensor of that datatype and shape"
    )]
    InputType { pipeline: String, input: String, declared: String, got: String },
    #[error("output `{output}` of pipeline `{pipeline}` is {got}, but the manifest declares {declared}")]
    OutputType { pipeline: String, output: String, declared: String, got: String },
    #[error(transparent)]
    Step(#[from] InvokeError),
}

impl Classify for PipelineError {
    fn kind(&self) -> ErrorKind {
        match self {
            PipelineError::UnknownPipeline { .. } => ErrorKind::NotFound,
            PipelineError::MissingInput { .. }
            | PipelineError::UnknownStep { .. }
            | PipelineError::InputType { .. } => ErrorKind::InvalidInput,
            PipelineError::TapsOff { .. } => ErrorKind::Forbidden,
            PipelineError::Load { error, .. } => error.kind(),
            PipelineError::MissingTensor { .. } | PipelineError::OutputType { .. } | PipelineError::Policy { .. } => {
                ErrorKind::StepFailed
            }
            PipelineError::Step(error) => error.kind(),
        }
    }
}

impl PipelineError {
    /// The step at fault, when one is.
    pub fn step(&self) -> Option<&str> {
        match self {
            // The step that produced too little, not the one that wanted it.
            PipelineError::MissingTensor { from, .. } => Some(from),
            PipelineError::Load { step, .. } => Some(step),
            PipelineError::Step(error) => Some(error.step()),
            _ => None,
        }
    }

    /// The caller's request was at fault (HTTP 4xx).
    pub fn is_caller_error(&self) -> bool {
        self.kind().is_caller_error()
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
    /// The invocation's id, when the trigger chose it (so that it can name
    /// the invocation even if the run fails); a new one otherwise.
    pub invocation_id: Option<String>,
    /// The experiment variant this invocation runs as (for receipts and records).
    pub variant: Option<VariantTag>,
    /// Steps whose outputs to hand back in [`PipelineOutput::kept`] (for a
    /// shadow run that reuses them).
    pub keep_steps: Option<std::sync::Arc<[String]>>,
}

/// Which experiment and variant an invocation served (`champion` for the champion).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantTag {
    pub experiment: String,
    pub variant: String,
    /// A shadow run: its answer went to no caller.
    pub shadow: bool,
}

/// Outputs of steps that already ran for this request (by step name):
/// the executor does not run those steps again.
pub type Seeded = std::collections::HashMap<String, Vec<Tensor>>;

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
    pub energy: Energy,
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
    /// The outputs of the steps [`RunOptions::keep_steps`] named.
    pub kept: Seeded,
    /// The experiment variant it ran as.
    pub variant: Option<VariantTag>,
}
