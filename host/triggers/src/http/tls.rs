//! TLS for the HTTP listener (rustls, ring): a certificate chain and key
//! from PEM files, read again when either file changes (checked at most
//! every few seconds, on a handshake), so a renewed certificate is served
//! without a restart. A renewal that does not load keeps the old one.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use thiserror::Error;
use tokio_rustls::TlsAcceptor;

/// How often the files' modification times are looked at.
const RECHECK: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
#[error("TLS: {what} `{path}`: {why}")]
pub struct TlsError {
    what: &'static str,
    path: String,
    why: String,
}

/// Where the certificate chain and its key are.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl TlsFiles {
    fn load(&self) -> Result<Arc<CertifiedKey>, TlsError> {
        let fail = |what, path: &Path, why: String| TlsError { what, path: path.display().to_string(), why };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|certs| certs.collect::<Result<_, _>>())
            .map_err(|e| fail("certificate file", &self.cert, e.to_string()))?;
        if certs.is_empty() {
            return Err(fail("certificate file", &self.cert, "no PEM certificate in it".into()));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| fail("key file", &self.key, e.to_string()))?;
        let signing = rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| fail("key file", &self.key, format!("not a usable private key: {e}")))?;
        let certified = CertifiedKey::new(certs, signing);
        certified
            .keys_match()
            .map_err(|e| fail("key file", &self.key, format!("does not match the certificate: {e}")))?;
        Ok(Arc::new(certified))
    }

    fn stamps(&self) -> (Option<SystemTime>, Option<SystemTime>) {
        (modified(&self.cert), modified(&self.key))
    }
}

struct Current {
    checked: Instant,
    stamps: (Option<SystemTime>, Option<SystemTime>),
    key: Arc<CertifiedKey>,
}

#[derive(Debug)]
struct Reloading {
    files: TlsFiles,
    current: RwLock<Current>,
}

impl std::fmt::Debug for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Current").field("stamps", &self.stamps).finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        {
            let current = self.current.read().unwrap_or_else(|p| p.into_inner());
            if current.checked.elapsed() < RECHECK {
                return Some(current.key.clone());
            }
        }
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        current.checked = Instant::now();
        let stamps = self.files.stamps();
        if stamps != current.stamps {
            current.stamps = stamps;
            match self.files.load() {
                Ok(key) => {
                    tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                    current.key = key;
                }
                Err(error) => tracing::error!(%error, "TLS certificate changed but does not load; serving the old one"),
            }
        }
        Some(current.key.clone())
    }
}

/// Whether `files` load (for a clear error before anything starts).
pub fn check(files: &TlsFiles) -> Result<(), TlsError> {
    files.load().map(drop)
}

/// An acceptor serving `files` (HTTP/1.1 over TLS 1.2 and 1.3).
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let key = files.load()?;
    let resolver = Reloading {
        files: files.clone(),
        current: RwLock::new(Current { checked: Instant::now(), stamps: files.stamps(), key }),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError { what: "configuration", path: String::new(), why: e.to_string() })?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
