//! Routing and handlers (spec `ipa-agent.md` §1.2–§1.5).
//!
//! Order of checks, as IPA: routing (404 / 405 / 308 on a missing trailing slash), then the
//! token (401), then the body (413, 400), then the dispatcher (400/404/409 refusals, or a
//! result). The transport holds no command state: everything goes through the dispatcher.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use ipa_core::command::{CommandRequest, CommandResult};
use ipa_core::dispatcher::SharedDispatcher;
use ipa_core::error::AgentError;
use ipa_core::metrics::Metrics;
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::{RestError, SERVER_HEADER, fault_response, json_response};

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub(crate) struct ApiState {
    pub dispatcher: SharedDispatcher,
    pub max_body_bytes: usize,
    pub timeouts: crate::Timeouts,
    pub scheme: &'static str,
    pub local_addr: SocketAddr,
    /// Served at `GET /metrics` (no token) when set.
    pub metrics: Option<Metrics>,
    /// The separate metrics listener: every other route is 404.
    pub metrics_only: bool,
}

/// The path of the Prometheus endpoint.
pub const METRICS_PATH: &str = "/metrics";

const GET: &[&str] = &["GET", "HEAD"];
const GET_POST: &[&str] = &["GET", "HEAD", "POST"];

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    Root,
    V1,
    Status,
    ListCommands,
    RunCommand,
    GetCommand(String),
    /// 308 to this path (the same path with a trailing slash).
    Redirect(String),
}

/// Which rule a decoded path matches, and the methods that rule accepts.
fn rule(path: &str) -> Option<(&'static [&'static str], Option<String>)> {
    let unversioned = path.strip_prefix("/v1").filter(|p| p.starts_with('/')).unwrap_or(path);
    match path {
        "/" | "/v1/" => return Some((GET, None)),
        _ => {}
    }
    match unversioned {
        "/status" => Some((GET, None)),
        "/commands/" => Some((GET_POST, None)),
        p => {
            let id = p.strip_prefix("/commands/")?;
            (!id.is_empty() && !id.contains('/')).then(|| (GET, Some(id.to_string())))
        }
    }
}

fn method_allowed(allow: &[&str], method: &Method) -> bool {
    allow.contains(&method.as_str())
}

/// Route `method path` the way werkzeug's strict-slash map does.
pub(crate) fn route(method: &Method, path: &str) -> Result<Route, RestError> {
    if let Some((allow, id)) = rule(path) {
        if !method_allowed(allow, method) {
            return Err(RestError::MethodNotAllowed { allow });
        }
        let is_post = method == Method::POST;
        return Ok(match (path, id) {
            (_, Some(id)) => Route::GetCommand(id),
            ("/", _) => Route::Root,
            ("/v1/", _) => Route::V1,
            (p, _) if p.ends_with("/status") => Route::Status,
            _ if is_post => Route::RunCommand,
            _ => Route::ListCommands,
        });
    }
    // The slashed rule exists and accepts the method: redirect (werkzeug raises 404 otherwise).
    let slashed = format!("{path}/");
    if let Some((allow, None)) = rule(&slashed)
        && slashed != "/"
        && method_allowed(allow, method)
    {
        return Ok(Route::Redirect(slashed));
    }
    Err(RestError::RouteNotFound)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Percent-decode (and `+` → space when `form`), lossy on invalid UTF-8.
pub(crate) fn percent_decode(s: &str, form: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if form => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first value of `name` in a raw query string (werkzeug's `request.args.get`).
pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k, true) == name).then(|| percent_decode(v, true))
    })
}

/// The query with every `agent_token` value replaced by `***` (for logs).
pub fn mask_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| {
            let k = pair.split_once('=').map_or(pair, |(k, _)| k);
            if percent_decode(k, true) == "agent_token" {
                format!("{k}=***")
            } else {
                pair.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Client IP as IPA logs it: first `X-Forwarded-For` entry, then `X-Real-IP`, then the peer.
fn client_ip(headers: &HeaderMap, peer: SocketAddr) -> String {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::trim);
    h("x-forwarded-for")
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .or_else(|| h("x-real-ip").filter(|v| !v.is_empty()))
        .map(|s| s.chars().filter(|c| !c.is_control()).take(64).collect())
        .unwrap_or_else(|| peer.ip().to_string())
}

/// `scheme://host` from the Host header (werkzeug's `url_root` without the slash).
fn url_root(state: &ApiState, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| !h.is_empty() && !h.contains(['/', ' ', '"', '<', '>']))
        .map(str::to_string)
        .unwrap_or_else(|| state.local_addr.to_string());
    format!("{}://{host}", state.scheme)
}

const DOCS: &str = "https://docs.openstack.org/ironic-python-agent/";

fn version_links(root: &str) -> Value {
    json!([
        {"href": format!("{root}/v1"), "rel": "self"},
        {"href": DOCS, "rel": "describedby", "type": "text/html"}
    ])
}

