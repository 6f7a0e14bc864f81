//! The power half of `standby`: `run_image`, `power_off`, `sync`. The image half
//! (`prepare_image`, `get_partition_uuids`, ...) is a fragment contributed by the image pipeline
//! crate under the same extension name; it owns the image state.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::command::{CommandSpec, Params};
use crate::error::AgentError;
use crate::extension::{CommandContext, Extension};
use crate::hardware::HardwareManagers;
use crate::os::PowerAction;
use crate::registry::ExtensionDescriptor;
use crate::services::AgentServices;

/// `standby` (power fragment).
#[derive(Debug)]
pub struct StandbyPowerExtension {
    services: Arc<AgentServices>,
    hardware: Arc<HardwareManagers>,
}

static COMMANDS: &[CommandSpec] = &[
    CommandSpec::asynchronous("run_image", &[]),
    CommandSpec::asynchronous("power_off", &[]),
    CommandSpec::sync("sync", &[]),
];

impl StandbyPowerExtension {
    /// New.
    pub fn new(services: Arc<AgentServices>, hardware: Arc<HardwareManagers>) -> Self {
        Self { services, hardware }
    }

    /// `full_sync` on every manager that implements it, then a system sync.
    async fn full_sync(&self) -> Result<(), AgentError> {
        match self.hardware.dispatch_all("full_sync", |m, _| m.full_sync()).await {
            Ok(_) | Err(AgentError::HardwareManagerMethodNotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        self.services.power.perform(PowerAction::Sync).await
    }
}

#[async_trait]
impl Extension for StandbyPowerExtension {
    fn name(&self) -> &'static str {
        "standby"
    }
    fn class_name(&self) -> &'static str {
        "StandbyExtension"
    }
    fn commands(&self) -> &'static [CommandSpec] {
        COMMANDS
    }
    async fn execute(
        &self,
        command: &str,
        _params: Params,
        _ctx: CommandContext,
    ) -> Result<Value, AgentError> {
        match command {
            "sync" => self.full_sync().await.map(|_| Value::Null),
            "run_image" | "power_off" => {
                self.full_sync().await?;
                let action = if command == "run_image" {
                    PowerAction::Reboot
                } else {
                    PowerAction::PowerOff
                };
                tracing::warn!(?action, "power action requested by the control plane");
                self.services.power.perform(action).await.map(|_| Value::Null)
            }
            other => Err(AgentError::invalid_command(format!("Unknown command: {other}"))),
        }
    }
}

inventory::submit! {
    ExtensionDescriptor { name: "standby-power", build: |s, hw| Arc::new(StandbyPowerExtension::new(s.clone(), hw.clone())) }
}
