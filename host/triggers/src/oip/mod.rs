//! Open Inference Protocol v2 JSON: requests into tensors, tensors into
//! responses. Both nested and flat `data` arrays are accepted. Requests are
//! checked against [`RequestLimits`] before anything is allocated from what
//! they claim; responses are written element by element into a buffer that
//! refuses to grow past the response limit.

mod binary;
mod decode;
mod limits;
mod parameters;

use std::collections::HashSet;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use thiserror::Error;

use weir_core::tensor::{datatype_name, element_count, parse_datatype, ALL_DATATYPES};
use weir_core::tensor_json::JsonElements;
use weir_core::{Classify, ErrorKind, Tensor};
use weir_executor::{PipelineOutput, RunOptions};
use weir_manifest::Source;
use weir_observe::receipts::Receipt;

pub use binary::{raw_tensor, split_body, BinaryOutputs, HEADER_LENGTH};
use decode::{decode_data, DataError};
pub use limits::{RequestLimits, DECODED_BYTES_PER_BODY_BYTE};
pub use parameters::{ReceiptParameter, ResponseParameters};

/// A request that is not valid OIP JSON, or over a limit, with where and why.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum OipError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    TooLarge(String),
}

impl Classify for OipError {
    fn kind(&self) -> ErrorKind {
        match self {
            OipError::Invalid(_) => ErrorKind::InvalidInput,
            OipError::TooLarge(_) => ErrorKind::TooLarge,
        }
    }
}

impl OipError {
    pub fn message(&self) -> &str {
        match self {
            OipError::Invalid(m) | OipError::TooLarge(m) => m,
        }
    }
}

fn invalid(message: String) -> OipError {
    OipError::Invalid(message)
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
    /// The JSON text of `data`, decoded by [`request_tensors`] straight into
    /// tensor bytes; absent when the tensor is binary data after the JSON
    /// (`parameters.binary_data_size`) or travels outside JSON (gRPC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Box<RawValue>>,
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
    pub parameters: Option<ResponseParameters>,
    pub outputs: Vec<ResponseOutput>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseOutput {
    pub name: String,
    pub shape: Vec<u64>,
    pub datatype: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
    /// Absent when the output is binary data after the JSON.
    #[serde(default, skip_serializing_if = "OutputData::is_binary")]
    pub data: OutputData,
}

/// An output's elements: a tensor written element by element when weir
/// answers, plain values when a response is read back.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputData {
    Tensor(Tensor),
    /// Sent as binary data after the JSON (the binary tensor extension).
    Binary(Tensor),
    Values(Vec<Value>),
}

impl Default for OutputData {
    fn default() -> Self {
        OutputData::Values(Vec::new())
    }
}

impl OutputData {
    fn is_binary(&self) -> bool {
        matches!(self, OutputData::Binary(_))
    }

    /// The tensor weir answers with (`None` for values read back).
    pub fn tensor(&self) -> Option<&Tensor> {
        match self {
            OutputData::Tensor(tensor) | OutputData::Binary(tensor) => Some(tensor),
            OutputData::Values(_) => None,
        }
    }

    /// The elements as JSON values.
    pub fn values(&self) -> Vec<Value> {
        match self {
            OutputData::Tensor(tensor) | OutputData::Binary(tensor) => weir_core::tensor_json::json_values(tensor),
            OutputData::Values(values) => values.clone(),
        }
    }
}

