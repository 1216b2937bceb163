//! One experiment at run time: which variant serves a request (by weight,
//! sticky key or canary stage), what runs in its shadow, what each run did,
//! and the operator's and the gate's decisions.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use weir_core::Tensor;
use weir_executor::VariantTag;
use weir_manifest::{Experiment, ExperimentMode, Pipeline, StickyKey};

use crate::gate::{Canary, StageFigures, Verdict};
use crate::shadow::{ShadowFigures, ShadowQueue};
use crate::stats::{agrees, Run, VariantFigures, VariantStats};

/// Decisions kept per experiment (the newest).
const DECISIONS: usize = 256;

/// Where an experiment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "phase", content = "variant")]
pub enum Phase {
    /// Traffic shared as declared (a canary: at its current stage).
    Running,
    /// Every request goes to this variant (index into the variants, 1-based).
    Promoted(usize),
    /// The gate (or an operator) sent every request back to the champion.
    RolledBack,
    /// Stopped by an operator: the champion serves, nothing is shadowed.
    Stopped,
}

/// What an operator can ask of an experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// (Re)start from the beginning: counts cleared, a canary at its first stage.
    Start,
    Stop,
    /// Send all traffic to a challenger (by name; the only one when `None`).
    Promote,
    Rollback,
}

impl std::str::FromStr for Action {
    type Err = String;

    fn from_str(text: &str) -> Result<Action, String> {
        match text {
            "start" => Ok(Action::Start),
            "stop" => Ok(Action::Stop),
            "promote" => Ok(Action::Promote),
            "rollback" => Ok(Action::Rollback),
            other => Err(format!("`{other}` is not an action; use start, stop, promote or rollback")),
        }
    }
}

/// One logged decision, with the figures behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub unix_ms: u64,
    /// `advance`, `promote`, `rollback`, `start`, `stop`.
    pub action: &'static str,
    /// `gate` or `operator`.
    pub by: &'static str,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub figures: Option<StageFigures>,
}

/// Where one request goes: the variant that answers it (0 = the champion)
/// and the variants that run a copy in its shadow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub served: usize,
    pub shadows: Vec<usize>,
}

struct State {
    phase: Phase,
    canary: Option<Canary>,
    /// Index 0 is the champion.
    stats: Vec<VariantStats>,
    decisions: VecDeque<Decision>,
}

/// What the worker running shadow copies shares with the router.
pub(crate) struct Shared {
    pub(crate) decl: Experiment,
    pub(crate) champion: Pipeline,
    state: Mutex<State>,
}

/// An experiment, running.
pub struct Rollout {
    shared: Arc<Shared>,
    shadow: ShadowQueue,
    artifacts: crate::Artifacts,
}

/// An experiment's status for the API.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutStatus {
    pub name: String,
    pub pipeline: String,
    pub mode: &'static str,
    #[serde(flatten)]
    pub phase: Phase,
    /// Percent of requests each variant answers now.
    pub serving: Vec<(String, f64)>,
    pub sticky: Option<String>,
    pub share_steps: bool,
    pub variants: Vec<VariantStatus>,
    pub gate: Option<GateStatus>,
    pub shadow: ShadowFigures,
    pub decisions: Vec<Decision>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VariantStatus {
    pub name: String,
    pub pipeline: String,
    pub change: String,
    pub shared_steps: Vec<String>,
    #[serde(flatten)]
    pub figures: VariantFigures,
}

#[derive(Debug, Clone, Serialize)]
pub struct GateStatus {
    pub stages: Vec<f64>,
    pub percent: f64,
    pub min_requests: u64,
    pub criteria: Vec<String>,
    /// The current stage so far.
    pub stage: StageFigures,
}

