//! `weir serve`: the manifest's pipelines over HTTP (Open Inference Protocol v2).

use std::path::PathBuf;
use std::sync::Arc;

use weir_core::units;
use weir_executor::ResidencyPolicy;
use weir_manifest::Manifest;
use weir_nn::CacheOptions;
use weir_observe::metrics::Metrics;
use weir_observe::telemetry::Tracer;
use weir_registry::RegistryOptions;
use weir_sandbox::{EngineOptions, SandboxOptions};
use weir_triggers::{Dispatcher, Triggers};

use super::{classified, exit, with_code, Failure};

/// `--max-instances` unless given (code compiled ahead of time assumes it too).
pub const DEFAULT_MAX_INSTANCES: u32 = 256;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// The manifest (weir.toml).
    manifest: PathBuf,
    /// Address to listen on (overrides `[triggers.http] listen`); port 0 picks a free port.
    #[arg(long)]
    listen: Option<String>,
    /// Also serve the Open Inference Protocol over gRPC here (overrides `[triggers.grpc] listen`).
    #[arg(long)]
    grpc_listen: Option<String>,
    /// Step instances that may be alive at once (sizes the pooling allocator).
    #[arg(long, default_value_t = DEFAULT_MAX_INSTANCES)]
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
    /// No web console at /ui and no live board behind it (to measure what it costs, or to serve less).
    #[arg(long)]
    no_console: bool,
    /// Reload the manifest when its file changes (it is always reloaded on SIGHUP
    /// and on `POST /v2/admin/reload`).
    #[arg(long)]
    watch: bool,
    #[command(flatten)]
    registry_limits: super::oci::RegistryLimitArgs,
    /// The API key file (made with `weir keys create`; default as for `weir keys`).
    #[arg(long)]
    keys: Option<PathBuf>,
    /// No access control: every caller may do everything. Only on a loopback listener.
    #[arg(long)]
    no_auth: bool,
    /// The audit log (who did what; default `audit.log` in weir's data folder; off with --no-auth
    /// unless given).
    #[arg(long)]
    audit_log: Option<PathBuf>,
    /// Serve HTTPS with this certificate chain (PEM; overrides `[triggers.http] tls_cert`).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM; overrides `[triggers.http] tls_key`).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

