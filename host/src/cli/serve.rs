//! `weir serve`: the manifest's pipelines over HTTP (Open Inference Protocol v2).

use std::path::PathBuf;
use std::sync::Arc;

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
    /// Unload a model nobody used for this long (e.g. `10m`); default: keep loaded.
    #[arg(long)]
    model_idle_timeout: Option<String>,
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
    let models = CacheOptions {
        idle_timeout: args.model_idle_timeout.as_deref().map(units::parse_duration).transpose().map_err(|e| bad("--model-idle-timeout", e))?,
        memory_budget_bytes: args.model_memory_budget.as_deref().map(units::parse_bytes).transpose().map_err(|e| bad("--model-memory-budget", e))?,
    };
    let idle_timeout = models.idle_timeout;
    let options = RuntimeOptions {
        engine: EngineOptions { max_instances: args.max_instances, fuel, ..EngineOptions::default() },
        models,
        ..RuntimeOptions::default()
    };
    let runtime = Arc::new(Runtime::new(options).map_err(with_code(exit::INTERNAL))?);
    let pipelines: Vec<String> = manifest.pipelines.keys().cloned().collect();
    let provenance = super::run::open_provenance(&manifest)?;
    let mut executor = Executor::new(runtime, manifest);
    if let Some(store) = provenance {
        executor = executor.with_provenance(store);
    }
    let executor = Arc::new(executor);
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(with_code(exit::INTERNAL))?;
    if let Some(idle) = idle_timeout {
        // Idle models go even when no request comes to notice them.
        let models = executor.runtime().models().clone();
        tokio.spawn(async move {
            let mut every = tokio::time::interval((idle / 4).max(std::time::Duration::from_millis(100)));
            loop {
                every.tick().await;
                models.unload_idle();
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
