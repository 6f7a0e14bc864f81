//! The power and bookkeeping half of `standby`: `run_image`, `power_off`, `sync`,
//! `get_partition_uuids`. The image half (`prepare_image`, ...) is a fragment contributed by the
//! image pipeline crate under the same extension name.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::command::{CommandSpec, Params};
use crate::error::AgentError;
use crate::extension::{CommandContext, Extension};
use crate::os::PowerAction;
use crate::registry::ExtensionDescriptor;
use crate::services::AgentServices;

/// `standby` (power and bookkeeping fragment).
#[derive(Debug)]
pub struct StandbyPowerExtension {
    services: Arc<AgentServices>,
}

static COMMANDS: &[CommandSpec] = &[
    CommandSpec::asynchronous("run_image", &[]),
    CommandSpec::asynchronous("power_off", &[]),
    CommandSpec::sync("sync", &[]),
    CommandSpec::sync("get_partition_uuids", &[]),
];

impl StandbyPowerExtension {
    /// New.
    pub fn new(services: Arc<AgentServices>) -> Self {
        Self { services }
    }

    /// `full_sync` on every manager that implements it, then a system sync.
    async fn full_sync(&self) -> Result<(), AgentError> {
        if let Some(hw) = self.services.hardware() {
            match hw.dispatch_all("full_sync", |m| m.full_sync()).await {
                Ok(_) | Err(AgentError::HardwareManagerMethodNotFound { .. }) => {}
                Err(e) => return Err(e),
            }
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
            "get_partition_uuids" => {
                let st = self.services.image.read().unwrap_or_else(|p| p.into_inner());
                Ok(Value::Object(st.partition_uuids.clone()))
            }
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
    ExtensionDescriptor { name: "standby-power", build: |s| Arc::new(StandbyPowerExtension::new(s.clone())) }
}
