//! The one [`Dispatcher`]: the single owner of command state.
//!
//! Rules (spec `ipa-agent.md` §2.3, `ironic-contract.md` §8):
//! * one global command lock; sync commands run under it, so concurrent requests queue;
//! * busy rule on the **last** recorded entry only: while it is `RUNNING`, any new command is
//!   refused with 409 `AgentIsBusy` and nothing is recorded;
//! * async commands are recorded `RUNNING` *before* they start, then spawned;
//! * the history is ordered and bounded: the last `command_history_size` results are kept, plus
//!   every result still `RUNNING` (IPA keeps all; Ironic only reads the latest entries), and
//!   recorded error texts are clipped ([`ErrorBody::bounded`](crate::error::ErrorBody::bounded));
//! * `InvalidContentError`-family errors are request errors (never recorded); every other failure
//!   becomes a recorded `FAILED` result whose error always serialises;
//! * a repeated idempotency key returns the stored result.

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures_util::FutureExt;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use crate::command::{
    CommandMode, CommandRequest, CommandResult, CommandSpec, CommandStatus, Params, wrap_async,
    wrap_sync,
};
use crate::error::AgentError;
use crate::events::{AgentEvent, EventBus};
use crate::extension::{CommandContext, SharedExtension};
use crate::hardware::{Step, StepKind};
use crate::services::{StatusInfo, TokenStore};

/// `GET /v1/status`: `{"started_at": <epoch float|null>, "version": "<x.y.z>"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// Epoch seconds when the agent started running, or `null` before that.
    pub started_at: Option<f64>,
    /// Agent version as reported to control planes.
    pub version: String,
}

/// What every transport talks to. Transports translate wire ↔ [`CommandRequest`] /
/// [`CommandResult`]; they never hold command state themselves.
#[async_trait]
pub trait Dispatcher: Send + Sync + 'static {
    /// Run (or, for async commands, start) a command.
    ///
    /// `Err` means the request itself was refused and nothing was recorded (400/404/409 in REST
    /// terms). `Ok` carries the recorded result, which may be `FAILED`.
    async fn execute(&self, request: CommandRequest) -> Result<CommandResult, AgentError>;

    /// One result by id.
    async fn get(&self, id: &str) -> Option<CommandResult>;

    /// Wait until the result with this id is final, then return it.
    async fn wait(&self, id: &str) -> Option<CommandResult>;

    /// All results, oldest first.
    async fn list(&self) -> Vec<CommandResult>;

    /// Whether `token` equals the agent token (both non-empty; constant-time comparison).
    fn authorize(&self, token: Option<&str>) -> bool;

    /// Agent status for `/v1/status`.
    fn status(&self) -> AgentStatus;

    /// Subscribe to command and agent events.
    fn subscribe(&self) -> broadcast::Receiver<AgentEvent>;
}

/// A shared dispatcher handle.
pub type SharedDispatcher = Arc<dyn Dispatcher>;

impl std::fmt::Debug for dyn Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dispatcher")
    }
}

/// The registered extensions, by name. Several plugins may contribute commands to one
/// extension name (e.g. `standby.sync` from the core, `standby.prepare_image` from the image
/// pipeline); a command resolves to the first fragment that declares it.
#[derive(Debug, Default)]
pub struct ExtensionSet {
    extensions: BTreeMap<String, Vec<SharedExtension>>,
}

impl ExtensionSet {
    /// Build from a list of extensions and fragments.
    pub fn new(list: impl IntoIterator<Item = SharedExtension>) -> Self {
        let mut extensions: BTreeMap<String, Vec<SharedExtension>> = BTreeMap::new();
        for e in list {
            extensions.entry(e.name().to_string()).or_default().push(e);
        }
        Self { extensions }
    }

    /// The extension that runs step `step` of `kind` itself, if any (see
    /// [`Extension::steps`](crate::extension::Extension::steps)).
    pub fn step_owner(&self, kind: StepKind, step: &str) -> Option<SharedExtension> {
        self.extensions
            .values()
            .flatten()
            .find(|e| e.steps(kind).iter().any(|s| s.step == step))
            .cloned()
    }

    /// Steps of `kind` run by extensions, keyed by the extension's class name.
    pub fn owned_steps(&self, kind: StepKind) -> Vec<(String, Vec<Step>)> {
        self.extensions
            .values()
            .flatten()
            .map(|e| (e.class_name().to_string(), e.steps(kind)))
            .filter(|(_, s)| !s.is_empty())
            .collect()
    }

