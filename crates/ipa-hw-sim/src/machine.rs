//! The simulated machine description: a small TOML or JSON file (`--machine FILE`, option
//! `machine`), or the built-in default machine when none is given.
//!
//! ```toml
//! hostname = "sim-node-0"
//!
//! [cpu]
//! model_name = "Simulated CPU @ 2.40GHz"
//! frequency = "2400.0000"
//! count = 4
//!
//! [memory]
//! total = "8GiB"
//!
//! [[interfaces]]
//! name = "eth0"
//! mac_address = "52:54:00:12:34:56"
//! ipv4_address = "192.0.2.10"
//!
//! [[disks]]
//! name = "/dev/vda"
//! size = "8GiB"
//!
//! [[steps]]                   # harmless steps with checkable effects
//! name = "sim_burnin"
//! kinds = ["clean", "service"]
//! priority = 50
//! sleep_ms = 200
//! ```

use std::path::Path;

use ipa_core::hardware::{
    BlockDevice, BootInfo, Cpu, Firmware, Memory, NetworkInterface, SystemVendorInfo,
};
use serde::{Deserialize, Deserializer};

use crate::SimError;

/// A whole simulated machine.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    /// Host name reported in the inventory.
    #[serde(default = "default_hostname")]
    pub hostname: String,
    /// CPU.
    #[serde(default)]
    pub cpu: CpuSpec,
    /// Memory.
    #[serde(default)]
    pub memory: MemorySpec,
    /// NICs, in inventory order.
    #[serde(default)]
    pub interfaces: Vec<NicSpec>,
    /// Disks, in device order. Each is backed by a sparse file `<sandbox>/disks/<basename>`.
    #[serde(default)]
    pub disks: Vec<DiskSpec>,
    /// System vendor and firmware.
    #[serde(default)]
    pub system_vendor: VendorSpec,
    /// Boot mode and PXE interface.
    #[serde(default)]
    pub boot: BootSpec,
    /// BMC IPv4 address.
    #[serde(default)]
    pub bmc_address: Option<String>,
    /// BMC IPv6 address.
    #[serde(default)]
    pub bmc_v6address: Option<String>,
    /// BMC MAC address.
    #[serde(default)]
    pub bmc_mac: Option<String>,
    /// Extra harmless steps.
    #[serde(default)]
    pub steps: Vec<StepSpec>,
}

fn default_hostname() -> String {
    "sim-node-0".into()
}

/// CPU description.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuSpec {
    /// Model name.
    #[serde(default = "default_cpu_model")]
    pub model_name: String,
    /// Max frequency in MHz, a string as IPA reports it.
    #[serde(default = "default_cpu_freq")]
    pub frequency: String,
    /// Logical CPUs.
    #[serde(default = "default_cpu_count")]
    pub count: u64,
    /// Architecture.
    #[serde(default = "default_arch")]
    pub architecture: String,
    /// CPU flags.
    #[serde(default = "default_flags")]
    pub flags: Vec<String>,
    /// Sockets.
    #[serde(default = "one")]
    pub socket_count: u64,
}

impl Default for CpuSpec {
    fn default() -> Self {
        Self {
            model_name: default_cpu_model(),
            frequency: default_cpu_freq(),
            count: default_cpu_count(),
            architecture: default_arch(),
            flags: default_flags(),
            socket_count: 1,
        }
    }
}

fn default_cpu_model() -> String {
    "Simulated CPU @ 2.40GHz".into()
}
fn default_cpu_freq() -> String {
    "2400.0000".into()
}
fn default_cpu_count() -> u64 {
    4
}
fn default_arch() -> String {
    std::env::consts::ARCH.into()
}
fn default_flags() -> Vec<String> {
    ["fpu", "sse2", "ssse3", "sse4_2", "aes", "avx2", "sha_ni"].map(String::from).to_vec()
}
fn one() -> u64 {
    1
}

/// Memory description.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemorySpec {
    /// Usable bytes (`/proc/meminfo` MemTotal).
    #[serde(default = "default_mem", deserialize_with = "de_size")]
    pub total: u64,
    /// Installed MiB (DMI); defaults to `total` rounded up to a GiB.
    #[serde(default)]
    pub physical_mb: Option<u64>,
}

impl Default for MemorySpec {
    fn default() -> Self {
        Self { total: default_mem(), physical_mb: None }
    }
}

fn default_mem() -> u64 {
    8 << 30
}

