//! The `weir` command line.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;


use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use weir::oip::{self, InferenceResponse, OipError};
use weir::{units, EngineOptions, InvokeError, LoadError, Runtime, RuntimeOptions, StepGrants, StepLimits};

/// Exit codes, documented in the README.
mod exit {
    /// Something else went wrong (I/O on output, engine start-up).
    pub const INTERNAL: u8 = 1;
    /// The request was wrong: bad arguments, unreadable or invalid input.
    pub const BAD_INPUT: u8 = 2;
    /// The component could not be loaded (missing, not a component, wrong exports/imports).
    pub const BAD_COMPONENT: u8 = 3;
    /// The step ran and failed: trap, timeout, memory or fuel limit, step error, malformed output.
    pub const STEP_FAILED: u8 = 4;
}

#[derive(Parser)]
#[command(name = "weir", version, about = "A serverless WebAssembly component host for ML inference pipelines")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one step component once on Open Inference Protocol v2 JSON tensors.
    Run(RunArgs),
    /// Scaffold a new step component crate wired to weir-sdk.
    New(NewArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// The component (.wasm) to run.
    component: PathBuf,
    /// OIP v2 inference request JSON: a file, or `-` for standard input.
    #[arg(long, short)]
    input: String,
    /// A configuration value for the step (repeatable): `--config key=value`.
    #[arg(long = "config", short = 'c', value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// Declare a model and grant it to the step (repeatable):
    /// `--model NAME=PATH.onnx[,device=cpu|gpu|auto][,threads=N][,sessions=N]`.
    #[arg(long = "model", short = 'm', value_name = "NAME=PATH[,OPTIONS]")]
    models: Vec<String>,
    /// Memory limit of the step, e.g. `64MiB`.
    #[arg(long, default_value = "64MiB")]
    memory: String,
    /// Wall-clock limit of the step, e.g. `200ms`, `10s`.
    #[arg(long, default_value = "10s")]
    timeout: String,
    /// Guest instruction budget (turns fuel metering on).
    #[arg(long)]
    fuel: Option<u64>,
    /// Write the response here instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Compiled-component cache folder (default: $WEIR_CACHE_DIR or ~/.cache/weir).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Do not read or write the compiled-component cache.
    #[arg(long)]
    no_cache: bool,
    /// Indent the response JSON.
    #[arg(long)]
    pretty: bool,
    /// Print load and run statistics to standard error.
    #[arg(long, short)]
    verbose: bool,
}

#[derive(clap::Args)]
struct NewArgs {
    /// Crate name of the new component (e.g. `my-step`).
    name: String,
    /// Folder to create it in.
    #[arg(long, default_value = ".")]
    path: PathBuf,
    /// Path of the weir-sdk crate (default: the checkout weir was built from).
    #[arg(long, env = "WEIR_SDK_PATH")]
    sdk_path: Option<PathBuf>,
}

/// An error with the exit code it deserves.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

fn fail(code: u8) -> impl FnOnce(anyhow::Error) -> Failure {
    move |error| Failure { code, error }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { exit::BAD_INPUT } else { 0 });
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Run(args) => run_step(args),
        Command::New(args) => new_component(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { code, error }) => {
            eprintln!("error: {error:#}");
            ExitCode::from(code)
        }
    }
}

fn new_component(args: NewArgs) -> Result<(), Failure> {
    let sdk = args.sdk_path.unwrap_or_else(weir::scaffold::default_sdk_path);
    let root = weir::scaffold::scaffold(&args.name, &args.path, &sdk).map_err(|e| fail(exit::BAD_INPUT)(e.into()))?;
    println!("Created {}. Next:", root.display());
    println!("  cd {} && cargo component build --release", root.display());
    println!(
        "  weir run target/wasm32-wasip1/release/{}.wasm --input input.json",
        args.name.replace('-', "_")
    );
    Ok(())
}

fn parse_config(pairs: &[String]) -> Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|pair| {
            let (key, value) = pair
                .split_once('=')
                .with_context(|| format!("`--config {pair}` is not KEY=VALUE"))?;
            anyhow::ensure!(!key.is_empty(), "`--config {pair}` has an empty key");
            Ok((key.to_string(), value.to_string()))
        })
        .collect()
}

/// `NAME=PATH[,device=...][,threads=N][,sessions=N]`
fn parse_model(arg: &str) -> Result<weir::nn::ModelSpec> {
    let mut parts = arg.split(',');
    let (name, path) = parts
        .next()
        .and_then(|first| first.split_once('='))
        .with_context(|| format!("`--model {arg}` is not NAME=PATH.onnx[,device=cpu|gpu|auto][,threads=N]"))?;
    anyhow::ensure!(!name.is_empty(), "`--model {arg}` has an empty model name");
    anyhow::ensure!(Path::new(path).is_file(), "`--model {arg}`: model file `{path}` does not exist");
    let mut spec = weir::nn::ModelSpec::new(name, path);
    for option in parts {
        let (key, value) = option.split_once('=').with_context(|| format!("`--model {arg}`: option `{option}` is not KEY=VALUE"))?;
        let number = || value.parse::<usize>().ok().filter(|n| *n > 0).with_context(|| format!("`--model {arg}`: {key} must be a positive number"));
        match key {
            "device" => spec.device = value.parse().map_err(|e: String| anyhow::anyhow!("`--model {arg}`: {e}"))?,
            "threads" => spec.threads = number()?,
            "sessions" => spec.max_sessions = number()?,
            other => anyhow::bail!("`--model {arg}`: unknown option `{other}` (device, threads, sessions)"),
        }
    }
    if spec.device == weir::nn::DeviceChoice::Gpu {
        // Fail now rather than inside the step: `gpu` never falls back.
        if let Err(reason) = weir::nn::device::place(spec.device) {
            anyhow::bail!("`--model {arg}`: device=gpu, but {reason}; use device=auto to fall back to the CPU");
        }
    }
    Ok(spec)
}

