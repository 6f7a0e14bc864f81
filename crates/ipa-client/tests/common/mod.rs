//! Shared test plumbing: a real RabbitMQ node per test binary (or per fault test), and a
//! `WireClient` over any envelope client.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ipa_client::{AgentClient, ClientError, EnvelopeClient, RunOptions};
use ipa_core::command::CommandResult;
use ipa_test_support::{WireClient, WireError};
use serde_json::Value;

const RABBIT: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// A free loopback TCP port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A private RabbitMQ node: own port, own mnesia/log dirs, own epmd, stopped by PID.
#[derive(Debug)]
pub struct Rabbit {
    pub port: u16,
    dir: PathBuf,
    epmd_port: u16,
    dist_port: u16,
    wrapper: Option<Child>,
    epmd: Option<Child>,
    watcher: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
    tls: Option<TlsFiles>,
    /// Plain AMQP listener next to the TLS one (readiness probe); equals `port` without TLS.
    tcp_port: u16,
    user: (String, String),
}

/// Server TLS material for an amqps node.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Whether RabbitMQ tests must run. Missing rabbitmq-server fails loudly unless
/// `IPA_SKIP_RABBITMQ=1`.
pub fn rabbit_available() -> bool {
    if Path::new(RABBIT).exists() {
        return true;
    }
    if std::env::var("IPA_SKIP_RABBITMQ").as_deref() == Ok("1") {
        eprintln!("SKIPPED: rabbitmq-server is not installed and IPA_SKIP_RABBITMQ=1");
        return false;
    }
    panic!(
        "rabbitmq-server is not installed ({RABBIT} missing). Install it with \
         `apt-get install --no-install-recommends rabbitmq-server`, or set IPA_SKIP_RABBITMQ=1 \
         to skip the AMQP tests explicitly."
    );
}

impl Rabbit {
    /// Start a node on a free port (plain AMQP, or amqps with `tls`), user `guest`.
    pub fn start(tls: Option<TlsFiles>) -> Rabbit {
        Self::start_with(tls, None)
    }

    /// Like [`Rabbit::start`], with `user` (name, password) as the only account (RabbitMQ's
    /// `default_user`, full rights on `/`) instead of `guest`.
    pub fn start_with(tls: Option<TlsFiles>, user: Option<(&str, &str)>) -> Rabbit {
        let tmp = tempfile::Builder::new().prefix("ipa-rmq-").tempdir().unwrap();
        let port = free_port();
        let tcp_port = if tls.is_some() { free_port() } else { port };
        let user = user.map_or(("guest".into(), "guest".into()), |(u, p)| (u.into(), p.into()));
        let mut r = Rabbit {
            port,
            tcp_port,
            user,
            dir: tmp.path().to_path_buf(),
            epmd_port: free_port(),
            dist_port: free_port(),
            wrapper: None,
            epmd: None,
            watcher: None,
            _tmp: Some(tmp),
            tls,
        };
        for d in ["mnesia", "log", "home"] {
            std::fs::create_dir_all(r.dir.join(d)).unwrap();
        }
        let mut conf = format!("listeners.tcp.1 = 127.0.0.1:{}\nlog.console = false\n", r.tcp_port);
        if let Some(t) = &r.tls {
            // TLS 1.2 only: Erlang 25's TLS 1.3 server is the less-trodden path with rustls.
            conf.push_str(&format!(
                "listeners.ssl.1 = 127.0.0.1:{}\n\
                 ssl_options.cacertfile = {}\nssl_options.certfile = {}\nssl_options.keyfile = {}\n\
                 ssl_options.verify = verify_none\nssl_options.fail_if_no_peer_cert = false\n\
                 ssl_options.versions.1 = tlsv1.2\n",
                r.port,
                t.ca.display(),
                t.cert.display(),
                t.key.display()
            ));
        }
        if r.user.0 != "guest" {
            conf.push_str(&format!(
                "default_user = {}\ndefault_pass = {}\n\
                 default_permissions.configure = .*\ndefault_permissions.read = .*\n\
                 default_permissions.write = .*\n",
                r.user.0, r.user.1
            ));
        }
        std::fs::write(r.dir.join("rabbitmq.conf"), conf).unwrap();
        std::fs::write(r.dir.join("enabled_plugins"), "[].\n").unwrap();
        r.boot();
        r
    }

