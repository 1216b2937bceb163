//! Every endpoint and what its caller needs, in one table: the router is
//! built from it, so no endpoint can be added without a requirement, and
//! tests and docs walk the same table.

use std::sync::Arc;

use axum::extract::{RawPathParams, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::{Json, Router};
use weir_access::{AuditEvent, AuditLog, Requirement};

use super::api::{ErrorBody, Live, Ready};
use super::AppState;

/// What an endpoint needs; `Invoke` names the pipeline by the path's `{name}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Public,
    AnyKey,
    /// `invoke:{name}` (for `name@version`: `invoke:{name}`).
    Invoke,
    ReadRecords,
    EraseRecords,
    WriteFeedback,
    Status,
    Admin,
}

impl Need {
    /// The scope text for the documentation's table.
    pub fn scope(self) -> &'static str {
        match self {
            Need::Public => "none (public)",
            Need::AnyKey => "any valid key",
            Need::Invoke => "`invoke:{name}` or `invoke:*`",
            Need::ReadRecords => "`records:read`",
            Need::EraseRecords => "`records:erase`",
            Need::WriteFeedback => "`feedback:write`",
            Need::Status => "`status`",
            Need::Admin => "`admin`",
        }
    }

    fn requirement(self, params: &RawPathParams) -> Requirement {
        match self {
            Need::Public => Requirement::Public,
            Need::AnyKey => Requirement::AnyKey,
            Need::Invoke => {
                // A key that may invoke a pipeline may invoke each of its versions (`name@version`).
                let name = params.iter().find(|(key, _)| *key == "name").map_or("", |(_, value)| value);
                Requirement::invoke(name)
            }
            Need::ReadRecords => Requirement::ReadRecords,
            Need::EraseRecords => Requirement::EraseRecords,
            Need::WriteFeedback => Requirement::WriteFeedback,
            Need::Status => Requirement::Status,
            Need::Admin => Requirement::Admin,
        }
    }
}

/// One endpoint: method, path (axum syntax), need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub method: &'static str,
    pub path: &'static str,
    pub need: Need,
}

/// Every endpoint, with its handler.
fn endpoints() -> Vec<(Endpoint, MethodRouter<Arc<AppState>>)> {
    let at = |method, path, need| Endpoint { method, path, need };
    vec![
        (at("GET", "/v2/health/live", Need::Public), get(|| async { Json(Live { live: true }) })),
        (at("GET", "/v2/health/ready", Need::Public), get(|| async { Json(Ready { ready: true }) })),
        (at("GET", "/v2", Need::AnyKey), get(super::metadata::server_metadata)),
        (at("GET", "/v2/models/{name}", Need::Invoke), get(super::metadata::model_metadata)),
        (at("GET", "/v2/models/{name}/ready", Need::Invoke), get(super::metadata::model_ready)),
        (at("POST", "/v2/models/{name}/infer", Need::Invoke), post(super::infer)),
        (at("GET", "/v2/models/{name}/versions/{version}", Need::Invoke), get(super::metadata::model_metadata)),
        (at("GET", "/v2/models/{name}/versions/{version}/ready", Need::Invoke), get(super::metadata::model_ready)),
        (at("POST", "/v2/models/{name}/versions/{version}/infer", Need::Invoke), post(super::infer)),
        (at("POST", "/v2/models/{name}/explain", Need::Invoke), post(super::explain::explain)),
        (at("POST", "/v2/models/{name}/versions/{version}/explain", Need::Invoke), post(super::explain::explain)),
        (at("GET", "/metrics", Need::Status), get(super::records::metrics_text)),
        (at("GET", "/v2/status", Need::Status), get(super::records::status)),
        (at("GET", "/v2/jobs/{id}", Need::AnyKey), get(super::get_job)),
        (at("GET", "/v2/invocations/{id}", Need::ReadRecords), get(super::records::get_invocation)),
        (at("DELETE", "/v2/invocations/{id}", Need::EraseRecords), delete(super::records::erase_invocation)),
        (at("GET", "/v2/invocations/{id}/rca", Need::ReadRecords), get(super::explain::rca)),
        (at("POST", "/v2/invocations/{id}/feedback", Need::WriteFeedback), post(super::feedback::give)),
        (at("POST", "/v2/feedback", Need::WriteFeedback), post(super::feedback::give_many)),
        (at("GET", "/v2/quality", Need::Status), get(super::feedback::quality)),
        (at("GET", "/v2/monitors", Need::Status), get(super::records::monitors)),
        (at("GET", "/v2/monitors/{pipeline}/{monitor}/results", Need::Status), get(super::records::monitor_results)),
        (at("DELETE", "/v2/subjects/{subject}", Need::EraseRecords), delete(super::records::erase_subject)),
        (at("GET", "/v2/audit", Need::Admin), get(super::records::audit)),
        (at("POST", "/v2/admin/reload", Need::Admin), post(super::experiments::reload)),
        (at("GET", "/v2/experiments", Need::Status), get(super::experiments::list)),
        (at("GET", "/v2/experiments/{name}", Need::Status), get(super::experiments::show)),
        (at("POST", "/v2/experiments/{name}/{action}", Need::Admin), post(super::experiments::act)),
        #[cfg(feature = "console")]
        (at("GET", "/ui", Need::Public), get(super::console::index)),
        #[cfg(feature = "console")]
        (at("GET", "/ui/", Need::Public), get(super::console::index)),
        #[cfg(feature = "console")]
        (at("GET", "/ui/{file}", Need::Public), get(super::console::page)),
        #[cfg(feature = "console")]
        (at("GET", "/v2/console/pipelines", Need::Status), get(super::console::pipelines)),
        #[cfg(feature = "console")]
        (at("GET", "/v2/console/live", Need::Status), get(super::console::live)),
        #[cfg(feature = "console")]
        (at("GET", "/v2/console/events", Need::Status), get(super::console::events)),
        #[cfg(feature = "console")]
        (at("GET", "/v2/console/receipts", Need::Status), get(super::console::receipts)),
        #[cfg(feature = "console")]
        (at("GET", "/v2/console/invocations", Need::ReadRecords), get(super::console::invocations)),
    ]
}

