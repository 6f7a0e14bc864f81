//! The real `ipa-agent` binary, standalone in a sandbox, serves its Prometheus metrics at
//! `GET /metrics` on the REST port without the agent token: commands run over REST move the
//! command counters and the duration histogram, an image write moves the image series, an
//! erase shows per-device progress, and RSS and threads are there. Turned off
//! (`IPA_METRICS_ENABLED=0`) the endpoint is gone; with `IPA_METRICS_LISTEN` it moves to its
//! own port.
#![cfg(all(feature = "transport-rest", feature = "hw-sim"))]

use std::time::Duration;

use ipa_ironic::testing::{FileServer, free_port, http};
use serde_json::json;

const TOKEN: &str = "metrics-test-token-5e2a9c0b7d4f1e3a6b8c";
const MACHINE: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/machines/two-disk-server.toml");

mod common;

use common::SandboxAgent;

/// The agent on the two-disk machine with `env`, ready.
fn start(env: &[(&str, String)]) -> SandboxAgent {
    let mut agent = SandboxAgent::spawn(TOKEN, &["--machine", MACHINE], env);
    agent.wait_ready();
    agent
}

/// The value of `series` (name and labels exactly as written) in a scrape.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `GET /metrics` on `port` without a token, until `series` is present (the collector follows
/// the event bus on its own task; at most 5 s).
fn scrape_until(port: u16, series: &str) -> String {
    let mut last = String::new();
    for _ in 0..200 {
        let (code, body) = http(port, "GET", "/metrics", &[], None).unwrap();
        assert_eq!(code, 200, "{body}");
        if sample(&body, series).is_some() {
            return body;
        }
        last = body;
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{series} never appeared in:\n{last}");
}

#[test]
fn commands_images_and_erases_over_rest_move_the_metrics_scraped_without_a_token() {
    let agent = start(&[]);

    let r = agent.post("poll.get_hardware_info", json!({}));
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");

    // An image whose checksum does not match: written, then refused (head stays zeroed).
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("disk.raw"), vec![0x5au8; 3 << 20]).unwrap();
    let fs = FileServer::start(files.path()).unwrap();
    let info = json!({"image_info": {
        "id": "metrics-image", "urls": [fs.url("disk.raw")], "disk_format": "raw",
        "stream_raw_images": true, "os_hash_algo": "sha256", "os_hash_value": "0".repeat(64)}});
    let r = agent.post("standby.prepare_image", info);
    assert_eq!(r["command_status"], "FAILED", "{r}");
    assert_eq!(r["command_error"]["type"], "ImageChecksumError", "{r}");

    // erase_devices through the clean step: one erase record per simulated disk.
    let steps = agent.post("clean.get_clean_steps", json!({"node": {}, "ports": []}));
    let versions = steps["command_result"]["hardware_manager_version"].clone();
    let r = agent.post(
        "clean.execute_clean_step",
        json!({"step": {"step": "erase_devices", "interface": "deploy", "priority": 10},
               "node": {}, "ports": [], "clean_version": versions}),
    );
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");

    let erase = "ipa_commands_total{command=\"clean.execute_clean_step\",status=\"SUCCEEDED\"}";
    let text = scrape_until(agent.port, erase);
    let get = |s: &str| sample(&text, s).unwrap_or_else(|| panic!("no {s} in:\n{text}"));
    assert_eq!(
        get("ipa_commands_total{command=\"poll.get_hardware_info\",status=\"SUCCEEDED\"}"),
        1.0
    );
    assert_eq!(get("ipa_commands_total{command=\"standby.prepare_image\",status=\"FAILED\"}"), 1.0);
    assert_eq!(get("ipa_command_duration_seconds_count{command=\"standby.prepare_image\"}"), 1.0);
    assert!(get("ipa_command_duration_seconds_sum{command=\"standby.prepare_image\"}") > 0.0);
    assert_eq!(
        get("ipa_command_duration_seconds_bucket{command=\"poll.get_hardware_info\",le=\"+Inf\"}"),
        1.0
    );
    assert_eq!(get("ipa_commands_running"), 0.0);
    assert_eq!(get("ipa_image_bytes_written_total"), (3 << 20) as f64);
    assert_eq!(get("ipa_image_checksum_failures_total"), 1.0);
    assert_eq!(get("ipa_image_writes_total{result=\"failure\"}"), 1.0);
    assert_eq!(get("ipa_image_writes_total{result=\"success\"}"), 0.0);
    for (dev, size) in [("/dev/sda", 16u64 << 30), ("/dev/nvme0n1", 32 << 30)] {
        assert_eq!(get(&format!("ipa_erase_bytes_done{{device=\"{dev}\"}}")), size as f64);
        assert_eq!(get(&format!("ipa_erase_bytes_total{{device=\"{dev}\"}}")), size as f64);
    }
    // No Ironic in standalone mode: no heartbeat was sent, none succeeded.
    assert_eq!(get("ipa_heartbeat_attempts_total"), 0.0);
    assert!(!text.contains("ipa_heartbeat_seconds_since_last_success"), "{text}");
    // The process itself, read at scrape time.
    assert!(get("ipa_process_resident_memory_bytes") > 1e6, "{text}");
    assert!(get("ipa_process_threads") >= 2.0, "{text}");
    assert!(get("ipa_process_open_fds") >= 3.0, "{text}");
    assert!(!text.contains(TOKEN), "the token is in no label");
    // The scrape is not an access-log line at INFO (the log would fill up every 15 s).
    assert!(!agent.log().contains("GET /metrics"), "{}", agent.log());
}

#[test]
fn metrics_turned_off_are_not_served() {
    let agent = start(&[("IPA_METRICS_ENABLED", "0".into())]);
    let (code, body) = http(agent.port, "GET", "/metrics", &[], None).unwrap();
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("404 Not Found"), "{body}");
    let r = agent.post("poll.get_hardware_info", json!({}));
    assert_eq!(r["command_status"], "SUCCEEDED", "the API is unaffected: {r}");
}

#[test]
fn metrics_listen_moves_the_endpoint_to_its_own_port() {
    let metrics_port = free_port();
    let agent = start(&[("IPA_METRICS_LISTEN", format!("127.0.0.1:{metrics_port}"))]);
    agent.post("poll.get_hardware_info", json!({}));
    let series = "ipa_commands_total{command=\"poll.get_hardware_info\",status=\"SUCCEEDED\"}";
    let text = scrape_until(metrics_port, series);
    assert_eq!(sample(&text, series), Some(1.0), "{text}");
    let (code, _) = http(metrics_port, "GET", "/v1/status", &[], None).unwrap();
    assert_eq!(code, 404, "the metrics port serves nothing else");
    let (code, _) = http(agent.port, "GET", "/metrics", &[], None).unwrap();
    assert_eq!(code, 404, "and the API port no longer serves metrics");
}
