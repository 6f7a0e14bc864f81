//! The API client against a real, unmodified Ironic 39 (from the venv; see `testing`):
//! error envelope, lookup token issuance and masking, heartbeat TLS rules and
//! `agent_verify_ca`, and `continue_inspection` moving the node to `manageable`.

use std::time::{Duration, Instant};

use ipa_ironic::client::{ClientOptions, HeartbeatRequest, IronicClient};
use ipa_ironic::testing::{IronicOptions, IronicServer};
use serde_json::json;

const MAC: &str = "52:54:00:9a:00:01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_speaks_to_a_real_ironic() {
    if IronicServer::venv_or_skip("real-Ironic test").is_none() {
        return;
    }
    let t0 = Instant::now();
    let ironic = tokio::task::spawn_blocking(|| IronicServer::start(&IronicOptions::default()))
        .await
        .unwrap()
        .unwrap();
    eprintln!("ironic ready in {:?}", ironic.startup);
    let client = IronicClient::new(ClientOptions {
        urls: vec![ironic.url()],
        timeout: Duration::from_secs(30),
        ..Default::default()
    })
    .unwrap();
    assert!(client.api_version().await >= ipa_ironic::ApiVersion(1, 99));

    // Unknown MAC: the error envelope becomes Ironic's fault string.
    let e = client.lookup_once(&["52:54:00:ff:ff:ff".into()], None).await.unwrap_err();
    assert!(!e.conflict);
    let msg = e.error.to_string();
    assert!(msg.contains("HTTP 404") && msg.contains("could not be found"), "{msg}");

    // A node waiting for inspection may be looked up.
    let uuid = {
        let ir = &ironic;
        let uuid = ir.create_node(json!({}), MAC).unwrap();
        ir.provision(&uuid, json!({"target": "manage"})).unwrap();
        ir.wait_state(&uuid, &["manageable"], Duration::from_secs(60)).unwrap();
        ir.provision(&uuid, json!({"target": "inspect"})).unwrap();
        ir.wait_state(&uuid, &["inspect wait"], Duration::from_secs(60)).unwrap();
        uuid
    };
    let reply = client.lookup_once(&[MAC.into()], None).await.unwrap();
    assert_eq!(reply["node"]["uuid"], uuid.as_str());
    let token = reply["config"]["agent_token"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 43);
    let again = client.lookup_once(&[MAC.into()], Some(&uuid)).await.unwrap();
    assert_eq!(again["config"]["agent_token"], "******");

    // require_tls (Ironic's default): http:// is refused with a readable reason.
    let e = client
        .heartbeat(&HeartbeatRequest {
            node_uuid: &uuid,
            callback_url: "http://127.0.0.1:9",
            token: Some(&token),
            verify_ca: None,
        })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("TLS is required by configuration"), "{e}");
    // Wrong token.
    let e = client
        .heartbeat(&HeartbeatRequest {
            node_uuid: &uuid,
            callback_url: "https://127.0.0.1:9",
            token: Some("x"),
            verify_ca: None,
        })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("Invalid or missing agent token"), "{e}");
    // https + our auto-TLS certificate: 202, and Ironic stores the PEM.
    // The certificate carries the erase-report key in its subject, as the agent's does.
    let signer = ipa_core::attest::ReportSigner::generate();
    let cert =
        ipa_ironic::autotls::generate("127.0.0.1", "p384", 3600, "t", Some(signer.public_key()))
            .unwrap();
    let beat = HeartbeatRequest {
        node_uuid: &uuid,
        callback_url: "https://127.0.0.1:9",
        token: Some(&token),
        verify_ca: Some(&cert.cert_pem),
    };
    client.heartbeat(&beat).await.unwrap();
    let _ = beat;
    let stored = ironic.dir.path().join(format!("certs/{uuid}.crt"));
    let t = Instant::now();
    while !stored.exists() && t.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stored_pem = std::fs::read_to_string(&stored).unwrap();
    assert_eq!(stored_pem, cert.cert_pem);
    assert_eq!(
        ipa_core::attest::key_from_certificate(&stored_pem).as_deref(),
        Some(signer.public_key()),
        "Ironic keeps the erase-report key on record"
    );
    // continue_inspection: 202 with the node UUID; the node becomes manageable.
    let data = json!({
        "inventory": {"interfaces": [{"name": "eth0", "mac_address": MAC, "ipv4_address": "192.0.2.10"}],
                      "cpu": {"count": 2, "architecture": "x86_64"},
                      "memory": {"total": 2147483648u64, "physical_mb": 2048},
                      "disks": [{"name": "/dev/vda", "size": 8589934592u64}],
                      "bmc_address": null, "boot": {"current_boot_mode": "uefi", "pxe_interface": MAC},
                      "system_vendor": {"product_name": "sim", "serial_number": "1", "manufacturer": "sim"},
                      "erase_report_key": signer.public_key()},
        "root_disk": {"name": "/dev/vda", "size": 8589934592u64},
        "boot_interface": MAC,
    });
    let url = format!("{}/v1/continue_inspection", ironic.url());
    let r = client.post_inspection(&url, &data).await.unwrap();
    assert_eq!(r["uuid"], uuid.as_str());
    let node = tokio::task::block_in_place(|| {
        ironic.wait_state(&uuid, &["manageable"], Duration::from_secs(60))
    })
    .unwrap();
    assert_eq!(node["properties"]["cpu_arch"], "x86_64", "{node}");
    // Ironic stores the inventory with the erase-report key as sent.
    let stored = tokio::task::block_in_place(|| {
        ironic.ok("GET", &format!("/v1/nodes/{uuid}/inventory"), None)
    })
    .unwrap();
    assert_eq!(stored["inventory"]["erase_report_key"], signer.public_key(), "{stored}");
    eprintln!("real-Ironic client test took {:?}", t0.elapsed());
}