/// One NIC.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NicSpec {
    /// Interface name.
    pub name: String,
    /// MAC address (`aa:bb:cc:dd:ee:ff`).
    pub mac_address: String,
    /// IPv4 address.
    #[serde(default)]
    pub ipv4_address: Option<String>,
    /// IPv6 address.
    #[serde(default)]
    pub ipv6_address: Option<String>,
    /// Link up.
    #[serde(default = "yes")]
    pub has_carrier: bool,
    /// PCI vendor id (`0x8086`).
    #[serde(default)]
    pub vendor: Option<String>,
    /// PCI product id.
    #[serde(default)]
    pub product: Option<String>,
    /// DHCP client id (InfiniBand).
    #[serde(default)]
    pub client_id: Option<String>,
    /// Link speed.
    #[serde(default)]
    pub speed_mbps: Option<u64>,
    /// PCI address.
    #[serde(default)]
    pub pci_address: Option<String>,
    /// Kernel driver.
    #[serde(default)]
    pub driver: Option<String>,
}

fn yes() -> bool {
    true
}

/// One disk.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskSpec {
    /// Device path, `/dev/<name>`.
    pub name: String,
    /// Size: bytes, or a string with a unit (`8GiB`, `512MiB`, `1TB`).
    #[serde(deserialize_with = "de_size")]
    pub size: u64,
    /// Model.
    #[serde(default)]
    pub model: Option<String>,
    /// Spinning disk.
    #[serde(default)]
    pub rotational: bool,
    /// WWN.
    #[serde(default)]
    pub wwn: Option<String>,
    /// Serial number.
    #[serde(default)]
    pub serial: Option<String>,
    /// Vendor.
    #[serde(default)]
    pub vendor: Option<String>,
    /// SCSI host:channel:target:lun.
    #[serde(default)]
    pub hctl: Option<String>,
    /// `/dev/disk/by-path/...`.
    #[serde(default)]
    pub by_path: Option<String>,
    /// Logical sector size.
    #[serde(default = "sector")]
    pub logical_sectors: u32,
    /// Physical sector size.
    #[serde(default = "sector")]
    pub physical_sectors: u32,
    /// Transport (`sata`, `sas`, `nvme`, ...).
    #[serde(default)]
    pub tran: Option<String>,
}

fn sector() -> u32 {
    512
}

/// System vendor description.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VendorSpec {
    /// Product.
    #[serde(default = "default_product")]
    pub product_name: String,
    /// Serial.
    #[serde(default = "default_serial")]
    pub serial_number: String,
    /// Manufacturer.
    #[serde(default = "default_manufacturer")]
    pub manufacturer: String,
    /// Firmware vendor.
    #[serde(default = "default_manufacturer")]
    pub firmware_vendor: String,
    /// Firmware version.
    #[serde(default = "default_fw_version")]
    pub firmware_version: String,
    /// Firmware build date.
    #[serde(default = "default_fw_date")]
    pub firmware_build_date: String,
}

impl Default for VendorSpec {
    fn default() -> Self {
        Self {
            product_name: default_product(),
            serial_number: default_serial(),
            manufacturer: default_manufacturer(),
            firmware_vendor: default_manufacturer(),
            firmware_version: default_fw_version(),
            firmware_build_date: default_fw_date(),
        }
    }
}

fn default_product() -> String {
    "Simulated Server (ipa-hw-sim)".into()
}
fn default_serial() -> String {
    "SIM-0001".into()
}
fn default_manufacturer() -> String {
    "ipa-rs".into()
}
fn default_fw_version() -> String {
    "1.0".into()
}
fn default_fw_date() -> String {
    "01/01/2026".into()
}

/// Boot description.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootSpec {
    /// `uefi` or `bios`.
    #[serde(default = "default_boot_mode")]
    pub current_boot_mode: String,
    /// The PXE-booted interface's MAC (`BOOTIF`).
    #[serde(default)]
    pub pxe_interface: Option<String>,
}

impl Default for BootSpec {
    fn default() -> Self {
        Self { current_boot_mode: default_boot_mode(), pxe_interface: None }
    }
}

fn default_boot_mode() -> String {
    "uefi".into()
}

/// A harmless extra step. Running it appends a JSON line to `<sandbox>/sim-steps.log`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Step name.
    pub name: String,
    /// Which step lists carry it.
    #[serde(default = "default_kinds")]
    pub kinds: Vec<String>,
    /// Priority (0 = only on request).
    #[serde(default)]
    pub priority: i64,
    /// Ironic interface.
    #[serde(default = "default_interface")]
    pub interface: String,
    /// Ask Ironic to reboot after it.
    #[serde(default)]
    pub reboot_requested: bool,
    /// Abortable (clean/service).
    #[serde(default = "yes")]
    pub abortable: bool,
    /// How long it "works".
    #[serde(default)]
    pub sleep_ms: u64,
    /// If set, the step fails with this message.
    #[serde(default)]
    pub fail: Option<String>,
    /// `argsinfo` advertised: arg name → description (all optional).
    #[serde(default)]
    pub args: std::collections::BTreeMap<String, String>,
}

