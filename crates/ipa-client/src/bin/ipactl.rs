//! `ipactl`: drive agents over REST, AMQP or ZeroMQ.
//!
//! ```text
//! ipactl --rest http://10.0.0.5:9999 --token T status
//! ipactl --amqp amqp://guest:guest@broker:5672/%2f --agent <node-uuid> --token T run standby.sync
//! ipactl --zmq-bind tcp://0.0.0.0:5555 --agent <id> --token T run deploy.execute_deploy_step --params @step.json --watch
//! ipactl --amqp amqp://broker/%2f agents --json
//! ipactl --rest http://10.0.0.5:9999 metrics --json
//! ipactl verify-erase report.json --inventory inventory.json --disk /dev/vda=vda.img
//! ```
//!
//! Exit status: 0 on success; 1 on an error, when `run` ends with a command that did not
//! succeed (FAILED; the result is printed first), or when `verify-erase` finds a problem.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::{Parser, Subcommand};
use ipa_client::amqp::AmqpController;
use ipa_client::rest::RestClient;
use ipa_client::zmq::{ControllerCurve, ZmqController};
use ipa_client::{AgentClient, RunOptions};
use ipa_core::AgentEvent;
use ipa_core::command::Params;
use ipa_transport_amqp::AmqpConfig;

#[derive(Parser, Debug)]
#[command(name = "ipactl", about = "Drive deploy agents over REST, AMQP or ZeroMQ")]
struct Cli {
    /// Agent REST base URL (`http://host:9999`).
    #[arg(long, env = "IPACTL_REST", group = "wire")]
    rest: Option<String>,
    /// CA bundle (PEM) for an `https://` agent (auto-TLS); replaces the system trust store.
    #[arg(long, env = "IPACTL_REST_CA")]
    rest_ca: Option<std::path::PathBuf>,
    /// Do not verify an `https://` agent's certificate.
    #[arg(long, env = "IPACTL_REST_INSECURE")]
    rest_insecure: bool,
    /// Broker URL (`amqp://user:pass@host:5672/%2f` or `amqps://…`).
    #[arg(long, env = "IPACTL_AMQP", group = "wire")]
    amqp: Option<String>,
    /// CA bundle for `amqps`.
    #[arg(long, env = "IPACTL_AMQP_CA")]
    amqp_ca: Option<std::path::PathBuf>,
    /// Bind a controller ROUTER here and wait for agents to dial in (`tcp://0.0.0.0:5555`).
    #[arg(long, env = "IPACTL_ZMQ_BIND", group = "wire")]
    zmq_bind: Option<String>,
    /// Dial an agent's bound ROUTER (`tcp://agent:5555`).
    #[arg(long, env = "IPACTL_ZMQ_CONNECT", group = "wire")]
    zmq_connect: Option<String>,
    /// Controller CURVE secret key file (bound mode).
    #[arg(long, env = "IPACTL_ZMQ_SECRET_KEY_FILE")]
    zmq_secret_key_file: Option<std::path::PathBuf>,
    /// Agent id (AMQP queue / ZeroMQ routing id).
    #[arg(long, env = "IPACTL_AGENT")]
    agent: Option<String>,
    /// Agent token (it may begin with `-`: Ironic's tokens are URL-safe base64).
    #[arg(long, env = "IPACTL_TOKEN", hide_env_values = true, allow_hyphen_values = true)]
    token: Option<String>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
    /// Seconds to wait for an agent to announce itself / to collect `agents`.
    #[arg(long, default_value_t = 10)]
    wait_secs: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Agent status.
    Status,
    /// Run a command.
    Run {
        /// `<extension>.<command>`.
        name: String,
        /// Parameters: a JSON object, or `@file.json`.
        #[arg(long, default_value = "{}")]
        params: String,
        /// Wait for the final result.
        #[arg(long)]
        wait: bool,
        /// Follow progress until the command finishes.
        #[arg(long)]
        watch: bool,
        /// Idempotency key (may begin with `-`).
        #[arg(long, allow_hyphen_values = true)]
        key: Option<String>,
    },
    /// One result.
    Get {
        /// Result id.
        id: String,
    },
    /// All results.
    List,
    /// Live agents seen on the broker / controller socket.
    Agents,
    /// The agent's Prometheus metrics (`GET /metrics`, no token; REST only, `--rest` may name
    /// a `metrics_listen` address): the scrape text, or with `--json` its parsed families.
    Metrics,
    /// Check a signed erase report (no agent needed): the signature, coverage of the
    /// inventory's disks, every read-back sample's claim, and optionally the disks' bytes now.
    VerifyErase {
        /// The report: the JSON an erase step returned (`erase_report`), a whole command
        /// result holding one, or a file from the log bundle's `erase-reports/`.
        report: std::path::PathBuf,
        /// The node's inventory (`baremetal node inventory save`, or the agent's
        /// `get_hardware_info`): every disk in it must be in the report. Its
        /// `erase_report_key` becomes the trusted key unless `--key` or `--cert` is given.
        #[arg(long)]
        inventory: Option<std::path::PathBuf>,
        /// The trusted key (`ed25519:<base64>`).
        #[arg(long, allow_hyphen_values = true)]
        key: Option<String>,
        /// The agent's heartbeat certificate (Ironic's `<certificates_path>/<node>.crt`):
        /// the trusted key is read from its subject.
        #[arg(long)]
        cert: Option<std::path::PathBuf>,
        /// `DEVICE=FILE`: re-read every sample of DEVICE from FILE (a disk image or the
        /// device) and compare with the report. Repeatable.
        #[arg(long = "disk", value_name = "DEVICE=FILE")]
        disks: Vec<String>,
    },
}

