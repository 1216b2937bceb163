//! gRPC messages into weir's tensors, with hostile input.

use super::convert;
use super::proto::model_infer_request::InferInputTensor;
use super::proto::*;
use weir_core::Datatype;

fn input(name: &str, datatype: &str, shape: &[i64], contents: Option<InferTensorContents>) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape: shape.to_vec(),
        parameters: Default::default(),
        contents,
    }
}

fn message(inputs: Vec<InferInputTensor>, raw: Vec<Vec<u8>>) -> ModelInferRequest {
    ModelInferRequest { model_name: "m".into(), inputs, raw_input_contents: raw, ..Default::default() }
}

fn error(message: ModelInferRequest) -> String {
    convert::request(message).unwrap_err().message().to_string()
}

#[test]
fn raw_and_typed_contents_decode_to_the_same_tensor() {
    let raw = message(
        vec![input("x", "FP32", &[2], None)],
        vec![[1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect()],
    );
    let typed = message(
        vec![input(
            "x",
            "FP32",
            &[2],
            Some(InferTensorContents { fp32_contents: vec![1.5, -2.0], ..Default::default() }),
        )],
        vec![],
    );
    let (_, from_raw) = convert::request(raw).unwrap();
    let (request, from_typed) = convert::request(typed).unwrap();
    assert_eq!(from_raw, from_typed);
    assert!(request.inputs[0].data.is_none());
    let narrow = InferTensorContents { int_contents: vec![-128, 127], ..Default::default() };
    let (_, int8) = convert::request(message(vec![input("i", "INT8", &[2], Some(narrow))], vec![])).unwrap();
    assert_eq!((int8[0].datatype, int8[0].data.clone()), (Datatype::Int8, vec![0x80, 0x7f]));
    let strings = InferTensorContents { bytes_contents: vec![b"ab".to_vec(), vec![]], ..Default::default() };
    let (_, bytes) = convert::request(message(vec![input("s", "BYTES", &[2], Some(strings))], vec![])).unwrap();
    assert_eq!(bytes[0].data, vec![2, 0, 0, 0, b'a', b'b', 0, 0, 0, 0]);
}

#[test]
fn hostile_messages_get_clear_errors() {
    let fp32 = |n: usize| InferTensorContents { fp32_contents: vec![0.0; n], ..Default::default() };
    assert!(error(message(vec![input("x", "FP32", &[3], Some(fp32(2)))], vec![]))
        .contains("holds 3 elements but contents.fp32_contents has 2"));
    assert!(error(message(vec![input("x", "FP32", &[-1], Some(fp32(1)))], vec![])).contains("negative dimension"));
    assert!(error(message(vec![input("x", "FP32", &[2], None)], vec![vec![0; 7]]))
        .contains("needs 8 bytes of binary data, got 7"));
    assert!(error(message(vec![input("x", "FP32", &[2], None), input("y", "FP32", &[2], None)], vec![vec![0; 8]]))
        .contains("raw_input_contents has 1 entries for 2 inputs"));
    assert!(error(message(vec![input("x", "FP32", &[1], Some(fp32(1)))], vec![vec![0; 4]]))
        .contains("use one or the other"));
    assert!(error(message(vec![input("x", "FP32", &[1], None)], vec![])).contains("has no `contents`"));
    assert!(error(message(vec![input("x", "FLOAT", &[1], Some(fp32(1)))], vec![])).contains("unknown datatype `FLOAT`"));
    let wide = InferTensorContents { int_contents: vec![300], ..Default::default() };
    assert!(error(message(vec![input("x", "INT8", &[1], Some(wide))], vec![])).contains("out of range for INT8"));
    assert!(
        error(message(vec![input("x", "FP16", &[1], Some(fp32(1)))], vec![])).contains("send it as raw_input_contents")
    );
    // A shape whose element count overflows is refused before any allocation.
    let huge = input("x", "FP32", &[i64::MAX, i64::MAX], Some(fp32(1)));
    assert!(error(message(vec![huge], vec![])).contains("too many elements"));
}

#[test]
fn parameters_cross_in_both_directions() {
    use infer_parameter::ParameterChoice;
    let mut request = message(
        vec![input("x", "FP32", &[1], Some(InferTensorContents { fp32_contents: vec![1.0], ..Default::default() }))],
        vec![],
    );
    request
        .parameters
        .insert("trace".into(), InferParameter { parameter_choice: Some(ParameterChoice::BoolParam(true)) });
    request.parameters.insert(
        "receipt".into(),
        InferParameter { parameter_choice: Some(ParameterChoice::StringParam("full".into())) },
    );
    let (request, _) = convert::request(request).unwrap();
    let parameters = request.parameters.unwrap();
    assert_eq!(parameters["trace"], serde_json::json!(true));
    assert_eq!(parameters["receipt"], serde_json::json!("full"));
}

#[test]
fn a_model_version_names_a_pipeline_version() {
    assert_eq!(convert::pipeline_name("ride", ""), "ride");
    assert_eq!(convert::pipeline_name("ride", "v2"), "ride@v2");
}
