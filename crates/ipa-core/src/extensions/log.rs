//! `log.collect_system_logs` (spec §8.1): a gzipped tar, base64-encoded, of every hardware
//! manager's log files plus the output of a few system commands (journal, dmesg, …) run through
//! the command runner. Commands that fail or are absent are left out. The agent token never
//! appears in the archive: every occurrence is masked before a member is added.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use serde_json::{Value, json};

use crate::command::{CommandSpec, Params};
use crate::error::AgentError;
use crate::extension::{CommandContext, Extension};
use crate::hardware::LogFile;
use crate::os::ExecRequest;
use crate::registry::ExtensionDescriptor;
use crate::services::AgentServices;

/// The log extension.
#[derive(Debug)]
pub struct LogExtension {
    services: Arc<AgentServices>,
}

static COMMANDS: &[CommandSpec] = &[CommandSpec::sync("collect_system_logs", &[])];

/// Per-command time budget: Ironic waits synchronously for the whole answer.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// Members produced from commands: (member name, program, args).
const COMMAND_MEMBERS: &[(&str, &str, &[&str])] = &[
    ("journal", "journalctl", &["--full", "--no-pager", "-b"]),
    ("dmesg", "dmesg", &[]),
    ("df", "df", &["-a"]),
    ("mount", "mount", &[]),
    ("ps", "ps", &["au"]),
    ("lsblk", "lsblk", &["--all", "-o", "NAME,SIZE,TYPE,MOUNTPOINT,FSTYPE,LABEL,UUID"]),
    ("ip_addr", "ip", &["addr"]),
];

impl LogExtension {
    /// New.
    pub fn new(services: Arc<AgentServices>) -> Self {
        Self { services }
    }

    /// The archive as IPA ships it: base64 (ASCII) of a tar.gz of [`Self::collect`]. Used by
    /// `log.collect_system_logs` and by the `logs` inspection collector.
    pub async fn archive_base64(&self) -> Result<String, AgentError> {
        let files = self.collect().await;
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        tracing::info!(members = ?names, "collected system logs");
        let archive = tar_gz(&files).map_err(|e| AgentError::CommandExecution {
            details: format!("Could not build the system logs archive: {e}"),
        })?;
        Ok(base64::engine::general_purpose::STANDARD.encode(archive))
    }