fn default_kinds() -> Vec<String> {
    vec!["clean".into()]
}
fn default_interface() -> String {
    "deploy".into()
}

impl Default for Machine {
    fn default() -> Self {
        Self {
            hostname: default_hostname(),
            cpu: CpuSpec::default(),
            memory: MemorySpec::default(),
            interfaces: vec![NicSpec {
                name: "eth0".into(),
                mac_address: "52:54:00:12:34:56".into(),
                ipv4_address: Some("127.0.0.1".into()),
                ipv6_address: None,
                has_carrier: true,
                vendor: Some("0x1af4".into()),
                product: Some("0x0001".into()),
                client_id: None,
                speed_mbps: Some(10000),
                pci_address: Some("0000:00:03.0".into()),
                driver: Some("virtio_net".into()),
            }],
            disks: vec![DiskSpec {
                name: "/dev/vda".into(),
                size: 8 << 30,
                model: Some("SIMDISK".into()),
                rotational: false,
                wwn: None,
                serial: Some("sim-vda".into()),
                vendor: Some("0x1af4".into()),
                hctl: None,
                by_path: Some("/dev/disk/by-path/pci-0000:00:05.0".into()),
                logical_sectors: 512,
                physical_sectors: 512,
                tran: None,
            }],
            system_vendor: VendorSpec::default(),
            boot: BootSpec::default(),
            bmc_address: None,
            bmc_v6address: None,
            bmc_mac: None,
            steps: vec![StepSpec {
                name: "sim_noop".into(),
                kinds: vec!["clean".into(), "deploy".into(), "service".into()],
                priority: 0,
                interface: "deploy".into(),
                reboot_requested: false,
                abortable: true,
                sleep_ms: 0,
                fail: None,
                args: [("note".to_string(), "Free text recorded in sim-steps.log".to_string())]
                    .into_iter()
                    .collect(),
            }],
        }
    }
}

impl Machine {
    /// Load from a `.toml` or `.json` file (by extension; anything else is tried as TOML).
    pub fn load(path: &Path) -> Result<Self, SimError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| SimError::Read { path: path.to_path_buf(), source })?;
        let machine: Machine = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text)
                .map_err(|e| SimError::Parse { path: path.to_path_buf(), reason: e.to_string() })?
        } else {
            toml::from_str(&text)
                .map_err(|e| SimError::Parse { path: path.to_path_buf(), reason: e.to_string() })?
        };
        machine
            .validate()
            .map_err(|reason| SimError::Parse { path: path.to_path_buf(), reason })?;
        Ok(machine)
    }

    /// Check names, MACs and sizes.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        for d in &self.disks {
            let Some(base) = d.name.strip_prefix("/dev/") else {
                return Err(format!("disk name {:?} must start with /dev/", d.name));
            };
            if base.is_empty() || base.contains('/') || base.starts_with('.') {
                return Err(format!(
                    "disk name {:?} must be /dev/<name> without subdirectories",
                    d.name
                ));
            }
            if !seen.insert(base.to_string()) {
                return Err(format!("disk {:?} is listed twice", d.name));
            }
            if d.size == 0 {
                return Err(format!("disk {:?} has size 0", d.name));
            }
            if !matches!(d.logical_sectors, 512 | 4096) {
                return Err(format!("disk {:?}: logical_sectors must be 512 or 4096", d.name));
            }
        }
        for n in &self.interfaces {
            if !is_mac(&n.mac_address) {
                return Err(format!("interface {:?}: invalid MAC {:?}", n.name, n.mac_address));
            }
        }
        for s in &self.steps {
            for k in &s.kinds {
                if !matches!(k.as_str(), "clean" | "deploy" | "service") {
                    return Err(format!("step {:?}: unknown kind {k:?}", s.name));
                }
            }
        }
        Ok(())
    }

    /// NICs as inventory records.
    pub fn network_interfaces(&self) -> Vec<NetworkInterface> {
        self.interfaces
            .iter()
            .map(|n| NetworkInterface {
                name: n.name.clone(),
                mac_address: n.mac_address.to_ascii_lowercase(),
                ipv4_address: n.ipv4_address.clone(),
                ipv6_address: n.ipv6_address.clone(),
                has_carrier: n.has_carrier,
                lldp: None,
                vendor: n.vendor.clone(),
                product: n.product.clone(),
                client_id: n.client_id.clone(),
                biosdevname: None,
                speed_mbps: n.speed_mbps,
                pci_address: n.pci_address.clone(),
                driver: n.driver.clone(),
            })
            .collect()
    }

    /// Disks as inventory records.
    pub fn block_devices(&self) -> Vec<BlockDevice> {
        self.disks
            .iter()
            .map(|d| BlockDevice {
                name: d.name.clone(),
                model: d.model.clone(),
                size: d.size,
                rotational: d.rotational,
                wwn: d.wwn.clone(),
                serial: d.serial.clone(),
                vendor: d.vendor.clone(),
                wwn_with_extension: d.wwn.clone(),
                wwn_vendor_extension: None,
                hctl: d.hctl.clone(),
                by_path: d.by_path.clone(),
                logical_sectors: Some(d.logical_sectors),
                physical_sectors: Some(d.physical_sectors),
                tran: d.tran.clone(),
                uuid: None,
                partuuid: None,
                device_type: Some("disk".into()),
            })
            .collect()
    }

    /// CPU record.
    pub fn cpu(&self) -> Cpu {
        Cpu {
            model_name: Some(self.cpu.model_name.clone()),
            frequency: Some(self.cpu.frequency.clone()),
            count: self.cpu.count,
            architecture: self.cpu.architecture.clone(),
            flags: self.cpu.flags.clone(),
            socket_count: Some(self.cpu.socket_count),
        }
    }

    /// Memory record.
    pub fn memory(&self) -> Memory {
        let gib = 1u64 << 30;
        let physical = self.memory.physical_mb.unwrap_or(self.memory.total.div_ceil(gib) * 1024);
        Memory { total: self.memory.total, physical_mb: Some(physical) }
    }

    /// System vendor record.
    pub fn system_vendor(&self) -> SystemVendorInfo {
        let v = &self.system_vendor;
        SystemVendorInfo {
            product_name: v.product_name.clone(),
            serial_number: v.serial_number.clone(),
            manufacturer: v.manufacturer.clone(),
            firmware: Firmware {
                vendor: v.firmware_vendor.clone(),
                version: v.firmware_version.clone(),
                build_date: v.firmware_build_date.clone(),
            },
        }
    }

    /// Boot record.
    pub fn boot(&self) -> BootInfo {
        BootInfo {
            current_boot_mode: self.boot.current_boot_mode.clone(),
            pxe_interface: self.boot.pxe_interface.clone(),
        }
    }
}

