//! Push and pull of weir artifacts. A pull resolves the reference to a
//! manifest, checks the manifest describes exactly one artifact of the wanted
//! kind, and streams the layer into the local cache, verifying digest and
//! size before the blob becomes visible. Anything cached by digest is never
//! fetched again (and is re-verified when taken from the cache).
//!
//! Registries are untrusted: every request has a connect and a read timeout,
//! a manifest is read up to [`RegistryOptions::max_manifest_bytes`] and no
//! further, its layer count and declared sizes are checked before any blob is
//! requested, and a blob is cut off at the size its descriptor declares.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{OciImageManifest, OCI_IMAGE_MEDIA_TYPE};
use oci_client::secrets::RegistryAuth;
use oci_client::Client;
use oci_wasm::ToConfig;

use crate::artifact::{ArtifactKind, ModelConfig, MODEL_CONFIG_MEDIA_TYPE};
use crate::auth::Credentials;
use crate::error::{human_bytes, RegistryError, BLOB_HINT, CONNECT_TIMEOUT_SETTING, METADATA_HINT, TIMEOUT_SETTING};
use crate::layers::{bad_manifest, parse_manifest, single_layer};
use crate::limited::{read_limited, ReadError, VerifyingWriter};
use crate::reference::ArtifactRef;
use crate::store::BlobStore;
use weir_core::Digest;

/// Chunk size of a layer upload (each chunk advances the progress bar).
const PUSH_CHUNK: usize = 1 << 20;

/// Default of [`RegistryOptions::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`RegistryOptions::read_timeout`].
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Default of [`RegistryOptions::max_manifest_bytes`].
pub const DEFAULT_MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Default of [`RegistryOptions::max_config_bytes`].
pub const DEFAULT_MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Default of [`RegistryOptions::max_layers`].
pub const DEFAULT_MAX_LAYERS: usize = 64;
/// Default of [`RegistryOptions::max_blob_bytes`].
pub const DEFAULT_MAX_BLOB_BYTES: u64 = 2 << 30;

#[derive(Debug, Clone)]
pub struct RegistryOptions {
    pub credentials: Credentials,
    /// Use plain HTTP for every registry (loopback registries always are).
    pub insecure: bool,
    /// Refuse layers larger than this before downloading a byte (default 2 GiB).
    pub max_blob_bytes: u64,
    /// Refuse manifests larger than this: checked against `Content-Length`
    /// before reading and enforced while reading (default 4 MiB).
    pub max_manifest_bytes: u64,
    /// Refuse manifests whose config descriptor declares more (default 1 MiB).
    pub max_config_bytes: u64,
    /// Refuse manifests listing more layers than this (default 64; a weir
    /// artifact has exactly one).
    pub max_layers: usize,
    /// Give up connecting to a registry after this long (default 10 s).
    pub connect_timeout: Duration,
    /// Give up on a registry that sends nothing for this long, on any one
    /// read (default 60 s); a whole manifest must arrive within it too.
    pub read_timeout: Duration,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            credentials: Credentials::Discover,
            insecure: false,
            max_blob_bytes: DEFAULT_MAX_BLOB_BYTES,
            max_manifest_bytes: DEFAULT_MAX_MANIFEST_BYTES,
            max_config_bytes: DEFAULT_MAX_CONFIG_BYTES,
            max_layers: DEFAULT_MAX_LAYERS,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
        }
    }
}

/// Told about transfers as they happen (the CLI draws a bar; services stay quiet).
pub trait Progress: Send + Sync {
    fn begin(&self, _what: &str, _total_bytes: u64) {}
    fn advance(&self, _bytes: u64) {}
    fn end(&self) {}
}

/// No progress reporting.
impl Progress for () {}

#[derive(Debug, Clone)]
pub struct Pushed {
    pub reference: ArtifactRef,
    pub kind: ArtifactKind,
    pub manifest: Digest,
    pub content: Digest,
    pub size: u64,
}

/// An artifact in the local cache, verified.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub path: PathBuf,
    pub kind: ArtifactKind,
    /// Digest of the artifact's bytes (the layer).
    pub content: Digest,
    /// Digest of the manifest it came from (`None` when a pin named cached
    /// content and no manifest was needed).
    pub manifest: Option<Digest>,
    pub size: u64,
    /// Bytes that came over the network (0 when everything was cached).
    pub downloaded: u64,
    pub elapsed: Duration,
}

