//! Components attached to a pipeline off its critical path:
//!
//! - `[[pipelines.P.explainers]]`: an explainer component for one step,
//!   run on demand by `POST /v2/models/P/explain` with `"explainer"`;
//! - `[[pipelines.P.monitors]]`: a monitor component fed edges of the graph
//!   asynchronously, batched over a window, never on the caller's path.
//!
//! Both are declared like steps (component, models, config, limits) and run
//! in the same sandbox under their own grants.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::place::Place;
use crate::schema::{RawLimits, RawStep};
use crate::{ComponentDecl, ManifestError, ModelDecl, Route, Source, Step};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExplainer {
    pub name: Spanned<String>,
    /// The step whose outputs it explains.
    pub step: Spanned<String>,
    pub component: Spanned<String>,
    #[serde(default)]
    pub models: Vec<Spanned<String>>,
    #[serde(default)]
    pub config: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub limits: RawLimits,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMonitor {
    pub name: Spanned<String>,
    pub component: Spanned<String>,
    /// Edges it reads: `"input.x"`, `"step.tensor"`, `"name=step.tensor"`.
    pub inputs: Vec<Spanned<String>>,
    #[serde(default)]
    pub models: Vec<Spanned<String>>,
    #[serde(default)]
    pub config: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub limits: RawLimits,
    /// Rows per window (the first dimension of each edge).
    pub window: Option<Spanned<i64>>,
    /// Invocations waiting for the monitor at most; more are dropped and counted.
    pub queue: Option<Spanned<i64>>,
    /// Where the reference window comes from.
    pub reference: Option<Spanned<RawReference>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReference {
    /// An OIP request JSON file of reference tensors (named like the monitor's inputs), relative to the manifest.
    pub file: Option<String>,
    /// The first N rows the monitor sees.
    pub first: Option<i64>,
}

/// An explainer component for one step's outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Explainer {
    pub name: String,
    /// The step it explains.
    pub step: String,
    /// Component, grants and limits (no inputs: the host hands it the step's).
    pub run: Step,
}

/// Where a monitor's reference window comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Reference {
    /// Tensors from a file (an OIP request body), absolute path.
    File(std::path::PathBuf),
    /// The first N rows of traffic.
    First(usize),
}

/// A monitor: a component fed edges of the pipeline, a window at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct Monitor {
    pub name: String,
    /// Component, grants, limits, and the edges it reads (as its inputs).
    pub run: Step,
    pub window: usize,
    pub queue: usize,
    pub reference: Reference,
}

/// The most rows one window may hold.
pub const MAX_WINDOW: i64 = 100_000;
/// The longest queue of invocations a monitor may have waiting.
pub const MAX_QUEUE: i64 = 100_000;

fn as_step(
    name: &Spanned<String>,
    component: &Spanned<String>,
    inputs: &[Spanned<String>],
    models: &[Spanned<String>],
    config: &BTreeMap<String, toml::Value>,
    limits: &RawLimits,
) -> RawStep {
    RawStep {
        name: name.clone(),
        component: component.clone(),
        inputs: inputs.to_vec(),
        models: models.to_vec(),
        config: config.clone(),
        limits: limits.clone(),
        files: Vec::new(),
        env: BTreeMap::new(),
        http: Vec::new(),
    }
}

