//! Steps and their de-duplication (spec `ipa-agent.md` §5.5–5.6).

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Clean, deploy or service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    /// Cleaning.
    Clean,
    /// Deployment.
    Deploy,
    /// Servicing.
    Service,
}

impl StepKind {
    /// `clean` / `deploy` / `service`.
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Clean => "clean",
            StepKind::Deploy => "deploy",
            StepKind::Service => "service",
        }
    }
}

/// One step as the agent advertises it. Key order follows IPA's emitted steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Method name.
    pub step: String,
    /// Priority (0 = only when asked for).
    pub priority: i64,
    /// Ironic interface (`deploy`, `raid`, `bios`, `firmware`, ...).
    pub interface: String,
    /// Whether Ironic must reboot into the ramdisk after the step.
    pub reboot_requested: bool,
    /// Whether the step may be aborted (clean and service steps carry it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abortable: Option<bool>,
    /// `{"<arg>": {"description": str, "required": bool}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argsinfo: Option<serde_json::Map<String, Value>>,
}

impl Step {
    /// A step with priority and interface, `reboot_requested: false`, no abortable key.
    pub fn new(step: &str, priority: i64, interface: &str) -> Self {
        Self {
            step: step.to_string(),
            priority,
            interface: interface.to_string(),
            reboot_requested: false,
            abortable: None,
            argsinfo: None,
        }
    }
    /// Set `abortable`.
    pub fn abortable(mut self, abortable: bool) -> Self {
        self.abortable = Some(abortable);
        self
    }
    /// Set `reboot_requested`.
    pub fn reboot_requested(mut self, reboot: bool) -> Self {
        self.reboot_requested = reboot;
        self
    }
    /// Add an `argsinfo` entry.
    pub fn arg(mut self, name: &str, description: &str, required: bool) -> Self {
        self.argsinfo.get_or_insert_with(Default::default).insert(
            name.to_string(),
            serde_json::json!({ "description": description, "required": required }),
        );
        self
    }
}

/// IPA's `deduplicate_steps`: among steps with the same name, keep the one with the lowest
/// `(-support, -priority, manager name)`. Input and output are keyed by manager name; the output
/// keeps every manager key (possibly with an empty list) in the input order.
pub fn deduplicate_steps(
    per_manager: &IndexMap<String, (u32, Vec<Step>)>,
) -> IndexMap<String, Vec<Step>> {
    let mut winner: IndexMap<&str, (i64, i64, &str)> = IndexMap::new();
    for (manager, (support, steps)) in per_manager {
        for s in steps {
            let key = (-(*support as i64), -s.priority, manager.as_str());
            winner
                .entry(s.step.as_str())
                .and_modify(|w| {
                    if key < *w {
                        *w = key;
                    }
                })
                .or_insert(key);
        }
    }
    per_manager
        .iter()
        .map(|(manager, (support, steps))| {
            let kept = steps
                .iter()
                .filter(|s| {
                    winner.get(s.step.as_str())
                        == Some(&(-(*support as i64), -s.priority, manager.as_str()))
                })
                .cloned()
                .collect();
            (manager.clone(), kept)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(entries: &[(&str, u32, Vec<Step>)]) -> IndexMap<String, (u32, Vec<Step>)> {
        entries.iter().map(|(n, s, v)| (n.to_string(), (*s, v.clone()))).collect()
    }

    #[test]
    fn highest_support_wins_then_priority_then_name() {
        let input = m(&[
            (
                "GenericHardwareManager",
                1,
                vec![
                    Step::new("erase_devices", 10, "deploy"),
                    Step::new("only_generic", 0, "deploy"),
                ],
            ),
            ("AcmeHardwareManager", 2, vec![Step::new("erase_devices", 0, "deploy")]),
            ("ZedHardwareManager", 2, vec![Step::new("shared", 5, "deploy")]),
            ("BetaHardwareManager", 2, vec![Step::new("shared", 5, "deploy")]),
            ("GammaHardwareManager", 2, vec![Step::new("shared", 7, "deploy")]),
        ]);
        let out = deduplicate_steps(&input);
        let names = |k: &str| out[k].iter().map(|s| s.step.clone()).collect::<Vec<_>>();
        assert_eq!(names("AcmeHardwareManager"), ["erase_devices"]);
        assert_eq!(names("GenericHardwareManager"), ["only_generic"]);
        assert_eq!(names("GammaHardwareManager"), ["shared"]);
        assert!(names("BetaHardwareManager").is_empty());
        assert!(names("ZedHardwareManager").is_empty());
    }

    #[test]
    fn equal_support_and_priority_breaks_ties_alphabetically() {
        let input = m(&[
            ("ZedHardwareManager", 2, vec![Step::new("shared", 5, "deploy")]),
            ("BetaHardwareManager", 2, vec![Step::new("shared", 5, "deploy")]),
        ]);
        let out = deduplicate_steps(&input);
        assert_eq!(out["BetaHardwareManager"].len(), 1);
        assert!(out["ZedHardwareManager"].is_empty());
    }

    #[test]
    fn step_json_shape_matches_ipa() {
        let s = Step::new("clean_uefi_nvram", 0, "deploy").abortable(true).arg(
            "match_patterns",
            "patterns",
            false,
        );
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"step":"clean_uefi_nvram","priority":0,"interface":"deploy","reboot_requested":false,"abortable":true,"argsinfo":{"match_patterns":{"description":"patterns","required":false}}}"#
        );
    }
}
