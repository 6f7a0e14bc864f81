//! `lab-bench`: one VM of a given memory size through a real Ironic — manage → inspect →
//! (automated cleaning, optional) → deploy of a raw whole-disk image of a given size → `active`
//! — printing `LAB-TIMING <label>: <secs> s` lines like the lab tests do, and one
//! `LAB-RESULT ok|fail ...` line. Exit status 0 when the node reached `active`.
//! Used by `scripts/bench-ramdisk.sh` (power-on → first heartbeat, flow durations, memory floor).
//!
//! ```text
//! cargo run -p ipa-vm-lab --example lab-bench -- --memory 192 --image-mib 1024 \
//!     [--ramdisk DIR] [--image-dir DIR] [--disk-gib 2] [--clean] [--expect-marker] \
//!     [--zero-fill] [--log-dir DIR]
//! ```
//!
//! The image is the lab's test OS (`testos/make-test-os.sh`, `DISK_MIB=<image-mib>`), its free
//! space after the ESP filled with random bytes (so that every MiB is real data to transfer and
//! write; `--zero-fill` keeps zeros), built once into `--image-dir` (before the lab enters its
//! namespace: the first build downloads Debian packages) and served to the agent by the lab's
//! HTTP server through a symlink (no 1 GiB copy).
//!
//! Timing sources: provision requests and Ironic's state polls are host wall-clock; a power-on
//! is the `starting up` line libvirt writes to `/var/log/libvirt/qemu/<vm>.log` (ms, falls back
//! to polling `virsh domstate` every 0.5 s); a heartbeat is Ironic's own
//! `driver_internal_info.agent_last_heartbeat` (UTC, µs). A run fails early on an OOM kill, a
//! kernel panic, a failed initramfs unpack or an ipa-init FATAL on the console, or when the
//! ramdisk's PID 1 is not up 300 s after power-on.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ipa_vm_lab::{DiskBus, Lab, LabOptions, VmSpec};
use serde_json::{Value, json};

const GIB: u64 = 1 << 30;
const MAC: &str = "52:54:00:1a:be:01";
const VM_NAME: &str = "ipalab-bench1";
const MARKER: &str = "IPA-RS-TESTOS-MARKER";

#[derive(Debug)]
struct Args {
    ramdisk: PathBuf,
    memory: u64,
    image_mib: u64,
    image_dir: Option<PathBuf>,
    disk_gib: u64,
    clean: bool,
    expect_marker: bool,
    zero_fill: bool,
    log_dir: Option<PathBuf>,
}

const USAGE: &str =
    "usage: lab-bench --memory MIB [--image-mib N (1024)] [--ramdisk DIR] [--image-dir DIR]
                 [--disk-gib N (2)] [--clean] [--expect-marker] [--zero-fill] [--log-dir DIR]";

fn parse_args() -> Option<Args> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut a = Args {
        ramdisk: std::env::var_os("IPA_RAMDISK_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target/ramdisk")),
        memory: 0,
        image_mib: 1024,
        image_dir: None,
        disk_gib: 2,
        clean: false,
        expect_marker: false,
        zero_fill: false,
        log_dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next();
        match arg.as_str() {
            "--ramdisk" => a.ramdisk = val()?.into(),
            "--memory" => a.memory = val()?.parse().ok()?,
            "--image-mib" => a.image_mib = val()?.parse().ok()?,
            "--image-dir" => a.image_dir = Some(val()?.into()),
            "--disk-gib" => a.disk_gib = val()?.parse().ok()?,
            "--log-dir" => a.log_dir = Some(val()?.into()),
            "--clean" => a.clean = true,
            "--expect-marker" => a.expect_marker = true,
            "--zero-fill" => a.zero_fill = true,
            _ => return None,
        }
    }
    let fits = a.image_mib < a.disk_gib * 1024;
    (a.memory >= 64 && a.image_mib >= 40 && fits).then_some(a)
}

fn timing(label: &str, secs: f64) {
    println!("LAB-TIMING {label}: {secs:.1} s");
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Seconds since the epoch of a naive UTC timestamp: `2026-12-02T19:06:40.195419` (Ironic's
/// `utcnow().isoformat()`) or `2026-12-02 19:31:54.579+0000` (libvirt's log).
fn parse_utc(s: &str) -> Option<f64> {
    let s = s.trim();
    let (date, rest) = s.split_once(['T', ' '])?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, dd) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let time: String =
        rest.chars().take_while(|c| c.is_ascii_digit() || *c == ':' || *c == '.').collect();
    let mut t = time.split(':');
    let (h, mi, sec) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
    );
    // Days from civil (proleptic Gregorian), Howard Hinnant's algorithm.
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + dd - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some((days * 86400 + h * 3600 + mi * 60) as f64 + sec)
}

