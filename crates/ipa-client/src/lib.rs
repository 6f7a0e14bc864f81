//! # ipa-client
//!
//! The controller side of the agent's transports behind one trait, [`AgentClient`]:
//! * [`rest::RestClient`]: Ironic's REST API (`/v1/commands/`, `/v1/status`) over the shared HTTP stack ([`ipa_http`]);
//! * [`amqp::AmqpController`]: a broker connection; [`amqp::AmqpController::agent`] gives a
//!   client for one agent queue; events come from the topic exchange;
//! * [`zmq::ZmqController`]: a bound `ROUTER` that agents dial (or a `DEALER` to an agent's bound
//!   `ROUTER`); [`zmq::ZmqController::agent`] gives a client for one agent.
//!
//! The broker clients speak the envelope of `ipa-envelope` (see `docs/transport-protocol.md`).
//! [`metrics::parse`] reads an agent's Prometheus scrape into structured families.
//! `ipactl` (in `src/bin`) is the operator CLI on top.

pub mod amqp;
pub mod metrics;
pub mod rest;
pub mod zmq;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ipa_core::command::{CommandResult, Params};
use ipa_core::dispatcher::AgentStatus;
use ipa_core::error::ErrorBody;
use ipa_envelope::{CommandList, Event, Operation, Reply, Request};
use tokio::sync::{broadcast, oneshot};

/// Why a client call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// The agent answered with IPA's error object.
    #[error("{}: {} ({})", .0.message, .0.details, .0.code)]
    Agent(ErrorBody),
    /// The wire failed (connect, send, decode).
    #[error("transport error: {0}")]
    Transport(String),
    /// No reply in time.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// This transport cannot do that (e.g. events over REST).
    #[error("not supported by this transport: {0}")]
    Unsupported(&'static str),
}

impl ClientError {
    /// The HTTP-like status (agent errors), if any.
    pub fn code(&self) -> Option<u16> {
        match self {
            ClientError::Agent(e) => Some(e.code),
            _ => None,
        }
    }
}

/// Options of `run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Return only once the command is final.
    pub wait: bool,
    /// Idempotency key (a repeat returns the stored result).
    pub idempotency_key: Option<String>,
}

/// One agent, whatever the wire.
#[async_trait]
pub trait AgentClient: Send + Sync {
    /// Run (or start) a command.
    async fn run(
        &self,
        name: &str,
        params: Params,
        opts: RunOptions,
    ) -> Result<CommandResult, ClientError>;
    /// One result by id.
    async fn get(&self, id: &str) -> Result<CommandResult, ClientError>;
    /// All results, oldest first.
    async fn list(&self) -> Result<Vec<CommandResult>, ClientError>;
    /// Agent status.
    async fn status(&self) -> Result<AgentStatus, ClientError>;
    /// Events from this agent (command progress etc.).
    fn events(&self) -> Result<EventStream, ClientError>;
}

/// A live agent seen on a broker (from `agent.online`/`agent.heartbeat`).
#[derive(Debug, Clone, PartialEq)]
pub struct SeenAgent {
    /// Agent id.
    pub agent_id: String,
    /// Seconds since the last event from it.
    pub last_seen_secs: f64,
}

/// Events filtered to one agent (or all, with `agent: None`).
#[derive(Debug)]
pub struct EventStream {
    rx: broadcast::Receiver<Event>,
    agent: Option<String>,
}

impl EventStream {
    /// Next event; `None` when the source is gone.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            match self.rx.recv().await {
                Ok(e) if self.agent.as_deref().is_none_or(|a| a == e.agent_id) => return Some(e),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// Shared plumbing of the broker clients: pending requests by message id, events, agents seen.
#[derive(Debug, Clone)]
pub(crate) struct Router {
    pending: Arc<Mutex<HashMap<String, oneshot::Sender<Reply>>>>,
    events: broadcast::Sender<Event>,
    seen: Arc<Mutex<HashMap<String, Instant>>>,
}

impl Default for Router {
    fn default() -> Self {
        Self { pending: Arc::default(), events: broadcast::channel(4096).0, seen: Arc::default() }
    }
}

impl Router {
    pub(crate) fn expect(&self, id: &str) -> oneshot::Receiver<Reply> {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string(), tx);
        rx
    }

