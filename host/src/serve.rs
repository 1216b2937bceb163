//! The HTTP trigger: every pipeline of a manifest exposed as a model over the
//! Open Inference Protocol v2 (REST).
//!
//! Limits: bodies over `max_body` get 413; at most `max_concurrency`
//! invocations run at once and a request beyond that gets 429 at once
//! (back-pressure instead of an unbounded queue); an invocation over
//! `timeout` gets 504 and is cancelled. Each step also has its own limits,
//! so a slow or hostile step never holds up other pipelines.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::manifest::{HttpSettings, Pipeline};
use crate::metrics::Metrics;
use crate::pipeline::{Executor, PipelineError};
use crate::telemetry::{self, TraceContext, Tracer};
use crate::jobs::{JobError, Jobs};
use crate::trigger;
use crate::tensor::datatype_name;

struct AppState {
    executor: Arc<Executor>,
    settings: HttpSettings,
    slots: Semaphore,
    metrics: Arc<Metrics>,
    /// Price every invocation and return its receipt (on unless turned off).
    receipts: bool,
    /// OpenTelemetry span export, when an OTLP endpoint is configured.
    tracer: Option<Tracer>,
    /// Asynchronous invocations, or why they are off.
    jobs: Result<Jobs, String>,
}

/// An error response: `{"error": "..."}` with a status that says whose fault.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<PipelineError> for ApiError {
    fn from(error: PipelineError) -> Self {
        trigger::Failure::from(error).into()
    }
}

impl From<trigger::Failure> for ApiError {
    fn from(failure: trigger::Failure) -> Self {
        ApiError(StatusCode::from_u16(failure.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), failure.message)
    }
}

/// The router for `executor`'s pipelines; `receipts` turns per-invocation
/// receipts (and their metrics) on.
pub fn router(executor: Arc<Executor>, receipts: bool, jobs: Result<Jobs, String>, metrics: Arc<Metrics>) -> Router {
    let settings = executor.manifest().http.clone();
    let max_body = usize::try_from(settings.max_body_bytes).unwrap_or(usize::MAX);
    let tracer = Tracer::from_env();
    let state = Arc::new(AppState { slots: Semaphore::new(settings.max_concurrency), executor, settings, metrics, receipts, tracer, jobs });
    Router::new()
        .route("/v2/health/live", get(|| async { Json(json!({ "live": true })) }))
        .route("/v2/health/ready", get(|| async { Json(json!({ "ready": true })) }))
        .route("/v2", get(server_metadata))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/infer", post(infer))
        .route("/metrics", get(metrics_text))
        .route("/v2/status", get(status))
        .route("/v2/jobs/{id}", get(get_job))
        .route("/v2/invocations/{id}", get(get_invocation).delete(erase_invocation))
        .route("/v2/subjects/{subject}", axum::routing::delete(erase_subject))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such endpoint; see /v2 and /v2/models/{name}".into()) })
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// Serve until ctrl-c or SIGTERM. `on_listening` gets the bound address
/// (useful with port 0).
pub async fn serve(executor: Arc<Executor>, listen: &str, receipts: bool, on_listening: impl FnOnce(SocketAddr)) -> std::io::Result<()> {
    let settings = executor.manifest().jobs.clone();
    let jobs = match Jobs::start(executor.clone(), &settings, receipts) {
        Ok(jobs) => Ok(jobs),
        Err(error) if settings.configured => return Err(std::io::Error::other(error.to_string())),
        Err(error) => {
            // The default store is per manifest; a second server on the same
            // manifest finds it locked, and serves synchronously only.
            tracing::warn!(%error, "asynchronous invocations are off (set [triggers.jobs] path to give this server its own store)");
            Err(format!("asynchronous invocations are off on this server: {error}"))
        }
    };
    // One set of metrics for every trigger.
    let metrics = Arc::new(Metrics::new());
    if let Some(nats) = &executor.manifest().nats {
        crate::nats::start(executor.clone(), nats, receipts, metrics.clone()).await.map_err(|e| std::io::Error::other(e.to_string()))?;
    }
    let listener = tokio::net::TcpListener::bind(listen).await?;
    on_listening(listener.local_addr()?);
    axum::serve(listener, router(executor, receipts, jobs, metrics)).with_graceful_shutdown(shutdown_signal()).await
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
}

async fn server_metadata(State(state): State<Arc<AppState>>) -> Json<Value> {
    let models: Vec<&String> = state.executor.manifest().pipelines.keys().collect();
    Json(json!({ "name": "weir", "version": env!("CARGO_PKG_VERSION"), "extensions": [], "models": models }))
}

fn pipeline<'a>(state: &'a AppState, name: &str) -> Result<&'a Pipeline, ApiError> {
    state.executor.pipeline(name).map_err(ApiError::from)
}