enum Conn {
    Rest(RestClient),
    Amqp(Arc<AmqpController>),
    Zmq(ZmqController),
}

fn parse_params(s: &str) -> anyhow::Result<Params> {
    let text = match s.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        None => s.to_string(),
    };
    let v: serde_json::Value = serde_json::from_str(&text).context("params are not JSON")?;
    v.as_object().cloned().ok_or_else(|| anyhow!("params must be a JSON object"))
}

async fn connect(cli: &Cli) -> anyhow::Result<Conn> {
    if let Some(base) = &cli.rest {
        let tls = ipa_http::TlsPolicy {
            cafile: cli.rest_ca.clone(),
            insecure: cli.rest_insecure,
            ..Default::default()
        };
        return Ok(Conn::Rest(RestClient::with_tls(base, cli.token.as_deref(), tls)?));
    }
    if let Some(url) = &cli.amqp {
        let mut cfg = AmqpConfig::new(url.clone());
        cfg.ca_file = cli.amqp_ca.clone();
        return Ok(Conn::Amqp(AmqpController::connect(cfg).await?));
    }
    let mut curve = ControllerCurve::default();
    if let Some(p) = &cli.zmq_secret_key_file {
        let k = std::fs::read_to_string(p)?;
        curve.secret = Some(ipa_transport_zmq::decode_key("zmq secret key", k.trim())?);
    }
    if let Some(ep) = &cli.zmq_bind {
        return Ok(Conn::Zmq(ZmqController::bind(ep, curve)?));
    }
    if let Some(ep) = &cli.zmq_connect {
        return Ok(Conn::Zmq(ZmqController::dial(ep, curve)?));
    }
    bail!("choose a wire: --rest, --amqp, --zmq-bind or --zmq-connect")
}

async fn client(cli: &Cli, conn: &Conn) -> anyhow::Result<Box<dyn AgentClient>> {
    let token = cli.token.as_deref();
    let need_agent =
        || cli.agent.clone().ok_or_else(|| anyhow!("--agent is required for this wire"));
    Ok(match conn {
        Conn::Rest(r) => Box::new(r.clone()),
        Conn::Amqp(a) => Box::new(a.agent(&need_agent()?, token)),
        Conn::Zmq(z) => {
            let agent = cli.agent.clone().unwrap_or_default();
            if cli.zmq_bind.is_some() {
                let agent = need_agent()?;
                if !z.wait_for_agent(&agent, Duration::from_secs(cli.wait_secs)).await {
                    bail!("agent {agent} did not dial in within {} s", cli.wait_secs);
                }
            }
            Box::new(z.agent(&agent, token))
        }
    })
}

