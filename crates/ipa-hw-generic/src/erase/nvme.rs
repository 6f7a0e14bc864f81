//! NVMe admin commands without nvme-cli: Identify (controller, namespace) and Format NVM
//! through the kernel's `NVME_IOCTL_ADMIN_CMD` passthrough on the namespace's block device.
//!
//! [`NvmeAdmin`] is the narrow seam: [`IoctlNvme`] is the real implementation (one `ioctl(2)`
//! per command, the same bytes `nvme id-ctrl` / `nvme format` send), [`FakeNvme`] scripts a
//! controller for tests (capabilities, a failing format, media that changes or not).
//!
//! Format keeps the namespace's current LBA format and metadata setting (what `nvme format`
//! does without `-l`), so a 4Kn namespace stays 4Kn.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Identify Controller fields the erase code uses (NVMe base spec, figure "Identify
/// Controller Data Structure").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ControllerId {
    /// Optional Admin Command Support (bytes 257:256); bit 1 = Format NVM.
    pub oacs: u16,
    /// Format NVM Attributes (byte 524); bit 0 = format applies to all namespaces, bit 2 =
    /// cryptographic erase supported.
    pub fna: u8,
    /// Sanitize Capabilities (bytes 331:328).
    pub sanicap: u32,
}

impl ControllerId {
    /// Parse the 4096-byte Identify Controller data. `None` if shorter.
    pub fn parse(data: &[u8]) -> Option<Self> {
        if data.len() < 4096 {
            return None;
        }
        Some(Self {
            oacs: u16::from_le_bytes([data[256], data[257]]),
            fna: data[524],
            sanicap: u32::from_le_bytes([data[328], data[329], data[330], data[331]]),
        })
    }
    /// Format NVM is supported.
    pub fn format(&self) -> bool {
        self.oacs & 0x2 != 0
    }
    /// Cryptographic erase is supported as a Format secure-erase setting.
    pub fn crypto(&self) -> bool {
        self.fna & 0x4 != 0
    }
    /// Secure Erase Setting for Format NVM: 2 (cryptographic) or 1 (user data), as IPA.
    pub fn ses(&self) -> u8 {
        if self.crypto() { 2 } else { 1 }
    }
}

/// A failed admin command.
#[derive(Debug, thiserror::Error)]
pub enum NvmeError {
    /// Opening the device failed.
    #[error("cannot open {path}: {source}")]
    Open {
        /// Device.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The ioctl failed (not an NVMe device, no permission, transport error).
    #[error("{command} on {path}: {source}")]
    Ioctl {
        /// Admin command.
        command: &'static str,
        /// Device.
        path: PathBuf,
        /// Cause.
        source: nix::Error,
    },
    /// The controller completed the command with an error status.
    #[error("{command} on {path}: controller status {status:#06x}")]
    Status {
        /// Admin command.
        command: &'static str,
        /// Device.
        path: PathBuf,
        /// NVMe status field (status code type and code).
        status: i32,
    },
    /// The returned data is not an Identify structure.
    #[error("{command} on {path}: short or malformed data")]
    Malformed {
        /// Admin command.
        command: &'static str,
        /// Device.
        path: PathBuf,
    },
}

/// The admin commands erasure needs.
pub trait NvmeAdmin: Send + Sync + std::fmt::Debug {
    /// Identify Controller of the controller behind the namespace device `dev`.
    fn identify_controller(&self, dev: &Path) -> Result<ControllerId, NvmeError>;
    /// Format NVM the namespace `dev` with secure erase setting `ses` (1 user data, 2 crypto),
    /// keeping its LBA format. Blocks until the controller completes.
    fn format(&self, dev: &Path, ses: u8) -> Result<(), NvmeError>;
}

/// `struct nvme_passthru_cmd` (linux/nvme_ioctl.h), 72 bytes.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct PassthruCmd {
    opcode: u8,
    flags: u8,
    rsvd1: u16,
    nsid: u32,
    cdw2: u32,
    cdw3: u32,
    metadata: u64,
    addr: u64,
    metadata_len: u32,
    data_len: u32,
    cdw10: u32,
    cdw11: u32,
    cdw12: u32,
    cdw13: u32,
    cdw14: u32,
    cdw15: u32,
    timeout_ms: u32,
    result: u32,
}

