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

/// How the sandbox judges one program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxRule {
    /// Reads the machine, changes nothing, whatever the arguments.
    ReadOnly,
    /// Allowed only when the first arguments are one of these (read-only sub-commands).
    Subcommands(&'static [&'static [&'static str]]),
    /// `ip`: allowed unless an argument is a verb that changes the network.
    IpShow,
    /// Operates on files: allowed only when it names a path inside the sandbox and every
    /// absolute path it names is inside the sandbox (no `/dev/` but the pseudo-devices, no
    /// PCI address).
    SandboxFiles,
    /// Only a lone `--version` (`version`, `-V`) probe.
    VersionOnly,
}

const SUB_IPMI: &[&[&str]] =
    &[&["lan", "print"], &["lan6", "print"], &["mc", "info"], &["fru", "print"]];
const SUB_UDEV: &[&[&str]] = &[&["settle"], &["info"]];
const SUB_NVME: &[&[&str]] = &[&["list"], &["version"]];

/// The sandbox's allow-list: every program the agent and its managers run, with the rule under
/// which it may run in sandbox mode (`mkfs` also covers `mkfs.<type>`). Anything not listed is
/// refused and recorded; so is a listed program whose arguments break its rule. Power and
/// boot-entry tools and container runtimes get a version probe at most. Any listed program may
/// answer a lone `--version`.
pub const SANDBOX_ALLOW_LIST: &[(&str, SandboxRule)] = &[
    ("lsblk", SandboxRule::ReadOnly),
    ("ipmitool", SandboxRule::Subcommands(SUB_IPMI)),
    ("ip", SandboxRule::IpShow),
    ("udevadm", SandboxRule::Subcommands(SUB_UDEV)),
    ("nvme", SandboxRule::SandboxFiles),
    ("smartctl", SandboxRule::SandboxFiles),
    ("hdparm", SandboxRule::SandboxFiles),
    ("sgdisk", SandboxRule::SandboxFiles),
    ("sfdisk", SandboxRule::SandboxFiles),
    ("parted", SandboxRule::SandboxFiles),
    ("partprobe", SandboxRule::SandboxFiles),
    ("wipefs", SandboxRule::SandboxFiles),
    ("mkfs", SandboxRule::SandboxFiles),
    ("mkswap", SandboxRule::SandboxFiles),
    ("mkdosfs", SandboxRule::SandboxFiles),
    ("dd", SandboxRule::SandboxFiles),
    ("shred", SandboxRule::SandboxFiles),
    ("blkdiscard", SandboxRule::SandboxFiles),
    ("qemu-img", SandboxRule::SandboxFiles),
    ("mcopy", SandboxRule::SandboxFiles),
    ("mmd", SandboxRule::SandboxFiles),
    ("mformat", SandboxRule::SandboxFiles),
    ("xorriso", SandboxRule::SandboxFiles),
    ("genisoimage", SandboxRule::SandboxFiles),
    ("mkisofs", SandboxRule::SandboxFiles),
    ("fio", SandboxRule::SandboxFiles),
    ("mstflint", SandboxRule::SandboxFiles),
    ("podman", SandboxRule::VersionOnly),
    ("docker", SandboxRule::VersionOnly),
    ("mstconfig", SandboxRule::VersionOnly),
    ("mlxconfig", SandboxRule::VersionOnly),
    ("mdadm", SandboxRule::VersionOnly),
    ("efibootmgr", SandboxRule::VersionOnly),
];

fn rule_for(prog: &str) -> Option<SandboxRule> {
    let key = if prog.starts_with("mkfs.") { "mkfs" } else { prog };
    SANDBOX_ALLOW_LIST.iter().find(|(p, _)| *p == key).map(|(_, r)| *r)
}

/// Pseudo-devices any tool may name.
const SAFE_DEVICES: &[&str] =
    &["/dev/null", "/dev/zero", "/dev/urandom", "/dev/random", "/dev/stdin", "/dev/stdout"];

/// Arguments that carry a secret in the next argument (masked in the refusal record).
const SECRET_FLAGS: &[&str] =
    &["-P", "-p", "--password", "--security-unlock", "--security-set-pass", "-k", "-K"];

/// The sandbox runner: an **allow-list** around a real runner (see [`SANDBOX_ALLOW_LIST`]).
/// A refused command never reaches the inner runner: it is logged, recorded (in memory and in
/// `<sandbox>/refused-commands.log`) and answered with exit status 126 and the reason.
#[derive(Debug, Clone)]
pub struct SandboxRunner<R> {
    inner: R,
    dir: std::path::PathBuf,
    refused: Arc<Mutex<Vec<String>>>,
}

impl<R> SandboxRunner<R> {
    /// Wrap `inner` for the sandbox rooted at `dir`.
    pub fn new(inner: R, dir: impl Into<std::path::PathBuf>) -> Self {
        Self { inner, dir: dir.into(), refused: Arc::default() }
    }

    /// Command lines refused so far (secrets masked), oldest first.
    pub fn refused(&self) -> Vec<String> {
        self.refused.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn record(&self, req: &ExecRequest, reason: &str) {
        let mut line = vec![req.program.clone()];
        let mut mask_next = false;
        for a in &req.args {
            line.push(if mask_next { "***".to_string() } else { a.clone() });
            mask_next = SECRET_FLAGS.contains(&a.as_str());
        }
        let line = line.join(" ");
        tracing::error!(command = %line, "{reason}");
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("refused-commands.log"))
        {
            use std::io::Write as _;
            let _ = writeln!(f, "{line}\t{reason}");
        }
        let mut g = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        if g.len() < 1000 {
            g.push(line);
        }
    }

    /// Why `req` may not run in the sandbox, or `None` when it may.
    pub fn refusal(&self, req: &ExecRequest) -> Option<String> {
        let prog = std::path::Path::new(&req.program)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(&req.program);
        let args: Vec<&str> = req.args.iter().map(String::as_str).collect();
        let version_probe = matches!(args.as_slice(), ["--version"] | ["version"] | ["-V"]);
        let Some(rule) = rule_for(prog) else {
            return Some(format!("sandbox: refusing {prog}: not on the sandbox allow-list"));
        };
        if version_probe {
            return None;
        }
        match rule {
            SandboxRule::ReadOnly => None,
            SandboxRule::VersionOnly => {
                Some(format!("sandbox: refusing {prog}: only a version probe is allowed"))
            }
            SandboxRule::Subcommands(allowed) => (!allowed_sub(allowed, &args)).then(|| {
                format!("sandbox: refusing {prog} {}: not a read-only form", args.join(" "))
            }),
            SandboxRule::IpShow => {
                const CHANGES: &[&str] = &[
                    "set", "add", "del", "delete", "flush", "change", "replace", "append",
                    "prepend", "restore", "up", "down", "exec",
                ];
                args.iter()
                    .any(|a| CHANGES.contains(a))
                    .then(|| "sandbox: refusing to reconfigure network interfaces".to_string())
            }
            SandboxRule::SandboxFiles if prog == "nvme" && allowed_sub(SUB_NVME, &args) => None,
            SandboxRule::SandboxFiles => self.files_refusal(prog, &args),
        }
    }

    fn files_refusal(&self, prog: &str, args: &[&str]) -> Option<String> {
        if let Some(pci) = args.iter().find(|a| is_pci_address(a)) {
            return Some(format!("sandbox: refusing {prog} on real PCI device {pci}"));
        }
        let mut inside = false;
        for a in args {
            for part in a.split(['=', ',']) {
                if !part.starts_with('/') {
                    continue;
                }
                if part.starts_with("/dev/") {
                    if SAFE_DEVICES.contains(&part) {
                        continue;
                    }
                    return Some(format!("sandbox: refusing {prog} on real device {part}"));
                }
                if !within(&self.dir, part) {
                    return Some(format!(
                        "sandbox: refusing {prog}: {part} is outside the sandbox"
                    ));
                }
                inside = true;
            }
        }
        (!inside).then(|| format!("sandbox: refusing {prog}: it names no file inside the sandbox"))
    }
}

fn allowed_sub(allowed: &[&[&str]], args: &[&str]) -> bool {
    allowed.iter().any(|sub| args.len() >= sub.len() && args[..sub.len()] == **sub)
}

/// `0000:03:00.0` or `03:00.0`: a PCI device, as firmware tools take them.
fn is_pci_address(a: &str) -> bool {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let Some((head, func)) = a.rsplit_once('.') else { return false };
    if !(func.len() == 1 && func.bytes().all(|b| (b'0'..=b'7').contains(&b))) {
        return false;
    }
    match head.split(':').collect::<Vec<_>>().as_slice() {
        [bus, dev] => hex(bus, 2) && hex(dev, 2),
        [dom, bus, dev] => hex(dom, 4) && hex(bus, 2) && hex(dev, 2),
        _ => false,
    }
}

/// Whether `path` is `dir` or below it, lexically (`..` never escapes: it is refused).
fn within(dir: &std::path::Path, path: &str) -> bool {
    let p = std::path::Path::new(path);
    if p.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return false;
    }
    p.starts_with(dir)
}

