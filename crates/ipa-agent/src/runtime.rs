//! Assembly and lifetime of one agent process.
//!
//! ```text
//! config (figment) ─► run mode (sandbox | real) ─► AgentServices
//!   ─► hardware managers (registry → probe → rank → initialize)
//!   ─► extensions (registry → ExtensionSet) ─► CommandDispatcher (+ metrics collector on the bus)
//!   ─► [control plane: inspection, lookup, TLS decisions]
//!   ─► transports (registry → config → build(ctx) → serve until shutdown)
//!   ─► wait for SIGTERM / stop (rescue) / lockdown
//! ```

use std::sync::Arc;
use std::time::Duration;

use figment::Figment;
use ipa_core::command::CommandResult;
use ipa_core::config::AgentConfig;
use ipa_core::dispatcher::{CommandDispatcher, Dispatcher, ExtensionSet};
use ipa_core::hardware::HardwareManagers;
use ipa_core::os::{
    CommandRunner, ExecRequest, PowerController, RecordingPower, SandboxRunner, SystemPower,
    SystemRunner,
};
use ipa_core::registry;
use ipa_core::services::{AgentServices, RunMode, ServeState};
use ipa_core::transport::{ReadyBoard, ServerTls, TransportContext};
use ipa_core::{AgentError, TransportError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::environment::{Environment, ModeError, decide_mode};

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ipa_core::config::ConfigError),
    /// Run mode.
    #[error(transparent)]
    Mode(#[from] ModeError),
    /// No usable hardware manager, or one failed to initialise.
    #[error("hardware managers: {0}")]
    Hardware(#[source] AgentError),
    /// A transport could not start.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// TLS files unreadable.
    #[error("cannot read TLS file {path}")]
    TlsFile {
        /// File.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// One assembled agent.
#[derive(Debug)]
pub struct Agent {
    /// Shared services.
    pub services: Arc<AgentServices>,
    /// Ranked hardware managers.
    pub hardware: Arc<HardwareManagers>,
    /// Extensions.
    pub extensions: Arc<ExtensionSet>,
    /// The dispatcher.
    pub dispatcher: Arc<CommandDispatcher>,
    identity: watch::Sender<String>,
    shutdown: CancellationToken,
    ready: ReadyBoard,
}

fn make_os(mode: &RunMode) -> (Arc<dyn CommandRunner>, Arc<dyn PowerController>) {
    match mode {
        RunMode::Real => (Arc::new(SystemRunner), Arc::new(SystemPower)),
        RunMode::Sandbox { dir } => (
            Arc::new(SandboxRunner::new(SystemRunner, dir.clone())),
            Arc::new(RecordingPower::new(dir.join("power.log"))),
        ),
    }
}

impl Agent {
    /// Build services, hardware managers, extensions and the dispatcher.
    pub async fn build(
        config: AgentConfig,
        figment: Figment,
        env: &Environment,
    ) -> Result<Self, StartError> {
        let mode = decide_mode(&config, env)?;
        match &mode {
            RunMode::Sandbox { dir } => tracing::info!(
                sandbox = %dir.display(),
                "SANDBOX mode: disks are files under {}/disks, power actions are recorded, nothing \
                 outside the sandbox is written",
                dir.display()
            ),
            RunMode::Real => {
                tracing::warn!("REAL hardware mode: disks, bootloader and power are real")
            }
        }
        let (runner, power) = make_os(&mode);
        Self::build_with(config, figment, mode, runner, power).await
    }

    /// Build with explicit OS seams (tests, embedding).
    pub async fn build_with(
        config: AgentConfig,
        figment: Figment,
        mode: RunMode,
        runner: Arc<dyn CommandRunner>,
        power: Arc<dyn PowerController>,
    ) -> Result<Self, StartError> {
        let services = AgentServices::new(config, figment, mode, runner, power);
        services.status.mark_started();

        let mut candidates = Vec::new();
        for d in registry::hardware_managers() {
            match (d.build)(&services) {
                Ok(m) => candidates.push(m),
                Err(e) => {
                    tracing::error!(manager = d.name, error = %e, "hardware manager not loaded");
                    return Err(StartError::Config(e));
                }
            }
        }
        let hardware =
            Arc::new(HardwareManagers::probe(candidates).await.map_err(StartError::Hardware)?);
        hardware.initialize().await.map_err(StartError::Hardware)?;
        for r in hardware.ranked() {
            tracing::info!(
                manager = r.manager.name(),
                support = r.support.0,
                "hardware manager loaded"
            );
        }
        let delay = services.config.agent.hardware_initialization_delay;
        if delay > 0 {
            tokio::time::sleep(Duration::from_secs(delay)).await;
        }

        let extensions = Arc::new(ExtensionSet::new(
            registry::extensions().iter().map(|d| (d.build)(&services, &hardware)),
        ));
        let dispatcher = Arc::new(
            CommandDispatcher::new(
                extensions.clone(),
                services.events.clone(),
                services.token.clone(),
                services.status.clone(),
            )
            .with_history_size(services.config.agent.command_history_size),
        );
        // Command and erase metrics come from the event bus; the task ends with the bus.
        services
            .metrics
            .spawn_collector(&services.events, extensions.command_names().into_iter().map(|c| c.0));

        let identity = watch::channel(initial_identity(&services, &hardware).await).0;
        Ok(Self {
            services,
            hardware,
            extensions,
            dispatcher,
            identity,
            shutdown: CancellationToken::new(),
            ready: ReadyBoard::default(),
        })
    }

    /// Server TLS from the static `tls_cert_file`/`tls_key_file` options, if set.
    pub fn static_tls(&self) -> Result<Option<ServerTls>, StartError> {
        let c = &self.services.config;
        let (Some(cert), Some(key)) = (&c.api.tls_cert_file, &c.api.tls_key_file) else {
            return Ok(None);
        };
        let read = |p: &std::path::Path| {
            std::fs::read_to_string(p)
                .map_err(|source| StartError::TlsFile { path: p.to_path_buf(), source })
        };
        let settings = self.services.ironic_settings();
        Ok(Some(ServerTls {
            cert_pem: read(cert)?,
            key_pem: read(key)?,
            min_version: settings.tls_min_version.unwrap_or_else(|| c.api.tls_min_version.clone()),
            cipher_suites: settings.tls_cipher_suites.or_else(|| c.api.tls_cipher_suites.clone()),
        }))
    }

    /// Build every configured transport and spawn it; returns once all reported ready.
    pub async fn start_transports(
        &self,
        tls: Option<ServerTls>,
    ) -> Result<Vec<JoinHandle<()>>, StartError> {
        let mut handles = Vec::new();
        let mut started = 0;
        for d in registry::transports() {
            let Some(t) = (d.from_config)(&self.services.figment, &self.services.config)? else {
                tracing::info!(transport = d.name, "transport not configured");
                continue;
            };
            let ctx = TransportContext {
                dispatcher: self.dispatcher.clone(),
                shutdown: self.shutdown.child_token(),
                tls: tls.clone(),
                identity: self.identity.subscribe(),
                ready: self.ready.clone(),
                metrics: self.services.metrics.clone(),
            };
            let fut = t.build(ctx).await?;
            let name = d.name;
            handles.push(tokio::spawn(async move {
                if let Err(e) = fut.await {
                    tracing::error!(transport = name, error = %e, "transport stopped with an error");
                }
            }));
            started += 1;
        }
        if started == 0 {
            tracing::warn!("no transport is configured: the agent cannot be driven");
        }
        self.ready.wait_for(started).await;
        Ok(handles)
    }

    /// Keep the broker identity equal to the node UUID once lookup has cached a node.
    pub fn follow_node_identity(&self) {
        let mut rx = self.services.node.watch_uuid();
        let tx = self.identity.clone();
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let uuid = rx.borrow().clone();
                if let Some(u) = uuid {
                    tracing::info!(identity = %u, "agent identity is now the node UUID");
                    tx.send_replace(u);
                }
            }
        });
    }

    /// The readiness board (endpoints of the transports).
    pub fn ready(&self) -> &ReadyBoard {
        &self.ready
    }

    /// The shutdown token (cancel to stop the transports).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serve until SIGTERM/SIGINT, a rescue stop, or a lockdown.
    ///
    /// A signal that arrives while a command is still running abandons it: each one is logged
    /// at ERROR (an image write additionally says the device was left unbootable) and
    /// [`Stopped::exit_code`] is non-zero, so a service manager sees the interruption.
    pub async fn serve_until_stopped(&self, handles: Vec<JoinHandle<()>>) -> Stopped {
        let mut control = self.services.control.watch();
        let (state, signal) = tokio::select! {
            s = wait_signal() => { tracing::info!(signal = s, "shutting down"); (ServeState::Stop, Some(s)) }
            s = async {
                let _ = control.wait_for(|s| *s != ServeState::Serving).await;
                *control.borrow()
            } => (s, None),
        };
        let abandoned: Vec<CommandResult> = match signal {
            Some(_) => self
                .dispatcher
                .list()
                .await
                .into_iter()
                .filter(|r| !r.command_status.is_done())
                .collect(),
            None => Vec::new(),
        };
        for r in &abandoned {
            let write = IMAGE_WRITES.contains(&r.command_name.as_str());
            tracing::error!(
                signal = signal.unwrap_or("signal"),
                command = %r.command_name,
                id = %r.id,
                "a running command is abandoned by the shutdown{}",
                if write {
                    "; the image write is incomplete and the install device was left unbootable \
                     (its first MiB is zeroed until a verified write completes): deploy again"
                } else {
                    ""
                }
            );
        }
        // Let the reply that triggered a stop/lockdown leave before the listener closes.
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.shutdown.cancel();
        for h in handles {
            let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
        }
        tracing::info!(?state, abandoned = abandoned.len(), "transports stopped");
        Stopped { state, signal, abandoned }
    }

    /// IPA's lockdown: take every interface down (real mode only), then never serve again.
    pub async fn lockdown_forever(&self) {
        match &self.services.mode {
            RunMode::Real => {
                let names = std::fs::read_dir("/sys/class/net")
                    .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect::<Vec<_>>())
                    .unwrap_or_default();
                for n in names {
                    let n = n.to_string_lossy().to_string();
                    let _ = self
                        .services
                        .runner
                        .run(ExecRequest::new("ip", ["link", "set", &n, "down"]))
                        .await;
                }
            }
            RunMode::Sandbox { .. } => {
                tracing::warn!(
                    "sandbox: lockdown would take all network interfaces down; not done"
                );
            }
        }
        tracing::warn!("locked down: the API will not be served again in this boot");
        let _ = wait_signal().await;
    }
}

