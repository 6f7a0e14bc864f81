//! DHCPv6 with dhcpcd, end to end, in two network namespaces made here and deleted at the end:
//! `ipa6-<pid>-<tag>-s` runs dnsmasq (DHCPv6 server and router advertisements) on `vethA`,
//! `ipa6-<pid>-<tag>-c` runs dhcpcd on `vethB` with exactly the command line and environment
//! ipa-init builds ([`net::dhcp6_command`]), chrooted into a ramdisk-like tree made of what the
//! builder installs: `/usr/sbin/dhcpcd` and the libraries `ldd` names, busybox and its applets,
//! the files of `files/MANIFEST`, an `/etc/passwd` of root and the dhcpcd user, and the
//! directories ipa-init prepares ([`net::prepare_dhcpcd`]). ipa-init's network wait
//! ([`NetWait`]) then runs in a thread inside the client namespace.
//!
//! Needs root, `ip` (iproute2), `dnsmasq` (dnsmasq-base), `/usr/sbin/dhcpcd` (dhcpcd-base),
//! busybox (busybox-static or busybox), `chroot`, `ldd`: they are missing, the tests fail. Nothing outside
//! the two namespaces and a temporary directory is touched; every process started here (and
//! anything left in the namespaces) is stopped.

use std::fs::{self, File};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipa_init::cmdline::Mac;
use ipa_init::net::{self, Dhcp6Client, IfAddr, NetWait, Nic, NicConfig, Stage, Tool, WaitFor};
use ipa_init::supervisor::Io;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// The passwd line README asks the ramdisk builder for.
const DHCPCD_PASSWD: &str =
    "dhcpcd:x:101:65534:DHCP Client Daemon:/run/dhcpcd/chroot:/usr/sbin/nologin";
const DHCPCD: &str = "/usr/sbin/dhcpcd";
const CLIENT_MAC: &str = "02:1a:00:00:00:0b";
const SERVER_MAC: &str = "02:1a:00:00:00:0a";
const WAIT: Duration = Duration::from_secs(30);

/// The namespace tests run one at a time: each reaps the orphans it leaves (see [`orphans`]).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Children of this process that no [`Child`] of ours owns: dhcpcd's privilege-separation
/// helpers once its main process exited. This process is a child subreaper (as PID 1,
/// ipa-init reaps them too), so they come here instead of the host's init.
fn orphans(owned: &[u32]) -> Vec<i32> {
    let me = std::process::id().to_string();
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else { continue };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let ppid = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1));
        if ppid == Some(me.as_str()) && !owned.contains(&(pid as u32)) {
            out.push(pid);
        }
    }
    out
}

/// Reap (waitpid) the orphans that exited; returns those still running.
fn reap_orphans(owned: &[u32]) -> Vec<i32> {
    let mut running = Vec::new();
    for pid in orphans(owned) {
        if let Ok(WaitStatus::StillAlive) = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG))
        {
            running.push(pid);
        }
    }
    running
}

fn which(prog: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(prog))
        .find(|p| p.is_file())
}

/// Fail (not skip) when the environment cannot run the test.
fn require() -> PathBuf {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (network namespaces, mounts, chroot): run `cargo test -p ipa-init` as root"
    );
    let mut missing = Vec::new();
    for (prog, pkg) in [
        ("ip", "iproute2"),
        ("dnsmasq", "dnsmasq-base"),
        ("dhcpcd", "dhcpcd-base"),
        ("chroot", "coreutils"),
        ("ldd", "libc-bin"),
    ] {
        if which(prog).is_none() {
            missing.push(format!("{prog} ({pkg})"));
        }
    }
    if !Path::new(DHCPCD).is_file() {
        missing.push(format!("{DHCPCD} (dhcpcd-base)"));
    }
    let busybox =
        ["/bin/busybox", "/usr/bin/busybox"].iter().map(PathBuf::from).find(|p| p.is_file());
    if busybox.is_none() {
        missing.push("busybox (busybox-static or busybox)".into());
    }
    assert!(missing.is_empty(), "missing: {}", missing.join(", "));
    busybox.unwrap()
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).stdin(Stdio::null()).output().unwrap_or_else(|e| {
        panic!("{cmd} {}: {e}", args.join(" "));
    });
    assert!(
        out.status.success(),
        "{cmd} {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn under(root: &Path, abs: impl AsRef<Path>) -> PathBuf {
    root.join(abs.as_ref().strip_prefix("/").unwrap())
}

