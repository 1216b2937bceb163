//! A reference window from a file: an Open Inference Protocol request body
//! (`{"inputs": [{"name", "datatype", "shape", "data"}]}`), one tensor per
//! monitor input, named like the input, rows along the first dimension.

use std::path::Path;

use serde::Deserialize;
use weir_core::tensor::{element_count, parse_datatype};
use weir_core::Tensor;
use weir_manifest::offpath::Monitor;
use weir_manifest::Source;

use crate::MonitorError;

/// The largest reference file read.
const MAX_BYTES: u64 = 256 << 20;

#[derive(Deserialize)]
struct Body {
    inputs: Vec<Input>,
}

#[derive(Deserialize)]
struct Input {
    name: String,
    datatype: String,
    shape: Vec<u64>,
    data: serde_json::Value,
}

fn flatten(value: &serde_json::Value, out: &mut Vec<f64>) -> Result<(), String> {
    match value {
        serde_json::Value::Array(items) => items.iter().try_for_each(|v| flatten(v, out)),
        serde_json::Value::Bool(b) => {
            out.push(f64::from(u8::from(*b)));
            Ok(())
        }
        other => other.as_f64().map(|v| out.push(v)).ok_or_else(|| format!("`{other}` is not a number")),
    }
}

pub(crate) fn read_reference(path: &Path, monitor: &Monitor) -> Result<Vec<Tensor>, MonitorError> {
    let bad =
        |problem: String| MonitorError::Reference { monitor: monitor.name.clone(), file: path.to_path_buf(), problem };
    let size = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?.len();
    if size > MAX_BYTES {
        return Err(bad(format!("{size} bytes is over the limit of {MAX_BYTES}")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let body: Body = serde_json::from_str(&text).map_err(|e| bad(format!("not an OIP request body: {e}")))?;
    let mut tensors = Vec::new();
    for route in &monitor.run.inputs {
        // Named as the monitor reads it, or as the edge is called (`features` for `x=input.features`).
        let edge = match &route.source {
            Source::Input(name) => name.clone(),
            Source::Step { step, tensor } => format!("{step}.{tensor}"),
        };
        let input = body.inputs.iter().find(|i| i.name == route.name || i.name == edge).ok_or_else(|| {
            bad(format!("no tensor `{}` or `{edge}` (the monitor's inputs are named {:?})", route.name, names(monitor)))
        })?;
        let datatype = parse_datatype(&input.datatype)
            .ok_or_else(|| bad(format!("`{}`: unknown datatype `{}`", input.name, input.datatype)))?;
        let mut values = Vec::new();
        flatten(&input.data, &mut values).map_err(|e| bad(format!("`{}`: {e}", input.name)))?;
        if input.shape.is_empty() || element_count(&input.shape) != Some(values.len()) {
            return Err(bad(format!(
                "`{}`: shape {:?} does not hold {} elements (rows first)",
                input.name,
                input.shape,
                values.len()
            )));
        }
        let data = weir_core::tensor_json::encode(datatype, &values)
            .ok_or_else(|| bad(format!("`{}`: {} is not a numeric datatype", input.name, input.datatype)))?;
        tensors.push(Tensor { name: route.name.clone(), datatype, shape: input.shape.clone(), data });
    }
    Ok(tensors)
}

fn names(monitor: &Monitor) -> Vec<&str> {
    monitor.run.inputs.iter().map(|r| r.name.as_str()).collect()
}
