//! Disk erasure (spec `ipa-agent.md` §6.11), honest about what it did.
//!
//! Method choice per device, as IPA plus sanitize: NVMe Sanitize (crypto, else block erase,
//! else, without Format NVM, a one-pass zero overwrite; when SANICAP offers it and `agent_enable_nvme_sanitize`), else NVMe Format NVM with secure
//! erase setting 2|1 (crypto erase when the controller supports it; native admin ioctls,
//! [`nvme`]), else ATA security erase via `hdparm` (not frozen, unlocked,
//! password set, `--security-erase[-enhanced]`, unlocked afterwards), else a native overwrite
//! instead of `shred`: `agent_erase_devices_iterations` pseudo-random passes and, when
//! `agent_erase_devices_zeroize`, a final zero pass, written with large aligned `O_DIRECT`
//! requests through `RunMode::device_path`.
//!
//! **Verification rule.** After every method the device is read back at the head, the tail
//! and `VERIFY_SAMPLES` random regions, and the step fails with `BlockDeviceEraseError` unless
//! the samples show what the method guarantees:
//! * overwrite: the last pass's exact bytes (zeros, or the reproducible random stream);
//! * ATA normal security erase: zeros (the ATA standard requires binary zeros);
//! * ATA enhanced erase and NVMe format (user-data or crypto): the content is vendor-defined,
//!   so every sampled region that held non-uniform data before must differ afterwards.
//!
//! External tools run only when `tools` is on (real mode); in sandbox mode the overwrite
//! works on the backing file and a device without one is refused.

pub mod native;
pub mod nvme;
pub mod tools;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ipa_core::attest::Sample;
use ipa_core::events::Progress;
use ipa_core::extension::CommandContext;
use ipa_core::hardware::BlockDevice;
use ipa_core::os::{CommandRunner, ExecRequest};
use ipa_core::services::RunMode;
use serde_json::{Map, Value, json};

use crate::machine::{EraseFacts, Machine};
use native::{Expect, OverwriteOptions, Pattern, Target};
use nvme::NvmeAdmin;
use tools::AtaSecurity;

/// Random regions read back after an erase (besides head and tail).
pub const VERIFY_SAMPLES: usize = 32;

const GPFS: &str = "37affc90-ef7d-4e96-91c3-2d7ae055b174";
const VMFS: &str = "aa31e02a-400f-11db-9590-000c2911d1b8";

/// Why an erase failed.
#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    /// The erase ran but failed or could not be verified (`BlockDeviceEraseError`).
    #[error("Error erasing block device {device}: {reason}")]
    Erase {
        /// Device.
        device: String,
        /// What happened.
        reason: String,
    },
    /// The device cannot be opened (`BlockDeviceError`).
    #[error("{device}: {reason}")]
    Device {
        /// Device.
        device: String,
        /// What happened.
        reason: String,
    },
    /// A special filesystem is on the device (`ProtectedDeviceError`).
    #[error("Protected device {device}: {reason}")]
    Protected {
        /// Device.
        device: String,
        /// What was found.
        reason: String,
    },
    /// Secure erase failed and fallback is off; IPA answers
    /// `IncompatibleHardwareMethodError` so another manager may try.
    #[error("{0}")]
    Incompatible(String),
}

/// IPA's `driver_internal_info` erase knobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasePolicy {
    /// `agent_erase_devices_iterations` (1).
    pub iterations: u32,
    /// `agent_erase_devices_zeroize` (true).
    pub zeroize: bool,
    /// `agent_enable_nvme_secure_erase` (true).
    pub nvme: bool,
    /// `agent_enable_nvme_sanitize` (true; ours): Sanitize (crypto, else block erase) when
    /// the controller supports it, before IPA's Format NVM.
    pub nvme_sanitize: bool,
    /// `agent_enable_ata_secure_erase` (true).
    pub ata: bool,
    /// `agent_continue_if_secure_erase_failed` / `agent_continue_if_ata_erase_failed` (false).
    pub continue_if_secure_erase_failed: bool,
    /// `agent_erase_skip_read_only` (false).
    pub skip_read_only: bool,
    /// `disk_erasure_concurrency` (1).
    pub concurrency: usize,
    /// Special-filesystem guard; off only when `wipe_special_filesystems` is false (IPA's
    /// code semantics).
    pub guard_special: bool,
}