fn lock(mutex: &Mutex<State>) -> MutexGuard<'_, State> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Rollout {
    pub fn new(decl: Experiment, champion: Pipeline, artifacts: crate::Artifacts) -> Rollout {
        let state = State {
            phase: Phase::Running,
            canary: decl.gate.clone().map(Canary::new),
            stats: vec![VariantStats::default(); decl.variants.len() + 1],
            decisions: VecDeque::new(),
        };
        let shadow = ShadowQueue::new(decl.shadow_queue);
        Rollout { shared: Arc::new(Shared { decl, champion, state: Mutex::new(state) }), shadow, artifacts }
    }

    /// The artifacts its variants run.
    pub fn artifacts(&self) -> &crate::Artifacts {
        &self.artifacts
    }

    pub fn decl(&self) -> &Experiment {
        &self.shared.decl
    }

    /// Whether this rollout runs `decl` on `champion` (so a reload keeps its state).
    pub fn runs(&self, decl: &Experiment, champion: &Pipeline) -> bool {
        self.shared.decl == *decl && self.shared.champion == *champion
    }

    /// The header or parameter that keeps a caller on one variant.
    pub fn sticky(&self) -> Option<&StickyKey> {
        self.shared.decl.sticky.as_ref()
    }

    /// Variant `index`'s name (0: `champion`).
    pub fn variant_name(&self, index: usize) -> &str {
        self.shared.variant_name(index)
    }

    /// The pipeline variant `index` runs (0: the champion).
    pub fn pipeline(&self, index: usize) -> &Pipeline {
        self.shared.pipeline(index)
    }

    pub fn tag(&self, index: usize, shadow: bool) -> VariantTag {
        VariantTag { experiment: self.shared.decl.name.clone(), variant: self.variant_name(index).to_string(), shadow }
    }

    /// Where a request goes. With a key, the same key always lands in the
    /// same place of the traffic (and so on the same variant while the
    /// shares stay); without one, a random place.
    pub fn route(&self, key: Option<&str>) -> Routed {
        let place = match key {
            Some(key) => sticky_place(&self.shared.decl.name, key),
            None => random_place(),
        };
        let state = lock(&self.shared.state);
        let decl = &self.shared.decl;
        let champion_only = Routed { served: 0, shadows: Vec::new() };
        match state.phase {
            Phase::Stopped | Phase::RolledBack => champion_only,
            Phase::Promoted(variant) => Routed { served: variant, shadows: Vec::new() },
            Phase::Running => match decl.mode {
                ExperimentMode::Split => {
                    let mut edge = 0.0;
                    let served = decl.variants.iter().position(|v| {
                        edge += v.weight;
                        place < edge
                    });
                    Routed { served: served.map_or(0, |i| i + 1), shadows: Vec::new() }
                }
                ExperimentMode::Shadow => Routed {
                    served: 0,
                    shadows: (1..=decl.variants.len()).filter(|&i| place < decl.variants[i - 1].weight).collect(),
                },
                ExperimentMode::Canary => {
                    let percent = state.canary.as_ref().map_or(0.0, Canary::percent);
                    let served = usize::from(place < percent);
                    // Both sides run each request when agreement is judged,
                    // so agreement is measured at every stage, 100% included.
                    let compare = decl.gate.as_ref().is_some_and(|g| g.agreement.is_some());
                    Routed { served, shadows: if compare { vec![1 - served] } else { Vec::new() } }
                }
            },
        }
    }

    /// The steps a served run must hand back for its shadows to reuse.
    pub fn keep_for(&self, routed: &Routed) -> Option<Arc<[String]>> {
        if !self.shared.decl.share_steps || routed.shadows.is_empty() {
            return None;
        }
        let mut names: Vec<String> =
            routed.shadows.iter().flat_map(|&v| self.shared.shared_steps(v, routed.served)).collect();
        names.sort();
        names.dedup();
        Some(names.into())
    }

    /// Steps variants `a` and `b` both run unchanged.
    pub fn shared_between(&self, a: usize, b: usize) -> Vec<String> {
        self.shared.shared_steps(a, b)
    }

    /// A served run finished (`None`: the caller's own mistake, not counted).
    pub fn served(&self, index: usize, run: Option<Run>) {
        if let Some(run) = run {
            self.shared.record(index, &run, false);
        }
    }

    /// Queue a copy of a request for variant `index`, reusing the served
    /// run's outputs of shared steps; dropped (and counted) when the queue is full.
    pub fn shadow(&self, job: crate::shadow::ShadowJob) {
        self.shadow.push(&self.shared, job);
    }

    /// Feedback on an invocation variant `name` answered: a canary's gate
    /// judges its challenger's feedback bound on it.
    pub fn feedback(&self, name: &str, scores: &[weir_observe::feedback::Score]) {
        let Some(index) = self.shared.decl.variants.iter().position(|v| v.name == name).map(|i| i + 1) else { return };
        let mut state = lock(&self.shared.state);
        if index != 1 || state.phase != Phase::Running {
            return;
        }
        if let Some(canary) = &mut state.canary {
            scores.iter().for_each(|score| canary.feedback(score));
            self.shared.judge(&mut state);
        }
    }

    /// Apply an operator's action; the status after it.
    pub fn act(&self, action: Action, variant: Option<&str>) -> Result<RolloutStatus, String> {
        let decl = &self.shared.decl;
        let mut state = lock(&self.shared.state);
        let (phase, what, reason) = match action {
            Action::Start => {
                state.canary = decl.gate.clone().map(Canary::new);
                state.stats = vec![VariantStats::default(); decl.variants.len() + 1];
                (Phase::Running, "start", "started; counts cleared".to_string())
            }
            Action::Stop => (Phase::Stopped, "stop", "stopped; the champion serves".to_string()),
            Action::Rollback => (Phase::RolledBack, "rollback", "rolled back; the champion serves".to_string()),
            Action::Promote => {
                let index = match variant {
                    Some(name) => {
                        decl.variants.iter().position(|v| v.name == name).map(|i| i + 1).ok_or_else(|| {
                            let names: Vec<&str> = decl.variants.iter().map(|v| v.name.as_str()).collect();
                            format!("experiment `{}` has no variant `{name}` (variants: {names:?})", decl.name)
                        })?
                    }
                    None if decl.variants.len() == 1 => 1,
                    None => {
                        return Err(format!(
                            "experiment `{}` has several challengers; say which: ?variant=NAME",
                            decl.name
                        ))
                    }
                };
                (
                    Phase::Promoted(index),
                    "promote",
                    format!("promoted `{}`; it serves every request", self.variant_name(index)),
                )
            }
        };
        state.phase = phase;
        log(&mut state, decl, Decision { unix_ms: now_ms(), action: what, by: "operator", reason, figures: None });
        drop(state);
        Ok(self.status())
    }

    pub fn status(&self) -> RolloutStatus {
        let shared = &self.shared;
        let decl = &shared.decl;
        let state = lock(&shared.state);
        let variants = (0..=decl.variants.len())
            .map(|i| VariantStatus {
                name: shared.variant_name(i).to_string(),
                pipeline: shared.pipeline(i).name.clone(),
                change: if i == 0 { String::new() } else { decl.variants[i - 1].change.clone() },
                shared_steps: if i == 0 { Vec::new() } else { decl.variants[i - 1].shared_steps.clone() },
                figures: state.stats[i].figures(),
            })
            .collect();
        let gate = state.canary.as_ref().map(|c| GateStatus {
            stages: c.gate().stages.clone(),
            percent: c.percent(),
            min_requests: c.gate().min_requests,
            criteria: criteria(c.gate()),
            stage: c.figures(),
        });
        RolloutStatus {
            name: decl.name.clone(),
            pipeline: decl.pipeline.clone(),
            mode: decl.mode.as_str(),
            phase: state.phase,
            serving: shares(decl, &state),
            sticky: decl.sticky.as_ref().map(|k| match k {
                StickyKey::Header(h) => format!("header:{h}"),
                StickyKey::Parameter(p) => format!("parameter:{p}"),
            }),
            share_steps: decl.share_steps,
            variants,
            gate,
            shadow: self.shadow.figures(),
            decisions: state.decisions.iter().cloned().collect(),
        }
    }
}

