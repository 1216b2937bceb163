//! The binary tensor extension (Triton's, as tritonclient speaks it): a
//! request or response body is a JSON header of `Inference-Header-Content-Length`
//! bytes followed by tensor data, each binary tensor's byte count in its
//! `parameters.binary_data_size`, in the order of the tensors. Elements are
//! little-endian and row-major; a BYTES element is a 4-byte little-endian
//! length and its bytes — weir's own tensor layout, so nothing is converted.

use serde_json::{Map, Value};
use weir_core::tensor::{validate, TensorError};
use weir_core::{Datatype, Tensor};

use super::{invalid, InferenceRequest, OipError};

/// The header that gives the JSON part's length.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// Split a body into its JSON header and the binary data after it;
/// `header_length` is the header's text as the client sent it.
pub fn split_body<'a>(body: &'a [u8], header_length: &str) -> Result<(&'a [u8], &'a [u8]), OipError> {
    let length: usize = header_length.trim().parse().map_err(|_| {
        invalid(format!(
            "Inference-Header-Content-Length must be the JSON header's length in bytes, got `{header_length}`"
        ))
    })?;
    if length > body.len() {
        return Err(invalid(format!(
            "Inference-Header-Content-Length is {length} but the body is only {} bytes",
            body.len()
        )));
    }
    Ok(body.split_at(length))
}

/// `binary_data_size` of an input's parameters, when it has one.
pub(super) fn binary_size(at: &str, parameters: Option<&Map<String, Value>>) -> Result<Option<usize>, OipError> {
    let Some(size) = parameters.and_then(|p| p.get("binary_data_size")) else { return Ok(None) };
    size.as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| invalid(format!("{at}: parameters.binary_data_size must be a byte count, got {size}")))
}

/// A tensor from raw little-endian bytes (a binary input, a gRPC
/// `raw_input_contents` entry), checked against its shape and datatype.
pub fn raw_tensor(at: &str, name: &str, datatype: Datatype, shape: &[u64], data: Vec<u8>) -> Result<Tensor, OipError> {
    let tensor = Tensor { name: name.to_string(), datatype, shape: shape.to_vec(), data };
    validate(&tensor).map_err(|error| {
        let why = match error {
            TensorError::DataLength { expected, actual, .. } => {
                format!("shape {shape:?} of {datatype} needs {expected} bytes of binary data, got {actual}")
            }
            TensorError::BytesCount { expected, actual, .. } => {
                format!("shape {shape:?} holds {expected} BYTES elements but the binary data has {actual}")
            }
            other => other.to_string(),
        };
        invalid(format!("{at}: {why}"))
    })?;
    Ok(tensor)
}

/// Which outputs the caller wants as binary data after the JSON:
/// `parameters.binary_data_output` for all, an output's own
/// `parameters.binary_data` for that one (it wins either way).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BinaryOutputs {
    all: bool,
    each: Vec<(String, bool)>,
}

impl BinaryOutputs {
    /// What `request` asks for; a flag that is not a boolean is an error.
    pub fn of(request: &InferenceRequest) -> Result<BinaryOutputs, OipError> {
        let flag = |at: &str, parameters: Option<&Map<String, Value>>, key: &str| -> Result<Option<bool>, OipError> {
            match parameters.and_then(|p| p.get(key)) {
                None => Ok(None),
                Some(Value::Bool(on)) => Ok(Some(*on)),
                Some(other) => Err(invalid(format!("{at}.{key} must be true or false, got {other}"))),
            }
        };
        let all = flag("parameters", request.parameters.as_ref(), "binary_data_output")?.unwrap_or(false);
        let mut each = Vec::new();
        for (i, output) in request.outputs.iter().flatten().enumerate() {
            let at = format!("outputs[{i}].parameters");
            if let Some(on) = flag(&at, output.parameters.as_ref(), "binary_data")? {
                each.push((output.name.clone(), on));
            }
        }
        Ok(BinaryOutputs { all, each })
    }

