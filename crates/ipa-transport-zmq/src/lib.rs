//! # ipa-transport-zmq
//!
//! The ZeroMQ transport (feature `transport-zmq` of the agent). Two shapes:
//! * **dial-out** (`endpoint`): the agent connects a `DEALER` whose routing id is the agent id
//!   to a controller `ROUTER`. It works behind NAT: the controller never dials the agent.
//! * **bound** (`bind`): the agent binds a `ROUTER`; controllers connect `DEALER`s.
//!
//! Requests, replies and events all use the JSON envelope of `ipa-envelope` on the same socket.
//! Liveness is ZMTP heartbeats plus `agent.heartbeat` events; libzmq reconnects with backoff and
//! the agent re-announces itself (`agent.online`) after every successful handshake, so a
//! restarted controller learns about it at once. CURVE (`curve_server_key` etc.) encrypts and
//! authenticates; a handshake failure is logged as an error that names the likely cause.
//!
//! libzmq calls block, so each socket lives on its own thread ([`bridge`]).
//!
//! Linking: the workspace's `.cargo/config.toml` links Debian's `libzmq5` (built with libsodium)
//! instead of the vendored copy without CURVE; the runtime needs `libzmq5` + `libsodium23`.

pub mod bridge;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use figment::Figment;
use ipa_core::config::{AgentConfig, ConfigError, LinkSection};
use ipa_core::dispatcher::SharedDispatcher;
use ipa_core::events::AgentEvent;
use ipa_core::registry::TransportDescriptor;
use ipa_core::secret::Secret;
use ipa_core::transport::{Transport, TransportContext, TransportError, TransportFuture};
use ipa_envelope::link::{LinkReporter, LinkStateCell, ReadyOnce, heartbeat_interval, next_event};
use ipa_envelope::{Event, LinkState, decode_request, handle};
use serde::Deserialize;
use tokio::sync::watch;

pub use bridge::{Bridge, BridgeHandle, CurveRole, Inbound, LinkEvent, SocketSpec};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum ZmqError {
    /// Socket setup failed.
    #[error("zmq setup failed: {0}")]
    Setup(String),
    /// Could not bind.
    #[error("cannot bind {endpoint}: {reason}")]
    Bind {
        /// Endpoint.
        endpoint: String,
        /// Cause.
        reason: String,
    },
    /// libzmq was built without CURVE.
    #[error(
        "this libzmq has no CURVE support (link Debian's libzmq5 with libsodium; see docs/dependencies.md)"
    )]
    NoCurve,
    /// A key is not a 40-character Z85 CURVE key.
    #[error("{field}: not a valid Z85 CURVE key (40 characters)")]
    BadKey {
        /// Config field.
        field: &'static str,
    },
    /// OS error.
    #[error("I/O error")]
    Io(#[source] std::io::Error),
}

impl From<ZmqError> for TransportError {
    fn from(e: ZmqError) -> Self {
        match e {
            ZmqError::Bind { endpoint, reason } => TransportError::Bind {
                transport: "zmq".into(),
                addr: endpoint,
                source: std::io::Error::other(reason),
            },
            ZmqError::Io(source) => TransportError::Io { transport: "zmq".into(), source },
            other => {
                TransportError::Connection { transport: "zmq".into(), reason: other.to_string() }
            }
        }
    }
}

/// Decode a Z85 CURVE key.
pub fn decode_key(field: &'static str, z85: &str) -> Result<[u8; 32], ZmqError> {
    let raw = zmq::z85_decode(z85.trim()).map_err(|_| ZmqError::BadKey { field })?;
    raw.try_into().map_err(|_| ZmqError::BadKey { field })
}

/// A fresh CURVE key pair as Z85 strings `(public, secret)`.
pub fn generate_keypair() -> Result<(String, String), ZmqError> {
    let kp = zmq::CurveKeyPair::new().map_err(|_| ZmqError::NoCurve)?;
    let enc = |k: &[u8]| zmq::z85_encode(k).map_err(|e| ZmqError::Setup(e.to_string()));
    Ok((enc(&kp.public_key)?, enc(&kp.secret_key)?))
}

/// The process-wide context for sockets that need no ZAP handler.
pub fn shared_context() -> zmq::Context {
    static CTX: OnceLock<zmq::Context> = OnceLock::new();
    CTX.get_or_init(zmq::Context::new).clone()
}