fn bar(done: u64, total: Option<u64>, phase: &str) -> String {
    match total {
        Some(t) if t > 0 => {
            let frac = (done as f64 / t as f64).clamp(0.0, 1.0);
            let n = (frac * 30.0) as usize;
            format!("{phase:>10} [{}{}] {:5.1}%", "#".repeat(n), "-".repeat(30 - n), frac * 100.0)
        }
        _ => format!("{phase:>10} {done}"),
    }
}

/// The report inside `v`: `v` itself, or the first `erase_report` member found below it.
fn find_report(v: &serde_json::Value) -> Option<&serde_json::Value> {
    if v.get("format").and_then(|f| f.as_str()) == Some(ipa_core::attest::REPORT_FORMAT) {
        return Some(v);
    }
    match v {
        serde_json::Value::Object(m) => {
            m.get("erase_report").or_else(|| m.values().find_map(find_report))
        }
        serde_json::Value::Array(a) => a.iter().find_map(find_report),
        _ => None,
    }
}

fn read_json(path: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

fn verify_erase(
    json: bool,
    report: &std::path::Path,
    inventory: Option<&std::path::Path>,
    key: Option<&str>,
    cert: Option<&std::path::Path>,
    disks: &[String],
) -> anyhow::Result<()> {
    use ipa_core::attest::{self, CheckOptions, EraseReport};
    let v = read_json(report)?;
    let found =
        find_report(&v).ok_or_else(|| anyhow!("{} holds no erase report", report.display()))?;
    let report: EraseReport =
        serde_json::from_value(found.clone()).context("the erase report is malformed")?;
    let mut opts = CheckOptions { trusted_key: key.map(str::to_string), ..Default::default() };
    if let Some(c) = cert {
        let pem = std::fs::read_to_string(c).with_context(|| format!("reading {}", c.display()))?;
        let k = attest::key_from_certificate(&pem)
            .ok_or_else(|| anyhow!("{} carries no erase-report key", c.display()))?;
        if opts.trusted_key.as_ref().is_some_and(|t| *t != k) {
            bail!("--key and --cert name different keys");
        }
        opts.trusted_key = Some(k);
    }
    if let Some(p) = inventory {
        let inv = read_json(p)?;
        opts.inventory = Some(
            attest::inventory_disks(&inv)
                .ok_or_else(|| anyhow!("{} has no inventory disks", p.display()))?,
        );
        let inv_key = inv
            .get("inventory")
            .unwrap_or(&inv)
            .get("erase_report_key")
            .and_then(|k| k.as_str())
            .map(str::to_string);
        if opts.trusted_key.is_none() {
            opts.trusted_key = inv_key;
        }
    }
    for d in disks {
        let (dev, file) =
            d.split_once('=').ok_or_else(|| anyhow!("--disk {d}: expected DEVICE=FILE"))?;
        opts.disk_files.insert(dev.to_string(), file.into());
    }
    let findings = attest::check(&report, &opts);
    let ok = findings.iter().all(|f| f.ok);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"ok": ok, "findings": findings}))?
        );
    } else {
        println!(
            "erase report: step {} on node {}, {} devices, {} .. {}",
            report.step,
            report.node_uuid.as_deref().unwrap_or("?"),
            report.devices.len(),
            report.started_at,
            report.finished_at
        );
        if opts.trusted_key.is_none() {
            println!(
                "note: no trusted key given (--key, --cert or --inventory): the signature only proves the report is intact"
            );
        }
        for f in &findings {
            println!("{f}");
        }
    }
    if !ok {
        bail!("the erase report does not verify");
    }
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Cmd::VerifyErase { report, inventory, key, cert, disks } = &cli.cmd {
        return verify_erase(
            cli.json,
            report,
            inventory.as_deref(),
            key.as_deref(),
            cert.as_deref(),
            disks,
        );
    }
    let conn = connect(&cli).await?;
    let print = |v: &dyn erased::Show| v.show(cli.json);
    match &cli.cmd {
        Cmd::Agents => {
            let window = Duration::from_secs(cli.wait_secs);
            tokio::time::sleep(window).await;
            let seen = match &conn {
                Conn::Amqp(a) => a.agents(window * 2),
                Conn::Zmq(z) => z.agents(window * 2),
                Conn::Rest(_) => bail!("`agents` needs a broker wire (--amqp or --zmq-bind)"),
            };
            if cli.json {
                let v: Vec<_> = seen
                    .iter()
                    .map(|s| serde_json::json!({"agent_id": s.agent_id, "last_seen_secs": s.last_seen_secs}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for s in seen {
                    println!("{}\t{:.1}s ago", s.agent_id, s.last_seen_secs);
                }
            }
        }
        Cmd::Metrics => {
            let Conn::Rest(r) = &conn else {
                bail!("`metrics` reads the agent's /metrics endpoint: use --rest");
            };
            let text = r.metrics().await?;
            if cli.json {
                let families = ipa_client::metrics::parse(&text)?;
                println!("{}", serde_json::to_string_pretty(&families)?);
            } else {
                print!("{text}");
            }
        }
        Cmd::VerifyErase { .. } => bail!("verify-erase is handled before connecting"),
        Cmd::Status => print(&client(&cli, &conn).await?.status().await?),
        Cmd::Get { id } => print(&client(&cli, &conn).await?.get(id).await?),
        Cmd::List => print(&client(&cli, &conn).await?.list().await?),
        Cmd::Run { name, params, wait, watch, key } => {
            let c = client(&cli, &conn).await?;
            let params = parse_params(params)?;
            let mut events = if *watch { c.events().ok() } else { None };
            let opts = RunOptions { wait: *wait, idempotency_key: key.clone() };
            let r = c.run(name, params, opts).await?;
            if !*watch || r.command_status.is_done() {
                print(&r);
                return settled(name, &r);
            }
            let id = r.id.clone();
            if let Some(ev) = events.as_mut() {
                loop {
                    let next = tokio::time::timeout(Duration::from_secs(2), ev.next()).await;
                    match next {
                        Ok(Some(e)) => match &e.event {
                            AgentEvent::CommandProgress { id: i, progress, .. } if *i == id => {
                                if cli.json {
                                    println!("{}", serde_json::to_string(&e)?);
                                } else {
                                    eprint!(
                                        "\r{}",
                                        bar(progress.done, progress.total, &progress.phase)
                                    );
                                    let _ = std::io::stderr().flush();
                                }
                            }
                            AgentEvent::CommandFinished { id: i, .. } if *i == id => break,
                            _ => {}
                        },
                        Ok(None) => break,
                        // No event for a while: check by polling (events are best effort).
                        Err(_) => {
                            if c.get(&id).await?.command_status.is_done() {
                                break;
                            }
                        }
                    }
                }
                if !cli.json {
                    eprintln!();
                }
            } else {
                while !c.get(&id).await?.command_status.is_done() {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            let last = c.get(&id).await?;
            print(&last);
            return settled(name, &last);
        }
    }
    Ok(())
}

/// A command that ended in any state but SUCCEEDED makes `ipactl` exit non-zero (the result
/// is printed first); one still RUNNING (no `--wait`/`--watch`) is not a failure.
fn settled(name: &str, r: &ipa_core::CommandResult) -> anyhow::Result<()> {
    use ipa_core::CommandStatus;
    match r.command_status {
        CommandStatus::Succeeded | CommandStatus::Running => Ok(()),
        other => {
            let status = serde_json::to_value(other)?;
            bail!("command {name} {}", status.as_str().unwrap_or("did not succeed"))
        }
    }
}

mod erased {
    pub trait Show {
        fn show(&self, json: bool);
    }
    impl<T: serde::Serialize + std::fmt::Debug> Show for T {
        fn show(&self, json: bool) {
            let text =
                if json { serde_json::to_string(self) } else { serde_json::to_string_pretty(self) };
            println!("{}", text.unwrap_or_else(|_| format!("{self:?}")));
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipactl: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
