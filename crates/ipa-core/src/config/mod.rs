//! Configuration: IPA's option names (spec `ipa-agent.md` §4.10) in one typed struct, layered
//! with figment:
//!
//! 1. defaults ([`AgentConfig::default`]);
//! 2. a TOML file (`--config FILE`); **unknown keys are errors**;
//! 3. environment variables `IPA_<KEY>` (nested plugin sections: `IPA_AMQP__URL`);
//! 4. the kernel command line (`ipa-*` parameters and `BOOTIF`, [`KernelCmdline`]);
//! 5. command-line flags of the binary.
//!
//! Later layers win. Plugin crates read their own sections (`[amqp]`, `[zmq]`, `[sim]`, ...) from
//! the merged [`Figment`] with `deny_unknown_fields` structs; their section names and kernel
//! parameter aliases come from their registry descriptors.
//! Every option is documented in `docs/configuration.md` (a test keeps the two in sync).

mod cmdline;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize};

use crate::secret::Secret;

pub use cmdline::{KernelCmdline, parse_cmdline};

/// oslo's strict boolean parsing: `1/t/true/on/y/yes` and `0/f/false/off/n/no`, any case.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "on" | "y" | "yes" => Some(true),
        "0" | "f" | "false" | "off" | "n" | "no" => Some(false),
        _ => None,
    }
}

/// Deserialize a bool from a bool, a 0/1 number or an oslo boolean string. Plugins use this on
/// their flags so `IPA_X=1` and `ipa-x=1` work.
pub fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bool(bool),
        I(i64),
        S(String),
    }
    match Raw::deserialize(d)? {
        Raw::Bool(b) => Ok(b),
        Raw::I(i) => Ok(i != 0),
        Raw::S(s) => parse_bool(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid boolean value {s:?}"))),
    }
}

/// Like [`lenient_bool`] for optional flags.
pub fn lenient_opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bool(bool),
        I(i64),
        S(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Bool(b)) => Ok(Some(b)),
        Some(Raw::I(i)) => Ok(Some(i != 0)),
        Some(Raw::S(s)) if s.is_empty() || s.eq_ignore_ascii_case("none") => Ok(None),
        Some(Raw::S(s)) => parse_bool(&s)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid boolean value {s:?}"))),
    }
}

/// Deserialize a string from a string or a number (kernel parameters and env are untyped).
pub fn lenient_opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(match v {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    })
}

macro_rules! defaults {
    ($($name:ident : $ty:ty = $val:expr;)*) => {
        $(fn $name() -> $ty { $val })*
    };
}

defaults! {
    d_listen_host: String = "::".into();
    d_port: u16 = 9999;
    d_http: String = "http".into();
    d_true: bool = true;
    d_clock_skew: u64 = 3600;
    d_tls_min: String = "1.2".into();
    d_curve: String = "p384".into();
    d_ip_attempts: u32 = 6;
    d_ip_sleep: u64 = 10;
    d_lookup_timeout: u64 = 600;
    d_lookup_interval: u64 = 1;
    d_history: usize = crate::dispatcher::DEFAULT_HISTORY_SIZE;
    d_http_timeout: u64 = 30;
    d_disk_wait_attempts: u32 = 10;
    d_disk_wait_delay: u64 = 3;
    d_collectors: String = "default,logs".into();
    d_dhcp_wait: u64 = 60;
    d_lldp_timeout: f64 = 30.0;
    d_dl_timeout: u64 = 60;
    d_dl_retries: u32 = 9;
    d_dl_interval: u64 = 10;
    d_noauth: String = "noauth".into();
    d_formats: String = "raw,gpt,qcow2".into();
    d_log_format: String = "text".into();
    d_cmdline: PathBuf = "/proc/cmdline".into();
}

