//! A figment provider for IPA's kernel command-line parameters.
//!
//! `/proc/cmdline` is split on whitespace into `key=value` pairs. `ipa-<name>` maps to the option
//! `<name>` with dashes turned into underscores (plus a few historical exceptions and plugin
//! aliases such as `ipa-amqp-url` → `amqp.url`); `BOOTIF` and `boot_method` are taken as is.
//! Core options come out under their flat IPA name; the loader moves them into their section.
//! Values are typed from the option's default (bools accept `1/0/true/false/...`). Unknown `ipa-*`
//! parameters are logged once and ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use figment::value::{Dict, Map, Value};
use figment::{Error, Metadata, Profile, Provider};

use super::AgentConfig;

/// Parse a kernel command line into ordered `(key, value)` pairs. A bare word gets an empty
/// value; quoted values (`k="a b"`) keep their spaces.
pub fn parse_cmdline(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut tokens = Vec::new();
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    tokens.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        tokens.push(cur);
    }
    for t in tokens {
        match t.split_once('=') {
            Some((k, v)) => out.push((k.to_string(), v.to_string())),
            None => out.push((t, String::new())),
        }
    }
    out
}

/// Historical names whose option differs from the dashed parameter name.
const EXCEPTIONS: &[(&str, &str)] = &[("ipa-ip-lookup-timeout", "ip_lookup_sleep")];

/// Non-`ipa-` parameters the agent reads.
const PLAIN: &[(&str, &str)] = &[("BOOTIF", "bootif"), ("boot_method", "boot_method")];

static WARNED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The provider.
#[derive(Debug, Clone)]
pub struct KernelCmdline {
    source: PathBuf,
    params: Vec<(String, String)>,
    aliases: Vec<(String, String)>,
}

impl KernelCmdline {
    /// Read from `path` (a missing file gives an empty provider).
    pub fn from_file(path: &Path, aliases: &[(String, String)]) -> Self {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        Self { source: path.to_path_buf(), params: parse_cmdline(&text), aliases: aliases.to_vec() }
    }

    /// From a string (tests).
    pub fn from_str(text: &str, aliases: &[(String, String)]) -> Self {
        Self { source: "<string>".into(), params: parse_cmdline(text), aliases: aliases.to_vec() }
    }

    /// Map a parameter name to an option key (a flat IPA name, or a plugin's dotted key), or
    /// `None` if it is not ours. IPA options this agent does not implement are recognised (the
    /// loader reports them) rather than warned about as unknown.
    fn key_for(&self, param: &str) -> Option<String> {
        if let Some((_, k)) = PLAIN.iter().find(|(p, _)| *p == param) {
            return Some((*k).to_string());
        }
        if let Some((_, k)) = self.aliases.iter().find(|(p, _)| p == param) {
            return Some(k.clone());
        }
        if let Some((_, k)) = EXCEPTIONS.iter().find(|(p, _)| *p == param) {
            return Some((*k).to_string());
        }
        let name = param.strip_prefix("ipa-")?.replace('-', "_");
        let known = AgentConfig::option_names().contains_key(&name)
            || super::NOT_IMPLEMENTED.contains(&name.as_str());
        known.then_some(name)
    }

    /// The parsed `(option key, raw value)` pairs this provider contributes.
    pub fn options(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (k, v) in &self.params {
            match self.key_for(k) {
                Some(key) => out.push((key, v.clone())),
                None if k.starts_with("ipa-") => {
                    let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
                    // Bounded: a kernel command line is short, but the list lives for the process.
                    if !warned.contains(k) && warned.len() < 256 {
                        tracing::warn!(parameter = %k, "unknown ipa-* kernel parameter ignored");
                        warned.push(k.clone());
                    }
                }
                None => {}
            }
        }
        out
    }
}

/// A raw string typed from an option's default (`template`): bools and numbers parsed,
/// everything else (strings, paths, unset options) kept a string.
pub(super) fn typed(raw: &str, template: Option<&serde_json::Value>) -> Value {
    use serde_json::Value as J;
    match template {
        Some(J::Bool(_)) => match super::parse_bool(raw) {
            Some(b) => Value::from(b),
            None => Value::from(raw.to_string()),
        },
        Some(J::Number(n)) if n.is_f64() => {
            raw.parse::<f64>().map(Value::from).unwrap_or_else(|_| Value::from(raw.to_string()))
        }
        Some(J::Number(_)) => {
            raw.parse::<u64>().map(Value::from).unwrap_or_else(|_| Value::from(raw.to_string()))
        }
        // Strings, paths and unset options stay strings: `ipa-agent-token=123` must not become
        // a number.
        _ => Value::from(raw.to_string()),
    }
}

fn insert_path(dict: &mut BTreeMap<String, Value>, parts: &[&str], leaf: String, value: Value) {
    match parts.split_first() {
        None => {
            dict.insert(leaf, value);
        }
        Some((first, rest)) => {
            let entry =
                dict.entry((*first).to_string()).or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, d) = entry {
                insert_path(d, rest, leaf, value);
            }
        }
    }
}

