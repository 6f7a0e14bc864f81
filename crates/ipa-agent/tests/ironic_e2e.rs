//! End to end with a **real, unmodified Ironic 39** (all-in-one from `/opt/ironic-venv`, see
//! `ipa_ironic::testing`) driving the `ipa-agent` binary, sandboxed on a simulated machine:
//! inspection, a failing clean step (`clean failed` with our text in `last_error`), automated
//! cleaning with a harmless simulated step, direct deploy of a raw image with an sha256
//! `os_hash` (the node reaches `active`), servicing with one step, and rescue. Once with
//! Ironic's `require_tls=False` (plain HTTP agent) and once with the default `require_tls=True`
//! (auto-TLS). Every agent log is captured at debug level and must not contain any token
//! Ironic issued.
#![cfg(feature = "transport-rest")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipa_ironic::testing::{FileServer, IronicOptions, IronicServer, free_port};
use serde_json::{Value, json};

const MAC_A: &str = "52:54:00:e2:e0:0a";
const MAC_B: &str = "52:54:00:e2:e0:0b";
const FAIL_TEXT: &str = "simulated failure requested by the machine file";
const STEP_WAIT: Duration = Duration::from_secs(180);

fn machine(mac: &str, ip: &str) -> String {
    format!(
        r#"hostname = "e2e-{ip}"
[cpu]
model_name = "Simulated CPU"
count = 4
[memory]
total = "8GiB"
[[interfaces]]
name = "eno1"
mac_address = "{mac}"
ipv4_address = "{ip}"
[[disks]]
name = "/dev/vda"
size = "8GiB"
[boot]
current_boot_mode = "uefi"
pxe_interface = "{mac}"
[[steps]]
name = "sim_firmware_check"
kinds = ["clean", "service"]
priority = 50
sleep_ms = 300
args = {{ component = "which component to check" }}
[[steps]]
name = "sim_broken_step"
kinds = ["clean"]
priority = 0
fail = "{FAIL_TEXT}"
"#
    )
}

