//! The real `ipactl` binary driving an agent over ZeroMQ (the agent dials the ROUTER that
//! `ipactl --zmq-bind` opens): `run --watch` follows progress events to the final result and
//! its exit status says whether the command succeeded.

mod cli;
mod common;

use std::time::Duration;

use cli::ipactl;
use common::{free_port, progress_harness};
use ipa_test_support::{Harness, TEST_TOKEN};
use ipa_transport_zmq::ZmqConfig;
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(30);

/// Start `ipactl --zmq-bind` on a free port with `args` after the global flags, and an agent
/// (with `progress.*`) dialing it; returns the finished `ipactl` and the agent id.
async fn ipactl_against_agent(extra: &[&str], args: &[&str]) -> (std::process::Output, String) {
    ipactl_with_token(TEST_TOKEN, &["--token", TEST_TOKEN], extra, args).await
}

/// As [`ipactl_against_agent`], with the agent knowing `token` and `token_args` giving it to
/// `ipactl`.
async fn ipactl_with_token(
    token: &str,
    token_args: &[&str],
    extra: &[&str],
    args: &[&str],
) -> (std::process::Output, String) {
    let h: Harness = progress_harness();
    h.services.token.set(token);
    let id = format!("agent-{}", uuid::Uuid::new_v4());
    h.identity.send_replace(id.clone());
    let ep = format!("tcp://127.0.0.1:{}", free_port());
    let argv: Vec<String> = ["--zmq-bind", &ep, "--agent", &id, "--wait-secs", "10"]
        .iter()
        .chain(token_args)
        .chain(extra)
        .chain(args)
        .map(|s| s.to_string())
        .collect();
    let ctl = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        ipactl(&refs, LIMIT)
    });
    let mut cfg = ZmqConfig::dial(&ep);
    cfg.link.heartbeat_ms = 300;
    cfg.link.reconnect_min_ms = 50;
    cfg.link.reconnect_max_ms = 200;
    cfg.link.ready_timeout_ms = 200;
    h.serve(&cfg, None).await;
    let out = ctl.await.unwrap();
    drop(h);
    (out, id)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_json_prints_each_progress_record_then_the_succeeded_result() {
    let (out, id) = ipactl_against_agent(
        &["--json"],
        &["run", "progress.steps", "--params", r#"{"n": 4}"#, "--watch"],
    )
    .await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "exit {:?}\nstdout: {stdout}\nstderr: {stderr}", out.status);
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let (last, progress) = lines.split_last().expect("output");
    let done: Vec<u64> = progress
        .iter()
        .map(|p| {
            assert_eq!(p["event"], "command.progress", "{p}");
            assert_eq!(p["agent_id"], id.as_str());
            assert_eq!(p["name"], "progress.steps");
            assert_eq!(
                (p["progress"]["phase"].as_str(), p["progress"]["total"].as_u64()),
                (Some("write"), Some(4))
            );
            p["progress"]["done"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(done, [1, 2, 3, 4], "every progress record, in order: {stdout}");
    assert_eq!(last["command_name"], "steps");
    assert_eq!(last["command_status"], "SUCCEEDED");
    assert_eq!(last["command_result"], json!({"steps": 4}));
    assert!(!stderr.contains(TEST_TOKEN) && !stdout.contains(TEST_TOKEN), "no token in output");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_draws_a_progress_bar_and_prints_the_final_result() {
    let (out, _) =
        ipactl_against_agent(&[], &["run", "progress.steps", "--params", r#"{"n": 2}"#, "--watch"])
            .await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "exit {:?}\nstdout: {stdout}\nstderr: {stderr}", out.status);
    assert!(stderr.contains("write [###############---------------]  50.0%"), "{stderr:?}");
    assert!(stderr.contains("write [##############################] 100.0%"), "{stderr:?}");
    let r: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(r["command_status"], "SUCCEEDED");
    assert_eq!(r["command_result"], json!({"steps": 2}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_exits_non_zero_when_the_command_fails() {
    let (out, _) = ipactl_against_agent(
        &["--json"],
        &["run", "progress.steps", "--params", r#"{"n": 2, "fail": true}"#, "--watch"],
    )
    .await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "stdout: {stdout}\nstderr: {stderr}");
    let last: Value = serde_json::from_str(stdout.lines().last().expect("result line")).unwrap();
    assert_eq!(last["command_status"], "FAILED");
    assert_eq!(last["command_error"]["details"], "failed after the last step");
    assert_eq!(stdout.lines().filter(|l| l.contains("command.progress")).count(), 2, "{stdout}");
    assert!(stderr.contains("ipactl: command progress.steps FAILED"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_without_watch_also_exits_non_zero_on_failure() {
    let (out, _) = ipactl_against_agent(&["--json"], &["run", "conformance.fail", "--wait"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let r: Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(r["command_status"], "FAILED");
    let (out, _) = ipactl_against_agent(
        &["--json"],
        &["run", "conformance.echo", "--params", r#"{"value": 1}"#],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_beginning_with_a_dash_is_passed_as_a_value_in_both_spellings() {
    let tok = "-dash-token_0123456789abcdefghijkl";
    let eq = format!("--token={tok}");
    for token_args in [vec!["--token", tok], vec![eq.as_str()]] {
        let (out, _) = ipactl_with_token(
            tok,
            &token_args,
            &["--json"],
            &["run", "progress.steps", "--params", r#"{"n": 1}"#, "--wait"],
        )
        .await;
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(
            out.status.success(),
            "{token_args:?}: exit {:?}\nstdout: {stdout}\nstderr: {stderr}",
            out.status
        );
        assert!(stdout.contains("SUCCEEDED"), "{token_args:?}: {stdout}");
    }
}
