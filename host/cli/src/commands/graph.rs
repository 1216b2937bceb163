//! `weir graph`: print a pipeline's dataflow graph.

use std::path::PathBuf;

use weir_manifest::Manifest;

use super::{classified, exit, fail, Failure};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Dot,
    Mermaid,
}

#[derive(clap::Args)]
pub struct GraphArgs {
    /// The manifest (weir.toml).
    manifest: PathBuf,
    /// The pipeline to draw.
    pipeline: String,
    /// Output format: Graphviz DOT or a Mermaid flowchart.
    #[arg(long, value_enum, default_value = "dot")]
    format: Format,
}

pub fn graph(args: GraphArgs) -> Result<(), Failure> {
    let manifest = Manifest::load(&args.manifest).map_err(classified)?;
    let pipeline = manifest.pipelines.get(&args.pipeline).ok_or_else(|| {
        let known: Vec<&str> = manifest.pipelines.keys().map(String::as_str).collect();
        fail(exit::BAD_INPUT)(anyhow::anyhow!(
            "no pipeline named `{}` in {} (pipelines: {})",
            args.pipeline,
            args.manifest.display(),
            known.join(", ")
        ))
    })?;
    print!(
        "{}",
        match args.format {
            Format::Dot => crate::graph::to_dot(pipeline),
            Format::Mermaid => crate::graph::to_mermaid(pipeline),
        }
    );
    Ok(())
}
