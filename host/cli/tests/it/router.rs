//! The HTTP router driven in-process (no socket, no child process): every
//! status a caller's mistake gets, and the typed metadata bodies. The
//! real-process tests in `http.rs` cover what needs the binary.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;
use weir_executor::Executor;
use weir_manifest::Manifest;
use weir_observe::metrics::Metrics;
use weir_sandbox::{Sandbox, SandboxOptions};
use weir_triggers::http::{router, HttpSettings, Parts};
use weir_triggers::Dispatcher;

fn digits() -> axum::Router {
    digits_with(weir_access::Access::Off)
}

/// The digits example's router with the given access control.
pub fn digits_with(access: weir_access::Access) -> axum::Router {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/digits/weir.toml");
    let manifest = Manifest::load(&path).unwrap();
    let settings = HttpSettings::from_manifest(&manifest).unwrap();
    let options = SandboxOptions { cache_dir: Some(crate::common::shared_cache_dir()), ..SandboxOptions::default() };
    let board = weir_console::Board::new(manifest.pipelines.values(), manifest.accounting.clone());
    let executor = Executor::new(Arc::new(Sandbox::new(options).unwrap()), manifest);
    let executor = Arc::new(executor.with_observer(Arc::new(board.clone())));
    let dispatcher = Arc::new(Dispatcher::new(executor, true, Arc::new(Metrics::new()), None));
    router(Parts {
        dispatcher,
        settings,
        jobs: Err("asynchronous invocations are off in this test".into()),
        provenance: None,
        broker: None,
        access: Arc::new(access),
        audit: None,
        board: Some(board),
        reload: None,
        monitors: Default::default(),
    })
}

async fn call(router: &axum::Router, method: &str, path: &str, body: &str) -> (StatusCode, Value) {
    let request = Request::builder().method(method).uri(path).body(Body::from(body.to_string())).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_status_that_says_so() {
    let router = digits();
    let cases = [
        ("/v2/models/digits/infer", "not json", 400, "not an Open Inference Protocol v2 inference request"),
        (
            "/v2/models/digits/infer",
            r#"{"inputs":[{"name":"pixels","shape":[1],"datatype":"FLOAT","data":[1]}]}"#,
            400,
            "unknown datatype `FLOAT`",
        ),
        (
            "/v2/models/digits/infer",
            r#"{"inputs":[{"name":"pixels","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}"#,
            400,
            "input `pixels` of pipeline `digits` is FP32 [1, 3], but the pipeline takes FP32 [-1, 64]",
        ),
        (
            "/v2/models/digits/infer",
            r#"{"inputs":[{"name":"pixels","shape":[1,64],"datatype":"INT64","data":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}]}"#,
            400,
            "but the pipeline takes FP32 [-1, 64]",
        ),
        (
            "/v2/models/digits/infer",
            r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}"#,
            400,
            "no input tensor `pixels`",
        ),
        ("/v2/models/digits/infer", r#"{"inputs":[],"parameters":{"until":"nope"}}"#, 400, "no step named `nope`"),
        (
            "/v2/models/digits/infer",
            r#"{"inputs":[],"parameters":{"receipt":"everything"}}"#,
            400,
            "parameters.receipt must be",
        ),
        ("/v2/models/nope/infer", r#"{"inputs":[]}"#, 404, "no pipeline named `nope`"),
    ];
    for (path, body, status, needle) in cases {
        let (got, response) = call(&router, "POST", path, body).await;
        assert_eq!(got.as_u16(), status, "{body}: {response}");
        assert!(response["error"].as_str().unwrap().contains(needle), "{body}: {response}");
    }
    assert_eq!(call(&router, "GET", "/v2/models/nope", "").await.0, StatusCode::NOT_FOUND);
    let (status, body) = call(&router, "GET", "/v3/whatever", "").await;
    assert_eq!((status, body["error"].is_string()), (StatusCode::NOT_FOUND, true));
    let async_off = Request::builder()
        .method("POST")
        .uri("/v2/models/digits/infer")
        .header("prefer", "respond-async")
        .body(Body::from(r#"{"inputs":[]}"#))
        .unwrap();
    assert_eq!(router.clone().oneshot(async_off).await.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
    let (status, _) = call(&router, "GET", "/v2/invocations/x", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "provenance is off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_bodies_have_their_documented_shape() {
    let router = digits();
    assert_eq!(call(&router, "GET", "/v2/health/live", "").await, (StatusCode::OK, json!({"live": true})));
    assert_eq!(call(&router, "GET", "/v2/health/ready", "").await, (StatusCode::OK, json!({"ready": true})));
    let (_, server) = call(&router, "GET", "/v2", "").await;
    assert_eq!(
        (&server["name"], &server["models"], &server["extensions"]),
        (&json!("weir"), &json!(["digits"]), &json!(["binary_tensor_data"]))
    );
    let (_, model) = call(&router, "GET", "/v2/models/digits", "").await;
    assert_eq!(model["inputs"], json!([{"name": "pixels", "datatype": "FP32", "shape": [-1, 64]}]));
    assert_eq!(model["parameters"]["steps"].as_array().unwrap().len(), 3);
    let (_, status) = call(&router, "GET", "/v2/status", "").await;
    assert_eq!((status["pipelines"].as_u64(), status["components"].as_array().map(Vec::len)), (Some(1), Some(3)));
}
