//! Unmodified Open Inference Protocol clients against `weir serve`:
//! tritonclient over gRPC and over HTTP with binary tensor data on and off,
//! on the digits and ride-eta examples and on an `echo` pipeline that sends
//! back one tensor of every datatype (host/cli/tests/interop/).

use std::path::{Path, PathBuf};
use std::process::Command;

use weir_access::{KeyFile, Quota, Scope};

use crate::common::server::{start_with, Server};

/// Both examples and an `echo` pipeline of one no-op step.
fn manifest(dir: &Path) -> PathBuf {
    let mut text = String::new();
    text.push_str(&format!("[components.noop]\nsource = \"{}\"\n", weir_tests::NOOP));
    let every = ["b", "u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64", "f16", "f32", "f64", "s"];
    // `typed`: every datatype gRPC's typed `contents` can carry (not FP16).
    for (pipeline, names) in [("echo", &every[..]), ("typed", &every[..])] {
        let names: Vec<&str> = names.iter().copied().filter(|n| pipeline == "echo" || *n != "f16").collect();
        let inputs: Vec<String> = names.iter().map(|n| format!("\"{n}=input.{n}\"")).collect();
        text.push_str(&format!(
            "[pipelines.{pipeline}]\nsteps = [{{ name = \"echo\", component = \"noop\", inputs = [{}] }}]\n\
             [pipelines.{pipeline}.outputs]\n",
            inputs.join(", ")
        ));
        for name in names {
            text.push_str(&format!("{name} = \"echo.{name}\"\n"));
        }
    }
    crate::common::examples_manifest(dir, &text)
}

fn run_clients(python: &Path, server: &Server, key: Option<&str>) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/tritonclient_interop.py");
    let http = server.base.strip_prefix("http://").unwrap();
    let grpc = server.grpc.as_deref().expect("the server said where gRPC listens");
    let mut command = Command::new(python);
    command.arg(&script).args(["--http", http, "--grpc", grpc, "--examples"]).arg(crate::common::examples_dir());
    if let Some(key) = key {
        command.args(["--key", key]);
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "tritonclient checks failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("all interoperability checks passed"), "{stdout}\n{stderr}");
}

#[test]
fn tritonclient_grpc_and_http_agree_on_every_example_and_datatype() {
    let Some(python) = weir_tests::services::tritonclient_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(&manifest(dir.path()), &["--grpc-listen", "127.0.0.1:0"], &[]);
    run_clients(&python, &server, None);
}

#[test]
fn tritonclient_needs_a_key_over_grpc_too() {
    let Some(python) = weir_tests::services::tritonclient_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    let mut file = KeyFile::default();
    let (_, key) = file.create("client", vec![Scope::Invoke(None)], Quota::default()).unwrap();
    file.save(&keys).unwrap();
    let audit = dir.path().join("audit.log");
    let args =
        ["--grpc-listen", "127.0.0.1:0", "--keys", keys.to_str().unwrap(), "--audit-log", audit.to_str().unwrap()];
    let server = start_with(&manifest(dir.path()), &args, &[]);
    run_clients(&python, &server, Some(&key));
    // gRPC calls are audited like HTTP ones: who, what, and how it ended.
    let log = std::fs::read_to_string(&audit).unwrap();
    assert!(log.contains("gRPC ModelInfer digits") && log.contains("\"status\":200"), "{log}");
    assert!(log.contains("\"key_id\":\"unauthenticated\""), "{log}");
}

/// A gRPC call continues the caller's trace (`traceparent` metadata): the
/// invocation's span is exported as its child, and the answer's metadata
/// names that span.
#[test]
fn grpc_calls_continue_the_callers_trace() {
    let Some(python) = weir_tests::services::tritonclient_python() else { return };
    let (endpoint, bodies) = crate::http::collector();
    let dir = tempfile::tempdir().unwrap();
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", Path::new(&endpoint)), ("OTEL_BSP_SCHEDULE_DELAY", Path::new("50"))];
    let server = start_with(&manifest(dir.path()), &["--grpc-listen", "127.0.0.1:0"], &env);
    let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let script = r#"
import sys, grpc, numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc
stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(sys.argv[1]))
request = service_pb2.ModelInferRequest(model_name="digits")
request.inputs.add(name="pixels", datatype="FP32", shape=[1, 64]).contents.fp32_contents.extend([0.0] * 64)
response, call = stub.ModelInfer.with_call(request, metadata=[("traceparent", sys.argv[2])])
print(dict(call.initial_metadata())["traceparent"])
"#;
    let out = Command::new(python).args(["-c", script, server.grpc.as_deref().unwrap(), caller]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answered = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(answered.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{answered}");
    let mut spans: Vec<serde_json::Value> = Vec::new();
    while !spans.iter().any(|s| s["name"] == "invoke digits") {
        let body = bodies.recv_timeout(std::time::Duration::from_secs(20)).expect("spans exported within 20 s");
        spans.extend(body["resourceSpans"][0]["scopeSpans"][0]["spans"].as_array().unwrap().iter().cloned());
    }
    let invocation = spans.iter().find(|s| s["name"] == "invoke digits").unwrap();
    assert_eq!(invocation["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(invocation["parentSpanId"], "00f067aa0ba902b7", "a child of the caller's span");
    assert!(answered.contains(invocation["spanId"].as_str().unwrap()), "{answered} names {invocation}");
}
