//! `weir run`: one step component, or one pipeline of a manifest, once.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use weir_core::{units, ModelGrants, StepGrants, StepLimits, Tensor};
use weir_executor::artifacts::Resolver;
use weir_executor::ResidencyPolicy;
use weir_manifest::{ArtifactDecl, Manifest};
use weir_observe::receipts::invocation_receipt;
use weir_registry::RegistryOptions;
use weir_sandbox::compiled::CompiledCache;
use weir_sandbox::{EngineOptions, Sandbox, SandboxOptions};
use weir_triggers::oip::{self, InferenceRequest, InferenceResponse, OipError};

use super::{classified, exit, fail, with_code, Failure};

#[derive(clap::Args)]
pub struct RunArgs {
    /// A component (.wasm) to run as one step, or a manifest (.toml).
    target: PathBuf,
    /// With a manifest: the pipeline to run (optional when it has only one).
    pipeline: Option<String>,
    /// OIP v2 inference request JSON: a file, or `-` for standard input.
    #[arg(long, short)]
    input: String,
    /// A configuration value for the step (repeatable): `--config key=value`.
    #[arg(long = "config", short = 'c', value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// Declare a model and grant it to the step (repeatable):
    /// `--model NAME=PATH.onnx[,device=cpu|gpu|auto][,threads=N]`.
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
    /// With a manifest: return every step's outputs and timings.
    #[arg(long)]
    trace: bool,
    /// With a manifest: run up to this step and return its outputs.
    #[arg(long)]
    until: Option<String>,
    /// Indent the response JSON.
    #[arg(long)]
    pretty: bool,
    /// Print load and run statistics to standard error.
    #[arg(long, short)]
    verbose: bool,
}

pub fn run(args: RunArgs) -> Result<(), Failure> {
    if args.target.extension().is_some_and(|e| e == "toml") {
        run_pipeline(args)
    } else {
        if args.pipeline.is_some() || args.trace || args.until.is_some() {
            return Err(fail(exit::BAD_INPUT)(anyhow::anyhow!(
                "a pipeline name, --trace and --until need a manifest (weir.toml), not a component"
            )));
        }
        run_step(args)
    }
}

fn tokio_runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(with_code(exit::INTERNAL))
}

fn read_request(input: &str) -> Result<(InferenceRequest, Vec<Tensor>), Failure> {
    let bytes = read_input(input).map_err(fail(exit::BAD_INPUT))?;
    // A local file is the operator's own: no body limit, the same checks.
    let limits = oip::RequestLimits { max_body_bytes: bytes.len() as u64, ..oip::RequestLimits::default() };
    let request = oip::parse_request(&bytes, &limits).map_err(|e| fail(exit::BAD_INPUT)(input_error(input, e)))?;
    let tensors = oip::request_tensors(&request).map_err(|e| fail(exit::BAD_INPUT)(input_error(input, e)))?;
    Ok((request, tensors))
}

fn run_pipeline(args: RunArgs) -> Result<(), Failure> {
    let manifest = Manifest::load(&args.target).map_err(classified)?;
    weir_triggers::sections::check_names(&manifest).map_err(classified)?;
    let name = match (&args.pipeline, manifest.pipelines.len()) {
        (Some(name), _) => name.clone(),
        (None, 1) => manifest.pipelines.keys().next().cloned().unwrap_or_default(),
        (None, _) => {
            let known: Vec<&str> = manifest.pipelines.keys().map(String::as_str).collect();
            return Err(fail(exit::BAD_INPUT)(anyhow::anyhow!("name the pipeline to run: {}", known.join(", "))));
        }
    };
    let (request, inputs) = read_request(&args.input)?;
    let mut options = oip::run_options(&request).map_err(|e| fail(exit::BAD_INPUT)(input_error(&args.input, e)))?;
    options.trace |= args.trace;
    options.until = args.until.clone().or(options.until);
    // One run at a terminal: the whole receipt, unless the request asks for totals.
    let compact_asked = request.parameters.as_ref().and_then(|p| p.get("receipt")).is_some_and(|r| r == "compact");
    options.full_receipt |= !compact_asked;
    let sandbox = SandboxOptions {
        cache_dir: cache_dir(&args),
        engine: EngineOptions { fuel: manifest.needs_fuel(), ..EngineOptions::default() },
        ..SandboxOptions::default()
    };
    let (executor, _) = super::compose::executor(
        manifest,
        sandbox,
        RegistryOptions::default(),
        ResidencyPolicy::default(),
        Vec::new(),
    )?;
    let output = tokio_runtime()?.block_on(executor.run(&name, inputs, &options)).map_err(classified)?;
    if args.verbose {
        for step in &output.steps {
            let (wall, inference) = (step.stats.wall, step.stats.nn.inference_time);
            eprintln!(
                "step {}: started after {:?}, wall {wall:?}, inference {inference:?}",
                step.step, step.started_after
            );
        }
    }
    let receipt = invocation_receipt(&output, &executor.manifest().accounting);
    let sensitive = executor.pipeline(&name).map(|p| p.sensitive.clone()).unwrap_or_default();
    let response =
        oip::pipeline_response(&name, &request, &output, &options, Some(&receipt), &sensitive).map_err(classified)?;
    write_response(&response, args.output.as_deref(), args.pretty).map_err(fail(exit::INTERNAL))
}

