//! `[experiments.NAME]`: a champion pipeline and its challengers (whole
//! pipelines, other components in some steps, or other model versions), and
//! how traffic is shared among them: a weighted split, a shadow copy, or a
//! canary that a gate moves forward or rolls back. Read into plain data here;
//! the rollout crate runs it.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::limits::{self, DurationRange};
use crate::place::Place;
use crate::{ManifestError, Pipeline, Source};

/// How an experiment shares a pipeline's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExperimentMode {
    /// Each request goes to one variant, by weight.
    Split,
    /// The champion answers; each challenger runs a copy off the critical path.
    Shadow,
    /// One challenger's share grows stage by stage while the gate holds.
    Canary,
}

impl ExperimentMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ExperimentMode::Split => "split",
            ExperimentMode::Shadow => "shadow",
            ExperimentMode::Canary => "canary",
        }
    }
}

/// What keeps a caller on one variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StickyKey {
    /// An HTTP header (HTTP and gRPC metadata).
    Header(String),
    /// A request parameter (`parameters.NAME`), for every trigger.
    Parameter(String),
}

/// One challenger: its name, share (percent) and the pipeline it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub name: String,
    /// Percent of traffic (split), or of requests copied (shadow); a canary's stages set its own.
    pub weight: f64,
    /// The pipeline this variant runs: another declared pipeline, or the
    /// champion with some steps' components or models swapped.
    pub pipeline: Pipeline,
    /// Steps the variant has in common with the champion (same component,
    /// config, grants, limits and inputs, all the way up): run once when
    /// both run on one request.
    pub shared_steps: Vec<String>,
    /// What differs from the champion, for people (`pipeline ride@v2`, `model eta -> eta@v2`).
    pub change: String,
}

/// Agreement between challenger and champion on shadowed requests.
#[derive(Debug, Clone, PartialEq)]
pub struct Agreement {
    /// The pipeline output compared.
    pub output: String,
    /// Largest difference per element still counted as agreeing (0 = equal).
    pub tolerance: f64,
    /// Least share of agreeing requests the gate accepts (0..=1).
    pub min: f64,
}

/// A bound on the challenger's quality from feedback (the true outcomes
/// sent for the invocations it answered).
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackBound {
    pub output: String,
    pub metric: QualityBound,
    /// Feedback needed before a stage is judged on it.
    pub min_feedback: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QualityBound {
    /// Share of label elements equal to the truth, at least.
    MinAccuracy(f64),
    /// Mean absolute error of numeric elements, at most.
    MaxMae(f64),
}

/// A canary's gate: the stages and what must hold at each.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    /// Percent of traffic at each stage, increasing, the last 100.
    pub stages: Vec<f64>,
    /// Challenger runs (served or shadowed) judged at each stage.
    pub min_requests: u64,
    /// Least time spent at each stage.
    pub min_duration: Duration,
    pub max_p99: Option<Duration>,
    /// Failed runs over runs; 1% unless stated (failures always count).
    pub max_error_rate: f64,
    pub agreement: Option<Agreement>,
    pub feedback: Option<FeedbackBound>,
}

