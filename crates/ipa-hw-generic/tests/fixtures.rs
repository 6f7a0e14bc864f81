//! Fixture machines: the inventory read from each captured/synthetic tree equals its
//! `expected-inventory.json` (regenerate with `UPDATE_FIXTURES=1` after reviewing changes).

use std::path::PathBuf;
use std::sync::Arc;

use ipa_core::hardware::{HardwareManager, HardwareManagers};
use ipa_core::os::FakeRunner;
use ipa_hw_generic::{GenericHardwareManager, GenericOptions, Machine};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn manager(name: &str, runner: &FakeRunner) -> GenericHardwareManager {
    GenericHardwareManager::new(
        GenericOptions { machine: Machine::at(fixture(name)), ..Default::default() },
        Arc::new(runner.clone()),
    )
}

fn ipmitool(runner: &FakeRunner) {
    runner.on_ok(
        "ipmitool",
        &["lan", "print", "1"],
        "Set in Progress         : Set Complete\nIP Address Source       : Static Address\n\
         IP Address              : 10.1.0.5\nSubnet Mask             : 255.255.255.0\n\
         MAC Address             : d0:8e:79:aa:bb:cc\n",
    );
    runner.on_ok(
        "ipmitool",
        &["lan6", "print", "1", "enables"],
        "IPv6/IPv4 Addressing Enables    : ipv4\n",
    );
}

async fn check(name: &str, runner: FakeRunner) -> Value {
    // As the agent runs it: the manager among its peers (itself alone).
    let m = Arc::new(manager(name, &runner));
    let peers = HardwareManagers::single(m.clone());
    let inv = m.list_hardware_info(&peers).await.unwrap();
    let got = serde_json::to_value(&inv).unwrap();
    let path = fixture(name).join("expected-inventory.json");
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
    }
    let want: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(got, want, "{name}: inventory differs from {}", path.display());
    // Key order too (serde_json preserves it).
    assert_eq!(serde_json::to_string(&got).unwrap(), serde_json::to_string(&want).unwrap());
    got
}

#[tokio::test]
async fn vm_fixture_matches_expected_inventory() {
    let inv = check("vm", FakeRunner::new()).await;
    assert_eq!(inv["disks"].as_array().unwrap().len(), 1, "loop and zram devices are skipped");
}

