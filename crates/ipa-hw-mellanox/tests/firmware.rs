//! Fixture-tree and FakeRunner tests of the NVIDIA NIC manager: support, InfiniBand inventory,
//! firmware image and settings steps (including every refusal before a flash command).

use std::path::Path;
use std::sync::Arc;

use ipa_core::extension::CommandContext;
use ipa_core::hardware::{
    HardwareManager, HardwareManagerVersion, HardwareManagers, HardwareSupport, NetworkInterface,
    StepCall, StepKind,
};
use ipa_core::os::{CommandRunner, FakeRunner};
use ipa_core::{AgentError, Params};
use ipa_hw_mellanox::MellanoxDeviceHardwareManager;
use serde_json::{Value, json};
use sha2::Digest;

const IB_ADDR: &str = "a0:00:02:20:fe:80:00:00:00:00:00:00:7c:fe:90:03:00:29:26:52";
const CARD: &str = "0000:3b:00.0";
const IMAGE: &[u8] = b"pretend this is a ConnectX-5 firmware image\n";

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// A host with one dual-port ConnectX card (ib0 InfiniBand, function 0; enp59s0f1 Ethernet,
/// function 1) and an Intel NIC.
fn mellanox_host(root: &Path) {
    write(root, "sys/class/net/ib0/address", &format!("{IB_ADDR}\n"));
    write(root, "sys/class/net/ib0/carrier", "1\n");
    write(root, "sys/class/net/ib0/device/vendor", "0x15b3\n");
    write(root, "sys/class/net/ib0/device/device", "0x1017\n");
    write(root, "sys/class/net/enp59s0f1/address", "b8:ce:f6:e0:ba:85\n");
    write(root, "sys/class/net/enp59s0f1/device/vendor", "0x15b3\n");
    write(root, "sys/class/net/enp59s0f1/device/device", "0x1017\n");
    write(root, "sys/class/net/eno1/address", "3c:fd:fe:aa:bb:01\n");
    write(root, "sys/class/net/eno1/device/vendor", "0x8086\n");
    write(root, "sys/class/net/lo/address", "00:00:00:00:00:00\n");
    for (f, class) in [("0", "0x020700"), ("1", "0x020000")] {
        let d = format!("sys/bus/pci/devices/0000:3b:00.{f}");
        write(root, &format!("{d}/vendor"), "0x15b3\n");
        write(root, &format!("{d}/device"), "0x1017\n");
        write(root, &format!("{d}/class"), &format!("{class}\n"));
    }
    write(root, "sys/bus/pci/devices/0000:18:00.0/vendor", "0x8086\n");
    write(root, "sys/bus/pci/devices/0000:18:00.0/class", "0x020000\n");
}

struct Fixture {
    dir: tempfile::TempDir,
    runner: FakeRunner,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        mellanox_host(&dir.path().join("root"));
        std::fs::create_dir_all(dir.path().join("work")).unwrap();
        Self { dir, runner: FakeRunner::new() }
    }
    fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("root")
    }
    fn manager(&self) -> MellanoxDeviceHardwareManager {
        MellanoxDeviceHardwareManager::new(
            self.root(),
            Arc::new(self.runner.clone()) as Arc<dyn CommandRunner>,
            self.dir.path().join("work"),
        )
    }
    /// The card runs `version` with `psid`; any image file queried reports `img_psid`/`img_version`.
    fn script(&self, psid: &str, version: &str, img_psid: &str, img_version: &str) {
        self.runner.on_ok(
            "mstflint",
            &["-d", CARD, "-qq", "query"],
            &format!("Image type:            FS4\nFW Version:            {version}\nFW Release Date:       19.10.2022\nPSID:                  {psid}\n"),
        );
        self.runner.on_ok(
            "mstflint",
            &["-i"],
            &format!("Image type:            FS4\nFW Version:            {img_version}\nPSID:                  {img_psid}\n"),
        );
    }
    fn burns(&self) -> Vec<String> {
        self.runner.command_lines().into_iter().filter(|l| l.contains("burn")).collect()
    }
}

async fn run_step(
    m: &MellanoxDeviceHardwareManager,
    step: &str,
    args: Value,
) -> Result<Value, AgentError> {
    let ctx = CommandContext::detached("clean.execute_clean_step");
    let (node, ports) = (json!({}), json!([]));
    let args: Params = serde_json::from_value(args).unwrap();
    let peers = ipa_core::hardware::HardwareManagers::empty();
    m.execute_step(StepCall {
        step,
        kind: StepKind::Clean,
        node: &node,
        ports: &ports,
        args,
        ctx: &ctx,
        peers: &peers,
    })
    .await
}

