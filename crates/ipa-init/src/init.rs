//! PID 1 itself: the boot sequence and the event loop. Only [`run`] is public, and `main`
//! calls it only when `getpid() == 1`.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write as _};
use std::net::IpAddr;
use std::os::fd::{AsFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::mount::MsFlags;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;

use crate::cmdline::{BootConfig, Cmdline, IpParam, StaticIp};
use crate::modules::{
    Coldplug, FinitModuleLoader, ModuleIndex, NetworkFirst, Report, parse_module_list_split,
    scan_devices, scan_modaliases,
};
use crate::net::{self, Assignment, Dhcp6Client, NetWait, NicConfig, Stage, Tool, WaitFor};
use crate::power::PowerAction;
use crate::supervisor::{CommandSpec, Io, RealSpawner, RestartPolicy, Supervisor, reap_children};
use crate::uevent::UeventSocket;
use crate::{say, sys};

/// PATH for every child.
pub const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";
const PATH_DIRS: &[&str] = &["/usr/sbin", "/usr/bin", "/sbin", "/bin"];
/// The fixed module list the builder writes.
pub const MODULE_LIST: &str = "/etc/ipa-init/modules";
/// The agent's log file.
pub const AGENT_LOG: &str = "/run/ipa-agent.log";
const AGENT_LOG_MAX: u64 = 16 << 20;
const MAX_COLDPLUG_PASSES: usize = 5;
const SETTLE: Duration = Duration::from_millis(200);
/// Coldplug by uevents: a round ends after this long without an event...
const UEVENT_QUIET: Duration = Duration::from_millis(60);
/// ...or after this long in all.
const UEVENT_MAX: Duration = Duration::from_millis(1500);
const MAX_UEVENT_ROUNDS: usize = 8;
/// Nice value of the background module loader (and hotplug) thread.
const BACKGROUND_NICE: i32 = 19;
/// How long the hotplug thread's poll sleeps between wake-ups.
const HOTPLUG_POLL: Duration = Duration::from_secs(60);
const SYSFS_DEPTH: usize = 24;
const BOOTIF_GRACE: Duration = Duration::from_secs(5);
/// How long network start waits for the first NIC with carrier.
const CARRIER_WAIT: Duration = Duration::from_secs(3);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

fn signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGPWR,
    ] {
        set.add(s);
    }
    set
}

/// Run as PID 1. Never returns: on a fatal error it falls back to a minimal loop that still
/// reaps children and obeys power signals.
pub fn run() -> ! {
    // Signals first, so none is lost: blocked signals queue even for init.
    let set = signals();
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
    let result = std::panic::catch_unwind(|| boot(&set));
    match result {
        Ok(Err(e)) => say!("FATAL: {e}"),
        Err(_) => say!("FATAL: ipa-init panicked"),
        Ok(Ok(never)) => match never {},
    }
    emergency_loop(&set)
}

enum Never {}

