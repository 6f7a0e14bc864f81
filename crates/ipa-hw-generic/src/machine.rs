//! Reading the machine: sysfs, procfs and udev data under a root prefix (`/` in production,
//! a fixture tree in tests). Nothing here writes anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ipa_core::hardware::{
    BlockDevice, BootInfo, Cpu, Firmware, Memory, NetworkInterface, SystemVendorInfo,
};
use serde::Deserialize;

/// Values a fixture supplies that the kernel does not expose as files (permanent MACs via
/// ioctl, addresses via netlink). Read from `<root>/ipa-fixture.json`; ignored on the live root.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FixtureExtras {
    /// Interface → permanent MAC (what `ETHTOOL_GPERMADDR` returned at capture time).
    #[serde(default)]
    pub permanent_macs: BTreeMap<String, String>,
    /// Interface → first IPv4 / IPv6 address.
    #[serde(default)]
    pub addresses: BTreeMap<String, FixtureAddrs>,
    /// Machine architecture (`uname -m`) at capture time.
    #[serde(default)]
    pub architecture: Option<String>,
}

/// First addresses of an interface.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FixtureAddrs {
    /// First IPv4 address.
    pub ipv4: Option<String>,
    /// First IPv6 address.
    pub ipv6: Option<String>,
}

/// What [`Machine::erase_facts`] found about one device.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EraseFacts {
    /// The device exists under `/sys/block`.
    pub known: bool,
    /// `/sys/block/<dev>/ro` (the parent's for a partition) is `1`.
    pub read_only: bool,
    /// The parent disk of a partition.
    pub parent: Option<String>,
    /// udev `ID_FS_TYPE` of the device itself.
    pub fs_type: Option<String>,
    /// udev `ID_FS_TYPE` of the device and its partitions.
    pub fs_types: Vec<String>,
    /// udev `ID_PART_ENTRY_TYPE` of its partitions (GUIDs or `0xfb`).
    pub part_types: Vec<String>,
    /// md arrays holding the device.
    pub md_holders: Vec<String>,
    /// It is the virtual-media device (`/dev/disk/by-label/ir-vfd-dev`).
    pub vmedia: bool,
}

/// A read-only view of the machine under `root`.
#[derive(Debug, Clone)]
pub struct Machine {
    root: PathBuf,
    live: bool,
    extras: FixtureExtras,
}

/// A block device with the values only root-device matching uses.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawDisk {
    /// The inventory device.
    pub device: BlockDevice,
    /// lsblk serial, udev short serial, udev serial (all-serial mode).
    pub serials: Vec<Option<String>>,
    /// lsblk WWN, udev WWN (all-serial mode).
    pub wwns: Vec<Option<String>>,
    /// md volume name (`MD_DEVNAME`), for RAID skip lists.
    pub md_name: Option<String>,
    /// Holders (`/sys/block/X/holders`), as `/dev/...`.
    pub holders: Vec<String>,
    /// Slaves (`/sys/block/X/slaves`), as `/dev/...`.
    pub slaves: Vec<String>,
}