/// A one-shot-per-connection HTTP server on loopback serving `body` for any path; bounded.
async fn serve(body: &'static [u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        for _ in 0..16 {
            let Ok((mut s, _)) = l.accept().await else { return };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(body).await;
        }
    });
    format!("http://{addr}/fw/cx5.bin")
}

fn sha256(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

#[tokio::test]
async fn mainline_only_when_a_nic_has_the_mellanox_vendor_id() {
    let f = Fixture::new();
    assert_eq!(f.manager().evaluate_hardware_support().await, HardwareSupport::MAINLINE);
    let other = tempfile::tempdir().unwrap();
    write(other.path(), "sys/class/net/eno1/device/vendor", "0x8086\n");
    let m =
        MellanoxDeviceHardwareManager::new(other.path(), Arc::new(FakeRunner::new()), other.path());
    assert_eq!(m.evaluate_hardware_support().await, HardwareSupport::NONE);
    let empty = tempfile::tempdir().unwrap();
    let m =
        MellanoxDeviceHardwareManager::new(empty.path(), Arc::new(FakeRunner::new()), empty.path());
    assert_eq!(m.evaluate_hardware_support().await, HardwareSupport::NONE);
}

/// Stand-in for the generic manager: answers every interface with its sysfs address as MAC.
struct PlainNics(std::path::PathBuf);

#[async_trait::async_trait]
impl HardwareManager for PlainNics {
    fn name(&self) -> &str {
        "GenericHardwareManager"
    }
    fn version(&self) -> HardwareManagerVersion {
        HardwareManagerVersion { name: "generic_hardware_manager".into(), version: "1.2".into() }
    }
    async fn evaluate_hardware_support(&self) -> HardwareSupport {
        HardwareSupport::GENERIC
    }
    async fn get_interface_info(&self, name: &str) -> Result<NetworkInterface, AgentError> {
        let p = self.0.join(format!("sys/class/net/{name}/address"));
        let mac = std::fs::read_to_string(p).unwrap().trim().to_string();
        Ok(NetworkInterface { name: name.into(), mac_address: mac, ..Default::default() })
    }
}

#[tokio::test]
async fn infiniband_host_inventory_has_guid_derived_mac_and_client_id() {
    let f = Fixture::new();
    let hw = HardwareManagers::probe(vec![
        Arc::new(PlainNics(f.root())) as Arc<dyn HardwareManager>,
        Arc::new(f.manager()),
    ])
    .await
    .unwrap();
    let mut interfaces = Vec::new();
    for name in ["eno1", "enp59s0f1", "ib0"] {
        interfaces.push(
            hw.dispatch("get_interface_info", |m, _| m.get_interface_info(name)).await.unwrap(),
        );
    }
    let json = serde_json::to_value(&interfaces).unwrap();
    assert_eq!(json[0]["mac_address"], "3c:fd:fe:aa:bb:01");
    assert_eq!(json[0]["client_id"], Value::Null);
    assert_eq!(
        json[1]["mac_address"], "b8:ce:f6:e0:ba:85",
        "Ethernet on a Mellanox card: generic answers"
    );
    assert_eq!(
        json[2],
        json!({
            "name": "ib0", "mac_address": "7c:fe:90:29:26:52", "ipv4_address": null,
            "ipv6_address": null, "has_carrier": true, "lldp": null, "vendor": "0x15b3",
            "product": "0x1017", "client_id": "ff:00:00:00:00:00:02:00:00:02:c9:00:7c:fe:90:03:00:29:26:52",
            "biosdevname": null, "speed_mbps": null, "pci_address": null, "driver": null
        })
    );
    let e = f.manager().get_interface_info("eno1").await.unwrap_err();
    assert!(e.is_incompatible());
}

#[tokio::test]
async fn both_steps_offered_for_clean_deploy_and_service_with_ipa_metadata() {
    let f = Fixture::new();
    let m = f.manager();
    let (n, p) = (json!({}), json!([]));
    for steps in [
        m.get_clean_steps(&n, &p).await.unwrap(),
        m.get_deploy_steps(&n, &p).await.unwrap(),
        m.get_service_steps(&n, &p).await.unwrap(),
    ] {
        let v = serde_json::to_value(&steps).unwrap();
        let names: Vec<_> = v.as_array().unwrap().iter().map(|s| s["step"].clone()).collect();
        assert_eq!(
            names,
            [
                json!("update_nvidia_nic_firmware_image"),
                json!("update_nvidia_nic_firmware_settings")
            ]
        );
        for s in v.as_array().unwrap() {
            assert_eq!(
                (s["priority"].clone(), s["reboot_requested"].clone(), s["abortable"].clone()),
                (json!(0), json!(true), json!(false))
            );
            assert_eq!(s["interface"], "deploy");
        }
        assert_eq!(v[0]["argsinfo"]["images"]["required"], true);
        assert_eq!(v[1]["argsinfo"]["settings"]["required"], true);
    }
    assert_eq!(
        serde_json::to_value(m.version()).unwrap(),
        json!({"name": "MellanoxDeviceHardwareManager", "version": "1"})
    );
}

fn image_args(url: &str, checksum: &str, psid: &str, version: &str) -> Value {
    json!({"images": [{"url": url, "checksum": checksum, "checksumType": "sha256",
                       "componentFlavor": psid, "version": version}]})
}

#[tokio::test]
async fn firmware_image_is_downloaded_verified_and_flashed() {
    let f = Fixture::new();
    f.script("MT_0000000080", "16.35.1012", "MT_0000000080", "16.35.2000");
    let url = serve(IMAGE).await;
    let r = run_step(
        &f.manager(),
        "update_nvidia_nic_firmware_image",
        image_args(&url, &sha256(IMAGE), "MT_0000000080", "16.35.2000"),
    )
    .await
    .unwrap();
    assert_eq!(
        r["updated"],
        json!([{"pci": CARD, "psid": "MT_0000000080", "from": "16.35.1012", "to": "16.35.2000"}])
    );
    let lines = f.runner.command_lines();
    assert_eq!(
        lines[0], "mstflint -d 0000:3b:00.0 -qq query",
        "only function 0 of the card is queried"
    );
    assert!(lines[1].starts_with("mstflint -i ") && lines[1].ends_with(" query"), "{lines:?}");
    let image_path = lines[1].split_whitespace().nth(2).unwrap().to_string();
    assert_eq!(lines[2], format!("mstflint -d 0000:3b:00.0 -i {image_path} -y burn"));
    assert_eq!(lines.len(), 3);
    assert!(!Path::new(&image_path).exists(), "the downloaded image is removed afterwards");
}

#[tokio::test]
async fn bad_checksum_is_refused_before_any_flash_command() {
    let f = Fixture::new();
    f.script("MT_0000000080", "16.35.1012", "MT_0000000080", "16.35.2000");
    let url = serve(IMAGE).await;
    let e = run_step(
        &f.manager(),
        "update_nvidia_nic_firmware_image",
        image_args(&url, &sha256(b"other"), "MT_0000000080", "16.35.2000"),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), "ImageChecksumError");
    assert!(e.details().contains(&sha256(IMAGE)), "{}", e.details());
    assert!(f.burns().is_empty());
    assert!(
        !f.runner.command_lines().iter().any(|l| l.starts_with("mstflint -i")),
        "image not even inspected"
    );
}

