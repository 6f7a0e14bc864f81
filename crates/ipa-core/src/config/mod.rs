//! Configuration: IPA's option names (spec `ipa-agent.md` §4.10) in typed sections
//! ([`AgentConfig`]: `[agent]`, `[ironic]`, `[api]`, `[http]`, `[image]`, `[inspection]`,
//! `[link]`, `[metrics]`), layered with figment:
//!
//! 1. defaults ([`AgentConfig::default`]);
//! 2. IPA's INI files (`/etc/ironic-python-agent.conf`, `/etc/ironic-python-agent.d/*.conf`,
//!    `[DEFAULT]` section, [`IpaIni`]; unknown keys are logged and ignored, as oslo.config does);
//! 3. a TOML file (`--config FILE`), flat IPA names or sections; **unknown keys are errors**;
//! 4. environment variables `IPA_<KEY>` (`IPA_LISTEN_PORT`, or sectioned `IPA_API__LISTEN_PORT`;
//!    plugin sections: `IPA_AMQP__URL`);
//! 5. the kernel command line (`ipa-*` parameters and `BOOTIF`, [`KernelCmdline`]);
//! 6. command-line flags of the binary.
//!
//! Later layers win. Plugin crates read their own sections (`[amqp]`, `[zmq]`, `[sim]`, ...) from
//! the merged [`Figment`] with `deny_unknown_fields` structs; their section names and kernel
//! parameter aliases come from their registry descriptors.
//! Every option is documented in `docs/configuration.md` (a test keeps the two in sync).

mod cmdline;
mod ini;
mod sections;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Deserializer, Serialize};

pub use cmdline::{KernelCmdline, parse_cmdline};
pub use ini::{IPA_CONFIG_DIR, IPA_CONFIG_FILE, IpaIni, ipa_ini_files, parse_ini};
pub use sections::{
    AgentSection, ApiSection, HttpSection, ImageSection, InspectionSection, IronicSection,
    LinkSection, MetricsSection,
};

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
        $(pub(crate) fn $name() -> $ty { $val })*
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
    d_lldp_timeout: f64 = 30.0;
    d_dl_timeout: u64 = 60;
    d_dl_retries: u32 = 9;
    d_dl_interval: u64 = 10;
    d_noauth: String = "noauth".into();
    d_formats: String = "raw,gpt,qcow2".into();
    d_log_format: String = "text".into();
    d_cmdline: PathBuf = "/proc/cmdline".into();
    d_link_heartbeat: u64 = 5000;
    d_link_reconnect_min: u64 = 100;
    d_link_reconnect_max: u64 = 30_000;
    d_link_ready: u64 = 5000;
    d_link_max_bytes: u64 = 1024 * 1024;
}

/// The agent's core options, in typed sections. Field names are IPA's option names, so every
/// option has a flat name (`listen_port`, kernel parameter `ipa-listen-port`, env
/// `IPA_LISTEN_PORT`) and a sectioned one (`api.listen_port`, `[api] listen_port`,
/// `IPA_API__LISTEN_PORT`); [`load`] moves flat names into their section. Each section refuses
/// unknown keys.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentConfig {
    /// `[agent]`: runtime, sandbox, boot environment, hardware start-up.
    #[serde(default)]
    pub agent: AgentSection,
    /// `[ironic]`: lookup, heartbeat, token.
    #[serde(default)]
    pub ironic: IronicSection,
    /// `[api]`: the REST server, its TLS and the advertised callback URL.
    #[serde(default)]
    pub api: ApiSection,
    /// `[http]`: outbound TLS.
    #[serde(default)]
    pub http: HttpSection,
    /// `[image]`: image downloads, formats, bootloader policy.
    #[serde(default)]
    pub image: ImageSection,
    /// `[inspection]`: inspection callback and collectors.
    #[serde(default)]
    pub inspection: InspectionSection,
    /// `[link]`: settings the broker transports share.
    #[serde(default)]
    pub link: LinkSection,
    /// `[metrics]`: the Prometheus endpoint.
    #[serde(default)]
    pub metrics: MetricsSection,
    /// IPA options that were set but that this agent does not implement ([`NOT_IMPLEMENTED`]);
    /// filled by [`load`], logged at WARN by the binary.
    #[serde(skip)]
    pub not_implemented: Vec<&'static str>,
}

