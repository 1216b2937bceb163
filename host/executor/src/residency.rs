//! What is resident in memory and what is not, under one policy for
//! components and models: components are fetched, compiled (or taken from
//! the compiled cache) and linked on first use; models from registries are
//! fetched and registered the first time a step that may use them runs
//! (and loaded by the model cache on first inference). Both are dropped
//! again after idling (scale-to-zero) by the sweeper this module runs.
//! Every cold start is timed by part (pull, compile, link, instantiate).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use weir_core::{Classify, ErrorKind};
use weir_manifest::{ArtifactSource, Manifest, ModelDecl, Step};
use weir_nn::ModelSpec;
use weir_registry::ArtifactKind;
use weir_sandbox::compiled::CompileSource;
use weir_sandbox::{LoadError, Sandbox, StepComponent};

use crate::artifacts::{ResolveError, Resolver};
use crate::variants::VariantPick;

/// Why a component or model could not be made resident.
#[derive(Debug, thiserror::Error)]
pub enum ResidencyError {
    #[error("{kind} `{name}` could not be fetched: {error}")]
    Fetch { kind: ArtifactKind, name: String, error: ResolveError },
    #[error("model `{name}` could not be loaded: {error}")]
    Model { name: String, error: weir_nn::NnError },
    #[error(
        "model `{name}` has no variant that may serve on this host ({arch}): {why}; add one for {arch} or lower \
         min_accuracy"
    )]
    NoVariant { name: String, arch: &'static str, why: String },
    #[error(transparent)]
    Load(#[from] LoadError),
}

impl Classify for ResidencyError {
    fn kind(&self) -> ErrorKind {
        match self {
            ResidencyError::Fetch { error, .. } => error.kind(),
            ResidencyError::Model { .. } | ResidencyError::NoVariant { .. } => ErrorKind::Unavailable,
            ResidencyError::Load(error) => error.kind(),
        }
    }
}

/// When components and models leave memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResidencyPolicy {
    /// Drop what nobody used for this long; `None` keeps everything.
    pub idle_timeout: Option<Duration>,
    /// Models only, when they should idle out at another pace.
    pub model_idle_timeout: Option<Option<Duration>>,
}

impl Default for ResidencyPolicy {
    fn default() -> Self {
        ResidencyPolicy { idle_timeout: Some(Duration::from_secs(300)), model_idle_timeout: None }
    }
}

impl ResidencyPolicy {
    /// The idle timeout that applies to models.
    pub fn model_idle(&self) -> Option<Duration> {
        self.model_idle_timeout.unwrap_or(self.idle_timeout)
    }
}

/// What one sweep dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub components: usize,
    pub models: usize,
}

/// How long one cold start took, by part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColdStart {
    /// Resolving the source and downloading (0 for local files).
    pub pull_us: u64,
    pub downloaded_bytes: u64,
    pub compile_us: u64,
    /// `compiled` (Cranelift ran) or `cache` (the compiled cache had it).
    pub compile_source: CompileSource,
    pub link_us: u64,
    /// The first instantiation after loading (filled in once it ran).
    pub instantiate_us: Option<u64>,
    /// When it happened (Unix milliseconds).
    pub at_unix_ms: u64,
}

/// One component as `/v2/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentStatus {
    pub name: String,
    pub source: String,
    /// `warm` (loaded, ready to instantiate) or `cold` (not in memory).
    pub state: &'static str,
    pub digest: Option<String>,
    pub idle_ms: Option<u64>,
    /// When it was last used (Unix milliseconds), warm or since dropped.
    pub last_used_unix_ms: Option<u64>,
    pub cold_starts: u64,
    pub last_cold_start: Option<ColdStart>,
}

struct Resident {
    component: Arc<StepComponent>,
    /// Milliseconds since the `Residency` was made (cheap to bump per call).
    last_used_ms: AtomicU64,
}

#[derive(Default)]
struct History {
    cold_starts: u64,
    last: Option<ColdStart>,
    /// Last use before it was dropped (ms since `origin`).
    last_used_ms: Option<u64>,
}

/// Held while one artifact loads.
type LoadLock = Arc<tokio::sync::Mutex<()>>;