async fn initial_identity(services: &AgentServices, hw: &HardwareManagers) -> String {
    if let Some(id) = &services.config.link.agent_id {
        return id.clone();
    }
    if let Ok(mut nics) =
        hw.dispatch("list_network_interfaces", |m, p| m.list_network_interfaces(p)).await
    {
        nics.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(n) = nics.iter().find(|n| !n.mac_address.is_empty()) {
            return format!("mac-{}", n.mac_address.replace(':', "").to_ascii_lowercase());
        }
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "ipa-agent".into())
}

/// Commands whose interruption leaves a partly written install device.
const IMAGE_WRITES: &[&str] =
    &["prepare_image", "cache_image", "write_image", "install_bootloader", "execute_bootc_install"];

/// How [`Agent::serve_until_stopped`] ended.
#[derive(Debug)]
pub struct Stopped {
    /// Stop, or lockdown.
    pub state: ServeState,
    /// The signal that stopped the agent, if one did.
    pub signal: Option<&'static str>,
    /// Commands still running when the signal arrived.
    pub abandoned: Vec<CommandResult>,
}

impl Stopped {
    /// `128 + signal number` when commands were abandoned (143 for SIGTERM), else 0.
    pub fn exit_code(&self) -> u8 {
        match (self.abandoned.is_empty(), self.signal) {
            (true, _) => 0,
            (false, Some("SIGINT")) => 130,
            (false, _) => 143,
        }
    }
}

async fn wait_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}
