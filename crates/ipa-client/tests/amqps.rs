//! `amqps://` against a real RabbitMQ node with a TLS listener whose certificate a CA made in
//! the test signed: the agent (per-agent user, password from a file, `ca_file`) serves the
//! conformance round trip over TLS; an agent trusting another CA is refused with a TLS reason
//! within a bound; `ipactl --amqp amqps://… --amqp-ca` watches a command to its end; and no
//! password reaches a log line. Without rabbitmq-server these tests fail loudly unless
//! `IPA_SKIP_RABBITMQ=1`.

mod cli;
mod common;

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use cli::ipactl;
use common::{Rabbit, TlsFiles, Wire, progress_harness, rabbit_available, test_pki};
use ipa_client::ClientError;
use ipa_client::amqp::AmqpController;
use ipa_envelope::LinkState;
use ipa_test_support::{Harness, TEST_TOKEN};
use ipa_transport_amqp::AmqpConfig;
use serde_json::{Value, json};

const USER: &str = "ipa-agent-tls";

/// Everything logged by this test binary (agent and controller run in-process).
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let w = buf.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_ansi(false)
            .with_writer(move || Tee(w.clone()))
            .init();
        buf
    })
}

struct Tee(Arc<Mutex<Vec<u8>>>);

impl Write for Tee {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap()).into_owned()
}

struct Node {
    rabbit: Mutex<Rabbit>,
    tls: TlsFiles,
    /// A CA that did not sign the broker's certificate.
    other_ca: PathBuf,
    password: String,
    password_file: PathBuf,
    _dir: tempfile::TempDir,
}

/// One TLS broker for this binary; its only user is [`USER`] with a random password.
fn node() -> Option<&'static Node> {
    static NODE: OnceLock<Option<Node>> = OnceLock::new();
    NODE.get_or_init(|| {
        logs();
        if !rabbit_available() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let tls = test_pki(&dir.path().join("pki"));
        let other_ca = test_pki(&dir.path().join("other")).ca;
        let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
        let password_file = dir.path().join("amqp-password");
        std::fs::write(&password_file, format!("{password}\n")).unwrap();
        let rabbit = Rabbit::start_with(Some(tls.clone()), Some((USER, &password)));
        Some(Node { rabbit: Mutex::new(rabbit), tls, other_ca, password, password_file, _dir: dir })
    })
    .as_ref()
}

impl Node {
    fn url(&self) -> String {
        self.rabbit.lock().unwrap().bare_url()
    }

    /// Agent config: credentials from `username` + `password_file`, CA `ca`.
    fn agent_cfg(&self, ca: &std::path::Path) -> AmqpConfig {
        let mut c = AmqpConfig::new(self.url());
        c.ca_file = Some(ca.to_path_buf());
        c.username = Some(USER.into());
        c.password_file = Some(self.password_file.clone());
        c.link.heartbeat_ms = 500;
        c.link.reconnect_min_ms = 100;
        c.link.reconnect_max_ms = 1000;
        c.link.ready_timeout_ms = 5000;
        c
    }
}

fn assert_no_password_logged(n: &Node) {
    let text = captured();
    assert!(text.contains("amqp"), "log capture works: {text}");
    assert!(!text.contains(&n.password), "the broker password reached a log line");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_with_the_private_ca_serves_the_round_trip_over_tls() {
    let Some(n) = node() else { return };
    let h = Harness::new();
    let id = format!("agent-{}", uuid::Uuid::new_v4());
    h.identity.send_replace(id.clone());
    let cfg = n.agent_cfg(&n.tls.ca);
    let state = cfg.link_state();
    let info = h.serve(&cfg, None).await;
    assert!(info.endpoint.starts_with("amqps://127.0.0.1:"), "{info:?}");
    assert!(!info.endpoint.contains("connecting"), "{info:?}");
    assert!(matches!(&*state.borrow(), LinkState::Up { .. }));
    let ctl = AmqpController::connect(n.agent_cfg(&n.tls.ca)).await.expect("controller over TLS");
    let wire = Wire(ctl.agent(&id, Some(TEST_TOKEN)), Some(ctl.clone()));
    ipa_test_support::conformance::round_trip(&wire, &h).await;
    ipa_test_support::conformance::wait_returns_final_result(&wire, &h).await;
    assert_no_password_logged(n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_with_another_ca_is_refused_with_a_tls_reason_in_bounded_time() {
    let Some(n) = node() else { return };
    let h = Harness::new();
    h.identity.send_replace(format!("agent-{}", uuid::Uuid::new_v4()));
    let mut cfg = n.agent_cfg(&n.other_ca);
    cfg.link.ready_timeout_ms = 500;
    let mut state = cfg.link_state();
    let info = h.serve(&cfg, None).await;
    assert!(info.endpoint.contains("connecting"), "{info:?}");
    let s = tokio::time::timeout(
        Duration::from_secs(10),
        state.wait_for(|s| matches!(s, LinkState::Refused { .. } | LinkState::Up { .. })),
    )
    .await
    .expect("a verdict within 10 s, not a hang")
    .unwrap()
    .clone();
    match s {
        LinkState::Refused { reason } => {
            assert!(reason.contains("TLS failure"), "{reason}");
            assert!(reason.to_ascii_lowercase().contains("certificate"), "{reason}");
            assert!(!reason.contains(&n.password), "no password in the reason");
        }
        other => panic!("an untrusted broker certificate was accepted: {other:?}"),
    }
    let ctl = tokio::time::timeout(
        Duration::from_secs(10),
        AmqpController::connect(n.agent_cfg(&n.other_ca)),
    )
    .await
    .expect("controller verdict within 10 s");
    match ctl {
        Err(ClientError::Transport(m)) => {
            assert!(m.contains("TLS failure"), "{m}");
            assert!(!m.contains(&n.password));
        }
        Err(e) => panic!("unexpected error kind: {e}"),
        Ok(_) => panic!("controller trusted a broker its CA did not sign"),
    }
    assert!(captured().contains("broker refused the agent"), "the refusal is logged");
    assert_no_password_logged(n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipactl_watches_a_command_over_amqps_with_its_ca_option() {
    let Some(n) = node() else { return };
    let h = progress_harness();
    let id = format!("agent-{}", uuid::Uuid::new_v4());
    h.identity.send_replace(id.clone());
    let info = h.serve(&n.agent_cfg(&n.tls.ca), None).await;
    assert!(!info.endpoint.contains("connecting"), "{info:?}");
    let url = n.url().replacen("amqps://", &format!("amqps://{USER}:{}@", n.password), 1);
    let ca = n.tls.ca.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        let args = [
            "--amqp",
            &url,
            "--amqp-ca",
            &ca,
            "--agent",
            &id,
            "--token",
            TEST_TOKEN,
            "--json",
            "run",
            "progress.steps",
            "--params",
            r#"{"n": 3}"#,
            "--watch",
        ];
        ipactl(&args, Duration::from_secs(30))
    })
    .await
    .unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "exit {:?}\nstdout: {stdout}\nstderr: {stderr}", out.status);
    let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let (last, progress) = lines.split_last().unwrap();
    let done: Vec<_> = progress.iter().map(|p| p["progress"]["done"].as_u64()).collect();
    assert_eq!(done, [Some(1), Some(2), Some(3)], "{stdout}");
    assert_eq!(last["command_status"], "SUCCEEDED");
    assert_eq!(last["command_result"], json!({"steps": 3}));
    assert!(!stderr.contains(&n.password), "ipactl logged the password: {stderr}");
    drop(h);
}
