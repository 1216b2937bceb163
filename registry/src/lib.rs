//! OCI distribution of weir components and models.
//!
//! Every artifact weir runs is named by the digest of its bytes (`sha256:…`).
//! Components are pushed as CNCF Wasm OCI artifacts (config
//! `application/vnd.wasm.config.v0+json`, one `application/wasm` layer) and
//! models as artifacts with weir's own media types; pulls land in a
//! content-addressed cache where every blob is verified (digest and size)
//! before anything uses it. Artifacts can be signed and must be when the
//! manifest (`signed_by`) or the operator's trust policy asks (in cosign's
//! format, stored where cosign stores it).

mod artifact;
mod auth;
mod client;
mod error;
mod layers;
mod limited;
mod reference;
mod signatures;
mod signing;
mod store;
mod transfer;
mod trust;

pub use artifact::{
    precompiled_tag, ArtifactKind, PrecompiledConfig, MODEL_CONFIG_MEDIA_TYPE, MODEL_LAYER_MEDIA_TYPE,
    PRECOMPILED_ARTIFACT_TYPE, PRECOMPILED_CONFIG_MEDIA_TYPE, PRECOMPILED_LAYER_MEDIA_TYPE, WASM_CONFIG_MEDIA_TYPE,
    WASM_LAYER_MEDIA_TYPE,
};
pub use auth::{Credentials, PASSWORD_ENV, USERNAME_ENV};
pub use client::{Fetched, Progress, Pushed, Registry, RegistryOptions};
pub use error::RegistryError;
pub use reference::ArtifactRef;
pub use signatures::{signature_tag, TrustRequirement, MAX_SIGNATURE_LAYERS};
pub use signing::{KeyError, PublicKey, SignatureFault, SigningKey};
pub use store::BlobStore;
pub use trust::{TrustError, TrustPolicy};
pub use weir_core::{Digest, DigestError};
