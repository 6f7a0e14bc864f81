//! The typed core sections of [`super::AgentConfig`]. Field names are IPA option names.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::*;
use crate::secret::Secret;

/// The `[agent]` section: this agent's runtime (logging, sandbox, the boot environment, hardware start-up). Read by the binary and the hardware managers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
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
    /// Simulated machine description (TOML/JSON) for the simulated hardware manager.
    #[serde(default)]
    pub machine: Option<PathBuf>,
    /// Where the kernel command line is read from (tests point this at a file).
    #[serde(default = "d_cmdline")]
    pub kernel_cmdline_path: PathBuf,
    /// Command results kept in the history (`GET /v1/commands/`): the last this many, plus
    /// the one still running. IPA keeps every result for the life of the process; Ironic only
    /// reads the latest ones. Not an IPA option.
    #[serde(default = "d_history")]
    pub command_history_size: usize,
    /// Seconds to sleep after hardware managers initialise.
    #[serde(default)]
    pub hardware_initialization_delay: u64,
    /// Attempts of the generic manager's `wait_for_disks` (not run at start yet; ipa-init starts
    /// the agent once udev has settled).
    #[serde(default = "d_disk_wait_attempts")]
    pub disk_wait_attempts: u32,
    /// Seconds between those attempts.
    #[serde(default = "d_disk_wait_delay")]
    pub disk_wait_delay: u64,
    /// `BOOTIF` kernel parameter (PXE MAC, `01-aa-bb-…`).
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub bootif: Option<String>,
    /// `boot_method` kernel parameter (`vmedia`).
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub boot_method: Option<String>,
}

/// The `[ironic]` section: how the agent finds and talks to Ironic (lookup, heartbeat, token). Read by `ipa-ironic`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IronicSection {
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
    /// Timeout for each request to Ironic and to the inspection endpoint.
    #[serde(default = "d_http_timeout")]
    pub http_request_timeout: u64,
}

/// The `[api]` section: the REST server, its TLS (static or auto-TLS) and the `callback_url` it advertises. Read by `ipa-transport-rest`, `ipa-ironic` (auto-TLS, advertise address) and the binary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
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
}

/// The `[http]` section: outbound TLS of the one HTTP client stack (`ipa-http`): Ironic, inspection, image and firmware servers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
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
}

/// The `[image]` section: downloads, formats, checksums and bootloader policy of `ipa-image` (the core validates `image_info` with it before a command is accepted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSection {
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
}

/// The `[inspection]` section: where inspection data goes and what is collected. Read by `ipa-ironic` and the generic hardware manager.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InspectionSection {
    /// Where to POST inspection data (`…/v1/continue_inspection`), or `mdns`.
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub inspection_callback_url: Option<String>,
    /// Comma-separated inspection collectors.
    #[serde(default = "d_collectors")]
    pub inspection_collectors: String,
    /// Collect LLDP on every interface.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub collect_lldp: bool,
    /// Seconds to wait for LLDP frames.
    #[serde(default = "d_lldp_timeout")]
    pub lldp_timeout: f64,
}
/// The `[link]` section: what the broker transports (AMQP and ZeroMQ) share — the agent's
/// identity before lookup, the `agent.heartbeat` interval, reconnect backoff, the ready timeout
/// and the largest accepted request. Each transport's own section (`[amqp]`, `[zmq]`) holds only
/// what is specific to it; the transport copies this section in when it is built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSection {
    /// Agent identity on broker transports before lookup (default: derived from the first MAC,
    /// `mac-aabbccddeeff`; after lookup the node UUID is used).
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub agent_id: Option<String>,
    /// `agent.heartbeat` event interval in milliseconds; on ZeroMQ also the ZMTP heartbeat (the
    /// idle timeout is three of them).
    #[serde(default = "d_link_heartbeat")]
    pub heartbeat_ms: u64,
    /// Reconnect backoff start, milliseconds (it doubles up to `reconnect_max_ms`).
    #[serde(default = "d_link_reconnect_min")]
    pub reconnect_min_ms: u64,
    /// Reconnect backoff cap, milliseconds.
    #[serde(default = "d_link_reconnect_max")]
    pub reconnect_max_ms: u64,
    /// Report "ready" after this long even if the broker is not reachable yet, milliseconds.
    #[serde(default = "d_link_ready")]
    pub ready_timeout_ms: u64,
    /// Largest accepted request in bytes; a bigger one gets a 413 error reply.
    #[serde(default = "d_link_max_bytes")]
    pub max_message_bytes: u64,
}

/// The `[metrics]` section: the Prometheus endpoint of [`crate::metrics`]. Read by
/// `ipa-transport-rest`, which serves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Serve the metrics (`GET /metrics`, no agent token). Not an IPA option (IPA's own
    /// `[metrics]` INI section configures statsd and is not read).
    #[serde(default = "d_true", deserialize_with = "lenient_bool")]
    pub metrics_enabled: bool,
    /// `HOST:PORT` of a separate plain-HTTP listener that serves only `/metrics`; when set, the
    /// REST port no longer serves it. Unset: `/metrics` is on the REST port.
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub metrics_listen: Option<String>,
}

/// `Default` of a section: deserializing an empty table applies every `#[serde(default …)]`, so
/// the defaults are written once, on the fields.
macro_rules! section_defaults {
    ($($section:ty),* $(,)?) => {
        $(impl Default for $section {
            fn default() -> Self {
                serde_json::from_value(serde_json::json!({})).expect("section defaults deserialize")
            }
        })*
    };
}

section_defaults!(
    AgentSection,
    IronicSection,
    ApiSection,
    HttpSection,
    ImageSection,
    InspectionSection,
    LinkSection,
    MetricsSection
);
