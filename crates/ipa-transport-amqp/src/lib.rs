//! # ipa-transport-amqp
//!
//! The AMQP 0-9-1 transport (feature `transport-amqp` of the agent), on lapin with rustls/ring.
//!
//! * The agent declares and consumes its own durable queue `<queue_prefix><agent id>` (the id is
//!   the node UUID after lookup, else the configured or MAC-derived id; it follows changes).
//! * Requests carry the JSON envelope of `ipa-envelope`; the reply goes to `reply_to` with the
//!   request's `correlation_id`. A message is **acked only once the dispatcher has recorded (or
//!   refused) the command**; a `wait` reply is published later. Invalid or oversized messages get
//!   an error reply and are rejected without requeue.
//! * Events go to the topic exchange `events_exchange` with routing key `<agent id>.<event>`.
//! * Connection loss (broker restart) → reconnect with jittered exponential backoff. Commands
//!   keep running inside the dispatcher; their results stay queryable after the reconnect.
//! * `amqps://` with a private CA (`ca_file`) and per-agent credentials (`username`,
//!   `password_file`, or in the URL). Passwords never reach a log line.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use figment::Figment;
use futures_util::StreamExt;
use ipa_core::config::{AgentConfig, ConfigError, LinkSection};
use ipa_core::dispatcher::SharedDispatcher;
use ipa_core::events::AgentEvent;
use ipa_core::registry::TransportDescriptor;
use ipa_core::transport::{Transport, TransportContext, TransportError, TransportFuture};
use ipa_envelope::link::{LinkReporter, LinkStateCell, ReadyOnce, heartbeat_interval, next_event};
use ipa_envelope::{Event, LinkState, Reply, decode_request, handle_staged, too_large};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, BasicRejectOptions,
    ExchangeDeclareOptions, QueueDeclareOptions,
};
use lapin::tcp::OwnedTLSConfig;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde::Deserialize;
use tokio::sync::{broadcast, oneshot, watch};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    /// The URL does not parse.
    #[error("invalid AMQP URL: {0}")]
    Url(String),
    /// A file (CA, password) could not be read.
    #[error("cannot read {path}")]
    File {
        /// Path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The broker refused us (credentials, vhost permission, TLS).
    #[error("broker refused the connection: {0}")]
    Refused(String),
    /// Connecting or talking to the broker failed.
    #[error("AMQP error: {0}")]
    Broker(String),
}

impl From<AmqpError> for TransportError {
    fn from(e: AmqpError) -> Self {
        TransportError::Connection { transport: "amqp".into(), reason: e.to_string() }
    }
}

