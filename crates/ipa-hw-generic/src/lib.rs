//! # ipa-hw-generic
//!
//! The generic hardware manager (IPA's `GenericHardwareManager`, support level `GENERIC`):
//! the inventory of spec `ipa-agent.md` §5.7 read natively from sysfs, procfs and udev data
//! under a root prefix (`/` in production, fixture trees in tests), root-device selection
//! (§5.8, §7, via `ipa_core::hardware::hints`), skip lists, BMC addresses through `ipmitool`
//! (only when an IPMI device exists), LLDP and the extra inspection collectors.
//!
//! Field sources (see also the crate README in the report):
//! * interfaces: `/sys/class/net` (+ `ETHTOOL_GPERMADDR` and `getifaddrs` on the live root);
//!   `speed_mbps` from `/sys/class/net/X/speed` (IPA: lshw capacity/speed);
//! * disks: `/sys/block` + `/run/udev/data` + `/dev/disk/by-path`, in lsblk order;
//! * cpu: `/proc/cpuinfo` + `/sys/devices/system/cpu`; memory: `/proc/meminfo` + SMBIOS
//!   type 17 from `/sys/firmware/dmi/tables/DMI`; system vendor: `/sys/class/dmi/id`;
//! * boot: `/sys/firmware/efi` and `BOOTIF` from `/proc/cmdline`; hostname: `gethostname`.
//!
//! Steps (§5.6): clean `erase_devices` (10), `erase_devices_metadata` (99),
//! `erase_devices_express` and `erase_pstore` (0); deploy `erase_devices_metadata` and
//! `write_image`; service `write_image`. Erasure (see [`erase`]) chooses NVMe format, ATA
//! security erase or a native overwrite and verifies the result by reading it back. Disks
//! are only ever opened through `RunMode::device_path`: in sandbox mode the backing files under
//! `<sandbox>/disks`, and a device without one is refused. Managers built without a run mode
//! (`GenericOptions::disk_mode == None`) never write.

pub mod bmc;
pub mod collectors;
pub mod erase;
pub mod lldp;
pub mod machine;
pub mod nvram;
mod steps;
mod sys;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use ipa_core::attest::{DeviceRecord, ReportSigner};
use ipa_core::error::AgentError;
use ipa_core::extension::CommandContext;
use ipa_core::hardware::LogFile;
use ipa_core::hardware::hints::{self, HintDevice, RaidRootVolume};
use ipa_core::hardware::{
    BlockDevice, BootInfo, Cpu, HardwareManager, HardwareManagerVersion, HardwareManagers,
    HardwareSupport, Inventory, Memory, NetworkInterface, SystemVendorInfo,
};
use ipa_core::hardware::{Step, StepCall, StepKind};
use ipa_core::os::{CommandRunner, SystemRunner};
use ipa_core::registry::HardwareManagerDescriptor;
use ipa_core::services::{IronicSettings, NodeCache};
use ipa_core::{AgentServices, RunMode};
use serde_json::{Map, Value};

pub use erase::{EraseError, EraseOutcome, ErasePolicy, Eraser};
pub use machine::{EraseFacts, Machine, RawDisk};

