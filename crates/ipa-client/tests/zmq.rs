//! The ZeroMQ transport against real libzmq over loopback: conformance (with CURVE), bound
//! mode, wrong keys refused, malformed/oversized input, controller restart.

mod common;

use std::time::Duration;

use common::Wire;
use ipa_client::AgentClient;
use ipa_client::zmq::{ControllerCurve, ZmqController};
use ipa_core::command::CommandStatus;
use ipa_envelope::LinkState;
use ipa_test_support::{Harness, TEST_TOKEN, WireClient};
use ipa_transport_zmq::{ZmqConfig, decode_key, generate_keypair};
use serde_json::json;

struct Keys {
    server_public: String,
    server_secret: String,
    agent_public: String,
    agent_secret: String,
}

fn keys() -> Keys {
    let (server_public, server_secret) = generate_keypair().unwrap();
    let (agent_public, agent_secret) = generate_keypair().unwrap();
    Keys { server_public, server_secret, agent_public, agent_secret }
}

fn agent_cfg(endpoint: &str, k: &Keys) -> ZmqConfig {
    let mut c = ZmqConfig::dial(endpoint);
    c.curve_server_key = Some(k.server_public.clone());
    c.curve_public_key = Some(k.agent_public.clone());
    c.curve_secret_key = Some(k.agent_secret.clone().into());
    c.link.heartbeat_ms = 300;
    c.link.ready_timeout_ms = 3000;
    c
}

fn controller_curve(k: &Keys) -> ControllerCurve {
    ControllerCurve {
        secret: Some(decode_key("s", &k.server_secret).unwrap()),
        allowed_agents: Some(vec![decode_key("a", &k.agent_public).unwrap()]),
        client: None,
    }
}

/// Harness + CURVE-authenticated agent dialing a bound controller.
async fn setup_pair() -> (Harness, ZmqController, String) {
    let k = keys();
    let ctl = ZmqController::bind("tcp://127.0.0.1:*", controller_curve(&k)).unwrap();
    let h = Harness::new();
    let id = format!("agent-{}", uuid::Uuid::new_v4());
    h.identity.send_replace(id.clone());
    let info = h.serve(&agent_cfg(ctl.endpoint(), &k), None).await;
    assert!(!info.endpoint.contains("connecting"), "agent connected: {info:?}");
    assert!(ctl.wait_for_agent(&id, Duration::from_secs(10)).await, "agent announced itself");
    (h, ctl, id)
}

async fn setup() -> (Harness, Box<dyn WireClient>) {
    let (h, ctl, id) = setup_pair().await;
    let client = ctl.agent(&id, Some(TEST_TOKEN));
    (h, Box::new(Wire(client, Some(std::sync::Arc::new(ctl)))))
}

