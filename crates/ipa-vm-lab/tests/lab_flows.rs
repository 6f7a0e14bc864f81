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
    std::env::var_os("IPA_RAMDISK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/ramdisk"))
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

/// Define and enroll `vm`, make it manageable, inspect it through Ironic and return the stored
/// inventory.
fn define_and_inspect(lab: &mut Lab, vm: &ipa_vm_lab::VmSpec, label: &str) -> Value {
    lab.define_vm(vm).expect("define");
    let uuid = lab.enroll(vm, json!({})).expect("enroll");
    lab.ironic.provision(&uuid, json!({"target": "manage"})).expect("manage");
    wait(lab, &uuid, &["manageable"], 120);
    let t = Instant::now();
    lab.ironic.provision(&uuid, json!({"target": "inspect"})).expect("inspect");
    wait(lab, &uuid, &["manageable"], 900);
    timed(label, t);
    lab.ironic.ok("GET", &format!("/v1/nodes/{uuid}/inventory"), None).expect("inventory")
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
    let inv = define_and_inspect(&mut lab, &vm, "inspection");
    let inv = &inv["inventory"];
    let macs: Vec<&str> = inv["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["mac_address"].as_str())
        .collect();
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

/// Metal3's way of trusting an Ironic with a private CA: Ironic's API is behind a TLS front
/// whose certificate only the lab's own CA signed, the ramdisk is told `ipa-api-url=https://…`,
/// and the only change to the ramdisk is Metal3's CA-bundle initrd appended to it
/// (`/etc/ironic-python-agent.crt` and `/etc/ironic-python-agent.d/ironic-tls.conf` with
/// `[DEFAULT] cafile`). No `ipa-insecure`: lookup, heartbeats and the inspection data all go
/// through the TLS front, verified against that CA.
#[test]
fn a_metal3_ca_bundle_initrd_makes_the_agent_trust_a_private_ca_ironic() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let t0 = Instant::now();
    let mut opts = LabOptions::new("tls", &ramdisk_dir());
    opts.ironic_tls = true;
    opts.metal3_ca_bundle = true;
    assert!(!opts.kernel_params.contains("insecure"), "{}", opts.kernel_params);
    let mut lab = Lab::start(&opts).expect("lab");
    timed("lab setup (private CA, TLS front, CA-bundle initrd)", t0);
    assert!(lab.api_url.starts_with("https://"), "{}", lab.api_url);
    let vm = lab.vm_spec(
        "ipalab-tls1",
        "52:54:00:1a:b0:21",
        512,
        &[(DiskBus::Virtio, GIB, "VIRTIO-TLS-1")],
    );
    let inv = define_and_inspect(&mut lab, &vm, "inspection through the TLS front");
    let disks = inv["inventory"]["disks"].as_array().cloned().unwrap_or_default();
    assert!(disks.iter().any(|d| d["serial"] == "VIRTIO-TLS-1"), "{disks:?}");
    let console = lab.console(&vm);
    assert!(
        console.contains("read IPA configuration file")
            && console.contains("/etc/ironic-python-agent.d/ironic-tls.conf"),
        "the agent did not report reading the bundle's conf:\n{}",
        console
            .lines()
            .rev()
            .take(60)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(!console.contains("ipa-insecure"), "the boot must not be insecure");
    let front = std::fs::read_to_string(lab.dir.path().join("tls-front.log")).unwrap_or_default();
    assert!(
        front.contains("accepting connection") || front.contains("accepted connection"),
        "nothing reached Ironic through the TLS front:\n{front}"
    );

    // The control: the same ramdisk without the bundle does not trust the front.
    let plain = lab.serve(&opts.initramfs, "ipa-rs-without-ca.initramfs").expect("serve");
    let vm2 = lab.vm_spec(
        "ipalab-tls2",
        "52:54:00:1a:b0:22",
        512,
        &[(DiskBus::Virtio, GIB, "VIRTIO-TLS-2")],
    );
    lab.define_vm(&vm2).expect("define");
    let uuid2 = lab.enroll(&vm2, json!({})).expect("enroll");
    lab.ironic
        .patch_node(
            &uuid2,
            json!([{"op": "replace", "path": "/driver_info/deploy_ramdisk", "value": plain}]),
        )
        .expect("patch deploy_ramdisk");
    lab.ironic.provision(&uuid2, json!({"target": "manage"})).expect("manage");
    wait(&lab, &uuid2, &["manageable"], 120);
    let t = Instant::now();
    lab.ironic.provision(&uuid2, json!({"target": "inspect"})).expect("inspect");
    if let Err(e) = lab.wait_console(&vm2, 0, "UnknownIssuer", Duration::from_secs(300)) {
        panic!("without the bundle the agent should refuse the private CA: {e}");
    }
    timed("control without the bundle: certificate refused", t);
    let console2 = lab.console(&vm2);
    assert!(!console2.contains("ironic-tls.conf"), "the control ramdisk has no bundle");
    timed("test total", t0);
}

/// The test OS image (`testos/make-test-os.sh`), built into `dir`. Runs before the lab
/// exists: the first build downloads its Debian packages into a cache beside the ramdisk,
/// which only the host's network namespace can reach.
fn test_os(dir: &std::path::Path) -> (PathBuf, PathBuf, String, String) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testos/make-test-os.sh");
    let kernel = ramdisk_dir().join("ipa-rs.kernel");
    let st = std::process::Command::new("bash")
        .arg(&script)
        .arg(dir)
        .env("KERNEL", &kernel)
        .env("CACHE", ramdisk_dir().join("testos-cache"))
        .status()
        .expect("run make-test-os.sh");
    assert!(st.success(), "make-test-os.sh failed: {st}");
    let sums = std::fs::read_to_string(dir.join("testos.sha256")).expect("testos.sha256");
    let sum = |name: &str| {
        sums.lines()
            .find(|l| l.ends_with(name))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("no sha256 for {name} in {sums}"))
            .to_string()
    };
    (dir.join("testos.raw"), dir.join("testos.qcow2"), sum("testos.raw"), sum("testos.qcow2"))
}

