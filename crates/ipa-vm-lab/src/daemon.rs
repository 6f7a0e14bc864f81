//! A process the lab started: its own process group, its output in a log file, stopped by PID
//! (SIGTERM to the group, up to 10 s, then SIGKILL).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::LabError;

/// A running child.
#[derive(Debug)]
pub struct Daemon {
    /// What it is (for messages).
    pub name: String,
    /// Its log (stdout and stderr).
    pub log: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// Spawn `cmd` in a new process group, output to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Self, LabError> {
        let out = std::fs::File::create(log)
            .map_err(|e| LabError::Setup(format!("{name}: log {}: {e}", log.display())))?;
        let err = out.try_clone().map_err(|e| LabError::Setup(e.to_string()))?;
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe; it makes the daemon die with
        // the test thread that started it if the test process is killed before teardown.
        unsafe {
            cmd.pre_exec(|| {
                libc_prctl_pdeathsig();
                Ok(())
            });
        }
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| LabError::Setup(format!("{name}: spawn: {e}")))?;
        Ok(Self { name: name.into(), log: log.to_path_buf(), child: Some(child) })
    }

    /// PID.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Fail with the log's tail if the process has exited.
    pub fn check_alive(&mut self) -> Result<(), LabError> {
        if self.alive() {
            return Ok(());
        }
        Err(LabError::Setup(format!("{} exited early:\n{}", self.name, tail(&self.log, 30))))
    }

    /// Stop it (idempotent).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let group = Pid::from_raw(-(child.id() as i32));
        let _ = kill(group, Signal::SIGTERM);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = kill(group, Signal::SIGKILL);
        let _ = child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let t = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = t.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Poll `f` every `every` until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Result<T, LabError> {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if t0.elapsed() >= timeout {
            return Err(LabError::Timeout(format!("{what} (waited {timeout:?})")));
        }
        std::thread::sleep(every);
    }
}

fn libc_prctl_pdeathsig() {
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
}
