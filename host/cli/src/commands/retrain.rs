//! `weir retrain`: the retraining hook. Recorded invocations of a model
//! step, with the feedback sent for its outputs, are exported to Parquet; a
//! trainer (any command: the operator's training script) turns them into a
//! candidate ONNX model; weir checks that the candidate has the champion's
//! inputs and outputs, pushes it to a registry, and writes the manifest with
//! the candidate as a new version of the model and a canary experiment whose
//! gate judges it on feedback — ready for `weir reload`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use weir_manifest::{ArtifactSource, Manifest, Source};
use weir_nn::{LoadedModel, ModelSpec, OnnxRuntime};
use weir_observe::export::Column;
use weir_registry::ArtifactRef;

use super::oci::{registry_failure, runtime, RegistryArgs};
use super::{classified, exit, fail, with_code, Failure};

#[derive(clap::Args)]
pub struct RetrainArgs {
    /// The manifest whose `[provenance]` store holds the invocations (stop the server first).
    manifest: PathBuf,
    /// The pipeline (needed when the manifest has several).
    #[arg(long)]
    pipeline: Option<String>,
    /// The step whose model to retrain (it must be granted exactly one model).
    #[arg(long)]
    step: String,
    /// The trainer, run by `sh -c` with WEIR_EXPORT (the Parquet file), WEIR_FEATURES (its input
    /// columns, comma-separated), WEIR_TARGET (the feedback column) and WEIR_CANDIDATE (where to
    /// write the ONNX model) set.
    #[arg(long)]
    trainer: String,
    /// The candidate's version: it is declared as `MODEL@VERSION`.
    #[arg(long)]
    version: String,
    /// Only invocations from this far back (e.g. `1h`, `7d`); default: all kept.
    #[arg(long)]
    since: Option<String>,
    /// Push the candidate here (`oci://HOST/REPOSITORY:TAG`); without it the manifest names the local file.
    #[arg(long)]
    push: Option<String>,
    /// Write the manifest with the candidate and its canary here (in the manifest's folder).
    #[arg(long)]
    manifest_out: PathBuf,
    /// Keep the candidate and the export here (default: next to --manifest-out).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Invocations per canary stage before it is judged.
    #[arg(long, default_value_t = 20)]
    min_requests: u64,
    #[command(flatten)]
    registry: RegistryArgs,
}

fn bad(message: String) -> Failure {
    fail(exit::BAD_INPUT)(anyhow!(message))
}

