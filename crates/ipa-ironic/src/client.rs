//! The agent → Ironic API client: version discovery, lookup, heartbeat, continue_inspection
//! (spec `ironic-contract.md` §3, `ipa-agent.md` §4.3–4.5).

use std::sync::Mutex;
use std::time::Duration;

use http::Method;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::error::IronicError;
use crate::http::{HttpClient, Response, TlsOptions};

/// An Ironic API microversion `1.N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion(pub u32, pub u32);

impl ApiVersion {
    /// Lookup with token generation.
    pub const LOOKUP: ApiVersion = ApiVersion(1, 62);
    /// Heartbeat with `agent_verify_ca`.
    pub const HEARTBEAT: ApiVersion = ApiVersion(1, 68);
    /// What IPA assumes when discovery fails.
    pub const FALLBACK: ApiVersion = ApiVersion(1, 31);
    /// `agent_version` in heartbeats.
    pub const AGENT_VERSION: ApiVersion = ApiVersion(1, 36);

    /// Parse `"1.62"`.
    pub fn parse(s: &str) -> Option<Self> {
        let (a, b) = s.trim().split_once('.')?;
        Some(ApiVersion(a.parse().ok()?, b.parse().ok()?))
    }
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// Turn an Ironic error body into a readable message. Ironic wraps
/// `{"faultcode", "faultstring", "debuginfo"}` as a JSON *string* inside `error_message`.
pub fn error_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body).trim().to_string();
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return if text.is_empty() { "(empty body)".into() } else { text };
    };
    let fault = |o: &Value| -> Option<String> {
        o.get("faultstring").or_else(|| o.get("title")).and_then(Value::as_str).map(str::to_string)
    };
    match v.get("error_message") {
        Some(Value::String(inner)) => match serde_json::from_str::<Value>(inner) {
            Ok(o) => fault(&o).unwrap_or_else(|| inner.clone()),
            Err(_) => inner.clone(),
        },
        Some(o @ Value::Object(_)) => fault(o).unwrap_or(text),
        _ => fault(&v).unwrap_or(text),
    }
}

/// How one lookup attempt failed.
#[derive(Debug)]
pub struct AttemptError {
    /// Ironic said 409 (node locked): wait longer before the next try.
    pub conflict: bool,
    /// Readable reason.
    pub error: IronicError,
}

/// The client. Holds the API URLs (the one that worked last first) and the discovered version.
#[derive(Debug)]
pub struct IronicClient {
    urls: Mutex<Vec<String>>,
    http: HttpClient,
    request_id: Option<String>,
    version_override: Option<ApiVersion>,
    discovered: Mutex<Option<ApiVersion>>,
}

/// Client settings.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// API URLs (no trailing slash).
    pub urls: Vec<String>,
    /// Outbound TLS.
    pub tls: TlsOptions,
    /// Per-request timeout.
    pub timeout: Duration,
    /// `X-OpenStack-Request-ID`.
    pub global_request_id: Option<String>,
    /// `ironic_api_version` override.
    pub api_version: Option<String>,
}

impl ClientOptions {
    /// From the agent configuration.
    pub fn from_config(c: &ipa_core::config::AgentConfig) -> Self {
        Self {
            urls: c.ironic.api_urls(),
            tls: TlsOptions {
                cafile: c.http.cafile.clone(),
                certfile: c.http.certfile.clone(),
                keyfile: c.http.keyfile.clone(),
                insecure: c.http.insecure,
                min_version: None,
            },
            timeout: Duration::from_secs(c.ironic.http_request_timeout.max(1)),
            global_request_id: c.ironic.global_request_id.clone(),
            api_version: c.ironic.ironic_api_version.clone(),
        }
    }
}

impl IronicClient {
    /// Build a client.
    pub fn new(opts: ClientOptions) -> Result<Self, IronicError> {
        Ok(Self {
            urls: Mutex::new(opts.urls),
            http: HttpClient::new(&opts.tls, opts.timeout)?,
            request_id: opts.global_request_id,
            version_override: opts.api_version.as_deref().and_then(ApiVersion::parse),
            discovered: Mutex::new(None),
        })
    }