fn root_body(root: &str) -> Value {
    json!({
        "name": "OpenStack Ironic Python Agent API",
        "description": "Ironic Python Agent is a provisioning agent for OpenStack Ironic",
        "versions": [{"id": "v1", "links": version_links(root)}],
        "default_version": {"id": "v1", "links": version_links(root)},
    })
}

fn v1_body(root: &str) -> Value {
    json!({
        "commands": [
            {"href": format!("{root}/v1/commands"), "rel": "self"},
            {"href": format!("{root}/commands"), "rel": "bookmark"}
        ],
        "status": [
            {"href": format!("{root}/v1/status"), "rel": "self"},
            {"href": format!("{root}/status"), "rel": "bookmark"}
        ],
        "media_types": [{
            "base": "application/json",
            "type": "application/vnd.openstack.ironic-python-agent.v1+json"
        }],
        "id": "v1",
        "links": version_links(root),
    })
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn redirect(location: &str) -> Response<Full<Bytes>> {
    let esc = html_escape(location);
    let body = format!(
        "<!doctype html>\n<html lang=en>\n<title>Redirecting...</title>\n<h1>Redirecting...</h1>\n\
         <p>You should be redirected automatically to the target URL: <a href=\"{esc}\">{esc}</a>. \
         If not, click the link.\n"
    );
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::SERVER, HeaderValue::from_static(SERVER_HEADER));
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    r
}

fn ok<T: Serialize + ?Sized>(body: &T) -> Response<Full<Bytes>> {
    json_response(StatusCode::OK, body)
}

#[derive(Serialize)]
struct CommandList {
    commands: Vec<CommandResult>,
}

fn authorize(state: &ApiState, query: &str) -> Result<(), RestError> {
    let token = query_param(query, "agent_token");
    if state.dispatcher.authorize(token.as_deref()) { Ok(()) } else { Err(RestError::Unauthorized) }
}

fn wants_wait(query: &str) -> bool {
    query_param(query, "wait").is_some_and(|w| w.eq_ignore_ascii_case("true"))
}

async fn read_body(state: &ApiState, req: Request<Incoming>) -> Result<Bytes, RestError> {
    let limit = state.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(RestError::PayloadTooLarge { limit });
    }
    // Read frame by frame: each frame within the idle timeout, the whole body within the total
    // one, so a client that stops sending (or trickles) cannot hold the connection forever.
    let t = state.timeouts;
    let deadline = tokio::time::Instant::now() + t.body_total;
    let mut body = Limited::new(req.into_body(), limit);
    let mut out = bytes::BytesMut::new();
    loop {
        let wait = t.body_idle.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        let frame = match tokio::time::timeout(wait, body.frame()).await {
            Err(_) => {
                let secs = if tokio::time::Instant::now() >= deadline {
                    t.body_total
                } else {
                    t.body_idle
                };
                return Err(RestError::BodyTimeout { secs: secs.as_secs() });
            }
            Ok(None) => return Ok(out.freeze()),
            Ok(Some(Err(e))) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(RestError::PayloadTooLarge { limit });
            }
            Ok(Some(Err(e))) => return Err(RestError::BodyRead { reason: e.to_string() }),
            Ok(Some(Ok(f))) => f,
        };
        if let Ok(data) = frame.into_data() {
            out.extend_from_slice(&data);
        }
    }
}

/// `{"name": "<ext>.<cmd>", "params": {...}}` → a request (IPA's checks and texts).
pub(crate) fn parse_command(body: &[u8], key: Option<String>) -> Result<CommandRequest, RestError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| RestError::InvalidJson { reason: e.to_string() })?;
    let obj = v.as_object().ok_or(RestError::MissingNameOrParams)?;
    let name = obj.get("name").and_then(Value::as_str).ok_or(RestError::MissingNameOrParams)?;
    let params =
        obj.get("params").and_then(Value::as_object).ok_or(RestError::MissingNameOrParams)?;
    let key = key.or_else(|| obj.get("idempotency_key").and_then(Value::as_str).map(Into::into));
    let mut request = CommandRequest::new(name, params.clone());
    request.idempotency_key = key.filter(|k| !k.is_empty());
    Ok(request)
}

async fn respond(
    state: &ApiState,
    req: Request<Incoming>,
    route: Route,
    query: &str,
) -> Result<Response<Full<Bytes>>, RestError> {
    let d = &state.dispatcher;
    match route {
        Route::Root => Ok(ok(&root_body(&url_root(state, req.headers())))),
        Route::V1 => Ok(ok(&v1_body(&url_root(state, req.headers())))),
        Route::Status => Ok(ok(&d.status())),
        Route::Redirect(to) => {
            let q = if query.is_empty() { String::new() } else { format!("?{query}") };
            Ok(redirect(&format!("{}{to}{q}", url_root(state, req.headers()))))
        }
        Route::ListCommands => {
            authorize(state, query)?;
            Ok(ok(&CommandList { commands: d.list().await }))
        }
        Route::GetCommand(id) => {
            authorize(state, query)?;
            let found = if wants_wait(query) { d.wait(&id).await } else { d.get(&id).await };
            let r = found
                .ok_or(AgentError::RequestedObjectNotFound { kind: "Command Result".into(), id })?;
            Ok(ok(&r))
        }
        Route::RunCommand => {
            authorize(state, query)?;
            let key = req
                .headers()
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = read_body(state, req).await?;
            let request = parse_command(&body, key)?;
            let mut result = d.execute(request).await?;
            if wants_wait(query) && !result.command_status.is_done() {
                result = d.wait(&result.id).await.unwrap_or(result);
            }
            Ok(ok(&result))
        }
    }
}