    pub(crate) fn forget(&self, id: &str) {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// Route one incoming message (reply or event).
    pub(crate) fn deliver(&self, bytes: &[u8]) {
        self.deliver_keyed(None, bytes)
    }

    /// Route one message; a reply is matched by `key` (AMQP correlation id) when given, else by
    /// its envelope id (`""` for `"id": null`).
    pub(crate) fn deliver_keyed(&self, key: Option<&str>, bytes: &[u8]) {
        match ipa_envelope::Message::decode(bytes) {
            Ok(ipa_envelope::Message::Reply(r)) => {
                let key =
                    key.map(str::to_string).unwrap_or_else(|| r.id.clone().unwrap_or_default());
                let tx = self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
                match tx {
                    Some(tx) => {
                        let _ = tx.send(r);
                    }
                    None => tracing::debug!(id = ?r.id, "reply for no pending request"),
                }
            }
            Ok(ipa_envelope::Message::Event(e)) => {
                {
                    let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
                    match &e.event {
                        ipa_core::AgentEvent::AgentOffline { .. } => {
                            seen.remove(&e.agent_id);
                        }
                        _ => {
                            seen.insert(e.agent_id.clone(), Instant::now());
                        }
                    }
                }
                let _ = self.events.send(e);
            }
            Err(err) => tracing::warn!(error = %err, "undecodable message from an agent"),
        }
    }

    pub(crate) fn stream(&self, agent: Option<String>) -> EventStream {
        EventStream { rx: self.events.subscribe(), agent }
    }

    pub(crate) fn seen(&self, max_age: Duration) -> Vec<SeenAgent> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = seen
            .iter()
            .filter(|(_, t)| t.elapsed() <= max_age)
            .map(|(a, t)| SeenAgent {
                agent_id: a.clone(),
                last_seen_secs: t.elapsed().as_secs_f64(),
            })
            .collect();
        v.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
        v
    }

    pub(crate) fn has_seen(&self, agent: &str) -> bool {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).contains_key(agent)
    }

    /// Wait (polling, bounded by `timeout`) until `agent` has announced itself.
    pub(crate) async fn wait_for_agent(&self, agent: &str, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if self.has_seen(agent) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

/// How an envelope client sends one request.
#[async_trait]
pub(crate) trait EnvelopeWire: Send + Sync + 'static {
    async fn call(&self, request: Request, timeout: Duration) -> Result<Reply, ClientError>;
    fn events(&self) -> EventStream;
}

/// An [`AgentClient`] over any envelope wire.
#[derive(Clone)]
pub struct EnvelopeClient {
    wire: Arc<dyn EnvelopeWire>,
    token: Option<String>,
    timeout: Duration,
}

impl std::fmt::Debug for EnvelopeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvelopeClient").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl EnvelopeClient {
    pub(crate) fn new(wire: Arc<dyn EnvelopeWire>, token: Option<String>) -> Self {
        Self { wire, token, timeout: Duration::from_secs(30) }
    }

    /// The same client with another token (`None`: none).
    pub fn with_token(&self, token: Option<&str>) -> Self {
        Self { token: token.map(str::to_string), ..self.clone() }
    }

    /// The same client with another per-request timeout (`wait` requests wait without limit).
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Self { timeout, ..self.clone() }
    }

    /// Send a raw request and get the reply (tests of malformed input use this).
    pub async fn call(&self, request: Request, wait: bool) -> Result<Reply, ClientError> {
        let t = if wait { Duration::from_secs(24 * 3600) } else { self.timeout };
        self.wire.call(request, t).await
    }

    async fn op<T: serde::de::DeserializeOwned>(&self, op: Operation) -> Result<T, ClientError> {
        let wait = matches!(op, Operation::Run { wait: true, .. });
        let reply = self.call(Request::new(op, self.token.clone()), wait).await?;
        reply.into_result().map_err(ClientError::Agent)
    }
}

#[async_trait]
impl AgentClient for EnvelopeClient {
    async fn run(
        &self,
        name: &str,
        params: Params,
        opts: RunOptions,
    ) -> Result<CommandResult, ClientError> {
        self.op(Operation::Run {
            name: name.into(),
            params,
            wait: opts.wait,
            idempotency_key: opts.idempotency_key,
        })
        .await
    }
    async fn get(&self, id: &str) -> Result<CommandResult, ClientError> {
        self.op(Operation::Get { id: id.into() }).await
    }
    async fn list(&self) -> Result<Vec<CommandResult>, ClientError> {
        self.op::<CommandList>(Operation::List).await.map(|l| l.commands)
    }
    async fn status(&self) -> Result<AgentStatus, ClientError> {
        self.op(Operation::Status).await
    }
    fn events(&self) -> Result<EventStream, ClientError> {
        Ok(self.wire.events())
    }
}

/// Await a pending reply with a timeout.
pub(crate) async fn await_reply(
    router: &Router,
    id: &str,
    rx: oneshot::Receiver<Reply>,
    timeout: Duration,
) -> Result<Reply, ClientError> {
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(_)) => Err(ClientError::Transport("connection closed".into())),
        Err(_) => {
            router.forget(id);
            Err(ClientError::Timeout(timeout))
        }
    }
}
