//! Errors of the REST transport, and the **one** place where a fault body is made.
//!
//! Every refusal ends up as an [`AgentError`] ([`From<RestError>`]) and every fault body is made
//! by [`fault_response`] from that `AgentError`: `{"faultcode": "Client"|"Server", "faultstring":
//! "<message>: <details>"}` (`faultcode` is `Server` iff the status is ≥ 500). HTTP-level refusals
//! use werkzeug's texts, as IPA does (`<code> <Name>: <description>`).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use ipa_core::error::AgentError;
use serde::Serialize;

use crate::json::to_python_json;

/// `Server` header value on every response (IPA's).
pub const SERVER_HEADER: &str = "ironic-python-agent";

/// What went wrong in the REST transport.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// Missing, empty or wrong `agent_token` on a command endpoint.
    #[error("401 Unauthorized: Token invalid.")]
    Unauthorized,
    /// No route for the path.
    #[error("404 Not Found: no route")]
    RouteNotFound,
    /// Known path, wrong method.
    #[error("405 Method Not Allowed (allowed: {allow:?})")]
    MethodNotAllowed {
        /// Methods the route accepts.
        allow: &'static [&'static str],
    },
    /// The request body is larger than the configured limit.
    #[error("request body exceeds {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The request body could not be read off the connection.
    #[error("cannot read the request body: {reason}")]
    BodyRead {
        /// Cause.
        reason: String,
    },
    /// The client did not send its body within the read timeouts.
    #[error("request body not received within {secs} s")]
    BodyTimeout {
        /// The timeout that expired.
        secs: u64,
    },
    /// The body is not JSON.
    #[error("body is not JSON: {reason}")]
    InvalidJson {
        /// The parser's message.
        reason: String,
    },
    /// `name` or `params` missing, or `params` not an object.
    #[error("missing or invalid name or params")]
    MissingNameOrParams,
    /// The dispatcher refused the request.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// TLS material is unusable.
    #[error("TLS setup failed: {reason}")]
    Tls {
        /// What is wrong.
        reason: String,
    },
    /// The metrics could not be encoded.
    #[error("cannot encode the metrics")]
    Metrics(#[source] ipa_core::metrics::MetricsError),
    /// `metrics_listen` is not `HOST:PORT`.
    #[error("metrics_listen {value:?} is not HOST:PORT")]
    MetricsListen {
        /// The configured value.
        value: String,
    },
    /// The listen address could not be resolved or bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// Address.
        addr: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// A werkzeug-style HTTP error as an `AgentError` (`"<code> <Name>: <description>"`).
fn http_error(code: u16, name: &str, description: impl Into<String>) -> AgentError {
    AgentError::Custom {
        kind: name.replace(' ', ""),
        code,
        message: format!("{code} {name}"),
        details: description.into(),
    }
}

impl From<RestError> for AgentError {
    fn from(e: RestError) -> Self {
        match e {
            RestError::Unauthorized => http_error(401, "Unauthorized", "Token invalid."),
            RestError::RouteNotFound => http_error(
                404,
                "Not Found",
                "The requested URL was not found on the server. If you entered the URL manually \
                 please check your spelling and try again.",
            ),
            RestError::MethodNotAllowed { .. } => http_error(
                405,
                "Method Not Allowed",
                "The method is not allowed for the requested URL.",
            ),
            RestError::PayloadTooLarge { .. } => http_error(
                413,
                "Request Entity Too Large",
                "The data value transmitted exceeds the capacity limit.",
            ),
            RestError::BodyRead { reason } => {
                http_error(400, "Bad Request", format!("Failed to read the request body: {reason}"))
            }
            RestError::BodyTimeout { secs } => http_error(
                408,
                "Request Timeout",
                format!("The request body was not received within {secs} seconds."),
            ),
            RestError::InvalidJson { reason } => {
                http_error(400, "Bad Request", format!("Failed to decode JSON object: {reason}"))
            }
            RestError::MissingNameOrParams => {
                http_error(400, "Bad Request", "Missing or invalid name or params")
            }
            RestError::Agent(e) => e,
            other @ (RestError::Tls { .. }
            | RestError::Bind { .. }
            | RestError::Metrics(_)
            | RestError::MetricsListen { .. }) => {
                AgentError::internal("RuntimeError", other.to_string())
            }
        }
    }
}

#[derive(Serialize)]
struct Fault<'a> {
    faultcode: &'a str,
    faultstring: String,
}

/// A JSON response with IPA's headers.
pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(to_python_json(body))));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(header::SERVER, HeaderValue::from_static(SERVER_HEADER));
    r
}

/// The fault response for `e`: status from the error class, IPA's body, and `Allow` for 405.
pub fn fault_response(e: RestError) -> Response<Full<Bytes>> {
    let allow = match &e {
        RestError::MethodNotAllowed { allow } => Some(allow.join(", ")),
        _ => None,
    };
    // The rest of an unread body is still on the wire: the connection cannot be reused.
    let close = matches!(e, RestError::BodyTimeout { .. } | RestError::BodyRead { .. });
    let agent: AgentError = e.into();
    let code = agent.code();
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = Fault {
        faultcode: if status.as_u16() >= 500 { "Server" } else { "Client" },
        faultstring: agent.to_string(),
    };
    let mut r = json_response(status, &body);
    if let Some(allow) = allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
        r.headers_mut().insert(header::ALLOW, allow);
    }
    if close {
        r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(e: RestError) -> (u16, String) {
        use http_body_util::BodyExt;
        let r = fault_response(e);
        let status = r.status().as_u16();
        let bytes = futures_util::FutureExt::now_or_never(r.into_body().collect())
            .expect("ready")
            .expect("infallible")
            .to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[test]
    fn fault_bodies_are_ipas() {
        assert_eq!(
            body(RestError::Unauthorized),
            (
                401,
                r#"{"faultcode": "Client", "faultstring": "401 Unauthorized: Token invalid."}"#
                    .into()
            )
        );
        assert_eq!(
            body(AgentError::AgentIsBusy { command: "prepare_image".into() }.into()),
            (
                409,
                r#"{"faultcode": "Client", "faultstring": "Agent is busy: executing command prepare_image"}"#
                    .into()
            )
        );
        let (code, b) = body(AgentError::execution("boom").into());
        assert_eq!(code, 500);
        assert!(b.starts_with(r#"{"faultcode": "Server""#), "{b}");
    }
}