/// Classify a lapin error into something an operator can act on.
pub fn classify(e: &lapin::Error) -> AmqpError {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    if text.contains("ACCESS_REFUSED")
        || lower.contains("access_refused")
        || lower.contains("authentication")
        || lower.contains("login was refused")
    {
        AmqpError::Refused(format!(
            "authentication failed (ACCESS_REFUSED): check username/password: {text}"
        ))
    } else if text.contains("NOT_ALLOWED") || lower.contains("vhost") {
        AmqpError::Refused(format!("vhost access not allowed: {text}"))
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
    {
        AmqpError::Refused(format!(
            "TLS failure (check ca_file and the broker certificate): {text}"
        ))
    } else {
        AmqpError::Broker(text)
    }
}

fn default_queue_prefix() -> String {
    "ipa.agent.".into()
}
fn default_exchange() -> String {
    "ipa.events".into()
}
fn default_ttl() -> u64 {
    300
}
fn default_prefetch() -> u64 {
    16
}

/// Frame size the agent asks the broker for unless the URL names one.
pub const DEFAULT_FRAME_MAX: u32 = 16384;

/// The `[amqp]` configuration section; it is also the transport.
#[derive(Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AmqpConfig {
    /// `amqp://host:5672/vhost` or `amqps://…` (credentials may be inline). Kernel: `ipa-amqp-url`.
    #[serde(default)]
    pub url: Option<String>,
    /// PEM CA bundle to verify an `amqps` broker. Kernel: `ipa-amqp-ca-file`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// User name (overrides the URL's). Kernel: `ipa-amqp-username`.
    #[serde(default)]
    pub username: Option<String>,
    /// Password (overrides the URL's). Prefer `password_file`.
    #[serde(default)]
    pub password: Option<ipa_core::secret::Secret>,
    /// File holding the password. Kernel: `ipa-amqp-password-file`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Request queue name prefix; the agent id follows.
    #[serde(default = "default_queue_prefix")]
    pub queue_prefix: String,
    /// Topic exchange for events.
    #[serde(default = "default_exchange")]
    pub events_exchange: String,
    /// Requests not consumed within this many seconds expire (`x-message-ttl`).
    #[serde(default = "default_ttl", deserialize_with = "ipa_envelope::de::u64_lenient")]
    pub request_ttl_secs: u64,
    /// Unacked deliveries in flight (`basic.qos`).
    #[serde(default = "default_prefetch", deserialize_with = "ipa_envelope::de::u64_lenient")]
    pub prefetch: u64,
    /// The shared `[link]` section (heartbeat, reconnect backoff, ready timeout, request size
    /// limit), copied in from the agent's configuration when the transport is built.
    #[serde(skip)]
    pub link: LinkSection,
    #[serde(skip)]
    state: Arc<LinkStateCell>,
}

impl std::fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpConfig")
            .field("url", &self.url.as_deref().map(redact_url))
            .field("ca_file", &self.ca_file)
            .field("username", &self.username)
            .field("queue_prefix", &self.queue_prefix)
            .field("events_exchange", &self.events_exchange)
            .finish_non_exhaustive()
    }
}

/// The URL with any password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match url.parse::<AMQPUri>() {
        Ok(_) => {
            // scheme://user:pass@host → scheme://user:***@host
            if let Some((scheme, rest)) = url.split_once("://")
                && let Some((userinfo, host)) = rest.split_once('@')
            {
                let user = userinfo.split(':').next().unwrap_or("");
                return format!("{scheme}://{user}:***@{host}");
            }
            url.to_string()
        }
        Err(_) => "<invalid url>".into(),
    }
}

/// Routing key of an event: `<agent id>.<event>` with dots in the id replaced.
pub fn event_routing_key(agent_id: &str, topic: &str) -> String {
    format!("{}.{topic}", agent_id.replace('.', "_"))
}

impl AmqpConfig {
    /// A config for `url` with defaults.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: Some(url.into()),
            queue_prefix: default_queue_prefix(),
            events_exchange: default_exchange(),
            request_ttl_secs: default_ttl(),
            prefetch: default_prefetch(),
            ..Default::default()
        }
    }

    /// Watch the link state (why it is down, if it is).
    pub fn link_state(&self) -> watch::Receiver<LinkState> {
        self.state.subscribe()
    }

    /// The queue this agent consumes.
    pub fn queue_name(&self, agent_id: &str) -> String {
        format!("{}{agent_id}", self.queue_prefix)
    }

    /// Parsed URI with credential overrides applied.
    pub fn uri(&self) -> Result<AMQPUri, AmqpError> {
        let url = self.url.as_deref().ok_or_else(|| AmqpError::Url("no url".into()))?;
        let mut uri: AMQPUri = url.parse().map_err(|e: String| AmqpError::Url(e))?;
        // lapin keeps two 32-frame buffers per connection: at RabbitMQ's default 128 KiB frame
        // that is ~8 MiB resident per agent; 16 KiB frames cut it to ~0.4 MiB with no measured
        // latency cost (docs/fleet-benchmark.md). An explicit `?frame_max=` in the URL wins.
        if uri.query.frame_max.is_none() {
            uri.query.frame_max = Some(DEFAULT_FRAME_MAX);
        }
        if let Some(u) = &self.username {
            uri.authority.userinfo.username = u.clone();
        }
        if let Some(p) = &self.password {
            uri.authority.userinfo.password = p.expose().to_string();
        }
        if let Some(path) = &self.password_file {
            let p = std::fs::read_to_string(path)
                .map_err(|source| AmqpError::File { path: path.clone(), source })?;
            uri.authority.userinfo.password = p.trim_end_matches(['\n', '\r']).to_string();
        }
        Ok(uri)
    }

    /// TLS settings (CA bundle) for `amqps`.
    pub fn tls(&self) -> Result<OwnedTLSConfig, AmqpError> {
        let cert_chain = match &self.ca_file {
            None => None,
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|source| AmqpError::File { path: p.clone(), source })?,
            ),
        };
        Ok(OwnedTLSConfig { identity: None, cert_chain })
    }

    /// Where we connect, for logs (no password).
    pub fn display_endpoint(&self) -> String {
        self.url.as_deref().map(redact_url).unwrap_or_default()
    }
}