/// Copy `bin` to the same path under `root` with the shared libraries `ldd` lists; returns
/// the libraries.
fn install_with_libs(root: &Path, bin: &Path, dest: &Path) -> Vec<PathBuf> {
    let copy = |from: &Path, to: &Path| {
        fs::create_dir_all(under(root, to).parent().unwrap()).unwrap();
        fs::copy(from, under(root, to)).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    };
    copy(bin, dest);
    // `ldd` exits 1 for a static binary ("not a dynamic executable").
    let out = Command::new("ldd").arg(bin).output().unwrap();
    let mut libs = Vec::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let path = match l.split_once("=>") {
            Some((_, r)) => r.split_whitespace().next(),
            None => l.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            copy(Path::new(p), Path::new(p));
            libs.push(PathBuf::from(p));
        }
    }
    libs
}

/// The ramdisk-like tree the client runs in.
fn make_root(root: &Path, busybox: &Path) -> Vec<PathBuf> {
    for d in
        ["/bin", "/sbin", "/usr/bin", "/usr/sbin", "/etc", "/dev", "/proc", "/sys", "/run", "/tmp"]
    {
        fs::create_dir_all(under(root, d)).unwrap();
    }
    let libs = install_with_libs(root, Path::new(DHCPCD), Path::new(DHCPCD));
    install_with_libs(root, busybox, Path::new("/bin/busybox"));
    for a in ["sh", "ip", "sed", "mv", "rm", "mkdir", "cat", "printf", "hostname", "sleep"] {
        symlink("busybox", under(root, format!("/bin/{a}"))).unwrap();
    }
    // What the builder copies from files/MANIFEST.
    let files = Path::new(env!("CARGO_MANIFEST_DIR")).join("files");
    let manifest = fs::read_to_string(files.join("MANIFEST")).unwrap();
    for l in manifest.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        let f: Vec<&str> = l.split_whitespace().collect();
        let dst = under(root, f[1]);
        fs::create_dir_all(dst.parent().unwrap()).unwrap();
        fs::copy(files.join(f[0]), &dst).unwrap();
        let mode = u32::from_str_radix(f[2], 8).unwrap();
        fs::set_permissions(&dst, fs::Permissions::from_mode(mode)).unwrap();
    }
    fs::write(
        under(root, "/etc/passwd"),
        format!("root:x:0:0:root:/root:/bin/sh\n{DHCPCD_PASSWD}\n"),
    )
    .unwrap();
    for (name, minor) in [("null", 3), ("zero", 5), ("urandom", 9)] {
        let p = under(root, format!("/dev/{name}"));
        use nix::sys::stat::{Mode, SFlag, makedev, mknod};
        mknod(&p, SFlag::S_IFCHR, Mode::from_bits_truncate(0o666), makedev(1, minor))
            .unwrap_or_else(|e| panic!("mknod {name}: {e}"));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o666)).unwrap();
    }
    // What ipa-init does before it starts DHCP clients.
    fs::create_dir_all(under(root, "/run/ipa-init/resolv.d")).unwrap();
    let how = net::prepare_dhcpcd(root);
    assert_eq!(how, "privilege separation as dhcpcd, chroot /run/dhcpcd/chroot");
    libs
}

