//! # ipa-hw-mellanox
//!
//! IPA's `MellanoxDeviceHardwareManager` (spec `ipa-agent.md` §5.1, §5.6, §5.7):
//!
//! * **support**: `MAINLINE` when any NIC under `/sys/class/net` has PCI vendor `0x15b3`,
//!   otherwise `NONE` (not loaded);
//! * **inventory**: answers `get_interface_info` for InfiniBand interfaces (59-character
//!   hardware address): the MAC is derived from the port GUID and a DHCP `client_id` is built,
//!   exactly as IPA does; every other interface is `Incompatible`, so the next manager answers;
//! * **steps** (clean, deploy and service; priority 0, `reboot_requested: true`, not abortable):
//!   `update_nvidia_nic_firmware_image(images)` and `update_nvidia_nic_firmware_settings(settings)`
//!   through `mstflint` / `mstconfig` (see [`firmware`]).
//!
//! All sysfs reads go through a root prefix (`/` on a real machine, `<sandbox>/root` in sandbox
//! mode, a fixture tree in tests) and all commands through [`CommandRunner`]. In sandbox mode
//! the steps validate everything but refuse to write firmware.

pub mod download;
pub mod error;
pub mod firmware;
pub mod sysfs;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ipa_core::AgentError;
use ipa_core::hardware::{
    HardwareManager, HardwareManagerVersion, HardwareSupport, NetworkInterface, Step, StepCall,
    StepKind,
};
use ipa_core::os::CommandRunner;
use ipa_core::registry::HardwareManagerDescriptor;
use ipa_core::services::{AgentServices, RunMode};
use ipa_http::download::HttpOptions;
use serde_json::Value;

pub use error::MellanoxError;
pub use firmware::FirmwareContext;
use sysfs::{MLNX_VENDOR_ID, Sysfs};

/// Class name, the key of this manager's steps.
pub const NAME: &str = "MellanoxDeviceHardwareManager";
/// `HARDWARE_MANAGER_VERSION`.
pub const VERSION: &str = "1";
/// Step: flash firmware images.
pub const STEP_IMAGE: &str = "update_nvidia_nic_firmware_image";
/// Step: change firmware settings.
pub const STEP_SETTINGS: &str = "update_nvidia_nic_firmware_settings";
/// Length of an InfiniBand hardware address (`a0:00:…`, 20 bytes).
pub const INFINIBAND_ADDR_LEN: usize = 59;

/// MAC derived from an InfiniBand address: characters `[36:-14]` + `[51:]` (the port GUID
/// without its two middle bytes).
pub fn infiniband_address_to_mac(address: &str) -> Option<String> {
    if address.len() != INFINIBAND_ADDR_LEN || !address.is_ascii() {
        return None;
    }
    Some(format!("{}{}", &address[36..INFINIBAND_ADDR_LEN - 14], &address[51..]))
}

/// DHCP client id of an InfiniBand interface: `ff:00:00:00:00:00:02:00:00:02:c9:00:` followed
/// by the address from character 36 (the port GUID).
pub fn infiniband_client_id(address: &str) -> Option<String> {
    if address.len() != INFINIBAND_ADDR_LEN || !address.is_ascii() {
        return None;
    }
    Some(format!("ff:00:00:00:00:00:02:00:00:02:c9:00:{}", &address[36..]))
}

/// The manager.
#[derive(Debug)]
pub struct MellanoxDeviceHardwareManager {
    fw: FirmwareContext,
}

impl MellanoxDeviceHardwareManager {
    /// A manager reading sysfs under `root`, running tools with `runner`, downloading into
    /// `work_dir`. Firmware writes are allowed; see [`Self::with_firmware_writes`].
    pub fn new(
        root: impl Into<PathBuf>,
        runner: Arc<dyn CommandRunner>,
        work_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            fw: FirmwareContext {
                sysfs: Sysfs::new(root),
                runner,
                work_dir: work_dir.into(),
                allow_writes: true,
                http: HttpOptions::default(),
            },
        }
    }

    /// Allow or refuse `mstflint burn` / `mstconfig set` (refused in sandbox mode).
    pub fn with_firmware_writes(mut self, allow: bool) -> Self {
        self.fw.allow_writes = allow;
        self
    }

    /// Connect/read timeout of image downloads.
    pub fn with_download_timeout(mut self, t: Duration) -> Self {
        self.fw.http.timeout = t;
        self
    }

    /// All download settings (ipa-image's client options).
    pub fn with_http_options(mut self, opts: HttpOptions) -> Self {
        self.fw.http = opts;
        self
    }

    /// Download settings from the agent configuration
    /// ([`ipa_http::download::HttpOptions::from_agent`]): the
    /// `image_download_connection_*` options, `image_download_max_duration`, `insecure`,
    /// `cafile` and the proxy environment variables.
    pub fn with_agent_download_settings(self, services: &AgentServices) -> Self {
        let c = &services.config;
        self.with_http_options(HttpOptions::from_agent(ipa_http::download::AgentDownload {
            timeout: c.image.image_download_connection_timeout,
            retries: c.image.image_download_connection_retries,
            retry_interval: c.image.image_download_connection_retry_interval,
            max_duration: c.image.image_download_max_duration,
            insecure: c.http.insecure,
            cafile: c.http.cafile.clone(),
        }))
    }

    /// Built from the agent's services: root prefix and work directory from the run mode.
    pub fn from_services(services: &AgentServices) -> Self {
        let work_dir = match &services.mode {
            RunMode::Sandbox { dir } => dir.join("tmp"),
            RunMode::Real => std::env::temp_dir(),
        };
        Self::new(services.mode.root_prefix(), services.runner.clone(), work_dir)
            .with_firmware_writes(!services.mode.is_sandbox())
            .with_agent_download_settings(services)
    }

    fn sysfs(&self) -> &Sysfs {
        &self.fw.sysfs
    }

    /// The two steps as advertised for every step kind.
    pub fn steps() -> Vec<Step> {
        vec![
            Step::new(STEP_IMAGE, 0, "deploy").reboot_requested(true).abortable(false).arg(
                "images",
                "Json blob contains a list of images, where each image contains a map of url \
                 (http://, https:// or file://), checksum, checksumType (md5, sha256 or sha512), \
                 componentFlavor (the PSID of the NICs the image is for) and version (the \
                 firmware version inside the image)",
                true,
            ),
            Step::new(STEP_SETTINGS, 0, "deploy").reboot_requested(true).abortable(false).arg(
                "settings",
                "Json blob contains a list of settings per device, where each entry contains \
                 deviceID (PCI device id), globalConfig (a map of mstconfig parameters) and \
                 optionally function0Config/function1Config (per PCI function parameters)",
                true,
            ),
        ]
    }
}

