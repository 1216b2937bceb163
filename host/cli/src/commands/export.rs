//! `weir export`: recorded invocations of a pipeline as JSON Lines for
//! (re)training — chosen edges and the feedback sent for them; sensitive
//! edges are never written.

use std::io::Write;
use std::path::PathBuf;

use weir_core::units;
use weir_manifest::Manifest;
use weir_observe::export::{row, Column, Skipped};

use super::{classified, exit, fail, with_code, Failure};

#[derive(clap::Args)]
pub struct ExportArgs {
    /// The manifest whose `[provenance]` store to read (stop the server first: the store has one user).
    manifest: PathBuf,
    /// The pipeline (needed when the manifest has several).
    #[arg(long)]
    pipeline: Option<String>,
    /// Edges to write: `input.NAME`, `output.NAME`, `feedback.NAME`, `STEP.TENSOR` (repeatable);
    /// default: the pipeline's inputs, outputs and their feedback.
    #[arg(long = "column")]
    columns: Vec<String>,
    /// Only invocations from this far back (e.g. `1h`, `7d`); default: all kept.
    #[arg(long)]
    since: Option<String>,
    /// Only invocations that have feedback.
    #[arg(long)]
    with_feedback: bool,
    /// Write here (default: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn export(args: ExportArgs) -> Result<(), Failure> {
    let bad = |e: String| fail(exit::BAD_INPUT)(anyhow::anyhow!(e));
    let manifest = Manifest::load(&args.manifest).map_err(classified)?;
    let known: Vec<&String> = manifest.pipelines.keys().collect();
    let pipeline = match (&args.pipeline, known.as_slice()) {
        (Some(name), _) => manifest.pipelines.get(name),
        (None, [only]) => manifest.pipelines.get(*only),
        (None, _) => return Err(bad(format!("name the pipeline to export with --pipeline (pipelines: {known:?})"))),
    }
    .ok_or_else(|| {
        bad(format!(
            "--pipeline: no pipeline named `{}` (pipelines: {known:?})",
            args.pipeline.as_deref().unwrap_or_default()
        ))
    })?;
    let columns: Vec<Column> = if args.columns.is_empty() {
        let inputs = pipeline.request_inputs().into_iter().map(|n| Column::Input(n.into()));
        let outputs = pipeline.outputs.iter().map(|o| Column::Output(o.name.clone()));
        let truth = pipeline.outputs.iter().map(|o| Column::Feedback(o.name.clone()));
        inputs.chain(outputs).chain(truth).collect()
    } else {
        args.columns
            .iter()
            .map(|c| c.parse().map_err(|e: String| bad(format!("--column: {e}"))))
            .collect::<Result<_, _>>()?
    };
    let store = super::compose::open_provenance(&manifest)?.ok_or_else(|| {
        bad(format!("{} has no [provenance] table, so nothing was recorded", args.manifest.display()))
    })?;
    let since = match &args.since {
        Some(window) => {
            let window = units::parse_duration(window).map_err(|e| bad(format!("--since: {e}")))?;
            weir_core::clock::unix_ms().saturating_sub(window.as_millis() as u64)
        }
        None => 0,
    };
    let records = store.records_since(since).map_err(with_code(exit::INTERNAL))?;
    let mut out: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .map_err(|e| fail(exit::BAD_INPUT)(anyhow::anyhow!("--out {}: {e}", path.display())))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut skipped = Skipped::default();
    let mut written = 0u64;
    for record in records.iter().filter(|r| r.pipeline == pipeline.name) {
        if let Some(line) = row(record, &columns, args.with_feedback, &mut skipped) {
            writeln!(out, "{line}").map_err(with_code(exit::INTERNAL))?;
            written += 1;
        }
    }
    out.flush().map_err(with_code(exit::INTERNAL))?;
    eprintln!(
        "weir: exported {written} invocations of {}; left out {} failed, {} without feedback; {} sensitive values and {} values not kept written as null",
        pipeline.name, skipped.failed, skipped.without_feedback, skipped.sensitive, skipped.not_kept
    );
    Ok(())
}
