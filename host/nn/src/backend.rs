//! The backend trait: what `wasi:nn` needs from an inference engine. The
//! WIT glue (`host`), the model cache and placement know only this; ONNX
//! Runtime ([`crate::onnx`]) is the one backend today.

use crate::device::Device;
use crate::error::NnError;
use crate::offload::Interrupt;
use crate::spec::{ModelSpec, RunTiming, TensorSpec};
use crate::tensor::NnTensor;

/// A model loaded by a backend, shared by every call (so `run` takes `&self`
/// and must be safe to call from many threads at once).
pub trait Graph: Send + Sync {
    /// Run one inference on inputs already checked against the model's
    /// declared signature; every declared output comes back, in order.
    /// `interrupt` stops it from another thread (the step was cancelled).
    fn run(
        &self,
        inputs: &[(String, NnTensor)],
        interrupt: &Interrupt,
    ) -> Result<(Vec<(String, NnTensor)>, RunTiming), NnError>;

    /// Threads the backend runs beside the caller for this graph.
    fn pool_threads(&self) -> usize {
        0
    }

    /// CPU time those threads have used in all, since the graph was loaded
    /// (what the calls' `pool_cpu` charges must add up to).
    fn pool_cpu_total(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// What loading gives back: the graph and its declared signature.
pub struct LoadedGraph {
    pub graph: Box<dyn Graph>,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

/// An inference engine.
pub trait Backend: Send + Sync {
    /// Its name, for logs and records.
    fn name(&self) -> &'static str;

    /// Load `spec` onto `device` (already chosen by placement).
    fn load(&self, spec: &ModelSpec, device: Device) -> Result<LoadedGraph, NnError>;
}
