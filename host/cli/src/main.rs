//! The `weir` command line: the only place weir's crates are put together.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod chart;
mod commands;
mod graph;
mod scaffold;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use commands::{exit, Failure};

#[derive(Parser)]
#[command(name = "weir", version, about = "A serverless WebAssembly component host for ML inference pipelines")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one step component, or one pipeline of a manifest, on Open Inference Protocol v2 JSON.
    Run(commands::run::RunArgs),
    /// Serve a manifest's pipelines over HTTP (Open Inference Protocol v2).
    Serve(commands::serve::ServeArgs),
    /// Inspect, start, stop, promote or roll back a running server's experiments.
    Experiment(commands::experiment::ExperimentArgs),
    /// Write recorded invocations (chosen edges and their feedback) as JSON Lines or Parquet, for retraining.
    Export(commands::export::ExportArgs),
    /// Retrain a model step on recorded invocations and their feedback: export, train, check, push, canary.
    Retrain(commands::retrain::RetrainArgs),
    /// Make a running server re-read its manifest (checked fully; a bad one is refused).
    Reload(commands::experiment::ReloadArgs),
    /// Print a pipeline's dataflow graph (DOT or Mermaid).
    Graph(commands::graph::GraphArgs),
    /// Summarise energy, cost and CO2 per pipeline and step from the provenance store.
    Receipts(commands::receipts::ReceiptsArgs),
    /// Compile components ahead of time for a target (this machine's or another's), for `precompiled = [...]`.
    Compile(commands::compile::CompileArgs),
    /// Push a component (.wasm) or model (.onnx) to an OCI registry.
    Push(commands::oci::PushArgs),
    /// Pull a component or model from an OCI registry into the local cache (or a file).
    Pull(commands::oci::PullArgs),
    /// Scaffold a new step component crate wired to weir-sdk.
    New(commands::new::NewArgs),
    /// Create, list and revoke the API keys callers present to `weir serve`.
    Keys(commands::keys::KeysArgs),
    /// Make a key pair that signs artifacts (cosign-compatible).
    SigningKey(commands::signing::SigningKeyArgs),
    /// Sign an artifact already in a registry.
    Sign(commands::signing::SignArgs),
    /// Check that an artifact in a registry is signed by a trusted key.
    Verify(commands::signing::VerifyArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { exit::BAD_INPUT } else { 0 });
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter).with_target(false);
    // `WEIR_LOG_FORMAT=json`: one JSON object per line, for log pipelines.
    if std::env::var("WEIR_LOG_FORMAT").is_ok_and(|f| f == "json") {
        logs.json().init();
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init();
    }
    let result = match cli.command {
        Command::Run(args) => commands::run::run(args),
        Command::Serve(args) => commands::serve::serve(args),
        Command::Graph(args) => commands::graph::graph(args),
        Command::Experiment(args) => commands::experiment::experiment(args),
        Command::Reload(args) => commands::experiment::reload(args),
        Command::Export(args) => commands::export::export(args),
        Command::Retrain(args) => commands::retrain::retrain(args),
        Command::New(args) => commands::new::new_component(args),
        Command::Receipts(args) => commands::receipts::receipts(args),
        Command::Compile(args) => commands::compile::compile(args),
        Command::Push(args) => commands::oci::push(args),
        Command::Pull(args) => commands::oci::pull(args),
        Command::Keys(args) => commands::keys::keys(args),
        Command::SigningKey(args) => commands::signing::signing_key(args),
        Command::Sign(args) => commands::signing::sign(args),
        Command::Verify(args) => commands::signing::verify(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { code, error }) => {
            eprintln!("error: {error:#}");
            ExitCode::from(code)
        }
    }
}
