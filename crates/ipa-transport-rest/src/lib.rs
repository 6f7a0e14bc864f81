//! # ipa-transport-rest
//!
//! The REST API of ironic-python-agent, wire-compatible with IPA (spec `ipa-agent.md` §1):
//!
//! * routes `/`, `/v1/`, `/v1/status`, `GET|POST /v1/commands/`, `GET /v1/commands/<id>`, each
//!   also without `/v1`; werkzeug's strict slashes (308 to the slashed URL), 404 and 405 with
//!   IPA's fault bodies;
//! * `agent_token` from the query string on every command endpoint, checked by the dispatcher
//!   (constant time); `wait=true` on POST and on GET by id;
//! * fault bodies made in one place ([`error::fault_response`]) from
//!   [`AgentError`](ipa_core::AgentError); JSON text as Python's `json.dumps` writes it;
//! * `Server: ironic-python-agent`, a `Date` header, a request-body limit (413);
//! * one access-log line per request, `agent_token` masked as `***`;
//! * static TLS 1.2/1.3 with rustls + ring ([`tls::tls_acceptor`], reusable for auto-TLS);
//! * graceful shutdown: in-flight replies finish (bounded by [`SHUTDOWN_GRACE`]);
//! * `GET /metrics`: the agent's Prometheus metrics ([`ipa_core::metrics`], docs/metrics.md),
//!   without a token, unless `[metrics] metrics_enabled` is off; with `metrics_listen` they
//!   move to a separate plain-HTTP listener that serves nothing else.
//!
//! Registered as transport `rest`, always on: it listens on `listen_host:listen_port`.

pub mod api;
pub mod error;
pub mod json;
pub mod tls;

/// The request-parsing path without a socket, for the cargo-fuzz targets (`fuzz/`).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    use hyper::Method;

    use crate::api::{mask_query, parse_command, percent_decode, query_param, route};
    use crate::error::fault_response;

    /// Parse what a client controls before a command runs: the method, the percent-encoded
    /// path and query (route, `agent_token`, `wait`, the masked log form) and the command
    /// body; every error is turned into IPA's fault response, as the server does.
    pub fn request(method: &[u8], target: &str, body: &[u8]) {
        let Ok(method) = Method::from_bytes(method) else { return };
        let (raw_path, query) = target.split_once('?').unwrap_or((target, ""));
        let path = percent_decode(raw_path, false);
        // The log form never carries a token: every pair named agent_token is masked.
        for pair in mask_query(query).split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if percent_decode(k, true) == "agent_token" {
                assert_eq!(v, "***", "token left in the log form of {query:?}");
            }
        }
        let _ = query_param(query, "wait");
        if let Err(e) = route(&method, &path) {
            let _ = fault_response(e);
        }
        let key = query_param(query, "idempotency_key");
        if let Err(e) = parse_command(body, key) {
            let _ = fault_response(e);
        }
    }
}

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use figment::Figment;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use ipa_core::config::{AgentConfig, ConfigError};
use ipa_core::registry::TransportDescriptor;
use ipa_core::transport::{
    ReadyInfo, Transport, TransportContext, TransportError, TransportFuture,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

pub use api::mask_query;
pub use error::RestError;
pub use tls::{server_config, tls_acceptor};

use crate::api::ApiState;

/// Transport name in the registry.
pub const NAME: &str = "rest";

/// Default request-body limit: 128 MiB (a deploy step carries the unmasked config drive, which
/// IPA caps at 64 MiB before base64 and compression).
pub const DEFAULT_MAX_BODY_BYTES: usize = 128 * 1024 * 1024;

/// How long shutdown waits for in-flight requests before dropping them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long a client has for the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections one client address may hold open at once; more are closed at accept.
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 32;

/// How long a client may take to send a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// The request line and headers (also bounds an idle keep-alive connection).
    pub headers: Duration,
    /// Silence between two pieces of a body.
    pub body_idle: Duration,
    /// The whole body (a 128 MiB config drive at 10 Mbit/s takes ~110 s).
    pub body_total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            headers: Duration::from_secs(60),
            body_idle: Duration::from_secs(30),
            body_total: Duration::from_secs(300),
        }
    }
}

/// The REST transport's configuration (and factory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestTransport {
    /// Host or address to listen on (`::`, `0.0.0.0`, `[::1]`, `127.0.0.1`, a hostname).
    pub listen_host: String,
    /// Port; `0` picks a free one (the ready report carries the real port).
    pub listen_port: u16,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Header and body read timeouts.
    pub timeouts: Timeouts,
    /// Open connections allowed per client address.
    pub max_connections_per_client: usize,
    /// Serve `GET /metrics` (`[metrics] metrics_enabled`).
    pub metrics_enabled: bool,
    /// `HOST:PORT` of a separate metrics listener (`[metrics] metrics_listen`); the API port
    /// then does not serve `/metrics`.
    pub metrics_listen: Option<String>,
}

