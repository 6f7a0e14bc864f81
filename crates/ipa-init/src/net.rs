//! Network interfaces: wired-NIC discovery (from a sysfs root, so tests use a fixture
//! tree), the per-NIC plan derived from the kernel command line, address and route reading
//! from procfs, the DHCP client command lines (busybox `udhcpc`; `udhcpc6` or dhcpcd for
//! DHCPv6), the lease files of the hooks and the network wait.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::cmdline::{IpParam, Mac, NetPlan, StaticIp};
use crate::supervisor::{CommandSpec, Io};

/// `ARPHRD_ETHER`.
const ARPHRD_ETHER: u32 = 1;

/// A wired Ethernet NIC found in sysfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    pub name: String,
    pub mac: Option<Mac>,
    pub ifindex: u32,
    /// `carrier` (only readable while the link is up).
    pub carrier: Option<bool>,
}

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

/// Whether `name` can pass traffic: its (up) link has carrier. The kernel starts the
/// transmit queues when the link comes up with carrier already on (a virtio-net NIC whose
/// driver just loaded: carrier comes within milliseconds of the probe), and at once when
/// carrier comes on later (an urgent link-watch event: a real NIC after autonegotiation).
/// `operstate` is not waited for: it is set by the link watch, which the kernel runs at most
/// once a second for non-urgent events, so right after a driver loaded it says `down` for up
/// to a second while packets already flow (that wait was 0.8 s of every boot).
pub fn link_ready(sys: &Path, name: &str) -> bool {
    let dir = sys.join("class/net").join(name);
    read_trim(&dir.join("carrier")).as_deref() == Some("1")
}

/// Why `/sys/class/net/<name>` is not a wired NIC, or `None` if it is one.
pub fn not_wired_reason(dir: &Path) -> Option<&'static str> {
    if fs::symlink_metadata(dir.join("device")).is_err() {
        return Some("no device (virtual)");
    }
    match read_trim(&dir.join("type")).and_then(|t| t.parse::<u32>().ok()) {
        Some(ARPHRD_ETHER) => {}
        _ => return Some("not Ethernet"),
    }
    if dir.join("wireless").exists() || dir.join("phy80211").exists() {
        return Some("wireless");
    }
    if dir.join("bridge").exists() || dir.join("bonding").exists() {
        return Some("bridge or bond");
    }
    let uevent = read_trim(&dir.join("uevent")).unwrap_or_default();
    for line in uevent.lines() {
        if let Some(t) = line.strip_prefix("DEVTYPE=")
            && matches!(t, "vlan" | "bridge" | "bond" | "wlan" | "wwan")
        {
            return Some("vlan, bridge, bond or wireless");
        }
    }
    None
}

/// The wired NICs under `<sys>/class/net`, by ifindex: a `device` link, `type` 1
/// (`ARPHRD_ETHER`), not wireless (`wireless`, `phy80211`), not a bridge, bond or vlan.
pub fn discover_wired_nics(sys: &Path) -> Vec<Nic> {
    let Ok(entries) = fs::read_dir(sys.join("class/net")) else {
        return Vec::new();
    };
    let mut nics: Vec<Nic> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let dir = e.path();
            if not_wired_reason(&dir).is_some() {
                return None;
            }
            Some(Nic {
                mac: read_trim(&dir.join("address")).and_then(|a| a.parse().ok()),
                ifindex: read_trim(&dir.join("ifindex"))
                    .and_then(|i| i.parse().ok())
                    .unwrap_or(u32::MAX),
                carrier: read_trim(&dir.join("carrier")).map(|c| c == "1"),
                name,
            })
        })
        .collect();
    nics.sort_by(|a, b| (a.ifindex, &a.name).cmp(&(b.ifindex, &b.name)));
    nics
}

/// When a NIC's DHCP clients start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Right away.
    First,
    /// After the boot NIC got an address (or the wait timed out).
    Later,
}

/// What to do on one NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicConfig {
    pub nic: Nic,
    pub dhcp4: bool,
    pub dhcp6: bool,
    pub static_ip: Option<StaticIp>,
    pub stage: Stage,
    /// The boot NIC: lowest route metric, its DHCP hostname wins.
    pub primary: bool,
    /// Route metric for its default route(s).
    pub metric: u32,
}

/// Which address ends the network wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitFor {
    /// `ip=off`: nothing.
    Nothing,
    /// This NIC (the boot NIC, or the static one).
    Nic(String),
    /// Any configured NIC.
    Any,
}

/// The network plan applied to the NICs present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub nics: Vec<NicConfig>,
    pub wait: WaitFor,
    /// `BOOTIF` names a NIC that is not (yet) present.
    pub bootif_missing: bool,
}

/// Apply `plan` to `nics`.
///
/// * `ip=off` (the last interface-less `ip=`): nothing.
/// * An `ip=` naming an interface (by name or MAC) configures that NIC; when only such
///   `ip=`s are given, the other NICs get no DHCP (links are still brought up).
/// * The last interface-less `ip=` applies to every other NIC; a static one goes to the boot
///   NIC, else the first NIC with carrier, else the first NIC.
/// * No `ip=`: DHCPv4 + DHCPv6 on every wired NIC.
/// * With `BOOTIF` and without `dhcp_all_interfaces`, the boot NIC starts first and the others
///   at [`Stage::Later`]; the wait is for the boot NIC (or the static NIC, or any).
pub fn assign(plan: &NetPlan, nics: &[Nic]) -> Assignment {
    let bootif = plan.bootif.and_then(|mac| nics.iter().find(|n| n.mac == Some(mac)));
    let bootif_missing = plan.bootif.is_some() && bootif.is_none();
    if plan.is_off() {
        return Assignment { nics: Vec::new(), wait: WaitFor::Nothing, bootif_missing };
    }
    let default = IpParam::Auto { interface: None, dhcp4: true, dhcp6: true };
    let has_specific = plan.ip.iter().any(|p| match p {
        IpParam::Off => false,
        IpParam::Auto { interface, .. } => interface.is_some(),
        IpParam::Static(s) => s.interface.is_some(),
    });
    let global = match plan.global() {
        Some(g) => Some(g),
        None if has_specific => None,
        None => Some(&default),
    };
    // The NIC an interface-less static ip= goes to.
    let static_target = match global {
        Some(IpParam::Static(_)) => bootif
            .or_else(|| nics.iter().find(|n| n.carrier == Some(true)))
            .or_else(|| nics.first())
            .map(|n| n.name.clone()),
        _ => None,
    };
    let staged = bootif.is_some() && !plan.dhcp_all_interfaces;
    let mut out = Vec::new();
    let mut static_nic = None;
    for (pos, nic) in nics.iter().enumerate() {
        let param = plan.for_interface(&nic.name, nic.mac).or(match global {
            Some(IpParam::Static(_)) if static_target.as_deref() != Some(&nic.name) => None,
            g => g,
        });
        let (dhcp4, dhcp6, static_ip) = match param {
            Some(IpParam::Auto { dhcp4, dhcp6, .. }) => (*dhcp4, *dhcp6, None),
            Some(IpParam::Static(s)) => (false, false, Some(s.clone())),
            Some(IpParam::Off) | None => (false, false, None),
        };
        if static_ip.is_some() && static_nic.is_none() {
            static_nic = Some(nic.name.clone());
        }
        let primary = bootif.map(|b| b.name == nic.name).unwrap_or(false);
        let stage = if staged && !primary { Stage::Later } else { Stage::First };
        let metric = if primary { 100 } else { 100 + 10 * (pos as u32 + 1) };
        out.push(NicConfig { nic: nic.clone(), dhcp4, dhcp6, static_ip, stage, primary, metric });
    }
    let configured = |c: &NicConfig| c.dhcp4 || c.dhcp6 || c.static_ip.is_some();
    let wait = match bootif {
        Some(b) if out.iter().any(|c| c.nic.name == b.name && configured(c)) => {
            WaitFor::Nic(b.name.clone())
        }
        _ => match static_nic {
            Some(n) => WaitFor::Nic(n),
            None if out.iter().any(configured) => WaitFor::Any,
            // SLAAC-only (ip=auto6) still waits for any global address.
            None if !out.is_empty() && global.is_some() => WaitFor::Any,
            None => WaitFor::Nothing,
        },
    };
    Assignment { nics: out, wait, bootif_missing }
}

