//! NVMe admin commands without nvme-cli: Identify (controller, namespace), Format NVM,
//! Sanitize and the Sanitize Status log page, through the kernel's `NVME_IOCTL_ADMIN_CMD`
//! passthrough on the namespace's block device.
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
    /// The Sanitize action to use: crypto erase (SANICAP bit 0) before block erase (bit 1).
    /// Overwrite (bit 2) only on a controller without Format NVM: it takes hours where Format
    /// takes seconds, but the drive overwriting itself still beats the agent writing over the
    /// bus, which is what would happen otherwise.
    pub fn sanitize_action(&self) -> Option<SanitizeAction> {
        if self.sanicap & 0x1 != 0 {
            Some(SanitizeAction::Crypto)
        } else if self.sanicap & 0x2 != 0 {
            Some(SanitizeAction::Block)
        } else if self.sanicap & 0x4 != 0 && !self.format() {
            Some(SanitizeAction::Overwrite)
        } else {
            None
        }
    }
}

/// Sanitize Action (CDW10 bits 2:0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanitizeAction {
    /// Block erase (2): every user-data block is erased.
    Block = 2,
    /// Overwrite (3): [`SANITIZE_OVERWRITE_PASSES`] pass of the pattern 0 (zeros), not
    /// inverted, so the media reads as zeros afterwards.
    Overwrite = 3,
    /// Crypto erase (4): the media encryption key is changed.
    Crypto = 4,
}

/// Overwrite passes of an overwrite sanitize (CDW10 OWPASS).
pub const SANITIZE_OVERWRITE_PASSES: u32 = 1;

impl SanitizeAction {
    /// Command dwords 10 and 11: the action, and for overwrite one pass (OWPASS, bits 7:4)
    /// of pattern 0 (CDW11) without inversion (OIPBP clear). AUSE and NDAS stay clear.
    pub fn cdw10_cdw11(self) -> (u32, u32) {
        match self {
            Self::Overwrite => (self as u32 | (SANITIZE_OVERWRITE_PASSES << 4), 0),
            _ => (self as u32, 0),
        }
    }

    /// `block`, `overwrite`, `crypto`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Block => "block",
            Self::Overwrite => "overwrite",
            Self::Crypto => "crypto",
        }
    }
}

/// The Sanitize Status log page (log id 0x81), the fields erasure reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SanitizeStatus {
    /// SPROG: progress of the running sanitize, in 65536ths.
    pub progress: u16,
    /// SSTAT: bits 2:0 are the status of the most recent sanitize.
    pub status: u16,
}