    /// Whether an extension with this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.extensions.contains_key(name)
    }

    /// Names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.extensions.keys().map(String::as_str).collect()
    }

    /// Every `<ext>.<cmd>` with its mode, sorted.
    pub fn command_names(&self) -> Vec<(String, CommandMode)> {
        let mut v: Vec<_> = self
            .extensions
            .iter()
            .flat_map(|(n, frags)| {
                frags.iter().flat_map(move |f| {
                    f.commands().iter().map(move |c| (format!("{n}.{}", c.name), c.mode))
                })
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Resolve `<ext>.<cmd>` to the fragment and the command's spec.
    pub fn resolve(
        &self,
        ext_name: &str,
        cmd: &str,
    ) -> Result<(SharedExtension, CommandSpec), AgentError> {
        let frags = self.extensions.get(ext_name).ok_or_else(|| {
            AgentError::RequestedObjectNotFound { kind: "Extension".into(), id: ext_name.into() }
        })?;
        frags
            .iter()
            .find_map(|f| f.commands().iter().find(|c| c.name == cmd).map(|c| (f.clone(), *c)))
            .ok_or_else(|| AgentError::invalid_command(format!("Unknown command: {cmd}")))
    }

    /// Run a command to completion without recording it (IPA's flow extension uses a private
    /// dispatcher whose results are not visible through the API). Request-time errors are
    /// returned as `Err`; everything else as a final result.
    pub async fn run_unrecorded(
        self: &Arc<Self>,
        request: &CommandRequest,
        events: &EventBus,
    ) -> Result<CommandResult, AgentError> {
        let (ext_name, cmd) = request.split_name()?;
        let (ext, spec) = self.resolve(ext_name, cmd)?;
        let mut result = CommandResult::running(cmd);
        if let Err(e) = prepare(&*ext, &spec, &request.params, self) {
            if e.is_invalid_content() {
                return Err(e);
            }
            finish_sync(&mut result, Err(e));
            return Ok(result);
        }
        let ctx = CommandContext::new(result.id.clone(), request.name.clone(), events.clone())
            .with_peers(self.clone());
        let outcome = run_guarded(ext, cmd.to_string(), request.params.clone(), ctx).await;
        match spec.mode {
            CommandMode::Sync => {
                if let Err(e) = &outcome
                    && e.is_invalid_content()
                {
                    return Err(e.clone());
                }
                finish_sync(&mut result, outcome)
            }
            CommandMode::Async => finish_async(&mut result, outcome),
        }
        Ok(result)
    }
}

/// Bind keywords, then run the extension's validator.
fn prepare(
    ext: &dyn crate::extension::Extension,
    spec: &CommandSpec,
    params: &Params,
    peers: &ExtensionSet,
) -> Result<(), AgentError> {
    spec.bind(ext.class_name(), params)?;
    ext.validate(spec.name, params, peers)
}

/// Run a handler, turning a panic into a `CommandExecutionError` instead of losing the result.
async fn run_guarded(
    ext: SharedExtension,
    cmd: String,
    params: Params,
    ctx: CommandContext,
) -> Result<Value, AgentError> {
    let fut = async move { ext.execute(&cmd, params, ctx).await };
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(panic = %what, "command handler panicked");
            Err(AgentError::execution(format!("internal error: command handler panicked: {what}")))
        }
    }
}

fn finish_sync(result: &mut CommandResult, outcome: Result<Value, AgentError>) {
    match outcome {
        Ok(v) => {
            result.command_status = CommandStatus::Succeeded;
            result.command_result = wrap_sync(v);
        }
        Err(e) => {
            result.command_status = CommandStatus::Failed;
            result.command_error = Some(e.to_body().bounded());
            result.command_result = Value::Null;
        }
    }
}

