//! Pulls from a hostile registry: a tiny in-process HTTP server that answers
//! with raw bytes (huge manifests, lying sizes, too many layers, blobs longer
//! or shorter than declared, silence). Every case must end in a typed
//! `RegistryError` of kind `Registry`, promptly, with nothing kept.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weir_core::{Classify, ErrorKind};
use weir_registry::{
    ArtifactKind, ArtifactRef, BlobStore, Credentials, Digest, Registry, RegistryError, RegistryOptions,
};

const MIB: u64 = 1 << 20;

/// What the server does with one request.
enum Reply {
    /// A complete response with a `Content-Length`.
    Full { status: u16, body: Vec<u8> },
    /// `prefix`, then zeros up to `total` bytes, close-delimited (or with a
    /// lying `Content-Length` when `declared` is set), then hang up.
    Flood { declared: Option<u64>, prefix: Vec<u8>, total: u64 },
    /// `prefix` (with a `Content-Length` of `declared`), then silence.
    Stall { declared: Option<u64>, prefix: Vec<u8> },
    /// Read the request, never answer.
    Silence,
}

type Handler = dyn Fn(&str) -> Reply + Send + Sync;

struct Hostile {
    addr: SocketAddr,
    /// Body bytes the server managed to hand to the kernel.
    sent: Arc<AtomicU64>,
    /// Paths requested, in order.
    requests: Arc<Mutex<Vec<String>>>,
}

impl Hostile {
    async fn start(handler: impl Fn(&str) -> Reply + Send + Sync + 'static) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sent = Arc::new(AtomicU64::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let (counter, log) = (sent.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else { return };
                let (handler, counter, log) = (handler.clone(), counter.clone(), log.clone());
                tokio::spawn(async move {
                    let _ = serve(socket, &*handler, &counter, &log).await;
                });
            }
        });
        Hostile { addr, sent, requests }
    }

    fn reference(&self, path: &str) -> ArtifactRef {
        format!("oci://{}/{path}", self.addr).parse().unwrap()
    }

    fn requested(&self, fragment: &str) -> bool {
        self.requests.lock().unwrap().iter().any(|p| p.contains(fragment))
    }
}

async fn serve(
    mut socket: TcpStream,
    handler: &Handler,
    sent: &AtomicU64,
    log: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if socket.read(&mut byte).await? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    log.lock().unwrap().push(path.clone());
    let header = |status: u16, length: Option<u64>| {
        let length = length.map_or(String::new(), |n| format!("Content-Length: {n}\r\n"));
        format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n{length}Connection: close\r\n\r\n"
        )
    };
    match handler(&path) {
        Reply::Full { status, body } => {
            socket.write_all(header(status, Some(body.len() as u64)).as_bytes()).await?;
            socket.write_all(&body).await?;
            sent.fetch_add(body.len() as u64, Ordering::Relaxed);
        }
        Reply::Flood { declared, prefix, total } => {
            socket.write_all(header(200, declared).as_bytes()).await?;
            socket.write_all(&prefix).await?;
            let mut left = total - prefix.len() as u64;
            let zeros = vec![0u8; 64 << 10];
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                socket.write_all(&zeros[..n]).await?;
                sent.fetch_add(n as u64, Ordering::Relaxed);
                left -= n as u64;
            }
        }
        Reply::Stall { declared, prefix } => {
            socket.write_all(header(200, declared).as_bytes()).await?;
            socket.write_all(&prefix).await?;
            tokio::time::sleep(Duration::from_secs(120)).await;
        }
        Reply::Silence => tokio::time::sleep(Duration::from_secs(120)).await,
    }
    socket.shutdown().await
}

fn manifest(layers: &[(&[u8], u64)], config_size: u64) -> Vec<u8> {
    let layers: Vec<_> = layers
        .iter()
        .map(|(bytes, size)| {
            serde_json::json!({"mediaType": "application/wasm", "digest": Digest::of(bytes).to_string(), "size": size})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.wasm.config.v0+json", "digest": Digest::of(b"{}").to_string(), "size": config_size},
        "layers": layers,
    }))
    .unwrap()
}

const CONTENT: &[u8] = b"\0asm\x0d\0\x01\0 a component, as far as the registry is concerned";

