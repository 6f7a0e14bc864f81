//! Extensions: named groups of commands (`standby`, `clean`, `deploy`, ...).
//!
//! An extension declares its commands with [`CommandSpec`]s and executes them. It never records
//! results or decides about busy-ness: the [`Dispatcher`](crate::dispatcher::Dispatcher) does.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::command::{CommandSpec, Params};
use crate::dispatcher::ExtensionSet;
use crate::error::AgentError;
use crate::events::{AgentEvent, EventBus, Progress};
use crate::hardware::{Step, StepCall, StepKind};

/// What a running command knows about itself.
#[derive(Debug, Clone)]
pub struct CommandContext {
    /// Result id (empty for commands run outside the dispatcher, e.g. inside a flow).
    pub id: String,
    /// Full `<ext>.<cmd>` name.
    pub name: String,
    events: EventBus,
    peers: Option<Arc<ExtensionSet>>,
}

impl CommandContext {
    /// A context for a command with the given id and name publishing on `events`.
    pub fn new(id: impl Into<String>, name: impl Into<String>, events: EventBus) -> Self {
        Self { id: id.into(), name: name.into(), events, peers: None }
    }

    /// The same context, knowing the extension set the command runs in (the dispatcher hands
    /// it down; an extension reads it during the call and keeps no pointer to it).
    pub fn with_peers(mut self, peers: Arc<ExtensionSet>) -> Self {
        self.peers = Some(peers);
        self
    }

    /// The extension set the command runs in, if it was started by a dispatcher.
    pub fn peers(&self) -> Option<&Arc<ExtensionSet>> {
        self.peers.as_ref()
    }

    /// A context that publishes nowhere (tests, nested calls).
    pub fn detached(name: impl Into<String>) -> Self {
        Self::new("", name, EventBus::new(1))
    }

    /// Publish a progress record for this command.
    pub fn progress(&self, progress: Progress) {
        self.events.publish(AgentEvent::CommandProgress {
            id: self.id.clone(),
            name: self.name.clone(),
            progress,
        });
    }
}

/// A group of commands addressed as `<name>.<command>`.
#[async_trait]
pub trait Extension: Send + Sync + 'static {
    /// The extension's name (the part before the dot).
    fn name(&self) -> &'static str;

    /// The class name used in Python-compatible `TypeError` texts (`"StandbyExtension"`).
    fn class_name(&self) -> &'static str;

    /// The commands it offers.
    fn commands(&self) -> &'static [CommandSpec];

    /// Validate parameters synchronously, before anything is recorded. An
    /// `InvalidContentError`-family error becomes HTTP 400; any other error is recorded as a
    /// finished `FAILED` result. `peers` is the set the command would run in.
    fn validate(
        &self,
        _command: &str,
        _params: &Params,
        _peers: &ExtensionSet,
    ) -> Result<(), AgentError> {
        Ok(())
    }

    /// Steps of `kind` this extension runs itself rather than a hardware manager (the image
    /// pipeline's `write_image`, which IPA's generic manager forwards to
    /// `standby.prepare_image`). The step extensions list them under [`Extension::class_name`].
    fn steps(&self, _kind: StepKind) -> Vec<Step> {
        Vec::new()
    }

    /// Run one of [`Extension::steps`].
    async fn execute_step(&self, call: StepCall<'_>) -> Result<Value, AgentError> {
        Err(AgentError::incompatible(format!("{} is not a step of {}", call.step, self.name())))
    }

    /// Run a command. A returned string is wrapped by the dispatcher (see
    /// [`wrap_sync`](crate::command::wrap_sync)).
    async fn execute(
        &self,
        command: &str,
        params: Params,
        ctx: CommandContext,
    ) -> Result<Value, AgentError>;
}

impl std::fmt::Debug for dyn Extension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extension").field("name", &self.name()).finish()
    }
}

/// A shared extension.
pub type SharedExtension = Arc<dyn Extension>;

/// Get a parameter, with `null` treated as absent (Python's `param=None`).
pub fn param<'a>(params: &'a Params, name: &str) -> Option<&'a Value> {
    params.get(name).filter(|v| !v.is_null())
}

/// Get a string parameter; a non-string value is an `InvalidCommandParamsError`.
pub fn param_str<'a>(params: &'a Params, name: &str) -> Result<Option<&'a str>, AgentError> {
    match param(params, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(AgentError::invalid_params(format!(
            "{name} must be a string, got {}",
            crate::error::python_repr(other)
        ))),
    }
}

/// Interpret a parameter as a boolean the way oslo's `bool_from_string` does for strings.
pub fn param_bool(params: &Params, name: &str) -> Option<bool> {
    match param(params, name)? {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => Some(n.as_f64().unwrap_or(0.0) != 0.0),
        Value::String(s) => crate::config::parse_bool(s),
        _ => None,
    }
}