/// Fallback after a fatal error: a shell on the console if there is one, reaping, and the
/// power signals.
fn emergency_loop(set: &SigSet) -> ! {
    say!("entering emergency mode: reaping children, obeying power signals");
    if Path::new("/bin/sh").exists() {
        let _ = Command::new("/bin/sh").env_clear().env("PATH", PATH).env("HOME", "/root").spawn();
    }
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => {
                let mut sup = Supervisor::new();
                let _ = reap_children(&mut sup, Instant::now());
            }
            Ok(sig) => {
                if let Some(action) = PowerAction::from_signal(sig) {
                    say!("{action} requested ({sig})");
                    let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
                    std::thread::sleep(Duration::from_secs(2));
                    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
                    nix::unistd::sync();
                    let _ = nix::sys::reboot::reboot(action.reboot_mode());
                }
            }
            Err(_) => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

fn boot(set: &SigSet) -> Result<Never, crate::Error> {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let _ = std::env::set_current_dir("/");
    say!("ipa-init {} starting as PID 1", env!("CARGO_PKG_VERSION"));

    // 1. Filesystems and the console.
    mount_early();
    let _ = nix::sys::reboot::set_cad_enabled(false);
    let cmdline = Cmdline::parse(&sys::read("/proc/cmdline").unwrap_or_default());
    let cfg = BootConfig::from_cmdline(&cmdline);
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    say!("kernel {release}; {}", plan_summary(&cfg));
    for w in &cfg.warnings {
        say!("warning: {w}");
    }

    let sfd = SignalFd::with_flags(set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| crate::Error::sys("signalfd", e))?;

    // 2. Kernel modules: the network controllers' drivers now, the others on a thread.
    let modules = load_network_drivers(&release, &cfg);
    let mut init = Init::new(cfg, sfd, None);
    match modules {
        None => mount_late(),
        Some(m) => match ModulesThread::start(m, init.cfg.modules.clone()) {
            Ok(t) => init.modules = Some(t),
            Err((c, background)) => {
                init.coldplug = Some(c);
                init.background = background;
            }
        },
    }

    // 3. Network (continues in the event loop): now when phase 1 brought a wired NIC, else
    // once the other modules are loaded (a NIC that is not a PCI network controller).
    if init.modules.is_none()
        || init.cfg.net.is_off()
        || !net::discover_wired_nics(Path::new("/sys")).is_empty()
    {
        init.start_network();
    } else {
        say!("no wired NIC yet: the network starts once the other modules are loaded");
        init.net_deferred = true;
    }

    // 4.-6. Agent (once the network is ready and the modules are loaded), reaping, power:
    // the event loop.
    init.event_loop()
}

fn plan_summary(cfg: &BootConfig) -> String {
    let n = &cfg.net;
    let ip = if n.ip.is_empty() {
        "dhcp+dhcp6 on all wired NICs".to_string()
    } else if n.is_off() {
        "ip=off".to_string()
    } else {
        format!("{} ip= parameter(s)", n.ip.len())
    };
    let bootif = n.bootif.map(|m| m.to_string()).unwrap_or_else(|| "none".into());
    format!(
        "BOOTIF {bootif}; network {ip}; wait {} s; agent {}{}",
        n.timeout.as_secs_f64(),
        cfg.agent.path,
        if cfg.shell { "; debug shell" } else { "" }
    )
}

fn mount_early() {
    let mut mounted = Vec::new();
    for m in sys::EARLY_MOUNTS {
        match sys::mount_fs(m.fstype, m.target, m.flags, m.data) {
            Ok(true) => mounted.push(m.target),
            Ok(false) => mounted.push(m.target),
            Err(e) if m.fstype == "devtmpfs" => {
                say!("warning: {e}; using a tmpfs /dev");
                let _ = sys::mount_fs("tmpfs", "/dev", MsFlags::MS_NOSUID, Some("mode=0755"));
            }
            Err(e) => say!("warning: {e}"),
        }
        if m.target == "/dev" {
            let made = sys::ensure_dev_nodes();
            if sys::ensure_std_fds() {
                say!("reopened standard descriptors on /dev/console");
            }
            if !made.is_empty() {
                say!("created {}", made.join(" "));
            }
        }
    }
    say!("mounted {}", mounted.join(" "));
    for d in ["/etc", "/root", "/var/log", "/var/lib", net::RUN_DIR] {
        sys::mkdir_quiet(d);
    }
    sys::mkdir_quiet(&format!("{}/resolv.d", net::RUN_DIR));
    if !Path::new("/etc/hosts").exists() {
        let _ = fs::write("/etc/hosts", "127.0.0.1 localhost\n::1 localhost\n");
    }
}

fn mount_late() {
    if Path::new("/sys/firmware/efi").exists() {
        match sys::mount_fs(
            "efivarfs",
            "/sys/firmware/efi/efivars",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None,
        ) {
            Ok(_) => say!("UEFI boot: mounted /sys/firmware/efi/efivars"),
            Err(e) => say!("warning: UEFI boot but {e}"),
        }
    }
    if Path::new("/sys/kernel/debug").exists() {
        let _ = sys::mount_fs(
            "debugfs",
            "/sys/kernel/debug",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None,
        );
    }
}

fn print_report(what: &str, r: &Report) {
    // Drivers whose init finds no hardware (cpufreq, EDAC, ... on a VM) are normal.
    let enodev = io::Error::from_raw_os_error(libc::ENODEV).to_string();
    let (quiet, loud): (Vec<_>, Vec<_>) = r.failed.iter().partition(|f| f.reason == enodev);
    if !quiet.is_empty() {
        let names: Vec<&str> = quiet.iter().map(|f| f.module.as_str()).collect();
        say!("{what}: no device for {}", names.join(" "));
    }
    for f in loud {
        say!("module {}: {}", f.module, f.reason);
    }
    if !r.unknown.is_empty() {
        say!("{what}: unknown modules: {}", r.unknown.join(" "));
    }
}

fn print_wrapped(prefix: &str, items: &[String]) {
    let mut line = String::new();
    for it in items {
        if line.len() + it.len() > 90 {
            say!("{prefix}{line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(it);
    }
    if !line.is_empty() {
        say!("{prefix}{line}");
    }
}

/// Kernel modules between the two loading phases: what [`load_network_drivers`] leaves for
/// [`load_other_modules`].
struct Modules {
    c: Coldplug<FinitModuleLoader>,
    uevents: Option<UeventSocket>,
    /// Modaliases seen so far (the sysfs walk, phase 1's uevents) that are not network
    /// devices'.
    rest: Vec<String>,
    /// How many devices the sysfs walk found.
    devices: usize,
    t0: Instant,
}

/// Phase 1 of module loading: the drivers of the network controllers (PCI class 0x02) and of
/// the devices they create (virtio_pci's `virtio0` under a virtio-net function gets
/// virtio_net), until every controller has a network interface, so DHCP can start while
/// [`load_other_modules`] loads the rest. None when there is no module index.
fn load_network_drivers(release: &str, cfg: &BootConfig) -> Option<Modules> {
    let dir = PathBuf::from("/lib/modules").join(release);
    let index = match ModuleIndex::load(&dir) {
        Ok(i) => i,
        Err(e) => {
            say!("warning: {e}; no modules loaded");
            return None;
        }
    };
    let t0 = Instant::now();
    say!("modules: {} in {}", index.len(), dir.display());
    let mut c = Coldplug::new(index, FinitModuleLoader::default(), cfg.modules.clone());
    // Opened before the sysfs walk, so a device that appears during it is seen by one or the
    // other (a module found twice is loaded once).
    let uevents = match UeventSocket::open() {
        Ok(u) => Some(u),
        Err(e) => {
            say!("warning: no uevent socket ({e}); settling by sysfs passes");
            None
        }
    };
    let devices = scan_devices(Path::new("/sys/devices"), SYSFS_DEPTH);
    let mut first = NetworkFirst::default();
    let (net, mut rest) = first.split(&devices);
    if !net.is_empty() {
        let r = c.coldplug(&net);
        say!(
            "network drivers: {} controllers, {} modules: {}",
            first.roots().len(),
            r.loaded.len(),
            r.loaded.join(" ")
        );
        print_report("coldplug", &r);
    }
    // The devices those drivers created announce themselves (virtio0 under a virtio-net
    // function); their drivers are loaded as soon as their event is read, the others'
    // events are kept for phase 2. Done when every controller has an interface, or when a
    // quiet window brings nothing (a controller without a working driver).
    if let Some(u) = uevents.as_ref().filter(|_| !first.roots().is_empty()) {
        let until = Instant::now() + UEVENT_MAX;
        while !first.all_have_netdev(Path::new("/sys")) && Instant::now() < until {
            match u.poll_devices(UEVENT_QUIET) {
                Ok((_, 0)) => break,
                Ok((found, _)) => {
                    let (net, other) = first.split(&found);
                    for m in other {
                        if !rest.contains(&m) {
                            rest.push(m);
                        }
                    }
                    if net.is_empty() {
                        continue;
                    }
                    let r = c.coldplug(&net);
                    if !r.loaded.is_empty() {
                        say!("network drivers: {} modules: {}", r.loaded.len(), r.loaded.join(" "));
                    }
                    print_report("coldplug", &r);
                }
                Err(e) => {
                    // Events may be lost: phase 2 walks sysfs again.
                    say!("warning: uevents: {e}");
                    rest = scan_modaliases(Path::new("/sys/devices"), SYSFS_DEPTH);
                    break;
                }
            }
        }
    }
    Some(Modules { c, uevents, rest, devices: devices.len(), t0 })
}

/// Phase 2 of module loading: every other device's driver (coldplug), the foreground names
/// of the module list, then uevent rounds (or sysfs passes) until nothing new loads; mounts
/// efivarfs. Returns the coldplug state and the background loader to start with the agent.
fn load_other_modules(
    m: Modules,
    plan: &crate::cmdline::ModulePlan,
) -> (Coldplug<FinitModuleLoader>, Option<BackgroundModules>) {
    let Modules { mut c, uevents, rest, devices, t0 } = m;
    let sysfs_devices = Path::new("/sys/devices");
    let mut pass = 1;
    let r = c.coldplug(&rest);
    say!("coldplug pass 1: {devices} devices, {} modules", r.loaded.len());
    print_report("coldplug", &r);

    let (mut names, background) =
        sys::read(MODULE_LIST).map(|t| parse_module_list_split(&t)).unwrap_or_default();
    names.extend(plan.extra.iter().cloned());
    if !names.is_empty() {
        let r = c.load_names(&names);
        say!("module list: {} names, {} modules", names.len(), r.loaded.len());
        print_report("module list", &r);
    }
    let mut last_loaded = uevents.is_none();
    if let Some(u) = &uevents {
        // Each round: the devices the last modules created announce themselves; load their
        // drivers; stop when a quiet window brings nothing new to load.
        for round in 1..=MAX_UEVENT_ROUNDS {
            match u.settle(UEVENT_QUIET, UEVENT_MAX) {
                Ok(aliases) => {
                    let r = c.coldplug(&aliases);
                    say!("uevents {round}: {} devices, {} modules", aliases.len(), r.loaded.len());
                    print_report("coldplug", &r);
                    if r.loaded.is_empty() {
                        break;
                    }
                }
                Err(e) => {
                    say!("warning: uevents: {e}; settling by sysfs passes");
                    last_loaded = true;
                    break;
                }
            }
        }
    }
    while pass < MAX_COLDPLUG_PASSES && last_loaded {
        pass += 1;
        std::thread::sleep(SETTLE);
        let aliases = scan_modaliases(sysfs_devices, SYSFS_DEPTH);
        let r = c.coldplug(&aliases);
        say!("coldplug pass {pass}: {} devices, {} modules", aliases.len(), r.loaded.len());
        print_report("coldplug", &r);
        last_loaded = !r.loaded.is_empty();
    }
    say!("loaded {} modules in {} ms", c.loaded.len(), t0.elapsed().as_millis());
    print_wrapped("modules: ", &c.loaded);
    mount_late();
    let background = (!background.is_empty() || uevents.is_some()).then(|| BackgroundModules {
        index: c.index.clone(),
        plan: plan.clone(),
        names: background,
        uevents,
    });
    (c, background)
}

/// Phase 2 of module loading on a thread of its own, so the network comes up meanwhile.
/// The thread drops `done` (the write end of a pipe) when it finishes, which the event loop
/// sees as a hang-up on the read end.
struct ModulesThread {
    handle: std::thread::JoinHandle<(Coldplug<FinitModuleLoader>, Option<BackgroundModules>)>,
    done: OwnedFd,
}

impl ModulesThread {
    /// Start phase 2, or run it here when no thread (or pipe) can be made.
    fn start(
        m: Modules,
        plan: crate::cmdline::ModulePlan,
    ) -> Result<Self, (Coldplug<FinitModuleLoader>, Option<BackgroundModules>)> {
        let (read, write) = match nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK) {
            Ok(p) => p,
            Err(e) => {
                say!("warning: pipe: {e}; loading the other modules before the network");
                return Err(load_other_modules(m, &plan));
            }
        };
        // The thread needs the Modules back if it cannot start: hand them over through a slot.
        let slot = Arc::new(std::sync::Mutex::new(Some(m)));
        let theirs = slot.clone();
        let fallback_plan = plan.clone();
        let spawned = std::thread::Builder::new().name("coldplug".into()).spawn(move || {
            let m = theirs.lock().ok().and_then(|mut g| g.take()).expect("modules handed over");
            let out = load_other_modules(m, &plan);
            drop(write);
            out
        });
        match spawned {
            Ok(handle) => Ok(ModulesThread { handle, done: read }),
            Err(e) => {
                say!("warning: no coldplug thread ({e}); loading the other modules first");
                let m = slot.lock().ok().and_then(|mut g| g.take()).expect("not taken");
                Err(load_other_modules(m, &fallback_plan))
            }
        }
    }
}

/// The module list's `background` names, loaded by a thread of their own once the agent has
/// been started: under QEMU TCG the file systems and md personalities alone take 2-3 s of the
/// only vCPU (xfs relocations, the raid6/xor benchmarks), which starved the DHCP client when
/// they ran beside it, and nothing before the first lookup needs them. Whoever needs one
/// earlier gets it from the kernel (request_module → /sbin/modprobe), which also serializes a
/// module loaded from both sides (the second finit_module waits, then sees EEXIST).
///
/// The same thread then stays as the hotplug loader: devices added later (a virtual-media
/// USB stick, a disk an HBA scans asynchronously, a NIC whose firmware came up late) announce
/// their modalias on the uevent socket, and their drivers are loaded as coldplug would.
struct BackgroundModules {
    index: ModuleIndex,
    plan: crate::cmdline::ModulePlan,
    names: Vec<String>,
    uevents: Option<UeventSocket>,
}

impl BackgroundModules {
    fn spawn(self) {
        let spawned = std::thread::Builder::new().name("modules".into()).spawn(move || {
            // The agent has just started: on a single CPU its start (to the first lookup)
            // must not wait behind xfs relocations and the raid6 benchmarks.
            if let Err(e) = sys::nice_this_thread(BACKGROUND_NICE) {
                say!("warning: background modules at normal priority: {e}");
            }
            let t0 = Instant::now();
            let mut c = Coldplug::new(self.index, FinitModuleLoader::default(), self.plan);
            if !self.names.is_empty() {
                let r = c.load_names(&self.names);
                say!(
                    "background module list: {} names, {} modules in {} ms",
                    self.names.len(),
                    r.loaded.len(),
                    t0.elapsed().as_millis()
                );
                print_report("background module list", &r);
            }
            let Some(u) = self.uevents else { return };
            // Hotplug for the life of the ramdisk; a socket error (events lost: ENOBUFS) is
            // answered with one sysfs walk, and the loop ends only if the socket breaks for good.
            let mut errors = 0u32;
            while errors < 10 {
                match u.poll_modaliases(HOTPLUG_POLL) {
                    Ok((aliases, _)) if aliases.is_empty() => {}
                    Ok((aliases, _)) => {
                        errors = 0;
                        let r = c.coldplug(&aliases);
                        if !r.loaded.is_empty() {
                            say!("hotplug: {} modules: {}", r.loaded.len(), r.loaded.join(" "));
                        }
                        print_report("hotplug", &r);
                    }
                    Err(e) => {
                        errors += 1;
                        say!("warning: uevents: {e}; rescanning /sys/devices");
                        let aliases = scan_modaliases(Path::new("/sys/devices"), SYSFS_DEPTH);
                        let r = c.coldplug(&aliases);
                        print_report("hotplug", &r);
                    }
                }
            }
            say!("warning: uevent socket keeps failing; no more hotplug module loading");
        });
        if let Err(e) = spawned {
            say!("warning: no thread for the background module list ({e}); kernel autoload only");
        }
    }
}

/// The agent's output: a pipe whose read end init copies to the console and the log file.
struct AgentLog {
    read: OwnedFd,
    write: Arc<OwnedFd>,
    file: Option<fs::File>,
    written: u64,
}

impl AgentLog {
    fn new() -> Option<Self> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ok()?;
        let flags = fcntl(&read, FcntlArg::F_GETFL).ok()?;
        fcntl(&read, FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK))
            .ok()?;
        Some(AgentLog { read, write: Arc::new(write), file: Self::open_file(), written: 0 })
    }

    fn open_file() -> Option<fs::File> {
        fs::OpenOptions::new().create(true).append(true).open(AGENT_LOG).ok()
    }

    /// Copy whatever is readable to the console and the log file.
    fn drain(&mut self) {
        let mut buf = [0u8; 8192];
        loop {
            match nix::unistd::read(&self.read, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let _ = io::stderr().lock().write_all(&buf[..n]);
                    if let Some(file) = &mut self.file {
                        let _ = file.write_all(&buf[..n]);
                        self.written += n as u64;
                    }
                    if self.written > AGENT_LOG_MAX {
                        let _ = fs::rename(AGENT_LOG, format!("{AGENT_LOG}.1"));
                        self.file = Self::open_file();
                        self.written = 0;
                    }
                }
                Err(nix::Error::EINTR) => continue,
                Err(_) => break,
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    NetWait { deadline: Instant },
    Running,
}

#[derive(Debug)]
struct NicState {
    mac: String,
    configured_at: Instant,
}

struct Tools {
    ip: Option<Tool>,
    udhcpc: Option<Tool>,
    /// busybox udhcpc6, else dhcpcd (with ipa-init's dhcpcd.conf and dhcpcd.script).
    dhcp6: Option<Dhcp6Client>,
    /// dhcpcd is installed but ipa-init's dhcpcd.conf or dhcpcd.script is not.
    dhcpcd_without_files: bool,
}

impl Tools {
    fn find() -> Self {
        // The ramdisk links every busybox applet into PATH; only without those links is
        // busybox's own list (a fork and exec before DHCP can start) worth asking for.
        let linked = ["udhcpc", "ip"].iter().all(|t| net::find_tool(t, PATH_DIRS, &[]).is_some());
        let applets = if linked { Vec::new() } else { net::busybox_applets() };
        let dhcpcd = net::find_tool("dhcpcd", PATH_DIRS, &[]);
        let dhcpcd_files =
            Path::new(net::DHCPCD_CONF).exists() && Path::new(net::DHCPCD_SCRIPT).exists();
        let udhcpc6 = net::find_tool("udhcpc6", PATH_DIRS, &applets);
        Tools {
            ip: net::find_tool("ip", PATH_DIRS, &applets),
            udhcpc: net::find_tool("udhcpc", PATH_DIRS, &applets),
            dhcpcd_without_files: udhcpc6.is_none() && dhcpcd.is_some() && !dhcpcd_files,
            dhcp6: net::choose_dhcp6_client(udhcpc6, dhcpcd, dhcpcd_files),
        }
    }
}

struct Init {
    cfg: BootConfig,
    sfd: SignalFd,
    sup: Supervisor,
    spawner: RealSpawner,
    log: Option<AgentLog>,
    coldplug: Option<Coldplug<FinitModuleLoader>>,
    /// Started right after the agent.
    background: Option<BackgroundModules>,
    /// Phase 2 of module loading, while it runs: the agent waits for it.
    modules: Option<ModulesThread>,
    /// No wired NIC after phase 1: [`Init::start_network`] runs when phase 2 is done.
    net_deferred: bool,
    /// The network wait was reported as over (the agent may still wait for modules).
    net_ready_said: bool,
    /// Changes in [`net::RUN_DIR`] (a hook wrote a lease file) until the agent starts: the
    /// network wait is checked at once instead of at the next tick.
    lease_watch: Option<Inotify>,
    /// DHCPv6 clients started later than their NIC's DHCPv4 client (dhcpcd), by name.
    dhcp6_delayed: Vec<String>,
    tools: Tools,
    phase: Phase,
    net_started: Instant,
    assignment: Assignment,
    nics: HashMap<String, NicState>,
    net_wait: NetWait,
    /// Staged NICs not started yet.
    later: Vec<NicConfig>,
    warned_no_dhcp6: bool,
    next_tick: Instant,
}

impl Init {
    fn new(cfg: BootConfig, sfd: SignalFd, coldplug: Option<Coldplug<FinitModuleLoader>>) -> Self {
        let now = Instant::now();
        Init {
            phase: Phase::NetWait { deadline: now + cfg.net.timeout },
            cfg,
            sfd,
            sup: Supervisor::new(),
            spawner: RealSpawner,
            log: None,
            coldplug,
            background: None,
            modules: None,
            net_deferred: false,
            net_ready_said: false,
            lease_watch: None,
            dhcp6_delayed: Vec::new(),
            tools: Tools { ip: None, udhcpc: None, dhcp6: None, dhcpcd_without_files: false },
            net_started: now,
            assignment: Assignment {
                nics: Vec::new(),
                wait: WaitFor::Nothing,
                bootif_missing: false,
            },
            nics: HashMap::new(),
            net_wait: NetWait::new(WaitFor::Nothing, net::RUN_DIR),
            later: Vec::new(),
            warned_no_dhcp6: false,
            next_tick: now,
        }
    }

    fn start_network(&mut self) {
        self.net_started = Instant::now();
        self.phase = Phase::NetWait { deadline: self.net_started + self.cfg.net.timeout };
        if let Err(e) = sys::link_up("lo") {
            say!("warning: {e}");
        }
        if self.cfg.net.is_off() {
            say!("network: ip=off, not configuring any NIC");
            return;
        }
        self.lease_watch = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .and_then(|w| {
                w.add_watch(
                    net::RUN_DIR,
                    AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CLOSE_WRITE,
                )
                .map(|_| w)
            })
            .map_err(|e| say!("warning: inotify on {}: {e}; leases seen by polling", net::RUN_DIR))
            .ok();
        self.tools = Tools::find();
        if self.tools.udhcpc.is_none() {
            say!("warning: no udhcpc (busybox): DHCPv4 unavailable");
        }
        if !Path::new(net::UDHCPC_SCRIPT).exists() {
            say!("warning: {} is missing: DHCP leases will not be applied", net::UDHCPC_SCRIPT);
        }
        if self.tools.dhcpcd_without_files {
            say!(
                "warning: dhcpcd without {} and {}: not used",
                net::DHCPCD_CONF,
                net::DHCPCD_SCRIPT
            );
        }
        if let Some(Dhcp6Client::Dhcpcd(t)) = &self.tools.dhcp6
            && self.assignment_may_use_dhcp6()
        {
            let how = net::prepare_dhcpcd(Path::new("/"));
            say!("DHCPv6 client: {} ({how})", t.program.display());
        }
        for k in ["accept_ra", "autoconf"] {
            sys::write_quiet(&format!("/proc/sys/net/ipv6/conf/default/{k}"), "1");
        }
        self.write_static_resolv();

        let sysfs = Path::new("/sys");
        let mut nics = net::discover_wired_nics(sysfs);
        if let Some(mac) = self.cfg.net.bootif
            && !nics.iter().any(|n| n.mac == Some(mac))
        {
            // A slow driver may register its netdev a little later.
            let until = Instant::now() + BOOTIF_GRACE.min(self.cfg.net.timeout);
            while Instant::now() < until && !nics.iter().any(|n| n.mac == Some(mac)) {
                std::thread::sleep(Duration::from_millis(250));
                nics = net::discover_wired_nics(sysfs);
            }
        }
        if nics.is_empty() {
            say!("warning: no wired NIC found");
        } else {
            let list: Vec<String> = nics
                .iter()
                .map(|n| format!("{} {}", n.name, n.mac.map(|m| m.to_string()).unwrap_or_default()))
                .collect();
            say!("wired NICs: {}", list.join(", "));
        }
        // Links up first: carrier is only readable on an up link, and a static ip= without
        // an interface goes to the first NIC with carrier.
        for n in &nics {
            self.prepare_link(&n.name);
        }
        // Also before any DHCP client starts: a DISCOVER sent before the link has carrier is
        // lost and costs a whole retry interval (virtio-net under TCG reports carrier ~0.6 s
        // after "up", real NICs after autonegotiation). Bounded; any one NIC is enough.
        if !nics.is_empty() {
            let t0 = Instant::now();
            while t0.elapsed() < CARRIER_WAIT {
                nics = net::discover_wired_nics(sysfs);
                if nics.iter().any(|n| net::link_ready(sysfs, &n.name)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            match nics.iter().find(|n| net::link_ready(sysfs, &n.name)) {
                Some(n) => say!("link {} ready after {} ms", n.name, t0.elapsed().as_millis()),
                None => say!("no NIC with a ready link after {} s", CARRIER_WAIT.as_secs()),
            }
        }
        self.assignment = net::assign(&self.cfg.net, &nics);
        self.net_wait = NetWait::new(self.assignment.wait.clone(), net::RUN_DIR);
        if let Some(mac) = self.cfg.net.bootif.filter(|_| self.assignment.bootif_missing) {
            say!("warning: BOOTIF {mac} matches no wired NIC: configuring all, waiting for any");
        }
        // The timeout counts from here, when the DHCP clients start.
        self.net_started = Instant::now();
        self.phase = Phase::NetWait { deadline: self.net_started + self.cfg.net.timeout };
        match &self.assignment.wait {
            WaitFor::Nic(n) => {
                say!("network: waiting up to {} s for {n}", self.cfg.net.timeout.as_secs_f64())
            }
            WaitFor::Any => say!(
                "network: waiting up to {} s for any wired NIC",
                self.cfg.net.timeout.as_secs_f64()
            ),
            WaitFor::Nothing => {}
        }
        for c in self.assignment.nics.clone() {
            match c.stage {
                Stage::First => self.configure(&c),
                Stage::Later => self.later.push(c),
            }
        }
    }

    fn prepare_link(&self, ifname: &str) {
        for k in ["accept_ra", "autoconf"] {
            sys::write_quiet(&format!("/proc/sys/net/ipv6/conf/{ifname}/{k}"), "1");
        }
        if let Err(e) = sys::link_up(ifname) {
            say!("warning: {e}");
        }
    }

    fn write_static_resolv(&self) {
        let mut frag = String::new();
        let mut dns: Vec<IpAddr> = self.cfg.net.nameservers.clone();
        for p in &self.cfg.net.ip {
            if let IpParam::Static(s) = p {
                dns.extend(s.dns.iter().map(|a| IpAddr::V4(*a)));
            }
        }
        for a in dns {
            frag.push_str(&format!("nameserver {a}\n"));
        }
        if frag.is_empty() {
            return;
        }
        let path = format!("{}/resolv.d/0000-cmdline.conf", net::RUN_DIR);
        let _ = fs::write(&path, &frag);
        let _ = sys::write_atomic("/etc/resolv.conf", &net::render_resolv(&[frag]));
    }

    fn run_ip(&self, args: &[&str]) -> Result<(), String> {
        let Some(tool) = &self.tools.ip else {
            return Err("no ip tool (busybox)".into());
        };
        let out = Command::new(&tool.program)
            .args(&tool.prefix_args)
            .args(args)
            .env_clear()
            .env("PATH", PATH)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
        }
    }

    fn apply_static(&self, ifname: &str, s: &StaticIp, metric: u32) {
        let addr = format!("{}/{}", s.address, s.prefix);
        let metric = metric.to_string();
        let mut steps: Vec<Vec<String>> = Vec::new();
        if let Some(mtu) = s.mtu {
            steps.push(vec![
                "link".into(),
                "set".into(),
                "dev".into(),
                ifname.into(),
                "mtu".into(),
                mtu.to_string(),
            ]);
        }
        steps.push(vec!["addr".into(), "add".into(), addr.clone(), "dev".into(), ifname.into()]);
        if let Some(gw) = s.gateway {
            steps.push(vec![
                "route".into(),
                "add".into(),
                "default".into(),
                "via".into(),
                gw.to_string(),
                "dev".into(),
                ifname.into(),
                "metric".into(),
                metric,
            ]);
        }
        for st in &steps {
            let args: Vec<&str> = st.iter().map(String::as_str).collect();
            if let Err(e) = self.run_ip(&args) {
                say!("warning: {ifname}: {e}");
            }
        }
        if let Some(h) = &s.hostname {
            match sys::set_hostname(h) {
                Ok(()) => say!("hostname {h}"),
                Err(e) => say!("warning: {e}"),
            }
        }
        let q = net::shell_quote;
        let lease = format!(
            "INTERFACE={}\nFAMILY=4\nMETHOD=static\nADDRESS={}\nPREFIX={}\nROUTER={}\nDNS={}\nHOSTNAME={}\n",
            q(ifname),
            q(&s.address.to_string()),
            s.prefix,
            q(&s.gateway.map(|g| g.to_string()).unwrap_or_default()),
            q(&s.dns.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(" ")),
            q(s.hostname.as_deref().unwrap_or("")),
        );
        let _ = sys::write_atomic(&format!("{}/lease-{ifname}.env", net::RUN_DIR), &lease);
        say!(
            "{ifname}: static {addr}{}",
            s.gateway.map(|g| format!(" via {g}")).unwrap_or_default()
        );
    }

    /// The command line set the hostname: DHCP never overrides it.
    fn hostname_fixed(&self) -> bool {
        self.cfg.net.ip.iter().any(|p| matches!(p, IpParam::Static(s) if s.hostname.is_some()))
    }

    /// Can any NIC (now or later) get DHCPv6: not `ip=off`, and some `ip=` (or none) asks
    /// for it.
    fn assignment_may_use_dhcp6(&self) -> bool {
        let n = &self.cfg.net;
        !n.is_off()
            && (n.ip.is_empty()
                || n.ip.iter().any(|p| matches!(p, IpParam::Auto { dhcp6: true, .. })))
    }

    fn configure(&mut self, c: &NicConfig) {
        let name = c.nic.name.clone();
        if self.nics.contains_key(&name) {
            return;
        }
        self.prepare_link(&name);
        self.nics.insert(
            name.clone(),
            NicState {
                mac: c.nic.mac.map(|m| m.to_string()).unwrap_or_default(),
                configured_at: Instant::now(),
            },
        );
        let dynamic = c.static_ip.is_none();
        self.net_wait.add_nic(
            &name,
            dynamic && c.dhcp4 && self.tools.udhcpc.is_some(),
            dynamic && c.dhcp6 && self.tools.dhcp6.is_some(),
        );
        if let Some(s) = &c.static_ip {
            self.apply_static(&name, s, c.metric);
            return;
        }
        let now = Instant::now();
        let fixed = self.hostname_fixed();
        let mut what = Vec::new();
        if c.dhcp4
            && let Some(t) = &self.tools.udhcpc
        {
            let spec = net::dhcp4_command(t, c, fixed);
            self.sup.add(format!("udhcpc {name}"), spec, RestartPolicy::DHCP, now);
            what.push("dhcp");
        }
        let dhcp4_runs = c.dhcp4 && self.tools.udhcpc.is_some();
        let mut dhcp6_note = String::new();
        if c.dhcp6 {
            match &self.tools.dhcp6 {
                Some(client) => {
                    let spec = net::dhcp6_command(client, c, fixed);
                    let delay = net::dhcp6_start_delay(client, dhcp4_runs);
                    self.sup.add(
                        format!("{} {name}", client.name()),
                        spec,
                        RestartPolicy::DHCP,
                        now + delay,
                    );
                    what.push(match client {
                        Dhcp6Client::Udhcpc6(_) => "dhcp6",
                        Dhcp6Client::Dhcpcd(_) => "dhcp6 (dhcpcd)",
                    });
                    if !delay.is_zero() {
                        self.dhcp6_delayed.push(format!("{} {name}", client.name()));
                        dhcp6_note =
                            format!("; {} starts in {} s", client.name(), delay.as_secs_f64());
                    }
                }
                None if !self.warned_no_dhcp6 => {
                    self.warned_no_dhcp6 = true;
                    say!("note: no udhcpc6 in this busybox and no dhcpcd: IPv6 by SLAAC only");
                }
                None => {}
            }
        }
        what.push("slaac");
        say!(
            "{name}: up, {}{}{dhcp6_note}",
            what.join("+"),
            if c.primary { " (boot NIC)" } else { "" }
        );
    }

    /// Print each NIC's first global address per family; true when the wait target has one.
    fn check_addresses(&mut self) -> bool {
        let addrs = net::global_addresses();
        for a in self.net_wait.observe(&addrs) {
            let Some(st) = self.nics.get(&a.ifname) else {
                continue;
            };
            let v6 = a.addr.is_ipv6();
            let via = net::default_gateway(&a.ifname, v6)
                .map(|g| format!(" via {g}"))
                .unwrap_or_default();
            say!(
                "{} {}: {}/{}{} in {:.1} s",
                a.ifname,
                st.mac,
                a.addr,
                a.prefix,
                via,
                st.configured_at.elapsed().as_secs_f64()
            );
        }
        self.net_wait.ready()
    }

    /// NICs that appeared after the start (late drivers, hotplug).
    fn rediscover(&mut self) {
        if self.cfg.net.is_off() {
            return;
        }
        let nics = net::discover_wired_nics(Path::new("/sys"));
        if nics.iter().all(|n| {
            self.nics.contains_key(&n.name) || self.later.iter().any(|l| l.nic.name == n.name)
        }) {
            return;
        }
        let a = net::assign(&self.cfg.net, &nics);
        for c in a.nics {
            if self.nics.contains_key(&c.nic.name)
                || self.later.iter().any(|l| l.nic.name == c.nic.name)
            {
                continue;
            }
            say!("new NIC {}", c.nic.name);
            if c.stage == Stage::Later && matches!(self.phase, Phase::NetWait { .. }) {
                self.later.push(c);
            } else {
                self.configure(&c);
            }
        }
    }

    fn start_agent(&mut self) {
        // Late coldplug: devices that showed up while the network came up (with a uevent
        // socket the hotplug thread sees those, and this sysfs walk is not needed).
        let hotplug = self.background.as_ref().is_some_and(|b| b.uevents.is_some());
        if let Some(c) = self.coldplug.as_mut().filter(|_| !hotplug) {
            let aliases = scan_modaliases(Path::new("/sys/devices"), SYSFS_DEPTH);
            let r = c.coldplug(&aliases);
            if !r.loaded.is_empty() {
                say!("late coldplug: {} modules: {}", r.loaded.len(), r.loaded.join(" "));
            }
            print_report("late coldplug", &r);
        }
        self.log = AgentLog::new();
        let (stdout, stderr) = match &self.log {
            Some(l) => (Io::Fd(l.write.clone()), Io::Fd(l.write.clone())),
            None => {
                say!("warning: no agent log pipe: agent output goes to the console only");
                (Io::Inherit, Io::Inherit)
            }
        };
        let agent = &self.cfg.agent;
        let spec = CommandSpec {
            env: vec![
                ("PATH".into(), PATH.into()),
                ("HOME".into(), "/root".into()),
                (crate::IPA_INIT_ENV.into(), "1".into()),
            ],
            stdout,
            stderr,
            ..CommandSpec::new(&agent.path, agent.args.clone())
        };
        say!("starting {} (log {AGENT_LOG})", spec.display());
        let now = Instant::now();
        self.sup.add("agent", spec, RestartPolicy::AGENT, now);
        // A delayed dhcpcd that has not started yet waits until the agent had its head start
        // (net::dhcp6_start_delay).
        for name in std::mem::take(&mut self.dhcp6_delayed) {
            self.sup.postpone(&name, now + net::DHCPCD_AFTER_AGENT);
        }
        if let Some(b) = self.background.take() {
            b.spawn();
        }
        if self.cfg.shell {
            let tty = sys::console_tty();
            let term = if tty.starts_with("/dev/tty") && !tty.starts_with("/dev/ttyS") {
                "linux"
            } else {
                "vt102"
            };
            say!("debug shell on {tty}");
            let spec = CommandSpec {
                env: vec![
                    ("PATH".into(), PATH.into()),
                    ("HOME".into(), "/root".into()),
                    ("TERM".into(), term.into()),
                    (crate::IPA_INIT_ENV.into(), "1".into()),
                ],
                stdin: Io::Device(tty.clone().into()),
                stdout: Io::Device(tty.clone().into()),
                stderr: Io::Device(tty.into()),
                controlling_tty: true,
                ..CommandSpec::new("/bin/sh", vec![])
            };
            self.sup.add("shell", spec, RestartPolicy::SHELL, Instant::now());
        }
    }

    fn tick(&mut self, now: Instant) {
        self.rediscover();
        let ready = self.check_addresses();
        if let Phase::NetWait { deadline } = self.phase {
            let elapsed = self.net_started.elapsed().as_secs_f64();
            let waiting_for_modules = self.modules.is_some() || self.net_deferred;
            if ready && !self.net_ready_said && !self.net_deferred {
                self.net_ready_said = true;
                if self.assignment.wait != WaitFor::Nothing {
                    say!(
                        "network ready in {elapsed:.1} s{}",
                        if waiting_for_modules { "; waiting for the other modules" } else { "" }
                    );
                }
            }
            if agent_may_start(ready, now >= deadline, waiting_for_modules) {
                if !ready {
                    let what = match &self.assignment.wait {
                        WaitFor::Nic(n) => n.clone(),
                        _ => "any wired NIC".into(),
                    };
                    say!(
                        "WARNING: no global address on {what} after {elapsed:.0} s; starting the agent anyway (it retries its lookup)"
                    );
                }
                for c in std::mem::take(&mut self.later) {
                    self.configure(&c);
                }
                self.phase = Phase::Running;
                self.lease_watch = None;
                self.start_agent();
            }
        }
        let period = match self.phase {
            Phase::NetWait { .. } => Duration::from_millis(250),
            Phase::Running => Duration::from_secs(2),
        };
        self.next_tick = now + period;
    }

    /// Phase 2 of module loading finished: take its results, start a deferred network.
    fn modules_finished(&mut self) {
        let Some(t) = self.modules.take() else { return };
        drop(t.done);
        match t.handle.join() {
            Ok((c, background)) => {
                self.coldplug = Some(c);
                self.background = background;
            }
            Err(_) => say!("warning: the coldplug thread panicked: modules may be missing"),
        }
        if self.net_deferred {
            self.net_deferred = false;
            self.start_network();
        }
        self.next_tick = Instant::now();
    }

    fn event_loop(mut self) -> Result<Never, crate::Error> {
        loop {
            let now = Instant::now();
            for e in self.sup.start_due(now, &mut self.spawner) {
                say!("{e}");
            }
            if now >= self.next_tick {
                self.tick(now);
            }
            let mut wake = self.next_tick;
            if let Some(d) = self.sup.next_due() {
                wake = wake.min(d);
            }
            let timeout = wake.saturating_duration_since(Instant::now());
            let timeout = PollTimeout::try_from(timeout.as_millis().min(2000) as i32 + 1)
                .unwrap_or(PollTimeout::MAX);
            let (sig_ready, log_ready, modules_ready, lease_ready) = {
                let mut fds = vec![PollFd::new(self.sfd.as_fd(), PollFlags::POLLIN)];
                let log_i = poll_slot(&mut fds, self.log.as_ref().map(|l| l.read.as_fd()));
                let modules_i = poll_slot(&mut fds, self.modules.as_ref().map(|m| m.done.as_fd()));
                let lease_i = poll_slot(&mut fds, self.lease_watch.as_ref().map(|w| w.as_fd()));
                let ok = poll(&mut fds, timeout).is_ok();
                let any = |i: Option<usize>| {
                    ok && i.and_then(|i| fds.get(i)).and_then(|f| f.any()).unwrap_or(false)
                };
                (any(Some(0)), any(log_i), any(modules_i), any(lease_i))
            };
            if modules_ready {
                self.modules_finished();
            }
            if lease_ready && let Some(w) = &self.lease_watch {
                while let Ok(events) = w.read_events() {
                    if events.is_empty() {
                        break;
                    }
                }
                self.next_tick = Instant::now();
            }
            if log_ready && let Some(l) = &mut self.log {
                l.drain();
            }
            if sig_ready {
                while let Ok(Some(info)) = self.sfd.read_signal() {
                    let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                        continue;
                    };
                    match sig {
                        Signal::SIGCHLD => {}
                        s => match PowerAction::from_signal(s) {
                            Some(action) => self.shutdown(action, s, info.ssi_pid),
                            None => say!("ignoring {s}"),
                        },
                    }
                }
                // Always reap: several SIGCHLDs coalesce into one.
                let (events, _orphans) = reap_children(&mut self.sup, Instant::now());
                for e in events {
                    say!("{e}");
                }
            }
        }
    }

    fn drain_for(&mut self, d: Duration) {
        match &mut self.log {
            Some(l) => {
                let mut fds = [PollFd::new(l.read.as_fd(), PollFlags::POLLIN)];
                let ms = PollTimeout::try_from(d.as_millis() as i32).unwrap_or(PollTimeout::ZERO);
                if poll(&mut fds, ms).unwrap_or(0) > 0 {
                    l.drain();
                }
            }
            None => std::thread::sleep(d),
        }
    }

    /// Wait for every process to exit (ECHILD), at most `limit`; true when none is left.
    fn wait_all(&mut self, limit: Duration) -> bool {
        use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
        let until = Instant::now() + limit;
        loop {
            loop {
                match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) => break,
                    Ok(WaitStatus::Exited(pid, code)) => {
                        let _ = self.sup.on_exit(
                            pid.as_raw() as u32,
                            crate::supervisor::Exit::Code(code),
                            Instant::now(),
                        );
                    }
                    Ok(_) => {}
                    Err(nix::Error::ECHILD) => return true,
                    Err(_) => break,
                }
            }
            if Instant::now() >= until {
                return false;
            }
            self.drain_for(Duration::from_millis(100));
        }
    }

    fn shutdown(&mut self, action: PowerAction, sig: Signal, from: u32) -> ! {
        let sender = if from == 0 {
            "the kernel (ctrl-alt-del)".to_string()
        } else {
            let comm = sys::read(format!("/proc/{from}/comm"))
                .map(|c| format!(" ({})", c.trim()))
                .unwrap_or_default();
            format!("pid {from}{comm}")
        };
        say!("{action} requested by {sig} from {sender}");
        self.sup.stop();
        if let Some(pid) = self.sup.pid_of("agent") {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        // An interactive shell ignores SIGTERM: hang up its session instead.
        if let Some(pid) = self.sup.pid_of("shell") {
            let _ = kill(Pid::from_raw(-(pid as i32)), Signal::SIGHUP);
        }
        let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
        say!("sent SIGTERM to all processes, waiting up to {} s", SHUTDOWN_GRACE.as_secs());
        if !self.wait_all(SHUTDOWN_GRACE) {
            say!("still running: {}; sending SIGKILL", user_processes().join(", "));
            let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
            self.wait_all(Duration::from_secs(2));
        }
        if let Some(l) = &mut self.log {
            l.drain();
        }
        nix::unistd::sync();
        let (ok, failed) = sys::umount_disks();
        if !ok.is_empty() {
            say!("unmounted {}", ok.join(" "));
        }
        if !failed.is_empty() {
            say!("could not unmount {}", failed.join(" "));
        }
        nix::unistd::sync();
        say!("{action} now");
        let err = match nix::sys::reboot::reboot(action.reboot_mode()) {
            Ok(never) => match never {},
            Err(e) => e,
        };
        say!("FATAL: reboot(2) failed: {err}; sleeping forever");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

/// Add `fd` (if any) to `fds` for reading; its index.
fn poll_slot<'a>(
    fds: &mut Vec<PollFd<'a>>,
    fd: Option<std::os::fd::BorrowedFd<'a>>,
) -> Option<usize> {
    fd.map(|fd| {
        fds.push(PollFd::new(fd, PollFlags::POLLIN));
        fds.len() - 1
    })
}

/// Whether the agent may start: the network is ready (or its wait timed out) and the
/// modules are all loaded. The agent's inventory (inspection runs before the lookup) lists
/// the disks and NICs, so it never starts before the storage and NIC drivers are in, even
/// when DHCP was faster.
fn agent_may_start(net_ready: bool, net_timed_out: bool, waiting_for_modules: bool) -> bool {
    (net_ready || net_timed_out) && !waiting_for_modules
}

/// `pid (comm)` of every user-space process but init (kernel threads have no cmdline).
fn user_processes() -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(pid) = name.parse::<u32>() else { continue };
            if pid == 1 || fs::read(e.path().join("cmdline")).map_or(true, |c| c.is_empty()) {
                continue;
            }
            let comm = sys::read(e.path().join("comm")).unwrap_or_default();
            out.push(format!("{pid} ({})", comm.trim()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::agent_may_start;

    #[test]
    fn the_agent_waits_for_the_modules_even_when_the_lease_came_first() {
        // (network ready, network wait timed out, modules still loading) -> may start
        assert!(!agent_may_start(true, false, true), "lease before the storage drivers");
        assert!(!agent_may_start(false, true, true), "timeout before the storage drivers");
        assert!(!agent_may_start(false, false, false), "modules done, no address yet");
        assert!(agent_may_start(true, false, false));
        assert!(agent_may_start(false, true, false), "no address in time: start anyway");
    }
}
