//! `weir serve`: the manifest's pipelines over HTTP (Open Inference Protocol v2).

use std::path::PathBuf;
use std::sync::Arc;

use weir::manifest::Manifest;
use weir::pipeline::Executor;
use weir::{EngineOptions, Runtime, RuntimeOptions};

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
}

pub fn serve(args: ServeArgs) -> Result<(), Failure> {
    let manifest = Manifest::load(&args.manifest).map_err(with_code(exit::BAD_INPUT))?;
    if !manifest.models.is_empty() {
        weir::nn::library::init().map_err(with_code(exit::INTERNAL))?;
    }
    let listen = args.listen.clone().unwrap_or_else(|| manifest.http.listen.clone());
    let fuel = manifest.pipelines.values().flat_map(|p| &p.steps).any(|s| s.limits.fuel.is_some());
    let options = RuntimeOptions {
        engine: EngineOptions { max_instances: args.max_instances, fuel, ..EngineOptions::default() },
        ..RuntimeOptions::default()
    };
    let runtime = Arc::new(Runtime::new(options).map_err(with_code(exit::INTERNAL))?);
    let pipelines: Vec<String> = manifest.pipelines.keys().cloned().collect();
    let executor = Arc::new(Executor::new(runtime, manifest));
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(with_code(exit::INTERNAL))?;
    tokio
        .block_on(weir::serve::serve(executor, &listen, |addr| {
            // Tests and scripts wait for this line.
            eprintln!("weir: serving {} on http://{addr}/v2", pipelines.join(", "));
        }))
        .map_err(|e| with_code::<anyhow::Error>(exit::INTERNAL)(anyhow::anyhow!("serving on {listen}: {e}")))
}
