//! weir-executor: runs a manifest's pipelines.
//!
//! - [`executor`]: the dataflow scheduler — a step runs once its inputs are
//!   ready, independent steps concurrently, tensors routed by name;
//! - [`residency`]: what is in memory — components and models loaded on
//!   first use and dropped after idling, under one policy, with the
//!   scale-to-zero sweeper;
//! - [`variants`]: which of a model's variants serves on this host;
//! - [`artifacts`]: local files and OCI references turned into verified
//!   local bytes;
//! - [`outcome`]: what an invocation asks for and gives back;
//! - [`events`]: the typed step and invocation events observers subscribe to.

pub mod artifacts;
pub mod events;
pub mod executor;
pub mod outcome;
pub mod residency;
pub mod variants;

pub use events::{InvocationFinished, InvocationObserver, InvocationStarted, Observer, StepFinished, StepStarted};
pub use executor::Executor;
pub use outcome::{PipelineError, PipelineOutput, RunOptions, Seeded, StepTrace, VariantTag};
pub use residency::{ColdStart, Residency, ResidencyPolicy};