impl Serialize for OutputData {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            OutputData::Tensor(tensor) | OutputData::Binary(tensor) => JsonElements(tensor).serialize(serializer),
            OutputData::Values(values) => values.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for OutputData {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<Value>::deserialize(deserializer).map(OutputData::Values)
    }
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

/// Parse request JSON and check its counts and names against `limits`;
/// the error says where the JSON went wrong. Tensor data is decoded later,
/// by [`request_tensors`].
pub fn parse_request(bytes: &[u8], limits: &RequestLimits) -> Result<InferenceRequest, OipError> {
    if bytes.len() as u64 > limits.max_body_bytes {
        return Err(OipError::TooLarge(format!(
            "the request is {} bytes, over the limit of {} bytes (max_body); send less data per request",
            bytes.len(),
            limits.max_body_bytes
        )));
    }
    let request: InferenceRequest = serde_json::from_slice(bytes).map_err(|e| {
        invalid(format!(
            "the request is not an Open Inference Protocol v2 inference request: {e}. Expected \
             {{\"inputs\": [{{\"name\": ..., \"shape\": [...], \"datatype\": \"FP32\", \"data\": [...]}}]}}"
        ))
    })?;
    check_request(&request, limits)?;
    Ok(request)
}

/// Counts, names and ranks: everything but the data.
pub fn check_request(request: &InferenceRequest, limits: &RequestLimits) -> Result<(), OipError> {
    let name_ok = |what: &str, name: &str| -> Result<(), OipError> {
        if name.len() > limits.max_name_bytes {
            return Err(invalid(format!(
                "{what} is {} bytes long, over the limit of {} bytes",
                name.len(),
                limits.max_name_bytes
            )));
        }
        Ok(())
    };
    if let Some(id) = &request.id {
        name_ok("the request `id`", id)?;
    }
    for key in ["until", "subject"] {
        if let Some(Value::String(text)) = request.parameters.as_ref().and_then(|p| p.get(key)) {
            name_ok(&format!("parameters.{key}"), text)?;
        }
    }
    if request.inputs.len() > limits.max_inputs {
        return Err(invalid(format!(
            "the request has {} inputs, over the limit of {}",
            request.inputs.len(),
            limits.max_inputs
        )));
    }
    let mut seen = HashSet::with_capacity(request.inputs.len());
    for (i, input) in request.inputs.iter().enumerate() {
        name_ok(&format!("the name of inputs[{i}]"), &input.name)?;
        if input.name.is_empty() {
            return Err(invalid(format!("inputs[{i}] has an empty name")));
        }
        if !seen.insert(input.name.as_str()) {
            return Err(invalid(format!("inputs[{i}]: input `{}` appears more than once", input.name)));
        }
        if input.shape.len() > limits.max_rank {
            return Err(invalid(format!(
                "inputs[{i}] (`{}`): shape has {} dimensions, over the limit of {}",
                input.name,
                input.shape.len(),
                limits.max_rank
            )));
        }
    }
    if let Some(outputs) = &request.outputs {
        if outputs.len() > limits.max_outputs {
            return Err(invalid(format!(
                "the request asks for {} outputs, over the limit of {}",
                outputs.len(),
                limits.max_outputs
            )));
        }
        let mut seen = HashSet::with_capacity(outputs.len());
        for (i, output) in outputs.iter().enumerate() {
            name_ok(&format!("the name of outputs[{i}]"), &output.name)?;
            if !seen.insert(output.name.as_str()) {
                return Err(invalid(format!(
                    "outputs[{i}]: output `{}` is requested more than once; name each output once",
                    output.name
                )));
            }
        }
    }
    Ok(())
}

/// The request's inputs as tensors, each checked against its shape.
pub fn request_tensors(request: &InferenceRequest) -> Result<Vec<Tensor>, OipError> {
    request_tensors_with(request, &[])
}

/// The request's inputs as tensors, those with `parameters.binary_data_size`
/// taken in order from `binary` (the body after the JSON header), which they
/// must use up exactly.
pub fn request_tensors_with(request: &InferenceRequest, mut binary: &[u8]) -> Result<Vec<Tensor>, OipError> {
    let mut tensors = Vec::with_capacity(request.inputs.len());
    for (i, input) in request.inputs.iter().enumerate() {
        let at = format!("inputs[{i}] (`{}`)", input.name);
        let datatype = input_datatype(&at, &input.datatype)?;
        let tensor = match binary::binary_size(&at, input.parameters.as_ref())? {
            Some(size) => {
                if input.data.is_some() {
                    return Err(invalid(format!("{at}: has both `data` and parameters.binary_data_size; send one")));
                }
                if size > binary.len() {
                    return Err(invalid(format!(
                        "{at}: binary_data_size is {size} bytes but only {} bytes of binary data are left",
                        binary.len()
                    )));
                }
                let (data, rest) = binary.split_at(size);
                binary = rest;
                raw_tensor(&at, &input.name, datatype, &input.shape, data.to_vec())?
            }
            None => json_tensor(&at, input, datatype)?,
        };
        tensors.push(tensor);
    }
    if !binary.is_empty() {
        return Err(invalid(format!(
            "{} bytes of binary data follow the JSON header that no input's binary_data_size accounts for",
            binary.len()
        )));
    }
    Ok(tensors)
}

/// An OIP datatype name, or an error that lists them.
pub fn input_datatype(at: &str, name: &str) -> Result<weir_core::Datatype, OipError> {
    parse_datatype(name).ok_or_else(|| {
        let known: Vec<&str> = ALL_DATATYPES.iter().map(|d| datatype_name(*d)).collect();
        invalid(format!("{at}: unknown datatype `{name}`; expected one of {}", known.join(", ")))
    })
}

fn json_tensor(at: &str, input: &RequestInput, datatype: weir_core::Datatype) -> Result<Tensor, OipError> {
    let count = element_count(&input.shape)
        .ok_or_else(|| invalid(format!("{at}: shape {:?} has too many elements", input.shape)))?;
    let raw = input
        .data
        .as_ref()
        .ok_or_else(|| invalid(format!("{at}: has no `data` (nor parameters.binary_data_size)")))?
        .get();
    // Each element takes at least one byte of JSON: a shape that claims more
    // elements than `data` has bytes is refused before anything is reserved.
    if count > raw.len() {
        return Err(invalid(format!(
            "{at}: shape {:?} holds {count} elements but `data` is only {} bytes of JSON",
            input.shape,
            raw.len()
        )));
    }
    let data = decode_data(raw, datatype, count).map_err(|error| match error {
        DataError::TooMany => {
            invalid(format!("{at}: `data` has more than the {count} elements shape {:?} holds", input.shape))
        }
        DataError::TooFew(found) => {
            invalid(format!("{at}: shape {:?} holds {count} elements but `data` has {found}", input.shape))
        }
        DataError::Element { index, found, expected } => {
            invalid(format!("{at}: data[{index}] is {found}, expected {expected} for {}", input.datatype))
        }
        DataError::Json(message) => invalid(format!("{at}: `data` must be an array of elements: {message}")),
    })?;
    Ok(Tensor { name: input.name.clone(), datatype, shape: input.shape.clone(), data })
}

/// A (validated) tensor as an OIP response output with flat `data`.
/// BYTES elements that are UTF-8 become strings, others arrays of byte values.
pub fn tensor_to_output(tensor: &Tensor) -> ResponseOutput {
    ResponseOutput {
        name: tensor.name.clone(),
        shape: tensor.shape.clone(),
        datatype: datatype_name(tensor.datatype).to_string(),
        parameters: None,
        data: OutputData::Tensor(tensor.clone()),
    }
}

/// A sensitive tensor as a tap shows it: its name, datatype and shape,
/// no data (`parameters.redacted = "sensitive"`).
fn redacted(tensor: &Tensor) -> ResponseOutput {
    let mut output = tensor_to_output(tensor);
    let mut empty = tensor.clone();
    empty.data.clear();
    output.data = OutputData::Tensor(empty);
    output.parameters = Some(Map::from_iter([("redacted".to_string(), Value::from("sensitive"))]));
    output
}

/// `tensor`, produced by `step`, as a tap (`trace`, `until`) may show it.
fn tapped(tensor: &Tensor, step: &str, sensitive: &[Source]) -> ResponseOutput {
    let source = Source::Step { step: step.to_string(), tensor: tensor.name.clone() };
    if sensitive.contains(&source) {
        redacted(tensor)
    } else {
        tensor_to_output(tensor)
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
                invalid(format!("requested output `{}` does not exist; outputs are {names:?}", want.name))
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
            trace.as_bool().ok_or_else(|| invalid(format!("parameters.trace must be true or false, got {trace}")))?;
    }
    if let Some(until) = parameters.get("until") {
        let step =
            until.as_str().ok_or_else(|| invalid(format!("parameters.until must be a step name, got {until}")))?;
        options.until = Some(step.to_string());
    }
    if let Some(detail) = parameters.get("receipt") {
        options.full_receipt = match detail.as_str() {
            Some("full") => true,
            Some("compact") => false,
            _ => return Err(invalid(format!("parameters.receipt must be \"compact\" or \"full\", got {detail}"))),
        };
    }
    if let Some(subject) = parameters.get("subject") {
        let subject =
            subject.as_str().ok_or_else(|| invalid(format!("parameters.subject must be a string, got {subject}")))?;
        options.subject = Some(subject.to_string());
    }
    Ok(options)
}

/// The OIP response for a pipeline run: `parameters.receipt` holds the
/// invocation's receipt (when accounting is on): its totals, or with
/// `full_receipt` every step's too; with `trace`, `parameters.trace` lists every
/// step with its timings and the tensors it produced. Taps never show the
/// data of a tensor in `sensitive`.
pub fn pipeline_response(
    model_name: &str,
    request: &InferenceRequest,
    output: &PipelineOutput,
    options: &RunOptions,
    receipt: Option<&Receipt>,
    sensitive: &[Source],
) -> Result<InferenceResponse, OipError> {
    let trace = options.trace;
    let outputs = select_outputs(request.outputs.as_deref(), output.outputs.clone())?;
    let mut parameters = ResponseParameters {
        receipt: receipt.map(|receipt| match options.full_receipt {
            true => ReceiptParameter::Full(receipt.clone()),
            false => ReceiptParameter::Compact(receipt.compact()),
        }),
        values: Map::new(),
    };
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
                outputs: step.outputs.iter().map(|t| tapped(t, &step.step, sensitive)).collect(),
            })
            .collect();
        parameters.values.insert("trace".into(), serde_json::to_value(steps).unwrap_or(Value::Null));
        parameters.values.insert("wall_us".into(), Value::from(output.wall.as_micros() as u64));
    }
    Ok(InferenceResponse {
        model_name: model_name.to_string(),
        model_version: None,
        id: request.id.clone(),
        parameters: (!parameters.is_empty()).then_some(parameters),
        outputs: match &options.until {
            Some(step) => outputs.iter().map(|t| tapped(t, step, sensitive)).collect(),
            None => outputs.iter().map(tensor_to_output).collect(),
        },
    })
}

