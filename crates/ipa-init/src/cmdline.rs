//! Kernel command line parsing (pure: no I/O).
//!
//! [`Cmdline::parse`] splits `/proc/cmdline` the way the kernel does (whitespace outside
//! double quotes; the quotes themselves are dropped), [`BootConfig::from_cmdline`] turns the
//! parameters ipa-init honours into a typed plan. Parameter names compare with `-` and `_`
//! equivalent, as the kernel does; for a repeated parameter the last one wins, except `ip=`,
//! `nameserver=` and `modprobe.blacklist=`, which accumulate.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::time::Duration;

/// Default agent binary.
pub const DEFAULT_AGENT: &str = "/usr/bin/ipa-agent";
/// Default time to wait for the boot NIC's address.
pub const DEFAULT_NET_TIMEOUT: Duration = Duration::from_secs(60);

/// A parsed kernel command line: `key[=value]` parameters in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cmdline {
    params: Vec<(String, Option<String>)>,
}

/// Compare parameter names with `-` and `_` equivalent.
fn key_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes().zip(b.bytes()).all(|(x, y)| {
            let n = |c: u8| if c == b'-' { b'_' } else { c };
            n(x) == n(y)
        })
}

impl Cmdline {
    /// Split a command line like the kernel's `next_arg`: whitespace separates parameters
    /// unless inside double quotes; quotes are removed (`a="b c"` and `"a=b c"` are both
    /// `a` = `b c`). A bare `--` is skipped (what follows is for init, i.e. for us).
    pub fn parse(line: &str) -> Self {
        let mut params = Vec::new();
        let mut token = String::new();
        let mut in_token = false;
        let mut in_quote = false;
        let mut flush = |token: &mut String, in_token: &mut bool| {
            if *in_token && token != "--" {
                let (k, v) = match token.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (token.clone(), None),
                };
                if !k.is_empty() {
                    params.push((k, v));
                }
            }
            token.clear();
            *in_token = false;
        };
        for c in line.chars() {
            match c {
                '"' => {
                    in_quote = !in_quote;
                    in_token = true;
                }
                c if c.is_whitespace() && !in_quote => flush(&mut token, &mut in_token),
                c => {
                    token.push(c);
                    in_token = true;
                }
            }
        }
        flush(&mut token, &mut in_token);
        Cmdline { params }
    }

    /// All parameters in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.params.iter().map(|(k, v)| (k.as_str(), v.as_deref()))
    }

    /// The value of the last `key=value` (a bare `key` without `=` gives `Some("")`).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| key_eq(k, key))
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }

    /// Every value of `key`, in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.params
            .iter()
            .filter(move |(k, _)| key_eq(k, key))
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }

    /// A boolean parameter: `1/true/yes/on/y` (or a bare `key`) is true, `0/false/no/off/n`
    /// false, anything else (or absence) `None`.
    pub fn flag(&self, key: &str) -> Option<bool> {
        self.get(key).and_then(parse_bool)
    }
}

/// oslo's `bool_from_string`, plus the empty string (a bare flag) as true.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "" | "1" | "true" | "yes" | "on" | "y" | "t" => Some(true),
        "0" | "false" | "no" | "off" | "n" | "f" => Some(false),
        _ => None,
    }
}

/// An Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

impl FromStr for Mac {
    type Err = String;

    /// `52:54:00:aa:bb:cc`, `52-54-00-AA-BB-CC`, or the PXE `BOOTIF` form with the ARP
    /// hardware type first: `01-52-54-00-aa-bb-cc`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let parts: Vec<&str> = s.split([':', '-']).collect();
        let parts = match parts.len() {
            6 => &parts[..],
            7 if parts[0] == "01" => &parts[1..],
            7 => return Err(format!("hardware type {} is not Ethernet (01)", parts[0])),
            _ => return Err("expected 6 hex octets".into()),
        };
        let mut mac = [0u8; 6];
        for (slot, p) in mac.iter_mut().zip(parts) {
            if p.len() != 2 {
                return Err(format!("octet {p:?} is not two hex digits"));
            }
            *slot = u8::from_str_radix(p, 16).map_err(|_| format!("octet {p:?} is not hex"))?;
        }
        Ok(Mac(mac))
    }
}

