//! The AMQP transport against a real RabbitMQ node started by the test (no systemd, own port
//! and data dirs, stopped by PID). Without rabbitmq-server these tests fail loudly unless
//! `IPA_SKIP_RABBITMQ=1`.

mod common;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::{Rabbit, Wire, rabbit_available};
use ipa_client::amqp::AmqpController;
use ipa_client::{AgentClient, ClientError};
use ipa_core::command::CommandStatus;
use ipa_envelope::LinkState;
use ipa_test_support::{Harness, TEST_TOKEN, WireClient};
use ipa_transport_amqp::AmqpConfig;

/// One broker for the tests of this binary that do not restart it.
fn shared_rabbit() -> Option<&'static str> {
    static URL: OnceLock<Option<String>> = OnceLock::new();
    static NODE: OnceLock<std::sync::Mutex<Option<Rabbit>>> = OnceLock::new();
    URL.get_or_init(|| {
        if !rabbit_available() {
            return None;
        }
        let r = Rabbit::start(None);
        let url = r.url();
        // Kept for the life of the binary; the watcher stops it when the process exits.
        NODE.get_or_init(|| std::sync::Mutex::new(Some(r)));
        Some(url)
    })
    .as_deref()
}

fn agent_cfg(url: &str) -> AmqpConfig {
    let mut c = AmqpConfig::new(url);
    c.link.heartbeat_ms = 500;
    c.link.reconnect_min_ms = 100;
    c.link.reconnect_max_ms = 1000;
    c.link.max_message_bytes = 64 * 1024;
    // Short on purpose: the session must survive the ready deadline (regression).
    c.link.ready_timeout_ms = 300;
    c
}

async fn serve_agent(url: &str) -> (Harness, String, AmqpConfig) {
    let h = Harness::new();
    let id = format!("agent-{}", uuid::Uuid::new_v4());
    h.identity.send_replace(id.clone());
    let cfg = agent_cfg(url);
    let info = h.serve(&cfg, None).await;
    assert!(!info.endpoint.contains("connecting"), "{info:?}");
    (h, id, cfg)
}

async fn setup() -> (Harness, Box<dyn WireClient>) {
    let url = shared_rabbit().expect("rabbitmq");
    let (h, id, cfg) = serve_agent(url).await;
    let ctl = AmqpController::connect(cfg).await.expect("controller connects");
    let c = ctl.agent(&id, Some(TEST_TOKEN));
    (h, Box::new(Wire(c, Some(ctl))))
}

macro_rules! amqp_conformance {
    ($($case:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            if shared_rabbit().is_none() { return; }
            let (h, c) = setup().await;
            ipa_test_support::conformance::$case(&*c, &h).await;
        }
    )*};
}

