//! Command-line flags. Every flag is also settable from the config file, `IPA_*` environment
//! variables and the kernel command line; flags win.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use serde_json::{Map, Value, json};

/// The deploy agent (ironic-python-agent compatible).
#[derive(Debug, Clone, Parser)]
#[command(name = "ipa-agent", version, about, long_about = None)]
pub struct Cli {
    /// TOML configuration file (unknown keys are errors).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Run without Ironic: no lookup or heartbeat; serve commands with the configured token.
    #[arg(long)]
    pub standalone: bool,
    /// Sandbox directory: nothing outside it is ever written; disks are files in DIR/disks,
    /// power actions are recorded in DIR/power.log. The default when not in a ramdisk.
    #[arg(long, value_name = "DIR")]
    pub sandbox: Option<PathBuf>,
    /// Explicit opt-in to real disks, bootloader and power outside a ramdisk.
    #[arg(long)]
    pub real_hardware: bool,
    /// Address of the REST API, `HOST:PORT` (`[::1]:9999` for IPv6).
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<SocketAddr>,
    /// Agent token (standalone mode). It may begin with `-` (Ironic's tokens are URL-safe
    /// base64); `--token=VALUE` always works.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "IPA_AGENT_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub token: Option<String>,
    /// Simulated machine description for the simulated hardware manager.
    #[arg(long, value_name = "FILE")]
    pub machine: Option<PathBuf>,
    /// Ironic API URL(s), comma separated.
    #[arg(long, value_name = "URL")]
    pub api_url: Option<String>,
    /// Read kernel parameters from this file instead of /proc/cmdline (`none` disables).
    #[arg(long, value_name = "FILE")]
    pub kernel_cmdline: Option<PathBuf>,
    /// IPA's INI configuration file (`none` disables) [default: /etc/ironic-python-agent.conf].
    #[arg(long, value_name = "FILE")]
    pub ipa_config_file: Option<PathBuf>,
    /// IPA's INI configuration directory, every `*.conf` in it (`none` disables)
    /// [default: /etc/ironic-python-agent.d].
    #[arg(long, value_name = "DIR")]
    pub ipa_config_dir: Option<PathBuf>,
    /// Debug logging.
    #[arg(long)]
    pub debug: bool,
    /// Log format: `text` or `json`.
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Print the compiled-in plugins and exit.
    #[arg(long)]
    pub list_plugins: bool,
}

impl Cli {
    /// The flags as the highest-priority configuration layer.
    pub fn overrides(&self) -> Map<String, Value> {
        let mut m = Map::new();
        let mut set = |k: &str, v: Value| {
            m.insert(k.to_string(), v);
        };
        if self.standalone {
            set("standalone", json!(true));
        }
        if let Some(d) = &self.sandbox {
            set("sandbox", json!(d));
        }
        if self.real_hardware {
            set("real_hardware", json!(true));
        }
        if let Some(a) = &self.listen {
            set("listen_host", json!(a.ip().to_string()));
            set("listen_port", json!(a.port()));
        }
        if let Some(t) = &self.token {
            set("agent_token", json!(t));
        }
        if let Some(f) = &self.machine {
            set("machine", json!(f));
        }
        if let Some(u) = &self.api_url {
            set("api_url", json!(u));
        }
        if self.debug {
            set("debug", json!(true));
        }
        if let Some(f) = &self.log_format {
            set("log_format", json!(f));
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_beginning_with_a_dash_is_a_value_in_both_spellings() {
        let tok = "-Xy_3kq9Vb2-token";
        for argv in [
            vec!["ipa-agent", "--token", tok, "--standalone"],
            vec!["ipa-agent", &format!("--token={tok}"), "--standalone"],
        ] {
            let cli = Cli::try_parse_from(argv.iter().map(|s| s.to_string())).expect("parses");
            assert_eq!(cli.token.as_deref(), Some(tok));
            assert!(cli.standalone);
            assert_eq!(cli.overrides()["agent_token"], json!(tok));
        }
    }
}
