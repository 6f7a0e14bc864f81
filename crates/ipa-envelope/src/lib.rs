//! # ipa-envelope
//!
//! One versioned JSON envelope for every non-REST transport (AMQP, ZeroMQ), described for
//! humans in `docs/transport-protocol.md`. A transport only moves bytes: it calls
//! [`decode_request`] on what arrives, [`handle`] (or [`handle_staged`]) to run it against the
//! [`Dispatcher`], and sends the [`Reply`] back; it wraps [`AgentEvent`]s into [`Event`]s.
//!
//! * requests: `{"v":1,"kind":"request","id":"<message id>","token":"…","op":…}` where `op` is
//!   `{"run":{"name","params","wait","idempotency_key"}}`, `{"get":{"id"}}`, `"list"` or
//!   `"status"`;
//! * replies: `{"v":1,"kind":"reply","id":"<same message id>","result":…}` or `…,"error":{…}`
//!   where the error object is exactly IPA's (`AgentError::to_body`): busy is the 409
//!   `AgentIsBusy` object, never a buffered command;
//! * events: `{"v":1,"kind":"event","agent_id":"…","ts":<epoch>,"event":"command.finished",…}`.
//!
//! Malformed input, an unknown version, or an oversized message gives an error reply (with the
//! message id when one could be read), never a panic and never a silent drop.

use std::time::{SystemTime, UNIX_EPOCH};

use ipa_core::command::{CommandRequest, CommandResult, Params};
use ipa_core::dispatcher::{AgentStatus, Dispatcher};
use ipa_core::error::{AgentError, ErrorBody};
use ipa_core::events::AgentEvent;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub mod link;

/// The protocol version this crate speaks (`"v"` on every message).
pub const PROTOCOL_VERSION: u32 = 1;

/// Prefix of the implicit idempotency key derived from the message id.
pub const IMPLICIT_KEY_PREFIX: &str = "msg:";

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Operation {
    /// Run (or start) a command.
    Run {
        /// `<extension>.<command>`.
        name: String,
        /// Keyword parameters.
        #[serde(default)]
        params: Params,
        /// Reply only once the command is final.
        #[serde(default)]
        wait: bool,
        /// Client-chosen idempotency key; when absent, `msg:<message id>` is used.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idempotency_key: Option<String>,
    },
    /// One command result by id.
    Get {
        /// Result id.
        id: String,
    },
    /// All command results, oldest first.
    List,
    /// Agent status (no token needed, like REST `/v1/status`).
    Status,
}

/// A request envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Protocol version.
    pub v: u32,
    /// Always `"request"` (optional on input).
    #[serde(default = "kind_request")]
    pub kind: String,
    /// Message id, echoed on the reply (correlation).
    pub id: String,
    /// The agent token (required for `run`, `get`, `list`). Never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The operation.
    pub op: Operation,
}

fn kind_request() -> String {
    "request".into()
}

impl Request {
    /// A request with a fresh UUID message id.
    pub fn new(op: Operation, token: Option<String>) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            kind: kind_request(),
            id: uuid::Uuid::new_v4().to_string(),
            token,
            op,
        }
    }

    /// Serialise.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Operation name for logs (`run`, `get`, `list`, `status`).
    pub fn op_name(&self) -> &'static str {
        match self.op {
            Operation::Run { .. } => "run",
            Operation::Get { .. } => "get",
            Operation::List => "list",
            Operation::Status => "status",
        }
    }
}

/// A reply envelope: exactly one of `result` / `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// Protocol version.
    pub v: u32,
    /// Always `"reply"`.
    pub kind: String,
    /// The request's message id; `null` if the request was too broken to carry one.
    pub id: Option<String>,
    /// Success payload: a command result (`run`, `get`), `{"commands": [...]}` (`list`) or the
    /// status object (`status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// IPA's error object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Reply {
    /// A success reply.
    pub fn ok(id: Option<String>, result: Value) -> Self {
        Self { v: PROTOCOL_VERSION, kind: "reply".into(), id, result: Some(result), error: None }
    }

    /// An error reply.
    pub fn err(id: Option<String>, error: &AgentError) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            kind: "reply".into(),
            id,
            result: None,
            error: Some(error.to_body()),
        }
    }

    /// Serialise.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The payload as `T`, or the error object.
    pub fn into_result<T: DeserializeOwned>(self) -> Result<T, ErrorBody> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let v = self.result.unwrap_or(Value::Null);
        serde_json::from_value(v).map_err(|e| ErrorBody {
            kind: "InvalidReply".into(),
            code: 502,
            message: "Invalid reply".into(),
            details: e.to_string(),
        })
    }
}

