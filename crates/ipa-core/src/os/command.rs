//! External commands (`sgdisk`, `mdadm`, `efibootmgr`, `ipmitool`, `nvme`, `hdparm`, ...).
//!
//! Every external call in the workspace goes through [`CommandRunner`], so tests can use
//! [`FakeRunner`]: scripted answers keyed by program and argument prefix, and a record of every
//! invocation to assert exact command lines against.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

/// A command to run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecRequest {
    /// Program name or path.
    pub program: String,
    /// Arguments.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Bytes fed to stdin.
    pub stdin: Option<Vec<u8>>,
    /// Kill the process after this long.
    pub timeout: Option<Duration>,
}

impl ExecRequest {
    /// `program args...`
    pub fn new<I, S>(program: impl Into<String>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }
    /// Set a timeout.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }
    /// Add an environment variable.
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
    /// Feed stdin.
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }
    /// The command line as one string, for logs and assertions.
    pub fn command_line(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What a finished process produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecOutput {
    /// Exit code; `-1` if killed by a signal.
    pub status: i32,
    /// Captured stdout (lossy UTF-8).
    pub stdout: String,
    /// Captured stderr (lossy UTF-8).
    pub stderr: String,
}

impl ExecOutput {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }
    /// A successful output with the given stdout.
    pub fn ok(stdout: impl Into<String>) -> Self {
        Self { status: 0, stdout: stdout.into(), stderr: String::new() }
    }
    /// A failed output.
    pub fn failed(status: i32, stderr: impl Into<String>) -> Self {
        Self { status, stdout: String::new(), stderr: stderr.into() }
    }
}

/// Why a command could not produce an output.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExecError {
    /// The program does not exist on this machine.
    #[error("{program}: command not found")]
    NotFound {
        /// Program name.
        program: String,
    },
    /// Spawning or waiting failed.
    #[error("running {program} failed: {reason}")]
    Io {
        /// Program name.
        program: String,
        /// OS error text.
        reason: String,
    },
    /// The timeout expired and the process was killed.
    #[error("{program} timed out after {secs:.1}s")]
    Timeout {
        /// Program name.
        program: String,
        /// Seconds waited.
        secs: f64,
    },
}

impl From<ExecError> for crate::error::AgentError {
    fn from(e: ExecError) -> Self {
        crate::error::AgentError::execution(e.to_string())
    }
}

/// Runs external programs.
#[async_trait]
pub trait CommandRunner: Send + Sync + 'static {
    /// Run to completion, capturing output. A non-zero exit is an `Ok` output, not an error.
    async fn run(&self, request: ExecRequest) -> Result<ExecOutput, ExecError>;

    /// Whether `program` can be found.
    async fn exists(&self, program: &str) -> bool;
}

impl std::fmt::Debug for dyn CommandRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CommandRunner")
    }
}

/// The real runner: `tokio::process`, killed on timeout or drop.
#[derive(Debug, Clone, Default)]
pub struct SystemRunner;

