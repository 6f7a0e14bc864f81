//! `ipa-init`: PID 1 of the deploy ramdisk (see the library docs), plus read-only host modes.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ipa_init::cmdline::{BootConfig, Cmdline, IpParam, StaticIp};
use ipa_init::json::Json;
use ipa_init::modules::{
    Coldplug, ModuleIndex, RecordingLoader, parse_module_list, scan_modaliases,
};
use ipa_init::net::{self, Assignment, Stage, WaitFor};

const USAGE: &str = "\
usage: ipa-init                      run as init (only as PID 1, from the ramdisk)
       ipa-init --check-cmdline CMDLINE [--sysfs DIR]
                                     print the network/agent plan for a kernel command line
                                     as JSON (with --sysfs: applied to DIR/class/net)
       ipa-init --resolve-modules DIR [--list FILE] [--cmdline CMDLINE]
                                     read modaliases (one a line) on stdin, print the modules
                                     (name path [params]) in load order, from the depmod
                                     index in DIR (/lib/modules/<release>)
       ipa-init --dry-run [--cmdline CMDLINE] [--sysfs DIR] [--modules-dir DIR]
                                     show what init would do on this machine (reads only)
       ipa-init --help | --version
";

fn static_json(s: &StaticIp) -> Json {
    Json::obj([
        ("address", Json::str(s.address)),
        ("prefix", Json::Num(s.prefix as f64)),
        ("peer", Json::opt(s.peer)),
        ("gateway", Json::opt(s.gateway)),
        ("hostname", Json::opt(s.hostname.as_deref())),
        ("interface", Json::opt(s.interface.as_deref())),
        ("mtu", s.mtu.map_or(Json::Null, |m| Json::Num(m as f64))),
        ("macaddr", Json::opt(s.macaddr)),
        ("dns", Json::strs(&s.dns)),
    ])
}

fn ip_json(p: &IpParam) -> Json {
    match p {
        IpParam::Off => Json::obj([("method", Json::str("off"))]),
        IpParam::Auto { interface, dhcp4, dhcp6 } => Json::obj([
            ("method", Json::str("auto")),
            ("interface", Json::opt(interface.as_deref())),
            ("dhcp4", Json::Bool(*dhcp4)),
            ("dhcp6", Json::Bool(*dhcp6)),
        ]),
        IpParam::Static(s) => {
            let Json::Obj(mut pairs) = static_json(s) else { unreachable!() };
            pairs.insert(0, ("method".into(), Json::str("static")));
            Json::Obj(pairs)
        }
    }
}

fn plan_json(cfg: &BootConfig, assignment: Option<&Assignment>) -> Json {
    let n = &cfg.net;
    let mut params: Vec<(String, Json)> = Vec::new();
    for (m, _) in &cfg.modules.params {
        if !params.iter().any(|(k, _)| k == m) {
            params.push((m.clone(), Json::str(cfg.modules.params_for(m))));
        }
    }
    let mut pairs = vec![
        ("bootif".to_string(), Json::opt(n.bootif)),
        ("ip".into(), Json::Arr(n.ip.iter().map(ip_json).collect())),
        ("default_network".into(), Json::Bool(n.ip.is_empty())),
        ("network_off".into(), Json::Bool(n.is_off())),
        ("dhcp_all_interfaces".into(), Json::Bool(n.dhcp_all_interfaces)),
        ("net_timeout_s".into(), Json::Num(n.timeout.as_secs_f64())),
        ("nameservers".into(), Json::strs(&n.nameservers)),
        (
            "agent".into(),
            Json::obj([
                ("path", Json::str(&cfg.agent.path)),
                ("args", Json::strs(&cfg.agent.args)),
            ]),
        ),
        ("shell".into(), Json::Bool(cfg.shell)),
        (
            "modules".into(),
            Json::obj([
                ("extra", Json::strs(&cfg.modules.extra)),
                ("blacklist", Json::strs(&cfg.modules.blacklist)),
                ("params", Json::Obj(params)),
            ]),
        ),
        ("warnings".into(), Json::strs(&cfg.warnings)),
    ];
    if let Some(a) = assignment {
        let nics = a
            .nics
            .iter()
            .map(|c| {
                Json::obj([
                    ("name", Json::str(&c.nic.name)),
                    ("mac", Json::opt(c.nic.mac)),
                    ("dhcp4", Json::Bool(c.dhcp4)),
                    ("dhcp6", Json::Bool(c.dhcp6)),
                    ("static", c.static_ip.as_ref().map_or(Json::Null, static_json)),
                    (
                        "stage",
                        Json::str(match c.stage {
                            Stage::First => "first",
                            Stage::Later => "later",
                        }),
                    ),
                    ("primary", Json::Bool(c.primary)),
                    ("metric", Json::Num(c.metric as f64)),
                ])
            })
            .collect();
        pairs.push(("interfaces".into(), Json::Arr(nics)));
        pairs.push((
            "wait_for".into(),
            match &a.wait {
                WaitFor::Nothing => Json::Null,
                WaitFor::Any => Json::str("any"),
                WaitFor::Nic(n) => Json::str(n),
            },
        ));
        pairs.push(("bootif_missing".into(), Json::Bool(a.bootif_missing)));
    }
    Json::Obj(pairs)
}