pub struct Residency {
    sandbox: Arc<Sandbox>,
    policy: ResidencyPolicy,
    manifest: Arc<Manifest>,
    resolver: Arc<Resolver>,
    residents: Mutex<HashMap<String, Resident>>,
    history: Mutex<HashMap<String, History>>,
    registered_models: Arc<Mutex<HashSet<String>>>,
    /// Models with variants: which serves here.
    variant_picks: Arc<Mutex<BTreeMap<String, VariantPick>>>,
    /// One load at a time per artifact: concurrent first calls of one
    /// component wait for its load instead of compiling it twice, while
    /// other artifacts load meanwhile (a stuck registry holds up only what
    /// comes from it).
    loading: Mutex<HashMap<(ArtifactKind, String), LoadLock>>,
    origin: Instant,
    origin_unix_ms: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn micros(d: Duration) -> u64 {
    d.as_micros().min(u64::MAX as u128) as u64
}

impl Residency {
    /// Register the manifest's local, unpinned models at once (that costs
    /// nothing: they load lazily); the rest wait for first use.
    pub fn new(
        sandbox: Arc<Sandbox>,
        manifest: Arc<Manifest>,
        resolver: Resolver,
        policy: ResidencyPolicy,
    ) -> Residency {
        let mut registered = HashSet::new();
        for model in manifest.models.values() {
            let plain_file = model.variants.is_empty() && !model.artifact.is_deferred();
            if let (true, ArtifactSource::File(path)) = (plain_file, &model.artifact.source) {
                sandbox.register_model(model_spec(model, path.clone()));
                registered.insert(model.name.clone());
            }
        }
        Residency {
            sandbox,
            policy,
            manifest,
            resolver: Arc::new(resolver),
            residents: Mutex::new(HashMap::new()),
            history: Mutex::new(HashMap::new()),
            registered_models: Arc::new(Mutex::new(registered)),
            variant_picks: Arc::new(Mutex::new(BTreeMap::new())),
            loading: Mutex::new(HashMap::new()),
            origin: Instant::now(),
            origin_unix_ms: weir_core::clock::unix_ms(),
        }
    }

