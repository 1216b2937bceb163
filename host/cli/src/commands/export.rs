//! `weir export`: recorded invocations of a pipeline as JSON Lines for
//! (re)training — chosen edges and the feedback sent for them; sensitive
//! edges are never written.

use std::io::Write;
use std::path::PathBuf;

use weir_core::units;
use weir_manifest::{Manifest, Pipeline};
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
    /// Write here (default: standard output; Parquet needs a file).
    #[arg(long)]
    out: Option<PathBuf>,
    /// `jsonl` (default; `parquet` when --out ends in `.parquet`) or `parquet`.
    #[arg(long)]
    format: Option<String>,
}

pub fn export(args: ExportArgs) -> Result<(), Failure> {
    let bad = |e: String| fail(exit::BAD_INPUT)(anyhow::anyhow!(e));
    let manifest = Manifest::load(&args.manifest).map_err(classified)?;
    let pipeline = pick_pipeline(&manifest, args.pipeline.as_deref())?;
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
    let parquet = match args.format.as_deref() {
        Some("parquet") => true,
        Some("jsonl") => false,
        None => args.out.as_ref().is_some_and(|p| p.extension().is_some_and(|e| e == "parquet")),
        Some(other) => return Err(bad(format!("--format: `{other}` is not `jsonl` or `parquet`"))),
    };
    if parquet && args.out.is_none() {
        return Err(bad("--format parquet needs --out FILE".into()));
    }
    let (rows, skipped) =
        exported_rows(&manifest, &args.manifest, &pipeline.name, &columns, args.since.as_deref(), args.with_feedback)?;
    match &args.out {
        Some(path) if parquet => write_parquet(path, &columns, &rows)?,
        _ => {
            let mut out: Box<dyn Write> = match &args.out {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .map_err(|e| fail(exit::BAD_INPUT)(anyhow::anyhow!("--out {}: {e}", path.display())))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            for line in &rows {
                writeln!(out, "{line}").map_err(with_code(exit::INTERNAL))?;
            }
            out.flush().map_err(with_code(exit::INTERNAL))?;
        }
    }
    eprintln!(
        "weir: exported {} invocations of {}; left out {} failed, {} without feedback; {} sensitive values and {} values not kept written as null",
        rows.len(), pipeline.name, skipped.failed, skipped.without_feedback, skipped.sensitive, skipped.not_kept
    );
    Ok(())
}

/// The pipeline named, or the manifest's only one.
pub(super) fn pick_pipeline<'m>(manifest: &'m Manifest, name: Option<&str>) -> Result<&'m Pipeline, Failure> {
    let bad = |e: String| fail(exit::BAD_INPUT)(anyhow::anyhow!(e));
    let known: Vec<&String> = manifest.pipelines.keys().collect();
    match (name, known.as_slice()) {
        (Some(name), _) => manifest.pipelines.get(name),
        (None, [only]) => manifest.pipelines.get(*only),
        (None, _) => return Err(bad(format!("name the pipeline with --pipeline (pipelines: {known:?})"))),
    }
    .ok_or_else(|| bad(format!("--pipeline: no pipeline named `{}` (pipelines: {known:?})", name.unwrap_or_default())))
}

/// Rows of `pipeline`'s recorded invocations (from `since` back), with what was left out.
pub(super) fn exported_rows(
    manifest: &Manifest,
    path: &std::path::Path,
    pipeline: &str,
    columns: &[Column],
    since: Option<&str>,
    with_feedback: bool,
) -> Result<(Vec<serde_json::Value>, Skipped), Failure> {
    let bad = |e: String| fail(exit::BAD_INPUT)(anyhow::anyhow!(e));
    let store = super::compose::open_provenance(manifest)?
        .ok_or_else(|| bad(format!("{} has no [provenance] table, so nothing was recorded", path.display())))?;
    let since = match since {
        Some(window) => {
            let window = units::parse_duration(window).map_err(|e| bad(format!("--since: {e}")))?;
            weir_core::clock::unix_ms().saturating_sub(window.as_millis() as u64)
        }
        None => 0,
    };
    let records = store.records_since(since).map_err(with_code(exit::INTERNAL))?;
    let mut skipped = Skipped::default();
    let rows = records
        .iter()
        .filter(|r| r.pipeline == pipeline)
        .filter_map(|r| row(r, columns, with_feedback, &mut skipped))
        .collect();
    Ok((rows, skipped))
}

/// Rows as one Parquet file.
pub(super) fn write_parquet(
    path: &std::path::Path,
    columns: &[Column],
    rows: &[serde_json::Value],
) -> Result<(), Failure> {
    let names: Vec<String> = columns.iter().map(ToString::to_string).collect();
    let rows: Vec<super::parquet::Row> = rows.iter().map(|r| super::parquet::Row::of(r, &names)).collect();
    super::parquet::write(path, &names, &rows)
        .map_err(|e| fail(exit::INTERNAL)(anyhow::anyhow!("--out {}: {e}", path.display())))
}