fn trim_opt(s: Option<String>) -> Option<String> {
    s.map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

impl Machine {
    /// The live machine (`/`): ioctls and `getifaddrs` supply what files cannot.
    pub fn live() -> Self {
        Self { root: PathBuf::from("/"), live: true, extras: FixtureExtras::default() }
    }

    /// A fixture tree: everything from files, extras from `ipa-fixture.json`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        if root == Path::new("/") {
            return Self::live();
        }
        let extras = std::fs::read(root.join("ipa-fixture.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self { root, live: false, extras }
    }

    /// Whether this is the live root.
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// The root prefix.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `path` (absolute, e.g. `/sys/block`) under the root.
    pub fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// A file's contents, trimmed; `None` if unreadable.
    pub fn read(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(self.path(path)).ok().map(|s| s.trim().to_string())
    }

    fn read_nonempty(&self, path: &str) -> Option<String> {
        trim_opt(self.read(path))
    }

    /// The unit serial number from a SCSI VPD page 0x80 file (4-byte header, then ASCII).
    fn vpd_unit_serial(&self, path: &str) -> Option<String> {
        let b = std::fs::read(self.path(path)).ok()?;
        if b.len() < 4 || b[1] != 0x80 {
            return None;
        }
        let len = u16::from_be_bytes([b[2], b[3]]) as usize;
        let body = b.get(4..(4 + len).min(b.len()))?;
        trim_opt(Some(String::from_utf8_lossy(body).trim_matches(char::from(0)).to_string()))
    }

    /// Entry names of a directory, sorted. Dot-files are skipped: sysfs never has them, and
    /// fixture trees keep otherwise-empty directories in git with a `.keep` file.
    pub fn list(&self, path: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.path(path))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    fn exists(&self, path: &str) -> bool {
        self.path(path).exists()
    }

    fn link_basename(&self, path: &str) -> Option<String> {
        let target = std::fs::read_link(self.path(path)).ok()?;
        target.file_name().and_then(|n| n.to_str()).map(str::to_string)
    }

    // ---- network --------------------------------------------------------------------------

    /// IPA's `list_interfaces`: entries with a `device` link, VLANs (`name.N`) and bonds.
    pub fn interface_names(&self) -> Vec<String> {
        self.list("/sys/class/net")
            .into_iter()
            .filter(|n| {
                let vlan = n
                    .split_once('.')
                    .is_some_and(|(_, v)| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()));
                vlan || self.exists(&format!("/sys/class/net/{n}/device"))
                    || self.exists(&format!("/sys/class/net/{n}/bonding"))
            })
            .collect()
    }

    /// The interface's MAC: permanent (ethtool) else current; InfiniBand GUID mapping; `fa:`
    /// MACs and missing MACs give `None` (the interface is dropped).
    pub fn interface_mac(&self, name: &str) -> (Option<String>, Option<String>) {
        let address = self.read(&format!("/sys/class/net/{name}/address"));
        if let Some(addr) = address.as_deref().filter(|a| a.len() == 59) {
            // InfiniBand: 20-byte hardware address; MAC from the GUID, DHCP client id.
            let mac = format!("{}{}", &addr[36..addr.len() - 14], &addr[51..]);
            let client_id = format!("ff:00:00:00:00:00:02:00:00:02:c9:00:{}", &addr[36..]);
            return (Some(mac), Some(client_id));
        }
        let perm = if self.live {
            crate::sys::permanent_mac(name)
        } else {
            self.extras.permanent_macs.get(name).cloned()
        };
        let mac = perm.filter(|m| m.split(':').any(|b| b != "00")).or(address);
        let mac = mac.filter(|m| !m.is_empty() && !m.to_lowercase().starts_with("fa:"));
        (mac, None)
    }

    fn addresses(&self, name: &str) -> (Option<String>, Option<String>) {
        if self.live {
            crate::sys::first_addresses(name)
        } else {
            self.extras
                .addresses
                .get(name)
                .map(|a| (a.ipv4.clone(), a.ipv6.clone()))
                .unwrap_or_default()
        }
    }

    /// `get_interface_info` for one interface; `None` when it has no usable MAC.
    pub fn interface(&self, name: &str) -> Option<NetworkInterface> {
        let (mac, client_id) = self.interface_mac(name);
        let mac = mac?;
        let (ipv4, ipv6) = self.addresses(name);
        let base = format!("/sys/class/net/{name}");
        let speed = self
            .read(&format!("{base}/speed"))
            .and_then(|s| s.parse::<i64>().ok())
            .filter(|s| *s > 0)
            .map(|s| s as u64);
        Some(NetworkInterface {
            name: name.to_string(),
            mac_address: mac,
            ipv4_address: ipv4,
            ipv6_address: ipv6,
            has_carrier: self.read(&format!("{base}/carrier")).as_deref() == Some("1"),
            lldp: None,
            vendor: self.read(&format!("{base}/device/vendor")),
            product: self.read(&format!("{base}/device/device")),
            client_id,
            biosdevname: None,
            speed_mbps: speed,
            pci_address: self.link_basename(&format!("{base}/device")),
            driver: self.link_basename(&format!("{base}/device/driver")),
        })
    }

    // ---- disks ----------------------------------------------------------------------------

    fn udev(&self, devno: &str) -> (BTreeMap<String, String>, Vec<String>) {
        let mut props = BTreeMap::new();
        let mut links = Vec::new();
        if let Some(text) = self.read(&format!("/run/udev/data/b{devno}")) {
            for line in text.lines() {
                if let Some(kv) = line.strip_prefix("E:") {
                    if let Some((k, v)) = kv.split_once('=') {
                        props.insert(k.to_string(), v.to_string());
                    }
                } else if let Some(l) = line.strip_prefix("S:") {
                    links.push(l.to_string());
                }
            }
        }
        (props, links)
    }

    fn by_path_map(&self) -> BTreeMap<String, String> {
        let mut map = BTreeMap::new();
        let dir = "/dev/disk/by-path";
        for entry in self.list(dir) {
            if let Ok(target) = std::fs::read_link(self.path(&format!("{dir}/{entry}")))
                && let Some(base) = target.file_name().and_then(|n| n.to_str())
            {
                map.insert(format!("/dev/{base}"), format!("{dir}/{entry}"));
            }
        }
        map
    }

    fn devno(&self, sysdir: &str) -> (u32, u32) {
        self.read(&format!("{sysdir}/dev"))
            .and_then(|d| {
                let (a, b) = d.split_once(':')?;
                Some((a.parse().ok()?, b.parse().ok()?))
            })
            .unwrap_or((u32::MAX, u32::MAX))
    }

    /// lsblk's TYPE for a whole device.
    fn device_type(&self, kname: &str, sysdir: &str) -> String {
        if kname.starts_with("loop") {
            return "loop".into();
        }
        if kname.starts_with("md") {
            if let Some(level) = self.read_nonempty(&format!("{sysdir}/md/level")) {
                return level;
            }
            return "md".into();
        }
        if kname.starts_with("dm-") {
            let uuid = self.read(&format!("{sysdir}/dm/uuid")).unwrap_or_default();
            let prefix = uuid.split('-').next().unwrap_or("").to_lowercase();
            return match prefix.as_str() {
                "mpath" => "mpath".into(),
                "lvm" => "lvm".into(),
                "crypt" => "crypt".into(),
                "part1" | "part2" | "part3" | "part4" => "part".into(),
                _ => "dm".into(),
            };
        }
        if self.read(&format!("{sysdir}/device/type")).as_deref() == Some("5") {
            return "rom".into();
        }
        "disk".into()
    }

    fn transport(&self, kname: &str, sysdir: &str, hctl: bool) -> Option<String> {
        if kname.starts_with("nvme") {
            return Some("nvme".into());
        }
        let real = std::fs::read_link(self.path(sysdir)).ok()?;
        let p = real.to_string_lossy().to_string();
        if p.contains("/usb") {
            Some("usb".into())
        } else if p.contains("/ata") {
            Some("sata".into())
        } else if p.contains("/rport-") {
            Some("fc".into())
        } else if p.contains("/session") {
            Some("iscsi".into())
        } else if hctl
            && (p.contains("/end_device-")
                || p.contains("/expander-")
                || (p.contains("/host") && self.sas_hosts_present()))
        {
            Some("sas".into())
        } else {
            None
        }
    }

    fn sas_hosts_present(&self) -> bool {
        !self.list("/sys/class/sas_host").is_empty()
    }

    fn slaves_holders(&self, sysdir: &str, which: &str) -> Vec<String> {
        self.list(&format!("{sysdir}/{which}")).into_iter().map(|n| format!("/dev/{n}")).collect()
    }

    /// Is `kname` a path of a multipath device (an `mpath` dm holder)?
    fn is_multipath_member(&self, sysdir: &str) -> bool {
        self.list(&format!("{sysdir}/holders")).iter().any(|h| {
            h.starts_with("dm-")
                && self
                    .read(&format!("/sys/block/{h}/dm/uuid"))
                    .is_some_and(|u| u.to_lowercase().starts_with("mpath-"))
        })
    }

    /// IPA's `list_all_block_devices`: whole disks (`disk`, RAID levels, `mpath`) in lsblk
    /// order (device number), skipping `fd*`, `ram*`, `zram*`, zero-size devices and
    /// multipath member paths; with `include_partitions`, their partitions after them.
    pub fn block_devices(&self, include_partitions: bool) -> Vec<RawDisk> {
        let by_path = self.by_path_map();
        let mut names: Vec<(u32, u32, String)> = self
            .list("/sys/block")
            .into_iter()
            .map(|k| {
                let (a, b) = self.devno(&format!("/sys/block/{k}"));
                (a, b, k)
            })
            .collect();
        names.sort();
        let mut disks = Vec::new();
        let mut parts = Vec::new();
        for (maj, min, kname) in names {
            let sysdir = format!("/sys/block/{kname}");
            if kname.starts_with("fd") || kname.starts_with("ram") || kname.starts_with("zram") {
                continue;
            }
            let ty = self.device_type(&kname, &sysdir);
            let is_disk = ty == "disk" || ty == "mpath" || ty.contains("raid");
            if !is_disk {
                continue;
            }
            if self.is_multipath_member(&sysdir) {
                tracing::debug!(device = kname, "multipath member path hidden");
                continue;
            }
            let Some(d) = self.raw_disk(&kname, &sysdir, &ty, maj, min, &by_path) else {
                continue;
            };
            if include_partitions {
                for p in self.list(&sysdir) {
                    let psys = format!("{sysdir}/{p}");
                    if !self.exists(&format!("{psys}/partition")) {
                        continue;
                    }
                    let (pmaj, pmin) = self.devno(&psys);
                    if let Some(pd) = self.raw_disk(&p, &psys, "part", pmaj, pmin, &by_path) {
                        parts.push(pd);
                    }
                }
            }
            disks.push(d);
        }
        disks.extend(parts);
        disks
    }

    fn raw_disk(
        &self,
        kname: &str,
        sysdir: &str,
        ty: &str,
        maj: u32,
        min: u32,
        by_path: &BTreeMap<String, String>,
    ) -> Option<RawDisk> {
        let sectors: u64 = self.read(&format!("{sysdir}/size"))?.parse().ok()?;
        let size = sectors * 512;
        if size == 0 {
            return None;
        }
        let (udev, links) = self.udev(&format!("{maj}:{min}"));
        let u = |k: &str| {
            udev.get(&format!("ID_{k}"))
                .or_else(|| udev.get(&format!("DM_{k}")))
                .filter(|v| !v.is_empty())
                .cloned()
        };
        // What lsblk reports itself.
        let disk_dir = if ty == "part" {
            // A partition's device attributes live on its parent.
            Path::new(sysdir).parent().map(|p| p.to_string_lossy().to_string())?
        } else {
            sysdir.to_string()
        };
        let lsblk_serial = udev
            .get("ID_SCSI_SERIAL")
            .or_else(|| udev.get("ID_SERIAL_SHORT"))
            .cloned()
            .or_else(|| self.read_nonempty(&format!("{disk_dir}/device/serial")))
            // Without udev (a ramdisk): virtio-blk has it on the disk, SCSI/ATA in VPD page 0x80.
            .or_else(|| self.read_nonempty(&format!("{disk_dir}/serial")))
            .or_else(|| self.vpd_unit_serial(&format!("{disk_dir}/device/vpd_pg80")))
            .filter(|_| ty != "part" || !udev.is_empty());
        let lsblk_wwn = u("WWN").or_else(|| self.read_nonempty(&format!("{disk_dir}/device/wwid")));
        let lsblk_wwn = if ty == "part" && udev.is_empty() { None } else { lsblk_wwn };
        let model = udev
            .get("ID_MODEL_ENC")
            .map(|m| decode_udev(m).trim().to_string())
            .filter(|m| !m.is_empty())
            .or_else(|| self.read_nonempty(&format!("{disk_dir}/device/model")));
        let hctl = self.list(&format!("{disk_dir}/device/scsi_device")).into_iter().next();
        let name = format!("/dev/{}", kname.replace('!', "/"));
        let by_path_link = links
            .iter()
            .find(|l| l.starts_with("disk/by-path/"))
            .map(|l| format!("/dev/{l}"))
            .or_else(|| by_path.get(&name).cloned());
        let serial = lsblk_serial.clone().or_else(|| u("SERIAL_SHORT")).or_else(|| u("SERIAL"));
        let wwn = lsblk_wwn.clone();
        let device = BlockDevice {
            name: name.clone(),
            model: if ty == "part" { None } else { model },
            size,
            rotational: self.read(&format!("{sysdir}/queue/rotational")).as_deref() == Some("1")
                || (ty == "part"
                    && self.read(&format!("{disk_dir}/queue/rotational")).as_deref() == Some("1")),
            wwn,
            serial,
            vendor: self.read(&format!("{disk_dir}/device/vendor")),
            wwn_with_extension: u("WWN_WITH_EXTENSION"),
            wwn_vendor_extension: u("WWN_VENDOR_EXTENSION"),
            hctl: if ty == "part" { None } else { hctl.clone() },
            by_path: by_path_link,
            logical_sectors: self
                .read(&format!("{disk_dir}/queue/logical_block_size"))
                .and_then(|s| s.parse().ok()),
            physical_sectors: self
                .read(&format!("{disk_dir}/queue/physical_block_size"))
                .and_then(|s| s.parse().ok()),
            tran: if ty == "part" { None } else { self.transport(kname, sysdir, hctl.is_some()) },
            uuid: udev.get("ID_FS_UUID").cloned(),
            partuuid: udev.get("ID_PART_ENTRY_UUID").cloned(),
            device_type: Some(ty.to_string()),
        };
        Some(RawDisk {
            device,
            serials: vec![lsblk_serial, u("SERIAL_SHORT"), u("SERIAL")],
            wwns: vec![lsblk_wwn, u("WWN")],
            md_name: udev.get("MD_DEVNAME").cloned(),
            holders: self.slaves_holders(sysdir, "holders"),
            slaves: self.slaves_holders(sysdir, "slaves"),
        })
    }

    // ---- cpu / memory / dmi / boot -------------------------------------------------------

    fn cpuinfo_first_block(&self) -> BTreeMap<String, String> {
        let text = self.read("/proc/cpuinfo").unwrap_or_default();
        let block = text.split("\n\n").next().unwrap_or("");
        block
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
            .collect()
    }

    fn cpu_list_count(spec: &str) -> u64 {
        spec.split(',')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('-') {
                Some((a, b)) => match (a.parse::<u64>(), b.parse::<u64>()) {
                    (Ok(a), Ok(b)) if b >= a => b - a + 1,
                    _ => 0,
                },
                None => u64::from(p.parse::<u64>().is_ok()),
            })
            .sum()
    }

    fn architecture(&self) -> String {
        if self.live {
            crate::sys::machine_arch()
        } else {
            self.extras
                .architecture
                .clone()
                .or_else(|| self.read("/proc/sys/kernel/arch"))
                .unwrap_or_default()
        }
    }

    /// The CPU summary lscpu would give.
    pub fn cpu(&self) -> Cpu {
        let info = self.cpuinfo_first_block();
        let cpuinfo = self.read("/proc/cpuinfo").unwrap_or_default();
        let count = self
            .read("/sys/devices/system/cpu/present")
            .map(|s| Self::cpu_list_count(&s))
            .filter(|n| *n > 0)
            .unwrap_or_else(|| {
                cpuinfo.lines().filter(|l| l.starts_with("processor")).count() as u64
            });
        let cpus: Vec<String> = self
            .list("/sys/devices/system/cpu")
            .into_iter()
            .filter(|n| n.strip_prefix("cpu").is_some_and(|r| r.parse::<u32>().is_ok()))
            .collect();
        let max_khz = cpus
            .iter()
            .filter_map(|c| {
                self.read(&format!("/sys/devices/system/cpu/{c}/cpufreq/cpuinfo_max_freq"))
                    .and_then(|s| s.parse::<u64>().ok())
            })
            .max();
        // lscpu prints "CPU max MHz" only with cpufreq; modern lscpu prints no "CPU MHz".
        let frequency = max_khz.map(|k| format!("{:.4}", k as f64 / 1000.0)).unwrap_or_default();
        let packages: BTreeSet<String> = cpus
            .iter()
            .filter_map(|c| {
                self.read(&format!("/sys/devices/system/cpu/{c}/topology/physical_package_id"))
            })
            .collect();
        let sockets = if packages.is_empty() {
            let ids: BTreeSet<&str> = cpuinfo
                .lines()
                .filter_map(|l| l.strip_prefix("physical id"))
                .map(|r| r.trim_start_matches([' ', '\t', ':']))
                .collect();
            ids.len().max(1) as u64
        } else {
            packages.len() as u64
        };
        let flags = info
            .get("flags")
            .or_else(|| info.get("features"))
            .map(|f| f.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        Cpu {
            model_name: Some(info.get("model name").cloned().unwrap_or_default()),
            frequency: Some(frequency),
            count,
            architecture: self.architecture(),
            flags,
            socket_count: Some(sockets),
        }
    }

    /// `MemTotal` in bytes (psutil's total) and installed MiB: from SMBIOS type 17, or, when
    /// the firmware has no memory devices in SMBIOS (or no SMBIOS at all), from the online
    /// memory blocks in `/sys/devices/system/memory` as lshw does. `None` when neither exists.
    pub fn memory(&self) -> Memory {
        let total = self
            .read("/proc/meminfo")
            .and_then(|m| {
                m.lines().find_map(|l| {
                    l.strip_prefix("MemTotal:")
                        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                })
            })
            .unwrap_or(0)
            * 1024;
        let smbios = std::fs::read(self.path("/sys/firmware/dmi/tables/DMI"))
            .ok()
            .map(|t| smbios_memory_mb(&t));
        let physical_mb = match smbios {
            Some(mb) if mb > 0 => Some(mb),
            other => self.sysfs_memory_mb().or(other),
        };
        Memory { total, physical_mb }
    }

    /// MiB in the online blocks of `/sys/devices/system/memory` (`block_size_bytes` is hex).
    fn sysfs_memory_mb(&self) -> Option<u64> {
        let dir = "/sys/devices/system/memory";
        let raw = self.read(&format!("{dir}/block_size_bytes"))?;
        let block = u64::from_str_radix(raw.trim().trim_start_matches("0x"), 16).ok()?;
        let online = std::fs::read_dir(self.path(dir))
            .ok()?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("memory"))
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                self.read(&format!("{dir}/{name}/online")).as_deref() == Some("1")
            })
            .count() as u64;
        (online > 0).then(|| online * block / (1 << 20))
    }

    /// System identity from `/sys/class/dmi/id` (what lshw reads from SMBIOS).
    pub fn system_vendor(&self) -> SystemVendorInfo {
        let id = |f: &str| self.read(&format!("/sys/class/dmi/id/{f}")).unwrap_or_default();
        let mut product = id("product_name");
        let sku = id("product_sku");
        if !product.is_empty() && !sku.is_empty() {
            product = format!("{product} ({sku})");
        }
        SystemVendorInfo {
            product_name: product,
            serial_number: id("product_serial"),
            manufacturer: id("sys_vendor"),
            firmware: Firmware {
                vendor: id("bios_vendor"),
                version: id("bios_version"),
                build_date: id("bios_date"),
            },
        }
    }

    /// Kernel command line parameters (`key=value`; bare keys map to "").
    pub fn cmdline(&self) -> BTreeMap<String, String> {
        self.read("/proc/cmdline")
            .unwrap_or_default()
            .split_whitespace()
            .map(|t| match t.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (t.to_string(), String::new()),
            })
            .collect()
    }

    /// Boot mode and the raw `BOOTIF`.
    pub fn boot(&self) -> BootInfo {
        let uefi = self.path("/sys/firmware/efi").is_dir();
        BootInfo {
            current_boot_mode: if uefi { "uefi" } else { "bios" }.into(),
            pxe_interface: self.cmdline().get("BOOTIF").cloned(),
        }
    }

    /// The hostname (`/proc/sys/kernel/hostname`, the UTS name `gethostname` returns).
    pub fn hostname(&self) -> String {
        if self.live {
            return crate::sys::hostname().unwrap_or_default();
        }
        self.read("/proc/sys/kernel/hostname").unwrap_or_default()
    }

    /// Facts erasure needs about `/dev/<name>` (a disk or one of its partitions): read-only
    /// flag (a partition inherits its parent's), udev filesystem / partition-entry types of the
    /// device and its partitions, md holders, and whether it is the virtual-media device.
    pub fn erase_facts(&self, dev: &str) -> EraseFacts {
        let kname = dev.trim_start_matches("/dev/").replace('/', "!");
        let mut facts = EraseFacts::default();
        let (sysdir, parent) = if self.exists(&format!("/sys/block/{kname}")) {
            (format!("/sys/block/{kname}"), None)
        } else {
            match self
                .list("/sys/block")
                .into_iter()
                .find(|p| self.exists(&format!("/sys/block/{p}/{kname}/partition")))
            {
                Some(p) => (format!("/sys/block/{p}/{kname}"), Some(p)),
                None => return facts,
            }
        };
        facts.known = true;
        let ro_dir = parent.as_ref().map(|p| format!("/sys/block/{p}")).unwrap_or(sysdir.clone());
        facts.read_only = self.read(&format!("{ro_dir}/ro")).as_deref() == Some("1");
        facts.parent = parent.map(|p| format!("/dev/{}", p.replace('!', "/")));
        let mut dirs = vec![sysdir.clone()];
        for p in self.list(&sysdir) {
            if self.exists(&format!("{sysdir}/{p}/partition")) {
                dirs.push(format!("{sysdir}/{p}"));
            }
        }
        for (i, d) in dirs.iter().enumerate() {
            let (maj, min) = self.devno(d);
            let (props, _) = self.udev(&format!("{maj}:{min}"));
            let get = |k: &str| props.get(k).filter(|v| !v.is_empty()).cloned();
            if i == 0 {
                facts.fs_type = get("ID_FS_TYPE");
            }
            facts.fs_types.extend(get("ID_FS_TYPE"));
            facts.part_types.extend(get("ID_PART_ENTRY_TYPE"));
        }
        facts.md_holders = self
            .list(&format!("{sysdir}/holders"))
            .into_iter()
            .filter(|h| h.starts_with("md"))
            .map(|h| format!("/dev/{h}"))
            .collect();
        let vmedia = std::fs::canonicalize(self.path("/dev/disk/by-label/ir-vfd-dev"))
            .ok()
            .and_then(|t| t.file_name().map(|n| n.to_string_lossy().to_string()));
        facts.vmedia = vmedia.is_some_and(|v| v == kname);
        facts
    }

    /// IPA's `any_ipmi_device_exists`: `/dev/ipmi*`, `/dev/ipmi/*`, `/dev/ipmidev/*`
    /// character devices (fixtures may use plain files).
    pub fn ipmi_device_exists(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        let ok = |p: PathBuf| {
            std::fs::metadata(p)
                .map(|m| m.file_type().is_char_device() || (!self.live && m.is_file()))
                .unwrap_or(false)
        };
        self.list("/dev")
            .iter()
            .any(|n| n.starts_with("ipmi") && ok(self.path(&format!("/dev/{n}"))))
            || ["/dev/ipmi", "/dev/ipmidev"]
                .iter()
                .any(|d| self.list(d).iter().any(|n| ok(self.path(&format!("{d}/{n}")))))
    }
}

