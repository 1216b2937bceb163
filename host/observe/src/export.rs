//! Recorded invocations as rows for (re)training: chosen edges and the
//! feedback of each invocation, one JSON object per line. Sensitive edges
//! are never exported: a record keeps only their keyed hash.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

use crate::provenance::{EdgeTensor, InvocationRecord};

/// One edge of the recorded graph, as a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    /// A request tensor: `input.NAME`.
    Input(String),
    /// A step's output: `STEP.TENSOR`.
    Step { step: String, tensor: String },
    /// A pipeline output: `output.NAME`.
    Output(String),
    /// The true value sent as feedback for an output: `feedback.NAME`.
    Feedback(String),
}

impl FromStr for Column {
    type Err = String;

    fn from_str(text: &str) -> Result<Column, String> {
        let (owner, name) = text.split_once('.').filter(|(o, n)| !o.is_empty() && !n.is_empty()).ok_or_else(|| {
            format!("`{text}` is not an edge; write input.NAME, output.NAME, feedback.NAME or STEP.TENSOR")
        })?;
        Ok(match owner {
            "input" => Column::Input(name.into()),
            "output" => Column::Output(name.into()),
            "feedback" => Column::Feedback(name.into()),
            step => Column::Step { step: step.into(), tensor: name.into() },
        })
    }
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Column::Input(name) => write!(f, "input.{name}"),
            Column::Step { step, tensor } => write!(f, "{step}.{tensor}"),
            Column::Output(name) => write!(f, "output.{name}"),
            Column::Feedback(name) => write!(f, "feedback.{name}"),
        }
    }
}

/// What an export left out, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Failed invocations (no answer to learn from).
    pub failed: u64,
    /// Invocations without feedback, when only those with feedback were asked for.
    pub without_feedback: u64,
    /// Values of sensitive edges (only their keyed hash is recorded).
    pub sensitive: u64,
    /// Values recorded by hash only (`keep_tensors = false`) or absent.
    pub not_kept: u64,
}

/// The columns for a record, or why a value is not there.
enum Cell {
    Value(Value),
    Sensitive,
    Missing,
}

fn cell(edge: Option<&EdgeTensor>) -> Cell {
    match edge {
        Some(e) if e.hmac_sha256.is_some() => Cell::Sensitive,
        Some(EdgeTensor { data: Some(data), .. }) => Cell::Value(data.clone()),
        _ => Cell::Missing,
    }
}

fn find<'a>(edges: &'a [EdgeTensor], name: &str) -> Option<&'a EdgeTensor> {
    edges.iter().find(|e| e.name == name)
}

/// One record as a row of `columns` (with its id, time, pipeline and
/// variant), or `None` when it is left out; `skipped` counts why.
pub fn row(
    record: &InvocationRecord,
    columns: &[Column],
    only_with_feedback: bool,
    skipped: &mut Skipped,
) -> Option<Value> {
    if record.error.is_some() {
        skipped.failed += 1;
        return None;
    }
    if only_with_feedback && record.feedback.is_none() {
        skipped.without_feedback += 1;
        return None;
    }
    let mut row = Map::new();
    row.insert("invocation_id".into(), Value::from(record.invocation_id.clone()));
    row.insert("unix_ms".into(), Value::from(record.unix_ms));
    row.insert("pipeline".into(), Value::from(record.pipeline.clone()));
    if let Some(v) = &record.variant {
        row.insert("variant".into(), Value::from(format!("{}/{}", v.experiment, v.variant)));
    }
    for column in columns {
        let found = match column {
            Column::Input(name) => cell(find(&record.inputs, name)),
            Column::Output(name) => cell(find(&record.outputs, name)),
            Column::Step { step, tensor } => {
                cell(record.steps.iter().find(|s| &s.step == step).and_then(|s| find(&s.outputs, tensor)))
            }
            Column::Feedback(name) => cell(record.feedback.as_ref().and_then(|f| find(&f.truth, name))),
        };
        let value = match found {
            Cell::Value(value) => value,
            Cell::Sensitive => {
                skipped.sensitive += 1;
                Value::Null
            }
            Cell::Missing => {
                skipped.not_kept += 1;
                Value::Null
            }
        };
        row.insert(column.to_string(), value);
    }
    Some(Value::Object(row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_parse_and_print_back() {
        for text in ["input.x", "output.label", "feedback.label", "classify.probabilities"] {
            assert_eq!(text.parse::<Column>().unwrap().to_string(), text);
        }
        for bad in ["x", ".x", "input.", ""] {
            assert!(bad.parse::<Column>().unwrap_err().contains("is not an edge"), "{bad}");
        }
    }
}