impl Shared {
    pub(crate) fn variant_name(&self, index: usize) -> &str {
        match index {
            0 => "champion",
            i => &self.decl.variants[i - 1].name,
        }
    }

    pub(crate) fn pipeline(&self, index: usize) -> &Pipeline {
        match index {
            0 => &self.champion,
            i => &self.decl.variants[i - 1].pipeline,
        }
    }

    /// Steps variant `a` and variant `b` share (each challenger's are
    /// reckoned against the champion).
    fn shared_steps(&self, a: usize, b: usize) -> Vec<String> {
        let of = |i: usize| if i == 0 { None } else { Some(&self.decl.variants[i - 1].shared_steps) };
        match (of(a), of(b)) {
            (Some(steps), None) | (None, Some(steps)) => steps.clone(),
            (Some(x), Some(y)) => x.iter().filter(|s| y.contains(s)).cloned().collect(),
            (None, None) => Vec::new(),
        }
    }

    /// Count a run, and let a canary's gate judge. A challenger's failed
    /// run has no answer to compare: where answers are compared, it counts
    /// as a disagreement.
    pub(crate) fn record(&self, index: usize, run: &Run, shadow: bool) {
        let mut state = lock(&self.state);
        state.stats[index].record(run, shadow);
        let disagreed = !run.ok && index != 0 && self.decl.compare.is_some();
        if disagreed {
            state.stats[index].compared(false);
        }
        if index == 1 && state.phase == Phase::Running {
            if let Some(canary) = &mut state.canary {
                canary.run(run, shadow);
                if disagreed {
                    canary.compared(false);
                }
                self.judge(&mut state);
            }
        }
    }

    /// Compare a shadow's outputs with the served run's (whichever is the champion).
    pub(crate) fn compare(&self, challenger: usize, champion_outputs: &[Tensor], challenger_outputs: &[Tensor]) {
        let agreed = agrees(champion_outputs, challenger_outputs, self.decl.compare.as_ref());
        let mut state = lock(&self.state);
        state.stats[challenger].compared(agreed);
        if state.phase == Phase::Running {
            if let Some(canary) = &mut state.canary {
                canary.compared(agreed);
                self.judge(&mut state);
            }
        }
    }

