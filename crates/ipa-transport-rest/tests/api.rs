//! Black-box tests of the REST API over real HTTP on 127.0.0.1: every row of spec
//! `ipa-agent.md` §1.5, the token rule, routing (308/404/405), bodies, headers, wait, busy,
//! body limit, graceful shutdown.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::client::{RawResponse, RestClient};
use http::Method;
use ipa_core::command::{CommandSpec, CommandStatus, Params};
use ipa_core::error::AgentError;
use ipa_core::extension::{CommandContext, Extension};
use ipa_test_support::{Harness, TEST_TOKEN};
use ipa_transport_rest::RestTransport;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `rt.async_badval`: an async command whose validator fails with a non-InvalidContent error.
#[derive(Debug)]
struct RtExt;

static RT: &[CommandSpec] = &[CommandSpec::asynchronous("async_badval", &[])];

#[async_trait]
impl Extension for RtExt {
    fn name(&self) -> &'static str {
        "rt"
    }
    fn class_name(&self) -> &'static str {
        "RtExtension"
    }
    fn commands(&self) -> &'static [CommandSpec] {
        RT
    }
    fn validate(
        &self,
        _: &str,
        _: &Params,
        _: &ipa_core::dispatcher::ExtensionSet,
    ) -> Result<(), AgentError> {
        Err(AgentError::internal("ValueError", "validator exploded"))
    }
    async fn execute(&self, _: &str, _: Params, _: CommandContext) -> Result<Value, AgentError> {
        Ok(Value::Null)
    }
}

fn fault(code: &str, s: &str) -> String {
    format!(r#"{{"faultcode": "{code}", "faultstring": "{s}"}}"#)
}

async fn post_raw(c: &RestClient, query: &str, body: &[u8]) -> RawResponse {
    c.send(Method::POST, &format!("/v1/commands/{query}"), &[], Some(body.to_vec()))
        .await
        .expect("http")
}

fn tq() -> String {
    format!("?agent_token={TEST_TOKEN}")
}

/// Raw HTTP/1.1 over a TcpStream: what is literally on the wire.
async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("server closes")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn root_and_v1_bodies_are_built_from_the_host_header() {
    let (_h, c) = common::start().await;
    let r = c.send(Method::GET, "/", &[("Host", "10.0.0.5:9999")], None).await.unwrap();
    assert_eq!(r.status, 200);
    let links = r#"[{"href": "http://10.0.0.5:9999/v1", "rel": "self"}, {"href": "https://docs.openstack.org/ironic-python-agent/", "rel": "describedby", "type": "text/html"}]"#;
    assert_eq!(
        r.text(),
        format!(
            r#"{{"name": "OpenStack Ironic Python Agent API", "description": "Ironic Python Agent is a provisioning agent for OpenStack Ironic", "versions": [{{"id": "v1", "links": {links}}}], "default_version": {{"id": "v1", "links": {links}}}}}"#
        )
    );
    let r = c.send(Method::GET, "/v1/", &[("Host", "10.0.0.5:9999")], None).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        format!(
            r#"{{"commands": [{{"href": "http://10.0.0.5:9999/v1/commands", "rel": "self"}}, {{"href": "http://10.0.0.5:9999/commands", "rel": "bookmark"}}], "status": [{{"href": "http://10.0.0.5:9999/v1/status", "rel": "self"}}, {{"href": "http://10.0.0.5:9999/status", "rel": "bookmark"}}], "media_types": [{{"base": "application/json", "type": "application/vnd.openstack.ironic-python-agent.v1+json"}}], "id": "v1", "links": {links}}}"#
        )
    );
}

