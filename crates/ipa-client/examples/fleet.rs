//! Fleet benchmark: N sandboxed agents on one RabbitMQ (AMQP) or dialing one controller ROUTER
//! (ZeroMQ with CURVE), driven through `ipa-client`. See `docs/fleet-benchmark.md` and
//! `scripts/bench-fleet.sh`.
//!
//! `fleet bench` starts (for AMQP) a private RabbitMQ node on free loopback ports (the helper of
//! this crate's tests; stopped by PID), connects the controller, then spawns `--procs` child
//! processes of itself (`fleet agents`), each serving its share of the N agents: every agent is
//! its own `ipa_test_support::Harness` (own `CommandDispatcher`, own sandbox dir) plus its own
//! transport instance (AMQP: own connection, channel and queue; ZeroMQ: own libzmq context and
//! CURVE `DEALER`). The controller then sends `conformance.echo` (a sync no-op that goes through
//! token check, validation and result recording) and measures round trips and memory.
//!
//! Children exit when their stdin closes (the parent dying closes it), and the parent stops them
//! by PID (`Child::kill`) if they do not; the broker has a PID watcher as in the tests.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use futures_util::StreamExt;
use ipa_client::amqp::AmqpController;
use ipa_client::zmq::{ControllerCurve, ZmqController};
use ipa_client::{AgentClient, EnvelopeClient, RunOptions};
use ipa_core::command::CommandStatus;
use ipa_test_support::{Harness, TEST_TOKEN};
use ipa_transport_amqp::AmqpConfig;
use ipa_transport_zmq::{ZmqConfig, decode_key, generate_keypair};

#[derive(Parser, Debug)]
#[command(about = "Fleet benchmark over AMQP / ZeroMQ")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Wire {
    Amqp,
    Zmq,
}

