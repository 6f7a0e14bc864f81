//! Inventory types with IPA's field names, types and key order (spec `ipa-agent.md` §5.7).
//!
//! Field order in these structs *is* the JSON key order. Internal-only fields (`uuid`,
//! `partuuid`, device type, ...) are `#[serde(skip)]`, as IPA keeps them but never serialises them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One NIC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct NetworkInterface {
    /// Kernel name (`eno1`).
    pub name: String,
    /// Permanent MAC (InfiniBand: derived from the GUID).
    pub mac_address: String,
    /// First IPv4 address.
    pub ipv4_address: Option<String>,
    /// First IPv6 address (with `%iface` scope for link-local, as psutil reports).
    pub ipv6_address: Option<String>,
    /// `/sys/class/net/X/carrier == "1"`.
    pub has_carrier: bool,
    /// LLDP TLVs `[[type, hex], ...]` when `collect_lldp` is on, else null.
    pub lldp: Option<Vec<(u8, String)>>,
    /// PCI vendor id (`0x8086`).
    pub vendor: Option<String>,
    /// PCI device id.
    pub product: Option<String>,
    /// InfiniBand DHCP client id.
    pub client_id: Option<String>,
    /// biosdevname, if available.
    pub biosdevname: Option<String>,
    /// Link speed in Mbit/s.
    pub speed_mbps: Option<u64>,
    /// PCI address (`0000:18:00.0`).
    pub pci_address: Option<String>,
    /// Kernel driver.
    pub driver: Option<String>,
}

/// The CPU summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Cpu {
    /// `model name`.
    pub model_name: Option<String>,
    /// Max MHz as a **string** (IPA quirk kept for compatibility), e.g. `"3200.0000"`.
    pub frequency: Option<String>,
    /// Logical CPUs.
    pub count: u64,
    /// `x86_64`, `aarch64`, ...
    pub architecture: String,
    /// CPU flags.
    pub flags: Vec<String>,
    /// Sockets.
    pub socket_count: Option<u64>,
}

/// One block device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct BlockDevice {
    /// `/dev/sda`.
    pub name: String,
    /// Model string.
    pub model: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// Rotational.
    pub rotational: bool,
    /// WWN.
    pub wwn: Option<String>,
    /// Serial.
    pub serial: Option<String>,
    /// Vendor.
    pub vendor: Option<String>,
    /// WWN with extension.
    pub wwn_with_extension: Option<String>,
    /// WWN vendor extension.
    pub wwn_vendor_extension: Option<String>,
    /// SCSI H:C:T:L.
    pub hctl: Option<String>,
    /// `/dev/disk/by-path/...`.
    pub by_path: Option<String>,
    /// Logical sector size.
    pub logical_sectors: Option<u32>,
    /// Physical sector size.
    pub physical_sectors: Option<u32>,
    /// Transport (`sata`, `sas`, `nvme`, `usb`, ...).
    pub tran: Option<String>,
    /// Filesystem UUID (internal, not serialised).
    #[serde(skip)]
    pub uuid: Option<String>,
    /// Partition UUID (internal, not serialised).
    #[serde(skip)]
    pub partuuid: Option<String>,
    /// lsblk TYPE (`disk`, `part`, `raid1`, `mpath`...; internal).
    #[serde(skip)]
    pub device_type: Option<String>,
}

/// Memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Memory {
    /// Usable bytes (psutil total).
    pub total: u64,
    /// Installed MiB from DMI/lshw; 0 if none found; null if unknown.
    pub physical_mb: Option<u64>,
}

/// Firmware info.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Firmware {
    /// BIOS vendor.
    pub vendor: String,
    /// BIOS version.
    pub version: String,
    /// BIOS date.
    pub build_date: String,
}

/// System identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SystemVendorInfo {
    /// Product name.
    pub product_name: String,
    /// Serial.
    pub serial_number: String,
    /// Manufacturer.
    pub manufacturer: String,
    /// Firmware.
    pub firmware: Firmware,
}

/// Boot information.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct BootInfo {
    /// `uefi` or `bios`.
    pub current_boot_mode: String,
    /// Raw `BOOTIF` kernel parameter.
    pub pxe_interface: Option<String>,
}

/// The inventory as `poll.get_hardware_info`, lookup and inspection carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Inventory {
    /// NICs.
    pub interfaces: Vec<NetworkInterface>,
    /// CPU.
    pub cpu: Cpu,
    /// Disks.
    pub disks: Vec<BlockDevice>,
    /// Memory.
    pub memory: Memory,
    /// BMC IPv4 (null when BMC detection is skipped).
    pub bmc_address: Option<String>,
    /// BMC IPv6.
    pub bmc_v6address: Option<String>,
    /// System identity.
    pub system_vendor: SystemVendorInfo,
    /// Boot mode.
    pub boot: BootInfo,
    /// Hostname.
    pub hostname: String,
    /// BMC MAC, present only if found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bmc_mac: Option<String>,
    /// Fields contributed by hardware managers' inventory extensions (appended after IPA's keys).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_key_order_and_types_match_ipa() {
        let inv = Inventory {
            interfaces: vec![NetworkInterface {
                name: "eno1".into(),
                mac_address: "3c:fd:fe:aa:bb:01".into(),
                ..Default::default()
            }],
            disks: vec![BlockDevice {
                name: "/dev/sda".into(),
                size: 10,
                uuid: Some("hidden".into()),
                ..Default::default()
            }],
            cpu: Cpu { frequency: Some("3200.0000".into()), count: 2, ..Default::default() },
            ..Default::default()
        };
        let v = serde_json::to_value(&inv).unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "interfaces",
                "cpu",
                "disks",
                "memory",
                "bmc_address",
                "bmc_v6address",
                "system_vendor",
                "boot",
                "hostname"
            ]
        );
        assert!(v["cpu"]["frequency"].is_string());
        let disk = v["disks"][0].as_object().unwrap();
        assert!(!disk.contains_key("uuid"));
        assert_eq!(
            disk.keys().cloned().collect::<Vec<_>>(),
            [
                "name",
                "model",
                "size",
                "rotational",
                "wwn",
                "serial",
                "vendor",
                "wwn_with_extension",
                "wwn_vendor_extension",
                "hctl",
                "by_path",
                "logical_sectors",
                "physical_sectors",
                "tran"
            ]
        );
        let nic = v["interfaces"][0].as_object().unwrap();
        assert_eq!(
            nic.keys().cloned().collect::<Vec<_>>(),
            [
                "name",
                "mac_address",
                "ipv4_address",
                "ipv6_address",
                "has_carrier",
                "lldp",
                "vendor",
                "product",
                "client_id",
                "biosdevname",
                "speed_mbps",
                "pci_address",
                "driver"
            ]
        );
    }

    #[test]
    fn bmc_mac_and_extensions_follow_ipa_keys() {
        let mut inv = Inventory { bmc_mac: Some("d0:8e:79:aa:bb:cc".into()), ..Default::default() };
        inv.extra.insert("acme_widgets".into(), serde_json::json!(3));
        let v = serde_json::to_value(&inv).unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(&keys[9..], ["bmc_mac", "acme_widgets"]);
        let lldp =
            NetworkInterface { lldp: Some(vec![(1, "04aabb".into())]), ..Default::default() };
        assert_eq!(serde_json::to_value(lldp).unwrap()["lldp"], serde_json::json!([[1, "04aabb"]]));
    }
}