    /// The lock held while `name` (of `kind`) loads.
    fn load_lock(&self, kind: ArtifactKind, name: &str) -> LoadLock {
        lock(&self.loading).entry((kind, name.to_string())).or_default().clone()
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// The component, loading it if it is cold. The second value is the cold
    /// start this call caused, if it caused one.
    pub async fn component(&self, name: &str) -> Result<(Arc<StepComponent>, Option<ColdStart>), ResidencyError> {
        if let Some(component) = self.warm(name) {
            return Ok((component, None));
        }
        let loading = self.load_lock(ArtifactKind::Component, name);
        let _loading = loading.lock().await;
        if let Some(component) = self.warm(name) {
            return Ok((component, None));
        }
        let declared = &self.manifest.components[name];
        let fetch_error = |error| ResidencyError::Fetch { kind: ArtifactKind::Component, name: name.into(), error };
        let resolved = self.resolver.resolve(&declared.artifact, ArtifactKind::Component).await.map_err(fetch_error)?;
        // Compiling takes milliseconds to seconds: keep it off the async workers.
        let sandbox = self.sandbox.clone();
        let (display, path) = (declared.artifact.source.to_string(), resolved.path.clone());
        let mut precompiled = declared.precompiled.clone();
        if let Some(manifest) = &resolved.manifest {
            let target = weir_sandbox::precompiled::host_target();
            match self.resolver.precompiled(&declared.artifact, manifest, &target).await {
                Ok(found) => precompiled.extend(found),
                // Unsigned or unfetchable code is not used: the component is compiled.
                Err(error) => tracing::warn!(component = %name, %error, "not using the registry's precompiled code"),
            }
        }
        let component = tokio::task::spawn_blocking(move || {
            let bytes = weir_sandbox::component::read_file(&path)?;
            let mut offered = Vec::new();
            for file in &precompiled {
                // One unreadable or untrusted file is passed over, not fatal.
                match weir_sandbox::precompiled::read_listed(file) {
                    Ok(bytes) => {
                        offered.push(weir_sandbox::component::Offered { name: file.display().to_string(), bytes })
                    }
                    Err(why) => tracing::warn!(%why, "passing over a precompiled file"),
                }
            }
            sandbox.load_with(display, &bytes, &offered)
        })
        .await
        .map_err(|e| LoadError::Compile { what: name.into(), message: format!("the compile task failed: {e}") })??;
        let component = Arc::new(component);
        let cold = ColdStart {
            pull_us: micros(resolved.pull),
            downloaded_bytes: resolved.downloaded,
            compile_us: micros(component.load.compile_time),
            compile_source: component.load.compile_source,
            link_us: micros(component.load.link_time),
            instantiate_us: None,
            at_unix_ms: weir_core::clock::unix_ms(),
        };
        let resident = Resident { component: component.clone(), last_used_ms: AtomicU64::new(self.now_ms()) };
        lock(&self.residents).insert(name.to_string(), resident);
        let mut history = lock(&self.history);
        let entry = history.entry(name.to_string()).or_default();
        entry.cold_starts += 1;
        entry.last = Some(cold.clone());
        Ok((component, Some(cold)))
    }

    fn warm(&self, name: &str) -> Option<Arc<StepComponent>> {
        let residents = lock(&self.residents);
        let resident = residents.get(name)?;
        resident.last_used_ms.store(self.now_ms(), Ordering::Relaxed);
        Some(resident.component.clone())
    }

    /// Record the first instantiation after a cold start.
    pub fn cold_start_instantiated(&self, name: &str, cold: &mut ColdStart, instantiate: Duration) {
        cold.instantiate_us = Some(micros(instantiate));
        if let Some(last) = lock(&self.history).get_mut(name).and_then(|h| h.last.as_mut()) {
            last.instantiate_us = cold.instantiate_us;
        }
    }

    /// Make every model `step` may use available to it (fetching registry
    /// models the first time).
    pub async fn models_for(&self, step: &Step) -> Result<(), ResidencyError> {
        for name in &step.grants.nn.models {
            if lock(&self.registered_models).contains(name) {
                continue;
            }
            let loading = self.load_lock(ArtifactKind::Model, name).lock_owned().await;
            if lock(&self.registered_models).contains(name) {
                continue;
            }
            let declared = &self.manifest.models[name];
            if !declared.variants.is_empty() {
                // In a task of its own, holding the load lock: a request
                // that gives up (timeout, client gone) does not abandon the
                // timing half-way, and the next one waits for its result.
                let (decl, resolver, sandbox) = (declared.clone(), self.resolver.clone(), self.sandbox.clone());
                let (picks, registered) = (self.variant_picks.clone(), self.registered_models.clone());
                let choosing = tokio::spawn(async move {
                    let _loading = loading;
                    let spec_of =
                        |variant: &str, path| ModelSpec { variant: Some(variant.into()), ..model_spec(&decl, path) };
                    let (spec, pick) = crate::variants::choose(&decl, &resolver, sandbox.models(), spec_of).await?;
                    sandbox.register_model(spec);
                    lock(&picks).insert(decl.name.clone(), pick);
                    lock(&registered).insert(decl.name);
                    Ok::<_, ResidencyError>(())
                });
                match choosing.await {
                    Ok(chosen) => chosen?,
                    Err(panic) => std::panic::resume_unwind(panic.into_panic()),
                }
                continue;
            }
            let resolved = self
                .resolver
                .resolve(&declared.artifact, ArtifactKind::Model)
                .await
                .map_err(|error| ResidencyError::Fetch { kind: ArtifactKind::Model, name: name.clone(), error })?;
            self.sandbox.register_model(model_spec(declared, resolved.path));
            lock(&self.registered_models).insert(name.clone());
        }
        Ok(())
    }

    /// Get registry clients ready (no network, nothing pulled), so that the
    /// first cold start does not pay for building them. Blocking.
    pub fn prepare_registries(&self) {
        let components = self.manifest.components.values().map(|c| &c.artifact);
        self.resolver.prepare(components.chain(self.manifest.models.values().flat_map(|m| m.artifacts())));
    }

    /// Fetch and load everything now (`weir serve --preload`).
    pub async fn preload(&self) -> Result<(), ResidencyError> {
        for name in self.manifest.components.keys() {
            self.component(name).await?;
        }
        // Experiments' challengers too: a model only a challenger uses
        // must not load inside a canary's first stage.
        for step in self.manifest.runnable_pipelines().flat_map(|p| &p.steps) {
            self.models_for(step).await?;
        }
        // Registered is fetched; loaded is an ONNX Runtime session ready to run.
        let granted: std::collections::BTreeSet<&String> =
            self.manifest.runnable_pipelines().flat_map(|p| &p.steps).flat_map(|s| &s.grants.nn.models).collect();
        for name in granted {
            let models = self.sandbox.models().clone();
            let loading = name.clone();
            tokio::task::spawn_blocking(move || models.get(&loading).map(drop))
                .await
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
                .map_err(|error| ResidencyError::Model { name: name.clone(), error })?;
        }
        Ok(())
    }

    /// Models with variants that were chosen so far (at first use).
    pub fn variant_picks(&self) -> Vec<VariantPick> {
        lock(&self.variant_picks).values().cloned().collect()
    }

    /// Keep `previous`'s variant choices for the models this manifest
    /// declares alike (a reload: both generations share one model cache,
    /// where the chosen variant is registered; timing again could switch it
    /// under the running generation). The caller checks the declarations.
    pub fn adopt_variant_picks(&self, previous: &Residency) {
        for pick in previous.variant_picks() {
            let has_variants = self.manifest.models.get(&pick.model).is_some_and(|m| !m.variants.is_empty());
            if has_variants && self.sandbox.models().is_registered(&pick.model) {
                lock(&self.registered_models).insert(pick.model.clone());
                lock(&self.variant_picks).insert(pick.model.clone(), pick);
            }
        }
    }

    pub fn policy(&self) -> &ResidencyPolicy {
        &self.policy
    }

    /// Drop the components and models that idled past the policy, and hand
    /// the freed memory back to the OS.
    pub fn sweep(&self) -> Swept {
        let components = self.policy.idle_timeout.map_or(0, |idle| self.evict_idle(idle));
        let models = if self.policy.model_idle().is_some() { self.sandbox.models().unload_idle() } else { 0 };
        if models > 0 {
            release_freed_memory();
        }
        Swept { components, models }
    }

    /// Run [`Residency::sweep`] in the background (on the current tokio
    /// runtime) so that idle things go even when no request comes to notice
    /// them. Stops when the residency is dropped.
    pub fn start_sweeper(self: &Arc<Self>) {
        let Some(shortest) = [self.policy.idle_timeout, self.policy.model_idle()].into_iter().flatten().min() else {
            return;
        };
        let residency = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut every =
                tokio::time::interval((shortest / 4).clamp(Duration::from_millis(50), Duration::from_secs(5)));
            loop {
                every.tick().await;
                let Some(residency) = residency.upgrade() else { return };
                residency.sweep();
            }
        });
    }

