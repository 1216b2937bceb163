//! weir-nn: `wasi:nn` for weir steps, behind a small [`Backend`] trait
//! (ONNX Runtime, [`onnx`], is the one backend today).
//!
//! - [`library`] finds and checks `libonnxruntime.so` before `ort` loads it.
//! - [`ModelCache`] holds models declared once and shared by every
//!   invocation: loaded lazily, unloaded when idle, evicted LRU under a
//!   memory budget; one session per model that concurrent calls share.
//! - [`host`] implements the `wasi:nn@0.2.0-rc-2024-10-28` WIT for one
//!   invocation, limited by the step's [`ModelGrants`].
//! - [`offload`] runs inference and model loads on blocking threads, and
//!   stops a cancelled step's inference ([`Interrupt`]).
//! - [`budget`] charges every host-side resource a step creates to it.
//! - [`device`] places models on the CPU or a GPU (CUDA, NVML).
//! - [`variants`] picks among a model's variants on this host, timing them
//!   when the objective is latency or cost.

pub mod backend;
pub mod budget;
pub mod cache;
pub mod device;
pub mod error;
pub mod gpu_busy;
pub mod host;
pub mod library;
pub mod model;
pub mod offload;
pub mod onnx;
mod pool;
mod shared_run;
pub mod spec;
pub mod tensor;
pub mod variants;

pub use backend::{Backend, Graph, LoadedGraph};
pub use cache::{CacheOptions, CacheStats, ModelCache};
pub use device::DeviceChoice;
pub use error::{NnError, NnErrorCode};
pub use host::{add_to_linker, ModelUse, NnCtx, NnUsage, NnView};
pub use model::LoadedModel;
pub use offload::Interrupt;
pub use onnx::OnnxRuntime;
pub use spec::{ModelSource, ModelSpec, RunTiming, TensorSpec};
pub use tensor::{NnTensor, NnType};
pub use weir_core::ModelGrants;
