//! The real `ipa-agent` binary started standalone in a sandbox on a free loopback port, its
//! output in `<tmp>/agent.log`, killed by PID on drop. Shared by the sandbox test files.
#![allow(dead_code)] // each test file uses part of it

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipa_ironic::testing::{free_port, http};
use serde_json::Value;

/// A standalone sandbox agent.
pub struct SandboxAgent {
    pub child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    token: &'static str,
}

impl SandboxAgent {
    /// Start the agent with `token`, `extra` flags and `env` (not yet ready: see
    /// [`Self::wait_ready`]).
    pub fn spawn(token: &'static str, extra: &[&str], env: &[(&str, String)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ipa-agent"));
        cmd.current_dir(dir.path())
            .args(["--standalone", "--kernel-cmdline", "none", "--sandbox"])
            .arg(dir.path().join("sandbox"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--token", token])
            .args(extra)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self { child: cmd.spawn().unwrap(), port, dir, token }
    }

    /// The sandbox directory.
    pub fn sandbox(&self) -> PathBuf {
        self.dir.path().join("sandbox")
    }

    /// Everything the agent printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// Poll `GET /v1/status` until it answers 200 (at most 10 s); the time it took.
    pub fn wait_ready(&mut self) -> Duration {
        let t0 = Instant::now();
        for _ in 0..400 {
            if let Ok((200, _)) = http(self.port, "GET", "/v1/status", &[], None) {
                return t0.elapsed();
            }
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!("agent exited early ({st}):\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("agent never answered /v1/status:\n{}", self.log());
    }

    /// `POST /v1/commands/?wait=true` with `params`: the final result.
    pub fn post(&self, name: &str, params: Value) -> Value {
        let (code, body) = http(
            self.port,
            "POST",
            &format!("/v1/commands/?agent_token={}&wait=true", self.token),
            &[],
            Some(&serde_json::json!({"name": name, "params": params})),
        )
        .unwrap();
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

impl SandboxAgent {
    /// SIGTERM the agent (by its PID) and wait for it to exit (at most 5 s).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling the child process this test started, by its PID.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        for _ in 0..200 {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = self.child.kill();
        panic!("agent ignored SIGTERM:\n{}", self.log());
    }
}

impl Drop for SandboxAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
