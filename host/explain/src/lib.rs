//! weir-explain: why a pipeline answered what it did.
//!
//! - [`shapley`]: Shapley attributions from a budget of evaluations (exact,
//!   KernelSHAP, permutation sampling) — pure arithmetic;
//! - [`space`]: tensors as features (a point against its baseline) and
//!   recorded edges back as tensors;
//! - [`explain`]: one edge of a pipeline explained in terms of the
//!   pipeline's inputs or of its step's inputs, by replaying sandboxed steps
//!   (`POST /v2/models/{pipeline}/explain`);
//! - [`walk`]: the root-cause walk — a recorded output attributed step by
//!   step back to the request's inputs (`GET /v2/invocations/{id}/rca`).
//!
//! Replays run the same components under the same grants and limits as
//! the pipeline, without observers: an explanation is not an invocation
//! (no record, no board), and it reports the evaluations and CPU it cost.

pub mod explain;
mod replay;
pub use replay::Meter;
pub mod shapley;
pub mod space;
pub mod walk;

use thiserror::Error;
use weir_core::{Classify, ErrorKind};
use weir_executor::PipelineError;

pub use explain::{Attribution, Baseline, Edge, Explanation, InTermsOf, Link, Question, Target};
pub use shapley::{Method, Plan, PlanError, Solution, MAX_FEATURES};
pub use walk::{Rca, RcaNode, RcaPath, RcaQuestion};

/// The most evaluations one explanation or walk may ask for.
pub const MAX_BUDGET: usize = 8192;

/// The most elements an explainer component may be asked to attribute
/// (it answers one number per element; the host's own methods stop at
/// [`MAX_FEATURES`]).
pub const MAX_COMPONENT_FEATURES: usize = 1 << 16;

#[derive(Debug, Error)]
pub enum ExplainError {
    #[error("baseline for `{tensor}`: {problem}")]
    Baseline { tensor: String, problem: String },
    #[error("edge `{edge}` cannot be replayed: {problem}")]
    NotRecorded { edge: String, problem: String },
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("pipeline `{pipeline}` has no edge `{edge}`; name an output (`output.NAME` or `NAME`) or a step's tensor (`STEP.TENSOR`); outputs: {}", known.join(", "))]
    UnknownEdge { pipeline: String, edge: String, known: Vec<String> },
    #[error("pipeline `{pipeline}` has no explainer `{name}` (explainers: {known:?}); declare one under [[pipelines.{pipeline}.explainers]] and reload")]
    UnknownExplainer { pipeline: String, name: String, known: Vec<String> },
    #[error("{0}")]
    Invalid(String),
    #[error(
        "pipeline `{pipeline}` has sensitive or protected tensors: explaining an inner edge, or in terms of a step's \
         inputs, would tap them; explain a pipeline output in terms of the request (or the operator may set `taps = true`)"
    )]
    Tapped { pipeline: String },
    #[error("no baseline: pipeline `{pipeline}` has no recorded invocations with kept inputs; send `baseline` (tensors, or \"zeros\")")]
    NoBaseline { pipeline: String },
    #[error(
        "{features} elements differ from the baseline, over the limit of {limit} features one explanation \
         attributes; explain in terms of a step with fewer inputs, send a baseline equal to the point where elements \
         do not matter, or use an explainer component"
    )]
    TooManyFeatures { features: usize, limit: usize },
    #[error("internal error while explaining (a bug in weir, please report it): {0}")]
    Internal(String),
    #[error("a replay failed: {0}")]
    Run(#[from] PipelineError),
}

impl Classify for ExplainError {
    fn kind(&self) -> ErrorKind {
        match self {
            ExplainError::UnknownEdge { .. } | ExplainError::UnknownExplainer { .. } => ErrorKind::NotFound,
            ExplainError::Tapped { .. } => ErrorKind::Forbidden,
            ExplainError::Internal(_) => ErrorKind::Internal,
            ExplainError::TooManyFeatures { .. } | ExplainError::Plan(PlanError::TooManyFeatures { .. }) => {
                ErrorKind::TooLarge
            }
            ExplainError::Run(error) if error.is_caller_error() => ErrorKind::InvalidInput,
            ExplainError::Run(error) => error.kind(),
            _ => ErrorKind::InvalidInput,
        }
    }
}
