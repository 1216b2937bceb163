//! Open Inference Protocol v2 JSON: requests into tensors, tensors into
//! responses. Both nested and flat `data` arrays are accepted. Requests are
//! checked against [`RequestLimits`] before anything is allocated from what
//! they claim; responses are written element by element into a buffer that
//! refuses to grow past the response limit.

mod decode;
mod limits;

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

use decode::{decode_data, DataError};
pub use limits::{RequestLimits, DECODED_BYTES_PER_BODY_BYTE};

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
    /// tensor bytes.
    pub data: Box<RawValue>,
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
    pub data: OutputData,
}

/// An output's elements: a tensor written element by element when weir
/// answers, plain values when a response is read back.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputData {
    Tensor(Tensor),
    Values(Vec<Value>),
}

impl OutputData {
    /// The elements as JSON values.
    pub fn values(&self) -> Vec<Value> {
        match self {
            OutputData::Tensor(tensor) => weir_core::tensor_json::json_values(tensor),
            OutputData::Values(values) => values.clone(),
        }
    }
}

impl Serialize for OutputData {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            OutputData::Tensor(tensor) => JsonElements(tensor).serialize(serializer),
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
fn check_request(request: &InferenceRequest, limits: &RequestLimits) -> Result<(), OipError> {
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
    request.inputs.iter().enumerate().map(|(i, input)| input_tensor(i, input)).collect()
}

fn input_tensor(index: usize, input: &RequestInput) -> Result<Tensor, OipError> {
    let at = format!("inputs[{index}] (`{}`)", input.name);
    let datatype = parse_datatype(&input.datatype).ok_or_else(|| {
        let known: Vec<&str> = ALL_DATATYPES.iter().map(|d| datatype_name(*d)).collect();
        invalid(format!("{at}: unknown datatype `{}`; expected one of {}", input.datatype, known.join(", ")))
    })?;
    let count = element_count(&input.shape)
        .ok_or_else(|| invalid(format!("{at}: shape {:?} has too many elements", input.shape)))?;
    let raw = input.data.get();
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
                outputs: step.outputs.iter().map(|t| tapped(t, &step.step, sensitive)).collect(),
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
        outputs: match &options.until {
            Some(step) => outputs.iter().map(|t| tapped(t, step, sensitive)).collect(),
            None => outputs.iter().map(tensor_to_output).collect(),
        },
    })
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
        Err(e) if e.is_io() => Err(OipError::TooLarge(format!(
            "the response would be over the limit of {limit} bytes (max_response); ask for fewer outputs, \
             a smaller batch, or no `trace`"
        ))),
        Err(e) => Err(invalid(format!("the response could not be written as JSON: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> Result<Vec<Tensor>, OipError> {
        request_tensors(&parse_request(json.as_bytes(), &RequestLimits::default())?)
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
        assert!(
            err.message().contains("inputs[0] (`x`): unknown datatype `FLOAT32`") && err.message().contains("FP32"),
            "{err}"
        );
        let err = request(r#"{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2]}]}"#).unwrap_err();
        assert!(err.message().contains("holds 3 elements but `data` has 2"), "{err}");
        let err = request(r#"{"inputs":[{"name":"x","shape":[1],"datatype":"UINT8","data":[300]}]}"#).unwrap_err();
        assert!(err.message().contains("data[0] is an integer, expected an integer in range for UINT8"), "{err}");
        let err = request(r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":["a"]}]}"#).unwrap_err();
        assert!(err.message().contains("expected a number"), "{err}");
        // Messages are logged and exported: they never carry the data.
        for (datatype, element) in [("FP32", r#""patient-secret-77""#), ("UINT8", "31337"), ("BOOL", "31337.5")] {
            let body =
                format!(r#"{{"inputs":[{{"name":"x","shape":[1],"datatype":"{datatype}","data":[{element}]}}]}}"#);
            let err = request(&body).unwrap_err();
            let shown = element.trim_matches('"');
            assert!(!err.message().contains(shown) && err.message().contains("data[0] is"), "{err}");
        }
        let err = request(r#"[1, 2, 3]"#).unwrap_err();
        assert!(err.message().contains("not an Open Inference Protocol v2 inference request"), "{err}");
    }

    #[test]
    fn claimed_sizes_are_checked_before_allocation() {
        let shape =
            |shape: &str| format!(r#"{{"inputs":[{{"name":"x","shape":{shape},"datatype":"FP32","data":[]}}]}}"#);
        for huge in ["[70368744177664]", "[18446744073709551615]", "[4294967296,4294967296]"] {
            let err = request(&shape(huge)).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        }
        let err = request(r#"{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":[1,2,3]}]}"#).unwrap_err();
        assert!(err.message().contains("more than the 2 elements"), "{err}");
        let err = request(r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[{"a":1}]}]}"#).unwrap_err();
        assert!(err.message().contains("must be an array of elements"), "{err}");
        let dup = r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]},{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}"#;
        assert!(request(dup).unwrap_err().message().contains("appears more than once"));
        let outputs = r#"{"inputs":[],"outputs":[{"name":"y"},{"name":"y"}]}"#;
        assert!(request(outputs).unwrap_err().message().contains("requested more than once"));
        let limits = RequestLimits { max_body_bytes: 10, ..RequestLimits::default() };
        assert_eq!(parse_request(br#"{"inputs":[]}      "#, &limits).unwrap_err().kind(), ErrorKind::TooLarge);
    }

    #[test]
    fn responses_stop_at_their_limit() {
        let big =
            Tensor { name: "y".into(), datatype: weir_core::Datatype::Fp64, shape: vec![1000], data: vec![0; 8000] };
        let output = tensor_to_output(&big);
        assert!(to_json_bounded(&output, 1 << 20).is_ok());
        assert_eq!(to_json_bounded(&output, 100).unwrap_err().kind(), ErrorKind::TooLarge);
    }

    #[test]
    fn requested_outputs_are_selected() {
        let t =
            |n: &str| Tensor { name: n.into(), datatype: weir_core::Datatype::Uint8, shape: vec![1], data: vec![1] };
        let want = vec![RequestOutput { name: "b".into(), parameters: None }];
        let got = select_outputs(Some(&want), vec![t("a"), t("b")]).unwrap();
        assert_eq!(got, vec![t("b")]);
        let missing = vec![RequestOutput { name: "c".into(), parameters: None }];
        assert!(select_outputs(Some(&missing), vec![t("a")]).unwrap_err().message().contains("`c` does not exist"));
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        fn datatype() -> impl Strategy<Value = &'static str> {
            prop::sample::select(vec![
                "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32",
                "FP64", "BYTES", "FLOAT", "",
            ])
        }

        fn leaf() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<i64>().prop_map(|i| i.to_string()),
                any::<u64>().prop_map(|u| u.to_string()),
                any::<f64>().prop_map(|f| if f.is_finite() { f.to_string() } else { "1e400".into() }),
                any::<bool>().prop_map(|b| b.to_string()),
                "[a-z\\\\\"]{0,8}".prop_map(|s| serde_json::to_string(&s).unwrap()),
                Just("null".to_string()),
                Just("{}".to_string()),
            ]
        }

        fn data() -> impl Strategy<Value = String> {
            let leaves = prop::collection::vec(leaf(), 0..20).prop_map(|l| format!("[{}]", l.join(",")));
            leaves.prop_recursive(3, 40, 4, |inner| {
                prop::collection::vec(inner, 0..4).prop_map(|items| format!("[{}]", items.join(",")))
            })
        }

        fn shape() -> impl Strategy<Value = Vec<u64>> {
            prop::collection::vec(prop_oneof![0u64..5, any::<u64>(), Just(u64::MAX), Just(1 << 46)], 0..5)
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

            /// Any request, well-formed or not, parses to tensors that pass
            /// validation, or to an error that says why: never a panic.
            #[test]
            fn requests_never_panic(dt in datatype(), shape in shape(), data in data(), outputs in prop::collection::vec("[ab]", 0..3)) {
                let outputs: Vec<String> = outputs.iter().map(|o| format!(r#"{{"name":"{o}"}}"#)).collect();
                let json = format!(
                    r#"{{"inputs":[{{"name":"x","shape":{},"datatype":"{dt}","data":{data}}}],"outputs":[{}]}}"#,
                    serde_json::to_string(&shape).unwrap(),
                    outputs.join(",")
                );
                match request(&json) {
                    Ok(tensors) => {
                        for tensor in &tensors {
                            prop_assert!(weir_core::tensor::validate(tensor).is_ok(), "{json}");
                            prop_assert!(to_json_bounded(&tensor_to_output(tensor), 1 << 20).is_ok());
                        }
                    }
                    Err(error) => prop_assert!(!error.message().is_empty()),
                }
            }

            /// Arbitrary bytes never panic the parser.
            #[test]
            fn arbitrary_bodies_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
                let _ = parse_request(&bytes, &RequestLimits::default()).map(|r| request_tensors(&r));
            }
        }
    }
}