/// A static IPv4 configuration from `ip=<client-IP>:[<peer>]:<gateway>:<netmask>:...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticIp {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub peer: Option<Ipv4Addr>,
    pub gateway: Option<Ipv4Addr>,
    pub hostname: Option<String>,
    /// Interface name, or `None` for "the BOOTIF NIC, else the first wired NIC with carrier".
    pub interface: Option<String>,
    pub mtu: Option<u32>,
    pub macaddr: Option<Mac>,
    pub dns: Vec<Ipv4Addr>,
}

/// One `ip=` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpParam {
    /// `ip=off` / `ip=none`: no network configuration at all.
    Off,
    /// DHCP and/or DHCPv6 (SLAAC always comes from the kernel), on one interface or all.
    Auto { interface: Option<String>, dhcp4: bool, dhcp6: bool },
    /// A static IPv4 address.
    Static(StaticIp),
}

/// Parse a dracut `<method>` word into (dhcp4, dhcp6); `None` for `off`/`none`.
fn parse_method(m: &str) -> Result<Option<(bool, bool)>, String> {
    Ok(Some(match m {
        "off" | "none" => return Ok(None),
        "dhcp" | "on" | "any" | "single-dhcp" => (true, false),
        "dhcp6" | "either6" => (false, true),
        "auto6" | "link6" => (false, false),
        // Not dracut: both families explicitly.
        "dhcp+dhcp6" | "both" => (true, true),
        other => return Err(format!("unknown method {other:?}")),
    }))
}

fn parse_v4(field: &str, what: &str) -> Result<Option<Ipv4Addr>, String> {
    if field.is_empty() {
        return Ok(None);
    }
    field.parse().map(Some).map_err(|_| format!("{what} {field:?} is not an IPv4 address"))
}

/// `255.255.255.0` or `24` → 24.
pub fn parse_netmask(s: &str) -> Result<u8, String> {
    if let Ok(p) = s.parse::<u8>() {
        return if p <= 32 { Ok(p) } else { Err(format!("prefix length {p} > 32")) };
    }
    let m: Ipv4Addr = s.parse().map_err(|_| format!("netmask {s:?} is invalid"))?;
    let bits = u32::from(m);
    let prefix = bits.leading_ones();
    if bits.checked_shl(prefix).unwrap_or(0) != 0 {
        return Err(format!("netmask {s} is not contiguous"));
    }
    Ok(prefix as u8)
}

