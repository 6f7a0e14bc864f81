//! `poll.get_hardware_info`, `poll.set_node_info`.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::command::{CommandSpec, Param, Params};
use crate::error::AgentError;
use crate::extension::{CommandContext, Extension};
use crate::hardware::HardwareManagers;
use crate::registry::ExtensionDescriptor;
use crate::services::AgentServices;

/// The poll extension.
#[derive(Debug)]
pub struct PollExtension {
    services: Arc<AgentServices>,
    hardware: Arc<HardwareManagers>,
}

static COMMANDS: &[CommandSpec] = &[
    CommandSpec::sync("get_hardware_info", &[]),
    CommandSpec::sync("set_node_info", &[Param::opt("node_info")]),
];

impl PollExtension {
    /// New.
    pub fn new(services: Arc<AgentServices>, hardware: Arc<HardwareManagers>) -> Self {
        Self { services, hardware }
    }
}

#[async_trait]
impl Extension for PollExtension {
    fn name(&self) -> &'static str {
        "poll"
    }
    fn class_name(&self) -> &'static str {
        "PollExtension"
    }
    fn commands(&self) -> &'static [CommandSpec] {
        COMMANDS
    }
    async fn execute(
        &self,
        command: &str,
        params: Params,
        _ctx: CommandContext,
    ) -> Result<Value, AgentError> {
        match command {
            "get_hardware_info" => {
                let inv = self.hardware.list_hardware_info().await?;
                serde_json::to_value(inv)
                    .map_err(|e| AgentError::internal("ValueError", e.to_string()))
            }
            _ => {
                if !self.services.control.standalone() {
                    return Err(AgentError::invalid_command(
                        "Node info can only be set in standalone mode",
                    ));
                }
                let info = params.get("node_info").cloned().unwrap_or(Value::Null);
                crate::lookup::process_lookup_data(&self.services, &info)?;
                Ok(Value::Null)
            }
        }
    }
}

inventory::submit! {
    ExtensionDescriptor { name: "poll", build: |s, hw| Arc::new(PollExtension::new(s.clone(), hw.clone())) }
}
