//! One loaded model: its declared signature, where it runs, and one ONNX
//! Runtime session that every invocation shares — concurrent calls run in
//! parallel on it (see `shared_run`), with one copy of the weights.

use std::ffi::CString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::ValueType;

use crate::device::{Device, DeviceChoice, Placement};
use crate::error::{NnError, NnErrorCode};
use crate::pool::{MeteredThreads, PoolThreads};
use crate::shared_run::run_shared;
use crate::tensor::{outputs_from_ort, NnTensor, NnType};

/// A model as declared once (manifest or `--model`), shared by every step and
/// pipeline that is granted it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    pub name: String,
    pub source: ModelSource,
    pub device: DeviceChoice,
    /// ONNX Runtime intra-op threads per call (1 = the calling thread only,
    /// which scales best with concurrent invocations).
    pub threads: usize,
}

/// Where a model's ONNX bytes come from.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    File(PathBuf),
    /// Handed over by a step that was granted raw model loading.
    Bytes(Arc<Vec<u8>>),
}

impl std::fmt::Display for ModelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelSource::File(path) => write!(f, "{}", path.display()),
            ModelSource::Bytes(bytes) => write!(f, "{} bytes from the step", bytes.len()),
        }
    }
}

impl ModelSpec {
    /// A CPU model from a file, one intra-op thread.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self::with_source(name.into(), ModelSource::File(path.into()))
    }

    /// A CPU model from bytes.
    pub fn from_bytes(name: impl Into<String>, bytes: Vec<u8>) -> Self {
        Self::with_source(name.into(), ModelSource::Bytes(Arc::new(bytes)))
    }

    fn with_source(name: String, source: ModelSource) -> Self {
        ModelSpec { name, source, device: DeviceChoice::Cpu, threads: 1 }
    }

    /// Size and digest of the model bytes.
    fn size_and_digest(&self) -> Result<(u64, String), NnError> {
        let of = |bytes: &[u8]| (bytes.len() as u64, weir_registry::Digest::of(bytes).to_string());
        match &self.source {
            ModelSource::File(path) => std::fs::read(path).map(|b| of(&b)).map_err(|e| {
                NnError::new(NnErrorCode::NotFound, format!("model `{}`: cannot read {}: {e}", self.name, path.display()))
            }),
            ModelSource::Bytes(bytes) => Ok(of(bytes)),
        }
    }
}

/// One declared input or output.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    /// `None` when wasi-nn cannot carry the element type (e.g. strings).
    pub ty: Option<NnType>,
    pub type_name: String,
    /// `-1` for a dimension of any size.
    pub shape: Vec<i64>,
}

impl std::fmt::Display for TensorSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} {:?})", self.name, self.type_name, self.shape)
    }
}

fn tensor_spec(name: &str, ty: &ValueType) -> TensorSpec {
    match ty {
        ValueType::Tensor { ty, shape, .. } => TensorSpec {
            name: name.into(),
            ty: NnType::from_onnx(*ty),
            type_name: NnType::from_onnx(*ty).map_or_else(|| format!("{ty:?}"), |t| t.to_string()),
            shape: shape.iter().copied().collect(),
        },
        other => TensorSpec { name: name.into(), ty: None, type_name: format!("{other:?}"), shape: Vec::new() },
    }
}

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
    session: Session,
    input_names: Vec<CString>,
    output_names: Vec<CString>,
    /// ONNX Runtime's intra-op threads for this session (none with `threads = 1`).
    pool: Arc<PoolThreads>,
}

/// Where one inference's time went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunTiming {
    /// Wall time inside ONNX Runtime.
    pub inference: Duration,
    /// CPU time ONNX Runtime's own pool threads spent on this call (the
    /// calling thread's share is on the caller's clock).
    pub pool_cpu: Duration,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel").field("name", &self.spec.name).field("placement", &self.placement).finish()
    }
}

fn build_session(spec: &ModelSpec, device: Device, pool: &Arc<PoolThreads>) -> Result<Session, NnError> {
    let fail = |e: ort::Error| NnError::runtime(format!("loading model `{}` from {}: {e}", spec.name, spec.source));
    let mut builder = Session::builder()
        .and_then(|b| b.with_optimization_level(GraphOptimizationLevel::Level3))
        .and_then(|b| b.with_intra_threads(spec.threads.max(1)))
        .and_then(|b| b.with_inter_threads(1))
        // weir starts the pool threads itself, to read their CPU clocks.
        .and_then(|b| b.with_thread_manager(MeteredThreads(pool.clone())))
        .map_err(fail)?;
    if let Device::Gpu { index } = device {
        builder = with_cuda(builder, index).map_err(fail)?;
    }
    match &spec.source {
        ModelSource::File(path) => builder.commit_from_file(path).map_err(fail),
        ModelSource::Bytes(bytes) => builder.commit_from_memory(bytes).map_err(fail),
    }
}

