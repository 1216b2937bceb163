//! Signatures in cosign's format, so weir and cosign read each other's:
//! an ECDSA P-256 / SHA-256 signature (ASN.1 DER, base64) over a "simple
//! signing" JSON payload that names the signed manifest's digest; keys are
//! PEM (`PUBLIC KEY` — what `cosign generate-key-pair` writes as
//! `cosign.pub` — and PKCS#8 or SEC1 `PRIVATE KEY`).
//!
//! The payload, its media type and the annotation that carries the
//! signature are cosign's (<https://github.com/sigstore/cosign/blob/main/specs/SIGNATURE_SPEC.md>);
//! where they are stored is in [`crate::signatures`].

use base64::Engine as _;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{DerSignature, Signature, SigningKey as EcSigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use weir_core::Digest;

/// Media type of the layer holding the signed payload.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer annotation holding the base64 signature of that layer's bytes.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The `critical.type` of a container (here: artifact) signature.
const SIGNATURE_TYPE: &str = "cosign container image signature";
/// A payload larger than this is not a signature payload.
pub const MAX_PAYLOAD_BYTES: u64 = 64 << 10;

#[derive(Debug, Error)]
pub enum KeyError {
    #[error("cannot read key file `{path}`: {source}")]
    Read { path: String, source: std::io::Error },
    #[error(
        "`{path}` is not an ECDSA P-256 {what} in PEM ({why}); make a key pair with `weir signing-key new NAME`, or \
         use a cosign public key (`cosign.pub`)"
    )]
    Format { path: String, what: &'static str, why: String },
    #[error("cannot write key file `{path}`: {source}")]
    Write { path: String, source: std::io::Error },
}

/// Why a signature does not hold (one layer of a signature manifest).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignatureFault {
    #[error("the payload is not cosign simple-signing JSON: {0}")]
    Payload(String),
    #[error("the payload signs {signed}, not {wanted}")]
    OtherManifest { signed: String, wanted: Digest },
    #[error("the signature annotation is missing or not base64 DER")]
    Encoding,
    #[error("the signature does not verify with any trusted key")]
    NoTrustedKey,
}

/// A private key that signs artifacts.
pub struct SigningKey(EcSigningKey);

impl SigningKey {
    /// A new random key.
    pub fn generate() -> SigningKey {
        loop {
            // Nearly every 32-byte string is a valid scalar; retry the rest.
            if let Ok(key) = EcSigningKey::from_slice(&weir_core::secret::random_bytes::<32>()) {
                return SigningKey(key);
            }
        }
    }