    /// Every member of the archive, token already masked.
    pub async fn collect(&self) -> Vec<LogFile> {
        let s = &self.services;
        let mut files: Vec<LogFile> = Vec::new();
        if let Some(hw) = s.hardware() {
            match hw
                .dispatch_all("collect_system_logs", |m| Box::pin(m.collect_system_logs()))
                .await
            {
                Ok(per_manager) => {
                    for (manager, list) in per_manager {
                        for f in list {
                            let name = if files.iter().any(|x| x.name == f.name) {
                                format!("{manager}/{}", f.name)
                            } else {
                                f.name
                            };
                            files.push(LogFile { name, data: f.data });
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "hardware managers gave no log files"),
            }
        }
        for (name, program, args) in COMMAND_MEMBERS {
            let req = ExecRequest::new(*program, args.iter().copied()).timeout(COMMAND_TIMEOUT);
            match s.runner.run(req).await {
                Ok(out) if out.success() => {
                    files.push(LogFile { name: (*name).into(), data: out.stdout.into_bytes() })
                }
                Ok(out) => tracing::debug!(program, status = out.status, "log command failed"),
                Err(e) => tracing::debug!(program, error = %e, "log command not run"),
            }
        }
        let token = s.token.get().filter(|t| !t.is_empty());
        for f in &mut files {
            f.data = mask(&f.data, token.as_deref());
        }
        files
    }
}

/// Replace the token (if known) and any `ipa-agent-token=<value>` kernel argument.
fn mask(data: &[u8], token: Option<&str>) -> Vec<u8> {
    const HIDDEN: &[u8] = b"***";
    let mut out = replace_all(data, token.map(str::as_bytes), HIDDEN);
    let key = b"ipa-agent-token=";
    let mut i = 0;
    let mut masked = Vec::with_capacity(out.len());
    while i < out.len() {
        if out[i..].starts_with(key) {
            masked.extend_from_slice(key);
            masked.extend_from_slice(HIDDEN);
            i += key.len();
            while i < out.len() && !out[i].is_ascii_whitespace() {
                i += 1;
            }
        } else {
            masked.push(out[i]);
            i += 1;
        }
    }
    out = masked;
    out
}

fn replace_all(data: &[u8], needle: Option<&[u8]>, with: &[u8]) -> Vec<u8> {
    let Some(n) = needle.filter(|n| !n.is_empty()) else { return data.to_vec() };
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i..].starts_with(n) {
            out.extend_from_slice(with);
            i += n.len();
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}

/// A POSIX ustar header for a regular file.
fn tar_header(name: &str, size: u64, mtime: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    let name = name.as_bytes();
    let (prefix, base) = if name.len() <= 100 {
        (&b""[..], name)
    } else {
        // Split at a '/' so that base ≤ 100 and prefix ≤ 155; else truncate the base.
        match name
            .iter()
            .rposition(|&c| c == b'/')
            .filter(|&p| p <= 155 && name.len() - p - 1 <= 100)
        {
            Some(p) => (&name[..p], &name[p + 1..]),
            None => (&b""[..], &name[name.len() - 100..]),
        }
    };
    h[..base.len()].copy_from_slice(base);
    let octal = |h: &mut [u8; 512], at: usize, len: usize, v: u64| {
        let s = format!("{v:0w$o}\0", w = len - 1);
        h[at..at + len].copy_from_slice(s.as_bytes());
    };
    octal(&mut h, 100, 8, 0o644);
    octal(&mut h, 108, 8, 0);
    octal(&mut h, 116, 8, 0);
    octal(&mut h, 124, 12, size);
    octal(&mut h, 136, 12, mtime);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[345..345 + prefix.len()].copy_from_slice(prefix);
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

/// A gzipped tar of `files`.
pub fn tar_gz(files: &[LogFile]) -> std::io::Result<Vec<u8>> {
    let mtime = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for f in files {
        gz.write_all(&tar_header(&f.name, f.data.len() as u64, mtime))?;
        gz.write_all(&f.data)?;
        let pad = (512 - f.data.len() % 512) % 512;
        gz.write_all(&vec![0u8; pad])?;
    }
    gz.write_all(&[0u8; 1024])?;
    gz.finish()
}

#[async_trait]
impl Extension for LogExtension {
    fn name(&self) -> &'static str {
        "log"
    }
    fn class_name(&self) -> &'static str {
        "LogExtension"
    }
    fn commands(&self) -> &'static [CommandSpec] {
        COMMANDS
    }
    async fn execute(
        &self,
        _command: &str,
        _params: Params,
        _ctx: CommandContext,
    ) -> Result<Value, AgentError> {
        Ok(json!({"system_logs": self.archive_base64().await?}))
    }
}

