//! The HTTP trigger: every pipeline of a manifest exposed as a model over the
//! Open Inference Protocol v2 (REST), plus status, metrics, jobs and the
//! provenance records.
//!
//! Limits: bodies over `max_body` get 413 and bodies slower than
//! `body_timeout` 408; at most `max_concurrency` invocations run at once and
//! a request beyond that gets 429 at once (back-pressure instead of an
//! unbounded queue), before its body is decoded; decoding is charged against
//! `max_decoded` (429 when spent); an invocation over `timeout` gets 504 and
//! is cancelled; a response over `max_response` gets 413. Each step also has
//! its own limits, so a slow or hostile step never holds up other pipelines.
//! Connections are limited in `listen`; a panic in any handler is a 500.

pub mod api;
#[cfg(feature = "console")]
mod console;
mod experiments;
mod explain;
mod feedback;
mod guard;
mod listen;
mod metadata;
mod records;
mod settings;
mod tls;

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use bytes::Bytes;
use futures_util::FutureExt;
use tokio::sync::{Semaphore, SemaphorePermit};
use weir_access::{
    base_pipeline, fingerprint, Access, AuditLog, ExtractionDetector, Principal, Quotas, Refusal, Verdict,
};
/// The console's live board. A build without the console (cargo feature
/// `console`) has no value of it, so an `Option<Board>` there is `None`.
#[cfg(feature = "console")]
pub use weir_console::Board;
#[cfg(not(feature = "console"))]
pub enum Board {}
use weir_core::{Classify, ErrorKind};
use weir_observe::provenance::ProvenanceStore;

pub use guard::{endpoint_table, Endpoint, Need};
pub use settings::HttpSettings;
pub use tls::{check as check_tls, TlsError, TlsFiles};

use crate::dispatch::{panic_message, Dispatcher, Failure, Invocation, Prepared, TriggerKind};
use crate::jobs::Jobs;
use api::{ErrorBody, JobAccepted};
// What the gRPC trigger shares with HTTP.
use metadata::PipelineName;
#[cfg(feature = "grpc")]
pub(crate) use metadata::{extensions, metadata_of, ready};

/// The decoding budget is counted in KiB (semaphore permits are u32).
const BUDGET_UNIT: u64 = 1024;

pub(crate) struct AppState {
    pub(crate) dispatcher: Arc<Dispatcher>,
    pub(crate) settings: HttpSettings,
    pub(crate) slots: Semaphore,
    /// Memory requests being decoded and run may hold, in `BUDGET_UNIT`s.
    pub(crate) decoding: Semaphore,
    /// Asynchronous invocations, or why they are off.
    pub(crate) jobs: Result<Jobs, String>,
    /// The provenance store, when the manifest keeps records.
    pub(crate) provenance: Option<Arc<ProvenanceStore>>,
    /// The NATS broker's messages, for erasure (when NATS is on).
    pub(crate) broker: Option<Arc<crate::nats::Broker>>,
    /// Who may call what.
    pub(crate) access: Arc<Access>,
    /// Each key's use of each pipeline.
    pub(crate) quotas: Quotas,
    /// Who did what, when access control is on.
    pub(crate) audit: Option<Arc<AuditLog>>,
    /// Extraction-like traffic on pipelines with protected outputs.
    pub(crate) extraction: ExtractionDetector,
    /// Live traffic and receipt history, for the console (`None`: it is off).
    #[cfg(feature = "console")]
    pub(crate) board: Option<Board>,
    /// Every pipeline's graph, laid out for the console.
    #[cfg(feature = "console")]
    pub(crate) layouts: Vec<weir_console::GraphLayout>,
    /// Open console event streams (at most `console::MAX_EVENT_STREAMS`).
    #[cfg(feature = "console")]
    pub(crate) event_streams: Arc<Semaphore>,
    /// How to reload the manifest (`None`: this server cannot).
    pub(crate) reload: Option<Arc<dyn crate::Reload>>,
    /// Live quality from feedback.
    pub(crate) quality: weir_observe::feedback::Quality,
    /// What the pipelines' monitors found.
    pub(crate) monitors: Arc<weir_monitor::MonitorBoard>,
}

/// An error response: `{"error": "..."}` with the status its kind maps to.
struct ApiError(Failure);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(ErrorBody { error: self.0.message })).into_response()
    }
}

impl From<Failure> for ApiError {
    fn from(failure: Failure) -> Self {
        ApiError(failure)
    }
}

