//! The VM lab: real (virtual) machines driven by a real Ironic, set up and torn down by the
//! tests themselves (see `docs/vm-lab.md`).
//!
//! One network namespace per lab holds a bridge, dnsmasq (DHCP, and TFTP of iPXE for UEFI PXE
//! clients), a plain HTTP server for Ironic's `http_root`, libvirt (virtlogd + libvirtd in the
//! foreground, private sockets), sushy-tools (the Redfish BMC emulator Ironic's own CI uses) and
//! an unmodified Ironic 39 (`redfish` hardware type, `ipxe` boot, `direct` deploy). VMs are QEMU
//! under TCG with OVMF, a per-VM NVRAM file, virtio-net on the bridge, and disks that are files
//! in the lab's temporary directory (virtio-blk, 4Kn virtio-blk, NVMe, AHCI). Nothing outside
//! that directory and that namespace is touched, except `/dev/kvm`'s group and mode, which are
//! restored at teardown. Every process is a child of the test, stopped by PID.

pub mod daemon;
pub mod lab;
pub mod libvirt;
pub mod netns;
pub mod tls;

use std::process::Command;

pub use lab::{Lab, LabOptions};
pub use libvirt::{DiskBus, DiskSpec, VmSpec};

/// What went wrong in the lab.
#[derive(Debug)]
pub enum LabError {
    /// A tool or an input is missing (the test fails: it never skips).
    Missing(String),
    /// Setting up a component failed.
    Setup(String),
    /// Something did not happen in time.
    Timeout(String),
    /// Ironic refused a call.
    Ironic(String),
}

impl std::fmt::Display for LabError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing(m) => write!(f, "missing: {m}"),
            Self::Setup(m) => write!(f, "lab setup: {m}"),
            Self::Timeout(m) => write!(f, "timed out: {m}"),
            Self::Ironic(m) => write!(f, "ironic: {m}"),
        }
    }
}

impl std::error::Error for LabError {}

/// The programs and files the lab needs (installed by `scripts/setup-vm-lab.sh`).
pub const REQUIRED: &[&str] = &[
    "/usr/bin/qemu-system-x86_64",
    "/usr/sbin/libvirtd",
    "/usr/sbin/virtlogd",
    "/usr/bin/virsh",
    "/usr/sbin/dnsmasq",
    "/usr/share/OVMF/OVMF_CODE_4M.fd",
    "/usr/share/OVMF/OVMF_VARS_4M.fd",
    "/usr/lib/ipxe/snponly.efi",
    "/usr/bin/python3",
    "/usr/bin/qemu-img",
    "/usr/bin/socat",
    "/usr/bin/openssl",
    "/usr/bin/cpio",
    "/usr/bin/gzip",
];

/// Fail (never skip) when something the lab needs is missing.
pub fn require_tools() -> Result<(), LabError> {
    let mut missing: Vec<String> = REQUIRED
        .iter()
        .filter(|p| !std::path::Path::new(p).exists())
        .map(|p| p.to_string())
        .collect();
    let sushy = lab::sushy_venv().join("bin/sushy-emulator");
    if !sushy.exists() {
        missing.push(sushy.display().to_string());
    }
    if ipa_ironic::testing::IronicServer::venv().is_none() {
        missing.push("Ironic venv ($IRONIC_VENV or /opt/ironic-venv)".into());
    }
    if !nix::unistd::geteuid().is_root() {
        missing.push("root (network namespaces, libvirt)".into());
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(LabError::Missing(format!("{} — run scripts/setup-vm-lab.sh", missing.join(", "))))
    }
}

/// Run a program; fail with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<(), LabError> {
    let mut c = Command::new(program);
    c.args(args);
    run_out(c).map(|_| ())
}

/// Run a command; its stdout, or an error with stderr.
pub fn run_out(mut c: Command) -> Result<String, LabError> {
    let out = c.output().map_err(|e| LabError::Setup(format!("{c:?}: {e}")))?;
    if !out.status.success() {
        return Err(LabError::Setup(format!(
            "{c:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
