//! The web console over HTTP: the page (public: it holds no data) and the
//! API it reads, each endpoint under the same keys and scopes as the rest
//! (`status` for graphs, live traffic and receipt history; `records:read`
//! for invocations).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::Stream;
use weir_access::{Principal, Requirement};
use weir_console::{Board, GraphLayout, LiveSnapshot, ReceiptHistory};
use weir_core::ErrorKind;
use weir_observe::provenance::{Outcome, RecordQuery, RecordSummary};

use super::{api_error, param, records::provenance, ApiError, AppState};

/// The page may load only its own scripts and styles and talk only to this server.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                                       connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
/// Live windows: 1 s to a minute.
const MAX_WINDOW_SECS: u64 = 60;
/// An event stream ends after this long; the page reconnects (so no
/// connection is held for ever, and shutdown never waits on one).
const STREAM_LIFETIME: Duration = Duration::from_secs(300);
const MAX_SEARCH: usize = 1000;
/// Event streams open at once, over all callers.
pub(super) const MAX_EVENT_STREAMS: usize = 32;

/// The live board, unless the server runs without the console.
fn board(state: &AppState) -> Result<&Board, ApiError> {
    state
        .board
        .as_ref()
        .ok_or_else(|| api_error(ErrorKind::NotFound, "the console is off on this server (weir serve --no-console)"))
}

/// `GET /ui` and `GET /ui/{file}`.
pub(super) async fn page(State(state): State<Arc<AppState>>, file: Option<Path<String>>) -> Response {
    if let Err(off) = board(&state) {
        return off.into_response();
    }
    serve_asset(file.as_ref().map_or("", |Path(name)| name.as_str()))
}

