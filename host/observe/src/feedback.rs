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
    #[error(
        "output `{output}`: the truth is {got}; the answer was {answered}: send the truth in the answer's datatype"
    )]
    Datatype { output: String, got: String, answered: String },
    #[error("output `{output}`: the truth holds a number that is not finite")]
    NotFinite { output: String },
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
            if t.datatype.name() != answered.datatype {
                return Err(FeedbackError::Datatype {
                    output: t.name.clone(),
                    got: t.datatype.name().into(),
                    answered: answered.datatype.clone(),
                });
            }
            let data = answered
                .data
                .as_ref()
                .ok_or_else(|| FeedbackError::NotKept { id: record.invocation_id.clone(), output: t.name.clone() })?;
            // Recorded data is flat: one JSON value per element.
            let answer: Vec<Element> = data.as_array().map(|a| a.iter().map(normal).collect()).unwrap_or_default();
            let truth_values = values(t);
            // JSON has no NaN or infinity: such a number is `null` here.
            let float = t.datatype.name().starts_with("FP");
            if float && truth_values.iter().any(|v| !v.as_f64().is_some_and(f64::is_finite)) {
                return Err(FeedbackError::NotFinite { output: t.name.clone() });
            }
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

/// Integers as floats, so `3` and `3.0` are the same label.
fn normal(value: &serde_json::Value) -> Element {
    match value.as_f64() {
        Some(n) => serde_json::json!(n),
        None => value.clone(),
    }
}

/// A numeric element; an answer recorded as anything else (a NaN or an
/// infinity is recorded as `null`) is infinitely wrong, so it can never
/// pass a bound on the error.
fn number(value: &Element) -> f64 {
    value.as_f64().unwrap_or(f64::INFINITY)
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
    /// The current clock minute (since it began).
    pub this_minute: Window,
    /// The current minute and the 59 before it.
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
        let mut tracks = self.tracks.lock().unwrap_or_else(|p| p.into_inner());
        let minute = self.started.elapsed().as_secs() / 60;
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
        let tracks = self.tracks.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.started.elapsed().as_secs() / 60;
        tracks
            .iter()
            .map(|((pipeline, variant, output), track)| {
                let within = |minutes: u64| {
                    let mut sums = Sums::default();
                    for (_, s) in track.minutes.iter().filter(|(m, _)| now.saturating_sub(*m) < minutes) {
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
                    this_minute: within(1),
                    last_hour: within(MINUTES as u64),
                }
            })
            .collect()
    }

    /// Totals in the Prometheus text format (label values escaped).
    pub fn metrics_text(&self, out: &mut String) {
        use std::fmt::Write;
        let figures = self.figures();
        if figures.is_empty() {
            return;
        }
        let tracks = self.tracks.lock().unwrap_or_else(|p| p.into_inner());
        let rows: Vec<(String, &Track)> = tracks
            .iter()
            .map(|((p, v, o), t)| {
                let (p, v, o) = (escape(p), escape(v), escape(o));
                (format!("pipeline=\"{p}\",variant=\"{v}\",output=\"{o}\""), t)
            })
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

/// A Prometheus label value: backslash, double quote and newline escaped.
pub fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::Datatype;

    fn record(outputs: Value) -> InvocationRecord {
        serde_json::from_value(serde_json::json!({
            "invocation_id": "i", "pipeline": "p", "unix_ms": 1, "inputs": [], "steps": [], "outputs": outputs,
            "receipt": {"invocation_id": "i", "wall_us": 1, "queue_wait_us": 0, "cpu_us": 1, "energy_j": 0.0,
                        "energy_method": "cpu-model", "cost": 0.0, "gco2e": 0.0, "steps": []}
        }))
        .unwrap()
    }

    use serde_json::Value;

    fn tensor(name: &str, datatype: Datatype, values: &[u8]) -> Tensor {
        let size = weir_core::tensor::element_size(datatype).unwrap();
        Tensor { name: name.into(), datatype, shape: vec![(values.len() / size) as u64], data: values.to_vec() }
    }

    fn fp32(values: &[f32]) -> Tensor {
        tensor("eta", Datatype::Fp32, &values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>())
    }

    #[test]
    fn numbers_score_their_absolute_error_and_a_non_finite_answer_is_infinitely_wrong() {
        let answered =
            record(serde_json::json!([{"name": "eta", "datatype": "FP32", "shape": [2], "data": [10.0, 20.0]}]));
        let scores = score(&answered, &[fp32(&[11.0, 18.0])]).unwrap();
        assert_eq!((scores[0].elements, scores[0].abs_error_sum, scores[0].correct), (2, Some(3.0), None));
        let nan = record(serde_json::json!([{"name": "eta", "datatype": "FP32", "shape": [1], "data": [null]}]));
        assert_eq!(score(&nan, &[fp32(&[1.0])]).unwrap()[0].abs_error_sum, Some(f64::INFINITY));
        assert!(matches!(score(&answered, &[fp32(&[f32::NAN, 1.0])]), Err(FeedbackError::NotFinite { .. })));
    }

    #[test]
    fn labels_score_equal_elements_and_the_truth_must_have_the_answers_datatype_and_length() {
        let answered =
            record(serde_json::json!([{"name": "label", "datatype": "INT64", "shape": [3], "data": [1, 2, 3]}]));
        let ints =
            |v: &[i64]| tensor("label", Datatype::Int64, &v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>());
        assert_eq!(score(&answered, &[ints(&[1, 0, 3])]).unwrap()[0].correct, Some(2));
        let wrong_type = tensor("label", Datatype::Int32, &[1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]);
        assert!(matches!(score(&answered, &[wrong_type]), Err(FeedbackError::Datatype { .. })));
        assert!(matches!(score(&answered, &[ints(&[1, 2])]), Err(FeedbackError::Shape { .. })));
        assert!(matches!(score(&answered, &[]), Err(FeedbackError::Empty)));
    }

    #[test]
    fn quality_sums_per_output_and_escapes_its_labels() {
        let quality = Quality::default();
        let label = Score { output: "a\"b".into(), elements: 2, correct: Some(1), abs_error_sum: None };
        quality.record("p", "", &[label.clone(), label]);
        let figures = quality.figures();
        assert_eq!((figures[0].total.feedback, figures[0].total.value, figures[0].metric), (2, Some(0.5), "accuracy"));
        assert_eq!(figures[0].this_minute.feedback, 2);
        let mut text = String::new();
        quality.metrics_text(&mut text);
        assert!(text.contains("output=\"a\\\"b\"} 2"), "{text}");
    }
}