#[tokio::test]
async fn image_for_another_psid_is_refused_before_any_flash_command() {
    let f = Fixture::new();
    // The operator says the image is for MT_0000000080 (the card's PSID), but the file is for
    // another board.
    f.script("MT_0000000080", "16.35.1012", "MT_0000000999", "16.35.2000");
    let url = serve(IMAGE).await;
    let e = run_step(
        &f.manager(),
        "update_nvidia_nic_firmware_image",
        image_args(&url, &sha256(IMAGE), "MT_0000000080", "16.35.2000"),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), "CleaningError");
    assert!(
        e.details().contains("the image is for PSID MT_0000000999, not MT_0000000080"),
        "{}",
        e.details()
    );
    assert!(e.details().contains("nothing was flashed"));
    assert!(f.burns().is_empty());
}

#[tokio::test]
async fn image_with_another_version_is_refused_before_any_flash_command() {
    let f = Fixture::new();
    f.script("MT_0000000080", "16.35.1012", "MT_0000000080", "16.34.1002");
    let url = serve(IMAGE).await;
    let e = run_step(
        &f.manager(),
        "update_nvidia_nic_firmware_image",
        image_args(&url, &sha256(IMAGE), "MT_0000000080", "16.35.2000"),
    )
    .await
    .unwrap_err();
    assert!(
        e.details().contains("contains firmware version 16.34.1002, not 16.35.2000"),
        "{}",
        e.details()
    );
    assert!(f.burns().is_empty());
}

