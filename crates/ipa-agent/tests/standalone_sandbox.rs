//! The README's first command, end to end: the `ipa-agent` binary started standalone in a
//! sandbox answers `/v1/status`, returns the simulated inventory over a real HTTP connection,
//! records power actions instead of performing them, keeps the token out of its logs and stops
//! cleanly on SIGTERM.
#![cfg(feature = "transport-rest")]

use std::path::Path;
use std::time::Duration;

#[cfg(feature = "hw-sim")]
use ipa_ironic::testing::http;
#[cfg(feature = "hw-sim")]
use serde_json::Value;

const TOKEN: &str = "standalone-test-token-4f1d2c3b5a6978e0aa11bb22";

mod common;

use common::SandboxAgent as Agent;

/// The agent with `--debug` and `extra` flags (not yet ready).
fn start(extra: &[&str]) -> Agent {
    let mut args = vec!["--debug"];
    args.extend_from_slice(extra);
    Agent::spawn(TOKEN, &args, &[])
}

#[test]
fn standalone_sandbox_agent_serves_the_simulated_machine_and_stops_on_sigterm() {
    let mut agent = start(&[]);
    let ready = agent.wait_ready();
    assert!(ready < Duration::from_secs(10), "took {ready:?}");

    let r = agent.post("poll.get_hardware_info", serde_json::json!({}));
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
    assert_eq!(r["command_name"], "get_hardware_info");
    if cfg!(feature = "hw-generic") {
        // The generic manager reads the real machine (read-only) and outranks the default
        // simulated machine, which only wins when named with --machine.
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(r["command_result"]["hostname"], host.trim());
    } else {
        assert_eq!(r["command_result"]["interfaces"][0]["mac_address"], "52:54:00:12:34:56");
        assert_eq!(r["command_result"]["disks"][0]["name"], "/dev/vda");
    }

    // The simulated disk exists only inside the sandbox.
    let disk = agent.sandbox().join("disks/vda");
    assert_eq!(std::fs::metadata(&disk).unwrap().len(), 8 << 30);

    // Power actions are recorded, never performed.
    let r = agent.post("standby.power_off", serde_json::json!({}));
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
    let power = std::fs::read_to_string(agent.sandbox().join("power.log")).unwrap();
    assert!(power.contains("power_off") || power.contains("poweroff"), "{power}");

    let status = agent.terminate();
    assert!(status.success(), "exit status {status}");

    let log = agent.log();
    assert!(log.contains("SANDBOX"), "{log}");
    assert!(!log.contains(TOKEN), "the agent token leaked into the log:\n{log}");
    // Written to a file (in the ramdisk: a pipe to the console and /run/ipa-agent.log, which
    // the log bundle carries), the log has no terminal colour codes.
    assert!(!log.contains('\u{1b}'), "ANSI escape codes in a log that is not a terminal:\n{log}");
    // Nothing but the log and the sandbox was created in the working directory.
    let mut entries: Vec<_> = std::fs::read_dir(agent.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    entries.sort();
    assert_eq!(entries, ["agent.log", "sandbox"]);
    assert!(Path::new(&agent.sandbox()).is_dir());
}

/// A server for one connection: it reads the request, answers 200 with a `Content-Length` of
/// `length` and `body`, then holds the connection for `hold` (bounded by the test).
#[cfg(feature = "hw-sim")]
fn one_connection_server(length: usize, body: Vec<u8>, hold: Duration) -> u16 {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let Ok((mut c, _)) = l.accept() else { return };
        let mut buf = [0u8; 4096];
        let _ = c.read(&mut buf);
        let head =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n");
        let _ = c.write_all(head.as_bytes());
        let _ = c.write_all(&body);
        std::thread::sleep(hold);
    });
    port
}

/// The headers and the first 64 KiB of a 64 MiB image, then a stall (at most 60 s).
#[cfg(feature = "hw-sim")]
fn stalling_image_server() -> u16 {
    one_connection_server(64 << 20, vec![0x5au8; 64 << 10], Duration::from_secs(60))
}