fn weir(store: &std::path::Path, read_timeout: Duration) -> Registry {
    let options = RegistryOptions { credentials: Credentials::Anonymous, read_timeout, ..Default::default() };
    Registry::new(BlobStore::new(store), options)
}

/// `/v2/` answers 200, manifests and blobs as `manifest` and `blob` say.
async fn registry(
    manifest: impl Fn() -> Reply + Send + Sync + 'static,
    blob: impl Fn() -> Reply + Send + Sync + 'static,
) -> Hostile {
    Hostile::start(move |path| {
        if path.contains("/manifests/") {
            manifest()
        } else if path.contains("/blobs/") {
            blob()
        } else {
            Reply::Full { status: 200, body: b"{}".to_vec() }
        }
    })
    .await
}

async fn fetch(weir: &Registry, at: &ArtifactRef) -> Result<weir_registry::Fetched, RegistryError> {
    tokio::time::timeout(Duration::from_secs(30), weir.fetch(at, None, Some(ArtifactKind::Component), &()))
        .await
        .expect("a hostile registry must not hang a pull")
}

fn assert_registry_error(error: &RegistryError, needles: &[&str]) {
    assert_eq!(error.kind(), ErrorKind::Registry, "{error}");
    for needle in needles {
        assert!(error.to_string().contains(needle), "`{needle}` missing from: {error}");
    }
}