/// A global address on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfAddr {
    pub ifname: String,
    pub addr: IpAddr,
    pub prefix: u8,
}

/// `IFA_F_TENTATIVE` (DAD not finished) and `IFA_F_DADFAILED`.
const IFA_F_TENTATIVE: u32 = 0x40;
const IFA_F_DADFAILED: u32 = 0x08;

/// Global, usable IPv6 addresses from `/proc/net/if_inet6` text
/// (`addr ifindex prefixlen scope flags ifname`; scope 0 = global).
pub fn parse_if_inet6(text: &str) -> Vec<IfAddr> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 6 || f[0].len() != 32 {
                return None;
            }
            let bits = u128::from_str_radix(f[0], 16).ok()?;
            let prefix = u8::from_str_radix(f[2], 16).ok()?;
            let scope = u32::from_str_radix(f[3], 16).ok()?;
            let flags = u32::from_str_radix(f[4], 16).ok()?;
            (scope == 0 && flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED) == 0).then(|| IfAddr {
                ifname: f[5].to_string(),
                addr: IpAddr::V6(Ipv6Addr::from(bits)),
                prefix,
            })
        })
        .collect()
}

/// Is this IPv4 address global enough to reach Ironic (not loopback, link-local or 0)?
pub fn is_global_v4(a: Ipv4Addr) -> bool {
    !(a.is_loopback() || a.is_link_local() || a.is_unspecified() || a.is_broadcast())
}

/// Global IPv4 addresses (getifaddrs) and usable global IPv6 addresses (`if_inet6`) of the
/// calling thread's network namespace.
pub fn global_addresses() -> Vec<IfAddr> {
    let mut out = Vec::new();
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            let Some(sin) = a.address.as_ref().and_then(|s| s.as_sockaddr_in()) else {
                continue;
            };
            let ip = sin.ip();
            if !is_global_v4(ip) {
                continue;
            }
            let prefix = a
                .netmask
                .as_ref()
                .and_then(|m| m.as_sockaddr_in())
                .map(|m| u32::from(m.ip()).leading_ones() as u8)
                .unwrap_or(32);
            out.push(IfAddr { ifname: a.interface_name, addr: IpAddr::V4(ip), prefix });
        }
    }
    // thread-self: the calling thread's network namespace (`/proc/net` is the main
    // thread's), as for the netlink socket of getifaddrs.
    if let Ok(text) = fs::read_to_string("/proc/thread-self/net/if_inet6")
        .or_else(|_| fs::read_to_string("/proc/net/if_inet6"))
    {
        out.extend(parse_if_inet6(&text));
    }
    out
}

/// IPv4 default gateways by interface from `/proc/net/route` text.
pub fn parse_proc_net_route(text: &str) -> HashMap<String, Ipv4Addr> {
    let mut out = HashMap::new();
    for l in text.lines().skip(1) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 8 || f[1] != "00000000" || f[7] != "00000000" {
            continue;
        }
        if let Ok(gw) = u32::from_str_radix(f[2], 16) {
            // The kernel prints the address in host (little-endian on x86) byte order.
            let gw = Ipv4Addr::from(gw.to_ne_bytes());
            out.entry(f[0].to_string()).or_insert(gw);
        }
    }
    out
}

/// IPv6 default gateways by interface from `/proc/net/ipv6_route` text.
pub fn parse_ipv6_route(text: &str) -> HashMap<String, Ipv6Addr> {
    let mut out = HashMap::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 10 || f[0] != "0".repeat(32) || f[1] != "00" {
            continue;
        }
        if let Ok(nh) = u128::from_str_radix(f[4], 16)
            && nh != 0
        {
            out.entry(f[9].to_string()).or_insert(Ipv6Addr::from(nh));
        }
    }
    out
}

/// The default gateway of `ifname` for `family` (4 or 6), if any.
pub fn default_gateway(ifname: &str, v6: bool) -> Option<IpAddr> {
    if v6 {
        let t = fs::read_to_string("/proc/net/ipv6_route").ok()?;
        parse_ipv6_route(&t).get(ifname).copied().map(IpAddr::V6)
    } else {
        let t = fs::read_to_string("/proc/net/route").ok()?;
        parse_proc_net_route(&t).get(ifname).copied().map(IpAddr::V4)
    }
}

/// Where ipa-init keeps its run-time state (lease files, DHCP logs, resolv fragments).
pub const RUN_DIR: &str = "/run/ipa-init";
/// The DHCP hook script (installed from `files/udhcpc.script`).
pub const UDHCPC_SCRIPT: &str = "/usr/share/ipa-init/udhcpc.script";

/// A program to run: a binary, or a busybox applet (`/bin/busybox udhcpc ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    pub program: PathBuf,
    pub prefix_args: Vec<String>,
}

/// Find `applet` in the ramdisk PATH, else in busybox's applet list (`busybox --list`).
pub fn find_tool(applet: &str, path_dirs: &[&str], busybox_applets: &[String]) -> Option<Tool> {
    for d in path_dirs {
        let p = Path::new(d).join(applet);
        if p.exists() {
            return Some(Tool { program: p, prefix_args: Vec::new() });
        }
    }
    busybox_applets.iter().any(|a| a == applet).then(|| Tool {
        program: PathBuf::from("/bin/busybox"),
        prefix_args: vec![applet.to_string()],
    })
}

