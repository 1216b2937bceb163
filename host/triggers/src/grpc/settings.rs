//! `[triggers.grpc]`: where the gRPC listener is. Its limits (message
//! sizes, concurrency, time limit, decoding budget) and its keys are the
//! HTTP trigger's: one request costs the same either way.

use serde::Deserialize;
use toml::Spanned;
use weir_manifest::{Manifest, ManifestError};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrpc {
    listen: Option<Spanned<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcSettings {
    /// HOST:PORT of the gRPC listener.
    pub listen: String,
}

/// Triton's gRPC port, on loopback (8081, MLServer's, is ride-eta's HTTP port).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8001";

impl GrpcSettings {
    /// The manifest's `[triggers.grpc]`; `None` when it has none (gRPC off).
    pub fn from_manifest(manifest: &Manifest) -> Result<Option<GrpcSettings>, ManifestError> {
        let Some(raw) = manifest.trigger_section::<RawGrpc>("grpc")? else { return Ok(None) };
        let place = manifest.place();
        let listen = match &raw.listen {
            Some(listen) => {
                listen.get_ref().parse::<std::net::SocketAddr>().map_err(|e| {
                    place.at(listen, format!("triggers.grpc.listen: `{}` is not HOST:PORT ({e})", listen.get_ref()))
                })?;
                listen.get_ref().clone()
            }
            None => DEFAULT_LISTEN.to_string(),
        };
        Ok(Some(GrpcSettings { listen }))
    }
}
