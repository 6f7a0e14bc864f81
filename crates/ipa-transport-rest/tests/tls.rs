//! Static TLS with a certificate made by rcgen: TLS 1.2 and TLS 1.3 handshakes both succeed
//! with `min_version = "1.2"`, `"1.3"` refuses TLS 1.2, the cipher list restricts TLS 1.2, and
//! the API works the same over HTTPS.

mod common;

use std::sync::Arc;

use common::client::{ClientError, RestClient};
use http::Method;
use ipa_core::transport::ServerTls;
use ipa_test_support::{Harness, TEST_TOKEN};
use ipa_transport_rest::RestTransport;
use rustls::crypto::ring as ring_provider;
use rustls::{ClientConfig, ProtocolVersion, RootCertStore, SupportedCipherSuite};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::json;

struct Pki {
    cert_pem: String,
    key_pem: String,
}

fn pki() -> Pki {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".into()])
        .expect("rcgen");
    Pki { cert_pem: ck.cert.pem(), key_pem: ck.signing_key.serialize_pem() }
}

fn server_tls(p: &Pki, min: &str, ciphers: Option<&str>) -> ServerTls {
    ServerTls {
        cert_pem: p.cert_pem.clone(),
        key_pem: p.key_pem.clone(),
        min_version: min.into(),
        cipher_suites: ciphers.map(str::to_string),
    }
}

fn client_config(
    p: &Pki,
    versions: &[&'static rustls::SupportedProtocolVersion],
    suites: Option<Vec<SupportedCipherSuite>>,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    let cert = CertificateDer::from_pem_slice(p.cert_pem.as_bytes()).unwrap();
    roots.add(cert).unwrap();
    let mut provider = ring_provider::default_provider();
    if let Some(s) = suites {
        provider.cipher_suites = s;
    }
    Arc::new(
        ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

async fn start_tls(tls: ServerTls) -> (Harness, std::net::SocketAddr) {
    let h = Harness::new();
    let ready = h.serve(&RestTransport::new("127.0.0.1", 0), Some(tls)).await;
    assert!(ready.endpoint.starts_with("https://127.0.0.1:"), "{}", ready.endpoint);
    let addr = ready.endpoint.trim_start_matches("https://").parse().unwrap();
    (h, addr)
}

fn client(addr: std::net::SocketAddr, cfg: Arc<ClientConfig>) -> RestClient {
    let name = ServerName::try_from("127.0.0.1").unwrap().to_owned();
    RestClient::new(addr, Some(TEST_TOKEN)).with_tls(cfg, name)
}

#[tokio::test]
async fn tls12_and_tls13_handshakes_succeed_and_the_api_works() {
    let p = pki();
    let (_h, addr) = start_tls(server_tls(&p, "1.2", None)).await;
    for (versions, expect) in [
        (&[&rustls::version::TLS12][..], ProtocolVersion::TLSv1_2),
        (&[&rustls::version::TLS13][..], ProtocolVersion::TLSv1_3),
    ] {
        let c = client(addr, client_config(&p, versions, None));
        let r = c.send(Method::GET, "/v1/status", &[], None).await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.tls_version, Some(expect));
        let r = c.send(Method::GET, "/", &[], None).await.unwrap();
        let href = r.json()["versions"][0]["links"][0]["href"].as_str().unwrap().to_string();
        assert_eq!(href, format!("https://{addr}/v1"), "https in the self link");
        let res = c.run("conformance.echo", json!({"value": "tls"}), false, None).await.unwrap();
        assert_eq!(res.command_result, json!({"result": "tls"}));
        let e = c.with_token(Some("nope")).list().await.unwrap_err();
        assert!(matches!(e, ClientError::Fault { code: 401, .. }), "{e}");
    }
}

#[tokio::test]
async fn min_version_13_refuses_tls12() {
    let p = pki();
    let (_h, addr) = start_tls(server_tls(&p, "1.3", None)).await;
    let c12 = client(addr, client_config(&p, &[&rustls::version::TLS12], None));
    assert!(c12.send(Method::GET, "/v1/status", &[], None).await.is_err());
    let c13 = client(addr, client_config(&p, &[&rustls::version::TLS13], None));
    let r = c13.send(Method::GET, "/v1/status", &[], None).await.unwrap();
    assert_eq!(r.tls_version, Some(ProtocolVersion::TLSv1_3));
}

#[tokio::test]
async fn cipher_list_restricts_tls12_suites() {
    use ring_provider::cipher_suite as cs;
    let p = pki(); // rcgen's default key is ECDSA P-256
    let (_h, addr) = start_tls(server_tls(&p, "1.2", Some("ECDHE-ECDSA-AES128-GCM-SHA256"))).await;
    let only256 = Some(vec![cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]);
    let c = client(addr, client_config(&p, &[&rustls::version::TLS12], only256));
    assert!(c.send(Method::GET, "/v1/status", &[], None).await.is_err(), "suite not allowed");
    let only128 = Some(vec![cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]);
    let c = client(addr, client_config(&p, &[&rustls::version::TLS12], only128));
    assert_eq!(c.send(Method::GET, "/v1/status", &[], None).await.unwrap().status, 200);
}

#[tokio::test]
async fn plain_http_to_a_tls_port_gets_no_api() {
    let p = pki();
    let (_h, addr) = start_tls(server_tls(&p, "1.2", None)).await;
    let r =
        RestClient::new(addr, Some(TEST_TOKEN)).send(Method::GET, "/v1/status", &[], None).await;
    assert!(r.is_err() || r.unwrap().status != 200);
}

#[tokio::test]
async fn unusable_tls_material_is_a_startup_error() {
    let p = pki();
    let other = pki();
    let h = Harness::new();
    let bad = ServerTls { key_pem: other.key_pem, ..server_tls(&p, "1.2", None) };
    let ctx = h.context(Some(bad));
    let t = RestTransport::new("127.0.0.1", 0);
    let e = ipa_core::transport::Transport::build(&t, ctx).await.err().expect("mismatched key");
    assert!(e.to_string().contains("TLS setup failed"), "{e}");
}