#[tokio::test]
async fn every_response_carries_ipa_headers() {
    let (_h, c) = common::start().await;
    let wire = raw_exchange(
        c.addr(),
        b"GET /v1/status HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(wire.starts_with("HTTP/1.1 200 OK\r\n"), "{wire}");
    assert!(wire.contains("\r\nServer: ironic-python-agent\r\n"), "{wire}");
    assert!(wire.contains("\r\nContent-Type: application/json\r\n"), "{wire}");
    assert!(wire.contains("\r\nDate: "), "{wire}");
    let body = wire.split("\r\n\r\n").nth(1).unwrap();
    let v: Value = serde_json::from_str(body).unwrap();
    assert!(v["started_at"].is_f64(), "{body}");
    assert!(v["version"].is_string(), "{body}");
    assert!(body.starts_with(r#"{"started_at": "#), "{body}");
    // HEAD is GET without a body.
    let wire =
        raw_exchange(c.addr(), b"HEAD / HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n")
            .await;
    assert!(wire.starts_with("HTTP/1.1 200 OK\r\n"), "{wire}");
    assert!(wire.ends_with("\r\n\r\n"), "no body after HEAD: {wire}");
    // Faults carry the same headers.
    let r = c.send(Method::GET, "/nope", &[], None).await.unwrap();
    assert_eq!(r.headers["server"], "ironic-python-agent");
    assert_eq!(r.headers["content-type"], "application/json");
}

#[tokio::test]
async fn status_and_root_need_no_token_and_aliases_work() {
    let (_h, c) = common::start().await;
    let anon = c.with_token(None);
    for p in ["/", "/v1/", "/v1/status", "/status"] {
        assert_eq!(anon.send(Method::GET, p, &[], None).await.unwrap().status, 200, "{p}");
    }
    let r = c.run("conformance.echo", json!({"value": "x"}), false, None).await.unwrap();
    for p in ["/commands/", "/v1/commands/"] {
        let r2 = c.send(Method::GET, &format!("{p}{}", tq()), &[], None).await.unwrap();
        assert_eq!(r2.status, 200, "{p}");
        assert_eq!(r2.json()["commands"][0]["id"], json!(r.id));
    }
    let r3 = c.send(Method::GET, &format!("/commands/{}{}", r.id, tq()), &[], None).await.unwrap();
    assert_eq!(r3.json()["id"], json!(r.id));
}

#[tokio::test]
async fn missing_and_wrong_tokens_get_401_on_every_command_endpoint() {
    let (_h, c) = common::start().await;
    let body = fault("Client", "401 Unauthorized: Token invalid.");
    for q in ["", "?agent_token=", "?agent_token=wrong", "?wait=true&token=x"] {
        for (m, p) in [
            (Method::GET, "/v1/commands/"),
            (Method::GET, "/v1/commands/some-id"),
            (Method::POST, "/v1/commands/"),
            (Method::GET, "/commands/"),
        ] {
            let b =
                (m == Method::POST).then(|| br#"{"name":"conformance.echo","params":{}}"#.to_vec());
            let r = c.send(m.clone(), &format!("{p}{q}"), &[], b).await.unwrap();
            assert_eq!((r.status, r.text()), (401, body.clone()), "{m} {p}{q}");
        }
    }
    // A token in a header is not looked at.
    let r =
        c.send(Method::GET, "/v1/commands/", &[("X-Agent-Token", TEST_TOKEN)], None).await.unwrap();
    assert_eq!(r.status, 401);
    // The token check runs before the body is parsed: 401 beats 400.
    let r = post_raw(&c, "?agent_token=wrong", b"not json").await;
    assert_eq!(r.status, 401);
    // Nothing was recorded by refused requests.
    assert!(c.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn missing_trailing_slash_redirects_with_308() {
    let (_h, c) = common::start().await;
    let r = c.send(Method::GET, "/v1", &[("Host", "10.0.0.5:9999")], None).await.unwrap();
    assert_eq!(r.status, 308);
    assert_eq!(r.headers["location"], "http://10.0.0.5:9999/v1/");
    assert!(r.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(r.text().contains("http://10.0.0.5:9999/v1/"));
    // Routing runs before the token check; the query string is kept; POST keeps its method.
    let r = c
        .send(
            Method::POST,
            "/v1/commands?wait=true&agent_token=bad",
            &[("Host", "h:1")],
            Some(b"{}".to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 308);
    assert_eq!(r.headers["location"], "http://h:1/v1/commands/?wait=true&agent_token=bad");
    let r = c.send(Method::GET, "/commands", &[("Host", "h:1")], None).await.unwrap();
    assert_eq!((r.status, r.headers["location"].to_str().unwrap()), (308, "http://h:1/commands/"));
}

#[tokio::test]
async fn unknown_paths_404_and_wrong_methods_405_with_ipa_bodies() {
    let (_h, c) = common::start().await;
    let nf = fault(
        "Client",
        "404 Not Found: The requested URL was not found on the server. If you entered the URL \
         manually please check your spelling and try again.",
    );
    for p in ["/v2/", "/v1/status/", "/v1/commands/a/b", "/foo", "/v1/commands/x/"] {
        let r = c.send(Method::GET, p, &[], None).await.unwrap();
        assert_eq!((r.status, r.text()), (404, nf.clone()), "{p}");
    }
    let na =
        fault("Client", "405 Method Not Allowed: The method is not allowed for the requested URL.");
    for (m, p, allow) in [
        (Method::POST, "/v1/status", "GET, HEAD"),
        (Method::DELETE, "/v1/commands/", "GET, HEAD, POST"),
        (Method::PUT, "/", "GET, HEAD"),
        (Method::OPTIONS, "/v1/status", "GET, HEAD"),
        (Method::POST, "/v1/commands/some-id", "GET, HEAD"),
    ] {
        let r =
            c.send(m.clone(), &format!("{p}{}", tq()), &[], Some(b"{}".to_vec())).await.unwrap();
        assert_eq!((r.status, r.text()), (405, na.clone()), "{m} {p}");
        assert_eq!(r.headers["allow"], allow, "{m} {p}");
    }
}

#[tokio::test]
async fn post_status_codes_follow_the_fault_table() {
    let h = Harness::with_extensions(vec![Arc::new(RtExt)]);
    let (h, c) = common::start_with(h, RestTransport::new("127.0.0.1", 0)).await;
    let q = tq();

    // Body is not JSON → 400 with the decoder's message.
    let r = post_raw(&c, &q, b"{not json").await;
    assert_eq!(r.status, 400);
    let fs = r.json()["faultstring"].as_str().unwrap().to_string();
    assert!(fs.starts_with("400 Bad Request: Failed to decode JSON object: "), "{fs}");
    assert_eq!(r.json()["faultcode"], "Client");

    // name/params missing or params not an object → 400.
    let missing = fault("Client", "400 Bad Request: Missing or invalid name or params");
    for b in [
        &br#"{"params": {}}"#[..],
        br#"{"name": "conformance.echo"}"#,
        br#"{"name": "conformance.echo", "params": [1]}"#,
        br#"[1, 2]"#,
    ] {
        let r = post_raw(&c, &q, b).await;
        assert_eq!((r.status, r.text()), (400, missing.clone()), "{}", String::from_utf8_lossy(b));
    }

    // Name without a dot → 400.
    let r = post_raw(&c, &q, br#"{"name": "nodot", "params": {}}"#).await;
    assert_eq!(
        (r.status, r.text()),
        (
            400,
            fault("Client", "Invalid command: Command name must be of the form <extension>.<name>")
        )
    );
    // Unknown extension → 404.
    let r = post_raw(&c, &q, br#"{"name": "nope.x", "params": {}}"#).await;
    assert_eq!(
        (r.status, r.text()),
        (404, fault("Client", "Not found: Extension with id nope not found."))
    );
    // Unknown command in a known extension → 400.
    let r = post_raw(&c, &q, br#"{"name": "conformance.nope", "params": {}}"#).await;
    assert_eq!(
        (r.status, r.text()),
        (400, fault("Client", "Invalid command: Unknown command: nope"))
    );
    // Validator raises InvalidContentError family → 400 "<message>: <details>".
    let r = post_raw(&c, &q, br#"{"name": "conformance.needs_int", "params": {"x": "a"}}"#).await;
    assert_eq!(
        (r.status, r.text()),
        (400, fault("Client", "Invalid command parameters: x must be an integer"))
    );
    assert!(c.list().await.unwrap().is_empty(), "request errors are not recorded");

    // Sync command raises → 200 FAILED.
    let r = post_raw(&c, &q, br#"{"name": "conformance.fail_sync", "params": {}}"#).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["command_status"], "FAILED");
    assert_eq!(v["command_error"]["type"], "RuntimeError");
    // Async validator raises a non-InvalidContent error → 200, recorded sync FAILED.
    let r = post_raw(&c, &q, br#"{"name": "rt.async_badval", "params": {}}"#).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["command_status"], "FAILED");
    assert_eq!(r.json()["command_error"]["type"], "ValueError");
    // Async command fails later → 200 RUNNING at POST time, FAILED afterwards.
    let r = post_raw(&c, &q, br#"{"name": "conformance.fail", "params": {}}"#).await;
    assert_eq!(r.status, 200);
    let id = r.json()["id"].as_str().unwrap().to_string();
    let done = c.get(&id, true).await.unwrap();
    assert_eq!(done.command_status, CommandStatus::Failed);
    assert_eq!(done.command_error.unwrap().kind, "CommandExecutionError");
    // Unserialisable-error quirk is fixed: TypeError → 200 FAILED, and the list stays readable.
    let r = post_raw(&c, &q, br#"{"name": "conformance.echo", "params": {"bogus": 1}}"#).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["command_status"], "FAILED");
    assert_eq!(r.json()["command_error"]["type"], "TypeError");
    assert_eq!(
        r.json()["command_error"]["details"],
        "ConformanceExtension.echo() got an unexpected keyword argument 'bogus'"
    );
    let list = c.send(Method::GET, &format!("/v1/commands/{q}"), &[], None).await.unwrap();
    assert_eq!(list.status, 200);
    assert_eq!(list.json()["commands"].as_array().unwrap().len(), 4);

    // Busy: 409 while an async command runs, even for an unknown extension; the dot check
    // still comes first.
    let r = post_raw(&c, &q, br#"{"name": "conformance.slow", "params": {}}"#).await;
    assert_eq!((r.status, r.json()["command_status"].clone()), (200, json!("RUNNING")));
    let busy = fault("Client", "Agent is busy: executing command slow");
    for b in [
        &br#"{"name": "conformance.echo", "params": {}}"#[..],
        br#"{"name": "nope.x", "params": {}}"#,
    ] {
        let r = post_raw(&c, &q, b).await;
        assert_eq!((r.status, r.text()), (409, busy.clone()));
    }
    let r = post_raw(&c, &q, br#"{"name": "nodot", "params": {}}"#).await;
    assert_eq!(r.status, 400);
    h.release(1);
    let last = c.list().await.unwrap().pop().unwrap();
    let done = c.get(&last.id, true).await.unwrap();
    assert_eq!(done.command_status, CommandStatus::Succeeded);
    assert_eq!(
        post_raw(&c, &q, br#"{"name": "conformance.echo", "params": {}}"#).await.status,
        200
    );
}

#[tokio::test]
async fn list_is_oldest_first_with_ipa_result_shape() {
    let (h, c) = common::start().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let r = if i == 2 {
            h.release(1);
            c.run("conformance.slow", json!({"value": "s"}), true, None).await
        } else {
            c.run("conformance.echo", json!({"value": i}), false, None).await
        }
        .unwrap();
        ids.push(r.id);
    }
    let r = c.send(Method::GET, &format!("/v1/commands/{}", tq()), &[], None).await.unwrap();
    let listed: Vec<String> = r.json()["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, ids);
    let text = r.text();
    let first = format!(
        r#"{{"commands": [{{"id": "{}", "command_name": "echo", "command_status": "SUCCEEDED", "command_error": null, "command_result": 0}}, "#,
        ids[0]
    );
    assert!(text.starts_with(&first), "{text}");
    assert!(text.contains(r#""command_result": {"result": "slow: s"}"#), "{text}");
}

#[tokio::test]
async fn wait_true_blocks_post_and_get_until_final() {
    let (h, c) = common::start().await;
    // POST ?wait=true (case-insensitive) does not answer while the command runs.
    let c2 = c.clone();
    let post = tokio::spawn(async move {
        let q = format!("?wait=TrUe&agent_token={TEST_TOKEN}");
        post_raw(&c2, &q, br#"{"name": "conformance.slow", "params": {"value": "w"}}"#).await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!post.is_finished(), "wait=true answered before the command finished");
    let running = c.list().await.unwrap().pop().unwrap();
    assert_eq!(running.command_status, CommandStatus::Running);
    // GET by id with wait=true also blocks; without wait it answers RUNNING at once.
    let c3 = c.clone();
    let id = running.id.clone();
    let get = tokio::spawn(async move { c3.get(&id, true).await });
    assert_eq!(c.get(&running.id, false).await.unwrap().command_status, CommandStatus::Running);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!get.is_finished());
    h.release(1);
    let r = tokio::time::timeout(Duration::from_secs(10), post).await.unwrap().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["command_status"], "SUCCEEDED");
    assert_eq!(r.json()["command_result"], json!({"result": "slow: w"}));
    let g = tokio::time::timeout(Duration::from_secs(10), get).await.unwrap().unwrap().unwrap();
    assert_eq!(g.command_status, CommandStatus::Succeeded);
    // wait=1 is not "true": answers RUNNING.
    let r = post_raw(
        &c,
        &format!("?wait=1&agent_token={TEST_TOKEN}"),
        br#"{"name": "conformance.slow", "params": {}}"#,
    )
    .await;
    assert_eq!(r.json()["command_status"], "RUNNING");
    h.release(1);
    // GET by unknown id: 404 with IPA's text, with or without wait.
    for w in [false, true] {
        let e = c.get("no-such", w).await.unwrap_err().to_string();
        assert_eq!(e, "HTTP 404: Not found: Command Result with id no-such not found.");
    }
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let t = RestTransport { max_body_bytes: 1024, ..RestTransport::new("127.0.0.1", 0) };
    let (_h, c) = common::start_with(Harness::new(), t).await;
    let big =
        format!(r#"{{"name": "conformance.echo", "params": {{"value": "{}"}}}}"#, "x".repeat(2000));
    let r = post_raw(&c, &tq(), big.as_bytes()).await;
    assert_eq!(
        (r.status, r.text()),
        (
            413,
            fault(
                "Client",
                "413 Request Entity Too Large: The data value transmitted exceeds the capacity limit."
            )
        )
    );
    // Chunked (no Content-Length) is limited too.
    let mut req = format!(
        "POST /v1/commands/?agent_token={TEST_TOKEN} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n",
        big.len()
    )
    .into_bytes();
    req.extend_from_slice(big.as_bytes());
    req.extend_from_slice(b"\r\n0\r\n\r\n");
    let wire = raw_exchange(c.addr(), &req).await;
    assert!(wire.starts_with("HTTP/1.1 413 "), "{wire}");
    // A body under the limit still works, and nothing oversized was recorded.
    c.run("conformance.echo", json!({"value": "ok"}), false, None).await.unwrap();
    assert_eq!(c.list().await.unwrap().len(), 1);
}

#[tokio::test]
async fn shutdown_finishes_in_flight_replies_then_stops_listening() {
    let (h, c) = common::start().await;
    let c2 = c.clone();
    let inflight = tokio::spawn(async move {
        c2.run("conformance.slow", json!({"value": "last"}), true, None).await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    h.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    h.release(1);
    let r =
        tokio::time::timeout(Duration::from_secs(10), inflight).await.unwrap().unwrap().unwrap();
    assert_eq!(r.command_result, json!({"result": "slow: last"}));
    let mut refused = false;
    for _ in 0..100 {
        if TcpStream::connect(c.addr()).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "listener still accepting after shutdown");
}

#[tokio::test]
async fn listens_on_bracketed_ipv6_loopback_when_available() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    }
    let h = Harness::new();
    let addr = common::serve(&h, RestTransport::new("[::1]", 0), None).await;
    assert!(addr.is_ipv6());
    let ready = h.ready.all().pop().unwrap();
    assert_eq!(ready.endpoint, format!("http://[::1]:{}", addr.port()));
    let c = RestClient::new(addr, Some(TEST_TOKEN));
    assert!(c.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn bind_failure_is_a_startup_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let h = Harness::new();
    let t = RestTransport::new("127.0.0.1", port);
    let ctx = h.context(None);
    let e = ipa_core::transport::Transport::build(&t, ctx).await.err().expect("port in use");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    assert!(h.ready.all().is_empty(), "nothing reported ready");
}
