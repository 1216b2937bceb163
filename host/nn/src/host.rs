//! The host side of `wasi:nn@0.2.0-rc-2024-10-28` for one invocation: graph,
//! execution-context, tensor and error resources live in the invocation's
//! resource table; models come from the shared [`ModelCache`], limited by
//! the step's grant.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use weir_core::ModelGrants;

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
        imports: { default: trappable },
    });
}

use generated::wasi::nn::{errors, graph, inference, tensor};

/// A graph a guest loaded.
pub struct GraphHandle {
    model: Arc<LoadedModel>,
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
}

/// Per-invocation `wasi:nn` state.
pub struct NnCtx {
    cache: Option<Arc<ModelCache>>,
    grants: ModelGrants,
    pub usage: NnUsage,
}

impl NnCtx {
    pub fn new(cache: Option<Arc<ModelCache>>, grants: ModelGrants) -> Self {
        NnCtx { cache, grants, usage: NnUsage::default() }
    }

    fn record(&mut self, model: &LoadedModel) {
        if !self.usage.models.iter().any(|m| m.name == model.spec.name) {
            self.usage.models.push(ModelUse {
                name: model.spec.name.clone(),
                digest: model.digest.clone(),
                device: model.placement.device.to_string(),
                fallback_reason: model.placement.fallback_reason.clone(),
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
        Ok(Err(self.table.push(error)?))
    }
}

struct HasNnView;

impl HasData for HasNnView {
    type Data<'a> = NnView<'a>;
}

/// Add `wasi:nn` to a component linker.
pub fn add_to_linker<T: 'static>(linker: &mut Linker<T>, get: fn(&mut T) -> NnView<'_>) -> wasmtime::Result<()> {
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
    fn load(
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
        let spec = ModelSpec { device, ..ModelSpec::from_bytes("guest-supplied", bytes) };
        let loaded = match &self.ctx.cache {
            Some(cache) => LoadedModel::load(spec, cache.backend().as_ref()),
            None => LoadedModel::load(spec, &crate::onnx::OnnxRuntime),
        };
        match loaded {
            Ok(model) => {
                let model = Arc::new(model);
                self.ctx.record(&model);
                Ok(Ok(self.table.push(GraphHandle { model })?))
            }
            Err(error) => self.fail(error),
        }
    }

    fn load_by_name(&mut self, name: String) -> wasmtime::Result<Result<Resource<GraphHandle>, Resource<NnError>>> {
        // Ungranted and unknown look the same to the guest: no hint that a
        // model exists which the step may not use.
        let not_found =
            || NnError::new(NnErrorCode::NotFound, format!("no model named `{name}` is available to this step"));
        let granted = self.ctx.grants.models.iter().any(|m| m == &name);
        let Some(cache) = self.ctx.cache.clone().filter(|c| granted && c.is_registered(&name)) else {
            return self.fail(not_found());
        };
        match cache.get(&name) {
            Ok(model) => {
                self.ctx.record(&model);
                Ok(Ok(self.table.push(GraphHandle { model })?))
            }
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
        Ok(Ok(self.table.push(ContextHandle { model })?))
    }

    fn drop(&mut self, graph: Resource<GraphHandle>) -> wasmtime::Result<()> {
        self.table.delete(graph)?;
        Ok(())
    }
}

impl inference::HostGraphExecutionContext for NnView<'_> {
    fn compute(
        &mut self,
        context: Resource<ContextHandle>,
        inputs: Vec<inference::NamedTensor>,
    ) -> wasmtime::Result<Result<Vec<inference::NamedTensor>, Resource<NnError>>> {
        let model = self.table.get(&context)?.model.clone();
        let mut named = Vec::with_capacity(inputs.len());
        for (name, tensor) in inputs {
            named.push((name, self.table.delete(tensor)?));
        }
        match model.run(&named) {
            Ok((outputs, timing)) => {
                self.ctx.usage.computes += 1;
                self.ctx.usage.inference_time += timing.inference;
                self.ctx.usage.pool_cpu += timing.pool_cpu;
                let mut result = Vec::with_capacity(outputs.len());
                for (name, tensor) in outputs {
                    result.push((name, self.table.push(tensor)?));
                }
                Ok(Ok(result))
            }
            Err(error) => self.fail(error),
        }
    }

    fn drop(&mut self, context: Resource<ContextHandle>) -> wasmtime::Result<()> {
        self.table.delete(context)?;
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
        Ok(self.table.push(NnTensor { dims: dimensions, ty: nn_type(ty), data })?)
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
        self.table.delete(tensor)?;
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
        self.table.delete(error)?;
        Ok(())
    }
}

impl errors::Host for NnView<'_> {}
impl tensor::Host for NnView<'_> {}
impl inference::Host for NnView<'_> {}
