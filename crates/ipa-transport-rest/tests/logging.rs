//! The access log: one line per request in IPA's format, and the agent token never appears in
//! any log line (it is masked as `***`). This binary installs its own global subscriber that
//! captures everything logged at INFO and above.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use http::Method;
use ipa_test_support::TEST_TOKEN;
use serde_json::json;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture() -> &'static Capture {
    static CAP: OnceLock<Capture> = OnceLock::new();
    CAP.get_or_init(|| {
        let cap = Capture::default();
        let w = cap.clone();
        tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_ansi(false)
            .with_writer(move || w.clone())
            .init();
        cap
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_masks_the_agent_token() {
    let cap = capture();
    let (h, c) = common::start().await;
    let wrong = "wrong-token-that-must-not-be-logged";

    c.run("conformance.echo", json!({"value": 1}), true, None).await.unwrap();
    let r = c.run("conformance.slow", json!({}), false, None).await.unwrap();
    h.release(1);
    c.get(&r.id, true).await.unwrap();
    c.list().await.unwrap();
    assert_eq!(
        c.with_token(Some(wrong)).list().await.unwrap_err().to_string(),
        "HTTP 401: 401 Unauthorized: Token invalid."
    );
    // Redirect and 404 paths log the query too; an encoded key is still recognised.
    let q = format!("/v1/commands?agent_token={TEST_TOKEN}");
    assert_eq!(c.send(Method::GET, &q, &[], None).await.unwrap().status, 308);
    let q = format!("/nope?x=1&agent%5Ftoken={TEST_TOKEN}");
    assert_eq!(c.send(Method::GET, &q, &[], None).await.unwrap().status, 404);
    let q = format!("/v1/commands/?agent_token={wrong}");
    let fwd = [("X-Forwarded-For", "10.1.2.3, 10.0.0.1")];
    assert_eq!(c.send(Method::GET, &q, &fwd, None).await.unwrap().status, 401);
    drop(h);

    let text = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
    assert!(!text.contains(TEST_TOKEN), "the agent token leaked into the logs:\n{text}");
    assert!(!text.contains(wrong), "a presented token leaked into the logs:\n{text}");
    let access: Vec<&str> =
        text.lines().filter(|l| l.contains("ipa_transport_rest::access")).collect();
    assert_eq!(access.len(), 8, "one line per request:\n{}", access.join("\n"));
    let expect = [
        "127.0.0.1 - POST /v1/commands/?wait=true&agent_token=*** - 200 (",
        "127.0.0.1 - GET /v1/commands/?agent_token=*** - 200 (",
        "127.0.0.1 - GET /v1/commands/?agent_token=*** - 401 (",
        "127.0.0.1 - GET /v1/commands?agent_token=*** - 308 (",
        "127.0.0.1 - GET /nope?x=1&agent%5Ftoken=*** - 404 (",
        "10.1.2.3 - GET /v1/commands/?agent_token=*** - 401 (",
    ];
    for e in expect {
        assert!(access.iter().any(|l| l.contains(e)), "missing {e:?} in:\n{}", access.join("\n"));
    }
    assert!(access.iter().all(|l| l.trim_end().ends_with("ms)")), "{}", access.join("\n"));
}