/// The `list` payload (same shape as REST `GET /v1/commands/`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandList {
    /// Results, oldest first.
    pub commands: Vec<CommandResult>,
}

/// An event envelope. On the wire the event's own fields sit next to `v`, `kind`,
/// `agent_id` and `ts` (`agent.*` events carry `agent_id` once, not twice).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Protocol version.
    pub v: u32,
    /// Always `"event"`.
    pub kind: String,
    /// The agent that emitted it.
    pub agent_id: String,
    /// Emission time, epoch seconds.
    pub ts: f64,
    /// The event itself (`"event": "command.finished"`, …).
    pub event: AgentEvent,
}

impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut obj = match serde_json::to_value(&self.event).map_err(serde::ser::Error::custom)? {
            Value::Object(m) => m,
            _ => return Err(serde::ser::Error::custom("event is not an object")),
        };
        obj.insert("v".into(), Value::from(self.v));
        obj.insert("kind".into(), Value::from(self.kind.clone()));
        obj.insert("agent_id".into(), Value::from(self.agent_id.clone()));
        obj.insert("ts".into(), Value::from(self.ts));
        Value::Object(obj).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut obj = match Value::deserialize(d)? {
            Value::Object(m) => m,
            _ => return Err(D::Error::custom("event must be an object")),
        };
        let v =
            obj.remove("v").and_then(|v| v.as_u64()).ok_or_else(|| D::Error::missing_field("v"))?;
        let kind = obj
            .remove("kind")
            .and_then(|k| k.as_str().map(str::to_string))
            .unwrap_or_else(|| "event".into());
        let ts = obj.remove("ts").and_then(|t| t.as_f64()).unwrap_or(0.0);
        let agent_id = obj
            .get("agent_id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| D::Error::missing_field("agent_id"))?;
        let event = serde_json::from_value(Value::Object(obj)).map_err(D::Error::custom)?;
        Ok(Event { v: v as u32, kind, agent_id, ts, event })
    }
}

impl Event {
    /// Wrap `event` from `agent_id`, stamped now.
    pub fn new(agent_id: &str, event: AgentEvent) -> Self {
        let ts =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        Self { v: PROTOCOL_VERSION, kind: "event".into(), agent_id: agent_id.into(), ts, event }
    }

    /// Serialise.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The dotted event name (`command.finished`).
    pub fn topic(&self) -> &'static str {
        self.event.topic()
    }
}

/// Any message, as a controller-side client decodes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A reply to one of our requests.
    Reply(Reply),
    /// An event.
    Event(Event),
}

impl Message {
    /// Decode a reply or an event.
    pub fn decode(bytes: &[u8]) -> Result<Message, String> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("malformed JSON: {e}"))?;
        match v.get("kind").and_then(Value::as_str) {
            Some("reply") => {
                serde_json::from_value(v).map(Message::Reply).map_err(|e| e.to_string())
            }
            Some("event") => {
                serde_json::from_value(v).map(Message::Event).map_err(|e| e.to_string())
            }
            other => Err(format!("unexpected message kind {other:?}")),
        }
    }
}

/// Connection state of a broker transport, published on a `watch` channel so that tests and
/// operators can see *why* a link is down (wrong credentials, wrong CURVE key, ...).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LinkState {
    /// Not connected yet, or reconnecting.
    #[default]
    Connecting,
    /// Connected (and authenticated).
    Up {
        /// Where.
        endpoint: String,
    },
    /// The peer refused us (authentication, TLS, CURVE); retried with backoff.
    Refused {
        /// Why, in words an operator can act on.
        reason: String,
    },
    /// The link dropped; reconnecting.
    Down {
        /// Why.
        reason: String,
    },
}

