//! # ipa-hw-container
//!
//! IPA's `ContainerHardwareManager` (spec `ipa-agent.md` §5.1, §5.6):
//!
//! * **support**: `MAINLINE` when `podman --version` or `docker --version` succeeds;
//! * **steps**: `generic_container_step` and its deprecated alias `container_clean_step`
//!   (args `container_url` (required), `pull_options`, `run_options`; priority 0, abortable),
//!   plus the steps declared in the YAML `container_steps_file`
//!   (`steps: [{name, image, priority, interface, reboot_requested, abortable, pull_options,
//!   run_options}]`); a declared priority is honoured for clean steps only, deploy and service
//!   steps are offered at priority 0;
//! * **policy**: an image named by a step *argument* must be in `allowed_containers` (compared
//!   without `docker://` / `oci://`) unless `allow_arbitrary_containers` is set, otherwise
//!   `ContainerNotPermittedError`; without `allow_arbitrary_containers` the caller's options are
//!   ignored and the configured ones are used. Images from the steps file are trusted;
//! * **names**: a declared step whose name collides with a built-in step, a hardware-manager
//!   method or a step another loaded manager offers is refused (logged, not offered, not run);
//! * **execution**: `<runner> pull <pull_options> <url>` then `<runner> run <run_options> <url>`
//!   through [`CommandRunner`].
//!
//! Options come from the `[container]` configuration section, overridden by Ironic's
//! `agent_containers` block received at lookup.

pub mod config;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use ipa_core::AgentError;
use ipa_core::hardware::{
    HardwareManager, HardwareManagerVersion, HardwareManagers, HardwareSupport, Step, StepCall,
    StepKind,
};
use ipa_core::os::{CommandRunner, ExecRequest};
use ipa_core::registry::HardwareManagerDescriptor;
use ipa_core::services::{AgentServices, IronicSettings};
use serde::Deserialize;
use serde_json::{Value, json};

pub use config::ContainerConfig;

/// Class name.
pub const NAME: &str = "ContainerHardwareManager";
/// `HARDWARE_MANAGER_VERSION`.
pub const VERSION: &str = "2";
/// The generic step.
pub const GENERIC_STEP: &str = "generic_container_step";
/// Its deprecated alias.
pub const DEPRECATED_STEP: &str = "container_clean_step";

/// Method names of a hardware manager; a declared step may not take one.
pub const RESERVED_NAMES: &[&str] = &[
    "evaluate_hardware_support",
    "initialize",
    "list_hardware_info",
    "list_network_interfaces",
    "get_interface_info",
    "get_cpus",
    "list_block_devices",
    "get_memory",
    "get_bmc_address",
    "get_bmc_v6address",
    "get_bmc_mac",
    "get_boot_info",
    "get_system_vendor_info",
    "get_os_install_device",
    "filter_device",
    "wait_for_disks",
    "collect_lldp_data",
    "get_clean_steps",
    "get_deploy_steps",
    "get_service_steps",
    "get_version",
    "execute_step",
    "erase_block_device",
    "erase_devices",
    "full_sync",
    "collect_system_logs",
    "get_skip_list_from_node_for_disks",
    "get_skip_list_from_node_for_raids",
    "list_block_devices_check_skip_list",
    "get_usb_devices",
    "generate_tls_certificate",
    GENERIC_STEP,
    DEPRECATED_STEP,
];

/// Container step failures.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// Bad step arguments.
    #[error("{0}")]
    InvalidArgs(String),
    /// The image is not allowed.
    #[error("container image {0} is not permitted")]
    NotPermitted(String),
    /// The runner could not be started.
    #[error(transparent)]
    Exec(#[from] ipa_core::os::ExecError),
    /// pull or run exited non-zero.
    #[error("{command} failed with exit code {status}: {stderr}")]
    Failed {
        /// Command line.
        command: String,
        /// Exit code.
        status: i32,
        /// stderr.
        stderr: String,
    },
}

impl ContainerError {
    /// IPA's error for a failed container step.
    pub fn into_agent_error(self, kind: StepKind) -> AgentError {
        match self {
            ContainerError::InvalidArgs(d) => AgentError::invalid_params(d),
            ContainerError::NotPermitted(url) => AgentError::ContainerNotPermitted { url },
            other => {
                let details = other.to_string();
                match kind {
                    StepKind::Clean => AgentError::Cleaning { details },
                    StepKind::Deploy => AgentError::Deployment { details },
                    StepKind::Service => AgentError::Servicing { details },
                }
            }
        }
    }
}

