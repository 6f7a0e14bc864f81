//! ZeroMQ controller: a bound `ROUTER` that agents dial (their routing id is the agent id), or
//! a `DEALER` dialing one agent's bound `ROUTER`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ipa_envelope::{Reply, Request};
use ipa_transport_zmq::{Bridge, BridgeHandle, CurveRole, Inbound, LinkEvent, SocketSpec};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{
    ClientError, EnvelopeClient, EnvelopeWire, EventStream, Router, SeenAgent, await_reply,
};

/// CURVE for the controller.
#[derive(Clone, Default)]
pub struct ControllerCurve {
    /// Bound mode: our secret key (agents are configured with the matching public key).
    pub secret: Option<[u8; 32]>,
    /// Bound mode: agent public keys allowed in (`None`: any agent knowing our public key).
    pub allowed_agents: Option<Vec<[u8; 32]>>,
    /// Dial mode: the agent's server public key and our key pair.
    pub client: Option<([u8; 32], [u8; 32], [u8; 32])>,
}

impl std::fmt::Debug for ControllerCurve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerCurve")
            .field("server", &self.secret.is_some())
            .field("allowed_agents", &self.allowed_agents.as_ref().map(Vec::len))
            .field("client", &self.client.is_some())
            .finish()
    }
}

/// The controller end of the ZeroMQ transport.
#[derive(Debug)]
pub struct ZmqController {
    handle: BridgeHandle,
    router: Router,
    endpoint: String,
    bound: bool,
    link: watch::Receiver<Option<LinkEvent>>,
    task: JoinHandle<()>,
}

impl Drop for ZmqController {
    fn drop(&mut self) {
        self.handle.stop();
        self.task.abort();
    }
}

impl ZmqController {
    /// Bind a ROUTER at `endpoint` (`tcp://127.0.0.1:*` picks a free port).
    pub fn bind(endpoint: &str, curve: ControllerCurve) -> Result<Self, ClientError> {
        let spec = SocketSpec {
            router: true,
            endpoint: endpoint.into(),
            bind: true,
            routing_id: None,
            curve: curve.secret.map(|secret| CurveRole::Server {
                secret,
                allowed_clients: curve.allowed_agents.clone(),
            }),
            heartbeat_ms: 2000,
            reconnect_min_ms: 100,
            reconnect_max_ms: 5000,
            max_msg_bytes: -1,
            router_mandatory: true,
        };
        Self::start(spec, true)
    }

    /// Dial an agent's bound ROUTER with a DEALER.
    pub fn dial(endpoint: &str, curve: ControllerCurve) -> Result<Self, ClientError> {
        let spec = SocketSpec {
            router: false,
            endpoint: endpoint.into(),
            bind: false,
            routing_id: Some(format!("ctl-{}", uuid::Uuid::new_v4()).into_bytes()),
            curve: curve.client.map(|(server_public, public, secret)| CurveRole::Client {
                server_public,
                public,
                secret,
            }),
            heartbeat_ms: 2000,
            reconnect_min_ms: 100,
            reconnect_max_ms: 5000,
            max_msg_bytes: -1,
            router_mandatory: false,
        };
        Self::start(spec, false)
    }

    fn start(spec: SocketSpec, bound: bool) -> Result<Self, ClientError> {
        // Own context: a CURVE server's ZAP handler is per context.
        let bridge = Bridge::start(::zmq::Context::new(), spec, "controller")
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let endpoint = bridge.endpoint.clone();
        let handle = bridge.handle.clone();
        let router = Router::default();
        let (link_tx, link) = watch::channel(None);
        let r = router.clone();
        let task = tokio::spawn(async move {
            let mut bridge = bridge;
            while let Some(m) = bridge.inbound.recv().await {
                match m {
                    Inbound::Message { data, .. } => r.deliver(&data),
                    Inbound::Link(l) => {
                        if let LinkEvent::HandshakeFailed { reason, endpoint } = &l {
                            tracing::warn!(%endpoint, %reason, "zmq controller: handshake failed");
                        }
                        link_tx.send_replace(Some(l));
                    }
                }
            }
        });
        Ok(Self { handle, router, endpoint, bound, link, task })
    }

    /// The endpoint bound (with the real port) or dialed.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The last link event (handshake failures show here).
    pub fn link(&self) -> watch::Receiver<Option<LinkEvent>> {
        self.link.clone()
    }

    /// A client for one agent (`agent_id` is its routing id; ignored in dial mode).
    pub fn agent(&self, agent_id: &str, token: Option<&str>) -> EnvelopeClient {
        let wire = ZmqWire {
            handle: self.handle.clone(),
            router: self.router.clone(),
            peer: self.bound.then(|| agent_id.as_bytes().to_vec()),
            agent: agent_id.to_string(),
        };
        EnvelopeClient::new(Arc::new(wire), token.map(str::to_string))
    }

    /// Agents heard from within `max_age`.
    pub fn agents(&self, max_age: Duration) -> Vec<SeenAgent> {
        self.router.seen(max_age)
    }

    /// Wait until `agent_id` has announced itself (bounded by `timeout`).
    pub async fn wait_for_agent(&self, agent_id: &str, timeout: Duration) -> bool {
        self.router.wait_for_agent(agent_id, timeout).await
    }

    /// All events.
    pub fn events(&self) -> EventStream {
        self.router.stream(None)
    }
}

struct ZmqWire {
    handle: BridgeHandle,
    router: Router,
    peer: Option<Vec<u8>>,
    agent: String,
}

#[async_trait]
impl EnvelopeWire for ZmqWire {
    async fn call(&self, request: Request, timeout: Duration) -> Result<Reply, ClientError> {
        let id = request.id.clone();
        let rx = self.router.expect(&id);
        if let Err(e) = self.handle.send_checked(self.peer.clone(), request.encode()).await {
            self.router.forget(&id);
            return Err(ClientError::Transport(format!("agent {}: {e}", self.agent)));
        }
        await_reply(&self.router, &id, rx, timeout).await
    }

    fn events(&self) -> EventStream {
        self.router.stream(self.peer.as_ref().map(|_| self.agent.clone()))
    }
}

/// Send raw bytes to an agent (tests of malformed input): returns the next reply with no id.
impl ZmqController {
    /// Send `bytes` as-is to `agent_id` and wait for the error reply (`"id": null` or any id).
    pub async fn send_raw(
        &self,
        agent_id: &str,
        bytes: Vec<u8>,
        reply_id: Option<&str>,
        timeout: Duration,
    ) -> Result<Reply, ClientError> {
        let key = reply_id.unwrap_or("").to_string();
        let rx = self.router.expect_any(&key);
        let peer = self.bound.then(|| agent_id.as_bytes().to_vec());
        self.handle
            .send_checked(peer, bytes)
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        await_reply(&self.router, &key, rx, timeout).await
    }
}

impl Router {
    /// Expect a reply whose id is `id` (empty: a reply with `"id": null`).
    pub(crate) fn expect_any(&self, id: &str) -> tokio::sync::oneshot::Receiver<Reply> {
        self.expect(id)
    }
}