/// The `[zmq]` configuration section; it is also the transport (its own factory).
#[derive(Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ZmqConfig {
    /// Controller `ROUTER` to dial (`tcp://controller:5555`). Kernel: `ipa-zmq-endpoint`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Bind a `ROUTER` here instead (`tcp://0.0.0.0:5555`). Kernel: `ipa-zmq-bind`.
    #[serde(default)]
    pub bind: Option<String>,
    /// Controller public key (Z85). Setting it turns CURVE on (dial-out). Kernel:
    /// `ipa-zmq-server-key`.
    #[serde(default)]
    pub curve_server_key: Option<String>,
    /// This agent's public key (Z85). Kernel: `ipa-zmq-public-key`.
    #[serde(default)]
    pub curve_public_key: Option<String>,
    /// This agent's secret key (Z85). Prefer `curve_secret_key_file`.
    #[serde(default)]
    pub curve_secret_key: Option<Secret>,
    /// File holding this agent's secret key. Kernel: `ipa-zmq-secret-key-file`.
    #[serde(default)]
    pub curve_secret_key_file: Option<PathBuf>,
    /// Bound mode: comma-separated client public keys allowed in (CURVE server when
    /// `curve_secret_key(_file)` is set). Empty: any client knowing our public key.
    #[serde(default)]
    pub curve_allowed_clients: Option<String>,
    /// The shared `[link]` section (heartbeat, reconnect backoff, ready timeout, request size
    /// limit), copied in from the agent's configuration when the transport is built.
    #[serde(skip)]
    pub link: LinkSection,
    #[serde(skip)]
    state: Arc<LinkStateCell>,
}

impl std::fmt::Debug for ZmqConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZmqConfig")
            .field("endpoint", &self.endpoint)
            .field("bind", &self.bind)
            .field("curve", &(self.curve_server_key.is_some() || self.has_secret()))
            .field("heartbeat_ms", &self.link.heartbeat_ms)
            .finish_non_exhaustive()
    }
}

impl ZmqConfig {
    /// Dial out to `endpoint` with defaults.
    pub fn dial(endpoint: impl Into<String>) -> Self {
        Self { endpoint: Some(endpoint.into()), ..Self::default() }
    }

    /// Bind a ROUTER at `endpoint` with defaults.
    pub fn bound(endpoint: impl Into<String>) -> Self {
        Self { bind: Some(endpoint.into()), ..Self::default() }
    }

    /// Watch the link state (why it is down, if it is).
    pub fn link_state(&self) -> watch::Receiver<LinkState> {
        self.state.subscribe()
    }

    fn has_secret(&self) -> bool {
        self.curve_secret_key.is_some() || self.curve_secret_key_file.is_some()
    }

    fn secret(&self) -> Result<Option<[u8; 32]>, ZmqError> {
        if let Some(k) = &self.curve_secret_key {
            return decode_key("curve_secret_key", k.expose()).map(Some);
        }
        if let Some(p) = &self.curve_secret_key_file {
            let text = std::fs::read_to_string(p).map_err(ZmqError::Io)?;
            return decode_key("curve_secret_key_file", text.trim()).map(Some);
        }
        Ok(None)
    }

