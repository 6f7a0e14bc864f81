//! `clean.*`, `deploy.*`, `service.*` (spec `ipa-agent.md` §3 notes, `ironic-contract.md` §2).

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::command::{CommandSpec, Param, Params};
use crate::error::AgentError;
use crate::extension::{CommandContext, Extension};
use crate::hardware::{HardwareManagers, StepCall, StepKind};
use crate::registry::ExtensionDescriptor;
use crate::services::AgentServices;

/// One of the three step extensions.
#[derive(Debug)]
pub struct StepsExtension {
    kind: StepKind,
    services: Arc<AgentServices>,
    hardware: Arc<HardwareManagers>,
}

static CLEAN: &[CommandSpec] = &[
    CommandSpec::sync("get_clean_steps", &[Param::req("node"), Param::req("ports")]),
    CommandSpec::asynchronous(
        "execute_clean_step",
        &[Param::req("step"), Param::req("node"), Param::req("ports"), Param::opt("clean_version")],
    )
    .with_extra(),
];
static DEPLOY: &[CommandSpec] = &[
    CommandSpec::sync("get_deploy_steps", &[Param::req("node"), Param::req("ports")]),
    CommandSpec::asynchronous(
        "execute_deploy_step",
        &[
            Param::req("step"),
            Param::req("node"),
            Param::req("ports"),
            Param::opt("deploy_version"),
        ],
    )
    .with_extra(),
];
static SERVICE: &[CommandSpec] = &[
    CommandSpec::sync("get_service_steps", &[Param::req("node"), Param::req("ports")]),
    CommandSpec::asynchronous(
        "execute_service_step",
        &[
            Param::req("step"),
            Param::req("node"),
            Param::req("ports"),
            Param::opt("service_version"),
        ],
    )
    .with_extra(),
];

impl StepsExtension {
    /// The extension for `kind`.
    pub fn new(
        kind: StepKind,
        services: Arc<AgentServices>,
        hardware: Arc<HardwareManagers>,
    ) -> Self {
        Self { kind, services, hardware }
    }

    fn cache_node(&self, params: &Params) {
        if let Some(node) = params.get("node").filter(|n| n.is_object())
            && self.services.node.set(node.clone())
        {
            tracing::info!(node = ?node.get("uuid"), "cached a new node");
        }
    }

    /// The managers' steps (de-duplicated), then the steps extensions run themselves, under
    /// their class names; a step an extension owns is not listed for a manager too.
    async fn get_steps(&self, params: &Params, ctx: &CommandContext) -> Result<Value, AgentError> {
        self.cache_node(params);
        let hw = &self.hardware;
        let null = Value::Null;
        let node = params.get("node").unwrap_or(&null);
        let ports = params.get("ports").unwrap_or(&null);
        let mut steps = hw.get_steps(self.kind, node, ports).await?;
        let owned = ctx.peers().map(|p| p.owned_steps(self.kind)).unwrap_or_default();
        for list in steps.values_mut() {
            list.retain(|s| !owned.iter().any(|(_, o)| o.iter().any(|x| x.step == s.step)));
        }
        steps.extend(owned);
        let k = self.kind.as_str();
        Ok(json!({
            format!("{k}_steps"): steps,
            "hardware_manager_version": hw.versions(),
        }))
    }

    async fn execute_step(
        &self,
        mut params: Params,
        ctx: CommandContext,
    ) -> Result<Value, AgentError> {
        let k = self.kind.as_str();
        self.cache_node(&params);
        let hw = &self.hardware;
        hw.check_versions(params.get(&format!("{k}_version")))?;
        let step = params.remove("step").unwrap_or(Value::Null);
        let name = match step.get("step").and_then(Value::as_str) {
            Some(n) => n.to_string(),
            None => {
                let msg = format!(
                    "Malformed {k}_step, no \"step\" key: {}",
                    crate::error::python_repr(&step)
                );
                tracing::error!("{msg}");
                return Err(AgentError::internal("ValueError", msg));
            }
        };
        let node = params.remove("node").unwrap_or(Value::Null);
        let ports = params.remove("ports").unwrap_or(Value::Null);
        params.remove(&format!("{k}_version"));
        // kwargs first, then step.args (IPA: `**kwargs, **step['args']`).
        let mut args = params;
        if let Some(Value::Object(step_args)) = step.get("args") {
            for (a, v) in step_args {
                args.insert(a.clone(), v.clone());
            }
        }
        tracing::info!(step = %name, kind = k, "executing step");
        let call = StepCall {
            step: &name,
            kind: self.kind,
            node: &node,
            ports: &ports,
            args,
            ctx: &ctx,
            peers: hw,
        };
        let owner = ctx.peers().and_then(|p| p.step_owner(self.kind, &name));
        let outcome = match owner {
            Some(ext) => ext.execute_step(call).await,
            None => hw.execute_step(call).await,
        };
        let result = outcome.map_err(|e| {
            if e.is_internal() {
                let details = format!(
                    "Unexpected exception performing {k} step {name}. {}: {}",
                    e.kind(),
                    e.details()
                );
                match self.kind {
                    StepKind::Clean => AgentError::Cleaning { details },
                    StepKind::Deploy => AgentError::Deployment { details },
                    StepKind::Service => AgentError::Servicing { details },
                }
            } else {
                e
            }
        })?;
        // A Python tuple would become a list; Rust steps already return JSON.
        Ok(json!({ format!("{k}_result"): result, format!("{k}_step"): step }))
    }
}

#[async_trait]
impl Extension for StepsExtension {
    fn name(&self) -> &'static str {
        self.kind.as_str()
    }
    fn class_name(&self) -> &'static str {
        match self.kind {
            StepKind::Clean => "CleanExtension",
            StepKind::Deploy => "DeployExtension",
            StepKind::Service => "ServiceExtension",
        }
    }
    fn commands(&self) -> &'static [CommandSpec] {
        match self.kind {
            StepKind::Clean => CLEAN,
            StepKind::Deploy => DEPLOY,
            StepKind::Service => SERVICE,
        }
    }
    async fn execute(
        &self,
        command: &str,
        params: Params,
        ctx: CommandContext,
    ) -> Result<Value, AgentError> {
        if command.starts_with("get_") {
            self.get_steps(&params, &ctx).await
        } else {
            self.execute_step(params, ctx).await
        }
    }
}

inventory::submit! {
    ExtensionDescriptor { name: "clean", build: |s, hw| Arc::new(StepsExtension::new(StepKind::Clean, s.clone(), hw.clone())) }
}
inventory::submit! {
    ExtensionDescriptor { name: "deploy", build: |s, hw| Arc::new(StepsExtension::new(StepKind::Deploy, s.clone(), hw.clone())) }
}
inventory::submit! {
    ExtensionDescriptor { name: "service", build: |s, hw| Arc::new(StepsExtension::new(StepKind::Service, s.clone(), hw.clone())) }
}
