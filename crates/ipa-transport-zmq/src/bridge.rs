//! A blocking libzmq socket on its own thread, bridged to tokio with channels.
//!
//! libzmq sockets are not thread-safe and their calls block, so each [`Bridge`] owns one socket
//! on a dedicated OS thread. The thread `zmq::poll`s the socket, its monitor socket, an optional
//! ZAP handler (CURVE client authorisation) and the read end of a wake-up socketpair. The async
//! side pushes [`Outbound`] messages into a std channel and writes one byte to the wake-up pair;
//! everything that arrives is forwarded as [`Inbound`] on a tokio channel.
//!
//! Used by the agent transport and by the controller side in `ipa-client`.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use crate::ZmqError;

/// CURVE settings of one socket.
#[derive(Clone)]
pub enum CurveRole {
    /// Connects to a CURVE server whose public key is `server_public`.
    Client {
        /// Server public key (32 bytes).
        server_public: [u8; 32],
        /// Own public key.
        public: [u8; 32],
        /// Own secret key.
        secret: [u8; 32],
    },
    /// Accepts CURVE clients.
    Server {
        /// Own secret key (the public key is derived by libzmq).
        secret: [u8; 32],
        /// Client public keys allowed in (ZAP); `None` admits any client that knows our key.
        allowed_clients: Option<Vec<[u8; 32]>>,
    },
}

impl std::fmt::Debug for CurveRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CurveRole::Client { server_public, .. } => f
                .debug_struct("Client")
                .field("server_public", &zmq::z85_encode(server_public).unwrap_or_default())
                .finish_non_exhaustive(),
            CurveRole::Server { allowed_clients, .. } => f
                .debug_struct("Server")
                .field("allowed_clients", &allowed_clients.as_ref().map(Vec::len))
                .finish_non_exhaustive(),
        }
    }
}

/// What socket to open.
#[derive(Debug, Clone)]
pub struct SocketSpec {
    /// `ROUTER` (frames carry the peer routing id) or `DEALER`.
    pub router: bool,
    /// `tcp://host:port` (or `ipc://`, `inproc://`).
    pub endpoint: String,
    /// Bind instead of connect.
    pub bind: bool,
    /// Routing id (DEALER identity).
    pub routing_id: Option<Vec<u8>>,
    /// CURVE, if any.
    pub curve: Option<CurveRole>,
    /// ZMTP heartbeat interval (0 = off); the timeout is three intervals.
    pub heartbeat_ms: i32,
    /// Reconnect backoff start.
    pub reconnect_min_ms: i32,
    /// Reconnect backoff cap.
    pub reconnect_max_ms: i32,
    /// Hard cap: a peer sending a bigger message is disconnected by libzmq (-1 = none).
    pub max_msg_bytes: i64,
    /// ROUTER only: report an error instead of dropping a message to an unknown peer.
    pub router_mandatory: bool,
}

/// Link changes seen by the socket monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// A ZMTP handshake completed (the peer is reachable and, with CURVE, authenticated).
    Up {
        /// Endpoint.
        endpoint: String,
    },
    /// A handshake failed: wrong CURVE key, refused by ZAP, or a protocol error.
    HandshakeFailed {
        /// Endpoint.
        endpoint: String,
        /// Human text naming the failure.
        reason: String,
    },
    /// A connection closed (it will be retried when this side connects).
    Down {
        /// Endpoint.
        endpoint: String,
    },
}

/// Something that arrived.
#[derive(Debug)]
pub enum Inbound {
    /// A message: `peer` is the routing id on a ROUTER, `None` on a DEALER.
    Message {
        /// Sender routing id.
        peer: Option<Vec<u8>>,
        /// Last frame (the envelope).
        data: Vec<u8>,
    },
    /// Monitor event.
    Link(LinkEvent),
}

/// Something to do on the socket thread.
#[derive(Debug)]
pub enum Outbound {
    /// Send `data` (to `peer` on a ROUTER). `done` learns whether libzmq accepted it.
    Send {
        /// Destination routing id (ROUTER only).
        peer: Option<Vec<u8>>,
        /// Envelope bytes.
        data: Vec<u8>,
        /// Optional completion.
        done: Option<oneshot::Sender<Result<(), String>>>,
    },
    /// Close the socket and end the thread.
    Stop,
}

/// Handle for sending; cheap to clone.
#[derive(Debug, Clone)]
pub struct BridgeHandle {
    tx: std_mpsc::Sender<Outbound>,
    wake: Arc<UnixStream>,
}