/// One step declared in the steps file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DeclaredStep {
    /// Step name.
    pub name: String,
    /// Image to run.
    pub image: String,
    /// Priority (clean only).
    #[serde(default)]
    pub priority: i64,
    /// Ironic interface.
    #[serde(default = "d_interface")]
    pub interface: String,
    /// Reboot after the step.
    #[serde(default)]
    pub reboot_requested: bool,
    /// Abortable.
    #[serde(default)]
    pub abortable: bool,
    /// Options of `pull` (default: the configured ones).
    #[serde(default)]
    pub pull_options: Option<Vec<String>>,
    /// Options of `run` (default: the configured ones).
    #[serde(default)]
    pub run_options: Option<Vec<String>>,
}

fn d_interface() -> String {
    "deploy".into()
}

#[derive(Debug, Deserialize)]
struct StepsFile {
    #[serde(default)]
    steps: Vec<DeclaredStep>,
}

/// Parse a steps file.
pub fn parse_steps_file(text: &str) -> Result<Vec<DeclaredStep>, serde_norway::Error> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    Ok(serde_norway::from_str::<StepsFile>(text)?.steps)
}

fn valid_step_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next().is_some_and(|f| f.is_ascii_lowercase() || f == '_')
        && c.all(|x| x.is_ascii_lowercase() || x.is_ascii_digit() || x == '_')
}

/// The manager.
#[derive(Debug)]
pub struct ContainerHardwareManager {
    root: PathBuf,
    runner: Arc<dyn CommandRunner>,
    config: ContainerConfig,
    /// Ironic's lookup settings (`agent_containers` overrides): a shared cell.
    ironic: Option<Arc<RwLock<IronicSettings>>>,
    peer_steps: Mutex<PeerSteps>,
}

/// Step names of the other managers, by kind.
#[derive(Debug, Default)]
struct PeerSteps {
    clean: Vec<String>,
    deploy: Vec<String>,
    service: Vec<String>,
}

impl ContainerHardwareManager {
    /// A manager reading the steps file under `root` and running containers with `runner`.
    pub fn new(
        root: impl Into<PathBuf>,
        runner: Arc<dyn CommandRunner>,
        config: ContainerConfig,
    ) -> Self {
        Self { root: root.into(), runner, config, ironic: None, peer_steps: Mutex::default() }
    }

    /// Follow Ironic's `agent_containers` overrides as the agent receives them at lookup.
    pub fn with_services(mut self, services: &Arc<AgentServices>) -> Self {
        self.ironic = Some(services.ironic.clone());
        self
    }

    /// Built from the agent's services and its `[container]` section.
    pub fn from_services(
        services: &Arc<AgentServices>,
    ) -> Result<Self, ipa_core::config::ConfigError> {
        let config = ContainerConfig::from_figment(&services.figment)
            .map_err(|e| ipa_core::config::ConfigError::Invalid(Box::new(e)))?;
        Ok(Self::new(services.mode.root_prefix(), services.runner.clone(), config)
            .with_services(services))
    }

    /// The options in force: configuration plus Ironic's overrides.
    pub fn effective_config(&self) -> ContainerConfig {
        let overrides = self
            .ironic
            .as_ref()
            .and_then(|i| i.read().unwrap_or_else(|p| p.into_inner()).agent_containers.clone());
        self.config.with_ironic_overrides(overrides.as_ref())
    }

    /// Step names the other managers in `peers` offer, per kind (read once, at `initialize`).
    async fn peer_step_names(peers: &HardwareManagers) -> PeerSteps {
        let (node, ports) = (Value::Null, Value::Null);
        let mut out = PeerSteps::default();
        for r in peers.ranked() {
            if r.manager.name() == NAME {
                continue;
            }
            for (kind, names) in [
                (StepKind::Clean, &mut out.clean),
                (StepKind::Deploy, &mut out.deploy),
                (StepKind::Service, &mut out.service),
            ] {
                let steps = match kind {
                    StepKind::Clean => r.manager.get_clean_steps(&node, &ports).await,
                    StepKind::Deploy => r.manager.get_deploy_steps(&node, &ports).await,
                    StepKind::Service => r.manager.get_service_steps(&node, &ports).await,
                };
                names.extend(steps.unwrap_or_default().into_iter().map(|s| s.step));
            }
        }
        out
    }

