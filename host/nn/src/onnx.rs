//! The ONNX Runtime backend: one session per model that concurrent calls
//! share (see `shared_run`), its intra-op pool threads started by weir so
//! their CPU time can be attributed to the calls they serve.

use std::ffi::CString;
use std::sync::Arc;
use std::time::Instant;

use ort::session::builder::GraphOptimizationLevel;
use ort::session::{RunOptions, Session};
use ort::value::ValueType;

use crate::backend::{Backend, Graph, LoadedGraph};
use crate::device::Device;
use crate::error::NnError;
use crate::offload::Interrupt;
use crate::pool::{MeteredThreads, PoolThreads};
use crate::shared_run::run_shared;
use crate::spec::{ModelSource, ModelSpec, RunTiming, TensorSpec};
use crate::tensor::{outputs_from_ort, NnTensor, NnType};

/// ONNX Runtime, loaded dynamically (see `library`).
#[derive(Debug, Clone, Copy, Default)]
pub struct OnnxRuntime;

impl Backend for OnnxRuntime {
    fn name(&self) -> &'static str {
        "onnxruntime"
    }

    fn load(&self, spec: &ModelSpec, device: Device) -> Result<LoadedGraph, NnError> {
        crate::library::init().map_err(|e| NnError::runtime(e.to_string()))?;
        let pool = Arc::new(PoolThreads::default());
        let session = build_session(spec, device, &pool)?;
        let inputs: Vec<TensorSpec> = session.inputs.iter().map(|i| tensor_spec(&i.name, &i.input_type)).collect();
        let outputs: Vec<TensorSpec> = session.outputs.iter().map(|o| tensor_spec(&o.name, &o.output_type)).collect();
        let c_names = |specs: &[TensorSpec]| -> Result<Vec<CString>, NnError> {
            specs
                .iter()
                .map(|t| {
                    CString::new(t.name.as_str())
                        .map_err(|_| NnError::invalid(format!("model `{}`: tensor name with a NUL byte", spec.name)))
                })
                .collect()
        };
        let graph = OnnxGraph {
            model: spec.name.clone(),
            input_names: c_names(&inputs)?,
            output_names: c_names(&outputs)?,
            inputs: inputs.iter().map(|i| i.name.clone()).collect(),
            outputs: outputs.iter().map(|o| o.name.clone()).collect(),
            session,
            pool,
        };
        Ok(LoadedGraph { graph: Box::new(graph), inputs, outputs })
    }
}

struct OnnxGraph {
    model: String,
    session: Session,
    inputs: Vec<String>,
    outputs: Vec<String>,
    input_names: Vec<CString>,
    output_names: Vec<CString>,
    /// ONNX Runtime's intra-op threads for this session (none with `threads = 1`).
    pool: Arc<PoolThreads>,
}

impl Graph for OnnxGraph {
    fn run(
        &self,
        inputs: &[(String, NnTensor)],
        interrupt: &Interrupt,
    ) -> Result<(Vec<(String, NnTensor)>, RunTiming), NnError> {
        let values = inputs
            .iter()
            .map(|(name, tensor)| {
                let index = self
                    .inputs
                    .iter()
                    .position(|n| n == name)
                    .ok_or_else(|| NnError::invalid(format!("model `{}` has no input `{name}`", self.model)))?;
                let value = tensor
                    .to_ort()
                    .map_err(|e| NnError::runtime(format!("preparing inputs of model `{}`: {e}", self.model)))?;
                Ok((index, value))
            })
            .collect::<Result<Vec<_>, NnError>>()?;
        let named: Vec<_> = values.iter().map(|(index, value)| (self.input_names[*index].as_c_str(), value)).collect();
        // A stopped interrupt sets the run's terminate flag: ONNX Runtime
        // checks it between nodes and returns early.
        let options = Arc::new(
            RunOptions::new().map_err(|e| NnError::runtime(format!("model `{}`: run options: {e}", self.model)))?,
        );
        let terminate = options.clone();
        interrupt.on_stop(Box::new(move || {
            let _ = terminate.terminate();
        }));
        let metered = (!self.pool.is_empty()).then(|| self.pool.begin());
        let started = Instant::now();
        let outputs = run_shared(&self.session, &options, &named, &self.output_names);
        let inference = started.elapsed();
        interrupt.clear();
        if interrupt.is_stopped() {
            return Err(NnError::new(
                crate::error::NnErrorCode::Timeout,
                format!("model `{}`: the inference was stopped (the step's time limit passed)", self.model),
            ));
        }
        let pool_cpu = metered.map(|call| call.finish()).unwrap_or_default();
        let outputs = outputs.map_err(|e| NnError::runtime(format!("model `{}`: {e}", self.model)))?;
        let names: Vec<&str> = self.outputs.iter().map(String::as_str).collect();
        Ok((outputs_from_ort(&self.model, &names, &outputs)?, RunTiming { inference, pool_cpu }))
    }

    fn pool_threads(&self) -> usize {
        self.pool.len()
    }

    fn pool_cpu_total(&self) -> std::time::Duration {
        self.pool.cpu()
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

fn build_session(spec: &ModelSpec, device: Device, pool: &Arc<PoolThreads>) -> Result<Session, NnError> {
    let fail = |e: ort::Error| NnError::runtime(format!("loading model `{}` from {}: {e}", spec.name, spec.source));
    let mut builder = Session::builder()
        .and_then(|b| b.with_optimization_level(GraphOptimizationLevel::Level3))
        .and_then(|b| b.with_intra_threads(spec.threads.max(1)))
        .and_then(|b| b.with_inter_threads(1))
        // Idle pool threads sleep instead of spinning: a spinning thread
        // burns CPU after a call ends that no call could be charged for.
        .and_then(|b| b.with_intra_op_spinning(false))
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