impl BridgeHandle {
    fn push(&self, o: Outbound) {
        if self.tx.send(o).is_ok() {
            // A full wake pipe already guarantees a wake-up; ignore WouldBlock.
            let _ = (&*self.wake).write(&[1]);
        }
    }

    /// Queue a message (fire and forget).
    pub fn send(&self, peer: Option<Vec<u8>>, data: Vec<u8>) {
        self.push(Outbound::Send { peer, data, done: None });
    }

    /// Send and learn whether libzmq accepted the message (ROUTER: whether the peer is known).
    pub async fn send_checked(&self, peer: Option<Vec<u8>>, data: Vec<u8>) -> Result<(), String> {
        let (done, rx) = oneshot::channel();
        self.push(Outbound::Send { peer, data, done: Some(done) });
        rx.await.unwrap_or_else(|_| Err("socket thread stopped".into()))
    }

    /// Ask the thread to close the socket and exit.
    pub fn stop(&self) {
        self.push(Outbound::Stop);
    }
}

/// A running socket thread.
#[derive(Debug)]
pub struct Bridge {
    /// Sender side.
    pub handle: BridgeHandle,
    /// Everything that arrives.
    pub inbound: mpsc::UnboundedReceiver<Inbound>,
    /// The endpoint actually bound (with the real port for `tcp://127.0.0.1:0`-style binds
    /// given as `tcp://127.0.0.1:*`), or the connect endpoint.
    pub endpoint: String,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.handle.stop();
    }
}

impl Bridge {
    /// Open the socket on a new thread. Bind/connect/option errors are returned here.
    pub fn start(ctx: zmq::Context, spec: SocketSpec, name: &str) -> Result<Bridge, ZmqError> {
        let (wake_rx, wake_tx) = UnixStream::pair().map_err(ZmqError::Io)?;
        wake_rx.set_nonblocking(true).map_err(ZmqError::Io)?;
        wake_tx.set_nonblocking(true).map_err(ZmqError::Io)?;
        let (out_tx, out_rx) = std_mpsc::channel();
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std_mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name(format!("zmq-{name}"))
            .spawn(move || match open(&ctx, &spec) {
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
                Ok(sockets) => {
                    let _ = ready_tx.send(Ok(sockets.endpoint.clone()));
                    run(sockets, &spec, wake_rx, out_rx, in_tx);
                }
            })
            .map_err(ZmqError::Io)?;
        let endpoint = ready_rx
            .recv()
            .map_err(|_| ZmqError::Setup("socket thread died during setup".into()))??;
        Ok(Bridge {
            handle: BridgeHandle { tx: out_tx, wake: Arc::new(wake_tx) },
            inbound: in_rx,
            endpoint,
            thread: Some(thread),
        })
    }