/// libvirt's `starting up` times for the VM (epoch seconds), from its QEMU log.
fn libvirt_starts(vm: &str) -> Vec<f64> {
    let log =
        std::fs::read_to_string(format!("/var/log/libvirt/qemu/{vm}.log")).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains(": starting up"))
        .filter_map(|l| l.split(": starting up").next().and_then(parse_utc))
        .collect()
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The raw image and its sha256, built once into `dir`.
fn image(a: &Args) -> Result<(PathBuf, String), String> {
    let dir = a.image_dir.clone().unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../../target/bench/image-{}mib", a.image_mib))
    });
    let tag = format!("{}{}", a.image_mib, if a.zero_fill { "-zero" } else { "-random" });
    let raw = dir.join(format!("image-{tag}.raw"));
    let sum_file = dir.join(format!("image-{tag}.sha256"));
    if let (true, Ok(sum)) = (raw.is_file(), std::fs::read_to_string(&sum_file))
        && sum.trim().len() == 64
    {
        return Ok((raw, sum.trim().to_string()));
    }
    let t = Instant::now();
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let build = dir.join("testos");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testos/make-test-os.sh");
    run(Command::new("bash")
        .arg(&script)
        .arg(&build)
        .env("KERNEL", a.ramdisk.join("ipa-rs.kernel"))
        .env("CACHE", a.ramdisk.join("testos-cache"))
        .env("DISK_MIB", a.image_mib.to_string()))?;
    let tmp = dir.join(format!("image-{tag}.raw.tmp"));
    std::fs::rename(build.join("testos.raw"), &tmp).map_err(|e| e.to_string())?;
    if !a.zero_fill {
        // The ESP is 1..33 MiB; the backup GPT is in the last MiB. Random data in between.
        run(Command::new("dd")
            .arg("if=/dev/urandom")
            .arg(format!("of={}", tmp.display()))
            .args(["bs=1M", "seek=34", "conv=notrunc", "status=none"])
            .arg(format!("count={}", a.image_mib - 35)))?;
    }
    let out = run(Command::new("sha256sum").arg(&tmp))?;
    let sum = out.split_whitespace().next().unwrap_or("").to_string();
    std::fs::rename(&tmp, &raw).map_err(|e| e.to_string())?;
    std::fs::write(&sum_file, format!("{sum}\n")).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&build);
    timing("image build", t.elapsed().as_secs_f64());
    Ok((raw, sum))
}

/// `s` without ANSI colour sequences (the agent's log on the console is coloured).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\x1b' {
            for d in it.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The first console line that shows a failure.
fn console_failure(console: &str) -> Option<String> {
    const PATTERNS: &[&str] = &[
        "invoked oom-killer",
        "Out of memory",
        "Kernel panic",
        "Initramfs unpacking failed",
        "ipa-init: FATAL",
        // Too little memory for the firmware to hand the kernel its initrd (iPXE keeps its
        // own copies of both images): the machine ends in the UEFI shell.
        "EFI stub: ERROR",
    ];
    for p in PATTERNS {
        if let Some(i) = console.find(p) {
            let start = console[..i].rfind('\n').map(|x| x + 1).unwrap_or(0);
            let end = console[i..].find('\n').map(|x| i + x).unwrap_or(console.len());
            return Some(console[start..end].trim().chars().take(200).collect());
        }
    }
    None
}

#[derive(Debug, Default)]
struct Flow {
    secs: f64,
    power_on: Option<f64>,
    first_heartbeat: Option<f64>,
    ramdisk_off: Option<f64>,
}

