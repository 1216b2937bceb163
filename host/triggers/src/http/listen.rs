//! The accept loop: HTTP/1.1 connections served by hyper with the limits a
//! public listener needs. Slow clients cannot hold connections forever
//! (header-read timeout, which also ends idle keep-alive connections), a
//! connection carries a bounded number of requests, and connections past
//! the cap are answered 503 and closed at once instead of queueing unseen.
//! With TLS, each connection is a TLS session first (same limits).

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue, Request};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::HttpSettings;

/// How long open connections get to finish once shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Connection limits, from `[triggers.http]`.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionLimits {
    pub max_connections: usize,
    pub max_requests: usize,
    pub header_timeout: Duration,
}

impl From<&HttpSettings> for ConnectionLimits {
    fn from(settings: &HttpSettings) -> Self {
        ConnectionLimits {
            max_connections: settings.max_connections,
            max_requests: settings.max_requests_per_connection,
            header_timeout: settings.header_timeout,
        }
    }
}

/// Serve `app` on `listener` until `shutdown` completes, then let open
/// connections finish (up to a grace period).
pub(crate) async fn serve_connections(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    // Out of file descriptors, say: wait a moment, keep serving.
                    tracing::warn!(%error, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            // Over TLS a plain answer would be noise: the connection is closed.
            if tls.is_none() {
                tokio::spawn(refuse(stream, limits.max_connections));
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (app, limits, tls, watcher) = (app.clone(), limits.clone(), tls.clone(), graceful.watcher());
        tokio::spawn(async move {
            let ended = match tls {
                None => serve_one(stream, app, &limits, watcher).await,
                // The handshake gets the header timeout too: a client that
                // stalls in it holds its connection no longer.
                Some(tls) => match tokio::time::timeout(limits.header_timeout, tls.accept(stream)).await {
                    Ok(Ok(stream)) => serve_one(stream, app, &limits, watcher).await,
                    Ok(Err(error)) => Err(format!("TLS handshake failed: {error}")),
                    Err(_) => Err("TLS handshake timed out".into()),
                },
            };
            if let Err(error) = ended {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open {SHUTDOWN_GRACE:?} after shutdown began; closing them");
    }
    Ok(())
}

/// Serve HTTP/1.1 requests on one connection until it closes.
async fn serve_one<IO>(io: IO, app: Router, limits: &ConnectionLimits, watcher: Watcher) -> Result<(), String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let served = Arc::new(AtomicUsize::new(0));
    let max_requests = limits.max_requests;
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let count = served.fetch_add(1, Ordering::Relaxed) + 1;
        let app = app.clone();
        async move {
            let mut response = match app.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            if count >= max_requests {
                response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, Infallible>(response)
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service);
    watcher.watch(connection).await.map_err(|e| e.to_string())
}

/// Answer a connection over the cap with 503 and close it.
async fn refuse(mut stream: TcpStream, cap: usize) {
    let body =
        format!("{{\"error\":\"the server already has {cap} open connections (max_connections); retry later\"}}");
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         retry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let write = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}