    /// The underlying HTTP client (shared with inspection).
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// The API URLs, the last one that answered first.
    pub fn urls(&self) -> Vec<String> {
        self.urls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn headers(&self, version: Option<ApiVersion>) -> Vec<(&'static str, String)> {
        let mut h = vec![
            ("content-type", "application/json".to_string()),
            ("accept", "application/json".to_string()),
            ("user-agent", format!("ipa-agent/{}", ipa_core::AGENT_VERSION)),
        ];
        if let Some(v) = version {
            h.push(("x-openstack-ironic-api-version", v.to_string()));
        }
        if let Some(id) = &self.request_id {
            h.push(("x-openstack-request-id", id.clone()));
        }
        h
    }

    /// Send `path` to each URL in turn; move on only on transport errors. The URL that
    /// answered is rotated to the front.
    async fn call(
        &self,
        method: Method,
        path: &str,
        version: Option<ApiVersion>,
        body: Option<&Value>,
    ) -> Result<(String, Response), IronicError> {
        let urls = self.urls();
        if urls.is_empty() {
            return Err(IronicError::Url {
                url: String::new(),
                reason: "no Ironic API URL".into(),
            });
        }
        let payload = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        let headers = self.headers(version);
        let mut last = None;
        for (i, base) in urls.iter().enumerate() {
            let url = format!("{base}{path}");
            match self.http.send(method.clone(), &url, &headers, payload.clone()).await {
                Ok(r) => {
                    if i > 0 {
                        let mut g = self.urls.lock().unwrap_or_else(|p| p.into_inner());
                        if let Some(pos) = g.iter().position(|u| u == base) {
                            let u = g.remove(pos);
                            g.insert(0, u);
                        }
                    }
                    return Ok((url, r));
                }
                Err(e @ (IronicError::Connection { .. } | IronicError::Timeout { .. })) => {
                    tracing::warn!(error = %e, "Ironic API URL not reachable");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last
            .unwrap_or_else(|| IronicError::Url { url: String::new(), reason: "no URL".into() }))
    }

    /// The API version: the override, else discovered once with `GET /`, else 1.31 (not
    /// cached, so a later call retries discovery).
    pub async fn api_version(&self) -> ApiVersion {
        if let Some(v) = self.version_override {
            return v;
        }
        if let Some(v) = *self.discovered.lock().unwrap_or_else(|p| p.into_inner()) {
            return v;
        }
        match self.call(Method::GET, "/", None, None).await {
            Ok((_, r)) if r.status.is_success() => {
                let v = serde_json::from_slice::<Value>(&r.body).ok().and_then(|v| {
                    v.pointer("/default_version/version")
                        .and_then(Value::as_str)
                        .and_then(ApiVersion::parse)
                });
                if let Some(v) = v {
                    tracing::info!(version = %v, "Ironic API version discovered");
                    *self.discovered.lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
                    return v;
                }
                tracing::warn!("Ironic's root document has no default_version; assuming 1.31");
                ApiVersion::FALLBACK
            }
            Ok((_, r)) => {
                tracing::warn!(status = r.status.as_u16(), "Ironic version discovery failed");
                ApiVersion::FALLBACK
            }
            Err(e) => {
                tracing::warn!(error = %e, "Ironic version discovery failed; assuming 1.31");
                ApiVersion::FALLBACK
            }
        }
    }

    /// One lookup attempt. The reply must carry `node.uuid` and a `config` (or the legacy
    /// top-level `heartbeat_timeout`).
    pub async fn lookup_once(
        &self,
        addresses: &[String],
        node_uuid: Option<&str>,
    ) -> Result<Value, AttemptError> {
        let version = self.api_version().await.min(ApiVersion::LOOKUP);
        let mut path = format!("/v1/lookup?addresses={}", addresses.join(","));
        if let Some(u) = node_uuid {
            path.push_str(&format!("&node_uuid={u}"));
        }
        let fail = |error| AttemptError { conflict: false, error };
        let (url, r) = self.call(Method::GET, &path, Some(version), None).await.map_err(fail)?;
        if r.status != http::StatusCode::OK {
            let error = IronicError::Api {
                method: "GET".into(),
                url,
                status: r.status.as_u16(),
                message: error_message(&r.body),
            };
            return Err(AttemptError { conflict: r.status.as_u16() == 409, error });
        }
        let bad =
            |reason: &str| fail(IronicError::BadReply { url: url.clone(), reason: reason.into() });
        let v: Value =
            serde_json::from_slice(&r.body).map_err(|_| bad("lookup reply is not JSON"))?;
        if v.pointer("/node/uuid").and_then(Value::as_str).is_none() {
            return Err(bad("lookup reply has no node.uuid"));
        }
        if v.get("config").is_none() && v.get("heartbeat_timeout").is_none() {
            return Err(bad("lookup reply has no config"));
        }
        Ok(v)
    }

    /// Look the node up, retrying with random exponential backoff until `timeout`.
    pub async fn lookup(
        &self,
        addresses: &[String],
        node_uuid: Option<&str>,
        timeout: Duration,
        interval: Duration,
    ) -> Result<Value, IronicError> {
        tracing::info!(addresses = ?addresses, node_uuid, "looking up the node in Ironic");
        retry_lookup(timeout, interval, || self.lookup_once(addresses, node_uuid)).await
    }

    /// `POST /v1/heartbeat/{uuid}`; 202 expected.
    pub async fn heartbeat(&self, beat: &HeartbeatRequest<'_>) -> Result<(), IronicError> {
        let version = self.api_version().await.min(ApiVersion::HEARTBEAT);
        let mut body = json!({ "callback_url": beat.callback_url });
        if version >= ApiVersion::LOOKUP {
            body["agent_token"] = json!(beat.token);
        }
        if version >= ApiVersion::AGENT_VERSION {
            body["agent_version"] = json!(ipa_core::IPA_COMPAT_VERSION);
        }
        if version >= ApiVersion::HEARTBEAT
            && let Some(ca) = beat.verify_ca
        {
            body["agent_verify_ca"] = json!(ca);
        }
        let path = format!("/v1/heartbeat/{}", beat.node_uuid);
        let (url, r) = self.call(Method::POST, &path, Some(version), Some(&body)).await?;
        if r.status == http::StatusCode::ACCEPTED {
            return Ok(());
        }
        Err(IronicError::Api {
            method: "POST".into(),
            url,
            status: r.status.as_u16(),
            message: error_message(&r.body),
        })
    }

    /// POST inspection data to `url` (a full `…/v1/continue_inspection` URL). Returns the
    /// reply's JSON (Ironic: `{"uuid": …}`).
    pub async fn post_inspection(&self, url: &str, data: &Value) -> Result<Value, IronicError> {
        let body = serde_json::to_vec(data).unwrap_or_default();
        let r = self.http.send(Method::POST, url, &self.headers(None), Some(body)).await?;
        if !r.status.is_success() {
            return Err(IronicError::Api {
                method: "POST".into(),
                url: url.into(),
                status: r.status.as_u16(),
                message: error_message(&r.body),
            });
        }
        Ok(serde_json::from_slice(&r.body).unwrap_or(Value::Null))
    }
}

/// What a heartbeat says.
#[derive(Debug, Clone)]
pub struct HeartbeatRequest<'a> {
    /// Node UUID from lookup.
    pub node_uuid: &'a str,
    /// Our API's URL; never changes in one process.
    pub callback_url: &'a str,
    /// The agent token (secret; sent only in the body).
    pub token: Option<&'a str>,
    /// The auto-TLS certificate (PEM).
    pub verify_ca: Option<&'a str>,
}

/// Extra waits after consecutive 409 answers, in seconds (then sticky at the last).
const CONFLICT_WAITS: [u64; 3] = [5, 10, 30];

/// Random exponential wait before attempt `n + 1` (n ≥ 1): uniform between `min` and
/// `min(60 s, max(min, 2^(n-1) s))`.
pub fn backoff(attempt: u32, min: Duration) -> Duration {
    let cap = Duration::from_secs(60);
    let exp = Duration::from_secs(1u64 << attempt.saturating_sub(1).min(6));
    let high = exp.max(min).min(cap);
    let low = min.min(high);
    if high <= low {
        return low;
    }
    Duration::from_secs_f64(rand::random_range(low.as_secs_f64()..=high.as_secs_f64()))
}

/// The lookup retry loop around `attempt` (separate so it can be tested on a paused clock).
pub async fn retry_lookup<F, Fut>(
    timeout: Duration,
    interval: Duration,
    mut attempt: F,
) -> Result<Value, IronicError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Value, AttemptError>>,
{
    let deadline = Instant::now() + timeout;
    let mut n = 0u32;
    let mut conflicts = 0usize;
    loop {
        n += 1;
        let e = match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        tracing::warn!(attempt = n, error = %e.error, "lookup failed");
        let mut wait = backoff(n, interval);
        if e.conflict {
            wait += Duration::from_secs(CONFLICT_WAITS[conflicts.min(CONFLICT_WAITS.len() - 1)]);
            conflicts += 1;
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(IronicError::LookupTimeout { last: e.error.to_string() });
        }
        tokio::time::sleep(wait.min(deadline - now)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_envelope_becomes_the_fault_string() {
        let body = br#"{"error_message": "{\"faultcode\": \"Client\", \"faultstring\": \"Resource could not be found.\", \"debuginfo\": null}"}"#;
        assert_eq!(error_message(body), "Resource could not be found.");
        assert_eq!(error_message(b"plain text"), "plain text");
        assert_eq!(error_message(br#"{"error_message": "not json"}"#), "not json");
        assert_eq!(error_message(br#"{"title": "Bad"}"#), "Bad");
        assert_eq!(error_message(b""), "(empty body)");
    }

    #[test]
    fn versions_parse_and_order() {
        assert_eq!(ApiVersion::parse("1.99"), Some(ApiVersion(1, 99)));
        assert!(ApiVersion(1, 99) > ApiVersion::HEARTBEAT);
        assert!(ApiVersion(1, 9) < ApiVersion::LOOKUP);
        assert_eq!(ApiVersion::parse("x"), None);
        assert_eq!(ApiVersion(1, 115).min(ApiVersion::LOOKUP).to_string(), "1.62");
    }

    #[test]
    fn backoff_is_random_exponential_between_min_and_60s() {
        let min = Duration::from_secs(1);
        for n in 1..20 {
            for _ in 0..50 {
                let w = backoff(n, min);
                let high = Duration::from_secs(1u64 << (n - 1).min(6)).min(Duration::from_secs(60));
                assert!(w >= min && w <= high.max(min), "attempt {n}: {w:?}");
            }
        }
        assert_eq!(backoff(1, min), min);
    }

    fn fail(conflict: bool) -> AttemptError {
        AttemptError {
            conflict,
            error: IronicError::Api {
                method: "GET".into(),
                url: "u".into(),
                status: if conflict { 409 } else { 404 },
                message: "m".into(),
            },
        }
    }

    #[tokio::test(start_paused = true)]
    async fn lookup_retries_until_success() {
        let start = Instant::now();
        let mut calls = 0;
        let v = retry_lookup(Duration::from_secs(600), Duration::from_secs(1), || {
            calls += 1;
            let n = calls;
            async move { if n < 4 { Err(fail(false)) } else { Ok(json!({"ok": n})) } }
        })
        .await
        .unwrap();
        assert_eq!(v["ok"], 4);
        // Waits: 1 s, then U(1,2), then U(1,4).
        let took = start.elapsed();
        assert!(took >= Duration::from_secs(3) && took <= Duration::from_secs(7), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn lookup_waits_extra_after_409_and_gives_up_at_the_timeout() {
        let start = Instant::now();
        let mut times = Vec::new();
        let e = retry_lookup(Duration::from_secs(100), Duration::from_secs(1), || {
            times.push(start.elapsed());
            async { Err::<Value, _>(fail(true)) }
        })
        .await
        .unwrap_err();
        assert!(matches!(e, IronicError::LookupTimeout { .. }));
        assert!(e.to_string().contains("Could not look up node info"));
        // First gap: 1 s backoff + 5 s; second: U(1,2) + 10 s; third: U(1,4) + 30 s.
        assert_eq!(times[1] - times[0], Duration::from_secs(6));
        let g2 = times[2] - times[1];
        assert!(g2 >= Duration::from_secs(11) && g2 <= Duration::from_secs(12), "{g2:?}");
        let g3 = times[3] - times[2];
        assert!(g3 >= Duration::from_secs(31) && g3 <= Duration::from_secs(34), "{g3:?}");
        let total = start.elapsed();
        assert_eq!(total, Duration::from_secs(100));
    }
}