const _: () = assert!(std::mem::size_of::<PassthruCmd>() == 72);

nix::ioctl_none!(nvme_ioctl_id, b'N', 0x40);
nix::ioctl_readwrite!(nvme_ioctl_admin_cmd, b'N', 0x41, PassthruCmd);

const OPC_IDENTIFY: u8 = 0x06;
const OPC_FORMAT: u8 = 0x80;
const CNS_NAMESPACE: u32 = 0x00;
const CNS_CONTROLLER: u32 = 0x01;
/// Format of a large namespace can take minutes; the kernel's default admin timeout is 60 s.
const FORMAT_TIMEOUT_MS: u32 = 3_600_000;

/// The real implementation: ioctls on the block device.
#[derive(Debug, Default, Clone, Copy)]
pub struct IoctlNvme;

/// A 4 KiB buffer aligned for DMA-friendly passthrough.
#[repr(C, align(4096))]
struct Page([u8; 4096]);

impl IoctlNvme {
    fn open(dev: &Path) -> Result<File, NvmeError> {
        File::open(dev).map_err(|source| NvmeError::Open { path: dev.to_path_buf(), source })
    }

    fn admin(
        f: &File,
        dev: &Path,
        command: &'static str,
        cmd: &mut PassthruCmd,
    ) -> Result<(), NvmeError> {
        // SAFETY: `cmd` is a valid `nvme_passthru_cmd`; its `addr`, when set, points to a
        // buffer of `data_len` bytes that outlives the call.
        let status = unsafe { nvme_ioctl_admin_cmd(f.as_raw_fd(), cmd) }
            .map_err(|source| NvmeError::Ioctl { command, path: dev.to_path_buf(), source })?;
        if status != 0 {
            return Err(NvmeError::Status { command, path: dev.to_path_buf(), status });
        }
        Ok(())
    }

    fn nsid(f: &File, dev: &Path) -> Result<u32, NvmeError> {
        // SAFETY: NVME_IOCTL_ID takes no argument and returns the namespace id.
        let id = unsafe { nvme_ioctl_id(f.as_raw_fd()) }.map_err(|source| NvmeError::Ioctl {
            command: "namespace id",
            path: dev.to_path_buf(),
            source,
        })?;
        u32::try_from(id)
            .map_err(|_| NvmeError::Malformed { command: "namespace id", path: dev.to_path_buf() })
    }

    fn identify(
        f: &File,
        dev: &Path,
        command: &'static str,
        nsid: u32,
        cns: u32,
    ) -> Result<Box<Page>, NvmeError> {
        let mut page = Box::new(Page([0; 4096]));
        let mut cmd = PassthruCmd {
            opcode: OPC_IDENTIFY,
            nsid,
            addr: page.0.as_mut_ptr() as u64,
            data_len: 4096,
            cdw10: cns,
            ..Default::default()
        };
        Self::admin(f, dev, command, &mut cmd)?;
        Ok(page)
    }
}

impl NvmeAdmin for IoctlNvme {
    fn identify_controller(&self, dev: &Path) -> Result<ControllerId, NvmeError> {
        let f = Self::open(dev)?;
        let page = Self::identify(&f, dev, "identify controller", 0, CNS_CONTROLLER)?;
        ControllerId::parse(&page.0)
            .ok_or(NvmeError::Malformed { command: "identify controller", path: dev.to_path_buf() })
    }

    fn format(&self, dev: &Path, ses: u8) -> Result<(), NvmeError> {
        let f = Self::open(dev)?;
        let nsid = Self::nsid(&f, dev)?;
        let ns = Self::identify(&f, dev, "identify namespace", nsid, CNS_NAMESPACE)?;
        let flbas = u32::from(ns.0[26]);
        // FLBAS bits 3:0 (and 6:5, the high bits of NVMe 2.0) select the LBA format; bit 4 is
        // "metadata at the end of the LBA" (MSET).
        let lbaf_lo = flbas & 0xf;
        let lbaf_hi = (flbas >> 5) & 0x3;
        let mset = (flbas >> 4) & 0x1;
        let cdw10 = lbaf_lo | (mset << 4) | (u32::from(ses & 0x7) << 9) | (lbaf_hi << 12);
        let mut cmd = PassthruCmd {
            opcode: OPC_FORMAT,
            nsid,
            cdw10,
            timeout_ms: FORMAT_TIMEOUT_MS,
            ..Default::default()
        };
        Self::admin(&f, dev, "format", &mut cmd)
    }
}

