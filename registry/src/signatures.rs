//! Where signatures live, as cosign keeps them: the signature manifest of
//! artifact manifest `sha256:H` is tagged `sha256-H.sig` in the artifact's
//! repository; each of its layers is a simple-signing payload
//! (`application/vnd.dev.cosign.simplesigning.v1+json`) with the signature
//! in the layer's `dev.cosignproject.cosign/signature` annotation. Signing
//! again with another key adds a layer; the others are kept.
//!
//! Everything read here comes from an untrusted registry: the signature
//! manifest is read within the manifest limit, at most
//! [`MAX_SIGNATURE_LAYERS`] layers are looked at, and each payload is read
//! up to [`MAX_PAYLOAD_BYTES`] and checked against its digest before it is
//! parsed.

use std::collections::BTreeMap;

use oci_client::manifest::{OciDescriptor, OciImageManifest, IMAGE_CONFIG_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE};

use crate::client::{lock, Registry};
use crate::error::RegistryError;
use crate::layers::parse_manifest;
use crate::limited::VerifyingWriter;
use crate::reference::ArtifactRef;
use crate::signing::{self, PublicKey, SigningKey, MAX_PAYLOAD_BYTES, SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE};
use weir_core::Digest;

/// Signature layers looked at per artifact; more is a registry stuffing it.
pub const MAX_SIGNATURE_LAYERS: usize = 32;

/// Keys an artifact must be signed by (any one of them), and who said so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustRequirement {
    pub keys: Vec<PublicKey>,
    /// Where the requirement comes from, for messages.
    pub from: String,
}

/// The tag cosign stores `manifest`'s signatures under.
pub fn signature_tag(manifest: &Digest) -> String {
    format!("sha256-{}.sig", manifest.hex())
}

fn signature_ref(reference: &ArtifactRef, manifest: &Digest) -> Result<ArtifactRef, RegistryError> {
    format!("oci://{}/{}:{}", reference.registry(), reference.repository(), signature_tag(manifest)).parse()
}

impl Registry {
    /// The manifest digest `reference` names now (asks the registry for a tag).
    pub async fn manifest_digest(&self, reference: &ArtifactRef) -> Result<Digest, RegistryError> {
        match reference.digest() {
            Some(digest) => Ok(digest.clone()),
            None => Ok(self.pull_manifest(reference).await?.0),
        }
    }