/// The agent's core options. Field names are IPA's option names; the kernel parameter is
/// `ipa-<name with dashes>` unless noted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentConfig {
    // ---- Ironic API -----------------------------------------------------------------------
    /// Ironic API URL(s), comma separated, or `mdns`. Unset: no lookup, no heartbeat.
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub api_url: Option<String>,
    /// Sent as `X-OpenStack-Request-ID` to Ironic.
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub global_request_id: Option<String>,
    /// Ironic API microversion to assume instead of discovering it.
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub ironic_api_version: Option<String>,
    /// Pre-shared agent token (virtual media boots: `ipa-agent-token`). Never printed.
    #[serde(default, deserialize_with = "crate::secret::lenient_opt_secret")]
    pub agent_token: Option<Secret>,
    /// Run without Ironic: no lookup/heartbeat; the token comes from configuration.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub standalone: bool,
    /// Seconds to retry lookup before giving up.
    #[serde(default = "d_lookup_timeout")]
    pub lookup_timeout: u64,
    /// Minimum seconds between lookup attempts (random exponential backoff up to 60 s).
    #[serde(default = "d_lookup_interval")]
    pub lookup_interval: u64,
    /// Command results kept in the history (`GET /v1/commands/`): the last this many, plus
    /// the one still running. IPA keeps every result for the life of the process; Ironic only
    /// reads the latest ones. Not an IPA option.
    #[serde(default = "d_history")]
    pub command_history_size: usize,
    /// Timeout for each request to Ironic and to the inspection endpoint.
    #[serde(default = "d_http_timeout")]
    pub http_request_timeout: u64,
    /// Skip TLS verification of Ironic and image servers.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub insecure: bool,
    /// CA bundle for outbound TLS.
    #[serde(default)]
    pub cafile: Option<PathBuf>,
    /// Client certificate for outbound TLS.
    #[serde(default)]
    pub certfile: Option<PathBuf>,
    /// Client key for outbound TLS.
    #[serde(default)]
    pub keyfile: Option<PathBuf>,

    // ---- API server -----------------------------------------------------------------------
    /// Address the API listens on.
    #[serde(default = "d_listen_host")]
    pub listen_host: String,
    /// Port the API listens on.
    #[serde(default = "d_port")]
    pub listen_port: u16,
    /// Host advertised in `callback_url` (default: found by routing to Ironic).
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub advertise_host: Option<String>,
    /// Port advertised in `callback_url`.
    #[serde(default = "d_port")]
    pub advertise_port: u16,
    /// `http` or `https` in `callback_url` (auto-TLS switches it to `https`).
    #[serde(default = "d_http")]
    pub advertise_protocol: String,
    /// Interface whose IPv4 address is advertised.
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub network_interface: Option<String>,
    /// Rounds of `ip route get` to find the advertise address.
    #[serde(default = "d_ip_attempts")]
    pub ip_lookup_attempts: u32,
    /// Seconds between those rounds (kernel parameter `ipa-ip-lookup-timeout`).
    #[serde(default = "d_ip_sleep")]
    pub ip_lookup_sleep: u64,
    /// Serve static TLS from `tls_cert_file`/`tls_key_file` (disables auto-TLS).
    #[serde(default, deserialize_with = "lenient_bool")]
    pub listen_tls: bool,
    /// Static server certificate (PEM).
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// Static server key (PEM).
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// Generate a self-signed certificate when Ironic supports it (API ≥ 1.68).
    #[serde(default = "d_true", deserialize_with = "lenient_bool")]
    pub enable_auto_tls: bool,
    /// Seconds the auto-TLS certificate's notBefore is backdated.
    #[serde(default = "d_clock_skew")]
    pub auto_tls_allowed_clock_skew: u64,
    /// Minimum TLS version served: `1.2` (1.2–1.3) or `1.3`.
    #[serde(default = "d_tls_min")]
    pub tls_min_version: String,
    /// OpenSSL-style TLS 1.2 cipher list.
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub tls_cipher_suites: Option<String>,
    /// Curve of the auto-TLS key: `p256`, `p384` or `p521`.
    #[serde(default = "d_curve")]
    pub tls_certificate_curve: String,

    // ---- hardware, disks, inspection -----------------------------------------------------
    /// Seconds to sleep after hardware managers initialise.
    #[serde(default)]
    pub hardware_initialization_delay: u64,
    /// Attempts to find the install disk at start.
    #[serde(default = "d_disk_wait_attempts")]
    pub disk_wait_attempts: u32,
    /// Seconds between those attempts.
    #[serde(default = "d_disk_wait_delay")]
    pub disk_wait_delay: u64,
    /// Where to POST inspection data (`…/v1/continue_inspection`), or `mdns`.
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub inspection_callback_url: Option<String>,
    /// Comma-separated inspection collectors.
    #[serde(default = "d_collectors")]
    pub inspection_collectors: String,
    /// Seconds to wait for DHCP before inspection.
    #[serde(default = "d_dhcp_wait")]
    pub inspection_dhcp_wait_timeout: u64,
    /// Wait for DHCP on all interfaces, not only the PXE one.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub inspection_dhcp_all_interfaces: bool,
    /// Collect LLDP on every interface.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub collect_lldp: bool,
    /// Seconds to wait for LLDP frames.
    #[serde(default = "d_lldp_timeout")]
    pub lldp_timeout: f64,
    /// Bring up VLAN interfaces: `iface.vlan`, `iface`, or `all`.
    #[serde(default)]
    pub enable_vlan_interfaces: String,
    /// Refuse to wipe disks holding GPFS/VMFS/GFS2 data.
    #[serde(default = "d_true", deserialize_with = "lenient_bool")]
    pub guard_special_filesystems: bool,
    /// NTP server for clock sync.
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub ntp_server: Option<String>,
    /// Fail if the clock cannot be synced.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub fail_if_clock_not_set: bool,

    // ---- images ---------------------------------------------------------------------------
    /// Connect/read timeout of image downloads, seconds.
    #[serde(default = "d_dl_timeout")]
    pub image_download_connection_timeout: u64,
    /// Retries of an image download.
    #[serde(default = "d_dl_retries")]
    pub image_download_connection_retries: u32,
    /// Seconds between retries.
    #[serde(default = "d_dl_interval")]
    pub image_download_connection_retry_interval: u64,
    /// Upper bound of a whole download in seconds; 0 = unlimited.
    #[serde(default)]
    pub image_download_max_duration: u64,
    /// `noauth` or `http_basic`.
    #[serde(default = "d_noauth")]
    pub image_server_auth_strategy: String,
    /// Basic-auth user for image servers.
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub image_server_user: Option<String>,
    /// Basic-auth password for image servers. Never printed.
    #[serde(default, deserialize_with = "crate::secret::lenient_opt_secret")]
    pub image_server_password: Option<Secret>,
    /// Accept 32-character (MD5) legacy checksums.
    #[serde(default = "d_true", deserialize_with = "lenient_bool")]
    pub md5_enabled: bool,
    /// Trust Ironic's `disk_format` instead of inspecting the image.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub disable_deep_image_inspection: bool,
    /// Comma-separated formats the agent will write.
    #[serde(default = "d_formats")]
    pub permitted_image_formats: String,
    /// Re-read every written image and compare it with the bytes written (also per deploy with
    /// `image_info["image_verify_readback"]`).
    #[serde(default, deserialize_with = "lenient_bool")]
    pub image_verify_readback: bool,
    /// Allow legacy BIOS grub installation.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub enable_bios_bootloader_install: bool,
    /// Treat bootloader installation failures as success.
    #[serde(default, deserialize_with = "lenient_opt_bool")]
    pub ignore_bootloader_failure: Option<bool>,
    /// Priority of the `inject_files` deploy step (0–99).
    #[serde(default)]
    pub inject_files_priority: u32,
    /// Always rebuild the config drive as vfat.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub config_drive_rebuild: bool,
    /// Refuse `execute_bootc_install`.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub disable_bootc_deploy: bool,

    // ---- boot environment (kernel command line) -------------------------------------------
    /// `BOOTIF` kernel parameter (PXE MAC, `01-aa-bb-…`).
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub bootif: Option<String>,
    /// `boot_method` kernel parameter (`vmedia`).
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub boot_method: Option<String>,

    // ---- this agent -----------------------------------------------------------------------
    /// Debug logging (`ipa-debug`).
    #[serde(default, deserialize_with = "lenient_bool")]
    pub debug: bool,
    /// `text` or `json` logs.
    #[serde(default = "d_log_format")]
    pub log_format: String,
    /// Sandbox directory: disks are files under `DIR/disks`, power actions are recorded in
    /// `DIR/power.log`, OS files are written under `DIR/root`. Default off a ramdisk.
    #[serde(default)]
    pub sandbox: Option<PathBuf>,
    /// Explicit opt-in to touch real disks, bootloader and power outside a ramdisk. Never set in
    /// tests.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub real_hardware: bool,
    /// Agent identity on broker transports before lookup (default: derived from the first MAC,
    /// `mac-aabbccddeeff`; after lookup the node UUID is used).
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub agent_id: Option<String>,
    /// Simulated machine description (TOML/JSON) for the simulated hardware manager.
    #[serde(default)]
    pub machine: Option<PathBuf>,
    /// Where the kernel command line is read from (tests point this at a file).
    #[serde(default = "d_cmdline")]
    pub kernel_cmdline_path: PathBuf,
}