/// The console without ANSI sequences (OVMF and iPXE draw with them on the serial console).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters... final byte in @..~
            if chars.next() == Some('[') {
                for f in chars.by_ref() {
                    if ('@'..='~').contains(&f) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

fn head_is_zero(path: &std::path::Path, bytes: usize) -> bool {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    let mut f = std::fs::File::open(path).expect("disk file");
    f.read_exact(&mut buf).expect("read disk file");
    buf.iter().all(|b| *b == 0)
}

/// The disk holds the image's partitions (from 1 MiB on: the partition table itself is
/// rewritten when the agent adds the config drive partition and moves the backup GPT).
fn same_prefix(disk: &std::path::Path, image: &std::path::Path) -> bool {
    let img = std::fs::read(image).expect("image");
    use std::io::Read;
    let mut buf = vec![0u8; img.len()];
    std::fs::File::open(disk).and_then(|mut f| f.read_exact(&mut buf)).expect("read disk");
    let from = 1 << 20;
    let to = img.len().saturating_sub(1 << 20);
    buf[from..to] == img[from..to]
}

const MARKER: &str = "IPA-RS-TESTOS-MARKER";
const CONFIGDRIVE_NAME: &str = "lab-configdrive-check";

/// Cleaning, deploy (raw with a config drive) with fast-track, the deployed OS booting through
/// the agent's UEFI boot entry, rescue and unrescue, then a wrong checksum (unbootable, head
/// zeroed) and a qcow2 redeploy that boots again.
#[test]
fn clean_deploy_boot_rescue_and_bad_checksum_on_a_uefi_vm() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let t0 = Instant::now();
    let os_dir = tempfile::tempdir().unwrap();
    let (raw, qcow2, raw_sum, qcow2_sum) = test_os(os_dir.path());
    timed("test OS image", t0);
    let mut opts = LabOptions::new("life", &ramdisk_dir());
    opts.fast_track = true;
    // Automated cleaning also runs clean_uefi_nvram (IPA's default patterns).
    opts.clean_step_priority_override = Some("deploy.clean_uefi_nvram:20".into());
    let mut lab = Lab::start(&opts).expect("lab");
    timed("lab setup", t0);
    let raw_url = lab.serve(&raw, "testos.raw").unwrap();
    let qcow2_url = lab.serve(&qcow2, "testos.qcow2").unwrap();
    let vm = lab.vm_spec(
        "ipalab-life1",
        "52:54:00:1a:b0:02",
        512,
        &[(DiskBus::Virtio, 2 * GIB, "LIFE-ROOT-1"), (DiskBus::Nvme, GIB, "LIFENVME01")],
    );
    lab.define_vm(&vm).expect("define");
    // Leftover signatures the metadata erase must remove: a GPT on both disks.
    for d in &vm.disks {
        let st = std::process::Command::new("sgdisk")
            .args(["-o", "-n", "1:2048:+16M", "-t", "1:8300"])
            .arg(&d.path)
            .output()
            .unwrap();
        assert!(st.status.success());
    }
    let uuid = lab
        .enroll(&vm, json!({"properties": {"capabilities": "boot_mode:uefi", "root_device": {"serial": "LIFE-ROOT-1"}}}))
        .expect("enroll");
    lab.ironic.provision(&uuid, json!({"target": "manage"})).unwrap();
    wait(&lab, &uuid, &["manageable"], 120);

    // Automated cleaning: erase_devices_metadata on every disk (priority 10 in the lab's
    // Ironic), erase_devices off. With fast-track the agent stays up afterwards.
    let t = Instant::now();
    lab.ironic.provision(&uuid, json!({"target": "provide"})).unwrap();
    let n = wait(&lab, &uuid, &["available"], 1200);
    timed("automated cleaning (erase_devices_metadata)", t);
    assert_eq!(n["power_state"], "power on", "fast-track keeps the agent running");
    for d in &vm.disks {
        let out =
            std::process::Command::new("wipefs").arg("--no-act").arg(&d.path).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.trim().is_empty(), "signatures left on {}: {text}", d.path.display());
    }
    let pxe_boots_before = count(&lab.console(&vm), "NBP file downloaded");

    // Deploy the raw whole-disk image with a config drive.
    let t = Instant::now();
    lab.ironic.patch_node(&uuid, Lab::image_patch(&raw_url, &raw_sum, "raw")).unwrap();
    let console_mark = lab.console(&vm).len();
    lab.ironic
        .provision(
            &uuid,
            json!({"target": "active", "configdrive": {"meta_data": {"name": CONFIGDRIVE_NAME, "hostname": "lab"}}}),
        )
        .unwrap();
    wait(&lab, &uuid, &["active"], 1200);
    timed("deploy raw + config drive (to active)", t);
    let secs = lab
        .wait_console(&vm, console_mark, MARKER, Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.diagnostics()));
    timed("deploy raw: active → marker", t);
    eprintln!("marker {secs:.1} s after the deploy request");
    let console = lab.console(&vm);
    let after = &console[console_mark..];
    assert_eq!(
        count(&console, "NBP file downloaded"),
        pxe_boots_before,
        "fast-track: no new PXE boot between cleaning and deploy"
    );
    assert!(
        after.contains("BdsDxe: starting Boot") && after.contains("ironic1"),
        "the firmware boots the entry the agent created:\n{after}"
    );
    lab.wait_console(&vm, console_mark, "IPA-RS-TESTOS-CONFIGDRIVE", Duration::from_secs(60))
        .unwrap();
    let cd_line = lab.console(&vm)[console_mark..]
        .lines()
        .find(|l| l.contains("IPA-RS-TESTOS-CONFIGDRIVE"))
        .unwrap()
        .to_string();
    assert!(cd_line.contains(CONFIGDRIVE_NAME) || cd_line.contains(&uuid), "{cd_line}");
    assert!(same_prefix(&vm.disks[0].path, &raw), "disk holds the image");
    let excerpt: Vec<&str> =
        after.lines().filter(|l| l.contains("BdsDxe") || l.contains("IPA-RS-TESTOS")).collect();
    eprintln!("LAB-CONSOLE deployed VM after Ironic rebooted it to disk:\n{}", excerpt.join("\n"));

    // Rescue and unrescue.
    let t = Instant::now();
    lab.ironic
        .provision(&uuid, json!({"target": "rescue", "rescue_password": "lab-rescue-pw"}))
        .unwrap();
    wait(&lab, &uuid, &["rescue"], 1200);
    timed("rescue", t);
    let t = Instant::now();
    lab.ironic.provision(&uuid, json!({"target": "unrescue"})).unwrap();
    wait(&lab, &uuid, &["active"], 600);
    timed("unrescue", t);

    // Undeploy (cleaning again), then a wrong checksum: deploy fails, the disk's first MiB is
    // zero and the VM does not boot the image.
    let t = Instant::now();
    let before_clean = lab.console(&vm).len();
    lab.ironic.provision(&uuid, json!({"target": "deleted"})).unwrap();
    wait(&lab, &uuid, &["available"], 1200);
    timed("undeploy + cleaning", t);
    // clean_uefi_nvram ran in the VM with the real efibootmgr against OVMF's NVRAM: the
    // deploy's disk entry is gone, the firmware's own entries are left.
    let cleaning = strip_ansi(&lab.console(&vm)[before_clean..]);
    let deleted = cleaning
        .lines()
        .find(|l| l.contains("deleting UEFI boot entry"))
        .unwrap_or_else(|| panic!("clean_uefi_nvram deleted nothing:\n{cleaning}"));
    assert!(deleted.contains("label=ironic1") && deleted.contains("HD("), "{deleted}");
    let left = cleaning
        .lines()
        .find(|l| l.contains("UEFI boot entries after cleaning"))
        .unwrap_or_else(|| panic!("no listing after clean_uefi_nvram:\n{cleaning}"));
    assert!(!left.contains("ironic1") && left.contains("UiApp"), "{left}");
    let t = Instant::now();
    lab.ironic
        .patch_node(
            &uuid,
            // Undeploying cleared instance_info.
            Lab::image_patch(&qcow2_url, &"0".repeat(64), "qcow2"),
        )
        .unwrap();
    lab.ironic.provision(&uuid, json!({"target": "active"})).unwrap();
    let n = wait(&lab, &uuid, &["deploy failed"], 1200);
    timed("deploy with a wrong checksum (to deploy failed)", t);
    assert!(n["last_error"].as_str().unwrap_or("").contains("checksum"), "{}", n["last_error"]);
    assert!(head_is_zero(&vm.disks[0].path, 1 << 20), "first MiB zero after a failed checksum");

    // The same qcow2 with its right checksum deploys and boots.
    let t = Instant::now();
    lab.ironic
        .patch_node(
            &uuid,
            json!([{"op": "add", "path": "/instance_info/image_os_hash_value", "value": qcow2_sum}]),
        )
        .unwrap();
    let console_mark = lab.console(&vm).len();
    lab.ironic.provision(&uuid, json!({"target": "active"})).unwrap();
    wait(&lab, &uuid, &["active"], 1200);
    lab.wait_console(&vm, console_mark, MARKER, Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.diagnostics()));
    timed("deploy qcow2 (to marker)", t);
    assert!(same_prefix(&vm.disks[0].path, &raw), "qcow2 expands to the raw image");
    timed("test total", t0);
}