/// The two namespaces and the processes started in them; all gone on drop.
struct Lab {
    server_ns: String,
    client_ns: String,
    dnsmasq: Option<Child>,
    client: Option<Child>,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let base = format!("ipa6-{}-{tag}", std::process::id());
        let lab = Lab {
            server_ns: format!("{base}-s"),
            client_ns: format!("{base}-c"),
            dnsmasq: None,
            client: None,
        };
        run("ip", &["netns", "add", &lab.server_ns]);
        run("ip", &["netns", "add", &lab.client_ns]);
        let (s, c) = (lab.server_ns.as_str(), lab.client_ns.as_str());
        // Both ends are created inside the namespaces: nothing appears on the host.
        run(
            "ip",
            &[
                "link", "add", "vethA", "netns", s, "address", SERVER_MAC, "type", "veth", "peer",
                "name", "vethB", "netns", c, "address", CLIENT_MAC,
            ],
        );
        for ns in [s, c] {
            run("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        run("ip", &["-n", s, "addr", "add", "fd42:1::1/64", "dev", "vethA", "nodad"]);
        run("ip", &["-n", s, "link", "set", "vethA", "up"]);
        // What ipa-init's prepare_link does: kernel RA handling and SLAAC on, link up.
        run(
            "ip",
            &[
                "netns",
                "exec",
                c,
                "sh",
                "-c",
                "echo 1 > /proc/sys/net/ipv6/conf/vethB/accept_ra && \
                 echo 1 > /proc/sys/net/ipv6/conf/vethB/autoconf",
            ],
        );
        run("ip", &["-n", c, "link", "set", "vethB", "up"]);
        lab
    }

    fn start_dnsmasq(&mut self, work: &Path, range: &str) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.server_ns, "dnsmasq", "--keep-in-foreground"])
            .args(["--conf-file=/dev/null", "--port=0", "--bind-interfaces", "--interface=vethA"])
            .args(["--enable-ra", &format!("--dhcp-range={range}")])
            .arg("--dhcp-option=option6:dns-server,[fd42:1::53]")
            .arg("--dhcp-option=option6:domain-search,lab.example")
            .arg(format!("--dhcp-leasefile={}", work.join("dnsmasq.leases").display()))
            .arg(format!("--pid-file={}", work.join("dnsmasq.pid").display()))
            .arg(format!("--log-facility={}", work.join("dnsmasq.log").display()))
            .arg("--log-dhcp")
            .stdin(Stdio::null())
            .spawn()
            .expect("dnsmasq");
        self.dnsmasq = Some(child);
    }

    /// PIDs of every process in one of our namespaces.
    fn processes_in(&self, ns: &str) -> Vec<i32> {
        let Ok(want) = fs::metadata(format!("/run/netns/{ns}")) else {
            return Vec::new();
        };
        use std::os::unix::fs::MetadataExt as _;
        let mut pids = Vec::new();
        for e in fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
            if let Ok(m) = fs::metadata(e.path().join("ns/net"))
                && m.ino() == want.ino()
                && m.dev() == want.dev()
            {
                pids.push(pid);
            }
        }
        pids
    }
}