impl Default for AgentConfig {
    fn default() -> Self {
        // Deserializing an empty document applies every `#[serde(default = ...)]`.
        serde_json::from_value(serde_json::json!({})).expect("defaults deserialize")
    }
}

impl AgentConfig {
    /// `api_url` split on commas, empty entries dropped.
    pub fn api_urls(&self) -> Vec<String> {
        self.api_url
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.trim_end_matches('/').to_string())
            .collect()
    }

    /// `permitted_image_formats` as a list.
    pub fn permitted_formats(&self) -> Vec<String> {
        self.permitted_image_formats
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// The top-level option names (the keys a config file may use besides plugin sections).
    pub fn keys() -> BTreeSet<String> {
        match serde_json::to_value(AgentConfig::default()) {
            Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
            _ => BTreeSet::new(),
        }
    }
}

/// Configuration problems; the binary reports them and exits non-zero.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key that no option or plugin section knows.
    #[error("unknown configuration key `{key}` in {source_name}")]
    UnknownKey {
        /// The key.
        key: String,
        /// Where it came from.
        source_name: String,
    },
    /// The file could not be read.
    #[error("cannot read configuration file {path}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("configuration file {path} is not valid TOML")]
    Toml {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: toml::de::Error,
    },
    /// A value has the wrong type or a section is malformed.
    #[error("invalid configuration")]
    Invalid(#[source] Box<figment::Error>),
    /// `inspection_collectors` names a collector this agent does not have (IPA fails the same
    /// way when a collector's entry point is missing).
    #[error(
        "unknown inspection collector `{name}` in inspection_collectors (known: {})",
        INSPECTION_COLLECTORS.join(", ")
    )]
    UnknownCollector {
        /// The name.
        name: String,
    },
    /// A plugin rejected its section.
    #[error("invalid configuration for {plugin}: {reason}")]
    Plugin {
        /// Plugin name.
        plugin: String,
        /// What is wrong.
        reason: String,
    },
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        ConfigError::Invalid(Box::new(e))
    }
}

