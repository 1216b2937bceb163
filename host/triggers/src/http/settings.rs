//! `[triggers.http]`: where and how the HTTP trigger listens.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use weir_core::units::parse_bytes;
use weir_manifest::{Manifest, ManifestError};

use crate::sections::{at_least_one, duration};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<Spanned<String>>,
    max_body: Option<Spanned<String>>,
    max_concurrency: Option<Spanned<usize>>,
    timeout: Option<Spanned<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpSettings {
    pub listen: String,
    pub max_body_bytes: u64,
    pub max_concurrency: usize,
    /// The time limit of one synchronous invocation.
    pub timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 8 << 20,
            max_concurrency: 64,
            timeout: Duration::from_secs(30),
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
        if let Some(n) = &raw.max_concurrency {
            http.max_concurrency = at_least_one(&place, n, "triggers.http.max_concurrency")?;
        }
        if let Some(timeout) = &raw.timeout {
            http.timeout = duration(&place, timeout, "triggers.http.timeout")?;
        }
        Ok(http)
    }
}