fn read_input(input: &str) -> Result<Vec<u8>> {
    if input == "-" {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes).context("reading the request from standard input")?;
        return Ok(bytes);
    }
    std::fs::read(input).with_context(|| format!("cannot read input file `{input}`"))
}

fn run_step(args: RunArgs) -> Result<(), Failure> {
    let bad_input = fail(exit::BAD_INPUT);
    let limits = StepLimits {
        memory_bytes: units::parse_bytes(&args.memory).map_err(|e| bad_input(anyhow::anyhow!("--memory: {e}")))?,
        timeout: units::parse_duration(&args.timeout)
            .map_err(|e| fail(exit::BAD_INPUT)(anyhow::anyhow!("--timeout: {e}")))?,
        fuel: args.fuel,
    };
    let models = args.models.iter().map(|m| parse_model(m)).collect::<Result<Vec<_>>>().map_err(fail(exit::BAD_INPUT))?;
    if !models.is_empty() {
        // Say what is missing now, not as a model error inside the step.
        weir::nn::library::init().map_err(|e| fail(exit::INTERNAL)(e.into()))?;
    }
    let grants = StepGrants {
        config: parse_config(&args.config).map_err(fail(exit::BAD_INPUT))?,
        nn: weir::nn::NnGrants { models: models.iter().map(|m| m.name.clone()).collect(), load_model_bytes: false },
    };
    let request_bytes = read_input(&args.input).map_err(fail(exit::BAD_INPUT))?;
    let request = oip::parse_request(&request_bytes).map_err(|e| fail(exit::BAD_INPUT)(input_error(&args.input, e)))?;
    let inputs = oip::request_tensors(&request).map_err(|e| fail(exit::BAD_INPUT)(input_error(&args.input, e)))?;

    let options = RuntimeOptions {
        engine: EngineOptions {
            // One invocation: a small pool is plenty.
            max_instances: 4,
            max_memory_bytes: limits.memory_bytes.max(EngineOptions::default().max_memory_bytes),
            fuel: args.fuel.is_some(),
        },
        cache_dir: if args.no_cache { None } else { Some(args.cache_dir.clone().unwrap_or_else(weir::cache::CompiledCache::default_root)) },
        ..RuntimeOptions::default()
    };
    let runtime = Runtime::new(options).map_err(|e| fail(exit::INTERNAL)(e.into()))?;
    for model in models {
        runtime.register_model(model);
    }
    let component = runtime.load_file(&args.component).map_err(load_failure)?;
    let step = step_name(&args.component);
    if args.verbose {
        eprintln!(
            "loaded {} ({}): {:?} in {:?}, linked in {:?}",
            component.name, component.digest, component.load.compile_source, component.load.compile_time, component.load.link_time
        );
    }

    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| fail(exit::INTERNAL)(e.into()))?;
    let result = tokio.block_on(runtime.invoke(&component, &step, &grants, &limits, inputs));
    let output = result.map_err(invoke_failure)?;
    weir::logs::emit(&step, &output.logs);
    if args.verbose {
        let s = &output.stats;
        eprintln!(
            "ran {step}: wall {:?} (instantiate {:?}), peak memory {} bytes{}",
            s.wall,
            s.instantiate,
            s.peak_memory_bytes,
            s.fuel_consumed.map(|f| format!(", fuel {f}")).unwrap_or_default()
        );
        for model in &s.nn.models {
            let fallback = model.fallback_reason.as_deref().map(|r| format!(" (auto fell back: {r})")).unwrap_or_default();
            eprintln!("model {} on {}{fallback}", model.name, model.device);
        }
        if s.nn.computes > 0 {
            eprintln!("inference: {} call(s), {:?} inside ONNX Runtime", s.nn.computes, s.nn.inference_time);
        }
    }

    let outputs = oip::select_outputs(request.outputs.as_deref(), output.outputs).map_err(|e| fail(exit::BAD_INPUT)(e.into()))?;
    let response = InferenceResponse {
        model_name: step,
        model_version: None,
        id: request.id,
        parameters: None,
        outputs: outputs.iter().map(oip::tensor_to_output).collect(),
    };
    write_response(&response, args.output.as_deref(), args.pretty).map_err(fail(exit::INTERNAL))
}

fn input_error(source: &str, error: OipError) -> anyhow::Error {
    let source = if source == "-" { "standard input" } else { source };
    anyhow::anyhow!("{source}: {error}")
}

fn load_failure(error: LoadError) -> Failure {
    Failure { code: exit::BAD_COMPONENT, error: error.into() }
}

fn invoke_failure(error: InvokeError) -> Failure {
    let code = if error.is_caller_error() { exit::BAD_INPUT } else { exit::STEP_FAILED };
    Failure { code, error: error.into() }
}

/// The step's name in logs and responses: the component's file stem.
fn step_name(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "step".into())
}

fn write_response(response: &InferenceResponse, output: Option<&Path>, pretty: bool) -> Result<()> {
    let mut json = if pretty { serde_json::to_string_pretty(response)? } else { serde_json::to_string(response)? };
    json.push('\n');
    match output {
        Some(path) => std::fs::write(path, json).with_context(|| format!("writing `{}`", path.display())),
        None => {
            use std::io::Write;
            std::io::stdout().write_all(json.as_bytes()).context("writing the response to standard output")
        }
    }
}