async fn model_metadata(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let pipeline = pipeline(&state, &name)?;
    let inputs: Vec<Value> = pipeline
        .inputs
        .iter()
        .map(|d| json!({ "name": d.name, "datatype": datatype_name(d.datatype), "shape": d.shape }))
        .collect();
    // Declared outputs carry their type; others are typed by the steps at
    // run time (empty datatype, any shape).
    let outputs: Vec<Value> = pipeline
        .outputs
        .iter()
        .map(|r| match pipeline.output_types.get(&r.name) {
            Some(d) => json!({ "name": r.name, "datatype": datatype_name(d.datatype), "shape": d.shape }),
            None => json!({ "name": r.name, "datatype": "", "shape": [-1] }),
        })
        .collect();
    let steps: Vec<Value> = pipeline.steps.iter().map(|s| json!({ "name": s.name, "component": s.component, "models": s.grants.nn.models })).collect();
    Ok(Json(json!({
        "name": pipeline.name,
        "versions": [],
        "platform": "weir",
        "inputs": inputs,
        "outputs": outputs,
        "parameters": { "description": pipeline.description, "steps": steps },
    })))
}

async fn model_ready(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let pipeline = pipeline(&state, &name)?;
    // Ready when every component can be loaded (compiled or from the cache).
    for step in &pipeline.steps {
        state.executor.component(step).await.map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    }
    Ok(Json(json!({ "name": name, "ready": true })))
}

fn provenance(state: &AppState) -> Result<&crate::provenance::ProvenanceStore, ApiError> {
    state
        .executor
        .provenance()
        .map(|store| store.as_ref())
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "provenance is off: add a [provenance] table to the manifest".into()))
}

fn store_error(error: crate::provenance::ProvenanceError) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
}

/// The full record of one invocation: digests, grants, edge hashes, receipt.
async fn get_invocation(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    match provenance(&state)?.get(&id).map_err(store_error)? {
        Some(record) => Ok(Json(serde_json::to_value(record).unwrap_or_default())),
        None => Err(ApiError(StatusCode::NOT_FOUND, format!("no record of invocation `{id}` (never recorded, expired or erased)"))),
    }
}

async fn erase_invocation(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    if provenance(&state)?.erase(&id).map_err(store_error)? {
        Ok(Json(json!({ "erased": 1 })))
    } else {
        Err(ApiError(StatusCode::NOT_FOUND, format!("no record of invocation `{id}`")))
    }
}

