//! REST client for IPA's API (`/v1/commands/`, `/v1/status`) over plain HTTP with hyper.
//! Events are not pushed over REST; `ipactl --watch` polls instead.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use ipa_core::command::{CommandResult, Params};
use ipa_core::dispatcher::AgentStatus;
use ipa_core::error::ErrorBody;
use ipa_envelope::CommandList;
use serde_json::{Value, json};

use crate::{AgentClient, ClientError, EventStream, RunOptions};

/// A client for one agent's REST API.
#[derive(Debug, Clone)]
pub struct RestClient {
    base: String,
    token: Option<String>,
    http: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl RestClient {
    /// `base` like `http://127.0.0.1:9999`.
    pub fn new(base: &str, token: Option<&str>) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            token: token.map(str::to_string),
            http: Client::builder(TokioExecutor::new()).build_http(),
            timeout: Duration::from_secs(30),
        }
    }

    fn token_query(&self, sep: char) -> String {
        match &self.token {
            Some(t) => format!("{sep}agent_token={}", t.replace('&', "%26")),
            None => String::new(),
        }
    }

    async fn request(
        &self,
        method: hyper::Method,
        url: String,
        body: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        let mut b = hyper::Request::builder().method(method).uri(&url);
        if body.is_some() {
            b = b.header("content-type", "application/json");
        }
        let body = body.map(|v| serde_json::to_vec(&v).unwrap_or_default()).unwrap_or_default();
        let req = b
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let resp = tokio::time::timeout(timeout, self.http.request(req))
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
            .map_err(|e| ClientError::Transport(format!("{}: {e}", self.base)))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?
            .to_bytes();
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
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
            .request(hyper::Method::POST, url, Some(json!({"name": name, "params": params})), t)
            .await?;
        Self::decode(v)
    }
    async fn get(&self, id: &str) -> Result<CommandResult, ClientError> {
        let url = format!("{}/v1/commands/{id}{}", self.base, self.token_query('?'));
        Self::decode(self.request(hyper::Method::GET, url, None, self.timeout).await?)
    }
    async fn list(&self) -> Result<Vec<CommandResult>, ClientError> {
        let url = format!("{}/v1/commands/{}", self.base, self.token_query('?'));
        let l: CommandList =
            Self::decode(self.request(hyper::Method::GET, url, None, self.timeout).await?)?;
        Ok(l.commands)
    }
    async fn status(&self) -> Result<AgentStatus, ClientError> {
        let url = format!("{}/v1/status", self.base);
        Self::decode(self.request(hyper::Method::GET, url, None, self.timeout).await?)
    }
    fn events(&self) -> Result<EventStream, ClientError> {
        Err(ClientError::Unsupported("REST has no event stream; poll get()"))
    }
}
