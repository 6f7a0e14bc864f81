//! The ranked set of loaded managers and IPA's dispatch semantics (spec §5.2–5.5).

use std::sync::Arc;

use futures_util::future::BoxFuture;
use indexmap::IndexMap;
use serde_json::Value;

use super::{
    BlockDevice, HardwareManager, HardwareSupport, Inventory, Step, StepCall, StepKind,
    deduplicate_steps,
};
use crate::error::{AgentError, python_repr};

/// A loaded manager and the support it reported.
#[derive(Debug, Clone)]
pub struct RankedManager {
    /// The manager.
    pub manager: Arc<dyn HardwareManager>,
    /// Its support score.
    pub support: HardwareSupport,
}

/// The managers that support this machine, best first.
#[derive(Debug, Clone, Default)]
pub struct HardwareManagers {
    ranked: Vec<RankedManager>,
}

impl HardwareManagers {
    /// Probe every candidate, keep those scoring above `NONE`, rank by support (descending) then
    /// name. No manager at all is `HardwareManagerNotFound`.
    pub async fn probe(candidates: Vec<Arc<dyn HardwareManager>>) -> Result<Self, AgentError> {
        let mut ranked = Vec::new();
        for m in candidates {
            let support = m.evaluate_hardware_support().await;
            tracing::info!(manager = m.name(), support = support.0, "hardware manager probed");
            if support > HardwareSupport::NONE {
                ranked.push(RankedManager { manager: m, support });
            }
        }
        if ranked.is_empty() {
            return Err(AgentError::HardwareManagerNotFound {
                details: "No valid HardwareManager found".into(),
            });
        }
        Ok(Self::from_ranked(ranked))
    }

    /// Build from already-scored managers (sorted here).
    pub fn from_ranked(mut ranked: Vec<RankedManager>) -> Self {
        ranked.sort_by(|a, b| {
            b.support.cmp(&a.support).then_with(|| a.manager.name().cmp(b.manager.name()))
        });
        Self { ranked }
    }

    /// No managers (what a manager driven on its own sees as its peers in tests).
    pub const fn empty() -> Self {
        Self { ranked: Vec::new() }
    }

    /// A set of one manager at `GENERIC` support: tools, benches and tests that drive one
    /// manager the way the agent does.
    pub fn single(manager: Arc<dyn HardwareManager>) -> Self {
        Self::from_ranked(vec![RankedManager { manager, support: HardwareSupport::GENERIC }])
    }

    /// Call `initialize()` on each manager in rank order.
    pub async fn initialize(&self) -> Result<(), AgentError> {
        for r in &self.ranked {
            r.manager.initialize(self).await?;
        }
        Ok(())
    }

    /// Managers, best first.
    pub fn ranked(&self) -> &[RankedManager] {
        &self.ranked
    }

    /// IPA's `dispatch_to_managers`: the first manager that does not answer `Incompatible`
    /// wins (its error included); if every manager is incompatible,
    /// `HardwareManagerMethodNotFound`. `f` gets each manager and the set (its peers).
    pub async fn dispatch<T, F>(&self, method: &str, f: F) -> Result<T, AgentError>
    where
        F: for<'a> Fn(&'a dyn HardwareManager, &'a Self) -> BoxFuture<'a, Result<T, AgentError>>,
    {
        for r in &self.ranked {
            match f(&*r.manager, self).await {
                Err(e) if e.is_incompatible() => {
                    tracing::debug!(
                        manager = r.manager.name(),
                        method,
                        "incompatible; next manager"
                    );
                }
                other => return other,
            }
        }
        Err(AgentError::HardwareManagerMethodNotFound { method: method.to_string() })
    }

    /// IPA's `dispatch_to_all_managers`: `{manager name: answer}` over every compatible manager;
    /// any other error stops; none at all is `HardwareManagerMethodNotFound`.
    pub async fn dispatch_all<T, F>(
        &self,
        method: &str,
        f: F,
    ) -> Result<IndexMap<String, T>, AgentError>
    where
        F: for<'a> Fn(&'a dyn HardwareManager, &'a Self) -> BoxFuture<'a, Result<T, AgentError>>,
    {
        let mut out = IndexMap::new();
        for r in &self.ranked {
            match f(&*r.manager, self).await {
                Ok(v) => {
                    out.insert(r.manager.name().to_string(), v);
                }
                Err(e) if e.is_incompatible() => {}
                Err(e) => return Err(e),
            }
        }
        if out.is_empty() {
            return Err(AgentError::HardwareManagerMethodNotFound { method: method.to_string() });
        }
        Ok(out)
    }