    /// Stop the thread and wait for it (blocking; call from `spawn_blocking` or a sync context).
    pub fn join(mut self) {
        self.handle.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Sockets {
    main: zmq::Socket,
    monitor: zmq::Socket,
    zap: Option<(zmq::Socket, Vec<[u8; 32]>)>,
    endpoint: String,
}

fn zerr(what: &str, e: zmq::Error) -> ZmqError {
    ZmqError::Setup(format!("{what}: {e}"))
}

fn open(ctx: &zmq::Context, spec: &SocketSpec) -> Result<Sockets, ZmqError> {
    let kind = if spec.router { zmq::ROUTER } else { zmq::DEALER };
    let s = ctx.socket(kind).map_err(|e| zerr("socket", e))?;
    s.set_linger(500).map_err(|e| zerr("linger", e))?;
    s.set_sndhwm(10_000).map_err(|e| zerr("sndhwm", e))?;
    s.set_rcvhwm(10_000).map_err(|e| zerr("rcvhwm", e))?;
    if let Some(id) = &spec.routing_id {
        s.set_identity(id).map_err(|e| zerr("routing id", e))?;
    }
    if spec.router && spec.router_mandatory {
        s.set_router_mandatory(true).map_err(|e| zerr("router_mandatory", e))?;
    }
    if spec.router {
        // A reconnecting agent with the same routing id takes over its old pipe.
        s.set_router_handover(true).map_err(|e| zerr("router_handover", e))?;
    }
    if spec.heartbeat_ms > 0 {
        s.set_heartbeat_ivl(spec.heartbeat_ms).map_err(|e| zerr("heartbeat", e))?;
        s.set_heartbeat_timeout(spec.heartbeat_ms * 3).map_err(|e| zerr("heartbeat", e))?;
        s.set_heartbeat_ttl(spec.heartbeat_ms * 3).map_err(|e| zerr("heartbeat", e))?;
    }
    s.set_reconnect_ivl(spec.reconnect_min_ms).map_err(|e| zerr("reconnect", e))?;
    s.set_reconnect_ivl_max(spec.reconnect_max_ms).map_err(|e| zerr("reconnect", e))?;
    s.set_maxmsgsize(spec.max_msg_bytes).map_err(|e| zerr("maxmsgsize", e))?;
    let mut zap = None;
    match &spec.curve {
        None => {}
        Some(CurveRole::Client { server_public, public, secret }) => {
            if zmq::has("curve") != Some(true) {
                return Err(ZmqError::NoCurve);
            }
            s.set_curve_serverkey(server_public).map_err(|e| zerr("curve server key", e))?;
            s.set_curve_publickey(public).map_err(|e| zerr("curve public key", e))?;
            s.set_curve_secretkey(secret).map_err(|e| zerr("curve secret key", e))?;
        }
        Some(CurveRole::Server { secret, allowed_clients }) => {
            if zmq::has("curve") != Some(true) {
                return Err(ZmqError::NoCurve);
            }
            s.set_curve_server(true).map_err(|e| zerr("curve server", e))?;
            s.set_curve_secretkey(secret).map_err(|e| zerr("curve secret key", e))?;
            s.set_zap_domain("ipa").map_err(|e| zerr("zap domain", e))?;
            if let Some(allowed) = allowed_clients {
                // One ZAP handler per context: callers give CURVE servers their own context.
                let z = ctx.socket(zmq::REP).map_err(|e| zerr("zap socket", e))?;
                z.bind("inproc://zeromq.zap.01").map_err(|e| zerr("zap bind", e))?;
                zap = Some((z, allowed.clone()));
            }
        }
    }
    let mon_ep = format!("inproc://ipa-mon-{}", uuid_like());
    let events = zmq::SocketEvent::HANDSHAKE_SUCCEEDED.to_raw()
        | zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL.to_raw()
        | zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL.to_raw()
        | zmq::SocketEvent::HANDSHAKE_FAILED_AUTH.to_raw()
        | zmq::SocketEvent::DISCONNECTED.to_raw();
    s.monitor(&mon_ep, events as i32).map_err(|e| zerr("monitor", e))?;
    let monitor = ctx.socket(zmq::PAIR).map_err(|e| zerr("monitor socket", e))?;
    monitor.connect(&mon_ep).map_err(|e| zerr("monitor connect", e))?;
    let endpoint = if spec.bind {
        s.bind(&spec.endpoint).map_err(|e| ZmqError::Bind {
            endpoint: spec.endpoint.clone(),
            reason: e.to_string(),
        })?;
        s.get_last_endpoint().ok().and_then(Result::ok).unwrap_or_else(|| spec.endpoint.clone())
    } else {
        s.connect(&spec.endpoint).map_err(|e| zerr(&format!("connect {}", spec.endpoint), e))?;
        spec.endpoint.clone()
    };
    Ok(Sockets { main: s, monitor, zap, endpoint })
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

fn describe_failure(event: u16, value: u32) -> String {
    let ev = u32::from(event);
    if ev == zmq_sys_event::AUTH {
        format!(
            "refused by the peer's authentication (ZAP status {value}): this key is not authorised"
        )
    } else if ev == zmq_sys_event::PROTOCOL {
        let crypto = (0x1100_0001..=0x1100_0004).contains(&value);
        if crypto {
            format!(
                "CURVE cryptographic handshake error (0x{value:08x}): wrong server public key or \
                 mismatched key pair"
            )
        } else {
            format!(
                "ZMTP protocol error during handshake (0x{value:08x}): security mechanism mismatch?"
            )
        }
    } else {
        format!(
            "handshake failed without detail (errno {value}): wrong CURVE key or mechanism mismatch"
        )
    }
}

mod zmq_sys_event {
    pub const SUCCEEDED: u32 = 0x1000;
    pub const PROTOCOL: u32 = 0x2000;
    pub const AUTH: u32 = 0x4000;
    pub const NO_DETAIL: u32 = 0x0800;
    pub const DISCONNECTED: u32 = 0x0200;
}

fn run(
    sockets: Sockets,
    spec: &SocketSpec,
    mut wake: UnixStream,
    out: std_mpsc::Receiver<Outbound>,
    inbound: mpsc::UnboundedSender<Inbound>,
) {
    let Sockets { main, monitor, zap, .. } = sockets;
    let wake_fd = wake.as_raw_fd();
    let mut buf = [0u8; 256];
    loop {
        let (main_in, mon_in, wake_in, zap_in) = {
            let mut items = vec![
                main.as_poll_item(zmq::POLLIN),
                monitor.as_poll_item(zmq::POLLIN),
                zmq::PollItem::from_fd(wake_fd, zmq::POLLIN),
            ];
            if let Some((z, _)) = &zap {
                items.push(z.as_poll_item(zmq::POLLIN));
            }
            if zmq::poll(&mut items, 1000).is_err() {
                continue;
            }
            (
                items[0].is_readable(),
                items[1].is_readable(),
                items[2].is_readable(),
                items.get(3).is_some_and(|i| i.is_readable()),
            )
        };
        if main_in {
            while let Ok(frames) = main.recv_multipart(zmq::DONTWAIT) {
                let msg = if spec.router {
                    let mut it = frames.into_iter();
                    let peer = it.next();
                    let data = it.next_back().unwrap_or_default();
                    Inbound::Message { peer, data }
                } else {
                    Inbound::Message {
                        peer: None,
                        data: frames.into_iter().last().unwrap_or_default(),
                    }
                };
                if inbound.send(msg).is_err() {
                    return;
                }
            }
        }
        if mon_in {
            while let Ok(frames) = monitor.recv_multipart(zmq::DONTWAIT) {
                if frames.len() < 2 || frames[0].len() < 6 {
                    continue;
                }
                let event = u16::from_le_bytes([frames[0][0], frames[0][1]]);
                let value =
                    u32::from_le_bytes([frames[0][2], frames[0][3], frames[0][4], frames[0][5]]);
                let endpoint = String::from_utf8_lossy(&frames[1]).to_string();
                let link = match u32::from(event) {
                    zmq_sys_event::SUCCEEDED => LinkEvent::Up { endpoint },
                    zmq_sys_event::DISCONNECTED => LinkEvent::Down { endpoint },
                    zmq_sys_event::PROTOCOL | zmq_sys_event::AUTH | zmq_sys_event::NO_DETAIL => {
                        LinkEvent::HandshakeFailed {
                            endpoint,
                            reason: describe_failure(event, value),
                        }
                    }
                    _ => continue,
                };
                let _ = inbound.send(Inbound::Link(link));
            }
        }
        if zap_in && let Some((z, allowed)) = &zap {
            zap_reply(z, allowed);
        }
        if wake_in {
            while matches!(wake.read(&mut buf), Ok(n) if n > 0) {}
        }
        // Always drain: a wake byte may have been coalesced.
        loop {
            match out.try_recv() {
                Ok(Outbound::Send { peer, data, done }) => {
                    let r = match (&peer, spec.router) {
                        (Some(p), true) => {
                            main.send_multipart([p.as_slice(), &data], zmq::DONTWAIT)
                        }
                        (None, true) => Err(zmq::Error::EHOSTUNREACH),
                        (_, false) => main.send(data, zmq::DONTWAIT),
                    };
                    let r = r.map_err(|e| match e {
                        zmq::Error::EHOSTUNREACH => "peer is not connected".to_string(),
                        zmq::Error::EAGAIN => "send queue full or no connection".to_string(),
                        e => e.to_string(),
                    });
                    match done {
                        Some(d) => {
                            let _ = d.send(r);
                        }
                        None => {
                            if let Err(e) = r {
                                tracing::debug!(error = %e, "zmq message dropped");
                            }
                        }
                    }
                }
                Ok(Outbound::Stop) | Err(std_mpsc::TryRecvError::Disconnected) => return,
                Err(std_mpsc::TryRecvError::Empty) => break,
            }
        }
    }
}

/// Answer one ZAP request (RFC 27): allow CURVE clients whose public key is listed.
fn zap_reply(z: &zmq::Socket, allowed: &[[u8; 32]]) {
    let Ok(frames) = z.recv_multipart(zmq::DONTWAIT) else { return };
    if frames.len() < 6 {
        return;
    }
    let request_id = frames[1].clone();
    let mechanism = String::from_utf8_lossy(&frames[5]).to_string();
    let key = frames.get(6).cloned().unwrap_or_default();
    let ok = mechanism == "CURVE" && allowed.iter().any(|k| k.as_slice() == key.as_slice());
    let (code, text): (&[u8], &[u8]) =
        if ok { (b"200", b"OK") } else { (b"400", b"key not authorised") };
    if !ok {
        tracing::warn!(
            client_key = %zmq::z85_encode(&key).unwrap_or_default(),
            peer = %String::from_utf8_lossy(&frames[3]),
            "CURVE client refused: public key is not in the allowed list"
        );
    }
    let user: &[u8] = if ok { b"agent" } else { b"" };
    let _ = z.send_multipart([b"1.0".as_slice(), &request_id, code, text, user, b""], 0);
}