#[tokio::test]
async fn image_for_a_psid_not_on_this_host_is_skipped_and_current_firmware_is_not_reflashed() {
    let f = Fixture::new();
    f.script("MT_0000000080", "16.35.2000", "MT_0000000080", "16.35.2000");
    let args = json!({"images": [
        {"url": "http://127.0.0.1:9/never", "checksum": sha256(IMAGE), "componentFlavor": "MT_0000000999", "version": "1.0"},
        {"url": "http://127.0.0.1:9/never", "checksum": sha256(IMAGE), "componentFlavor": "MT_0000000080", "version": "16.35.2000"},
    ]});
    let r = run_step(&f.manager(), "update_nvidia_nic_firmware_image", args).await.unwrap();
    assert_eq!(r["updated"], json!([]));
    assert_eq!(r["skipped"].as_array().unwrap().len(), 2);
    assert_eq!(f.runner.command_lines(), ["mstflint -d 0000:3b:00.0 -qq query"]);
}

#[tokio::test]
async fn file_urls_and_md5_checksums_work() {
    let f = Fixture::new();
    f.script("MT_0000000080", "16.35.1012", "MT_0000000080", "16.35.2000");
    let src = f.dir.path().join("cx5.bin");
    std::fs::write(&src, IMAGE).unwrap();
    let md5 = hex::encode(<md5::Md5 as md5::Digest>::digest(IMAGE));
    let args = json!({"images": [{"url": format!("file://{}", src.display()), "checksum": md5,
                                  "componentFlavor": "MT_0000000080", "version": "16.35.2000"}]});
    run_step(&f.manager(), "update_nvidia_nic_firmware_image", args).await.unwrap();
    assert_eq!(f.burns().len(), 1);
}

#[tokio::test]
async fn sandbox_mode_validates_but_never_flashes() {
    let f = Fixture::new();
    f.script("MT_0000000080", "16.35.1012", "MT_0000000080", "16.35.2000");
    let url = serve(IMAGE).await;
    let m = f.manager().with_firmware_writes(false);
    let e = run_step(
        &m,
        "update_nvidia_nic_firmware_image",
        image_args(&url, &sha256(IMAGE), "MT_0000000080", "16.35.2000"),
    )
    .await
    .unwrap_err();
    assert!(e.details().contains("sandbox mode: refusing to flash firmware"), "{}", e.details());
    assert!(f.burns().is_empty());
}

#[tokio::test]
async fn malformed_images_argument_is_invalid_params() {
    let f = Fixture::new();
    for args in [
        json!({}),
        json!({"images": []}),
        json!({"images": [{"url": "http://x/y", "checksum": "abc"}]}),
        json!({"images": [{"url": "http://x/y", "checksum": "abcd", "checksumType": "crc32", "componentFlavor": "MT_1", "version": "1"}]}),
    ] {
        let e = run_step(&f.manager(), "update_nvidia_nic_firmware_image", args.clone())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), "InvalidCommandParamsError", "{args}");
    }
    assert!(f.runner.calls().is_empty());
}

const MSTCONFIG_Q: &str = "\nDevice #1:\n----------\n\nDevice type:    ConnectX5\nDevice:         0000:3b:00.0\n\n\
Configurations:                              Default         Current         Next Boot\n\
*        SRIOV_EN                            False(0)        True(1)         True(1)\n\
         NUM_OF_VFS                          0               8               8\n\
         LINK_TYPE_P1                        IB(1)           IB(1)           IB(1)\n";

#[tokio::test]
async fn settings_are_checked_against_the_device_then_set_per_function() {
    let f = Fixture::new();
    f.runner.on_ok("mstconfig", &["-d"], MSTCONFIG_Q);
    let args = json!({"settings": [{"deviceID": "1017",
        "globalConfig": {"SRIOV_EN": true, "NUM_OF_VFS": 16},
        "function1Config": {"LINK_TYPE_P1": "ETH"}}]});
    let r = run_step(&f.manager(), "update_nvidia_nic_firmware_settings", args).await.unwrap();
    assert_eq!(r["applied"].as_array().unwrap().len(), 2);
    assert_eq!(
        f.runner.command_lines(),
        [
            "mstconfig -d 0000:3b:00.0 -e q",
            "mstconfig -d 0000:3b:00.1 -e q",
            "mstconfig -d 0000:3b:00.0 -y set SRIOV_EN=True NUM_OF_VFS=16",
            "mstconfig -d 0000:3b:00.1 -y set LINK_TYPE_P1=ETH",
        ]
    );
}