inventory::submit! {
    ExtensionDescriptor { name: "log", build: |s| Arc::new(LogExtension::new(s.clone())) }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;
    use crate::config::AgentConfig;
    use crate::hardware::{
        HardwareManager, HardwareManagerVersion, HardwareManagers, HardwareSupport, RankedManager,
    };
    use crate::os::{ExecOutput, FakeResponse, FakeRunner, RecordingPower};
    use crate::services::RunMode;

    const TOKEN: &str = "tok-5ecret-abcdef0123456789";

    #[derive(Debug)]
    struct Mgr(&'static str, Option<&'static str>);

    #[async_trait]
    impl HardwareManager for Mgr {
        fn name(&self) -> &str {
            self.0
        }
        fn version(&self) -> HardwareManagerVersion {
            HardwareManagerVersion { name: self.0.into(), version: "1".into() }
        }
        async fn evaluate_hardware_support(&self) -> HardwareSupport {
            HardwareSupport::GENERIC
        }
        async fn collect_system_logs(&self) -> Result<Vec<LogFile>, AgentError> {
            match self.1 {
                Some(text) => {
                    Ok(vec![LogFile { name: "steps.log".into(), data: text.as_bytes().to_vec() }])
                }
                None => Err(AgentError::incompatible("no logs here")),
            }
        }
    }

    /// Untar (plain ustar as written above) into (name, contents).
    fn untar(b64: &str) -> Vec<(String, String)> {
        let gz = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut tar).unwrap();
        let mut out = Vec::new();
        let mut at = 0;
        while at + 512 <= tar.len() && tar[at] != 0 {
            let h = &tar[at..at + 512];
            let sum: u32 =
                h[..148].iter().chain(&[b' '; 8]).chain(&h[156..]).map(|&b| u32::from(b)).sum();
            let stored =
                u32::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
            assert_eq!(sum, stored, "header checksum");
            assert_eq!(&h[257..263], b"ustar\0");
            let name = String::from_utf8_lossy(&h[..100]).trim_end_matches('\0').to_string();
            let size =
                usize::from_str_radix(std::str::from_utf8(&h[124..135]).unwrap(), 8).unwrap();
            let data = String::from_utf8_lossy(&tar[at + 512..at + 512 + size]).to_string();
            out.push((name, data));
            at += 512 + size.div_ceil(512) * 512;
        }
        out
    }

    #[tokio::test]
    async fn collects_manager_files_and_commands_with_the_token_masked() {
        let dir = tempfile::tempdir().unwrap();
        let runner = FakeRunner::new();
        runner.on(
            "journalctl",
            &[],
            [FakeResponse::Output(ExecOutput::ok(format!(
                "kernel: Command line: ipa-api-url=http://x ipa-agent-token={TOKEN} quiet\n\
                 agent: token {TOKEN} accepted\n"
            )))],
        );
        runner.on("dmesg", &[], [FakeResponse::Output(ExecOutput::failed(1, "denied"))]);
        let s = AgentServices::new(
            AgentConfig::default(),
            figment::Figment::new(),
            RunMode::Sandbox { dir: dir.path().to_path_buf() },
            Arc::new(runner.clone()),
            Arc::new(RecordingPower::new(dir.path().join("power.log"))),
        );
        s.token.set(TOKEN);
        let hw = Arc::new(HardwareManagers::from_ranked(
            [Mgr("a_manager", Some("step one\n")), Mgr("b_manager", Some("b uses token "))]
                .into_iter()
                .chain([Mgr("c_incompatible", None)])
                .map(|m| RankedManager {
                    manager: Arc::new(m) as Arc<dyn HardwareManager>,
                    support: HardwareSupport::GENERIC,
                })
                .collect(),
        ));
        s.set_hardware(&hw);
        let ext = LogExtension::new(s.clone());
        let v = ext
            .execute("collect_system_logs", Params::new(), CommandContext::detached("log"))
            .await
            .unwrap();
        let members = untar(v["system_logs"].as_str().unwrap());
        let names: Vec<&str> = members.iter().map(|m| m.0.as_str()).collect();
        assert!(names.contains(&"steps.log"), "{names:?}");
        assert!(names.contains(&"b_manager/steps.log"), "second manager's file kept: {names:?}");
        assert!(names.contains(&"journal"), "{names:?}");
        assert!(!names.contains(&"dmesg"), "a failing command is left out: {names:?}");
        let journal = &members.iter().find(|m| m.0 == "journal").unwrap().1;
        assert!(journal.contains("ipa-agent-token=*** quiet"), "{journal}");
        assert!(journal.contains("token *** accepted"), "{journal}");
        for (name, data) in &members {
            assert!(!data.contains(TOKEN), "{name} leaks the token");
        }
        assert_eq!(members.iter().find(|m| m.0 == "steps.log").unwrap().1, "step one\n");
    }

    #[test]
    fn long_names_use_the_ustar_prefix() {
        let name = format!("{}/{}", "d".repeat(120), "f".repeat(50));
        let h = tar_header(&name, 3, 0);
        assert_eq!(&h[..50], "f".repeat(50).as_bytes());
        assert_eq!(&h[345..465], "d".repeat(120).as_bytes());
    }

    #[test]
    fn mask_without_a_token_still_hides_the_kernel_argument() {
        assert_eq!(mask(b"a ipa-agent-token=xyz b", None), b"a ipa-agent-token=*** b");
        assert_eq!(mask(b"plain", None), b"plain");
    }
}
