//! What the server knows, over HTTP: `/v2/status`, `/metrics`, and the
//! provenance records (read and erase).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use weir_core::ErrorKind;
use weir_executor::residency::resident_set_bytes;
use weir_observe::monitor_records::{MonitorResult, MAX_READ};
use weir_observe::provenance::{InvocationRecord, ProvenanceStore};

use super::api::{Erased, ModelsStatus, Status};
use super::{api_error, ApiError, AppState};

pub(super) fn provenance(state: &AppState) -> Result<&Arc<ProvenanceStore>, ApiError> {
    state
        .provenance
        .as_ref()
        .ok_or_else(|| api_error(ErrorKind::NotFound, "provenance is off: add a [provenance] table to the manifest"))
}

/// The full record of one invocation: digests, grants, edge hashes, receipt.
pub(super) async fn get_invocation(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<InvocationRecord>, ApiError> {
    match provenance(&state)?.get(&id)? {
        Some(record) => Ok(Json(record)),
        None => Err(api_error(
            ErrorKind::NotFound,
            format!("no record of invocation `{id}` (never recorded, expired or erased)"),
        )),
    }
}

pub(super) async fn erase_invocation(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Erased>, ApiError> {
    if provenance(&state)?.erase(&id)? {
        Ok(Json(Erased { erased: 1, jobs: 0, broker_messages: 0 }))
    } else {
        Err(api_error(ErrorKind::NotFound, format!("no record of invocation `{id}`")))
    }
}

/// Erase a subject's provenance records, asynchronous jobs (requests and
/// results) and NATS messages (requests, results, dead letters); the stores
/// are rewritten so that no byte of them remains, and JetStream overwrites
/// the messages it deletes.
pub(super) async fn erase_subject(
    State(state): State<Arc<AppState>>,
    Path(subject): Path<String>,
) -> Result<Json<Erased>, ApiError> {
    if state.provenance.is_none() && state.jobs.is_err() && state.broker.is_none() {
        provenance(&state)?;
    }
    // The broker first: its notes live in the provenance store.
    let broker_messages = match &state.broker {
        Some(broker) => broker.erase_subject(&subject).await.map_err(|e| api_error(ErrorKind::Unavailable, e))?,
        None => 0,
    };
    let erased = match state.provenance.as_deref() {
        Some(store) => store.erase_subject(&subject)?,
        None => 0,
    };
    let jobs = match &state.jobs {
        Ok(jobs) => jobs.erase_subject(&subject)?,
        Err(_) => 0,
    };
    Ok(Json(Erased { erased, jobs, broker_messages }))
}

pub(super) async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    let executor = state.dispatcher.executor();
    let models = executor.sandbox().models().stats();
    state.dispatcher.metrics().spans_dropped(state.dispatcher.spans_dropped());
    state.dispatcher.metrics().process_usage(weir_core::clock::process_cpu_time(), executor.energy().as_ref());
    let mut text = state.dispatcher.metrics().encode(&models, &executor.residency().status(), resident_set_bytes());
    // Experiments' families go before the exposition's `# EOF` line.
    let eof = text.rfind("# EOF").unwrap_or(text.len());
    let mut experiments = String::new();
    state.dispatcher.generation().rollouts.metrics_text(&mut experiments);
    state.quality.metrics_text(&mut experiments);
    state.monitors.metrics_text(&mut experiments);
    text.insert_str(eof, &experiments);
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResultsParams {
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /v2/monitors/{pipeline}/{monitor}/results?limit=N`: the results
/// kept as records, newest first (with `[provenance]`).
pub(super) async fn monitor_results(
    State(state): State<Arc<AppState>>,
    Path((pipeline, monitor)): Path<(String, String)>,
    Query(params): Query<ResultsParams>,
) -> Result<Json<Vec<MonitorResult>>, ApiError> {
    let limit = params.limit.unwrap_or(100);
    if !(1..=MAX_READ).contains(&limit) {
        return Err(api_error(
            ErrorKind::InvalidInput,
            format!("`limit` must be between 1 and {MAX_READ}, got {limit}"),
        ));
    }
    if !state.monitors.figures().iter().any(|f| f.pipeline == pipeline && f.monitor == monitor) {
        let message = format!("no monitor `{monitor}` on pipeline `{pipeline}` (GET /v2/monitors lists them)");
        return Err(api_error(ErrorKind::NotFound, message));
    }
    let store = provenance(&state)?.clone();
    let read = tokio::task::spawn_blocking(move || store.monitor_results(&pipeline, &monitor, limit))
        .await
        .map_err(|e| api_error(ErrorKind::Internal, format!("reading monitor results: {e}")))?;
    Ok(Json(read?))
}

/// `GET /v2/monitors`: every monitor's counts and latest results.
pub(super) async fn monitors(State(state): State<Arc<AppState>>) -> Json<Vec<weir_monitor::MonitorFigures>> {
    Json(state.monitors.figures())
}

/// What is in memory now: components warm or cold with their last cold
/// start by part, loaded models, and the process's resident memory.
pub(super) async fn status(State(state): State<Arc<AppState>>) -> Json<Status> {
    let executor = state.dispatcher.executor();
    let models = executor.sandbox().models().stats();
    Json(Status {
        pipelines: executor.manifest().pipelines.len(),
        components: executor.residency().status(),
        models: ModelsStatus {
            registered: models.registered,
            loaded: models.loaded,
            loaded_bytes: models.charged_bytes,
            loads: models.loads,
            evictions: models.evictions,
            variants: executor.residency().variant_picks(),
        },
        resident_memory_bytes: resident_set_bytes(),
    })
}

/// `GET /v2/audit?limit=N`: the last N audit events (default 100, at most 10 000).
pub(super) async fn audit(
    State(state): State<Arc<AppState>>,
    uri: axum::http::Uri,
) -> Result<Json<Vec<weir_access::AuditEvent>>, ApiError> {
    let log = state
        .audit
        .as_deref()
        .ok_or_else(|| api_error(ErrorKind::NotFound, "the audit log is off (access control is off: --no-auth)"))?;
    let limit = match uri.query().into_iter().flat_map(|q| q.split('&')).find_map(|p| p.strip_prefix("limit=")) {
        None => 100,
        Some(text) => text
            .parse::<usize>()
            .map_err(|_| api_error(ErrorKind::InvalidInput, format!("limit must be a whole number, got `{text}`")))?,
    }
    .min(10_000);
    let log = log.tail(limit).map_err(|e| api_error(ErrorKind::Internal, e.to_string()))?;
    Ok(Json(log))
}