/// Where configuration comes from.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    /// TOML file.
    pub file: Option<PathBuf>,
    /// Read `IPA_*` environment variables.
    pub env: bool,
    /// Read the kernel command line (path from `kernel_cmdline_path` unless overridden here).
    pub kernel_cmdline: Option<PathBuf>,
    /// Highest-priority overrides (command-line flags), as a JSON object.
    pub overrides: serde_json::Map<String, serde_json::Value>,
    /// Section names owned by plugins (allowed as top-level tables in the file).
    pub plugin_sections: Vec<String>,
    /// Extra kernel parameter aliases from plugins: (`ipa-amqp-url`, `amqp.url`).
    pub kernel_aliases: Vec<(String, String)>,
}

/// The inspection collectors this agent implements (IPA's names). IPA's `extra-hardware`
/// (the `hardware` Python library's report) is not one of them.
pub const INSPECTION_COLLECTORS: &[&str] =
    &["default", "logs", "pci-devices", "numa-topology", "dmi-decode", "usb-devices", "lldp"];

/// Options accepted for compatibility with IPA's kernel parameters and files but not acted on
/// yet; setting one to a non-default value is logged at WARN when the agent starts.
pub const ACCEPTED_NOT_IMPLEMENTED: &[&str] = &[
    "inspection_dhcp_wait_timeout",
    "inspection_dhcp_all_interfaces",
    "enable_vlan_interfaces",
    "guard_special_filesystems",
    "ntp_server",
    "fail_if_clock_not_set",
    "inject_files_priority",
    "config_drive_rebuild",
    "disable_bootc_deploy",
];