impl<E: Classify + std::fmt::Display> From<E> for ApiError {
    fn from(error: E) -> Self {
        ApiError(Failure::from_error(&error))
    }
}

fn api_error(kind: ErrorKind, message: impl Into<String>) -> ApiError {
    ApiError(Failure::new(kind, message))
}

/// What the HTTP trigger (and its gRPC twin) serves with.
pub struct Parts {
    pub dispatcher: Arc<Dispatcher>,
    pub settings: HttpSettings,
    /// Asynchronous invocations, or why they are off.
    pub jobs: Result<Jobs, String>,
    pub provenance: Option<Arc<ProvenanceStore>>,
    /// The NATS broker's messages, for erasure (when NATS is on).
    pub broker: Option<Arc<crate::nats::Broker>>,
    pub access: Arc<Access>,
    pub audit: Option<Arc<AuditLog>>,
    /// What the console shows live (it must observe the dispatcher's
    /// executor); `None` turns the console off.
    pub board: Option<Board>,
    /// How to reload the manifest, when the server can.
    pub reload: Option<Arc<dyn crate::Reload>>,
    /// What the pipelines' monitors found.
    pub monitors: Arc<weir_monitor::MonitorBoard>,
}

/// The router for the dispatcher's pipelines.
pub fn router(parts: Parts) -> Router {
    routes_for(app_state(parts))
}

fn app_state(parts: Parts) -> Arc<AppState> {
    let Parts { dispatcher, settings, jobs, provenance, broker, access, audit, board, reload, monitors } = parts;
    let slots = Semaphore::new(settings.max_concurrency);
    let budget = (settings.max_decoded_bytes / BUDGET_UNIT).min(u64::from(u32::MAX)).min(Semaphore::MAX_PERMITS as u64);
    let decoding = Semaphore::new(budget as usize);
    #[cfg(not(feature = "console"))]
    let _no_console = board;
    Arc::new(AppState {
        #[cfg(feature = "console")]
        layouts: console::layouts(dispatcher.executor().manifest()),
        #[cfg(feature = "console")]
        event_streams: Arc::new(Semaphore::new(console::MAX_EVENT_STREAMS)),
        slots,
        decoding,
        dispatcher,
        settings,
        jobs,
        provenance,
        broker,
        access,
        quotas: Quotas::default(),
        audit,
        extraction: ExtractionDetector::default(),
        #[cfg(feature = "console")]
        board,
        reload,
        quality: Default::default(),
        monitors,
    })
}

/// A query parameter, percent-decoded (`+` is a space).
fn param(uri: &axum::http::Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name)
            .then(|| percent_encoding::percent_decode_str(&value.replace('+', " ")).decode_utf8_lossy().into_owned())
    })
}

fn routes_for(state: Arc<AppState>) -> Router {
    guard::routes(&state)
        .fallback(|| async { api_error(ErrorKind::NotFound, "no such endpoint; see /v2 and /v2/models/{name}") })
        .layer(axum::middleware::from_fn(catch_panic))
        .with_state(state)
}

/// A panic in a handler is answered 500 (the connection and the server
/// live on); invocations catch their own and name the invocation.
async fn catch_panic(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    match AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => {
            let why = panic_message(panic.as_ref());
            tracing::error!(%path, panic = %why, "a request handler panicked");
            let error = format!("internal error (a bug in weir, please report it): {why}");
            (StatusCode::INTERNAL_SERVER_ERROR, Json(ErrorBody { error })).into_response()
        }
    }
}

/// What operators use beside the API: the console's live board (`None`:
/// the console is off) and reloading the manifest (`None`: not possible).
#[derive(Default)]
pub struct Operations {
    pub board: Option<Board>,
    pub reload: Option<Arc<dyn crate::Reload>>,
    /// What the pipelines' monitors found.
    pub monitors: Arc<weir_monitor::MonitorBoard>,
}

