//! The real `ipactl metrics` against a loopback HTTP endpoint serving a real scrape (the
//! agent's own encoder): the text as served, `--json` as parsed families, and a clear failure
//! when the agent has metrics turned off (404).

mod cli;

use std::io::{Read, Write};
use std::time::Duration;

use cli::ipactl;
use ipa_core::CommandStatus;
use ipa_core::metrics::Metrics;
use serde_json::Value;

/// Serve `GET /metrics` with `body` (or 404 with IPA's fault body when `None`) for up to
/// `conns` connections; returns the port. The thread ends after the last one (or 30 s).
fn endpoint(body: Option<String>, conns: usize) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    l.set_nonblocking(false).unwrap();
    std::thread::spawn(move || {
        for _ in 0..conns {
            let Ok((mut c, _)) = l.accept() else { return };
            let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
            let mut buf = [0u8; 4096];
            let n = c.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).to_string();
            assert!(!head.contains("agent_token"), "no token is sent for metrics: {head}");
            let (status, ctype, text) = match (&body, head.starts_with("GET /metrics ")) {
                (Some(b), true) => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", b.clone()),
                _ => (
                    "404 NOT FOUND",
                    "application/json",
                    r#"{"faultcode": "Client", "faultstring": "404 Not Found: The requested URL was not found on the server."}"#.to_string(),
                ),
            };
            let _ = write!(
                c,
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    port
}

fn scrape() -> String {
    let m = Metrics::new();
    m.command_finished("poll.get_hardware_info", CommandStatus::Succeeded, Some(0.02));
    m.image_bytes_written(3 << 20);
    m.encode().unwrap()
}

#[test]
fn ipactl_metrics_prints_the_scrape_and_its_json_families() {
    let text = scrape();
    let port = endpoint(Some(text.clone()), 2);
    let base = format!("http://127.0.0.1:{port}");
    let limit = Duration::from_secs(30);

    let out = ipactl(&["--rest", &base, "--token", "unused-here", "metrics"], limit);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), text, "printed as served");

    let out = ipactl(&["--rest", &base, "metrics", "--json"], limit);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let fam = |name: &str| {
        v.as_array().unwrap().iter().find(|f| f["name"] == name).cloned().unwrap_or_default()
    };
    let c = fam("ipa_commands_total");
    assert_eq!(c["type"], "counter", "{v}");
    assert_eq!(c["samples"][0]["labels"]["command"], "poll.get_hardware_info");
    assert_eq!(c["samples"][0]["labels"]["status"], "SUCCEEDED");
    assert_eq!(c["samples"][0]["value"], 1.0);
    assert_eq!(fam("ipa_image_bytes_written_total")["samples"][0]["value"], 3145728.0);
    assert_eq!(fam("ipa_command_duration_seconds")["type"], "histogram");
    assert!(
        fam("ipa_process_resident_memory_bytes")["samples"][0]["value"].as_f64().unwrap() > 0.0
    );
}

#[test]
fn ipactl_metrics_fails_clearly_when_the_agent_serves_none() {
    let port = endpoint(None, 1);
    let out = ipactl(
        &["--rest", &format!("http://127.0.0.1:{port}"), "metrics"],
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("GET /metrics answered 404"), "{err}");
}
