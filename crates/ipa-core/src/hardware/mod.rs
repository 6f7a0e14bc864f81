//! Hardware managers (spec `ipa-agent.md` §5).
//!
//! A [`HardwareManager`] scores its support for the machine ([`HardwareSupport`]) and implements
//! whichever methods it can. Every method defaults to `IncompatibleHardwareMethodError`, which
//! makes [`HardwareManagers::dispatch`] move on to the next manager — IPA's
//! `dispatch_to_managers` fall-through. Managers are ranked by support (descending), ties by name.

pub mod hints;
mod inventory;
mod registry;
mod steps;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use inventory::{
    BlockDevice, BootInfo, Cpu, Firmware, Inventory, Memory, NetworkInterface, SystemVendorInfo,
};
pub use registry::{HardwareManagers, RankedManager};
pub use steps::{Step, StepKind, deduplicate_steps};

use crate::command::Params;
use crate::error::AgentError;
use crate::extension::CommandContext;

/// Support levels. Third-party managers may return values above `SERVICE_PROVIDER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HardwareSupport(pub u32);

impl HardwareSupport {
    /// Does not support this machine; not loaded.
    pub const NONE: Self = Self(0);
    /// The generic manager.
    pub const GENERIC: Self = Self(1);
    /// In-tree vendor managers.
    pub const MAINLINE: Self = Self(2);
    /// Operator-specific managers; always outrank in-tree code.
    pub const SERVICE_PROVIDER: Self = Self(3);
}

/// `get_version()`: `{"name", "version"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardwareManagerVersion {
    /// `HARDWARE_MANAGER_NAME` (e.g. `generic_hardware_manager`), else the class name.
    pub name: String,
    /// `HARDWARE_MANAGER_VERSION`, default `"1.0"`.
    pub version: String,
}

/// A step invocation: IPA calls `manager.<step>(node, ports, **args)`.
#[derive(Debug, Clone)]
pub struct StepCall<'a> {
    /// Step name (the method IPA would call).
    pub step: &'a str,
    /// Clean, deploy or service.
    pub kind: StepKind,
    /// The node object Ironic sent.
    pub node: &'a Value,
    /// The ports Ironic sent.
    pub ports: &'a Value,
    /// `step.args` merged with extra keyword arguments.
    pub args: Params,
    /// The running command (for progress events).
    pub ctx: &'a CommandContext,
    /// The ranked managers the step runs among (a step that fans out, such as
    /// `erase_devices`, dispatches through them).
    pub peers: &'a HardwareManagers,
}

/// A log file contributed to `log.collect_system_logs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    /// Name inside the tarball.
    pub name: String,
    /// Contents.
    pub data: Vec<u8>,
}

fn nope<T>(method: &str) -> Result<T, AgentError> {
    Err(AgentError::incompatible(format!("{method} is not implemented by this manager")))
}

