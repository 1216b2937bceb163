//! The gRPC trigger in a build without the `grpc` feature: `[triggers.grpc]`
//! is still read, and [`crate::Triggers::from_manifest`] refuses it.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::http::AppState;

#[path = "../grpc/settings.rs"]
mod settings;

pub use settings::{GrpcSettings, DEFAULT_LISTEN};

fn not_built() -> std::io::Error {
    std::io::Error::other("this weir was built without the gRPC trigger (cargo feature `grpc`)")
}

pub(crate) async fn bind(_settings: &GrpcSettings) -> std::io::Result<(tokio::net::TcpListener, SocketAddr)> {
    Err(not_built())
}

pub(crate) async fn serve(
    _state: Arc<AppState>,
    _listener: tokio::net::TcpListener,
    _shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    Err(not_built())
}
