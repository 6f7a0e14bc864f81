use std::sync::Arc;

use async_trait::async_trait;
use ipa_core::command::{CommandSpec, Param, Params};
use ipa_core::dispatcher::{CommandDispatcher, ExtensionSet, SharedDispatcher};
use ipa_core::error::AgentError;
use ipa_core::extension::{CommandContext, Extension, SharedExtension};
use ipa_core::services::AgentServices;
use ipa_core::transport::{ReadyBoard, ReadyInfo, ServerTls, Transport, TransportContext};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

/// The token the harness's dispatcher accepts.
pub const TEST_TOKEN: &str = "conformance-token-0123456789abcdefghijklmnop";

/// Log to the test's captured output (idempotent).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// `conformance.*`: `echo` (sync), `slow` (async, held by the gate), `fail` (async, fails),
/// `fail_sync` (sync, fails), `needs_int` (validator: `x` must be an integer).
#[derive(Debug)]
pub struct ConformanceExtension {
    gate: Arc<Semaphore>,
}

static COMMANDS: &[CommandSpec] = &[
    CommandSpec::sync("echo", &[Param::opt("value")]),
    CommandSpec::asynchronous("slow", &[Param::opt("value")]),
    CommandSpec::asynchronous("fail", &[]),
    CommandSpec::sync("fail_sync", &[]),
    CommandSpec::sync("needs_int", &[Param::req("x")]),
];

#[async_trait]
impl Extension for ConformanceExtension {
    fn name(&self) -> &'static str {
        "conformance"
    }
    fn class_name(&self) -> &'static str {
        "ConformanceExtension"
    }
    fn commands(&self) -> &'static [CommandSpec] {
        COMMANDS
    }
    fn validate(&self, command: &str, params: &Params, _: &ExtensionSet) -> Result<(), AgentError> {
        if command == "needs_int" && !params.get("x").is_some_and(Value::is_i64) {
            return Err(AgentError::invalid_params("x must be an integer"));
        }
        Ok(())
    }
    async fn execute(
        &self,
        command: &str,
        params: Params,
        _ctx: CommandContext,
    ) -> Result<Value, AgentError> {
        match command {
            "echo" => Ok(params.get("value").cloned().unwrap_or(Value::Null)),
            "slow" => {
                let _permit =
                    self.gate.acquire().await.map_err(|_| AgentError::execution("gate closed"))?;
                Ok(params.get("value").cloned().unwrap_or(json!("done")))
            }
            "fail" => Err(AgentError::execution("requested failure")),
            "fail_sync" => Err(AgentError::internal("RuntimeError", "requested sync failure")),
            _ => Ok(json!({"x": params.get("x")})),
        }
    }
}

/// A dispatcher with the conformance extension, plus a running transport.
#[derive(Debug)]
pub struct Harness {
    /// The dispatcher under test.
    pub dispatcher: Arc<CommandDispatcher>,
    /// Permits for `conformance.slow`.
    pub gate: Arc<Semaphore>,
    /// Services (sandboxed in a temp dir).
    pub services: Arc<AgentServices>,
    /// Cancelled on drop: stops the transport.
    pub shutdown: CancellationToken,
    /// Identity published to transports.
    pub identity: watch::Sender<String>,
    /// Ready reports.
    pub ready: ReadyBoard,
    _dir: tempfile::TempDir,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    /// A harness whose dispatcher knows [`TEST_TOKEN`].
    pub fn new() -> Self {
        Self::with_extensions(Vec::new())
    }

    /// A harness with extra extensions next to `conformance`.
    pub fn with_extensions(extra: Vec<SharedExtension>) -> Self {
        init_tracing();
        let dir = tempfile::tempdir().expect("tempdir");
        let services = AgentServices::for_tests(dir.path());
        services.token.set(TEST_TOKEN);
        services.status.mark_started();
        let gate = Arc::new(Semaphore::new(0));
        let mut list: Vec<SharedExtension> =
            vec![Arc::new(ConformanceExtension { gate: gate.clone() })];
        list.extend(extra);
        let set = Arc::new(ExtensionSet::new(list));
        let dispatcher = Arc::new(
            CommandDispatcher::new(
                set,
                services.events.clone(),
                services.token.clone(),
                services.status.clone(),
            )
            .with_history_size(services.config.agent.command_history_size),
        );
        Self {
            dispatcher,
            gate,
            services,
            shutdown: CancellationToken::new(),
            identity: watch::channel("agent-under-test".to_string()).0,
            ready: ReadyBoard::default(),
            _dir: dir,
        }
    }

    /// The dispatcher as transports see it.
    pub fn shared(&self) -> SharedDispatcher {
        self.dispatcher.clone()
    }

    /// Let `n` held `conformance.slow` commands finish.
    pub fn release(&self, n: usize) {
        self.gate.add_permits(n);
    }

    /// What a transport is built with: this harness's dispatcher, shutdown, identity, ready
    /// board and metrics, and `tls`.
    pub fn context(&self, tls: Option<ServerTls>) -> TransportContext {
        TransportContext {
            dispatcher: self.shared(),
            shutdown: self.shutdown.child_token(),
            tls,
            identity: self.identity.subscribe(),
            ready: self.ready.clone(),
            metrics: self.services.metrics.clone(),
        }
    }

    /// Build and spawn `transport`; returns its ready report.
    pub async fn serve(&self, transport: &dyn Transport, tls: Option<ServerTls>) -> ReadyInfo {
        let ctx = self.context(tls);
        let before = self.ready.all().len();
        let fut = transport.build(ctx).await.expect("transport builds");
        tokio::spawn(async move {
            if let Err(e) = fut.await {
                tracing::error!(error = %e, "transport stopped with an error");
            }
        });
        self.ready.wait_for(before + 1).await;
        self.ready.all().pop().expect("ready report")
    }
}