#[tokio::test]
async fn unknown_setting_is_refused_before_anything_is_set() {
    let f = Fixture::new();
    f.runner.on_ok("mstconfig", &["-d"], MSTCONFIG_Q);
    let args = json!({"settings": [{"deviceID": "0x1017", "globalConfig": {"SRIOV_EN": true, "MADE_UP": 1}}]});
    let e = run_step(&f.manager(), "update_nvidia_nic_firmware_settings", args).await.unwrap_err();
    assert!(
        e.details().contains("unknown NVIDIA NIC setting MADE_UP on 0000:3b:00.0"),
        "{}",
        e.details()
    );
    assert!(!f.runner.command_lines().iter().any(|l| l.contains(" set ")));
    let bad =
        json!({"settings": [{"deviceID": "1017", "globalConfig": {"SRIOV_EN": "1; reboot"}}]});
    let e = run_step(&f.manager(), "update_nvidia_nic_firmware_settings", bad).await.unwrap_err();
    assert_eq!(e.kind(), "InvalidCommandParamsError");
}

#[tokio::test]
async fn other_steps_are_incompatible_so_dispatch_moves_on() {
    let f = Fixture::new();
    let e = run_step(&f.manager(), "erase_devices", json!({})).await.unwrap_err();
    assert!(e.is_incompatible());
}

/// A self-signed certificate for 127.0.0.1 (PEM) and a loopback HTTPS server presenting it,
/// serving `body` for any path to at most 16 connections.
async fn serve_tls(body: &'static [u8]) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let cert_pem = ck.cert.pem();
    let key = rustls_pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        for _ in 0..16 {
            let Ok((tcp, _)) = l.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else { return };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 64 * 1024 {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (format!("https://{addr}/fw/cx5.bin"), cert_pem)
}

/// Agent services whose configuration trusts `ca_pem` through `cafile` (the option image
/// downloads use), with no retry delay.
fn services_trusting(f: &Fixture, ca_pem: Option<&str>) -> Arc<ipa_core::AgentServices> {
    let cafile = ca_pem.map(|pem| {
        let p = f.dir.path().join("ca.pem");
        std::fs::write(&p, pem).unwrap();
        p
    });
    let mut config = ipa_core::config::AgentConfig::default();
    config.http.cafile = cafile;
    config.image.image_download_connection_retries = 0;
    config.image.image_download_connection_retry_interval = 0;
    config.image.image_download_connection_timeout = 10;
    ipa_core::AgentServices::new(
        config,
        figment::Figment::new(),
        ipa_core::RunMode::Sandbox { dir: f.dir.path().to_path_buf() },
        Arc::new(f.runner.clone()),
        Arc::new(ipa_core::os::RecordingPower::new(f.dir.path().join("power.log"))),
    )
}

#[tokio::test]
async fn https_image_is_downloaded_with_the_agent_cafile_verified_and_flashed() {
    let f = Fixture::new();
    f.script("MT_0000000080", "16.35.1012", "MT_0000000080", "16.35.2000");
    let (url, ca) = serve_tls(IMAGE).await;
    let args = image_args(&url, &sha256(IMAGE), "MT_0000000080", "16.35.2000");

    // Without the CA the self-signed server is refused: nothing is inspected or flashed.
    let untrusting = f.manager().with_agent_download_settings(&services_trusting(&f, None));
    let e =
        run_step(&untrusting, "update_nvidia_nic_firmware_image", args.clone()).await.unwrap_err();
    assert_eq!(e.kind(), "ImageDownloadError", "{}", e.details());
    assert!(f.burns().is_empty());

    let m = f.manager().with_agent_download_settings(&services_trusting(&f, Some(&ca)));
    let r = run_step(&m, "update_nvidia_nic_firmware_image", args).await.unwrap();
    assert_eq!(
        r["updated"],
        json!([{"pci": CARD, "psid": "MT_0000000080", "from": "16.35.1012", "to": "16.35.2000"}])
    );
    let burns = f.burns();
    assert_eq!(burns.len(), 1, "{burns:?}");
    assert!(burns[0].starts_with("mstflint -d 0000:3b:00.0 -i "), "{burns:?}");
}

#[tokio::test]
async fn bad_checksum_over_https_is_refused_before_any_flash_command() {
    let f = Fixture::new();
    f.script("MT_0000000080", "16.35.1012", "MT_0000000080", "16.35.2000");
    let (url, ca) = serve_tls(IMAGE).await;
    let m = f.manager().with_agent_download_settings(&services_trusting(&f, Some(&ca)));
    let e = run_step(
        &m,
        "update_nvidia_nic_firmware_image",
        image_args(&url, &sha256(b"other"), "MT_0000000080", "16.35.2000"),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), "ImageChecksumError", "{}", e.details());
    assert!(e.details().contains(&sha256(IMAGE)), "the whole image was fetched: {}", e.details());
    assert!(f.burns().is_empty());
    assert!(
        !f.runner.command_lines().iter().any(|l| l.starts_with("mstflint -i")),
        "image not even inspected"
    );
}