fn finish_async(result: &mut CommandResult, outcome: Result<Value, AgentError>) {
    match outcome {
        Ok(v) => {
            result.command_status = CommandStatus::Succeeded;
            result.command_result = wrap_async(&result.command_name, v);
        }
        Err(e @ AgentError::VersionMismatch { .. }) => {
            result.command_status = CommandStatus::CleanVersionMismatch;
            result.command_error = Some(e.to_body().bounded());
            result.command_result = Value::Null;
        }
        Err(e) => {
            // IPA wraps non-RESTError exceptions from async commands into CommandExecutionError.
            let e = if e.is_internal() { AgentError::execution(e.to_string()) } else { e };
            result.command_status = CommandStatus::Failed;
            result.command_error = Some(e.to_body().bounded());
            result.command_result = Value::Null;
        }
    }
}

/// Results kept by default (`command_history_size`).
pub const DEFAULT_HISTORY_SIZE: usize = 100;

#[derive(Debug)]
struct History {
    entries: IndexMap<String, watch::Sender<CommandResult>>,
    idempotency: HashMap<String, String>,
    limit: usize,
}

impl Default for History {
    fn default() -> Self {
        Self { entries: IndexMap::new(), idempotency: HashMap::new(), limit: DEFAULT_HISTORY_SIZE }
    }
}

impl History {
    /// Drop the oldest finished results beyond the limit; running ones always stay.
    fn prune(&mut self) {
        let mut excess = self.entries.len().saturating_sub(self.limit.max(1));
        if excess == 0 {
            return;
        }
        let newest = self.entries.last().map(|(id, _)| id.clone());
        let mut dropped = Vec::new();
        self.entries.retain(|id, tx| {
            if excess > 0 && Some(id) != newest.as_ref() && tx.borrow().command_status.is_done() {
                excess -= 1;
                dropped.push(id.clone());
                false
            } else {
                true
            }
        });
        if !dropped.is_empty() {
            self.idempotency.retain(|_, id| !dropped.contains(id));
        }
    }

    fn last_running(&self) -> Option<String> {
        let (_, last) = self.entries.last()?;
        let r = last.borrow();
        (!r.command_status.is_done()).then(|| r.command_name.clone())
    }
}

/// The dispatcher implementation.
#[derive(Debug)]
pub struct CommandDispatcher {
    extensions: Arc<ExtensionSet>,
    history: Arc<Mutex<History>>,
    command_lock: tokio::sync::Mutex<()>,
    events: EventBus,
    token: TokenStore,
    status: StatusInfo,
}

impl CommandDispatcher {
    /// A dispatcher over `extensions`, publishing on `events`, authorising against `token`.
    pub fn new(
        extensions: Arc<ExtensionSet>,
        events: EventBus,
        token: TokenStore,
        status: StatusInfo,
    ) -> Self {
        Self {
            extensions,
            history: Arc::default(),
            command_lock: tokio::sync::Mutex::new(()),
            events,
            token,
            status,
        }
    }

    /// Keep at most `size` finished results (at least 1); results still running are never
    /// dropped.
    pub fn with_history_size(self, size: usize) -> Self {
        self.history.lock().unwrap_or_else(|p| p.into_inner()).limit = size.max(1);
        self
    }

    fn record(&self, result: &CommandResult, key: Option<&str>) -> watch::Sender<CommandResult> {
        let (tx, _) = watch::channel(result.clone());
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        h.entries.insert(result.id.clone(), tx.clone());
        if let Some(k) = key {
            h.idempotency.insert(k.to_string(), result.id.clone());
        }
        h.prune();
        tx
    }

    fn lookup(&self, id: &str) -> Option<watch::Sender<CommandResult>> {
        self.history.lock().unwrap_or_else(|p| p.into_inner()).entries.get(id).cloned()
    }

    fn publish_finished(
        &self,
        r: &CommandResult,
        name: &str,
        mode: CommandMode,
        started: std::time::Instant,
    ) {
        self.events.publish(AgentEvent::CommandFinished {
            id: r.id.clone(),
            name: name.to_string(),
            mode,
            status: r.command_status,
            duration_secs: Some(started.elapsed().as_secs_f64()),
        });
    }

    /// Record a result that is final when `execute` returns (a sync command, or a failed
    /// validation); `started` is when the command began.
    fn record_final(
        &self,
        result: CommandResult,
        request: &CommandRequest,
        mode: CommandMode,
        started: std::time::Instant,
    ) -> CommandResult {
        self.record(&result, request.idempotency_key.as_deref());
        self.events.publish(AgentEvent::CommandStarted {
            id: result.id.clone(),
            name: request.name.clone(),
            mode,
        });
        self.publish_finished(&result, &request.name, mode, started);
        result
    }
}