/// Connect to the broker described by `uri`/`tls` (shared with the controller client).
pub async fn connect(
    uri: AMQPUri,
    tls: OwnedTLSConfig,
    name: &str,
) -> Result<Connection, AmqpError> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    let runtime =
        lapin::runtime::default_runtime().map_err(|e| AmqpError::Broker(e.to_string()))?;
    Connection::connect_uri_with_config(uri, props, tls, runtime).await.map_err(|e| classify(&e))
}

fn from_config(
    fig: &Figment,
    core: &AgentConfig,
) -> Result<Option<Box<dyn Transport>>, ConfigError> {
    if fig.find_value("amqp").is_err() {
        return Ok(None);
    }
    let mut cfg: AmqpConfig = fig.extract_inner("amqp")?;
    cfg.link = core.link.clone();
    if cfg.url.is_none() {
        return Ok(None);
    }
    cfg.uri().map_err(|e| ConfigError::Plugin { plugin: "amqp".into(), reason: e.to_string() })?;
    cfg.tls().map_err(|e| ConfigError::Plugin { plugin: "amqp".into(), reason: e.to_string() })?;
    Ok(Some(Box::new(cfg)))
}

ipa_core::inventory::submit! {
    TransportDescriptor {
        name: "amqp",
        description: "AMQP 0-9-1 (RabbitMQ): own request queue, replies to reply_to, events on a topic exchange",
        config_section: Some("amqp"),
        kernel_params: &[
            ("ipa-amqp-url", "amqp.url"),
            ("ipa-amqp-ca-file", "amqp.ca_file"),
            ("ipa-amqp-username", "amqp.username"),
            ("ipa-amqp-password-file", "amqp.password_file"),
            ("ipa-amqp-queue-prefix", "amqp.queue_prefix"),
            ("ipa-amqp-events-exchange", "amqp.events_exchange"),
        ],
        from_config,
    }
}

#[async_trait]
impl Transport for AmqpConfig {
    fn name(&self) -> &'static str {
        "amqp"
    }

    async fn build(&self, ctx: TransportContext) -> Result<TransportFuture, TransportError> {
        // Fail fast on configuration problems; broker problems are retried in the background.
        self.uri()?;
        self.tls()?;
        let cfg = self.clone();
        Ok(Box::pin(serve(cfg, ctx)))
    }
}

enum SessionEnd {
    Shutdown,
    IdentityChanged,
}

struct Shared {
    cfg: AmqpConfig,
    state: LinkReporter,
}

