//! A small HTTP/1.1 client on hyper with rustls (ring): one connection per request.
//!
//! The agent talks to Ironic a few times a minute at most, so connection reuse buys nothing and
//! a fresh connection per request keeps failure handling simple (a dead conductor never leaves a
//! half-open pooled connection behind).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::error::IronicError;

/// Largest response body accepted (lookup replies carry the whole node).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Outbound TLS options (IPA's `cafile`, `certfile`, `keyfile`, `insecure`).
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// CA bundle (PEM); default: the system's trust store.
    pub cafile: Option<std::path::PathBuf>,
    /// Client certificate (PEM).
    pub certfile: Option<std::path::PathBuf>,
    /// Client key (PEM).
    pub keyfile: Option<std::path::PathBuf>,
    /// Do not verify the server certificate.
    pub insecure: bool,
    /// `1.3` restricts to TLS 1.3; anything else allows 1.2–1.3.
    pub min_version: Option<String>,
}

/// A response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status.
    pub status: StatusCode,
    /// Body.
    pub body: Bytes,
}

/// The client.
#[derive(Clone)]
pub struct HttpClient {
    tls: Arc<ClientConfig>,
    timeout: Duration,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, IronicError> {
    std::fs::read(path).map_err(|source| IronicError::Io {
        what: "cannot read",
        path: path.to_path_buf(),
        source,
    })
}

/// Parse every certificate in a PEM bundle.
pub fn pem_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, IronicError> {
    rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| IronicError::TlsSetup(format!("invalid PEM certificate: {e}")))
}

/// Build a rustls client configuration.
pub fn client_config(opts: &TlsOptions) -> Result<ClientConfig, IronicError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] =
        if opts.min_version.as_deref() == Some("1.3") {
            &[&rustls::version::TLS13]
        } else {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| IronicError::TlsSetup(e.to_string()))?;
    let builder = if opts.insecure {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify(provider.clone())))
    } else {
        let mut roots = RootCertStore::empty();
        match &opts.cafile {
            Some(path) => {
                for c in pem_certs(&read_file(path)?)? {
                    roots
                        .add(c)
                        .map_err(|e| IronicError::TlsSetup(format!("{}: {e}", path.display())))?;
                }
                if roots.is_empty() {
                    return Err(IronicError::TlsSetup(format!(
                        "{}: no certificate found",
                        path.display()
                    )));
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                for c in native.certs {
                    let _ = roots.add(c);
                }
            }
        }
        builder.with_root_certificates(roots)
    };
    match (&opts.certfile, &opts.keyfile) {
        (Some(cert), Some(key)) => {
            let chain = pem_certs(&read_file(cert)?)?;
            let key_pem = read_file(key)?;
            let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])
                .map_err(|e| IronicError::TlsSetup(format!("{}: {e}", key.display())))?
                .ok_or_else(|| {
                    IronicError::TlsSetup(format!("{}: no private key found", key.display()))
                })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| IronicError::TlsSetup(format!("client certificate: {e}")))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// `ipa-insecure`: accept any server certificate, but still check handshake signatures.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Split `url` into (https?, host without brackets, port).
pub fn split_url(url: &str) -> Result<(bool, String, u16, Uri), IronicError> {
    let bad = |reason: &str| IronicError::Url { url: url.to_string(), reason: reason.into() };
    let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(bad("scheme must be http or https")),
    };
    let host = uri.host().ok_or_else(|| bad("no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    Ok((https, host, port, uri))
}

impl HttpClient {
    /// A client with `opts` and a per-request `timeout`.
    pub fn new(opts: &TlsOptions, timeout: Duration) -> Result<Self, IronicError> {
        Ok(Self { tls: Arc::new(client_config(opts)?), timeout })
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Send one request; any HTTP status is a successful exchange.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Response, IronicError> {
        let secs = self.timeout.as_secs();
        match tokio::time::timeout(self.timeout, self.exchange(method.clone(), url, headers, body))
            .await
        {
            Ok(r) => r,
            Err(_) => {
                Err(IronicError::Timeout { method: method.to_string(), url: url.into(), secs })
            }
        }
    }

    async fn exchange(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Response, IronicError> {
        let conn_err = |reason: String| IronicError::Connection {
            method: method.to_string(),
            url: url.to_string(),
            reason,
        };
        let (https, host, port, uri) = split_url(url)?;
        let tcp =
            TcpStream::connect((host.as_str(), port)).await.map_err(|e| conn_err(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = if https {
            let name = ServerName::try_from(host.clone())
                .map_err(|e| conn_err(format!("bad TLS server name: {e}")))?;
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| conn_err(format!("TLS handshake: {e}")))?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| conn_err(e.to_string()))?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_string();
        let authority = uri.authority().map(|a| a.as_str().to_string()).unwrap_or_default();
        let mut req = Request::builder().method(method.clone()).uri(path).header("host", authority);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| conn_err(e.to_string()))?;
        let resp = sender.send_request(req).await.map_err(|e| conn_err(e.to_string()))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| conn_err(format!("reading the answer: {e}")))?
            .to_bytes();
        driver.abort();
        Ok(Response { status, body })
    }
}