ipa_test_support::conformance_suite!(setup);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_on_the_same_channel_with_agent_id() {
    let (h, ctl, id) = setup_pair().await;
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
    assert!(seen.contains(&"command.started"), "{seen:?}");
    assert!(seen.contains(&"command.finished"), "{seen:?}");
    assert!(seen.contains(&"agent.heartbeat") || seen.len() >= 2);
    let st = c.status().await.unwrap();
    assert!(st.started_at.is_some());
    assert_eq!(c.get(&r.id).await.unwrap().command_status, CommandStatus::Succeeded);
    assert_eq!(ctl.agents(Duration::from_secs(5)).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_server_key_is_refused_and_reported() {
    let k = keys();
    let ctl = ZmqController::bind("tcp://127.0.0.1:*", controller_curve(&k)).unwrap();
    let h = Harness::new();
    h.identity.send_replace("wrong-key-agent".into());
    let mut cfg = agent_cfg(ctl.endpoint(), &k);
    cfg.curve_server_key = Some(generate_keypair().unwrap().0); // not the controller's key
    cfg.link.ready_timeout_ms = 500;
    let mut state = cfg.link_state();
    let info = h.serve(&cfg, None).await;
    assert!(info.endpoint.contains("connecting"), "{info:?}");
    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        state.wait_for(|s| matches!(s, LinkState::Refused { .. } | LinkState::Up { .. })),
    )
    .await;
    // libzmq reports a wrong server key on the client as a failed or never-completing handshake;
    // in every case the link must never come up and the controller must never see the agent.
    if let Ok(Ok(s)) = refused {
        assert!(matches!(*s, LinkState::Refused { .. }), "link came up with a wrong key: {:?}", *s);
    }
    assert!(!ctl.wait_for_agent("wrong-key-agent", Duration::from_secs(2)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlisted_agent_key_is_refused_by_the_controller() {
    let k = keys();
    let ctl = ZmqController::bind("tcp://127.0.0.1:*", controller_curve(&k)).unwrap();
    let h = Harness::new();
    h.identity.send_replace("intruder".into());
    let mut cfg = agent_cfg(ctl.endpoint(), &k);
    let (p, s) = generate_keypair().unwrap(); // valid pair, but not in the allowed list
    cfg.curve_public_key = Some(p);
    cfg.curve_secret_key = Some(s.into());
    cfg.link.ready_timeout_ms = 500;
    let mut state = cfg.link_state();
    h.serve(&cfg, None).await;
    let s = tokio::time::timeout(
        Duration::from_secs(10),
        state.wait_for(|s| matches!(s, LinkState::Refused { .. } | LinkState::Up { .. })),
    )
    .await
    .expect("a verdict within 10 s")
    .unwrap()
    .clone();
    match s {
        LinkState::Refused { reason } => assert!(reason.contains("not authorised"), "{reason}"),
        other => panic!("intruder got in: {other:?}"),
    }
    assert!(!ctl.wait_for_agent("intruder", Duration::from_secs(1)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_messages_get_error_replies() {
    let (_h, ctl, id) = setup_pair().await;
    let t = Duration::from_secs(5);
    let r = ctl.send_raw(&id, b"{not json".to_vec(), None, t).await.unwrap();
    assert_eq!(r.error.unwrap().kind, "InvalidContentError");
    let r = ctl
        .send_raw(&id, br#"{"v":9,"id":"m9","op":"list"}"#.to_vec(), Some("m9"), t)
        .await
        .unwrap();
    assert_eq!(r.error.unwrap().kind, "UnsupportedVersion");
    let big =
        format!(r#"{{"v":1,"id":"big","op":"list","pad":"{}"}}"#, "x".repeat(2 * 1024 * 1024));
    let r = ctl.send_raw(&id, big.into_bytes(), None, t).await.unwrap();
    assert_eq!(r.error.unwrap().code, 413);
    // Still serving.
    let c = ctl.agent(&id, Some(TEST_TOKEN));
    c.list().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_restart_loses_no_result() {
    let k = keys();
    let port = common::free_port();
    let ep = format!("tcp://127.0.0.1:{port}");
    let ctl = ZmqController::bind(&ep, controller_curve(&k)).unwrap();
    let h = Harness::new();
    h.identity.send_replace("restart-agent".into());
    let mut cfg = agent_cfg(&ep, &k);
    cfg.link.reconnect_max_ms = 500;
    h.serve(&cfg, None).await;
    assert!(ctl.wait_for_agent("restart-agent", Duration::from_secs(10)).await);
    let c = ctl.agent("restart-agent", Some(TEST_TOKEN));
    let r = c.run("conformance.slow", Default::default(), Default::default()).await.unwrap();
    assert_eq!(r.command_status, CommandStatus::Running);
    drop(c);
    drop(ctl);
    h.release(1); // the command finishes while no controller is listening
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ctl = ZmqController::bind(&ep, controller_curve(&k)).unwrap();
    assert!(ctl.wait_for_agent("restart-agent", Duration::from_secs(15)).await, "agent came back");
    let c = ctl.agent("restart-agent", Some(TEST_TOKEN));
    let done = c.get(&r.id).await.unwrap();
    assert_eq!(done.command_status, CommandStatus::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_router_mode_with_curve() {
    let k = keys();
    let h = Harness::new();
    let mut cfg = ZmqConfig::bound("tcp://127.0.0.1:*");
    cfg.curve_secret_key = Some(k.server_secret.clone().into());
    cfg.curve_allowed_clients = Some(k.agent_public.clone());
    let info = h.serve(&cfg, None).await;
    let curve = ControllerCurve {
        client: Some((
            decode_key("s", &k.server_public).unwrap(),
            decode_key("p", &k.agent_public).unwrap(),
            decode_key("q", &k.agent_secret).unwrap(),
        )),
        ..Default::default()
    };
    let ctl = ZmqController::dial(&info.endpoint, curve).unwrap();
    let c = ctl.agent("", Some(TEST_TOKEN));
    let r = c
        .run(
            "conformance.echo",
            json!({"value": "bound"}).as_object().cloned().unwrap(),
            Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.command_result, json!({"result": "bound"}));
}
