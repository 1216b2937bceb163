//! Open Inference Protocol v2 JSON: requests into tensors, tensors into
//! responses. Both nested and flat `data` arrays are accepted.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

use weir_core::tensor::{datatype_name, element_count, element_size, json_values, parse_datatype, ALL_DATATYPES};
use weir_core::{Classify, Datatype, ErrorKind, Tensor};
use weir_executor::{PipelineOutput, RunOptions};
use weir_observe::receipts::Receipt;

/// A request that is not valid OIP JSON, with where and why.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{0}")]
pub struct OipError(pub String);

impl Classify for OipError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidInput
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct InferenceRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
    pub inputs: Vec<RequestInput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<RequestOutput>>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RequestInput {
    pub name: String,
    pub shape: Vec<u64>,
    pub datatype: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
    pub data: Value,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RequestOutput {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferenceResponse {
    pub model_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
    pub outputs: Vec<ResponseOutput>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseOutput {
    pub name: String,
    pub shape: Vec<u64>,
    pub datatype: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
    pub data: Vec<Value>,
}

/// One step of a traced invocation (`parameters.trace[]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TracedStep {
    pub step: String,
    pub started_after_us: u64,
    pub wall_us: u64,
    pub instantiate_us: u64,
    pub inference_us: u64,
    pub outputs: Vec<ResponseOutput>,
}

/// Parse request JSON; the error says where the JSON went wrong.
pub fn parse_request(bytes: &[u8]) -> Result<InferenceRequest, OipError> {
    serde_json::from_slice(bytes).map_err(|e| {
        OipError(format!(
            "the request is not an Open Inference Protocol v2 inference request: {e}. Expected \
             {{\"inputs\": [{{\"name\": ..., \"shape\": [...], \"datatype\": \"FP32\", \"data\": [...]}}]}}"
        ))
    })
}

/// The request's inputs as tensors, each checked against its shape.
pub fn request_tensors(request: &InferenceRequest) -> Result<Vec<Tensor>, OipError> {
    request.inputs.iter().enumerate().map(|(i, input)| input_tensor(i, input)).collect()
}

fn input_tensor(index: usize, input: &RequestInput) -> Result<Tensor, OipError> {
    let at = format!("inputs[{index}] (`{}`)", input.name);
    let datatype = parse_datatype(&input.datatype).ok_or_else(|| {
        let known: Vec<&str> = ALL_DATATYPES.iter().map(|d| datatype_name(*d)).collect();
        OipError(format!("{at}: unknown datatype `{}`; expected one of {}", input.datatype, known.join(", ")))
    })?;
    let count = element_count(&input.shape)
        .ok_or_else(|| OipError(format!("{at}: shape {:?} has too many elements", input.shape)))?;
    let mut leaves = Vec::with_capacity(count);
    flatten(&input.data, &mut leaves);
    if leaves.len() != count {
        return Err(OipError(format!(
            "{at}: shape {:?} holds {count} elements but `data` has {}",
            input.shape,
            leaves.len()
        )));
    }
    let mut data = Vec::with_capacity(count * element_size(datatype).unwrap_or(8));
    for (i, leaf) in leaves.iter().enumerate() {
        encode_element(datatype, leaf, &mut data).map_err(|expected| {
            OipError(format!("{at}: data[{i}] is {leaf}, expected {expected} for {}", input.datatype))
        })?;
    }
    Ok(Tensor { name: input.name.clone(), datatype, shape: input.shape.clone(), data })
}

fn flatten<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| flatten(item, out)),
        leaf => out.push(leaf),
    }
}