/// A registry client with its local cache.
pub struct Registry {
    store: BlobStore,
    options: RegistryOptions,
    /// One HTTP client per protocol (plain, TLS), shared by every registry
    /// and built once: building one costs ~80 ms (TLS set-up), too slow to
    /// repeat in a cold start, and concurrent first users wait for the one.
    plain_client: OnceLock<Client>,
    tls_client: OnceLock<Client>,
    /// The HTTP client manifests are read with (oci-client reads a whole
    /// manifest into memory, however large; weir reads at most the limit).
    manifest_http: OnceLock<reqwest::Client>,
    /// `Authorization` values that worked for manifests, by registry and repository.
    manifest_auth: Mutex<HashMap<String, String>>,
    /// Registries whose credentials the clients hold.
    authenticated: tokio::sync::Mutex<HashSet<String>>,
}

impl Registry {
    pub fn new(store: BlobStore, options: RegistryOptions) -> Registry {
        Registry {
            store,
            options,
            plain_client: OnceLock::new(),
            tls_client: OnceLock::new(),
            manifest_http: OnceLock::new(),
            manifest_auth: Default::default(),
            authenticated: Default::default(),
        }
    }

    fn plain_http(&self, reference: &ArtifactRef) -> bool {
        self.options.insecure || reference.is_loopback()
    }

    /// Build the client `reference` will need now, so that a first pull
    /// does not pay for it (blocking: run it off the async workers).
    pub fn prepare(&self, reference: &ArtifactRef) {
        self.http_client(self.plain_http(reference));
        self.manifest_http();
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.options
    }

    fn http_client(&self, plain_http: bool) -> Client {
        let (cell, protocol) = if plain_http {
            (&self.plain_client, ClientProtocol::Http)
        } else {
            (&self.tls_client, ClientProtocol::Https)
        };
        cell.get_or_init(|| {
            Client::new(ClientConfig {
                protocol,
                connect_timeout: Some(self.options.connect_timeout),
                read_timeout: Some(self.options.read_timeout),
                ..Default::default()
            })
        })
        .clone()
    }

