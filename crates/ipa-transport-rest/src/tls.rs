//! Server TLS from [`ServerTls`] (spec `ipa-agent.md` §1.6): rustls with the ring provider,
//! TLS 1.2–1.3 (`min_version = "1.2"`) or 1.3 only (`"1.3"`), TLS 1.2 suites from the
//! OpenSSL-style `cipher_suites` list (IPA's four ECDHE-GCM suites by default), no client
//! certificates. Public so the lifecycle code can build the same acceptor for auto-TLS.

use std::sync::Arc;

use ipa_core::transport::ServerTls;
use rustls::crypto::CryptoProvider;
use rustls::crypto::ring as ring_provider;
use rustls::{ServerConfig, SupportedCipherSuite};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::error::RestError;

/// IPA's default TLS 1.2 cipher list (`ipa-agent.md` §1.6).
pub const DEFAULT_TLS12_CIPHERS: &str = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256:\
ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256";

/// OpenSSL name → rustls TLS 1.2 suite, for the suites the ring provider implements.
fn tls12_suite(openssl_name: &str) -> Option<SupportedCipherSuite> {
    use ring_provider::cipher_suite as cs;
    Some(match openssl_name {
        "ECDHE-ECDSA-AES256-GCM-SHA384" => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "ECDHE-ECDSA-AES128-GCM-SHA256" => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "ECDHE-RSA-AES256-GCM-SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "ECDHE-RSA-AES128-GCM-SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "ECDHE-ECDSA-CHACHA20-POLY1305" => cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        "ECDHE-RSA-CHACHA20-POLY1305" => cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        _ => return None,
    })
}

fn tls_err(reason: impl Into<String>) -> RestError {
    RestError::Tls { reason: reason.into() }
}

/// Build the rustls server configuration for `tls`.
pub fn server_config(tls: &ServerTls) -> Result<Arc<ServerConfig>, RestError> {
    let versions: &[&'static rustls::SupportedProtocolVersion] = match tls.min_version.trim() {
        "1.2" | "" => &[&rustls::version::TLS13, &rustls::version::TLS12],
        "1.3" => &[&rustls::version::TLS13],
        other => {
            return Err(tls_err(format!("unsupported tls_min_version {other:?} (use 1.2 or 1.3)")));
        }
    };

    let list = tls.cipher_suites.as_deref().filter(|s| !s.trim().is_empty());
    let mut tls12 = Vec::new();
    for name in list.unwrap_or(DEFAULT_TLS12_CIPHERS).split([':', ',', ' ']) {
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        match tls12_suite(name) {
            Some(s) if !tls12.contains(&s) => tls12.push(s),
            Some(_) => {}
            None => tracing::warn!(cipher = name, "TLS 1.2 cipher suite not supported; ignored"),
        }
    }
    if tls12.is_empty() && versions.contains(&&rustls::version::TLS12) {
        return Err(tls_err(format!(
            "no supported TLS 1.2 cipher suite in {:?}",
            list.unwrap_or_default()
        )));
    }
    let base = ring_provider::default_provider();
    let mut suites: Vec<SupportedCipherSuite> =
        base.cipher_suites.iter().copied().filter(|s| s.tls13().is_some()).collect();
    suites.extend(tls12);
    let provider = CryptoProvider { cipher_suites: suites, ..base };

    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| tls_err(format!("cannot parse certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(tls_err("no certificate in the certificate PEM"));
    }
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes())
        .map_err(|e| tls_err(format!("cannot parse private key PEM: {e}")))?;

    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .map_err(|e| tls_err(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls_err(format!("certificate and key do not form a usable pair: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A TLS acceptor for `tls` (what the REST transport wraps accepted connections with).
pub fn tls_acceptor(tls: &ServerTls) -> Result<TlsAcceptor, RestError> {
    server_config(tls).map(TlsAcceptor::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(min: &str, ciphers: Option<&str>) -> ServerTls {
        ServerTls {
            cert_pem: "not a cert".into(),
            key_pem: "not a key".into(),
            min_version: min.into(),
            cipher_suites: ciphers.map(str::to_string),
        }
    }

    #[test]
    fn bad_inputs_are_tls_errors_not_panics() {
        let e = server_config(&tls("1.1", None)).unwrap_err().to_string();
        assert!(e.contains("unsupported tls_min_version"), "{e}");
        let e = server_config(&tls("1.2", Some("RC4-MD5"))).unwrap_err().to_string();
        assert!(e.contains("no supported TLS 1.2 cipher suite"), "{e}");
        let e = server_config(&tls("1.2", None)).unwrap_err().to_string();
        assert!(e.contains("certificate"), "{e}");
    }

    #[test]
    fn openssl_names_map_to_ring_suites() {
        for n in DEFAULT_TLS12_CIPHERS.split(':') {
            assert!(tls12_suite(n).is_some(), "{n}");
        }
    }
}