/// Serde helpers for config sections fed from the kernel command line, where every value is
/// a string: accept `5000` and `"5000"` alike.
pub mod de {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrStr {
        N(u64),
        S(String),
    }

    /// A `u64` given as a number or a string.
    pub fn u64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match NumOrStr::deserialize(d)? {
            NumOrStr::N(n) => Ok(n),
            NumOrStr::S(s) => s.trim().parse().map_err(serde::de::Error::custom),
        }
    }
}

/// The error for an envelope that cannot be understood.
pub fn malformed(details: impl Into<String>) -> AgentError {
    AgentError::InvalidContent { details: details.into() }
}

/// The error for an unknown protocol version.
pub fn unsupported_version(got: &Value) -> AgentError {
    AgentError::Custom {
        kind: "UnsupportedVersion".into(),
        code: 400,
        message: "Unsupported envelope version".into(),
        details: format!("version {got} is not supported; supported: [{PROTOCOL_VERSION}]"),
    }
}

/// The error for a missing or wrong token.
pub fn unauthorized() -> AgentError {
    AgentError::Custom {
        kind: "Unauthorized".into(),
        code: 401,
        message: "401 Unauthorized".into(),
        details: "Token invalid.".into(),
    }
}

/// The error for a message larger than the limit.
pub fn too_large(size: usize, max: usize) -> AgentError {
    AgentError::Custom {
        kind: "MessageTooLarge".into(),
        code: 413,
        message: "Message too large".into(),
        details: format!("message of {size} bytes exceeds the limit of {max} bytes"),
    }
}

/// Decode a request. Anything that is not a valid request becomes the error [`Reply`] to send
/// back (carrying the message id if one could be read).
pub fn decode_request(bytes: &[u8], max_bytes: usize) -> Result<Request, Reply> {
    if bytes.len() > max_bytes {
        return Err(Reply::err(None, &too_large(bytes.len(), max_bytes)));
    }
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| Reply::err(None, &malformed(format!("malformed JSON: {e}"))))?;
    let Some(obj) = v.as_object() else {
        return Err(Reply::err(None, &malformed("envelope must be a JSON object")));
    };
    let id = obj.get("id").and_then(Value::as_str).map(str::to_string);
    match obj.get("v") {
        None => return Err(Reply::err(id, &malformed("missing protocol version \"v\""))),
        Some(ver) if ver.as_u64() != Some(PROTOCOL_VERSION as u64) => {
            return Err(Reply::err(id, &unsupported_version(ver)));
        }
        Some(_) => {}
    }
    if let Some(kind) = obj.get("kind")
        && kind.as_str() != Some("request")
    {
        return Err(Reply::err(id, &malformed(format!("expected kind \"request\", got {kind}"))));
    }
    serde_json::from_value::<Request>(v)
        .map_err(|e| Reply::err(id, &malformed(format!("invalid request envelope: {e}"))))
}

/// Run a request against the dispatcher and build the reply.
pub async fn handle(dispatcher: &dyn Dispatcher, request: Request) -> Reply {
    handle_staged(dispatcher, request, || {}).await
}

