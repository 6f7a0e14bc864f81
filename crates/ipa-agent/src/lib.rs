//! # ipa-agent
//!
//! The deploy agent's runtime, as a library, and the `ipa-agent` binary built on it.
//! A vendor's own agent binary is a few lines: depend on `ipa-core` (to implement
//! [`HardwareManager`](ipa_core::HardwareManager)) and on this crate, register the manager with
//! `inventory::submit!`, name the manager's crate once, and call [`main`]:
//!
//! ```ignore
//! use acme_hardware_manager as _; // names the crate so its registration is linked
//! fn main() -> std::process::ExitCode { ipa_agent::main() }
//! ```
//!
//! ## Feature flags
//! | Feature | Plugin | Default |
//! |---|---|---|
//! | `transport-rest` | IPA-compatible REST API (`ipa-transport-rest`) | yes |
//! | `transport-amqp` | AMQP 0-9-1 transport (`ipa-transport-amqp`) | no |
//! | `transport-zmq` | ZeroMQ transport with CURVE (`ipa-transport-zmq`) | no |
//! | `hw-generic` | generic hardware manager: real inventory, hints (`ipa-hw-generic`) | no |
//! | `hw-sim` | simulated machine of sandbox mode (`ipa-hw-sim`; never applies in real mode) | yes |
//! | `hw-mellanox` | NVIDIA/Mellanox NIC manager (`ipa-hw-mellanox`) | no |
//! | `hw-intel-cna` | Intel CNA (i40e) LLDP manager (`ipa-hw-intel-cna`) | no |
//! | `hw-container` | container steps manager (`ipa-hw-container`) | no |
//!
//! The image pipeline (`ipa-image`) is always linked; the simulated hardware manager
//! (`hw-sim`, the safe default off a ramdisk) is a default feature the ramdisk's agent omits. Every plugin crate is named once in `plugins.rs`;
//! `tests/registered_plugins.rs` checks the registry per feature set.
//!
//! ## Runtime shape
//! See [`runtime`]: one tokio runtime; the dispatcher owns command state; transports run as
//! tasks until a shutdown token is cancelled by SIGTERM, `rescue.finalize_rescue` (stop) or
//! `system.lockdown`.

pub mod cli;
pub mod environment;
pub mod logging;
mod plugins;
pub mod runtime;

use std::process::ExitCode;

use clap::Parser;
use ipa_core::config::{ConfigSources, load};
use ipa_core::registry;
use ipa_core::services::ServeState;

pub use cli::Cli;
pub use runtime::{Agent, StartError};

/// Entry point of `ipa-agent` and of vendor binaries: parse flags, run, map errors to an exit
/// code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.list_plugins {
        for name in registry::registered_names() {
            println!("{name}");
        }
        return ExitCode::SUCCESS;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ipa-agent: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            let mut msg = format!("ipa-agent: {e}");
            let mut src = std::error::Error::source(&*e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            tracing::error!("{msg}");
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}

/// Configuration sources for `cli`: IPA's INI files, the TOML file, `IPA_*` environment, the
/// kernel command line (`--kernel-cmdline`, else `kernel_cmdline_path`, else /proc/cmdline) and
/// the flags. A path of `none` turns a source off.
pub fn config_sources(cli: &Cli) -> ConfigSources {
    use std::path::{Path, PathBuf};
    let none = |p: &Path| p == Path::new("none");
    // The flag's path, the default without one, nothing for `none`.
    let chosen = |flag: &Option<PathBuf>, default: &'static str| -> Option<PathBuf> {
        let p = flag.clone().unwrap_or_else(|| PathBuf::from(default));
        (!none(&p)).then_some(p)
    };
    let ini_file = chosen(&cli.ipa_config_file, ipa_core::config::IPA_CONFIG_FILE);
    let ini_dir = chosen(&cli.ipa_config_dir, ipa_core::config::IPA_CONFIG_DIR);
    let ipa_ini = ipa_core::config::ipa_ini_files(ini_file.as_deref(), ini_dir.as_deref());
    let kernel_cmdline = cli
        .kernel_cmdline
        .as_ref()
        .map(|p| if none(p) { PathBuf::from("/dev/null") } else { p.clone() });
    ConfigSources {
        ipa_ini,
        file: cli.config.clone(),
        env: true,
        kernel_cmdline,
        overrides: cli.overrides(),
        plugin_sections: registry::plugin_sections(),
        kernel_aliases: registry::kernel_aliases(),
    }
}

/// Run the agent until it stops. `Ok` carries the process exit code.
pub async fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error + Send + Sync>> {
    let sources = config_sources(&cli);
    let (config, figment) = load(&sources)?;
    logging::init(config.agent.debug, &config.agent.log_format);
    tracing::info!(
        version = ipa_core::AGENT_VERSION,
        ipa_compat = ipa_core::IPA_COMPAT_VERSION,
        "ipa-agent starting"
    );
    for file in &sources.ipa_ini {
        tracing::info!(file = %file.display(), "read IPA configuration file");
    }
    for option in &config.not_implemented {
        tracing::warn!(
            option,
            "IPA option accepted for compatibility but not implemented by this agent; ignored"
        );
    }
    let env = environment::Environment::probe();
    let agent = Agent::build(config, figment, &env).await?;
    agent.follow_node_identity();

    let cfg = agent.services.config.clone();
    // Ironic lifecycle (inspection, lookup, TLS decision) before any transport serves.
    let ironic = if ipa_ironic::Lifecycle::applies(&agent.services) {
        let l =
            ipa_ironic::Lifecycle::prepare(&agent.services, &agent.hardware, agent.static_tls()?)
                .await?;
        if !l.should_serve() {
            if agent.services.control.state() == ServeState::Lockdown {
                agent.lockdown_forever().await;
            } else {
                ipa_ironic::idle_until_signal().await;
            }
            return Ok(ExitCode::SUCCESS);
        }
        Some(l)
    } else {
        None
    };
    if !agent.services.token.is_set() {
        tracing::warn!(
            "no agent token is known: every command endpoint answers 401 until one is set"
        );
    }
    let tls = match ironic.as_ref() {
        Some(l) => l.server_tls(),
        None => agent.static_tls()?,
    };
    let handles = agent.start_transports(tls).await?;
    let _heartbeater = ironic.as_ref().and_then(|l| l.start_heartbeating());
    for r in agent.ready().all() {
        if r.transport == "rest" && cfg.ironic.standalone {
            tracing::info!(
                "ready; try: curl -X POST '{}/v1/commands/?agent_token=$TOKEN&wait=true' -d \
                 '{{\"name\":\"poll.get_hardware_info\",\"params\":{{}}}}'",
                r.endpoint
            );
        }
    }
    let stopped = agent.serve_until_stopped(handles).await;
    if stopped.state == ServeState::Lockdown {
        agent.lockdown_forever().await;
        return Ok(ExitCode::SUCCESS);
    }
    Ok(ExitCode::from(stopped.exit_code()))
}