/// Arguments of the DHCPv4 client: `udhcpc -i X -f -t 40 -T 1 -A 3 -s SCRIPT -O ...`
/// (foreground, retries forever; supervised by ipa-init).
pub fn udhcpc_args(ifname: &str, script: &str, hostname: Option<&str>) -> Vec<String> {
    let mut a: Vec<String> = [
        "-i", ifname, "-f", "-t", "40", "-T", "1", "-A", "3", "-s", script, "-O", "search", "-O",
        "mtu",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(h) = hostname {
        a.push("-x".into());
        a.push(format!("hostname:{h}"));
    }
    a
}

/// Arguments of the DHCPv6 client: `udhcpc6 -i X -f -t 20 -T 2 -A 3 -s SCRIPT -O dns -O search`.
pub fn udhcpc6_args(ifname: &str, script: &str) -> Vec<String> {
    [
        "-i", ifname, "-f", "-t", "20", "-T", "2", "-A", "3", "-s", script, "-O", "dns", "-O",
        "search",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// ipa-init's dhcpcd configuration (installed from `files/dhcpcd.conf`): DHCPv6 only.
pub const DHCPCD_CONF: &str = "/usr/share/ipa-init/dhcpcd.conf";
/// ipa-init's dhcpcd hook (installed from `files/dhcpcd.script`); it runs [`UDHCPC_SCRIPT`].
pub const DHCPCD_SCRIPT: &str = "/usr/share/ipa-init/dhcpcd.script";
/// dhcpcd's run directory (compiled in: pid files, control sockets).
pub const DHCPCD_RUNDIR: &str = "/run/dhcpcd";
/// dhcpcd's database directory (compiled in: leases, DUID); ipa-init makes it a symlink to
/// [`DHCPCD_RUNDIR`].
pub const DHCPCD_DBDIR: &str = "/var/lib/dhcpcd";
/// The user dhcpcd 9 drops privileges to (Debian's build). Without it in `/etc/passwd`,
/// dhcpcd logs "no such user dhcpcd" and runs as root without privilege separation; with it,
/// its unprivileged processes chroot to the user's home, which must exist.
pub const DHCPCD_USER: &str = "dhcpcd";

/// How long after its NIC's DHCPv4 client dhcpcd starts (see [`dhcp6_start_delay`]).
pub const DHCPCD_AFTER_DHCP4: std::time::Duration = std::time::Duration::from_secs(2);
/// A dhcpcd that has not started when the agent starts waits this long after the agent.
pub const DHCPCD_AFTER_AGENT: std::time::Duration = std::time::Duration::from_secs(3);

/// When a NIC's DHCPv6 client starts, counted from its DHCPv4 client's start: dhcpcd waits
/// [`DHCPCD_AFTER_DHCP4`] when udhcpc runs on the same NIC, udhcpc6 (or dhcpcd alone, as
/// with `ip=dhcp6`) starts at once. dhcpcd's start is heavy for a ramdisk: four processes
/// (privilege separation, a chroot) and, through its first `SIOCGIFVLAN` ioctl, the kernel
/// loading `8021q` and its four dependencies with `/sbin/modprobe`. On one emulated CPU that
/// took ~1 s, and beside udhcpc it doubled the time to the IPv4 lease (the DHCP hook's forks
/// waited for the CPU). An IPv4 network thus gets its lease, and the agent its first lookup,
/// before dhcpcd starts; an IPv6-only network gets its DHCPv6 lease that much later (SLAAC,
/// which is the kernel's, is not delayed). When the network wait ends first (the IPv4 lease
/// came), a dhcpcd still waiting is pushed to [`DHCPCD_AFTER_AGENT`] after the agent's start,
/// which is then not slowed down either.
pub fn dhcp6_start_delay(client: &Dhcp6Client, dhcp4_runs: bool) -> std::time::Duration {
    match client {
        Dhcp6Client::Dhcpcd(_) if dhcp4_runs => DHCPCD_AFTER_DHCP4,
        _ => std::time::Duration::ZERO,
    }
}

/// The DHCPv6 client ipa-init runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dhcp6Client {
    /// busybox `udhcpc6` with [`UDHCPC_SCRIPT`].
    Udhcpc6(Tool),
    /// dhcpcd with [`DHCPCD_CONF`] and [`DHCPCD_SCRIPT`].
    Dhcpcd(Tool),
}

impl Dhcp6Client {
    pub fn name(&self) -> &'static str {
        match self {
            Dhcp6Client::Udhcpc6(_) => "udhcpc6",
            Dhcp6Client::Dhcpcd(_) => "dhcpcd",
        }
    }

    pub fn tool(&self) -> &Tool {
        match self {
            Dhcp6Client::Udhcpc6(t) | Dhcp6Client::Dhcpcd(t) => t,
        }
    }
}

/// The DHCPv6 client: busybox `udhcpc6` when there is one, else dhcpcd when it is installed
/// together with ipa-init's `dhcpcd.conf` and `dhcpcd.script` (`dhcpcd_files`; without them
/// dhcpcd would handle router advertisements itself and run Debian's hooks), else none
/// (IPv6 by SLAAC only).
pub fn choose_dhcp6_client(
    udhcpc6: Option<Tool>,
    dhcpcd: Option<Tool>,
    dhcpcd_files: bool,
) -> Option<Dhcp6Client> {
    match (udhcpc6, dhcpcd) {
        (Some(t), _) => Some(Dhcp6Client::Udhcpc6(t)),
        (None, Some(t)) if dhcpcd_files => Some(Dhcp6Client::Dhcpcd(t)),
        _ => None,
    }
}

/// busybox's applets (`/bin/busybox --list`; none when there is no busybox).
pub fn busybox_applets() -> Vec<String> {
    Command::new("/bin/busybox")
        .arg("--list")
        .env_clear()
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().map(|l| l.trim().to_string()).collect())
        .unwrap_or_default()
}

/// What ipa-init's hooks read from their environment: `IPA_DHCP_FAMILY` (4 or 6),
/// `IPA_DHCP_METRIC` (default route metric), `IPA_DHCP_PRIMARY` (1 on the boot NIC: its DHCP
/// hostname wins), `IPA_HOSTNAME_FIXED` (1 when the command line set the hostname).
pub fn hook_env(c: &NicConfig, family: u8, hostname_fixed: bool) -> Vec<(String, String)> {
    vec![
        ("IPA_DHCP_FAMILY".into(), family.to_string()),
        ("IPA_DHCP_METRIC".into(), c.metric.to_string()),
        ("IPA_DHCP_PRIMARY".into(), if c.primary { "1" } else { "0" }.into()),
        ("IPA_HOSTNAME_FIXED".into(), if hostname_fixed { "1" } else { "0" }.into()),
    ]
}

/// The DUID-LL (RFC 8415 section 11.4: type 3, hardware type 1, the MAC) of a NIC in dhcpcd's
/// `--duid=` notation. busybox udhcpc6 sends the same, so a DHCPv6 server (Neutron's dnsmasq)
/// can tell the NIC by its MAC; dhcpcd's default (DUID-UUID from the DMI UUID, else DUID-LLT
/// of the first NIC, shared by every NIC) would not say which NIC asks.
pub fn duid_ll(mac: Mac) -> String {
    format!("00:03:00:01:{mac}")
}

/// Arguments of dhcpcd as the DHCPv6 client of one NIC:
/// `dhcpcd -f CONF -c SCRIPT -6 -B [--duid=00:03:00:01:<mac>] -e K=V... -e IPA_DHCP_CLIENT=dhcpcd IF`.
///
/// `-6` with one interface: a single-interface, IPv6-only instance (pid file
/// `/run/dhcpcd/<if>-6.pid`, so one per NIC can run); `-B`: in the foreground, supervised by
/// ipa-init; `-e`: dhcpcd gives its hook only its own variables, PATH and these. The rest
/// (no router solicitation, IA_NA at once, no timeout) is in `CONF`.
pub fn dhcpcd_args(
    ifname: &str,
    conf: &str,
    script: &str,
    mac: Option<Mac>,
    hook_env: &[(String, String)],
) -> Vec<String> {
    let mut a: Vec<String> =
        ["-f", conf, "-c", script, "-6", "-B"].iter().map(|s| s.to_string()).collect();
    if let Some(m) = mac {
        // An optional argument: it must be attached.
        a.push(format!("--duid={}", duid_ll(m)));
    }
    for (k, v) in hook_env.iter().chain(&[("IPA_DHCP_CLIENT".to_string(), "dhcpcd".to_string())]) {
        a.push("-e".into());
        a.push(format!("{k}={v}"));
    }
    a.push(ifname.into());
    a
}

/// The supervised DHCPv4 client of `c`'s NIC: busybox `udhcpc` with [`UDHCPC_SCRIPT`], output
/// appended to `/run/ipa-init/dhcp4-<if>.log`.
pub fn dhcp4_command(udhcpc: &Tool, c: &NicConfig, hostname_fixed: bool) -> CommandSpec {
    let name = &c.nic.name;
    let mut args = udhcpc.prefix_args.clone();
    args.extend(udhcpc_args(name, UDHCPC_SCRIPT, None));
    client_command(udhcpc, args, name, 4, hook_env(c, 4, hostname_fixed))
}