/// The classful default prefix, used when a static `ip=` gives no netmask.
fn classful_prefix(a: Ipv4Addr) -> u8 {
    match a.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

impl FromStr for IpParam {
    type Err = String;

    /// The dracut forms:
    /// * `ip={dhcp|on|any|dhcp6|auto6|either6|off|none}`
    /// * `ip=<interface>:{dhcp|...|off}[:[<mtu>][:<macaddr>]]`
    /// * `ip=<client-IP>:[<peer>]:<gateway-IP>:<netmask>:<hostname>:<interface>:{none|off}`
    ///   `[:[<mtu>][:<macaddr>]]` or `...:{none|off}[:[<dns1>][:<dns2>]]` (IPv4 only)
    fn from_str(v: &str) -> Result<Self, Self::Err> {
        let v = v.trim();
        if !v.contains(':') {
            return Ok(match parse_method(v)? {
                None => IpParam::Off,
                Some((dhcp4, dhcp6)) => IpParam::Auto { interface: None, dhcp4, dhcp6 },
            });
        }
        if v.starts_with('[') {
            return Err("static IPv6 ip= is not supported (use DHCPv6 or SLAAC)".into());
        }
        let f: Vec<&str> = v.split(':').collect();
        let first_is_ip = f[0].parse::<Ipv4Addr>().is_ok();
        if !first_is_ip && f.len() < 7 {
            // <interface>:<method>[:<mtu>[:<mac>]]
            if f[0].is_empty() {
                return Err("empty interface".into());
            }
            let interface = Some(f[0].to_string());
            return Ok(match parse_method(f[1])? {
                None => IpParam::Off,
                Some((dhcp4, dhcp6)) => IpParam::Auto { interface, dhcp4, dhcp6 },
            });
        }
        let field = |i: usize| f.get(i).copied().unwrap_or("");
        let interface = Some(field(5)).filter(|s| !s.is_empty()).map(str::to_string);
        let method = field(6);
        if !matches!(method, "" | "none" | "off" | "static") {
            // A client IP with an autoconf method: dracut does DHCP on the interface.
            let (dhcp4, dhcp6) = parse_method(method)?.unwrap_or((false, false));
            return Ok(IpParam::Auto { interface, dhcp4, dhcp6 });
        }
        if f[0].is_empty() {
            return Err("static ip= without a client address".into());
        }
        let address = parse_v4(f[0], "client address")?.expect("non-empty");
        let prefix = match field(3) {
            "" => classful_prefix(address),
            m => parse_netmask(m)?,
        };
        let hostname = Some(field(4)).filter(|s| !s.is_empty()).map(str::to_string);
        let (mut mtu, mut macaddr, mut dns) = (None, None, Vec::new());
        let rest = f.get(7..).unwrap_or(&[]);
        if let Some(&first) = rest.first() {
            if let Ok(ns) = first.parse::<Ipv4Addr>() {
                dns.push(ns);
                if let Some(ns2) = rest.get(1).filter(|s| !s.is_empty()) {
                    dns.push(parse_v4(ns2, "dns2")?.expect("non-empty"));
                }
            } else {
                if !first.is_empty() {
                    mtu = Some(first.parse().map_err(|_| format!("mtu {first:?} is invalid"))?);
                }
                let mac = rest[1..].join(":");
                if !mac.is_empty() {
                    macaddr = Some(mac.parse().map_err(|e| format!("macaddr {mac:?}: {e}"))?);
                }
            }
        }
        Ok(IpParam::Static(StaticIp {
            address,
            prefix,
            peer: parse_v4(field(1), "peer")?,
            gateway: parse_v4(field(2), "gateway")?,
            hostname,
            interface,
            mtu,
            macaddr,
            dns,
        }))
    }
}

/// The network part of the boot plan.
#[derive(Debug, Clone, PartialEq)]
pub struct NetPlan {
    /// The boot NIC (`BOOTIF=`).
    pub bootif: Option<Mac>,
    /// Every valid `ip=` in order; empty means the default (DHCPv4 + DHCPv6 on every wired
    /// NIC).
    pub ip: Vec<IpParam>,
    /// `ipa-dhcp-all-interfaces=1` / `ipa-inspection-dhcp-all-interfaces=1`: start DHCP on all
    /// wired NICs at once instead of the boot NIC first.
    pub dhcp_all_interfaces: bool,
    /// `ipa-init.net_timeout=` (seconds).
    pub timeout: Duration,
    /// `nameserver=` (repeatable).
    pub nameservers: Vec<IpAddr>,
}

impl NetPlan {
    /// `ip=off`/`none` given as the last interface-less `ip=`.
    pub fn is_off(&self) -> bool {
        self.global().is_some_and(|p| matches!(p, IpParam::Off))
    }

    /// The last `ip=` that names no interface.
    pub fn global(&self) -> Option<&IpParam> {
        self.ip.iter().rev().find(|p| match p {
            IpParam::Off => true,
            IpParam::Auto { interface, .. } => interface.is_none(),
            IpParam::Static(s) => s.interface.is_none(),
        })
    }

    /// The `ip=` naming `name` (or the MAC `mac`), last one wins.
    pub fn for_interface(&self, name: &str, mac: Option<Mac>) -> Option<&IpParam> {
        let matches = |i: &str| i == name || (mac.is_some() && i.parse::<Mac>().ok() == mac);
        self.ip.iter().rev().find(|p| match p {
            IpParam::Off => false,
            IpParam::Auto { interface, .. } => interface.as_deref().is_some_and(matches),
            IpParam::Static(s) => s.interface.as_deref().is_some_and(matches),
        })
    }
}

/// Agent start-up parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPlan {
    /// `ipa-init.agent=` (default `/usr/bin/ipa-agent`).
    pub path: String,
    /// `ipa-init.agent_args=` split on whitespace.
    pub args: Vec<String>,
}