impl Provider for KernelCmdline {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("kernel command line ({})", self.source.display()))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        let defaults = AgentConfig::flat_defaults();
        let mut root: BTreeMap<String, Value> = BTreeMap::new();
        for (key, raw) in self.options() {
            let mut parts: Vec<&str> = key.split('.').collect();
            let leaf = parts.pop().unwrap_or_default().to_string();
            let value = if parts.is_empty() {
                // A flat IPA name; the loader moves it into its section.
                typed(&raw, defaults.get(&leaf))
            } else {
                // Plugin options: let figment's own string parsing type them (1 → number,
                // true → bool); plugins use the lenient deserializers for flags.
                raw.parse::<Value>().unwrap_or_else(|_| Value::from(raw.clone()))
            };
            insert_path(&mut root, &parts, leaf, value);
        }
        let dict: Dict = root.into_iter().collect();
        Ok(Profile::Default.collect(dict))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_bare_words_and_quotes() {
        let p = parse_cmdline("BOOT_IMAGE=/vmlinuz ro quiet ipa-api-url=http://x:6385 k=\"a b\"\n");
        assert_eq!(
            p,
            vec![
                ("BOOT_IMAGE".into(), "/vmlinuz".into()),
                ("ro".into(), "".into()),
                ("quiet".into(), "".into()),
                ("ipa-api-url".into(), "http://x:6385".into()),
                ("k".into(), "a b".into()),
            ]
        );
    }

    #[test]
    fn maps_ipa_parameters_exceptions_plain_and_aliases() {
        let k = KernelCmdline::from_str(
            "ipa-api-url=http://x ipa-ip-lookup-timeout=3 BOOTIF=01-aa ipa-zmq-endpoint=tcp://c ipa-nope=1 ipa-insecure=1",
            &[("ipa-zmq-endpoint".into(), "zmq.endpoint".into())],
        );
        let opts = k.options();
        assert!(opts.contains(&("api_url".into(), "http://x".into())));
        assert!(opts.contains(&("ip_lookup_sleep".into(), "3".into())));
        assert!(opts.contains(&("bootif".into(), "01-aa".into())));
        assert!(opts.contains(&("zmq.endpoint".into(), "tcp://c".into())));
        assert!(opts.contains(&("insecure".into(), "1".into())));
        assert!(!opts.iter().any(|(k, _)| k.contains("nope")));
    }

    #[test]
    fn numeric_looking_token_stays_a_string() {
        let c = extract(KernelCmdline::from_str("ipa-agent-token=12345678901234567890", &[]));
        assert_eq!(c.ironic.agent_token.as_ref().map(|t| t.expose()), Some("12345678901234567890"));
    }

    /// Every kernel parameter Ironic (PXE, iPXE, inspection, virtual media) and Metal3 set, and
    /// every parameter the IPA option table names, reaches a typed option (none is dropped as
    /// unknown).
    #[test]
    fn every_parameter_ironic_and_ipa_document_maps_to_an_option() {
        let line = "BOOT_IMAGE=/deploy_kernel selinux=0 troubleshoot=0 text nofb vga=normal \
            ipa-debug=1 ipa-api-url=http://127.0.0.1:6385 ipa-global-request-id=req-1 \
            boot_server=127.0.0.1 BOOTIF=01-52-54-00-12-34-56 boot_method=vmedia \
            ipa-inspection-callback-url=http://127.0.0.1:6385/v1/continue_inspection \
            ipa-collect-lldp=1 ipa-agent-token=0123456789abcdef0123456789abcdef \
            ipa-listen-host=:: ipa-listen-port=9998 ipa-advertise-host=192.0.2.5 \
            ipa-advertise-port=9997 ipa-advertise-protocol=https ipa-tls-min-version=1.3 \
            ipa-tls-cipher-suites=ECDHE-RSA-AES256-GCM-SHA384 ipa-tls-certificate-curve=p384 \
            ipa-ip-lookup-attempts=7 ipa-ip-lookup-timeout=11 ipa-network-interface=eth1 \
            ipa-lookup-timeout=601 ipa-lookup-interval=2 ipa-http-request-timeout=31 \
            ipa-insecure=1 ipa-ironic-api-version=1.68 ipa-hardware-initialization-delay=1 \
            ipa-disk-wait-attempts=11 ipa-disk-wait-delay=4 ipa-ntp-server=192.0.2.1 \
            ipa-image-download-connection-timeout=61 ipa-image-download-connection-retries=8 \
            ipa-image-download-connection-retry-interval=12 \
            ipa-ignore-bootloader-failure=1 ipa-inject-files-priority=5 \
            ipa-guard-special-filesystems=0 ipa-enable-vlan-interfaces=all";
        let k = KernelCmdline::from_str(line, &[]);
        let opts = k.options();
        let ipa_params =
            parse_cmdline(line).into_iter().filter(|(p, _)| p.starts_with("ipa-")).count();
        let mapped_ipa =
            opts.iter().filter(|(k, _)| !matches!(k.as_str(), "bootif" | "boot_method")).count();
        assert_eq!(mapped_ipa, ipa_params, "some ipa-* parameter was not recognised: {opts:?}");
        let c = extract(k);
        assert!(c.agent.debug && c.http.insecure && c.inspection.collect_lldp);
        assert_eq!(c.api.listen_port, 9998);
        assert_eq!(c.ironic.lookup_timeout, 601);
        assert_eq!(c.api.ip_lookup_sleep, 11);
        assert_eq!(c.ironic.global_request_id.as_deref(), Some("req-1"));
        assert_eq!(c.api.advertise_protocol, "https");
        assert_eq!(c.agent.disk_wait_delay, 4);
        assert_eq!(c.image.image_download_connection_retry_interval, 12);
        assert_eq!(c.agent.bootif.as_deref(), Some("01-52-54-00-12-34-56"));
    }

    fn extract(k: KernelCmdline) -> AgentConfig {
        figment::Figment::from(figment::providers::Serialized::defaults(AgentConfig::default()))
            .merge(super::super::Sectioned(k))
            .extract()
            .unwrap()
    }
}