/// Append one element in little-endian; on mismatch say what was expected.
fn encode_element(datatype: Datatype, value: &Value, out: &mut Vec<u8>) -> Result<(), &'static str> {
    fn int<T: TryFrom<i64> + TryFrom<u64>>(value: &Value) -> Option<T> {
        match value {
            Value::Number(n) => {
                n.as_i64().and_then(|v| T::try_from(v).ok()).or_else(|| n.as_u64().and_then(|v| T::try_from(v).ok()))
            }
            _ => None,
        }
    }
    const INT: &str = "an integer in range";
    match datatype {
        Datatype::Bool => out.push(value.as_bool().ok_or("true or false")? as u8),
        Datatype::Uint8 => out.extend(int::<u8>(value).ok_or(INT)?.to_le_bytes()),
        Datatype::Uint16 => out.extend(int::<u16>(value).ok_or(INT)?.to_le_bytes()),
        Datatype::Uint32 => out.extend(int::<u32>(value).ok_or(INT)?.to_le_bytes()),
        Datatype::Uint64 => out.extend(int::<u64>(value).ok_or(INT)?.to_le_bytes()),
        Datatype::Int8 => out.extend(int::<i8>(value).ok_or(INT)?.to_le_bytes()),
        Datatype::Int16 => out.extend(int::<i16>(value).ok_or(INT)?.to_le_bytes()),
        Datatype::Int32 => out.extend(int::<i32>(value).ok_or(INT)?.to_le_bytes()),
        Datatype::Int64 => out.extend(int::<i64>(value).ok_or(INT)?.to_le_bytes()),
        Datatype::Fp16 => out.extend(half::f16::from_f64(value.as_f64().ok_or("a number")?).to_le_bytes()),
        Datatype::Fp32 => out.extend((value.as_f64().ok_or("a number")? as f32).to_le_bytes()),
        Datatype::Fp64 => out.extend(value.as_f64().ok_or("a number")?.to_le_bytes()),
        Datatype::Bytes => {
            let text = value.as_str().ok_or("a string")?;
            weir_core::tensor::push_bytes_element(out, text.as_bytes());
        }
    }
    Ok(())
}

/// A (validated) tensor as an OIP response output with flat `data`.
/// BYTES elements that are UTF-8 become strings, others arrays of byte values.
pub fn tensor_to_output(tensor: &Tensor) -> ResponseOutput {
    ResponseOutput {
        name: tensor.name.clone(),
        shape: tensor.shape.clone(),
        datatype: datatype_name(tensor.datatype).to_string(),
        parameters: None,
        data: json_values(tensor),
    }
}

/// Keep only the outputs a request asked for (all when it named none).
pub fn select_outputs(requested: Option<&[RequestOutput]>, outputs: Vec<Tensor>) -> Result<Vec<Tensor>, OipError> {
    let Some(requested) = requested.filter(|r| !r.is_empty()) else { return Ok(outputs) };
    requested
        .iter()
        .map(|want| {
            outputs.iter().find(|t| t.name == want.name).cloned().ok_or_else(|| {
                let names: Vec<&str> = outputs.iter().map(|t| t.name.as_str()).collect();
                OipError(format!("requested output `{}` does not exist; outputs are {names:?}", want.name))
            })
        })
        .collect()
}

/// Request parameters weir understands: `trace` (return every edge's
/// tensors and per-step timings), `until` (run up to a named step),
/// `receipt` (`"compact"`, the default, or `"full"` with every step) and
/// `subject` (whose data this is, for erasure from the provenance store).
pub fn run_options(request: &InferenceRequest) -> Result<RunOptions, OipError> {
    let mut options = RunOptions::default();
    let Some(parameters) = &request.parameters else { return Ok(options) };
    if let Some(trace) = parameters.get("trace") {
        options.trace =
            trace.as_bool().ok_or_else(|| OipError(format!("parameters.trace must be true or false, got {trace}")))?;
    }
    if let Some(until) = parameters.get("until") {
        let step =
            until.as_str().ok_or_else(|| OipError(format!("parameters.until must be a step name, got {until}")))?;
        options.until = Some(step.to_string());
    }
    if let Some(detail) = parameters.get("receipt") {
        options.full_receipt = match detail.as_str() {
            Some("full") => true,
            Some("compact") => false,
            _ => return Err(OipError(format!("parameters.receipt must be \"compact\" or \"full\", got {detail}"))),
        };
    }
    if let Some(subject) = parameters.get("subject") {
        let subject =
            subject.as_str().ok_or_else(|| OipError(format!("parameters.subject must be a string, got {subject}")))?;
        options.subject = Some(subject.to_string());
    }
    Ok(options)
}

