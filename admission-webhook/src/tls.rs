//! TLS for the webhook: 1.2 and 1.3 only, an optional client CA, and a serving certificate that
//! is reloaded when its files change. A bad new pair keeps the old one in service.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::ring as provider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The error a TLS file or setting failed with, kept as the [`TlsError`]'s source.
type Cause = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: Cause,
    },
    #[error("{}: no certificate found (expected PEM \"CERTIFICATE\" blocks)", .0.display())]
    NoCertificate(PathBuf),
    #[error("{} and {}: the private key does not match the certificate", cert.display(), key.display())]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("client CA {}", path.display())]
    ClientCa {
        path: PathBuf,
        #[source]
        source: Cause,
    },
    #[error("client CA {}: no certificate found", .0.display())]
    NoClientCa(PathBuf),
    #[error("building the TLS configuration")]
    Config(#[source] rustls::Error),
}

/// Reads a PEM certificate chain and private key into a signing key for rustls.
pub fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    fn file_error(path: &Path) -> impl Fn(Cause) -> TlsError + '_ {
        move |source| TlsError::File {
            path: path.to_path_buf(),
            source,
        }
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_error(cert)(e.into()))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(cert)(e.into()))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_path_buf()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error(key)(e.into()))?;
    let signer =
        provider::sign::any_supported_type(&private).map_err(|e| file_error(key)(e.into()))?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(|_| TlsError::Mismatch {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
    })?;
    Ok(certified)
}

/// The serving certificate, swappable while connections are being accepted.
#[derive(Debug)]
pub struct CertStore {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertStore {
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let pair = load_pair(cert, key)?;
        Ok(CertStore {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new(Arc::new(pair)),
        })
    }

    /// Reads the files again; on failure the pair in service stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let pair = load_pair(&self.cert, &self.key)?;
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        *current = Arc::new(pair);
        Ok(())
    }

    pub fn paths(&self) -> [PathBuf; 2] {
        [self.cert.clone(), self.key.clone()]
    }

    fn get(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// The server configuration: TLS 1.2+, HTTP/2 and HTTP/1.1 by ALPN, client certificates
/// required and verified against `client_ca` when given.
pub fn server_config(
    store: Arc<CertStore>,
    client_ca: Option<&Path>,
) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(provider::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Config)?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let ca_error = |source: Cause| TlsError::ClientCa {
                path: path.to_path_buf(),
                source,
            };
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| ca_error(e.into()))? {
                let cert = cert.map_err(|e| ca_error(e.into()))?;
                roots.add(cert).map_err(|e| ca_error(e.into()))?;
            }
            if roots.is_empty() {
                return Err(TlsError::NoClientCa(path.to_path_buf()));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| ca_error(e.into()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
