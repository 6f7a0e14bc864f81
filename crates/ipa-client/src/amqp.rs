//! AMQP controller: one broker connection (re-established on demand after a broker restart), an
//! exclusive reply queue, and an exclusive events queue bound to the agents' topic exchange.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use ipa_envelope::{Reply, Request};
use ipa_transport_amqp::{AmqpConfig, connect};
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use tokio::sync::Mutex;

use crate::{
    ClientError, EnvelopeClient, EnvelopeWire, EventStream, Router, SeenAgent, await_reply,
};

struct Session {
    conn: Connection,
    channel: Channel,
    reply_queue: String,
}

/// The controller end of the AMQP transport.
pub struct AmqpController {
    cfg: AmqpConfig,
    router: Router,
    session: Arc<Mutex<Option<Session>>>,
    reconnect_for: Duration,
}

impl std::fmt::Debug for AmqpController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpController").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

impl AmqpController {
    /// Connect with the same settings an agent uses (URL, CA, credentials, prefixes).
    pub async fn connect(cfg: AmqpConfig) -> Result<Arc<Self>, ClientError> {
        let c = Arc::new(Self {
            cfg,
            router: Router::default(),
            session: Arc::default(),
            reconnect_for: Duration::from_secs(60),
        });
        c.ensure(Duration::ZERO).await?;
        Ok(c)
    }

    async fn open(&self) -> Result<Session, ClientError> {
        let t =
            |e: lapin::Error| ClientError::Transport(ipa_transport_amqp::classify(&e).to_string());
        let uri = self.cfg.uri().map_err(|e| ClientError::Transport(e.to_string()))?;
        let tls = self.cfg.tls().map_err(|e| ClientError::Transport(e.to_string()))?;
        let conn = connect(uri, tls, "ipa-client")
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let channel = conn.create_channel().await.map_err(t)?;
        let q = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .map_err(t)?;
        let reply_queue = q.name().to_string();
        let mut replies = channel
            .basic_consume(
                q.name().clone(),
                "ipa-client-replies".into(),
                BasicConsumeOptions { no_ack: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .map_err(t)?;
        channel
            .exchange_declare(
                self.cfg.events_exchange.as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions { durable: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .map_err(t)?;
        let eq = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .map_err(t)?;
        channel
            .queue_bind(
                eq.name().clone(),
                self.cfg.events_exchange.as_str().into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(t)?;
        let mut events = channel
            .basic_consume(
                eq.name().clone(),
                "ipa-client-events".into(),
                BasicConsumeOptions { no_ack: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .map_err(t)?;
        let r = self.router.clone();
        tokio::spawn(async move {
            while let Some(Ok(d)) = replies.next().await {
                let key = d.properties.correlation_id().as_ref().map(|c| c.to_string());
                r.deliver_keyed(key.as_deref(), &d.data);
            }
        });
        let r = self.router.clone();
        tokio::spawn(async move {
            while let Some(Ok(d)) = events.next().await {
                r.deliver(&d.data);
            }
        });
        Ok(Session { conn, channel, reply_queue })
    }

    /// Make sure a live session exists, reconnecting for up to `patience`.
    async fn ensure(&self, patience: Duration) -> Result<(Channel, String), ClientError> {
        let mut guard = self.session.lock().await;
        if let Some(s) = guard.as_ref()
            && s.conn.status().connected()
            && s.channel.status().connected()
        {
            return Ok((s.channel.clone(), s.reply_queue.clone()));
        }
        *guard = None;
        let deadline = tokio::time::Instant::now() + patience;
        let mut delay = Duration::from_millis(200);
        loop {
            match self.open().await {
                Ok(s) => {
                    let out = (s.channel.clone(), s.reply_queue.clone());
                    *guard = Some(s);
                    return Ok(out);
                }
                Err(e) if tokio::time::Instant::now() + delay > deadline => return Err(e),
                Err(e) => {
                    tracing::debug!(error = %e, "amqp client: reconnecting");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// A client for the agent with id `agent_id`.
    pub fn agent(self: &Arc<Self>, agent_id: &str, token: Option<&str>) -> EnvelopeClient {
        let wire = AmqpWire { ctl: self.clone(), agent: agent_id.to_string() };
        EnvelopeClient::new(Arc::new(wire), token.map(str::to_string))
    }

    /// Agents heard from (online/heartbeat events) within `max_age`.
    pub fn agents(&self, max_age: Duration) -> Vec<SeenAgent> {
        self.router.seen(max_age)
    }

    /// Wait until `agent_id` announced itself (bounded).
    pub async fn wait_for_agent(&self, agent_id: &str, timeout: Duration) -> bool {
        self.router.wait_for_agent(agent_id, timeout).await
    }

    /// All events.
    pub fn events(&self) -> EventStream {
        self.router.stream(None)
    }

    /// Publish raw bytes to an agent's queue with `reply_to` and the given correlation id, and
    /// wait for the reply (tests of malformed and oversized input).
    pub async fn send_raw(
        &self,
        agent_id: &str,
        bytes: &[u8],
        correlation_id: &str,
        timeout: Duration,
    ) -> Result<Reply, ClientError> {
        let (ch, reply_queue) = self.ensure(self.reconnect_for).await?;
        let rx = self.router.expect(correlation_id);
        self.publish(&ch, agent_id, bytes, &reply_queue, correlation_id).await?;
        await_reply(&self.router, correlation_id, rx, timeout).await
    }

    async fn publish(
        &self,
        ch: &Channel,
        agent_id: &str,
        bytes: &[u8],
        reply_queue: &str,
        correlation_id: &str,
    ) -> Result<(), ClientError> {
        let queue = self.cfg.queue_name(agent_id);
        ch.basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            bytes,
            BasicProperties::default()
                .with_reply_to(reply_queue.into())
                .with_correlation_id(correlation_id.into())
                .with_content_type("application/json".into()),
        )
        .await
        .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(())
    }
}

struct AmqpWire {
    ctl: Arc<AmqpController>,
    agent: String,
}

#[async_trait]
impl EnvelopeWire for AmqpWire {
    async fn call(&self, request: Request, timeout: Duration) -> Result<Reply, ClientError> {
        let id = request.id.clone();
        let bytes = request.encode();
        // One retry after a reconnect: the message id makes a re-sent `run` idempotent.
        let mut last = None;
        for _ in 0..2 {
            let (ch, reply_queue) = self.ctl.ensure(self.ctl.reconnect_for).await?;
            let rx = self.ctl.router.expect(&id);
            match self.ctl.publish(&ch, &self.agent, &bytes, &reply_queue, &id).await {
                Ok(()) => return await_reply(&self.ctl.router, &id, rx, timeout).await,
                Err(e) => {
                    self.ctl.router.forget(&id);
                    *self.ctl.session.lock().await = None;
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Transport("publish failed".into())))
    }

    fn events(&self) -> EventStream {
        self.ctl.router.stream(Some(self.agent.clone()))
    }
}
