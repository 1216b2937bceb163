//! `weir receipts`: summarise the provenance store, or reconcile a running
//! server's receipts with its process (`--reconcile`).

use std::path::PathBuf;

use weir_core::units;
use weir_manifest::Manifest;
use weir_observe::report;

use super::{classified, exit, fail, with_code, Failure};

#[derive(clap::Args)]
pub struct ReceiptsArgs {
    /// The manifest whose `[provenance]` store to read.
    #[arg(required_unless_present = "reconcile")]
    manifest: Option<PathBuf>,
    /// Reconcile the server at URL instead: the sum of its receipts' CPU time
    /// and energy against what its whole process used, over --window.
    #[arg(long, value_name = "URL", conflicts_with_all = ["manifest", "since", "chart"])]
    reconcile: Option<String>,
    /// How long to watch the server for --reconcile (run load meanwhile).
    #[arg(long, default_value = "10s", requires = "reconcile")]
    window: String,
    /// An API key with the `status` scope, for --reconcile.
    #[arg(long, env = "WEIR_API_KEY", hide_env_values = true, requires = "reconcile")]
    key: Option<String>,
    /// Only invocations from this far back (e.g. `1h`, `7d`); default: all kept.
    #[arg(long)]
    since: Option<String>,
    /// Also write an SVG bar chart of energy per step here.
    #[arg(long)]
    chart: Option<PathBuf>,
}

pub fn receipts(args: ReceiptsArgs) -> Result<(), Failure> {
    let Some(path) = &args.manifest else {
        let window =
            units::parse_duration(&args.window).map_err(|e| fail(exit::BAD_INPUT)(anyhow::anyhow!("--window: {e}")))?;
        let url = args.reconcile.as_deref().unwrap_or_default();
        return super::reconcile::reconcile(url, window, args.key.as_deref());
    };
    let manifest = Manifest::load(path).map_err(classified)?;
    let store = super::compose::open_provenance(&manifest)?.ok_or_else(|| {
        fail(exit::BAD_INPUT)(anyhow::anyhow!(
            "{} has no [provenance] table, so there are no receipts to read",
            path.display()
        ))
    })?;
    let since = match &args.since {
        Some(window) => {
            let window =
                units::parse_duration(window).map_err(|e| fail(exit::BAD_INPUT)(anyhow::anyhow!("--since: {e}")))?;
            weir_core::clock::unix_ms().saturating_sub(window.as_millis() as u64)
        }
        None => 0,
    };
    let records = store.records_since(since).map_err(with_code(exit::INTERNAL))?;
    let summary = report::summarise(&records);
    print!("{}", report::table(&summary));
    if let Some(path) = &args.chart {
        let title = format!("Energy per step, {} invocations", records.len());
        std::fs::write(path, crate::chart::svg(&summary, &title))
            .map_err(|e| fail(exit::INTERNAL)(anyhow::anyhow!("writing {}: {e}", path.display())))?;
        eprintln!("chart written to {}", path.display());
    }
    Ok(())
}