    /// Validate and turn into a socket spec for `agent_id`.
    pub fn socket_spec(&self, agent_id: &str) -> Result<SocketSpec, ZmqError> {
        let (endpoint, bind) = match (&self.endpoint, &self.bind) {
            (Some(e), None) => (e.clone(), false),
            (None, Some(b)) => (b.clone(), true),
            _ => return Err(ZmqError::Setup("set exactly one of endpoint / bind".into())),
        };
        let curve = if bind {
            match self.secret()? {
                None => None,
                Some(secret) => {
                    let allowed = match self.curve_allowed_clients.as_deref().map(str::trim) {
                        None | Some("") => None,
                        Some(list) => Some(
                            list.split(',')
                                .map(|k| decode_key("curve_allowed_clients", k))
                                .collect::<Result<Vec<_>, _>>()?,
                        ),
                    };
                    Some(CurveRole::Server { secret, allowed_clients: allowed })
                }
            }
        } else {
            match &self.curve_server_key {
                None => None,
                Some(server) => {
                    let server_public = decode_key("curve_server_key", server)?;
                    let (public, secret) = match (&self.curve_public_key, self.secret()?) {
                        (Some(p), Some(s)) => (decode_key("curve_public_key", p)?, s),
                        (None, None) => {
                            let kp = zmq::CurveKeyPair::new().map_err(|_| ZmqError::NoCurve)?;
                            tracing::warn!(
                                public_key = %zmq::z85_encode(&kp.public_key).unwrap_or_default(),
                                "zmq: no agent key pair configured; using an ephemeral one"
                            );
                            (kp.public_key, kp.secret_key)
                        }
                        _ => {
                            return Err(ZmqError::Setup(
                                "curve_public_key and curve_secret_key(_file) go together".into(),
                            ));
                        }
                    };
                    Some(CurveRole::Client { server_public, public, secret })
                }
            }
        };
        let ms = |v: u64| v.min(i32::MAX as u64) as i32;
        Ok(SocketSpec {
            router: bind,
            endpoint,
            bind,
            routing_id: (!bind).then(|| agent_id.as_bytes().to_vec()),
            curve,
            heartbeat_ms: ms(self.link.heartbeat_ms),
            reconnect_min_ms: ms(self.link.reconnect_min_ms),
            reconnect_max_ms: ms(self.link.reconnect_max_ms.max(self.link.reconnect_min_ms)),
            // libzmq drops the connection above this hard cap; below it we answer 413.
            max_msg_bytes: (self.link.max_message_bytes.saturating_mul(4)).min(i64::MAX as u64)
                as i64,
            router_mandatory: false,
        })
    }

    fn context_for(_spec: &SocketSpec) -> zmq::Context {
        // One context per transport instance: isolates libzmq state (and a CURVE server's ZAP
        // handler, which is bound per context) between agents in one process.
        zmq::Context::new()
    }
}

fn from_config(
    fig: &Figment,
    core: &AgentConfig,
) -> Result<Option<Box<dyn Transport>>, ConfigError> {
    if fig.find_value("zmq").is_err() {
        return Ok(None);
    }
    let mut cfg: ZmqConfig = fig.extract_inner("zmq")?;
    cfg.link = core.link.clone();
    if cfg.endpoint.is_none() && cfg.bind.is_none() {
        return Ok(None);
    }
    cfg.socket_spec("config-check")
        .map_err(|e| ConfigError::Plugin { plugin: "zmq".into(), reason: e.to_string() })?;
    Ok(Some(Box::new(cfg)))
}

ipa_core::inventory::submit! {
    TransportDescriptor {
        name: "zmq",
        description: "ZeroMQ: DEALER to a controller ROUTER (or bound ROUTER), CURVE, JSON envelope",
        config_section: Some("zmq"),
        kernel_params: &[
            ("ipa-zmq-endpoint", "zmq.endpoint"),
            ("ipa-zmq-bind", "zmq.bind"),
            ("ipa-zmq-server-key", "zmq.curve_server_key"),
            ("ipa-zmq-public-key", "zmq.curve_public_key"),
            ("ipa-zmq-secret-key-file", "zmq.curve_secret_key_file"),
            ("ipa-zmq-allowed-clients", "zmq.curve_allowed_clients"),
            ("ipa-zmq-heartbeat-ms", "link.heartbeat_ms"),
        ],
        from_config,
    }
}

#[async_trait]
impl Transport for ZmqConfig {
    fn name(&self) -> &'static str {
        "zmq"
    }

    async fn build(&self, ctx: TransportContext) -> Result<TransportFuture, TransportError> {
        let cfg = self.clone();
        let agent_id = ctx.identity.borrow().clone();
        let bridge = start(&cfg, &agent_id)?;
        Ok(Box::pin(serve(cfg, ctx, bridge, agent_id)))
    }
}

fn start(cfg: &ZmqConfig, agent_id: &str) -> Result<Bridge, ZmqError> {
    let spec = cfg.socket_spec(agent_id)?;
    let ctx = ZmqConfig::context_for(&spec);
    Bridge::start(ctx, spec, agent_id)
}

async fn stop(bridge: Bridge) {
    let _ = tokio::task::spawn_blocking(move || bridge.join()).await;
}

