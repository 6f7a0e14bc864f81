//! Network interfaces: wired-NIC discovery (from a sysfs root, so tests use a fixture
//! tree), the per-NIC plan derived from the kernel command line, address and route reading
//! from procfs, and the DHCP client command lines.

use std::collections::HashMap;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use crate::cmdline::{IpParam, Mac, NetPlan, StaticIp};

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

/// Global IPv4 addresses (getifaddrs) and usable global IPv6 addresses (`if_inet6`).
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
    if let Ok(text) = fs::read_to_string("/proc/net/if_inet6") {
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

/// Arguments of the DHCPv4 client: `udhcpc -i X -f -t 20 -T 2 -A 3 -s SCRIPT -O ...`
/// (foreground, retries forever; supervised by ipa-init).
pub fn udhcpc_args(ifname: &str, script: &str, hostname: Option<&str>) -> Vec<String> {
    let mut a: Vec<String> = [
        "-i", ifname, "-f", "-t", "20", "-T", "2", "-A", "3", "-s", script, "-O", "search", "-O",
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

#[cfg(test)]
mod tests {
    use super::*;
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
}