    fn peers_of(&self, kind: StepKind) -> Vec<String> {
        let p = self.peer_steps.lock().unwrap_or_else(|p| p.into_inner());
        match kind {
            StepKind::Clean => p.clean.clone(),
            StepKind::Deploy => p.deploy.clone(),
            StepKind::Service => p.service.clone(),
        }
    }

    /// The declared steps that are accepted for `kind`, in file order. Refusals are logged.
    pub async fn declared_steps(&self, kind: StepKind) -> Vec<DeclaredStep> {
        let config = self.effective_config();
        let file = &config.container_steps_file;
        let path = self.root.join(file.strip_prefix("/").unwrap_or(file));
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::debug!(file = %path.display(), "no container steps file");
                return Vec::new();
            }
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "cannot read the container steps file");
                return Vec::new();
            }
        };
        let declared = match parse_steps_file(&text) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "invalid container steps file; no declared steps");
                return Vec::new();
            }
        };
        let peers = self.peers_of(kind);
        let mut accepted: Vec<DeclaredStep> = Vec::new();
        for s in declared {
            let reason = if !valid_step_name(&s.name) {
                Some("is not a valid step name")
            } else if RESERVED_NAMES.contains(&s.name.as_str()) {
                Some("collides with a built-in step or hardware manager method")
            } else if peers.contains(&s.name) {
                Some("collides with a step of another hardware manager")
            } else if accepted.iter().any(|a| a.name == s.name) {
                Some("is declared twice")
            } else if s.image.trim().is_empty() {
                Some("has no image")
            } else {
                None
            };
            match reason {
                Some(r) => {
                    tracing::error!(step = %s.name, file = %path.display(), "refusing container step: the name {r}")
                }
                None => accepted.push(s),
            }
        }
        accepted
    }

    fn builtin_steps(kind: StepKind) -> Vec<Step> {
        [GENERIC_STEP, DEPRECATED_STEP]
            .into_iter()
            .map(|name| {
                let s = Step::new(name, 0, "deploy")
                    .arg("container_url", "URL of the container image to pull and run", true)
                    .arg("pull_options", "List of options for the pull command (honoured only with allow_arbitrary_containers)", false)
                    .arg("run_options", "List of options for the run command (honoured only with allow_arbitrary_containers)", false);
                if kind == StepKind::Deploy { s } else { s.abortable(true) }
            })
            .collect()
    }

    async fn steps(&self, kind: StepKind) -> Vec<Step> {
        let mut steps = Self::builtin_steps(kind);
        for d in self.declared_steps(kind).await {
            let priority = if kind == StepKind::Clean { d.priority } else { 0 };
            let s = Step::new(&d.name, priority, &d.interface).reboot_requested(d.reboot_requested);
            steps.push(if kind == StepKind::Deploy { s } else { s.abortable(d.abortable) });
        }
        steps
    }

    async fn run_checked(&self, req: ExecRequest) -> Result<(), ContainerError> {
        let command = req.command_line();
        tracing::info!(command = %command, "container step");
        let out = self.runner.run(req).await?;
        if !out.success() {
            return Err(ContainerError::Failed {
                command,
                status: out.status,
                stderr: out.stderr.trim().to_string(),
            });
        }
        Ok(())
    }

    /// `<runner> pull <pull_options> <url>` then `<runner> run <run_options> <url>`.
    async fn pull_and_run(
        &self,
        runner: &str,
        url: &str,
        pull: &[String],
        run: &[String],
    ) -> Result<Value, ContainerError> {
        let mut a = vec!["pull".to_string()];
        a.extend(pull.iter().cloned());
        a.push(url.to_string());
        self.run_checked(ExecRequest::new(runner, a)).await?;
        let mut a = vec!["run".to_string()];
        a.extend(run.iter().cloned());
        a.push(url.to_string());
        self.run_checked(ExecRequest::new(runner, a)).await?;
        Ok(json!({"container_url": url, "runner": runner}))
    }

    async fn generic_step(&self, args: &ipa_core::Params) -> Result<Value, ContainerError> {
        let config = self.effective_config();
        let url = match args.get("container_url") {
            Some(Value::String(u)) if !u.trim().is_empty() => u.trim().to_string(),
            _ => return Err(ContainerError::InvalidArgs("container_url is required".into())),
        };
        let option = |key: &str| -> Result<Option<Vec<String>>, ContainerError> {
            match args.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => {
                    config::lenient_list(v.clone()).map(Some).map_err(|e: serde_json::Error| {
                        ContainerError::InvalidArgs(format!("{key}: {e}"))
                    })
                }
            }
        };
        let (pull, run) = (option("pull_options")?, option("run_options")?);
        if !config::is_allowed(&config, &url) {
            tracing::error!(url = %url, "container image not permitted");
            return Err(ContainerError::NotPermitted(url));
        }
        let (pull, run) = if config.allow_arbitrary_containers {
            (pull.unwrap_or(config.pull_options.clone()), run.unwrap_or(config.run_options.clone()))
        } else {
            if pull.is_some() || run.is_some() {
                tracing::warn!(
                    "allow_arbitrary_containers is off: ignoring caller-supplied pull/run options"
                );
            }
            (config.pull_options.clone(), config.run_options.clone())
        };
        self.pull_and_run(&config.runner, &url, &pull, &run).await
    }
}

