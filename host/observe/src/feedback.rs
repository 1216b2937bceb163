//! Feedback: the true outcome of a recorded invocation, scored against what
//! it answered, and the live quality those scores add up to per pipeline,
//! experiment variant and output — in total and over the last minute and
//! hour.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use weir_core::Tensor;

use crate::provenance::{EdgeTensor, InvocationRecord};

/// How one output of one invocation compared with the truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub output: String,
    /// Elements compared.
    pub elements: u64,
    /// Labels (integers, booleans, strings): elements equal to the truth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correct: Option<u64>,
    /// Numbers (floats): the sum of absolute errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abs_error_sum: Option<f64>,
}

/// What a record keeps of its feedback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    pub unix_ms: u64,
    pub truth: Vec<EdgeTensor>,
    pub scores: Vec<Score>,
}

/// Why feedback cannot be scored (the caller's mistake, said plainly).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FeedbackError {
    #[error("invocation {id} has no output `{output}` (its outputs: {known:?})")]
    UnknownOutput { id: String, output: String, known: Vec<String> },
    #[error("output `{output}` of invocation {id} is sensitive or its data was not kept (keep_tensors = false): only its hash is recorded, nothing to score against")]
    NotKept { id: String, output: String },
    #[error("output `{output}`: the truth has {got} elements of {datatype}; the answer had {want} of {answered}")]
    Shape { output: String, got: usize, datatype: String, want: usize, answered: String },
    #[error("invocation {id} failed; there is no answer to score")]
    Failed { id: String },
    #[error("feedback names no output")]
    Empty,
}

/// Score `truth` against what `record` answered.
pub fn score(record: &InvocationRecord, truth: &[Tensor]) -> Result<Vec<Score>, FeedbackError> {
    if truth.is_empty() {
        return Err(FeedbackError::Empty);
    }
    if record.error.is_some() {
        return Err(FeedbackError::Failed { id: record.invocation_id.clone() });
    }
    truth
        .iter()
        .map(|t| {
            let answered =
                record.outputs.iter().find(|o| o.name == t.name).ok_or_else(|| FeedbackError::UnknownOutput {
                    id: record.invocation_id.clone(),
                    output: t.name.clone(),
                    known: record.outputs.iter().map(|o| o.name.clone()).collect(),
                })?;
            let data = answered
                .data
                .as_ref()
                .ok_or_else(|| FeedbackError::NotKept { id: record.invocation_id.clone(), output: t.name.clone() })?;
            let mut answer = Vec::new();
            flatten(data, &mut answer);
            let truth_values = values(t);
            if truth_values.len() != answer.len() {
                return Err(FeedbackError::Shape {
                    output: t.name.clone(),
                    got: truth_values.len(),
                    datatype: t.datatype.name().into(),
                    want: answer.len(),
                    answered: answered.datatype.clone(),
                });
            }
            let elements = answer.len() as u64;
            let label = !answered.datatype.starts_with("FP");
            Ok(if label {
                let correct = answer.iter().zip(&truth_values).filter(|(a, t)| a == t).count() as u64;
                Score { output: t.name.clone(), elements, correct: Some(correct), abs_error_sum: None }
            } else {
                let sum = answer.iter().zip(&truth_values).map(|(a, t)| (number(a) - number(t)).abs()).sum();
                Score { output: t.name.clone(), elements, correct: None, abs_error_sum: Some(sum) }
            })
        })
        .collect()
}

/// One element, as JSON: numbers compare as numbers, anything else as text.
type Element = serde_json::Value;

fn flatten(value: &serde_json::Value, out: &mut Vec<Element>) {
    match value {
        serde_json::Value::Array(items) => items.iter().for_each(|v| flatten(v, out)),
        other => out.push(normal(other)),
    }
}

/// Integers as floats, so `3` and `3.0` are the same label.
fn normal(value: &serde_json::Value) -> Element {
    match value.as_f64() {
        Some(n) => serde_json::json!(n),
        None => value.clone(),
    }
}

fn number(value: &Element) -> f64 {
    value.as_f64().unwrap_or(f64::NAN)
}

/// A truth tensor's elements in the same JSON form as recorded data.
fn values(tensor: &Tensor) -> Vec<Element> {
    weir_core::tensor_json::json_values(tensor).iter().map(normal).collect()
}

/// The truth as a record keeps it (data and plain hash).
pub fn truth_edge(tensor: &Tensor) -> EdgeTensor {
    EdgeTensor {
        name: tensor.name.clone(),
        datatype: tensor.datatype.name().to_string(),
        shape: tensor.shape.clone(),
        sha256: Some(weir_core::Digest::of(&tensor.data).to_string()),
        hmac_sha256: None,
        data: Some(serde_json::Value::Array(weir_core::tensor_json::json_values(tensor))),
    }
}

/// Scores over a span: elements, correct labels, summed absolute errors.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Sums {
    feedback: u64,
    elements: u64,
    correct: u64,
    abs_error_sum: f64,
}

