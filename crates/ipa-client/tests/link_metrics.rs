//! A broker transport's link state and reconnects reach the agent's metrics: a ZeroMQ agent
//! dials a real controller (libzmq over loopback), the controller goes away and comes back on
//! the same port, and `ipa_link_up` / `ipa_link_reconnects_total` follow.

mod common;

use std::time::Duration;

use ipa_client::zmq::{ControllerCurve, ZmqController};
use ipa_test_support::Harness;
use ipa_transport_zmq::ZmqConfig;

fn sample(h: &Harness, series: &str) -> Option<f64> {
    let text = h.services.metrics.encode().unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Wait (at most 15 s) until `series` reads `want`.
async fn until(h: &Harness, series: &str, want: f64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while sample(h, series) != Some(want) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} never became {want}:\n{}",
            h.services.metrics.encode().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zmq_link_state_and_reconnects_are_metrics() {
    let ep = format!("tcp://127.0.0.1:{}", common::free_port());
    let ctl = ZmqController::bind(&ep, ControllerCurve::default()).unwrap();
    let h = Harness::new();
    h.identity.send_replace("metrics-agent".into());
    let mut cfg = ZmqConfig::dial(&ep);
    cfg.link.heartbeat_ms = 200;
    cfg.link.reconnect_min_ms = 50;
    cfg.link.reconnect_max_ms = 200;
    cfg.link.ready_timeout_ms = 3000;
    h.serve(&cfg, None).await;
    assert!(ctl.wait_for_agent("metrics-agent", Duration::from_secs(10)).await);
    let up = "ipa_link_up{transport=\"zmq\"}";
    until(&h, up, 1.0).await;
    assert_eq!(sample(&h, "ipa_link_reconnects_total{transport=\"zmq\"}"), None, "first connect");

    drop(ctl);
    until(&h, up, 0.0).await;
    let ctl = ZmqController::bind(&ep, ControllerCurve::default()).unwrap();
    assert!(ctl.wait_for_agent("metrics-agent", Duration::from_secs(15)).await, "came back");
    until(&h, up, 1.0).await;
    assert_eq!(sample(&h, "ipa_link_reconnects_total{transport=\"zmq\"}"), Some(1.0));
}