pub(crate) fn explainers(
    place: &Place,
    pipeline: &str,
    raw: &[RawExplainer],
    steps: &[Step],
    models: &BTreeMap<String, ModelDecl>,
    components: &BTreeMap<String, ComponentDecl>,
) -> Result<Vec<Explainer>, ManifestError> {
    let mut out: Vec<Explainer> = Vec::new();
    for e in raw {
        let step = as_step(&e.name, &e.component, &[], &e.models, &e.config, &e.limits);
        let run = crate::parse::step_decl(place, pipeline, "explainers", &step, models, components)?;
        let context = format!("pipelines.{pipeline}.explainers.{}", run.name);
        if !steps.iter().any(|s| &s.name == e.step.get_ref()) {
            let known: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
            return Err(
                place.at(&e.step, format!("{context}.step: no step named `{}` (steps: {known:?})", e.step.get_ref()))
            );
        }
        if out.iter().any(|o| o.name == run.name) {
            return Err(place.at(&e.name, format!("pipelines.{pipeline}: two explainers are named `{}`", run.name)));
        }
        out.push(Explainer { name: run.name.clone(), step: e.step.get_ref().clone(), run });
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn monitors(
    place: &Place,
    pipeline: &str,
    raw: &[RawMonitor],
    steps: &[Step],
    request_inputs: &[&str],
    sensitive: &[Source],
    models: &BTreeMap<String, ModelDecl>,
    components: &BTreeMap<String, ComponentDecl>,
    base_dir: &std::path::Path,
) -> Result<Vec<Monitor>, ManifestError> {
    let mut out: Vec<Monitor> = Vec::new();
    for m in raw {
        let step = as_step(&m.name, &m.component, &m.inputs, &m.models, &m.config, &m.limits);
        let run = crate::parse::step_decl(place, pipeline, "monitors", &step, models, components)?;
        let context = format!("pipelines.{pipeline}.monitors.{}", run.name);
        if out.iter().any(|o| o.name == run.name) {
            return Err(place.at(&m.name, format!("pipelines.{pipeline}: two monitors are named `{}`", run.name)));
        }
        if run.inputs.is_empty() {
            return Err(place.at(&m.name, format!("{context}: a monitor needs at least one edge in `inputs`")));
        }
        for (route, text) in run.inputs.iter().zip(&m.inputs) {
            check_edge(place, route, text, steps, request_inputs, &context)?;
            // A monitor's figures are shown to `status` callers: they must not be computed from a sensitive edge.
            if sensitive.contains(&route.source) {
                return Err(place.at(
                    text,
                    format!(
                        "{context}.inputs: `{}` is sensitive, and a monitor's results are shown to every `status` \
                         caller; monitor an edge derived from it, or take it out of `sensitive`",
                        route.source
                    ),
                ));
            }
        }
        let bounded = |value: &Option<Spanned<i64>>, key: &str, default: i64, max: i64| match value {
            None => Ok(default as usize),
            Some(v) if (1..=max).contains(v.get_ref()) => Ok(*v.get_ref() as usize),
            Some(v) => Err(place.at(v, format!("{context}.{key}: must be between 1 and {max}, got {}", v.get_ref()))),
        };
        let window = bounded(&m.window, "window", 100, MAX_WINDOW)?;
        let queue = bounded(&m.queue, "queue", 1024, MAX_QUEUE)?;
        let reference = match &m.reference {
            None => Reference::First(window),
            Some(r) => match (&r.get_ref().file, r.get_ref().first) {
                (Some(file), None) => Reference::File(base_dir.join(file)),
                (None, Some(n)) if (1..=MAX_WINDOW).contains(&n) => Reference::First(n as usize),
                (None, Some(n)) => {
                    return Err(
                        place.at(r, format!("{context}.reference.first: must be between 1 and {MAX_WINDOW}, got {n}"))
                    )
                }
                _ => {
                    return Err(place.at(
                        r,
                        format!(
                            "{context}.reference: write either `{{ file = \"reference.json\" }}` or `{{ first = N }}`"
                        ),
                    ))
                }
            },
        };
        out.push(Monitor { name: run.name.clone(), run, window, queue, reference });
    }
    Ok(out)
}

/// A monitored edge exists: a request input, or an output some step may make.
fn check_edge(
    place: &Place,
    route: &Route,
    text: &Spanned<String>,
    steps: &[Step],
    request_inputs: &[&str],
    context: &str,
) -> Result<(), ManifestError> {
    match &route.source {
        Source::Input(name) if request_inputs.contains(&name.as_str()) => Ok(()),
        Source::Input(name) => Err(place
            .at(text, format!("{context}.inputs: the pipeline has no input `{name}` (inputs: {request_inputs:?})"))),
        Source::Step { step, .. } if steps.iter().any(|s| &s.name == step) => Ok(()),
        Source::Step { step, .. } => {
            let known: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
            Err(place.at(text, format!("{context}.inputs: no step named `{step}` in the pipeline (steps: {known:?})")))
        }
    }
}
