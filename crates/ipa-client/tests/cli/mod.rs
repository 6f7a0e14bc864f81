//! Running the real `ipactl` binary from a test (only test targets know its path).

use std::process::{Command, Stdio};
use std::time::Duration;

/// Run the real `ipactl` with `args`, bounded by `limit` (killed by PID past it).
pub fn ipactl(args: &[&str], limit: Duration) -> std::process::Output {
    let child = Command::new(env!("CARGO_BIN_EXE_ipactl"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ipactl");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("ipactl output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            panic!("ipactl {args:?} did not finish within {limit:?}");
        }
    }
}
