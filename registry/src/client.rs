//! Push and pull of weir artifacts. A pull resolves the reference to a
//! manifest, checks the manifest describes exactly one artifact of the wanted
//! kind, and streams the layer into the local cache, verifying digest and
//! size before the blob becomes visible. Anything cached by digest is never
//! fetched again.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{OciImageManifest, OCI_IMAGE_MEDIA_TYPE};
use oci_client::secrets::RegistryAuth;
use oci_client::Client;
use oci_wasm::ToConfig;
use sha2::Digest as _;
use tokio::io::AsyncWrite;

use crate::artifact::{ArtifactKind, ModelConfig, MODEL_CONFIG_MEDIA_TYPE};
use crate::auth::Credentials;
use crate::error::RegistryError;
use crate::reference::ArtifactRef;
use crate::store::BlobStore;
use weir_core::Digest;

/// Chunk size of a layer upload (each chunk advances the progress bar).
const PUSH_CHUNK: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct RegistryOptions {
    pub credentials: Credentials,
    /// Use plain HTTP for every registry (loopback registries always are).
    pub insecure: bool,
    /// Refuse layers larger than this before downloading a byte.
    pub max_blob_bytes: u64,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions { credentials: Credentials::Discover, insecure: false, max_blob_bytes: 8 << 30 }
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
    }

    fn http_client(&self, plain_http: bool) -> Client {
        let (cell, protocol) = if plain_http {
            (&self.plain_client, ClientProtocol::Http)
        } else {
            (&self.tls_client, ClientProtocol::Https)
        };
        cell.get_or_init(|| Client::new(ClientConfig { protocol, ..Default::default() })).clone()
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
        // Pinned to content that is already here: no network at all.
        if let Some(pin) = pin.filter(|p| self.store.contains(p)) {
            let size = std::fs::metadata(self.store.path(pin)).map(|m| m.len()).unwrap_or_default();
            let path = self.store.path(pin);
            let kind = ArtifactKind::sniff(&std::fs::read(&path).unwrap_or_default()).unwrap_or(ArtifactKind::Model);
            if let Some(want) = want.filter(|w| *w != kind) {
                return Err(RegistryError::WrongKind {
                    reference: reference.to_string(),
                    wanted: want.to_string(),
                    found: kind.to_string(),
                });
            }
            return Ok(Fetched {
                path,
                kind,
                content: pin.clone(),
                manifest: None,
                size,
                downloaded: 0,
                elapsed: started.elapsed(),
            });
        }
        // Named by a manifest digest that is already here: no network either.
        let cached = reference.digest().or(pin).and_then(|d| Some((d.clone(), self.store.manifest(d)?)));
        let (manifest_digest, manifest_bytes) = match cached {
            Some(cached) => cached,
            None => self.pull_manifest(reference).await?,
        };
        let manifest = parse_manifest(reference, &manifest_bytes)?;
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
            return Err(bad_manifest(
                reference,
                format!("the layer is {size} bytes, over the {} byte limit", self.options.max_blob_bytes),
            ));
        }
        self.store.put_manifest(&manifest_digest, &manifest_bytes)?;
        let mut downloaded = 0;
        if !self.store.contains(&content) {
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

    async fn pull_manifest(&self, reference: &ArtifactRef) -> Result<(Digest, Vec<u8>), RegistryError> {
        let client = self.client(reference).await?;
        let (bytes, _) = client
            .pull_manifest_raw(reference.oci(), &self.auth(reference)?, &[OCI_IMAGE_MEDIA_TYPE])
            .await
            .map_err(|e| RegistryError::from_oci(reference, e))?;
        let digest = Digest::of(&bytes);
        if let Some(wanted) = reference.digest().filter(|wanted| **wanted != digest) {
            return Err(RegistryError::Integrity {
                reference: reference.to_string(),
                what: "the manifest".into(),
                why: format!("its digest is {digest}, not {wanted}"),
            });
        }
        Ok((digest, bytes.to_vec()))
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
            return Err(integrity(format!("the registry sent more than the {size} bytes the manifest declares")));
        }
        pulled.map_err(|e| RegistryError::from_oci(reference, e))?;
        let (written, actual) = writer.finish();
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

fn chunked(mut data: bytes::Bytes) -> Vec<bytes::Bytes> {
    let mut chunks = Vec::new();
    while !data.is_empty() {
        chunks.push(data.split_to(PUSH_CHUNK.min(data.len())));
    }
    chunks
}

fn bad_manifest(reference: &ArtifactRef, why: String) -> RegistryError {
    RegistryError::BadManifest { reference: reference.to_string(), why }
}

fn parse_manifest(reference: &ArtifactRef, bytes: &[u8]) -> Result<OciImageManifest, RegistryError> {
    serde_json::from_slice(bytes).map_err(|e| bad_manifest(reference, format!("it does not parse: {e}")))
}

/// The one layer of a weir artifact, of the wanted kind (any kind when `None`).
fn single_layer<'m>(
    reference: &ArtifactRef,
    manifest: &'m OciImageManifest,
    want: Option<ArtifactKind>,
) -> Result<(&'m oci_client::manifest::OciDescriptor, ArtifactKind), RegistryError> {
    let [layer] = manifest.layers.as_slice() else {
        return Err(bad_manifest(
            reference,
            format!("it has {} layers; a weir artifact has exactly one", manifest.layers.len()),
        ));
    };
    let wanted = want.map_or("component or model".to_string(), |w| w.to_string());
    match (ArtifactKind::of_layer(&layer.media_type), want) {
        (Some(kind), None) => Ok((layer, kind)),
        (Some(kind), Some(want)) if kind == want => Ok((layer, kind)),
        (Some(kind), Some(_)) => {
            Err(RegistryError::WrongKind { reference: reference.to_string(), wanted, found: kind.to_string() })
        }
        (None, _) => Err(RegistryError::WrongKind {
            reference: reference.to_string(),
            wanted,
            found: format!(
                "layer of media type `{}` (weir reads `{}` and `{}`)",
                layer.media_type,
                ArtifactKind::Component.layer_media_type(),
                ArtifactKind::Model.layer_media_type()
            ),
        }),
    }
}

/// Streams a blob to disk while hashing and counting it, refusing more
/// bytes than declared (a registry cannot fill the disk).
struct VerifyingWriter<'p, W> {
    inner: W,
    hasher: sha2::Sha256,
    written: u64,
    limit: u64,
    overflowed: bool,
    progress: &'p dyn Progress,
}

impl<'p, W> VerifyingWriter<'p, W> {
    fn new(inner: W, limit: u64, progress: &'p dyn Progress) -> Self {
        VerifyingWriter { inner, hasher: sha2::Sha256::new(), written: 0, limit, overflowed: false, progress }
    }

    fn finish(self) -> (u64, Digest) {
        let hex = hex::encode(self.hasher.finalize());
        (self.written, format!("sha256:{hex}").parse().expect("sha256 hex is a digest"))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for VerifyingWriter<'_, W> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if self.written + buf.len() as u64 > self.limit {
            self.overflowed = true;
            return Poll::Ready(Err(std::io::Error::other("more bytes than the manifest declares")));
        }
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                this.hasher.update(&buf[..n]);
                this.written += n as u64;
                this.progress.advance(n as u64);
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