#[async_trait]
impl HardwareManager for ContainerHardwareManager {
    fn name(&self) -> &str {
        NAME
    }

    fn version(&self) -> HardwareManagerVersion {
        HardwareManagerVersion { name: NAME.into(), version: VERSION.into() }
    }

    async fn evaluate_hardware_support(&self) -> HardwareSupport {
        for runner in ["podman", "docker"] {
            if let Ok(out) = self.runner.run(ExecRequest::new(runner, ["--version"])).await
                && out.success()
            {
                tracing::debug!(runner, version = %out.stdout.trim(), "container runner found");
                return HardwareSupport::MAINLINE;
            }
        }
        HardwareSupport::NONE
    }

    async fn initialize(&self, peers: &HardwareManagers) -> Result<(), AgentError> {
        let names = Self::peer_step_names(peers).await;
        *self.peer_steps.lock().unwrap_or_else(|p| p.into_inner()) = names;
        Ok(())
    }

    async fn get_clean_steps(
        &self,
        _node: &Value,
        _ports: &Value,
    ) -> Result<Vec<Step>, AgentError> {
        Ok(self.steps(StepKind::Clean).await)
    }

    async fn get_deploy_steps(
        &self,
        _node: &Value,
        _ports: &Value,
    ) -> Result<Vec<Step>, AgentError> {
        Ok(self.steps(StepKind::Deploy).await)
    }

    async fn get_service_steps(
        &self,
        _node: &Value,
        _ports: &Value,
    ) -> Result<Vec<Step>, AgentError> {
        Ok(self.steps(StepKind::Service).await)
    }

    async fn execute_step(&self, call: StepCall<'_>) -> Result<Value, AgentError> {
        let result = if call.step == GENERIC_STEP || call.step == DEPRECATED_STEP {
            if call.step == DEPRECATED_STEP {
                tracing::warn!("container_clean_step is deprecated; use generic_container_step");
            }
            self.generic_step(&call.args).await
        } else {
            let Some(d) =
                self.declared_steps(call.kind).await.into_iter().find(|d| d.name == call.step)
            else {
                return Err(AgentError::incompatible(call.step));
            };
            let config = self.effective_config();
            let pull = d.pull_options.clone().unwrap_or(config.pull_options.clone());
            let run = d.run_options.clone().unwrap_or(config.run_options.clone());
            self.pull_and_run(&config.runner, &d.image, &pull, &run).await
        };
        result.map_err(|e| {
            tracing::error!(step = call.step, error = %e, "container step failed");
            e.into_agent_error(call.kind)
        })
    }
}

inventory::submit! {
    HardwareManagerDescriptor {
        name: "container",
        description: "container steps (podman/docker): generic_container_step and steps from container_steps_file",
        config_section: Some("container"),
        kernel_params: &[],
        build: |s| Ok(Arc::new(ContainerHardwareManager::from_services(s)?)),
    }
}
