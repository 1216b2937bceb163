//! Artifact references: `oci://host[:port]/repo:tag` or `…/repo@sha256:…`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use oci_client::Reference;

use crate::error::RegistryError;
use weir_core::Digest;

/// The scheme prefix of an OCI source in `weir.toml`.
pub const OCI_SCHEME: &str = "oci://";

/// A reference to one artifact in an OCI registry. The registry host is
/// always explicit: weir never guesses Docker Hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactRef {
    reference: Reference,
    digest: Option<Digest>,
}

impl ArtifactRef {
    /// Whether `source` names an OCI artifact (rather than a local file).
    pub fn is_oci(source: &str) -> bool {
        source.starts_with(OCI_SCHEME)
    }

    pub fn registry(&self) -> &str {
        self.reference.registry()
    }

    pub fn repository(&self) -> &str {
        self.reference.repository()
    }

    pub fn tag(&self) -> Option<&str> {
        self.reference.tag()
    }

    /// The manifest digest, for `…@sha256:…` references.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The same artifact, named by its manifest digest.
    pub fn with_digest(&self, digest: &Digest) -> ArtifactRef {
        ArtifactRef {
            reference: Reference::with_digest(self.registry().into(), self.repository().into(), digest.to_string()),
            digest: Some(digest.clone()),
        }
    }

    /// Another tag in the same repository.
    pub fn with_tag(&self, tag: &str) -> ArtifactRef {
        ArtifactRef {
            reference: Reference::with_tag(self.registry().into(), self.repository().into(), tag.into()),
            digest: None,
        }
    }

    /// Loopback registries are reached over plain HTTP without being asked:
    /// nothing leaves the machine.
    pub fn is_loopback(&self) -> bool {
        let host = registry_host(self.registry());
        host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    pub(crate) fn oci(&self) -> &Reference {
        &self.reference
    }
}

/// The host part of `host[:port]` (IPv6 literals keep their brackets off).
fn registry_host(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    registry.rsplit_once(':').map_or(registry, |(host, _)| host)
}

impl FromStr for ArtifactRef {
    type Err = RegistryError;

    /// Accepts `oci://host/repo:tag`, `oci://host/repo@sha256:…` and the same
    /// without the scheme (as `docker` and `skopeo` write them).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| RegistryError::BadReference {
            reference: text.into(),
            why: format!(
                "{why}; expected `oci://HOST[:PORT]/REPOSITORY:TAG` or `oci://HOST[:PORT]/REPOSITORY@sha256:DIGEST`"
            ),
        };
        let bare = text.strip_prefix(OCI_SCHEME).unwrap_or(text);
        let (registry, _) =
            bare.split_once('/').ok_or_else(|| bad("there is no repository after the registry host"))?;
        let looks_like_host = registry.contains('.') || registry.contains(':') || registry == "localhost";
        if !looks_like_host {
            return Err(bad(&format!("`{registry}` is not a registry host (name one, e.g. `localhost:5000/{bare}`)")));
        }
        let reference = Reference::from_str(bare).map_err(|e| bad(&e.to_string()))?;
        if reference.tag().is_none() && reference.digest().is_none() {
            return Err(bad("it has neither a tag nor a digest"));
        }
        let digest = match reference.digest() {
            Some(digest) => Some(digest.parse::<Digest>().map_err(|e| bad(&e.to_string()))?),
            None => None,
        };
        Ok(ArtifactRef { reference, digest })
    }
}

impl fmt::Display for ArtifactRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{OCI_SCHEME}{}", self.reference.whole())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_tags_and_digests() {
        let r: ArtifactRef = "oci://127.0.0.1:5000/steps/scale:1.0".parse().unwrap();
        assert_eq!((r.registry(), r.repository(), r.tag()), ("127.0.0.1:5000", "steps/scale", Some("1.0")));
        assert!(r.is_loopback());
        assert_eq!(r.to_string(), "oci://127.0.0.1:5000/steps/scale:1.0");

        let r: ArtifactRef = format!("registry.example.com/m@sha256:{HEX}").parse().unwrap();
        assert_eq!(r.digest().unwrap().hex(), HEX);
        assert!(!r.is_loopback());
        assert!("localhost/x:1".parse::<ArtifactRef>().unwrap().is_loopback());
    }

    #[test]
    fn rejects_references_without_host_or_tag() {
        for bad in [
            "oci://scale:1",
            "oci://ubuntu/scale:1",
            "oci://localhost:5000",
            "oci://host.io/Bad Repo:1",
            "oci://h.io/x@sha256:12",
        ] {
            let error = bad.parse::<ArtifactRef>().unwrap_err().to_string();
            assert!(error.contains(bad) && error.contains("expected `oci://"), "{error}");
        }
    }
}
