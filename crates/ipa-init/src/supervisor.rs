//! Long-lived children (agent, DHCP clients, debug shell): start, restart with backoff,
//! reap. The state machine ([`Supervisor`]) is pure and driven by a [`Spawner`] and exit
//! notifications, so tests use a fake spawner; [`reap_children`] is the real `waitpid` loop.

use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Exponential backoff: `initial`, doubling, capped at `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff { initial, max, next: initial }
    }

    /// The delay to use now; the following one doubles (up to `max`).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// Back to `initial` (after a stable run).
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// Restart behaviour of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    pub initial: Duration,
    pub max: Duration,
    /// Give up after this many consecutive failed runs (`None`: never).
    pub max_failures: Option<u32>,
    /// A run at least this long resets the backoff and the failure count.
    pub stable_after: Duration,
}

impl RestartPolicy {
    /// The agent: 1 s doubling to 30 s, forever.
    pub const AGENT: RestartPolicy = RestartPolicy {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(30),
        max_failures: None,
        stable_after: Duration::from_secs(60),
    };
    /// DHCP clients: 1 s doubling to 30 s, giving up after 10 quick failures in a row.
    pub const DHCP: RestartPolicy = RestartPolicy {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(30),
        max_failures: Some(10),
        stable_after: Duration::from_secs(60),
    };
    /// The debug shell: respawned like busybox's `respawn`, 1 s doubling to 30 s.
    pub const SHELL: RestartPolicy = RestartPolicy::AGENT;
}

/// Where a child's standard stream goes.
#[derive(Debug, Clone)]
pub enum Io {
    Null,
    Inherit,
    /// Appended to this file (created 0640).
    Append(PathBuf),
    /// A duplicate of this descriptor (the agent log pipe).
    Fd(Arc<OwnedFd>),
    /// This terminal device, opened read-write (`O_NOCTTY` in init).
    Device(PathBuf),
}

/// How to start a child. The environment is exactly `env` (cleared otherwise).
#[derive(Debug, Clone)]
pub struct CommandSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub stdin: Io,
    pub stdout: Io,
    pub stderr: Io,
    /// New session with stdin as controlling terminal (the debug shell); otherwise the
    /// child gets its own process group.
    pub controlling_tty: bool,
}

impl CommandSpec {
    /// A command with no environment and all streams on /dev/null.
    pub fn new(program: impl Into<PathBuf>, args: Vec<String>) -> Self {
        CommandSpec {
            program: program.into(),
            args,
            env: Vec::new(),
            stdin: Io::Null,
            stdout: Io::Null,
            stderr: Io::Null,
            controlling_tty: false,
        }
    }

    /// The command line, for messages.
    pub fn display(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(a);
        }
        s
    }
}

/// Starts processes.
pub trait Spawner {
    /// Start `spec`, returning the child's pid. The caller reaps it.
    fn spawn(&mut self, spec: &CommandSpec) -> io::Result<u32>;
}

/// The real spawner (`std::process::Command`, with [`unblock_signals_on_exec`]).
#[derive(Debug, Default)]
pub struct RealSpawner;

/// Clear the signal mask in the child before `exec`. PID 1 blocks SIGTERM, SIGCHLD & co.
/// (they are read from a signalfd) and a blocked mask survives `exec`: without this the
/// agent and the DHCP clients would never see the SIGTERM of a shutdown.
pub fn unblock_signals_on_exec(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls
    // sigemptyset(3) and sigprocmask(2), which are async-signal-safe, on a local set.
    unsafe {
        cmd.pre_exec(|| {
            let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(set.as_mut_ptr());
            libc::sigprocmask(libc::SIG_SETMASK, set.as_ptr(), std::ptr::null_mut());
            Ok(())
        });
    }
}

fn open_io(io: &Io) -> io::Result<Stdio> {
    Ok(match io {
        Io::Null => Stdio::null(),
        Io::Inherit => Stdio::inherit(),
        Io::Append(p) => OpenOptions::new().create(true).append(true).mode(0o640).open(p)?.into(),
        Io::Fd(fd) => fd.try_clone()?.into(),
        Io::Device(p) => {
            OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOCTTY).open(p)?.into()
        }
    })
}

impl Spawner for RealSpawner {
    fn spawn(&mut self, spec: &CommandSpec) -> io::Result<u32> {
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .current_dir("/")
            .stdin(open_io(&spec.stdin)?)
            .stdout(open_io(&spec.stdout)?)
            .stderr(open_io(&spec.stderr)?);
        unblock_signals_on_exec(&mut cmd);
        if spec.controlling_tty {
            // SAFETY: the closure runs in the forked child before exec and only calls the
            // async-signal-safe setsid(2) and ioctl(2).
            unsafe {
                cmd.pre_exec(|| {
                    libc::setsid();
                    // Best effort: /dev/console itself cannot be a controlling terminal.
                    libc::ioctl(0, libc::TIOCSCTTY, 1);
                    Ok(())
                });
            }
        } else {
            cmd.process_group(0);
        }
        let child = cmd.spawn()?;
        // Dropping a std Child neither kills nor waits: PID 1 reaps it with waitpid(-1).
        Ok(child.id())
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Exit::Code(c) => write!(f, "exit status {c}"),
            Exit::Signal(s) => {
                let name = nix::sys::signal::Signal::try_from(s).map(|s| s.as_str()).unwrap_or("?");
                write!(f, "killed by signal {s} ({name})")
            }
        }
    }
}

/// A service's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// To be started at this time.
    Pending(Instant),
    Running {
        pid: u32,
        since: Instant,
    },
    /// Too many failures in a row.
    GaveUp,
    /// Shutting down: not restarted.
    Stopped,
}

/// One supervised child.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub spec: CommandSpec,
    pub policy: RestartPolicy,
    pub state: State,
    backoff: Backoff,
    failures: u32,
    /// How many times it was started.
    pub starts: u32,
}

/// Something worth a console line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Started { name: String, pid: u32 },
    SpawnFailed { name: String, error: String, retry_in: Option<Duration> },
    Exited { name: String, pid: u32, exit: Exit, retry_in: Option<Duration> },
}

fn retry_text(retry_in: &Option<Duration>) -> String {
    match retry_in {
        Some(d) => format!("restarting in {} s", d.as_secs_f64()),
        None => "not restarting".into(),
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Started { name, pid } => write!(f, "started {name} (pid {pid})"),
            Event::SpawnFailed { name, error, retry_in } => {
                write!(f, "cannot start {name}: {error}; {}", retry_text(retry_in))
            }
            Event::Exited { name, pid, exit, retry_in } => {
                write!(f, "{name} (pid {pid}) ended: {exit}; {}", retry_text(retry_in))
            }
        }
    }
}

/// The set of supervised services.
#[derive(Debug, Default)]
pub struct Supervisor {
    pub services: Vec<Service>,
    stopping: bool,
}

impl Supervisor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a service, to be started at `start_at`.
    pub fn add(
        &mut self,
        name: impl Into<String>,
        spec: CommandSpec,
        policy: RestartPolicy,
        start_at: Instant,
    ) {
        self.services.push(Service {
            name: name.into(),
            spec,
            policy,
            state: if self.stopping { State::Stopped } else { State::Pending(start_at) },
            backoff: Backoff::new(policy.initial, policy.max),
            failures: 0,
            starts: 0,
        });
    }

    /// Make a service that has not started yet start no earlier than `at`. Running,
    /// stopped or given-up services, and one already due later, are left alone. True when
    /// its start moved.
    pub fn postpone(&mut self, name: &str, at: Instant) -> bool {
        match self.services.iter_mut().find(|s| s.name == name && s.starts == 0) {
            Some(Service { state: State::Pending(due), .. }) if *due < at => {
                *due = at;
                true
            }
            _ => false,
        }
    }

    /// Is a service of that name known?
    pub fn has(&self, name: &str) -> bool {
        self.services.iter().any(|s| s.name == name)
    }

    /// Record a failed run (exit or spawn failure) and decide on a restart.
    fn failed(s: &mut Service, ran: Duration, now: Instant, stopping: bool) -> Option<Duration> {
        if stopping {
            s.state = State::Stopped;
            return None;
        }
        if ran >= s.policy.stable_after {
            s.backoff.reset();
            s.failures = 0;
        }
        s.failures += 1;
        if s.policy.max_failures.is_some_and(|m| s.failures >= m) {
            s.state = State::GaveUp;
            return None;
        }
        let d = s.backoff.next_delay();
        s.state = State::Pending(now + d);
        Some(d)
    }

    /// Start every service that is due.
    pub fn start_due(&mut self, now: Instant, spawner: &mut dyn Spawner) -> Vec<Event> {
        let mut events = Vec::new();
        let stopping = self.stopping;
        for s in &mut self.services {
            let State::Pending(at) = s.state else {
                continue;
            };
            if at > now {
                continue;
            }
            match spawner.spawn(&s.spec) {
                Ok(pid) => {
                    s.starts += 1;
                    s.state = State::Running { pid, since: now };
                    events.push(Event::Started { name: s.name.clone(), pid });
                }
                Err(e) => {
                    let retry_in = Self::failed(s, Duration::ZERO, now, stopping);
                    events.push(Event::SpawnFailed {
                        name: s.name.clone(),
                        error: format!("{}: {e}", s.spec.program.display()),
                        retry_in,
                    });
                }
            }
        }
        events
    }

    /// A child exited; `None` when it is not one of ours (an orphan).
    pub fn on_exit(&mut self, pid: u32, exit: Exit, now: Instant) -> Option<Event> {
        let stopping = self.stopping;
        let s = self
            .services
            .iter_mut()
            .find(|s| matches!(s.state, State::Running { pid: p, .. } if p == pid))?;
        let State::Running { since, .. } = s.state else { unreachable!() };
        let retry_in = Self::failed(s, now.saturating_duration_since(since), now, stopping);
        Some(Event::Exited { name: s.name.clone(), pid, exit, retry_in })
    }

    /// When the next pending service is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.services
            .iter()
            .filter_map(|s| match s.state {
                State::Pending(at) => Some(at),
                _ => None,
            })
            .min()
    }

    /// Stop restarting anything (shutdown).
    pub fn stop(&mut self) {
        self.stopping = true;
        for s in &mut self.services {
            if matches!(s.state, State::Pending(_)) {
                s.state = State::Stopped;
            }
        }
    }

    /// The pid of a running service.
    pub fn pid_of(&self, name: &str) -> Option<u32> {
        self.services.iter().find_map(|s| match s.state {
            State::Running { pid, .. } if s.name == name => Some(pid),
            _ => None,
        })
    }
}

/// Reap every exited child (`waitpid(-1, WNOHANG)` until none is left), telling the
/// supervisor about its own. Returns the supervisor's events and the number of orphans
/// reaped.
pub fn reap_children(sup: &mut Supervisor, now: Instant) -> (Vec<Event>, usize) {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    let mut events = Vec::new();
    let mut orphans = 0;
    loop {
        let (pid, exit) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, Exit::Code(code)),
            Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, Exit::Signal(sig as i32)),
            Ok(WaitStatus::StillAlive) | Err(_) => break,
            Ok(_) => continue,
        };
        match sup.on_exit(pid.as_raw() as u32, exit, now) {
            Some(e) => events.push(e),
            None => orphans += 1,
        }
    }
    (events, orphans)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_sequence() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let seq: Vec<u64> = (0..8).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(seq, vec![1, 2, 4, 8, 16, 30, 30, 30]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
        let mut ms = Backoff::new(Duration::from_millis(250), Duration::from_secs(1));
        let seq: Vec<u128> = (0..4).map(|_| ms.next_delay().as_millis()).collect();
        assert_eq!(seq, vec![250, 500, 1000, 1000]);
    }

    #[derive(Default)]
    struct FakeSpawner {
        next_pid: u32,
        fail: bool,
        spawned: Vec<String>,
    }

    impl Spawner for FakeSpawner {
        fn spawn(&mut self, spec: &CommandSpec) -> io::Result<u32> {
            if self.fail {
                return Err(io::Error::from_raw_os_error(libc::ENOENT));
            }
            self.next_pid += 1;
            self.spawned.push(spec.display());
            Ok(100 + self.next_pid)
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn postponing_moves_only_a_first_start_that_is_due_earlier() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new();
        let mut sp = FakeSpawner::default();
        let spec = || CommandSpec::new("/usr/sbin/dhcpcd", vec![]);
        sup.add("dhcpcd eth0", spec(), RestartPolicy::DHCP, t0 + secs(2));
        sup.add("dhcpcd eth1", spec(), RestartPolicy::DHCP, t0 + secs(9));
        sup.add("udhcpc eth0", spec(), RestartPolicy::DHCP, t0);
        assert!(sup.postpone("dhcpcd eth0", t0 + secs(5)));
        assert!(!sup.postpone("dhcpcd eth1", t0 + secs(5)), "already due later");
        assert!(!sup.postpone("nosuch", t0 + secs(5)));
        sup.start_due(t0, &mut sp);
        assert!(!sup.postpone("udhcpc eth0", t0 + secs(5)), "running");
        assert!(sup.start_due(t0 + secs(4), &mut sp).is_empty(), "dhcpcd eth0 moved to 5 s");
        assert_eq!(sup.next_due(), Some(t0 + secs(5)));
        assert_eq!(sup.start_due(t0 + secs(5), &mut sp).len(), 1);
        // A restart after an exit keeps its backoff: only a first start is postponed.
        let pid = sup.pid_of("dhcpcd eth0").unwrap();
        sup.on_exit(pid, Exit::Code(1), t0 + secs(6));
        assert!(!sup.postpone("dhcpcd eth0", t0 + secs(60)));
    }

    #[test]
    fn agent_restarts_with_backoff_forever_and_resets_after_a_stable_run() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new();
        let mut sp = FakeSpawner::default();
        sup.add(
            "agent",
            CommandSpec::new("/usr/bin/ipa-agent", vec!["--debug".into()]),
            RestartPolicy::AGENT,
            t0,
        );
        assert_eq!(sup.next_due(), Some(t0));
        let ev = sup.start_due(t0, &mut sp);
        assert_eq!(ev, vec![Event::Started { name: "agent".into(), pid: 101 }]);
        assert_eq!(sp.spawned, vec!["/usr/bin/ipa-agent --debug"]);
        assert_eq!(sup.pid_of("agent"), Some(101));
        assert_eq!(sup.next_due(), None);

        // Quick deaths: 1, 2, 4, 8, 16, 30, 30 s ...
        let mut now = t0;
        let mut delays = Vec::new();
        for _ in 0..7 {
            let pid = sup.pid_of("agent").unwrap();
            now += secs(1);
            let Some(Event::Exited { retry_in: Some(d), exit, .. }) =
                sup.on_exit(pid, Exit::Code(1), now)
            else {
                panic!()
            };
            assert_eq!(exit, Exit::Code(1));
            delays.push(d.as_secs());
            assert_eq!(sup.next_due(), Some(now + d));
            assert!(sup.start_due(now + d - Duration::from_millis(1), &mut sp).is_empty());
            now += d;
            assert_eq!(sup.start_due(now, &mut sp).len(), 1);
        }
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 30, 30]);
        // A run of over a minute resets the backoff.
        let pid = sup.pid_of("agent").unwrap();
        now += secs(120);
        let ev = sup.on_exit(pid, Exit::Signal(libc::SIGKILL), now).unwrap();
        assert!(matches!(ev, Event::Exited { retry_in: Some(d), .. } if d == secs(1)));
        assert_eq!(
            ev.to_string(),
            format!("agent (pid {pid}) ended: killed by signal 9 (SIGKILL); restarting in 1 s")
        );
        // Orphans are not ours.
        assert_eq!(sup.on_exit(4242, Exit::Code(0), now), None);
    }

    #[test]
    fn children_start_with_an_empty_signal_mask() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("status");
        // Block SIGUSR1 in this (test) thread, as init blocks its signals; the child must
        // not inherit it.
        let mut block = nix::sys::signal::SigSet::empty();
        block.add(nix::sys::signal::Signal::SIGUSR1);
        let mut old = nix::sys::signal::SigSet::empty();
        nix::sys::signal::pthread_sigmask(
            nix::sys::signal::SigmaskHow::SIG_BLOCK,
            Some(&block),
            Some(&mut old),
        )
        .unwrap();
        let spec = CommandSpec {
            stdout: Io::Append(out.clone()),
            ..CommandSpec::new("/bin/sh", vec!["-c".into(), "grep SigBlk /proc/self/status".into()])
        };
        let pid = RealSpawner.spawn(&spec);
        nix::sys::signal::pthread_sigmask(
            nix::sys::signal::SigmaskHow::SIG_SETMASK,
            Some(&old),
            None,
        )
        .unwrap();
        let pid = nix::unistd::Pid::from_raw(pid.unwrap() as i32);
        let status = nix::sys::wait::waitpid(pid, None).unwrap();
        assert_eq!(status, nix::sys::wait::WaitStatus::Exited(pid, 0));
        let text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(text.split_whitespace().nth(1), Some("0000000000000000"), "{text}");
    }

    #[test]
    fn dhcp_clients_give_up_after_repeated_failures_and_nothing_restarts_when_stopping() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new();
        let mut sp = FakeSpawner { fail: true, ..Default::default() };
        sup.add("udhcpc eth0", CommandSpec::new("/sbin/udhcpc", vec![]), RestartPolicy::DHCP, t0);
        let mut now = t0;
        let mut failures = 0;
        loop {
            let ev = sup.start_due(now, &mut sp);
            assert_eq!(ev.len(), 1);
            failures += 1;
            match &ev[0] {
                Event::SpawnFailed { retry_in: Some(d), error, .. } => {
                    assert!(error.contains("/sbin/udhcpc"), "{error}");
                    now += *d;
                }
                Event::SpawnFailed { retry_in: None, .. } => break,
                e => panic!("{e:?}"),
            }
        }
        assert_eq!(failures, 10);
        assert_eq!(sup.services[0].state, State::GaveUp);
        assert_eq!(sup.next_due(), None);

        // Shutdown: running services are not restarted, pending ones never start.
        let mut sp = FakeSpawner::default();
        sup.add("agent", CommandSpec::new("/a", vec![]), RestartPolicy::AGENT, now);
        sup.add("shell", CommandSpec::new("/bin/sh", vec![]), RestartPolicy::SHELL, now + secs(5));
        sup.start_due(now, &mut sp);
        sup.stop();
        let pid = sup.pid_of("agent").unwrap();
        let ev = sup.on_exit(pid, Exit::Code(0), now).unwrap();
        assert!(matches!(ev, Event::Exited { retry_in: None, .. }));
        assert!(sup.start_due(now + secs(60), &mut sp).is_empty());
        assert_eq!(sup.services[2].state, State::Stopped);
    }
}
