//! The host side of `wasi:nn@0.2.0-rc-2024-10-28` for one invocation: graph,
//! execution-context, tensor and error resources live in the invocation's
//! resource table, each charged to the step's [`HostBudget`]; models come
//! from the shared [`ModelCache`], limited by the step's grant. Loads and
//! inference are `async` on the guest's side and run on blocking threads
//! ([`crate::offload`]), so they never stall the async workers, and a step
//! cancelled mid-inference stops it.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use weir_core::ModelGrants;

use crate::budget::HostBudget;
use crate::cache::ModelCache;
use crate::device::DeviceChoice;
use crate::error::{NnError, NnErrorCode};
use crate::model::LoadedModel;
use crate::spec::ModelSpec;
use crate::tensor::{NnTensor, NnType};

mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit/deps/nn",
        world: "wasi:nn/ml",
        with: {
            "wasi:nn/graph.graph": super::GraphHandle,
            "wasi:nn/tensor.tensor": crate::tensor::NnTensor,
            "wasi:nn/inference.graph-execution-context": super::ContextHandle,
            "wasi:nn/errors.error": crate::error::NnError,
        },
        imports: {
            "wasi:nn/graph.load": async | trappable,
            "wasi:nn/graph.load-by-name": async | trappable,
            "wasi:nn/inference.[method]graph-execution-context.compute": async | trappable,
            default: trappable,
        },
    });
}

use generated::wasi::nn::{errors, graph, inference, tensor};

/// A graph a guest loaded.
pub struct GraphHandle {
    model: Arc<LoadedModel>,
    /// Host bytes charged for it (model bytes the guest supplied).
    charged: u64,
}

/// An execution context on a graph.
pub struct ContextHandle {
    model: Arc<LoadedModel>,
}

/// A model an invocation used, for its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelUse {
    pub name: String,
    pub digest: String,
    pub device: String,
    /// Set when `auto` fell back to the CPU, with the reason.
    pub fallback_reason: Option<String>,
    /// The declared variant that served, for a model with variants.
    pub variant: Option<String>,
}

/// What an invocation did with `wasi:nn`.
#[derive(Debug, Clone, Default)]
pub struct NnUsage {
    pub models: Vec<ModelUse>,
    pub computes: u64,
    /// Time spent inside ONNX Runtime.
    pub inference_time: Duration,
    /// CPU time of ONNX Runtime's pool threads working for these calls.
    pub pool_cpu: Duration,
    /// The part of `inference_time` spent by models placed on a GPU.
    pub gpu_time: Duration,
    /// CPU time of the blocking threads that ran these calls.
    pub run_cpu: Duration,
    /// The most host memory the step's `wasi:nn` resources held at once.
    pub host_bytes_peak: u64,
}

/// Per-invocation `wasi:nn` state.
pub struct NnCtx {
    cache: Option<Arc<ModelCache>>,
    grants: ModelGrants,
    budget: HostBudget,
    pub usage: NnUsage,
}

impl NnCtx {
    /// `host_memory_limit`: what the step's resources may hold on the host
    /// (by default its memory limit).
    pub fn new(cache: Option<Arc<ModelCache>>, grants: ModelGrants, host_memory_limit: u64) -> Self {
        NnCtx { cache, grants, budget: HostBudget::new(host_memory_limit), usage: NnUsage::default() }
    }

    /// What the step used, with the budget's peak.
    pub fn take_usage(&mut self) -> NnUsage {
        let mut usage = std::mem::take(&mut self.usage);
        usage.host_bytes_peak = self.budget.peak();
        usage
    }

    fn record(&mut self, model: &LoadedModel) {
        if !self.usage.models.iter().any(|m| m.name == model.spec.name) {
            self.usage.models.push(ModelUse {
                name: model.spec.name.clone(),
                digest: model.digest.clone(),
                device: model.placement.device.to_string(),
                fallback_reason: model.placement.fallback_reason.clone(),
                variant: model.spec.variant.clone(),
            });
        }
    }
}

pub struct NnView<'a> {
    ctx: &'a mut NnCtx,
    table: &'a mut ResourceTable,
}

impl<'a> NnView<'a> {
    pub fn new(table: &'a mut ResourceTable, ctx: &'a mut NnCtx) -> Self {
        NnView { ctx, table }
    }

    fn fail<T>(&mut self, error: NnError) -> wasmtime::Result<Result<T, Resource<NnError>>> {
        tracing::debug!(code = ?error.code, message = %error.message, "wasi-nn error returned to the guest");
        self.ctx.budget.charge("an error", error.message.len() as u64)?;
        Ok(Err(self.table.push(error)?))
    }

    fn push_tensor(&mut self, tensor: NnTensor) -> wasmtime::Result<Resource<NnTensor>> {
        self.ctx.budget.charge("a tensor", tensor_bytes(&tensor))?;
        Ok(self.table.push(tensor)?)
    }

    fn take_tensor(&mut self, tensor: Resource<NnTensor>) -> wasmtime::Result<NnTensor> {
        let tensor = self.table.delete(tensor)?;
        self.ctx.budget.release(tensor_bytes(&tensor));
        Ok(tensor)
    }

