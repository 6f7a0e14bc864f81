//! One outbound TLS policy for every client in the workspace (IPA's `insecure`, `cafile`,
//! `certfile`, `keyfile`).
//!
//! * `cafile` **replaces** the system trust store, as `requests`' `verify=<path>` does in IPA;
//!   a file without any certificate is an error, not "trust nothing".
//! * `insecure` accepts any server certificate but still checks handshake signatures.
//! * `certfile` + `keyfile` present a client certificate (both or neither).
//! * `min_version = "1.3"` restricts to TLS 1.3; otherwise 1.2 and 1.3.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::HttpError;

/// Outbound TLS settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsPolicy {
    /// CA bundle (PEM) replacing the system trust store.
    pub cafile: Option<PathBuf>,
    /// Client certificate chain (PEM).
    pub certfile: Option<PathBuf>,
    /// Client private key (PEM).
    pub keyfile: Option<PathBuf>,
    /// Do not verify the server certificate.
    pub insecure: bool,
    /// `1.3` restricts to TLS 1.3.
    pub min_version: Option<String>,
}

fn read(path: &Path) -> Result<Vec<u8>, HttpError> {
    std::fs::read(path).map_err(|source| HttpError::Io { path: path.to_path_buf(), source })
}

/// Every certificate in a PEM bundle.
pub fn pem_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, HttpError> {
    rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| HttpError::Tls(format!("invalid PEM certificate: {e}")))
}

impl TlsPolicy {
    /// The rustls configuration (ring provider).
    pub fn client_config(&self) -> Result<ClientConfig, HttpError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] =
            if self.min_version.as_deref() == Some("1.3") {
                &[&rustls::version::TLS13]
            } else {
                &[&rustls::version::TLS13, &rustls::version::TLS12]
            };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| HttpError::Tls(e.to_string()))?;
        let builder = if self.insecure {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        } else {
            let mut roots = RootCertStore::empty();
            match &self.cafile {
                Some(path) => {
                    for c in pem_certs(&read(path)?)? {
                        roots
                            .add(c)
                            .map_err(|e| HttpError::Tls(format!("{}: {e}", path.display())))?;
                    }
                    if roots.is_empty() {
                        return Err(HttpError::Tls(format!(
                            "{}: no certificate found",
                            path.display()
                        )));
                    }
                }
                None => {
                    for c in rustls_native_certs::load_native_certs().certs {
                        let _ = roots.add(c);
                    }
                }
            }
            builder.with_root_certificates(roots)
        };
        match (&self.certfile, &self.keyfile) {
            (Some(cert), Some(key)) => {
                let chain = pem_certs(&read(cert)?)?;
                let key_pem = read(key)?;
                let k: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])
                    .map_err(|e| HttpError::Tls(format!("{}: {e}", key.display())))?
                    .ok_or_else(|| {
                        HttpError::Tls(format!("{}: no private key found", key.display()))
                    })?;
                builder
                    .with_client_auth_cert(chain, k)
                    .map_err(|e| HttpError::Tls(format!("client certificate: {e}")))
            }
            (None, None) => Ok(builder.with_no_client_auth()),
            _ => Err(HttpError::Tls("certfile and keyfile must be given together".into())),
        }
    }
}

/// `insecure`: any server certificate, but handshake signatures are still verified.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_ca_file_is_an_error_and_a_half_client_identity_too() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let p = TlsPolicy { cafile: Some(empty), ..Default::default() };
        assert!(p.client_config().unwrap_err().to_string().contains("no certificate"));
        let p = TlsPolicy { certfile: Some(dir.path().join("c.pem")), ..Default::default() };
        assert!(p.client_config().is_err());
        let missing = TlsPolicy { cafile: Some(dir.path().join("nope")), ..Default::default() };
        assert!(matches!(missing.client_config(), Err(HttpError::Io { .. })));
        assert!(TlsPolicy::default().client_config().is_ok());
        assert!(TlsPolicy { insecure: true, ..Default::default() }.client_config().is_ok());
    }
}