#[tokio::test]
async fn server_fixture_nvme_sas_bmc() {
    let runner = FakeRunner::new();
    ipmitool(&runner);
    let inv = check("server", runner.clone()).await;
    let names: Vec<&str> =
        inv["interfaces"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["bond0", "bond0.100", "eno1", "eno2", "ens3f1"],
        "lo/docker0 have no device; fa: MAC dropped"
    );
    assert_eq!(inv["interfaces"][4]["mac_address"], "90:e2:ba:00:00:0b", "permanent MAC wins");
    let disks: Vec<&str> =
        inv["disks"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(
        disks,
        ["/dev/sda", "/dev/sdb", "/dev/nvme0n1"],
        "fd0/ram0/zram0/loop/sr0/zero-size skipped"
    );
    assert_eq!(inv["disks"][1]["tran"], "sas");
    assert_eq!(inv["disks"][2]["tran"], "nvme");
    assert_eq!(inv["bmc_address"], "10.1.0.5");
    assert_eq!(inv["bmc_v6address"], "::/0");
    assert_eq!(inv["bmc_mac"], "d0:8e:79:aa:bb:cc");
    assert_eq!(inv["cpu"]["frequency"], "3200.0000");
    assert_eq!(inv["memory"]["physical_mb"], 524288);
}

#[tokio::test]
async fn multipath_fixture_hides_member_paths() {
    let inv = check("multipath", FakeRunner::new()).await;
    let disks: Vec<&str> =
        inv["disks"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(disks, ["/dev/sdc", "/dev/sdd", "/dev/md127", "/dev/dm-0"]);
}

#[tokio::test]
async fn infiniband_fixture_maps_guid_and_client_id() {
    let inv = check("infiniband", FakeRunner::new()).await;
    let ib = inv["interfaces"].as_array().unwrap().iter().find(|i| i["name"] == "ib0").unwrap();
    assert_eq!(ib["mac_address"], "b8:59:9f:11:22:33");
    assert_eq!(ib["client_id"], "ff:00:00:00:00:00:02:00:00:02:c9:00:b8:59:9f:03:00:11:22:33");
}

#[tokio::test]
async fn install_device_uses_node_hints_and_skip_lists() {
    use ipa_core::hardware::hints::select_install_device;
    let mgr = manager("server", &FakeRunner::new());
    let node = serde_json::json!({"properties": {"skip_block_devices": [{"name": "/dev/sda"}]},
                                  "instance_info": {}});
    let devs = mgr.candidate_devices(Some(&node), &HardwareManagers::empty()).await.unwrap();
    assert_eq!(devs.len(), 2);
    assert_eq!(select_install_device(devs.clone(), None, &[]).unwrap(), "/dev/nvme0n1");
    let h = serde_json::json!({"serial": "zc1abcde"});
    assert_eq!(select_install_device(devs, Some(&h), &[]).unwrap(), "/dev/sdb");
    // Without a node: smallest disk >= 4 GiB.
    assert_eq!(
        mgr.get_os_install_device(false, &HardwareManagers::empty()).await.unwrap(),
        "/dev/sda"
    );
    // RAID volume named in skip_block_devices is never chosen.
    let mp = manager("multipath", &FakeRunner::new());
    let node = serde_json::json!({"properties": {"skip_block_devices": [{"volume_name": "root"}]}});
    let names: Vec<String> = mp
        .candidate_devices(Some(&node), &HardwareManagers::empty())
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.device.name)
        .collect();
    assert_eq!(names, ["/dev/sdc", "/dev/sdd", "/dev/dm-0"]);
}

#[tokio::test]
async fn partitions_listed_after_disks_when_asked() {
    let mgr = manager("server", &FakeRunner::new());
    let all: Vec<String> = mgr
        .list_block_devices(true, &HardwareManagers::empty())
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(all, ["/dev/sda", "/dev/sdb", "/dev/nvme0n1", "/dev/sda1", "/dev/sda2"]);
}

#[tokio::test]
async fn erase_refuses_outside_real_mode() {
    let mgr = manager("server", &FakeRunner::new());
    let e = mgr.erase_block_device(&serde_json::json!({}), &Default::default()).await.unwrap_err();
    assert!(e.is_incompatible());
    assert!(e.to_string().contains("read-only"), "{e}");
}

#[tokio::test]
async fn collectors_selected_by_config() {
    let mgr = GenericHardwareManager::new(
        GenericOptions {
            machine: Machine::at(fixture("server")),
            collectors: vec![
                "default".into(),
                "pci-devices".into(),
                "numa-topology".into(),
                "usb-devices".into(),
                "dmi-decode".into(),
            ],
            ..Default::default()
        },
        Arc::new(FakeRunner::new()),
    );
    let ext = mgr.inventory_extensions().await.unwrap();
    assert_eq!(
        ext.keys().collect::<Vec<_>>(),
        ["erase_report_key", "pci_devices", "numa_topology", "usb_devices", "dmi"]
    );
    // The public half of the key that signs erase reports, for operators to verify them.
    assert_eq!(ext["erase_report_key"], mgr.report_key());
    assert!(mgr.report_key().starts_with("ed25519:"), "{}", mgr.report_key());
    assert_eq!(ext["pci_devices"][0]["vendor_id"], "8086");
    assert_eq!(ext["pci_devices"][0]["bus"], "0000:18:00.0");
    assert_eq!(ext["numa_topology"]["ram"].as_array().unwrap().len(), 2);
    assert_eq!(ext["usb_devices"][0]["handle"], "USB:1:3");
    assert_eq!(ext["dmi"]["system"]["Manufacturer"], "Dell Inc.");
    let none = manager("server", &FakeRunner::new()).inventory_extensions().await.unwrap();
    assert_eq!(none.keys().collect::<Vec<_>>(), ["erase_report_key"], "no collectors selected");
}

#[test]
fn lldp_tlvs_from_a_captured_frame() {
    // A real LLDPDU (Ethernet header + chassis id, port id, TTL, system name, End).
    let frame: Vec<u8> = [
        &[0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e, 0x00, 0x1c, 0x73, 0xaa, 0xbb, 0xcc, 0x88, 0xcc][..],
        &[0x02, 0x07, 0x04, 0x00, 0x1c, 0x73, 0xaa, 0xbb, 0xcc],
        &[0x04, 0x0a, 0x05, b'E', b't', b'h', b'e', b'r', b'n', b'e', b't', b'1'],
        &[0x06, 0x02, 0x00, 0x78],
        &[0x0a, 0x04, b's', b'w', b'-', b'1'],
        &[0x00, 0x00],
    ]
    .concat();
    let tlvs = ipa_hw_generic::lldp::parse_frame(&frame);
    assert_eq!(
        tlvs,
        vec![
            (1, "04001c73aabbcc".to_string()),
            (2, "0545746865726e657431".to_string()),
            (3, "0078".to_string()),
            (5, "73772d31".to_string()),
            (0, String::new()),
        ]
    );
    assert_eq!(serde_json::to_value(&tlvs).unwrap()[0], serde_json::json!([1, "04001c73aabbcc"]));
    assert!(ipa_hw_generic::lldp::parse_frame(&frame[..10]).is_empty());
}
