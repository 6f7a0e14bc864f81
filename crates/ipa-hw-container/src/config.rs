//! The `[container]` section and Ironic's `agent_containers` overrides (spec §4.4, §4.10).

use std::path::PathBuf;

use ipa_core::config::lenient_bool;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// `[container]` options (IPA's names and defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerConfig {
    /// Let step arguments name any image and pass their own options.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub allow_arbitrary_containers: bool,
    /// Images step arguments may name (compared without `docker://` / `oci://`).
    #[serde(default, deserialize_with = "lenient_list")]
    pub allowed_containers: Vec<String>,
    /// YAML file declaring extra steps (read under the root prefix).
    #[serde(default = "d_steps_file")]
    pub container_steps_file: PathBuf,
    /// `podman` or `docker`.
    #[serde(default = "d_runner")]
    pub runner: String,
    /// Options of `<runner> pull`.
    #[serde(default, deserialize_with = "lenient_list")]
    pub pull_options: Vec<String>,
    /// Options of `<runner> run`.
    #[serde(default = "d_run_options", deserialize_with = "lenient_list")]
    pub run_options: Vec<String>,
}

fn d_steps_file() -> PathBuf {
    "/etc/ironic-python-agent.d/mysteps.yaml".into()
}
fn d_runner() -> String {
    "podman".into()
}
fn d_run_options() -> Vec<String> {
    vec!["--rm".into(), "--network=host".into()]
}

impl Default for ContainerConfig {
    fn default() -> Self {
        Self {
            allow_arbitrary_containers: false,
            allowed_containers: Vec::new(),
            container_steps_file: d_steps_file(),
            runner: d_runner(),
            pull_options: Vec::new(),
            run_options: d_run_options(),
        }
    }
}

/// A list from a list, or from a comma-separated string (environment, kernel parameters).
pub fn lenient_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => {
            Ok(s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
        }
        Value::Array(a) => a
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                other => Err(serde::de::Error::custom(format!("expected a string, got {other}"))),
            })
            .collect(),
        other => Err(serde::de::Error::custom(format!("expected a list of strings, got {other}"))),
    }
}

fn string_list(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::Array(a) => a.iter().map(|x| x.as_str().map(str::to_string)).collect(),
        Value::String(s) => Some(s.split_whitespace().map(str::to_string).collect()),
        _ => None,
    }
}

impl ContainerConfig {
    /// Read `[container]` from the merged configuration (defaults when absent).
    pub fn from_figment(figment: &figment::Figment) -> Result<Self, figment::Error> {
        if figment.find_value("container").is_err() {
            return Ok(Self::default());
        }
        figment.extract_inner("container")
    }

    /// Apply Ironic's `agent_containers` block: known keys with valid values override; unknown
    /// or invalid keys are ignored with a warning.
    pub fn with_ironic_overrides(&self, overrides: Option<&Value>) -> Self {
        let mut c = self.clone();
        let Some(Value::Object(o)) = overrides else { return c };
        for (k, v) in o {
            let ok = match k.as_str() {
                "allow_arbitrary_containers" => {
                    v.as_bool().map(|b| c.allow_arbitrary_containers = b).is_some()
                }
                "allowed_containers" => string_list(v).map(|l| c.allowed_containers = l).is_some(),
                "container_steps_file" => {
                    v.as_str().map(|s| c.container_steps_file = s.into()).is_some()
                }
                "runner" => {
                    v.as_str().filter(|s| !s.is_empty()).map(|s| c.runner = s.into()).is_some()
                }
                "pull_options" => string_list(v).map(|l| c.pull_options = l).is_some(),
                "run_options" => string_list(v).map(|l| c.run_options = l).is_some(),
                _ => {
                    tracing::warn!(key = %k, "ignoring unknown agent_containers option from Ironic");
                    continue;
                }
            };
            if !ok {
                tracing::warn!(key = %k, "ignoring invalid agent_containers value from Ironic");
            }
        }
        c
    }
}

/// Strip the transport prefix IPA ignores when comparing images.
pub fn strip_transport(url: &str) -> &str {
    url.strip_prefix("docker://").or_else(|| url.strip_prefix("oci://")).unwrap_or(url)
}

/// Whether `url` may be run from a step argument.
pub fn is_allowed(config: &ContainerConfig, url: &str) -> bool {
    config.allow_arbitrary_containers
        || config.allowed_containers.iter().any(|a| strip_transport(a) == strip_transport(url))
}
