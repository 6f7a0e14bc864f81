//! The transport-neutral command model (spec `ipa-agent.md` §2).
//!
//! A transport turns its wire format into a [`CommandRequest`] and hands it to the
//! [`Dispatcher`](crate::dispatcher::Dispatcher); what comes back is a [`CommandResult`] that
//! serialises to exactly IPA's five keys, in IPA's order.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{AgentError, ErrorBody};

/// Keyword parameters of a command, in the order the caller sent them.
pub type Params = serde_json::Map<String, Value>;

/// A command as received from any transport: `{"name": "<ext>.<cmd>", "params": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandRequest {
    /// Full name, `"<extension>.<command>"`.
    pub name: String,
    /// Keyword parameters.
    #[serde(default)]
    pub params: Params,
    /// Optional client-supplied idempotency key. A repeat of a request with a key the agent has
    /// already seen returns the stored result instead of running the command again (Ironic
    /// re-sends a POST after a timeout; see `ironic-contract.md` §1.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

impl CommandRequest {
    /// A request without an idempotency key.
    pub fn new(name: impl Into<String>, params: Params) -> Self {
        Self { name: name.into(), params, idempotency_key: None }
    }

    /// Split the name at the first dot into `(extension, command)`.
    pub fn split_name(&self) -> Result<(&str, &str), AgentError> {
        self.name.split_once('.').ok_or_else(|| {
            AgentError::invalid_command("Command name must be of the form <extension>.<name>")
        })
    }
}

/// The four statuses Ironic understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CommandStatus {
    /// An async command still running.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Finished with an error in `command_error`.
    Failed,
    /// Ironic's cached hardware-manager versions differ from the agent's.
    CleanVersionMismatch,
}

impl CommandStatus {
    /// True once the command can no longer change.
    pub fn is_done(self) -> bool {
        self != CommandStatus::Running
    }
}

/// A recorded command result: IPA's `BaseCommandResult.serialize()`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandResult {
    /// Random UUID4.
    pub id: String,
    /// The command part of the name, without the extension prefix (Ironic matches on this).
    pub command_name: String,
    /// Current status.
    pub command_status: CommandStatus,
    /// `null` or the error object; never a bare string.
    pub command_error: Option<ErrorBody>,
    /// What the command returned, with string results wrapped (see [`wrap_sync`], [`wrap_async`]).
    pub command_result: Value,
}

impl CommandResult {
    /// A fresh `RUNNING` result with a new UUID.
    pub fn running(command_name: impl Into<String>) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            command_name: command_name.into(),
            command_status: CommandStatus::Running,
            command_error: None,
            command_result: Value::Null,
        }
    }
}

/// IPA's `SyncCommandResult` wrapping: a string becomes `{"result": s}`; everything else as is.
pub fn wrap_sync(value: Value) -> Value {
    match value {
        Value::String(s) => serde_json::json!({ "result": s }),
        other => other,
    }
}

/// IPA's `AsyncCommandResult` wrapping: a string becomes `{"result": "<command_name>: s"}`.
pub fn wrap_async(command_name: &str, value: Value) -> Value {
    match value {
        Value::String(s) => serde_json::json!({ "result": format!("{command_name}: {s}") }),
        other => other,
    }
}

/// How a command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommandMode {
    /// Runs inside the request under the global command lock; the reply is final.
    Sync,
    /// Validated inside the request, then spawned; the reply says `RUNNING`.
    Async,
}

/// One declared keyword parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    /// Keyword name.
    pub name: &'static str,
    /// Whether a call without it is a `TypeError` (Python's "missing required argument").
    pub required: bool,
}

impl Param {
    /// A required keyword.
    pub const fn req(name: &'static str) -> Self {
        Self { name, required: true }
    }
    /// An optional keyword.
    pub const fn opt(name: &'static str) -> Self {
        Self { name, required: false }
    }
}

/// The declaration of one command of an extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandSpec {
    /// Command name without the extension prefix.
    pub name: &'static str,
    /// Sync or async.
    pub mode: CommandMode,
    /// Declared keywords.
    pub params: &'static [Param],
    /// True if the command takes `**kwargs` (step execution does).
    pub accepts_extra: bool,
}

/// Longest parameter name echoed back in a `TypeError` (longer ones are clipped).
pub const MAX_ECHOED_NAME: usize = 128;

