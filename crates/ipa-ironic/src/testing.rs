//! Test harness (feature `test-harness`): a **real, unmodified** all-in-one Ironic from a venv
//! (`ironic-dbsync` + `ironic`, config of `ironic-contract.md` §9.2: sqlite, noauth,
//! `rpc_transport=none`, fake-hardware, direct deploy, agent inspect/rescue) on free loopback
//! ports, started and stopped by PID, plus a loopback HTTP file server for images and
//! kernels, and a tiny blocking HTTP/1.1 client for Ironic's REST API.
//!
//! The venv is `$IRONIC_VENV` or `/opt/ironic-venv`; [`IronicServer::venv`] returns `None` when
//! it is missing so tests can say why they skip.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A free loopback TCP port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`); returns (status, body).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> std::io::Result<(u16, String)> {
    http_to("127.0.0.1", port, method, path, headers, body)
}

/// [`http`] to another host (an address inside a test's network namespace).
pub fn http_to(
    host: &str,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect((host, port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if body.is_some() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{payload}", payload.len()));
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest.get(n + 2..).unwrap_or("");
    }
    out
}

/// Serves files of a directory over loopback HTTP (GET and HEAD), one thread per connection.
#[derive(Debug)]
pub struct FileServer {
    /// Port.
    pub port: u16,
    /// Served directory.
    pub root: PathBuf,
    stop: Arc<AtomicBool>,
}

impl FileServer {
    /// Serve `root` on a free loopback port.
    pub fn start(root: &Path) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let (st, dir) = (stop.clone(), root.to_path_buf());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let dir = dir.clone();
                std::thread::spawn(move || {
                    let _ = serve_file(conn, &dir);
                });
            }
        });
        Ok(Self { port, root: root.to_path_buf(), stop })
    }

    /// `http://127.0.0.1:<port>/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve_file(conn: TcpStream, dir: &Path) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("/").split('?').next().unwrap_or("/");
    let name = path.trim_start_matches('/');
    let mut out = conn;
    let file = dir.join(name);
    if name.is_empty() || name.contains("..") || !file.is_file() {
        out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
        return Ok(());
    }
    let len = std::fs::metadata(&file)?.len();
    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
    )?;
    if method == "GET" {
        std::io::copy(&mut std::fs::File::open(&file)?, &mut out)?;
    }
    out.flush()
}

/// Ironic options that differ between test runs.
#[derive(Debug, Clone)]
pub struct IronicOptions {
    /// `[agent]require_tls` (Ironic's default is true).
    pub require_tls: bool,
    /// `[api]ramdisk_heartbeat_timeout` (sent to the agent as `heartbeat_timeout`).
    pub heartbeat_timeout: u64,
}

impl Default for IronicOptions {
    fn default() -> Self {
        Self { require_tls: true, heartbeat_timeout: 30 }
    }
}

/// A running all-in-one Ironic.
#[derive(Debug)]
pub struct IronicServer {
    /// API port on 127.0.0.1.
    pub port: u16,
    /// State directory (config, sqlite, certs, logs).
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    /// Seconds from spawn to "fake-hardware is listed".
    pub startup: Duration,
}

/// The microversion used for operator calls.
pub const OPERATOR_VERSION: &str = "1.115";

