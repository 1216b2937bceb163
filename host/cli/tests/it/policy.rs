//! Output policies against model stealing: applied by the host after the
//! last step, on the real digits model. Callers still get the same label.

use std::path::Path;

use serde_json::Value;

use crate::common::server::{post, start};

fn manifest(dir: &Path) -> std::path::PathBuf {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models/digits.onnx");
    let steps = r#"[
  { name = "normalise", component = "scale", inputs = ["x=input.pixels"], config = { std = 16 } },
  { name = "classify", component = "classify", inputs = ["x=normalise.y"], models = ["digits"] },
]"#;
    let text = format!(
        r#"
[models.digits]
source = "{model}"
[components.scale]
source = "{scale}"
[components.classify]
source = "{classify}"

[pipelines.open]
steps = {steps}
outputs = {{ label = "classify.label", probabilities = "classify.probabilities" }}

[pipelines.guarded]
steps = {steps}
outputs = {{ label = "classify.label", probabilities = "classify.probabilities" }}
[pipelines.guarded.protect.probabilities]
top_k = 1
decimals = 1

[pipelines.label_only]
steps = {steps}
outputs = {{ label = "classify.label", probabilities = "classify.probabilities" }}
[pipelines.label_only.protect.probabilities]
remove = true
"#,
        model = model.display(),
        scale = weir_tests::SCALE,
        classify = weir_tests::CLASSIFY,
    );
    let path = dir.join("weir.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn output<'a>(response: &'a Value, name: &str) -> Option<&'a Value> {
    response["outputs"].as_array().unwrap().iter().find(|o| o["name"] == name)
}

#[test]
fn protected_outputs_reveal_less_and_the_label_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&manifest(dir.path()));
    let request =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/digits/request.json"))
            .unwrap();
    let (status, open) = post(&server, "/v2/models/open/infer", &request);
    assert_eq!(status, 200, "{open}");
    let (status, guarded) = post(&server, "/v2/models/guarded/infer", &request);
    assert_eq!(status, 200, "{guarded}");
    assert_eq!(output(&open, "label"), output(&guarded, "label"), "callers see the same label");

    let rows = output(&guarded, "probabilities").unwrap()["shape"][0].as_u64().unwrap() as usize;
    let scores: Vec<f64> = output(&guarded, "probabilities").unwrap()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let raw: Vec<f64> = output(&open, "probabilities").unwrap()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(scores.len(), raw.len());
    for row in scores.chunks(scores.len() / rows) {
        assert!(row.iter().filter(|v| **v != 0.0).count() <= 1, "top_k = 1 keeps one score per row: {row:?}");
        assert!(row.iter().all(|v| ((v * 10.0).round() - v * 10.0).abs() < 1e-4), "one decimal: {row:?}");
    }
    assert_ne!(scores, raw, "the full probability vector is not answered");

    let (status, label_only) = post(&server, "/v2/models/label_only/infer", &request);
    assert_eq!(status, 200, "{label_only}");
    assert!(output(&label_only, "probabilities").is_none() && output(&label_only, "label").is_some());

    // No tap around the policy: trace and until are off where outputs are protected.
    let traced = request.replacen('{', r#"{"parameters": {"trace": true},"#, 1);
    assert_eq!(post(&server, "/v2/models/guarded/infer", &traced).0, 403);
    assert_eq!(post(&server, "/v2/models/open/infer", &traced).0, 200);

    // Probing one digit pixel by pixel looks like extraction: throttled and counted.
    let probe = |i: usize| {
        let pixels: Vec<String> =
            (0..64).map(|j| format!("{}", (j % 17) as f32 + if j == i % 64 { 0.1 } else { 0.0 })).collect();
        format!(r#"{{"inputs":[{{"name":"pixels","shape":[1,64],"datatype":"FP32","data":[{}]}}]}}"#, pixels.join(","))
    };
    let statuses: Vec<u16> =
        (0..weir_access::WINDOW + 2).map(|i| post(&server, "/v2/models/guarded/infer", &probe(i)).0).collect();
    let first_refusal = statuses.iter().position(|s| *s == 429).expect("extraction-like traffic is throttled");
    assert!(first_refusal + 1 >= weir_access::WINDOW - 2, "honest-looking start is served: {statuses:?}");
    let (status, body) = post(&server, "/v2/models/guarded/infer", &probe(0));
    assert_eq!(status, 429);
    assert!(body["error"].as_str().unwrap().contains("model extraction"), "{body}");
    assert_eq!(post(&server, "/v2/models/open/infer", &probe(0)).0, 200, "unprotected pipelines are not watched");
    let metrics = crate::common::server::metrics(&server);
    assert!(metrics.contains("limit=\"extraction\""), "{metrics}");
}
