//! Fixture-tree tests: an i40e host's LLDP-agent stop through debugfs.

use std::os::unix::fs::symlink;
use std::path::Path;

use ipa_core::hardware::{HardwareManager, HardwareSupport};
use ipa_hw_intel_cna::{IntelCnaHardwareManager, LldpOutcome};

/// `eno1`/`eno2` on an X710 (i40e, two functions), `eno3` on an igb NIC; sysfs links like the
/// kernel's.
fn i40e_host(root: &Path, with_debugfs: bool) {
    let devices = root.join("sys/devices/pci0000:17");
    let drivers = root.join("sys/bus/pci/drivers");
    for (nic, pci, driver) in [
        ("eno1", "0000:18:00.0", "i40e"),
        ("eno2", "0000:18:00.1", "i40e"),
        ("eno3", "0000:19:00.0", "igb"),
    ] {
        std::fs::create_dir_all(devices.join(pci)).unwrap();
        std::fs::create_dir_all(drivers.join(driver)).unwrap();
        symlink(drivers.join(driver), devices.join(pci).join("driver")).ok();
        let net = root.join("sys/class/net").join(nic);
        std::fs::create_dir_all(&net).unwrap();
        symlink(devices.join(pci), net.join("device")).unwrap();
    }
    std::fs::create_dir_all(root.join("sys/class/net/lo")).unwrap();
    if with_debugfs {
        for pci in ["0000:18:00.0", "0000:18:00.1"] {
            let d = root.join("sys/kernel/debug/i40e").join(pci);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("command"), "").unwrap();
        }
    }
}

fn command(root: &Path, pci: &str) -> String {
    std::fs::read_to_string(root.join("sys/kernel/debug/i40e").join(pci).join("command")).unwrap()
}

#[tokio::test]
async fn mainline_only_with_an_i40e_nic() {
    let dir = tempfile::tempdir().unwrap();
    i40e_host(dir.path(), true);
    let m = IntelCnaHardwareManager::new(dir.path(), true);
    assert_eq!(m.evaluate_hardware_support().await, HardwareSupport::MAINLINE);
    assert_eq!(
        m.cna_nics(),
        [("eno1".to_string(), "0000:18:00.0".to_string()), ("eno2".into(), "0000:18:00.1".into())]
    );
    let empty = tempfile::tempdir().unwrap();
    let m = IntelCnaHardwareManager::new(empty.path(), true);
    assert_eq!(m.evaluate_hardware_support().await, HardwareSupport::NONE);
}

#[tokio::test]
async fn collect_lldp_stops_the_firmware_agent_once_per_device() {
    let dir = tempfile::tempdir().unwrap();
    i40e_host(dir.path(), true);
    let m = IntelCnaHardwareManager::new(dir.path(), true);
    m.initialize(&ipa_core::hardware::HardwareManagers::empty()).await.unwrap();
    assert_eq!(command(dir.path(), "0000:18:00.0"), "lldp stop");
    assert_eq!(command(dir.path(), "0000:18:00.1"), "lldp stop");
    assert!(!dir.path().join("sys/kernel/debug/i40e/0000:19:00.0").exists(), "igb is left alone");

    // Idempotent: a second run writes nothing and reports the devices as already stopped.
    std::fs::write(dir.path().join("sys/kernel/debug/i40e/0000:18:00.0/command"), "").unwrap();
    let again = m.stop_embedded_lldp();
    assert_eq!(
        again,
        [
            LldpOutcome::AlreadyStopped { pci: "0000:18:00.0".into() },
            LldpOutcome::AlreadyStopped { pci: "0000:18:00.1".into() }
        ]
    );
    assert_eq!(command(dir.path(), "0000:18:00.0"), "");
    // A fresh process (new manager) writing again leaves the same single command.
    let fresh = IntelCnaHardwareManager::new(dir.path(), true);
    fresh.initialize(&ipa_core::hardware::HardwareManagers::empty()).await.unwrap();
    fresh.initialize(&ipa_core::hardware::HardwareManagers::empty()).await.unwrap();
    assert_eq!(command(dir.path(), "0000:18:00.1"), "lldp stop");
}

#[tokio::test]
async fn nothing_is_written_when_lldp_collection_is_off() {
    let dir = tempfile::tempdir().unwrap();
    i40e_host(dir.path(), true);
    IntelCnaHardwareManager::new(dir.path(), false)
        .initialize(&ipa_core::hardware::HardwareManagers::empty())
        .await
        .unwrap();
    assert_eq!(command(dir.path(), "0000:18:00.0"), "");
}

/// Captures log output for the assertion on the warning text.
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn missing_debugfs_is_reported_clearly_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    i40e_host(dir.path(), false);
    let logs = Logs::default();
    let sink = logs.clone();
    let subscriber =
        tracing_subscriber::fmt().with_writer(move || sink.clone()).with_ansi(false).finish();
    let outcomes = tracing::subscriber::with_default(subscriber, || {
        IntelCnaHardwareManager::new(dir.path(), true).stop_embedded_lldp()
    });
    assert!(matches!(&outcomes[0], LldpOutcome::NoDebugfs { pci, .. } if pci == "0000:18:00.0"));
    assert_eq!(outcomes.len(), 2);
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("WARN"), "{text}");
    assert!(
        text.contains(
            "cannot stop the embedded LLDP agent of Intel CNA NIC(s) 0000:18:00.0, 0000:18:00.1"
        ),
        "{text}"
    );
    assert!(text.contains("is debugfs mounted on /sys/kernel/debug?"), "{text}");
    assert!(!dir.path().join("sys/kernel/debug").exists(), "no debugfs entries are invented");
}
