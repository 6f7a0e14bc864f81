//! A figment provider for IPA's oslo.config INI files: `/etc/ironic-python-agent.conf` and every
//! `*.conf` in `/etc/ironic-python-agent.d/` (in name order, later files win), which is where
//! Metal3's CA-bundle initrd and Bifrost put `[DEFAULT] cafile=…` and friends.
//!
//! Only `[DEFAULT]` holds IPA's agent options; keys there are IPA option names and come out
//! under their flat name (the loader moves them into their section), typed like kernel
//! parameters. oslo.config ignores options nobody registered, so an IPA file must not stop this
//! agent from booting: unknown keys and other sections are logged at WARN and ignored. IPA
//! options this agent does not implement are passed on for the loader to report.
//!
//! Syntax as oslo.config reads it: `key = value` or `key: value`, `#`/`;` comment lines, a value
//! continued on following lines that start with whitespace, surrounding quotes stripped, a key
//! given twice in one file keeps the last value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::value::{Dict, Map};
use figment::{Error, Metadata, Profile, Provider};

use super::{AgentConfig, NOT_IMPLEMENTED, cmdline::typed};

/// IPA's configuration file.
pub const IPA_CONFIG_FILE: &str = "/etc/ironic-python-agent.conf";
/// IPA's configuration directory.
pub const IPA_CONFIG_DIR: &str = "/etc/ironic-python-agent.d";

/// The INI files to read, in precedence order (later wins): `file` if it exists, then the
/// `*.conf` files of `dir` sorted by name. Missing or `None` paths give nothing.
pub fn ipa_ini_files(file: Option<&Path>, dir: Option<&Path>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(file) = file.filter(|f| f.is_file()) {
        out.push(file.to_path_buf());
    }
    if let Some(Ok(entries)) = dir.map(std::fs::read_dir) {
        let mut confs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "conf") && p.is_file())
            .collect();
        confs.sort();
        out.extend(confs);
    }
    out
}

/// One parsed INI file: `section → key → value` (sections and keys as written, last value wins).
pub fn parse_ini(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section = String::from("DEFAULT");
    let mut last: Option<String> = None;
    for raw in text.lines() {
        let line = raw.trim_end();
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            // A continuation of the previous value (oslo joins them with a newline).
            if let Some(key) = &last
                && let Some(v) = out.get_mut(&section).and_then(|s| s.get_mut(key))
            {
                v.push('\n');
                v.push_str(trimmed);
            }
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = name.trim().to_string();
            last = None;
            continue;
        }
        let split = trimmed.find(['=', ':']).map(|i| (&trimmed[..i], &trimmed[i + 1..]));
        let Some((key, value)) = split else { continue };
        let key = key.trim().to_string();
        let value = unquote(value.trim()).to_string();
        out.entry(section.clone()).or_default().insert(key.clone(), value);
        last = Some(key);
    }
    out
}

fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

/// The provider for one INI file.
#[derive(Debug, Clone)]
pub struct IpaIni {
    path: PathBuf,
}

impl IpaIni {
    /// Read `path` when the figment asks for it.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }
}

impl Provider for IpaIni {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("IPA configuration file {}", self.path.display()))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| Error::from(format!("cannot read {}: {e}", self.path.display())))?;
        let defaults = AgentConfig::flat_defaults();
        let mut dict = Dict::new();
        for (section, keys) in parse_ini(&text) {
            if section != "DEFAULT" {
                tracing::warn!(
                    file = %self.path.display(),
                    section = %section,
                    "IPA configuration section not read by this agent; ignored"
                );
                continue;
            }
            for (key, raw) in keys {
                let known = defaults.contains_key(&key) || NOT_IMPLEMENTED.contains(&key.as_str());
                if !known {
                    tracing::warn!(
                        file = %self.path.display(),
                        option = %key,
                        "unknown IPA option in [DEFAULT]; ignored"
                    );
                    continue;
                }
                let value = typed(&raw, defaults.get(&key));
                dict.insert(key, value);
            }
        }
        Ok(Profile::Default.collect(dict))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oslo_syntax_comments_quotes_continuations_and_sections() {
        let ini = "# Metal3 CA bundle\n[DEFAULT]\ncafile = /etc/ironic-python-agent.crt\n\
                   ; another comment\ninsecure: false\nipa_custom = \"quoted value\"\n\
                   api_url = http://a:6385,\n  http://b:6385\ncafile=/etc/ironic.crt\n\
                   [metrics]\nbackend = statsd\n";
        let p = parse_ini(ini);
        let d = &p["DEFAULT"];
        assert_eq!(d["cafile"], "/etc/ironic.crt", "a repeated key keeps the last value");
        assert_eq!(d["insecure"], "false");
        assert_eq!(d["ipa_custom"], "quoted value");
        assert_eq!(d["api_url"], "http://a:6385,\nhttp://b:6385");
        assert_eq!(p["metrics"]["backend"], "statsd");
    }

    #[test]
    fn files_are_the_main_file_then_the_directory_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("ironic-python-agent.conf");
        let d = dir.path().join("ironic-python-agent.d");
        std::fs::create_dir(&d).unwrap();
        for f in ["20-b.conf", "10-a.conf", "notes.txt"] {
            std::fs::write(d.join(f), "").unwrap();
        }
        let files = |f: &Path, d: &Path| ipa_ini_files(Some(f), Some(d));
        assert_eq!(files(&main, &d), [d.join("10-a.conf"), d.join("20-b.conf")]);
        std::fs::write(&main, "").unwrap();
        assert_eq!(files(&main, &d)[0], main);
        assert_eq!(ipa_ini_files(Some(&main), None), std::slice::from_ref(&main));
        assert!(files(&dir.path().join("none"), &dir.path().join("none.d")).is_empty());
    }
}