impl RestTransport {
    /// Listen on `host:port` with the default body limit.
    pub fn new(listen_host: impl Into<String>, listen_port: u16) -> Self {
        Self {
            listen_host: listen_host.into(),
            listen_port,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            timeouts: Timeouts::default(),
            max_connections_per_client: DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
            metrics_enabled: true,
            metrics_listen: None,
        }
    }

    /// From the agent configuration (`listen_host`, `listen_port`, the `[metrics]` section).
    pub fn from_agent_config(config: &AgentConfig) -> Self {
        let mut t = Self::new(config.api.listen_host.clone(), config.api.listen_port);
        t.metrics_enabled = config.metrics.metrics_enabled;
        t.metrics_listen = config.metrics.metrics_listen.clone().filter(|l| !l.trim().is_empty());
        t
    }
}

/// `HOST:PORT` → (host, port); the host may be a bracketed IPv6 address.
pub fn split_host_port(value: &str) -> Result<(String, u16), RestError> {
    let bad = || RestError::MetricsListen { value: value.to_string() };
    let (host, port) = value.trim().rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse::<u16>().map_err(|_| bad())?;
    if host.is_empty() || (host.contains(':') && !host.starts_with('[')) {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

fn from_config(
    _figment: &Figment,
    config: &AgentConfig,
) -> Result<Option<Box<dyn Transport>>, ConfigError> {
    let t = RestTransport::from_agent_config(config);
    if let Some(l) = &t.metrics_listen {
        split_host_port(l)
            .map_err(|e| ConfigError::Plugin { plugin: NAME.into(), reason: e.to_string() })?;
    }
    Ok(Some(Box::new(t)))
}

inventory::submit! {
    TransportDescriptor {
        name: NAME,
        description: "IPA-compatible REST API (what Ironic drives); listens on listen_host:listen_port",
        config_section: None,
        kernel_params: &[],
        from_config,
    }
}

/// Strip IPv6 brackets; an empty host means `::`.
fn normalise_host(host: &str) -> &str {
    let h = host.trim();
    let h = h.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(h);
    if h.is_empty() { "::" } else { h }
}

/// Bind `host:port`. `::` falls back to `0.0.0.0` when the machine has no IPv6 (IPA's default
/// host rule); hostnames are resolved and the first bindable address wins.
pub async fn bind(host: &str, port: u16) -> Result<TcpListener, RestError> {
    let h = normalise_host(host);
    let display = match h.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => format!("[{h}]:{port}"),
        _ => format!("{h}:{port}"),
    };
    let err = |source| RestError::Bind { addr: display.clone(), source };
    if let Ok(ip) = h.parse::<IpAddr>() {
        return match TcpListener::bind((ip, port)).await {
            Ok(l) => Ok(l),
            Err(e)
                if ip == IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                    && !matches!(
                        e.kind(),
                        std::io::ErrorKind::AddrInUse | std::io::ErrorKind::PermissionDenied
                    ) =>
            {
                tracing::warn!(error = %e, "cannot listen on [::]; falling back to 0.0.0.0");
                TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).await.map_err(err)
            }
            Err(e) => Err(err(e)),
        };
    }
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "host resolves to nothing");
    for addr in tokio::net::lookup_host((h, port)).await.map_err(err)? {
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) => last = e,
        }
    }
    Err(err(last))
}

/// `scheme://ip:port` for a bound address; an unspecified address is reported as loopback of
/// the same family (the address a local client can use).
pub fn endpoint(scheme: &str, addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("{scheme}://{}", SocketAddr::new(ip, addr.port()))
}

