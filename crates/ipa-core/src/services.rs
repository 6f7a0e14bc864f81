//! Shared agent services: the handles every extension and hardware manager may use.
//!
//! [`AgentServices`] is built once by the runtime and passed (as `Arc`) to plugin factories. It
//! holds configuration, the run mode (sandbox or real), the OS seams (command runner, power), the
//! node cache, the agent token, the serve/lockdown control, the event bus, the metrics handle and
//! Ironic-provided settings. It never holds the hardware managers or the extensions: a manager
//! that must reach its peers gets them passed down in the call (`peers: &HardwareManagers`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use figment::Figment;
use serde_json::Value;
use subtle::ConstantTimeEq;
use tokio::sync::watch;

use crate::config::AgentConfig;
use crate::dispatcher::AgentStatus;
use crate::events::EventBus;
use crate::os::{CommandRunner, PowerController};

/// The agent token. Secret: never logged, compared in constant time.
#[derive(Clone, Default)]
pub struct TokenStore {
    inner: Arc<RwLock<Option<String>>>,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = self.inner.read().map(|t| t.is_some()).unwrap_or(false);
        f.debug_struct("TokenStore").field("set", &set).finish()
    }
}

impl TokenStore {
    /// A store holding `token` (if any).
    pub fn new(token: Option<String>) -> Self {
        let s = Self::default();
        if let Some(t) = token {
            s.set(t);
        }
        s
    }
    /// Replace the token; an empty string clears it.
    pub fn set(&self, token: impl Into<String>) {
        let t = token.into();
        *self.inner.write().unwrap_or_else(|p| p.into_inner()) =
            if t.is_empty() { None } else { Some(t) };
    }
    /// Whether a token is known.
    pub fn is_set(&self) -> bool {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).is_some()
    }
    /// The token, for the one place that must send it (the Ironic heartbeat).
    pub fn get(&self) -> Option<String> {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
    /// IPA's rule: both the presented and the stored token are non-empty and equal. The
    /// comparison time does not depend on where the strings differ.
    pub fn matches(&self, presented: Option<&str>) -> bool {
        let guard = self.inner.read().unwrap_or_else(|p| p.into_inner());
        match (presented, guard.as_deref()) {
            (Some(p), Some(t)) if !p.is_empty() && !t.is_empty() => {
                let (p, t) = (p.as_bytes(), t.as_bytes());
                // Compare lengths without short-circuiting on content.
                let len_eq = (p.len() as u64).ct_eq(&(t.len() as u64));
                let n = p.len().min(t.len());
                let body_eq = p[..n].ct_eq(&t[..n]);
                bool::from(len_eq & body_eq)
            }
            _ => false,
        }
    }
}

/// Start time and version for `/v1/status`.
#[derive(Debug, Clone)]
pub struct StatusInfo {
    started_at: Arc<RwLock<Option<f64>>>,
    version: String,
}

impl StatusInfo {
    /// Not started yet; reports `version`.
    pub fn new(version: impl Into<String>) -> Self {
        Self { started_at: Arc::default(), version: version.into() }
    }
    /// Record "now" as the start time.
    pub fn mark_started(&self) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).ok();
        *self.started_at.write().unwrap_or_else(|p| p.into_inner()) = now;
    }
    /// The current status.
    pub fn snapshot(&self) -> AgentStatus {
        AgentStatus {
            started_at: *self.started_at.read().unwrap_or_else(|p| p.into_inner()),
            version: self.version.clone(),
        }
    }
}

/// The node object Ironic sent last (lookup, or any step command), IPA's `hardware.cache_node`.
#[derive(Debug, Clone, Default)]
pub struct NodeCache {
    inner: Arc<RwLock<Option<Value>>>,
    changed: Arc<OnceLock<watch::Sender<Option<String>>>>,
}

impl NodeCache {
    fn sender(&self) -> &watch::Sender<Option<String>> {
        self.changed.get_or_init(|| watch::channel(None).0)
    }
    /// Store `node`; returns true if its UUID differs from the cached one.
    pub fn set(&self, node: Value) -> bool {
        let uuid = node.get("uuid").and_then(Value::as_str).map(str::to_string);
        let mut g = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let old =
            g.as_ref().and_then(|n| n.get("uuid")).and_then(Value::as_str).map(str::to_string);
        *g = Some(node);
        drop(g);
        let changed = old != uuid;
        if changed {
            self.sender().send_replace(uuid);
        }
        changed
    }
    /// The cached node.
    pub fn get(&self) -> Option<Value> {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
    /// The cached node's UUID.
    pub fn uuid(&self) -> Option<String> {
        self.get().and_then(|n| n.get("uuid").and_then(Value::as_str).map(str::to_string))
    }
    /// Watch the node UUID (transports use it as the agent identity after lookup).
    pub fn watch_uuid(&self) -> watch::Receiver<Option<String>> {
        self.sender().subscribe()
    }
}

/// What the runtime should do with the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeState {
    /// Serving commands.
    Serving,
    /// Stop serving; the process exits 0 afterwards (rescue finalised).
    Stop,
    /// Stop serving, take interfaces down and never serve again (`system.lockdown`, or a token
    /// that can never be obtained).
    Lockdown,
}