/// What [`FakeNvme::format`] does to the backing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeMedia {
    /// Fill it with this byte (what a drive's erase does).
    Fill(u8),
    /// Leave it as it was (a format that lies).
    Unchanged,
    /// Fail with this controller status.
    Fail(i32),
}

/// A scripted controller for tests: fixed Identify data, a media effect, and a call log.
#[derive(Debug, Clone)]
pub struct FakeNvme {
    /// What Identify Controller returns.
    pub id: ControllerId,
    /// What a format does.
    pub media: FakeMedia,
    calls: Arc<Mutex<Vec<String>>>,
}

impl FakeNvme {
    /// A controller with these capabilities whose format fills the media with `media`.
    pub fn new(id: ControllerId, media: FakeMedia) -> Self {
        Self { id, media, calls: Arc::default() }
    }
    /// The commands received, as `identify-controller PATH` / `format PATH ses=N`.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }
    fn log(&self, line: String) {
        if let Ok(mut c) = self.calls.lock() {
            c.push(line);
        }
    }
}

impl NvmeAdmin for FakeNvme {
    fn identify_controller(&self, dev: &Path) -> Result<ControllerId, NvmeError> {
        self.log(format!("identify-controller {}", dev.display()));
        Ok(self.id)
    }
    fn format(&self, dev: &Path, ses: u8) -> Result<(), NvmeError> {
        self.log(format!("format {} ses={ses}", dev.display()));
        match self.media {
            FakeMedia::Fill(b) => {
                let len = std::fs::metadata(dev)
                    .map_err(|source| NvmeError::Open { path: dev.to_path_buf(), source })?
                    .len();
                let len = usize::try_from(len).unwrap_or(0);
                std::fs::write(dev, vec![b; len])
                    .map_err(|source| NvmeError::Open { path: dev.to_path_buf(), source })
            }
            FakeMedia::Unchanged => Ok(()),
            FakeMedia::Fail(status) => {
                Err(NvmeError::Status { command: "format", path: dev.to_path_buf(), status })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(oacs: u16, fna: u8, sanicap: u32) -> Vec<u8> {
        let mut d = vec![0u8; 4096];
        d[256..258].copy_from_slice(&oacs.to_le_bytes());
        d[524] = fna;
        d[328..332].copy_from_slice(&sanicap.to_le_bytes());
        d
    }

    #[test]
    fn identify_controller_fields_come_from_their_spec_offsets() {
        // QEMU 7.2's emulated controller: oacs 0x10a, fna 0, no sanitize.
        let id = ControllerId::parse(&page(0x10a, 0, 0)).unwrap();
        assert_eq!(id, ControllerId { oacs: 0x10a, fna: 0, sanicap: 0 });
        assert!(id.format());
        assert!(!id.crypto());
        assert_eq!(id.ses(), 1);
        let id = ControllerId::parse(&page(0x2, 0x4, 0x7)).unwrap();
        assert!(id.crypto());
        assert_eq!(id.ses(), 2);
        assert_eq!(id.sanicap, 7);
        assert!(!ControllerId::parse(&page(0, 0, 0)).unwrap().format());
        assert_eq!(ControllerId::parse(&[0u8; 100]), None);
    }

    #[test]
    fn ioctl_on_a_regular_file_is_a_clear_error() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let err = IoctlNvme.identify_controller(f.path()).unwrap_err();
        assert!(matches!(err, NvmeError::Ioctl { .. }), "{err}");
        assert!(err.to_string().contains("identify controller on"), "{err}");
        let err = IoctlNvme.format(f.path(), 1).unwrap_err();
        assert!(err.to_string().contains("namespace id on"), "{err}");
    }
}
