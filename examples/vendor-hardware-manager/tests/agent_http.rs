//! Starts the vendor binary (`acme-agent`) in a sandbox and drives it over HTTP the way Ironic
//! does: the Acme clean step is listed under the Acme manager, it runs, and its version is in
//! `hardware_manager_version`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const TOKEN: &str = "acme-example-token";
const BIN: &str = env!("CARGO_BIN_EXE_acme-agent");

/// Kills the agent (only the process this test started) when the test ends.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn fixture(root: &Path) {
    let write = |rel: &str, s: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    };
    write("sys/class/dmi/id/sys_vendor", "Acme\n");
    write("sys/class/acme_widget/widget0/firmware_version", "7.3.1\n");
    write("sys/class/acme_widget/widget0/reset", "");
}

/// Start `acme-agent` on an ephemeral loopback port; returns it and its base URL.
fn start(sandbox: &Path) -> (Agent, String) {
    let mut child = Command::new(BIN)
        .args(["--standalone", "--listen", "127.0.0.1:0", "--kernel-cmdline", "none"])
        .arg("--sandbox")
        .arg(sandbox)
        .arg("--token")
        .arg(TOKEN)
        .env("IPA_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start acme-agent");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("agent: {line}");
            if !sent && let Some(i) = line.find("http://127.0.0.1:") {
                let rest = &line[i + "http://".len()..];
                let hostport: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect();
                let _ = tx.send(format!("http://{hostport}"));
                sent = true;
            }
        }
    });
    let agent = Agent(child);
    let base = rx.recv_timeout(Duration::from_secs(60)).expect("the agent reports its endpoint");
    (agent, base)
}

/// One HTTP/1.1 request on a fresh connection; returns (status, JSON body).
fn http(base: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let hostport = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(hostport).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

fn command(base: &str, name: &str, params: Value) -> Value {
    let (status, body) = http(
        base,
        "POST",
        &format!("/v1/commands/?wait=true&agent_token={TOKEN}"),
        Some(&json!({"name": name, "params": params})),
    );
    assert_eq!(status, 200, "{name}: {body}");
    assert_eq!(body["command_status"], "SUCCEEDED", "{name}: {body}");
    body["command_result"].clone()
}

fn rest_transport_linked() -> bool {
    let out = Command::new(BIN).arg("--list-plugins").output().unwrap();
    assert!(out.status.success());
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        list.lines().any(|l| l == "hardware:acme-widget"),
        "the vendor manager is registered: {list}"
    );
    list.lines().any(|l| l == "transport:rest")
}

#[test]
fn vendor_binary_serves_its_clean_step_over_http() {
    if !rest_transport_linked() {
        eprintln!("SKIPPED: this build of ipa-agent has no REST transport yet");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sandbox = dir.path().join("sb");
    fixture(&sandbox.join("root"));
    let (_agent, base) = start(&sandbox);

    let node = json!({"uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123", "properties": {}});
    let steps = command(&base, "clean.get_clean_steps", json!({"node": node, "ports": []}));
    assert_eq!(
        steps["clean_steps"]["AcmeWidgetHardwareManager"],
        json!([{"step": "reset_acme_widget", "priority": 0, "interface": "deploy",
                "reboot_requested": false, "abortable": true,
                "argsinfo": {"mode": {"description": "Reset mode: \"soft\" (default) or \"factory\"", "required": false}}}])
    );
    let versions = steps["hardware_manager_version"].clone();
    assert_eq!(versions["acme_widget_hardware_manager"], "1.4", "{versions}");

    let result = command(
        &base,
        "clean.execute_clean_step",
        json!({"step": {"step": "reset_acme_widget", "interface": "deploy", "priority": 0,
                        "args": {"mode": "factory"}},
               "node": node, "ports": [], "clean_version": versions}),
    );
    assert_eq!(result["clean_result"], json!({"reset": "factory"}));
    let reset =
        std::fs::read_to_string(sandbox.join("root/sys/class/acme_widget/widget0/reset")).unwrap();
    assert_eq!(reset, "factory", "the step wrote the widget's reset attribute inside the sandbox");

    // The inventory carries the extension field (the simulated manager, always linked, produces
    // the inventory; every manager's extensions are merged into it).
    let inventory = command(&base, "poll.get_hardware_info", json!({}));
    assert_eq!(inventory["acme_widget"], json!({"firmware_version": "7.3.1"}), "{inventory}");

    let started = Instant::now();
    let (status, _) = http(&base, "GET", "/v1/status", None);
    assert_eq!(status, 200);
    assert!(started.elapsed() < Duration::from_secs(30));
}