    /// Sign the artifact whose manifest is `manifest` (in `reference`'s
    /// repository) with `key`, and push the signature next to it. Answers
    /// the signature manifest's digest.
    pub async fn sign(
        &self,
        reference: &ArtifactRef,
        manifest: &Digest,
        key: &SigningKey,
    ) -> Result<Digest, RegistryError> {
        let at = signature_ref(reference, manifest)?;
        let payload = signing::payload(&format!("{}/{}", reference.registry(), reference.repository()), manifest);
        let signature = key.sign(&payload);
        let payload_digest = Digest::of(&payload);
        // Keep other signers' layers; replace this key's earlier one.
        let mut layers = match self.read_manifest(&at).await {
            Ok((_, bytes)) => parse_manifest(&at, &bytes)?.layers,
            Err(RegistryError::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        let public = key.public();
        layers.retain(|layer| {
            let signed = layer.annotations.as_ref().and_then(|a| a.get(SIGNATURE_ANNOTATION));
            !(layer.media_type == SIMPLE_SIGNING_MEDIA_TYPE && signed.is_some_and(|s| public.verifies(&payload, s)))
        });
        layers.push(OciDescriptor {
            media_type: SIMPLE_SIGNING_MEDIA_TYPE.into(),
            digest: payload_digest.to_string(),
            size: payload.len() as i64,
            urls: None,
            artifact_type: None,
            annotations: Some(BTreeMap::from([(SIGNATURE_ANNOTATION.to_string(), signature)])),
        });
        let config = cosign_config(&layers);
        let config_digest = Digest::of(&config);
        let manifest_json = OciImageManifest {
            schema_version: 2,
            media_type: Some(OCI_IMAGE_MEDIA_TYPE.into()),
            config: OciDescriptor {
                media_type: IMAGE_CONFIG_MEDIA_TYPE.into(),
                digest: config_digest.to_string(),
                size: config.len() as i64,
                urls: None,
                artifact_type: None,
                annotations: None,
            },
            layers,
            subject: None,
            artifact_type: None,
            annotations: None,
        };
        let bytes = serde_json::to_vec(&manifest_json)
            .map_err(|e| RegistryError::NotPushable { what: "the signature".into(), why: e.to_string() })?;
        let client = self.client(&at).await?;
        let target = at.oci();
        let oci_error = |e| RegistryError::from_oci(&at, e);
        client.auth(target, &self.auth(&at)?, oci_client::RegistryOperation::Push).await.map_err(oci_error)?;
        client.push_blob(target, payload, &payload_digest.to_string()).await.map_err(oci_error)?;
        client.push_blob(target, config, &config_digest.to_string()).await.map_err(oci_error)?;
        let content_type = OCI_IMAGE_MEDIA_TYPE.parse().expect("a valid header value");
        client.push_manifest_raw(target, bytes.clone(), content_type).await.map_err(oci_error)?;
        Ok(Digest::of(&bytes))
    }

    /// The key of `requirement` that signed `manifest`, or why none did.
    /// A verdict is remembered for the life of the client, so a cold start
    /// after scale-to-zero does not ask the registry again.
    pub async fn verify_signature(
        &self,
        reference: &ArtifactRef,
        manifest: &Digest,
        requirement: &TrustRequirement,
    ) -> Result<PublicKey, RegistryError> {
        let remembered = {
            let verified = lock(&self.verified_signatures);
            requirement.keys.iter().find(|key| verified.contains(&(manifest.clone(), key.id()))).cloned()
        };
        if let Some(key) = remembered {
            return Ok(key);
        }
        let refuse = |why: String| RegistryError::SignatureRequired {
            reference: reference.to_string(),
            why: format!("{why} (required by {})", requirement.from),
        };
        let at = signature_ref(reference, manifest)?;
        let bytes = match self.read_manifest(&at).await {
            Ok((_, bytes)) => bytes,
            Err(RegistryError::NotFound { .. }) => {
                return Err(refuse(format!("it is not signed (the repository has no `{}`)", signature_tag(manifest))))
            }
            Err(e) => return Err(e),
        };
        let signatures = parse_manifest(&at, &bytes)?;
        let layers: Vec<&OciDescriptor> =
            signatures.layers.iter().filter(|l| l.media_type == SIMPLE_SIGNING_MEDIA_TYPE).collect();
        if layers.len() > MAX_SIGNATURE_LAYERS {
            return Err(refuse(format!(
                "it lists {} signatures, over the limit of {MAX_SIGNATURE_LAYERS}",
                layers.len()
            )));
        }
        let mut faults = Vec::new();
        for layer in &layers {
            let payload = match self.read_payload(&at, layer).await {
                Ok(payload) => payload,
                Err(why) => {
                    faults.push(why);
                    continue;
                }
            };
            let signature = layer.annotations.as_ref().and_then(|a| a.get(SIGNATURE_ANNOTATION));
            match signing::check(&payload, signature.map(String::as_str), manifest, &requirement.keys) {
                Ok(key) => {
                    lock(&self.verified_signatures).insert((manifest.clone(), key.id()));
                    return Ok(key);
                }
                Err(fault) => faults.push(fault.to_string()),
            }
        }
        if faults.is_empty() {
            return Err(refuse("its signature manifest holds no signature".into()));
        }
        Err(refuse(format!("no signature holds: {}", faults.join("; "))))
    }

    /// One signature payload, no larger than a payload can be, matching its digest.
    async fn read_payload(&self, at: &ArtifactRef, layer: &OciDescriptor) -> Result<Vec<u8>, String> {
        let size = u64::try_from(layer.size).map_err(|_| format!("a payload size of {}", layer.size))?;
        if size > MAX_PAYLOAD_BYTES {
            return Err(format!("a payload of {size} bytes, over {MAX_PAYLOAD_BYTES}"));
        }
        let client = self.client(at).await.map_err(|e| e.to_string())?;
        let mut payload = Vec::new();
        let mut writer = VerifyingWriter::new(&mut payload, size, &());
        let pulled = client.pull_blob(at.oci(), layer, &mut writer).await;
        let (written, digest) = writer.finish();
        let mismatch = || format!("a payload that does not match its digest {}", layer.digest);
        match pulled {
            Err(oci_client::errors::OciDistributionError::DigestError(_)) => return Err(mismatch()),
            Err(e) => return Err(format!("its payload could not be read: {e}")),
            Ok(()) => {}
        }
        if written != size || digest.to_string() != layer.digest {
            return Err(mismatch());
        }
        Ok(payload)
    }
}

/// The image config cosign writes for a signature manifest.
fn cosign_config(layers: &[OciDescriptor]) -> Vec<u8> {
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.digest.as_str()).collect();
    let config = serde_json::json!({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {}
    });
    serde_json::to_vec(&config).expect("the config always serialises")
}
