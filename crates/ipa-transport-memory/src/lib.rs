//! # ipa-transport-memory
//!
//! An in-process [`Transport`](ipa_core::Transport) over tokio channels. It exercises the same
//! path as a real transport (request → dispatcher → reply, token check, `wait`) without sockets,
//! so dispatcher and state-machine tests stay fast and deterministic. Not registered in the
//! agent binary: it is test plumbing, obtained with [`memory_transport`].

use async_trait::async_trait;
use ipa_core::command::{CommandRequest, CommandResult};
use ipa_core::error::AgentError;
use ipa_core::transport::{
    ReadyInfo, Transport, TransportContext, TransportError, TransportFuture,
};
use tokio::sync::{Mutex, mpsc, oneshot};

/// A request from a client.
#[derive(Debug)]
pub enum MemoryRequest {
    /// Run a command; wait for completion if `wait`.
    Run {
        /// Presented token.
        token: Option<String>,
        /// The command.
        request: CommandRequest,
        /// Block until final.
        wait: bool,
    },
    /// One result.
    Get {
        /// Presented token.
        token: Option<String>,
        /// Result id.
        id: String,
    },
    /// All results.
    List {
        /// Presented token.
        token: Option<String>,
    },
}

/// The reply.
pub type MemoryReply = Result<MemoryResponse, AgentError>;

/// A successful reply.
#[derive(Debug, Clone, PartialEq)]
pub enum MemoryResponse {
    /// One result.
    One(CommandResult),
    /// A list.
    Many(Vec<CommandResult>),
}

type Envelope = (MemoryRequest, oneshot::Sender<MemoryReply>);

/// The server half (a [`Transport`]).
#[derive(Debug)]
pub struct MemoryTransport {
    rx: Mutex<Option<mpsc::Receiver<Envelope>>>,
}

/// The client half.
#[derive(Debug, Clone)]
pub struct MemoryClient {
    tx: mpsc::Sender<Envelope>,
}

/// A connected transport/client pair.
pub fn memory_transport() -> (MemoryTransport, MemoryClient) {
    let (tx, rx) = mpsc::channel(64);
    (MemoryTransport { rx: Mutex::new(Some(rx)) }, MemoryClient { tx })
}

fn unauthorized() -> AgentError {
    AgentError::Custom {
        kind: "Unauthorized".into(),
        code: 401,
        message: "401 Unauthorized".into(),
        details: "Token invalid.".into(),
    }
}

impl MemoryClient {
    /// Send a request and await the reply.
    pub async fn call(&self, req: MemoryRequest) -> MemoryReply {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((req, tx))
            .await
            .map_err(|_| AgentError::execution("memory transport closed"))?;
        rx.await.map_err(|_| AgentError::execution("memory transport dropped the request"))?
    }
}

#[async_trait]
impl Transport for MemoryTransport {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn build(&self, ctx: TransportContext) -> Result<TransportFuture, TransportError> {
        let mut rx = self.rx.lock().await.take().ok_or_else(|| TransportError::Connection {
            transport: "memory".into(),
            reason: "already built".into(),
        })?;
        ctx.ready.report(ReadyInfo { transport: "memory".into(), endpoint: "memory://".into() });
        Ok(Box::pin(async move {
            loop {
                let (req, reply) = tokio::select! {
                    _ = ctx.shutdown.cancelled() => return Ok(()),
                    m = rx.recv() => match m { Some(m) => m, None => return Ok(()) },
                };
                let d = ctx.dispatcher.clone();
                // Each request on its own task, like concurrent connections.
                tokio::spawn(async move {
                    let out = handle(&*d, req).await;
                    let _ = reply.send(out);
                });
            }
        }))
    }
}

async fn handle(d: &dyn ipa_core::Dispatcher, req: MemoryRequest) -> MemoryReply {
    match req {
        MemoryRequest::Run { token, request, wait } => {
            if !d.authorize(token.as_deref()) {
                return Err(unauthorized());
            }
            let r = d.execute(request).await?;
            if wait && !r.command_status.is_done() {
                return Ok(MemoryResponse::One(d.wait(&r.id).await.unwrap_or(r)));
            }
            Ok(MemoryResponse::One(r))
        }
        MemoryRequest::Get { token, id } => {
            if !d.authorize(token.as_deref()) {
                return Err(unauthorized());
            }
            d.get(&id)
                .await
                .map(MemoryResponse::One)
                .ok_or(AgentError::RequestedObjectNotFound { kind: "Command Result".into(), id })
        }
        MemoryRequest::List { token } => {
            if !d.authorize(token.as_deref()) {
                return Err(unauthorized());
            }
            Ok(MemoryResponse::Many(d.list().await))
        }
    }
}