/// The supervised DHCPv6 client of `c`'s NIC: `udhcpc6` with [`UDHCPC_SCRIPT`] or dhcpcd with
/// [`DHCPCD_CONF`] and [`DHCPCD_SCRIPT`], output appended to `/run/ipa-init/dhcp6-<if>.log`.
pub fn dhcp6_command(client: &Dhcp6Client, c: &NicConfig, hostname_fixed: bool) -> CommandSpec {
    let name = &c.nic.name;
    let env = hook_env(c, 6, hostname_fixed);
    let tool = client.tool();
    let mut args = tool.prefix_args.clone();
    match client {
        Dhcp6Client::Udhcpc6(_) => args.extend(udhcpc6_args(name, UDHCPC_SCRIPT)),
        Dhcp6Client::Dhcpcd(_) => {
            args.extend(dhcpcd_args(name, DHCPCD_CONF, DHCPCD_SCRIPT, c.nic.mac, &env))
        }
    }
    client_command(tool, args, name, 6, env)
}

fn client_command(
    tool: &Tool,
    args: Vec<String>,
    ifname: &str,
    family: u8,
    hook_env: Vec<(String, String)>,
) -> CommandSpec {
    let log = PathBuf::from(format!("{RUN_DIR}/dhcp{family}-{ifname}.log"));
    let mut env = vec![("PATH".to_string(), crate::init::PATH.to_string())];
    env.extend(hook_env);
    CommandSpec {
        env,
        stdout: Io::Append(log.clone()),
        stderr: Io::Append(log),
        ..CommandSpec::new(tool.program.clone(), args)
    }
}

/// The home directory of `user` in `/etc/passwd` text.
pub fn passwd_home(passwd: &str, user: &str) -> Option<String> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 7 && f[0] == user).then(|| f[5].to_string())
    })
}

/// `path` (absolute) under `root`.
fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// Prepare dhcpcd's directories in the tree at `root` (`/` on the ramdisk): [`DHCPCD_RUNDIR`],
/// [`DHCPCD_DBDIR`] as a symlink to it (unless it exists), so all of dhcpcd's state is under
/// `/run`, and, when `/etc/passwd` has the [`DHCPCD_USER`], its home (the chroot of dhcpcd's
/// unprivileged processes) if missing. Returns how dhcpcd will run, for the console.
pub fn prepare_dhcpcd(root: &Path) -> String {
    use std::os::unix::fs::{DirBuilderExt as _, symlink};
    let mkdir = |p: &Path| fs::DirBuilder::new().recursive(true).mode(0o755).create(p);
    let rundir = under(root, DHCPCD_RUNDIR);
    let mut problems = Vec::new();
    if let Err(e) = mkdir(&rundir) {
        problems.push(format!("{DHCPCD_RUNDIR}: {e}"));
    }
    let dbdir = under(root, DHCPCD_DBDIR);
    if fs::symlink_metadata(&dbdir).is_err() {
        let made =
            dbdir.parent().map_or(Ok(()), mkdir).and_then(|_| symlink(DHCPCD_RUNDIR, &dbdir));
        if let Err(e) = made {
            problems.push(format!("{DHCPCD_DBDIR} -> {DHCPCD_RUNDIR}: {e}"));
        }
    }
    let passwd = fs::read_to_string(under(root, "/etc/passwd")).unwrap_or_default();
    let mut what = match passwd_home(&passwd, DHCPCD_USER) {
        Some(home) if home.starts_with('/') && home != "/" => {
            let dir = under(root, &home);
            match mkdir(&dir) {
                Ok(()) => format!("privilege separation as {DHCPCD_USER}, chroot {home}"),
                Err(e) => format!("{home}: {e}: dhcpcd refuses the chroot and runs as root"),
            }
        }
        Some(home) => format!(
            "user {DHCPCD_USER} has home {home:?}: dhcpcd runs as root without privilege separation"
        ),
        None => format!(
            "no {DHCPCD_USER} user in /etc/passwd: dhcpcd runs as root without privilege separation"
        ),
    };
    for p in problems {
        what.push_str("; warning: ");
        what.push_str(&p);
    }
    what
}

/// Render `/etc/resolv.conf` from fragments (`search ...` / `nameserver ...` lines) in
/// order: searches merged, nameservers deduplicated — what the hook script does too.
pub fn render_resolv(fragments: &[String]) -> String {
    let mut search: Vec<&str> = Vec::new();
    let mut ns: Vec<&str> = Vec::new();
    for f in fragments {
        for l in f.lines() {
            let mut w = l.split_whitespace();
            match w.next() {
                Some("nameserver") => {
                    if let Some(a) = w.next()
                        && !ns.contains(&a)
                    {
                        ns.push(a);
                    }
                }
                Some("search") | Some("domain") => {
                    for s in w {
                        if !search.contains(&s) {
                            search.push(s);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let mut out = String::new();
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for a in ns {
        out.push_str(&format!("nameserver {a}\n"));
    }
    out
}

/// Shell-quote a value for a `KEY='value'` env file.
pub fn shell_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "'\\''"))
}

/// A lease file of ipa-init's hooks (`lease-<if>.env`, `lease6-<if>.env`): `KEY='value'`
/// lines, values quoted as [`shell_quote`] does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lease {
    pub pairs: Vec<(String, String)>,
}

impl Lease {
    /// Parse `KEY=value` assignments, one a line, with the shell's quoting: `'...'` literal,
    /// `"..."` with `\` before `"`, `\`, `$` or a backquote, and `\x` outside quotes. A quoted
    /// value may span lines. Lines without `=` before any quote (comments, blanks) are skipped.
    pub fn parse(text: &str) -> Lease {
        let mut pairs = Vec::new();
        let mut chars = text.chars().peekable();
        while chars.peek().is_some() {
            let mut key = String::new();
            let mut is_assignment = false;
            for c in chars.by_ref() {
                match c {
                    '=' => {
                        is_assignment = true;
                        break;
                    }
                    '\n' => break,
                    c => key.push(c),
                }
            }
            let key = key.trim();
            let valid_key = !key.is_empty()
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !key.starts_with(|c: char| c.is_ascii_digit());
            if !is_assignment || !valid_key {
                if is_assignment {
                    // Not a KEY=: skip the rest of the line.
                    for c in chars.by_ref() {
                        if c == '\n' {
                            break;
                        }
                    }
                }
                continue;
            }
            let mut value = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\n' => break,
                    '\'' => {
                        for c in chars.by_ref() {
                            if c == '\'' {
                                break;
                            }
                            value.push(c);
                        }
                    }
                    '"' => {
                        while let Some(c) = chars.next() {
                            match c {
                                '"' => break,
                                '\\' if matches!(chars.peek(), Some('"' | '\\' | '$' | '`')) => {
                                    value.extend(chars.next())
                                }
                                c => value.push(c),
                            }
                        }
                    }
                    '\\' => match chars.next() {
                        Some('\n') | None => {}
                        Some(c) => value.push(c),
                    },
                    c => value.push(c),
                }
            }
            pairs.push((key.to_string(), value));
        }
        Lease { pairs }
    }

    /// The last value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// `ADDRESS`, when it is an IP address.
    pub fn address(&self) -> Option<IpAddr> {
        self.get("ADDRESS").and_then(|a| a.parse().ok())
    }
}

/// `<run_dir>/lease-<if>.env` (IPv4) or `lease6-<if>.env` (DHCPv6).
pub fn lease_path(run_dir: &Path, ifname: &str, v6: bool) -> PathBuf {
    run_dir.join(format!("lease{}-{ifname}.env", if v6 { "6" } else { "" }))
}

/// The lease file of `ifname`, if there is one.
pub fn read_lease(run_dir: &Path, ifname: &str, v6: bool) -> Option<Lease> {
    fs::read_to_string(lease_path(run_dir, ifname, v6)).ok().map(|t| Lease::parse(&t))
}

