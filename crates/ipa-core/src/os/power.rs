//! Power actions. The real controller syncs and reboots/powers off the machine; the sandbox
//! controller only records what it was asked to do. Tests never get the real one.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::AgentError;

/// A power action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerAction {
    /// Flush file systems and block device buffers.
    Sync,
    /// Reboot (`standby.run_image`).
    Reboot,
    /// Power off (`standby.power_off`).
    PowerOff,
}

/// One recorded action (sandbox).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerRecord {
    /// What was asked.
    pub action: PowerAction,
    /// Epoch seconds.
    pub at: f64,
}

/// Performs power actions.
#[async_trait]
pub trait PowerController: Send + Sync + 'static {
    /// Perform (or record) `action`.
    async fn perform(&self, action: PowerAction) -> Result<(), AgentError>;
}

impl std::fmt::Debug for dyn PowerController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PowerController")
    }
}

/// Records actions in memory and as JSON lines in a file; never touches the machine.
#[derive(Debug, Clone)]
pub struct RecordingPower {
    log: PathBuf,
    records: Arc<Mutex<Vec<PowerRecord>>>,
}

impl RecordingPower {
    /// Record into `log` (created on first action).
    pub fn new(log: PathBuf) -> Self {
        Self { log, records: Arc::default() }
    }
    /// Actions recorded so far by this instance.
    pub fn records(&self) -> Vec<PowerRecord> {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[async_trait]
impl PowerController for RecordingPower {
    async fn perform(&self, action: PowerAction) -> Result<(), AgentError> {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let rec = PowerRecord { action, at };
        tracing::warn!(?action, log = %self.log.display(), "sandbox: power action recorded, not performed");
        if let Some(dir) = self.log.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let mut line = serde_json::to_string(&rec).unwrap_or_default();
        line.push('\n');
        use tokio::io::AsyncWriteExt;
        let mut f = tokio::fs::OpenOptions::new().create(true).append(true).open(&self.log).await?;
        f.write_all(line.as_bytes()).await?;
        // tokio's File finishes writes in the background; make the record durable before
        // reporting the action as done.
        f.flush().await?;
        self.records.lock().unwrap_or_else(|p| p.into_inner()).push(rec);
        Ok(())
    }
}

/// The real controller: `sync(2)`, drop caches, then either asks the ramdisk's init to power
/// off or reboot (when the agent runs under `ipa-init`, which sets `IPA_INIT=1`: SIGUSR2 to
/// PID 1 powers off, SIGTERM reboots — busybox init's convention, so the init stops every
/// process, syncs and calls `reboot(2)` itself), or calls `reboot(2)` directly, falling back to
/// `/proc/sysrq-trigger`. Only constructed in real mode.
#[derive(Debug, Clone, Default)]
pub struct SystemPower;

#[async_trait]
impl PowerController for SystemPower {
    async fn perform(&self, action: PowerAction) -> Result<(), AgentError> {
        tokio::task::spawn_blocking(move || system_power(action))
            .await
            .map_err(|e| AgentError::SystemReboot { details: e.to_string() })?
    }
}

fn system_power(action: PowerAction) -> Result<(), AgentError> {
    use nix::sys::reboot::{RebootMode, reboot};
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    nix::unistd::sync();
    if action == PowerAction::Sync {
        let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
        return Ok(());
    }
    let (mode, sysrq, signal) = match action {
        PowerAction::Reboot => (RebootMode::RB_AUTOBOOT, "b", Signal::SIGTERM),
        _ => (RebootMode::RB_POWER_OFF, "o", Signal::SIGUSR2),
    };
    if std::env::var_os("IPA_INIT").is_some_and(|v| v == "1") {
        tracing::warn!(?action, "asking the ramdisk's init (PID 1) to perform the power action");
        match kill(Pid::from_raw(1), signal) {
            Ok(()) => return Ok(()),
            Err(err) => {
                tracing::error!(error = %err, "cannot signal PID 1; calling reboot(2) directly")
            }
        }
    }
    // reboot(2) does not return when it works.
    let Err(err) = reboot(mode);
    tracing::error!(error = %err, "reboot(2) failed; falling back to sysrq");
    std::fs::write("/proc/sysrq-trigger", sysrq).map_err(|e| AgentError::SystemReboot {
        details: format!("reboot(2) failed ({err}) and sysrq fallback failed ({e})"),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn recording_power_writes_json_lines_and_performs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = RecordingPower::new(dir.path().join("power.log"));
        p.perform(PowerAction::Sync).await.unwrap();
        p.perform(PowerAction::Reboot).await.unwrap();
        let text = std::fs::read_to_string(dir.path().join("power.log")).unwrap();
        let actions: Vec<PowerAction> =
            text.lines().map(|l| serde_json::from_str::<PowerRecord>(l).unwrap().action).collect();
        assert_eq!(actions, vec![PowerAction::Sync, PowerAction::Reboot]);
        assert_eq!(p.records().len(), 2);
    }
}