/// The core sections, in the order of [`AgentConfig`]'s fields.
pub const SECTIONS: &[&str] =
    &["agent", "ironic", "api", "http", "image", "inspection", "link", "metrics"];

/// IPA options this agent does not implement yet. They are accepted (kernel parameter, env,
/// file) so an IPA boot configuration keeps working, have no effect, and are logged at WARN when
/// the agent starts; they are not documented as options until they are implemented.
pub const NOT_IMPLEMENTED: &[&str] = &[
    "config_drive_rebuild",
    "disable_bootc_deploy",
    "enable_vlan_interfaces",
    "fail_if_clock_not_set",
    "guard_special_filesystems",
    "inject_files_priority",
    "inspection_dhcp_all_interfaces",
    "inspection_dhcp_wait_timeout",
    "ntp_server",
];

/// Former plugin-section keys that moved into `[link]`; still read, as aliases.
const MOVED_TO_LINK: &[&str] = &[
    "heartbeat_ms",
    "reconnect_min_ms",
    "reconnect_max_ms",
    "ready_timeout_ms",
    "max_message_bytes",
];

/// Plugin sections whose keys in [`MOVED_TO_LINK`] are aliases of `[link]`.
const LINK_PLUGINS: &[&str] = &["amqp", "zmq"];

impl AgentConfig {
    /// Every option's flat (IPA) name → its sectioned name (`listen_port` → `api.listen_port`).
    pub fn option_names() -> &'static BTreeMap<String, String> {
        static NAMES: OnceLock<BTreeMap<String, String>> = OnceLock::new();
        NAMES.get_or_init(|| {
            let mut out = BTreeMap::new();
            if let Ok(serde_json::Value::Object(root)) = serde_json::to_value(Self::default()) {
                for (section, fields) in root {
                    if let serde_json::Value::Object(fields) = fields {
                        for field in fields.keys() {
                            out.insert(field.clone(), format!("{section}.{field}"));
                        }
                    }
                }
            }
            out
        })
    }

    /// Every option's flat name → its default value (`null` when unset by default); the kernel
    /// command line types its strings from these.
    pub fn flat_defaults() -> &'static BTreeMap<String, serde_json::Value> {
        static DEFAULTS: OnceLock<BTreeMap<String, serde_json::Value>> = OnceLock::new();
        DEFAULTS.get_or_init(|| {
            let root = serde_json::to_value(Self::default()).unwrap_or_default();
            Self::option_names()
                .iter()
                .map(|(flat, dotted)| {
                    let pointer = format!("/{}", dotted.replace('.', "/"));
                    (flat.clone(), root.pointer(&pointer).cloned().unwrap_or_default())
                })
                .collect()
        })
    }
}

impl IronicSection {
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
}

impl ImageSection {
    /// `permitted_image_formats` as a list (entries trimmed, empty ones dropped; compared with
    /// image formats exactly, as IPA does).
    pub fn permitted_formats(&self) -> Vec<String> {
        self.permitted_image_formats
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }
}

/// A provider wrapper that moves flat option names into their sections
/// (`listen_port` → `api.listen_port`) and the old `[amqp]`/`[zmq]` link keys into `[link]`.
/// A key given both ways in one source is an error.
pub(crate) struct Sectioned<P>(pub(crate) P);

impl<P: Provider> Provider for Sectioned<P> {
    fn metadata(&self) -> Metadata {
        self.0.metadata()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut data = self.0.data()?;
        for dict in data.values_mut() {
            sectioned(dict)?;
        }
        Ok(data)
    }
}

fn put(
    dict: &mut Dict,
    section: &str,
    field: &str,
    value: Value,
    given_as: &str,
) -> Result<(), figment::Error> {
    let entry = dict.entry(section.to_string()).or_insert_with(|| Value::from(Dict::new()));
    let Value::Dict(_, fields) = entry else {
        return Err(format!("`{section}` must be a table of options").into());
    };
    if fields.contains_key(field) {
        return Err(format!("`{section}.{field}` is set twice (also as `{given_as}`)").into());
    }
    fields.insert(field.to_string(), value);
    Ok(())
}