#[async_trait]
impl Dispatcher for CommandDispatcher {
    async fn execute(&self, request: CommandRequest) -> Result<CommandResult, AgentError> {
        let _guard = self.command_lock.lock().await;

        if let Some(key) = &request.idempotency_key {
            let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(tx) = h.idempotency.get(key).and_then(|id| h.entries.get(id)) {
                let stored = tx.borrow().clone();
                tracing::info!(command = %request.name, id = %stored.id, "idempotent repeat; returning stored result");
                return Ok(stored);
            }
        }

        let (ext_name, cmd) = request.split_name()?;
        let (ext_name, cmd) = (ext_name.to_string(), cmd.to_string());
        if let Some(running) = self.history.lock().unwrap_or_else(|p| p.into_inner()).last_running()
        {
            return Err(AgentError::AgentIsBusy { command: running });
        }
        let (ext, spec) = self.extensions.resolve(&ext_name, &cmd)?;

        let started = std::time::Instant::now();
        let mut result = CommandResult::running(&cmd);
        if let Err(e) = prepare(&*ext, &spec, &request.params, &self.extensions) {
            if e.is_invalid_content() {
                return Err(e);
            }
            finish_sync(&mut result, Err(e));
            return Ok(self.record_final(result, &request, spec.mode, started));
        }

        let ctx = CommandContext::new(result.id.clone(), request.name.clone(), self.events.clone())
            .with_peers(self.extensions.clone());
        match spec.mode {
            CommandMode::Sync => {
                let outcome = run_guarded(ext, cmd.clone(), request.params.clone(), ctx).await;
                if let Err(e) = &outcome
                    && e.is_invalid_content()
                {
                    return Err(e.clone());
                }
                finish_sync(&mut result, outcome);
                Ok(self.record_final(result, &request, CommandMode::Sync, started))
            }
            CommandMode::Async => {
                let tx = self.record(&result, request.idempotency_key.as_deref());
                self.events.publish(AgentEvent::CommandStarted {
                    id: result.id.clone(),
                    name: request.name.clone(),
                    mode: CommandMode::Async,
                });
                let events = self.events.clone();
                let name = request.name.clone();
                let params = request.params;
                let mut final_result = result.clone();
                tokio::spawn(async move {
                    let outcome = run_guarded(ext, cmd, params, ctx).await;
                    finish_async(&mut final_result, outcome);
                    tracing::info!(
                        command = %name,
                        id = %final_result.id,
                        status = ?final_result.command_status,
                        "async command finished"
                    );
                    let status = final_result.command_status;
                    let id = final_result.id.clone();
                    tx.send_replace(final_result);
                    events.publish(AgentEvent::CommandFinished {
                        id,
                        name,
                        mode: CommandMode::Async,
                        status,
                        duration_secs: Some(started.elapsed().as_secs_f64()),
                    });
                });
                Ok(result)
            }
        }
    }

    async fn get(&self, id: &str) -> Option<CommandResult> {
        self.lookup(id).map(|tx| tx.borrow().clone())
    }

    async fn wait(&self, id: &str) -> Option<CommandResult> {
        let tx = self.lookup(id)?;
        let mut rx = tx.subscribe();
        let r = rx.wait_for(|r| r.command_status.is_done()).await.ok()?.clone();
        Some(r)
    }

    async fn list(&self) -> Vec<CommandResult> {
        let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        h.entries.values().map(|tx| tx.borrow().clone()).collect()
    }

    fn authorize(&self, token: Option<&str>) -> bool {
        self.token.matches(token)
    }

    fn status(&self) -> AgentStatus {
        self.status.snapshot()
    }