pub fn serve(args: ServeArgs) -> Result<(), Failure> {
    let manifest = Manifest::load(&args.manifest).map_err(classified)?;
    let mut triggers = Triggers::from_manifest(&manifest).map_err(classified)?;
    if let Some(listen) = &args.listen {
        triggers.http.listen = listen.clone();
    }
    if let Some(listen) = &args.grpc_listen {
        listen.parse::<std::net::SocketAddr>().map_err(|e| {
            with_code::<anyhow::Error>(exit::BAD_INPUT)(anyhow::anyhow!(
                "--grpc-listen: `{listen}` is not HOST:PORT ({e})"
            ))
        })?;
        triggers.grpc = Some(weir_triggers::grpc::GrpcSettings { listen: listen.clone() });
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        triggers.http.tls = Some(weir_triggers::http::TlsFiles { cert: cert.clone(), key: key.clone() });
    }
    if let Some(files) = &triggers.http.tls {
        weir_triggers::http::check_tls(files).map_err(with_code(exit::BAD_INPUT))?;
    }
    let scheme = if triggers.http.tls.is_some() { "https" } else { "http" };
    let listen = triggers.http.listen.clone();
    let bad = |flag: &str, e: String| with_code::<anyhow::Error>(exit::BAD_INPUT)(anyhow::anyhow!("{flag}: {e}"));
    let idle = |text: &str, flag: &str| match text {
        "never" => Ok(None),
        text => units::parse_duration(text).map(Some).map_err(|e| bad(flag, e)),
    };
    let policy = ResidencyPolicy {
        idle_timeout: idle(&args.idle_timeout, "--idle-timeout")?,
        model_idle_timeout: args.model_idle_timeout.as_deref().map(|t| idle(t, "--model-idle-timeout")).transpose()?,
    };
    let models = CacheOptions {
        idle_timeout: policy.model_idle(),
        memory_budget_bytes: args
            .model_memory_budget
            .as_deref()
            .map(units::parse_bytes)
            .transpose()
            .map_err(|e| bad("--model-memory-budget", e))?,
    };
    let options = SandboxOptions {
        engine: EngineOptions {
            max_instances: args.max_instances,
            fuel: manifest.needs_fuel(),
            ..EngineOptions::default()
        },
        models,
        ..SandboxOptions::default()
    };
    let keys = args.keys.clone().unwrap_or_else(super::keys::default_key_file);
    let declared = manifest.opaque_section::<weir_access::DeclaredKeys>("access").map_err(classified)?;
    let mut listeners = vec![listen.as_str()];
    listeners.extend(triggers.grpc.as_ref().map(|g| g.listen.as_str()));
    let access = super::keys::access(&keys, declared.unwrap_or_default().keys, args.no_auth, &listeners)?;
    let audit = match (&args.audit_log, args.no_auth) {
        (Some(path), _) => Some(path.clone()),
        (None, false) => Some(super::keys::default_audit_log()),
        (None, true) => None,
    };
    let audit = audit.map(|path| weir_access::AuditLog::open(&path).map(Arc::new)).transpose().map_err(classified)?;
    let pipelines: Vec<String> = manifest.pipelines.keys().cloned().collect();
    let registry = args
        .registry_limits
        .apply(RegistryOptions { insecure: args.insecure_registry, ..RegistryOptions::default() })?;
    // The console's live board watches every invocation.
    #[cfg(feature = "console")]
    let board =
        (!args.no_console).then(|| weir_console::Board::new(manifest.pipelines.values(), manifest.accounting.clone()));
    #[cfg(not(feature = "console"))]
    let board: Option<weir_triggers::http::Board> = {
        let _ = args.no_console; // nothing to turn off
        None
    };
    let observers: Vec<Arc<dyn weir_executor::Observer>> = board.iter().map(board_observer).collect();
    let (composer, provenance) = super::compose::Composer::new(&manifest, options, registry, policy, observers)?;
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(with_code(exit::INTERNAL))?;
    // Monitors' tasks start with the executor, on this runtime.
    let _guard = tokio.enter();
    let executor = composer.executor(manifest)?;
    let monitors = composer.monitors();
    let console = board.is_some();
    // Registry clients take ~80 ms to build (TLS set-up): build them before
    // listening so the first cold start does not pay for it. Nothing is pulled.
    executor.residency().prepare_registries();
    if args.preload {
        tokio.block_on(executor.residency().preload()).map_err(classified)?;
    }
    // Idle components and models go even when no request comes to notice them.
    executor.residency().start_sweeper();
    let dispatcher = Arc::new(
        Dispatcher::new(executor, !args.no_receipts, Arc::new(Metrics::new()), Tracer::from_env())
            .with_limits(triggers.http.limits()),
    );
    let reloader = Arc::new(super::reload::Reloader::new(args.manifest.clone(), composer, dispatcher.clone()));
    super::reload::on_hangup(reloader.clone()).map_err(with_code(exit::INTERNAL))?;
    if args.watch {
        super::reload::watch(reloader.clone(), std::time::Duration::from_secs(1));
    }
    let operations = weir_triggers::http::Operations { board, reload: Some(reloader), monitors };
    tokio
        .block_on(weir_triggers::http::serve(dispatcher, triggers, provenance, access, audit, operations, |at| {
            if let Some(grpc) = at.grpc {
                eprintln!("weir: gRPC (inference.GRPCInferenceService) on {grpc}");
            }
            // Tests and scripts wait for this line.
            eprintln!("weir: serving {} on {scheme}://{}/v2", pipelines.join(", "), at.http);
            if console {
                eprintln!("weir: console on {scheme}://{}/ui", at.http);
            }
        }))
        .map_err(|e| with_code::<anyhow::Error>(exit::INTERNAL)(anyhow::anyhow!("serving on {listen}: {e}")))
}

#[cfg(feature = "console")]
fn board_observer(board: &weir_triggers::http::Board) -> Arc<dyn weir_executor::Observer> {
    Arc::new(board.clone())
}

/// A build without the console has no board to observe with.
#[cfg(not(feature = "console"))]
fn board_observer(board: &weir_triggers::http::Board) -> Arc<dyn weir_executor::Observer> {
    match *board {}
}
