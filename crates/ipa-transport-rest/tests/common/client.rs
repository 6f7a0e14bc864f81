//! A small HTTP/1.1 client for this API, used only by this crate's black-box tests (the
//! conformance suite's REST `WireClient`, the TLS tests). One connection per request, plain TCP
//! or TLS with a caller-built rustls `ClientConfig` (to offer exactly one TLS version or cipher
//! suite) and the negotiated version reported, and the request sent verbatim: the wire a
//! conductor uses, `?agent_token=…&wait=…` in the query, JSON body, faults read from
//! `faultstring`. It is test code: the product's one outbound stack is `ipa-http`.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use ipa_core::command::CommandResult;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A client-side failure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting or TLS failed.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// HTTP protocol error.
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    /// Request could not be built.
    #[error("bad request: {0}")]
    Build(#[from] http::Error),
    /// The agent answered with a fault.
    #[error("HTTP {code}: {faultstring}")]
    Fault {
        /// HTTP status.
        code: u16,
        /// The `faultstring`.
        faultstring: String,
    },
    /// The body was not what the endpoint promises.
    #[error("unexpected body (HTTP {code}): {body}")]
    Decode {
        /// HTTP status.
        code: u16,
        /// The body text.
        body: String,
    },
}

/// A raw response.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Bytes,
    /// Negotiated TLS version (`None` for plain HTTP).
    pub tls_version: Option<rustls::ProtocolVersion>,
}

impl RawResponse {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// A client for one agent.
#[derive(Clone)]
pub struct RestClient {
    addr: SocketAddr,
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    token: Option<String>,
}

impl std::fmt::Debug for RestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestClient")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl RestClient {
    /// Plain HTTP to `addr`, presenting `token`.
    pub fn new(addr: SocketAddr, token: Option<&str>) -> Self {
        Self { addr, tls: None, token: token.map(str::to_string) }
    }

    /// HTTPS to `addr` with `config`, verifying the certificate for `server_name`.
    pub fn with_tls(mut self, config: Arc<ClientConfig>, server_name: ServerName<'static>) -> Self {
        self.tls = Some((config, server_name));
        self
    }

    /// The same client presenting another token (`None`: no `agent_token` parameter).
    pub fn with_token(&self, token: Option<&str>) -> Self {
        Self { token: token.map(str::to_string), ..self.clone() }
    }

    /// The address this client talks to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `?agent_token=<token>` plus `extra` pairs, or an empty string.
    pub fn query(&self, extra: &[(&str, &str)]) -> String {
        let mut pairs: Vec<String> =
            extra.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
        if let Some(t) = &self.token {
            pairs.push(format!("agent_token={}", encode(t)));
        }
        if pairs.is_empty() { String::new() } else { format!("?{}", pairs.join("&")) }
    }

    /// Send one request (`path_and_query` verbatim) and read the whole response.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<RawResponse, ClientError> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|source| ClientError::Connect { addr: self.addr, source })?;
        match &self.tls {
            None => self.exchange(tcp, None, method, path_and_query, headers, body).await,
            Some((config, name)) => {
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|source| ClientError::Connect { addr: self.addr, source })?;
                let version = tls.get_ref().1.protocol_version();
                self.exchange(tls, version, method, path_and_query, headers, body).await
            }
        }
    }

    async fn exchange<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
        &self,
        io: S,
        tls_version: Option<rustls::ProtocolVersion>,
        method: Method,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<RawResponse, ClientError> {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        let driver = tokio::spawn(conn);
        let mut b = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "*/*");
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            b = b.header(header::HOST, self.addr.to_string());
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        driver.abort();
        Ok(RawResponse { status, headers, body, tls_version })
    }

    fn decode<T: serde::de::DeserializeOwned>(r: RawResponse) -> Result<T, ClientError> {
        if r.status >= 400 {
            let fs = r.json().get("faultstring").and_then(Value::as_str).map(str::to_string);
            return Err(match fs {
                Some(faultstring) => ClientError::Fault { code: r.status, faultstring },
                None => ClientError::Decode { code: r.status, body: r.text() },
            });
        }
        serde_json::from_slice(&r.body)
            .map_err(|_| ClientError::Decode { code: r.status, body: r.text() })
    }

    /// `POST /v1/commands/?wait=<wait>&agent_token=…` (an idempotency key goes in the
    /// `Idempotency-Key` header).
    pub async fn run(
        &self,
        name: &str,
        params: Value,
        wait: bool,
        idempotency_key: Option<&str>,
    ) -> Result<CommandResult, ClientError> {
        let path = format!("/v1/commands/{}", self.query(&[("wait", &wait.to_string())]));
        let body = serde_json::to_vec(&json!({"name": name, "params": params}))
            .unwrap_or_else(|_| b"{}".to_vec());
        let headers: Vec<(&str, &str)> =
            idempotency_key.map(|k| ("Idempotency-Key", k)).into_iter().collect();
        Self::decode(self.send(Method::POST, &path, &headers, Some(body)).await?)
    }

    /// `GET /v1/commands/<id>?agent_token=…`.
    pub async fn get(&self, id: &str, wait: bool) -> Result<CommandResult, ClientError> {
        let extra: &[(&str, &str)] = if wait { &[("wait", "true")] } else { &[] };
        let path = format!("/v1/commands/{}{}", encode(id), self.query(extra));
        Self::decode(self.send(Method::GET, &path, &[], None).await?)
    }

    /// `GET /v1/commands/?agent_token=…`.
    pub async fn list(&self) -> Result<Vec<CommandResult>, ClientError> {
        #[derive(serde::Deserialize)]
        struct L {
            commands: Vec<CommandResult>,
        }
        let path = format!("/v1/commands/{}", self.query(&[]));
        Self::decode::<L>(self.send(Method::GET, &path, &[], None).await?).map(|l| l.commands)
    }
}