impl CommandSpec {
    /// A sync command with the given keywords.
    pub const fn sync(name: &'static str, params: &'static [Param]) -> Self {
        Self { name, mode: CommandMode::Sync, params, accepts_extra: false }
    }
    /// An async command with the given keywords.
    pub const fn asynchronous(name: &'static str, params: &'static [Param]) -> Self {
        Self { name, mode: CommandMode::Async, params, accepts_extra: false }
    }
    /// Allow undeclared keywords (`**kwargs`).
    pub const fn with_extra(mut self) -> Self {
        self.accepts_extra = true;
        self
    }

    /// Python's argument binding: unknown or missing keywords are a `TypeError` whose text is the
    /// one CPython prints for `ExtensionClass.command()`.
    pub fn bind(&self, extension_class: &str, params: &Params) -> Result<(), AgentError> {
        if !self.accepts_extra
            && let Some(unknown) =
                params.keys().find(|k| !self.params.iter().any(|p| p.name == k.as_str()))
        {
            // The name is echoed as Python does, but clipped: the result is kept in the history.
            let unknown = crate::error::clip(unknown, MAX_ECHOED_NAME);
            return Err(AgentError::TypeError {
                details: format!(
                    "{extension_class}.{}() got an unexpected keyword argument '{unknown}'",
                    self.name
                ),
            });
        }
        let missing: Vec<_> = self
            .params
            .iter()
            .filter(|p| p.required && !params.contains_key(p.name))
            .map(|p| format!("'{}'", p.name))
            .collect();
        if !missing.is_empty() {
            let noun = if missing.len() == 1 { "argument" } else { "arguments" };
            let list = match missing.len() {
                1 => missing[0].clone(),
                n => format!("{} and {}", missing[..n - 1].join(", "), missing[n - 1]),
            };
            return Err(AgentError::TypeError {
                details: format!(
                    "{extension_class}.{}() missing {} required keyword-only {noun}: {list}",
                    self.name,
                    missing.len()
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn result_serialises_exactly_five_keys_in_ipa_order() {
        let r = CommandResult {
            id: "b5887c53-7b18-4806-990a-79bcdee05bcf".into(),
            command_name: "get_partition_uuids".into(),
            command_status: CommandStatus::Succeeded,
            command_error: None,
            command_result: json!({}),
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"id":"b5887c53-7b18-4806-990a-79bcdee05bcf","command_name":"get_partition_uuids","command_status":"SUCCEEDED","command_error":null,"command_result":{}}"#
        );
    }

    #[test]
    fn version_mismatch_status_name() {
        assert_eq!(
            serde_json::to_value(CommandStatus::CleanVersionMismatch).unwrap(),
            json!("CLEAN_VERSION_MISMATCH")
        );
    }

    #[test]
    fn string_results_are_wrapped_like_ipa() {
        assert_eq!(wrap_sync(json!("ok")), json!({"result": "ok"}));
        assert_eq!(wrap_sync(json!({"a": 1})), json!({"a": 1}));
        assert_eq!(wrap_sync(Value::Null), Value::Null);
        assert_eq!(
            wrap_async("prepare_image", json!("image (x) written")),
            json!({"result": "prepare_image: image (x) written"})
        );
        assert_eq!(wrap_async("x", json!([1, 2])), json!([1, 2]));
    }

    #[test]
    fn name_without_dot_is_invalid_command() {
        let r = CommandRequest::new("nodot", Params::new());
        let e = r.split_name().unwrap_err();
        assert_eq!(
            e.to_string(),
            "Invalid command: Command name must be of the form <extension>.<name>"
        );
        let r = CommandRequest::new("a.b.c", Params::new());
        assert_eq!(r.split_name().unwrap(), ("a", "b.c"));
    }

    #[test]
    fn binding_rejects_unknown_and_missing_keywords_like_python() {
        static P: &[Param] = &[Param::req("root_uuid"), Param::opt("target_boot_mode")];
        let spec = CommandSpec::asynchronous("install_bootloader", P);
        let mut params = Params::new();
        params.insert("root_uuid".into(), json!("x"));
        params.insert("bogus".into(), json!(1));
        let e = spec.bind("ImageExtension", &params).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ImageExtension.install_bootloader() got an unexpected keyword argument 'bogus'"
        );
        let e = spec.bind("ImageExtension", &Params::new()).unwrap_err();
        assert_eq!(e.kind(), "TypeError");
        assert!(e.to_string().contains("missing 1 required"), "{e}");
        assert!(spec.with_extra().bind("X", &params).is_ok());
    }
}