    /// Whether output `name` goes as binary data.
    pub fn wants(&self, name: &str) -> bool {
        self.each.iter().find(|(n, _)| n == name).map_or(self.all, |(_, on)| *on)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{
        encode_response, parse_request, request_tensors_with, tensor_to_output, use_binary_outputs, InferenceResponse,
        RequestLimits,
    };
    use super::*;
    use weir_core::{Classify, ErrorKind};

    /// A body as tritonclient sends it: the JSON header, then `binary`.
    fn body(json: &str, binary: &[u8]) -> (Vec<u8>, String) {
        let mut body = json.as_bytes().to_vec();
        body.extend_from_slice(binary);
        (body, json.len().to_string())
    }

    fn tensors(body: &[u8], header_length: &str) -> Result<Vec<Tensor>, OipError> {
        let (json, binary) = split_body(body, header_length)?;
        request_tensors_with(&parse_request(json, &RequestLimits::default())?, binary)
    }

    fn error(body: &[u8], header_length: &str) -> String {
        tensors(body, header_length).unwrap_err().message().to_string()
    }

    const X: &str = r#"{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}}]}"#;

    #[test]
    fn binary_inputs_mix_with_json_ones_in_order() {
        let json = r#"{"inputs":[
            {"name":"a","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}},
            {"name":"b","shape":[1],"datatype":"INT64","data":[7]},
            {"name":"s","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":11}}]}"#;
        let mut binary: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        binary.extend([2, 0, 0, 0, b'h', b'i', 1, 0, 0, 0, b'!']);
        let (body, length) = body(json, &binary);
        let got = tensors(&body, &length).unwrap();
        assert_eq!(got[0].data, binary[..8]);
        assert_eq!(got[1].data, 7i64.to_le_bytes());
        assert_eq!(got[2].data, binary[8..]);
    }

    #[test]
    fn hostile_binary_bodies_get_clear_errors() {
        let eight: Vec<u8> = vec![0; 8];
        let (ok, length) = body(X, &eight);
        assert!(error(&ok, "lots").contains("must be the JSON header's length"));
        assert!(error(&ok, &(ok.len() + 1).to_string()).contains("but the body is only"));
        let (short, length_short) = body(X, &eight[..4]);
        assert!(error(&short, &length_short).contains("only 4 bytes of binary data are left"));
        let (long, length_long) = body(X, &[0; 12]);
        assert!(error(&long, &length_long).contains("4 bytes of binary data follow"));
        let both = X.replace("\"parameters\"", "\"data\":[1,2],\"parameters\"");
        let (both, length_both) = body(&both, &eight);
        assert!(error(&both, &length_both).contains("both `data` and parameters.binary_data_size"));
        let wrong = X.replace("[2]", "[3]");
        let (wrong, length_wrong) = body(&wrong, &eight);
        assert!(error(&wrong, &length_wrong).contains("needs 12 bytes of binary data, got 8"));
        let negative = X.replace(":8}", ":-8}");
        let (negative, length_negative) = body(&negative, &eight);
        assert!(error(&negative, &length_negative).contains("binary_data_size must be a byte count"));
        // A BYTES element whose length prefix claims more than is there.
        let bytes = r#"{"inputs":[{"name":"s","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":6}}]}"#;
        let (lying, length_lying) = body(bytes, &[255, 255, 255, 255, b'a', b'b']);
        assert!(error(&lying, &length_lying).contains("claims 4294967295 bytes"), "{}", error(&lying, &length_lying));
        let bools = r#"{"inputs":[{"name":"b","shape":[1],"datatype":"BOOL","parameters":{"binary_data_size":1}}]}"#;
        let (not_bool, length_bool) = body(bools, &[7]);
        assert_eq!(tensors(&not_bool, &length_bool).unwrap_err().kind(), ErrorKind::InvalidInput);
        assert_eq!(tensors(&ok, &length).unwrap()[0].data, eight);
    }

    fn response(outputs: &[Tensor]) -> InferenceResponse {
        InferenceResponse {
            model_name: "m".into(),
            model_version: None,
            id: None,
            parameters: None,
            outputs: outputs.iter().map(tensor_to_output).collect(),
        }
    }

    #[test]
    fn binary_outputs_follow_the_json_and_say_their_size() {
        let a =
            Tensor { name: "a".into(), datatype: Datatype::Fp32, shape: vec![1], data: 2.5f32.to_le_bytes().into() };
        let b = Tensor { name: "b".into(), datatype: Datatype::Int64, shape: vec![1], data: 3i64.to_le_bytes().into() };
        let request = parse_request(
            br#"{"inputs":[],"outputs":[{"name":"a","parameters":{"binary_data":true}},{"name":"b"}]}"#,
            &RequestLimits::default(),
        )
        .unwrap();
        let mut answer = response(&[a.clone(), b]);
        use_binary_outputs(&mut answer, &BinaryOutputs::of(&request).unwrap());
        let (body, header) = encode_response(&answer, 1 << 20).unwrap();
        let header = header.expect("one output is binary");
        let json: Value = serde_json::from_slice(&body[..header]).unwrap();
        assert_eq!(json["outputs"][0]["parameters"]["binary_data_size"], 4);
        assert!(json["outputs"][0].get("data").is_none(), "{json}");
        assert_eq!(json["outputs"][1]["data"], serde_json::json!([3]));
        assert_eq!(&body[header..], &a.data[..]);
        // The limit counts the binary part too.
        assert_eq!(encode_response(&answer, header as u64 + 3).unwrap_err().kind(), ErrorKind::TooLarge);
        // All binary unless an output says otherwise; a flag must be a boolean.
        let all = parse_request(
            br#"{"inputs":[],"parameters":{"binary_data_output":true},"outputs":[{"name":"b","parameters":{"binary_data":false}}]}"#,
            &RequestLimits::default(),
        )
        .unwrap();
        let all = BinaryOutputs::of(&all).unwrap();
        assert!(all.wants("a") && !all.wants("b"));
        let bad = parse_request(br#"{"inputs":[],"parameters":{"binary_data_output":1}}"#, &RequestLimits::default());
        assert!(BinaryOutputs::of(&bad.unwrap()).unwrap_err().message().contains("must be true or false"));
    }
}
