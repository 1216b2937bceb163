//! Moving bytes from a registry: a manifest read up to its limit within the
//! read timeout (authenticating once when asked), and a layer streamed into
//! the cache while hashed and cut off at its declared size.

use oci_client::manifest::OCI_IMAGE_MEDIA_TYPE;
use oci_client::secrets::RegistryAuth;

use crate::client::{lock, Progress, Registry};
use crate::error::{human_bytes, RegistryError, METADATA_HINT, TIMEOUT_SETTING};
use crate::limited::{read_limited, ReadError, VerifyingWriter};
use crate::reference::ArtifactRef;
use weir_core::Digest;

impl Registry {
    /// Get the manifest `reference` names, reading no more than the limit
    /// and within the read timeout.
    pub(crate) async fn pull_manifest(&self, reference: &ArtifactRef) -> Result<(Digest, Vec<u8>), RegistryError> {
        let deadline = self.options.connect_timeout + self.options.read_timeout;
        let (digest, bytes) = tokio::time::timeout(deadline, self.read_manifest(reference)).await.map_err(|_| {
            RegistryError::TimedOut {
                reference: reference.to_string(),
                what: "with the whole manifest".into(),
                after: deadline,
                setting: TIMEOUT_SETTING,
            }
        })??;
        if let Some(wanted) = reference.digest().filter(|wanted| **wanted != digest) {
            return Err(RegistryError::Integrity {
                reference: reference.to_string(),
                what: "the manifest".into(),
                why: format!("its digest is {digest}, not {wanted}"),
            });
        }
        Ok((digest, bytes))
    }

    pub(crate) async fn read_manifest(&self, reference: &ArtifactRef) -> Result<(Digest, Vec<u8>), RegistryError> {
        let oci = reference.oci();
        let scheme = if self.plain_http(reference) { "http" } else { "https" };
        let url = format!(
            "{scheme}://{}/v2/{}/manifests/{}",
            oci.resolve_registry(),
            oci.repository(),
            oci.digest().or(oci.tag()).unwrap_or("latest")
        );
        let key = format!("{}/{}", oci.resolve_registry(), oci.repository());
        let http = self.manifest_http();
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                self.timed_out(reference, "for the manifest", e.is_connect())
            } else {
                RegistryError::Transport { reference: reference.to_string(), message: format!("{url}: {e}") }
            }
        };
        let mut authorization = lock(&self.manifest_auth).get(&key).cloned();
        let mut authenticated = false;
        let mut response = loop {
            let mut request = http.get(&url).header(reqwest::header::ACCEPT, OCI_IMAGE_MEDIA_TYPE);
            if let Some(value) = &authorization {
                request = request.header(reqwest::header::AUTHORIZATION, value);
            }
            let response = request.send().await.map_err(transport)?;
            if response.status() != reqwest::StatusCode::UNAUTHORIZED || authenticated {
                break response;
            }
            // Authenticate as oci-client does (a bearer token from the
            // registry's realm, or basic credentials), then ask again once.
            authenticated = true;
            let client = self.client(reference).await?;
            let auth = self.auth(reference)?;
            let token = client
                .auth(oci, &auth, oci_client::RegistryOperation::Pull)
                .await
                .map_err(|e| self.oci_error(reference, "for a token", e))?;
            authorization = match (token, auth) {
                (Some(token), _) => Some(format!("Bearer {token}")),
                (None, RegistryAuth::Basic(user, password)) => {
                    use base64::Engine as _;
                    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                    Some(format!("Basic {encoded}"))
                }
                (None, _) => break response,
            };
        };
        let status = response.status();
        if !status.is_success() {
            let body = read_limited(&mut response, 4096).await.unwrap_or_default();
            let message = format!("{url}: {status}: {}", String::from_utf8_lossy(&body).trim());
            return Err(match status.as_u16() {
                401 | 403 => RegistryError::Unauthorized { reference: reference.to_string(), message },
                404 => RegistryError::NotFound { reference: reference.to_string(), message },
                _ => RegistryError::Transport { reference: reference.to_string(), message },
            });
        }
        if let Some(value) = authorization {
            lock(&self.manifest_auth).insert(key, value);
        }
        let limit = self.options.max_manifest_bytes;
        let too_large = |size: String| RegistryError::TooLarge {
            reference: reference.to_string(),
            what: "the manifest".into(),
            size,
            limit: human_bytes(limit),
            hint: METADATA_HINT,
        };
        if let Some(declared) = response.content_length().filter(|n| *n > limit) {
            return Err(too_large(format!("{} (its Content-Length)", human_bytes(declared))));
        }
        let header_digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        let bytes = match read_limited(&mut response, limit).await {
            Ok(bytes) => bytes,
            Err(ReadError::TooLong) => return Err(too_large(format!("more than {}", human_bytes(limit)))),
            Err(ReadError::Http(e)) => return Err(transport(e)),
        };
        let digest = Digest::of(&bytes);
        if let Some(header) = header_digest.filter(|h| *h != digest) {
            return Err(RegistryError::Integrity {
                reference: reference.to_string(),
                what: "the manifest".into(),
                why: format!("its digest is {digest}, but the registry's Docker-Content-Digest says {header}"),
            });
        }
        Ok((digest, bytes))
    }

    pub(crate) async fn pull_layer(
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
            return Err(integrity(format!(
                "the registry sent more than the {size} bytes the manifest declares (cut off at {size})"
            )));
        }
        let (written, actual) = writer.finish();
        match pulled {
            // Fewer bytes than declared fail oci-client's digest check: say why.
            Err(oci_client::errors::OciDistributionError::DigestError(_)) if written != size => {
                return Err(integrity(format!("it is {written} bytes, but the manifest declares {size}")));
            }
            Err(e) => return Err(self.oci_error(reference, &format!("while sending layer {content}"), e)),
            Ok(()) => {}
        }
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