#[async_trait]
impl<R: CommandRunner> CommandRunner for SandboxRunner<R> {
    async fn run(&self, request: ExecRequest) -> Result<ExecOutput, ExecError> {
        if let Some(reason) = self.refusal(&request) {
            self.record(&request, &reason);
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
    async fn sandbox_runner_is_an_allow_list_and_records_what_it_refuses() {
        let sb = tempfile::tempdir().unwrap();
        let disk = sb.path().join("disks/sda");
        let disk = disk.to_str().unwrap();
        let inner = FakeRunner::new();
        let r = SandboxRunner::new(inner.clone(), sb.path());
        let of = format!("of={disk}");
        let refused: Vec<(&str, Vec<&str>)> = vec![
            ("sgdisk", vec!["-Z", "/dev/sda"]),
            ("dd", vec!["if=/dev/zero", "of=/dev/nvme0n1", "bs=1M"]),
            ("/usr/sbin/wipefs", vec!["--all", "/dev/vda"]),
            ("sgdisk", vec!["-Z", "/etc/passwd"]),
            ("sgdisk", vec!["-Z", "relative.img"]),
            ("efibootmgr", vec!["-v"]),
            ("reboot", vec![]),
            ("ipmitool", vec!["chassis", "power", "off"]),
            ("ipmitool", vec!["-I", "lanplus", "raw", "0x06", "0x02"]),
            ("ip", vec!["link", "set", "eth0", "down"]),
            // The holes the blocklist had: the tool the manager really runs, PCI addresses,
            // container runtimes, and anything nobody thought of.
            ("mstconfig", vec!["-d", "0000:03:00.0", "-y", "set", "SRIOV_EN=1"]),
            ("mstflint", vec!["-d", "0000:03:00.0", "-i", "/tmp/fw.bin", "burn"]),
            ("mstflint", vec!["-d", "0000:03:00.0", "-qq", "query"]),
            ("mstflint", vec!["-d", "03:00.0", "-i", disk, "burn"]),
            ("podman", vec!["run", "--privileged", "quay.io/x/y"]),
            ("docker", vec!["pull", "x"]),
            ("rm", vec!["-rf", "/"]),
            ("sh", vec!["-c", "echo hi"]),
            ("hdparm", vec!["--user-master", "u", "--security-unlock", "hunter2", "/dev/sda"]),
        ];
        for (prog, args) in &refused {
            let o = r.run(ExecRequest::new(*prog, args.clone())).await.unwrap();
            assert_eq!(o.status, 126, "{prog} {args:?} must be refused");
            assert!(o.stderr.starts_with("sandbox: refusing"), "{}", o.stderr);
        }
        let allowed: Vec<(&str, Vec<&str>)> = vec![
            ("sgdisk", vec!["-Z", disk]),
            ("dd", vec!["if=/dev/zero", of.as_str(), "count=1"]),
            ("mkfs.vfat", vec!["-n", "ESP", disk]),
            ("lsblk", vec!["/dev/sda"]),
            ("ipmitool", vec!["lan", "print", "1"]),
            ("ip", vec!["route", "get", "10.0.0.1"]),
            ("ip", vec!["-j", "addr", "show"]),
            ("podman", vec!["--version"]),
            ("udevadm", vec!["settle"]),
        ];
        for (prog, args) in &allowed {
            let o = r.run(ExecRequest::new(*prog, args.clone())).await.unwrap();
            assert_eq!(o.status, 0, "{prog} {args:?} must pass through: {}", o.stderr);
        }
        assert_eq!(inner.calls().len(), allowed.len(), "refused commands never reach the runner");
        let record = r.refused();
        assert_eq!(record.len(), refused.len());
        assert!(record.iter().any(|l| l.starts_with("mstconfig -d 0000:03:00.0")), "{record:?}");
        let log = std::fs::read_to_string(sb.path().join("refused-commands.log")).unwrap();
        assert_eq!(log.lines().count(), refused.len());
        assert!(!log.contains("hunter2") && log.contains("--security-unlock ***"), "{log}");
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