#[cfg(feature = "cuda")]
fn with_cuda(
    builder: ort::session::builder::SessionBuilder,
    index: u32,
) -> Result<ort::session::builder::SessionBuilder, ort::Error> {
    use ort::execution_providers::CUDAExecutionProvider;
    builder.with_execution_providers([CUDAExecutionProvider::default()
        .with_device_id(index as i32)
        .build()
        .error_on_failure()])
}

#[cfg(not(feature = "cuda"))]
fn with_cuda(
    _builder: ort::session::builder::SessionBuilder,
    _index: u32,
) -> Result<ort::session::builder::SessionBuilder, ort::Error> {
    unreachable!("device placement refuses GPUs when CUDA is not built in")
}

impl LoadedModel {
    /// Load the model: check the library, place it, build its session.
    pub fn load(spec: ModelSpec) -> Result<LoadedModel, NnError> {
        let started = Instant::now();
        crate::library::init().map_err(|e| NnError::runtime(e.to_string()))?;
        let placement = crate::device::place(spec.device)
            .map_err(|reason| NnError::new(NnErrorCode::Security, format!("model `{}` wants a GPU: {reason}", spec.name)))?;
        if let Some(reason) = &placement.fallback_reason {
            tracing::warn!(model = %spec.name, %reason, "device `auto`: running on the CPU");
        }
        let (file_bytes, digest) = spec.size_and_digest()?;
        let pool = Arc::new(PoolThreads::default());
        let session = build_session(&spec, placement.device, &pool)?;
        let inputs = session.inputs.iter().map(|i| tensor_spec(&i.name, &i.input_type)).collect();
        let outputs = session.outputs.iter().map(|o| tensor_spec(&o.name, &o.output_type)).collect();
        let c_names = |specs: &Vec<TensorSpec>| -> Result<Vec<CString>, NnError> {
            specs
                .iter()
                .map(|t| CString::new(t.name.as_str()).map_err(|_| NnError::invalid(format!("model `{}`: tensor name with a NUL byte", spec.name))))
                .collect()
        };
        let (input_names, output_names) = (c_names(&inputs)?, c_names(&outputs)?);
        Ok(LoadedModel {
            inputs,
            outputs,
            placement,
            load_time: started.elapsed(),
            charge_bytes: file_bytes,
            digest,
            session,
            input_names,
            output_names,
            pool,
            spec,
        })
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
            let dims_ok = rank_ok && spec.shape.iter().zip(&tensor.dims).all(|(&want, &got)| want < 0 || want == i64::from(got));
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

    /// ONNX Runtime pool threads this model's session has.
    pub fn pool_threads(&self) -> usize {
        self.pool.len()
    }

    /// Run one inference; returns every declared output and where the time
    /// went. Safe to call from many threads at once.
    pub fn run(&self, inputs: &[(String, NnTensor)]) -> Result<(Vec<(String, NnTensor)>, RunTiming), NnError> {
        self.check_inputs(inputs)?;
        let values = inputs
            .iter()
            .map(|(name, tensor)| {
                let index = self.inputs.iter().position(|s| &s.name == name).expect("checked above");
                Ok((index, tensor.to_ort()?))
            })
            .collect::<Result<Vec<_>, ort::Error>>()
            .map_err(|e| NnError::runtime(format!("preparing inputs of model `{}`: {e}", self.spec.name)))?;
        let named: Vec<_> = values.iter().map(|(index, value)| (self.input_names[*index].as_c_str(), value)).collect();
        let metered = (!self.pool.is_empty()).then(|| self.pool.begin());
        let started = Instant::now();
        let outputs = run_shared(&self.session, &named, &self.output_names);
        let inference = started.elapsed();
        let pool_cpu = metered.map(|call| call.finish()).unwrap_or_default();
        let outputs = outputs.map_err(|e| NnError::runtime(format!("model `{}`: {e}", self.spec.name)))?;
        let names: Vec<&str> = self.outputs.iter().map(|o| o.name.as_str()).collect();
        Ok((outputs_from_ort(&self.spec.name, &names, &outputs)?, RunTiming { inference, pool_cpu }))
    }
}
