//! Auto-TLS (spec `ipa-agent.md` §1.6): a fresh EC key and a self-signed certificate whose
//! only subjectAltName (critical) is the advertise address, valid from now − clock skew for
//! 30 days. Ironic stores the PEM from the heartbeat and verifies our API with it.
//!
//! The subject also carries this boot's erase-report key (`OU=ed25519:<base64>`, see
//! `ipa_core::attest`): the certificate goes with every heartbeat and Ironic keeps it, so the
//! key that signs erase reports is on record at the control plane.

use std::net::IpAddr;
use std::path::Path;

use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, KeyPair, SerialNumber,
    SignatureAlgorithm,
};
use time::{Duration as TimeDuration, OffsetDateTime};

use crate::error::IronicError;

/// Validity of an auto-TLS certificate.
pub const VALIDITY_DAYS: i64 = 30;

/// A generated certificate and key.
#[derive(Clone)]
pub struct AutoCert {
    /// Certificate, PEM (sent as `agent_verify_ca`).
    pub cert_pem: String,
    /// PKCS#8 private key, PEM (secret).
    pub key_pem: String,
}

impl std::fmt::Debug for AutoCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutoCert").finish_non_exhaustive()
    }
}

fn der_len(n: usize, out: &mut Vec<u8>) {
    if n < 0x80 {
        out.push(n as u8);
    } else if n <= 0xff {
        out.extend([0x81, n as u8]);
    } else {
        out.extend([0x82, (n >> 8) as u8, n as u8]);
    }
}

/// DER of `GeneralNames` holding one iPAddress (or dNSName for a host name).
fn san_der(host: &str) -> Vec<u8> {
    let (tag, bytes): (u8, Vec<u8>) = match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => (0x87, v4.octets().to_vec()),
        Ok(IpAddr::V6(v6)) => (0x87, v6.octets().to_vec()),
        Err(_) => (0x82, host.as_bytes().to_vec()),
    };
    let mut name = vec![tag];
    der_len(bytes.len(), &mut name);
    name.extend(bytes);
    let mut seq = vec![0x30];
    der_len(name.len(), &mut seq);
    seq.extend(name);
    seq
}

fn algorithm(curve: &str) -> &'static SignatureAlgorithm {
    match curve.to_ascii_lowercase().as_str() {
        "p256" | "secp256r1" => &rcgen::PKCS_ECDSA_P256_SHA256,
        "p384" | "secp384r1" => &rcgen::PKCS_ECDSA_P384_SHA384,
        other => {
            tracing::warn!(curve = other, "curve not available with the ring provider; using p384");
            &rcgen::PKCS_ECDSA_P384_SHA384
        }
    }
}

/// Generate a certificate for `advertise_host`.
pub fn generate(
    advertise_host: &str,
    curve: &str,
    clock_skew_secs: u64,
    common_name: &str,
    erase_report_key: Option<&str>,
) -> Result<AutoCert, IronicError> {
    let err = |e: rcgen::Error| IronicError::AutoTls(e.to_string());
    let key = KeyPair::generate_for(algorithm(curve)).map_err(err)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(k) = erase_report_key.filter(|k| !k.is_empty()) {
        dn.push(DnType::OrganizationalUnitName, k);
    }
    params.distinguished_name = dn;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - TimeDuration::seconds(clock_skew_secs as i64);
    params.not_after = now + TimeDuration::days(VALIDITY_DAYS);
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let mut san = CustomExtension::from_oid_content(&[2, 5, 29, 17], san_der(advertise_host));
    san.set_criticality(true);
    params.custom_extensions.push(san);
    let cert = params.self_signed(&key).map_err(err)?;
    Ok(AutoCert { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// Write `agent.crt` and `agent.key` (0600) into `dir`, like IPA's `/run/ironic-python-agent`.
pub fn write_files(dir: &Path, cert: &AutoCert) -> Result<(), IronicError> {
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| IronicError::Io { what, path, source }
    };
    std::fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
    let crt = dir.join("agent.crt");
    std::fs::write(&crt, &cert.cert_pem).map_err(io("cannot write", &crt))?;
    let key = dir.join("agent.key");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&key)
            .map_err(io("cannot write", &key))?;
        f.write_all(cert.key_pem.as_bytes()).map_err(io("cannot write", &key))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn san_encoding() {
        assert_eq!(san_der("127.0.0.1"), [0x30, 6, 0x87, 4, 127, 0, 0, 1]);
        assert_eq!(san_der("::1").len(), 2 + 2 + 16);
        assert_eq!(&san_der("a.b")[..4], &[0x30, 5, 0x82, 3]);
        let long = "x".repeat(200);
        assert_eq!(&san_der(&long)[..3], &[0x30, 0x81, 203]);
    }

    #[test]
    fn certificate_has_critical_ip_san_p384_and_30_days() {
        let signer = ipa_core::attest::ReportSigner::generate();
        let c =
            generate("127.0.0.1", "p384", 3600, "agent-host", Some(signer.public_key())).unwrap();
        assert!(c.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        // The erase-report key travels in the subject.
        assert_eq!(
            ipa_core::attest::key_from_certificate(&c.cert_pem).as_deref(),
            Some(signer.public_key())
        );
        let plain = generate("127.0.0.1", "p384", 3600, "agent-host", None).unwrap();
        assert_eq!(ipa_core::attest::key_from_certificate(&plain.cert_pem), None);
        assert!(c.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let der = crate::http::pem_certs(c.cert_pem.as_bytes()).unwrap().remove(0);
        // subjectAltName OID, critical TRUE, then the IP SAN.
        assert!(contains(&der, &[0x06, 0x03, 0x55, 0x1d, 0x11, 0x01, 0x01, 0xff]));
        assert!(contains(&der, &[0x87, 0x04, 127, 0, 0, 1]));
        // secp384r1 OID.
        assert!(contains(&der, &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22]));
        // Validity: UTCTime notBefore/notAfter; check via the dates rcgen wrote.
        let now = OffsetDateTime::now_utc();
        let fmt = |t: OffsetDateTime| {
            format!("{:02}{:02}{:02}{:02}", t.year() % 100, u8::from(t.month()), t.day(), t.hour())
        };
        let nb = fmt(now - TimeDuration::hours(1));
        let na = fmt(now + TimeDuration::days(30));
        assert!(contains(&der, nb.as_bytes()), "notBefore {nb}");
        assert!(contains(&der, na.as_bytes()), "notAfter {na}");
    }

    #[tokio::test]
    async fn a_client_trusting_only_the_pem_connects_to_the_ip_with_tls13() {
        let c = generate("127.0.0.1", "p384", 3600, "agent", None).unwrap();
        let chain = crate::http::pem_certs(c.cert_pem.as_bytes()).unwrap();
        let key = rustls_pemfile::private_key(&mut c.key_pem.as_bytes()).unwrap().unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain.clone(), key)
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(s).await.unwrap();
            tls.write_all(b"hello").await.unwrap();
            tls.shutdown().await.unwrap();
        });
        let dir = tempfile::tempdir().unwrap();
        write_files(dir.path(), &c).unwrap();
        let opts = crate::http::TlsOptions {
            cafile: Some(dir.path().join("agent.crt")),
            min_version: Some("1.3".into()),
            ..Default::default()
        };
        let cfg = crate::http::client_config(&opts).unwrap();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .unwrap();
        let mut buf = String::new();
        tls.read_to_string(&mut buf).await.unwrap();
        assert_eq!(buf, "hello");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("agent.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
