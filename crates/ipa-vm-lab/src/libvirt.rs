//! libvirt inside the lab's namespace: `virtlogd` and `libvirtd` in the foreground (our
//! children, stopped by PID) with their sockets and logs in the lab directory, and VM
//! definitions (q35, OVMF with a per-VM NVRAM file, virtio-net on the lab bridge, file-backed
//! virtio / 4Kn / NVMe / AHCI disks, serial console appended to a file). Domains are TCG
//! (`type='qemu'`): the host's KVM is paravirtual and does not run stock guests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::daemon::{Daemon, wait_for};
use crate::netns::Netns;
use crate::{LabError, run_out};

/// OVMF firmware (read-only code) and the template of its variable store.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// OVMF variable store template (secure boot off).
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// The two libvirt daemons.
#[derive(Debug)]
pub struct Libvirt {
    /// Connection URI (private socket).
    pub uri: String,
    dir: PathBuf,
    libvirtd: Daemon,
    virtlogd: Daemon,
}

impl Libvirt {
    /// Start virtlogd and libvirtd inside `ns`, state in `dir`.
    pub fn start(ns: &Netns, dir: &Path) -> Result<Self, LabError> {
        let sock = dir.join("libvirt-sock-dir");
        std::fs::create_dir_all(&sock).map_err(|e| LabError::Setup(e.to_string()))?;
        let d = dir.display();
        let write = |name: &str, text: String| {
            std::fs::write(dir.join(name), text).map_err(|e| LabError::Setup(e.to_string()))
        };
        write("virtlogd.conf", format!("log_outputs = \"3:file:{d}/virtlogd.log\"\n"))?;
        write(
            "libvirtd.conf",
            format!(
                "unix_sock_dir = \"{}\"\nunix_sock_rw_perms = \"0700\"\nauth_unix_rw = \"none\"\n\
                 auth_unix_ro = \"none\"\nlog_outputs = \"3:file:{d}/libvirtd.log\"\n",
                sock.display()
            ),
        )?;
        let mut c = ns.exec("virtlogd");
        c.arg("-f").arg(dir.join("virtlogd.conf")).arg("-p").arg(dir.join("virtlogd.pid"));
        let virtlogd = Daemon::spawn("virtlogd", c, &dir.join("virtlogd.out"))?;
        let mut c = ns.exec("libvirtd");
        c.arg("-f").arg(dir.join("libvirtd.conf")).arg("-p").arg(dir.join("libvirtd.pid"));
        let libvirtd = Daemon::spawn("libvirtd", c, &dir.join("libvirtd.out"))?;
        let uri = format!("qemu:///system?socket={}/libvirt-sock", sock.display());
        let mut me = Self { uri, dir: dir.to_path_buf(), libvirtd, virtlogd };
        wait_for("libvirtd answers", Duration::from_secs(60), Duration::from_millis(200), || {
            me.virsh(&["list", "--all"]).ok()
        })
        .map_err(|e| {
            let _ = me.libvirtd.check_alive();
            LabError::Setup(format!(
                "{e}\n{}",
                crate::daemon::tail(&me.dir.join("libvirtd.log"), 20)
            ))
        })?;
        me.virtlogd.check_alive()?;
        // Domains a killed lab left defined (ours are all named `ipalab-…`).
        let stale = me.virsh(&["list", "--all", "--name"])?;
        for name in stale.lines().map(str::trim).filter(|n| n.starts_with("ipalab-")) {
            me.remove(name);
        }
        Ok(me)
    }

    /// Run `virsh -c URI ARGS`; stdout on success.
    pub fn virsh(&self, args: &[&str]) -> Result<String, LabError> {
        let mut c = Command::new("virsh");
        c.arg("-c").arg(&self.uri).args(args);
        run_out(c)
    }

    /// Define (persistently) the VM.
    pub fn define(&self, vm: &VmSpec) -> Result<(), LabError> {
        let xml = self.dir.join(format!("{}.xml", vm.name));
        std::fs::write(&xml, vm.domain_xml()).map_err(|e| LabError::Setup(e.to_string()))?;
        self.virsh(&["define", &xml.to_string_lossy()]).map(|_| ())
    }

