//! kube-apiserver's side of admission: an HTTP/2 client over TLS, as its Go client talks to
//! webhooks (one connection, many reviews on it at once), for the webhook's tests and
//! benchmarks.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// TLS settings of a client: the CA it trusts, and the certificate it presents, if any.
pub fn tls_config(ca: &Path, client: Option<(&Path, &Path)>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .unwrap()
                .map(Result::unwrap)
                .collect();
            builder
                .with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key).unwrap())
                .unwrap()
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// A TLS connection to the webhook, handshake done, nothing sent.
pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    // Go's net package sets TCP_NODELAY on every connection, kube-apiserver's included.
    tcp.set_nodelay(true)?;
    TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// One HTTP/2 connection to a webhook.
#[derive(Clone)]
pub struct H2 {
    send: SendRequest<Full<Bytes>>,
}

impl H2 {
    pub async fn connect(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> H2 {
        let tls = tls_connect(addr, config).await.unwrap();
        let (send, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(connection);
        H2 { send }
    }

    /// Whether the server has closed the connection.
    pub fn is_closed(&self) -> bool {
        self.send.is_closed()
    }

    /// POSTs `body` to `path`; the status and body, or the error that ended the stream.
    pub async fn post(&self, path: &str, body: Vec<u8>) -> Result<(u16, Vec<u8>), String> {
        let mut send = self.send.clone();
        send.ready().await.map_err(|e| e.to_string())?;
        let request = hyper::Request::post(format!("https://localhost{path}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = send
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body.to_vec()))
    }

    /// Sends a review to `path` (`/validate` or `/mutate`) and returns the response review.
    pub async fn review(&self, path: &str, review: &Value) -> Value {
        let (status, body) = self
            .post(path, review.to_string().into_bytes())
            .await
            .unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }
}