/// Decode udev's `\x20`-escaped strings.
pub fn decode_udev(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1] == b'x'
            && let Ok(v) = u8::from_str_radix(&s[i + 2..i + 4], 16)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Sum of SMBIOS type-17 (memory device) sizes in MiB.
pub fn smbios_memory_mb(table: &[u8]) -> u64 {
    let mut total = 0u64;
    let mut i = 0usize;
    while i + 4 <= table.len() {
        let ty = table[i];
        let len = table[i + 1] as usize;
        if len < 4 || i + len > table.len() {
            break;
        }
        let s = &table[i..i + len];
        if ty == 17 && len >= 0x0E {
            let size = u16::from_le_bytes([s[0x0C], s[0x0D]]);
            total += match size {
                0 | 0xFFFF => 0,
                0x7FFF if len >= 0x20 => {
                    (u32::from_le_bytes([s[0x1C], s[0x1D], s[0x1E], s[0x1F]]) & 0x7FFF_FFFF) as u64
                }
                v if v & 0x8000 != 0 => ((v & 0x7FFF) as u64) / 1024,
                v => v as u64,
            };
        }
        if ty == 127 {
            break;
        }
        // Skip the formatted area and the string set (terminated by a double NUL).
        let mut j = i + len;
        while j + 1 < table.len() && !(table[j] == 0 && table[j + 1] == 0) {
            j += 1;
        }
        i = j + 2;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn physical_mb_falls_back_to_online_memory_blocks_when_smbios_lists_no_memory() {
        let root = tempfile::tempdir().unwrap();
        let m = Machine::at(root.path());
        assert_eq!(m.memory().physical_mb, None, "neither SMBIOS nor sysfs: unknown");
        // An SMBIOS table with only its end-of-table structure: no memory devices.
        let dmi = root.path().join("sys/firmware/dmi/tables");
        std::fs::create_dir_all(&dmi).unwrap();
        std::fs::write(dmi.join("DMI"), [127u8, 4, 0, 0, 0, 0]).unwrap();
        assert_eq!(m.memory().physical_mb, Some(0), "SMBIOS without type 17 and no sysfs: 0");
        let mem = root.path().join("sys/devices/system/memory");
        for (i, online) in ["1", "1", "0"].iter().enumerate() {
            std::fs::create_dir_all(mem.join(format!("memory{i}"))).unwrap();
            std::fs::write(mem.join(format!("memory{i}/online")), online).unwrap();
        }
        std::fs::write(mem.join("block_size_bytes"), "8000000\n").unwrap();
        assert_eq!(m.memory().physical_mb, Some(256), "two online 128 MiB blocks");
    }
}