fn is_mac(s: &str) -> bool {
    let parts: Vec<_> = s.split(':').collect();
    // 6 octets for Ethernet, 20 for InfiniBand hardware addresses.
    (parts.len() == 6 || parts.len() == 20)
        && parts.iter().all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Parse `8GiB`, `512 MiB`, `1TB`, `4096`, `1.5G` (G = GiB, as `truncate` does).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => return Err(format!("unknown size unit {other:?} in {s:?}")),
    };
    let bytes = n * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("size {s:?} out of range"));
    }
    Ok(bytes as u64)
}

fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(u64),
        S(String),
    }
    match Raw::deserialize(d)? {
        Raw::N(n) => Ok(n),
        Raw::S(s) => parse_size(&s).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_size("8GiB").unwrap(), 8 << 30);
        assert_eq!(parse_size("8G").unwrap(), 8 << 30);
        assert_eq!(parse_size("512 MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1TB").unwrap(), 1_000_000_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("3 parsecs").is_err());
    }

    #[test]
    fn toml_machine_parses_and_fills_defaults() {
        let m: Machine = toml::from_str(
            r#"
hostname = "n1"
[[interfaces]]
name = "eno1"
mac_address = "3C:FD:FE:AA:BB:01"
[[disks]]
name = "/dev/sda"
size = "20GiB"
rotational = true
[[disks]]
name = "/dev/nvme0n1"
size = 4096000000
tran = "nvme"
"#,
        )
        .unwrap();
        m.validate().unwrap();
        assert_eq!(m.hostname, "n1");
        assert_eq!(m.disks[0].size, 20 << 30);
        assert_eq!(m.network_interfaces()[0].mac_address, "3c:fd:fe:aa:bb:01");
        assert_eq!(m.cpu().frequency.as_deref(), Some("2400.0000"));
        assert_eq!(m.memory().physical_mb, Some(8192));
    }

    #[test]
    fn bad_descriptions_are_refused_with_the_reason() {
        let mut m = Machine::default();
        m.disks[0].name = "/dev/../etc/passwd".into();
        assert!(m.validate().unwrap_err().contains("without subdirectories"));
        let mut m = Machine::default();
        m.interfaces[0].mac_address = "52:54:00:12:34".into();
        assert!(m.validate().unwrap_err().contains("invalid MAC"));
        let e = toml::from_str::<Machine>("colour = 'blue'").unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
    }
}
