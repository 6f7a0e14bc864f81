//! `flow.start_flow`: run a list of sub-commands in order through a private, unrecorded path.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::command::{CommandRequest, CommandSpec, CommandStatus, Param, Params};
use crate::dispatcher::ExtensionSet;
use crate::error::AgentError;
use crate::extension::{CommandContext, Extension};
use crate::registry::ExtensionDescriptor;
use crate::services::AgentServices;

/// The flow extension.
#[derive(Debug)]
pub struct FlowExtension {
    services: Arc<AgentServices>,
}

static COMMANDS: &[CommandSpec] = &[CommandSpec::asynchronous("start_flow", &[Param::opt("flow")])];

impl FlowExtension {
    /// New.
    pub fn new(services: Arc<AgentServices>) -> Self {
        Self { services }
    }

    fn steps(params: &Params) -> Result<Vec<(String, Params)>, AgentError> {
        let list = match params.get("flow") {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(a)) => a,
            Some(_) => return Err(AgentError::invalid_params("flow must be a list")),
        };
        list.iter()
            .map(|item| {
                let obj = item.as_object().filter(|o| o.len() == 1).ok_or_else(|| {
                    AgentError::invalid_params("each flow item must be {\"<ext>.<cmd>\": {params}}")
                })?;
                let (name, p) = obj.iter().next().expect("one entry");
                let p = match p {
                    Value::Object(o) => o.clone(),
                    Value::Null => Params::new(),
                    _ => {
                        return Err(AgentError::invalid_params(format!(
                            "params of {name} must be an object"
                        )));
                    }
                };
                Ok((name.clone(), p))
            })
            .collect()
    }
}

#[async_trait]
impl Extension for FlowExtension {
    fn name(&self) -> &'static str {
        "flow"
    }
    fn class_name(&self) -> &'static str {
        "FlowExtension"
    }
    fn commands(&self) -> &'static [CommandSpec] {
        COMMANDS
    }
    fn validate(
        &self,
        _command: &str,
        params: &Params,
        set: &ExtensionSet,
    ) -> Result<(), AgentError> {
        for (name, _) in Self::steps(params)? {
            let (ext, cmd) = name.split_once('.').ok_or_else(|| {
                AgentError::invalid_params(format!("{name} is not of the form <extension>.<name>"))
            })?;
            if !set.contains(ext) {
                return Err(AgentError::RequestedObjectNotFound {
                    kind: "Extension".into(),
                    id: ext.into(),
                });
            }
            set.resolve(ext, cmd).map_err(|_| {
                AgentError::invalid_params(format!("Extension {ext} has no command {cmd}"))
            })?;
        }
        Ok(())
    }
    async fn execute(
        &self,
        _command: &str,
        params: Params,
        ctx: CommandContext,
    ) -> Result<Value, AgentError> {
        let set = ctx
            .peers()
            .ok_or_else(|| AgentError::execution("start_flow runs only through a dispatcher"))?;
        for (name, p) in Self::steps(&params)? {
            let req = CommandRequest::new(name.clone(), p);
            let r = set.run_unrecorded(&req, &self.services.events).await?;
            if r.command_status != CommandStatus::Succeeded {
                return Err(AgentError::execution(format!("{name} was failed")));
            }
        }
        Ok(Value::Null)
    }
}

inventory::submit! {
    ExtensionDescriptor { name: "flow", build: |s, _| Arc::new(FlowExtension::new(s.clone())) }
}