    /// `running`, `shut off`, …
    pub fn state(&self, name: &str) -> Result<String, LabError> {
        Ok(self.virsh(&["domstate", name])?.trim().to_string())
    }

    /// Force the VM off and remove its definition (NVRAM file kept: it lives in the lab dir).
    pub fn remove(&self, name: &str) {
        let _ = self.virsh(&["destroy", name]);
        let _ = self.virsh(&["undefine", name, "--keep-nvram"]);
    }

    /// Stop both daemons.
    pub fn stop(&mut self) {
        self.libvirtd.stop();
        self.virtlogd.stop();
    }
}

impl Drop for Libvirt {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How a disk is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskBus {
    /// virtio-blk, 512-byte sectors.
    Virtio,
    /// virtio-blk with 4096-byte logical and physical sectors (4Kn).
    Virtio4Kn,
    /// QEMU's emulated NVMe controller with one namespace.
    Nvme,
    /// AHCI (SATA) on q35.
    Sata,
}

/// One file-backed disk.
#[derive(Debug, Clone)]
pub struct DiskSpec {
    /// Raw file.
    pub path: PathBuf,
    /// Attachment.
    pub bus: DiskBus,
    /// Serial number the guest sees.
    pub serial: String,
    /// Size in bytes (the file is created sparse with this size).
    pub size: u64,
}

/// One VM.
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// Domain name.
    pub name: String,
    /// Domain UUID (the Redfish system id).
    pub uuid: String,
    /// NIC MAC.
    pub mac: String,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Bridge inside the namespace.
    pub bridge: String,
    /// Per-VM OVMF variable store (created from the template).
    pub nvram: PathBuf,
    /// Serial console, appended across boots.
    pub console: PathBuf,
    /// Disks, in order (the first is the boot disk).
    pub disks: Vec<DiskSpec>,
}

impl VmSpec {
    /// Create the sparse disk files and the NVRAM copy, readable by libvirt's QEMU user.
    pub fn create_files(&self) -> Result<(), LabError> {
        use std::os::unix::fs::PermissionsExt;
        let io = |e: std::io::Error| LabError::Setup(e.to_string());
        for d in &self.disks {
            let f = std::fs::File::create(&d.path).map_err(io)?;
            f.set_len(d.size).map_err(io)?;
            // NVMe disks go through <qemu:commandline>, which libvirt does not relabel.
            std::fs::set_permissions(&d.path, std::fs::Permissions::from_mode(0o666))
                .map_err(io)?;
        }
        std::fs::copy(OVMF_VARS, &self.nvram).map_err(io)?;
        std::fs::set_permissions(&self.nvram, std::fs::Permissions::from_mode(0o666))
            .map_err(io)?;
        std::fs::write(&self.console, b"").map_err(io)?;
        std::fs::set_permissions(&self.console, std::fs::Permissions::from_mode(0o666))
            .map_err(io)?;
        Ok(())
    }

