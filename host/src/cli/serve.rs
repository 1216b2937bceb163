//! `weir serve`: the manifest's pipelines over HTTP (Open Inference Protocol v2).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use weir::artifacts::Resolver;
use weir_registry::{BlobStore, RegistryOptions};

use weir::manifest::Manifest;
use weir::pipeline::Executor;
use weir::nn::CacheOptions;
use weir::{units, EngineOptions, Runtime, RuntimeOptions};

use super::{exit, with_code, Failure};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// The manifest (weir.toml).
    manifest: PathBuf,
    /// Address to listen on (overrides `[triggers.http] listen`); port 0 picks a free port.
    #[arg(long)]
    listen: Option<String>,
    /// Step instances that may be alive at once (sizes the pooling allocator).
    #[arg(long, default_value_t = 256)]
    max_instances: u32,
    /// Drop components and models nobody used for this long from memory
    /// (scale-to-zero); `never` keeps them.
    #[arg(long, default_value = "5m")]
    idle_timeout: String,
    /// Idle time for models only (default: --idle-timeout).
    #[arg(long)]
    model_idle_timeout: Option<String>,
    /// Fetch, compile and load every component and model before listening
    /// (default: on first use).
    #[arg(long)]
    preload: bool,
    /// Reach registries over plain HTTP (loopback registries always are).
    #[arg(long)]
    insecure_registry: bool,
    /// Most bytes of models kept loaded (e.g. `2GiB`); least recently used go first.
    #[arg(long)]
    model_memory_budget: Option<String>,
    /// Do not price invocations or return receipts (to measure what accounting costs).
    #[arg(long)]
    no_receipts: bool,
}

pub fn serve(args: ServeArgs) -> Result<(), Failure> {
    let manifest = Manifest::load(&args.manifest).map_err(with_code(exit::BAD_INPUT))?;
    if !manifest.models.is_empty() {
        weir::nn::library::init().map_err(with_code(exit::INTERNAL))?;
    }
    let listen = args.listen.clone().unwrap_or_else(|| manifest.http.listen.clone());
    let fuel = manifest.pipelines.values().flat_map(|p| &p.steps).any(|s| s.limits.fuel.is_some());
    let bad = |flag: &str, e: String| with_code::<anyhow::Error>(exit::BAD_INPUT)(anyhow::anyhow!("{flag}: {e}"));
    let idle = |text: &str, flag: &str| match text {
        "never" => Ok(None),
        text => units::parse_duration(text).map(Some).map_err(|e| bad(flag, e)),
    };
    let component_idle = idle(&args.idle_timeout, "--idle-timeout")?;
    let models = CacheOptions {
        idle_timeout: match &args.model_idle_timeout {
            Some(text) => idle(text, "--model-idle-timeout")?,
            None => component_idle,
        },
        memory_budget_bytes: args.model_memory_budget.as_deref().map(units::parse_bytes).transpose().map_err(|e| bad("--model-memory-budget", e))?,
    };
    let model_idle = models.idle_timeout;
    let options = RuntimeOptions {
        engine: EngineOptions { max_instances: args.max_instances, fuel, ..EngineOptions::default() },
        models,
        ..RuntimeOptions::default()
    };
    let runtime = Arc::new(Runtime::new(options).map_err(with_code(exit::INTERNAL))?);
    let pipelines: Vec<String> = manifest.pipelines.keys().cloned().collect();
    let provenance = super::run::open_provenance(&manifest)?;
    let registry = RegistryOptions { insecure: args.insecure_registry, ..RegistryOptions::default() };
    let resolver = Resolver::new(BlobStore::new(BlobStore::default_root()), registry);
    let mut executor = Executor::with_resolver(runtime, manifest, resolver);
    if let Some(store) = provenance {
        executor = executor.with_provenance(store);
    }
    let executor = Arc::new(executor);
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(with_code(exit::INTERNAL))?;
    // Registry clients take ~80 ms to build (TLS set-up): build them before
    // listening so the first cold start does not pay for it. Nothing is pulled.
    executor.residency().prepare_registries();
    if args.preload {
        tokio.block_on(executor.residency().preload()).map_err(with_code(exit::BAD_COMPONENT))?;
    }
    if let Some(shortest) = [component_idle, model_idle].into_iter().flatten().min() {
        // Idle components and models go even when no request comes to notice them.
        let executor = executor.clone();
        tokio.spawn(async move {
            let mut every = tokio::time::interval((shortest / 4).clamp(Duration::from_millis(50), Duration::from_secs(5)));
            loop {
                every.tick().await;
                if let Some(idle) = component_idle {
                    executor.residency().evict_idle(idle);
                }
                if model_idle.is_some() {
                    let models = executor.runtime().models();
                    let before = models.stats().loaded.len();
                    models.unload_idle();
                    if models.stats().loaded.len() < before {
                        weir::residency::release_freed_memory();
                    }
                }
            }
        });
    }
    tokio
        .block_on(weir::serve::serve(executor, &listen, !args.no_receipts, |addr| {
            // Tests and scripts wait for this line.
            eprintln!("weir: serving {} on http://{addr}/v2", pipelines.join(", "));
        }))
        .map_err(|e| with_code::<anyhow::Error>(exit::INTERNAL)(anyhow::anyhow!("serving on {listen}: {e}")))
}