/// Send the outputs `binary` wants as binary data after the JSON, each
/// with its `parameters.binary_data_size`.
pub fn use_binary_outputs(response: &mut InferenceResponse, binary: &BinaryOutputs) {
    for output in response.outputs.iter_mut().filter(|o| binary.wants(&o.name)) {
        if let OutputData::Tensor(tensor) = std::mem::take(&mut output.data) {
            let size = Value::from(tensor.data.len());
            output.parameters.get_or_insert_with(Map::new).insert("binary_data_size".into(), size);
            output.data = OutputData::Binary(tensor);
        }
    }
}

/// A response body: the JSON, then the binary outputs' data in their order,
/// within `limit` bytes in all; with the JSON's length when any output is
/// binary (the `Inference-Header-Content-Length` answer).
pub fn encode_response(response: &InferenceResponse, limit: u64) -> Result<(Vec<u8>, Option<usize>), OipError> {
    let mut body = to_json_bounded(response, limit)?;
    let binary: Vec<&Tensor> = response
        .outputs
        .iter()
        .filter_map(|o| match &o.data {
            OutputData::Binary(tensor) => Some(tensor),
            _ => None,
        })
        .collect();
    if binary.is_empty() {
        return Ok((body, None));
    }
    let header = body.len();
    let total = binary.iter().fold(header as u64, |sum, t| sum.saturating_add(t.data.len() as u64));
    if total > limit {
        return Err(response_too_large(limit));
    }
    body.reserve_exact(total as usize - header);
    for tensor in binary {
        body.extend_from_slice(&tensor.data);
    }
    Ok((body, Some(header)))
}

fn response_too_large(limit: u64) -> OipError {
    OipError::TooLarge(format!(
        "the response would be over the limit of {limit} bytes (max_response); ask for fewer outputs, a smaller \
         batch, or no `trace`"
    ))
}

/// `value` as JSON, refused once it passes `limit` bytes: a response is
/// never built bigger than the limit, however large its tensors.
pub fn to_json_bounded<T: Serialize>(value: &T, limit: u64) -> Result<Vec<u8>, OipError> {
    struct Bounded {
        out: Vec<u8>,
        limit: usize,
    }
    impl std::io::Write for Bounded {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.out.len() + buf.len() > self.limit {
                return Err(std::io::Error::other("over the response limit"));
            }
            self.out.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut writer = Bounded { out: Vec::new(), limit: usize::try_from(limit).unwrap_or(usize::MAX) };
    match serde_json::to_writer(&mut writer, value) {
        Ok(()) => Ok(writer.out),
        Err(e) if e.is_io() => Err(response_too_large(limit)),
        Err(e) => Err(invalid(format!("the response could not be written as JSON: {e}"))),
    }
}

#[cfg(test)]
mod tests;
