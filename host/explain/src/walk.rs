//! The root-cause walk: a recorded output attributed to the inputs of the
//! step that produced it, then each share that arrived over another step's
//! edge attributed to that step's inputs, and so on back to the request.
//!
//! Each step is replayed on its recorded inputs against its baseline inputs
//! (what the pipeline computed from the baseline request), and its Shapley
//! values are chained with the rescale rule of DeepSHAP: the share `φ_e`
//! of an upstream element `e` becomes the weight `φ_e / (x_e - b_e)` of
//! that element in the upstream step's target. Every link keeps the sum:
//! the request's attributions add up to the output's change from its
//! baseline, less what stopped at an edge that cannot be walked.

use std::collections::HashMap;

use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;
use weir_core::Tensor;
use weir_executor::Executor;
use weir_manifest::{Pipeline, Route, Source};
use weir_observe::provenance::InvocationRecord;

use crate::explain::{solved, weighted, Attribution, Edge, CONCURRENCY};
use crate::replay::{route, Meter, Replay};
use crate::shapley::{Method, Plan, MAX_FEATURES};
use crate::space::{self, Space};
use crate::ExplainError;

/// The most evaluations one step of a walk takes.
const STEP_BUDGET: usize = 1024;
/// A share smaller than this part of the output's change is not walked further.
const PRUNE: f64 = 0.01;

#[derive(Debug, Clone)]
pub struct RcaQuestion {
    pub output: Edge,
    pub index: Option<usize>,
    /// Evaluations for the whole walk.
    pub budget: usize,
    pub seed: u64,
}

