//! `system.lockdown`: stop serving so Ironic sees the agent become unreachable, then take the
//! interfaces down (the runtime does that part) and never serve again.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::command::{CommandSpec, Params};
use crate::error::AgentError;
use crate::extension::{CommandContext, Extension};
use crate::registry::ExtensionDescriptor;
use crate::services::AgentServices;

/// The system extension.
#[derive(Debug)]
pub struct SystemExtension {
    services: Arc<AgentServices>,
}

static COMMANDS: &[CommandSpec] = &[CommandSpec::sync("lockdown", &[])];

impl SystemExtension {
    /// New.
    pub fn new(services: Arc<AgentServices>) -> Self {
        Self { services }
    }
}

#[async_trait]
impl Extension for SystemExtension {
    fn name(&self) -> &'static str {
        "system"
    }
    fn class_name(&self) -> &'static str {
        "SystemExtension"
    }
    fn commands(&self) -> &'static [CommandSpec] {
        COMMANDS
    }
    async fn execute(
        &self,
        _command: &str,
        _params: Params,
        _ctx: CommandContext,
    ) -> Result<Value, AgentError> {
        tracing::warn!("system.lockdown requested: the API stops after this reply");
        self.services.control.lockdown();
        Ok(Value::Null)
    }
}

inventory::submit! {
    ExtensionDescriptor { name: "system", build: |s, _| Arc::new(SystemExtension::new(s.clone())) }
}