/// Request `body`, wait until the node is in one of `targets` (failing fast on console
/// problems), and time the power-on, the first heartbeat and the ramdisk's power-off.
fn flow(
    lab: &Lab,
    vm: &VmSpec,
    uuid: &str,
    body: Value,
    targets: &[&str],
    timeout: Duration,
) -> Result<Flow, String> {
    let wall0 = unix(SystemTime::now());
    let t0 = Instant::now();
    let mark = lab.console(vm).len();
    let hb_key =
        |n: &Value| n["driver_internal_info"]["agent_last_heartbeat"].as_str().map(String::from);
    let hb_before = lab.ironic.node(uuid).ok().as_ref().and_then(hb_key);
    lab.ironic.provision(uuid, body)?;
    let mut f = Flow::default();
    let mut polled_on: Option<f64> = None;
    loop {
        let now = unix(SystemTime::now());
        let n = lab.ironic.node(uuid)?;
        let st = n["provision_state"].as_str().unwrap_or("").to_string();
        if f.first_heartbeat.is_none()
            && let Some(h) = hb_key(&n).filter(|h| Some(h) != hb_before.as_ref())
        {
            f.first_heartbeat = parse_utc(&h);
        }
        let running = lab.libvirt.state(&vm.name).map(|s| s == "running").unwrap_or(false);
        if running && polled_on.is_none() {
            polled_on = Some(now);
        }
        if !running && f.first_heartbeat.is_some() && f.ramdisk_off.is_none() {
            f.ramdisk_off = Some(now);
        }
        let settled =
            st.contains("wait") || st.ends_with("failed") || n["target_provision_state"].is_null();
        if targets.contains(&st.as_str()) && settled {
            break;
        }
        if st.ends_with("failed") {
            return Err(format!("state {st}: {}", n["last_error"]));
        }
        let console = lab.console(vm);
        let since = console.get(mark..).unwrap_or_default();
        if let Some(line) = console_failure(since) {
            return Err(format!("console (state {st}): {line}"));
        }
        let booted = since.contains("starting as PID 1") || since.contains("BdsDxe: starting Boot");
        if polled_on.is_some_and(|on| now - on > 300.0) && !booted {
            return Err(format!(
                "no ramdisk PID 1 on the console 300 s after power-on (state {st})"
            ));
        }
        if t0.elapsed() > timeout {
            return Err(format!("timed out after {timeout:?} in state {st}"));
        }
        if STOP.load(Ordering::SeqCst) {
            return Err(format!("stopped by a signal in state {st}"));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    f.secs = t0.elapsed().as_secs_f64();
    // The precise power-on: libvirt's first `starting up` in this flow.
    f.power_on = libvirt_starts(&vm.name).into_iter().find(|t| *t >= wall0 - 0.5).or(polled_on);
    Ok(f)
}

/// Print a flow's timings; the first flow with a heartbeat also gives the plain
/// `power-on → first heartbeat`.
fn report_flow(label: &str, name: &str, f: &Flow, first: &mut bool) {
    timing(label, f.secs);
    if let (Some(on), Some(hb)) = (f.power_on, f.first_heartbeat) {
        timing(&format!("power-on → first heartbeat ({name})"), hb - on);
        if *first {
            timing("power-on → first heartbeat", hb - on);
            *first = false;
        }
    }
    if let (Some(hb), Some(off)) = (f.first_heartbeat, f.ramdisk_off) {
        timing(&format!("{name}: first heartbeat → ramdisk powered off"), off - hb);
    }
}

/// Set by SIGTERM/SIGINT/SIGHUP: the flow loop returns an error, `main` returns normally and
/// the lab's `Drop` stops Ironic, sushy-tools, dnsmasq and the VM and deletes the namespace
/// (killing the bench used to leak all of them).
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: nix::libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn catch_stop_signals() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let act =
        SigAction::new(SigHandler::Handler(on_stop_signal), SaFlags::empty(), SigSet::empty());
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        if let Err(e) = unsafe { sigaction(sig, &act) } {
            eprintln!("warning: cannot catch {sig}: {e}");
        }
    }
}

