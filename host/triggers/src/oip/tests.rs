//! The OIP request parser and response writer, with hostile and arbitrary input.

use super::*;

fn request(json: &str) -> Result<Vec<Tensor>, OipError> {
    request_tensors(&parse_request(json.as_bytes(), &RequestLimits::default())?)
}

#[test]
fn nested_and_flat_data_agree() {
    let flat = request(r#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[1,2,3,4]}]}"#).unwrap();
    let nested = request(r#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4]]}]}"#).unwrap();
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
        let body = format!(r#"{{"inputs":[{{"name":"x","shape":[1],"datatype":"{datatype}","data":[{element}]}}]}}"#);
        let err = request(&body).unwrap_err();
        let shown = element.trim_matches('"');
        assert!(!err.message().contains(shown) && err.message().contains("data[0] is"), "{err}");
    }
    let err = request(r#"[1, 2, 3]"#).unwrap_err();
    assert!(err.message().contains("not an Open Inference Protocol v2 inference request"), "{err}");
}

#[test]
fn claimed_sizes_are_checked_before_allocation() {
    let shape = |shape: &str| format!(r#"{{"inputs":[{{"name":"x","shape":{shape},"datatype":"FP32","data":[]}}]}}"#);
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
    let big = Tensor { name: "y".into(), datatype: weir_core::Datatype::Fp64, shape: vec![1000], data: vec![0; 8000] };
    let output = tensor_to_output(&big);
    assert!(to_json_bounded(&output, 1 << 20).is_ok());
    assert_eq!(to_json_bounded(&output, 100).unwrap_err().kind(), ErrorKind::TooLarge);
}

#[test]
fn requested_outputs_are_selected() {
    let t = |n: &str| Tensor { name: n.into(), datatype: weir_core::Datatype::Uint8, shape: vec![1], data: vec![1] };
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
            "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64",
            "BYTES", "FLOAT", "",
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