/// The compiled-component cache to use, if any.
fn cache_dir(args: &RunArgs) -> Option<PathBuf> {
    if args.no_cache {
        return None;
    }
    Some(args.cache_dir.clone().unwrap_or_else(CompiledCache::default_root))
}

fn parse_config(pairs: &[String]) -> Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|pair| {
            let (key, value) = pair.split_once('=').with_context(|| format!("`--config {pair}` is not KEY=VALUE"))?;
            anyhow::ensure!(!key.is_empty(), "`--config {pair}` has an empty key");
            Ok((key.to_string(), value.to_string()))
        })
        .collect()
}

/// `NAME=PATH[,device=...][,threads=N]`
fn parse_model(arg: &str) -> Result<weir_nn::ModelSpec> {
    let mut parts = arg.split(',');
    let (name, path) = parts
        .next()
        .and_then(|first| first.split_once('='))
        .with_context(|| format!("`--model {arg}` is not NAME=PATH.onnx[,device=cpu|gpu|auto][,threads=N]"))?;
    anyhow::ensure!(!name.is_empty(), "`--model {arg}` has an empty model name");
    anyhow::ensure!(Path::new(path).is_file(), "`--model {arg}`: model file `{path}` does not exist");
    let mut spec = weir_nn::ModelSpec::new(name, path);
    for option in parts {
        let (key, value) =
            option.split_once('=').with_context(|| format!("`--model {arg}`: option `{option}` is not KEY=VALUE"))?;
        let number = || {
            value
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .with_context(|| format!("`--model {arg}`: {key} must be a positive number"))
        };
        match key {
            "device" => spec.device = value.parse().map_err(|e: String| anyhow::anyhow!("`--model {arg}`: {e}"))?,
            "threads" => spec.threads = number()?,
            other => anyhow::bail!("`--model {arg}`: unknown option `{other}` (device, threads)"),
        }
    }
    if spec.device == weir_nn::DeviceChoice::Gpu {
        // Fail now rather than inside the step: `gpu` never falls back.
        if let Err(reason) = weir_nn::device::place(spec.device) {
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
    let models =
        args.models.iter().map(|m| parse_model(m)).collect::<Result<Vec<_>>>().map_err(fail(exit::BAD_INPUT))?;
    if !models.is_empty() {
        // Say what is missing now, not as a model error inside the step.
        weir_nn::library::init().map_err(|e| fail(exit::INTERNAL)(e.into()))?;
    }
    let grants = StepGrants {
        config: parse_config(&args.config).map_err(fail(exit::BAD_INPUT))?,
        nn: ModelGrants { models: models.iter().map(|m| m.name.clone()).collect(), load_model_bytes: false },
        ..StepGrants::default()
    };
    let (request, inputs) = read_request(&args.input)?;

    let options = SandboxOptions {
        engine: EngineOptions {
            // One invocation: a small pool is plenty.
            max_instances: 4,
            max_memory_bytes: limits.memory_bytes.max(EngineOptions::default().max_memory_bytes),
            fuel: args.fuel.is_some(),
        },
        cache_dir: cache_dir(&args),
        ..SandboxOptions::default()
    };
    let sandbox = Sandbox::new(options).map_err(|e| fail(exit::INTERNAL)(e.into()))?;
    for model in models {
        sandbox.register_model(model);
    }
    let (path, step) = component_path(&args.target)?;
    let component = sandbox.load_file(&path).map_err(classified)?;
    if args.verbose {
        eprintln!(
            "loaded {} ({}): {:?} in {:?}, linked in {:?}",
            component.name,
            component.digest,
            component.load.compile_source,
            component.load.compile_time,
            component.load.link_time
        );
    }

    let result = tokio_runtime()?.block_on(sandbox.invoke(&component, &step, &grants, &limits, inputs));
    let output = result.map_err(classified)?;
    weir_sandbox::logs::emit(&step, None, &output.logs);
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
            let fallback =
                model.fallback_reason.as_deref().map(|r| format!(" (auto fell back: {r})")).unwrap_or_default();
            eprintln!("model {} on {}{fallback}", model.name, model.device);
        }
        if s.nn.computes > 0 {
            eprintln!("inference: {} call(s), {:?} inside ONNX Runtime", s.nn.computes, s.nn.inference_time);
        }
    }

    let outputs =
        oip::select_outputs(request.outputs.as_deref(), output.outputs).map_err(|e| fail(exit::BAD_INPUT)(e.into()))?;
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

/// The component's local path (fetched into the OCI cache for an `oci://`
/// target) and the step's name in logs and responses: the file stem, or the
/// last part of the repository.
fn component_path(target: &Path) -> Result<(PathBuf, String), Failure> {
    let text = target.to_string_lossy();
    if !weir_registry::ArtifactRef::is_oci(&text) {
        let step = target.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "step".into());
        return Ok((target.to_path_buf(), step));
    }
    let reference: weir_registry::ArtifactRef = text.parse().map_err(classified)?;
    let step = reference.repository().rsplit('/').next().unwrap_or("step").to_string();
    let decl = ArtifactDecl::oci(reference);
    let resolved = tokio_runtime()?
        .block_on(Resolver::default().resolve(&decl, weir_registry::ArtifactKind::Component))
        .map_err(classified)?;
    Ok((resolved.path, step))
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