#[async_trait]
impl CommandRunner for SystemRunner {
    async fn run(&self, req: ExecRequest) -> Result<ExecOutput, ExecError> {
        use std::process::Stdio;
        use tokio::io::AsyncWriteExt;
        let mut cmd = tokio::process::Command::new(&req.program);
        cmd.args(&req.args)
            .envs(req.env.iter().map(|(k, v)| (k, v)))
            .stdin(if req.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        tracing::debug!(command = %req.command_line(), "exec");
        let mut child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ExecError::NotFound { program: req.program.clone() },
            _ => ExecError::Io { program: req.program.clone(), reason: e.to_string() },
        })?;
        if let (Some(data), Some(mut stdin)) = (req.stdin.clone(), child.stdin.take()) {
            // Write stdin concurrently with draining stdout/stderr to avoid a pipe deadlock.
            tokio::spawn(async move {
                let _ = stdin.write_all(&data).await;
            });
        }
        let wait = child.wait_with_output();
        let out = match req.timeout {
            Some(t) => tokio::time::timeout(t, wait).await.map_err(|_| ExecError::Timeout {
                program: req.program.clone(),
                secs: t.as_secs_f64(),
            })?,
            None => wait.await,
        }
        .map_err(|e| ExecError::Io { program: req.program.clone(), reason: e.to_string() })?;
        Ok(ExecOutput {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    async fn exists(&self, program: &str) -> bool {
        if program.contains('/') {
            return std::path::Path::new(program).exists();
        }
        std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
            .unwrap_or(false)
    }
}

/// Programs that change disks, boot entries, RAID, firmware or power state.
pub const DESTRUCTIVE_PROGRAMS: &[&str] = &[
    "dd",
    "sgdisk",
    "sfdisk",
    "parted",
    "partprobe",
    "wipefs",
    "mkfs",
    "mkfs.vfat",
    "mkfs.ext4",
    "mkfs.xfs",
    "mkswap",
    "mdadm",
    "efibootmgr",
    "grub-install",
    "grub2-install",
    "nvme",
    "hdparm",
    "shred",
    "blkdiscard",
    "blockdev",
    "qemu-img",
    "reboot",
    "poweroff",
    "shutdown",
    "halt",
    "ipmitool",
    "mstflint",
    "mlxconfig",
    "flint",
    "kexec",
    "hwclock",
    "ip",
];

/// The sandbox runner: defense in depth around a real runner. A destructive program (see
/// [`DESTRUCTIVE_PROGRAMS`]) is refused if any argument names something under `/dev/` (other
/// than `/dev/null`, `/dev/zero`, `/dev/urandom`), or if it is a power or boot-entry tool at all;
/// everything else runs. Managers already map devices to sandbox files; this guard makes a bug
/// there fail loudly instead of touching the real machine.
#[derive(Debug, Clone)]
pub struct SandboxRunner<R> {
    inner: R,
}

impl<R> SandboxRunner<R> {
    /// Wrap `inner`.
    pub fn new(inner: R) -> Self {
        Self { inner }
    }
}

fn refused_in_sandbox(req: &ExecRequest) -> Option<String> {
    let prog = std::path::Path::new(&req.program)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(&req.program);
    if !DESTRUCTIVE_PROGRAMS.contains(&prog) {
        return None;
    }
    if matches!(
        prog,
        "reboot"
            | "poweroff"
            | "shutdown"
            | "halt"
            | "kexec"
            | "efibootmgr"
            | "grub-install"
            | "grub2-install"
            | "hwclock"
    ) {
        return Some(format!("sandbox: refusing to run {prog}"));
    }
    if prog == "ipmitool" && req.args.iter().any(|a| a == "power" || a == "chassis" || a == "raw") {
        return Some("sandbox: refusing ipmitool power/chassis/raw commands".into());
    }
    if prog == "ip" && !req.args.first().is_some_and(|a| a == "route" || a == "-j" || a == "addr") {
        return Some("sandbox: refusing to reconfigure network interfaces".into());
    }
    let safe =
        ["/dev/null", "/dev/zero", "/dev/urandom", "/dev/random", "/dev/stdin", "/dev/stdout"];
    req.args
        .iter()
        .flat_map(|a| a.split('=').map(str::to_string).collect::<Vec<_>>())
        .find(|a| a.starts_with("/dev/") && !safe.contains(&a.as_str()))
        .map(|dev| format!("sandbox: refusing {prog} on real device {dev}"))
}

#[async_trait]
impl<R: CommandRunner> CommandRunner for SandboxRunner<R> {
    async fn run(&self, request: ExecRequest) -> Result<ExecOutput, ExecError> {
        if let Some(reason) = refused_in_sandbox(&request) {
            tracing::error!(command = %request.program, "{reason}");
            return Ok(ExecOutput::failed(126, reason));
        }
        self.inner.run(request).await
    }
    async fn exists(&self, program: &str) -> bool {
        self.inner.exists(program).await
    }
}

/// A scripted answer of the [`FakeRunner`].
#[derive(Debug, Clone)]
pub enum FakeResponse {
    /// Produce this output.
    Output(ExecOutput),
    /// Fail with this error.
    Error(ExecError),
}

#[derive(Debug, Default)]
struct FakeState {
    // (program, arg prefix, queue of responses; the last one repeats)
    rules: Vec<(String, Vec<String>, VecDeque<FakeResponse>)>,
    calls: Vec<ExecRequest>,
    missing: Vec<String>,
}

/// The fake runner: answers from rules, records every call. Unscripted programs "succeed" with
/// empty output, so tests only script what they assert on. Programs marked missing behave as
/// absent from `PATH`.
#[derive(Debug, Clone, Default)]
pub struct FakeRunner {
    state: Arc<Mutex<FakeState>>,
}

impl FakeRunner {
    /// A fresh fake.
    pub fn new() -> Self {
        Self::default()
    }

    /// Answer calls of `program` whose args start with `prefix` with `responses` in order (the
    /// last repeats). Later rules take precedence over earlier ones.
    pub fn on(
        &self,
        program: &str,
        prefix: &[&str],
        responses: impl IntoIterator<Item = FakeResponse>,
    ) -> &Self {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.rules.push((
            program.to_string(),
            prefix.iter().map(|a| a.to_string()).collect(),
            responses.into_iter().collect(),
        ));
        self
    }

    /// Shorthand: `program prefix...` prints `stdout` and exits 0.
    pub fn on_ok(&self, program: &str, prefix: &[&str], stdout: &str) -> &Self {
        self.on(program, prefix, [FakeResponse::Output(ExecOutput::ok(stdout))])
    }

    /// Mark a program as not installed.
    pub fn missing(&self, program: &str) -> &Self {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).missing.push(program.to_string());
        self
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<ExecRequest> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).calls.clone()
    }

    /// Every call so far as command lines.
    pub fn command_lines(&self) -> Vec<String> {
        self.calls().iter().map(ExecRequest::command_line).collect()
    }
}

