//! IPA's `process_lookup_data` (spec `ipa-agent.md` §4.4): what the agent takes from a lookup
//! reply (or from `poll.set_node_info` in standalone mode).

use serde_json::Value;

use crate::error::AgentError;
use crate::services::AgentServices;

/// What processing a lookup reply decided.
#[derive(Debug, Clone, PartialEq)]
pub struct LookupOutcome {
    /// The node's UUID.
    pub node_uuid: String,
    /// `config.heartbeat_timeout` in seconds.
    pub heartbeat_timeout: f64,
    /// The token situation.
    pub token: TokenOutcome,
    /// The node's UUID differs from the previously cached one.
    pub node_changed: bool,
}

/// The token rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenOutcome {
    /// A fresh token (≥ 32 characters) was stored.
    Received,
    /// Ironic masked the token (`"******"`) but we already have one (pre-shared or earlier).
    AlreadyKnown,
    /// Masked and none of our own: the agent can never be driven; lock down.
    Fatal,
    /// No usable token in the reply (too short or absent); keep whatever we have.
    Ignored,
}

/// Apply a lookup reply `{"node": {...}, "config": {...}}` to the agent's services.
pub fn process_lookup_data(
    services: &AgentServices,
    content: &Value,
) -> Result<LookupOutcome, AgentError> {
    let node = content
        .get("node")
        .filter(|n| n.is_object())
        .ok_or_else(|| AgentError::LookupNode { details: "lookup reply has no node".into() })?;
    let node_uuid = node
        .get("uuid")
        .and_then(Value::as_str)
        .ok_or_else(|| AgentError::LookupNode { details: "lookup reply has no node.uuid".into() })?
        .to_string();
    let empty = Value::Object(Default::default());
    let config = content.get("config").unwrap_or(&empty);
    // Legacy Ironic put heartbeat_timeout at the top level.
    let heartbeat_timeout = config
        .get("heartbeat_timeout")
        .or_else(|| content.get("heartbeat_timeout"))
        .and_then(Value::as_f64)
        .ok_or_else(|| AgentError::LookupNode {
            details: "lookup reply has no config.heartbeat_timeout".into(),
        })?;

    let node_changed = services.node.set(node.clone());

    let token = match config.get("agent_token").and_then(Value::as_str) {
        Some("******") if services.token.is_set() => TokenOutcome::AlreadyKnown,
        Some("******") => TokenOutcome::Fatal,
        Some(t) if t.len() >= 32 => {
            services.token.set(t);
            TokenOutcome::Received
        }
        _ => TokenOutcome::Ignored,
    };

    {
        let mut s = services.ironic.write().unwrap_or_else(|p| p.into_inner());
        s.heartbeat_timeout = Some(heartbeat_timeout);
        let b = |k: &str| config.get(k).and_then(Value::as_bool);
        if let Some(v) = b("agent_md5_checksum_enable") {
            s.md5_enabled = Some(v);
        }
        if let Some(v) = b("disable_deep_image_inspection") {
            s.disable_deep_image_inspection = Some(v);
        }
        if b("enable_bios_bootloader_install") == Some(true) {
            s.enable_bios_bootloader_install = Some(true);
        }
        if let Some(v) = b("agent_skip_bmc_detect") {
            s.skip_bmc_detect = Some(v);
        }
        if let Some(list) = config.get("permitted_image_formats").and_then(Value::as_array) {
            s.permitted_image_formats =
                Some(list.iter().filter_map(Value::as_str).map(str::to_string).collect());
        }
        if let Some(c) = config.get("agent_containers").filter(|c| c.is_object()) {
            s.agent_containers = Some(c.clone());
        }
        if let Some(v) =
            config.get("tls_min_version").and_then(Value::as_str).filter(|v| !v.is_empty())
        {
            s.tls_min_version = Some(v.to_string());
        }
        if let Some(v) =
            config.get("tls_cipher_suites").and_then(Value::as_str).filter(|v| !v.is_empty())
        {
            s.tls_cipher_suites = Some(v.to_string());
        }
    }
    if token == TokenOutcome::Fatal {
        tracing::error!(
            node = %node_uuid,
            "Ironic reports the agent token as already issued and this agent has none; \
             it can never be driven. Locking down."
        );
        services.control.lockdown();
    }
    Ok(LookupOutcome { node_uuid, heartbeat_timeout, token, node_changed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn services() -> (tempfile::TempDir, std::sync::Arc<AgentServices>) {
        let d = tempfile::tempdir().unwrap();
        let s = AgentServices::for_tests(d.path());
        (d, s)
    }

    #[test]
    fn token_rules() {
        let (_d, s) = services();
        let long = "x".repeat(43);
        let out = process_lookup_data(
            &s,
            &json!({"node": {"uuid": "n1"}, "config": {"heartbeat_timeout": 300, "agent_token": long}}),
        )
        .unwrap();
        assert_eq!(out.token, TokenOutcome::Received);
        assert!(s.token.matches(Some(&"x".repeat(43))));

        let out = process_lookup_data(
            &s,
            &json!({"node": {"uuid": "n1"}, "config": {"heartbeat_timeout": 300, "agent_token": "******"}}),
        )
        .unwrap();
        assert_eq!(out.token, TokenOutcome::AlreadyKnown);

        let (_d2, s2) = services();
        let out = process_lookup_data(
            &s2,
            &json!({"node": {"uuid": "n1"}, "config": {"heartbeat_timeout": 300, "agent_token": "******"}}),
        )
        .unwrap();
        assert_eq!(out.token, TokenOutcome::Fatal);
        assert_eq!(s2.control.state(), crate::services::ServeState::Lockdown);

        let out = process_lookup_data(
            &s2,
            &json!({"node": {"uuid": "n1"}, "config": {"heartbeat_timeout": 300, "agent_token": "short"}}),
        )
        .unwrap();
        assert_eq!(out.token, TokenOutcome::Ignored);
    }

    #[test]
    fn heartbeat_timeout_is_mandatory_and_settings_are_kept() {
        let (_d, s) = services();
        let e = process_lookup_data(&s, &json!({"node": {"uuid": "n"}, "config": {}})).unwrap_err();
        assert!(e.to_string().contains("heartbeat_timeout"));
        process_lookup_data(
            &s,
            &json!({"node": {"uuid": "n"}, "config": {"heartbeat_timeout": 300,
                "agent_md5_checksum_enable": false, "permitted_image_formats": ["raw", "qcow2"],
                "tls_min_version": "1.3", "tls_cipher_suites": null}}),
        )
        .unwrap();
        let st = s.ironic_settings();
        assert_eq!(st.md5_enabled, Some(false));
        assert_eq!(st.permitted_image_formats.unwrap(), ["raw", "qcow2"]);
        assert_eq!(st.tls_min_version.as_deref(), Some("1.3"));
        assert_eq!(st.tls_cipher_suites, None);
        assert_eq!(s.node.uuid().as_deref(), Some("n"));
    }
}