#[async_trait]
impl HardwareManager for MellanoxDeviceHardwareManager {
    fn name(&self) -> &str {
        NAME
    }

    fn version(&self) -> HardwareManagerVersion {
        HardwareManagerVersion { name: NAME.into(), version: VERSION.into() }
    }

    async fn evaluate_hardware_support(&self) -> HardwareSupport {
        let found = self
            .sysfs()
            .nic_vendors()
            .into_iter()
            .find(|(_, v)| v.eq_ignore_ascii_case(MLNX_VENDOR_ID));
        match found {
            Some((nic, _)) => {
                tracing::debug!(nic, "found a Mellanox/NVIDIA NIC");
                HardwareSupport::MAINLINE
            }
            None => HardwareSupport::NONE,
        }
    }

    async fn get_interface_info(&self, name: &str) -> Result<NetworkInterface, AgentError> {
        let s = self.sysfs();
        let address = s.read(&format!("/sys/class/net/{name}/address")).unwrap_or_default();
        let vendor = s.read(&format!("/sys/class/net/{name}/device/vendor"));
        let is_mlnx = vendor.as_deref().is_some_and(|v| v.eq_ignore_ascii_case(MLNX_VENDOR_ID));
        let (Some(mac), Some(client_id), true) =
            (infiniband_address_to_mac(&address), infiniband_client_id(&address), is_mlnx)
        else {
            return Err(AgentError::incompatible(format!(
                "{name} is not a Mellanox InfiniBand interface"
            )));
        };
        Ok(NetworkInterface {
            name: name.to_string(),
            mac_address: mac,
            has_carrier: s.read(&format!("/sys/class/net/{name}/carrier")).as_deref() == Some("1"),
            vendor,
            product: s.read(&format!("/sys/class/net/{name}/device/device")),
            client_id: Some(client_id),
            ..Default::default()
        })
    }

    async fn get_clean_steps(
        &self,
        _node: &Value,
        _ports: &Value,
    ) -> Result<Vec<Step>, AgentError> {
        Ok(Self::steps())
    }

    async fn get_deploy_steps(
        &self,
        _node: &Value,
        _ports: &Value,
    ) -> Result<Vec<Step>, AgentError> {
        Ok(Self::steps())
    }

    async fn get_service_steps(
        &self,
        _node: &Value,
        _ports: &Value,
    ) -> Result<Vec<Step>, AgentError> {
        Ok(Self::steps())
    }

    async fn execute_step(&self, call: StepCall<'_>) -> Result<Value, AgentError> {
        let kind: StepKind = call.kind;
        let result = match call.step {
            STEP_IMAGE => firmware::update_images(&self.fw, &call.args).await,
            STEP_SETTINGS => firmware::update_settings(&self.fw, &call.args).await,
            other => return Err(AgentError::incompatible(other)),
        };
        result.map_err(|e| {
            tracing::error!(step = call.step, error = %e, "NVIDIA NIC step failed");
            e.into_agent_error(kind)
        })
    }
}

inventory::submit! {
    HardwareManagerDescriptor {
        name: "mellanox",
        description: "NVIDIA/Mellanox NICs: InfiniBand inventory, firmware image and settings steps",
        config_section: None,
        kernel_params: &[],
        build: |s| Ok(Arc::new(MellanoxDeviceHardwareManager::from_services(s))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infiniband_guid_maps_to_mac_and_client_id() {
        let addr = "a0:00:02:20:fe:80:00:00:00:00:00:00:7c:fe:90:03:00:29:26:52";
        assert_eq!(addr.len(), INFINIBAND_ADDR_LEN);
        assert_eq!(infiniband_address_to_mac(addr).unwrap(), "7c:fe:90:29:26:52");
        assert_eq!(
            infiniband_client_id(addr).unwrap(),
            "ff:00:00:00:00:00:02:00:00:02:c9:00:7c:fe:90:03:00:29:26:52"
        );
        assert_eq!(infiniband_address_to_mac("7c:fe:90:29:26:52"), None);
    }
}