    /// Drop components nobody used for `idle`; returns how many went.
    /// Invocations still running keep theirs alive until they finish.
    pub fn evict_idle(&self, idle: Duration) -> usize {
        let now = self.now_ms();
        let idle_ms = idle.as_millis() as u64;
        let evicted = {
            let mut residents = lock(&self.residents);
            let mut history = lock(&self.history);
            let before = residents.len();
            // A component a running invocation holds is in use, not idle.
            residents.retain(|name, r| {
                let last_used = r.last_used_ms.load(Ordering::Relaxed);
                let keep = Arc::strong_count(&r.component) > 1 || now.saturating_sub(last_used) < idle_ms;
                if !keep {
                    history.entry(name.clone()).or_default().last_used_ms = Some(last_used);
                }
                keep
            });
            before - residents.len()
        };
        if evicted > 0 {
            release_freed_memory();
        }
        evicted
    }

    pub fn resident_components(&self) -> usize {
        lock(&self.residents).len()
    }

    pub fn status(&self) -> Vec<ComponentStatus> {
        let now = self.now_ms();
        let residents = lock(&self.residents);
        let history = lock(&self.history);
        self.manifest
            .components
            .values()
            .map(|declared| {
                let resident = residents.get(&declared.name);
                let past = history.get(&declared.name);
                ComponentStatus {
                    name: declared.name.clone(),
                    source: declared.artifact.source.to_string(),
                    state: if resident.is_some() { "warm" } else { "cold" },
                    digest: resident.map(|r| r.component.digest.to_string()),
                    idle_ms: resident.map(|r| now.saturating_sub(r.last_used_ms.load(Ordering::Relaxed))),
                    last_used_unix_ms: resident
                        .map(|r| r.last_used_ms.load(Ordering::Relaxed))
                        .or_else(|| past.and_then(|h| h.last_used_ms))
                        .map(|ms| self.origin_unix_ms + ms),
                    cold_starts: past.map_or(0, |h| h.cold_starts),
                    last_cold_start: past.and_then(|h| h.last.clone()),
                }
            })
            .collect()
    }
}

/// The model cache's spec of a declared model whose bytes are at `path`.
fn model_spec(decl: &ModelDecl, path: std::path::PathBuf) -> ModelSpec {
    let mut spec = ModelSpec::new(decl.name.clone(), path);
    spec.device = decl.device;
    spec.threads = decl.threads;
    spec
}

/// Hand freed heap back to the OS so that resident memory really drops
/// after components and models go (glibc keeps freed memory otherwise).
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// This process's resident set size, in bytes (Linux; `None` elsewhere).
pub fn resident_set_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page.max(1) as u64)
}