    fn push_graph(&mut self, model: Arc<LoadedModel>, charged: u64) -> wasmtime::Result<Resource<GraphHandle>> {
        self.ctx.budget.charge("a graph", charged)?;
        self.ctx.record(&model);
        Ok(self.table.push(GraphHandle { model, charged })?)
    }
}

/// Host bytes a tensor holds.
fn tensor_bytes(tensor: &NnTensor) -> u64 {
    (tensor.data.len() as u64).saturating_add(4 * tensor.dims.len() as u64)
}

struct HasNnView;

impl HasData for HasNnView {
    type Data<'a> = NnView<'a>;
}

/// Add `wasi:nn` to a component linker.
pub fn add_to_linker<T: Send + 'static>(linker: &mut Linker<T>, get: fn(&mut T) -> NnView<'_>) -> wasmtime::Result<()> {
    graph::add_to_linker::<T, HasNnView>(linker, get)?;
    tensor::add_to_linker::<T, HasNnView>(linker, get)?;
    inference::add_to_linker::<T, HasNnView>(linker, get)?;
    errors::add_to_linker::<T, HasNnView>(linker, get)?;
    Ok(())
}

fn nn_type(ty: tensor::TensorType) -> NnType {
    match ty {
        tensor::TensorType::Fp16 => NnType::Fp16,
        tensor::TensorType::Fp32 => NnType::Fp32,
        tensor::TensorType::Fp64 => NnType::Fp64,
        tensor::TensorType::Bf16 => NnType::Bf16,
        tensor::TensorType::U8 => NnType::U8,
        tensor::TensorType::I32 => NnType::I32,
        tensor::TensorType::I64 => NnType::I64,
    }
}

fn wit_type(ty: NnType) -> tensor::TensorType {
    match ty {
        NnType::Fp16 => tensor::TensorType::Fp16,
        NnType::Fp32 => tensor::TensorType::Fp32,
        NnType::Fp64 => tensor::TensorType::Fp64,
        NnType::Bf16 => tensor::TensorType::Bf16,
        NnType::U8 => tensor::TensorType::U8,
        NnType::I32 => tensor::TensorType::I32,
        NnType::I64 => tensor::TensorType::I64,
    }
}

impl graph::Host for NnView<'_> {
    async fn load(
        &mut self,
        builders: Vec<graph::GraphBuilder>,
        encoding: graph::GraphEncoding,
        target: graph::ExecutionTarget,
    ) -> wasmtime::Result<Result<Resource<GraphHandle>, Resource<NnError>>> {
        if !self.ctx.grants.load_model_bytes {
            return self.fail(NnError::new(
                NnErrorCode::Security,
                "this step may not load model bytes (not granted); use load-by-name with a granted model",
            ));
        }
        if !matches!(encoding, graph::GraphEncoding::Onnx | graph::GraphEncoding::Autodetect) {
            return self.fail(NnError::new(
                NnErrorCode::InvalidEncoding,
                format!("weir runs ONNX models only, not {encoding:?}"),
            ));
        }
        let device = match target {
            graph::ExecutionTarget::Cpu => DeviceChoice::Cpu,
            graph::ExecutionTarget::Gpu => DeviceChoice::Gpu,
            graph::ExecutionTarget::Tpu => return self.fail(NnError::unsupported("no TPU execution target")),
        };
        let bytes = match <[Vec<u8>; 1]>::try_from(builders) {
            Ok([bytes]) => bytes,
            Err(_) => return self.fail(NnError::invalid("an ONNX graph is one builder: the model bytes")),
        };
        // The session built from guest bytes is at least as big as they are.
        let charged = bytes.len() as u64;
        self.ctx.budget.charge("a graph", charged)?;
        self.ctx.budget.release(charged);
        let spec = ModelSpec { device, ..ModelSpec::from_bytes("guest-supplied", bytes) };
        let backend: Arc<dyn crate::backend::Backend> = match &self.ctx.cache {
            Some(cache) => cache.backend().clone(),
            None => Arc::new(crate::onnx::OnnxRuntime),
        };
        let loaded = tokio::task::spawn_blocking(move || LoadedModel::load(spec, backend.as_ref()))
            .await
            .unwrap_or_else(|e| Err(NnError::runtime(format!("loading the model did not finish: {e}"))));
        match loaded {
            Ok(model) => Ok(Ok(self.push_graph(Arc::new(model), charged)?)),
            Err(error) => self.fail(error),
        }
    }

    async fn load_by_name(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<GraphHandle>, Resource<NnError>>> {
        // Ungranted and unknown look the same to the guest: no hint that a
        // model exists which the step may not use.
        let not_found =
            || NnError::new(NnErrorCode::NotFound, format!("no model named `{name}` is available to this step"));
        let Some(granted) = self.ctx.grants.resolve(&name).map(str::to_string) else {
            return self.fail(not_found());
        };
        let Some(cache) = self.ctx.cache.clone().filter(|c| c.is_registered(&granted)) else {
            return self.fail(not_found());
        };
        match crate::offload::load(cache, granted).await {
            Ok(model) => Ok(Ok(self.push_graph(model, 0)?)),
            Err(error) => self.fail(error),
        }
    }
}