/// Serve until ctrl-c or SIGTERM, with the asynchronous jobs and NATS
/// triggers the manifest configures beside HTTP. `on_listening` gets the
/// bound address (useful with port 0).
pub async fn serve(
    dispatcher: Arc<Dispatcher>,
    triggers: crate::Triggers,
    provenance: Option<Arc<ProvenanceStore>>,
    access: Access,
    audit: Option<Arc<AuditLog>>,
    operations: Operations,
    on_listening: impl FnOnce(Listening),
) -> std::io::Result<()> {
    let Operations { board, reload, monitors } = operations;
    let crate::Triggers { http: settings, grpc, jobs, nats } = triggers;
    let jobs = match Jobs::start(dispatcher.clone(), &jobs) {
        Ok(started) => Ok(started),
        Err(error) if jobs.configured => return Err(std::io::Error::other(error.to_string())),
        Err(error) => {
            // The default store is per manifest; a second server on the same
            // manifest finds it locked, and serves synchronously only.
            tracing::warn!(%error, "asynchronous invocations are off (set [triggers.jobs] path to give this server its own store)");
            Err(format!("asynchronous invocations are off on this server: {error}"))
        }
    };
    let access = Arc::new(access);
    let broker = match &nats {
        Some(nats) => Some(
            crate::nats::start(dispatcher.clone(), nats, access.clone(), provenance.clone())
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?,
        ),
        None => None,
    };
    let tls = settings.tls.as_ref().map(tls::acceptor).transpose().map_err(std::io::Error::other)?;
    let listener = tokio::net::TcpListener::bind(&settings.listen).await?;
    let grpc = match &grpc {
        Some(grpc) => Some(crate::grpc::bind(grpc).await?),
        None => None,
    };
    on_listening(Listening { http: listener.local_addr()?, grpc: grpc.as_ref().map(|(_, addr)| *addr) });
    let limits = listen::ConnectionLimits::from(&settings);
    let state =
        app_state(Parts { dispatcher, settings, jobs, provenance, broker, access, audit, board, reload, monitors });
    let grpc = async {
        match grpc {
            Some((listener, _)) => crate::grpc::serve(state.clone(), listener, shutdown_signal()).await,
            None => Ok(()),
        }
    };
    let http = listen::serve_connections(listener, routes_for(state.clone()), limits, tls, shutdown_signal());
    tokio::try_join!(http, grpc).map(|_| ())
}

/// Where the triggers listen, once bound.
#[derive(Debug, Clone, Copy)]
pub struct Listening {
    pub http: SocketAddr,
    /// The gRPC listener, when `[triggers.grpc]` is configured.
    pub grpc: Option<SocketAddr>,
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
}

