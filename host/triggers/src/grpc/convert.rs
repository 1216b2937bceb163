//! gRPC messages to and from weir's OIP types: a `ModelInferRequest` into a
//! request and its tensors (raw contents or typed `contents`), a response
//! into a `ModelInferResponse` with raw output contents. Every count is
//! checked against the tensor's shape before anything is allocated from it.

use serde_json::{Map, Value};
use weir_core::tensor::{element_count, push_bytes_element};
use weir_core::{Datatype, Tensor};

use super::proto::infer_parameter::ParameterChoice;
use super::proto::model_infer_request::InferInputTensor;
use super::proto::model_infer_response::InferOutputTensor;
use super::proto::{InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse};
use crate::oip::{self, InferenceRequest, InferenceResponse, OipError, RequestInput, RequestOutput};

fn invalid(message: String) -> OipError {
    OipError::Invalid(message)
}

/// A gRPC request as weir's request (no `data`: the tensors come decoded).
pub fn request(message: ModelInferRequest) -> Result<(InferenceRequest, Vec<Tensor>), OipError> {
    let ModelInferRequest { id, parameters, inputs, outputs, raw_input_contents, .. } = message;
    if !raw_input_contents.is_empty() {
        if raw_input_contents.len() != inputs.len() {
            return Err(invalid(format!(
                "raw_input_contents has {} entries for {} inputs; send one per input, in order",
                raw_input_contents.len(),
                inputs.len()
            )));
        }
        if let Some(input) = inputs.iter().find(|i| i.contents.is_some()) {
            return Err(invalid(format!(
                "input `{}` has `contents` but the request uses raw_input_contents; use one or the other",
                input.name
            )));
        }
    }
    let mut raw = raw_input_contents.into_iter();
    let mut tensors = Vec::with_capacity(inputs.len());
    let mut declared = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.into_iter().enumerate() {
        let at = format!("inputs[{i}] (`{}`)", input.name);
        let shape = shape(&at, &input.shape)?;
        let datatype = oip::input_datatype(&at, &input.datatype)?;
        let InferInputTensor { name, datatype: datatype_text, parameters, contents, .. } = input;
        let tensor = match raw.next() {
            Some(bytes) => oip::raw_tensor(&at, &name, datatype, &shape, bytes)?,
            None => {
                let contents = contents.ok_or_else(|| {
                    invalid(format!("{at}: has no `contents` and the request has no raw_input_contents"))
                })?;
                let data = typed_data(&at, datatype, &shape, contents)?;
                oip::raw_tensor(&at, &name, datatype, &shape, data)?
            }
        };
        tensors.push(tensor);
        declared.push(RequestInput {
            name,
            shape,
            datatype: datatype_text,
            parameters: json_parameters(parameters),
            data: None,
        });
    }
    let outputs: Vec<RequestOutput> = outputs
        .into_iter()
        .map(|o| RequestOutput { name: o.name, parameters: json_parameters(o.parameters) })
        .collect();
    let request = InferenceRequest {
        id: (!id.is_empty()).then_some(id),
        parameters: json_parameters(parameters),
        inputs: declared,
        outputs: (!outputs.is_empty()).then_some(outputs),
    };
    Ok((request, tensors))
}

fn shape(at: &str, dims: &[i64]) -> Result<Vec<u64>, OipError> {
    dims.iter()
        .map(|&d| u64::try_from(d).map_err(|_| invalid(format!("{at}: shape {dims:?} has a negative dimension"))))
        .collect()
}

