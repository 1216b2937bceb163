//! Outgoing HTTP (`wasi:http/outgoing-handler`) for steps granted hosts.
//!
//! Default deny: a request goes out only when its `host:port` is in the
//! step's grants. The host name is resolved here, every address it resolves
//! to is checked (loopback only when the grant allows it; link-local,
//! unspecified, multicast and broadcast never), and the connection goes to a
//! checked address — so a name that resolves to something else on the
//! second lookup (DNS rebinding) cannot slip through. Redirects are not
//! followed by the host: a guest that follows one sends a new request,
//! checked like the first. Each invocation may send at most
//! [`MAX_REQUESTS`] requests.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use http::uri::Scheme;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};
use weir_core::HttpGrant;

/// Requests one invocation may send; a step looping on a feature store is
/// stopped here rather than by the store's operator.
pub const MAX_REQUESTS: u32 = 256;

/// Host-side buffering per request, each way: a guest's write to a request
/// body is at most this, and a response is read from the socket in at most
/// this much at a time (so 256 requests hold at most ~32 MiB of buffers).
const BODY_BUFFER: usize = 64 << 10;

/// Connecting (DNS included) may take this long unless the guest asks for less.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a step's outgoing requests did, in order (for its logs and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressEvent {
    Sent { authority: String },
    Refused { authority: String, reason: String },
}

/// The `wasi:http` hooks of one invocation: its grants and what it sent.
pub(crate) struct EgressHooks {
    grants: Arc<[HttpGrant]>,
    sent: u32,
    events: Arc<Mutex<Vec<EgressEvent>>>,
}

impl EgressHooks {
    pub(crate) fn new(grants: &[HttpGrant]) -> EgressHooks {
        EgressHooks { grants: grants.into(), sent: 0, events: Arc::default() }
    }

    pub(crate) fn events(&self) -> Vec<EgressEvent> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// The grant covering `host:port`, or why there is none.
    fn grant_for(&mut self, scheme: &Scheme, host: &str, port: u16) -> Result<HttpGrant, String> {
        if self.sent >= MAX_REQUESTS {
            return Err(format!("the step already sent {MAX_REQUESTS} requests in this invocation"));
        }
        if *scheme != Scheme::HTTP && *scheme != Scheme::HTTPS {
            return Err(format!("scheme `{scheme}` is not http or https"));
        }
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        match self.grants.iter().find(|g| g.host == host && g.port == port) {
            Some(grant) => {
                self.sent += 1;
                Ok(grant.clone())
            }
            None => Err(format!("{host}:{port} is not among the step's http grants")),
        }
    }
}

fn record(events: &Mutex<Vec<EgressEvent>>, event: EgressEvent) {
    if let Ok(mut events) = events.lock() {
        events.push(event);
    }
}

type SendResult = Result<(http::Response<WasiBody>, Box<dyn Future<Output = Result<(), Error>> + Send>), Error>;

impl WasiHttpHooks for EgressHooks {
    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        1
    }

    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        BODY_BUFFER
    }

    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let uri = request.uri().clone();
        let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTPS);
        let tls = scheme == Scheme::HTTPS;
        let host = uri.host().unwrap_or_default().to_string();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let authority = format!("{host}:{port}");
        let events = self.events.clone();
        let grant = match self.grant_for(&scheme, &host, port) {
            Ok(grant) => grant,
            Err(reason) => {
                tracing::warn!(%authority, %reason, "outgoing request refused");
                record(&events, EgressEvent::Refused { authority, reason });
                return Box::new(async { Err(Error::HttpRequestDenied) });
            }
        };
        Box::new(async move {
            let connect_timeout = options.and_then(|o| o.connect_timeout).unwrap_or(CONNECT_TIMEOUT);
            let stream = match tokio::time::timeout(connect_timeout, connect_checked(&grant)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err((error, reason))) => {
                    tracing::warn!(%authority, %reason, "outgoing request refused");
                    record(&events, EgressEvent::Refused { authority, reason });
                    return Err(error);
                }
                Err(_) => return Err(Error::ConnectionTimeout),
            };
            record(&events, EgressEvent::Sent { authority });
            // Only the path goes on the wire (no proxy form).
            let path = uri.path_and_query().map_or("/", |p| p.as_str());
            *request.uri_mut() = http::Uri::try_from(path).map_err(|_| Error::HttpRequestUriInvalid)?;
            let response = if tls {
                let stream = tls_connect(&grant.host, stream).await?;
                send(stream, request, options).await?
            } else {
                send(stream, request, options).await?
            };
            Ok(response)
        })
    }
}