async fn serve(cfg: AmqpConfig, mut ctx: TransportContext) -> Result<(), TransportError> {
    let state = LinkReporter::new(cfg.state.sender().clone(), ctx.metrics.clone(), "amqp");
    let shared = Shared { state, cfg };
    let cfg = &shared.cfg;
    let mut backoff = cfg.link.reconnect_min_ms.max(10);
    // Ready on the first connect, or "(connecting)" after the timeout.
    let ready = ReadyOnce::new(ctx.ready.clone(), "amqp");
    {
        let ready = ready.clone();
        let wait = Duration::from_millis(cfg.link.ready_timeout_ms);
        let endpoint = cfg.display_endpoint();
        let stop = ctx.shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => return,
            }
            if !ready.is_done() {
                tracing::warn!(broker = %endpoint, "amqp: broker not reachable yet; still trying in the background");
                ready.report(format!("{endpoint} (connecting)"));
            }
        });
    }
    let mut events = ctx.dispatcher.subscribe();
    loop {
        let agent_id = ctx.identity.borrow_and_update().clone();
        let mut connected = false;
        let outcome =
            session(&shared, &mut ctx, &agent_id, &mut events, &ready, &mut connected).await;
        match outcome {
            Ok(SessionEnd::Shutdown) => return Ok(()),
            Ok(SessionEnd::IdentityChanged) => {
                backoff = cfg.link.reconnect_min_ms.max(10);
                continue;
            }
            Err(e) => {
                if connected {
                    backoff = cfg.link.reconnect_min_ms.max(10);
                }
                match &e {
                    AmqpError::Refused(reason) => {
                        tracing::error!(broker = %cfg.display_endpoint(), %reason, "amqp: broker refused the agent");
                        shared.state.set(LinkState::Refused { reason: reason.clone() });
                    }
                    other => {
                        tracing::warn!(broker = %cfg.display_endpoint(), error = %other, retry_ms = backoff, "amqp: link down; reconnecting");
                        shared.state.set(LinkState::Down { reason: other.to_string() });
                    }
                }
                // Jitter 0.5–1.0 of the backoff so a fleet does not reconnect in lockstep.
                let jitter = 0.5 + rand::random::<f64>() * 0.5;
                let wait = Duration::from_millis((backoff as f64 * jitter) as u64);
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(wait) => {}
                }
                backoff =
                    (backoff * 2).min(cfg.link.reconnect_max_ms.max(cfg.link.reconnect_min_ms));
            }
        }
    }
}

async fn publish_event(
    ch: &Channel,
    exchange: &str,
    agent_id: &str,
    ev: AgentEvent,
) -> Result<(), AmqpError> {
    let e = Event::new(agent_id, ev);
    let key = event_routing_key(agent_id, e.topic());
    ch.basic_publish(
        exchange.into(),
        key.as_str().into(),
        BasicPublishOptions::default(),
        &e.encode(),
        BasicProperties::default().with_content_type("application/json".into()),
    )
    .await
    .map_err(|e| classify(&e))?;
    Ok(())
}

async fn publish_reply(
    ch: &Channel,
    reply_to: &ShortString,
    correlation_id: ShortString,
    reply: &Reply,
) {
    let r = ch
        .basic_publish(
            "".into(),
            reply_to.clone(),
            BasicPublishOptions::default(),
            &reply.encode(),
            BasicProperties::default()
                .with_correlation_id(correlation_id)
                .with_content_type("application/json".into()),
        )
        .await;
    if let Err(e) = r {
        // The client's reply queue died with the old connection; it can `get` the result.
        tracing::warn!(error = %e, reply_to = %reply_to, "amqp: reply could not be published");
    }
}