impl Sums {
    fn add(&mut self, score: &Score) {
        self.feedback += 1;
        self.elements += score.elements;
        self.correct += score.correct.unwrap_or(0);
        self.abs_error_sum += score.abs_error_sum.unwrap_or(0.0);
    }
}

/// Minutes of history kept per output.
const MINUTES: usize = 60;

#[derive(Default)]
struct Track {
    label: bool,
    total: Sums,
    /// (minute since start, sums), newest last.
    minutes: Vec<(u64, Sums)>,
}

/// Live quality per (pipeline, variant, output).
pub struct Quality {
    started: Instant,
    tracks: Mutex<BTreeMap<(String, String, String), Track>>,
}

impl Default for Quality {
    fn default() -> Self {
        Quality { started: Instant::now(), tracks: Mutex::default() }
    }
}

/// One output's quality for the status API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QualityFigures {
    pub pipeline: String,
    /// `experiment/variant`, or empty when no experiment served it.
    pub variant: String,
    pub output: String,
    /// `accuracy` (labels) or `mae` (numbers).
    pub metric: &'static str,
    pub total: Window,
    pub last_minute: Window,
    pub last_hour: Window,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    pub feedback: u64,
    pub elements: u64,
    /// Accuracy or mean absolute error over the elements; `None` without feedback.
    pub value: Option<f64>,
}

impl Quality {
    /// Count the scores of one invocation's feedback.
    pub fn record(&self, pipeline: &str, variant: &str, scores: &[Score]) {
        let minute = self.started.elapsed().as_secs() / 60;
        let mut tracks = self.tracks.lock().unwrap_or_else(|p| p.into_inner());
        for score in scores {
            let key = (pipeline.to_string(), variant.to_string(), score.output.clone());
            let track = tracks.entry(key).or_default();
            track.label = score.correct.is_some();
            track.total.add(score);
            match track.minutes.last_mut() {
                Some((m, sums)) if *m == minute => sums.add(score),
                _ => {
                    let mut sums = Sums::default();
                    sums.add(score);
                    track.minutes.push((minute, sums));
                    if track.minutes.len() > MINUTES {
                        track.minutes.remove(0);
                    }
                }
            }
        }
    }

    pub fn figures(&self) -> Vec<QualityFigures> {
        let now = self.started.elapsed().as_secs() / 60;
        let tracks = self.tracks.lock().unwrap_or_else(|p| p.into_inner());
        tracks
            .iter()
            .map(|((pipeline, variant, output), track)| {
                let within = |minutes: u64| {
                    let mut sums = Sums::default();
                    for (m, s) in track.minutes.iter().filter(|(m, _)| now - m < minutes) {
                        let _ = m;
                        sums.feedback += s.feedback;
                        sums.elements += s.elements;
                        sums.correct += s.correct;
                        sums.abs_error_sum += s.abs_error_sum;
                    }
                    window(&sums, track.label)
                };
                QualityFigures {
                    pipeline: pipeline.clone(),
                    variant: variant.clone(),
                    output: output.clone(),
                    metric: if track.label { "accuracy" } else { "mae" },
                    total: window(&track.total, track.label),
                    last_minute: within(1),
                    last_hour: within(MINUTES as u64),
                }
            })
            .collect()
    }

    /// Totals in the Prometheus text format (names are the manifest's:
    /// letters, digits, `-`, `_`, `@`, `/`).
    pub fn metrics_text(&self, out: &mut String) {
        use std::fmt::Write;
        let figures = self.figures();
        if figures.is_empty() {
            return;
        }
        let tracks = self.tracks.lock().unwrap_or_else(|p| p.into_inner());
        let rows: Vec<(String, &Track)> = tracks
            .iter()
            .map(|((p, v, o), t)| (format!("pipeline=\"{p}\",variant=\"{v}\",output=\"{o}\""), t))
            .collect();
        let mut family = |name: &str, kind: &str, help: &str, value: &dyn Fn(&Track) -> Option<f64>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, track) in &rows {
                if let Some(v) = value(track) {
                    let _ = writeln!(out, "{name}{{{labels}}} {v}");
                }
            }
        };
        family("weir_feedback_total", "counter", "Invocations given feedback, per output.", &|t| {
            Some(t.total.feedback as f64)
        });
        family("weir_feedback_elements_total", "counter", "Output elements scored against feedback.", &|t| {
            Some(t.total.elements as f64)
        });
        family("weir_feedback_correct_total", "counter", "Label elements equal to the feedback's.", &|t| {
            t.label.then_some(t.total.correct as f64)
        });
        family("weir_feedback_abs_error_sum", "counter", "Summed absolute error of numeric elements.", &|t| {
            (!t.label).then_some(t.total.abs_error_sum)
        });
    }
}

fn window(sums: &Sums, label: bool) -> Window {
    let value = (sums.elements > 0).then(|| {
        if label {
            sums.correct as f64 / sums.elements as f64
        } else {
            sums.abs_error_sum / sums.elements as f64
        }
    });
    Window { feedback: sums.feedback, elements: sums.elements, value }
}