#[derive(Debug, Clone, Default)]
struct WaitNic {
    dhcp4: bool,
    dhcp6: bool,
    /// A counted address was seen: [IPv4, IPv6].
    seen: [bool; 2],
}

/// The network wait: which configured NIC has a global address that counts, and whether
/// the wait target ([`WaitFor`]) has one.
#[derive(Debug, Clone)]
pub struct NetWait {
    wait: WaitFor,
    run_dir: PathBuf,
    nics: BTreeMap<String, WaitNic>,
}

impl NetWait {
    /// A wait for `wait`; the hooks' lease files are in `run_dir` ([`RUN_DIR`]).
    pub fn new(wait: WaitFor, run_dir: impl Into<PathBuf>) -> Self {
        NetWait { wait, run_dir: run_dir.into(), nics: BTreeMap::new() }
    }

    pub fn wait_for(&self) -> &WaitFor {
        &self.wait
    }

    /// A NIC ipa-init configured; `dhcp4`/`dhcp6`: a DHCPv4/DHCPv6 client runs on it.
    pub fn add_nic(&mut self, ifname: &str, dhcp4: bool, dhcp6: bool) {
        self.nics.entry(ifname.to_string()).or_insert(WaitNic { dhcp4, dhcp6, seen: [false; 2] });
    }

    /// Does this global address of a configured NIC count?
    ///
    /// * IPv4 where DHCPv4 runs: once the hook wrote `lease-<if>.env` (routes and resolv.conf
    ///   are then in place too).
    /// * A /128 IPv6 address where a DHCPv6 client runs (what DHCPv6 assigns; SLAAC addresses
    ///   are /64): once `lease6-<if>.env` names it (the hook wrote resolv.conf; dhcpcd adds
    ///   the address just before it runs the hook).
    /// * Any other (static, SLAAC): at once.
    pub fn counts(&self, a: &IfAddr) -> bool {
        let Some(n) = self.nics.get(&a.ifname) else {
            return false;
        };
        match a.addr {
            IpAddr::V4(_) if n.dhcp4 => read_lease(&self.run_dir, &a.ifname, false).is_some(),
            IpAddr::V6(_) if n.dhcp6 && a.prefix == 128 => {
                read_lease(&self.run_dir, &a.ifname, true)
                    .and_then(|l| l.address())
                    .is_some_and(|l| l == a.addr)
            }
            _ => true,
        }
    }