impl Wire {
    fn name(self) -> &'static str {
        match self {
            Wire::Amqp => "amqp",
            Wire::Zmq => "zmq",
        }
    }
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run one benchmark (controller in this process, agents in child processes).
    Bench {
        #[arg(long, value_enum)]
        transport: Wire,
        /// Number of agents.
        #[arg(long, default_value_t = 100)]
        agents: usize,
        /// Measured rounds (each round = one command to every agent).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Commands in flight at once during the rounds.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Agent processes the agents are spread over.
        #[arg(long, default_value_t = 1)]
        procs: usize,
        /// Commands sent one at a time (idle-fleet latency), round-robin over the agents.
        #[arg(long, default_value_t = 200)]
        serial: usize,
        /// AMQP: query appended to the agents' URL, e.g. `frame_max=16384` (lapin keeps two
        /// buffers of 32 frames per connection, so the negotiated frame size sets agent memory).
        #[arg(long)]
        amqp_query: Option<String>,
        /// Append the result as one JSON line to this file.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// (internal) Serve agents until stdin closes.
    Agents {
        #[arg(long, value_enum)]
        transport: Wire,
        #[arg(long)]
        count: usize,
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        amqp_url: Option<String>,
        #[arg(long)]
        zmq_endpoint: Option<String>,
        /// The controller's CURVE public key (Z85). A Z85 key may begin with `-`: pass it as
        /// `--zmq-server-key=KEY` (what `child_args` does); a separate value is accepted too.
        #[arg(long, allow_hyphen_values = true)]
        zmq_server_key: Option<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    match cli.cmd {
        Cmd::Agents { transport, count, prefix, amqp_url, zmq_endpoint, zmq_server_key } => {
            rt.block_on(agents(transport, count, &prefix, amqp_url, zmq_endpoint, zmq_server_key))
        }
        Cmd::Bench { transport, agents, rounds, concurrency, procs, serial, amqp_query, out } => {
            let r = rt.block_on(bench(
                transport,
                agents,
                rounds,
                concurrency,
                procs,
                serial,
                amqp_query,
            ))?;
            let line = serde_json::to_string(&r)?;
            println!("{line}");
            if let Some(path) = out {
                let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
                writeln!(f, "{line}")?;
            }
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Agent side

async fn agents(
    wire: Wire,
    count: usize,
    prefix: &str,
    amqp_url: Option<String>,
    zmq_endpoint: Option<String>,
    zmq_server_key: Option<String>,
) -> Result<()> {
    let t0 = Instant::now();
    let ids: Vec<String> = (0..count).map(|i| format!("{prefix}{i:05}")).collect();
    let started = futures_util::stream::iter(ids.into_iter().map(|id| {
        let amqp_url = amqp_url.clone();
        let zmq_endpoint = zmq_endpoint.clone();
        let zmq_server_key = zmq_server_key.clone();
        async move {
            let h = Harness::new();
            h.identity.send_replace(id.clone());
            let info = match wire {
                Wire::Amqp => {
                    let cfg = AmqpConfig::new(amqp_url.as_deref().unwrap_or_default());
                    h.serve(&cfg, None).await
                }
                Wire::Zmq => {
                    let mut cfg = ZmqConfig::dial(zmq_endpoint.as_deref().unwrap_or_default());
                    let (public, secret) = generate_keypair().expect("CURVE key pair");
                    cfg.curve_server_key = zmq_server_key.clone();
                    cfg.curve_public_key = Some(public);
                    cfg.curve_secret_key = Some(secret.into());
                    h.serve(&cfg, None).await
                }
            };
            let up = !info.endpoint.contains("connecting");
            (h, up)
        }
    }))
    .buffer_unordered(32)
    .collect::<Vec<_>>()
    .await;
    let up = started.iter().filter(|(_, u)| *u).count();
    println!("FLEET-READY {up} {} {:.3}", started.len() - up, t0.elapsed().as_secs_f64());
    std::io::stdout().flush()?;
    // Serve until the parent closes our stdin (or dies).
    tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        let stdin = std::io::stdin();
        let mut lock = stdin.lock();
        while lock.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
            sink.clear();
        }
    })
    .await?;
    for (h, _) in &started {
        h.shutdown.cancel();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

/// The agent child processes; closing stdin asks them to stop, then they are killed by PID.
struct Children(Vec<(Child, Option<ChildStdin>)>);

impl Children {
    fn pids(&self) -> Vec<u32> {
        self.0.iter().map(|(c, _)| c.id()).collect()
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, stdin) in &mut self.0 {
            stdin.take();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for (c, _) in &mut self.0 {
            loop {
                match c.try_wait() {
                    Ok(Some(_)) => break,
                    _ if Instant::now() > deadline => {
                        eprintln!("fleet: agent process {} did not exit; killing it", c.id());
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                    _ => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Measurements

/// `VmRSS` (and `Threads`) of a process, from /proc.
fn proc_status(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("Threads:"))
}

/// CPU time (user + system) of the processes, in seconds.
fn cpu_secs(pids: &[u32]) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    pids.iter()
        .map(|p| {
            let s = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let tail = s.rsplit_once(')').map(|(_, t)| t).unwrap_or_default();
            let f: Vec<&str> = tail.split_whitespace().collect();
            // After `comm`: state(0) ppid(1) … utime(11) stime(12).
            let v = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
            (v(11) + v(12)) / tick
        })
        .sum()
}

fn rss_mib(pids: &[u32]) -> f64 {
    pids.iter().map(|p| proc_status(*p).0).sum::<u64>() as f64 / 1024.0
}

fn threads(pids: &[u32]) -> u64 {
    pids.iter().map(|p| proc_status(*p).1).sum()
}

/// The broker's `beam.smp`: the descendant of this process with that name (read-only lookup; the
/// node itself is stopped by the test helper, by PID).
fn beam_pid() -> Option<u32> {
    let me = std::process::id();
    let mut procs = Vec::new();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // `pid (comm) state ppid ...`; comm may contain spaces, so split at the last ')'.
        let Some((head, tail)) = stat.rsplit_once(')') else { continue };
        let comm = head.split_once('(').map(|(_, c)| c.to_string()).unwrap_or_default();
        let ppid = tail.split_whitespace().nth(1).and_then(|v| v.parse::<u32>().ok());
        procs.push((pid, ppid.unwrap_or(0), comm));
    }
    let parent = |p: u32| procs.iter().find(|(q, _, _)| *q == p).map(|(_, pp, _)| *pp);
    procs.iter().filter(|(_, _, c)| c.starts_with("beam")).map(|(p, _, _)| *p).find(|&p| {
        let mut cur = p;
        for _ in 0..16 {
            match parent(cur) {
                Some(pp) if pp == me => return true,
                Some(pp) if pp > 1 => cur = pp,
                _ => return false,
            }
        }
        false
    })
}

/// Idle window for the idle-CPU measurement.
const IDLE: Duration = Duration::from_secs(10);

#[derive(Debug, serde::Serialize)]
struct Stats {
    n: usize,
    errors: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    secs: f64,
    per_sec: f64,
}

fn stats(mut v: Vec<Duration>, errors: usize, secs: f64) -> Stats {
    v.sort();
    let q = |q: f64| {
        if v.is_empty() {
            return f64::NAN;
        }
        let i = ((v.len() - 1) as f64 * q).round() as usize;
        v[i].as_secs_f64() * 1000.0
    };
    Stats {
        n: v.len(),
        errors,
        p50_ms: q(0.50),
        p99_ms: q(0.99),
        max_ms: q(1.0),
        secs,
        per_sec: v.len() as f64 / secs,
    }
}

/// Send `conformance.echo` to each client in `order`, `concurrency` in flight.
async fn fire(clients: &[EnvelopeClient], order: &[usize], concurrency: usize) -> Stats {
    let t0 = Instant::now();
    let results = futures_util::stream::iter(order.iter().map(|&i| {
        let c = clients[i].clone();
        async move {
            let mut p = ipa_core::command::Params::new();
            p.insert("value".into(), serde_json::json!(i));
            let t = Instant::now();
            let r = c.run("conformance.echo", p, RunOptions::default()).await;
            let dt = t.elapsed();
            match r {
                Ok(res) if res.command_status == CommandStatus::Succeeded => Ok(dt),
                Ok(res) => Err(format!("status {:?}", res.command_status)),
                Err(e) => Err(e.to_string()),
            }
        }
    }))
    .buffer_unordered(concurrency.max(1))
    .collect::<Vec<_>>()
    .await;
    let secs = t0.elapsed().as_secs_f64();
    let mut ok = Vec::with_capacity(results.len());
    let mut errors = 0;
    for r in results {
        match r {
            Ok(d) => ok.push(d),
            Err(e) => {
                if errors < 5 {
                    eprintln!("fleet: command failed: {e}");
                }
                errors += 1;
            }
        }
    }
    stats(ok, errors, secs)
}

#[derive(Debug, serde::Serialize)]
struct Report {
    transport: &'static str,
    amqp_query: Option<String>,
    agents: usize,
    agent_procs: usize,
    agents_up: usize,
    agents_seen: usize,
    startup_secs: f64,
    rounds: usize,
    concurrency: usize,
    serial: Stats,
    load: Stats,
    broker_rss_mib_empty: Option<f64>,
    broker_rss_mib_connected: Option<f64>,
    broker_rss_mib_after: Option<f64>,
    agents_rss_mib_connected: f64,
    agents_rss_mib_after: f64,
    agents_threads: u64,
    /// CPU used by the idle fleet (agent processes), % of one core, over `IDLE_SECS`.
    agents_idle_cpu_pct: f64,
    /// CPU used by the idle broker, % of one core.
    broker_idle_cpu_pct: Option<f64>,
    controller_rss_mib_after: f64,
    loadavg: String,
}

// ---------------------------------------------------------------------------------------------
// Controller side

enum Controller {
    Amqp(Arc<AmqpController>),
    Zmq(ZmqController),
}

impl Controller {
    fn agent(&self, id: &str) -> EnvelopeClient {
        match self {
            Controller::Amqp(c) => c.agent(id, Some(TEST_TOKEN)),
            Controller::Zmq(c) => c.agent(id, Some(TEST_TOKEN)),
        }
    }
    fn seen(&self) -> usize {
        let age = Duration::from_secs(3600);
        match self {
            Controller::Amqp(c) => c.agents(age).len(),
            Controller::Zmq(c) => c.agents(age).len(),
        }
    }
}

async fn bench(
    wire: Wire,
    n: usize,
    rounds: usize,
    concurrency: usize,
    procs: usize,
    serial: usize,
    amqp_query: Option<String>,
) -> Result<Report> {
    let procs = procs.clamp(1, n.max(1));
    // Broker (AMQP only): private node, stopped by PID when `_rabbit` drops (also on error).
    let mut _rabbit = None;
    let mut beam = None;
    let mut extra: Vec<String> = Vec::new();
    let ctl = match wire {
        Wire::Amqp => {
            if !common::rabbit_available() {
                bail!("rabbitmq-server is not installed");
            }
            let r = common::Rabbit::start(None);
            let url = match &amqp_query {
                Some(q) => format!("{}?{q}", r.url()),
                None => r.url(),
            };
            beam = beam_pid();
            _rabbit = Some(r);
            extra.push(flag("amqp-url", &url));
            Controller::Amqp(
                AmqpController::connect(AmqpConfig::new(url))
                    .await
                    .map_err(|e| anyhow::anyhow!("controller connect: {e}"))?,
            )
        }
        Wire::Zmq => {
            let (public, secret) = generate_keypair()?;
            let curve = ControllerCurve {
                secret: Some(decode_key("server secret", &secret)?),
                allowed_agents: None,
                client: None,
            };
            let c = ZmqController::bind("tcp://127.0.0.1:*", curve)
                .map_err(|e| anyhow::anyhow!("controller bind: {e}"))?;
            extra.extend([flag("zmq-endpoint", c.endpoint()), flag("zmq-server-key", &public)]);
            Controller::Zmq(c)
        }
    };
    let beam_rss = |b: Option<u32>| b.map(|p| proc_status(p).0 as f64 / 1024.0);
    let broker_empty = beam_rss(beam);

    // Agents, spread over `procs` child processes.
    let t0 = Instant::now();
    let exe = std::env::current_exe()?;
    let mut children = Children(Vec::new());
    let (tx, rx) = mpsc::channel::<(usize, usize)>();
    let mut ids = Vec::with_capacity(n);
    for p in 0..procs {
        let count = n / procs + usize::from(p < n % procs);
        let prefix = format!("fleet-{}-p{p}-", wire.name());
        ids.extend((0..count).map(|i| format!("{prefix}{i:05}")));
        let mut child = Command::new(&exe)
            .args(["agents", "--transport", wire.name(), "--count", &count.to_string()])
            .args(["--prefix", &prefix])
            .args(&extra)
            .env("RUST_LOG", std::env::var("FLEET_AGENT_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawn agent process")?;
        let stdout = child.stdout.take().expect("piped stdout");
        let stdin = child.stdin.take();
        children.0.push((child, stdin));
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("FLEET-READY ") {
                    let mut it = rest.split_whitespace().map(|s| s.parse::<usize>().unwrap_or(0));
                    let _ = tx.send((it.next().unwrap_or(0), it.next().unwrap_or(0)));
                } else {
                    eprintln!("[agent p{p}] {line}");
                }
            }
        });
    }
    drop(tx);
    let mut up = 0;
    for _ in 0..procs {
        let (ok, _failed) =
            tokio::task::block_in_place(|| rx.recv_timeout(Duration::from_secs(900)))
                .context("an agent process did not report ready within 900 s")?;
        up += ok;
    }
    // Bounded wait until the controller has heard every agent (agent.online / heartbeat).
    let deadline = Instant::now() + Duration::from_secs(120);
    while ctl.seen() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let startup_secs = t0.elapsed().as_secs_f64();
    let seen = ctl.seen();
    eprintln!("fleet: {} agents up, {seen} seen by the controller after {startup_secs:.1} s", up);
    let pids = children.pids();
    let broker_connected = beam_rss(beam);
    let agents_rss_connected = rss_mib(&pids);
    let agents_threads = threads(&pids);
    // Idle cost: heartbeats, libzmq I/O threads, lapin I/O loops, the broker's timers.
    let beam_v: Vec<u32> = beam.into_iter().collect();
    let (a0, b0) = (cpu_secs(&pids), cpu_secs(&beam_v));
    tokio::time::sleep(IDLE).await;
    let pct = |d: f64| d / IDLE.as_secs_f64() * 100.0;
    let agents_idle_cpu_pct = pct(cpu_secs(&pids) - a0);
    let broker_idle_cpu_pct = beam.map(|_| pct(cpu_secs(&beam_v) - b0));

    let clients: Vec<EnvelopeClient> =
        ids.iter().map(|id| ctl.agent(id).with_timeout(Duration::from_secs(60))).collect();
    let all: Vec<usize> = (0..n).collect();
    // Warm-up round (not measured): first message on every queue / connection.
    let warm = fire(&clients, &all, concurrency).await;
    eprintln!("fleet: warm-up {warm:?}");
    // Idle-fleet latency: one command in flight.
    let order: Vec<usize> = (0..serial).map(|i| i % n.max(1)).collect();
    let serial_stats = fire(&clients, &order, 1).await;
    eprintln!("fleet: serial {serial_stats:?}");
    // Load: `rounds` x every agent, `concurrency` in flight.
    let order: Vec<usize> = (0..rounds).flat_map(|_| 0..n).collect();
    let load = fire(&clients, &order, concurrency).await;
    eprintln!("fleet: load {load:?}");

    let report = Report {
        transport: wire.name(),
        amqp_query,
        agents: n,
        agent_procs: procs,
        agents_up: up,
        agents_seen: seen,
        startup_secs,
        rounds,
        concurrency,
        serial: serial_stats,
        load,
        broker_rss_mib_empty: broker_empty,
        broker_rss_mib_connected: broker_connected,
        broker_rss_mib_after: beam_rss(beam),
        agents_rss_mib_connected: agents_rss_connected,
        agents_rss_mib_after: rss_mib(&pids),
        agents_threads,
        agents_idle_cpu_pct,
        broker_idle_cpu_pct,
        controller_rss_mib_after: proc_status(std::process::id()).0 as f64 / 1024.0,
        loadavg: std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_string(),
    };
    drop(clients);
    drop(children);
    drop(ctl);
    if let Some(mut r) = _rabbit.take() {
        r.stop();
    }
    Ok(report)
}

/// One `--name=value` argument for a child process. Always the `=` form: values such as Z85
/// keys, tokens and URLs may begin with `-`, which a separate argument would turn into a flag.
fn flag(name: &str, value: &str) -> String {
    format!("--{name}={value}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zmq_server_key_beginning_with_a_dash_reaches_the_agents_child() {
        let key = "-8Y9o!p[0r%v@K3zQe2c.F^6mL+aXb1/N7sTjWh";
        for argv in [
            vec![flag("zmq-server-key", key)],
            vec!["--zmq-server-key".to_string(), key.to_string()],
        ] {
            let mut full =
                ["fleet", "agents", "--transport", "zmq", "--count", "1", "--prefix", "p"]
                    .map(String::from)
                    .to_vec();
            full.push(flag("zmq-endpoint", "tcp://127.0.0.1:1"));
            full.extend(argv);
            let cli = Cli::try_parse_from(&full).expect("parses");
            match cli.cmd {
                Cmd::Agents { zmq_server_key, .. } => {
                    assert_eq!(zmq_server_key.as_deref(), Some(key))
                }
                other => panic!("wrong subcommand {other:?}"),
            }
        }
    }
}