async fn session(
    shared: &Shared,
    ctx: &mut TransportContext,
    agent_id: &str,
    events: &mut broadcast::Receiver<AgentEvent>,
    ready: &ReadyOnce,
    connected: &mut bool,
) -> Result<SessionEnd, AmqpError> {
    let cfg = &shared.cfg;
    if ctx.shutdown.is_cancelled() {
        return Ok(SessionEnd::Shutdown);
    }
    shared.state.set(LinkState::Connecting);
    let conn_name = format!("ipa-agent {agent_id}");
    let conn = tokio::select! {
        c = connect(cfg.uri()?, cfg.tls()?, &conn_name) => c?,
        _ = ctx.shutdown.cancelled() => return Ok(SessionEnd::Shutdown),
    };
    let broker = |e: lapin::Error| classify(&e);
    let ch = conn.create_channel().await.map_err(broker)?;
    let prefetch = cfg.prefetch.clamp(1, u16::MAX as u64) as u16;
    ch.basic_qos(prefetch, BasicQosOptions::default()).await.map_err(broker)?;
    ch.exchange_declare(
        cfg.events_exchange.as_str().into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions { durable: true, ..Default::default() },
        FieldTable::default(),
    )
    .await
    .map_err(broker)?;
    let queue = cfg.queue_name(agent_id);
    let mut args = FieldTable::default();
    args.insert(
        "x-message-ttl".into(),
        AMQPValue::LongLongInt((cfg.request_ttl_secs * 1000) as i64),
    );
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions { durable: true, ..Default::default() },
        args,
    )
    .await
    .map_err(broker)?;
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            format!("ipa-agent-{agent_id}").as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(broker)?;
    *connected = true;
    let endpoint = format!("{}/{queue}", cfg.display_endpoint());
    tracing::info!(%endpoint, %agent_id, "amqp: consuming");
    shared.state.set(LinkState::Up { endpoint: endpoint.clone() });
    ready.report(endpoint);
    let exchange = cfg.events_exchange.clone();
    publish_event(&ch, &exchange, agent_id, AgentEvent::AgentOnline { agent_id: agent_id.into() })
        .await?;
    let mut heartbeat = heartbeat_interval(cfg.link.heartbeat_ms);
    heartbeat.tick().await;
    let max = cfg.link.max_message_bytes as usize;
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => {
                let _ = publish_event(&ch, &exchange, agent_id, AgentEvent::AgentOffline { agent_id: agent_id.into(), reason: "shutdown".into() }).await;
                let _ = conn.close(200, "agent shutting down".into()).await;
                return Ok(SessionEnd::Shutdown);
            }
            changed = ctx.identity.changed() => {
                if changed.is_ok() && *ctx.identity.borrow() != agent_id {
                    let new_id = ctx.identity.borrow().clone();
                    tracing::info!(old = %agent_id, new = %new_id, "amqp: agent identity changed; moving to the new queue");
                    let _ = publish_event(&ch, &exchange, agent_id, AgentEvent::AgentOffline { agent_id: agent_id.into(), reason: format!("identity changed to {new_id}") }).await;
                    let _ = conn.close(200, "identity changed".into()).await;
                    return Ok(SessionEnd::IdentityChanged);
                }
            }
            d = consumer.next() => {
                let delivery = match d {
                    None => return Err(AmqpError::Broker("consumer cancelled".into())),
                    Some(Err(e)) => return Err(classify(&e)),
                    Some(Ok(d)) => d,
                };
                let ch = ch.clone();
                let dispatcher = ctx.dispatcher.clone();
                tokio::spawn(handle_delivery(ch, dispatcher, delivery, max));
            }
            ev = next_event(events, "amqp") => {
                if let Some(ev) = ev {
                    publish_event(&ch, &exchange, agent_id, ev).await?;
                }
            }
            _ = heartbeat.tick() => {
                if !conn.status().connected() {
                    return Err(AmqpError::Broker("connection lost".into()));
                }
                publish_event(&ch, &exchange, agent_id, AgentEvent::AgentHeartbeat { agent_id: agent_id.into() }).await?;
            }
        }
    }
}

