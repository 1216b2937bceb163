//! The `Sandbox`: one engine, one linker and one compiled cache per process;
//! it loads components and runs invocations. Engine → component →
//! invocation lifetimes stay apart: components borrow nothing from a call.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;
use wasmtime::component::Linker;
use weir_nn::{CacheOptions, ModelCache, ModelSpec};

use crate::compiled::CompiledCache;
use crate::component::{self, LoadError, StepComponent};
use crate::engine::{EngineError, EngineOptions, WeirEngine};
use crate::invoke::{self, InvokeError, StepOutput};
use crate::state::StepState;
use weir_core::{StepGrants, StepLimits, Tensor};

/// How to build a sandbox.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    pub engine: EngineOptions,
    /// Root of the compiled-component cache; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// Memory budget and idle timeout of the shared model cache.
    pub models: CacheOptions,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            engine: EngineOptions::default(),
            cache_dir: Some(CompiledCache::default_root()),
            models: CacheOptions::default(),
        }
    }
}

#[derive(Debug, Error)]
pub enum SandboxError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("setting up the host interfaces failed: {0}")]
    Linker(String),
}

pub struct Sandbox {
    engine: WeirEngine,
    linker: Linker<StepState>,
    cache: Option<CompiledCache>,
    models: Arc<ModelCache>,
}

impl Sandbox {
    /// Whether the engine counts guest instructions (steps with a fuel limit need it).
    pub fn counts_fuel(&self) -> bool {
        self.engine.options().fuel
    }

    pub fn new(options: SandboxOptions) -> Result<Self, SandboxError> {
        let engine = WeirEngine::new(options.engine)?;
        let mut linker = Linker::new(engine.engine());
        let linker_error = |e: wasmtime::Error| SandboxError::Linker(format!("{e:#}"));
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(linker_error)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(linker_error)?;
        wasmtime_wasi_config::add_to_linker(&mut linker, |state: &mut StepState| {
            wasmtime_wasi_config::WasiConfig::from(state.config())
        })
        .map_err(linker_error)?;
        weir_nn::add_to_linker(&mut linker, StepState::nn_view).map_err(linker_error)?;
        let cache = options.cache_dir.map(|root| CompiledCache::new(root, engine.engine()));
        let models = Arc::new(ModelCache::new(options.models));
        Ok(Sandbox { engine, linker, cache, models })
    }

    pub fn engine(&self) -> &WeirEngine {
        &self.engine
    }

    /// The compiled cache in use (per engine configuration), if any.
    pub fn cache(&self) -> Option<&CompiledCache> {
        self.cache.as_ref()
    }

    /// The model cache shared by every invocation.
    pub fn models(&self) -> &Arc<ModelCache> {
        &self.models
    }

    /// Declare a model; steps granted its name may load it.
    pub fn register_model(&self, spec: ModelSpec) {
        self.models.register(spec);
    }

    /// Load a component from a file.
    pub fn load_file(&self, path: &Path) -> Result<StepComponent, LoadError> {
        let bytes = component::read_file(path)?;
        self.load_bytes(path.display().to_string(), &bytes)
    }

    /// Load a component from bytes; `name` is used in messages.
    pub fn load_bytes(&self, name: impl Into<String>, bytes: &[u8]) -> Result<StepComponent, LoadError> {
        self.load_with(name, bytes, &[])
    }

    /// Load a component, taking the first of `precompiled` that is its code
    /// for this host (and compiling when none is).
    pub fn load_with(
        &self,
        name: impl Into<String>,
        bytes: &[u8],
        precompiled: &[component::Offered],
    ) -> Result<StepComponent, LoadError> {
        component::load(self.engine.engine(), &self.linker, self.cache.as_ref(), name.into(), bytes, precompiled)
    }

    /// Run one invocation of `component` as step `step`.
    pub async fn invoke(
        &self,
        component: &StepComponent,
        step: &str,
        grants: &StepGrants,
        limits: &StepLimits,
        inputs: Vec<Tensor>,
    ) -> Result<StepOutput, InvokeError> {
        invoke::invoke(&self.engine, &self.models, component, step, grants, limits, inputs).await
    }
}