impl AgentConfig {
    /// The accepted-but-not-implemented options whose value differs from the default.
    pub fn unimplemented_options_set(&self) -> Vec<&'static str> {
        let (me, def) = (
            serde_json::to_value(self).unwrap_or_default(),
            serde_json::to_value(AgentConfig::default()).unwrap_or_default(),
        );
        ACCEPTED_NOT_IMPLEMENTED.iter().copied().filter(|k| me.get(*k) != def.get(*k)).collect()
    }
}

fn check_collectors(config: &AgentConfig) -> Result<(), ConfigError> {
    for name in config.inspection_collectors.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !INSPECTION_COLLECTORS.contains(&name) {
            return Err(ConfigError::UnknownCollector { name: name.to_string() });
        }
    }
    Ok(())
}

/// Merge all layers and extract the core config. Returns the figment too, for plugin sections.
pub fn load(sources: &ConfigSources) -> Result<(AgentConfig, Figment), ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(AgentConfig::default()));
    if let Some(path) = &sources.file {
        check_file_keys(path, &sources.plugin_sections)?;
        figment = figment.merge(Toml::file_exact(path));
    }
    if sources.env {
        figment = figment.merge(Env::prefixed("IPA_").split("__").lowercase(true));
    }
    // The kernel command line path itself may come from the layers above.
    let cmdline_path = match &sources.kernel_cmdline {
        Some(p) => Some(p.clone()),
        None => figment.extract_inner::<PathBuf>("kernel_cmdline_path").ok(),
    };
    if let Some(path) = cmdline_path {
        figment = figment.merge(KernelCmdline::from_file(&path, &sources.kernel_aliases));
    }
    if !sources.overrides.is_empty() {
        figment = figment
            .merge(Serialized::defaults(serde_json::Value::Object(sources.overrides.clone())));
    }
    let config: AgentConfig = figment.extract()?;
    check_collectors(&config)?;
    Ok((config, figment))
}