const GPFS_TYPE: &str = "37AFFC90-EF7D-4E96-91C3-2D7AE055B174";

/// Fill `path` with pseudo-random bytes (not uniform anywhere, so a "changed" check can judge
/// every sampled region).
fn fill_random(path: &std::path::Path, seed: u64) {
    use std::io::Write;
    let len = std::fs::metadata(path).unwrap().len();
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let mut x = seed | 1;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..len / block.len() as u64 {
        for c in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&block).unwrap();
    }
    f.sync_all().unwrap();
}

fn file_sha256(path: &std::path::Path) -> String {
    ipa_core::attest::sha256_hex(&std::fs::read(path).unwrap())
}

fn sgdisk(path: &std::path::Path, part_type: &str) {
    let st = std::process::Command::new("sgdisk")
        .args(["-o", "-n", "1:2048:+8M", "-t", &format!("1:{part_type}")])
        .arg(path)
        .output()
        .unwrap();
    assert!(st.status.success(), "{st:?}");
}

/// Erase reports in the newest cleaning log bundle Ironic stored (`deploy_logs_collect =
/// always`): `erase-reports/<step>-<time>.json` members.
fn reports_in_newest_bundle(
    dir: &std::path::Path,
    uuid: &str,
) -> (String, Vec<ipa_core::attest::EraseReport>) {
    let mut bundles: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    bundles.retain(|p| {
        let n = p.file_name().unwrap().to_string_lossy();
        n.starts_with(uuid) && n.contains("_cleaning_")
    });
    bundles.sort();
    let newest =
        bundles.last().unwrap_or_else(|| panic!("no cleaning bundle in {}", dir.display()));
    let gz = std::fs::read(newest).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&gz[..]));
    let mut out = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        if name.contains("erase-reports/") {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut e, &mut text).unwrap();
            out.push(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}")));
        }
    }
    (newest.display().to_string(), out)
}