/// Resolve the granted host, refuse if any address it names is off limits,
/// and connect to the first that answers.
async fn connect_checked(grant: &HttpGrant) -> Result<TcpStream, (Error, String)> {
    let addresses: Vec<SocketAddr> = match grant.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, grant.port)],
        Err(_) => tokio::net::lookup_host((grant.host.as_str(), grant.port))
            .await
            .map_err(|e| {
                let error = Error::DnsError { rcode: Some(e.to_string()), info_code: None };
                (error, format!("{} does not resolve: {e}", grant.host))
            })?
            .collect(),
    };
    if addresses.is_empty() {
        return Err((Error::DestinationNotFound, format!("{} resolves to no address", grant.host)));
    }
    // Every address is checked, not just the one used: the resolver's order
    // is not under our control.
    for address in &addresses {
        if let Some(why) = forbidden(address.ip(), grant.loopback) {
            return Err((
                Error::DestinationIpProhibited,
                format!("{} resolves to {}, {why}", grant.host, address.ip()),
            ));
        }
    }
    let mut last = None;
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    let e = last.expect("at least one address was tried");
    Err((Error::ConnectionRefused, format!("connecting to {}:{} failed: {e}", grant.host, grant.port)))
}

/// Why a step may not reach `ip`, if it may not.
pub fn forbidden(ip: IpAddr, loopback_allowed: bool) -> Option<&'static str> {
    // An IPv4 address written as IPv6 (::ffff:a.b.c.d) is judged as IPv4.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    if ip.is_loopback() {
        return (!loopback_allowed).then_some("a loopback address (grant it with `loopback = true` if you mean it)");
    }
    if ip.is_unspecified() {
        return Some("an unspecified address");
    }
    if ip.is_multicast() {
        return Some("a multicast address");
    }
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local() || v4.is_broadcast(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    link_local.then_some("a link-local address (never granted: cloud metadata services live there)")
}

async fn tls_connect(host: &str, stream: TcpStream) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Error> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.into() };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    });
    let name = match host.parse::<IpAddr>() {
        Ok(ip) => rustls::pki_types::ServerName::from(ip),
        Err(_) => {
            rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|_| Error::HttpRequestUriInvalid)?
        }
    };
    tokio_rustls::TlsConnector::from(config.clone()).connect(name, stream).await.map_err(Error::Tls)
}

/// One HTTP/1.1 exchange on `stream`; the connection is driven by the
/// returned future (which wasmtime spawns) while the guest reads the body.
async fn send<S>(stream: S, request: http::Request<WasiBody>, options: Option<RequestOptions>) -> SendResult
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let first_byte = options.and_then(|o| o.first_byte_timeout).unwrap_or(Duration::from_secs(600));
    let (mut sender, connection) =
        hyper::client::conn::http1::Builder::new().max_buf_size(BODY_BUFFER).handshake(TokioIo::new(stream)).await?;
    // The connection is driven here until the response head arrives, then
    // by the returned future; dropping either (the step ended) closes it.
    let mut connection = Some(Box::pin(connection));
    let exchange = async {
        let send = sender.send_request(request);
        tokio::pin!(send);
        let driving = connection.as_mut().expect("not taken yet");
        tokio::select! {
            biased;
            response = &mut send => response,
            ended = driving => {
                // The server may answer and close at once: the response is
                // then already waiting.
                connection = None;
                ended?;
                send.await
            }
        }
    };
    let response = tokio::time::timeout(first_byte, exchange).await.map_err(|_| Error::ConnectionReadTimeout)??;
    let response = response.map(|body: Incoming| body.map_err(Error::from).boxed_unsync());
    let driver = async move {
        match connection {
            Some(connection) => connection.await.map_err(Error::from),
            None => Ok(()),
        }
    };
    Ok((response, Box::new(driver)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_steps_must_not_reach() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        for never in
            ["169.254.169.254", "fe80::1", "0.0.0.0", "::", "224.0.0.1", "255.255.255.255", "::ffff:169.254.1.1"]
        {
            assert!(forbidden(ip(never), true).is_some(), "{never}");
        }
        for loopback in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"] {
            assert!(forbidden(ip(loopback), false).is_some(), "{loopback}");
            assert!(forbidden(ip(loopback), true).is_none(), "{loopback}");
        }
        for fine in ["10.1.2.3", "192.168.1.1", "93.184.216.34", "2001:db8::1"] {
            assert!(forbidden(ip(fine), false).is_none(), "{fine}");
        }
    }

    #[test]
    fn only_granted_host_and_port_pass() {
        let mut hooks =
            EgressHooks::new(&[HttpGrant { host: "features.internal".into(), port: 8080, loopback: false }]);
        assert!(hooks.grant_for(&Scheme::HTTP, "Features.Internal", 8080).is_ok());
        assert!(hooks.grant_for(&Scheme::HTTP, "features.internal", 8081).is_err());
        assert!(hooks.grant_for(&Scheme::HTTPS, "other.internal", 8080).is_err());
        let ftp: Scheme = "ftp".parse().unwrap();
        assert!(hooks.grant_for(&ftp, "features.internal", 8080).is_err());
    }
}