#[test]
#[cfg(feature = "hw-sim")]
fn sigterm_during_an_image_write_is_logged_and_exits_non_zero() {
    let machine =
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/machines/two-disk-server.toml");
    let mut agent = start(&["--machine", machine]);
    agent.wait_ready();
    let port = stalling_image_server();
    let info = serde_json::json!({"image_info": {
        "id": "stalled-image", "urls": [format!("http://127.0.0.1:{port}/disk.raw")],
        "disk_format": "raw", "stream_raw_images": true,
        "os_hash_algo": "sha256", "os_hash_value": "0".repeat(64)}});
    let (code, body) = http(
        agent.port,
        "POST",
        &format!("/v1/commands/?agent_token={TOKEN}"),
        &[],
        Some(&serde_json::json!({"name": "standby.prepare_image", "params": info})),
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    let started: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(started["command_status"], "RUNNING", "{started}");
    // Wait until the stream is being written (the log says the download started).
    for _ in 0..200 {
        if agent.log().contains("stalled-image") {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let status = agent.terminate();
    let log = agent.log();
    assert_eq!(status.code(), Some(143), "exit status {status}:\n{log}");
    let line = log
        .lines()
        .find(|l| l.contains("is abandoned by the shutdown"))
        .unwrap_or_else(|| panic!("nothing logged about the abandoned write:\n{log}"));
    assert!(line.contains("ERROR") && line.contains("prepare_image"), "{line}");
    assert!(line.contains("unbootable"), "{line}");
}

#[test]
fn sigterm_with_nothing_running_exits_zero() {
    let mut agent = start(&[]);
    agent.wait_ready();
    let status = agent.terminate();
    assert!(status.success(), "exit status {status}:\n{}", agent.log());
    assert!(!agent.log().contains("is abandoned by the shutdown"), "{}", agent.log());
}

#[test]
#[cfg(feature = "hw-sim")]
fn the_write_image_step_is_listed_by_the_image_pipeline_and_runs_through_deploy_steps() {
    let machine =
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/machines/two-disk-server.toml");
    let mut agent = start(&["--machine", machine]);
    agent.wait_ready();
    let steps = agent.post("deploy.get_deploy_steps", serde_json::json!({"node": {}, "ports": []}));
    let listed = &steps["command_result"]["deploy_steps"];
    let standby = listed["StandbyExtension"].as_array().unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(standby.len(), 1, "{listed}");
    assert_eq!(standby[0]["step"], "write_image");
    assert_eq!(standby[0]["priority"], 0);
    assert_eq!(standby[0]["argsinfo"]["image_info"]["required"], true);
    for (manager, list) in listed.as_object().unwrap() {
        if manager != "StandbyExtension" {
            let names: Vec<&str> =
                list.as_array().unwrap().iter().filter_map(|s| s["step"].as_str()).collect();
            assert!(!names.contains(&"write_image"), "{manager} lists write_image too: {listed}");
        }
    }

    // Executing the step reaches the pipeline: the image is downloaded and its checksum
    // checked (a manager could not answer with ImageChecksumError), and nothing is recorded.
    let port = one_connection_server(1 << 20, vec![0xa5; 1 << 20], Duration::ZERO);
    let versions = steps["command_result"]["hardware_manager_version"].clone();
    let r = agent.post(
        "deploy.execute_deploy_step",
        serde_json::json!({
            "step": {"step": "write_image", "interface": "deploy", "priority": 0, "args": {
                "image_info": {"id": "via-step", "urls": [format!("http://127.0.0.1:{port}/d.raw")],
                               "disk_format": "raw", "stream_raw_images": true,
                               "os_hash_algo": "sha256", "os_hash_value": "0".repeat(64)}}},
            "node": {}, "ports": [], "deploy_version": versions}),
    );
    assert_eq!(r["command_status"], "FAILED", "{r}");
    assert_eq!(r["command_error"]["type"], "ImageChecksumError", "{r}");
    let uuids = agent.post("standby.get_partition_uuids", serde_json::json!({}));
    assert_eq!(uuids["command_result"], serde_json::json!({}), "{uuids}");
}