/// An experiment on one pipeline's traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    pub name: String,
    /// The champion: the pipeline callers invoke.
    pub pipeline: String,
    pub mode: ExperimentMode,
    pub sticky: Option<StickyKey>,
    /// Run shared steps once (off: every variant runs all its steps, to measure the saving).
    pub share_steps: bool,
    /// Shadow runs waiting at most; more are dropped and counted.
    pub shadow_queue: usize,
    pub variants: Vec<Variant>,
    pub gate: Option<Gate>,
    /// How challengers' answers are compared with the champion's (the
    /// gate's agreement when it states one; `min` is the gate's alone).
    pub compare: Option<Agreement>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExperiment {
    pub pipeline: Spanned<String>,
    pub mode: Spanned<String>,
    pub sticky: Option<Spanned<String>>,
    pub share_steps: Option<bool>,
    pub shadow_queue: Option<Spanned<usize>>,
    pub variants: Vec<RawVariant>,
    pub gate: Option<RawGate>,
    /// `{ output = "…", tolerance = … }`: what agreement means outside a gate.
    pub compare: Option<RawCompare>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCompare {
    pub output: Spanned<String>,
    pub tolerance: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVariant {
    pub name: Spanned<String>,
    pub weight: Option<Spanned<f64>>,
    pub pipeline: Option<Spanned<String>>,
    /// Model (as the champion's steps are granted it) → the version to use instead.
    #[serde(default)]
    pub models: BTreeMap<String, Spanned<String>>,
    /// Step name → the component to run it with instead.
    #[serde(default)]
    pub components: BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGate {
    pub stages: Spanned<Vec<f64>>,
    pub min_requests: Option<Spanned<u64>>,
    pub min_duration: Option<Spanned<String>>,
    pub max_p99: Option<Spanned<String>>,
    pub max_error_rate: Option<Spanned<f64>>,
    pub agreement: Option<RawAgreement>,
    pub feedback: Option<RawFeedback>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFeedback {
    pub output: Spanned<String>,
    pub min_accuracy: Option<Spanned<f64>>,
    pub max_mae: Option<Spanned<f64>>,
    pub min_feedback: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgreement {
    pub output: Spanned<String>,
    pub tolerance: Option<Spanned<f64>>,
    pub min: Spanned<f64>,
}

/// A gate's error-rate bound when none is stated: a challenger that fails
/// more than its champion should is never promoted by default.
pub const DEFAULT_MAX_ERROR_RATE: f64 = 0.01;

/// A gate stage lasts at most a day; a latency bound is 1 µs to 1 h.
const STAGE_TIME: DurationRange =
    DurationRange { min: Duration::ZERO, max: Duration::from_secs(86_400), min_text: "0s", max_text: "24h" };
const LATENCY: DurationRange =
    DurationRange { min: Duration::from_micros(1), max: Duration::from_secs(3600), min_text: "1us", max_text: "1h" };

/// Read every `[experiments.NAME]` against the checked pipelines.
pub fn experiments(
    place: &Place,
    raw: &BTreeMap<String, RawExperiment>,
    pipelines: &BTreeMap<String, Pipeline>,
    models: &BTreeMap<String, crate::ModelDecl>,
    components: &BTreeMap<String, crate::ComponentDecl>,
) -> Result<BTreeMap<String, Experiment>, ManifestError> {
    let mut by_pipeline: BTreeMap<&str, &str> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (name, raw) in raw {
        let key = format!("experiments.{name}");
        if !plain_name(name) {
            return Err(
                place.at(&raw.pipeline, format!("{key}: an experiment's name must be letters, digits, `-` or `_`"))
            );
        }
        let champion = pipelines.get(raw.pipeline.get_ref()).ok_or_else(|| {
            let known: Vec<&str> = pipelines.keys().map(String::as_str).collect();
            place.at(
                &raw.pipeline,
                format!("{key}.pipeline: no pipeline named `{}` (declared: {known:?})", raw.pipeline.get_ref()),
            )
        })?;
        if let Some(other) = by_pipeline.insert(champion.name.as_str(), name) {
            return Err(place.at(
                &raw.pipeline,
                format!("{key}.pipeline: experiment `{other}` already takes pipeline `{}`'s traffic; one experiment per pipeline", champion.name),
            ));
        }
        let mode = match raw.mode.get_ref().as_str() {
            "split" => ExperimentMode::Split,
            "shadow" => ExperimentMode::Shadow,
            "canary" => ExperimentMode::Canary,
            other => {
                return Err(
                    place.at(&raw.mode, format!("{key}.mode: `{other}` is not a mode; use split, shadow or canary"))
                )
            }
        };
        let sticky = raw.sticky.as_ref().map(|s| sticky_key(place, s, &key)).transpose()?;
        let shadow_queue = match &raw.shadow_queue {
            Some(n) => limits::count(place, n, &format!("{key}.shadow_queue"), 1, 100_000)?,
            None => 64,
        };
        if raw.variants.is_empty() {
            return Err(place.nowhere(format!("{key}: name at least one challenger in [[{key}.variants]]")));
        }
        let mut variants: Vec<Variant> = Vec::new();
        for raw_variant in &raw.variants {
            let variant = variant(place, &key, raw_variant, mode, champion, pipelines, models, components)?;
            if variant.name == "champion" || variants.iter().any(|v| v.name == variant.name) {
                return Err(place.at(
                    &raw_variant.name,
                    format!(
                        "{key}.variants: `{}` is taken (each variant needs its own name; `champion` is reserved)",
                        variant.name
                    ),
                ));
            }
            variants.push(variant);
        }
        let total: f64 = variants.iter().map(|v| v.weight).sum();
        // A little slack: weights in tenths of a percent do not add up exactly in binary.
        if mode == ExperimentMode::Split && total > 100.0 + 1e-9 {
            return Err(place.nowhere(format!("{key}: the challengers' weights add up to {total}%, more than 100%")));
        }
        let gate = match (&raw.gate, mode) {
            (Some(gate), ExperimentMode::Canary) => Some(gate_decl(place, &key, gate, champion)?),
            (None, ExperimentMode::Canary) => {
                return Err(place.nowhere(format!("{key}: a canary needs [{key}.gate] with its stages and criteria")))
            }
            (Some(_), _) => {
                return Err(place.nowhere(format!("{key}.gate: only a canary has a gate (mode = \"canary\")")))
            }
            (None, _) => None,
        };
        let compare = match (&raw.compare, gate.as_ref().and_then(|g| g.agreement.clone())) {
            (Some(c), Some(_)) => {
                return Err(place.at(
                    &c.output,
                    format!("{key}.compare: the gate's agreement already says how answers are compared; keep one"),
                ))
            }
            (Some(c), None) => {
                Some(comparison(place, &format!("{key}.compare"), &c.output, c.tolerance.as_ref(), 0.0, champion)?)
            }
            (None, from_gate) => from_gate,
        };
        if mode == ExperimentMode::Canary && variants.len() != 1 {
            return Err(place.nowhere(format!("{key}: a canary has exactly one challenger")));
        }
        out.insert(
            name.clone(),
            Experiment {
                name: name.clone(),
                pipeline: champion.name.clone(),
                mode,
                sticky,
                share_steps: raw.share_steps.unwrap_or(true),
                shadow_queue,
                variants,
                gate,
                compare,
            },
        );
    }
    Ok(out)
}

/// Letters, digits, `-` and `_` (names that appear in metrics labels and URLs).
fn plain_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn sticky_key(place: &Place, text: &Spanned<String>, key: &str) -> Result<StickyKey, ManifestError> {
    let valid =
        |name: &str| !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    match text.get_ref().split_once(':') {
        Some(("header", name)) if valid(name) => Ok(StickyKey::Header(name.to_ascii_lowercase())),
        Some(("parameter", name)) if valid(name) => Ok(StickyKey::Parameter(name.to_string())),
        _ => Err(place.at(
            text,
            format!("{key}.sticky: `{}` is not a key; write `header:NAME` or `parameter:NAME`", text.get_ref()),
        )),
    }
}

#[allow(clippy::too_many_arguments)]
fn variant(
    place: &Place,
    key: &str,
    raw: &RawVariant,
    mode: ExperimentMode,
    champion: &Pipeline,
    pipelines: &BTreeMap<String, Pipeline>,
    models: &BTreeMap<String, crate::ModelDecl>,
    components: &BTreeMap<String, crate::ComponentDecl>,
) -> Result<Variant, ManifestError> {
    let name = raw.name.get_ref().clone();
    if !plain_name(&name) {
        return Err(place.at(&raw.name, format!("{key}.variants: `{name}` must be letters, digits, `-` or `_`")));
    }
    let key = format!("{key}.variants.{name}");
    let weight = match (&raw.weight, mode) {
        (Some(w), ExperimentMode::Canary) => {
            return Err(place.at(w, format!("{key}.weight: a canary's share is set by its gate's stages")))
        }
        (Some(w), _) if !(0.0..=100.0).contains(w.get_ref()) => {
            return Err(place.at(w, format!("{key}.weight = {} is out of range; a percent, 0 to 100", w.get_ref())))
        }
        (Some(w), _) => *w.get_ref(),
        (None, ExperimentMode::Split) => {
            return Err(place.at(&raw.name, format!("{key}: a split needs each challenger's `weight` (percent)")))
        }
        (None, _) => 100.0,
    };
    let swaps = !raw.models.is_empty() || !raw.components.is_empty();
    let (pipeline, change) = match &raw.pipeline {
        Some(_) if swaps => {
            return Err(
                place.at(&raw.name, format!("{key}: name another `pipeline`, or swap `models`/`components`, not both"))
            )
        }
        Some(other) => {
            let pipeline = pipelines
                .get(other.get_ref())
                .ok_or_else(|| place.at(other, format!("{key}.pipeline: no pipeline named `{}`", other.get_ref())))?;
            if pipeline.name == champion.name {
                return Err(place.at(other, format!("{key}.pipeline: the challenger is the champion itself")));
            }
            (pipeline.clone(), format!("pipeline {}", pipeline.name))
        }
        None if !swaps => {
            return Err(place.at(
                &raw.name,
                format!("{key}: say what the challenger changes: `pipeline`, `models` or `components`"),
            ))
        }
        None => swapped(place, &key, raw, champion, models, components)?,
    };
    let outputs = |p: &Pipeline| p.outputs.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
    let (mut ours, mut theirs) = (outputs(&pipeline), outputs(champion));
    ours.sort();
    theirs.sort();
    if ours != theirs {
        return Err(place.at(
            &raw.name,
            format!("{key}: the challenger's outputs {ours:?} differ from the champion's {theirs:?}; callers would see another answer shape"),
        ));
    }
    let shared_steps = shared_steps(champion, &pipeline);
    Ok(Variant { name, weight, pipeline, shared_steps, change })
}

/// The champion with the variant's components and model versions swapped in.
fn swapped(
    place: &Place,
    key: &str,
    raw: &RawVariant,
    champion: &Pipeline,
    models: &BTreeMap<String, crate::ModelDecl>,
    components: &BTreeMap<String, crate::ComponentDecl>,
) -> Result<(Pipeline, String), ManifestError> {
    let mut pipeline = champion.clone();
    let mut changes = Vec::new();
    for (step_name, component) in &raw.components {
        if !components.contains_key(component.get_ref()) {
            return Err(place
                .at(component, format!("{key}.components.{step_name}: no component named `{}`", component.get_ref())));
        }
        let step = pipeline.steps.iter_mut().find(|s| &s.name == step_name).ok_or_else(|| {
            place.at(component, format!("{key}.components: pipeline `{}` has no step `{step_name}`", champion.name))
        })?;
        changes.push(format!("step {step_name}: {} -> {}", step.component, component.get_ref()));
        step.component = component.get_ref().clone();
    }
    for (model, version) in &raw.models {
        if !models.contains_key(version.get_ref()) {
            return Err(place.at(version, format!("{key}.models.{model}: no model named `{}`", version.get_ref())));
        }
        // The step's code asks for the base name; only a version of it resolves.
        let base = |name: &str| name.split_once('@').map_or(name, |(base, _)| base).to_string();
        if base(model) != base(version.get_ref()) {
            return Err(place.at(
                version,
                format!(
                    "{key}.models.{model}: `{}` is not a version of `{}` (write `{}@VERSION`)",
                    version.get_ref(),
                    base(model),
                    base(model)
                ),
            ));
        }
        let mut granted = false;
        for step in &mut pipeline.steps {
            for name in step.grants.nn.models.iter_mut().filter(|m| *m == model) {
                *name = version.get_ref().clone();
                granted = true;
            }
        }
        if !granted {
            return Err(place
                .at(version, format!("{key}.models: no step of pipeline `{}` uses model `{model}`", champion.name)));
        }
        changes.push(format!("model {model} -> {}", version.get_ref()));
    }
    Ok((pipeline, changes.join(", ")))
}

/// The challenger's steps that are the champion's own: equal in every
/// declared respect, reading only request inputs or other shared steps.
pub fn shared_steps(champion: &Pipeline, challenger: &Pipeline) -> Vec<String> {
    let mut shared: HashSet<&str> = HashSet::new();
    // Steps are in topological order: a step's sources are decided before it.
    for step in &challenger.steps {
        let same = champion.step(&step.name) == Some(step);
        let upstream_shared = step.inputs.iter().all(|route| match &route.source {
            Source::Input(_) => true,
            Source::Step { step, .. } => shared.contains(step.as_str()),
        });
        if same && upstream_shared {
            shared.insert(&step.name);
        }
    }
    challenger.steps.iter().filter(|s| shared.contains(s.name.as_str())).map(|s| s.name.clone()).collect()
}

/// An output of the champion and a tolerance, checked.
fn comparison(
    place: &Place,
    key: &str,
    output: &Spanned<String>,
    tolerance: Option<&Spanned<f64>>,
    min: f64,
    champion: &Pipeline,
) -> Result<Agreement, ManifestError> {
    if !champion.outputs.iter().any(|o| &o.name == output.get_ref()) {
        let message = format!("{key}.output: pipeline `{}` has no output `{}`", champion.name, output.get_ref());
        return Err(place.at(output, message));
    }
    let tolerance = tolerance.map_or(0.0, |t| *t.get_ref());
    if !(tolerance >= 0.0 && tolerance.is_finite()) {
        return Err(place.at(output, format!("{key}.tolerance must be a finite number, 0 or more")));
    }
    Ok(Agreement { output: output.get_ref().clone(), tolerance, min })
}

fn feedback_bound(
    place: &Place,
    key: &str,
    raw: &RawFeedback,
    champion: &Pipeline,
    min_requests: u64,
) -> Result<FeedbackBound, ManifestError> {
    let key = format!("{key}.feedback");
    let output = comparison(place, &key, &raw.output, None, 0.0, champion)?.output;
    let metric = match (&raw.min_accuracy, &raw.max_mae) {
        (Some(a), None) if (0.0..=1.0).contains(a.get_ref()) => QualityBound::MinAccuracy(*a.get_ref()),
        (None, Some(m)) if *m.get_ref() >= 0.0 && m.get_ref().is_finite() => QualityBound::MaxMae(*m.get_ref()),
        (Some(a), None) => {
            return Err(place.at(a, format!("{key}.min_accuracy = {} is out of range; a share, 0 to 1", a.get_ref())))
        }
        (None, Some(m)) => {
            return Err(place.at(m, format!("{key}.max_mae = {} must be a finite number, 0 or more", m.get_ref())))
        }
        _ => {
            return Err(place
                .at(&raw.output, format!("{key}: state exactly one of min_accuracy (labels) or max_mae (numbers)")))
        }
    };
    let min_feedback = match &raw.min_feedback {
        Some(n) => limits::count(place, n, &format!("{key}.min_feedback"), 1, 1_000_000)?,
        None => min_requests,
    };
    Ok(FeedbackBound { output, metric, min_feedback })
}

fn gate_decl(place: &Place, key: &str, raw: &RawGate, champion: &Pipeline) -> Result<Gate, ManifestError> {
    let key = format!("{key}.gate");
    let stages = raw.stages.get_ref().clone();
    let increasing = stages.windows(2).all(|w| w[0] < w[1]);
    if stages.is_empty() || stages.len() > 32 || !increasing || stages[0] <= 0.0 || stages.last() != Some(&100.0) {
        return Err(place.at(
            &raw.stages,
            format!("{key}.stages: percents that increase, above 0, ending at 100 (at most 32), e.g. [1, 10, 50, 100]"),
        ));
    }
    let min_requests = match &raw.min_requests {
        Some(n) => limits::count(place, n, &format!("{key}.min_requests"), 1, 1_000_000)?,
        None => 100,
    };
    let min_duration = match &raw.min_duration {
        Some(d) => limits::duration(place, d, &format!("{key}.min_duration"), &STAGE_TIME)?,
        None => Duration::ZERO,
    };
    let max_p99 =
        raw.max_p99.as_ref().map(|d| limits::duration(place, d, &format!("{key}.max_p99"), &LATENCY)).transpose()?;
    let max_error_rate = match &raw.max_error_rate {
        Some(r) if !(0.0..=1.0).contains(r.get_ref()) => {
            return Err(place.at(r, format!("{key}.max_error_rate = {} is out of range; a share, 0 to 1", r.get_ref())))
        }
        other => other.as_ref().map_or(DEFAULT_MAX_ERROR_RATE, |r| *r.get_ref()),
    };
    let agreement = match &raw.agreement {
        None => None,
        Some(a) => {
            if !(0.0..=1.0).contains(a.min.get_ref()) {
                return Err(place.at(
                    &a.min,
                    format!("{key}.agreement.min = {} is out of range; a share, 0 to 1", a.min.get_ref()),
                ));
            }
            let key = format!("{key}.agreement");
            Some(comparison(place, &key, &a.output, a.tolerance.as_ref(), *a.min.get_ref(), champion)?)
        }
    };
    let feedback = raw.feedback.as_ref().map(|f| feedback_bound(place, &key, f, champion, min_requests)).transpose()?;
    Ok(Gate { stages, min_requests, min_duration, max_p99, max_error_rate, agreement, feedback })
}