    /// The libvirt domain XML.
    pub fn domain_xml(&self) -> String {
        let mut disks = String::new();
        let mut qemu_args = Vec::new();
        let mut letter = b'a';
        for (i, d) in self.disks.iter().enumerate() {
            let p = d.path.display();
            let s = &d.serial;
            match d.bus {
                DiskBus::Virtio | DiskBus::Virtio4Kn => {
                    let blockio = if d.bus == DiskBus::Virtio4Kn {
                        "<blockio logical_block_size='4096' physical_block_size='4096'/>"
                    } else {
                        ""
                    };
                    disks.push_str(&format!(
                        "<disk type='file' device='disk'><driver name='qemu' type='raw' cache='none' discard='unmap'/>\
                         <source file='{p}'/><target dev='vd{}' bus='virtio'/><serial>{s}</serial>{blockio}</disk>\n",
                        letter as char
                    ));
                    letter += 1;
                }
                DiskBus::Sata => {
                    disks.push_str(&format!(
                        "<disk type='file' device='disk'><driver name='qemu' type='raw'/>\
                         <source file='{p}'/><target dev='sd{}' bus='sata'/><serial>{s}</serial></disk>\n",
                        (b'a' + i as u8) as char
                    ));
                }
                DiskBus::Nvme => {
                    let id = format!("nvm{i}");
                    qemu_args.push("-drive".to_string());
                    qemu_args.push(format!("file={p},if=none,id={id},format=raw,cache=none"));
                    qemu_args.push("-device".to_string());
                    // Directly on the root complex, clear of the slots libvirt gives its root ports.
                    qemu_args.push(format!(
                        "nvme,serial={s},drive={id},bus=pcie.0,addr=0x{:x}",
                        0x18 + i
                    ));
                }
            }
        }
        let qemu = if qemu_args.is_empty() {
            String::new()
        } else {
            let args: String =
                qemu_args.iter().map(|a| format!("<qemu:arg value='{a}'/>")).collect();
            format!("<qemu:commandline>{args}</qemu:commandline>")
        };
        format!(
            "<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{name}</name>
  <uuid>{uuid}</uuid>
  <memory unit='MiB'>{mem}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <loader readonly='yes' secure='no' type='pflash'>{code}</loader>
    <nvram template='{vars}'>{nvram}</nvram>
    <boot dev='network'/>
  </os>
  <features><acpi/><apic/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    {disks}
    <interface type='bridge'><source bridge='{bridge}'/><mac address='{mac}'/><model type='virtio'/></interface>
    <serial type='file'><source path='{console}' append='on'/><target port='0'/></serial>
    <console type='file'><source path='{console}' append='on'/><target type='serial' port='0'/></console>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    <memballoon model='none'/>
  </devices>
  {qemu}
</domain>
",
            name = self.name,
            uuid = self.uuid,
            mem = self.memory_mib,
            code = OVMF_CODE,
            vars = OVMF_VARS,
            nvram = self.nvram.display(),
            bridge = self.bridge,
            mac = self.mac,
            console = self.console.display(),
        )
    }
}

/// While the lab runs, `/dev/kvm` is group `kvm`, mode 0660 (with mode 0600 root:root libvirt
/// re-probes QEMU's capabilities on every call: about 70 s per `define`). The previous owner and
/// mode are restored on drop. The guests still run under TCG.
#[derive(Debug)]
pub struct KvmPermissions {
    saved: Option<(u32, u32, u32)>,
}

/// Where the original owner and mode are kept while a lab runs, so that a lab killed before its
/// teardown is repaired by the next one.
const KVM_SAVED: &str = "/run/ipa-vm-lab-kvm.orig";

impl KvmPermissions {
    /// Adjust `/dev/kvm` if it exists.
    pub fn adjust() -> Self {
        use std::os::unix::fs::MetadataExt;
        let Ok(m) = std::fs::metadata("/dev/kvm") else { return Self { saved: None } };
        let mut saved = Some((m.uid(), m.gid(), m.mode() & 0o7777));
        if let Ok(t) = std::fs::read_to_string(KVM_SAVED) {
            let v: Vec<u32> = t.split_whitespace().filter_map(|x| x.parse().ok()).collect();
            if let [u, g, mode] = v[..] {
                saved = Some((u, g, mode));
            }
        } else if let Some((u, g, mode)) = saved {
            let _ = std::fs::write(KVM_SAVED, format!("{u} {g} {mode}"));
        }
        let _ = Command::new("chgrp").args(["kvm", "/dev/kvm"]).status();
        let _ = Command::new("chmod").args(["0660", "/dev/kvm"]).status();
        Self { saved }
    }
}

impl Drop for KvmPermissions {
    fn drop(&mut self) {
        if let Some((uid, gid, mode)) = self.saved {
            let _ = Command::new("chown").arg(format!("{uid}:{gid}")).arg("/dev/kvm").status();
            let _ = Command::new("chmod").arg(format!("{mode:o}")).arg("/dev/kvm").status();
            let _ = std::fs::remove_file(KVM_SAVED);
        }
    }
}