/// SIGTERM, then SIGKILL after `grace`; true when it exited in time.
fn stop(child: &mut Child, grace: Duration) -> bool {
    if child.try_wait().ok().flatten().is_some() {
        return true;
    }
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let until = Instant::now() + grace;
    while Instant::now() < until {
        if child.try_wait().ok().flatten().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(c) = &mut self.client {
            stop(c, Duration::from_secs(5));
        }
        if let Some(d) = &mut self.dnsmasq {
            stop(d, Duration::from_secs(5));
        }
        // Anything left in our namespaces, or orphaned to us, was started by this test.
        for ns in [&self.client_ns, &self.server_ns] {
            for pid in self.processes_in(ns) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        for pid in orphans(&[]) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(pid), None);
        }
        for ns in [&self.client_ns, &self.server_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Run ipa-init's network wait in a thread inside `ns` until it is ready and `done` holds for
/// the addresses it counted (bounded by [`WAIT`]). Returns the counted addresses.
fn wait_in_netns(
    ns: &str,
    run_dir: PathBuf,
    done: impl Fn(&[IfAddr]) -> bool + Send + 'static,
) -> Result<Vec<IfAddr>, String> {
    let f = File::open(format!("/run/netns/{ns}")).unwrap();
    std::thread::spawn(move || {
        // This thread only: the test's other threads stay in the host namespace.
        // SAFETY: setns(2) on an fd this closure owns (`f` lives until it returns); it changes
        // only this thread's network namespace and touches no memory.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!("setns: {}", std::io::Error::last_os_error()));
        }
        let mut w = NetWait::new(WaitFor::Nic("vethB".into()), run_dir);
        // ipa-init runs no DHCPv4 here, and a DHCPv6 client.
        w.add_nic("vethB", false, true);
        let mut counted: Vec<IfAddr> = Vec::new();
        let until = Instant::now() + WAIT;
        loop {
            let addrs = net::global_addresses();
            counted.extend(w.observe(&addrs).into_iter().cloned());
            for a in addrs.iter().filter(|a| a.ifname == "vethB" && w.counts(a)) {
                if !counted.contains(a) {
                    counted.push(a.clone());
                }
            }
            if w.ready() && done(&counted) {
                return Ok(counted);
            }
            if Instant::now() >= until {
                return Err(format!(
                    "not ready after {WAIT:?}; saw {addrs:?}, counted {counted:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    })
    .join()
    .unwrap()
}

fn in_dhcp_range(a: &IfAddr) -> bool {
    match a.addr {
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            a.prefix == 128
                && s[..7] == [0xfd42, 1, 0, 0, 0, 0, 0]
                && (0x100..=0x1ff).contains(&s[7])
        }
        _ => false,
    }
}

fn dhcpv6_through_dhcpcd(tag: &str, range: &str, slaac: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let busybox = require();
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    let work = tempfile::tempdir().unwrap();
    // dnsmasq drops to nobody; dhcpcd's chroot is set up by root.
    fs::set_permissions(work.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let root = work.path().join("root");
    let libs = make_root(&root, &busybox);
    eprintln!("dhcpcd's libraries: {libs:?}");

    let mut lab = Lab::new(tag);
    lab.start_dnsmasq(work.path(), range);

    // The NIC as ipa-init sees it (a veth is not a wired NIC for discovery, so it is built here).
    let mac: Mac = CLIENT_MAC.parse().unwrap();
    let c = NicConfig {
        nic: Nic { name: "vethB".into(), mac: Some(mac), ifindex: 2, carrier: Some(true) },
        dhcp4: false,
        dhcp6: true,
        static_ip: None,
        stage: Stage::First,
        primary: true,
        metric: 100,
    };
    let client = Dhcp6Client::Dhcpcd(Tool { program: DHCPCD.into(), prefix_args: Vec::new() });
    let spec = net::dhcp6_command(&client, &c, false);
    let Io::Append(log) = &spec.stdout else { panic!("{:?}", spec.stdout) };
    let log = under(&root, log);
    eprintln!("client: {}", spec.display());
    let log_file = || fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
    // ip netns exec: the client namespace and a private mount namespace (with /sys of the
    // client namespace); there /proc and /sys are mounted in the tree, then chroot.
    let child = Command::new("ip")
        .args(["netns", "exec", &lab.client_ns, "sh", "-c"])
        .arg(r#"r=$1; shift; mount -t proc proc "$r/proc" && mount -t sysfs sysfs "$r/sys" && exec chroot "$r" "$@""#)
        .arg("sh")
        .arg(&root)
        .arg(&spec.program)
        .args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log_file())
        .stderr(log_file())
        .spawn()
        .expect("client");
    let client_pid = child.id();
    lab.client = Some(child);
    let show = |what: &str| -> String {
        format!(
            "{what}\n--- dhcpcd log:\n{}\n--- dnsmasq log:\n{}",
            fs::read_to_string(&log).unwrap_or_default(),
            fs::read_to_string(work.path().join("dnsmasq.log")).unwrap_or_default()
        )
    };

    let run_dir = under(&root, net::RUN_DIR);
    let counted = wait_in_netns(&lab.client_ns, run_dir.clone(), move |addrs| {
        addrs.iter().any(in_dhcp_range) && (!slaac || addrs.iter().any(|a| a.prefix == 64))
    })
    .unwrap_or_else(|e| panic!("{}", show(&e)));
    eprintln!("ipa-init's wait counted: {counted:?}");
    let dhcp6 = counted.iter().find(|a| in_dhcp_range(a)).unwrap().clone();
    if slaac {
        // The kernel's SLAAC address (EUI-64 of the MAC) next to dhcpcd's.
        let eui64: std::net::IpAddr = "fd42:1::1a:ff:fe00:b".parse().unwrap();
        assert!(counted.iter().any(|a| a.addr == eui64 && a.prefix == 64), "{counted:?}");
    } else {
        assert_eq!(counted, vec![dhcp6.clone()], "only the DHCPv6 address is global");
    }

    // The hook's lease file, resolv.conf, and the server's view of the client.
    let lease = net::read_lease(&run_dir, "vethB", true).expect("lease6-vethB.env");
    assert_eq!(lease.address(), Some(dhcp6.addr), "{lease:?}");
    for (k, v) in [
        ("INTERFACE", "vethB"),
        ("FAMILY", "6"),
        ("METHOD", "dhcp6"),
        ("CLIENT", "dhcpcd"),
        ("PREFIX", "128"),
        ("DNS", "fd42:1::53"),
        ("SEARCH", "lab.example"),
        ("LEASE_SECONDS", "3600"),
    ] {
        assert_eq!(lease.get(k), Some(v), "{k} in {lease:?}");
    }
    let resolv = fs::read_to_string(under(&root, "/etc/resolv.conf")).unwrap();
    assert_eq!(resolv, "search lab.example\nnameserver fd42:1::53\n");
    let leases = fs::read_to_string(work.path().join("dnsmasq.leases")).unwrap();
    let duid = net::duid_ll(mac);
    assert!(
        leases.lines().any(|l| l.contains(&dhcp6.addr.to_string()) && l.ends_with(&duid)),
        "dnsmasq leased {} to DUID-LL {duid}: {leases}",
        dhcp6.addr
    );
    let dlog = fs::read_to_string(&log).unwrap();
    assert!(dlog.contains(&format!("DUID {duid}")), "{dlog}");
    assert!(!dlog.contains("no such user") && !dlog.contains("refusing chroot"), "{dlog}");
    // Privilege separation: dhcpcd's main process dropped to the dhcpcd user (uid 101).
    let status = fs::read_to_string(format!("/proc/{client_pid}/status")).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap().to_string();
    assert!(uid.split_whitespace().nth(1) == Some("101"), "{uid}");
    // The kernel keeps router advertisements (noipv6rs): dhcpcd left accept_ra alone.
    let accept_ra = run(
        "ip",
        &["netns", "exec", &lab.client_ns, "cat", "/proc/sys/net/ipv6/conf/vethB/accept_ra"],
    );
    assert_eq!(accept_ra.trim(), "1");
    // dhcpcd's state is in the tree's /run/dhcpcd (its DBDIR links there); nothing is in the
    // host's.
    assert!(under(&root, "/run/dhcpcd/vethB-6.pid").exists(), "{}", show("no pid file"));
    assert!(under(&root, "/run/dhcpcd/vethB.lease6").exists(), "{}", show("no lease6"));

    // Stopped (as at shutdown), dhcpcd removes its address and the hook its lease file.
    let mut child = lab.client.take().unwrap();
    assert!(stop(&mut child, Duration::from_secs(10)), "{}", show("dhcpcd ignored SIGTERM"));
    assert!(!lease_path_exists(&run_dir), "{}", show("lease6 left after stop"));
    let addrs = run("ip", &["-n", &lab.client_ns, "-6", "addr", "show", "dev", "vethB"]);
    assert!(!addrs.contains(&dhcp6.addr.to_string()), "{addrs}");
    // No dhcpcd process (privileged proxy, network proxies) outlives it for long: they exit
    // and are reaped (as ipa-init reaps orphans).
    let owned = [lab.dnsmasq.as_ref().unwrap().id()];
    let until = Instant::now() + Duration::from_secs(5);
    let mut running = reap_orphans(&owned);
    while !(running.is_empty() && lab.processes_in(&lab.client_ns).is_empty())
        && Instant::now() < until
    {
        std::thread::sleep(Duration::from_millis(100));
        running = reap_orphans(&owned);
    }
    assert_eq!(running, Vec::<i32>::new(), "dhcpcd helpers still running");
    assert_eq!(lab.processes_in(&lab.client_ns), Vec::<i32>::new(), "left in the client namespace");
}

fn lease_path_exists(run_dir: &Path) -> bool {
    net::lease_path(run_dir, "vethB", true).exists()
}

/// A managed network (the RA's M flag, no autonomous prefix): the address is DHCPv6's only.
#[test]
fn dhcpcd_gets_a_dhcpv6_address_that_ends_the_network_wait() {
    dhcpv6_through_dhcpcd("m", "fd42:1::100,fd42:1::1ff,64,1h", false);
}

/// SLAAC and DHCPv6 together: the kernel's SLAAC address stays next to dhcpcd's.
#[test]
fn dhcpcd_and_kernel_slaac_coexist() {
    dhcpv6_through_dhcpcd("s", "fd42:1::100,fd42:1::1ff,slaac,64,1h", true);
}

#[test]
fn readme_names_the_passwd_line_and_the_lease_key() {
    let readme =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    assert!(readme.contains(DHCPCD_PASSWD), "README must give the builder {DHCPCD_PASSWD:?}");
    assert!(readme.contains("CLIENT="), "README documents the lease6 CLIENT key");
}
