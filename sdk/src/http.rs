//! Outgoing HTTP from a step (`wasi:http`), e.g. to a feature store.
//!
//! The host sends a request only to a host and port the step was granted in
//! the manifest (`http = [{ host = "features.internal", port = 8080 }]`);
//! everything else fails with [`HttpError::Denied`]. Redirects are not
//! followed: a 3xx comes back as it is, and following it is a new request,
//! checked like the first.
//!
//! ```ignore
//! let response = weir_sdk::http::get("http://features.internal:8080/user/42")?;
//! let features: Vec<u8> = response.body;
//! ```

use wasip2::http::outgoing_handler;
use wasip2::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
use wasip2::io::streams::StreamError;

use crate::StepError;

/// Bytes of response body [`get`] and [`post`] accept; [`send`] takes its own bound.
pub const DEFAULT_MAX_BODY: usize = 16 << 20;

/// A response: status, headers and the whole body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive), as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    }
}

/// Why a request failed.
#[derive(Debug, Clone)]
pub enum HttpError {
    /// The URL is not `http(s)://host[:port]/path`.
    BadUrl(String),
    /// The host refused: not granted, or its address is off limits.
    Denied(String),
    /// The request was sent (or tried) and failed on the way.
    Failed(String),
    /// The response body is larger than the bound given.
    TooLarge { limit: usize },
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::BadUrl(why) => write!(f, "bad URL: {why}"),
            HttpError::Denied(why) => write!(f, "request denied by the host: {why}"),
            HttpError::Failed(why) => write!(f, "request failed: {why}"),
            HttpError::TooLarge { limit } => write!(f, "response body over {limit} bytes"),
        }
    }
}

impl From<HttpError> for StepError {
    fn from(error: HttpError) -> Self {
        StepError::Failed(error.to_string())
    }
}

/// `GET url`.
pub fn get(url: &str) -> Result<Response, HttpError> {
    send("GET", url, &[], None, DEFAULT_MAX_BODY)
}

/// `POST url` with `body` of type `content_type`.
pub fn post(url: &str, content_type: &str, body: &[u8]) -> Result<Response, HttpError> {
    send("POST", url, &[("content-type", content_type)], Some(body), DEFAULT_MAX_BODY)
}

/// Send one request and read the whole response, refusing a body over `max_body` bytes.
pub fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    max_body: usize,
) -> Result<Response, HttpError> {
    let target = Target::parse(url)?;
    let fields = Fields::new();
    for (name, value) in headers {
        fields.append(name, value.as_bytes()).map_err(|e| HttpError::BadUrl(format!("header `{name}`: {e:?}")))?;
    }
    let request = OutgoingRequest::new(fields);
    let method = match method.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "HEAD" => Method::Head,
        "PATCH" => Method::Patch,
        other => Method::Other(other.to_string()),
    };
    let unset = |what: &str| HttpError::BadUrl(format!("the host rejected the {what}"));
    request.set_method(&method).map_err(|()| unset("method"))?;
    request.set_scheme(Some(&target.scheme)).map_err(|()| unset("scheme"))?;
    request.set_authority(Some(&target.authority)).map_err(|()| unset("authority"))?;
    request.set_path_with_query(Some(&target.path)).map_err(|()| unset("path"))?;
    let outgoing = request.body().map_err(|()| HttpError::Failed("the request body was taken".into()))?;
    let pending = outgoing_handler::handle(request, None).map_err(error_code)?;
    if let Some(bytes) = body {
        let stream = outgoing.write().map_err(|()| HttpError::Failed("the request body stream was taken".into()))?;
        // The stream takes at most 4096 bytes per blocking write.
        for chunk in bytes.chunks(4096) {
            stream.blocking_write_and_flush(chunk).map_err(|e| HttpError::Failed(stream_error(e)))?;
        }
    }
    OutgoingBody::finish(outgoing, None).map_err(error_code)?;

    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(error_code(code)),
        Some(Err(())) | None => return Err(HttpError::Failed("the response was already taken".into())),
    };
    let status = response.status();
    let headers = response.headers().entries();
    let incoming = response.consume().map_err(|()| HttpError::Failed("the response body was taken".into()))?;
    let stream = incoming.stream().map_err(|()| HttpError::Failed("the response stream was taken".into()))?;
    let mut body = Vec::new();
    loop {
        match stream.blocking_read(64 << 10) {
            Ok(chunk) => {
                if body.len() + chunk.len() > max_body {
                    return Err(HttpError::TooLarge { limit: max_body });
                }
                body.extend_from_slice(&chunk);
            }
            Err(StreamError::Closed) => break,
            Err(e) => return Err(HttpError::Failed(stream_error(e))),
        }
    }
    Ok(Response { status, headers, body })
}

fn error_code(code: ErrorCode) -> HttpError {
    match code {
        ErrorCode::HttpRequestDenied => HttpError::Denied("the host and port are not granted to this step".into()),
        ErrorCode::DestinationIpProhibited => {
            HttpError::Denied("the host resolves to an address steps may not reach".into())
        }
        other => HttpError::Failed(format!("{other:?}")),
    }
}

fn stream_error(error: StreamError) -> String {
    match error {
        StreamError::Closed => "the stream closed".into(),
        StreamError::LastOperationFailed(e) => e.to_debug_string(),
    }
}

/// The parts of an `http(s)://authority/path?query` URL the request needs.
struct Target {
    scheme: Scheme,
    authority: String,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, HttpError> {
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else {
            return Err(HttpError::BadUrl(format!("`{url}` does not start with http:// or https://")));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(at) if rest[at..].starts_with('?') => (&rest[..at], format!("/{}", &rest[at..])),
            Some(at) => (&rest[..at], rest[at..].to_string()),
            None => (rest, "/".to_string()),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(HttpError::BadUrl(format!("`{url}` has no host (or has credentials in it)")));
        }
        Ok(Target { scheme, authority: authority.to_string(), path })
    }
}
