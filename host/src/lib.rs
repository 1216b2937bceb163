//! weir: a serverless WebAssembly component host for ML inference pipelines.
//!
//! The library behind the `weir` binary. [`Runtime`] owns the process-wide
//! engine; [`Runtime::load_file`] turns a component into a [`StepComponent`]
//! (compiled once, cached on disk by digest); [`Runtime::invoke`] runs one
//! sandboxed invocation with a step's grants and limits.

pub mod accounting;
pub mod artifacts;
pub mod cache;
pub mod component;
pub mod energy;
pub mod engine;
pub mod graph;
pub mod jobs;
pub mod invoke;
pub mod logs;
pub mod manifest;
pub mod metrics;
pub mod nats;
pub mod oip;
pub mod pipeline;
pub mod provenance;
mod recording;
pub mod report;
pub mod residency;
pub mod runtime;
pub mod scaffold;
pub mod serve;
pub mod telemetry;
pub mod tensor;
pub mod trigger;
pub mod units;

/// Host bindings for the `weir:pipeline` WIT.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "weir:pipeline/plain-step",
        exports: { default: async },
        additional_derives: [PartialEq],
    });
}

pub use component::{LoadError, StepComponent};
pub use engine::EngineOptions;
pub use invoke::{InvokeError, StepGrants, StepLimits, StepOutput};
pub use runtime::{Runtime, RuntimeOptions};
pub use tensor::{Datatype, Tensor};
pub use weir_nn as nn;