fn as_bool(v: Option<&Value>) -> Option<bool> {
    match v? {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => Some(n.as_f64().unwrap_or(0.0) != 0.0),
        Value::String(s) => ipa_core::config::parse_bool(s),
        _ => None,
    }
}

fn as_u64(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl ErasePolicy {
    /// Read from `node.driver_internal_info`.
    pub fn from_node(node: &Value) -> Self {
        let info = node.get("driver_internal_info");
        let get = |k: &str| info.and_then(|i| i.get(k));
        Self {
            iterations: as_u64(get("agent_erase_devices_iterations")).unwrap_or(1).min(100) as u32,
            zeroize: as_bool(get("agent_erase_devices_zeroize")).unwrap_or(true),
            nvme: as_bool(get("agent_enable_nvme_secure_erase")).unwrap_or(true),
            nvme_sanitize: as_bool(get("agent_enable_nvme_sanitize")).unwrap_or(true),
            ata: as_bool(get("agent_enable_ata_secure_erase")).unwrap_or(true),
            continue_if_secure_erase_failed: as_bool(get("agent_continue_if_secure_erase_failed"))
                .or_else(|| as_bool(get("agent_continue_if_ata_erase_failed")))
                .unwrap_or(false),
            skip_read_only: as_bool(get("agent_erase_skip_read_only")).unwrap_or(false),
            concurrency: as_u64(get("disk_erasure_concurrency")).unwrap_or(1).clamp(1, 64) as usize,
            guard_special: as_bool(get("wipe_special_filesystems")).unwrap_or(true),
        }
    }
}

/// What a method did, for the erase report ([`ipa_core::attest::DeviceRecord`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Erasure {
    /// `nvme_format`, `ata_security_erase`, `overwrite`, `metadata`.
    pub method: &'static str,
    /// Its parameters.
    pub parameters: Map<String, Value>,
    /// Bytes the method covered.
    pub bytes: u64,
    /// What was read back.
    pub samples: Vec<Sample>,
}

impl Erasure {
    fn new(method: &'static str, parameters: Value, bytes: u64, samples: Vec<Sample>) -> Self {
        let parameters = match parameters {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        Self { method, parameters, bytes, samples }
    }

    /// Bytes read back.
    pub fn verified_bytes(&self) -> u64 {
        self.samples.iter().map(|s| s.length).sum()
    }
}

/// How a device was erased.
#[derive(Debug, Clone, PartialEq)]
pub enum EraseOutcome {
    /// Skipped (virtual media, RAID member, read-only with skip set).
    Skipped(String),
    /// Erased and verified.
    Erased {
        /// Method in words (`nvme format ses=2 …`, `ata security erase enhanced …`,
        /// `overwrite 1 random pass(es) + zero pass …`).
        method: String,
        /// What the report records.
        erasure: Erasure,
    },
}

/// Sets the flag when dropped (the step future was dropped: abort).
#[derive(Debug)]
pub struct CancelOnDrop(pub Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// One erase engine per call: where devices are, how to run tools, what the node asks for.
#[derive(Clone)]
pub struct Eraser {
    /// Command runner.
    pub runner: Arc<dyn CommandRunner>,
    /// Run mode (`device_path` is the only way to a disk).
    pub mode: RunMode,
    /// Machine view (facts: read-only, RAID, vmedia, filesystems).
    pub machine: Machine,
    /// Use NVMe admin commands and `hdparm`/`wipefs`/`sgdisk` (real mode).
    pub tools: bool,
    /// NVMe admin commands ([`nvme::IoctlNvme`] in real mode).
    pub nvme: Arc<dyn NvmeAdmin>,
    /// Node policy.
    pub policy: ErasePolicy,
    /// Overwrite knobs.
    pub overwrite: OverwriteOptions,
    /// What overwrite passes write through ([`native::DeviceWriter`] outside tests).
    pub writer: Arc<dyn native::OpenWriter>,
    /// Random verification samples.
    pub samples: usize,
    /// How often a running NVMe sanitize is polled, and for how long at most.
    pub sanitize_poll: (Duration, Duration),
}

/// Default [`Eraser::sanitize_poll`]: every second, for up to 12 hours (an overwrite sanitize
/// of a large drive takes hours; crypto and block erase take seconds).
pub const SANITIZE_POLL: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(12 * 3600));

impl std::fmt::Debug for Eraser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Eraser").field("mode", &self.mode).field("tools", &self.tools).finish()
    }
}

