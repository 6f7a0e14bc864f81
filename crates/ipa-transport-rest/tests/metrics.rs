//! `GET /metrics` over real HTTP on 127.0.0.1: served without a token in the Prometheus text
//! format, moving with the commands run over the same API; absent (404, IPA's fault body) when
//! turned off; on a separate listener that serves nothing else when `metrics_listen` is set.

mod common;

use std::time::Duration;

use common::client::RestClient;
use http::Method;
use ipa_test_support::{Harness, TEST_TOKEN};
use ipa_transport_rest::RestTransport;
use serde_json::json;

/// The value of `series` (name and labels as written) in a scrape.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn metrics_need_no_token_and_count_the_commands_run_over_rest() {
    let h = Harness::new();
    let names = ["conformance.echo".to_string(), "conformance.fail_sync".to_string()];
    let collector = h.services.metrics.spawn_collector(&h.services.events, names);
    let (h, c) = common::start_with(h, RestTransport::new("127.0.0.1", 0)).await;
    c.run("conformance.echo", json!({"value": 1}), true, None).await.unwrap();
    c.run("conformance.fail_sync", json!({}), true, None).await.unwrap();

    let anonymous = c.with_token(None);
    let series = "ipa_commands_total{command=\"conformance.echo\",status=\"SUCCEEDED\"}";
    let mut text = String::new();
    for _ in 0..200 {
        let r = anonymous.send(Method::GET, "/metrics", &[], None).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
        assert_eq!(r.headers["server"], "ironic-python-agent");
        text = r.text();
        if sample(&text, series).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sample(&text, series), Some(1.0), "{text}");
    let failed = "ipa_commands_total{command=\"conformance.fail_sync\",status=\"FAILED\"}";
    assert_eq!(sample(&text, failed), Some(1.0), "{text}");
    let count = "ipa_command_duration_seconds_count{command=\"conformance.echo\"}";
    assert_eq!(sample(&text, count), Some(1.0), "{text}");
    assert!(sample(&text, "ipa_process_resident_memory_bytes").unwrap() > 0.0, "{text}");
    assert!(sample(&text, "ipa_process_threads").unwrap() >= 1.0, "{text}");
    assert!(!text.contains(TEST_TOKEN), "the token is no label");

    // Only GET/HEAD; the command endpoints still want the token.
    let r = anonymous.send(Method::POST, "/metrics", &[], Some(b"{}".to_vec())).await.unwrap();
    assert_eq!(r.status, 405, "{}", r.text());
    let r = anonymous.send(Method::GET, "/v1/commands/", &[], None).await.unwrap();
    assert_eq!(r.status, 401);
    collector.abort();
    drop(h);
}

#[tokio::test]
async fn metrics_turned_off_are_an_unknown_route() {
    let mut t = RestTransport::new("127.0.0.1", 0);
    t.metrics_enabled = false;
    let (_h, c) = common::start_with(Harness::new(), t).await;
    let r = c.send(Method::GET, "/metrics", &[], None).await.unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json()["faultstring"],
        "404 Not Found: The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again."
    );
    assert_eq!(c.send(Method::GET, "/v1/status", &[], None).await.unwrap().status, 200);
}

#[tokio::test]
async fn a_separate_metrics_listener_serves_only_metrics_and_the_api_port_none() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut t = RestTransport::new("127.0.0.1", 0);
    t.metrics_listen = Some(format!("127.0.0.1:{port}"));
    let (_h, api) = common::start_with(Harness::new(), t).await;
    let metrics = RestClient::new(format!("127.0.0.1:{port}").parse().unwrap(), None);
    // The listener is bound before the transport reports ready.
    let r = metrics.send(Method::GET, "/metrics", &[], None).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.text().contains("# TYPE ipa_commands_running gauge"), "{}", r.text());
    assert_eq!(metrics.send(Method::GET, "/v1/status", &[], None).await.unwrap().status, 404);
    assert_eq!(api.send(Method::GET, "/metrics", &[], None).await.unwrap().status, 404);
    assert_eq!(api.send(Method::GET, "/v1/status", &[], None).await.unwrap().status, 200);
}

#[tokio::test]
async fn an_unusable_metrics_listen_address_is_a_startup_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let h = Harness::new();
    let mut t = RestTransport::new("127.0.0.1", 0);
    t.metrics_listen = Some(format!("127.0.0.1:{port}"));
    let ctx = h.context(None);
    let e = ipa_core::transport::Transport::build(&t, ctx).await.err().expect("port in use");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    assert!(h.ready.all().is_empty(), "nothing reported ready");
}
