//! The transport seam.
//!
//! A transport's **config type is its factory** (vector's `SourceConfig::build`): the registry
//! turns a config section into a boxed [`Transport`]; the runtime calls [`Transport::build`] with
//! a [`TransportContext`] (dispatcher handle, shutdown signal, TLS material, identity), gets back
//! a future that serves until shutdown, and runs it. Transports translate wire ↔
//! [`CommandRequest`](crate::command::CommandRequest)/[`CommandResult`](crate::command::CommandResult)
//! and produce wire-level faults; they never touch command state or hardware.

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::dispatcher::SharedDispatcher;

/// TLS material for a server transport (static files or auto-generated).
#[derive(Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// Certificate chain, PEM.
    pub cert_pem: String,
    /// Private key, PEM (secret).
    pub key_pem: String,
    /// `1.2` (1.2–1.3) or `1.3`.
    pub min_version: String,
    /// OpenSSL-style TLS 1.2 cipher names, if restricted.
    pub cipher_suites: Option<String>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("min_version", &self.min_version)
            .field("cipher_suites", &self.cipher_suites)
            .finish_non_exhaustive()
    }
}

/// A transport that came up, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyInfo {
    /// Transport name.
    pub transport: String,
    /// Where it serves or what it connected to (`http://127.0.0.1:9999`, `amqp://…/queue`).
    pub endpoint: String,
}

/// Collects [`ReadyInfo`]s; the runtime waits for them before heartbeating.
#[derive(Debug, Clone, Default)]
pub struct ReadyBoard {
    inner: Arc<Mutex<Vec<ReadyInfo>>>,
    tx: Arc<watch::Sender<usize>>,
}

impl ReadyBoard {
    /// Report `info`.
    pub fn report(&self, info: ReadyInfo) {
        tracing::info!(transport = %info.transport, endpoint = %info.endpoint, "transport ready");
        let mut v = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        v.push(info);
        let n = v.len();
        drop(v);
        self.tx.send_replace(n);
    }
    /// Everything reported so far.
    pub fn all(&self) -> Vec<ReadyInfo> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    /// Wait until at least `n` transports reported.
    pub async fn wait_for(&self, n: usize) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|c| *c >= n).await;
    }
}

/// What a transport gets to run.
#[derive(Debug, Clone)]
pub struct TransportContext {
    /// The one dispatcher.
    pub dispatcher: SharedDispatcher,
    /// Cancelled when the transport must stop (graceful: finish in-flight replies).
    pub shutdown: CancellationToken,
    /// Server TLS to use, if any (static files or auto-TLS, decided by the runtime).
    pub tls: Option<ServerTls>,
    /// Agent identity for broker transports (node UUID after lookup, else configured or
    /// MAC-derived). Changes are published here.
    pub identity: watch::Receiver<String>,
    /// Where to report "up and serving".
    pub ready: ReadyBoard,
    /// The agent's metrics: REST serves them (`/metrics`), broker transports record their
    /// link state and reconnects in them.
    pub metrics: crate::metrics::Metrics,
}

/// Why a transport could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Could not bind/listen.
    #[error("{transport}: cannot listen on {addr}")]
    Bind {
        /// Transport.
        transport: String,
        /// Address.
        addr: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// TLS material is unusable.
    #[error("{transport}: TLS setup failed: {reason}")]
    Tls {
        /// Transport.
        transport: String,
        /// What is wrong.
        reason: String,
    },
    /// Connecting to a broker/controller failed for good.
    #[error("{transport}: {reason}")]
    Connection {
        /// Transport.
        transport: String,
        /// What happened.
        reason: String,
    },
    /// I/O error while serving.
    #[error("{transport}: I/O error")]
    Io {
        /// Transport.
        transport: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// A future that serves until shutdown.
pub type TransportFuture = BoxFuture<'static, Result<(), TransportError>>;

/// A configured transport (its config struct implements this).
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug + 'static {
    /// Registry name (`rest`, `amqp`, `zmq`, `memory`).
    fn name(&self) -> &'static str;

    /// Set up (bind, connect) and return the serving future. Errors here are startup errors.
    async fn build(&self, ctx: TransportContext) -> Result<TransportFuture, TransportError>;
}