async fn erase_subject(State(state): State<Arc<AppState>>, Path(subject): Path<String>) -> Result<Json<Value>, ApiError> {
    let erased = provenance(&state)?.erase_subject(&subject).map_err(store_error)?;
    Ok(Json(json!({ "erased": erased })))
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    let residency = state.executor.residency();
    let text = state.metrics.encode(&state.executor.runtime().models().stats(), &residency.status(), crate::residency::resident_set_bytes());
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// What is in memory now: components warm or cold with their last cold
/// start by part, loaded models, and the process's resident memory.
async fn status(State(state): State<Arc<AppState>>) -> Json<Value> {
    let models = state.executor.runtime().models().stats();
    Json(json!({
        "pipelines": state.executor.manifest().pipelines.len(),
        "components": state.executor.residency().status(),
        "models": {
            "registered": models.registered,
            "loaded": models.loaded,
            "loaded_bytes": models.charged_bytes,
            "loads": models.loads,
            "evictions": models.evictions,
        },
        "resident_memory_bytes": crate::residency::resident_set_bytes(),
    }))
}

async fn infer(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let received = std::time::Instant::now();
    pipeline(&state, &name)?;
    if wants_async(&headers) {
        return submit_job(&state, &name, &body, received);
    }
    // The caller's trace, continued; a new one when there is none.
    let trace = state.tracer.as_ref().map(|_| {
        let parent = headers.get("traceparent").and_then(|v| v.to_str().ok()).and_then(TraceContext::from_traceparent);
        parent.unwrap_or_else(TraceContext::new_root)
    });
    let result = run_infer(&state, &name, &body, received, trace).await;
    let status = match &result {
        Ok(_) => 200,
        Err(ApiError(status, message)) => {
            tracing::warn!(pipeline = %name, status = status.as_u16(), error = %message, "invocation failed");
            if let (Some(tracer), Some(trace)) = (&state.tracer, trace) {
                tracer.record([telemetry::failed_invocation_span(&name, trace, received.elapsed(), message)]);
            }
            status.as_u16()
        }
    };
    state.metrics.request(&name, status);
    result
}

/// `Prefer: respond-async` (RFC 7240) asks for a job instead of an answer.
fn wants_async(headers: &axum::http::HeaderMap) -> bool {
    headers.get_all("prefer").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|p| p.trim() == "respond-async")
}

/// Check the request, keep it durably, answer 202 with where to look.
fn submit_job(state: &AppState, name: &str, body: &[u8], received: std::time::Instant) -> Result<Response, ApiError> {
    let jobs = state.jobs.as_ref().map_err(|why| ApiError(StatusCode::SERVICE_UNAVAILABLE, why.clone()))?;
    trigger::prepare(body, received)?;
    let job = jobs.submit(name, body).map_err(|error| match error {
        JobError::Full(_) => ApiError(StatusCode::TOO_MANY_REQUESTS, error.to_string()),
        JobError::Store { .. } => ApiError(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
    })?;
    state.metrics.request(name, 202);
    let location = format!("/v2/jobs/{}", job.id);
    let mut response = (StatusCode::ACCEPTED, Json(json!({ "id": job.id, "status": job.status, "location": location }))).into_response();
    if let Ok(value) = axum::http::HeaderValue::from_str(&location) {
        response.headers_mut().insert(axum::http::header::LOCATION, value);
    }
    Ok(response)
}

/// A job's status and, once finished, its OIP response or error.
async fn get_job(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let jobs = state.jobs.as_ref().map_err(|why| ApiError(StatusCode::NOT_FOUND, why.clone()))?;
    match jobs.get(&id) {
        Ok(Some(job)) => Ok(Json(serde_json::to_value(job).unwrap_or(Value::Null))),
        Ok(None) => Err(ApiError(StatusCode::NOT_FOUND, format!("no job `{id}` (never submitted here, or its result expired)"))),
        Err(error) => Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())),
    }
}

async fn run_infer(
    state: &AppState,
    name: &str,
    body: &[u8],
    received: std::time::Instant,
    trace: Option<TraceContext>,
) -> Result<Response, ApiError> {
    let prepared = trigger::prepare(body, received)?;
    let Ok(_slot) = state.slots.try_acquire() else {
        return Err(ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            format!("{} invocations are already running (max_concurrency); retry later", state.settings.max_concurrency),
        ));
    };
    let _in_flight = state.metrics.in_flight();
    let completed = trigger::execute(&state.executor, name, prepared, state.receipts, state.settings.timeout).await?;
    let output = &completed.output;
    if let Some(receipt) = &completed.receipt {
        state.metrics.invocation(name, output.wall, receipt);
    }
    let mut response = Json(completed.response).into_response();
    if let Ok(id) = axum::http::HeaderValue::from_str(&output.invocation_id) {
        response.headers_mut().insert("weir-invocation-id", id);
    }
    if let (Some(tracer), Some(trace)) = (&state.tracer, trace) {
        let (spans, span_id) = telemetry::invocation_spans(name, trace, output);
        tracer.record(spans);
        let traceparent = format!("00-{}-{}-01", hex::encode(trace.trace_id), hex::encode(span_id));
        if let Ok(value) = axum::http::HeaderValue::from_str(&traceparent) {
            response.headers_mut().insert("traceparent", value);
        }
    }
    Ok(response)
}