impl IronicServer {
    /// The venv holding `bin/ironic`, if installed.
    pub fn venv() -> Option<PathBuf> {
        let v = std::env::var_os("IRONIC_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/opt/ironic-venv"));
        v.join("bin/ironic").is_file().then_some(v)
    }

    /// The venv, or `None` with a SKIP line on stderr. With `IRONIC_E2E_REQUIRED` set (CI), a
    /// missing venv is a failure instead of a skip.
    pub fn venv_or_skip(test: &str) -> Option<PathBuf> {
        let v = Self::venv();
        if v.is_none() {
            let msg = format!(
                "{test}: no Ironic venv at $IRONIC_VENV or /opt/ironic-venv \
                 (python3 -m venv /opt/ironic-venv && /opt/ironic-venv/bin/pip install ironic==39.0.0)"
            );
            assert!(std::env::var_os("IRONIC_E2E_REQUIRED").is_none(), "{msg}");
            eprintln!("SKIP {msg}");
        }
        v
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn config(&self, opts: &IronicOptions, http_port: u16) -> String {
        let st = self.dir.path().display();
        let port = self.port;
        format!(
            "[DEFAULT]
auth_strategy = noauth
rpc_transport = none
debug = true
enabled_hardware_types = fake-hardware
enabled_boot_interfaces = fake,pxe
enabled_deploy_interfaces = direct,fake
enabled_power_interfaces = fake
enabled_management_interfaces = fake
enabled_inspect_interfaces = agent,no-inspect
enabled_network_interfaces = noop
enabled_rescue_interfaces = agent,no-rescue
enabled_raid_interfaces = agent,no-raid
enabled_vendor_interfaces = fake,no-vendor
enabled_console_interfaces = fake,no-console
default_deploy_interface = direct
[api]
host_ip = 127.0.0.1
port = {port}
ramdisk_heartbeat_timeout = {hb}
[database]
connection = sqlite:///{st}/ironic.sqlite
[agent]
require_tls = {tls}
certificates_path = {st}/certs
post_deploy_get_power_state_retries = 1
post_deploy_get_power_state_retry_interval = 1
deploy_logs_local_path = {st}/deploy-logs
[deploy]
http_url = http://127.0.0.1:{http_port}
http_root = {st}/http
erase_devices_priority = 0
[conductor]
check_provision_state_interval = 5
[inspector]
hooks = $default_hooks,memory,cpus,root-device,boot-mode
require_managed_boot = False
[service_catalog]
auth_type = none
endpoint_override = http://127.0.0.1:{port}
[dhcp]
dhcp_provider = none
[pxe]
tftp_root = {st}/tftp
images_path = {st}/images
instance_master_path = {st}/master
",
            hb = opts.heartbeat_timeout,
            tls = if opts.require_tls { "True" } else { "False" },
        )
    }

    /// Create the schema and start Ironic; returns once the conductor has registered
    /// `fake-hardware` (at most 120 s).
    pub fn start(opts: &IronicOptions) -> Result<Self, String> {
        Self::start_tuned(opts, "")
    }

    /// [`IronicServer::start`] with `extra` INI text appended to the configuration (oslo.config
    /// merges a repeated section, so `"[conductor]\ndeploy_callback_timeout = 60\n"` works).
    pub fn start_tuned(opts: &IronicOptions, extra: &str) -> Result<Self, String> {
        let http_port = free_port();
        Self::start_with(|me| format!("{}{extra}", me.config(opts, http_port)), "fake-hardware")
    }

    /// Start Ironic with the configuration `config` returns (given the server, for its state
    /// directory and API port); returns once the conductor has registered `ready_driver`
    /// (at most 120 s). The VM lab uses this for its redfish + iPXE configuration. The state
    /// directory has `certs`, `http`, `tftp`, `images` and `master` made beforehand.
    pub fn start_with(
        config: impl FnOnce(&Self) -> String,
        ready_driver: &str,
    ) -> Result<Self, String> {
        let venv =
            Self::venv().ok_or("no Ironic venv (set IRONIC_VENV or install /opt/ironic-venv)")?;
        let dir =
            tempfile::Builder::new().prefix("ironic-").tempdir().map_err(|e| e.to_string())?;
        for d in ["certs", "http", "tftp", "images", "master"] {
            std::fs::create_dir_all(dir.path().join(d)).map_err(|e| e.to_string())?;
        }
        let mut me = Self { port: free_port(), dir, child: None, startup: Duration::ZERO };
        let conf = me.dir.path().join("ironic.conf");
        std::fs::write(&conf, config(&me)).map_err(|e| e.to_string())?;
        let log =
            |name: &str| std::fs::File::create(me.dir.path().join(name)).map_err(|e| e.to_string());
        let st = Command::new(venv.join("bin/ironic-dbsync"))
            .arg("--config-file")
            .arg(&conf)
            .arg("create_schema")
            .stdin(Stdio::null())
            .stdout(log("dbsync.log")?)
            .stderr(log("dbsync.err")?)
            .status()
            .map_err(|e| format!("ironic-dbsync: {e}"))?;
        if !st.success() {
            return Err(format!("ironic-dbsync failed: {st}"));
        }
        let t0 = Instant::now();
        let out = log("ironic.log")?;
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new(venv.join("bin/ironic"))
                .arg("--config-file")
                .arg(&conf)
                .process_group(0)
                .stdin(Stdio::null())
                .stdout(out.try_clone().map_err(|e| e.to_string())?)
                .stderr(out)
                .spawn()
                .map_err(|e| format!("ironic: {e}"))?
        };
        me.child = Some(child);
        while t0.elapsed() < Duration::from_secs(120) {
            if let Ok((200, body)) = me.get("/v1/drivers")
                && body.contains(ready_driver)
            {
                me.startup = t0.elapsed();
                return Ok(me);
            }
            if let Some(c) = me.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                return Err(format!("ironic exited ({status}):\n{}", me.log_tail(60)));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Err(format!("ironic not ready after 120 s:\n{}", me.log_tail(60)))
    }

    /// The last `n` lines of Ironic's log.
    pub fn log_tail(&self, n: usize) -> String {
        let t = std::fs::read_to_string(self.dir.path().join("ironic.log")).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The last `n` WARNING/ERROR lines of Ironic's log.
    pub fn log_problems(&self, n: usize) -> String {
        let t = std::fs::read_to_string(self.dir.path().join("ironic.log")).unwrap_or_default();
        let lines: Vec<&str> =
            t.lines().filter(|l| l.contains(" ERROR ") || l.contains(" WARNING ")).collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// An operator call with microversion 1.115 and no auth.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let (code, text) = http(
            self.port,
            method,
            path,
            &[("X-OpenStack-Ironic-API-Version", OPERATOR_VERSION), ("Accept", "application/json")],
            body,
        )
        .map_err(|e| format!("{method} {path}: {e}"))?;
        Ok((code, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        http(self.port, "GET", path, &[("X-OpenStack-Ironic-API-Version", OPERATOR_VERSION)], None)
    }

    /// A call that must answer 2xx.
    pub fn ok(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let (code, v) = self.call(method, path, body)?;
        if (200..300).contains(&code) {
            Ok(v)
        } else {
            Err(format!("{method} {path} → HTTP {code}: {v}"))
        }
    }

    /// Create a node (fields merged over fake-hardware defaults) and a port with `mac`.
    pub fn create_node(&self, fields: Value, mac: &str) -> Result<String, String> {
        let mut node = json!({
            "driver": "fake-hardware",
            "deploy_interface": "direct",
            "inspect_interface": "agent",
            "network_interface": "noop",
            "driver_info": {"deploy_kernel": "http://127.0.0.1:1/k", "deploy_ramdisk": "http://127.0.0.1:1/r"},
        });
        if let (Some(n), Some(f)) = (node.as_object_mut(), fields.as_object()) {
            for (k, v) in f {
                n.insert(k.clone(), v.clone());
            }
        }
        let created = self.ok("POST", "/v1/nodes", Some(&node))?;
        let uuid = created["uuid"].as_str().ok_or("node has no uuid")?.to_string();
        self.ok("POST", "/v1/ports", Some(&json!({"node_uuid": uuid, "address": mac})))?;
        Ok(uuid)
    }

    /// The node's current agent token, read from Ironic's database (the API always masks it).
    /// Used by tests that prove the token never reaches a log line.
    pub fn agent_token(&self, uuid: &str) -> Option<String> {
        let venv = Self::venv()?;
        let db = self.dir.path().join("ironic.sqlite");
        let script = "import json,sqlite3,sys\n\
            r=sqlite3.connect(sys.argv[1]).execute('select driver_internal_info from nodes where uuid=?',(sys.argv[2],)).fetchone()\n\
            print((json.loads(r[0] or '{}') if r else {}).get('agent_secret_token') or '')";
        let out = Command::new(venv.join("bin/python"))
            .arg("-c")
            .arg(script)
            .arg(&db)
            .arg(uuid)
            .output()
            .ok()?;
        let t = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (!t.is_empty()).then_some(t)
    }

    /// JSON-patch a node.
    pub fn patch_node(&self, uuid: &str, ops: Value) -> Result<Value, String> {
        self.ok("PATCH", &format!("/v1/nodes/{uuid}"), Some(&ops))
    }

    /// Request a provision-state change.
    pub fn provision(&self, uuid: &str, body: Value) -> Result<(), String> {
        self.ok("PUT", &format!("/v1/nodes/{uuid}/states/provision"), Some(&body)).map(|_| ())
    }

    /// Request the provision-state change `target` (`manage`, `provide`, `inspect`, …) and wait
    /// until the node's provision state is one of `states` ([`Self::wait_state`]).
    pub fn transition(
        &self,
        uuid: &str,
        target: &str,
        states: &[&str],
        timeout: Duration,
    ) -> Result<Value, String> {
        self.provision(uuid, json!({ "target": target }))?;
        self.wait_state(uuid, states, timeout)
    }

    /// The node.
    pub fn node(&self, uuid: &str) -> Result<Value, String> {
        self.ok("GET", &format!("/v1/nodes/{uuid}"), None)
    }

    /// Wait until the node's provision state is one of `states` (a non-wait state only once no
    /// target is pending).
    pub fn wait_state(
        &self,
        uuid: &str,
        states: &[&str],
        timeout: Duration,
    ) -> Result<Value, String> {
        let t0 = Instant::now();
        let mut last = Value::Null;
        while t0.elapsed() < timeout {
            let n = self.node(uuid)?;
            let st = n["provision_state"].as_str().unwrap_or("");
            let settled = st.contains("wait")
                || st.ends_with("failed")
                || n["target_provision_state"].is_null();
            if states.contains(&st) && settled {
                return Ok(n);
            }
            if st.ends_with("failed") && !states.contains(&st) {
                last = n;
                break;
            }
            last = n;
            std::thread::sleep(Duration::from_millis(250));
        }
        Err(format!(
            "node {uuid} not in {states:?} (waited up to {timeout:?}): state {} target {} last_error {}\n{}",
            last["provision_state"],
            last["target_provision_state"],
            last["last_error"],
            self.log_problems(20)
        ))
    }

    /// Stop: SIGTERM to the process group, wait up to 15 s, then SIGKILL the group.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let pgid = child.id() as i32;
        let group = nix::unistd::Pid::from_raw(-pgid);
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGTERM);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Workers left behind in the group (started by our child) are ended too.
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait();
    }
}

impl Drop for IronicServer {
    fn drop(&mut self) {
        self.stop();
    }
}