fn sectioned(dict: &mut Dict) -> Result<(), figment::Error> {
    let names = AgentConfig::option_names();
    let flat: Vec<String> = dict.keys().filter(|k| names.contains_key(*k)).cloned().collect();
    for key in flat {
        if let (Some(value), Some((section, field))) =
            (dict.remove(&key), names.get(&key).and_then(|d| d.split_once('.')))
        {
            put(dict, section, field, value, &key)?;
        }
    }
    for plugin in LINK_PLUGINS {
        let Some(Value::Dict(_, fields)) = dict.get_mut(*plugin) else { continue };
        let moved: Vec<(String, Value)> = MOVED_TO_LINK
            .iter()
            .filter_map(|k| fields.remove(*k).map(|v| ((*k).to_string(), v)))
            .collect();
        for (field, value) in moved {
            put(dict, "link", &field, value, &format!("{plugin}.{field}"))?;
        }
    }
    Ok(())
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
    /// IPA's oslo.config INI files, in precedence order ([`ipa_ini_files`]); read before the
    /// TOML file, so everything else overrides them.
    pub ipa_ini: Vec<PathBuf>,
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

fn check_collectors(config: &AgentConfig) -> Result<(), ConfigError> {
    let collectors = &config.inspection.inspection_collectors;
    for name in collectors.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !INSPECTION_COLLECTORS.contains(&name) {
            return Err(ConfigError::UnknownCollector { name: name.to_string() });
        }
    }
    Ok(())
}

/// Merge all layers and extract the core config. Returns the figment too, for plugin sections.
pub fn load(sources: &ConfigSources) -> Result<(AgentConfig, Figment), ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(AgentConfig::default()));
    for path in &sources.ipa_ini {
        figment = figment.merge(Sectioned(IpaIni::file(path)));
    }
    if let Some(path) = &sources.file {
        check_file_keys(path, &sources.plugin_sections)?;
        figment = figment.merge(Sectioned(Toml::file_exact(path)));
    }
    if sources.env {
        figment = figment.merge(Sectioned(Env::prefixed("IPA_").split("__").lowercase(true)));
    }
    // The kernel command line path itself may come from the layers above.
    let cmdline_path = match &sources.kernel_cmdline {
        Some(p) => Some(p.clone()),
        None => figment.extract_inner::<PathBuf>("agent.kernel_cmdline_path").ok(),
    };
    if let Some(path) = cmdline_path {
        figment =
            figment.merge(Sectioned(KernelCmdline::from_file(&path, &sources.kernel_aliases)));
    }
    if !sources.overrides.is_empty() {
        figment = figment.merge(Sectioned(Serialized::defaults(serde_json::Value::Object(
            sources.overrides.clone(),
        ))));
    }
    let mut config: AgentConfig = figment.extract()?;
    check_collectors(&config)?;
    config.not_implemented =
        NOT_IMPLEMENTED.iter().copied().filter(|k| figment.find_value(k).is_ok()).collect();
    Ok((config, figment))
}