fn check_file_keys(path: &Path, plugin_sections: &[String]) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Io { path: path.to_path_buf(), source })?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|source| ConfigError::Toml { path: path.to_path_buf(), source })?;
    let known = AgentConfig::keys();
    for key in table.keys() {
        if !known.contains(key) && !plugin_sections.iter().any(|s| s == key) {
            return Err(ConfigError::UnknownKey {
                key: key.clone(),
                source_name: path.display().to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_inspection_collectors_are_an_error_and_known_ones_pass() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("ok.toml", "inspection_collectors = \"default, logs,lldp\"\n")?;
            let src = |f: &str| ConfigSources { file: Some(f.into()), ..Default::default() };
            assert!(load(&src("ok.toml")).is_ok());
            jail.create_file("bad.toml", "inspection_collectors = \"default,extra-hardware\"\n")?;
            let e = load(&src("bad.toml")).unwrap_err().to_string();
            assert!(e.contains("unknown inspection collector `extra-hardware`"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn non_default_unimplemented_options_are_reported() {
        let mut c = AgentConfig::default();
        assert!(c.unimplemented_options_set().is_empty());
        c.ntp_server = Some("pool.ntp.org".into());
        c.inspection_dhcp_all_interfaces = true;
        assert_eq!(c.unimplemented_options_set(), ["inspection_dhcp_all_interfaces", "ntp_server"]);
    }

    #[test]
    fn defaults_match_ipa() {
        let c = AgentConfig::default();
        assert_eq!(c.listen_port, 9999);
        assert_eq!(c.listen_host, "::");
        assert_eq!(c.lookup_timeout, 600);
        assert_eq!(c.image_download_connection_retries, 9);
        assert!(c.md5_enabled);
        assert!(c.enable_auto_tls);
        assert_eq!(c.tls_certificate_curve, "p384");
        assert_eq!(c.permitted_formats(), ["raw", "gpt", "qcow2"]);
        assert!(!c.real_hardware);
    }

    #[test]
    fn api_urls_split_and_trim() {
        let c = AgentConfig {
            api_url: Some("http://a:6385/, ,https://b:6385".into()),
            ..Default::default()
        };
        assert_eq!(c.api_urls(), ["http://a:6385", "https://b:6385"]);
    }

    #[test]
    fn layers_apply_in_order_file_env_cmdline_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "agent.toml",
                "listen_port = 1111\nadvertise_port = 1111\ndebug = false\nlookup_timeout = 5\n[amqp]\nurl = \"amqp://x\"\n",
            )?;
            jail.create_file("cmdline", "BOOT_IMAGE=/vmlinuz ipa-debug=1 ipa-advertise-port=3333 ipa-lookup-timeout=7 BOOTIF=01-aa-bb-cc-dd-ee-ff ipa-amqp-url=amqp://y ipa-bogus=1\n")?;
            jail.set_env("IPA_LISTEN_PORT", "2222");
            jail.set_env("IPA_ADVERTISE_PORT", "2222");
            jail.set_env("IPA_LOOKUP_TIMEOUT", "6");
            let mut overrides = serde_json::Map::new();
            overrides.insert("lookup_timeout".into(), serde_json::json!(8));
            let src = ConfigSources {
                file: Some("agent.toml".into()),
                env: true,
                kernel_cmdline: Some("cmdline".into()),
                overrides,
                plugin_sections: vec!["amqp".into()],
                kernel_aliases: vec![("ipa-amqp-url".into(), "amqp.url".into())],
            };
            let (c, fig) = load(&src).map_err(|e| e.to_string())?;
            assert_eq!(c.listen_port, 2222); // env over file
            assert_eq!(c.advertise_port, 3333); // cmdline over env
            assert_eq!(c.lookup_timeout, 8); // flags over everything
            assert!(c.debug); // "1" from the cmdline is a bool
            assert_eq!(c.bootif.as_deref(), Some("01-aa-bb-cc-dd-ee-ff"));
            assert_eq!(fig.extract_inner::<String>("amqp.url")?, "amqp://y");
            Ok(())
        });
    }

    #[test]
    fn unknown_file_keys_are_errors_but_plugin_sections_are_not() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "listen_prot = 1\n")?;
            let src = ConfigSources { file: Some("bad.toml".into()), ..Default::default() };
            let e = load(&src).unwrap_err();
            assert!(e.to_string().contains("unknown configuration key `listen_prot`"), "{e}");
            jail.create_file("ok.toml", "[zmq]\nendpoint = \"tcp://x\"\n")?;
            let src = ConfigSources {
                file: Some("ok.toml".into()),
                plugin_sections: vec!["zmq".into()],
                ..Default::default()
            };
            assert!(load(&src).is_ok());
            Ok(())
        });
    }

    #[test]
    fn wrong_types_are_reported() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("t.toml", "listen_port = \"not a port\"\n")?;
            let src = ConfigSources { file: Some("t.toml".into()), ..Default::default() };
            assert!(matches!(load(&src), Err(ConfigError::Invalid(_))));
            Ok(())
        });
    }

    #[test]
    fn every_option_is_documented() {
        let doc = include_str!("../../../../docs/configuration.md");
        for key in AgentConfig::keys() {
            assert!(doc.contains(&format!("`{key}`")), "docs/configuration.md lacks `{key}`");
        }
    }
}
