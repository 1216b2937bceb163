//! Where a component or model comes from: a local file or an OCI
//! reference, optionally pinned to a digest.

use std::path::PathBuf;

use weir_core::Digest;
use weir_registry::{ArtifactRef, TrustRequirement};

use crate::place::Location;

/// A `source` of `weir.toml`, with its optional `digest` pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactDecl {
    pub source: ArtifactSource,
    /// Must match the artifact's content digest (or, for OCI, its manifest digest).
    pub pin: Option<Digest>,
    /// Keys one of which must have signed it (`signed_by`, OCI only).
    pub signed_by: Option<TrustRequirement>,
    /// Where `source` was written (for the file check's errors).
    pub declared_at: Location,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactSource {
    File(PathBuf),
    Oci(ArtifactRef),
}

impl std::fmt::Display for ArtifactSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArtifactSource::File(path) => write!(f, "{}", path.display()),
            ArtifactSource::Oci(reference) => write!(f, "{reference}"),
        }
    }
}

impl ArtifactDecl {
    pub fn file(path: impl Into<PathBuf>) -> ArtifactDecl {
        ArtifactDecl {
            source: ArtifactSource::File(path.into()),
            pin: None,
            signed_by: None,
            declared_at: Location::default(),
        }
    }

    pub fn oci(reference: ArtifactRef) -> ArtifactDecl {
        ArtifactDecl {
            source: ArtifactSource::Oci(reference),
            pin: None,
            signed_by: None,
            declared_at: Location::default(),
        }
    }

    /// Whether getting it needs anything beyond reading a file.
    pub fn is_deferred(&self) -> bool {
        matches!(self.source, ArtifactSource::Oci(_)) || self.pin.is_some()
    }
}