/// A hardware manager. Only `name`, `version` and `evaluate_hardware_support` are required.
#[async_trait]
pub trait HardwareManager: Send + Sync + 'static {
    /// The class-style name used as the key in step lists (`GenericHardwareManager`).
    fn name(&self) -> &str;

    /// `get_version()`, whose name/version pairs form `hardware_manager_version`.
    fn version(&self) -> HardwareManagerVersion;

    /// How well this manager supports the machine. `NONE` means "do not load me".
    async fn evaluate_hardware_support(&self) -> HardwareSupport;

    /// Called once, in rank order, after all managers have been probed. `peers` is the ranked
    /// set this manager is part of (read what it needs now; keep no pointer to it).
    async fn initialize(&self, _peers: &HardwareManagers) -> Result<(), AgentError> {
        Ok(())
    }

    /// The full inventory (§5.7). `peers` answers the per-part questions (IPA's
    /// `dispatch_to_managers` from inside the generic manager).
    async fn list_hardware_info(&self, _peers: &HardwareManagers) -> Result<Inventory, AgentError> {
        nope("list_hardware_info")
    }
    /// NICs.
    async fn list_network_interfaces(
        &self,
        _peers: &HardwareManagers,
    ) -> Result<Vec<NetworkInterface>, AgentError> {
        nope("list_network_interfaces")
    }
    /// One NIC; managers for special NICs (InfiniBand) answer for theirs only.
    async fn get_interface_info(&self, _name: &str) -> Result<NetworkInterface, AgentError> {
        nope("get_interface_info")
    }
    /// CPU.
    async fn get_cpus(&self) -> Result<Cpu, AgentError> {
        nope("get_cpus")
    }
    /// Disks (and partitions when asked), after every peer's `filter_device`.
    async fn list_block_devices(
        &self,
        _include_partitions: bool,
        _peers: &HardwareManagers,
    ) -> Result<Vec<BlockDevice>, AgentError> {
        nope("list_block_devices")
    }
    /// Memory.
    async fn get_memory(&self) -> Result<Memory, AgentError> {
        nope("get_memory")
    }
    /// BMC IPv4.
    async fn get_bmc_address(&self) -> Result<Option<String>, AgentError> {
        nope("get_bmc_address")
    }
    /// BMC IPv6.
    async fn get_bmc_v6address(&self) -> Result<Option<String>, AgentError> {
        nope("get_bmc_v6address")
    }
    /// BMC MAC.
    async fn get_bmc_mac(&self) -> Result<Option<String>, AgentError> {
        nope("get_bmc_mac")
    }
    /// Boot info.
    async fn get_boot_info(&self) -> Result<BootInfo, AgentError> {
        nope("get_boot_info")
    }
    /// System vendor info.
    async fn get_system_vendor_info(&self) -> Result<SystemVendorInfo, AgentError> {
        nope("get_system_vendor_info")
    }
    /// The device to install the OS on (§5.8, §7).
    async fn get_os_install_device(
        &self,
        _permit_refresh: bool,
        _peers: &HardwareManagers,
    ) -> Result<String, AgentError> {
        nope("get_os_install_device")
    }
    /// Hide (`None`) or adjust a device; abstain with `Incompatible`.
    async fn filter_device(&self, _device: BlockDevice) -> Result<Option<BlockDevice>, AgentError> {
        nope("filter_device")
    }
    /// Wait until the install device shows up.
    async fn wait_for_disks(&self, _peers: &HardwareManagers) -> Result<(), AgentError> {
        nope("wait_for_disks")
    }
    /// LLDP TLVs per interface.
    async fn collect_lldp_data(
        &self,
        _interfaces: &[String],
    ) -> Result<std::collections::BTreeMap<String, Vec<(u8, String)>>, AgentError> {
        nope("collect_lldp_data")
    }
    /// Extra top-level inventory fields this manager contributes (merged after IPA's keys).
    async fn inventory_extensions(&self) -> Result<serde_json::Map<String, Value>, AgentError> {
        nope("inventory_extensions")
    }
    /// Clean steps offered.
    async fn get_clean_steps(
        &self,
        _node: &Value,
        _ports: &Value,
    ) -> Result<Vec<Step>, AgentError> {
        Ok(Vec::new())
    }
    /// Deploy steps offered.
    async fn get_deploy_steps(
        &self,
        _node: &Value,
        _ports: &Value,
    ) -> Result<Vec<Step>, AgentError> {
        Ok(Vec::new())
    }
    /// Service steps offered.
    async fn get_service_steps(
        &self,
        _node: &Value,
        _ports: &Value,
    ) -> Result<Vec<Step>, AgentError> {
        Ok(Vec::new())
    }
    /// Run a step by name. Managers answer `Incompatible` for steps they do not implement.
    async fn execute_step(&self, call: StepCall<'_>) -> Result<Value, AgentError> {
        nope(call.step)
    }
    /// Erase one device (may be called concurrently for several devices).
    async fn erase_block_device(
        &self,
        _node: &Value,
        _device: &BlockDevice,
    ) -> Result<(), AgentError> {
        nope("erase_block_device")
    }
    /// Flush caches before a power action.
    async fn full_sync(&self) -> Result<(), AgentError> {
        nope("full_sync")
    }
    /// Log files for `log.collect_system_logs`.
    async fn collect_system_logs(&self) -> Result<Vec<LogFile>, AgentError> {
        nope("collect_system_logs")
    }
}

impl std::fmt::Debug for dyn HardwareManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HardwareManager").field("name", &self.name()).finish()
    }
}
