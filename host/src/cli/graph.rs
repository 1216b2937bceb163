//! `weir graph`: print a pipeline's dataflow graph.

use std::path::PathBuf;

use weir::manifest::Manifest;

use super::{exit, fail, with_code, Failure};

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
    let manifest = Manifest::load(&args.manifest).map_err(with_code(exit::BAD_INPUT))?;
    let pipeline = manifest.pipelines.get(&args.pipeline).ok_or_else(|| {
        let known: Vec<&str> = manifest.pipelines.keys().map(String::as_str).collect();
        fail(exit::BAD_INPUT)(anyhow::anyhow!("no pipeline named `{}` in {} (pipelines: {})", args.pipeline, args.manifest.display(), known.join(", ")))
    })?;
    print!(
        "{}",
        match args.format {
            Format::Dot => weir::graph::to_dot(pipeline),
            Format::Mermaid => weir::graph::to_mermaid(pipeline),
        }
    );
    Ok(())
}
