//! # ipa-hw-sim
//!
//! The simulated hardware manager: the safe default whenever the agent runs off a ramdisk.
//!
//! A machine is described by a small TOML or JSON file ([`machine::Machine`]; option `machine`,
//! flag `--machine FILE`, kernel parameter `ipa-machine`) or is the built-in default (one NIC
//! `52:54:00:12:34:56`, one 8 GiB disk `/dev/vda`). Every disk is a sparse file
//! `<sandbox>/disks/<name>` created at start-up, so the image pipeline, erasure and partition code
//! run for real against files while nothing outside the sandbox is touched.
//!
//! Steps mirror the generic manager's defaults with harmless, checkable effects:
//!
//! | kind | step | priority | effect |
//! |---|---|---|---|
//! | clean | `erase_devices_metadata` | 99 | zeroes the head and tail of every disk file (as IPA's `dd`) |
//! | clean | `erase_devices` | 10 | every disk file becomes all zeroes (hole-punched); one `erase` progress record per disk |
//! | deploy | `erase_devices_metadata` | 0 | as above |
//! | any | `[[steps]]` of the machine file | as given | sleeps, optionally fails, appends to `sim-steps.log` |
//!
//! `write_image` (deploy and service) is listed and run by the image pipeline's `standby`
//! fragment, with this manager answering `get_os_install_device`.
//!
//! The manager only loads in sandbox mode: with real hardware it reports no support.

pub mod machine;

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ipa_core::config::ConfigError;
use ipa_core::error::AgentError;
use ipa_core::hardware::{
    BlockDevice, BootInfo, Cpu, HardwareManager, HardwareManagerVersion, HardwareManagers,
    HardwareSupport, Inventory, LogFile, Memory, NetworkInterface, Step, StepCall, StepKind,
    SystemVendorInfo, hints,
};
use ipa_core::registry::HardwareManagerDescriptor;
use ipa_core::services::{AgentServices, RunMode};
use serde_json::{Value, json};

pub use machine::Machine;

/// The manager's class-style name (the key of step lists, as IPA's class names).
pub const MANAGER_NAME: &str = "SimulatedHardwareManager";
/// The name in `hardware_manager_version`.
pub const VERSION_NAME: &str = "simulated_hardware_manager";
/// Its version.
pub const VERSION: &str = "1.0";

