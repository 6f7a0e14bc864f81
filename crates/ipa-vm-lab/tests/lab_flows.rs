//! VM lab flows: a real Ironic powers a real (virtual, TCG) UEFI machine through sushy-tools,
//! boots our ramdisk over PXE → iPXE, and drives our agent on real virtual devices.
//! Needs root, the lab packages (`scripts/setup-vm-lab.sh`) and a built ramdisk
//! (`scripts/build-ramdisk.sh`, or `$IPA_RAMDISK_DIR`); a missing piece is a failure.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipa_vm_lab::{DiskBus, Lab, LabOptions};
use serde_json::{Value, json};

/// One lab at a time: the host has two cores and one system libvirt state directory.
static SERIAL: Mutex<()> = Mutex::new(());

const GIB: u64 = 1 << 30;

fn ramdisk_dir() -> PathBuf {
    std::env::var_os("IPA_RAMDISK_DIR").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/ramdisk")
    })
}

fn wait(lab: &Lab, uuid: &str, states: &[&str], secs: u64) -> Value {
    match lab.ironic.wait_state(uuid, states, Duration::from_secs(secs)) {
        Ok(n) => n,
        Err(e) => panic!("{e}\n{}", lab.diagnostics()),
    }
}

fn timed(label: &str, t0: Instant) {
    eprintln!("LAB-TIMING {label}: {:.1} s", t0.elapsed().as_secs_f64());
}

#[test]
fn inspection_reports_what_the_guest_kernel_sees() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let t0 = Instant::now();
    let mut lab = Lab::start(&LabOptions::new("insp", &ramdisk_dir())).expect("lab");
    timed("lab setup", t0);
    let vm = lab.vm_spec(
        "ipalab-insp1",
        "52:54:00:1a:b0:01",
        512,
        &[
            (DiskBus::Virtio, 2 * GIB, "VIRTIO-ROOT-1"),
            (DiskBus::Nvme, GIB, "LABNVME0001"),
            (DiskBus::Virtio4Kn, GIB, "VIRTIO-4KN-1"),
            (DiskBus::Sata, GIB, "SATA-DISK-01"),
        ],
    );
    lab.define_vm(&vm).expect("define");
    let uuid = lab.enroll(&vm, json!({})).expect("enroll");
    lab.ironic.provision(&uuid, json!({"target": "manage"})).expect("manage");
    wait(&lab, &uuid, &["manageable"], 120);
    let t = Instant::now();
    lab.ironic.provision(&uuid, json!({"target": "inspect"})).expect("inspect");
    wait(&lab, &uuid, &["manageable"], 900);
    timed("inspection", t);
    let inv = lab
        .ironic
        .ok("GET", &format!("/v1/nodes/{uuid}/inventory"), None)
        .expect("inventory");
    let inv = &inv["inventory"];
    let macs: Vec<&str> =
        inv["interfaces"].as_array().unwrap().iter().filter_map(|i| i["mac_address"].as_str()).collect();
    assert!(macs.contains(&vm.mac.as_str()), "{macs:?}");
    let disks = inv["disks"].as_array().unwrap();
    let serial = |s: &str| disks.iter().find(|d| d["serial"] == s).cloned();
    let root = serial("VIRTIO-ROOT-1").unwrap_or_else(|| panic!("virtio disk missing: {disks:?}"));
    assert_eq!(root["size"], 2 * GIB);
    let nvme = serial("LABNVME0001").unwrap_or_else(|| panic!("nvme disk missing: {disks:?}"));
    assert_eq!(nvme["size"], GIB);
    assert!(nvme["name"].as_str().unwrap().contains("nvme"), "{nvme}");
    let k4 = serial("VIRTIO-4KN-1").unwrap_or_else(|| panic!("4Kn disk missing: {disks:?}"));
    assert_eq!(k4["logical_sectors"], 4096, "{k4}");
    assert_eq!(k4["physical_sectors"], 4096, "{k4}");
    assert!(serial("SATA-DISK-01").is_some(), "{disks:?}");
    assert_eq!(inv["cpu"]["count"], 1);
    let mem = inv["memory"]["total"].as_u64().unwrap();
    assert!(mem > 400 << 20 && mem <= 512 << 20, "memory.total {mem}");
    assert_eq!(inv["boot"]["current_boot_mode"], "uefi");
    timed("test total", t0);
}