async fn infer(
    State(state): State<Arc<AppState>>,
    PipelineName(name): PipelineName,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let received = Instant::now();
    state.dispatcher.executor().pipeline(&name)?;
    // Quotas are kept per pipeline, its versions included.
    let _admission = match state.quotas.admit(&principal, base_pipeline(&name)) {
        Ok(admission) => admission,
        Err(refusal) => return Ok(over_quota(&state, &name, &principal, refusal)),
    };
    let counted = |failure: Failure| {
        state.dispatcher.count(&name, failure.status());
        ApiError(failure)
    };
    if let Some(encoding) = headers.get(header::CONTENT_ENCODING).filter(|e| *e != "identity") {
        let message = format!(
            "Content-Encoding `{}` is not supported; send the request uncompressed",
            encoding.to_str().unwrap_or("(not text)")
        );
        return Err(counted(Failure::new(ErrorKind::InvalidInput, message)));
    }
    let body = match read_body(body, state.settings.max_body_bytes, state.settings.body_timeout).await {
        Ok(body) => body,
        Err(BodyError::Failed(failure)) => return Err(counted(failure)),
        Err(BodyError::TimedOut(after)) => {
            state.dispatcher.count(&name, StatusCode::REQUEST_TIMEOUT.as_u16());
            let error = format!("the request body did not arrive within {after:?} (body_timeout)");
            return Ok((StatusCode::REQUEST_TIMEOUT, Json(ErrorBody { error })).into_response());
        }
    };
    let header_length = headers.get(crate::oip::HEADER_LENGTH).map(|v| v.to_str().unwrap_or("(not text)"));
    if wants_async(&headers) {
        if header_length.is_some() {
            let message = "asynchronous invocations take OIP JSON only; send the tensors as JSON `data` (no \
                           Inference-Header-Content-Length) or invoke synchronously";
            return Err(counted(Failure::new(ErrorKind::InvalidInput, message)));
        }
        let _budget = decoding_budget(&state, body.len()).map_err(counted)?;
        return submit_job(&state, &name, &body, received, &principal).map_err(counted);
    }
    // Taken before the body is decoded: a request turned away costs nothing.
    let Ok(_slot) = state.slots.try_acquire() else {
        let message = format!(
            "{} invocations are already running (max_concurrency); retry later",
            state.settings.max_concurrency
        );
        return Err(counted(Failure::new(ErrorKind::Overloaded, message)));
    };
    let _budget = decoding_budget(&state, body.len()).map_err(counted)?;
    let prepared = Prepared::parse_http(&body, header_length, received, state.dispatcher.limits()).map_err(counted)?;
    drop(body);
    // A budget counts rows: the first dimension of the largest batched input.
    let rows = prepared.inputs().iter().filter(|t| t.shape.len() >= 2).map(|t| t.shape[0]).max().unwrap_or(1);
    state.quotas.charge_rows(&principal, base_pipeline(&name), rows);
    if let Some(refusal) = suspected_extraction(&state, &name, &principal, &prepared) {
        return Ok(over_quota(&state, &name, &principal, refusal));
    }
    let traceparent = headers.get("traceparent").and_then(|v| v.to_str().ok());
    let trace = state.dispatcher.trace(traceparent);
    let sticky_header = state
        .dispatcher
        .sticky_header(&name)
        .and_then(|key| headers.get(key.as_str()).and_then(|v| v.to_str().ok()).map(str::to_string));
    let timeout = state.settings.timeout;
    let invocation =
        Invocation { trigger: TriggerKind::Http, pipeline: &name, prepared, timeout, trace, sticky_header };
    let completed = state.dispatcher.invoke(invocation).await?;
    let content_type = if completed.header_length.is_some() { "application/octet-stream" } else { "application/json" };
    let mut response =
        ([(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], completed.body).into_response();
    if let Some(length) = completed.header_length {
        response.headers_mut().insert(crate::oip::HEADER_LENGTH, HeaderValue::from(length));
    }
    if let Ok(id) = HeaderValue::from_str(&completed.output.invocation_id) {
        response.headers_mut().insert("weir-invocation-id", id);
    }
    if let Some(tag) = &completed.output.variant {
        if let Ok(value) = HeaderValue::from_str(&format!("{}/{}", tag.experiment, tag.variant)) {
            response.headers_mut().insert("weir-variant", value);
        }
    }
    if let (Some(trace), Some(span_id)) = (trace, completed.span_id) {
        if let Ok(value) = HeaderValue::from_str(&trace.traceparent(span_id)) {
            response.headers_mut().insert("traceparent", value);
        }
    }
    Ok(response)
}

/// On a pipeline with protected outputs, whether this key's traffic looks
/// like model extraction (many near-identical queries): a refusal if so.
pub(crate) fn suspected_extraction(
    state: &AppState,
    pipeline: &str,
    principal: &Principal,
    prepared: &Prepared,
) -> Option<Refusal> {
    let protected = state.dispatcher.executor().pipeline(pipeline).is_ok_and(|p| !p.protect.is_empty());
    if !protected {
        return None;
    }
    let values: Vec<f64> = prepared.inputs().iter().filter_map(|t| t.float_values()).flatten().collect();
    let refuse = |retry_after| Refusal {
        limit: "extraction",
        retry_after,
        message: format!(
            "key `{}` sent many near-identical queries to `{pipeline}` (it looks like model extraction); retry \
             after {retry_after:?}",
            principal.key_id
        ),
    };
    match state.extraction.observe(&principal.key_id, pipeline, fingerprint(&values)) {
        Verdict::Fine => None,
        Verdict::Flagged => {
            tracing::warn!(key = %principal.key_id, pipeline, "extraction-like traffic: throttling the key");
            Some(refuse(weir_access::COOLDOWN))
        }
        Verdict::Throttled(left) => Some(refuse(left)),
    }
}

/// 429 with `Retry-After` (whole seconds, at least 1), counted by limit.
fn over_quota(state: &AppState, pipeline: &str, principal: &Principal, refusal: Refusal) -> Response {
    let seconds = count_refusal(state, pipeline, principal, &refusal);
    let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(ErrorBody { error: refusal.message })).into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// Count a quota refusal; the whole seconds (at least 1) to wait.
pub(crate) fn count_refusal(state: &AppState, pipeline: &str, principal: &Principal, refusal: &Refusal) -> u64 {
    state.dispatcher.count(pipeline, StatusCode::TOO_MANY_REQUESTS.as_u16());
    state.dispatcher.metrics().quota_refused(&principal.key_id, pipeline, refusal.limit);
    refusal.retry_after.as_secs_f64().ceil().max(1.0) as u64
}

enum BodyError {
    Failed(Failure),
    TimedOut(Duration),
}

/// The request body, at most `max` bytes, within `timeout`.
async fn read_body(body: Body, max: u64, timeout: Duration) -> Result<Bytes, BodyError> {
    match tokio::time::timeout(timeout, read_limited(body, max)).await {
        Err(_) => Err(BodyError::TimedOut(timeout)),
        Ok(result) => result.map_err(BodyError::Failed),
    }
}

/// The body of a control request (explain, feedback), held to the same
/// `max_body` and `body_timeout` as an inference request's.
async fn control_body(state: &AppState, body: Body) -> Result<Bytes, ApiError> {
    match read_body(body, state.settings.max_body_bytes, state.settings.body_timeout).await {
        Ok(bytes) => Ok(bytes),
        Err(BodyError::Failed(failure)) => Err(ApiError(failure)),
        Err(BodyError::TimedOut(after)) => Err(api_error(
            ErrorKind::TimedOut,
            format!("the request body did not arrive within {after:?} (body_timeout)"),
        )),
    }
}

/// Bytes of an over-long body read and dropped before answering 413, so a
/// client that sends its whole body before reading the answer gets it
/// rather than a broken connection (a lingering close, as nginx does).
const DRAIN_BYTES: u64 = 16 << 20;

async fn read_limited(body: Body, max: u64) -> Result<Bytes, Failure> {
    use http_body_util::BodyExt as _;
    let too_large = || {
        Failure::new(
            ErrorKind::TooLarge,
            format!("the request body is over the limit of {max} bytes (max_body); send less data per request"),
        )
    };
    let unreadable = |error: axum::Error| {
        Failure::new(ErrorKind::InvalidInput, format!("the request body could not be read: {error}"))
    };
    // A declared length far past the limit is refused without reading.
    if axum::body::HttpBody::size_hint(&body).lower() > max.saturating_add(DRAIN_BYTES) {
        return Err(too_large());
    }
    let mut body = body;
    let mut kept = bytes::BytesMut::new();
    let mut seen: u64 = 0;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(unreadable)?.into_data() else { continue };
        seen = seen.saturating_add(data.len() as u64);
        if seen > max.saturating_add(DRAIN_BYTES) {
            return Err(too_large());
        }
        if seen <= max {
            kept.extend_from_slice(&data);
        }
    }
    if seen > max {
        return Err(too_large());
    }
    Ok(kept.freeze())
}