    fn env(&self, c: &mut Command) {
        let d = &self.dir;
        c.env("HOME", d.join("home"))
            .env("RABBITMQ_NODENAME", format!("ipa-test-{}@localhost", self.port))
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_CONF_ENV_FILE", "/dev/null")
            .env("RABBITMQ_PID_FILE", d.join("beam.pid"))
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            );
    }

    fn boot(&mut self) {
        let epmd = Command::new("epmd")
            .args(["-address", "127.0.0.1", "-port", &self.epmd_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start epmd");
        std::thread::sleep(Duration::from_millis(200));
        let log = std::fs::File::create(self.dir.join("log/stdout.log")).unwrap();
        let mut c = Command::new(RABBIT);
        self.env(&mut c);
        let wrapper =
            c.stdout(log.try_clone().unwrap()).stderr(log).spawn().expect("start rabbitmq-server");
        // If this test process dies without running Drop, stop the node anyway.
        let watcher = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {me} 2>/dev/null; do sleep 0.5; done; kill -TERM {w} {e} 2>/dev/null",
                me = std::process::id(),
                w = wrapper.id(),
                e = epmd.id()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start watcher");
        self.wrapper = Some(wrapper);
        self.epmd = Some(epmd);
        self.watcher = Some(watcher);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(120) {
            // Listeners (plain and TLS) open together once the node has booted, so the plain
            // one answering the protocol header means the TLS one is up too.
            if amqp_ready(self.tcp_port) {
                eprintln!("rabbitmq ready on {} after {:?}", self.port, t0.elapsed());
                return;
            }
            if let Some(w) = self.wrapper.as_mut()
                && let Ok(Some(st)) = w.try_wait()
            {
                panic!("rabbitmq-server exited early ({st}); log: {}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("rabbitmq did not accept AMQP within 120 s; log: {}", self.log_tail());
    }

    fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(self.dir.join("log/stdout.log")).unwrap_or_default();
        s.chars().rev().take(2000).collect::<String>().chars().rev().collect()
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f` (`amqps://…` and the node's user with TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "amqps" } else { "amqp" };
        let (u, p) = &self.user;
        format!("{scheme}://{u}:{p}@127.0.0.1:{}/%2f", self.port)
    }

    /// The URL without credentials (they come from the agent's config instead).
    pub fn bare_url(&self) -> String {
        let scheme = if self.tls.is_some() { "amqps" } else { "amqp" };
        format!("{scheme}://127.0.0.1:{}/%2f", self.port)
    }

    /// Stop the node (TERM to the wrapper, which stops beam; bounded wait), then our epmd.
    pub fn stop(&mut self) {
        if let Some(mut w) = self.wrapper.take() {
            let _ = Command::new("kill").args(["-TERM", &w.id().to_string()]).status();
            let t0 = Instant::now();
            loop {
                if let Ok(Some(_)) = w.try_wait() {
                    break;
                }
                if t0.elapsed() > Duration::from_secs(60) {
                    if let Ok(pid) = std::fs::read_to_string(self.dir.join("beam.pid")) {
                        let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
                    }
                    let _ = w.kill();
                    let _ = w.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if let Some(mut e) = self.epmd.take() {
            let _ = e.kill();
            let _ = e.wait();
        }
        if let Some(mut w) = self.watcher.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }

    /// Stop and start again on the same port with the same data (a broker restart).
    pub fn restart(&mut self) {
        self.stop();
        self.boot();
    }
}

impl Drop for Rabbit {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether the port answers the AMQP protocol header with Connection.Start.
pub fn amqp_ready(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        Duration::from_secs(2),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"AMQP\x00\x00\x09\x01").is_err() {
        return false;
    }
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(1) if b[0] == 1)
}

/// `WireClient` over an envelope client (AMQP or ZeroMQ); `.1` keeps the controller alive.
pub struct Wire(pub EnvelopeClient, pub Option<std::sync::Arc<dyn std::any::Any + Send + Sync>>);

pub fn wire_err(e: ClientError) -> WireError {
    match e {
        ClientError::Agent(b) => WireError { code: b.code, message: b.faultstring() },
        other => panic!("transport failure instead of an agent error: {other}"),
    }
}

#[async_trait]
impl WireClient for Wire {
    async fn run(
        &self,
        name: &str,
        params: Value,
        wait: bool,
        key: Option<&str>,
    ) -> Result<CommandResult, WireError> {
        let params = params.as_object().cloned().unwrap_or_default();
        let opts = RunOptions { wait, idempotency_key: key.map(str::to_string) };
        self.0.run(name, params, opts).await.map_err(wire_err)
    }
    async fn get(&self, id: &str) -> Result<CommandResult, WireError> {
        self.0.get(id).await.map_err(wire_err)
    }
    async fn list(&self) -> Result<Vec<CommandResult>, WireError> {
        self.0.list().await.map_err(wire_err)
    }
    fn with_token(&self, token: Option<&str>) -> Box<dyn WireClient> {
        Box::new(Wire(self.0.with_token(token), self.1.clone()))
    }
}

/// A fresh CA and a server certificate it signed for `127.0.0.1` (IP SAN) and `localhost`,
/// written as PEM under `dir`.
pub fn test_pki(dir: &Path) -> TlsFiles {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "ipa test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let mut srv = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    srv.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    let srv_key = KeyPair::generate().unwrap();
    let srv_cert = srv.signed_by(&srv_key, &issuer).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let files = TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    std::fs::write(&files.ca, ca_cert.pem()).unwrap();
    std::fs::write(&files.cert, srv_cert.pem()).unwrap();
    std::fs::write(&files.key, srv_key.serialize_pem()).unwrap();
    files
}

/// `progress.steps` (async): publishes `n` (default 3) `write` progress records 50 ms apart,
/// then succeeds with `{"steps": n}`, or fails if `fail` is true.
#[derive(Debug)]
pub struct ProgressExtension;

static PROGRESS_COMMANDS: &[ipa_core::command::CommandSpec] =
    &[ipa_core::command::CommandSpec::asynchronous(
        "steps",
        &[ipa_core::command::Param::opt("n"), ipa_core::command::Param::opt("fail")],
    )];

#[async_trait]
impl ipa_core::extension::Extension for ProgressExtension {
    fn name(&self) -> &'static str {
        "progress"
    }
    fn class_name(&self) -> &'static str {
        "ProgressExtension"
    }
    fn commands(&self) -> &'static [ipa_core::command::CommandSpec] {
        PROGRESS_COMMANDS
    }
    async fn execute(
        &self,
        _command: &str,
        params: ipa_core::command::Params,
        ctx: ipa_core::extension::CommandContext,
    ) -> Result<Value, ipa_core::error::AgentError> {
        let n = params.get("n").and_then(Value::as_u64).unwrap_or(3);
        for done in 1..=n {
            tokio::time::sleep(Duration::from_millis(50)).await;
            ctx.progress(ipa_core::events::Progress {
                phase: "write".into(),
                done,
                total: Some(n),
                ..Default::default()
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if params.get("fail").and_then(Value::as_bool).unwrap_or(false) {
            return Err(ipa_core::error::AgentError::execution("failed after the last step"));
        }
        Ok(serde_json::json!({"steps": n}))
    }
}

/// A harness whose dispatcher also has `progress.*`.
pub fn progress_harness() -> ipa_test_support::Harness {
    ipa_test_support::Harness::with_extensions(vec![std::sync::Arc::new(ProgressExtension)])
}
