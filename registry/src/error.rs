//! Everything that can go wrong between weir and a registry, each naming the
//! reference it concerns and, where there is one, what to do about it.

use thiserror::Error;

use weir_core::Digest;

#[derive(Debug, Error)]
pub enum RegistryError {
    #[error("`{reference}` is not an OCI reference: {why}")]
    BadReference { reference: String, why: String },
    #[error("cannot read `{path}`: {why}")]
    Input { path: String, why: String },
    #[error("`{what}` cannot be pushed: {why}")]
    NotPushable { what: String, why: String },
    #[error("credentials for `{registry}`: {why}")]
    Credentials { registry: String, why: String },
    #[error(
        "{reference}: the registry refused our credentials ({message}); log in with `--username` and \
         `--password-stdin`, set WEIR_REGISTRY_USERNAME and WEIR_REGISTRY_PASSWORD, or add them to ~/.docker/config.json"
    )]
    Unauthorized { reference: String, message: String },
    #[error("{reference}: not found in the registry ({message})")]
    NotFound { reference: String, message: String },
    #[error("{reference}: the registry could not be reached or failed: {message}")]
    Transport { reference: String, message: String },
    #[error("{reference}: the manifest is not a single-artifact OCI image manifest: {why}")]
    BadManifest { reference: String, why: String },
    #[error("{reference}: it is a {found}, not a {wanted}")]
    WrongKind { reference: String, wanted: String, found: String },
    #[error("{reference}: {what} failed verification, nothing was run: {why}")]
    Integrity { reference: String, what: String, why: String },
    #[error(
        "{reference}: the pinned digest {pinned} matches neither the manifest ({manifest}) nor the content \
         ({content}); the tag now points at something else — update the pin if that is intended"
    )]
    PinMismatch { reference: String, pinned: Digest, manifest: Digest, content: Digest },
    #[error("the local artifact cache at `{path}` failed: {why}")]
    Store { path: String, why: String },
    /// Something the registry serves (or declares) is over one of weir's
    /// limits; refused before it is downloaded or as soon as it crosses it.
    #[error("{reference}: {what} is {size}, over the {limit} limit; nothing was run. {hint}")]
    TooLarge { reference: String, what: String, size: String, limit: String, hint: &'static str },
    #[error(
        "{reference}: the manifest lists {count} layers, over the limit of {limit}; a weir artifact has exactly \
         one layer (push it with `weir push`)"
    )]
    TooManyLayers { reference: String, count: usize, limit: usize },
    /// The policy asks for a signature by a trusted key and there is none.
    #[error(
        "{reference}: refused, nothing was run: {why}. Sign it with `weir push --sign KEY` (or `weir sign`), or \
         trust the key that signed it (`signed_by` in weir.toml, or the trust policy)"
    )]
    SignatureRequired { reference: String, why: String },
    #[error(
        "{reference}: the registry did not answer {what} within {after:?}; it may be down or overloaded (the \
         limit is `{setting}`)"
    )]
    TimedOut { reference: String, what: String, after: std::time::Duration, setting: &'static str },
}

impl RegistryError {
    /// Classify an oci-client error for `reference`.
    pub(crate) fn from_oci(reference: impl ToString, error: oci_client::errors::OciDistributionError) -> RegistryError {
        use oci_client::errors::OciDistributionError as E;
        let reference = reference.to_string();
        let message = error.to_string();
        let status = match &error {
            E::RequestError(e) => e.status().map(|s| s.as_u16()),
            E::ServerError { code, .. } => Some(*code),
            _ => None,
        };
        match status {
            Some(401 | 403) => return RegistryError::Unauthorized { reference, message },
            Some(404) => return RegistryError::NotFound { reference, message },
            _ => {}
        }
        match &error {
            E::AuthenticationFailure(_) | E::UnauthorizedError { .. } => {
                RegistryError::Unauthorized { reference, message }
            }
            E::ImageManifestNotFoundError(_) => RegistryError::NotFound { reference, message },
            E::RegistryError { envelope, .. }
                if envelope.errors.iter().any(|e| {
                    matches!(
                        e.code,
                        oci_client::errors::OciErrorCode::Unauthorized | oci_client::errors::OciErrorCode::Denied
                    )
                }) =>
            {
                RegistryError::Unauthorized { reference, message }
            }
            E::RegistryError { envelope, .. }
                if envelope.errors.iter().any(|e| {
                    matches!(
                        e.code,
                        oci_client::errors::OciErrorCode::ManifestUnknown
                            | oci_client::errors::OciErrorCode::NameUnknown
                            | oci_client::errors::OciErrorCode::BlobUnknown
                    )
                }) =>
            {
                RegistryError::NotFound { reference, message }
            }
            E::DigestError(_) => RegistryError::Integrity { reference, what: "a blob".into(), why: message },
            _ => RegistryError::Transport { reference, message },
        }
    }
}

impl weir_core::Classify for RegistryError {
    /// What the user typed is their input; what the registry said (or
    /// served) is the registry's.
    fn kind(&self) -> weir_core::ErrorKind {
        match self {
            RegistryError::BadReference { .. } | RegistryError::Input { .. } | RegistryError::NotPushable { .. } => {
                weir_core::ErrorKind::InvalidInput
            }
            _ => weir_core::ErrorKind::Registry,
        }
    }
}

/// What to do about an artifact over `--max-artifact-size`.
pub(crate) const BLOB_HINT: &str =
    "If the artifact is genuine, raise the limit (`--max-artifact-size`); otherwise do not trust this registry";
/// What to do about a manifest or config over weir's fixed limits.
pub(crate) const METADATA_HINT: &str =
    "A weir artifact's manifest and config are a few KiB: this registry is not serving a weir artifact";
/// The flags that set the read and connect timeouts.
pub(crate) const TIMEOUT_SETTING: &str = "--registry-timeout";
pub(crate) const CONNECT_TIMEOUT_SETTING: &str = "--registry-connect-timeout";

/// `123 bytes`, `4 MiB`, `2.5 GiB`: sizes in messages people read.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if n >= unit {
            let value = n as f64 / unit as f64;
            return if n.is_multiple_of(unit) {
                format!("{} {name}", n / unit)
            } else {
                format!("{value:.1} {name} ({n} bytes)")
            };
        }
    }
    format!("{n} bytes")
}