/// A 2 MiB raw disk image with an MBR whose first partition is an EFI system partition, so
/// Ironic's UEFI whole-disk path (`install_bootloader`) finds an ESP.
fn make_image(path: &Path) -> String {
    let mut img = vec![0u8; 2 * 1024 * 1024];
    let e = 446;
    img[e + 4] = 0xef; // type: EFI system partition
    img[e + 8..e + 12].copy_from_slice(&2048u32.to_le_bytes());
    img[e + 12..e + 16].copy_from_slice(&2048u32.to_le_bytes());
    img[510] = 0x55;
    img[511] = 0xaa;
    for (i, b) in img[1024 * 1024..].iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    std::fs::write(path, &img).unwrap();
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

struct Boot {
    child: Child,
    log: PathBuf,
}

impl Boot {
    fn stop(mut self) -> String {
        let pid = self.child.id() as libc::pid_t;
        if self.child.try_wait().ok().flatten().is_none() {
            // SAFETY: signalling the agent process this test started, by its PID.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(10) {
                if self.child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // SAFETY: as above; the child may already be gone, which is harmless.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = self.child.wait();
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// One simulated machine: its sandbox persists across boots (disks survive reboots).
struct Machine {
    dir: PathBuf,
    machine: PathBuf,
    boots: usize,
    logs: Vec<String>,
}

impl Machine {
    fn new(root: &Path, name: &str, mac: &str, ip: &str) -> Self {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let machine = dir.join("machine.toml");
        std::fs::write(&machine, machine_toml(mac, ip)).unwrap();
        Self { dir, machine, boots: 0, logs: Vec::new() }
    }

    fn sandbox(&self) -> PathBuf {
        self.dir.join("sandbox")
    }

    /// Start the agent as a fresh boot with `extra` TOML lines.
    fn boot(&mut self, extra: &str, auto_tls: bool) -> Boot {
        self.boots += 1;
        let port = free_port();
        let conf = self.dir.join(format!("agent-{}.toml", self.boots));
        std::fs::write(
            &conf,
            format!(
                "{extra}\nlisten_host = \"127.0.0.1\"\nlisten_port = {port}\nadvertise_port = {port}\n\
                 enable_auto_tls = {auto_tls}\nmachine = \"{}\"\nsandbox = \"{}\"\n\
                 kernel_cmdline_path = \"/dev/null\"\nlookup_timeout = 120\ndebug = true\n",
                self.machine.display(),
                self.sandbox().display()
            ),
        )
        .unwrap();
        let log = self.dir.join(format!("agent-{}.log", self.boots));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ipa-agent"))
            .arg("--config")
            .arg(&conf)
            .current_dir(&self.dir)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Boot { child, log }
    }

    fn finish(&mut self, boot: Boot) -> String {
        let log = boot.stop();
        self.logs.push(log.clone());
        log
    }
}

fn machine_toml(mac: &str, ip: &str) -> String {
    machine(mac, ip)
}

/// Wait for a token to appear in Ironic's database after the agent's lookup.
fn capture_token(ir: &IronicServer, uuid: &str, tokens: &mut Vec<String>) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(60) {
        if let Some(t) = ir.agent_token(uuid) {
            if !tokens.contains(&t) {
                tokens.push(t);
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait(ir: &IronicServer, uuid: &str, states: &[&str], what: &str, logs: &[&Path]) -> Value {
    ir.wait_state(uuid, states, STEP_WAIT).unwrap_or_else(|e| {
        let agent: String = logs
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n---\n");
        let tail: Vec<&str> =
            agent.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect();
        panic!("{what}: {e}\n--- agent log tail ---\n{}", tail.join("\n"))
    })
}

/// Archives Ironic stored from `log.collect_system_logs` (`[agent]deploy_logs_local_path`)
/// whose name carries `label`.
fn ramdisk_logs(ir: &IronicServer, label: &str) -> Vec<PathBuf> {
    let dir = ir.dir.path().join("deploy-logs");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.to_string_lossy().contains(label));
    v.sort();
    v
}

/// Member names of a tar.gz, listed by the system `tar`.
fn tar_members(path: &Path) -> Vec<String> {
    let out = Command::new("tar").arg("-tzf").arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "tar -tzf {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

fn run_flows(require_tls: bool) {
    if IronicServer::venv_or_skip("real-Ironic test").is_none() {
        return;
    }
    let label = if require_tls { "auto-TLS" } else { "plain HTTP" };
    let auto_tls = require_tls;
    let t_all = Instant::now();
    let ir = IronicServer::start(&IronicOptions { require_tls, heartbeat_timeout: 30 }).unwrap();
    let mut times: Vec<(String, Duration)> = vec![("ironic start".into(), ir.startup)];
    let work = tempfile::tempdir().unwrap();
    let files = work.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let sha = make_image(&files.join("disk.raw"));
    for f in ["kernel", "ramdisk"] {
        std::fs::write(files.join(f), b"not really a kernel").unwrap();
    }
    let fs = FileServer::start(&files).unwrap();
    let api = ir.url();
    let api_line = format!("api_url = \"{api}\"");
    let mut tokens = Vec::new();
    let mut a = Machine::new(work.path(), "a", MAC_A, "192.0.2.10");

    let uuid = ir
        .create_node(
            json!({"name": "e2e-a",
                   "properties": {"vendor": "lenovo", "capabilities": "boot_mode:uefi"}}),
            MAC_A,
        )
        .unwrap();
    ir.transition(&uuid, "manage", &["manageable"], STEP_WAIT).unwrap();

    // --- inspection -------------------------------------------------------------------------
    let t = Instant::now();
    ir.transition(&uuid, "inspect", &["inspect wait"], STEP_WAIT).unwrap();
    let boot =
        a.boot(&format!("inspection_callback_url = \"{api}/v1/continue_inspection\""), auto_tls);
    let log = boot.log.clone();
    let node = wait(&ir, &uuid, &["manageable"], "inspection", &[&log]);
    a.finish(boot);
    times.push(("inspection".into(), t.elapsed()));
    assert_eq!(node["properties"]["cpu_arch"], "x86_64", "{node}");
    assert_eq!(node["properties"]["memory_mb"], 8192, "{node}");
    let (code, inv) = ir.call("GET", &format!("/v1/nodes/{uuid}/inventory"), None).unwrap();
    assert_eq!(code, 200, "{inv}");
    assert_eq!(inv["inventory"]["interfaces"][0]["mac_address"], MAC_A);

    // --- a failing clean step: `clean failed` with the agent's text ---------------------------
    let t = Instant::now();
    ir.provision(
        &uuid,
        json!({"target": "clean", "clean_steps": [{"interface": "deploy", "step": "sim_broken_step"}]}),
    )
    .unwrap();
    ir.wait_state(&uuid, &["clean wait"], STEP_WAIT).unwrap();
    let boot = a.boot(&api_line, auto_tls);
    let log = boot.log.clone();
    capture_token(&ir, &uuid, &mut tokens);
    let node = wait(&ir, &uuid, &["clean failed"], "failing clean step", &[&log]);
    a.finish(boot);
    times.push(("failing clean step".into(), t.elapsed()));
    let last_error = node["last_error"].as_str().unwrap_or_default();
    assert!(last_error.contains(FAIL_TEXT), "last_error: {last_error}");
    assert!(last_error.contains("sim_broken_step"), "last_error: {last_error}");
    // Ironic collected the agent's logs after the failure (log.collect_system_logs answered).
    let logs = ramdisk_logs(&ir, "cleaning");
    assert!(!logs.is_empty(), "a cleaning log archive was stored:\n{}", ir.log_problems(20));
    let members = tar_members(&logs[0]);
    assert!(members.iter().any(|m| m == "sim-steps.log"), "{members:?}");
    let all = Command::new("tar").arg("-xzOf").arg(&logs[0]).output().unwrap().stdout;
    let all = String::from_utf8_lossy(&all);
    for t in &tokens {
        assert!(!all.contains(t.as_str()), "the log archive contains an agent token");
    }
    // A failed clean puts the node in maintenance; the operator clears it.
    ir.ok("DELETE", &format!("/v1/nodes/{uuid}/maintenance"), None).unwrap();
    ir.transition(&uuid, "manage", &["manageable"], STEP_WAIT).unwrap();

    // --- automated cleaning -------------------------------------------------------------------
    let t = Instant::now();
    ir.transition(&uuid, "provide", &["clean wait"], STEP_WAIT).unwrap();
    let boot = a.boot(&api_line, auto_tls);
    let log = boot.log.clone();
    capture_token(&ir, &uuid, &mut tokens);
    wait(&ir, &uuid, &["available"], "automated cleaning", &[&log]);
    a.finish(boot);
    times.push(("automated cleaning".into(), t.elapsed()));
    let steps = std::fs::read_to_string(a.sandbox().join("sim-steps.log")).unwrap();
    assert!(steps.contains("sim_firmware_check"), "{steps}");
    assert!(steps.contains("erase_devices_metadata"), "{steps}");

    // --- direct deploy of a raw image with an sha256 os_hash ----------------------------------
    let t = Instant::now();
    ir.patch_node(
        &uuid,
        json!([
            {"op": "add", "path": "/instance_info/image_source", "value": fs.url("disk.raw")},
            {"op": "add", "path": "/instance_info/image_os_hash_algo", "value": "sha256"},
            {"op": "add", "path": "/instance_info/image_os_hash_value", "value": sha},
            {"op": "add", "path": "/instance_info/image_disk_format", "value": "raw"},
        ]),
    )
    .unwrap();
    ir.transition(&uuid, "active", &["wait call-back"], STEP_WAIT).unwrap();
    let boot = a.boot(&api_line, auto_tls);
    let log = boot.log.clone();
    capture_token(&ir, &uuid, &mut tokens);
    wait(&ir, &uuid, &["active"], "direct deploy", &[&log]);
    a.finish(boot);
    times.push(("direct deploy".into(), t.elapsed()));
    let image = std::fs::read(files.join("disk.raw")).unwrap();
    // Read only the image-sized head of the 8 GiB sparse disk (never the whole file).
    let mut disk = vec![0u8; image.len()];
    std::os::unix::fs::FileExt::read_exact_at(
        &std::fs::File::open(a.sandbox().join("disks/vda")).unwrap(),
        &mut disk,
        0,
    )
    .unwrap();
    assert_eq!(disk, image, "the image is on the simulated disk");

    // --- servicing with one step --------------------------------------------------------------
    let t = Instant::now();
    ir.provision(
        &uuid,
        json!({"target": "service", "service_steps": [
            {"interface": "deploy", "step": "sim_firmware_check", "args": {"component": "bmc"}}]}),
    )
    .unwrap();
    ir.wait_state(&uuid, &["service wait"], STEP_WAIT).unwrap();
    let boot = a.boot(&api_line, auto_tls);
    let log = boot.log.clone();
    capture_token(&ir, &uuid, &mut tokens);
    wait(&ir, &uuid, &["active"], "servicing", &[&log]);
    a.finish(boot);
    times.push(("servicing".into(), t.elapsed()));
    let steps = std::fs::read_to_string(a.sandbox().join("sim-steps.log")).unwrap();
    assert!(steps.contains("bmc"), "service step args reached the step: {steps}");

    // --- rescue (second node: rescue validation needs the pxe boot interface, which can only
    // be chosen before deployment; it is deployed by the agent first) -------------------------
    let t = Instant::now();
    let mut b = Machine::new(work.path(), "b", MAC_B, "192.0.2.11");
    let uuid_b = ir
        .create_node(
            json!({"name": "e2e-b", "boot_interface": "pxe", "rescue_interface": "agent",
                   "automated_clean": false,
                   "properties": {"vendor": "lenovo", "capabilities": "boot_mode:uefi"},
                   "driver_info": {"deploy_kernel": fs.url("kernel"), "deploy_ramdisk": fs.url("ramdisk"),
                                   "rescue_kernel": fs.url("kernel"), "rescue_ramdisk": fs.url("ramdisk")}}),
            MAC_B,
        )
        .unwrap();
    ir.transition(&uuid_b, "manage", &["manageable"], STEP_WAIT).unwrap();
    ir.transition(&uuid_b, "provide", &["available"], STEP_WAIT).unwrap();
    ir.patch_node(
        &uuid_b,
        json!([
            {"op": "add", "path": "/instance_info/image_source", "value": fs.url("disk.raw")},
            {"op": "add", "path": "/instance_info/image_os_hash_algo", "value": "sha256"},
            {"op": "add", "path": "/instance_info/image_os_hash_value", "value": sha},
            {"op": "add", "path": "/instance_info/image_disk_format", "value": "raw"},
        ]),
    )
    .unwrap();
    ir.transition(&uuid_b, "active", &["wait call-back"], STEP_WAIT).unwrap();
    let boot = b.boot(&api_line, auto_tls);
    let log = boot.log.clone();
    capture_token(&ir, &uuid_b, &mut tokens);
    wait(&ir, &uuid_b, &["active"], "deploy of the rescue node (pxe boot)", &[&log]);
    b.finish(boot);
    times.push(("direct deploy, pxe boot".into(), t.elapsed()));
    let t_rescue = Instant::now();
    ir.provision(&uuid_b, json!({"target": "rescue", "rescue_password": "e2e-rescue-pw"})).unwrap();
    ir.wait_state(&uuid_b, &["rescue wait"], STEP_WAIT).unwrap();
    let mut boot = b.boot(&api_line, auto_tls);
    let log = boot.log.clone();
    capture_token(&ir, &uuid_b, &mut tokens);
    wait(&ir, &uuid_b, &["rescue"], "rescue", &[&log]);
    // finalize_rescue stops the API and the process exits 0.
    let t0 = Instant::now();
    let mut exited = None;
    while t0.elapsed() < Duration::from_secs(20) && exited.is_none() {
        exited = boot.child.try_wait().unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(exited.is_some_and(|s| s.success()), "agent exits 0 after rescue: {exited:?}");
    b.finish(boot);
    times.push(("rescue".into(), t_rescue.elapsed()));
    let hash =
        std::fs::read_to_string(b.sandbox().join("root/etc/ipa-rescue-config/ipa-rescue-password"))
            .unwrap();
    assert!(hash.starts_with('$') && !hash.contains("e2e-rescue-pw"), "{hash}");
    assert!(b.sandbox().join("root/etc/.rescued").exists());

    // --- auto-TLS really served HTTPS; no token in any log line -------------------------------
    let all: Vec<&String> = a.logs.iter().chain(b.logs.iter()).collect();
    if require_tls {
        assert!(all.iter().any(|l| l.contains("https://127.0.0.1:")), "https callback advertised");
        assert!(ir.dir.path().join(format!("certs/{uuid}.crt")).exists());
    }
    assert!(tokens.len() >= 4, "captured the tokens Ironic issued: {}", tokens.len());
    for (i, l) in all.iter().enumerate() {
        assert!(
            l.contains("lookup succeeded") || l.contains("inspection data accepted"),
            "log {i} shows a lookup or inspection:\n{l}"
        );
        for t in &tokens {
            assert!(!l.contains(t.as_str()), "agent log {i} contains an agent token");
        }
    }

    times.push(("total".into(), t_all.elapsed()));
    let summary: Vec<String> =
        times.iter().map(|(n, d)| format!("{n}={:.1}s", d.as_secs_f64())).collect();
    eprintln!("[ironic e2e, {label}] {}", summary.join(" "));
}

#[test]
fn ironic_drives_the_agent_with_plain_http() {
    run_flows(false);
}

#[test]
fn ironic_drives_the_agent_with_auto_tls() {
    run_flows(true);
}
