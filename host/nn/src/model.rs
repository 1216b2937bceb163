//! One loaded model: its declared signature, where it runs, and the
//! backend's graph that every invocation shares (one copy of the weights;
//! concurrent calls run in parallel on it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::backend::{Backend, Graph};
use crate::device::Placement;
use crate::error::{NnError, NnErrorCode};
use crate::offload::Interrupt;
use crate::spec::{ModelSpec, RunTiming, TensorSpec};
use crate::tensor::NnTensor;

/// A loaded model, ready to run.
pub struct LoadedModel {
    pub spec: ModelSpec,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    pub placement: Placement,
    /// Time to build the session.
    pub load_time: Duration,
    /// `sha256:` digest of the model bytes, for provenance.
    pub digest: String,
    /// What the model is charged against the cache's memory budget: the
    /// size of its ONNX file (weights dominate; an estimate, not a reading).
    pub charge_bytes: u64,
    /// The backend's loaded graph.
    graph: Box<dyn Graph>,
    /// Recent wall time per input byte of a run, in picoseconds (a moving
    /// average); 0 until a run was measured. Decides whether a run is short
    /// enough to do on the calling thread ([`crate::offload`]).
    run_cost_ps_per_byte: AtomicU64,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel").field("name", &self.spec.name).field("placement", &self.placement).finish()
    }
}

impl LoadedModel {
    /// Load the model with `backend`: place it, then have the backend
    /// build its graph.
    pub fn load(spec: ModelSpec, backend: &dyn Backend) -> Result<LoadedModel, NnError> {
        let started = Instant::now();
        let placement = crate::device::place(spec.device).map_err(|reason| {
            NnError::new(NnErrorCode::Security, format!("model `{}` wants a GPU: {reason}", spec.name))
        })?;
        if let Some(reason) = &placement.fallback_reason {
            tracing::warn!(model = %spec.name, %reason, "device `auto`: running on the CPU");
        }
        // Also refuses external data out of the model's folder, before the
        // backend opens anything.
        let (file_bytes, digest) = spec.size_and_digest()?;
        let loaded = backend.load(&spec, placement.device)?;
        Ok(LoadedModel {
            inputs: loaded.inputs,
            outputs: loaded.outputs,
            placement,
            load_time: started.elapsed(),
            charge_bytes: file_bytes,
            digest,
            graph: loaded.graph,
            spec,
            run_cost_ps_per_byte: AtomicU64::new(0),
        })
    }

    /// How long a run on `bytes` of input is expected to take, from recent
    /// runs; `None` before the first.
    pub fn predicted_run(&self, bytes: usize) -> Option<Duration> {
        let cost = self.run_cost_ps_per_byte.load(Ordering::Relaxed);
        (cost > 0).then(|| Duration::from_nanos(cost.saturating_mul(bytes.max(1) as u64) / 1000))
    }

    /// Fold a measured run into the estimate (weight 1/4: a model that turns
    /// slow is noticed within a few runs).
    pub fn observe_run(&self, bytes: usize, wall: Duration) {
        let sample = (wall.as_nanos().saturating_mul(1000) / bytes.max(1) as u128).clamp(1, u64::MAX as u128) as u64;
        let old = self.run_cost_ps_per_byte.load(Ordering::Relaxed);
        let new = if old == 0 { sample } else { old - old / 4 + sample / 4 };
        self.run_cost_ps_per_byte.store(new.max(1), Ordering::Relaxed);
    }

    /// Check inputs against the model's declaration: names, types, ranks,
    /// fixed dimensions and data sizes.
    pub fn check_inputs(&self, inputs: &[(String, NnTensor)]) -> Result<(), NnError> {
        let model = &self.spec.name;
        let declared = || self.inputs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        for (name, tensor) in inputs {
            let spec = self.inputs.iter().find(|s| &s.name == name).ok_or_else(|| {
                NnError::invalid(format!("model `{model}` has no input `{name}`; its inputs are: {}", declared()))
            })?;
            if spec.ty != Some(tensor.ty) {
                return Err(NnError::invalid(format!(
                    "input `{name}` of model `{model}` is {}, got {}",
                    spec.type_name, tensor.ty
                )));
            }
            let rank_ok = spec.shape.len() == tensor.dims.len();
            let dims_ok =
                rank_ok && spec.shape.iter().zip(&tensor.dims).all(|(&want, &got)| want < 0 || want == i64::from(got));
            if !dims_ok {
                return Err(NnError::invalid(format!(
                    "input `{name}` of model `{model}` has shape {:?} (-1 = any), got {:?}",
                    spec.shape, tensor.dims
                )));
            }
            let expected = tensor.element_count().and_then(|n| n.checked_mul(tensor.ty.size()));
            if expected != Some(tensor.data.len()) {
                return Err(NnError::invalid(format!(
                    "input `{name}`: dimensions {:?} of {} need {} bytes, got {}",
                    tensor.dims,
                    tensor.ty,
                    expected.map_or("too many".into(), |e| e.to_string()),
                    tensor.data.len()
                )));
            }
        }
        if let Some(missing) = self.inputs.iter().find(|s| !inputs.iter().any(|(n, _)| n == &s.name)) {
            return Err(NnError::invalid(format!("model `{model}` needs input {missing}; it was not given")));
        }
        Ok(())
    }

    /// Threads the backend runs beside the caller for this model.
    pub fn pool_threads(&self) -> usize {
        self.graph.pool_threads()
    }

    /// CPU time the pool threads have used in all since the model loaded.
    pub fn pool_cpu_total(&self) -> std::time::Duration {
        self.graph.pool_cpu_total()
    }

    /// Run one inference; returns every declared output and where the time
    /// went. Safe to call from many threads at once.
    pub fn run(&self, inputs: &[(String, NnTensor)]) -> Result<(Vec<(String, NnTensor)>, RunTiming), NnError> {
        self.run_interruptible(inputs, &Interrupt::default())
    }

    /// [`LoadedModel::run`] that `interrupt` can stop from another thread.
    pub fn run_interruptible(
        &self,
        inputs: &[(String, NnTensor)],
        interrupt: &Interrupt,
    ) -> Result<(Vec<(String, NnTensor)>, RunTiming), NnError> {
        self.check_inputs(inputs)?;
        self.graph.run(inputs, interrupt)
    }
}