fn main() -> ExitCode {
    catch_stop_signals();
    let Some(a) = parse_args() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let t_total = Instant::now();
    // Before the lab: the image build may download packages (the namespace has no uplink).
    let (raw, sum) = match image(&a) {
        Ok(x) => x,
        Err(e) => {
            println!("LAB-RESULT fail memory={} reason=image: {e}", a.memory);
            return ExitCode::FAILURE;
        }
    };
    let mut opts = LabOptions::new("bench", &a.ramdisk);
    opts.automated_clean = a.clean;
    let t = Instant::now();
    let mut lab = match Lab::start(&opts) {
        Ok(l) => l,
        Err(e) => {
            println!("LAB-RESULT fail memory={} reason=lab: {e}", a.memory);
            return ExitCode::FAILURE;
        }
    };
    timing("lab setup", t.elapsed().as_secs_f64());
    let vm =
        lab.vm_spec(VM_NAME, MAC, a.memory, &[(DiskBus::Virtio, a.disk_gib * GIB, "BENCH-ROOT-1")]);
    let result = run_flows(&mut lab, &vm, &a, &raw, &sum);
    let console = lab.console(&vm);
    if let Some(dir) = &a.log_dir {
        let _ = std::fs::create_dir_all(dir);
        let _ = std::fs::write(dir.join("console.log"), &console);
        let _ = std::fs::write(dir.join("diagnostics.txt"), lab.diagnostics());
        let _ = std::fs::copy(lab.ironic.dir.path().join("ironic.log"), dir.join("ironic.log"));
    }
    timing("total", t_total.elapsed().as_secs_f64());
    match result {
        Ok(()) => {
            println!("LAB-RESULT ok memory={} image_mib={}", a.memory, a.image_mib);
            ExitCode::SUCCESS
        }
        Err(e) => {
            let e = e.replace('\n', " | ");
            println!(
                "LAB-RESULT fail memory={} reason={}",
                a.memory,
                e.chars().take(600).collect::<String>()
            );
            eprintln!("{}", lab.diagnostics());
            ExitCode::FAILURE
        }
    }
}

fn run_flows(lab: &mut Lab, vm: &VmSpec, a: &Args, raw: &Path, sum: &str) -> Result<(), String> {
    lab.define_vm(vm).map_err(|e| e.to_string())?;
    // Served through a symlink: Python's http.server follows it.
    let name = "bench.raw";
    let link = lab.ironic.dir.path().join("http/lab").join(name);
    let target = std::fs::canonicalize(raw).map_err(|e| e.to_string())?;
    std::os::unix::fs::symlink(&target, &link).map_err(|e| e.to_string())?;
    let url = lab.image_url(name);
    let uuid = lab
        .enroll(vm, json!({"properties": {"capabilities": "boot_mode:uefi", "root_device": {"serial": "BENCH-ROOT-1"}}}))
        .map_err(|e| e.to_string())?;
    let f = flow(
        lab,
        vm,
        &uuid,
        json!({"target": "manage"}),
        &["manageable"],
        Duration::from_secs(300),
    )?;
    timing("manage", f.secs);
    let f = flow(
        lab,
        vm,
        &uuid,
        json!({"target": "inspect"}),
        &["manageable"],
        Duration::from_secs(1200),
    )?;
    let mut first = true;
    report_flow("inspection", "inspection", &f, &mut first);
    let inv = lab.ironic.ok("GET", &format!("/v1/nodes/{uuid}/inventory"), None)?;
    let mem = inv["inventory"]["memory"]["total"].as_u64().unwrap_or(0);
    println!(
        "LAB-INFO inspected memory.total={} MiB, disks={}",
        mem >> 20,
        inv["inventory"]["disks"].as_array().map(|d| d.len()).unwrap_or(0)
    );
    let f = flow(
        lab,
        vm,
        &uuid,
        json!({"target": "provide"}),
        &["available"],
        Duration::from_secs(1800),
    )?;
    let name = if a.clean { "automated cleaning" } else { "provide (no cleaning)" };
    report_flow(name, name, &f, &mut first);
    lab.ironic.patch_node(&uuid, Lab::image_patch(&url, sum, "raw"))?;
    let mark = lab.console(vm).len();
    let f =
        flow(lab, vm, &uuid, json!({"target": "active"}), &["active"], Duration::from_secs(2400))?;
    let size =
        if a.image_mib == 1024 { "1 GiB".to_string() } else { format!("{} MiB", a.image_mib) };
    report_flow(&format!("deploy {size} raw (to active)"), "deploy", &f, &mut first);
    // The agent's own account of the write (its log on the console).
    let console = lab.console(vm);
    if let Some(line) =
        console.get(mark..).unwrap_or_default().lines().find(|l| l.contains("image written"))
    {
        let plain = strip_ansi(line);
        let field = |k: &str| {
            plain
                .split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .and_then(|v| v.parse::<f64>().ok())
        };
        if let (Some(bytes), Some(secs)) = (field("bytes="), field("secs=")) {
            timing("deploy: agent image write + verify", secs);
            println!("LAB-INFO image write {:.1} MiB/s ({bytes} bytes)", bytes / secs / 1048576.0);
        }
    }
    if a.expect_marker {
        let secs = lab
            .wait_console(vm, mark, MARKER, Duration::from_secs(300))
            .map_err(|e| format!("deployed OS: {e}"))?;
        timing("active → deployed OS marker", secs);
    }
    Ok(())
}