impl SanitizeStatus {
    /// Parse the first bytes of the log page.
    pub fn parse(data: &[u8]) -> Option<Self> {
        let b = data.get(..4)?;
        Some(Self {
            progress: u16::from_le_bytes([b[0], b[1]]),
            status: u16::from_le_bytes([b[2], b[3]]),
        })
    }
    /// A sanitize is running.
    pub fn in_progress(&self) -> bool {
        self.status & 0x7 == 2
    }
    /// The most recent sanitize completed (with or without deallocation).
    pub fn succeeded(&self) -> bool {
        matches!(self.status & 0x7, 1 | 4)
    }
    /// The most recent sanitize failed.
    pub fn failed(&self) -> bool {
        self.status & 0x7 == 3
    }
    /// Progress as a fraction (1.0 when done).
    pub fn fraction(&self) -> f64 {
        if self.in_progress() { f64::from(self.progress) / 65536.0 } else { 1.0 }
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
    /// Start a Sanitize of the whole controller. Returns once the controller accepted it; it
    /// runs in the background ([`Self::sanitize_status`]).
    fn sanitize(&self, dev: &Path, action: SanitizeAction) -> Result<(), NvmeError>;
    /// Read the Sanitize Status log page.
    fn sanitize_status(&self, dev: &Path) -> Result<SanitizeStatus, NvmeError>;
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

const OPC_GET_LOG_PAGE: u8 = 0x02;
const OPC_IDENTIFY: u8 = 0x06;
const OPC_FORMAT: u8 = 0x80;
const OPC_SANITIZE: u8 = 0x84;
const LID_SANITIZE_STATUS: u32 = 0x81;
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

    fn sanitize(&self, dev: &Path, action: SanitizeAction) -> Result<(), NvmeError> {
        let f = Self::open(dev)?;
        let (cdw10, cdw11) = action.cdw10_cdw11();
        let mut cmd = PassthruCmd { opcode: OPC_SANITIZE, cdw10, cdw11, ..Default::default() };
        Self::admin(&f, dev, "sanitize", &mut cmd)
    }

    fn sanitize_status(&self, dev: &Path) -> Result<SanitizeStatus, NvmeError> {
        let f = Self::open(dev)?;
        let mut page = Box::new(Page([0; 4096]));
        // 512 bytes: NUMDL = dwords - 1.
        let mut cmd = PassthruCmd {
            opcode: OPC_GET_LOG_PAGE,
            nsid: 0xffff_ffff,
            addr: page.0.as_mut_ptr() as u64,
            data_len: 512,
            cdw10: LID_SANITIZE_STATUS | ((512 / 4 - 1) << 16),
            ..Default::default()
        };
        Self::admin(&f, dev, "sanitize status log", &mut cmd)?;
        SanitizeStatus::parse(&page.0)
            .ok_or(NvmeError::Malformed { command: "sanitize status log", path: dev.to_path_buf() })
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

/// What [`FakeNvme`]'s sanitize does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeSanitize {
    /// Refuse the command with this status (Invalid Command Opcode is 0x1, as QEMU 7.2).
    Refuse(i32),
    /// Report "in progress" for `polls` status reads, then apply the media effect and report
    /// success (or failure with [`FakeMedia::Fail`]).
    Complete {
        /// Status reads that still say "in progress".
        polls: u32,
    },
    /// Stay "in progress" forever.
    Hang,
}

/// A scripted controller for tests: fixed Identify data, a media effect, and a call log.
#[derive(Debug, Clone)]
pub struct FakeNvme {
    /// What Identify Controller returns.
    pub id: ControllerId,
    /// What a format (or a completing sanitize) does.
    pub media: FakeMedia,
    /// What a sanitize does.
    pub sanitize: FakeSanitize,
    calls: Arc<Mutex<Vec<String>>>,
    /// Status reads left before a running sanitize completes (`None`: none running).
    running: Arc<Mutex<Option<u32>>>,
    last: Arc<Mutex<u16>>,
}

impl FakeNvme {
    /// A controller with these capabilities whose format fills the media with `media`.
    pub fn new(id: ControllerId, media: FakeMedia) -> Self {
        Self {
            id,
            media,
            sanitize: FakeSanitize::Refuse(0x1),
            calls: Arc::default(),
            running: Arc::default(),
            last: Arc::default(),
        }
    }
    /// The same, with a sanitize behaviour.
    pub fn with_sanitize(mut self, sanitize: FakeSanitize) -> Self {
        self.sanitize = sanitize;
        self
    }
    fn apply_media(&self, dev: &Path, command: &'static str) -> Result<(), NvmeError> {
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
                Err(NvmeError::Status { command, path: dev.to_path_buf(), status })
            }
        }
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
        self.apply_media(dev, "format")
    }
    fn sanitize(&self, dev: &Path, action: SanitizeAction) -> Result<(), NvmeError> {
        self.log(format!("sanitize {} action={}", dev.display(), action.name()));
        match self.sanitize {
            FakeSanitize::Refuse(status) => {
                Err(NvmeError::Status { command: "sanitize", path: dev.to_path_buf(), status })
            }
            FakeSanitize::Complete { polls } => {
                *self.running.lock().unwrap_or_else(|p| p.into_inner()) = Some(polls);
                Ok(())
            }
            FakeSanitize::Hang => {
                *self.running.lock().unwrap_or_else(|p| p.into_inner()) = Some(u32::MAX);
                Ok(())
            }
        }
    }
    fn sanitize_status(&self, dev: &Path) -> Result<SanitizeStatus, NvmeError> {
        self.log(format!("sanitize-status {}", dev.display()));
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match *running {
            Some(0) => {
                *running = None;
                *last = if self.apply_media(dev, "sanitize").is_ok() { 1 } else { 3 };
            }
            Some(n) => {
                if n != u32::MAX {
                    *running = Some(n - 1);
                }
                return Ok(SanitizeStatus { progress: 0x8000, status: 2 });
            }
            None => {}
        }
        Ok(SanitizeStatus { progress: 0, status: *last })
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
    fn sanitize_capability_and_status_fields() {
        let id = |sanicap| ControllerId { oacs: 0x2, fna: 0, sanicap };
        assert_eq!(id(0).sanitize_action(), None, "QEMU 7.2: no sanitize");
        assert_eq!(id(0x1 | 0x2).sanitize_action(), Some(SanitizeAction::Crypto));
        assert_eq!(id(0x2).sanitize_action(), Some(SanitizeAction::Block));
        assert_eq!(id(0x4).sanitize_action(), None, "overwrite only: Format instead");
        let st = SanitizeStatus::parse(&[0x00, 0x40, 0x02, 0x01]).unwrap();
        assert!(st.in_progress() && !st.succeeded());
        assert_eq!(st.fraction(), 0.25);
        assert!(SanitizeStatus::parse(&[0, 0, 0x01, 0x01]).unwrap().succeeded());
        assert!(SanitizeStatus::parse(&[0, 0, 0x04, 0]).unwrap().succeeded(), "no-deallocate");
        assert!(SanitizeStatus::parse(&[0, 0, 0x03, 0]).unwrap().failed());
        assert_eq!(SanitizeStatus::parse(&[0, 0]), None);
    }

    #[test]
    fn ioctl_on_a_regular_file_is_a_clear_error() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let err = IoctlNvme.identify_controller(f.path()).unwrap_err();
        assert!(matches!(err, NvmeError::Ioctl { .. }), "{err}");
        assert!(err.to_string().contains("identify controller on"), "{err}");
        let err = IoctlNvme.format(f.path(), 1).unwrap_err();
        assert!(err.to_string().contains("namespace id on"), "{err}");
        let err = IoctlNvme.sanitize_status(f.path()).unwrap_err();
        assert!(err.to_string().contains("sanitize status log on"), "{err}");
    }
}