/// Serve/lockdown control shared by extensions and the runtime.
#[derive(Debug, Clone)]
pub struct AgentControl {
    tx: Arc<watch::Sender<ServeState>>,
    standalone: bool,
}

impl AgentControl {
    /// A control in `Serving` state.
    pub fn new(standalone: bool) -> Self {
        Self { tx: Arc::new(watch::channel(ServeState::Serving).0), standalone }
    }
    /// Whether the agent runs without Ironic.
    pub fn standalone(&self) -> bool {
        self.standalone
    }
    /// Ask the runtime to stop serving (after the current reply has been sent).
    pub fn stop_serving(&self) {
        self.tx.send_if_modified(|s| {
            if *s == ServeState::Serving {
                *s = ServeState::Stop;
                true
            } else {
                false
            }
        });
    }
    /// Ask the runtime to lock the agent down.
    pub fn lockdown(&self) {
        self.tx.send_replace(ServeState::Lockdown);
    }
    /// Current state.
    pub fn state(&self) -> ServeState {
        *self.tx.borrow()
    }
    /// Watch the state.
    pub fn watch(&self) -> watch::Receiver<ServeState> {
        self.tx.subscribe()
    }
}

/// Sandbox or real hardware.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunMode {
    /// Nothing outside `dir` is ever written; disks are files under `dir/disks`; power actions
    /// are recorded in `dir/power.log`; OS writes go under `dir/root`.
    Sandbox {
        /// The sandbox directory.
        dir: PathBuf,
    },
    /// Real devices, real power. Only with an explicit opt-in.
    Real,
}

impl RunMode {
    /// True in sandbox mode.
    pub fn is_sandbox(&self) -> bool {
        matches!(self, RunMode::Sandbox { .. })
    }
    /// The prefix under which OS files are written (`/` for real).
    pub fn root_prefix(&self) -> PathBuf {
        match self {
            RunMode::Sandbox { dir } => dir.join("root"),
            RunMode::Real => PathBuf::from("/"),
        }
    }
    /// Map an absolute OS path (e.g. `/etc/.rescued`) under the root prefix.
    pub fn os_path(&self, path: impl AsRef<Path>) -> PathBuf {
        let p = path.as_ref();
        let rel = p.strip_prefix("/").unwrap_or(p);
        self.root_prefix().join(rel)
    }
    /// Where file-backed disks live in sandbox mode.
    pub fn disks_dir(&self) -> Option<PathBuf> {
        match self {
            RunMode::Sandbox { dir } => Some(dir.join("disks")),
            RunMode::Real => None,
        }
    }
    /// Map a block device path to what the agent may open: the device itself in real mode, the
    /// backing file `dir/disks/<basename>` in sandbox mode. This is the one gate every disk
    /// writer goes through.
    pub fn device_path(&self, device: impl AsRef<Path>) -> PathBuf {
        let dev = device.as_ref();
        match self {
            RunMode::Real => dev.to_path_buf(),
            RunMode::Sandbox { dir } => {
                if dev.starts_with(dir) {
                    return dev.to_path_buf();
                }
                let name = dev.file_name().map(|n| n.to_os_string()).unwrap_or_default();
                dir.join("disks").join(name)
            }
        }
    }
}

/// Settings Ironic hands the agent at lookup (spec §4.4) that later commands consult.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IronicSettings {
    /// `config.heartbeat_timeout`.
    pub heartbeat_timeout: Option<f64>,
    /// `agent_md5_checksum_enable`.
    pub md5_enabled: Option<bool>,
    /// `disable_deep_image_inspection`.
    pub disable_deep_image_inspection: Option<bool>,
    /// `permitted_image_formats`.
    pub permitted_image_formats: Option<Vec<String>>,
    /// `enable_bios_bootloader_install`.
    pub enable_bios_bootloader_install: Option<bool>,
    /// `agent_skip_bmc_detect`.
    pub skip_bmc_detect: Option<bool>,
    /// `agent_containers` block, kept raw for the container manager.
    pub agent_containers: Option<Value>,
    /// `tls_min_version` override.
    pub tls_min_version: Option<String>,
    /// `tls_cipher_suites` override.
    pub tls_cipher_suites: Option<String>,
}