/// Typed `contents` as little-endian tensor bytes: the field that matches
/// the datatype must hold exactly the shape's element count.
fn typed_data(at: &str, datatype: Datatype, shape: &[u64], c: InferTensorContents) -> Result<Vec<u8>, OipError> {
    let count = element_count(shape).ok_or_else(|| invalid(format!("{at}: shape {shape:?} has too many elements")))?;
    let check = |field: &str, found: usize| -> Result<(), OipError> {
        if found != count {
            return Err(invalid(format!(
                "{at}: shape {shape:?} holds {count} elements but contents.{field} has {found}"
            )));
        }
        Ok(())
    };
    fn narrow<T: TryFrom<W>, W: Copy + std::fmt::Display>(
        at: &str,
        values: &[W],
        datatype: Datatype,
        to_le: impl Fn(T) -> Vec<u8>,
    ) -> Result<Vec<u8>, OipError> {
        let mut out = Vec::with_capacity(values.len() * std::mem::size_of::<T>());
        for (i, &v) in values.iter().enumerate() {
            let v = T::try_from(v)
                .map_err(|_| invalid(format!("{at}: element {i} ({v}) is out of range for {datatype}")))?;
            out.extend(to_le(v));
        }
        Ok(out)
    }
    Ok(match datatype {
        Datatype::Bool => {
            check("bool_contents", c.bool_contents.len())?;
            c.bool_contents.iter().map(|&b| u8::from(b)).collect()
        }
        Datatype::Int8 | Datatype::Int16 | Datatype::Int32 => {
            check("int_contents", c.int_contents.len())?;
            match datatype {
                Datatype::Int8 => narrow::<i8, i32>(at, &c.int_contents, datatype, |v| v.to_le_bytes().to_vec())?,
                Datatype::Int16 => narrow::<i16, i32>(at, &c.int_contents, datatype, |v| v.to_le_bytes().to_vec())?,
                _ => c.int_contents.iter().flat_map(|v| v.to_le_bytes()).collect(),
            }
        }
        Datatype::Uint8 | Datatype::Uint16 | Datatype::Uint32 => {
            check("uint_contents", c.uint_contents.len())?;
            match datatype {
                Datatype::Uint8 => narrow::<u8, u32>(at, &c.uint_contents, datatype, |v| vec![v])?,
                Datatype::Uint16 => narrow::<u16, u32>(at, &c.uint_contents, datatype, |v| v.to_le_bytes().to_vec())?,
                _ => c.uint_contents.iter().flat_map(|v| v.to_le_bytes()).collect(),
            }
        }
        Datatype::Int64 => {
            check("int64_contents", c.int64_contents.len())?;
            c.int64_contents.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        Datatype::Uint64 => {
            check("uint64_contents", c.uint64_contents.len())?;
            c.uint64_contents.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        Datatype::Fp32 => {
            check("fp32_contents", c.fp32_contents.len())?;
            c.fp32_contents.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        Datatype::Fp64 => {
            check("fp64_contents", c.fp64_contents.len())?;
            c.fp64_contents.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        Datatype::Bytes => {
            check("bytes_contents", c.bytes_contents.len())?;
            let total = c.bytes_contents.iter().map(|e| 4 + e.len()).sum();
            let mut out = Vec::with_capacity(total);
            for element in &c.bytes_contents {
                let fits = u32::try_from(element.len()).is_ok();
                if !fits {
                    return Err(invalid(format!("{at}: a BYTES element is over 4 GiB")));
                }
                push_bytes_element(&mut out, element);
            }
            out
        }
        Datatype::Fp16 => {
            return Err(invalid(format!("{at}: FP16 has no typed `contents` field; send it as raw_input_contents")))
        }
    })
}

/// gRPC parameters as JSON values (the form the rest of weir reads).
fn json_parameters(parameters: std::collections::HashMap<String, InferParameter>) -> Option<Map<String, Value>> {
    if parameters.is_empty() {
        return None;
    }
    let value = |choice: Option<ParameterChoice>| match choice {
        Some(ParameterChoice::BoolParam(b)) => Value::from(b),
        Some(ParameterChoice::Int64Param(n)) => Value::from(n),
        Some(ParameterChoice::Uint64Param(n)) => Value::from(n),
        Some(ParameterChoice::DoubleParam(x)) => Value::from(x),
        Some(ParameterChoice::StringParam(s)) => Value::from(s),
        None => Value::Null,
    };
    Some(parameters.into_iter().map(|(key, p)| (key, value(p.parameter_choice))).collect())
}

/// JSON values as gRPC parameters: objects and arrays (a receipt, a trace)
/// as their JSON text in a string parameter.
fn grpc_parameters(parameters: Option<Map<String, Value>>) -> std::collections::HashMap<String, InferParameter> {
    let choice = |value: Value| match value {
        Value::Bool(b) => ParameterChoice::BoolParam(b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => ParameterChoice::Int64Param(i),
            (None, Some(u)) => ParameterChoice::Uint64Param(u),
            _ => ParameterChoice::DoubleParam(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => ParameterChoice::StringParam(s),
        other => ParameterChoice::StringParam(other.to_string()),
    };
    parameters
        .into_iter()
        .flatten()
        .map(|(key, value)| (key, InferParameter { parameter_choice: Some(choice(value)) }))
        .collect()
}

/// weir's response as a gRPC response: every output's data in
/// `raw_output_contents`, in the order of `outputs`.
pub fn response(response: InferenceResponse) -> ModelInferResponse {
    let InferenceResponse { model_name, model_version, id, parameters, outputs } = response;
    let mut raw = Vec::with_capacity(outputs.len());
    let outputs = outputs
        .into_iter()
        .map(|output| {
            let data = match output.data {
                oip::OutputData::Tensor(t) | oip::OutputData::Binary(t) => t.data,
                // Read-back values never reach here; answer them empty rather than guess.
                oip::OutputData::Values(_) => Vec::new(),
            };
            raw.push(data);
            InferOutputTensor {
                name: output.name,
                datatype: output.datatype,
                shape: output.shape.iter().map(|&d| i64::try_from(d).unwrap_or(i64::MAX)).collect(),
                parameters: grpc_parameters(output.parameters),
                contents: None,
            }
        })
        .collect();
    ModelInferResponse {
        model_name,
        model_version: model_version.unwrap_or_default(),
        id: id.unwrap_or_default(),
        parameters: grpc_parameters(parameters.map(oip::ResponseParameters::into_values)),
        outputs,
        raw_output_contents: raw,
    }
}

/// The pipeline a `ModelInfer` names: `model_name`, or with OIP's
/// `model_version` the pipeline version `name@version`.
pub fn pipeline_name(model_name: &str, model_version: &str) -> String {
    match model_version {
        "" => model_name.to_string(),
        version => format!("{model_name}@{version}"),
    }
}