amqp_conformance!(
    round_trip,
    busy_while_async_runs,
    wait_returns_final_result,
    request_errors,
    type_error_is_a_failed_result,
    ordering,
    idempotent_repeat,
    unknown_result_id,
    token_required
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_go_to_the_topic_exchange_with_agent_id() {
    let Some(url) = shared_rabbit() else { return };
    let (h, id, cfg) = serve_agent(url).await;
    let ctl = AmqpController::connect(cfg).await.unwrap();
    let c = ctl.agent(&id, Some(TEST_TOKEN));
    let mut ev = c.events().unwrap();
    let r = c.run("conformance.slow", Default::default(), Default::default()).await.unwrap();
    h.release(1);
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains(&"command.finished") && tokio::time::Instant::now() < deadline {
        if let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(1), ev.next()).await {
            assert_eq!(e.agent_id, id);
            seen.push(e.topic());
        }
    }
    assert!(seen.contains(&"command.started") && seen.contains(&"command.finished"), "{seen:?}");
    assert!(ctl.wait_for_agent(&id, Duration::from_secs(5)).await, "heartbeats make it visible");
    assert_eq!(c.get(&r.id).await.unwrap().command_status, CommandStatus::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_messages_get_error_replies_and_are_rejected() {
    let Some(url) = shared_rabbit() else { return };
    let (_h, id, cfg) = serve_agent(url).await;
    let ctl = AmqpController::connect(cfg).await.unwrap();
    let t = Duration::from_secs(10);
    let r = ctl.send_raw(&id, b"{not json", "c1", t).await.unwrap();
    assert_eq!(r.error.unwrap().kind, "InvalidContentError");
    let r = ctl.send_raw(&id, br#"{"v":2,"id":"x","op":"list"}"#, "c2", t).await.unwrap();
    assert_eq!(r.error.unwrap().kind, "UnsupportedVersion");
    let big = vec![b' '; 100 * 1024];
    let r = ctl.send_raw(&id, &big, "c3", t).await.unwrap();
    let e = r.error.unwrap();
    assert_eq!((e.code, e.kind.as_str()), (413, "MessageTooLarge"));
    // Nothing was requeued: the agent still answers, and the queue is drained.
    let c = ctl.agent(&id, Some(TEST_TOKEN));
    assert!(c.list().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_refused_with_a_clear_reason() {
    let Some(url) = shared_rabbit() else { return };
    let h = Harness::new();
    h.identity.send_replace("bad-creds".into());
    let mut cfg = agent_cfg(url);
    cfg.password = Some("definitely-wrong".into());
    cfg.link.ready_timeout_ms = 500;
    let mut state = cfg.link_state();
    let info = h.serve(&cfg, None).await;
    assert!(info.endpoint.contains("connecting"));
    assert!(!info.endpoint.contains("definitely-wrong"), "no password in the endpoint");
    let s = tokio::time::timeout(
        Duration::from_secs(20),
        state.wait_for(|s| matches!(s, LinkState::Refused { .. } | LinkState::Up { .. })),
    )
    .await
    .expect("verdict")
    .unwrap()
    .clone();
    match s {
        LinkState::Refused { reason } => {
            assert!(
                reason.contains("ACCESS_REFUSED") || reason.contains("authentication"),
                "{reason}"
            );
            assert!(!reason.contains("definitely-wrong"), "no password in the reason");
        }
        other => panic!("wrong password got in: {other:?}"),
    }
    let bad = AmqpController::connect({
        let mut c = agent_cfg(url);
        c.password = Some("nope".into());
        c
    })
    .await;
    assert!(matches!(bad, Err(ClientError::Transport(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_during_a_long_command_loses_no_result() {
    if !rabbit_available() {
        return;
    }
    let mut rabbit = Rabbit::start(None);
    let (h, id, cfg) = serve_agent(&rabbit.url()).await;
    let mut state = cfg.link_state();
    let ctl: Arc<AmqpController> = AmqpController::connect(cfg.clone()).await.unwrap();
    let c = ctl.agent(&id, Some(TEST_TOKEN)).with_timeout(Duration::from_secs(5));
    let r = c.run("conformance.slow", Default::default(), Default::default()).await.unwrap();
    assert_eq!(r.command_status, CommandStatus::Running);
    let rabbit = tokio::task::spawn_blocking(move || {
        rabbit.restart();
        rabbit
    })
    .await
    .unwrap();
    // The command finishes while the agent may still be reconnecting.
    h.release(1);
    tokio::time::timeout(
        Duration::from_secs(60),
        state.wait_for(|s| matches!(s, LinkState::Up { .. })),
    )
    .await
    .expect("agent reconnected within 60 s")
    .unwrap();
    let mut done = None;
    for _ in 0..30 {
        match c.get(&r.id).await {
            Ok(x) if x.command_status.is_done() => {
                done = Some(x);
                break;
            }
            Ok(_) | Err(ClientError::Timeout(_)) | Err(ClientError::Transport(_)) => {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
    let done = done.expect("result retrievable after the restart");
    assert_eq!(done.command_status, CommandStatus::Succeeded);
    assert_eq!(done.command_result, serde_json::json!({"result": "slow: done"}));
    drop(h);
    drop(rabbit);
}