/// Everything plugins share. Built once; cheap to clone behind `Arc`.
///
/// It holds configuration, OS seams and shared cells, never the managers or the extensions:
/// managers are built from it, then extensions from it and the managers (data flows one way).
pub struct AgentServices {
    /// Typed core configuration.
    pub config: Arc<AgentConfig>,
    /// The merged configuration, for plugin sections (`amqp`, `zmq`, `sim`, ...).
    pub figment: Figment,
    /// Sandbox or real.
    pub mode: RunMode,
    /// External commands (sgdisk, mdadm, efibootmgr, ipmitool ...).
    pub runner: Arc<dyn CommandRunner>,
    /// Reboot / power off.
    pub power: Arc<dyn PowerController>,
    /// Last node object from Ironic.
    pub node: NodeCache,
    /// The agent token.
    pub token: TokenStore,
    /// Serve / stop / lockdown.
    pub control: AgentControl,
    /// Events.
    pub events: EventBus,
    /// `/v1/status` data.
    pub status: StatusInfo,
    /// Overrides received from Ironic at lookup.
    pub ironic: Arc<RwLock<IronicSettings>>,
    /// This boot's erase-report key ([`crate::attest`]).
    pub attest: Arc<crate::attest::ReportSigner>,
    /// The process's metrics ([`crate::metrics`]): one per services, so one per agent; the
    /// runtime hands clones to the producers that record what the event bus does not carry.
    pub metrics: crate::metrics::Metrics,
}

impl std::fmt::Debug for AgentServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentServices")
            .field("mode", &self.mode)
            .field("standalone", &self.control.standalone())
            .finish_non_exhaustive()
    }
}

impl AgentServices {
    /// Assemble services. The runtime calls this once.
    pub fn new(
        config: AgentConfig,
        figment: Figment,
        mode: RunMode,
        runner: Arc<dyn CommandRunner>,
        power: Arc<dyn PowerController>,
    ) -> Arc<Self> {
        let token =
            TokenStore::new(config.ironic.agent_token.as_ref().map(|t| t.expose().to_string()));
        let control = AgentControl::new(config.ironic.standalone);
        Arc::new(Self {
            config: Arc::new(config),
            figment,
            mode,
            runner,
            power,
            node: NodeCache::default(),
            token,
            control,
            events: EventBus::default(),
            status: StatusInfo::new(crate::IPA_COMPAT_VERSION),
            ironic: Arc::default(),
            attest: Arc::new(crate::attest::ReportSigner::generate()),
            metrics: crate::metrics::Metrics::new(),
        })
    }

    /// Services for tests: sandbox under `dir`, fake command runner, recording power.
    pub fn for_tests(dir: &Path) -> Arc<Self> {
        let mode = RunMode::Sandbox { dir: dir.to_path_buf() };
        let power = Arc::new(crate::os::RecordingPower::new(dir.join("power.log")));
        Self::new(
            AgentConfig::default(),
            Figment::new(),
            mode,
            Arc::new(crate::os::FakeRunner::default()),
            power,
        )
    }

    /// A snapshot of the Ironic-provided settings.
    pub fn ironic_settings(&self) -> IronicSettings {
        self.ironic.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_rule_requires_both_non_empty_and_equal() {
        let t = TokenStore::default();
        assert!(!t.matches(None));
        assert!(!t.matches(Some("")));
        assert!(!t.matches(Some("x")));
        t.set("secret-token");
        assert!(t.matches(Some("secret-token")));
        assert!(!t.matches(Some("secret-toke")));
        assert!(!t.matches(Some("secret-tokenX")));
        assert!(!t.matches(Some("")));
        assert!(!t.matches(None));
        t.set("");
        assert!(!t.is_set());
        assert!(!t.matches(Some("")));
    }

    #[test]
    fn token_never_appears_in_debug_output() {
        let t = TokenStore::new(Some("hunter2-very-secret".into()));
        assert!(!format!("{t:?}").contains("hunter2"));
    }

    #[test]
    fn sandbox_maps_devices_and_os_paths_inside_dir() {
        let m = RunMode::Sandbox { dir: "/tmp/sb".into() };
        assert_eq!(m.device_path("/dev/sda"), PathBuf::from("/tmp/sb/disks/sda"));
        assert_eq!(m.device_path("/dev/nvme0n1p1"), PathBuf::from("/tmp/sb/disks/nvme0n1p1"));
        assert_eq!(m.device_path("/tmp/sb/disks/x"), PathBuf::from("/tmp/sb/disks/x"));
        assert_eq!(m.os_path("/etc/.rescued"), PathBuf::from("/tmp/sb/root/etc/.rescued"));
        assert_eq!(RunMode::Real.device_path("/dev/sda"), PathBuf::from("/dev/sda"));
    }

    #[test]
    fn node_cache_reports_uuid_changes() {
        let c = NodeCache::default();
        let rx = c.watch_uuid();
        assert!(c.set(serde_json::json!({"uuid": "a"})));
        assert!(!c.set(serde_json::json!({"uuid": "a", "x": 1})));
        assert_eq!(rx.borrow().as_deref(), Some("a"));
        assert!(c.set(serde_json::json!({"uuid": "b"})));
        assert_eq!(c.uuid().as_deref(), Some("b"));
    }

    #[test]
    fn stop_does_not_override_lockdown() {
        let c = AgentControl::new(false);
        c.lockdown();
        c.stop_serving();
        assert_eq!(c.state(), ServeState::Lockdown);
    }
}