fn erase_err(device: &str, reason: impl Into<String>) -> EraseError {
    EraseError::Erase { device: device.to_string(), reason: reason.into() }
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ u64::from(std::process::id()).rotate_left(32)
}

impl Eraser {
    /// Facts about a device: what sysfs and udev know, joined with what the media itself
    /// says ([`native::probe_content`]: partition types, GFS2, md superblocks). The ramdisk
    /// has no udev; guards that only trusted udev would be blind there.
    pub fn facts(&self, dev: &str) -> EraseFacts {
        let mut facts = self.machine.erase_facts(dev);
        // A partition is judged with its disk's partition table as well: which entry is this
        // partition is udev's knowledge, so any protected partition on the disk protects all
        // of its partitions (the disk itself is refused in the same step anyway).
        let mut paths = vec![self.mode.device_path(dev)];
        if let Some(parent) = &facts.parent {
            paths.push(self.mode.device_path(parent));
        }
        for path in paths.into_iter().filter(|p| p.exists()) {
            match native::probe_content(&path) {
                Ok(p) => {
                    if facts.fs_type.is_none()
                        && p.fs_types.iter().any(|f| f == "linux_raid_member")
                    {
                        facts.fs_type = Some("linux_raid_member".into());
                    }
                    facts.part_types.extend(p.part_types);
                    facts.fs_types.extend(p.fs_types);
                }
                Err(e) => {
                    tracing::warn!(device = dev, error = %e, "cannot read the device's labels")
                }
            }
        }
        facts
    }

    /// Skip reason (vmedia, RAID member, read-only when allowed), or an error for a
    /// read-only device that may not be skipped.
    pub fn skip_reason(&self, dev: &str, facts: &EraseFacts) -> Result<Option<String>, EraseError> {
        if facts.vmedia {
            return Ok(Some("virtual media device".into()));
        }
        if facts.fs_type.as_deref() == Some("linux_raid_member") || !facts.md_holders.is_empty() {
            return Ok(Some("Linux software RAID member".into()));
        }
        if facts.read_only {
            if self.policy.skip_read_only {
                return Ok(Some("read-only device".into()));
            }
            return Err(erase_err(
                dev,
                "the device is read-only; set agent_erase_skip_read_only to skip it",
            ));
        }
        Ok(None)
    }

    /// IPA's `safety_check_block_device`: refuse GPFS, VMFS and GFS2 (from [`Self::facts`],
    /// which reads the media as well as udev).
    pub fn safety_check(&self, dev: &str, facts: &EraseFacts) -> Result<(), EraseError> {
        if !self.policy.guard_special {
            return Ok(());
        }

        let protected = |reason: &str| EraseError::Protected {
            device: dev.to_string(),
            reason: format!(
                "{reason}; set driver_internal_info.wipe_special_filesystems to false to wipe it"
            ),
        };
        for t in &facts.part_types {
            match t.to_lowercase().as_str() {
                GPFS => return Err(protected("IBM GPFS partition found")),
                VMFS => return Err(protected("VMware VMFS partition found")),
                "0xfb" => return Err(protected("VMware VMFS (MBR 0xfb) partition found")),
                _ => {}
            }
        }
        if facts.fs_types.iter().any(|f| f == "gfs2") {
            return Err(protected("Red Hat GFS2 filesystem found"));
        }
        Ok(())
    }

