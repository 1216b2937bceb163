//! `[triggers.http]`: where and how the HTTP trigger listens.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use weir_core::units::parse_bytes;
use weir_manifest::{Manifest, ManifestError};

use super::tls::TlsFiles;
use crate::oip::RequestLimits;
use crate::sections::{at_least_one, duration};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<Spanned<String>>,
    max_body: Option<Spanned<String>>,
    max_response: Option<Spanned<String>>,
    max_decoded: Option<Spanned<String>>,
    max_concurrency: Option<Spanned<usize>>,
    max_connections: Option<Spanned<usize>>,
    max_requests_per_connection: Option<Spanned<usize>>,
    timeout: Option<Spanned<String>>,
    header_timeout: Option<Spanned<String>>,
    body_timeout: Option<Spanned<String>>,
    tls_cert: Option<Spanned<String>>,
    tls_key: Option<Spanned<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpSettings {
    pub listen: String,
    pub max_body_bytes: u64,
    /// The largest response body (413 beyond it).
    pub max_response_bytes: u64,
    /// Memory all requests being decoded and run may hold at once (429
    /// beyond it); each is charged a bound of what its body can decode to.
    pub max_decoded_bytes: u64,
    pub max_concurrency: usize,
    /// Open connections; one more is answered 503 and closed.
    pub max_connections: usize,
    /// Requests one keep-alive connection may carry before it is closed.
    pub max_requests_per_connection: usize,
    /// The time limit of one synchronous invocation.
    pub timeout: Duration,
    /// How long a client may take to send a request's headers, and how long
    /// an idle keep-alive connection stays open.
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body (408 beyond it).
    pub body_timeout: Duration,
    /// Serve HTTPS with this certificate and key (PEM files).
    pub tls: Option<TlsFiles>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 8 << 20,
            max_response_bytes: 64 << 20,
            max_decoded_bytes: 1 << 30,
            max_concurrency: 64,
            max_connections: 1024,
            max_requests_per_connection: 1000,
            timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            tls: None,
        }
    }
}

impl HttpSettings {
    /// The manifest's `[triggers.http]`, defaults where it is silent.
    pub fn from_manifest(manifest: &Manifest) -> Result<HttpSettings, ManifestError> {
        let mut http = HttpSettings::default();
        let Some(raw) = manifest.trigger_section::<RawHttp>("http")? else { return Ok(http) };
        let place = manifest.place();
        if let Some(listen) = &raw.listen {
            listen.get_ref().parse::<std::net::SocketAddr>().map_err(|e| {
                place.at(listen, format!("triggers.http.listen: `{}` is not HOST:PORT ({e})", listen.get_ref()))
            })?;
            http.listen = listen.get_ref().clone();
        }
        if let Some(size) = &raw.max_body {
            http.max_body_bytes =
                parse_bytes(size.get_ref()).map_err(|e| place.at(size, format!("triggers.http.max_body: {e}")))?;
        }
        if let Some(size) = &raw.max_response {
            http.max_response_bytes =
                parse_bytes(size.get_ref()).map_err(|e| place.at(size, format!("triggers.http.max_response: {e}")))?;
        }
        // The decoding budget holds at least one request of max_body.
        let least = http.limits().decoded_bound(usize::try_from(http.max_body_bytes).unwrap_or(usize::MAX));
        http.max_decoded_bytes = http.max_decoded_bytes.max(least);
        if let Some(size) = &raw.max_decoded {
            http.max_decoded_bytes =
                parse_bytes(size.get_ref()).map_err(|e| place.at(size, format!("triggers.http.max_decoded: {e}")))?;
            if http.max_decoded_bytes < least {
                return Err(place.at(
                    size,
                    format!(
                        "triggers.http.max_decoded must hold at least one request of max_body: {least} bytes or more"
                    ),
                ));
            }
        }
        if let Some(n) = &raw.max_concurrency {
            http.max_concurrency = at_least_one(&place, n, "triggers.http.max_concurrency")?;
        }
        if let Some(n) = &raw.max_connections {
            http.max_connections = at_least_one(&place, n, "triggers.http.max_connections")?;
        }
        if let Some(n) = &raw.max_requests_per_connection {
            http.max_requests_per_connection = at_least_one(&place, n, "triggers.http.max_requests_per_connection")?;
        }
        if let Some(timeout) = &raw.timeout {
            http.timeout = duration(&place, timeout, "triggers.http.timeout")?;
        }
        if let Some(timeout) = &raw.header_timeout {
            http.header_timeout = duration(&place, timeout, "triggers.http.header_timeout")?;
        }
        if let Some(timeout) = &raw.body_timeout {
            http.body_timeout = duration(&place, timeout, "triggers.http.body_timeout")?;
        }
        match (&raw.tls_cert, &raw.tls_key) {
            (Some(cert), Some(key)) => {
                http.tls = Some(TlsFiles { cert: place.resolve(cert.get_ref()), key: place.resolve(key.get_ref()) });
            }
            (None, None) => {}
            (Some(one), None) | (None, Some(one)) => {
                return Err(place.at(one, "triggers.http: tls_cert and tls_key go together (both PEM files)"));
            }
        }
        Ok(http)
    }

    /// What one request may hold (the same for jobs and NATS messages).
    pub fn limits(&self) -> RequestLimits {
        RequestLimits {
            max_body_bytes: self.max_body_bytes,
            max_response_bytes: self.max_response_bytes,
            ..RequestLimits::default()
        }
    }
}