fn check_file_keys(path: &Path, plugin_sections: &[String]) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Io { path: path.to_path_buf(), source })?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|source| ConfigError::Toml { path: path.to_path_buf(), source })?;
    let names = AgentConfig::option_names();
    for key in table.keys() {
        let known = names.contains_key(key)
            || SECTIONS.contains(&key.as_str())
            || NOT_IMPLEMENTED.contains(&key.as_str())
            || plugin_sections.iter().any(|s| s == key);
        if !known {
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
    fn ipa_options_not_implemented_are_accepted_reported_and_not_options() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("a.toml", "ntp_server = \"192.0.2.1\"\n")?;
            jail.create_file("cmdline", "ipa-guard-special-filesystems=0 ipa-debug=1\n")?;
            jail.set_env("IPA_INJECT_FILES_PRIORITY", "40");
            let src = ConfigSources {
                file: Some("a.toml".into()),
                env: true,
                kernel_cmdline: Some("cmdline".into()),
                ..Default::default()
            };
            let (c, _) = load(&src).map_err(|e| e.to_string())?;
            assert_eq!(
                c.not_implemented,
                ["guard_special_filesystems", "inject_files_priority", "ntp_server"]
            );
            assert!(c.agent.debug);
            for name in NOT_IMPLEMENTED {
                assert!(!AgentConfig::option_names().contains_key(*name), "{name} is an option");
            }
            let (c, _) = load(&ConfigSources::default()).map_err(|e| e.to_string())?;
            assert!(c.not_implemented.is_empty());
            Ok(())
        });
    }

    #[test]
    fn defaults_match_ipa() {
        let c = AgentConfig::default();
        assert_eq!(c.api.listen_port, 9999);
        assert_eq!(c.api.listen_host, "::");
        assert_eq!(c.ironic.lookup_timeout, 600);
        assert_eq!(c.image.image_download_connection_retries, 9);
        assert!(c.image.md5_enabled);
        assert!(c.api.enable_auto_tls);
        assert_eq!(c.api.tls_certificate_curve, "p384");
        assert_eq!(c.image.permitted_formats(), ["raw", "gpt", "qcow2"]);
        assert!(!c.agent.real_hardware);
        assert_eq!(c.link.max_message_bytes, 1024 * 1024);
    }

    #[test]
    fn every_option_has_one_flat_name_in_one_section() {
        let names = AgentConfig::option_names();
        assert_eq!(names.len(), 65, "{names:?}");
        assert_eq!(names["listen_port"], "api.listen_port");
        assert_eq!(names["agent_token"], "ironic.agent_token");
        assert_eq!(names["cafile"], "http.cafile");
        assert_eq!(names["permitted_image_formats"], "image.permitted_image_formats");
        assert_eq!(names["collect_lldp"], "inspection.collect_lldp");
        assert_eq!(names["agent_id"], "link.agent_id");
        assert_eq!(names["metrics_enabled"], "metrics.metrics_enabled");
        for dotted in names.values() {
            let section = dotted.split_once('.').map(|(s, _)| s).unwrap_or_default();
            assert!(SECTIONS.contains(&section), "{dotted}");
        }
    }

    #[test]
    fn flat_and_sectioned_names_reach_the_same_option_in_every_layer() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "flat.toml",
                "listen_port = 1111\nimage_verify_readback = true\n[amqp]\nheartbeat_ms = 700\n",
            )?;
            jail.create_file(
                "sections.toml",
                "[api]\nlisten_port = 1111\n[image]\nimage_verify_readback = true\n[link]\nheartbeat_ms = 700\n",
            )?;
            let file = |f: &str| ConfigSources {
                file: Some(f.into()),
                plugin_sections: vec!["amqp".into()],
                ..Default::default()
            };
            let (flat, fig) = load(&file("flat.toml")).map_err(|e| e.to_string())?;
            let (sections, _) = load(&file("sections.toml")).map_err(|e| e.to_string())?;
            assert_eq!(flat, sections);
            assert_eq!(flat.api.listen_port, 1111);
            assert!(flat.image.image_verify_readback);
            assert_eq!(flat.link.heartbeat_ms, 700, "[amqp] heartbeat_ms is a [link] alias");
            assert!(fig.find_value("amqp.heartbeat_ms").is_err());

            jail.set_env("IPA_API__LISTEN_PORT", "2222");
            jail.set_env("IPA_LOOKUP_TIMEOUT", "7");
            let (c, _) = load(&ConfigSources { env: true, ..Default::default() })
                .map_err(|e| e.to_string())?;
            assert_eq!((c.api.listen_port, c.ironic.lookup_timeout), (2222, 7));
            Ok(())
        });
    }

    #[test]
    fn a_section_refuses_unknown_keys_and_a_key_set_twice_is_an_error() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("typo.toml", "[api]\nlisten_prot = 1\n")?;
            let src = |f: &str| ConfigSources { file: Some(f.into()), ..Default::default() };
            let e = format!("{:?}", load(&src("typo.toml")).unwrap_err());
            assert!(e.contains("listen_prot"), "{e}");
            jail.create_file("twice.toml", "listen_port = 1\n[api]\nlisten_port = 2\n")?;
            let e = format!("{:?}", load(&src("twice.toml")).unwrap_err());
            assert!(e.contains("api.listen_port` is set twice"), "{e}");
            jail.create_file("misplaced.toml", "[image]\nlisten_port = 1\n")?;
            assert!(load(&src("misplaced.toml")).is_err());
            Ok(())
        });
    }

    #[test]
    fn ipa_ini_files_are_read_below_everything_else_and_never_stop_the_boot() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "ironic-python-agent.conf",
                "[DEFAULT]\ncafile = /etc/ironic-python-agent.crt\nlisten_port = 1000\n\
                 lookup_timeout = 10\nimage_verify_readback = True\nntp_server = 192.0.2.1\n\
                 some_future_ipa_option = 1\n[metrics]\nbackend = noop\n",
            )?;
            jail.create_file("ironic-tls.conf", "[DEFAULT]\ncafile=/etc/ironic.crt\n")?;
            jail.create_file("agent.toml", "lookup_timeout = 20\n")?;
            jail.create_file("cmdline", "ipa-listen-port=3000\n")?;
            let src = ConfigSources {
                ipa_ini: vec!["ironic-python-agent.conf".into(), "ironic-tls.conf".into()],
                file: Some("agent.toml".into()),
                kernel_cmdline: Some("cmdline".into()),
                ..Default::default()
            };
            let (c, _) = load(&src).map_err(|e| e.to_string())?;
            assert_eq!(
                c.http.cafile.as_deref(),
                Some(Path::new("/etc/ironic.crt")),
                "later file wins"
            );
            assert!(c.image.image_verify_readback, "oslo booleans (True) are typed");
            assert_eq!(c.ironic.lookup_timeout, 20, "the TOML file overrides the INI files");
            assert_eq!(c.api.listen_port, 3000, "kernel parameters override the INI files");
            assert_eq!(c.not_implemented, ["ntp_server"]);
            Ok(())
        });
    }

    #[test]
    fn metrics_are_on_by_default_and_every_layer_reaches_the_metrics_section() {
        let c = AgentConfig::default();
        assert!(c.metrics.metrics_enabled);
        assert_eq!(c.metrics.metrics_listen, None);
        figment::Jail::expect_with(|jail| {
            jail.create_file("cmdline", "ipa-metrics-enabled=0\n")?;
            let src =
                ConfigSources { kernel_cmdline: Some("cmdline".into()), ..Default::default() };
            let (c, _) = load(&src).map_err(|e| e.to_string())?;
            assert!(!c.metrics.metrics_enabled, "kernel parameter ipa-metrics-enabled");

            jail.set_env("IPA_METRICS_ENABLED", "false");
            jail.set_env("IPA_METRICS_LISTEN", "127.0.0.1:9100");
            let (c, _) = load(&ConfigSources { env: true, ..Default::default() })
                .map_err(|e| e.to_string())?;
            assert!(!c.metrics.metrics_enabled, "IPA_METRICS_ENABLED");
            assert_eq!(c.metrics.metrics_listen.as_deref(), Some("127.0.0.1:9100"));

            jail.create_file("m.toml", "[metrics]\nmetrics_enabled = true\n")?;
            let src = ConfigSources { file: Some("m.toml".into()), ..Default::default() };
            assert!(load(&src).map_err(|e| e.to_string())?.0.metrics.metrics_enabled);
            jail.create_file("typo.toml", "[metrics]\nbackend = \"statsd\"\n")?;
            let src = ConfigSources { file: Some("typo.toml".into()), ..Default::default() };
            assert!(load(&src).is_err(), "the section refuses unknown keys");
            Ok(())
        });
    }

    #[test]
    fn api_urls_split_and_trim() {
        let c = IronicSection {
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
                ..Default::default()
            };
            let (c, fig) = load(&src).map_err(|e| e.to_string())?;
            assert_eq!(c.api.listen_port, 2222); // env over file
            assert_eq!(c.api.advertise_port, 3333); // cmdline over env
            assert_eq!(c.ironic.lookup_timeout, 8); // flags over everything
            assert!(c.agent.debug); // "1" from the cmdline is a bool
            assert_eq!(c.agent.bootif.as_deref(), Some("01-aa-bb-cc-dd-ee-ff"));
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
        for (flat, dotted) in AgentConfig::option_names() {
            let row = format!("| `{flat}` | `{dotted}` |");
            assert!(doc.contains(&row), "docs/configuration.md lacks the row {row}");
        }
        for name in NOT_IMPLEMENTED {
            assert!(doc.contains(&format!("`{name}`")), "docs/configuration.md lacks `{name}`");
        }
    }
}
