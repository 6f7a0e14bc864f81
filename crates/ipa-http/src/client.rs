//! The client: one connection per request (the agent's requests are few and long — an image
//! stream, a heartbeat a minute — so pooling buys nothing and a fresh connection never leaves a
//! half-open pooled one behind a dead conductor).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::url::{Target, redact, resolve};
use crate::{HttpError, TlsPolicy};

/// Redirect hops followed before giving up (`requests` allows 30; 10 is plenty for a CDN).
pub const DEFAULT_MAX_REDIRECTS: u32 = 10;

/// Settings of a client.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// TLS policy for `https://` targets and `CONNECT` tunnels.
    pub tls: TlsPolicy,
    /// Bound of connect, TLS handshake and the wait for response headers, per hop.
    pub timeout: Duration,
    /// Redirect hops followed (0: redirects are returned to the caller).
    pub max_redirects: u32,
    /// Proxy URL per target scheme (`http`, `https`); userinfo becomes `Proxy-Authorization`.
    pub proxies: Vec<(String, String)>,
    /// Hosts (and their subdomains) that bypass the proxy; `*` for all.
    pub no_proxy: Vec<String>,
    /// `User-Agent`.
    pub user_agent: String,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            tls: TlsPolicy::default(),
            timeout: Duration::from_secs(60),
            max_redirects: DEFAULT_MAX_REDIRECTS,
            proxies: Vec::new(),
            no_proxy: Vec::new(),
            user_agent: concat!("ipa-rs/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// One request to send.
pub struct Outgoing {
    method: Method,
    url: String,
    headers: HeaderMap,
    body: Bytes,
    authorization: Option<String>,
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outgoing")
            .field("method", &self.method)
            .field("url", &redact(&self.url))
            .field("authorization", &self.authorization.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

impl Outgoing {
    /// A request without a body.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            authorization: None,
        }
    }
    /// `GET url`.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::GET, url)
    }
    /// Add a header (invalid values are dropped: they come from our own code).
    pub fn header(mut self, name: HeaderName, value: impl AsRef<str>) -> Self {
        if let Ok(v) = HeaderValue::from_str(value.as_ref()) {
            self.headers.append(name, v);
        }
        self
    }
    /// `Range: bytes=start-[end]`.
    pub fn range(self, start: u64, end: Option<u64>) -> Self {
        let v = match end {
            Some(e) => format!("bytes={start}-{e}"),
            None => format!("bytes={start}-"),
        };
        self.header(header::RANGE, v)
    }
    /// A body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }
    /// An `Authorization` value, sent only to the first URL's origin (never across a
    /// redirect to another scheme, host or port). It wins over the URL's userinfo.
    pub fn authorization(mut self, value: Option<String>) -> Self {
        self.authorization = value;
        self
    }
    /// The URL (raw: redact before printing).
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// The answer to a request, after redirects.
#[derive(Debug)]
pub struct Answer {
    /// Status, headers and the streaming body.
    pub response: Response<Incoming>,
    /// The URL that answered (raw: redact before printing).
    pub final_url: String,
    /// Redirect hops followed.
    pub redirects: u32,
}

/// A fully read answer.
#[derive(Debug, Clone)]
pub struct Collected {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// What one request on one connection needs.
struct Hop<'a> {
    method: &'a Method,
    url: &'a str,
    target: &'a Target,
    headers: &'a HeaderMap,
    authorization: Option<&'a str>,
    body: &'a Bytes,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The workspace's outbound HTTP(S) client. Cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    settings: Arc<HttpSettings>,
    tls: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").field("settings", &self.settings).finish_non_exhaustive()
    }
}

fn is_redirect(s: StatusCode) -> bool {
    matches!(s.as_u16(), 301 | 302 | 303 | 307 | 308)
}