#[async_trait]
impl Transport for RestTransport {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn build(&self, ctx: TransportContext) -> Result<TransportFuture, TransportError> {
        let acceptor = match &ctx.tls {
            Some(t) => Some(tls_acceptor(t).map_err(|e| TransportError::Tls {
                transport: NAME.into(),
                reason: match e {
                    RestError::Tls { reason } => reason,
                    other => other.to_string(),
                },
            })?),
            None => None,
        };
        let startup = |e: RestError| match e {
            RestError::Bind { addr, source } => {
                TransportError::Bind { transport: NAME.into(), addr, source }
            }
            other => {
                TransportError::Connection { transport: NAME.into(), reason: other.to_string() }
            }
        };
        let listener = bind(&self.listen_host, self.listen_port).await.map_err(startup)?;
        let local = |l: &TcpListener| {
            l.local_addr().map_err(|source| TransportError::Io { transport: NAME.into(), source })
        };
        let local_addr = local(&listener)?;
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        let separate = self.metrics_enabled && self.metrics_listen.is_some();
        let state = Arc::new(ApiState {
            dispatcher: ctx.dispatcher.clone(),
            max_body_bytes: self.max_body_bytes,
            timeouts: self.timeouts,
            scheme,
            local_addr,
            metrics: (self.metrics_enabled && !separate).then(|| ctx.metrics.clone()),
            metrics_only: false,
        });
        let limit = self.max_connections_per_client.max(1);
        // The separate metrics listener: plain HTTP, `/metrics` only, same limits.
        let metrics_server = match self.metrics_listen.as_deref().filter(|_| separate) {
            Some(addr) => {
                let (host, port) = split_host_port(addr).map_err(startup)?;
                let l = bind(&host, port).await.map_err(startup)?;
                let addr = local(&l)?;
                tracing::info!(address = %addr, "metrics listening (GET /metrics, no token)");
                let st = Arc::new(ApiState {
                    scheme: "http",
                    local_addr: addr,
                    metrics: Some(ctx.metrics.clone()),
                    metrics_only: true,
                    ..(*state).clone()
                });
                Some(serve(l, None, st, limit, ctx.shutdown.clone()))
            }
            None => None,
        };
        tracing::info!(
            address = %local_addr,
            tls = acceptor.is_some(),
            metrics = state.metrics.is_some(),
            "REST API listening"
        );
        ctx.ready
            .report(ReadyInfo { transport: NAME.into(), endpoint: endpoint(scheme, local_addr) });
        let api = serve(listener, acceptor, state, limit, ctx.shutdown);
        Ok(Box::pin(async move {
            match metrics_server {
                Some(m) => {
                    let (a, m) = tokio::join!(api, m);
                    a.and(m)
                }
                None => api.await,
            }
        }))
    }
}

/// Open connections per client address; a slot is given back when its guard drops.
#[derive(Debug, Default)]
struct PerClient(std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>);

struct Slot(Arc<PerClient>, IpAddr);

impl PerClient {
    fn take(self: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<Slot> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_default();
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(Slot(self.clone(), ip))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = self.0.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}

async fn serve(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    state: Arc<ApiState>,
    per_client_limit: usize,
    shutdown: CancellationToken,
) -> Result<(), TransportError> {
    let mut conns = JoinSet::new();
    let clients = Arc::new(PerClient::default());
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let Some(slot) = clients.take(peer.ip(), per_client_limit) else {
                        tracing::warn!(
                            %peer,
                            limit = per_client_limit,
                            "too many connections from one client; closing the new one"
                        );
                        drop(tcp);
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    let (state, acceptor, stop) = (state.clone(), acceptor.clone(), shutdown.clone());
                    conns.spawn(async move {
                        let _slot = slot;
                        match acceptor {
                            None => serve_conn(tcp, peer, state, stop).await,
                            Some(acc) => {
                                let hs = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acc.accept(tcp));
                                let tls = tokio::select! {
                                    _ = stop.cancelled() => return,
                                    r = hs => r,
                                };
                                match tls {
                                    Ok(Ok(s)) => serve_conn(s, peer, state, stop).await,
                                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                                }
                            }
                        }
                    });
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    let drained =
        tokio::time::timeout(SHUTDOWN_GRACE, async { while conns.join_next().await.is_some() {} })
            .await;
    if drained.is_err() {
        tracing::warn!(open = conns.len(), "REST shutdown grace expired; dropping connections");
        conns.shutdown().await;
    }
    tracing::info!("REST API stopped");
    Ok(())
}

async fn serve_conn<S>(io: S, peer: SocketAddr, state: Arc<ApiState>, stop: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = state.timeouts.headers;
    let svc = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(api::handle(&state, req, peer).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .title_case_headers(true)
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_endpoints() {
        assert_eq!(normalise_host("[::1]"), "::1");
        assert_eq!(normalise_host(""), "::");
        assert_eq!(normalise_host("10.0.0.5"), "10.0.0.5");
        assert_eq!(endpoint("http", "0.0.0.0:9999".parse().unwrap()), "http://127.0.0.1:9999");
        assert_eq!(endpoint("https", "[::]:1".parse().unwrap()), "https://[::1]:1");
        assert_eq!(endpoint("http", "[fe80::1]:2".parse().unwrap()), "http://[fe80::1]:2");
    }

    #[test]
    fn metrics_listen_is_host_colon_port() {
        assert_eq!(split_host_port("127.0.0.1:9100").unwrap(), ("127.0.0.1".into(), 9100));
        assert_eq!(split_host_port("[::1]:9100").unwrap(), ("[::1]".into(), 9100));
        assert_eq!(split_host_port(" metrics.local:1 ").unwrap(), ("metrics.local".into(), 1));
        for bad in ["", "9100", ":9100", "host:", "host:99999", "::1:9100", "h:p"] {
            assert!(split_host_port(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn registered_as_rest() {
        assert!(ipa_core::registry::transports().iter().any(|d| d.name == NAME));
    }
}
