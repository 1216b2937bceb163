//! Turning a declared component or model (a local file or an OCI reference,
//! optionally pinned to a digest) into verified local bytes on first use.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use thiserror::Error;
use weir_core::{Classify, Digest, ErrorKind};
use weir_manifest::{ArtifactDecl, ArtifactSource};
use weir_registry::{ArtifactKind, BlobStore, Registry, RegistryError, RegistryOptions};

#[derive(Debug, Error)]
pub enum ResolveError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("cannot read `{}`: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("`{}` does not match its pinned digest: it is {actual}, the manifest pins {pinned}", path.display())]
    PinMismatch { path: PathBuf, pinned: Digest, actual: Digest },
}

impl Classify for ResolveError {
    fn kind(&self) -> ErrorKind {
        match self {
            ResolveError::Registry(_) => ErrorKind::Registry,
            ResolveError::Read { .. } | ResolveError::PinMismatch { .. } => ErrorKind::BadComponent,
        }
    }
}

/// The artifact, local and verified.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub path: PathBuf,
    /// Time spent getting it (registry round trips and download).
    pub pull: Duration,
    /// Bytes downloaded (0 when the cache had it).
    pub downloaded: u64,
    /// The manifest it was fetched by (registry artifacts whose manifest was read).
    pub manifest: Option<Digest>,
}

/// Resolves artifact declarations through one registry client and the
/// machine-wide content-addressed cache.
pub struct Resolver {
    registry: Registry,
}

impl Default for Resolver {
    fn default() -> Self {
        Resolver::new(BlobStore::new(BlobStore::default_root()), RegistryOptions::default())
    }
}

impl Resolver {
    pub fn new(store: BlobStore, options: RegistryOptions) -> Resolver {
        Resolver { registry: Registry::new(store, options) }
    }

    /// Build the registry clients these declarations will need, without
    /// touching the network (blocking: it loads TLS roots).
    pub fn prepare<'a>(&self, decls: impl IntoIterator<Item = &'a ArtifactDecl>) {
        for decl in decls {
            if let ArtifactSource::Oci(reference) = &decl.source {
                self.registry.prepare(reference);
            }
        }
    }

    /// Get the artifact local and verified. Pins on local files are checked
    /// by hashing the file; registry artifacts are verified by the registry
    /// client before they enter the cache.
    pub async fn resolve(&self, decl: &ArtifactDecl, kind: ArtifactKind) -> Result<Resolved, ResolveError> {
        let started = Instant::now();
        match &decl.source {
            ArtifactSource::File(path) => {
                if let Some(pinned) = &decl.pin {
                    let bytes = read(path.clone()).await?;
                    let actual = Digest::of(&bytes);
                    if actual != *pinned {
                        return Err(ResolveError::PinMismatch { path: path.clone(), pinned: pinned.clone(), actual });
                    }
                }
                Ok(Resolved { path: path.clone(), pull: started.elapsed(), downloaded: 0, manifest: None })
            }
            ArtifactSource::Oci(reference) => {
                let signed_by = decl.signed_by.as_ref();
                let fetched =
                    self.registry.fetch_signed(reference, decl.pin.as_ref(), Some(kind), signed_by, &()).await?;
                Ok(Resolved {
                    path: fetched.path,
                    pull: started.elapsed(),
                    downloaded: fetched.downloaded,
                    manifest: fetched.manifest,
                })
            }
        }
    }

    /// Code precompiled for `target` that was pushed with the registry
    /// component `decl` (fetched by `manifest`), if there is some and it is
    /// signed as the component must be (see `Registry::fetch_precompiled`).
    pub async fn precompiled(
        &self,
        decl: &ArtifactDecl,
        manifest: &Digest,
        target: &str,
    ) -> Result<Option<PathBuf>, ResolveError> {
        let ArtifactSource::Oci(reference) = &decl.source else { return Ok(None) };
        let fetched = self.registry.fetch_precompiled(reference, manifest, target, decl.signed_by.as_ref()).await?;
        Ok(fetched.map(|f| f.path))
    }
}

async fn read(path: PathBuf) -> Result<Vec<u8>, ResolveError> {
    let reading = path.clone();
    tokio::task::spawn_blocking(move || std::fs::read(reading))
        .await
        .map_err(|e| ResolveError::Read { path: path.clone(), source: std::io::Error::other(e) })?
        .map_err(|source| ResolveError::Read { path, source })
}
