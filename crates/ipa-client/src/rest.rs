//! REST client for IPA's API (`/v1/commands/`, `/v1/status`) and the agent's `/metrics`, over
//! HTTP or HTTPS, on the workspace's one outbound stack ([`ipa_http`]). Events are not pushed
//! over REST; `ipactl --watch` polls instead.

use std::time::Duration;

use async_trait::async_trait;
use ipa_core::command::{CommandResult, Params};
use ipa_core::dispatcher::AgentStatus;
use ipa_core::error::ErrorBody;
use ipa_envelope::CommandList;
use ipa_http::{HttpClient, HttpSettings, Method, Outgoing, TlsPolicy, header};
use serde_json::{Value, json};

use crate::{AgentClient, ClientError, EventStream, RunOptions};

/// A client for one agent's REST API.
#[derive(Clone)]
pub struct RestClient {
    base: String,
    token: Option<String>,
    http: HttpClient,
    timeout: Duration,
}

impl std::fmt::Debug for RestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestClient")
            .field("base", &ipa_http::redact(&self.base))
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

impl RestClient {
    /// `base` like `http://127.0.0.1:9999` (system trust store for `https://`).
    pub fn new(base: &str, token: Option<&str>) -> Result<Self, ClientError> {
        Self::with_tls(base, token, TlsPolicy::default())
    }

    /// As [`RestClient::new`] with an explicit TLS policy (an agent with auto-TLS: its CA, or
    /// `insecure`).
    pub fn with_tls(base: &str, token: Option<&str>, tls: TlsPolicy) -> Result<Self, ClientError> {
        let timeout = Duration::from_secs(30);
        let http = HttpClient::new(HttpSettings { tls, timeout, ..Default::default() })
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            token: token.map(str::to_string),
            http,
            timeout,
        })
    }

    fn token_query(&self, sep: char) -> String {
        match &self.token {
            Some(t) => format!("{sep}agent_token={}", t.replace('&', "%26")),
            None => String::new(),
        }
    }

    async fn request(
        &self,
        method: Method,
        url: String,
        body: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        let mut req = Outgoing::new(method, url);
        if let Some(v) = body {
            req = req
                .header(header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(&v).unwrap_or_default());
        }
        let resp = match self.http.send_collect(req, 64 << 20, Some(timeout)).await {
            Ok(r) => r,
            Err(ipa_http::HttpError::Timeout { .. }) => return Err(ClientError::Timeout(timeout)),
            Err(e) => return Err(ClientError::Transport(e.to_string())),
        };
        let status = resp.status;
        let v: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(v);
        }
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        Err(ClientError::Agent(ErrorBody {
            kind: s("type"),
            code: status.as_u16(),
            message: if s("message").is_empty() { s("faultstring") } else { s("message") },
            details: s("details"),
        }))
    }

    /// The agent's Prometheus scrape, `GET /metrics` (no token; docs/metrics.md). `base` may
    /// also be a separate `metrics_listen` address.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let req = Outgoing::new(Method::GET, format!("{}/metrics", self.base));
        let resp = match self.http.send_collect(req, 16 << 20, Some(self.timeout)).await {
            Ok(r) => r,
            Err(ipa_http::HttpError::Timeout { .. }) => {
                return Err(ClientError::Timeout(self.timeout));
            }
            Err(e) => return Err(ClientError::Transport(e.to_string())),
        };
        let text = String::from_utf8_lossy(&resp.body).into_owned();
        if resp.status.is_success() {
            return Ok(text);
        }
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let fault = v.get("faultstring").and_then(Value::as_str).unwrap_or("");
        Err(ClientError::Agent(ErrorBody {
            kind: "MetricsUnavailable".into(),
            code: resp.status.as_u16(),
            message: format!("GET /metrics answered {}", resp.status.as_u16()),
            details: if fault.is_empty() {
                "metrics are off (metrics_enabled) or served on metrics_listen".into()
            } else {
                fault.to_string()
            },
        }))
    }

    fn decode<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ClientError> {
        serde_json::from_value(v).map_err(|e| ClientError::Transport(format!("bad reply: {e}")))
    }
}

#[async_trait]
impl AgentClient for RestClient {
    async fn run(
        &self,
        name: &str,
        params: Params,
        opts: RunOptions,
    ) -> Result<CommandResult, ClientError> {
        let url = format!("{}/v1/commands/?wait={}{}", self.base, opts.wait, self.token_query('&'));
        let t = if opts.wait { Duration::from_secs(24 * 3600) } else { self.timeout };
        let v = self
            .request(Method::POST, url, Some(json!({"name": name, "params": params})), t)
            .await?;
        Self::decode(v)
    }
    async fn get(&self, id: &str) -> Result<CommandResult, ClientError> {
        let url = format!("{}/v1/commands/{id}{}", self.base, self.token_query('?'));
        Self::decode(self.request(Method::GET, url, None, self.timeout).await?)
    }
    async fn list(&self) -> Result<Vec<CommandResult>, ClientError> {
        let url = format!("{}/v1/commands/{}", self.base, self.token_query('?'));
        let l: CommandList =
            Self::decode(self.request(Method::GET, url, None, self.timeout).await?)?;
        Ok(l.commands)
    }
    async fn status(&self) -> Result<AgentStatus, ClientError> {
        let url = format!("{}/v1/status", self.base);
        Self::decode(self.request(Method::GET, url, None, self.timeout).await?)
    }
    fn events(&self) -> Result<EventStream, ClientError> {
        Err(ClientError::Unsupported("REST has no event stream; poll get()"))
    }
}
