//! # acme-hardware-manager
//!
//! A complete, made-up vendor hardware manager for the "Acme widget", kept outside the core
//! crates to prove the embedding path (see `docs/adding-a-hardware-manager.md`):
//!
//! * **probe**: scores `MAINLINE` when `/sys/class/dmi/id/sys_vendor` reads `Acme`, else `NONE`;
//! * **inventory**: adds one top-level field, `acme_widget`, to `list_hardware_info`;
//! * **step**: the clean step `reset_acme_widget` with one optional argument (`mode`);
//! * **version**: `acme_widget_hardware_manager` = `1.4` in `hardware_manager_version`.
//!
//! Every path is read under the agent's root prefix (`/` on a real machine, `<sandbox>/root` in
//! sandbox mode, a fixture tree in tests).

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use ipa_core::AgentError;
use ipa_core::hardware::{
    HardwareManager, HardwareManagerVersion, HardwareSupport, Step, StepCall,
};
use ipa_core::registry::HardwareManagerDescriptor;
use serde_json::{Map, Value, json};

/// The class-style name: the key of this manager's steps in `get_clean_steps`.
pub const NAME: &str = "AcmeWidgetHardwareManager";
/// The step this manager offers.
pub const RESET_STEP: &str = "reset_acme_widget";
const WIDGET: &str = "sys/class/acme_widget/widget0";

/// The Acme widget manager.
#[derive(Debug)]
pub struct AcmeWidgetHardwareManager {
    root: PathBuf,
}

impl AcmeWidgetHardwareManager {
    /// A manager reading sysfs under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join(rel)).ok().map(|s| s.trim().to_string())
    }
}

#[async_trait]
impl HardwareManager for AcmeWidgetHardwareManager {
    fn name(&self) -> &str {
        NAME
    }

    fn version(&self) -> HardwareManagerVersion {
        HardwareManagerVersion {
            name: "acme_widget_hardware_manager".into(),
            version: "1.4".into(),
        }
    }

    async fn evaluate_hardware_support(&self) -> HardwareSupport {
        match self.read("sys/class/dmi/id/sys_vendor").as_deref() {
            Some("Acme") => HardwareSupport::MAINLINE,
            _ => HardwareSupport::NONE,
        }
    }

    async fn inventory_extensions(&self) -> Result<Map<String, Value>, AgentError> {
        let mut extra = Map::new();
        extra.insert(
            "acme_widget".into(),
            json!({ "firmware_version": self.read(&format!("{WIDGET}/firmware_version")) }),
        );
        Ok(extra)
    }

    async fn get_clean_steps(
        &self,
        _node: &Value,
        _ports: &Value,
    ) -> Result<Vec<Step>, AgentError> {
        Ok(vec![Step::new(RESET_STEP, 0, "deploy").abortable(true).arg(
            "mode",
            "Reset mode: \"soft\" (default) or \"factory\"",
            false,
        )])
    }

    async fn execute_step(&self, call: StepCall<'_>) -> Result<Value, AgentError> {
        if call.step != RESET_STEP {
            // Not ours: the next manager gets a chance.
            return Err(AgentError::incompatible(call.step));
        }
        let mode = match call.args.get("mode") {
            None | Some(Value::Null) => "soft",
            Some(Value::String(m)) if m == "soft" || m == "factory" => m.as_str(),
            Some(other) => {
                return Err(AgentError::invalid_params(format!(
                    "mode must be \"soft\" or \"factory\", not {other}"
                )));
            }
        };
        let reset = self.root.join(WIDGET).join("reset");
        std::fs::write(&reset, mode).map_err(|e| AgentError::Cleaning {
            details: format!("cannot reset the Acme widget ({}): {e}", reset.display()),
        })?;
        tracing::info!(mode, "Acme widget reset");
        Ok(json!({ "reset": mode }))
    }
}

inventory::submit! {
    HardwareManagerDescriptor {
        name: "acme-widget",
        description: "Acme widget (example vendor manager)",
        config_section: None,
        kernel_params: &[],
        build: |services| Ok(Arc::new(AcmeWidgetHardwareManager::new(services.mode.root_prefix()))),
    }
}