#[tokio::test]
async fn an_honest_pull_through_the_test_server_works_and_a_tampered_cache_is_pulled_again() {
    let server = registry(
        || Reply::Full { status: 200, body: manifest(&[(CONTENT, CONTENT.len() as u64)], 2) },
        || Reply::Full { status: 200, body: CONTENT.to_vec() },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let weir = weir(dir.path(), Duration::from_secs(5));
    let at = server.reference("honest/x:1");
    let fetched = fetch(&weir, &at).await.unwrap();
    assert_eq!((std::fs::read(&fetched.path).unwrap(), fetched.downloaded), (CONTENT.to_vec(), CONTENT.len() as u64));
    assert_eq!(fetch(&weir, &at).await.unwrap().downloaded, 0, "cached");

    // Someone rewrites the cached layer: it is noticed and pulled again.
    std::fs::write(&fetched.path, b"\0asm\x0d\0\x01\0 something else entirely, same file").unwrap();
    let again = fetch(&weir, &at).await.unwrap();
    assert_eq!(again.downloaded, CONTENT.len() as u64, "a tampered cached layer is pulled again");
    assert_eq!(std::fs::read(&again.path).unwrap(), CONTENT);

    // Pinned to the content, offline from the cache: tampering is caught there too.
    std::fs::write(&fetched.path, b"\0asm\x0d\0\x01\0 tampered again").unwrap();
    let pinned = weir.fetch(&at, Some(&Digest::of(CONTENT)), Some(ArtifactKind::Component), &()).await.unwrap();
    assert_eq!(std::fs::read(&pinned.path).unwrap(), CONTENT);
    assert_eq!(pinned.downloaded, CONTENT.len() as u64);
}

#[tokio::test]
async fn a_100_mib_manifest_is_cut_off_at_the_limit() {
    let server = registry(
        || Reply::Flood { declared: None, prefix: b"{\"a\":\"".to_vec(), total: 100 * MIB },
        || Reply::Silence,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let error =
        fetch(&weir(dir.path(), Duration::from_secs(10)), &server.reference("huge/manifest:1")).await.unwrap_err();
    assert!(matches!(error, RegistryError::TooLarge { .. }), "{error}");
    assert_registry_error(&error, &["huge/manifest:1", "the manifest", "4 MiB", "not serving a weir artifact"]);
    // Give the server a moment to notice the hang-up, then check it did not get to send it all.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = server.sent.load(Ordering::Relaxed);
    assert!(sent < 50 * MIB, "the client read on to {sent} bytes");
}

#[tokio::test]
async fn a_manifest_declaring_a_huge_length_is_refused_before_it_is_read() {
    let server =
        registry(|| Reply::Stall { declared: Some(100 * MIB), prefix: b"{".to_vec() }, || Reply::Silence).await;
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let error =
        fetch(&weir(dir.path(), Duration::from_secs(20)), &server.reference("huge/declared:1")).await.unwrap_err();
    assert!(matches!(error, RegistryError::TooLarge { .. }), "{error}");
    assert_registry_error(&error, &["100 MiB", "Content-Length"]);
    assert!(started.elapsed() < Duration::from_secs(10), "refused from the header, not after a timeout");
}

#[tokio::test]
async fn too_many_layers_are_refused_before_any_blob_is_requested() {
    let layers: Vec<(&[u8], u64)> = (0..100).map(|_| (CONTENT, CONTENT.len() as u64)).collect();
    let body = manifest(&layers, 2);
    let server = registry(move || Reply::Full { status: 200, body: body.clone() }, || Reply::Silence).await;
    let dir = tempfile::tempdir().unwrap();
    let error = fetch(&weir(dir.path(), Duration::from_secs(5)), &server.reference("many/layers:1")).await.unwrap_err();
    assert!(matches!(error, RegistryError::TooManyLayers { count: 100, limit: 64, .. }), "{error}");
    assert_registry_error(&error, &["many/layers:1", "100 layers", "64"]);
    assert!(!server.requested("/blobs/"));
}

#[tokio::test]
async fn a_config_or_layer_declared_over_the_limits_is_refused_before_download() {
    let dir = tempfile::tempdir().unwrap();
    let config = manifest(&[(CONTENT, CONTENT.len() as u64)], 2 * MIB);
    let server = registry(move || Reply::Full { status: 200, body: config.clone() }, || Reply::Silence).await;
    let error = fetch(&weir(dir.path(), Duration::from_secs(5)), &server.reference("big/config:1")).await.unwrap_err();
    assert!(matches!(error, RegistryError::TooLarge { .. }), "{error}");
    assert_registry_error(&error, &["config", "2 MiB", "1 MiB", "not serving a weir artifact"]);

    let layer = manifest(&[(CONTENT, 3 << 30)], 2);
    let server = registry(move || Reply::Full { status: 200, body: layer.clone() }, || Reply::Silence).await;
    let error = fetch(&weir(dir.path(), Duration::from_secs(5)), &server.reference("big/layer:1")).await.unwrap_err();
    assert!(matches!(error, RegistryError::TooLarge { .. }), "{error}");
    assert_registry_error(&error, &["big/layer:1", "3 GiB", "2 GiB", "--max-artifact-size"]);
    assert!(!server.requested("/blobs/"));
}

#[tokio::test]
async fn a_blob_longer_than_its_descriptor_is_cut_off() {
    for declared in [None, Some(100 * MIB)] {
        let server = registry(
            || Reply::Full { status: 200, body: manifest(&[(CONTENT, CONTENT.len() as u64)], 2) },
            move || Reply::Flood { declared, prefix: CONTENT.to_vec(), total: 100 * MIB },
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let weir = weir(dir.path(), Duration::from_secs(10));
        let error = fetch(&weir, &server.reference("long/blob:1")).await.unwrap_err();
        assert!(matches!(error, RegistryError::Integrity { .. }), "{error}");
        assert_registry_error(&error, &["long/blob:1", "more than", "declares"]);
        assert!(!weir.store().contains(&Digest::of(CONTENT)), "nothing is kept");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let sent = server.sent.load(Ordering::Relaxed);
        assert!(sent < 50 * MIB, "the client read on to {sent} bytes");
    }
}

#[tokio::test]
async fn a_blob_shorter_than_its_descriptor_is_refused() {
    let server = registry(
        || Reply::Full { status: 200, body: manifest(&[(CONTENT, CONTENT.len() as u64)], 2) },
        || Reply::Flood { declared: None, prefix: CONTENT[..10].to_vec(), total: 10 },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let weir = weir(dir.path(), Duration::from_secs(5));
    let error = fetch(&weir, &server.reference("short/blob:1")).await.unwrap_err();
    assert!(matches!(error, RegistryError::Integrity { .. }), "{error}");
    assert_registry_error(&error, &["short/blob:1", "10 bytes", "declares"]);
    assert!(!weir.store().contains(&Digest::of(CONTENT)));
}

#[tokio::test]
async fn a_registry_that_never_answers_times_out() {
    let server = Hostile::start(|_| Reply::Silence).await;
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let error =
        fetch(&weir(dir.path(), Duration::from_millis(300)), &server.reference("silent/x:1")).await.unwrap_err();
    assert!(matches!(error, RegistryError::TimedOut { .. }), "{error}");
    assert_registry_error(&error, &["silent/x:1", "did not answer", "300ms", "--registry-timeout"]);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_registry_that_stalls_in_the_middle_of_a_blob_times_out() {
    let server = registry(
        || Reply::Full { status: 200, body: manifest(&[(CONTENT, CONTENT.len() as u64)], 2) },
        || Reply::Stall { declared: Some(CONTENT.len() as u64), prefix: CONTENT[..10].to_vec() },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let weir = weir(dir.path(), Duration::from_millis(300));
    let started = Instant::now();
    let error = fetch(&weir, &server.reference("stalled/blob:1")).await.unwrap_err();
    assert!(matches!(error, RegistryError::TimedOut { .. }), "{error}");
    assert_registry_error(&error, &["stalled/blob:1", "--registry-timeout"]);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert!(!weir.store().contains(&Digest::of(CONTENT)));
}

/// Fetched by `@sha256:`, the registry answers with another manifest (a
/// swapped or tampered one): refused, nothing pulled or cached.
#[tokio::test]
async fn a_manifest_that_is_not_the_digest_asked_for_is_refused() {
    let honest = manifest(&[(CONTENT, CONTENT.len() as u64)], 2);
    let swapped = manifest(&[(b"\0asm\x0d\0\x01\0 something else".as_slice(), 25)], 2);
    let server = registry(
        move || Reply::Full { status: 200, body: swapped.clone() },
        || Reply::Full { status: 200, body: CONTENT.to_vec() },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let weir = weir(dir.path(), Duration::from_secs(5));
    let wanted = Digest::of(&honest);
    let at = server.reference(&format!("pinned/x@{wanted}"));
    let error = fetch(&weir, &at).await.unwrap_err();
    assert!(matches!(error, RegistryError::Integrity { .. }), "{error}");
    assert_registry_error(&error, &["its digest is sha256:", &format!("not {wanted}")]);
    assert!(!server.requested("/blobs/"), "no layer of the wrong manifest was downloaded");
    let cached = weir_tests::files_under(dir.path());
    assert!(cached.is_empty(), "nothing cached: {cached:?}");
}

/// A registry that is not on loopback is spoken to over TLS unless
/// `insecure` says otherwise: the first bytes on the wire are a TLS
/// handshake, or with `insecure` a plain HTTP request. Needs an address of
/// this machine that is not loopback (found by routing, nothing is sent).
#[tokio::test]
async fn a_registry_off_loopback_gets_tls_unless_insecure() {
    let routed = |to: &str| {
        let probe = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
        probe.connect(to).ok()?;
        Some(probe.local_addr().ok()?.ip()).filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
    };
    let Some(ip) = ["198.51.100.1:9", "10.255.255.254:9", "172.31.255.254:9"].into_iter().find_map(routed) else {
        return eprintln!("SKIPPED: this machine has no address off loopback");
    };
    let first_bytes = |insecure: bool| async move {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let at: ArtifactRef = format!("oci://{ip}:{port}/remote/x:1").parse().unwrap();
        assert!(!at.is_loopback());
        let seen = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = vec![0u8; 4];
            socket.read_exact(&mut head).await.unwrap();
            head
        });
        let dir = tempfile::tempdir().unwrap();
        let options = RegistryOptions {
            credentials: Credentials::Anonymous,
            insecure,
            read_timeout: Duration::from_secs(2),
            ..Default::default()
        };
        let weir = Registry::new(BlobStore::new(dir.path()), options);
        let (head, _) = tokio::join!(seen, fetch(&weir, &at));
        head.unwrap()
    };
    assert_eq!(first_bytes(false).await[0], 0x16, "a TLS handshake record");
    assert_eq!(first_bytes(true).await, b"GET ", "plain HTTP only when asked");
}