pub fn retrain(args: RetrainArgs) -> Result<(), Failure> {
    let manifest = Manifest::load(&args.manifest).map_err(classified)?;
    let pipeline = super::export::pick_pipeline(&manifest, args.pipeline.as_deref())?;
    let step = pipeline.step(&args.step).ok_or_else(|| {
        let steps: Vec<&str> = pipeline.steps.iter().map(|s| s.name.as_str()).collect();
        bad(format!("--step: pipeline `{}` has no step `{}` (steps: {steps:?})", pipeline.name, args.step))
    })?;
    let [model] = step.grants.nn.models.as_slice() else {
        return Err(bad(format!("--step: step `{}` must be granted exactly one model to retrain", step.name)));
    };
    let base = model.split('@').next().unwrap_or(model).to_string();
    let folder = args.manifest.parent().unwrap_or(Path::new(".")).canonicalize().map_err(with_code(exit::BAD_INPUT))?;
    let out_folder = args.manifest_out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if out_folder.canonicalize().ok().as_deref() != Some(folder.as_path()) {
        return Err(bad(format!(
            "--manifest-out must be in the manifest's folder {} (its sources are relative to it)",
            folder.display()
        )));
    }
    // The step's inputs are the features; the feedback on the outputs it makes is the target.
    let features: Vec<Column> = step
        .inputs
        .iter()
        .map(|r| match &r.source {
            Source::Input(name) => Column::Input(name.clone()),
            Source::Step { step, tensor } => Column::Step { step: step.clone(), tensor: tensor.clone() },
        })
        .collect();
    let output = pipeline
        .outputs
        .iter()
        .find(|o| matches!(&o.source, Source::Step { step: s, .. } if *s == step.name))
        .ok_or_else(|| {
            bad(format!(
                "no output of pipeline `{}` comes from step `{}`: there is no feedback to learn from",
                pipeline.name, step.name
            ))
        })?;
    let mut columns = features.clone();
    columns.push(Column::Output(output.name.clone()));
    columns.push(Column::Feedback(output.name.clone()));
    let (rows, _) =
        super::export::exported_rows(&manifest, &args.manifest, &pipeline.name, &columns, args.since.as_deref(), true)?;
    if rows.len() < 10 {
        return Err(bad(format!(
            "only {} invocations with feedback on `{}`: too few to retrain on",
            rows.len(),
            output.name
        )));
    }
    let work = args.work_dir.clone().unwrap_or_else(|| folder.join(format!("retrain-{base}-{}", args.version)));
    std::fs::create_dir_all(&work).map_err(with_code(exit::BAD_INPUT))?;
    let export = work.join("export.parquet");
    super::export::write_parquet(&export, &columns, &rows)?;
    let champion_error =
        mean_abs_error(&rows, &Column::Output(output.name.clone()), &Column::Feedback(output.name.clone()));
    eprintln!(
        "weir: {} invocations of {} exported to {}; the champion's MAE on `{}` there: {champion_error:.4}",
        rows.len(),
        pipeline.name,
        export.display(),
        output.name
    );
    // The trainer.
    let candidate = work.join(format!("{base}-{}.onnx", args.version));
    let names: Vec<String> = features.iter().map(ToString::to_string).collect();
    let status = std::process::Command::new("sh")
        .args(["-c", &args.trainer])
        .env("WEIR_EXPORT", &export)
        .env("WEIR_FEATURES", names.join(","))
        .env("WEIR_TARGET", Column::Feedback(output.name.clone()).to_string())
        .env("WEIR_CANDIDATE", &candidate)
        .status()
        .map_err(|e| bad(format!("--trainer could not start: {e}")))?;
    if !status.success() {
        return Err(fail(exit::STEP_FAILED)(anyhow!("the trainer failed ({status}); no candidate")));
    }
    check_candidate(&manifest, model, &candidate)?;
    // Where the candidate lives: the registry, or this file.
    let source = match &args.push {
        Some(reference) => {
            let reference: ArtifactRef = reference.parse().map_err(registry_failure)?;
            let bytes = std::fs::read(&candidate).map_err(with_code(exit::INTERNAL))?;
            let registry = args.registry.registry()?;
            let name = candidate.file_name().map(|n| n.to_string_lossy().into_owned());
            let pushed = runtime()?
                .block_on(registry.push(bytes, name.as_deref(), &reference, &args.registry.progress()))
                .map_err(registry_failure)?;
            eprintln!("weir: pushed the candidate to {} ({})", pushed.reference, pushed.manifest);
            format!("source = \"{}\"\ndigest = \"{}\"\n", pushed.reference, pushed.manifest)
        }
        None => format!("source = \"{}\"\n", candidate.display()),
    };
    let version = format!("{base}@{}", args.version);
    let experiment = format!("retrain-{base}-{}", args.version);
    let mut text = std::fs::read_to_string(&args.manifest).map_err(with_code(exit::BAD_INPUT))?;
    let _ = write!(
        text,
        "\n# Added by `weir retrain`: a candidate for model `{base}` trained on {} invocations with feedback,\n\
         # canaried against the champion; its gate bounds the MAE on `{}` from feedback by the champion's ({champion_error:.4}).\n\
         [models.\"{version}\"]\n{source}\n\
         [experiments.{experiment}]\npipeline = \"{}\"\nmode = \"canary\"\n\n\
         [[experiments.{experiment}.variants]]\nname = \"{}\"\nmodels = {{ {base} = \"{version}\" }}\n\n\
         [experiments.{experiment}.gate]\nstages = [10, 50, 100]\nmin_requests = {}\n\
         feedback = {{ output = \"{}\", max_mae = {champion_error:.4}, min_feedback = {} }}\n",
        rows.len(),
        output.name,
        pipeline.name,
        args.version,
        args.min_requests,
        output.name,
        args.min_requests,
    );
    // The written manifest must load as it is.
    let written = weir_manifest::parse(&args.manifest_out, &text).map_err(classified)?;
    drop(written);
    std::fs::write(&args.manifest_out, text).map_err(with_code(exit::BAD_INPUT))?;
    println!("{}", args.manifest_out.display());
    eprintln!(
        "weir: wrote {} with `{version}` and the canary `{experiment}`; apply it with `weir reload`",
        args.manifest_out.display()
    );
    Ok(())
}

/// The mean absolute error of one column against another over the rows (numbers, flat).
fn mean_abs_error(rows: &[serde_json::Value], answer: &Column, truth: &Column) -> f64 {
    let (mut sum, mut count) = (0.0, 0usize);
    for row in rows {
        let values = |c: &Column| -> Vec<f64> {
            row.get(c.to_string())
                .and_then(|v| v.as_array())
                .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
                .unwrap_or_default()
        };
        for (a, t) in values(answer).iter().zip(values(truth)) {
            sum += (a - t).abs();
            count += 1;
        }
    }
    if count == 0 {
        f64::NAN
    } else {
        sum / count as f64
    }
}

/// The candidate loads in ONNX Runtime with the champion's inputs and outputs (names and types).
fn check_candidate(manifest: &Manifest, model: &str, candidate: &Path) -> Result<(), Failure> {
    weir_nn::library::init().map_err(with_code(exit::INTERNAL))?;
    let load = |path: &Path| LoadedModel::load(ModelSpec::new(model, path), &OnnxRuntime);
    let new = load(candidate)
        .map_err(|e| bad(format!("the candidate {} is not a usable model: {e}", candidate.display())))?;
    let Some(ArtifactSource::File(path)) = manifest.models.get(model).map(|m| &m.artifact.source) else {
        eprintln!("weir: the champion `{model}` is in a registry: its signature is not compared");
        return Ok(());
    };
    let old = load(path).map_err(|e| bad(format!("the champion `{model}` does not load: {e}")))?;
    let signature = |m: &LoadedModel| {
        let io = |specs: &[weir_nn::TensorSpec]| {
            specs.iter().map(|t| format!("{} {}", t.name, t.type_name)).collect::<Vec<_>>()
        };
        (io(&m.inputs), io(&m.outputs))
    };
    if signature(&new) != signature(&old) {
        return Err(bad(format!(
            "the candidate's inputs and outputs {:?} are not the champion's {:?}: steps could not use it",
            signature(&new),
            signature(&old)
        )));
    }
    Ok(())
}