/// Peers (routing ids) that talked to a bound agent recently; events go to them.
#[derive(Debug, Default)]
struct Peers(VecDeque<Vec<u8>>);

impl Peers {
    fn touch(&mut self, p: &[u8]) {
        if let Some(i) = self.0.iter().position(|x| x == p) {
            self.0.remove(i);
        }
        self.0.push_back(p.to_vec());
        while self.0.len() > 256 {
            self.0.pop_front();
        }
    }
}

fn send_event(handle: &BridgeHandle, bound: bool, peers: &Peers, agent_id: &str, ev: AgentEvent) {
    let data = Event::new(agent_id, ev).encode();
    if bound {
        for p in &peers.0 {
            handle.send(Some(p.clone()), data.clone());
        }
    } else {
        handle.send(None, data);
    }
}

async fn serve(
    cfg: ZmqConfig,
    mut ctx: TransportContext,
    mut bridge: Bridge,
    mut agent_id: String,
) -> Result<(), TransportError> {
    let bound = cfg.bind.is_some();
    let state = LinkReporter::new(cfg.state.sender().clone(), ctx.metrics.clone(), "zmq");
    let max = cfg.link.max_message_bytes as usize;
    let mut events = ctx.dispatcher.subscribe();
    let mut peers = Peers::default();
    let mut heartbeat = heartbeat_interval(cfg.link.heartbeat_ms);
    let ready_deadline = tokio::time::sleep(Duration::from_millis(cfg.link.ready_timeout_ms));
    tokio::pin!(ready_deadline);
    let ready = ReadyOnce::new(ctx.ready.clone(), "zmq");
    if bound {
        ready.report(bridge.endpoint.clone());
        state.set(LinkState::Up { endpoint: bridge.endpoint.clone() });
    }
    tracing::info!(endpoint = %bridge.endpoint, bound, agent_id = %agent_id, curve = cfg.curve_server_key.is_some() || cfg.has_secret(), "zmq transport started");
    let mut failures_logged = 0u32;
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => {
                send_event(&bridge.handle, bound, &peers, &agent_id,
                    AgentEvent::AgentOffline { agent_id: agent_id.clone(), reason: "shutdown".into() });
                stop(bridge).await;
                return Ok(());
            }
            _ = &mut ready_deadline, if !ready.is_done() => {
                tracing::warn!(endpoint = %bridge.endpoint, "zmq: controller not reachable yet; still trying in the background");
                ready.report(format!("{} (connecting)", bridge.endpoint));
            }
            m = bridge.inbound.recv() => {
                let Some(m) = m else {
                    return Err(TransportError::Connection { transport: "zmq".into(), reason: "socket thread ended".into() });
                };
                match m {
                    Inbound::Message { peer, data } => {
                        if let Some(p) = &peer { peers.touch(p); }
                        let d: SharedDispatcher = ctx.dispatcher.clone();
                        let h = bridge.handle.clone();
                        tokio::spawn(async move {
                            let reply = match decode_request(&data, max) {
                                Ok(req) => {
                                    tracing::debug!(op = req.op_name(), msg_id = %req.id, "zmq request");
                                    handle(&*d, req).await
                                }
                                Err(reply) => {
                                    tracing::warn!(
                                        bytes = data.len(),
                                        error = reply.error.as_ref().map(|e| e.details.as_str()).unwrap_or(""),
                                        "zmq: invalid envelope answered with an error reply"
                                    );
                                    reply
                                }
                            };
                            h.send(peer, reply.encode());
                        });
                    }
                    Inbound::Link(LinkEvent::Up { endpoint }) => {
                        failures_logged = 0;
                        tracing::info!(%endpoint, "zmq link up");
                        state.set(LinkState::Up { endpoint: endpoint.clone() });
                        if !bound {
                            send_event(&bridge.handle, bound, &peers, &agent_id,
                                AgentEvent::AgentOnline { agent_id: agent_id.clone() });
                            ready.report(endpoint);
                        }
                    }
                    Inbound::Link(LinkEvent::HandshakeFailed { endpoint, reason }) => {
                        // Log the first failure and then every 50th: libzmq retries fast.
                        if failures_logged.is_multiple_of(50) {
                            tracing::error!(%endpoint, %reason, "zmq: CURVE/ZMTP handshake refused");
                        }
                        failures_logged += 1;
                        state.set(LinkState::Refused { reason });
                    }
                    Inbound::Link(LinkEvent::Down { endpoint }) => {
                        if !bound {
                            tracing::info!(%endpoint, "zmq link down; libzmq reconnects");
                            if state.is_up() {
                                state.set(LinkState::Down { reason: format!("disconnected from {endpoint}") });
                            }
                        }
                    }
                }
            }
            ev = next_event(&mut events, "zmq") => {
                if let Some(ev) = ev {
                    send_event(&bridge.handle, bound, &peers, &agent_id, ev);
                }
            }
            _ = heartbeat.tick() => {
                send_event(&bridge.handle, bound, &peers, &agent_id,
                    AgentEvent::AgentHeartbeat { agent_id: agent_id.clone() });
            }
            changed = ctx.identity.changed() => {
                if changed.is_err() { continue; }
                let new_id = ctx.identity.borrow_and_update().clone();
                if new_id == agent_id { continue; }
                tracing::info!(old = %agent_id, new = %new_id, "zmq: agent identity changed");
                send_event(&bridge.handle, bound, &peers, &agent_id,
                    AgentEvent::AgentOffline { agent_id: agent_id.clone(), reason: format!("identity changed to {new_id}") });
                agent_id = new_id;
                if bound {
                    send_event(&bridge.handle, bound, &peers, &agent_id,
                        AgentEvent::AgentOnline { agent_id: agent_id.clone() });
                } else {
                    let fresh = start(&cfg, &agent_id)?;
                    let old = std::mem::replace(&mut bridge, fresh);
                    stop(old).await;
                    state.set(LinkState::Connecting);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curve_is_available_through_the_system_libzmq() {
        assert_eq!(zmq::has("curve"), Some(true), "link Debian's libzmq5 (see .cargo/config.toml)");
        let (p, s) = generate_keypair().unwrap();
        assert_eq!((p.len(), s.len()), (40, 40));
        assert!(decode_key("k", &p).is_ok());
        assert!(matches!(decode_key("k", "short"), Err(ZmqError::BadKey { field: "k" })));
    }

    #[test]
    fn config_from_figment_and_kernel_strings() {
        use figment::providers::Serialized;
        let fig = Figment::from(Serialized::defaults(serde_json::json!({
            "zmq": {"endpoint": "tcp://127.0.0.1:5555"}
        })));
        let cfg: ZmqConfig = fig.extract_inner("zmq").unwrap();
        assert_eq!(cfg.link, LinkSection::default(), "[link] is copied in by from_config");
        assert_eq!(cfg.link.reconnect_max_ms, 30_000);
        let legacy = Figment::from(Serialized::defaults(serde_json::json!({
            "zmq": {"endpoint": "tcp://127.0.0.1:5555", "heartbeat_ms": 250}
        })));
        assert!(
            legacy.extract_inner::<ZmqConfig>("zmq").is_err(),
            "heartbeat_ms is a [link] key; only the loader maps the old [zmq] name to it"
        );
        let spec = cfg.socket_spec("node-1").unwrap();
        assert_eq!(spec.routing_id.as_deref(), Some(b"node-1".as_slice()));
        assert!(!spec.router);
        assert!(from_config(&fig, &AgentConfig::default()).unwrap().is_some());
        let none = Figment::from(Serialized::defaults(serde_json::json!({})));
        assert!(from_config(&none, &AgentConfig::default()).unwrap().is_none());
        let both = Figment::from(Serialized::defaults(serde_json::json!({
            "zmq": {"endpoint": "tcp://a:1", "bind": "tcp://b:2"}
        })));
        assert!(from_config(&both, &AgentConfig::default()).is_err());
        let bad_key = Figment::from(Serialized::defaults(serde_json::json!({
            "zmq": {"endpoint": "tcp://a:1", "curve_server_key": "nope"}
        })));
        let e = from_config(&bad_key, &AgentConfig::default()).unwrap_err();
        assert!(e.to_string().contains("zmq"), "{e}");
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let (_, s) = generate_keypair().unwrap();
        let cfg =
            ZmqConfig { curve_secret_key: Some(s.clone().into()), ..ZmqConfig::bound("tcp://*:1") };
        assert!(!format!("{cfg:?}").contains(&s));
    }
}