    fn judge(&self, state: &mut State) {
        let Some((verdict, figures)) = state.canary.as_mut().and_then(Canary::judge) else { return };
        let (action, reason) = match verdict {
            Verdict::Advance { to } => {
                ("advance", format!("the gate held at {}%; the challenger now gets {to}%", figures.percent))
            }
            Verdict::Promote => {
                state.phase = Phase::Promoted(1);
                ("promote", "the gate held at 100%; the challenger serves every request".to_string())
            }
            Verdict::Rollback { failed } => {
                state.phase = Phase::RolledBack;
                (
                    "rollback",
                    format!("at {}%: {}; the champion serves every request", figures.percent, failed.join("; ")),
                )
            }
        };
        let decision = Decision { unix_ms: now_ms(), action, by: "gate", reason, figures: Some(figures) };
        log(state, &self.decl, decision);
    }
}

fn log(state: &mut State, decl: &Experiment, decision: Decision) {
    tracing::info!(experiment = %decl.name, action = decision.action, by = decision.by, reason = %decision.reason, figures = ?decision.figures, "experiment decision");
    if state.decisions.len() == DECISIONS {
        state.decisions.pop_front();
    }
    state.decisions.push_back(decision);
}

/// Percent of requests each variant answers in the current phase.
fn shares(decl: &Experiment, state: &State) -> Vec<(String, f64)> {
    let mut shares = vec![0.0; decl.variants.len() + 1];
    match state.phase {
        Phase::Stopped | Phase::RolledBack => shares[0] = 100.0,
        Phase::Promoted(i) => shares[i] = 100.0,
        Phase::Running => match decl.mode {
            ExperimentMode::Split => {
                for (i, v) in decl.variants.iter().enumerate() {
                    shares[i + 1] = v.weight;
                }
                shares[0] = 100.0 - decl.variants.iter().map(|v| v.weight).sum::<f64>();
            }
            ExperimentMode::Shadow => shares[0] = 100.0,
            ExperimentMode::Canary => {
                shares[1] = state.canary.as_ref().map_or(0.0, Canary::percent);
                shares[0] = 100.0 - shares[1];
            }
        },
    }
    let name = |i: usize| if i == 0 { "champion".to_string() } else { decl.variants[i - 1].name.clone() };
    shares.into_iter().enumerate().map(|(i, s)| (name(i), s)).collect()
}

fn criteria(gate: &weir_manifest::experiments::Gate) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(p99) = gate.max_p99 {
        out.push(format!("p99 <= {:.3} ms", p99.as_secs_f64() * 1000.0));
    }
    out.push(format!("error rate <= {}", gate.max_error_rate));
    if let Some(a) = &gate.agreement {
        out.push(format!("agreement on `{}` (within {}) >= {}", a.output, a.tolerance, a.min));
    }
    if let Some(f) = &gate.feedback {
        out.push(match f.metric {
            weir_manifest::experiments::QualityBound::MinAccuracy(min) => {
                format!(
                    "accuracy on `{}` from feedback >= {min} (over at least {} invocations)",
                    f.output, f.min_feedback
                )
            }
            weir_manifest::experiments::QualityBound::MaxMae(max) => {
                format!(
                    "mean absolute error on `{}` from feedback <= {max} (over at least {} invocations)",
                    f.output, f.min_feedback
                )
            }
        });
    }
    if !gate.min_duration.is_zero() {
        out.push(format!("at least {:?} per stage", gate.min_duration));
    }
    out
}

/// A key's place in the traffic, 0 to 100 (FNV-1a over experiment and key:
/// stable across restarts and hosts, unlike the standard library's hasher).
fn sticky_place(experiment: &str, key: &str) -> f64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in experiment.bytes().chain([0]).chain(key.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % 10_000) as f64 / 100.0
}

fn random_place() -> f64 {
    let bytes = weir_core::secret::random_bytes::<8>();
    (u64::from_le_bytes(bytes) % 10_000) as f64 / 100.0
}

fn now_ms() -> u64 {
    weir_core::clock::unix_ms()
}

#[cfg(test)]
mod tests {
    use super::sticky_place;

    #[test]
    fn a_key_has_one_place_and_keys_spread_evenly() {
        assert_eq!(sticky_place("eta", "rider-7"), sticky_place("eta", "rider-7"));
        assert_ne!(sticky_place("eta", "rider-7"), sticky_place("other", "rider-7"));
        let below_ten = (0..10_000).filter(|i| sticky_place("eta", &format!("rider-{i}")) < 10.0).count();
        assert!((800..1200).contains(&below_ten), "{below_ten} of 10 000 keys under 10%");
    }
}