    /// `get_<kind>_steps` over all managers, de-duplicated.
    pub async fn get_steps(
        &self,
        kind: StepKind,
        node: &Value,
        ports: &Value,
    ) -> Result<IndexMap<String, Vec<Step>>, AgentError> {
        let mut per_manager = IndexMap::new();
        for r in &self.ranked {
            let steps = match kind {
                StepKind::Clean => r.manager.get_clean_steps(node, ports).await,
                StepKind::Deploy => r.manager.get_deploy_steps(node, ports).await,
                StepKind::Service => r.manager.get_service_steps(node, ports).await,
            };
            match steps {
                Ok(s) => {
                    per_manager.insert(r.manager.name().to_string(), (r.support.0, s));
                }
                Err(e) if e.is_incompatible() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(deduplicate_steps(&per_manager))
    }

    /// `hardware_manager_version`: `{version.name: version.version}` for every loaded manager.
    pub fn versions(&self) -> serde_json::Map<String, Value> {
        self.ranked
            .iter()
            .map(|r| {
                let v = r.manager.version();
                (v.name, Value::String(v.version))
            })
            .collect()
    }

    /// IPA's `check_versions`: nothing provided passes; otherwise the dicts must be equal.
    pub fn check_versions(&self, provided: Option<&Value>) -> Result<(), AgentError> {
        let Some(provided) = provided.filter(|v| !is_falsy(v)) else {
            return Ok(());
        };
        let current = Value::Object(self.versions());
        if *provided != current {
            return Err(AgentError::VersionMismatch {
                current: python_repr(&current),
                ironic: python_repr(provided),
            });
        }
        Ok(())
    }

    /// Run a step on the first manager that implements it (`call.peers` is this set).
    pub async fn execute_step(&self, call: StepCall<'_>) -> Result<Value, AgentError> {
        let call = StepCall { peers: self, ..call };
        let step = call.step.to_string();
        for r in &self.ranked {
            match r.manager.execute_step(call.clone()).await {
                Err(e) if e.is_incompatible() => continue,
                other => return other,
            }
        }
        Err(AgentError::HardwareManagerMethodNotFound { method: step })
    }

    /// IPA's `filter_devices`: each device goes through `filter_device`; `None` hides it; a
    /// device no manager has an opinion on is kept.
    pub async fn filter_devices(
        &self,
        devices: Vec<BlockDevice>,
    ) -> Result<Vec<BlockDevice>, AgentError> {
        let mut out = Vec::with_capacity(devices.len());
        for d in devices {
            let kept = match self.dispatch("filter_device", |m, _| m.filter_device(d.clone())).await
            {
                Ok(v) => v,
                Err(AgentError::HardwareManagerMethodNotFound { .. }) => Some(d),
                Err(e) => return Err(e),
            };
            out.extend(kept);
        }
        Ok(out)
    }

    /// The inventory from the best manager that produces one, plus every manager's inventory
    /// extensions appended after IPA's keys.
    pub async fn list_hardware_info(&self) -> Result<Inventory, AgentError> {
        let mut inv = self.dispatch("list_hardware_info", |m, p| m.list_hardware_info(p)).await?;
        for r in self.ranked.iter().rev() {
            match r.manager.inventory_extensions().await {
                Ok(extra) => inv.extra.extend(extra),
                Err(e) if e.is_incompatible() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(inv)
    }
}

fn is_falsy(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(o) => o.is_empty(),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extension::CommandContext;
    use crate::hardware::{Cpu, HardwareManagerVersion};
    use async_trait::async_trait;
    use serde_json::json;

    struct M {
        name: &'static str,
        support: u32,
        cpus: Option<Result<u64, AgentError>>,
        steps: Vec<Step>,
    }

    #[async_trait]
    impl HardwareManager for M {
        fn name(&self) -> &str {
            self.name
        }
        fn version(&self) -> HardwareManagerVersion {
            HardwareManagerVersion { name: self.name.to_lowercase(), version: "1.0".into() }
        }
        async fn evaluate_hardware_support(&self) -> HardwareSupport {
            HardwareSupport(self.support)
        }
        async fn get_cpus(&self) -> Result<Cpu, AgentError> {
            match &self.cpus {
                None => Err(AgentError::incompatible("no")),
                Some(Ok(n)) => Ok(Cpu { count: *n, ..Default::default() }),
                Some(Err(e)) => Err(e.clone()),
            }
        }
        async fn get_clean_steps(&self, _n: &Value, _p: &Value) -> Result<Vec<Step>, AgentError> {
            Ok(self.steps.clone())
        }
        async fn execute_step(&self, call: StepCall<'_>) -> Result<Value, AgentError> {
            if self.steps.iter().any(|s| s.step == call.step) {
                Ok(json!(self.name))
            } else {
                Err(AgentError::incompatible(call.step))
            }
        }
    }

    fn mgr(
        name: &'static str,
        support: u32,
        cpus: Option<Result<u64, AgentError>>,
    ) -> Arc<dyn HardwareManager> {
        Arc::new(M { name, support, cpus, steps: vec![] })
    }

    #[tokio::test]
    async fn probe_drops_unsupported_and_ranks_by_support_then_name() {
        let hw = HardwareManagers::probe(vec![
            mgr("GenericHardwareManager", 1, None),
            mgr("NoneManager", 0, None),
            mgr("ZVendor", 2, None),
            mgr("AVendor", 2, None),
        ])
        .await
        .unwrap();
        let names: Vec<_> = hw.ranked().iter().map(|r| r.manager.name().to_string()).collect();
        assert_eq!(names, ["AVendor", "ZVendor", "GenericHardwareManager"]);
        let none = HardwareManagers::probe(vec![mgr("NoneManager", 0, None)]).await.unwrap_err();
        assert_eq!(none.kind(), "HardwareManagerNotFound");
    }

    #[tokio::test]
    async fn dispatch_falls_through_incompatible_and_stops_on_real_errors() {
        let hw =
            HardwareManagers::probe(vec![mgr("Generic", 1, Some(Ok(4))), mgr("Vendor", 2, None)])
                .await
                .unwrap();
        let cpu = hw.dispatch("get_cpus", |m, _| m.get_cpus()).await.unwrap();
        assert_eq!(cpu.count, 4);

        let hw = HardwareManagers::probe(vec![
            mgr("Generic", 1, Some(Ok(4))),
            mgr(
                "Vendor",
                2,
                Some(Err(AgentError::HardwareManagerConfiguration { details: "bad".into() })),
            ),
        ])
        .await
        .unwrap();
        let e = hw.dispatch("get_cpus", |m, _| m.get_cpus()).await.unwrap_err();
        assert_eq!(e.kind(), "HardwareManagerConfigurationError");

        let hw = HardwareManagers::probe(vec![mgr("Generic", 1, None)]).await.unwrap();
        let e = hw.dispatch("get_cpus", |m, _| m.get_cpus()).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "No HardwareManager found to handle method: Could not find method: get_cpus"
        );
    }

    #[tokio::test]
    async fn dispatch_all_collects_by_manager_name() {
        let hw = HardwareManagers::probe(vec![
            mgr("Generic", 1, Some(Ok(4))),
            mgr("Vendor", 2, Some(Ok(8))),
            mgr("Other", 2, None),
        ])
        .await
        .unwrap();
        let all = hw.dispatch_all("get_cpus", |m, _| m.get_cpus()).await.unwrap();
        assert_eq!(all.keys().cloned().collect::<Vec<_>>(), ["Vendor", "Generic"]);
    }

    #[tokio::test]
    async fn versions_and_mismatch_rule() {
        let hw = HardwareManagers::probe(vec![mgr("Generic", 1, None), mgr("Vendor", 2, None)])
            .await
            .unwrap();
        assert_eq!(Value::Object(hw.versions()), json!({"vendor": "1.0", "generic": "1.0"}));
        assert!(hw.check_versions(None).is_ok());
        assert!(hw.check_versions(Some(&json!({}))).is_ok());
        assert!(hw.check_versions(Some(&json!({"generic": "1.0", "vendor": "1.0"}))).is_ok());
        let e = hw.check_versions(Some(&json!({"generic": "1.0"}))).unwrap_err();
        assert_eq!(e.code(), 409);
        assert_eq!(
            e.details(),
            "Current versions: {'vendor': '1.0', 'generic': '1.0'}, versions used by ironic: {'generic': '1.0'}"
        );
    }

    #[tokio::test]
    async fn steps_are_deduplicated_and_executed_by_the_winner() {
        let generic: Arc<dyn HardwareManager> = Arc::new(M {
            name: "Generic",
            support: 1,
            cpus: None,
            steps: vec![Step::new("erase_devices", 10, "deploy"), Step::new("g_only", 0, "deploy")],
        });
        let vendor: Arc<dyn HardwareManager> = Arc::new(M {
            name: "Vendor",
            support: 2,
            cpus: None,
            steps: vec![Step::new("erase_devices", 5, "deploy")],
        });
        let hw = HardwareManagers::probe(vec![generic, vendor]).await.unwrap();
        let steps = hw.get_steps(StepKind::Clean, &json!({}), &json!([])).await.unwrap();
        assert_eq!(steps["Vendor"][0].step, "erase_devices");
        assert_eq!(steps["Generic"].len(), 1);
        let ctx = CommandContext::detached("clean.execute_clean_step");
        let node = json!({});
        let ports = json!([]);
        let call = |step| StepCall {
            step,
            kind: StepKind::Clean,
            node: &node,
            ports: &ports,
            args: Default::default(),
            ctx: &ctx,
            peers: &hw,
        };
        assert_eq!(hw.execute_step(call("erase_devices")).await.unwrap(), json!("Vendor"));
        assert_eq!(hw.execute_step(call("g_only")).await.unwrap(), json!("Generic"));
        assert_eq!(
            hw.execute_step(call("nope")).await.unwrap_err().kind(),
            "HardwareManagerMethodNotFound"
        );
    }
}
