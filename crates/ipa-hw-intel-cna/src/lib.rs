//! # ipa-hw-intel-cna
//!
//! IPA's `IntelCnaHardwareManager` (spec `ipa-agent.md` §5.1):
//!
//! * **support**: `MAINLINE` when any NIC under `/sys/class/net` is driven by `i40e` (the
//!   basename of `/sys/class/net/X/device/driver`), otherwise `NONE` (not loaded);
//! * **LLDP**: Intel X710/XL710 (i40e) adapters run an LLDP agent in firmware that consumes
//!   LLDP frames, so the host never sees them. When `collect_lldp` is on, `initialize()` writes
//!   `lldp stop` to `/sys/kernel/debug/i40e/<pci address>/command` for every i40e NIC. Writing
//!   is idempotent (the same command again is harmless and each device is stopped once per
//!   process); when debugfs or a device's entry is absent, one clear warning says so.
//!
//! All paths are under a root prefix (`/` on a real machine, `<sandbox>/root` in sandbox mode,
//! a fixture tree in tests). The manager offers no steps.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ipa_core::AgentError;
use ipa_core::hardware::{HardwareManager, HardwareManagerVersion, HardwareSupport};
use ipa_core::registry::HardwareManagerDescriptor;
use ipa_core::services::AgentServices;

/// Class name.
pub const NAME: &str = "IntelCnaHardwareManager";
/// `HARDWARE_MANAGER_VERSION`.
pub const VERSION: &str = "1.0";
/// The kernel driver of Intel CNA (X710/XL710/XXV710) adapters.
pub const CNA_DRIVER: &str = "i40e";
/// The command that stops the firmware LLDP agent.
pub const LLDP_STOP: &str = "lldp stop";

/// What `initialize()` did to each i40e device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LldpOutcome {
    /// `lldp stop` written.
    Stopped {
        /// PCI address.
        pci: String,
    },
    /// Already stopped earlier in this process; nothing written.
    AlreadyStopped {
        /// PCI address.
        pci: String,
    },
    /// debugfs has no entry for the device (debugfs not mounted, or i40e too old).
    NoDebugfs {
        /// PCI address.
        pci: String,
        /// The path that was missing.
        path: PathBuf,
    },
    /// The write failed.
    Failed {
        /// PCI address.
        pci: String,
        /// The OS error.
        error: String,
    },
}

/// The manager.
#[derive(Debug)]
pub struct IntelCnaHardwareManager {
    root: PathBuf,
    collect_lldp: bool,
    stopped: Mutex<BTreeSet<String>>,
}

impl IntelCnaHardwareManager {
    /// A manager over the tree under `root`; `collect_lldp` is the agent option of that name.
    pub fn new(root: impl Into<PathBuf>, collect_lldp: bool) -> Self {
        Self { root: root.into(), collect_lldp, stopped: Mutex::default() }
    }

    /// Built from the agent's services (root prefix of the run mode, `collect_lldp`).
    pub fn from_services(services: &AgentServices) -> Self {
        Self::new(services.mode.root_prefix(), services.config.inspection.collect_lldp)
    }

    fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    fn link_name(p: &Path) -> Option<String> {
        std::fs::read_link(p)
            .ok()
            .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
    }

    /// `(interface, PCI address)` of every NIC driven by i40e, sorted by interface name.
    pub fn cna_nics(&self) -> Vec<(String, String)> {
        let mut names: Vec<String> = std::fs::read_dir(self.path("/sys/class/net"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
            .into_iter()
            .filter_map(|n| {
                let dev = self.path(&format!("/sys/class/net/{n}/device"));
                let driver = Self::link_name(&dev.join("driver"))?;
                if driver != CNA_DRIVER {
                    return None;
                }
                let pci = Self::link_name(&dev)?;
                Some((n, pci))
            })
            .collect()
    }

    /// Stop the firmware LLDP agent on every i40e device (once per device per process).
    pub fn stop_embedded_lldp(&self) -> Vec<LldpOutcome> {
        let mut pcis: Vec<String> = self.cna_nics().into_iter().map(|(_, p)| p).collect();
        pcis.sort();
        pcis.dedup();
        let debugfs = self.path("/sys/kernel/debug/i40e");
        let mut stopped = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for pci in pcis {
            if stopped.contains(&pci) {
                out.push(LldpOutcome::AlreadyStopped { pci });
                continue;
            }
            let command = debugfs.join(&pci).join("command");
            if !command.exists() {
                out.push(LldpOutcome::NoDebugfs { pci, path: command });
                continue;
            }
            match std::fs::write(&command, LLDP_STOP) {
                Ok(()) => {
                    tracing::info!(pci = %pci, "stopped the embedded LLDP agent of the Intel CNA NIC");
                    stopped.insert(pci.clone());
                    out.push(LldpOutcome::Stopped { pci });
                }
                Err(e) => out.push(LldpOutcome::Failed { pci, error: e.to_string() }),
            }
        }
        let missing: Vec<&str> = out
            .iter()
            .filter_map(|o| match o {
                LldpOutcome::NoDebugfs { pci, .. } => Some(pci.as_str()),
                _ => None,
            })
            .collect();
        if !missing.is_empty() {
            tracing::warn!(
                "cannot stop the embedded LLDP agent of Intel CNA NIC(s) {}: {} has no entry \
                 for them (is debugfs mounted on /sys/kernel/debug?); LLDP frames may not reach \
                 the host",
                missing.join(", "),
                debugfs.display()
            );
        }
        let failed: Vec<String> = out
            .iter()
            .filter_map(|o| match o {
                LldpOutcome::Failed { pci, error } => Some(format!("{pci} ({error})")),
                _ => None,
            })
            .collect();
        if !failed.is_empty() {
            tracing::warn!(
                "failed to stop the embedded LLDP agent of Intel CNA NIC(s): {}",
                failed.join(", ")
            );
        }
        out
    }
}

#[async_trait]
impl HardwareManager for IntelCnaHardwareManager {
    fn name(&self) -> &str {
        NAME
    }

    fn version(&self) -> HardwareManagerVersion {
        HardwareManagerVersion { name: NAME.into(), version: VERSION.into() }
    }

    async fn evaluate_hardware_support(&self) -> HardwareSupport {
        if self.cna_nics().is_empty() { HardwareSupport::NONE } else { HardwareSupport::MAINLINE }
    }

    async fn initialize(
        &self,
        _peers: &ipa_core::hardware::HardwareManagers,
    ) -> Result<(), AgentError> {
        if self.collect_lldp {
            self.stop_embedded_lldp();
        } else {
            tracing::debug!(
                "collect_lldp is off: the Intel CNA firmware LLDP agent is left running"
            );
        }
        Ok(())
    }
}

inventory::submit! {
    HardwareManagerDescriptor {
        name: "intel-cna",
        description: "Intel CNA (i40e) NICs: stops the firmware LLDP agent when collect_lldp is on",
        config_section: None,
        kernel_params: &[],
        build: |s| Ok(Arc::new(IntelCnaHardwareManager::from_services(s))),
    }
}