    pub fn from_pem_file(path: &std::path::Path) -> Result<SigningKey, KeyError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read { path: shown.clone(), source })?;
        let format = |why: String| KeyError::Format { path: shown.clone(), what: "private key", why };
        if text.contains("ENCRYPTED") {
            return Err(format(
                "it is encrypted; weir reads unencrypted PKCS#8 keys (`openssl pkcs8 -topk8 -nocrypt`)".into(),
            ));
        }
        let key = match EcSigningKey::from_pkcs8_pem(&text) {
            Ok(key) => key,
            Err(pkcs8) => {
                let sec1 = p256::SecretKey::from_sec1_pem(&text).map_err(|_| format(pkcs8.to_string()))?;
                EcSigningKey::from(sec1)
            }
        };
        Ok(SigningKey(key))
    }

    /// Write the private key (owner-only) and its public half next to it.
    pub fn save(&self, private: &std::path::Path, public: &std::path::Path) -> Result<(), KeyError> {
        let write_error = |path: &std::path::Path| {
            let path = path.display().to_string();
            move |source| KeyError::Write { path, source }
        };
        let pem = self.0.to_pkcs8_pem(LineEnding::LF).map_err(|e| KeyError::Write {
            path: private.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
        write_private(private, pem.as_bytes()).map_err(write_error(private))?;
        std::fs::write(public, self.public().to_pem()).map_err(write_error(public))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(*self.0.verifying_key())
    }

    /// The base64 DER signature of `payload`.
    pub fn sign(&self, payload: &[u8]) -> String {
        let signature: DerSignature = self.0.sign(payload);
        base64::engine::general_purpose::STANDARD.encode(signature.as_bytes())
    }
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(bytes)
}

/// A public key that signatures are checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    pub fn from_pem(text: &str) -> Result<PublicKey, String> {
        VerifyingKey::from_public_key_pem(text).map(PublicKey).map_err(|e| e.to_string())
    }

    pub fn from_pem_file(path: &std::path::Path) -> Result<PublicKey, KeyError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read { path: shown.clone(), source })?;
        PublicKey::from_pem(&text).map_err(|why| KeyError::Format { path: shown, what: "public key", why })
    }

    pub fn to_pem(&self) -> String {
        self.0.to_public_key_pem(LineEnding::LF).expect("a P-256 public key always encodes")
    }

    /// A short name for messages and logs: the first 16 hex digits of the
    /// SHA-256 of the key's DER encoding.
    pub fn id(&self) -> String {
        let der = self.0.to_public_key_der().expect("a P-256 public key always encodes");
        Digest::of(der.as_bytes()).hex()[..16].to_string()
    }

    /// Whether `signature` (base64 DER, as cosign writes it) signs `payload`.
    pub fn verifies(&self, payload: &[u8], signature: &str) -> bool {
        let Ok(der) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else { return false };
        let Ok(signature) = Signature::from_der(&der) else { return false };
        self.0.verify(payload, &signature).is_ok()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct SimpleSigning {
    critical: Critical,
    optional: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Critical {
    identity: Identity,
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// The payload that signs `manifest` of `repository` (`registry/repo`).
pub fn payload(repository: &str, manifest: &Digest) -> Vec<u8> {
    let payload = SimpleSigning {
        critical: Critical {
            identity: Identity { docker_reference: repository.to_string() },
            image: Image { docker_manifest_digest: manifest.to_string() },
            kind: SIGNATURE_TYPE.into(),
        },
        optional: None,
    };
    serde_json::to_vec(&payload).expect("the payload always serialises")
}

/// Check one signature layer: its payload must name `manifest`, and
/// `signature` must verify with one of `keys`. Answers the key that did.
pub fn check(
    payload: &[u8],
    signature: Option<&str>,
    manifest: &Digest,
    keys: &[PublicKey],
) -> Result<PublicKey, SignatureFault> {
    let parsed: SimpleSigning = serde_json::from_slice(payload).map_err(|e| SignatureFault::Payload(e.to_string()))?;
    if parsed.critical.kind != SIGNATURE_TYPE {
        return Err(SignatureFault::Payload(format!("its type is `{}`", parsed.critical.kind)));
    }
    // The digest is what binds the signature to these bytes; the reference
    // is informational (a signed artifact may be copied to another registry).
    if parsed.critical.image.docker_manifest_digest != manifest.to_string() {
        return Err(SignatureFault::OtherManifest {
            signed: parsed.critical.image.docker_manifest_digest,
            wanted: manifest.clone(),
        });
    }
    let signature = signature.ok_or(SignatureFault::Encoding)?;
    keys.iter().find(|key| key.verifies(payload, signature)).cloned().ok_or(SignatureFault::NoTrustedKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_holds_for_its_manifest_and_key_only() {
        let key = SigningKey::generate();
        let other = SigningKey::generate();
        let manifest = Digest::of(b"manifest");
        let payload = payload("localhost:5000/weir/scale", &manifest);
        let signature = key.sign(&payload);
        assert_eq!(check(&payload, Some(&signature), &manifest, &[other.public(), key.public()]), Ok(key.public()));
        assert_eq!(check(&payload, Some(&signature), &manifest, &[other.public()]), Err(SignatureFault::NoTrustedKey));
        let elsewhere = Digest::of(b"another manifest");
        assert!(matches!(
            check(&payload, Some(&signature), &elsewhere, &[key.public()]),
            Err(SignatureFault::OtherManifest { .. })
        ));
        let mut tampered = payload.clone();
        tampered[10] ^= 1;
        assert!(check(&tampered, Some(&signature), &manifest, &[key.public()]).is_err());
        assert_eq!(check(&payload, Some("not base64!"), &manifest, &[key.public()]), Err(SignatureFault::NoTrustedKey));
        assert_eq!(check(&payload, None, &manifest, &[key.public()]), Err(SignatureFault::Encoding));
    }

    #[test]
    fn keys_round_trip_through_pem_files() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate();
        key.save(&dir.path().join("k.key"), &dir.path().join("k.pub")).unwrap();
        let loaded = SigningKey::from_pem_file(&dir.path().join("k.key")).unwrap();
        assert_eq!(loaded.public(), key.public());
        assert_eq!(PublicKey::from_pem_file(&dir.path().join("k.pub")).unwrap(), key.public());
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("k.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(key.save(&dir.path().join("k.key"), &dir.path().join("k2.pub")).is_err(), "never overwrites a key");
        std::fs::write(dir.path().join("bad.pub"), "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
            .unwrap();
        let err = PublicKey::from_pem_file(&dir.path().join("bad.pub")).unwrap_err().to_string();
        assert!(err.contains("not an ECDSA P-256 public key"), "{err}");
    }
}
