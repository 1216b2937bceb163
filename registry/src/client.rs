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
use oci_client::manifest::{OciDescriptor, OciImageManifest, OCI_IMAGE_MEDIA_TYPE};
use oci_client::secrets::RegistryAuth;
use oci_client::Client;
use oci_wasm::ToConfig;

use crate::artifact::{
    precompiled_tag, ArtifactKind, ModelConfig, PrecompiledConfig, MODEL_CONFIG_MEDIA_TYPE, PRECOMPILED_ARTIFACT_TYPE,
    PRECOMPILED_CONFIG_MEDIA_TYPE,
};
use crate::auth::Credentials;
use crate::error::{human_bytes, RegistryError, BLOB_HINT, CONNECT_TIMEOUT_SETTING, METADATA_HINT, TIMEOUT_SETTING};
use crate::layers::{bad_manifest, parse_manifest, single_layer};
use crate::reference::ArtifactRef;
use crate::signatures::TrustRequirement;
use crate::store::BlobStore;
use crate::trust::TrustPolicy;
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
    /// The operator's trust policy: which artifacts must be signed by whom.
    pub trust: Option<TrustPolicy>,
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
            trust: None,
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
    /// The manifest's length in bytes (for descriptors that point at it).
    pub manifest_size: u64,
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
    pub(crate) store: BlobStore,
    pub(crate) options: RegistryOptions,
    /// One HTTP client per protocol (plain, TLS), shared by every registry
    /// and built once: building one costs ~80 ms (TLS set-up), too slow to
    /// repeat in a cold start, and concurrent first users wait for the one.
    plain_client: OnceLock<Client>,
    tls_client: OnceLock<Client>,
    /// The HTTP client manifests are read with (oci-client reads a whole
    /// manifest into memory, however large; weir reads at most the limit).
    manifest_http: OnceLock<reqwest::Client>,
    /// `Authorization` values that worked for manifests, by registry and repository.
    pub(crate) manifest_auth: Mutex<HashMap<String, String>>,
    /// Registries whose credentials the clients hold.
    authenticated: tokio::sync::Mutex<HashSet<String>>,
    /// (manifest, key id) pairs whose signature was verified.
    pub(crate) verified_signatures: Mutex<HashSet<(Digest, String)>>,
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
            verified_signatures: Default::default(),
        }
    }

    pub(crate) fn plain_http(&self, reference: &ArtifactRef) -> bool {
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

    pub(crate) fn manifest_http(&self) -> reqwest::Client {
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
    pub(crate) fn oci_error(
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

    pub(crate) fn timed_out(&self, reference: &ArtifactRef, what: &str, connecting: bool) -> RegistryError {
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
    pub(crate) async fn client(&self, reference: &ArtifactRef) -> Result<Client, RegistryError> {
        let client = self.http_client(self.plain_http(reference));
        let registry = reference.registry();
        let mut authenticated = self.authenticated.lock().await;
        if !authenticated.contains(registry) {
            client.store_auth_if_needed(registry, &self.options.credentials.resolve(registry)?).await;
            authenticated.insert(registry.to_string());
        }
        Ok(client)
    }

    pub(crate) fn auth(&self, reference: &ArtifactRef) -> Result<RegistryAuth, RegistryError> {
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
        self.push_with_subject(bytes, file_name, reference, None, progress).await
    }

    /// Push precompiled code (`weir compile`'s bytes) for the component
    /// `component` pushed: in its repository, under [`precompiled_tag`],
    /// with the component's manifest as its OCI `subject`.
    pub async fn push_precompiled(
        &self,
        code: Vec<u8>,
        file_name: &str,
        component: &Pushed,
        progress: &dyn Progress,
    ) -> Result<Pushed, RegistryError> {
        let not_pushable = |why: String| RegistryError::NotPushable { what: file_name.into(), why };
        let (header, _) = weir_core::precompiled::parse(file_name, &code).map_err(|e| not_pushable(e.to_string()))?;
        if header.component != component.content.to_string() {
            return Err(not_pushable(format!(
                "it was compiled from {}, not from {}",
                header.component, component.content
            )));
        }
        let tag = precompiled_tag(&component.manifest, &header.target);
        let reference = component.reference.with_tag(&tag);
        let subject = OciDescriptor {
            media_type: OCI_IMAGE_MEDIA_TYPE.into(),
            digest: component.manifest.to_string(),
            size: component.manifest_size as i64,
            ..Default::default()
        };
        self.push_with_subject(code, Some(file_name), &reference, Some(subject), progress).await
    }

    async fn push_with_subject(
        &self,
        bytes: Vec<u8>,
        file_name: Option<&str>,
        reference: &ArtifactRef,
        subject: Option<OciDescriptor>,
        progress: &dyn Progress,
    ) -> Result<Pushed, RegistryError> {
        let what = file_name.unwrap_or("artifact");
        let not_pushable = |why: String| RegistryError::NotPushable { what: what.into(), why };
        let kind = ArtifactKind::sniff(&bytes).map_err(not_pushable)?;
        if (kind == ArtifactKind::Precompiled) != subject.is_some() {
            let why = "precompiled code is pushed with the component it was compiled from (`weir push COMPONENT REF --precompile TARGET`)";
            return Err(not_pushable(why.into()));
        }
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
            ArtifactKind::Precompiled => {
                let (header, _) =
                    weir_core::precompiled::parse(what, &bytes).map_err(|e| not_pushable(e.to_string()))?;
                let config =
                    serde_json::to_vec(&PrecompiledConfig::of(&header)).map_err(|e| not_pushable(e.to_string()))?;
                (
                    Config::new(config, PRECOMPILED_CONFIG_MEDIA_TYPE.into(), None),
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
        if subject.is_some() {
            manifest.artifact_type = Some(PRECOMPILED_ARTIFACT_TYPE.into());
        }
        manifest.subject = subject;
        let manifest_bytes = serde_json::to_vec(&manifest).map_err(|e| not_pushable(e.to_string()))?;
        let manifest_digest = Digest::of(&manifest_bytes);
        let manifest_size = manifest_bytes.len() as u64;

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
        Ok(Pushed { reference: reference.clone(), kind, manifest: manifest_digest, manifest_size, content, size })
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
        self.fetch_signed(reference, pin, want, None, progress).await
    }

    /// [`Registry::fetch`], refusing the artifact unless its manifest is
    /// signed as `signed_by` (from the manifest) and the trust policy ask —
    /// checked before its layer is downloaded.
    pub async fn fetch_signed(
        &self,
        reference: &ArtifactRef,
        pin: Option<&Digest>,
        want: Option<ArtifactKind>,
        signed_by: Option<&TrustRequirement>,
        progress: &dyn Progress,
    ) -> Result<Fetched, RegistryError> {
        let started = Instant::now();
        let policy = self.policy_for(reference)?;
        let trust: Vec<&TrustRequirement> = signed_by.into_iter().chain(policy.as_ref()).collect();
        // Pinned to content that is already here (and still intact): no
        // network at all — unless a signature must be checked, which needs
        // the manifest digest.
        if let Some(pin) = pin.filter(|_| trust.is_empty()) {
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
        for requirement in trust {
            self.verify_signature(reference, &manifest_digest, requirement).await?;
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

    /// What the trust policy asks of `reference`'s signatures, if anything.
    fn policy_for(&self, reference: &ArtifactRef) -> Result<Option<TrustRequirement>, RegistryError> {
        match &self.options.trust {
            Some(policy) => policy.requirement_for(reference),
            None => Ok(None),
        }
    }

    /// The code precompiled for `target` that was pushed with the component
    /// `component` (whose manifest is `manifest`), verified like the
    /// component: signed as `signed_by` and the trust policy ask. Native
    /// code is only ever taken under a signature requirement, so without
    /// one this is `None` without asking the registry; none pushed is
    /// `None` too.
    pub async fn fetch_precompiled(
        &self,
        component: &ArtifactRef,
        manifest: &Digest,
        target: &str,
        signed_by: Option<&TrustRequirement>,
    ) -> Result<Option<Fetched>, RegistryError> {
        let reference = component.with_tag(&precompiled_tag(manifest, target));
        if signed_by.is_none() && self.policy_for(&reference)?.is_none() {
            return Ok(None);
        }
        match self.fetch_signed(&reference, None, Some(ArtifactKind::Precompiled), signed_by, &()).await {
            Ok(fetched) => Ok(Some(fetched)),
            Err(RegistryError::NotFound { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The cached layer `digest`, re-hashed off the async workers (a
    /// tampered one is discarded: the caller pulls it again).
    pub(crate) async fn verified_blob(
        &self,
        digest: &Digest,
    ) -> Result<Option<crate::store::CachedBlob>, RegistryError> {
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
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn chunked(mut data: bytes::Bytes) -> Vec<bytes::Bytes> {
    let mut chunks = Vec::new();
    while !data.is_empty() {
        chunks.push(data.split_to(PUSH_CHUNK.min(data.len())));
    }
    chunks
}