struct Opts {
    mode: String,
    value: Option<String>,
    sysfs: Option<PathBuf>,
    list: Option<PathBuf>,
    cmdline: Option<String>,
    modules_dir: Option<PathBuf>,
}

fn parse_args(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        mode: args[0].clone(),
        value: None,
        sysfs: None,
        list: None,
        cmdline: None,
        modules_dir: None,
    };
    let mut i = 1;
    if matches!(o.mode.as_str(), "--check-cmdline" | "--resolve-modules") {
        o.value = Some(args.get(1).cloned().ok_or(format!("{} needs an argument", o.mode))?);
        i = 2;
    }
    while i < args.len() {
        let v = args.get(i + 1).cloned().ok_or(format!("{} needs an argument", args[i]))?;
        match args[i].as_str() {
            "--sysfs" => o.sysfs = Some(v.into()),
            "--list" => o.list = Some(v.into()),
            "--cmdline" => o.cmdline = Some(v),
            "--modules-dir" => o.modules_dir = Some(v.into()),
            other => return Err(format!("unknown option {other:?}")),
        }
        i += 2;
    }
    Ok(o)
}

fn check_cmdline(o: &Opts) -> ExitCode {
    let cfg = BootConfig::from_cmdline(&Cmdline::parse(o.value.as_deref().unwrap_or("")));
    let a = o.sysfs.as_ref().map(|s| net::assign(&cfg.net, &net::discover_wired_nics(s)));
    println!("{}", plan_json(&cfg, a.as_ref()));
    ExitCode::SUCCESS
}

fn module_plan(o: &Opts) -> BootConfig {
    BootConfig::from_cmdline(&Cmdline::parse(o.cmdline.as_deref().unwrap_or("")))
}

fn resolve_modules(o: &Opts) -> ExitCode {
    let dir = PathBuf::from(o.value.as_deref().unwrap_or("."));
    let index = match ModuleIndex::load(&dir) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("ipa-init: {e}");
            return ExitCode::from(1);
        }
    };
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("ipa-init: stdin: {e}");
        return ExitCode::from(1);
    }
    let aliases: Vec<String> = input
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    let cfg = module_plan(o);
    let mut c = Coldplug::new(index, RecordingLoader::default(), cfg.modules.clone());
    let r = c.coldplug(&aliases);
    let mut unknown = Vec::new();
    if let Some(list) = &o.list {
        match std::fs::read_to_string(list) {
            Ok(t) => {
                let mut names = parse_module_list(&t);
                names.extend(cfg.modules.extra.iter().cloned());
                unknown = c.load_names(&names).unknown;
            }
            Err(e) => {
                eprintln!("ipa-init: {}: {e}", list.display());
                return ExitCode::from(1);
            }
        }
    }
    for (name, path, params) in &c.loader.calls {
        if params.is_empty() {
            println!("{name} {}", path.display());
        } else {
            println!("{name} {} {params}", path.display());
        }
    }
    eprintln!(
        "ipa-init: {} modaliases -> {} modules from coldplug, {} in total",
        aliases.len(),
        r.loaded.len(),
        c.loader.calls.len()
    );
    if !unknown.is_empty() {
        eprintln!("ipa-init: unknown modules in the list: {}", unknown.join(" "));
    }
    ExitCode::SUCCESS
}

