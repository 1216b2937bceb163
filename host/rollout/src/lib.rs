//! weir-rollout: experiments on pipelines' traffic.
//!
//! - [`rollout`]: one experiment running — which variant answers a request
//!   (weighted, sticky, or by a canary's stage), its state, the operator's
//!   actions and every decision with its figures;
//! - [`gate`]: a canary's stages and criteria (p99, error rate, agreement);
//! - [`shadow`]: copies of requests run off the callers' path, reusing the
//!   steps champion and challenger share;
//! - [`stats`]: what each variant did.

pub mod gate;
pub mod rollout;
pub mod shadow;
pub mod stats;

use std::collections::BTreeMap;
use std::sync::Arc;

use weir_manifest::Manifest;

pub use rollout::{Action, Decision, Phase, Rollout, RolloutStatus, Routed};
pub use shadow::ShadowJob;
pub use stats::Run;

/// Where every component and model an experiment's variants run comes
/// from (source and pin, by name): an experiment keeps its state across a
/// reload only if these are unchanged too, so a promoted challenger never
/// goes on serving a different artifact than the one the gate judged.
#[derive(Debug, Clone, PartialEq)]
pub struct Artifacts(Vec<(String, weir_manifest::ArtifactSource, Option<weir_core::Digest>)>);

impl Artifacts {
    pub fn of(manifest: &Manifest, decl: &weir_manifest::Experiment) -> Artifacts {
        let champion = manifest.pipelines.get(&decl.pipeline);
        let pipelines = champion.into_iter().chain(decl.variants.iter().map(|v| &v.pipeline));
        let mut found = std::collections::BTreeMap::new();
        for step in pipelines.flat_map(|p| &p.steps) {
            if let Some(c) = manifest.components.get(&step.component) {
                found.insert(format!("component {}", c.name), (c.artifact.source.clone(), c.artifact.pin.clone()));
            }
            for m in step.grants.nn.models.iter().filter_map(|m| manifest.models.get(m)) {
                found.insert(format!("model {}", m.name), (m.artifact.source.clone(), m.artifact.pin.clone()));
            }
        }
        Artifacts(found.into_iter().map(|(name, (source, pin))| (name, source, pin)).collect())
    }
}

/// Every experiment of one manifest, by name.
#[derive(Default)]
pub struct Rollouts {
    by_name: BTreeMap<String, Arc<Rollout>>,
}

impl Rollouts {
    /// The manifest's experiments; one that `previous` already runs
    /// unchanged (same declaration, same champion) keeps its state and counts.
    pub fn new(manifest: &Manifest, previous: Option<&Rollouts>) -> Rollouts {
        let by_name = manifest
            .experiments
            .values()
            .map(|decl| {
                let champion = &manifest.pipelines[&decl.pipeline];
                let artifacts = Artifacts::of(manifest, decl);
                let kept = previous
                    .and_then(|p| p.by_name.get(&decl.name))
                    .filter(|r| r.runs(decl, champion) && r.artifacts() == &artifacts);
                let rollout =
                    kept.cloned().unwrap_or_else(|| Arc::new(Rollout::new(decl.clone(), champion.clone(), artifacts)));
                (decl.name.clone(), rollout)
            })
            .collect();
        Rollouts { by_name }
    }

    /// The experiment taking `pipeline`'s traffic.
    pub fn on(&self, pipeline: &str) -> Option<&Arc<Rollout>> {
        self.by_name.values().find(|r| r.decl().pipeline == pipeline)
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Rollout>> {
        self.by_name.get(name)
    }

    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    pub fn statuses(&self) -> Vec<RolloutStatus> {
        self.by_name.values().map(|r| r.status()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Per-variant counts in the Prometheus text format (experiment and
    /// variant names are letters, digits, `-` and `_`: no escaping needed).
    pub fn metrics_text(&self, out: &mut String) {
        use std::fmt::Write;
        if self.by_name.is_empty() {
            return;
        }
        let statuses = self.statuses();
        let mut family = |name: &str, kind: &str, help: &str, rows: &mut dyn Iterator<Item = (String, f64)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in rows {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        };
        let variants = || statuses.iter().flat_map(|s| s.variants.iter().map(move |v| (s, v)));
        let label = |s: &RolloutStatus, v: &str| format!("experiment=\"{}\",variant=\"{v}\"", s.name);
        family(
            "weir_experiment_runs_total",
            "counter",
            "Runs per experiment variant: served (answered a caller) or shadow.",
            &mut variants().flat_map(|(s, v)| {
                [("served", v.figures.served), ("shadow", v.figures.shadowed)]
                    .map(|(kind, n)| (format!("{},kind=\"{kind}\"", label(s, &v.name)), n as f64))
            }),
        );
        family(
            "weir_experiment_failures_total",
            "counter",
            "Failed runs per experiment variant, served and shadow.",
            &mut variants().map(|(s, v)| (label(s, &v.name), v.figures.failed as f64)),
        );
        family(
            "weir_experiment_share_percent",
            "gauge",
            "Percent of requests each variant answers now.",
            &mut statuses.iter().flat_map(|s| s.serving.iter().map(move |(v, p)| (label(s, v), *p))),
        );
        family(
            "weir_experiment_agreement",
            "gauge",
            "Share of compared requests on which a challenger agreed with the champion.",
            &mut variants().filter_map(|(s, v)| Some((label(s, &v.name), v.figures.agreement?))),
        );
        family(
            "weir_experiment_shadow_dropped_total",
            "counter",
            "Shadow copies dropped because the experiment's queue was full.",
            &mut statuses.iter().map(|s| (format!("experiment=\"{}\"", s.name), s.shadow.dropped as f64)),
        );
    }
}