    fn subscribe(&self) -> broadcast::Receiver<AgentEvent> {
        self.events.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Param;
    use crate::extension::Extension;
    use serde_json::json;
    use tokio::sync::Semaphore;

    /// A test extension: `sync` echoes, `slow` waits for a permit, `fails`/`panics`/`internal`
    /// misbehave, `strict` validates.
    #[derive(Debug)]
    struct TestExt {
        gate: Arc<Semaphore>,
    }

    static CMDS: &[CommandSpec] = &[
        CommandSpec::sync("echo", &[Param::opt("value")]),
        CommandSpec::sync("internal", &[]),
        CommandSpec::sync("bad_params", &[]),
        CommandSpec::asynchronous("slow", &[Param::opt("value")]),
        CommandSpec::asynchronous("fails", &[]),
        CommandSpec::asynchronous("panics", &[]),
        CommandSpec::asynchronous("mismatch", &[]),
        CommandSpec::asynchronous("strict", &[Param::req("x")]),
    ];

    #[async_trait]
    impl Extension for TestExt {
        fn name(&self) -> &'static str {
            "test"
        }
        fn class_name(&self) -> &'static str {
            "TestExtension"
        }
        fn commands(&self) -> &'static [CommandSpec] {
            CMDS
        }
        fn validate(
            &self,
            command: &str,
            params: &Params,
            _: &ExtensionSet,
        ) -> Result<(), AgentError> {
            if command == "strict" && params.get("x") != Some(&json!(1)) {
                if params.get("x") == Some(&json!("boom")) {
                    return Err(AgentError::RequestedObjectNotFound {
                        kind: "Extension".into(),
                        id: "boom".into(),
                    });
                }
                return Err(AgentError::invalid_params("x must be 1"));
            }
            Ok(())
        }
        async fn execute(
            &self,
            command: &str,
            params: Params,
            ctx: CommandContext,
        ) -> Result<Value, AgentError> {
            match command {
                "echo" => Ok(params.get("value").cloned().unwrap_or(Value::Null)),
                "internal" => Err(AgentError::internal("OSError", "disk on fire")),
                "bad_params" => Err(AgentError::invalid_params("nope")),
                "slow" => {
                    ctx.progress(crate::events::Progress {
                        phase: "wait".into(),
                        ..Default::default()
                    });
                    let _p = self.gate.acquire().await.expect("gate");
                    Ok(params.get("value").cloned().unwrap_or(json!("done")))
                }
                "fails" => Err(AgentError::internal("ValueError", "bad thing")),
                "panics" => panic!("kaboom"),
                "mismatch" => {
                    Err(AgentError::VersionMismatch { current: "{}".into(), ironic: "{}".into() })
                }
                _ => Ok(json!("strict ok")),
            }
        }
    }

    fn dispatcher() -> (CommandDispatcher, Arc<Semaphore>, TokenStore) {
        let gate = Arc::new(Semaphore::new(0));
        let set = Arc::new(ExtensionSet::new([
            Arc::new(TestExt { gate: gate.clone() }) as SharedExtension
        ]));
        let token = TokenStore::new(Some("tok".into()));
        let d = CommandDispatcher::new(
            set,
            EventBus::default(),
            token.clone(),
            StatusInfo::new("13.0.0"),
        );
        (d, gate, token)
    }

    fn req(name: &str, params: Value) -> CommandRequest {
        CommandRequest::new(name, params.as_object().cloned().unwrap_or_default())
    }

    #[tokio::test]
    async fn sync_command_is_final_and_string_wrapped() {
        let (d, _, _) = dispatcher();
        let r = d.execute(req("test.echo", json!({"value": "hi"}))).await.unwrap();
        assert_eq!(r.command_name, "echo");
        assert_eq!(r.command_status, CommandStatus::Succeeded);
        assert_eq!(r.command_result, json!({"result": "hi"}));
        assert_eq!(d.list().await, vec![r.clone()]);
        assert_eq!(d.get(&r.id).await, Some(r));
    }

    #[tokio::test]
    async fn async_command_runs_busy_rule_applies_and_wait_returns_final() {
        let (d, gate, _) = dispatcher();
        let mut events = d.subscribe();
        let r = d.execute(req("test.slow", json!({"value": "w"}))).await.unwrap();
        assert_eq!(r.command_status, CommandStatus::Running);
        // The entry is in the list before it finishes.
        assert_eq!(d.list().await.last().unwrap().command_status, CommandStatus::Running);
        // Anything else, even an unknown extension, is refused while it runs.
        let busy = d.execute(req("nope.x", json!({}))).await.unwrap_err();
        assert_eq!(busy.to_string(), "Agent is busy: executing command slow");
        let busy = d.execute(req("test.echo", json!({}))).await.unwrap_err();
        assert_eq!(busy.code(), 409);
        assert_eq!(d.list().await.len(), 1, "busy refusals are not recorded");
        gate.add_permits(1);
        let done = d.wait(&r.id).await.unwrap();
        assert_eq!(done.command_status, CommandStatus::Succeeded);
        assert_eq!(done.command_result, json!({"result": "slow: w"}));
        // Events: started, progress, finished(async).
        let mut topics = Vec::new();
        while topics.len() < 3 {
            topics.push(events.recv().await.unwrap().topic());
        }
        assert_eq!(topics, ["command.started", "command.progress", "command.finished"]);
        // Not busy any more.
        assert!(d.execute(req("test.echo", json!({}))).await.is_ok());
    }

    #[tokio::test]
    async fn history_keeps_insertion_order() {
        let (d, gate, _) = dispatcher();
        gate.add_permits(10);
        let mut ids = Vec::new();
        for i in 0..5 {
            let name = if i % 2 == 0 { "test.echo" } else { "test.slow" };
            let r = d.execute(req(name, json!({"value": i.to_string()}))).await.unwrap();
            d.wait(&r.id).await.unwrap();
            ids.push(r.id);
        }
        let listed: Vec<_> = d.list().await.into_iter().map(|r| r.id).collect();
        assert_eq!(listed, ids);
    }

    #[tokio::test]
    async fn history_keeps_only_the_last_n_results_and_the_running_one() {
        let (d, gate, _) = dispatcher();
        let d = d.with_history_size(3);
        let mut ids = Vec::new();
        for i in 0..10 {
            let r = d.execute(req("test.echo", json!({"value": i.to_string()}))).await.unwrap();
            ids.push(r.id);
        }
        let listed: Vec<_> = d.list().await.into_iter().map(|r| r.id).collect();
        assert_eq!(listed, ids[7..]);
        assert!(d.get(&ids[0]).await.is_none(), "the oldest result was dropped");
        assert!(d.get(&ids[9]).await.is_some());
        // A running command is kept (and stays the last entry for the busy rule).
        let slow = d.execute(req("test.slow", json!({}))).await.unwrap();
        let listed: Vec<_> = d.list().await.into_iter().map(|r| r.id).collect();
        assert_eq!(listed, [ids[8].clone(), ids[9].clone(), slow.id.clone()]);
        assert!(d.execute(req("test.echo", json!({}))).await.is_err(), "still busy");
        gate.add_permits(1);
        assert_eq!(d.wait(&slow.id).await.unwrap().command_status, CommandStatus::Succeeded);
    }

    #[tokio::test]
    async fn a_huge_unknown_parameter_name_is_clipped_in_the_recorded_error() {
        let (d, _, _) = dispatcher();
        let name = "x".repeat(8 << 20);
        let mut params = Params::new();
        params.insert(name.clone(), json!(1));
        let r = d
            .execute(CommandRequest { name: "test.echo".into(), params, idempotency_key: None })
            .await
            .unwrap();
        let e = r.command_error.unwrap();
        assert_eq!(e.kind, "TypeError");
        assert!(e.details.len() < 1024, "{} bytes kept", e.details.len());
        assert!(e.details.contains("bytes cut"), "{}", &e.details[..200]);
        let kept = serde_json::to_string(&d.list().await).unwrap().len();
        assert!(kept < 4096, "the history holds {kept} bytes for one failed command");
    }

    #[tokio::test]
    async fn request_errors_are_not_recorded() {
        let (d, _, _) = dispatcher();
        let e = d.execute(req("nodot", json!({}))).await.unwrap_err();
        assert_eq!(e.code(), 400);
        let e = d.execute(req("nope.x", json!({}))).await.unwrap_err();
        assert_eq!(e.to_string(), "Not found: Extension with id nope not found.");
        let e = d.execute(req("test.nope", json!({}))).await.unwrap_err();
        assert_eq!(e.to_string(), "Invalid command: Unknown command: nope");
        let e = d.execute(req("test.strict", json!({"x": 2}))).await.unwrap_err();
        assert_eq!(e.to_string(), "Invalid command parameters: x must be 1");
        let e = d.execute(req("test.bad_params", json!({}))).await.unwrap_err();
        assert_eq!(e.code(), 400);
        assert!(d.list().await.is_empty());
    }

    #[tokio::test]
    async fn unknown_params_give_a_recorded_type_error_that_serialises() {
        let (d, _, _) = dispatcher();
        for name in ["test.echo", "test.slow"] {
            let r = d.execute(req(name, json!({"bogus": 1}))).await.unwrap();
            assert_eq!(r.command_status, CommandStatus::Failed);
            let err = r.command_error.clone().unwrap();
            assert_eq!(err.kind, "TypeError");
            assert!(err.details.contains("unexpected keyword argument 'bogus'"), "{}", err.details);
        }
        // The list still serialises (IPA's poisoned-list quirk is fixed).
        let list = serde_json::to_value(d.list().await).unwrap();
        assert_eq!(list.as_array().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn non_rest_validator_error_is_recorded_as_failed() {
        let (d, _, _) = dispatcher();
        let r = d.execute(req("test.strict", json!({"x": "boom"}))).await.unwrap();
        assert_eq!(r.command_status, CommandStatus::Failed);
        assert_eq!(r.command_error.unwrap().code, 404);
    }

    #[tokio::test]
    async fn sync_internal_error_keeps_class_async_is_wrapped() {
        let (d, _, _) = dispatcher();
        let r = d.execute(req("test.internal", json!({}))).await.unwrap();
        let e = r.command_error.unwrap();
        assert_eq!((e.kind.as_str(), e.code, e.details.as_str()), ("OSError", 500, "disk on fire"));
        let r = d.execute(req("test.fails", json!({}))).await.unwrap();
        let r = d.wait(&r.id).await.unwrap();
        let e = r.command_error.unwrap();
        assert_eq!(e.kind, "CommandExecutionError");
        assert_eq!(e.details, "bad thing");
        assert_eq!(r.command_result, Value::Null);
    }

    #[tokio::test]
    async fn panicking_command_fails_instead_of_hanging() {
        let (d, _, _) = dispatcher();
        let r = d.execute(req("test.panics", json!({}))).await.unwrap();
        let r = d.wait(&r.id).await.unwrap();
        assert_eq!(r.command_status, CommandStatus::Failed);
        assert!(r.command_error.unwrap().details.contains("kaboom"));
    }

    #[tokio::test]
    async fn version_mismatch_status() {
        let (d, _, _) = dispatcher();
        let r = d.execute(req("test.mismatch", json!({}))).await.unwrap();
        let r = d.wait(&r.id).await.unwrap();
        assert_eq!(r.command_status, CommandStatus::CleanVersionMismatch);
        assert_eq!(r.command_error.unwrap().kind, "VersionMismatch");
    }

    #[tokio::test]
    async fn idempotency_key_returns_stored_result_even_while_running() {
        let (d, gate, _) = dispatcher();
        let mut r1 = req("test.slow", json!({}));
        r1.idempotency_key = Some("k1".into());
        let a = d.execute(r1.clone()).await.unwrap();
        let b = d.execute(r1.clone()).await.unwrap();
        assert_eq!(a.id, b.id, "repeat while running is not busy, it is the same command");
        gate.add_permits(1);
        d.wait(&a.id).await;
        let c = d.execute(r1).await.unwrap();
        assert_eq!(c.id, a.id);
        assert_eq!(c.command_status, CommandStatus::Succeeded);
        assert_eq!(d.list().await.len(), 1);
        let mut r2 = req("test.echo", json!({"value": "x"}));
        r2.idempotency_key = Some("k2".into());
        let s1 = d.execute(r2.clone()).await.unwrap();
        let s2 = d.execute(r2).await.unwrap();
        assert_eq!(s1, s2);
        assert_eq!(d.list().await.len(), 2);
    }

    #[tokio::test]
    async fn concurrent_sync_commands_queue_instead_of_409() {
        let (d, _, _) = dispatcher();
        let d = Arc::new(d);
        let mut handles = Vec::new();
        for i in 0..20 {
            let d = d.clone();
            handles.push(tokio::spawn(async move {
                d.execute(req("test.echo", json!({"value": i}))).await
            }));
        }
        for h in handles {
            assert!(h.await.unwrap().is_ok());
        }
        assert_eq!(d.list().await.len(), 20);
    }

    #[tokio::test]
    async fn authorization_and_status() {
        let (d, _, token) = dispatcher();
        assert!(d.authorize(Some("tok")));
        assert!(!d.authorize(Some("tok2")));
        assert!(!d.authorize(None));
        token.set("");
        assert!(!d.authorize(Some("")));
        assert_eq!(d.status().started_at, None);
        assert_eq!(d.status().version, "13.0.0");
    }
}