/// Charge what decoding a body of `len` bytes may hold against the
/// server-wide budget; when it is spent, the request is turned away (429).
pub(crate) fn decoding_budget(state: &AppState, len: usize) -> Result<SemaphorePermit<'_>, Failure> {
    let bound = state.dispatcher.limits().decoded_bound(len);
    let units = u32::try_from(bound.div_ceil(BUDGET_UNIT)).unwrap_or(u32::MAX);
    state.decoding.try_acquire_many(units).map_err(|_| {
        Failure::new(
            ErrorKind::Overloaded,
            format!(
                "requests being decoded already hold the server's budget of {} bytes (max_decoded); retry later",
                state.settings.max_decoded_bytes
            ),
        )
    })
}

/// `Prefer: respond-async` (RFC 7240) asks for a job instead of an answer.
fn wants_async(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == "respond-async")
}

/// Check the request, keep it durably, answer 202 with where to look.
fn submit_job(
    state: &AppState,
    name: &str,
    body: &[u8],
    received: Instant,
    owner: &Principal,
) -> Result<Response, Failure> {
    let jobs = state.jobs.as_ref().map_err(|why| Failure::new(ErrorKind::Unavailable, why.clone()))?;
    let prepared = state.dispatcher.prepare(body, received)?;
    let job = jobs.submit(name, body, &owner.key_id, prepared.subject())?;
    state.dispatcher.count(name, 202);
    let location = format!("/v2/jobs/{}", job.id);
    let accepted = JobAccepted { id: job.id, status: job.status, location: location.clone() };
    let mut response = (StatusCode::ACCEPTED, Json(accepted)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(axum::http::header::LOCATION, value);
    }
    Ok(response)
}

/// A job's status and, once finished, its OIP response or error: only for
/// the key that submitted it (or an admin); to anyone else it does not exist.
async fn get_job(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<crate::jobs::Job>, ApiError> {
    let jobs = state.jobs.as_ref().map_err(|why| api_error(ErrorKind::NotFound, why.clone()))?;
    match jobs.get(&id)? {
        Some(job) if principal.is_admin() || job.owner == principal.key_id => Ok(Json(job)),
        _ => {
            Err(api_error(ErrorKind::NotFound, format!("no job `{id}` (never submitted here, or its result expired)")))
        }
    }
}