/// The table alone (for tests and the documentation).
pub fn endpoint_table() -> Vec<Endpoint> {
    endpoints().into_iter().map(|(endpoint, _)| endpoint).collect()
}

/// The routes of [`endpoints`], each behind its need.
pub(super) fn routes(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    let mut paths: Vec<(&'static str, MethodRouter<Arc<AppState>>)> = Vec::new();
    for (endpoint, handler) in endpoints() {
        let guarded = handler.route_layer(from_fn_with_state((state.clone(), endpoint.need), authorize));
        match paths.iter_mut().find(|(path, _)| *path == endpoint.path) {
            Some((_, methods)) => *methods = std::mem::take(methods).merge(guarded),
            None => paths.push((endpoint.path, guarded)),
        }
    }
    paths.into_iter().fold(Router::new(), |router, (path, methods)| router.route(path, methods))
}

fn refuse(status: StatusCode, error: String) -> Response {
    let mut response = (status, Json(ErrorBody { error })).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"weir\""));
    }
    response
}

/// Authenticate the caller and check the endpoint's need; the caller's
/// [`weir_access::Principal`] goes to the handler as a request extension.
async fn authorize(
    State((state, need)): State<(Arc<AppState>, Need)>,
    params: RawPathParams,
    mut request: Request,
    next: Next,
) -> Response {
    if need == Need::Public {
        return next.run(request).await;
    }
    // Only built when there is a log to write it to (this runs per request).
    let action = state.audit.as_deref().map(|log| audited_action(log, request.method(), request.uri().path()));
    let authorization = request.headers().get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or(""));
    let principal = match state.access.authenticate(authorization) {
        Ok(principal) => principal,
        Err(error) => {
            audit(&state, "unauthenticated", action, StatusCode::UNAUTHORIZED);
            return refuse(StatusCode::UNAUTHORIZED, error.to_string());
        }
    };
    let requirement = need.requirement(&params);
    if !principal.may(&requirement) {
        audit(&state, &principal.key_id, action, StatusCode::FORBIDDEN);
        // The same answer whether or not the pipeline exists.
        let error = format!(
            "key `{}` may not do this: it needs {} (see `weir keys list`)",
            principal.key_id,
            requirement.scope_text()
        );
        return refuse(StatusCode::FORBIDDEN, error);
    }
    let key_id = principal.key_id.clone();
    request.extensions_mut().insert(principal);
    let response = next.run(request).await;
    audit(&state, &key_id, action, response.status());
    response
}

/// `METHOD /path`, with a data subject's id replaced by its keyed hash.
fn audited_action(log: &AuditLog, method: &axum::http::Method, path: &str) -> String {
    match path.strip_prefix(SUBJECTS_PREFIX) {
        Some(subject) => {
            // The id as the handler sees it, so the key's holder can check it.
            let subject = percent_encoding::percent_decode_str(subject).decode_utf8_lossy();
            format!("{method} {SUBJECTS_PREFIX}{}", log.pseudonym(&subject))
        }
        None => format!("{method} {path}"),
    }
}

const SUBJECTS_PREFIX: &str = "/v2/subjects/";

/// One line in the audit log, when there is one; a log that cannot be
/// written is reported, and the request is answered all the same.
fn audit(state: &AppState, key_id: &str, action: Option<String>, status: StatusCode) {
    if let (Some(log), Some(action)) = (&state.audit, action) {
        if let Err(error) = log.record(&AuditEvent::now(key_id, action, status.as_u16(), None)) {
            tracing::error!(%error, "could not write the audit log");
        }
    }
}