fn dry_run(o: &Opts) -> ExitCode {
    let line = match &o.cmdline {
        Some(c) => c.clone(),
        None => std::fs::read_to_string("/proc/cmdline").unwrap_or_default(),
    };
    let cfg = BootConfig::from_cmdline(&Cmdline::parse(&line));
    let sysfs = o.sysfs.clone().unwrap_or_else(|| "/sys".into());
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = o.modules_dir.clone().unwrap_or_else(|| Path::new("/lib/modules").join(&release));
    println!("dry run (nothing is mounted, loaded, configured or started)");
    let mounts: Vec<String> =
        ipa_init::sys::EARLY_MOUNTS.iter().map(|m| format!("{} {}", m.fstype, m.target)).collect();
    println!("would mount: {}", mounts.join(", "));
    match ModuleIndex::load(&dir) {
        Ok(index) => {
            let aliases = scan_modaliases(&sysfs.join("devices"), 24);
            let mut loader = RecordingLoader::default();
            if let Ok(entries) = std::fs::read_dir(sysfs.join("module")) {
                for e in entries.flatten() {
                    if e.path().join("initstate").exists() {
                        loader.live.insert(e.file_name().to_string_lossy().into_owned());
                    }
                }
            }
            let live = loader.live.len();
            let mut c = Coldplug::new(index, loader, cfg.modules.clone());
            let r = c.coldplug(&aliases);
            println!(
                "modules ({}): {} modaliases under {}; {} already loaded; coldplug would load {}: {}",
                dir.display(),
                aliases.len(),
                sysfs.join("devices").display(),
                live,
                r.loaded.len(),
                r.loaded.join(" ")
            );
            if let Ok(t) = std::fs::read_to_string("/etc/ipa-init/modules") {
                let r = c.load_names(&parse_module_list(&t));
                println!("module list would load: {}", r.loaded.join(" "));
            }
        }
        Err(e) => println!("modules: {e}"),
    }
    let a = net::assign(&cfg.net, &net::discover_wired_nics(&sysfs));
    println!("network plan: {}", plan_json(&cfg, Some(&a)));
    println!("DHCP clients: {}", dhcp_clients());
    let mut agent = vec![cfg.agent.path.clone()];
    agent.extend(cfg.agent.args.iter().cloned());
    println!("would start: {} (IPA_INIT=1)", agent.join(" "));
    ExitCode::SUCCESS
}

/// The DHCP clients init would run here (the same choice as init's).
fn dhcp_clients() -> String {
    const DIRS: &[&str] = &["/usr/sbin", "/usr/bin", "/sbin", "/bin"];
    let applets = net::busybox_applets();
    let show = |t: &net::Tool| {
        let mut s = t.program.display().to_string();
        for a in &t.prefix_args {
            s.push(' ');
            s.push_str(a);
        }
        s
    };
    let v4 = net::find_tool("udhcpc", DIRS, &applets).map_or("none".into(), |t| show(&t));
    let files = Path::new(net::DHCPCD_CONF).exists() && Path::new(net::DHCPCD_SCRIPT).exists();
    let v6 = net::choose_dhcp6_client(
        net::find_tool("udhcpc6", DIRS, &applets),
        net::find_tool("dhcpcd", DIRS, &[]),
        files,
    )
    .map_or("none (SLAAC only)".into(), |c| format!("{} ({})", show(c.tool()), c.name()));
    format!("DHCPv4 {v4}; DHCPv6 {v6}")
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let host_mode = args.first().map(String::as_str);
    match host_mode {
        Some("--help" | "-h") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some("--version") => {
            println!("ipa-init {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some("--check-cmdline" | "--resolve-modules" | "--dry-run") => {
            let o = match parse_args(&args) {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("ipa-init: {e}\n{USAGE}");
                    return ExitCode::from(2);
                }
            };
            return match o.mode.as_str() {
                "--check-cmdline" => check_cmdline(&o),
                "--resolve-modules" => resolve_modules(&o),
                _ => dry_run(&o),
            };
        }
        _ => {}
    }
    let pid = std::process::id();
    if pid == 1 {
        // The kernel passes unrecognised boot parameters as arguments: ignore them.
        ipa_init::init::run();
    }
    eprintln!(
        "ipa-init: refusing to act as init: this process is PID {pid}, not 1. ipa-init mounts \
         filesystems, loads kernel modules and reboots the machine, so it only does that as \
         the ramdisk's /init. Read-only modes:\n{USAGE}"
    );
    ExitCode::from(2)
}