#[async_trait]
impl CommandRunner for FakeRunner {
    async fn run(&self, req: ExecRequest) -> Result<ExecOutput, ExecError> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.calls.push(req.clone());
        if s.missing.contains(&req.program) {
            return Err(ExecError::NotFound { program: req.program });
        }
        let rule = s.rules.iter_mut().rev().find(|(prog, prefix, _)| {
            *prog == req.program
                && prefix.len() <= req.args.len()
                && prefix.iter().zip(&req.args).all(|(a, b)| a == b)
        });
        match rule {
            Some((_, _, queue)) => {
                let resp = if queue.len() > 1 { queue.pop_front() } else { queue.front().cloned() };
                match resp {
                    Some(FakeResponse::Output(o)) => Ok(o),
                    Some(FakeResponse::Error(e)) => Err(e),
                    None => Ok(ExecOutput::default()),
                }
            }
            None => Ok(ExecOutput::default()),
        }
    }

    async fn exists(&self, program: &str) -> bool {
        !self.state.lock().unwrap_or_else(|p| p.into_inner()).missing.iter().any(|m| m == program)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fake_answers_by_longest_matching_latest_rule_and_records_calls() {
        let f = FakeRunner::new();
        f.on_ok("ipmitool", &["lan", "print"], "IP Address : 10.0.0.1\n");
        f.on(
            "nvme",
            &["format"],
            [
                FakeResponse::Output(ExecOutput::failed(1, "busy")),
                FakeResponse::Output(ExecOutput::ok("")),
            ],
        );
        f.missing("hdparm");
        let o = f.run(ExecRequest::new("ipmitool", ["lan", "print", "1"])).await.unwrap();
        assert!(o.stdout.contains("10.0.0.1"));
        assert_eq!(
            f.run(ExecRequest::new("nvme", ["format", "/dev/nvme0n1"])).await.unwrap().status,
            1
        );
        assert_eq!(
            f.run(ExecRequest::new("nvme", ["format", "/dev/nvme0n1"])).await.unwrap().status,
            0
        );
        assert_eq!(
            f.run(ExecRequest::new("nvme", ["format", "/dev/nvme0n1"])).await.unwrap().status,
            0
        );
        assert!(matches!(
            f.run(ExecRequest::new("hdparm", ["-I"])).await,
            Err(ExecError::NotFound { .. })
        ));
        assert_eq!(f.command_lines()[0], "ipmitool lan print 1");
        assert_eq!(f.calls().len(), 5);
    }

    #[tokio::test]
    async fn sandbox_runner_refuses_destructive_tools_on_real_devices() {
        let inner = FakeRunner::new();
        let r = SandboxRunner::new(inner.clone());
        for (prog, args) in [
            ("sgdisk", vec!["-Z", "/dev/sda"]),
            ("dd", vec!["if=/dev/zero", "of=/dev/nvme0n1", "bs=1M"]),
            ("/usr/sbin/wipefs", vec!["--all", "/dev/vda"]),
            ("efibootmgr", vec!["-v"]),
            ("reboot", vec![]),
            ("ipmitool", vec!["chassis", "power", "off"]),
            ("ip", vec!["link", "set", "eth0", "down"]),
        ] {
            let o = r.run(ExecRequest::new(prog, args.clone())).await.unwrap();
            assert_eq!(o.status, 126, "{prog} {args:?} must be refused");
        }
        for (prog, args) in [
            ("sgdisk", vec!["-Z", "/tmp/sb/disks/sda"]),
            ("dd", vec!["if=/dev/zero", "of=/tmp/sb/disks/sda", "count=1"]),
            ("lsblk", vec!["/dev/sda"]),
            ("ipmitool", vec!["lan", "print", "1"]),
            ("ip", vec!["route", "get", "10.0.0.1"]),
        ] {
            let o = r.run(ExecRequest::new(prog, args.clone())).await.unwrap();
            assert_eq!(o.status, 0, "{prog} {args:?} must pass through");
        }
        assert_eq!(inner.calls().len(), 5, "refused commands never reach the real runner");
    }

    #[tokio::test]
    async fn system_runner_captures_output_exit_code_and_timeout() {
        let r = SystemRunner;
        let o =
            r.run(ExecRequest::new("sh", ["-c", "echo out; echo err >&2; exit 3"])).await.unwrap();
        assert_eq!((o.status, o.stdout.as_str(), o.stderr.as_str()), (3, "out\n", "err\n"));
        let o = r.run(ExecRequest::new("cat", Vec::<String>::new()).stdin("piped")).await.unwrap();
        assert_eq!(o.stdout, "piped");
        let e = r
            .run(ExecRequest::new("sleep", ["5"]).timeout(Duration::from_millis(50)))
            .await
            .unwrap_err();
        assert!(matches!(e, ExecError::Timeout { .. }));
        assert!(matches!(
            r.run(ExecRequest::new("definitely-not-a-program-xyz", ["a"])).await,
            Err(ExecError::NotFound { .. })
        ));
        assert!(r.exists("sh").await);
    }
}