/// Like [`handle`], calling `on_decided` as soon as the dispatcher has recorded the command or
/// refused it — before waiting for a `wait: true` command to finish. The AMQP transport acks
/// the message there, so a broker restart during a long wait never re-runs the command.
pub async fn handle_staged(
    dispatcher: &dyn Dispatcher,
    request: Request,
    on_decided: impl FnOnce() + Send,
) -> Reply {
    let id = Some(request.id.clone());
    let needs_token = !matches!(request.op, Operation::Status);
    if needs_token && !dispatcher.authorize(request.token.as_deref()) {
        on_decided();
        tracing::warn!(op = request.op_name(), msg_id = %request.id, "request refused: token invalid");
        return Reply::err(id, &unauthorized());
    }
    match request.op {
        Operation::Run { name, params, wait, idempotency_key } => {
            let key = idempotency_key.or_else(|| {
                (!request.id.is_empty()).then(|| format!("{IMPLICIT_KEY_PREFIX}{}", request.id))
            });
            let mut cmd = CommandRequest::new(name, params);
            cmd.idempotency_key = key;
            let outcome = dispatcher.execute(cmd).await;
            on_decided();
            match outcome {
                Err(e) => Reply::err(id, &e),
                Ok(r) => {
                    let r = if wait && !r.command_status.is_done() {
                        dispatcher.wait(&r.id).await.unwrap_or(r)
                    } else {
                        r
                    };
                    Reply::ok(id, to_value(&r))
                }
            }
        }
        Operation::Get { id: result_id } => {
            on_decided();
            match dispatcher.get(&result_id).await {
                Some(r) => Reply::ok(id, to_value(&r)),
                None => Reply::err(
                    id,
                    &AgentError::RequestedObjectNotFound {
                        kind: "Command Result".into(),
                        id: result_id,
                    },
                ),
            }
        }
        Operation::List => {
            on_decided();
            let commands = dispatcher.list().await;
            Reply::ok(id, to_value(&CommandList { commands }))
        }
        Operation::Status => {
            on_decided();
            let s: AgentStatus = dispatcher.status();
            Reply::ok(id, to_value(&s))
        }
    }
}

/// Decode, handle and encode in one step (what a transport with no staging needs).
pub async fn handle_bytes(dispatcher: &dyn Dispatcher, bytes: &[u8], max_bytes: usize) -> Vec<u8> {
    match decode_request(bytes, max_bytes) {
        Ok(req) => handle(dispatcher, req).await.encode(),
        Err(reply) => {
            tracing::warn!(
                error = reply.error.as_ref().map(|e| e.details.as_str()).unwrap_or(""),
                "rejected an invalid envelope"
            );
            reply.encode()
        }
    }
}

fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipa_core::command::CommandStatus;
    use ipa_test_support::{Harness, TEST_TOKEN};
    use serde_json::json;

    fn run(name: &str, params: Value, wait: bool) -> Request {
        Request::new(
            Operation::Run {
                name: name.into(),
                params: params.as_object().cloned().unwrap_or_default(),
                wait,
                idempotency_key: None,
            },
            Some(TEST_TOKEN.into()),
        )
    }

    #[test]
    fn request_wire_shape_is_stable() {
        let mut r = run("standby.sync", json!({}), true);
        r.id = "m-1".into();
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"v":1,"kind":"request","id":"m-1","token":TEST_TOKEN,
                   "op":{"run":{"name":"standby.sync","params":{},"wait":true}}})
        );
        let list: Request =
            serde_json::from_value(json!({"v":1,"id":"x","op":"list","token":"t"})).unwrap();
        assert_eq!(list.op, Operation::List);
        let get: Request =
            serde_json::from_value(json!({"v":1,"id":"x","op":{"get":{"id":"abc"}}})).unwrap();
        assert_eq!(get.op, Operation::Get { id: "abc".into() });
    }

    #[test]
    fn malformed_and_unknown_versions_become_error_replies() {
        let cases: &[(&[u8], u16, &str, Option<&str>)] = &[
            (b"{not json", 400, "InvalidContentError", None),
            (b"[1,2]", 400, "InvalidContentError", None),
            (br#"{"id":"a","op":"list"}"#, 400, "InvalidContentError", Some("a")),
            (br#"{"v":2,"id":"b","op":"list"}"#, 400, "UnsupportedVersion", Some("b")),
            (br#"{"v":"1","id":"c","op":"list"}"#, 400, "UnsupportedVersion", Some("c")),
            (br#"{"v":1,"id":"d","op":"explode"}"#, 400, "InvalidContentError", Some("d")),
            (br#"{"v":1,"id":"e","op":{"run":{}}}"#, 400, "InvalidContentError", Some("e")),
            (
                br#"{"v":1,"id":"f","kind":"reply","op":"list"}"#,
                400,
                "InvalidContentError",
                Some("f"),
            ),
            (br#"{"v":1,"op":"list"}"#, 400, "InvalidContentError", None),
        ];
        for (bytes, code, kind, id) in cases {
            let reply = decode_request(bytes, 1024).expect_err("must be refused");
            let e = reply.error.as_ref().expect("error object");
            assert_eq!(
                (e.code, e.kind.as_str()),
                (*code, *kind),
                "{}",
                String::from_utf8_lossy(bytes)
            );
            assert_eq!(reply.id.as_deref(), *id);
            assert!(reply.result.is_none());
        }
        let big = vec![b' '; 2048];
        let e = decode_request(&big, 1024).unwrap_err().error.unwrap();
        assert_eq!((e.code, e.kind.as_str()), (413, "MessageTooLarge"));
        assert!(e.details.contains("2048 bytes"));
    }

    #[tokio::test]
    async fn run_get_list_status_over_the_envelope() {
        let h = Harness::new();
        let d = h.shared();
        let reply = handle(&*d, run("conformance.echo", json!({"value": "hi"}), false)).await;
        let r: CommandResult = reply.clone().into_result().unwrap();
        assert_eq!(r.command_result, json!({"result": "hi"}));
        let get = Request::new(Operation::Get { id: r.id.clone() }, Some(TEST_TOKEN.into()));
        assert_eq!(handle(&*d, get).await.into_result::<CommandResult>().unwrap(), r);
        let list: CommandList = handle(&*d, Request::new(Operation::List, Some(TEST_TOKEN.into())))
            .await
            .into_result()
            .unwrap();
        assert_eq!(list.commands, vec![r]);
        let st: AgentStatus =
            handle(&*d, Request::new(Operation::Status, None)).await.into_result().unwrap();
        assert!(st.started_at.is_some());
        let e = handle(&*d, Request::new(Operation::List, Some("bad".into())))
            .await
            .into_result::<CommandList>()
            .unwrap_err();
        assert_eq!(e.code, 401);
    }

    #[tokio::test]
    async fn busy_is_the_409_error_object_and_redelivery_is_idempotent() {
        let h = Harness::new();
        let d = h.shared();
        let slow = run("conformance.slow", json!({}), false);
        let first: CommandResult = handle(&*d, slow.clone()).await.into_result().unwrap();
        assert_eq!(first.command_status, CommandStatus::Running);
        // The same message delivered twice (broker redelivery) is the same command.
        let again: CommandResult = handle(&*d, slow).await.into_result().unwrap();
        assert_eq!(again.id, first.id);
        let busy = handle(&*d, run("conformance.echo", json!({}), false)).await;
        let e = busy.error.unwrap();
        assert_eq!(e, AgentError::AgentIsBusy { command: "slow".into() }.to_body());
        h.release(1);
        d.wait(&first.id).await.expect("finishes");
        let mut decided = false;
        let waited = handle_staged(&*d, run("conformance.echo", json!({"value": 1}), true), || {
            decided = true
        })
        .await;
        assert!(decided);
        assert!(waited.error.is_none());
    }

    #[test]
    fn events_carry_agent_id_and_flattened_fields() {
        let mut ev = Event::new(
            "node-1",
            AgentEvent::CommandFinished {
                id: "r1".into(),
                name: "standby.sync".into(),
                mode: ipa_core::command::CommandMode::Sync,
                status: CommandStatus::Succeeded,
                duration_secs: Some(0.25),
            },
        );
        ev.ts = 1764102000.5; // exactly representable: the JSON float parser may round the last ULP
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["kind"], "event");
        assert_eq!(v["event"], "command.finished");
        assert_eq!(v["agent_id"], "node-1");
        assert_eq!(v["status"], "SUCCEEDED");
        assert_eq!(v["duration_secs"], 0.25);
        match Message::decode(&ev.encode()).unwrap() {
            Message::Event(back) => assert_eq!(back, ev),
            other => panic!("{other:?}"),
        }
        let mut hb = Event::new("node-2", AgentEvent::AgentHeartbeat { agent_id: "node-2".into() });
        hb.ts = 2.25;
        let text = String::from_utf8(hb.encode()).unwrap();
        assert_eq!(text.matches("agent_id").count(), 1, "{text}");
        assert_eq!(Message::decode(text.as_bytes()).unwrap(), Message::Event(hb));
        let r = Reply::ok(Some("x".into()), json!(1));
        assert_eq!(Message::decode(&r.encode()).unwrap(), Message::Reply(r));
        assert!(Message::decode(b"{}").is_err());
    }
}
