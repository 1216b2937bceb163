//! The model cache shared by every step, pipeline and invocation: models are
//! declared once, loaded on first use, reused, unloaded when idle, and
//! evicted least-recently-used when a memory budget would be exceeded — so
//! more models can be registered than fit at once (overcommit).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backend::Backend;
use crate::error::{NnError, NnErrorCode};
use crate::model::LoadedModel;
use crate::onnx::OnnxRuntime;
use crate::spec::ModelSpec;

#[derive(Debug, Clone, Default)]
pub struct CacheOptions {
    /// Most bytes the loaded models may be charged (see
    /// `LoadedModel::charge_bytes`); `None` is unbounded.
    pub memory_budget_bytes: Option<u64>,
    /// Unload a model not used for this long; `None` keeps it.
    pub idle_timeout: Option<Duration>,
}

/// What the cache holds right now, for status pages and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheStats {
    pub registered: usize,
    pub loaded: Vec<String>,
    pub charged_bytes: u64,
    pub loads: u64,
    pub evictions: u64,
}

struct Entry {
    model: Arc<LoadedModel>,
    last_used: Instant,
}

#[derive(Default)]
struct State {
    specs: HashMap<String, ModelSpec>,
    loaded: HashMap<String, Entry>,
    /// One lock per model being loaded, so two first uses load it once and
    /// loading one model does not block the others.
    loading: HashMap<String, Arc<Mutex<()>>>,
    loads: u64,
    evictions: u64,
}

pub struct ModelCache {
    options: CacheOptions,
    backend: Arc<dyn Backend>,
    state: Mutex<State>,
}

impl ModelCache {
    /// A cache whose models run on ONNX Runtime.
    pub fn new(options: CacheOptions) -> Self {
        Self::with_backend(options, Arc::new(OnnxRuntime))
    }

    pub fn with_backend(options: CacheOptions, backend: Arc<dyn Backend>) -> Self {
        ModelCache { options, backend, state: Mutex::new(State::default()) }
    }

    /// The backend models are loaded with.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated
        // in a way that matters more than losing the cache: keep serving.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Declare a model (replacing a declaration of the same name; the same
    /// declaration again changes nothing, so a loaded session stays).
    pub fn register(&self, spec: ModelSpec) {
        let mut state = self.state();
        if state.specs.get(&spec.name) == Some(&spec) {
            return;
        }
        state.loaded.remove(&spec.name);
        state.specs.insert(spec.name.clone(), spec);
    }

    /// What loaded models may be charged in all, if bounded.
    pub fn memory_budget(&self) -> Option<u64> {
        self.options.memory_budget_bytes
    }

    pub fn is_registered(&self, name: &str) -> bool {
        self.state().specs.contains_key(name)
    }

    /// The model `name` if it is loaded now (marked used); never loads.
    pub fn get_loaded(&self, name: &str) -> Option<Arc<LoadedModel>> {
        let mut state = self.state();
        self.unload_idle_locked(&mut state, Instant::now());
        let entry = state.loaded.get_mut(name)?;
        entry.last_used = Instant::now();
        Some(entry.model.clone())
    }

    /// The loaded model `name`, loading it first if needed.
    pub fn get(&self, name: &str) -> Result<Arc<LoadedModel>, NnError> {
        let loading = {
            let mut state = self.state();
            self.unload_idle_locked(&mut state, Instant::now());
            if let Some(entry) = state.loaded.get_mut(name) {
                entry.last_used = Instant::now();
                return Ok(entry.model.clone());
            }
            if !state.specs.contains_key(name) {
                return Err(NnError::new(NnErrorCode::NotFound, format!("no model named `{name}` is registered")));
            }
            state.loading.entry(name.to_string()).or_default().clone()
        };
        let _loading = loading.lock().unwrap_or_else(|p| p.into_inner());
        let spec = {
            let mut state = self.state();
            if let Some(entry) = state.loaded.get_mut(name) {
                entry.last_used = Instant::now();
                return Ok(entry.model.clone());
            }
            match state.specs.get(name) {
                Some(spec) => spec.clone(),
                None => {
                    return Err(NnError::new(NnErrorCode::NotFound, format!("no model named `{name}` is registered")))
                }
            }
        };
        let model = Arc::new(LoadedModel::load(spec, self.backend.as_ref())?);
        let mut state = self.state();
        if let Some(budget) = self.options.memory_budget_bytes {
            if model.charge_bytes > budget {
                return Err(NnError::new(
                    NnErrorCode::TooLarge,
                    format!(
                        "model `{name}` is charged {} bytes, more than the whole budget of {budget}",
                        model.charge_bytes
                    ),
                ));
            }
            self.evict_for_locked(&mut state, model.charge_bytes, budget);
        }
        state.loads += 1;
        state.loaded.insert(name.to_string(), Entry { model: model.clone(), last_used: Instant::now() });
        tracing::info!(model = name, device = %model.placement.device, load_ms = model.load_time.as_secs_f64() * 1e3, "model loaded");
        Ok(model)
    }

    /// Evict least-recently-used models until `incoming` more bytes fit.
    fn evict_for_locked(&self, state: &mut State, incoming: u64, budget: u64) {
        loop {
            let charged: u64 = state.loaded.values().map(|e| e.model.charge_bytes).sum();
            if charged + incoming <= budget {
                return;
            }
            let Some(oldest) = state.loaded.iter().min_by_key(|(_, e)| e.last_used).map(|(n, _)| n.clone()) else {
                return;
            };
            state.loaded.remove(&oldest);
            state.evictions += 1;
            tracing::info!(model = %oldest, "model evicted to stay within the memory budget");
        }
    }

    fn unload_idle_locked(&self, state: &mut State, now: Instant) -> usize {
        let Some(idle) = self.options.idle_timeout else { return 0 };
        let before = state.loaded.len();
        state.loaded.retain(|name, entry| {
            let keep = now.duration_since(entry.last_used) < idle;
            if !keep {
                tracing::info!(model = %name, "idle model unloaded");
            }
            keep
        });
        let unloaded = before - state.loaded.len();
        state.evictions += unloaded as u64;
        unloaded
    }

    /// Unload models idle for longer than the idle timeout; a server calls
    /// this periodically (lookups do it too).
    /// Returns how many were unloaded.
    pub fn unload_idle(&self) -> usize {
        let mut state = self.state();
        self.unload_idle_locked(&mut state, Instant::now())
    }

    pub fn stats(&self) -> CacheStats {
        let state = self.state();
        let mut loaded: Vec<String> = state.loaded.keys().cloned().collect();
        loaded.sort();
        CacheStats {
            registered: state.specs.len(),
            charged_bytes: state.loaded.values().map(|e| e.model.charge_bytes).sum(),
            loaded,
            loads: state.loads,
            evictions: state.evictions,
        }
    }
}