async fn handle_delivery(
    ch: Channel,
    d: SharedDispatcher,
    delivery: lapin::message::Delivery,
    max: usize,
) {
    let reply_to = delivery.properties.reply_to().clone();
    let correlation = delivery.properties.correlation_id().clone();
    let acker = delivery.acker.clone();
    let data = delivery.data;
    let reject = || async {
        if let Err(e) = acker.reject(BasicRejectOptions { requeue: false }).await {
            tracing::warn!(error = %e, "amqp: reject failed");
        }
    };
    let reply_to_bad = |reply: Reply| {
        let ch = ch.clone();
        let reply_to = reply_to.clone();
        let correlation = correlation.clone();
        async move {
            match &reply_to {
                Some(rt) => {
                    let corr = correlation
                        .unwrap_or_else(|| reply.id.clone().unwrap_or_default().as_str().into());
                    publish_reply(&ch, rt, corr, &reply).await;
                }
                None => tracing::warn!("amqp: invalid message without reply_to; rejected"),
            }
        }
    };
    if data.len() > max {
        tracing::warn!(bytes = data.len(), max, "amqp: oversized message rejected");
        reply_to_bad(Reply::err(None, &too_large(data.len(), max))).await;
        reject().await;
        return;
    }
    let req = match decode_request(&data, max) {
        Ok(r) => r,
        Err(reply) => {
            tracing::warn!(
                bytes = data.len(),
                error = reply.error.as_ref().map(|e| e.details.as_str()).unwrap_or(""),
                "amqp: invalid envelope rejected with an error reply"
            );
            reply_to_bad(reply).await;
            reject().await;
            return;
        }
    };
    tracing::debug!(op = req.op_name(), msg_id = %req.id, redelivered = delivery.redelivered, "amqp request");
    let corr: ShortString = correlation.unwrap_or_else(|| req.id.as_str().into());
    let (decided_tx, decided_rx) = oneshot::channel::<()>();
    let ack_acker = acker.clone();
    let ack = tokio::spawn(async move {
        if decided_rx.await.is_ok()
            && let Err(e) = ack_acker.ack(BasicAckOptions::default()).await
        {
            tracing::warn!(error = %e, "amqp: ack failed (the broker will redeliver; the message id makes that idempotent)");
        }
    });
    let reply = handle_staged(&*d, req, move || {
        let _ = decided_tx.send(());
    })
    .await;
    let _ = ack.await;
    match &reply_to {
        Some(rt) => publish_reply(&ch, rt, corr, &reply).await,
        None => tracing::debug!("amqp: request without reply_to; reply not sent"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_from_figment_with_kernel_strings_and_overrides() {
        use figment::providers::Serialized;
        let dir = std::env::temp_dir().join(format!("ipa-amqp-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pw = dir.join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        let fig = Figment::from(Serialized::defaults(serde_json::json!({
            "amqp": {"url": "amqp://guest:guest@127.0.0.1:5673/%2f", "username": "agent1",
                     "password_file": pw, "prefetch": "4"}
        })));
        let cfg: AmqpConfig = fig.extract_inner("amqp").unwrap();
        assert_eq!(cfg.prefetch, 4);
        assert_eq!(cfg.queue_name("n1"), "ipa.agent.n1");
        let uri = cfg.uri().unwrap();
        assert_eq!(uri.authority.userinfo.username, "agent1");
        assert_eq!(uri.authority.userinfo.password, "s3cret");
        assert_eq!(uri.query.frame_max, Some(DEFAULT_FRAME_MAX), "small frames by default");
        let explicit = AmqpConfig {
            url: Some("amqp://127.0.0.1:5673/%2f?frame_max=131072".into()),
            ..cfg.clone()
        };
        assert_eq!(explicit.uri().unwrap().query.frame_max, Some(131072), "the URL wins");
        assert!(!format!("{cfg:?}").contains("guest:guest"));
        assert!(from_config(&fig, &AgentConfig::default()).unwrap().is_some());
        let none = Figment::from(Serialized::defaults(serde_json::json!({})));
        assert!(from_config(&none, &AgentConfig::default()).unwrap().is_none());
        let bad =
            Figment::from(Serialized::defaults(serde_json::json!({"amqp": {"url": "http://x"}})));
        assert!(from_config(&bad, &AgentConfig::default()).is_err());
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn passwords_are_redacted_and_routing_keys_are_safe() {
        assert_eq!(redact_url("amqp://u:p@h:1/v"), "amqp://u:***@h:1/v");
        assert_eq!(redact_url("amqp://h:1"), "amqp://h:1");
        assert_eq!(event_routing_key("a.b", "command.finished"), "a_b.command.finished");
    }
}
