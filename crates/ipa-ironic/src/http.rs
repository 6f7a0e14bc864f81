//! The Ironic API's view of the workspace's HTTP stack ([`ipa_http`]): one request, any status
//! is an answer, the body read whole (bounded), errors in this crate's terms with URLs redacted.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use ipa_http::{HttpError, HttpSettings, Outgoing, Target};

use crate::error::IronicError;

/// Largest response body accepted (lookup replies carry the whole node).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Outbound TLS options (IPA's `cafile`, `certfile`, `keyfile`, `insecure`): the workspace's one
/// policy.
pub type TlsOptions = ipa_http::TlsPolicy;

pub use ipa_http::pem_certs;

/// A response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status.
    pub status: StatusCode,
    /// Body.
    pub body: Bytes,
}

/// The client.
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: ipa_http::HttpClient,
    timeout: Duration,
}

/// The rustls client configuration of `opts` (tests, auto-TLS checks).
pub fn client_config(opts: &TlsOptions) -> Result<rustls::ClientConfig, IronicError> {
    opts.client_config().map_err(tls_err)
}

fn tls_err(e: HttpError) -> IronicError {
    IronicError::TlsSetup(e.to_string())
}

/// Split `url` into (https?, host without brackets, port, path and query).
pub fn split_url(url: &str) -> Result<(bool, String, u16, String), IronicError> {
    let t = Target::parse(url).map_err(|e| match e {
        HttpError::Url { url, reason } => IronicError::Url { url, reason },
        other => IronicError::Url { url: ipa_http::redact(url), reason: other.to_string() },
    })?;
    Ok((t.https, t.host, t.port, t.path))
}

impl HttpClient {
    /// A client with `opts` and a per-request `timeout`.
    pub fn new(opts: &TlsOptions, timeout: Duration) -> Result<Self, IronicError> {
        let settings = HttpSettings { tls: opts.clone(), timeout, ..Default::default() };
        Ok(Self { inner: ipa_http::HttpClient::new(settings).map_err(tls_err)?, timeout })
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Send one request; any HTTP status is a successful exchange.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Response, IronicError> {
        let mut req = Outgoing::new(method.clone(), url).body(body.unwrap_or_default());
        for (k, v) in headers {
            if let Ok(name) = http::header::HeaderName::from_bytes(k.as_bytes()) {
                req = req.header(name, v);
            }
        }
        match self.inner.send_collect(req, MAX_BODY, Some(self.timeout)).await {
            Ok(c) => Ok(Response { status: c.status, body: c.body }),
            Err(HttpError::Timeout { method, url, secs }) => {
                Err(IronicError::Timeout { method, url, secs })
            }
            Err(HttpError::Url { url, reason }) => Err(IronicError::Url { url, reason }),
            Err(HttpError::Tls(m)) => Err(IronicError::TlsSetup(m)),
            Err(e) => Err(IronicError::Connection {
                method: method.to_string(),
                url: ipa_http::redact(url),
                reason: match &e {
                    HttpError::Connect { reason, .. } => reason.clone(),
                    other => other.to_string(),
                },
            }),
        }
    }
}