/// Erasure on real virtual devices, driven by a real Ironic's automated cleaning
/// (`erase_devices_metadata` at 10, `erase_devices` at 5 through
/// `clean_step_priority_override`): virtio (512 B), 4Kn virtio, QEMU NVMe and AHCI disks full
/// of random data and old GPTs, a disk holding a GPFS partition and one in the node's
/// `skip_block_devices`. The first clean refuses the GPFS disk (IPA's ProtectedDeviceError)
/// and the operator skip-lists it; the second erases the rest. From the host: erased disk
/// files are all zeros and `wipefs` finds nothing, the two kept disks are byte-identical, and
/// the signed reports from Ironic's stored log bundle verify against the key in the heartbeat
/// certificate Ironic stored, sample by sample against the disk files.
#[test]
fn cleaning_erases_real_disks_keeps_protected_and_skipped_ones_and_signs_a_report() {
    use ipa_core::attest::{self, CheckOptions, Outcome};
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let t0 = Instant::now();
    let mut opts = LabOptions::new("erase", &ramdisk_dir());
    opts.fast_track = true;
    opts.clean_step_priority_override = Some("deploy.erase_devices:5".into());
    let mut lab = Lab::start(&opts).expect("lab");
    timed("lab setup", t0);
    const MIB: u64 = 1 << 20;
    let vm = lab.vm_spec(
        "ipalab-erase1",
        "52:54:00:1a:b0:31",
        512,
        &[
            (DiskBus::Virtio, 192 * MIB, "ERASE-VIRTIO-1"),
            (DiskBus::Nvme, 128 * MIB, "ERASENVME0001"),
            (DiskBus::Virtio4Kn, 128 * MIB, "ERASE-4KN-1"),
            (DiskBus::Sata, 128 * MIB, "ERASE-SATA-1"),
            (DiskBus::Virtio, 64 * MIB, "ERASE-GPFS-1"),
            (DiskBus::Virtio, 64 * MIB, "ERASE-SKIP-1"),
        ],
    );
    lab.define_vm(&vm).expect("define");
    for (i, d) in vm.disks.iter().enumerate() {
        fill_random(&d.path, 0x9e37_79b9_7f4a_7c15 ^ i as u64);
        let t = if d.serial == "ERASE-GPFS-1" { GPFS_TYPE } else { "8300" };
        if d.bus != DiskBus::Virtio4Kn {
            sgdisk(&d.path, t);
        }
    }
    let kept: Vec<(&ipa_vm_lab::DiskSpec, String)> = vm
        .disks
        .iter()
        .filter(|d| d.serial == "ERASE-GPFS-1" || d.serial == "ERASE-SKIP-1")
        .map(|d| (d, file_sha256(&d.path)))
        .collect();
    let uuid = lab
        .enroll(
            &vm,
            json!({"properties": {"capabilities": "boot_mode:uefi",
                                  "skip_block_devices": [{"serial": "ERASE-SKIP-1"}]}}),
        )
        .expect("enroll");
    lab.ironic.provision(&uuid, json!({"target": "manage"})).unwrap();
    wait(&lab, &uuid, &["manageable"], 120);

    // 1. The GPFS disk is protected: cleaning fails with IPA's error and nothing is lost.
    let t = Instant::now();
    lab.ironic.provision(&uuid, json!({"target": "provide"})).unwrap();
    let n = wait(&lab, &uuid, &["clean failed"], 1200);
    timed("automated cleaning refused (GPFS partition)", t);
    let err = n["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("GPFS"), "last_error: {err}");
    for (d, sum) in &kept {
        assert_eq!(&file_sha256(&d.path), sum, "{} changed", d.serial);
    }

    // 2. The operator skip-lists it; cleaning then erases everything else.
    lab.ironic.provision(&uuid, json!({"target": "manage"})).unwrap();
    let n = wait(&lab, &uuid, &["manageable"], 300);
    // Ironic puts a node whose cleaning failed into maintenance (fault "clean failure"), and
    // ignores its agent's heartbeats until an operator takes it out again.
    assert_eq!(n["maintenance"], json!(true), "{n}");
    assert_eq!(n["fault"], json!("clean failure"), "{n}");
    lab.ironic.ok("DELETE", &format!("/v1/nodes/{uuid}/maintenance"), None).unwrap();
    lab.ironic
        .patch_node(
            &uuid,
            json!([{"op": "replace", "path": "/properties/skip_block_devices",
                    "value": [{"serial": "ERASE-SKIP-1"}, {"serial": "ERASE-GPFS-1"}]}]),
        )
        .unwrap();
    let t = Instant::now();
    lab.ironic.provision(&uuid, json!({"target": "provide"})).unwrap();
    wait(&lab, &uuid, &["available"], 1500);
    timed("automated cleaning (erase_devices_metadata + erase_devices)", t);

    for (d, sum) in &kept {
        assert_eq!(&file_sha256(&d.path), sum, "{} must keep every byte", d.serial);
    }
    for d in vm.disks.iter().filter(|d| !kept.iter().any(|(k, _)| k.serial == d.serial)) {
        let data = std::fs::read(&d.path).unwrap();
        let nonzero = data.iter().filter(|b| **b != 0).count();
        assert_eq!(nonzero, 0, "{} ({:?}) is not all zeros", d.serial, d.bus);
        let out =
            std::process::Command::new("wipefs").arg("--no-act").arg(&d.path).output().unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty(), "{}", d.serial);
    }

    // 3. The signed reports, from the log bundle Ironic stored, verified against the key in
    // the heartbeat certificate Ironic stored.
    let cert = std::fs::read_to_string(lab.ironic.dir.path().join(format!("certs/{uuid}.crt")))
        .expect("Ironic stores the agent's heartbeat certificate");
    let key = attest::key_from_certificate(&cert).expect("the certificate carries the key");
    let (bundle, reports) =
        reports_in_newest_bundle(&lab.ironic.dir.path().join("deploy-logs"), &uuid);
    eprintln!("erase reports from {bundle}");
    let steps: Vec<&str> = reports.iter().map(|r| r.step.as_str()).collect();
    assert!(steps.contains(&"erase_devices"), "{steps:?}");
    assert!(steps.contains(&"erase_devices_metadata"), "{steps:?}");
    for report in &reports {
        let serials: Vec<&str> = report.disks.iter().filter_map(|d| d.serial.as_deref()).collect();
        for d in &vm.disks {
            assert!(serials.contains(&d.serial.as_str()), "{} not in {serials:?}", d.serial);
        }
        let disk_files = report
            .disks
            .iter()
            .filter_map(|rd| {
                let spec =
                    vm.disks.iter().find(|d| rd.serial.as_deref() == Some(d.serial.as_str()))?;
                Some((rd.name.clone(), spec.path.clone()))
            })
            .collect();
        let findings = attest::check(
            report,
            &CheckOptions {
                trusted_key: Some(key.clone()),
                inventory: Some(report.disks.clone()),
                disk_files,
            },
        );
        for f in &findings {
            eprintln!("{} {f}", report.step);
        }
        assert!(findings.iter().all(|f| f.ok), "{findings:#?}");
        assert_eq!(report.node_uuid.as_deref(), Some(uuid.as_str()));
    }
    let full = reports.iter().rev().find(|r| r.step == "erase_devices").unwrap();
    let by_serial = |s: &str| {
        full.devices
            .iter()
            .find(|d| d.serial.as_deref() == Some(s))
            .unwrap_or_else(|| panic!("{s} not in the erase_devices report: {:#?}", full.devices))
    };
    assert_eq!(by_serial("ERASENVME0001").method.as_deref(), Some("nvme_format"));
    for s in ["ERASE-VIRTIO-1", "ERASE-4KN-1", "ERASE-SATA-1"] {
        let d = by_serial(s);
        assert_eq!(d.outcome, Outcome::Erased, "{d:?}");
        assert_eq!(d.method.as_deref(), Some("overwrite"), "{d:?}");
        eprintln!("{s}: {:?} {} bytes", d.parameters, d.bytes);
    }
    assert_eq!(by_serial("ERASE-4KN-1").logical_sector_size, 4096);
    for s in ["ERASE-GPFS-1", "ERASE-SKIP-1"] {
        assert_eq!(by_serial(s).outcome, Outcome::Skipped);
    }
    timed("test total", t0);
}