impl HttpClient {
    /// Build a client; fails when the TLS policy is unusable.
    pub fn new(settings: HttpSettings) -> Result<Self, HttpError> {
        let config = settings.tls.client_config()?;
        Ok(Self {
            settings: Arc::new(settings),
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &HttpSettings {
        &self.settings
    }

    /// Send `req`, following redirects up to the hop limit. Any final status is an answer.
    ///
    /// Credentials (the request's `authorization`, else the URL's userinfo as basic auth) go
    /// only to the first URL's origin; every other header (`Range` included) is kept across
    /// hops. 303, and 301/302 after a POST, continue as a GET without a body.
    pub async fn send(&self, req: Outgoing) -> Result<Answer, HttpError> {
        let first = Target::parse(&req.url)?;
        let credentials = req.authorization.clone().or(first.userinfo.as_ref().map(|u| u.basic()));
        let mut method = req.method.clone();
        let mut body = req.body.clone();
        let mut url = req.url.clone();
        let mut target = first.clone();
        let mut hops = 0;
        loop {
            let auth = if target.same_origin(&first) { credentials.as_deref() } else { None };
            let hop = Hop {
                method: &method,
                url: &url,
                target: &target,
                headers: &req.headers,
                authorization: auth,
                body: &body,
            };
            let resp = self.exchange(hop).await?;
            let status = resp.status();
            let location = resp
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let (true, Some(location)) = (is_redirect(status), location) else {
                return Ok(Answer { response: resp, final_url: url, redirects: hops });
            };
            if self.settings.max_redirects == 0 {
                return Ok(Answer { response: resp, final_url: url, redirects: hops });
            }
            if hops >= self.settings.max_redirects {
                return Err(HttpError::TooManyRedirects {
                    url: redact(&req.url),
                    max: self.settings.max_redirects,
                });
            }
            hops += 1;
            let next = resolve(&target, &location);
            let mut next_target = Target::parse(&next)?;
            // A Location carrying userinfo does not get to choose credentials.
            next_target.userinfo = None;
            tracing::debug!(
                from = %redact(&url),
                to = %redact(&next),
                status = status.as_u16(),
                "following redirect"
            );
            let to_get = status == StatusCode::SEE_OTHER
                || (method == Method::POST && matches!(status.as_u16(), 301 | 302));
            if to_get && method != Method::HEAD {
                method = Method::GET;
                body = Bytes::new();
            }
            url = next_target.without_userinfo();
            target = next_target;
        }
    }

    /// [`HttpClient::send`] and read the whole body, at most `limit` bytes, all within
    /// `timeout` (default: the client's).
    pub async fn send_collect(
        &self,
        req: Outgoing,
        limit: usize,
        timeout: Option<Duration>,
    ) -> Result<Collected, HttpError> {
        let timeout = timeout.unwrap_or(self.settings.timeout);
        let method = req.method.to_string();
        let url = redact(&req.url);
        let work = async {
            let a = self.send(req).await?;
            let (parts, body) = a.response.into_parts();
            let body = Limited::new(body, limit).collect().await.map_err(|e| HttpError::Body {
                url: redact(&a.final_url),
                reason: e.to_string(),
            })?;
            Ok(Collected { status: parts.status, headers: parts.headers, body: body.to_bytes() })
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(HttpError::Timeout { method, url, secs: timeout.as_secs() }),
        }
    }

    fn proxy_for(&self, t: &Target) -> Option<Target> {
        let scheme = if t.https { "https" } else { "http" };
        let proxy = self.settings.proxies.iter().find(|(k, _)| k == scheme).map(|(_, v)| v)?;
        let bypass = self.settings.no_proxy.iter().any(|n| {
            let n = n.trim().trim_start_matches('.');
            !n.is_empty()
                && (n == "*"
                    || t.host.eq_ignore_ascii_case(n)
                    || t.host.to_ascii_lowercase().ends_with(&format!(".{}", n.to_lowercase())))
        });
        if bypass {
            return None;
        }
        Target::parse(proxy).ok()
    }

    /// One hop, bounded by the client's timeout.
    async fn exchange(&self, hop: Hop<'_>) -> Result<Response<Incoming>, HttpError> {
        let secs = self.settings.timeout.as_secs();
        let (method, url) = (hop.method.to_string(), redact(hop.url));
        match tokio::time::timeout(self.settings.timeout, self.exchange_inner(hop)).await {
            Ok(r) => r,
            Err(_) => Err(HttpError::Timeout { method, url, secs }),
        }
    }

    async fn exchange_inner(&self, hop: Hop<'_>) -> Result<Response<Incoming>, HttpError> {
        let Hop { method, url, target, headers, authorization, body } = hop;
        let fail = |reason: String, source: Option<Box<dyn std::error::Error + Send + Sync>>| {
            HttpError::Connect { method: method.to_string(), url: redact(url), reason, source }
        };
        let proxy = self.proxy_for(target);
        let (tcp_host, tcp_port) = match &proxy {
            Some(p) => (p.host.as_str(), p.port),
            None => (target.host.as_str(), target.port),
        };
        let mut tcp = TcpStream::connect((tcp_host, tcp_port)).await.map_err(|e| {
            fail(format!("connection to {tcp_host}:{tcp_port} failed: {e}"), Some(Box::new(e)))
        })?;
        let _ = tcp.set_nodelay(true);
        let proxy_auth = proxy.as_ref().and_then(|p| p.userinfo.as_ref()).map(|u| u.basic());
        let mut absolute = false;
        if proxy.is_some() {
            if target.https {
                connect_tunnel(&mut tcp, target, proxy_auth.as_deref())
                    .await
                    .map_err(|r| fail(r, None))?;
            } else {
                absolute = true;
            }
        }
        let io: Box<dyn Io> = if target.https {
            let name = rustls_pki_types::ServerName::try_from(target.host.clone())
                .map_err(|e| fail(format!("bad TLS server name {}: {e}", target.host), None))?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| fail(format!("TLS handshake failed: {e}"), Some(Box::new(e))))?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| fail(format!("HTTP handshake failed: {e}"), Some(Box::new(e))))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let request_target = if absolute { target.without_userinfo() } else { target.path.clone() };
        let mut b = Request::builder().method(method.clone()).uri(request_target);
        if let Some(h) = b.headers_mut() {
            h.extend(headers.iter().map(|(k, v)| (k.clone(), v.clone())));
            let host = HeaderValue::from_str(&target.authority)
                .map_err(|_| fail("invalid host".into(), None))?;
            h.insert(header::HOST, host);
            if !h.contains_key(header::USER_AGENT)
                && let Ok(v) = HeaderValue::from_str(&self.settings.user_agent)
            {
                h.insert(header::USER_AGENT, v);
            }
            h.remove(header::AUTHORIZATION);
            if let Some(a) = authorization
                && let Ok(mut v) = HeaderValue::from_str(a)
            {
                v.set_sensitive(true);
                h.insert(header::AUTHORIZATION, v);
            }
            if absolute
                && let Some(pa) = &proxy_auth
                && let Ok(mut v) = HeaderValue::from_str(pa)
            {
                v.set_sensitive(true);
                h.insert(header::PROXY_AUTHORIZATION, v);
            }
        }
        let req = b
            .body(Full::new(body.clone()))
            .map_err(|e| fail(format!("bad request: {e}"), Some(Box::new(e))))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| fail(format!("request failed: {e}"), Some(Box::new(e))))
    }
}

async fn connect_tunnel(
    s: &mut TcpStream,
    target: &Target,
    proxy_auth: Option<&str>,
) -> Result<(), String> {
    let hp = format!("{}:{}", target.authority_host(), target.port);
    let mut req = format!("CONNECT {hp} HTTP/1.1\r\nHost: {hp}\r\n");
    if let Some(a) = proxy_auth {
        req.push_str(&format!("Proxy-Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.map_err(|e| format!("proxy CONNECT failed: {e}"))?;
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if buf.len() >= 8192 {
            return Err("proxy CONNECT answer too long".into());
        }
        let n = s.read(&mut b).await.map_err(|e| format!("proxy CONNECT: {e}"))?;
        if n == 0 {
            return Err("proxy closed the connection".into());
        }
        buf.push(b[0]);
    }
    let line = String::from_utf8_lossy(&buf);
    let status = line.lines().next().unwrap_or("").to_string();
    if !status.split_whitespace().nth(1).is_some_and(|c| c.starts_with('2')) {
        return Err(format!("proxy refused CONNECT: {status}"));
    }
    Ok(())
}

impl Target {
    /// The host as it goes into a `CONNECT` line (IPv6 in brackets).
    fn authority_host(&self) -> String {
        if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() }
    }
}
