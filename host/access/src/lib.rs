//! Who may do what. Callers present an API key (`Authorization: Bearer
//! weir_<id>_<secret>`); the key file keeps only a hash of each secret, with
//! the scopes the key holds; every endpoint states the [`Requirement`] a
//! caller must meet. The HTTP trigger asks an [`Access`] for a [`Principal`]
//! and the principal whether it meets the endpoint's requirement.
//!
//! Other ways to authenticate (OIDC, mTLS) fit behind [`Access`]: they end
//! in the same `Principal` with the same scopes.

mod audit;
mod extraction;
mod keyfile;
mod keyring;
mod quota;
mod scope;

pub use audit::{AuditEvent, AuditLog};
pub use extraction::{fingerprint, ExtractionDetector, Verdict, COOLDOWN, WINDOW};
pub use keyfile::{declaration, DeclaredKeys, KeyFile, KeyRecord, KEY_PREFIX};
pub use keyring::{Access, AuthError, Keyring, Principal};
pub use quota::{Admission, Quota, Quotas, Refusal};
pub use scope::{base_pipeline, Requirement, Scope, ScopeError};

use thiserror::Error;

/// Reading or writing the key file.
#[derive(Debug, Error)]
pub enum AccessError {
    #[error("key file {path}: {why}")]
    File { path: String, why: String },
    #[error("no key with id `{0}` in the key file (see `weir keys list`)")]
    UnknownKey(String),
    #[error(transparent)]
    Scope(#[from] ScopeError),
    #[error("a key name must be 1 to 64 characters of letters, digits, `-`, `_` and `.`; got `{0}`")]
    BadName(String),
}

impl weir_core::Classify for AccessError {
    fn kind(&self) -> weir_core::ErrorKind {
        match self {
            AccessError::File { .. } => weir_core::ErrorKind::Internal,
            AccessError::UnknownKey(_) => weir_core::ErrorKind::NotFound,
            AccessError::Scope(_) | AccessError::BadName(_) => weir_core::ErrorKind::InvalidInput,
        }
    }
}