    fn manifest_http(&self) -> reqwest::Client {
        self.manifest_http
            .get_or_init(|| {
                reqwest::Client::builder()
                    .connect_timeout(self.options.connect_timeout)
                    .read_timeout(self.options.read_timeout)
                    .user_agent(concat!("weir/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .unwrap_or_default()
            })
            .clone()
    }

    /// An oci-client error, with timeouts told apart (the client knows how long it waited).
    fn oci_error(
        &self,
        reference: &ArtifactRef,
        what: &str,
        error: oci_client::errors::OciDistributionError,
    ) -> RegistryError {
        if let oci_client::errors::OciDistributionError::RequestError(e) = &error {
            if e.is_timeout() {
                return self.timed_out(reference, what, e.is_connect());
            }
        }
        RegistryError::from_oci(reference, error)
    }

    fn timed_out(&self, reference: &ArtifactRef, what: &str, connecting: bool) -> RegistryError {
        let (after, setting) = if connecting {
            (self.options.connect_timeout, CONNECT_TIMEOUT_SETTING)
        } else {
            (self.options.read_timeout, TIMEOUT_SETTING)
        };
        RegistryError::TimedOut { reference: reference.to_string(), what: what.to_string(), after, setting }
    }

    pub fn store(&self) -> &BlobStore {
        &self.store
    }

    /// The client for `reference`, holding its registry's credentials.
    async fn client(&self, reference: &ArtifactRef) -> Result<Client, RegistryError> {
        let client = self.http_client(self.plain_http(reference));
        let registry = reference.registry();
        let mut authenticated = self.authenticated.lock().await;
        if !authenticated.contains(registry) {
            client.store_auth_if_needed(registry, &self.options.credentials.resolve(registry)?).await;
            authenticated.insert(registry.to_string());
        }
        Ok(client)
    }

    fn auth(&self, reference: &ArtifactRef) -> Result<RegistryAuth, RegistryError> {
        self.options.credentials.resolve(reference.registry())
    }

    /// Push a component or model (told apart by its bytes) to `reference`.
    pub async fn push(
        &self,
        bytes: Vec<u8>,
        file_name: Option<&str>,
        reference: &ArtifactRef,
        progress: &dyn Progress,
    ) -> Result<Pushed, RegistryError> {
        let what = file_name.unwrap_or("artifact");
        let not_pushable = |why: String| RegistryError::NotPushable { what: what.into(), why };
        let kind = ArtifactKind::sniff(&bytes).map_err(not_pushable)?;
        let content = Digest::of(&bytes);
        let size = bytes.len() as u64;
        let (config, layer) = match kind {
            ArtifactKind::Component => {
                let (config, layer) = oci_wasm::WasmConfig::from_raw_component(bytes, None)
                    .map_err(|e| not_pushable(format!("its component type cannot be read: {e:#}")))?;
                (config.to_config().map_err(|e| not_pushable(format!("{e:#}")))?, layer)
            }
            ArtifactKind::Model => {
                let config = ModelConfig {
                    format: "onnx".into(),
                    file_name: file_name.map(str::to_string),
                    layer_digests: vec![content.to_string()],
                };
                let config = serde_json::to_vec(&config).map_err(|e| not_pushable(e.to_string()))?;
                (
                    Config::new(config, MODEL_CONFIG_MEDIA_TYPE.into(), None),
                    ImageLayer::new(bytes, kind.layer_media_type().into(), None),
                )
            }
        };
        let mut annotations = BTreeMap::new();
        if let Some(name) = file_name {
            annotations.insert("org.opencontainers.image.title".to_string(), name.to_string());
        }
        let mut manifest = OciImageManifest::build(std::slice::from_ref(&layer), &config, Some(annotations));
        manifest.media_type = Some(OCI_IMAGE_MEDIA_TYPE.to_string());
        let manifest_bytes = serde_json::to_vec(&manifest).map_err(|e| not_pushable(e.to_string()))?;
        let manifest_digest = Digest::of(&manifest_bytes);

        let client = self.client(reference).await?;
        let oci_error = |e| RegistryError::from_oci(reference, e);
        let target = reference.oci();
        // Authenticate for push up front (the blob calls assume a token).
        client.auth(target, &self.auth(reference)?, oci_client::RegistryOperation::Push).await.map_err(oci_error)?;
        progress.begin(what, size);
        if !client.blob_exists(target, &content.to_string()).await.map_err(oci_error)? {
            let chunks: Vec<bytes::Bytes> = chunked(layer.data.clone());
            let stream = futures_util::stream::iter(chunks.into_iter().map(|chunk| {
                progress.advance(chunk.len() as u64);
                Ok(chunk)
            }));
            client.push_blob_stream(target, stream, &content.to_string()).await.map_err(oci_error)?;
        } else {
            progress.advance(size);
        }
        client.push_blob(target, config.data, &manifest.config.digest).await.map_err(oci_error)?;
        client
            .push_manifest_raw(target, manifest_bytes, OCI_IMAGE_MEDIA_TYPE.parse().expect("a valid header value"))
            .await
            .map_err(oci_error)?;
        progress.end();
        Ok(Pushed { reference: reference.clone(), kind, manifest: manifest_digest, content, size })
    }

    /// Make the artifact `reference` names available locally, verified.
    /// `pin` (from `digest = "sha256:…"` next to a tag) must equal the
    /// manifest digest or the content digest.
    pub async fn fetch(
        &self,
        reference: &ArtifactRef,
        pin: Option<&Digest>,
        want: Option<ArtifactKind>,
        progress: &dyn Progress,
    ) -> Result<Fetched, RegistryError> {
        let started = Instant::now();
        // Pinned to content that is already here (and still intact): no network at all.
        if let Some(pin) = pin {
            if let Some(cached) = self.verified_blob(pin).await? {
                let kind = ArtifactKind::sniff(&cached.head).unwrap_or(ArtifactKind::Model);
                if let Some(want) = want.filter(|w| *w != kind) {
                    return Err(RegistryError::WrongKind {
                        reference: reference.to_string(),
                        wanted: want.to_string(),
                        found: kind.to_string(),
                    });
                }
                return Ok(Fetched {
                    path: cached.path,
                    kind,
                    content: pin.clone(),
                    manifest: None,
                    size: cached.size,
                    downloaded: 0,
                    elapsed: started.elapsed(),
                });
            }
        }
        // Named by a manifest digest that is already here: no network either.
        let max_manifest = self.options.max_manifest_bytes;
        let cached =
            reference.digest().or(pin).and_then(|d| Some((d.clone(), self.store.manifest_limited(d, max_manifest)?)));
        let (manifest_digest, manifest_bytes) = match cached {
            Some(cached) => cached,
            None => self.pull_manifest(reference).await?,
        };
        let manifest = parse_manifest(reference, &manifest_bytes)?;
        self.check_manifest(reference, &manifest)?;
        let (layer, kind) = single_layer(reference, &manifest, want)?;
        let content: Digest =
            layer.digest.parse().map_err(|e| bad_manifest(reference, format!("layer digest: {e}")))?;
        if let Some(pin) = pin.filter(|p| **p != manifest_digest && **p != content) {
            return Err(RegistryError::PinMismatch {
                reference: reference.to_string(),
                pinned: pin.clone(),
                manifest: manifest_digest,
                content,
            });
        }
        let size = u64::try_from(layer.size)
            .map_err(|_| bad_manifest(reference, format!("layer size {} is negative", layer.size)))?;
        if size > self.options.max_blob_bytes {
            return Err(RegistryError::TooLarge {
                reference: reference.to_string(),
                what: format!("the layer {content} (as its descriptor declares)"),
                size: human_bytes(size),
                limit: human_bytes(self.options.max_blob_bytes),
                hint: BLOB_HINT,
            });
        }
        self.store.put_manifest(&manifest_digest, &manifest_bytes)?;
        let mut downloaded = 0;
        if self.verified_blob(&content).await?.is_none() {
            downloaded = self.pull_layer(reference, layer, &content, size, progress).await?;
        }
        Ok(Fetched {
            path: self.store.path(&content),
            kind,
            content,
            manifest: Some(manifest_digest),
            size,
            downloaded,
            elapsed: started.elapsed(),
        })
    }

    /// The cached layer `digest`, re-hashed off the async workers (a
    /// tampered one is discarded: the caller pulls it again).
    async fn verified_blob(&self, digest: &Digest) -> Result<Option<crate::store::CachedBlob>, RegistryError> {
        let (store, digest) = (self.store.clone(), digest.clone());
        tokio::task::spawn_blocking(move || store.verified(&digest))
            .await
            .map_err(|e| RegistryError::Store { path: self.store.root().display().to_string(), why: e.to_string() })?
    }

    /// Limits a manifest must be within before any blob it names is requested.
    fn check_manifest(&self, reference: &ArtifactRef, manifest: &OciImageManifest) -> Result<(), RegistryError> {
        if manifest.layers.len() > self.options.max_layers {
            return Err(RegistryError::TooManyLayers {
                reference: reference.to_string(),
                count: manifest.layers.len(),
                limit: self.options.max_layers,
            });
        }
        let config = u64::try_from(manifest.config.size)
            .map_err(|_| bad_manifest(reference, format!("config size {} is negative", manifest.config.size)))?;
        if config > self.options.max_config_bytes {
            return Err(RegistryError::TooLarge {
                reference: reference.to_string(),
                what: "the config blob (as its descriptor declares)".into(),
                size: human_bytes(config),
                limit: human_bytes(self.options.max_config_bytes),
                hint: METADATA_HINT,
            });
        }
        Ok(())
    }

    /// Get the manifest `reference` names, reading no more than the limit
    /// and within the read timeout.
    async fn pull_manifest(&self, reference: &ArtifactRef) -> Result<(Digest, Vec<u8>), RegistryError> {
        let deadline = self.options.connect_timeout + self.options.read_timeout;
        let (digest, bytes) = tokio::time::timeout(deadline, self.read_manifest(reference)).await.map_err(|_| {
            RegistryError::TimedOut {
                reference: reference.to_string(),
                what: "with the whole manifest".into(),
                after: deadline,
                setting: TIMEOUT_SETTING,
            }
        })??;
        if let Some(wanted) = reference.digest().filter(|wanted| **wanted != digest) {
            return Err(RegistryError::Integrity {
                reference: reference.to_string(),
                what: "the manifest".into(),
                why: format!("its digest is {digest}, not {wanted}"),
            });
        }
        Ok((digest, bytes))
    }

    async fn read_manifest(&self, reference: &ArtifactRef) -> Result<(Digest, Vec<u8>), RegistryError> {
        let oci = reference.oci();
        let scheme = if self.plain_http(reference) { "http" } else { "https" };
        let url = format!(
            "{scheme}://{}/v2/{}/manifests/{}",
            oci.resolve_registry(),
            oci.repository(),
            oci.digest().or(oci.tag()).unwrap_or("latest")
        );
        let key = format!("{}/{}", oci.resolve_registry(), oci.repository());
        let http = self.manifest_http();
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                self.timed_out(reference, "for the manifest", e.is_connect())
            } else {
                RegistryError::Transport { reference: reference.to_string(), message: format!("{url}: {e}") }
            }
        };
        let mut authorization = lock(&self.manifest_auth).get(&key).cloned();
        let mut authenticated = false;
        let mut response = loop {
            let mut request = http.get(&url).header(reqwest::header::ACCEPT, OCI_IMAGE_MEDIA_TYPE);
            if let Some(value) = &authorization {
                request = request.header(reqwest::header::AUTHORIZATION, value);
            }
            let response = request.send().await.map_err(transport)?;
            if response.status() != reqwest::StatusCode::UNAUTHORIZED || authenticated {
                break response;
            }
            // Authenticate as oci-client does (a bearer token from the
            // registry's realm, or basic credentials), then ask again once.
            authenticated = true;
            let client = self.client(reference).await?;
            let auth = self.auth(reference)?;
            let token = client
                .auth(oci, &auth, oci_client::RegistryOperation::Pull)
                .await
                .map_err(|e| self.oci_error(reference, "for a token", e))?;
            authorization = match (token, auth) {
                (Some(token), _) => Some(format!("Bearer {token}")),
                (None, RegistryAuth::Basic(user, password)) => {
                    use base64::Engine as _;
                    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                    Some(format!("Basic {encoded}"))
                }
                (None, _) => break response,
            };
        };
        let status = response.status();
        if !status.is_success() {
            let body = read_limited(&mut response, 4096).await.unwrap_or_default();
            let message = format!("{url}: {status}: {}", String::from_utf8_lossy(&body).trim());
            return Err(match status.as_u16() {
                401 | 403 => RegistryError::Unauthorized { reference: reference.to_string(), message },
                404 => RegistryError::NotFound { reference: reference.to_string(), message },
                _ => RegistryError::Transport { reference: reference.to_string(), message },
            });
        }
        if let Some(value) = authorization {
            lock(&self.manifest_auth).insert(key, value);
        }
        let limit = self.options.max_manifest_bytes;
        let too_large = |size: String| RegistryError::TooLarge {
            reference: reference.to_string(),
            what: "the manifest".into(),
            size,
            limit: human_bytes(limit),
            hint: METADATA_HINT,
        };
        if let Some(declared) = response.content_length().filter(|n| *n > limit) {
            return Err(too_large(format!("{} (its Content-Length)", human_bytes(declared))));
        }
        let header_digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        let bytes = match read_limited(&mut response, limit).await {
            Ok(bytes) => bytes,
            Err(ReadError::TooLong) => return Err(too_large(format!("more than {}", human_bytes(limit)))),
            Err(ReadError::Http(e)) => return Err(transport(e)),
        };
        let digest = Digest::of(&bytes);
        if let Some(header) = header_digest.filter(|h| *h != digest) {
            return Err(RegistryError::Integrity {
                reference: reference.to_string(),
                what: "the manifest".into(),
                why: format!("its digest is {digest}, but the registry's Docker-Content-Digest says {header}"),
            });
        }
        Ok((digest, bytes))
    }