/// The OIP response for a pipeline run: `parameters.receipt` holds the
/// invocation's receipt (when accounting is on): its totals, or with
/// `full_receipt` every step's too; with `trace`, `parameters.trace` lists every
/// step with its timings and the tensors it produced.
pub fn pipeline_response(
    model_name: &str,
    request: &InferenceRequest,
    output: &PipelineOutput,
    options: &RunOptions,
    receipt: Option<&Receipt>,
) -> Result<InferenceResponse, OipError> {
    let trace = options.trace;
    let outputs = select_outputs(request.outputs.as_deref(), output.outputs.clone())?;
    let mut parameters = Map::new();
    if let Some(receipt) = receipt {
        let receipt =
            if options.full_receipt { serde_json::to_value(receipt) } else { serde_json::to_value(receipt.compact()) };
        parameters.insert("receipt".into(), receipt.unwrap_or(Value::Null));
    }
    if trace {
        let steps: Vec<TracedStep> = output
            .steps
            .iter()
            .map(|step| TracedStep {
                step: step.step.clone(),
                started_after_us: step.started_after.as_micros() as u64,
                wall_us: step.stats.wall.as_micros() as u64,
                instantiate_us: step.stats.instantiate.as_micros() as u64,
                inference_us: step.stats.nn.inference_time.as_micros() as u64,
                outputs: step.outputs.iter().map(tensor_to_output).collect(),
            })
            .collect();
        parameters.insert("trace".into(), serde_json::to_value(steps).unwrap_or(Value::Null));
        parameters.insert("wall_us".into(), Value::from(output.wall.as_micros() as u64));
    }
    Ok(InferenceResponse {
        model_name: model_name.to_string(),
        model_version: None,
        id: request.id.clone(),
        parameters: (!parameters.is_empty()).then_some(parameters),
        outputs: outputs.iter().map(tensor_to_output).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> Result<Vec<Tensor>, OipError> {
        request_tensors(&parse_request(json.as_bytes())?)
    }

    #[test]
    fn nested_and_flat_data_agree() {
        let flat = request(r#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[1,2,3,4]}]}"#).unwrap();
        let nested =
            request(r#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4]]}]}"#).unwrap();
        assert_eq!(flat, nested);
        assert_eq!(flat[0].data.len(), 16);
    }

    #[test]
    fn every_datatype_round_trips() {
        let cases = [
            ("BOOL", "[true,false]"),
            ("UINT8", "[0,255]"),
            ("UINT16", "[0,65535]"),
            ("UINT32", "[0,4294967295]"),
            ("UINT64", "[0,18446744073709551615]"),
            ("INT8", "[-128,127]"),
            ("INT16", "[-32768,32767]"),
            ("INT32", "[-2147483648,2147483647]"),
            ("INT64", "[-9223372036854775808,9223372036854775807]"),
            ("FP16", "[0.5,-2.0]"),
            ("FP32", "[0.25,-1.5]"),
            ("FP64", "[0.1,-1e300]"),
            ("BYTES", r#"["héllo",""]"#),
        ];
        for (dt, data) in cases {
            let json = format!(r#"{{"inputs":[{{"name":"x","shape":[2],"datatype":"{dt}","data":{data}}}]}}"#);
            let tensors = request(&json).unwrap_or_else(|e| panic!("{dt}: {e}"));
            weir_core::tensor::validate(&tensors[0]).unwrap();
            let back = serde_json::to_string(&tensor_to_output(&tensors[0]).data).unwrap();
            let expected: Value = serde_json::from_str(data).unwrap();
            let got: Value = serde_json::from_str(&back).unwrap();
            assert_eq!(got, expected, "{dt}");
        }
    }

    #[test]
    fn bad_requests_say_what_and_where() {
        let err = request(r#"{"inputs":[{"name":"x","shape":[2],"datatype":"FLOAT32","data":[1,2]}]}"#).unwrap_err();
        assert!(err.0.contains("inputs[0] (`x`): unknown datatype `FLOAT32`") && err.0.contains("FP32"), "{err}");
        let err = request(r#"{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2]}]}"#).unwrap_err();
        assert!(err.0.contains("holds 3 elements but `data` has 2"), "{err}");
        let err = request(r#"{"inputs":[{"name":"x","shape":[1],"datatype":"UINT8","data":[300]}]}"#).unwrap_err();
        assert!(err.0.contains("data[0] is 300, expected an integer in range for UINT8"), "{err}");
        let err = request(r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":["a"]}]}"#).unwrap_err();
        assert!(err.0.contains("expected a number"), "{err}");
        let err = request(r#"[1, 2, 3]"#).unwrap_err();
        assert!(err.0.contains("not an Open Inference Protocol v2 inference request"), "{err}");
    }

    #[test]
    fn requested_outputs_are_selected() {
        let t = |n: &str| Tensor { name: n.into(), datatype: Datatype::Uint8, shape: vec![1], data: vec![1] };
        let want = vec![RequestOutput { name: "b".into(), parameters: None }];
        let got = select_outputs(Some(&want), vec![t("a"), t("b")]).unwrap();
        assert_eq!(got, vec![t("b")]);
        let missing = vec![RequestOutput { name: "c".into(), parameters: None }];
        assert!(select_outputs(Some(&missing), vec![t("a")]).unwrap_err().0.contains("`c` does not exist"));
    }
}