impl graph::HostGraph for NnView<'_> {
    fn init_execution_context(
        &mut self,
        graph: Resource<GraphHandle>,
    ) -> wasmtime::Result<Result<Resource<ContextHandle>, Resource<NnError>>> {
        let model = self.table.get(&graph)?.model.clone();
        self.ctx.budget.charge("an execution context", 0)?;
        Ok(Ok(self.table.push(ContextHandle { model })?))
    }

    fn drop(&mut self, graph: Resource<GraphHandle>) -> wasmtime::Result<()> {
        let graph = self.table.delete(graph)?;
        self.ctx.budget.release(graph.charged);
        Ok(())
    }
}

impl inference::HostGraphExecutionContext for NnView<'_> {
    async fn compute(
        &mut self,
        context: Resource<ContextHandle>,
        inputs: Vec<inference::NamedTensor>,
    ) -> wasmtime::Result<Result<Vec<inference::NamedTensor>, Resource<NnError>>> {
        let model = self.table.get(&context)?.model.clone();
        let device = model.placement.device;
        let mut named = Vec::with_capacity(inputs.len());
        for (name, tensor) in inputs {
            named.push((name, self.take_tensor(tensor)?));
        }
        match crate::offload::run(model, named).await {
            Ok(ran) => {
                self.ctx.usage.computes += 1;
                self.ctx.usage.inference_time += ran.timing.inference;
                if let crate::device::Device::Gpu { index } = device {
                    self.ctx.usage.gpu_time += ran.timing.inference;
                    crate::gpu_busy::record(index, ran.timing.inference);
                }
                self.ctx.usage.pool_cpu += ran.timing.pool_cpu;
                self.ctx.usage.run_cpu += ran.cpu;
                let mut result = Vec::with_capacity(ran.outputs.len());
                for (name, tensor) in ran.outputs {
                    result.push((name, self.push_tensor(tensor)?));
                }
                Ok(Ok(result))
            }
            Err(error) => self.fail(error),
        }
    }

    fn drop(&mut self, context: Resource<ContextHandle>) -> wasmtime::Result<()> {
        self.table.delete(context)?;
        self.ctx.budget.release(0);
        Ok(())
    }
}

impl tensor::HostTensor for NnView<'_> {
    fn new(
        &mut self,
        dimensions: tensor::TensorDimensions,
        ty: tensor::TensorType,
        data: tensor::TensorData,
    ) -> wasmtime::Result<Resource<NnTensor>> {
        self.push_tensor(NnTensor { dims: dimensions, ty: nn_type(ty), data })
    }

    fn dimensions(&mut self, tensor: Resource<NnTensor>) -> wasmtime::Result<tensor::TensorDimensions> {
        Ok(self.table.get(&tensor)?.dims.clone())
    }

    fn ty(&mut self, tensor: Resource<NnTensor>) -> wasmtime::Result<tensor::TensorType> {
        Ok(wit_type(self.table.get(&tensor)?.ty))
    }

    fn data(&mut self, tensor: Resource<NnTensor>) -> wasmtime::Result<tensor::TensorData> {
        Ok(self.table.get(&tensor)?.data.clone())
    }

    fn drop(&mut self, tensor: Resource<NnTensor>) -> wasmtime::Result<()> {
        self.take_tensor(tensor)?;
        Ok(())
    }
}

impl errors::HostError for NnView<'_> {
    fn code(&mut self, error: Resource<NnError>) -> wasmtime::Result<errors::ErrorCode> {
        Ok(match self.table.get(&error)?.code {
            NnErrorCode::InvalidArgument => errors::ErrorCode::InvalidArgument,
            NnErrorCode::InvalidEncoding => errors::ErrorCode::InvalidEncoding,
            NnErrorCode::Timeout => errors::ErrorCode::Timeout,
            NnErrorCode::RuntimeError => errors::ErrorCode::RuntimeError,
            NnErrorCode::UnsupportedOperation => errors::ErrorCode::UnsupportedOperation,
            NnErrorCode::TooLarge => errors::ErrorCode::TooLarge,
            NnErrorCode::NotFound => errors::ErrorCode::NotFound,
            NnErrorCode::Security => errors::ErrorCode::Security,
            NnErrorCode::Unknown => errors::ErrorCode::Unknown,
        })
    }

    fn data(&mut self, error: Resource<NnError>) -> wasmtime::Result<String> {
        Ok(self.table.get(&error)?.message.clone())
    }

    fn drop(&mut self, error: Resource<NnError>) -> wasmtime::Result<()> {
        let error = self.table.delete(error)?;
        self.ctx.budget.release(error.message.len() as u64);
        Ok(())
    }
}

impl errors::Host for NnView<'_> {}
impl tensor::Host for NnView<'_> {}
impl inference::Host for NnView<'_> {}