    async fn pull_layer(
        &self,
        reference: &ArtifactRef,
        layer: &oci_client::manifest::OciDescriptor,
        content: &Digest,
        size: u64,
        progress: &dyn Progress,
    ) -> Result<u64, RegistryError> {
        let client = self.client(reference).await?;
        let staged = self.store.staging()?;
        let file = staged
            .reopen()
            .map_err(|e| RegistryError::Store { path: self.store.root().display().to_string(), why: e.to_string() })?;
        let mut writer = VerifyingWriter::new(tokio::fs::File::from_std(file), size, progress);
        progress.begin(&reference.to_string(), size);
        let pulled = client.pull_blob(reference.oci(), layer, &mut writer).await;
        progress.end();
        let integrity = |why: String| RegistryError::Integrity {
            reference: reference.to_string(),
            what: format!("layer {content}"),
            why,
        };
        if writer.overflowed {
            return Err(integrity(format!(
                "the registry sent more than the {size} bytes the manifest declares (cut off at {size})"
            )));
        }
        let (written, actual) = writer.finish();
        match pulled {
            // Fewer bytes than declared fail oci-client's digest check: say why.
            Err(oci_client::errors::OciDistributionError::DigestError(_)) if written != size => {
                return Err(integrity(format!("it is {written} bytes, but the manifest declares {size}")));
            }
            Err(e) => return Err(self.oci_error(reference, &format!("while sending layer {content}"), e)),
            Ok(()) => {}
        }
        if written != size {
            return Err(integrity(format!("it is {written} bytes, but the manifest declares {size}")));
        }
        if actual != *content {
            return Err(integrity(format!("its content digest is {actual}")));
        }
        self.store.commit(staged, content)?;
        Ok(written)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn chunked(mut data: bytes::Bytes) -> Vec<bytes::Bytes> {
    let mut chunks = Vec::new();
    while !data.is_empty() {
        chunks.push(data.split_to(PUSH_CHUNK.min(data.len())));
    }
    chunks
}