/// Kernel-module parameters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModulePlan {
    /// `ipa-init.modules=a,b` — loaded after `/etc/ipa-init/modules`.
    pub extra: Vec<String>,
    /// `modprobe.blacklist=` / `module_blacklist=` (comma-separated, repeatable): never loaded
    /// by ipa-init (they may still be needed as a dependency of another module).
    pub blacklist: Vec<String>,
    /// `<module>.<param>=<value>`, grouped by (normalised) module name, passed to
    /// `finit_module` like modprobe does.
    pub params: Vec<(String, String)>,
}

impl ModulePlan {
    /// The parameter string for `module` (`a=1 b="x y"`), empty when none.
    pub fn params_for(&self, module: &str) -> String {
        self.params
            .iter()
            .filter(|(m, _)| m == module)
            .map(|(_, p)| p.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Everything ipa-init takes from the kernel command line.
#[derive(Debug, Clone, PartialEq)]
pub struct BootConfig {
    pub net: NetPlan,
    pub agent: AgentPlan,
    /// `ipa-init.shell=1`: a shell on the console after the agent started.
    pub shell: bool,
    pub modules: ModulePlan,
    /// Parameters that were present but could not be used.
    pub warnings: Vec<String>,
}

/// Normalise a module name (`nvme-core` → `nvme_core`).
pub fn module_name(s: &str) -> String {
    s.trim().replace('-', "_")
}

fn split_list(v: &str) -> impl Iterator<Item = String> + '_ {
    v.split([',', ' ']).filter(|s| !s.trim().is_empty()).map(module_name)
}

/// Kernel command-line keys that look like `<module>.<param>` but are not module parameters.
const NOT_MODULE_PREFIXES: &[&str] = &["ipa_init", "modprobe", "rd", "systemd", "ipa"];

impl BootConfig {
    pub fn from_cmdline(cmdline: &Cmdline) -> Self {
        let mut warnings = Vec::new();

        let bootif = cmdline.get("BOOTIF").and_then(|v| match v.parse::<Mac>() {
            Ok(m) => Some(m),
            Err(e) => {
                warnings.push(format!("BOOTIF={v}: {e}; ignored"));
                None
            }
        });
        let mut ip = Vec::new();
        for v in cmdline.get_all("ip") {
            match v.parse::<IpParam>() {
                Ok(p) => ip.push(p),
                Err(e) => warnings.push(format!("ip={v}: {e}; ignored")),
            }
        }
        let dhcp_all_interfaces = ["ipa-dhcp-all-interfaces", "ipa-inspection-dhcp-all-interfaces"]
            .iter()
            .any(|k| cmdline.flag(k) == Some(true));
        let timeout = match cmdline.get("ipa-init.net_timeout") {
            None => DEFAULT_NET_TIMEOUT,
            Some(v) => match v.trim().parse::<f64>() {
                Ok(s) if s.is_finite() && (0.0..=86_400.0).contains(&s) => {
                    Duration::from_secs_f64(s)
                }
                _ => {
                    warnings.push(format!(
                        "ipa-init.net_timeout={v}: not a number of seconds; using {}",
                        DEFAULT_NET_TIMEOUT.as_secs()
                    ));
                    DEFAULT_NET_TIMEOUT
                }
            },
        };
        let mut nameservers = Vec::new();
        for v in cmdline.get_all("nameserver") {
            for part in v.split(',').filter(|s| !s.is_empty()) {
                let part = part.trim_start_matches('[').trim_end_matches(']');
                match part.parse::<IpAddr>() {
                    Ok(a) if !nameservers.contains(&a) => nameservers.push(a),
                    Ok(_) => {}
                    Err(_) => warnings.push(format!("nameserver={part}: not an IP address")),
                }
            }
        }

        let path = match cmdline.get("ipa-init.agent") {
            Some(p) if p.starts_with('/') => p.to_string(),
            Some(p) => {
                warnings.push(format!(
                    "ipa-init.agent={p}: not an absolute path; using {DEFAULT_AGENT}"
                ));
                DEFAULT_AGENT.to_string()
            }
            None => DEFAULT_AGENT.to_string(),
        };
        let args = cmdline
            .get("ipa-init.agent_args")
            .map(|v| v.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();

        let shell = match cmdline.get("ipa-init.shell") {
            None => false,
            Some(v) => parse_bool(v).unwrap_or_else(|| {
                warnings.push(format!("ipa-init.shell={v}: not a boolean; no shell"));
                false
            }),
        };

        let mut modules = ModulePlan::default();
        if let Some(v) = cmdline.get("ipa-init.modules") {
            modules.extra = split_list(v).collect();
        }
        for key in ["modprobe.blacklist", "module_blacklist"] {
            for v in cmdline.get_all(key) {
                for m in split_list(v) {
                    if !modules.blacklist.contains(&m) {
                        modules.blacklist.push(m);
                    }
                }
            }
        }
        for (k, v) in cmdline.iter() {
            let Some((module, param)) = k.split_once('.') else {
                continue;
            };
            let module = module_name(module);
            if module.is_empty() || param.is_empty() || NOT_MODULE_PREFIXES.contains(&&*module) {
                continue;
            }
            let p = match v {
                None => param.to_string(),
                Some(v) if v.contains(char::is_whitespace) => format!("{param}=\"{v}\""),
                Some(v) => format!("{param}={v}"),
            };
            modules.params.push((module, p));
        }

        BootConfig {
            net: NetPlan { bootif, ip, dhcp_all_interfaces, timeout, nameservers },
            agent: AgentPlan { path, args },
            shell,
            modules,
            warnings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(line: &str) -> BootConfig {
        BootConfig::from_cmdline(&Cmdline::parse(line))
    }

    const MAC: Mac = Mac([0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc]);

    #[test]
    fn splits_like_the_kernel() {
        let c = Cmdline::parse(
            "BOOT_IMAGE=/vmlinuz root=/dev/ram0  quiet ipa-init.agent_args=\"--debug --x=1\" \
             \"a=b c\" -- init-arg\n",
        );
        let all: Vec<_> = c.iter().collect();
        assert_eq!(
            all,
            vec![
                ("BOOT_IMAGE", Some("/vmlinuz")),
                ("root", Some("/dev/ram0")),
                ("quiet", None),
                ("ipa-init.agent_args", Some("--debug --x=1")),
                ("a", Some("b c")),
                ("init-arg", None),
            ]
        );
        assert_eq!(c.get("quiet"), Some(""));
        assert_eq!(c.flag("quiet"), Some(true));
        assert_eq!(c.get("missing"), None);
    }

    #[test]
    fn repeated_params_last_wins_and_dash_equals_underscore() {
        let c = cfg("ipa-init.net_timeout=10 ipa_init.net-timeout=20 ipa-init.shell=1 \
                     ipa-init.shell=0 ipa-init.agent=/a ipa-init.agent=/opt/agent");
        assert_eq!(c.net.timeout, Duration::from_secs(20));
        assert!(!c.shell);
        assert_eq!(c.agent.path, "/opt/agent");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn bootif_pxe_and_plain_forms() {
        assert_eq!(cfg("BOOTIF=01-52-54-00-aa-bb-cc").net.bootif, Some(MAC));
        assert_eq!(cfg("BOOTIF=52:54:00:AA:BB:CC").net.bootif, Some(MAC));
        assert_eq!(cfg("BOOTIF=52-54-00-aa-bb-cc").net.bootif, Some(MAC));
        assert_eq!(MAC.to_string(), "52:54:00:aa:bb:cc");
        let bad = cfg("BOOTIF=06-52-54-00-aa-bb-cc");
        assert_eq!(bad.net.bootif, None);
        assert!(bad.warnings[0].contains("not Ethernet"), "{:?}", bad.warnings);
        let bad = cfg("BOOTIF=zz:54:00:aa:bb:cc");
        assert_eq!(bad.net.bootif, None);
        assert_eq!(bad.warnings.len(), 1);
    }

    #[test]
    fn defaults() {
        let c = cfg("console=ttyS0");
        assert_eq!(c.net.ip, vec![]);
        assert!(!c.net.is_off());
        assert_eq!(c.net.timeout, DEFAULT_NET_TIMEOUT);
        assert_eq!(c.agent.path, DEFAULT_AGENT);
        assert!(c.agent.args.is_empty());
        assert!(!c.shell);
        assert!(!c.net.dhcp_all_interfaces);
    }

    #[test]
    fn ip_methods() {
        let auto = |i: Option<&str>, d4, d6| IpParam::Auto {
            interface: i.map(str::to_string),
            dhcp4: d4,
            dhcp6: d6,
        };
        assert_eq!(cfg("ip=dhcp").net.ip, vec![auto(None, true, false)]);
        assert_eq!(cfg("ip=dhcp6").net.ip, vec![auto(None, false, true)]);
        assert_eq!(cfg("ip=auto6").net.ip, vec![auto(None, false, false)]);
        assert_eq!(cfg("ip=eth1:dhcp").net.ip, vec![auto(Some("eth1"), true, false)]);
        assert_eq!(cfg("ip=eth1:dhcp6:9000").net.ip, vec![auto(Some("eth1"), false, true)]);
        for off in ["ip=off", "ip=none"] {
            let c = cfg(off);
            assert_eq!(c.net.ip, vec![IpParam::Off]);
            assert!(c.net.is_off());
        }
        // The last interface-less ip= decides; per-interface ones accumulate.
        let c = cfg("ip=off ip=eth0:dhcp ip=dhcp");
        assert!(!c.net.is_off());
        assert_eq!(c.net.global(), Some(&auto(None, true, false)));
        assert_eq!(c.net.for_interface("eth0", None), Some(&auto(Some("eth0"), true, false)));
        assert_eq!(c.net.for_interface("eth1", None), None);
        let bad = cfg("ip=bogus");
        assert!(bad.net.ip.is_empty());
        assert!(bad.warnings[0].contains("unknown method"), "{:?}", bad.warnings);
    }

    #[test]
    fn ip_static() {
        let c = cfg("ip=10.0.0.5::10.0.0.1:255.255.255.0:node1:eth0:none nameserver=10.0.0.53 \
                     nameserver=2001:db8::53,10.0.0.53");
        assert_eq!(
            c.net.ip,
            vec![IpParam::Static(StaticIp {
                address: "10.0.0.5".parse().unwrap(),
                prefix: 24,
                peer: None,
                gateway: Some("10.0.0.1".parse().unwrap()),
                hostname: Some("node1".into()),
                interface: Some("eth0".into()),
                mtu: None,
                macaddr: None,
                dns: vec![],
            })]
        );
        assert_eq!(
            c.net.nameservers,
            vec!["10.0.0.53".parse::<IpAddr>().unwrap(), "2001:db8::53".parse().unwrap()]
        );

        // Empty interface, prefix-length netmask, dns fields.
        let c = cfg("ip=192.168.1.7::192.168.1.1:22:::off:192.168.1.53:8.8.8.8");
        let IpParam::Static(s) = &c.net.ip[0] else { panic!("{:?}", c.net.ip) };
        assert_eq!(s.prefix, 22);
        assert_eq!(s.interface, None);
        assert_eq!(s.hostname, None);
        assert_eq!(s.dns.len(), 2);
        assert_eq!(c.net.global(), Some(&c.net.ip[0]));

        // mtu and macaddr (whose colons survive the split).
        let c =
            cfg("ip=10.1.2.3:10.1.2.1:10.1.2.254:255.255.0.0:h:eno1:none:9000:52:54:00:aa:bb:cc");
        let IpParam::Static(s) = &c.net.ip[0] else { panic!() };
        assert_eq!((s.prefix, s.mtu, s.macaddr), (16, Some(9000), Some(MAC)));
        assert_eq!(s.peer, Some("10.1.2.1".parse().unwrap()));
        assert_eq!(c.net.for_interface("eno1", None), Some(&c.net.ip[0]));

        // Interface given as a MAC address.
        let c = cfg("ip=10.0.0.9::10.0.0.1:24::52-54-00-aa-bb-cc:none");
        assert!(c.net.for_interface("eth3", Some(MAC)).is_some());
        assert!(c.net.for_interface("eth3", None).is_none());

        // No netmask: classful default.
        let IpParam::Static(s) = &cfg("ip=172.16.0.2::::::none").net.ip[0] else { panic!() };
        assert_eq!(s.prefix, 16);

        // Client IP with a DHCP method means DHCP on that interface.
        assert_eq!(
            cfg("ip=10.0.0.5::::h:eth2:dhcp").net.ip,
            vec![IpParam::Auto { interface: Some("eth2".into()), dhcp4: true, dhcp6: false }]
        );

        for bad in [
            "ip=10.0.0.5::10.0.0.1:255.0.255.0::eth0:none",
            "ip=10.0.0.5::gw:24::eth0:none",
            "ip=[2001:db8::5]::[2001:db8::1]:64::eth0:none",
        ] {
            let c = cfg(bad);
            assert!(c.net.ip.is_empty(), "{bad}");
            assert_eq!(c.warnings.len(), 1, "{bad}: {:?}", c.warnings);
        }
    }

    #[test]
    fn dhcp_all_interfaces_flags() {
        assert!(cfg("ipa-dhcp-all-interfaces=1").net.dhcp_all_interfaces);
        assert!(cfg("ipa-inspection-dhcp-all-interfaces=True").net.dhcp_all_interfaces);
        assert!(!cfg("ipa-inspection-dhcp-all-interfaces=0").net.dhcp_all_interfaces);
    }

    #[test]
    fn agent_shell_timeout() {
        let c = cfg(
            "ipa-init.agent=/opt/ipa/agent \"ipa-init.agent_args=--debug --config /etc/a.toml\" \
                     ipa-init.shell=yes ipa-init.net_timeout=2.5",
        );
        assert_eq!(c.agent.path, "/opt/ipa/agent");
        assert_eq!(c.agent.args, vec!["--debug", "--config", "/etc/a.toml"]);
        assert!(c.shell);
        assert_eq!(c.net.timeout, Duration::from_millis(2500));
        let c = cfg("ipa-init.agent=relative ipa-init.net_timeout=soon ipa-init.shell=maybe");
        assert_eq!(c.agent.path, DEFAULT_AGENT);
        assert_eq!(c.net.timeout, DEFAULT_NET_TIMEOUT);
        assert!(!c.shell);
        assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
    }

    #[test]
    fn module_options() {
        let c = cfg("ipa-init.modules=mlx5-core,ice modprobe.blacklist=nouveau,floppy \
                     module_blacklist=floppy nvme-core.multipath=N e1000e.InterruptThrottleRate=3000 \
                     nvme_core.io_timeout=\"4294967295\" ipa-init.shell=1 foo.bar");
        assert_eq!(c.modules.extra, vec!["mlx5_core", "ice"]);
        assert_eq!(c.modules.blacklist, vec!["nouveau", "floppy"]);
        assert_eq!(c.modules.params_for("nvme_core"), "multipath=N io_timeout=4294967295");
        assert_eq!(c.modules.params_for("e1000e"), "InterruptThrottleRate=3000");
        assert_eq!(c.modules.params_for("foo"), "bar");
        assert_eq!(c.modules.params_for("ipa_init"), "");
        assert_eq!(c.modules.params_for("modprobe"), "");
    }

    #[test]
    fn netmask() {
        assert_eq!(parse_netmask("255.255.255.0"), Ok(24));
        assert_eq!(parse_netmask("255.255.255.255"), Ok(32));
        assert_eq!(parse_netmask("0.0.0.0"), Ok(0));
        assert_eq!(parse_netmask("255.255.254.0"), Ok(23));
        assert!(parse_netmask("255.0.255.0").is_err());
        assert!(parse_netmask("33").is_err());
    }
}