/// One step on the walk: its target's change attributed to its inputs.
#[derive(Debug, Clone, Serialize)]
pub struct RcaNode {
    pub step: String,
    /// What was attributed: `Σ w · element` of this step's output.
    pub target: String,
    pub value: f64,
    pub baseline_value: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<&'static str>,
    pub attributions: Vec<Attribution>,
    /// Why the walk stopped here, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

/// One way from the output back to a request input (or to where the walk stopped).
#[derive(Debug, Clone, Serialize)]
pub struct RcaPath {
    /// Edges, from the output back.
    pub path: Vec<String>,
    pub attribution: f64,
    /// How it ends: `input` (a request element), `pruned` (a share under
    /// 1% of the output's change, not walked further) or `stopped` (an edge
    /// that cannot be replayed; `notes` say why).
    pub ends: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rca {
    pub invocation_id: String,
    pub pipeline: String,
    pub output: String,
    pub value: f64,
    pub baseline_value: f64,
    /// The request elements, by size of their share, largest first.
    pub inputs: Vec<Attribution>,
    pub paths: Vec<RcaPath>,
    pub steps: Vec<RcaNode>,
    /// The change not attributed to request inputs (stopped or pruned edges, sampling error).
    pub unexplained: f64,
    pub notes: Vec<String>,
    pub evaluations: usize,
    pub step_runs: u64,
    pub cpu_us: u64,
}

struct Task {
    step: String,
    tensor: String,
    weights: Vec<(Option<usize>, f64)>,
    path: Vec<String>,
    /// The share of the output's change that arrived here (NaN at the root: not known yet).
    share: f64,
}

/// Walk `record`'s `question.output` back to its request, against the
/// `baseline` request. Where the baseline request does not reach a step
/// (an input upstream is sensitive), that step's baseline inputs are the
/// mean of what `recent` records kept on its edges.
pub async fn walk(
    executor: &Executor,
    pipeline: &Pipeline,
    record: &InvocationRecord,
    baseline: Vec<Tensor>,
    recent: &[InvocationRecord],
    question: &RcaQuestion,
    meter: &Meter,
) -> Result<Rca, ExplainError> {
    let (step, tensor) = question.output.resolve(pipeline)?;
    if record.error.is_some() {
        return Err(ExplainError::Invalid(format!(
            "invocation {} failed: there is no output to walk back from",
            record.invocation_id
        )));
    }
    let replay = Replay::new(executor, pipeline, meter);
    let base_request: HashMap<String, Tensor> = baseline.into_iter().map(|t| (t.name.clone(), t)).collect();
    let all = pipeline.steps.iter().map(|s| s.name.as_str()).collect();
    let base_produced = replay.run(&base_request, HashMap::new(), &all, true).await?;
    let index = question.index.map(|i| format!("[{i}]")).unwrap_or_default();
    let root = format!("{}{index}", question.output);
    let mut tasks =
        vec![Task { step, tensor, weights: vec![(question.index, 1.0)], path: vec![root.clone()], share: f64::NAN }];
    let mut rca = Rca {
        invocation_id: record.invocation_id.clone(),
        pipeline: pipeline.name.clone(),
        output: root,
        value: f64::NAN,
        baseline_value: f64::NAN,
        inputs: Vec::new(),
        paths: Vec::new(),
        steps: Vec::new(),
        unexplained: 0.0,
        notes: Vec::new(),
        evaluations: 0,
        step_runs: 0,
        cpu_us: 0,
    };
    let mut leaves: Vec<Attribution> = Vec::new();
    let mut change = None;
    while let Some(task) = tasks.pop() {
        let Some(step) = pipeline.step(&task.step) else { continue };
        let mut node = RcaNode {
            step: step.name.clone(),
            target: describe(&task),
            value: f64::NAN,
            baseline_value: f64::NAN,
            method: None,
            attributions: Vec::new(),
            stopped: None,
        };
        let inputs = recorded_inputs(record, &step.name, &step.inputs);
        let base = |x: &[Tensor]| -> Option<Vec<Tensor>> {
            step.inputs
                .iter()
                .zip(x)
                .map(|(r, x)| {
                    route(pipeline, &step.name, r, &base_request, &base_produced)
                        .ok()
                        .or_else(|| recorded_mean(recent, &step.name, x))
                })
                .collect()
        };
        let budget = (question.budget - rca.evaluations).min(STEP_BUDGET);
        let stop = match inputs.map(|x| {
            let b = base(&x);
            (x, b)
        }) {
            Err(reason) => Some(reason),
            Ok((_, None)) => Some("no baseline reaches this step: nothing upstream is recorded".into()),
            Ok((x, Some(b))) => {
                let planned = Space::new(x, &b, MAX_FEATURES).and_then(|space| {
                    let plan = Plan::new(Method::Auto, space.features().len(), budget, question.seed)?;
                    Ok((space, plan))
                });
                match planned {
                    // Too many features, or baseline inputs of another shape (a step whose
                    // output's shape follows its data): this step cannot be attributed; the walk goes on elsewhere.
                    Err(error @ (ExplainError::TooManyFeatures { .. } | ExplainError::Baseline { .. })) => {
                        Some(format!("the walk stops here: {error}"))
                    }
                    Err(ExplainError::Plan(error)) => Some(format!("the walk's budget is spent here ({error})")),
                    Err(error) => return Err(error),
                    Ok((space, plan)) => {
                        let (replay, space, task) = (&replay, &space, &task);
                        let evaluate = |coalition: &Vec<bool>| {
                            let tensors = space.compose(coalition);
                            async move {
                                let outputs = replay.step(step, tensors).await?;
                                weighted(&task.tensor, &outputs, &task.weights)
                            }
                        };
                        let values: Vec<f64> = futures_util::stream::iter(plan.coalitions())
                            .map(evaluate)
                            .buffered(CONCURRENCY)
                            .try_collect()
                            .await?;
                        rca.evaluations += values.len();
                        let solution = solved(plan, values).await?;
                        let total = *change.get_or_insert(solution.full - solution.empty);
                        if rca.value.is_nan() {
                            (rca.value, rca.baseline_value) = (solution.full, solution.empty);
                        }
                        (node.value, node.baseline_value) = (solution.full, solution.empty);
                        node.method = Some(solution.method.name());
                        for (feature, &phi) in space.features().iter().zip(&solution.attributions) {
                            let route = step.inputs.iter().find(|r| r.name == feature.tensor);
                            let Some(route) = route else { continue };
                            let edge = format!("{}{}", edge_name(route), &feature.name[feature.tensor.len()..]);
                            node.attributions.push(Attribution {
                                feature: edge.clone(),
                                value: feature.value,
                                baseline: feature.baseline,
                                attribution: phi,
                                std_error: None,
                            });
                            let mut path = task.path.clone();
                            path.push(edge.clone());
                            match &route.source {
                                // An exact zero goes nowhere: no path.
                                _ if phi == 0.0 => {}
                                Source::Input(_) => {
                                    add_leaf(&mut leaves, &edge, feature.value, feature.baseline, phi);
                                    rca.paths.push(RcaPath { path, attribution: phi, ends: "input" });
                                }
                                Source::Step { .. } if phi.abs() < PRUNE * total.abs() => {
                                    rca.paths.push(RcaPath { path, attribution: phi, ends: "pruned" });
                                }
                                Source::Step { .. } if !(feature.value - feature.baseline).is_normal() => {
                                    // Bytes differ but the numbers do not (-0.0, a NaN, integers past 2^53):
                                    // no finite rescale, so the share stops here.
                                    rca.notes.push(format!(
                                        "`{edge}`: value and baseline are equal as numbers; not walked further"
                                    ));
                                    rca.paths.push(RcaPath { path, attribution: phi, ends: "stopped" });
                                }
                                Source::Step { step: from, tensor } => {
                                    let gap = feature.value - feature.baseline;
                                    tasks.push(Task {
                                        step: from.clone(),
                                        tensor: tensor.clone(),
                                        weights: vec![(Some(feature.element), phi / gap)],
                                        path,
                                        share: phi,
                                    });
                                }
                            }
                        }
                        node.attributions.sort_by(|a, b| b.attribution.abs().total_cmp(&a.attribution.abs()));
                        None
                    }
                }
            }
        };
        if let Some(reason) = stop {
            rca.paths.push(RcaPath { path: task.path.clone(), attribution: task.share, ends: "stopped" });
            rca.notes.push(format!("stopped at step `{}`: {reason}", step.name));
            node.stopped = Some(reason);
        }
        rca.steps.push(node);
    }
    let explained: f64 = leaves.iter().map(|l| l.attribution).sum();
    rca.unexplained = change.unwrap_or(0.0) - explained;
    leaves.sort_by(|a, b| b.attribution.abs().total_cmp(&a.attribution.abs()));
    rca.inputs = leaves;
    rca.paths.sort_by(|a, b| b.attribution.abs().total_cmp(&a.attribution.abs()));
    (rca.cpu_us, rca.step_runs) = replay.cost();
    Ok(rca)
}

/// Shares of one upstream element reached over several paths add up.
fn add_leaf(leaves: &mut Vec<Attribution>, edge: &str, value: f64, baseline: f64, phi: f64) {
    match leaves.iter_mut().find(|l| l.feature == edge) {
        Some(leaf) => leaf.attribution += phi,
        None => leaves.push(Attribution { feature: edge.into(), value, baseline, attribution: phi, std_error: None }),
    }
}

fn edge_name(route: &Route) -> String {
    match &route.source {
        Source::Input(name) => format!("input.{name}"),
        Source::Step { step, tensor } => format!("{step}.{tensor}"),
    }
}

fn describe(task: &Task) -> String {
    let terms: Vec<String> = task
        .weights
        .iter()
        .map(|(i, w)| match i {
            Some(i) if task.weights.len() == 1 && *w == 1.0 => format!("{}.{}[{i}]", task.step, task.tensor),
            Some(i) => format!("{w:.4} × {}.{}[{i}]", task.step, task.tensor),
            None => format!("{}.{}", task.step, task.tensor),
        })
        .collect();
    terms.join(" + ")
}

/// The mean of what `records` kept on one input edge of a step.
fn recorded_mean(records: &[InvocationRecord], step: &str, like: &Tensor) -> Option<Tensor> {
    let kept: Vec<Tensor> = records
        .iter()
        .filter_map(|r| r.steps.iter().find(|s| s.step == step))
        .filter_map(|s| s.inputs.iter().find(|e| e.name == like.name))
        .filter_map(|e| space::recorded(e).ok())
        .collect();
    space::row_mean(&kept, like)
}

/// The step's inputs as the record kept them, or why they cannot be replayed.
fn recorded_inputs(record: &InvocationRecord, step: &str, routes: &[Route]) -> Result<Vec<Tensor>, String> {
    let Some(recorded) = record.steps.iter().find(|s| s.step == step) else {
        return Err("the record has no run of this step".into());
    };
    routes
        .iter()
        .map(|r| {
            let edge = recorded
                .inputs
                .iter()
                .find(|e| e.name == r.name)
                .ok_or_else(|| format!("input `{}` is not in the record", r.name))?;
            if let Some(hmac) = &edge.hmac_sha256 {
                return Err(format!(
                    "input `{}` ({}) is sensitive: walked by hash only (hmac-sha256 {hmac}), not replayed",
                    r.name,
                    edge_name(r)
                ));
            }
            space::recorded(edge).map_err(|e| e.to_string())
        })
        .collect()
}