/// Errors of the simulated machine.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Machine file unreadable.
    #[error("cannot read machine description {path}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Machine file invalid.
    #[error("invalid machine description {path}: {reason}")]
    Parse {
        /// File.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A disk file operation failed.
    #[error("simulated disk {path}: {op} failed")]
    Disk {
        /// Backing file.
        path: PathBuf,
        /// Operation.
        op: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

impl From<SimError> for AgentError {
    fn from(e: SimError) -> Self {
        match e {
            SimError::Disk { .. } => AgentError::BlockDevice { details: error_chain(&e) },
            other => AgentError::HardwareManagerConfiguration { details: error_chain(&other) },
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// The simulated hardware manager.
#[derive(Debug)]
pub struct SimHardwareManager {
    machine: Machine,
    explicit: bool,
    services: Arc<AgentServices>,
}

inventory::submit! {
    HardwareManagerDescriptor {
        name: "simulated",
        description: "simulated machine from a TOML/JSON description; disks are sparse files in the sandbox",
        config_section: None,
        kernel_params: &[],
        build,
    }
}

fn build(services: &Arc<AgentServices>) -> Result<Arc<dyn HardwareManager>, ConfigError> {
    let (machine, explicit) = match &services.config.agent.machine {
        Some(path) => (
            Machine::load(path).map_err(|e| ConfigError::Plugin {
                plugin: "simulated".into(),
                reason: error_chain(&e),
            })?,
            true,
        ),
        None => (Machine::default(), false),
    };
    Ok(Arc::new(SimHardwareManager::new(machine, explicit, services.clone())))
}

impl SimHardwareManager {
    /// A manager for `machine`; `explicit` = the operator named the machine file.
    pub fn new(machine: Machine, explicit: bool, services: Arc<AgentServices>) -> Self {
        Self { machine, explicit, services }
    }

    /// The machine.
    pub fn machine(&self) -> &Machine {
        &self.machine
    }

    fn sandbox(&self) -> Result<&Path, AgentError> {
        match &self.services.mode {
            RunMode::Sandbox { dir } => Ok(dir),
            RunMode::Real => {
                Err(AgentError::incompatible("the simulated machine only exists in sandbox mode"))
            }
        }
    }

    fn backing(&self, disk: &str) -> PathBuf {
        self.services.mode.device_path(disk)
    }

    fn ensure_disks(&self) -> Result<(), SimError> {
        for d in &self.machine.disks {
            let path = self.backing(&d.name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|source| SimError::Disk {
                    path: parent.into(),
                    op: "mkdir",
                    source,
                })?;
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|source| SimError::Disk { path: path.clone(), op: "create", source })?;
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            if len != d.size {
                f.set_len(d.size).map_err(|source| SimError::Disk {
                    path: path.clone(),
                    op: "set_len",
                    source,
                })?;
            }
        }
        Ok(())
    }

    /// Zero a whole disk file. Dropping the length to 0 and back frees every block: the file
    /// then reads as zeroes, which is exactly what a completed overwrite leaves.
    fn erase_disk(&self, d: &BlockDevice) -> Result<(), SimError> {
        let path = self.backing(&d.name);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|source| SimError::Disk { path: path.clone(), op: "open", source })?;
        f.set_len(0)
            .and_then(|()| f.set_len(d.size))
            .and_then(|()| f.sync_all())
            .map_err(|source| SimError::Disk { path: path.clone(), op: "erase", source })?;
        Ok(())
    }

    /// IPA's metadata erase: zero 33 sectors (512 B) or 5 sectors (4 KiB) at both ends.
    fn erase_metadata(&self, d: &BlockDevice) -> Result<(), SimError> {
        let sector = u64::from(d.logical_sectors.unwrap_or(512));
        let count = if sector == 4096 { 5 } else { 33 };
        let len = (sector * count).min(d.size);
        let path = self.backing(&d.name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|source| SimError::Disk { path: path.clone(), op: "open", source })?;
        let zeros = vec![0u8; len as usize];
        let tail = d.size.saturating_sub(len);
        (|| -> std::io::Result<()> {
            f.seek(SeekFrom::Start(0))?;
            f.write_all(&zeros)?;
            f.seek(SeekFrom::Start(tail))?;
            f.write_all(&zeros)?;
            f.sync_all()
        })()
        .map_err(|source| SimError::Disk { path, op: "metadata erase", source })
    }

    fn record_step(&self, call: &StepCall<'_>, extra: Value) -> Result<(), AgentError> {
        let dir = self.sandbox()?;
        let line = json!({
            "step": call.step,
            "kind": call.kind.as_str(),
            "args": Value::Object(call.args.clone()),
            "node": call.node.get("uuid").cloned().unwrap_or(Value::Null),
            "result": extra,
        });
        let path = dir.join("sim-steps.log");
        let mut f =
            std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| {
                AgentError::execution(format!("cannot append to {}: {e}", path.display()))
            })?;
        writeln!(f, "{line}")
            .map_err(|e| AgentError::execution(format!("cannot append to {}: {e}", path.display())))
    }

    fn builtin_steps(kind: StepKind) -> Vec<Step> {
        match kind {
            StepKind::Clean => vec![
                Step::new("erase_devices", 10, "deploy").abortable(true),
                Step::new("erase_devices_metadata", 99, "deploy").abortable(true),
            ],
            // `write_image` is the image pipeline's step (`ipa_image::StandbyImageExtension`).
            StepKind::Deploy => vec![Step::new("erase_devices_metadata", 0, "deploy")],
            StepKind::Service => Vec::new(),
        }
    }

    fn custom_steps(&self, kind: StepKind) -> Vec<Step> {
        self.machine
            .steps
            .iter()
            .filter(|s| s.kinds.iter().any(|k| k == kind.as_str()))
            .map(|s| {
                let mut step = Step::new(&s.name, s.priority, &s.interface);
                step.reboot_requested = s.reboot_requested;
                if kind != StepKind::Deploy {
                    step.abortable = Some(s.abortable);
                }
                if !s.args.is_empty() {
                    step.argsinfo = Some(
                        s.args
                            .iter()
                            .map(|(k, d)| (k.clone(), json!({"description": d, "required": false})))
                            .collect(),
                    );
                }
                step
            })
            .collect()
    }

    fn steps(&self, kind: StepKind) -> Vec<Step> {
        let mut v = Self::builtin_steps(kind);
        let custom = self.custom_steps(kind);
        // A machine-file step with a built-in name replaces the built-in one.
        v.retain(|b| !custom.iter().any(|c| c.step == b.step));
        v.extend(custom);
        v
    }

    fn step_failed(kind: StepKind, details: String) -> AgentError {
        match kind {
            StepKind::Clean => AgentError::Cleaning { details },
            StepKind::Deploy => AgentError::Deployment { details },
            StepKind::Service => AgentError::Servicing { details },
        }
    }

    /// IPA's choice: the node's root-device hints (full grammar of `ipa_core::hardware::hints`),
    /// else the smallest disk of at least 4 GiB.
    fn root_device_choice(&self, disks: Vec<BlockDevice>) -> Result<String, AgentError> {
        let node = self.services.node.get().unwrap_or(Value::Null);
        let hints = hints::node_root_device_hints(&node);
        hints::select_install_device(disks.into_iter().map(Into::into).collect(), hints, &[])
    }
}

#[async_trait]
impl HardwareManager for SimHardwareManager {
    fn name(&self) -> &str {
        MANAGER_NAME
    }

    fn version(&self) -> HardwareManagerVersion {
        HardwareManagerVersion { name: VERSION_NAME.into(), version: VERSION.into() }
    }

    async fn evaluate_hardware_support(&self) -> HardwareSupport {
        match (&self.services.mode, self.explicit) {
            (RunMode::Real, _) => HardwareSupport::NONE,
            // An operator-named machine wins over anything read from the host.
            (RunMode::Sandbox { .. }, true) => HardwareSupport::SERVICE_PROVIDER,
            (RunMode::Sandbox { .. }, false) => HardwareSupport::GENERIC,
        }
    }

    async fn initialize(&self, _peers: &HardwareManagers) -> Result<(), AgentError> {
        self.sandbox()?;
        self.ensure_disks()?;
        tracing::info!(
            disks = self.machine.disks.len(),
            nics = self.machine.interfaces.len(),
            "simulated machine ready"
        );
        Ok(())
    }

    async fn list_hardware_info(&self, _peers: &HardwareManagers) -> Result<Inventory, AgentError> {
        let m = &self.machine;
        Ok(Inventory {
            interfaces: m.network_interfaces(),
            cpu: m.cpu(),
            disks: m.block_devices(),
            memory: m.memory(),
            bmc_address: m.bmc_address.clone(),
            bmc_v6address: m.bmc_v6address.clone(),
            system_vendor: m.system_vendor(),
            boot: m.boot(),
            hostname: m.hostname.clone(),
            bmc_mac: m.bmc_mac.clone(),
            extra: Default::default(),
        })
    }

    async fn list_network_interfaces(
        &self,
        _peers: &HardwareManagers,
    ) -> Result<Vec<NetworkInterface>, AgentError> {
        Ok(self.machine.network_interfaces())
    }

    async fn get_interface_info(&self, name: &str) -> Result<NetworkInterface, AgentError> {
        self.machine
            .network_interfaces()
            .into_iter()
            .find(|n| n.name == name)
            .ok_or_else(|| AgentError::incompatible(format!("no simulated interface {name}")))
    }

    async fn get_cpus(&self) -> Result<Cpu, AgentError> {
        Ok(self.machine.cpu())
    }

    async fn list_block_devices(
        &self,
        _include_partitions: bool,
        _peers: &HardwareManagers,
    ) -> Result<Vec<BlockDevice>, AgentError> {
        Ok(self.machine.block_devices())
    }

    async fn get_memory(&self) -> Result<Memory, AgentError> {
        Ok(self.machine.memory())
    }

    async fn get_bmc_address(&self) -> Result<Option<String>, AgentError> {
        Ok(self.machine.bmc_address.clone())
    }

    async fn get_bmc_v6address(&self) -> Result<Option<String>, AgentError> {
        Ok(self.machine.bmc_v6address.clone())
    }

    async fn get_bmc_mac(&self) -> Result<Option<String>, AgentError> {
        Ok(self.machine.bmc_mac.clone())
    }

    async fn get_boot_info(&self) -> Result<BootInfo, AgentError> {
        Ok(self.machine.boot())
    }

    async fn get_system_vendor_info(&self) -> Result<SystemVendorInfo, AgentError> {
        Ok(self.machine.system_vendor())
    }

    async fn get_os_install_device(
        &self,
        _permit_refresh: bool,
        _peers: &HardwareManagers,
    ) -> Result<String, AgentError> {
        self.root_device_choice(self.machine.block_devices())
    }

    async fn wait_for_disks(&self, _peers: &HardwareManagers) -> Result<(), AgentError> {
        Ok(())
    }

    async fn get_clean_steps(&self, _n: &Value, _p: &Value) -> Result<Vec<Step>, AgentError> {
        Ok(self.steps(StepKind::Clean))
    }

    async fn get_deploy_steps(&self, _n: &Value, _p: &Value) -> Result<Vec<Step>, AgentError> {
        Ok(self.steps(StepKind::Deploy))
    }

    async fn get_service_steps(&self, _n: &Value, _p: &Value) -> Result<Vec<Step>, AgentError> {
        Ok(self.steps(StepKind::Service))
    }

    async fn execute_step(&self, call: StepCall<'_>) -> Result<Value, AgentError> {
        if let Some(spec) = self
            .machine
            .steps
            .iter()
            .find(|s| s.name == call.step && s.kinds.iter().any(|k| k == call.kind.as_str()))
        {
            if spec.sleep_ms > 0 {
                tokio::time::sleep(Duration::from_millis(spec.sleep_ms)).await;
            }
            if let Some(msg) = &spec.fail {
                self.record_step(&call, json!({"failed": msg}))?;
                return Err(Self::step_failed(call.kind, msg.clone()));
            }
            self.record_step(&call, Value::Null)?;
            return Ok(Value::Null);
        }
        if !self.steps(call.kind).iter().any(|s| s.step == call.step) {
            return Err(AgentError::incompatible(format!("{} is not a simulated step", call.step)));
        }
        match call.step {
            "erase_devices" => {
                let mut out = serde_json::Map::new();
                for d in self.machine.block_devices() {
                    self.erase_disk(&d)?;
                    // One pass, done at once (the file is truncated): report it as the
                    // generic manager reports an overwrite pass.
                    call.ctx.progress(ipa_core::events::Progress {
                        phase: "erase".into(),
                        done: d.size,
                        total: Some(d.size),
                        message: Some(format!("{} pass 1/1", d.name)),
                        device: Some(d.name.clone()),
                        ..Default::default()
                    });
                    out.insert(d.name.clone(), Value::Null);
                }
                self.record_step(&call, Value::Object(out.clone()))?;
                Ok(Value::Object(out))
            }
            "erase_devices_metadata" => {
                for d in self.machine.block_devices() {
                    self.erase_metadata(&d)?;
                }
                self.record_step(&call, Value::Null)?;
                Ok(Value::Null)
            }
            other => Err(AgentError::incompatible(format!("{other} is not a simulated step"))),
        }
    }

    async fn erase_block_device(
        &self,
        _node: &Value,
        device: &BlockDevice,
    ) -> Result<(), AgentError> {
        self.sandbox()?;
        let known = self.machine.block_devices().into_iter().find(|d| d.name == device.name);
        let Some(d) = known else {
            return Err(AgentError::incompatible(format!(
                "{} is not a simulated disk",
                device.name
            )));
        };
        Ok(self.erase_disk(&d)?)
    }

    async fn full_sync(&self) -> Result<(), AgentError> {
        Ok(())
    }

    async fn collect_system_logs(&self) -> Result<Vec<LogFile>, AgentError> {
        let dir = self.sandbox()?;
        let mut out = Vec::new();
        for name in ["sim-steps.log", "power.log"] {
            if let Ok(data) = std::fs::read(dir.join(name)) {
                out.push(LogFile { name: name.into(), data });
            }
        }
        Ok(out)
    }
}