/// `GET /metrics`: the Prometheus text of `metrics` (no token: it carries no secret).
fn metrics_response(
    method: &Method,
    metrics: &Metrics,
) -> Result<Response<Full<Bytes>>, RestError> {
    if !method_allowed(GET, method) {
        return Err(RestError::MethodNotAllowed { allow: GET });
    }
    let text = metrics.encode().map_err(RestError::Metrics)?;
    let mut r = Response::new(Full::new(Bytes::from(text)));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ipa_core::metrics::CONTENT_TYPE));
    h.insert(header::SERVER, HeaderValue::from_static(SERVER_HEADER));
    Ok(r)
}

/// Handle one request and write the access-log line (with `agent_token` masked; scrapes of
/// `/metrics` are logged at DEBUG, they come every few seconds).
pub(crate) async fn handle(
    state: &ApiState,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let method = req.method().clone();
    let raw_path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let ip = client_ip(req.headers(), peer);

    let path = percent_decode(&raw_path, false);
    let scrape = path == METRICS_PATH;
    let response = match (&state.metrics, scrape) {
        (Some(m), true) => metrics_response(&method, m),
        _ if state.metrics_only => Err(RestError::RouteNotFound),
        _ => match route(&method, &path) {
            Ok(r) => respond(state, req, r, &query).await,
            Err(e) => Err(e),
        },
    }
    .unwrap_or_else(fault_response);

    let q = if query.is_empty() { String::new() } else { format!("?{}", mask_query(&query)) };
    let status = response.status().as_u16();
    let ms = started.elapsed().as_millis();
    if scrape {
        tracing::debug!(target: "ipa_transport_rest::access", "{ip} - {method} {raw_path}{q} - {status} ({ms}ms)");
    } else {
        tracing::info!(target: "ipa_transport_rest::access", "{ip} - {method} {raw_path}{q} - {status} ({ms}ms)");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_follow_werkzeug_strict_slashes() {
        let g = Method::GET;
        let p = Method::POST;
        assert_eq!(route(&g, "/").unwrap(), Route::Root);
        assert_eq!(route(&g, "/v1/").unwrap(), Route::V1);
        assert_eq!(route(&g, "/v1").unwrap(), Route::Redirect("/v1/".into()));
        assert_eq!(route(&g, "/v1/status").unwrap(), Route::Status);
        assert_eq!(route(&g, "/status").unwrap(), Route::Status);
        assert!(matches!(route(&g, "/v1/status/"), Err(RestError::RouteNotFound)));
        assert_eq!(route(&g, "/v1/commands/").unwrap(), Route::ListCommands);
        assert_eq!(route(&p, "/commands/").unwrap(), Route::RunCommand);
        assert_eq!(route(&p, "/v1/commands").unwrap(), Route::Redirect("/v1/commands/".into()));
        assert_eq!(route(&g, "/commands").unwrap(), Route::Redirect("/commands/".into()));
        assert_eq!(route(&g, "/v1/commands/abc").unwrap(), Route::GetCommand("abc".into()));
        assert!(matches!(route(&g, "/v1/commands/a/b"), Err(RestError::RouteNotFound)));
        assert!(matches!(route(&p, "/v1/status"), Err(RestError::MethodNotAllowed { .. })));
        assert!(matches!(route(&p, "/v1/commands/x"), Err(RestError::MethodNotAllowed { .. })));
        assert!(matches!(route(&Method::PUT, "/v1/commands"), Err(RestError::RouteNotFound)));
        assert!(matches!(route(&p, "/v1"), Err(RestError::RouteNotFound)));
        assert!(matches!(route(&g, "/v2/"), Err(RestError::RouteNotFound)));
        assert_eq!(route(&Method::HEAD, "/").unwrap(), Route::Root);
    }

    #[test]
    fn query_parsing_and_masking() {
        let q = "wait=TRUE&agent_token=s%65cret+x&agent_token=second";
        assert_eq!(query_param(q, "agent_token").as_deref(), Some("secret x"));
        assert!(wants_wait(q));
        assert!(!wants_wait("wait=1"));
        assert_eq!(mask_query(q), "wait=TRUE&agent_token=***&agent_token=***");
        assert_eq!(mask_query("agent%5Ftoken=abc"), "agent%5Ftoken=***");
        assert_eq!(percent_decode("%zz%4", false), "%zz%4");
    }
}