/// One of the page's files, with its headers.
fn serve_asset(name: &str) -> Response {
    let Some(asset) = weir_console::assets::asset(name) else {
        let error = format!("the console has no file `{name}`; open /ui");
        return api_error(ErrorKind::NotFound, error).into_response();
    };
    let mut response = asset.body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /ui/` answers like `GET /ui`.
pub(super) async fn index(state: State<Arc<AppState>>) -> Response {
    page(state, None).await
}

/// Every pipeline's graph, laid out once (the manifest does not change while serving).
pub(super) fn layouts(manifest: &weir_manifest::Manifest) -> Vec<GraphLayout> {
    manifest.pipelines.values().map(weir_console::layout).collect()
}

/// `GET /v2/console/pipelines`: every pipeline's graph, laid out.
pub(super) async fn pipelines(State(state): State<Arc<AppState>>) -> Result<Json<Vec<GraphLayout>>, ApiError> {
    board(&state)?;
    Ok(Json(state.layouts.clone()))
}

/// Live figures for `principal`: a step's last error may echo request
/// data, so only a key that may read records sees its text.
fn live_for(board: &Board, principal: &Principal, window: u64) -> LiveSnapshot {
    let mut snapshot = board.live(window);
    if !principal.may(&Requirement::ReadRecords) {
        for step in snapshot.pipelines.iter_mut().flat_map(|p| p.steps.iter_mut()) {
            if let Some(error) = &mut step.last_error {
                error.message = "(the error's text needs the records:read scope)".to_string();
            }
        }
    }
    snapshot
}

/// `GET /v2/console/live?window=S`: live figures once.
pub(super) async fn live(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    uri: Uri,
) -> Result<Json<LiveSnapshot>, ApiError> {
    let window = window(&uri)?;
    Ok(Json(live_for(board(&state)?, &principal, window)))
}

/// `GET /v2/console/events?window=S&every=MS`: live figures as server-sent
/// events, one `live` event at once and then every `every` milliseconds.
pub(super) async fn events(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    uri: Uri,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let window = window(&uri)?;
    let board = board(&state)?.clone();
    let every = match param(&uri, "every") {
        None => 1000,
        Some(text) => parse_number(&text, "every", 100, 60_000)?,
    };
    // Each open stream is a connection held and a snapshot per tick: bounded.
    let permit = state.event_streams.clone().try_acquire_owned().map_err(|_| {
        api_error(
            ErrorKind::Overloaded,
            format!("{MAX_EVENT_STREAMS} event streams are open already; close one or read /v2/console/live"),
        )
    })?;
    let until = Instant::now() + STREAM_LIFETIME;
    let stream = futures_util::stream::unfold(
        (board, principal, permit, true),
        move |(board, principal, permit, first)| async move {
            if !first {
                tokio::time::sleep(Duration::from_millis(every)).await;
            }
            if Instant::now() >= until {
                return None;
            }
            let snapshot = live_for(&board, &principal, window);
            let event = Event::default().event("live").json_data(&snapshot).unwrap_or_else(|e| {
                Event::default().event("error").data(format!("could not encode the live figures: {e}"))
            });
            Some((Ok(event), (board, principal, permit, false)))
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// `GET /v2/console/receipts`: energy, cost and CO2 per pipeline and step over the last hour.
pub(super) async fn receipts(State(state): State<Arc<AppState>>) -> Result<Json<ReceiptHistory>, ApiError> {
    Ok(Json(board(&state)?.receipts()))
}

/// `GET /v2/console/invocations?pipeline=&outcome=ok|failed&since=&until=&limit=`:
/// recorded invocations, newest first (times in Unix milliseconds).
pub(super) async fn invocations(
    State(state): State<Arc<AppState>>,
    uri: Uri,
) -> Result<Json<Vec<RecordSummary>>, ApiError> {
    let store = provenance(&state)?.clone();
    let outcome = match param(&uri, "outcome").as_deref() {
        None | Some("") | Some("any") => None,
        Some("ok") => Some(Outcome::Ok),
        Some("failed") => Some(Outcome::Failed),
        Some(other) => {
            return Err(api_error(
                ErrorKind::InvalidInput,
                format!("outcome must be `ok`, `failed` or `any`, got `{other}`"),
            ))
        }
    };
    let time = |name| param(&uri, name).filter(|t| !t.is_empty()).map(|t| parse_number(&t, name, 0, u64::MAX));
    let query = RecordQuery {
        pipeline: param(&uri, "pipeline").filter(|p| !p.is_empty()),
        outcome,
        since_ms: time("since").transpose()?.unwrap_or(0),
        until_ms: time("until").transpose()?,
        limit: match param(&uri, "limit") {
            None => 100,
            Some(text) => parse_number(&text, "limit", 1, MAX_SEARCH as u64)? as usize,
        },
    };
    let found = tokio::task::spawn_blocking(move || store.search(&query))
        .await
        .map_err(|e| api_error(ErrorKind::Internal, format!("the search stopped: {e}")))??;
    Ok(Json(found))
}

fn window(uri: &Uri) -> Result<u64, ApiError> {
    match param(uri, "window") {
        None => Ok(10),
        Some(text) => parse_number(&text, "window", 1, MAX_WINDOW_SECS),
    }
}

fn parse_number(text: &str, name: &str, min: u64, max: u64) -> Result<u64, ApiError> {
    match text.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(api_error(
            ErrorKind::InvalidInput,
            format!("{name} must be a whole number from {min} to {max}, got `{text}`"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn query_parameters_are_decoded_and_bounded() {
        let uri: Uri = "/x?pipeline=ride%20eta&limit=5&window=0".parse().unwrap();
        assert_eq!(param(&uri, "pipeline").as_deref(), Some("ride eta"));
        assert_eq!(param(&uri, "missing"), None);
        assert!(window(&uri).is_err(), "a zero window is refused");
        assert!(parse_number("99999999999999999999999", "limit", 1, 10).is_err());
        assert_eq!(parse_number("5", "limit", 1, 10).ok(), Some(5));
    }

    #[test]
    fn the_page_and_its_files_are_served_with_a_strict_policy() {
        let page = serve_asset("");
        assert_eq!(page.status(), StatusCode::OK);
        assert!(page.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("script-src 'self'"));
        assert_eq!(page.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        for name in weir_console::assets::names() {
            assert_eq!(serve_asset(name).status(), StatusCode::OK, "{name}");
        }
        assert_eq!(serve_asset("../Cargo.toml").status(), StatusCode::NOT_FOUND);
        assert_eq!(serve_asset("console.js/").status(), StatusCode::NOT_FOUND);
    }
}