    /// Record the addresses that count; returns those that are the first of their NIC and
    /// family (for the console).
    pub fn observe<'a>(&mut self, addrs: &'a [IfAddr]) -> Vec<&'a IfAddr> {
        let mut new = Vec::new();
        for a in addrs {
            if !self.counts(a) {
                continue;
            }
            if let Some(n) = self.nics.get_mut(&a.ifname) {
                let slot = &mut n.seen[usize::from(a.addr.is_ipv6())];
                if !*slot {
                    *slot = true;
                    new.push(a);
                }
            }
        }
        new
    }

    /// Has `ifname` an address that counts (seen by [`NetWait::observe`])?
    pub fn has_address(&self, ifname: &str) -> bool {
        self.nics.get(ifname).is_some_and(|n| n.seen.iter().any(|s| *s))
    }

    /// Is the wait over: nothing to wait for, or the target has an address that counts?
    pub fn ready(&self) -> bool {
        match &self.wait {
            WaitFor::Nothing => true,
            WaitFor::Nic(n) => self.has_address(n),
            WaitFor::Any => self.nics.keys().any(|n| self.has_address(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_is_ready_with_carrier_whatever_its_operstate_says() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("class/net/eth0");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("carrier"), "1\n").unwrap();
        for state in ["down", "lowerlayerdown", "up", "unknown"] {
            fs::write(dir.join("operstate"), format!("{state}\n")).unwrap();
            assert!(link_ready(t.path(), "eth0"), "{state}");
        }
        fs::write(dir.join("carrier"), "0\n").unwrap();
        assert!(!link_ready(t.path(), "eth0"));
        // A down link has no readable carrier.
        fs::remove_file(dir.join("carrier")).unwrap();
        assert!(!link_ready(t.path(), "eth0"));
        assert!(!link_ready(t.path(), "eth9"));
    }
    use crate::cmdline::{BootConfig, Cmdline};
    use std::time::Duration;

    struct Sys(tempfile::TempDir);

    impl Sys {
        fn new() -> Self {
            let s = Sys(tempfile::tempdir().unwrap());
            fs::create_dir_all(s.0.path().join("class/net")).unwrap();
            s
        }
        fn path(&self) -> &Path {
            self.0.path()
        }
        /// A netdev: `device` is a symlink into a fake PCI device when `physical`.
        fn add(&self, name: &str, ifindex: u32, mac: &str, ty: u32, physical: bool) -> PathBuf {
            let dir = self.path().join("class/net").join(name);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("address"), format!("{mac}\n")).unwrap();
            fs::write(dir.join("ifindex"), format!("{ifindex}\n")).unwrap();
            fs::write(dir.join("type"), format!("{ty}\n")).unwrap();
            fs::write(dir.join("uevent"), format!("INTERFACE={name}\nIFINDEX={ifindex}\n"))
                .unwrap();
            if physical {
                let dev = self.path().join("devices/pci0000:00").join(name);
                fs::create_dir_all(&dev).unwrap();
                std::os::unix::fs::symlink(&dev, dir.join("device")).unwrap();
            }
            dir
        }
    }

    fn fixture() -> Sys {
        let s = Sys::new();
        s.add("lo", 1, "00:00:00:00:00:00", 772, false);
        s.add("eth0", 2, "52:54:00:12:34:56", 1, true);
        s.add("eth1", 3, "52:54:00:aa:bb:cc", 1, true);
        let wl = s.add("wlan0", 4, "02:00:00:00:00:01", 1, true);
        fs::create_dir_all(wl.join("phy80211")).unwrap();
        let wl2 = s.add("wlp2s0", 5, "02:00:00:00:00:02", 1, true);
        fs::create_dir_all(wl2.join("wireless")).unwrap();
        let br = s.add("br0", 6, "52:54:00:12:34:56", 1, false);
        fs::create_dir_all(br.join("bridge")).unwrap();
        let bond = s.add("bond0", 7, "52:54:00:12:34:57", 1, true);
        fs::create_dir_all(bond.join("bonding")).unwrap();
        let vlan = s.add("eth0.100", 8, "52:54:00:12:34:56", 1, true);
        fs::write(vlan.join("uevent"), "DEVTYPE=vlan\nINTERFACE=eth0.100\n").unwrap();
        s.add("ib0", 9, "80:00:00:00:fe:80:00:00:00:00:00:00:00:00:00:00:00:00:00:01", 32, true);
        s.add("tap0", 10, "fe:00:00:00:00:01", 1, false);
        // A physical NIC registered later, with a lower name but higher ifindex.
        s.add("eno1", 11, "52:54:00:00:00:01", 1, true);
        s
    }

    fn plan(cmdline: &str) -> NetPlan {
        BootConfig::from_cmdline(&Cmdline::parse(cmdline)).net
    }

    #[test]
    fn wired_nic_selection_from_sysfs_fixture() {
        let s = fixture();
        let nics = discover_wired_nics(s.path());
        let names: Vec<&str> = nics.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, vec!["eth0", "eth1", "eno1"]);
        assert_eq!(nics[1].mac, Some("52:54:00:aa:bb:cc".parse().unwrap()));
        assert_eq!(nics[1].ifindex, 3);
        assert_eq!(nics[0].carrier, None);
        let dir = s.path().join("class/net");
        assert_eq!(not_wired_reason(&dir.join("lo")), Some("no device (virtual)"));
        assert_eq!(not_wired_reason(&dir.join("ib0")), Some("not Ethernet"));
        assert_eq!(not_wired_reason(&dir.join("wlan0")), Some("wireless"));
        assert_eq!(not_wired_reason(&dir.join("bond0")), Some("bridge or bond"));
        assert!(discover_wired_nics(&s.path().join("nonexistent")).is_empty());
    }

    fn summary(a: &Assignment) -> Vec<(String, bool, bool, bool, Stage, bool)> {
        a.nics
            .iter()
            .map(|c| {
                (c.nic.name.clone(), c.dhcp4, c.dhcp6, c.static_ip.is_some(), c.stage, c.primary)
            })
            .collect()
    }

    fn s(n: &str) -> String {
        n.to_string()
    }

    #[test]
    fn default_is_dhcp_everywhere_and_waits_for_any() {
        let nics = discover_wired_nics(fixture().path());
        let a = assign(&plan(""), &nics);
        assert_eq!(
            summary(&a),
            vec![
                (s("eth0"), true, true, false, Stage::First, false),
                (s("eth1"), true, true, false, Stage::First, false),
                (s("eno1"), true, true, false, Stage::First, false),
            ]
        );
        assert_eq!(a.wait, WaitFor::Any);
        assert_eq!(a.nics.iter().map(|c| c.metric).collect::<Vec<_>>(), vec![110, 120, 130]);
    }

    #[test]
    fn bootif_first_then_the_others_unless_dhcp_all() {
        let nics = discover_wired_nics(fixture().path());
        let a = assign(&plan("BOOTIF=01-52-54-00-aa-bb-cc"), &nics);
        assert_eq!(
            summary(&a),
            vec![
                (s("eth0"), true, true, false, Stage::Later, false),
                (s("eth1"), true, true, false, Stage::First, true),
                (s("eno1"), true, true, false, Stage::Later, false),
            ]
        );
        assert_eq!(a.wait, WaitFor::Nic(s("eth1")));
        assert_eq!(a.nics[1].metric, 100);
        assert!(!a.bootif_missing);

        let a = assign(
            &plan("BOOTIF=01-52-54-00-aa-bb-cc ipa-inspection-dhcp-all-interfaces=1"),
            &nics,
        );
        assert!(a.nics.iter().all(|c| c.stage == Stage::First && c.dhcp4 && c.dhcp6));
        assert_eq!(a.wait, WaitFor::Nic(s("eth1")));

        let a = assign(&plan("BOOTIF=01-52-54-00-ff-ff-ff"), &nics);
        assert!(a.bootif_missing);
        assert_eq!(a.wait, WaitFor::Any);
        assert!(a.nics.iter().all(|c| c.stage == Stage::First));
    }

    #[test]
    fn ip_params_shape_the_assignment() {
        let nics = discover_wired_nics(fixture().path());
        // v4 only / v6 only.
        let a = assign(&plan("ip=dhcp BOOTIF=52:54:00:12:34:56"), &nics);
        assert!(a.nics.iter().all(|c| c.dhcp4 && !c.dhcp6));
        assert_eq!(a.wait, WaitFor::Nic(s("eth0")));
        let a = assign(&plan("ip=dhcp6"), &nics);
        assert!(a.nics.iter().all(|c| !c.dhcp4 && c.dhcp6));
        // SLAAC only: no clients, but still wait for an address.
        let a = assign(&plan("ip=auto6"), &nics);
        assert!(a.nics.iter().all(|c| !c.dhcp4 && !c.dhcp6));
        assert_eq!(a.wait, WaitFor::Any);
        // off.
        let a = assign(&plan("ip=off BOOTIF=52:54:00:12:34:56"), &nics);
        assert!(a.nics.is_empty());
        assert_eq!(a.wait, WaitFor::Nothing);
        // Per-interface only: the others get nothing.
        let a = assign(&plan("ip=eth1:dhcp"), &nics);
        assert_eq!(
            summary(&a),
            vec![
                (s("eth0"), false, false, false, Stage::First, false),
                (s("eth1"), true, false, false, Stage::First, false),
                (s("eno1"), false, false, false, Stage::First, false),
            ]
        );
        assert_eq!(a.wait, WaitFor::Any);
        // Static on a named interface, by name or by MAC.
        for p in [
            "ip=10.0.0.5::10.0.0.1:24:node:eno1:none",
            "ip=10.0.0.5::10.0.0.1:24:node:52-54-00-00-00-01:none",
        ] {
            let a = assign(&plan(p), &nics);
            assert_eq!(
                summary(&a),
                vec![
                    (s("eth0"), false, false, false, Stage::First, false),
                    (s("eth1"), false, false, false, Stage::First, false),
                    (s("eno1"), false, false, true, Stage::First, false),
                ],
                "{p}"
            );
            assert_eq!(a.wait, WaitFor::Nic(s("eno1")));
        }
        // Interface-less static: BOOTIF's NIC; the others get no DHCP.
        let a = assign(&plan("ip=10.0.0.5::10.0.0.1:24:::none BOOTIF=01-52-54-00-aa-bb-cc"), &nics);
        assert_eq!(a.nics.iter().filter(|c| c.static_ip.is_some()).count(), 1);
        assert!(a.nics[1].static_ip.is_some());
        assert!(a.nics.iter().all(|c| !c.dhcp4 && !c.dhcp6));
        assert_eq!(a.wait, WaitFor::Nic(s("eth1")));
        // ... else the first NIC with carrier, else the first NIC.
        let mut with_carrier = nics.clone();
        with_carrier[2].carrier = Some(true);
        let a = assign(&plan("ip=10.0.0.5::10.0.0.1:24:::none"), &with_carrier);
        assert_eq!(a.wait, WaitFor::Nic(s("eno1")));
        let a = assign(&plan("ip=10.0.0.5::10.0.0.1:24:::none"), &nics);
        assert_eq!(a.wait, WaitFor::Nic(s("eth0")));
        // A specific ip= overrides the global one on its interface.
        let a = assign(&plan("ip=dhcp ip=eth1:dhcp6"), &nics);
        assert_eq!((a.nics[0].dhcp4, a.nics[0].dhcp6), (true, false));
        assert_eq!((a.nics[1].dhcp4, a.nics[1].dhcp6), (false, true));
        assert_eq!(plan("ipa-init.net_timeout=5").timeout, Duration::from_secs(5));
    }

    #[test]
    fn no_nics_means_nothing_to_wait_for() {
        let a = assign(&plan(""), &[]);
        assert!(a.nics.is_empty());
        assert_eq!(a.wait, WaitFor::Nothing);
    }

    #[test]
    fn procfs_parsers() {
        let if_inet6 = "\
00000000000000000000000000000001 01 80 10 80       lo
fe80000000000000505400fffe123456 02 40 20 80     eth0
20010db8000000005054fffe12345600 02 40 00 00     eth0
20010db8000000000000000000000005 02 80 00 40     eth0
20010db8000000000000000000000006 03 80 00 08     eth1
20010db8000000000000000000000007 03 80 00 80     eth1
";
        assert_eq!(
            parse_if_inet6(if_inet6),
            vec![
                IfAddr {
                    ifname: s("eth0"),
                    addr: "2001:db8::5054:fffe:1234:5600".parse().unwrap(),
                    prefix: 64
                },
                IfAddr { ifname: s("eth1"), addr: "2001:db8::7".parse().unwrap(), prefix: 128 },
            ],
            "global, not tentative, not dadfailed"
        );
        let route = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
eth0\t0000000A\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n";
        let gw = parse_proc_net_route(route);
        if cfg!(target_endian = "little") {
            assert_eq!(gw.get("eth0"), Some(&Ipv4Addr::new(10, 0, 0, 1)));
        }
        assert_eq!(gw.len(), 1);
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00450003     eth0\n\
20010db8000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n";
        assert_eq!(parse_ipv6_route(v6).get("eth0"), Some(&"fe80::1".parse().unwrap()));
        assert!(is_global_v4(Ipv4Addr::new(10, 0, 0, 5)));
        assert!(!is_global_v4(Ipv4Addr::new(169, 254, 1, 1)));
        assert!(!is_global_v4(Ipv4Addr::new(127, 0, 0, 1)));
    }

    #[test]
    fn tools_args_resolv() {
        let t = tempfile::tempdir().unwrap();
        let bin = t.path().to_str().unwrap();
        assert_eq!(find_tool("udhcpc6", &[bin], &[]), None);
        assert_eq!(
            find_tool("udhcpc6", &[bin], &[s("ip"), s("udhcpc6")]),
            Some(Tool { program: PathBuf::from("/bin/busybox"), prefix_args: vec![s("udhcpc6")] })
        );
        fs::write(t.path().join("udhcpc"), "").unwrap();
        assert_eq!(find_tool("udhcpc", &[bin], &[]).unwrap().program, t.path().join("udhcpc"));
        let a = udhcpc_args("eth0", UDHCPC_SCRIPT, Some("node1"));
        assert_eq!(&a[..4], ["-i", "eth0", "-f", "-t"]);
        assert_eq!(a.last().unwrap(), "hostname:node1");
        assert!(udhcpc6_args("eth0", UDHCPC_SCRIPT).contains(&s(UDHCPC_SCRIPT)));
        assert_eq!(
            render_resolv(&[
                s("search example.com\nnameserver 10.0.0.53\n"),
                s("nameserver 10.0.0.53\nnameserver 2001:db8::53\nsearch lab example.com\n"),
            ]),
            "search example.com lab\nnameserver 10.0.0.53\nnameserver 2001:db8::53\n"
        );
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }

    fn nic_config(name: &str, mac: Option<&str>, metric: u32, primary: bool) -> NicConfig {
        NicConfig {
            nic: Nic {
                name: s(name),
                mac: mac.map(|m| m.parse().unwrap()),
                ifindex: 2,
                carrier: Some(true),
            },
            dhcp4: true,
            dhcp6: true,
            static_ip: None,
            stage: Stage::First,
            primary,
            metric,
        }
    }

    fn tool(p: &str, prefix: &[&str]) -> Tool {
        Tool { program: PathBuf::from(p), prefix_args: prefix.iter().map(|a| s(a)).collect() }
    }

    #[test]
    fn dhcp6_client_choice() {
        let u6 = tool("/bin/busybox", &["udhcpc6"]);
        let d = tool("/usr/sbin/dhcpcd", &[]);
        assert_eq!(
            choose_dhcp6_client(Some(u6.clone()), Some(d.clone()), true),
            Some(Dhcp6Client::Udhcpc6(u6.clone())),
            "udhcpc6 first"
        );
        assert_eq!(
            choose_dhcp6_client(None, Some(d.clone()), true),
            Some(Dhcp6Client::Dhcpcd(d.clone()))
        );
        assert_eq!(choose_dhcp6_client(None, Some(d.clone()), false), None, "no ipa-init conf");
        assert_eq!(choose_dhcp6_client(None, None, true), None);
        assert_eq!(Dhcp6Client::Dhcpcd(d.clone()).name(), "dhcpcd");
        assert_eq!(Dhcp6Client::Udhcpc6(u6).tool().prefix_args, vec![s("udhcpc6")]);
    }

    #[test]
    fn dhcpcd_beside_udhcpc_starts_later_and_alone_or_udhcpc6_at_once() {
        let dhcpcd = Dhcp6Client::Dhcpcd(tool("/usr/sbin/dhcpcd", &[]));
        let udhcpc6 = Dhcp6Client::Udhcpc6(tool("/bin/busybox", &["udhcpc6"]));
        assert_eq!(dhcp6_start_delay(&dhcpcd, true), DHCPCD_AFTER_DHCP4);
        assert!(DHCPCD_AFTER_DHCP4 > std::time::Duration::ZERO);
        assert_eq!(dhcp6_start_delay(&dhcpcd, false), std::time::Duration::ZERO, "ip=dhcp6");
        assert_eq!(dhcp6_start_delay(&udhcpc6, true), std::time::Duration::ZERO);
    }

    #[test]
    fn dhcpcd_command_line() {
        let mac: Mac = "52:54:00:AB:cd:0e".parse().unwrap();
        assert_eq!(duid_ll(mac), "00:03:00:01:52:54:00:ab:cd:0e");
        let env = vec![(s("IPA_DHCP_FAMILY"), s("6")), (s("IPA_DHCP_METRIC"), s("110"))];
        assert_eq!(
            dhcpcd_args("eth0", DHCPCD_CONF, DHCPCD_SCRIPT, Some(mac), &env),
            [
                "-f",
                "/usr/share/ipa-init/dhcpcd.conf",
                "-c",
                "/usr/share/ipa-init/dhcpcd.script",
                "-6",
                "-B",
                "--duid=00:03:00:01:52:54:00:ab:cd:0e",
                "-e",
                "IPA_DHCP_FAMILY=6",
                "-e",
                "IPA_DHCP_METRIC=110",
                "-e",
                "IPA_DHCP_CLIENT=dhcpcd",
                "eth0",
            ]
        );
        // No MAC: dhcpcd's own DUID; the interface is always the single, last argument.
        let a = dhcpcd_args("eth1", "c", "s", None, &[]);
        assert_eq!(a, ["-f", "c", "-c", "s", "-6", "-B", "-e", "IPA_DHCP_CLIENT=dhcpcd", "eth1"]);

        let c = nic_config("eth0", Some("52:54:00:ab:cd:0e"), 100, true);
        let spec = dhcp6_command(&Dhcp6Client::Dhcpcd(tool("/usr/sbin/dhcpcd", &[])), &c, true);
        assert_eq!(spec.program, PathBuf::from("/usr/sbin/dhcpcd"));
        assert_eq!(spec.args.last().unwrap(), "eth0");
        for e in ["IPA_DHCP_FAMILY=6", "IPA_DHCP_METRIC=100", "IPA_DHCP_PRIMARY=1"] {
            assert!(spec.args.iter().any(|a| a == e), "{e} in {:?}", spec.args);
        }
        assert!(spec.args.contains(&s("IPA_HOSTNAME_FIXED=1")));
        assert_eq!(spec.env[0], (s("PATH"), s("/usr/sbin:/usr/bin:/sbin:/bin")));
        let log6 = Path::new("/run/ipa-init/dhcp6-eth0.log");
        assert!(matches!(&spec.stdout, Io::Append(p) if p == log6), "{:?}", spec.stdout);
        assert!(matches!(&spec.stderr, Io::Append(p) if p == log6), "{:?}", spec.stderr);

        let spec =
            dhcp6_command(&Dhcp6Client::Udhcpc6(tool("/bin/busybox", &["udhcpc6"])), &c, false);
        assert_eq!(&spec.args[..3], ["udhcpc6", "-i", "eth0"]);
        assert!(spec.env.contains(&(s("IPA_DHCP_FAMILY"), s("6"))));
        assert!(spec.env.contains(&(s("IPA_HOSTNAME_FIXED"), s("0"))));
        let spec = dhcp4_command(&tool("/bin/busybox", &["udhcpc"]), &c, false);
        assert_eq!(&spec.args[..3], ["udhcpc", "-i", "eth0"]);
        assert!(spec.env.contains(&(s("IPA_DHCP_FAMILY"), s("4"))));
        let log4 = Path::new("/run/ipa-init/dhcp4-eth0.log");
        assert!(matches!(&spec.stdout, Io::Append(p) if p == log4), "{:?}", spec.stdout);
        let e = hook_env(&nic_config("eth1", None, 120, false), 4, false);
        assert_eq!(
            e,
            vec![
                (s("IPA_DHCP_FAMILY"), s("4")),
                (s("IPA_DHCP_METRIC"), s("120")),
                (s("IPA_DHCP_PRIMARY"), s("0")),
                (s("IPA_HOSTNAME_FIXED"), s("0")),
            ]
        );
    }

    #[test]
    fn dhcpcd_directories_and_user() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\n\
                      dhcpcd:x:101:65534:DHCP Client Daemon,,,:/run/dhcpcd/chroot:/usr/sbin/nologin\n\
                      broken:x:1\n";
        assert_eq!(passwd_home(passwd, "dhcpcd").as_deref(), Some("/run/dhcpcd/chroot"));
        assert_eq!(passwd_home(passwd, "root").as_deref(), Some("/root"));
        assert_eq!(passwd_home(passwd, "broken"), None);
        assert_eq!(passwd_home(passwd, "dhcp"), None);

        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let what = prepare_dhcpcd(root);
        assert!(what.starts_with("no dhcpcd user"), "{what}");
        assert!(root.join("run/dhcpcd").is_dir());
        assert_eq!(fs::read_link(root.join("var/lib/dhcpcd")).unwrap(), Path::new("/run/dhcpcd"));

        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/passwd"), passwd).unwrap();
        let what = prepare_dhcpcd(root);
        assert_eq!(what, "privilege separation as dhcpcd, chroot /run/dhcpcd/chroot");
        assert!(root.join("run/dhcpcd/chroot").is_dir());

        // An existing /var/lib/dhcpcd (a directory) is kept.
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("var/lib/dhcpcd")).unwrap();
        fs::create_dir_all(t.path().join("etc")).unwrap();
        fs::write(t.path().join("etc/passwd"), "dhcpcd:x:101:65534::/:/bin/false\n").unwrap();
        let what = prepare_dhcpcd(t.path());
        assert!(what.contains("without privilege separation"), "{what}");
        assert!(t.path().join("var/lib/dhcpcd").is_dir());
        assert!(!t.path().join("var/lib/dhcpcd").is_symlink());
    }

    #[test]
    fn lease_files_parse_like_the_shell() {
        // What udhcpc.script writes (kv/q), with the quoting of shell_quote.
        let text = format!(
            "INTERFACE='eth0'\nFAMILY='6'\nADDRESS='fd42:1::1a7'\nDNS='fd42:1::53 fd42:1::54'\n\
             SEARCH={}\nEMPTY=''\nMULTI='a\nb'\n",
            shell_quote("it's lab.example")
        );
        let l = Lease::parse(&text);
        assert_eq!(l.get("INTERFACE"), Some("eth0"));
        assert_eq!(l.address(), Some("fd42:1::1a7".parse().unwrap()));
        assert_eq!(l.get("DNS"), Some("fd42:1::53 fd42:1::54"));
        assert_eq!(l.get("SEARCH"), Some("it's lab.example"));
        assert_eq!(l.get("EMPTY"), Some(""));
        assert_eq!(l.get("MULTI"), Some("a\nb"));
        assert_eq!(l.get("NOPE"), None);
        assert_eq!(l.pairs.len(), 7);
        // Other shell forms; comments, blank lines and junk are skipped; the last value wins.
        let l = Lease::parse(
            "# comment = not a key\n\nA=plain\nB=\"dq \\\"x\\\" $y\"\nC=a\\ b\n1X=no\nbad line\nA='again'",
        );
        assert_eq!(
            l.pairs,
            vec![
                (s("A"), s("plain")),
                (s("B"), s("dq \"x\" $y")),
                (s("C"), s("a b")),
                (s("A"), s("again")),
            ]
        );
        assert_eq!(l.get("A"), Some("again"));
        assert_eq!(Lease::parse("ADDRESS='not an address'").address(), None);
        assert_eq!(
            lease_path(Path::new("/run/ipa-init"), "eth0", true),
            Path::new("/run/ipa-init/lease6-eth0.env")
        );
        assert_eq!(
            lease_path(Path::new("/run/ipa-init"), "eth0", false),
            Path::new("/run/ipa-init/lease-eth0.env")
        );
    }

    fn addr(ifname: &str, a: &str, prefix: u8) -> IfAddr {
        IfAddr { ifname: s(ifname), addr: a.parse().unwrap(), prefix }
    }

    #[test]
    fn network_wait_counts_dhcp_addresses_once_their_lease_is_written() {
        let run = tempfile::tempdir().unwrap();
        let mut w = NetWait::new(WaitFor::Nic(s("eth0")), run.path());
        assert!(!w.ready(), "the target is not even configured");
        w.add_nic("eth0", true, true);
        w.add_nic("eth1", false, false);
        let dhcp6 = addr("eth0", "fd42:1::1a7", 128);
        let v4 = addr("eth0", "10.0.0.5", 24);
        let other = [addr("eth1", "10.1.0.5", 24), addr("eth9", "10.9.0.5", 24)];
        // The addresses are there, the hooks have not run yet.
        assert!(w.observe(&[dhcp6.clone(), v4.clone()]).is_empty());
        assert!(!w.ready());
        // Addresses of other NICs count for them (eth1: no DHCP), not for the target;
        // unknown NICs do not count.
        assert_eq!(w.observe(&other), vec![&other[0]]);
        assert!(w.has_address("eth1") && !w.has_address("eth9"));
        assert!(!w.ready());
        // A lease6 file naming another address does not make this one count.
        fs::write(run.path().join("lease6-eth0.env"), "ADDRESS='fd42:1::1ff'\n").unwrap();
        assert!(!w.counts(&dhcp6));
        fs::write(run.path().join("lease6-eth0.env"), "FAMILY='6'\nADDRESS='fd42:1::1a7'\n")
            .unwrap();
        assert_eq!(w.observe(&[dhcp6.clone(), v4.clone()]), vec![&dhcp6]);
        assert!(w.ready());
        // Reported once per family.
        assert!(w.observe(std::slice::from_ref(&dhcp6)).is_empty());
        fs::write(run.path().join("lease-eth0.env"), "ADDRESS='10.0.0.5'\n").unwrap();
        assert_eq!(w.observe(&[dhcp6.clone(), v4.clone()]), vec![&v4]);

        // SLAAC (/64) counts at once, also where DHCPv6 runs; so does DHCPv6 where ipa-init
        // runs no DHCPv6 client (e.g. someone else's).
        let mut w = NetWait::new(WaitFor::Any, run.path().join("empty"));
        w.add_nic("eth0", true, true);
        w.add_nic("eth1", false, false);
        assert!(!w.ready());
        assert!(w.counts(&addr("eth0", "2001:db8::5054:ff:fe12:3456", 64)));
        assert!(!w.counts(&addr("eth0", "2001:db8::1a7", 128)));
        assert!(!w.counts(&addr("eth0", "10.0.0.5", 24)));
        assert!(w.counts(&addr("eth1", "2001:db8::1a7", 128)));
        w.observe(&[addr("eth1", "2001:db8::1a7", 128)]);
        assert!(w.ready());
        assert!(NetWait::new(WaitFor::Nothing, run.path()).ready());
        assert_eq!(w.wait_for(), &WaitFor::Any);
    }
}
