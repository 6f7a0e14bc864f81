//! Read-only sysfs access under a root prefix (`/` in production, a fixture tree in tests).

use std::path::{Path, PathBuf};

/// PCI vendor id of Mellanox/NVIDIA networking.
pub const MLNX_VENDOR_ID: &str = "0x15b3";

/// A sysfs reader rooted at `root`.
#[derive(Debug, Clone)]
pub struct Sysfs {
    root: PathBuf,
}

impl Sysfs {
    /// Reader for `root` (`/` on a real machine).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `root` joined with an absolute path.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    /// Contents of a file, trimmed; `None` if unreadable.
    pub fn read(&self, abs: &str) -> Option<String> {
        std::fs::read_to_string(self.path(abs)).ok().map(|s| s.trim().to_string())
    }

    /// Names under a directory, sorted; empty if absent.
    pub fn list(&self, abs: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.path(abs))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Basename of a symlink's target (`device` → PCI address, `driver` → driver name).
    pub fn link_name(&self, abs: &str) -> Option<String> {
        std::fs::read_link(self.path(abs))
            .ok()
            .and_then(|t| Path::new(&t).file_name().map(|n| n.to_string_lossy().into_owned()))
    }

    /// Network interfaces that have a PCI vendor file (`/sys/class/net/X/device/vendor`).
    pub fn nic_vendors(&self) -> Vec<(String, String)> {
        self.list("/sys/class/net")
            .into_iter()
            .filter_map(|n| {
                let v = self.read(&format!("/sys/class/net/{n}/device/vendor"))?;
                Some((n, v))
            })
            .collect()
    }

    /// PCI functions of Mellanox network or InfiniBand controllers:
    /// `(address, device id)` from `/sys/bus/pci/devices`.
    pub fn mellanox_pci_functions(&self) -> Vec<(String, String)> {
        self.list("/sys/bus/pci/devices")
            .into_iter()
            .filter_map(|addr| {
                let base = format!("/sys/bus/pci/devices/{addr}");
                let vendor = self.read(&format!("{base}/vendor"))?;
                if !vendor.eq_ignore_ascii_case(MLNX_VENDOR_ID) {
                    return None;
                }
                // Class 0x02xxxx: network controller (Ethernet 0x0200, InfiniBand 0x0207).
                let class = self.read(&format!("{base}/class")).unwrap_or_default();
                if !class.to_ascii_lowercase().starts_with("0x02") {
                    return None;
                }
                let device = self.read(&format!("{base}/device")).unwrap_or_default();
                Some((addr, device))
            })
            .collect()
    }
}