/// Errors of this crate, mapped to IPA's errors in one place.
#[derive(Debug, thiserror::Error)]
pub enum GenericError {
    /// A destructive method was called outside real mode.
    #[error("{method} refused: the generic manager is read-only outside real mode")]
    ReadOnly {
        /// The method.
        method: &'static str,
    },
    /// A background task failed.
    #[error("inventory task failed: {0}")]
    Task(String),
    /// Erasure failed.
    #[error(transparent)]
    Erase(#[from] EraseError),
}

impl From<GenericError> for AgentError {
    fn from(e: GenericError) -> Self {
        match e {
            GenericError::ReadOnly { .. } => AgentError::incompatible(e.to_string()),
            GenericError::Task(_) => AgentError::internal("RuntimeError", e.to_string()),
            GenericError::Erase(e) => match e {
                EraseError::Erase { .. } => AgentError::BlockDeviceErase { details: e.to_string() },
                EraseError::Device { .. } => AgentError::BlockDevice { details: e.to_string() },
                EraseError::Protected { .. } => {
                    AgentError::ProtectedDevice { details: e.to_string() }
                }
                EraseError::Incompatible(_) => AgentError::incompatible(e.to_string()),
            },
        }
    }
}

#[derive(Debug, Clone, Default)]
struct BmcCache {
    v4: Option<String>,
    v6: Option<String>,
    mac: Option<String>,
}

/// Options of the manager.
#[derive(Debug, Clone)]
pub struct GenericOptions {
    /// Read root.
    pub machine: Machine,
    /// Inspection collectors to run (`inspection_collectors`).
    pub collectors: Vec<String>,
    /// Collect LLDP into `interfaces[].lldp`.
    pub collect_lldp: bool,
    /// LLDP wait.
    pub lldp_timeout: Duration,
    /// `wait_for_disks` attempts and delay.
    pub disk_wait: (u32, Duration),
    /// Whether this is real mode.
    pub real_mode: bool,
    /// How disks are opened (`RunMode::device_path`); `None`: never write (erase refuses).
    pub disk_mode: Option<RunMode>,
    /// Use NVMe admin commands, `hdparm`, `wipefs`, `sgdisk` (real mode; tests script them
    /// with FakeRunner and [`erase::nvme::FakeNvme`]).
    pub erase_tools: bool,
    /// NVMe admin commands (native ioctls by default).
    pub nvme: Arc<dyn erase::nvme::NvmeAdmin>,
    /// Native overwrite knobs.
    pub overwrite: erase::native::OverwriteOptions,
    /// What overwrite passes write through ([`erase::native::DeviceWriter`]; tests inject
    /// fakes such as [`erase::native::VanishingWriter`]).
    pub erase_writer: Arc<dyn erase::native::OpenWriter>,
    /// Random regions read back after an erase.
    pub verify_samples: usize,
    /// Signs erase reports (the agent's per-boot key).
    pub attest: Arc<ReportSigner>,
    /// Where signed erase reports are written (and collected into the log bundle from);
    /// `None`: not stored.
    pub reports_dir: Option<PathBuf>,
    /// The agent version written into reports.
    pub agent_version: String,
}

impl Default for GenericOptions {
    fn default() -> Self {
        Self {
            machine: Machine::live(),
            collectors: Vec::new(),
            collect_lldp: false,
            lldp_timeout: Duration::from_secs(30),
            disk_wait: (10, Duration::from_secs(3)),
            real_mode: false,
            disk_mode: None,
            erase_tools: false,
            nvme: Arc::new(erase::nvme::IoctlNvme),
            overwrite: Default::default(),
            erase_writer: Arc::new(erase::native::DeviceWriter),
            verify_samples: erase::VERIFY_SAMPLES,
            attest: Arc::new(ReportSigner::generate()),
            reports_dir: None,
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// Where the agent keeps signed erase reports (under the sandbox root in sandbox mode).
pub const REPORTS_DIR: &str = "/run/ipa-rs/erase-reports";

/// The generic hardware manager.
pub struct GenericHardwareManager {
    opts: GenericOptions,
    runner: Arc<dyn CommandRunner>,
    /// The node Ironic sent last and the lookup settings: shared cells, not the services.
    node: NodeCache,
    ironic: Arc<RwLock<IronicSettings>>,
    bmc: Mutex<Option<BmcCache>>,
    raid_roots: Mutex<Vec<RaidRootVolume>>,
    progress: Mutex<HashMap<String, CommandContext>>,
    /// Per-device records of the running erase step (filled by `erase_block_device`).
    records: Mutex<HashMap<String, DeviceRecord>>,
}

impl std::fmt::Debug for GenericHardwareManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenericHardwareManager").field("root", &self.opts.machine.root()).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl GenericHardwareManager {
    /// A manager reading `opts.machine`, running external tools with `runner`.
    pub fn new(opts: GenericOptions, runner: Arc<dyn CommandRunner>) -> Self {
        Self {
            opts,
            runner,
            node: NodeCache::default(),
            ironic: Arc::default(),
            bmc: Mutex::new(None),
            raid_roots: Mutex::new(Vec::new()),
            progress: Mutex::new(HashMap::new()),
            records: Mutex::new(HashMap::new()),
        }
    }

    /// The manager the agent builds: root `/` (or `generic.root`), options from the agent
    /// configuration, the services' command runner and node cache.
    pub fn from_services(services: &Arc<AgentServices>) -> Self {
        let root: Option<String> = services.figment.extract_inner("generic.root").ok();
        let cfg = &services.config;
        let opts = GenericOptions {
            machine: Machine::at(root.map(PathBuf::from).unwrap_or_else(|| "/".into())),
            collectors: cfg
                .inspection
                .inspection_collectors
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            collect_lldp: cfg.inspection.collect_lldp,
            lldp_timeout: Duration::from_secs_f64(cfg.inspection.lldp_timeout.clamp(0.0, 600.0)),
            disk_wait: (
                cfg.agent.disk_wait_attempts,
                Duration::from_secs(cfg.agent.disk_wait_delay),
            ),
            real_mode: !services.mode.is_sandbox(),
            disk_mode: Some(services.mode.clone()),
            erase_tools: !services.mode.is_sandbox(),
            nvme: Arc::new(erase::nvme::IoctlNvme),
            overwrite: Default::default(),
            erase_writer: Arc::new(erase::native::DeviceWriter),
            verify_samples: erase::VERIFY_SAMPLES,
            attest: services.attest.clone(),
            reports_dir: Some(services.mode.os_path(REPORTS_DIR)),
            agent_version: services.status.snapshot().version,
        };
        let mut m = Self::new(opts, services.runner.clone());
        m.node = services.node.clone();
        m.ironic = services.ironic.clone();
        m
    }

    /// The public half of the key that signs this manager's erase reports.
    pub fn report_key(&self) -> &str {
        self.opts.attest.public_key()
    }

    /// The machine view.
    pub fn machine(&self) -> &Machine {
        &self.opts.machine
    }

    /// Record RAID volumes and their `is_root_volume` flags (IPA's
    /// `_raid_root_device_mapping`, filled by RAID creation).
    pub fn set_raid_root_volumes(&self, volumes: Vec<RaidRootVolume>) {
        *lock(&self.raid_roots) = volumes;
    }

    fn node(&self) -> Option<Value> {
        self.node.get()
    }

    /// Follow the node cache `node` (what `from_services` does with the agent's).
    pub fn with_node_cache(mut self, node: NodeCache) -> Self {
        self.node = node;
        self
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(Machine) -> T + Send + 'static,
    ) -> Result<T, AgentError> {
        let m = self.opts.machine.clone();
        tokio::task::spawn_blocking(move || f(m))
            .await
            .map_err(|e| GenericError::Task(e.to_string()).into())
    }

    /// Disks as root-device matching sees them (all serials and WWNs), filtered by every
    /// manager in `peers` and skip-listed against `node` (IPA's
    /// `list_block_devices_check_skip_list(all_serial_and_wwn=True)`).
    pub async fn candidate_devices(
        &self,
        node: Option<&Value>,
        peers: &HardwareManagers,
    ) -> Result<Vec<HintDevice>, AgentError> {
        let raw = self.blocking(|m| m.block_devices(false)).await?;
        let kept = peers.filter_devices(raw.iter().map(|r| r.device.clone()).collect()).await?;
        let mut devices: Vec<(HintDevice, Option<String>)> = kept
            .into_iter()
            .filter_map(|d| {
                let r = raw.iter().find(|r| r.device.name == d.name)?;
                Some((
                    HintDevice {
                        device: d,
                        serials: Some(r.serials.clone()),
                        wwns: Some(r.wwns.clone()),
                    },
                    r.md_name.clone(),
                ))
            })
            .collect();
        if let Some(node) = node {
            let plain: Vec<HintDevice> = devices.iter().map(|(d, _)| d.clone()).collect();
            if let Some(skip) = hints::skip_list_for_disks(node, &plain)? {
                devices.retain(|(d, _)| !skip.contains(&d.device.name));
            }
            if let Some(volumes) = hints::skip_list_for_raids(node) {
                // Volumes named in the skip list are kept intact and never chosen.
                devices.retain(|(_, md)| md.as_ref().is_none_or(|n| !volumes.contains(n)));
            }
        }
        Ok(devices.into_iter().map(|(d, _)| d).collect())
    }

    fn skip_bmc(&self) -> bool {
        let from_node = self
            .node()
            .and_then(|n| n.get("skip_bmc_detect").and_then(Value::as_bool))
            .unwrap_or(false);
        let from_lookup =
            self.ironic.read().unwrap_or_else(|p| p.into_inner()).skip_bmc_detect.unwrap_or(false);
        from_node || from_lookup
    }

    async fn bmc_info(&self) -> BmcCache {
        if let Some(c) = lock(&self.bmc).clone() {
            return c;
        }
        let present = self.blocking(|m| m.ipmi_device_exists()).await.unwrap_or(false);
        let info = if present {
            let r = &*self.runner;
            BmcCache {
                v4: bmc::address(r).await,
                v6: bmc::v6address(r).await,
                mac: bmc::mac(r).await,
            }
        } else {
            BmcCache::default()
        };
        *lock(&self.bmc) = Some(info.clone());
        info
    }

    async fn lldp_data(&self, names: Vec<String>) -> Result<Value, AgentError> {
        if !self.opts.machine.is_live() {
            return Ok(Value::Object(Map::new()));
        }
        let timeout = self.opts.lldp_timeout;
        let data = tokio::task::spawn_blocking(move || lldp::collect(&names, timeout))
            .await
            .map_err(|e| AgentError::from(GenericError::Task(e.to_string())))?;
        Ok(serde_json::to_value(data).unwrap_or_default())
    }
}

#[async_trait]
impl HardwareManager for GenericHardwareManager {
    fn name(&self) -> &str {
        "GenericHardwareManager"
    }

    fn version(&self) -> HardwareManagerVersion {
        HardwareManagerVersion { name: "generic_hardware_manager".into(), version: "1.2".into() }
    }

    async fn evaluate_hardware_support(&self) -> HardwareSupport {
        HardwareSupport::GENERIC
    }

    async fn list_hardware_info(&self, peers: &HardwareManagers) -> Result<Inventory, AgentError> {
        let interfaces = self.list_network_interfaces(peers).await?;
        let cpu = self.get_cpus().await?;
        let disks = self.list_block_devices(false, peers).await?;
        let memory = self.get_memory().await?;
        let (bmc_address, bmc_v6address, bmc_mac) = if self.skip_bmc() {
            (None, None, None)
        } else {
            let b = self.bmc_info().await;
            (b.v4, b.v6, b.mac)
        };
        let system_vendor = self.get_system_vendor_info().await?;
        let boot = self.get_boot_info().await?;
        let hostname = self.blocking(|m| m.hostname()).await?;
        Ok(Inventory {
            interfaces,
            cpu,
            disks,
            memory,
            bmc_address,
            bmc_v6address,
            system_vendor,
            boot,
            hostname,
            bmc_mac,
            extra: Map::new(),
        })
    }

    async fn list_network_interfaces(
        &self,
        peers: &HardwareManagers,
    ) -> Result<Vec<NetworkInterface>, AgentError> {
        let names = self.blocking(|m| m.interface_names()).await?;
        let lldp =
            if self.opts.collect_lldp { Some(self.lldp_data(names.clone()).await?) } else { None };
        let mut out = Vec::new();
        for name in names {
            let n = name.clone();
            let info = match peers
                .dispatch("get_interface_info", |m, _| {
                    let n = n.clone();
                    Box::pin(async move { m.get_interface_info(&n).await })
                })
                .await
            {
                Ok(i) => i,
                Err(AgentError::HardwareManagerMethodNotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            let mut info = info;
            if let Some(Value::Object(l)) = &lldp {
                info.lldp = l.get(&name).and_then(|v| serde_json::from_value(v.clone()).ok());
            }
            out.push(info);
        }
        Ok(out)
    }

    async fn get_interface_info(&self, name: &str) -> Result<NetworkInterface, AgentError> {
        let n = name.to_string();
        self.blocking(move |m| m.interface(&n))
            .await?
            .ok_or_else(|| AgentError::incompatible(format!("no usable MAC address for {name}")))
    }

    async fn get_cpus(&self) -> Result<Cpu, AgentError> {
        self.blocking(|m| m.cpu()).await
    }

    async fn list_block_devices(
        &self,
        include_partitions: bool,
        peers: &HardwareManagers,
    ) -> Result<Vec<BlockDevice>, AgentError> {
        let raw = self.blocking(move |m| m.block_devices(include_partitions)).await?;
        peers.filter_devices(raw.into_iter().map(|r| r.device).collect()).await
    }

    async fn get_memory(&self) -> Result<Memory, AgentError> {
        self.blocking(|m| m.memory()).await
    }

    async fn get_bmc_address(&self) -> Result<Option<String>, AgentError> {
        Ok(self.bmc_info().await.v4)
    }

    async fn get_bmc_v6address(&self) -> Result<Option<String>, AgentError> {
        Ok(self.bmc_info().await.v6)
    }

    async fn get_bmc_mac(&self) -> Result<Option<String>, AgentError> {
        Ok(self.bmc_info().await.mac)
    }

    async fn get_boot_info(&self) -> Result<BootInfo, AgentError> {
        self.blocking(|m| m.boot()).await
    }

    async fn get_system_vendor_info(&self) -> Result<SystemVendorInfo, AgentError> {
        self.blocking(|m| m.system_vendor()).await
    }

    async fn get_os_install_device(
        &self,
        _permit_refresh: bool,
        peers: &HardwareManagers,
    ) -> Result<String, AgentError> {
        let node = self.node();
        let hint_value = node.as_ref().and_then(hints::node_root_device_hints).cloned();
        let devices = self.candidate_devices(node.as_ref(), peers).await?;
        let raid = lock(&self.raid_roots).clone();
        hints::select_install_device(devices, hint_value.as_ref(), &raid)
    }

    async fn filter_device(&self, device: BlockDevice) -> Result<Option<BlockDevice>, AgentError> {
        Ok(Some(device))
    }

    async fn wait_for_disks(&self, peers: &HardwareManagers) -> Result<(), AgentError> {
        let (attempts, delay) = self.opts.disk_wait;
        for attempt in 0..attempts {
            match self.get_os_install_device(false, peers).await {
                Ok(_) => return Ok(()),
                Err(AgentError::DeviceNotFound { .. }) => {
                    tracing::debug!(attempt = attempt + 1, attempts, "waiting for the root device");
                    if attempt + 1 < attempts {
                        tokio::time::sleep(delay).await;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        if attempts > 0 {
            tracing::warn!(
                secs = delay.as_secs() * u64::from(attempts.saturating_sub(1)),
                "the root device was not detected"
            );
        }
        Ok(())
    }

    async fn collect_lldp_data(
        &self,
        interfaces: &[String],
    ) -> Result<std::collections::BTreeMap<String, Vec<(u8, String)>>, AgentError> {
        let v = self.lldp_data(interfaces.to_vec()).await?;
        Ok(serde_json::from_value(v).unwrap_or_default())
    }

    async fn inventory_extensions(&self) -> Result<Map<String, Value>, AgentError> {
        let mut out = Map::new();
        if !self.opts.attest.public_key().is_empty() {
            out.insert("erase_report_key".into(), self.opts.attest.public_key().into());
        }
        let selected: Vec<String> = self
            .opts
            .collectors
            .iter()
            .filter(|c| collectors::COLLECTORS.contains(&c.as_str()))
            .cloned()
            .collect();
        if selected.is_empty() {
            return Ok(out);
        }
        let lldp = if selected.iter().any(|c| c == "lldp") {
            let names = self.blocking(|m| m.interface_names()).await?;
            Some(self.lldp_data(names).await?)
        } else {
            None
        };
        out.extend(self.blocking(move |m| collectors::run(&m, &selected, lldp)).await?);
        Ok(out)
    }

    async fn collect_system_logs(&self) -> Result<Vec<LogFile>, AgentError> {
        Ok(self.stored_reports())
    }

    async fn erase_block_device(
        &self,
        node: &Value,
        device: &BlockDevice,
    ) -> Result<(), AgentError> {
        if self.opts.disk_mode.is_none() {
            return Err(GenericError::ReadOnly { method: "erase_block_device" }.into());
        }
        self.erase_one(node, device).await
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
        self.run_step(call).await
    }
}

fn build(
    services: &Arc<AgentServices>,
) -> Result<Arc<dyn HardwareManager>, ipa_core::config::ConfigError> {
    Ok(Arc::new(GenericHardwareManager::from_services(services)))
}

ipa_core::inventory::submit! {
    HardwareManagerDescriptor {
        name: "generic",
        description: "Generic hardware manager: native sysfs/procfs/udev inventory, root-device hints, BMC via ipmitool",
        config_section: Some("generic"),
        kernel_params: &[],
        build,
    }
}

/// A manager for the live machine with the real command runner (benchmarks, tools).
pub fn live_manager() -> GenericHardwareManager {
    GenericHardwareManager::new(GenericOptions::default(), Arc::new(SystemRunner))
}