    /// The path to open: `device_path`, which must exist (a sandbox without a backing file
    /// for the device is refused).
    pub fn backing(&self, dev: &str) -> Result<PathBuf, EraseError> {
        let path = self.mode.device_path(dev);
        if !path.exists() {
            let reason = if self.mode.is_sandbox() {
                format!("no sandbox backing file {}; refusing to erase", path.display())
            } else {
                "device does not exist".into()
            };
            return Err(EraseError::Device { device: dev.to_string(), reason });
        }
        Ok(path)
    }

    async fn run(
        &self,
        dev: &str,
        prog: &str,
        args: &[&str],
    ) -> Result<(String, String), EraseError> {
        let req = ExecRequest::new(prog, args.iter().copied());
        let line = req.command_line();
        let out = self.runner.run(req).await.map_err(|e| erase_err(dev, format!("{line}: {e}")))?;
        if !out.success() {
            return Err(erase_err(
                dev,
                format!("{line} exited {}: {}", out.status, out.stderr.trim()),
            ));
        }
        Ok((out.stdout, out.stderr))
    }

    async fn blocking<T: Send + 'static>(
        &self,
        dev: &str,
        f: impl FnOnce() -> Result<T, EraseError> + Send + 'static,
    ) -> Result<T, EraseError> {
        tokio::task::spawn_blocking(f).await.map_err(|e| erase_err(dev, format!("task: {e}")))?
    }

    async fn fingerprint(
        &self,
        dev: &str,
        path: &Path,
    ) -> Result<Vec<native::Fingerprint>, EraseError> {
        let (p, d, n) = (path.to_path_buf(), dev.to_string(), self.samples);
        self.blocking(dev, move || {
            let t = Target::open(&p, false).map_err(|e| EraseError::Device {
                device: d.clone(),
                reason: format!("cannot open {}: {e}", p.display()),
            })?;
            let regions = native::sample_regions(t.size, n, seed());
            native::fingerprint(&t, &regions).map_err(|e| erase_err(&d, e.to_string()))
        })
        .await
    }

    async fn verify(
        &self,
        dev: &str,
        path: &Path,
        expect: Expect,
    ) -> Result<Vec<Sample>, EraseError> {
        let (p, d, n) = (path.to_path_buf(), dev.to_string(), self.samples);
        self.blocking(dev, move || {
            let t = Target::open(&p, false).map_err(|e| EraseError::Device {
                device: d.clone(),
                reason: format!("cannot open {}: {e}", p.display()),
            })?;
            let regions = match &expect {
                Expect::ChangedFrom(fp) => fp.iter().map(|f| f.range.clone()).collect(),
                Expect::Pattern(_) => native::sample_regions(t.size, n, seed()),
            };
            native::verify(&t, &regions, &expect)
                .map_err(|e| erase_err(&d, format!("verification failed: {e}")))
        })
        .await
    }

    /// NVMe Sanitize (crypto, else block erase, else overwrite without Format NVM) when the
    /// controller supports it and the node
    /// allows it, else Format NVM (secure erase setting from Identify Controller), verified by
    /// reading back. A controller with neither is an error, as IPA.
    async fn nvme_erase(
        &self,
        dev: &str,
        path: &Path,
        ctx: Option<&CommandContext>,
    ) -> Result<(String, Erasure), EraseError> {
        let (admin, p, d) = (self.nvme.clone(), path.to_path_buf(), dev.to_string());
        let id = self
            .blocking(dev, move || {
                admin.identify_controller(&p).map_err(|e| erase_err(&d, e.to_string()))
            })
            .await?;
        if let Some(action) = id.sanitize_action().filter(|_| self.policy.nvme_sanitize) {
            match self.nvme_sanitize(dev, path, id, action, ctx).await {
                Ok(done) => return Ok(done),
                Err(e) if id.format() => {
                    tracing::warn!(device = dev, error = %e, "NVMe sanitize failed; trying Format NVM");
                }
                Err(e) => return Err(e),
            }
        }
        if !id.format() {
            return Err(erase_err(dev, "the controller does not support Format NVM"));
        }
        let before = self.fingerprint(dev, path).await?;
        let ses = id.ses();
        tracing::info!(device = dev, ses, oacs = id.oacs, fna = id.fna, "NVMe format");
        let (admin, p, d) = (self.nvme.clone(), path.to_path_buf(), dev.to_string());
        self.blocking(dev, move || admin.format(&p, ses).map_err(|e| erase_err(&d, e.to_string())))
            .await?;
        let samples = self.verify(dev, path, Expect::ChangedFrom(before)).await?;
        let size = std::fs::File::open(path)
            .and_then(|mut f| std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)))
            .unwrap_or(0);
        let e = Erasure::new(
            "nvme_format",
            json!({"ses": ses, "oacs": id.oacs, "fna": id.fna, "sanicap": id.sanicap}),
            size,
            samples,
        );
        Ok((format!("nvme format ses={ses} (verified {} bytes changed)", e.verified_bytes()), e))
    }

    async fn nvme_sanitize(
        &self,
        dev: &str,
        path: &Path,
        id: nvme::ControllerId,
        action: nvme::SanitizeAction,
        ctx: Option<&CommandContext>,
    ) -> Result<(String, Erasure), EraseError> {
        let before = self.fingerprint(dev, path).await?;
        tracing::info!(device = dev, action = action.name(), sanicap = id.sanicap, "NVMe sanitize");
        let (admin, p, d) = (self.nvme.clone(), path.to_path_buf(), dev.to_string());
        self.blocking(dev, move || {
            admin.sanitize(&p, action).map_err(|e| erase_err(&d, e.to_string()))
        })
        .await?;
        let started = Instant::now();
        let (every, limit) = self.sanitize_poll;
        let mut polls = 0u64;
        let status = loop {
            let (admin, p, d) = (self.nvme.clone(), path.to_path_buf(), dev.to_string());
            let st = self
                .blocking(dev, move || {
                    admin.sanitize_status(&p).map_err(|e| erase_err(&d, e.to_string()))
                })
                .await?;
            polls += 1;
            if !st.in_progress() {
                break st;
            }
            if let Some(ctx) = ctx {
                ctx.progress(Progress {
                    phase: "sanitize".into(),
                    done: (st.fraction() * 1000.0) as u64,
                    total: Some(1000),
                    rate: None,
                    eta_secs: None,
                    message: Some(format!("{dev} sanitize ({})", action.name())),
                    device: Some(dev.to_string()),
                });
            }
            if started.elapsed() >= limit {
                return Err(erase_err(
                    dev,
                    format!(
                        "sanitize ({}) still running after {} s; giving up",
                        action.name(),
                        limit.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(every).await;
        };
        if !status.succeeded() {
            return Err(erase_err(
                dev,
                format!(
                    "sanitize ({}) {} (sanitize status {:#06x})",
                    action.name(),
                    if status.failed() { "failed" } else { "did not complete" },
                    status.status
                ),
            ));
        }
        // An overwrite sanitize writes a known pattern (zeros); the others leave
        // vendor-defined content, so only "changed" can be checked.
        let overwrite = action == nvme::SanitizeAction::Overwrite;
        let expect =
            if overwrite { Expect::Pattern(Pattern::Zero) } else { Expect::ChangedFrom(before) };
        let samples = self.verify(dev, path, expect).await?;
        let size = std::fs::File::open(path)
            .and_then(|mut f| std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)))
            .unwrap_or(0);
        let secs = started.elapsed().as_secs_f64();
        let mut params = json!({"action": action.name(), "sanicap": id.sanicap,
                                "status_polls": polls, "seconds": (secs * 10.0).round() / 10.0});
        if overwrite {
            params["overwrite_passes"] = json!(nvme::SANITIZE_OVERWRITE_PASSES);
            params["pattern"] = json!("0x00000000");
        }
        let e = Erasure::new("nvme_sanitize", params, size, samples);
        let claim = if overwrite { "zero" } else { "changed" };
        Ok((
            format!(
                "nvme sanitize {} (verified {} bytes {claim})",
                action.name(),
                e.verified_bytes()
            ),
            e,
        ))
    }

    async fn ata_lines(&self, dev: &str) -> Result<AtaSecurity, EraseError> {
        let (out, _) = self.run(dev, "hdparm", &["-I", dev]).await?;
        Ok(AtaSecurity::parse(&out))
    }

    /// ATA security erase: `Ok(None)` if the drive does not support it.
    async fn ata_erase(
        &self,
        dev: &str,
        path: &Path,
    ) -> Result<Option<(String, Erasure)>, EraseError> {
        let sec = self.ata_lines(dev).await?;
        if self.runner.exists("smartctl").await {
            let req = ExecRequest::new("smartctl", ["-d", "ata", dev, "-g", "security"]);
            match self.runner.run(req).await {
                Ok(o)
                    if (o.status == 0 || o.status == 127) && !o.stdout.contains("Unavailable") => {}
                _ => return Ok(None),
            }
        }
        if !sec.supported() {
            return Ok(None);
        }
        if !sec.not_frozen() {
            return Err(erase_err(
                dev,
                "the drive's security state is frozen; power-cycle it (suspend/resume) to unfreeze",
            ));
        }
        let mut sec = sec;
        if !sec.not_locked() {
            for pw in ["NULL", ""] {
                let _ = self
                    .run(dev, "hdparm", &["--user-master", "u", "--security-unlock", pw, dev])
                    .await;
                sec = self.ata_lines(dev).await?;
                if sec.not_locked() {
                    break;
                }
            }
            if !sec.not_locked() {
                return Err(erase_err(dev, "the drive is security-locked and cannot be unlocked"));
            }
        }
        if sec.not_enabled() {
            self.run(dev, "hdparm", &["--user-master", "u", "--security-set-pass", "NULL", dev])
                .await?;
        }
        let enhanced = sec.enhanced();
        let before = if enhanced { Some(self.fingerprint(dev, path).await?) } else { None };
        let flag = if enhanced { "--security-erase-enhanced" } else { "--security-erase" };
        if let Err(e) = self.run(dev, "hdparm", &["--user-master", "u", flag, "NULL", dev]).await {
            let _ = self
                .run(dev, "hdparm", &["--user-master", "u", "--security-unlock", "NULL", dev])
                .await;
            return Err(e);
        }
        if !self.ata_lines(dev).await?.not_enabled() {
            return Err(erase_err(dev, "the security password is still set after the erase"));
        }
        let samples = match before {
            Some(fp) => self.verify(dev, path, Expect::ChangedFrom(fp)).await?,
            None => self.verify(dev, path, Expect::Pattern(Pattern::Zero)).await?,
        };
        let size = std::fs::File::open(path)
            .and_then(|mut f| std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)))
            .unwrap_or(0);
        let e = Erasure::new("ata_security_erase", json!({"enhanced": enhanced}), size, samples);
        Ok(Some((
            format!(
                "ata security erase{} (verified {} bytes)",
                if enhanced { " enhanced" } else { "" },
                e.verified_bytes()
            ),
            e,
        )))
    }

    /// The native overwrite: `iterations` random passes then, if `zeroize`, a zero pass;
    /// the last pass is verified.
    async fn overwrite(
        &self,
        dev: &str,
        path: &Path,
        ctx: Option<&CommandContext>,
        cancel: &Arc<AtomicBool>,
    ) -> Result<(String, Erasure), EraseError> {
        let mut passes: Vec<Pattern> =
            (0..self.policy.iterations).map(|_| Pattern::Random(seed())).collect();
        if self.policy.zeroize {
            passes.push(Pattern::Zero);
        }
        let Some(last) = passes.last().copied() else {
            return Err(erase_err(
                dev,
                "nothing to do: agent_erase_devices_iterations is 0 and agent_erase_devices_zeroize is off",
            ));
        };
        let seeds: Vec<String> = passes
            .iter()
            .filter_map(|p| match p {
                Pattern::Random(s) => Some(format!("{s:#018x}")),
                Pattern::Zero => None,
            })
            .collect();
        let mut zeroed_by_kernel = false;
        let mut written = 0u64;
        let npasses = passes.len();
        for (i, pattern) in passes.into_iter().enumerate() {
            let (p, d, opts, c, ctx, writer) = (
                path.to_path_buf(),
                dev.to_string(),
                self.overwrite.clone(),
                cancel.clone(),
                ctx.cloned(),
                self.writer.clone(),
            );
            let started = Instant::now();
            let (size, kernel) = self
                .blocking(dev, move || {
                    let t = writer.open(&p).map_err(|e| EraseError::Device {
                        device: d.clone(),
                        reason: format!("cannot open {} for writing: {e}", p.display()),
                    })?;
                    let total = t.size();
                    let mut report = |done: u64| {
                        if let Some(ctx) = &ctx {
                            let secs = started.elapsed().as_secs_f64();
                            let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
                            ctx.progress(Progress {
                                phase: "erase".into(),
                                done,
                                total: Some(total),
                                rate: Some(rate),
                                eta_secs: (rate > 0.0).then(|| (total - done) as f64 / rate),
                                message: Some(format!("{d} pass {}/{npasses}", i + 1)),
                                device: Some(d.clone()),
                            });
                        }
                    };
                    let kernel = if pattern == Pattern::Zero {
                        native::zero_fill(&*t, &opts, &c, &mut report).map(|(_, k)| k)
                    } else {
                        native::overwrite(&*t, pattern, &opts, &c, &mut report).map(|_| false)
                    }
                    .map_err(|e| erase_err(&d, format!("overwrite pass {}: {e}", i + 1)))?;
                    Ok((total, kernel))
                })
                .await?;
            zeroed_by_kernel |= kernel;
            written += size;
            tracing::info!(
                device = dev,
                pass = i + 1,
                passes = npasses,
                bytes = size,
                secs = started.elapsed().as_secs_f64(),
                kernel_zeroout = kernel,
                "overwrite pass done"
            );
        }
        let samples = self.verify(dev, path, Expect::Pattern(last)).await?;
        let e = Erasure::new(
            "overwrite",
            json!({
                "iterations": self.policy.iterations,
                "zeroize": self.policy.zeroize,
                "random_seeds": seeds,
                "zero_pass": if !self.policy.zeroize { "none" } else if zeroed_by_kernel { "blkzeroout" } else { "write" },
            }),
            written,
            samples,
        );
        Ok((
            format!(
                "overwrite {} random pass(es){} (verified {} bytes)",
                self.policy.iterations,
                match (self.policy.zeroize, zeroed_by_kernel) {
                    (false, _) => "",
                    (true, true) => " + zero pass by BLKZEROOUT",
                    (true, false) => " + zero pass",
                },
                e.verified_bytes()
            ),
            e,
        ))
    }

    /// Erase one device: skip rules, secure erase where possible, else overwrite; verified.
    pub async fn erase_device(
        &self,
        dev: &BlockDevice,
        ctx: Option<&CommandContext>,
        cancel: &Arc<AtomicBool>,
    ) -> Result<EraseOutcome, EraseError> {
        let name = dev.name.as_str();
        let facts = self.facts(name);
        if let Some(reason) = self.skip_reason(name, &facts)? {
            tracing::info!(device = name, reason, "not erasing");
            return Ok(EraseOutcome::Skipped(reason));
        }
        let path = self.backing(name)?;
        if self.tools {
            let secure = if name.starts_with("/dev/nvme") {
                if self.policy.nvme {
                    self.nvme_erase(name, &path, ctx).await.map(Some)
                } else {
                    Ok(None)
                }
            } else if self.policy.ata {
                self.ata_erase(name, &path).await
            } else {
                Ok(None)
            };
            match secure {
                Ok(Some((method, erasure))) => {
                    return Ok(EraseOutcome::Erased { method, erasure });
                }
                Ok(None) => {}
                Err(e) if self.policy.continue_if_secure_erase_failed => {
                    tracing::warn!(device = name, error = %e, "secure erase failed; overwriting");
                }
                Err(e) => {
                    return Err(EraseError::Incompatible(format!(
                        "{e}; set agent_continue_if_secure_erase_failed to fall back to overwriting"
                    )));
                }
            }
        }
        if self.policy.iterations == 0 && !self.policy.zeroize {
            // IPA runs `shred --iterations 0`, which writes nothing; say so instead of
            // claiming an erase.
            tracing::warn!(device = name, "agent_erase_devices_iterations is 0 and zeroize is off");
            return Ok(EraseOutcome::Skipped(
                "nothing written: agent_erase_devices_iterations is 0 and \
                 agent_erase_devices_zeroize is off"
                    .into(),
            ));
        }
        let (method, erasure) = self.overwrite(name, &path, ctx, cancel).await?;
        Ok(EraseOutcome::Erased { method, erasure })
    }

    /// IPA's `destroy_disk_metadata` for one device (disk or partition): `wipefs` (real mode),
    /// native zeroing of the metadata regions, `sgdisk -Z` when installed, else `partprobe`
    /// (real mode). Every zeroed region is read back and must be zeros.
    pub async fn erase_metadata(&self, dev: &BlockDevice) -> Result<Erasure, EraseError> {
        let name = dev.name.as_str();
        let path = self.backing(name)?;
        if self.tools {
            let forced = self.run(name, "wipefs", &["--force", "--all", name]).await;
            if forced.is_err() {
                self.run(name, "wipefs", &["--all", name]).await?;
            }
        }
        let sector = u64::from(dev.logical_sectors.unwrap_or(512));
        let (p, d) = (path.to_path_buf(), name.to_string());
        let samples = self
            .blocking(name, move || {
                native::wipe_metadata(&p, sector)
                    .map_err(|e| erase_err(&d, format!("zeroing metadata of {}: {e}", p.display())))
            })
            .await?;
        let regions: Vec<String> =
            samples.iter().map(|s| format!("{}+{}", s.offset, s.length)).collect();
        tracing::info!(device = name, ?regions, "metadata zeroed");
        if let Some(bad) = samples.iter().find(|s| !s.ok) {
            return Err(erase_err(
                name,
                format!("metadata region {}+{} is not zero after the wipe", bad.offset, bad.length),
            ));
        }
        if self.tools {
            // Both GPTs and the protective MBR are already zero; sgdisk (optional in the
            // ramdisk) is IPA's belt and braces. Either way the kernel must drop the old
            // partitions: sgdisk re-reads the table itself, partprobe otherwise (busy
            // partitions keep their old view, as with sgdisk; that is not an error).
            if self.runner.exists("sgdisk").await {
                self.run(name, "sgdisk", &["-Z", name]).await?;
            } else if let Err(e) = self.run(name, "partprobe", &[name]).await {
                tracing::info!(device = name, error = %e, "partition table not re-read");
            }
        }
        let bytes = samples.iter().map(|s| s.length).sum();
        Ok(Erasure::new(
            "metadata",
            json!({"logical_sector_size": sector, "wipefs": self.tools, "regions": regions.len()}),
            bytes,
            samples,
        ))
    }

    /// NVMe format only (express erase); `Ok(None)` when not applicable.
    pub async fn express_nvme(&self, dev: &BlockDevice) -> Result<Option<Erasure>, EraseError> {
        if !self.tools || !self.policy.nvme || !dev.name.starts_with("/dev/nvme") {
            return Ok(None);
        }
        let path = self.backing(&dev.name)?;
        self.nvme_erase(&dev.name, &path, None).await.map(|(_, e)| Some(e))
    }
}
