//! `log.collect_system_logs` (spec §8.1): a gzipped tar, base64-encoded, of every hardware
//! manager's log files plus the output of a few system commands (journal, dmesg, …) run through
//! the command runner. Commands that fail or are absent are left out. The agent token never
//! appears in the archive: every occurrence is masked before a member is added. In sandbox mode
//! the host's commands are not run: the archive holds the managers' files and a `sandbox` note.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use serde_json::{Value, json};

use crate::command::{CommandSpec, Params};
use crate::error::AgentError;
use crate::extension::{CommandContext, Extension};
use crate::hardware::{HardwareManagers, LogFile};
use crate::os::ExecRequest;
use crate::registry::ExtensionDescriptor;
use crate::services::AgentServices;

/// The log extension.
#[derive(Debug)]
pub struct LogExtension {
    services: Arc<AgentServices>,
    hardware: Arc<HardwareManagers>,
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
    pub fn new(services: Arc<AgentServices>, hardware: Arc<HardwareManagers>) -> Self {
        Self { services, hardware }
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
        {
            match self
                .hardware
                .dispatch_all("collect_system_logs", |m, _| Box::pin(m.collect_system_logs()))
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
        if s.mode.is_sandbox() {
            // The host is not the machine being driven: its journal, mounts, disks and
            // addresses are none of the caller's business.
            files.push(LogFile {
                name: "sandbox".into(),
                data: b"sandbox mode: the host's journal, dmesg, df, mount, ps, lsblk and \
                        addresses are not collected\n"
                    .to_vec(),
            });
        }
        let host_commands = if s.mode.is_sandbox() { &[][..] } else { COMMAND_MEMBERS };
        for (name, program, args) in host_commands {
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

/// A gzipped tar of `files` (the `tar` crate; GNU long-name records for names over 100 bytes).
pub fn tar_gz(files: &[LogFile]) -> std::io::Result<Vec<u8>> {
    let mtime = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for f in files {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(f.data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(mtime);
        tar.append_data(&mut h, &f.name, f.data.as_slice())?;
    }
    tar.into_inner()?.finish()
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
    ExtensionDescriptor { name: "log", build: |s, hw| Arc::new(LogExtension::new(s.clone(), hw.clone())) }
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

    /// Untar into (name, contents).
    fn untar(b64: &str) -> Vec<(String, String)> {
        let gz = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&gz[..]));
        let mut out = Vec::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = String::new();
            e.read_to_string(&mut data).unwrap();
            out.push((name, data));
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
        // Real mode over a fake runner: the host commands are asked for.
        let s = AgentServices::new(
            AgentConfig::default(),
            figment::Figment::new(),
            RunMode::Real,
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
        let ext = LogExtension::new(s.clone(), hw);
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

    #[tokio::test]
    async fn in_sandbox_mode_the_hosts_logs_are_not_collected() {
        let dir = tempfile::tempdir().unwrap();
        let runner = FakeRunner::new();
        let s = AgentServices::new(
            AgentConfig::default(),
            figment::Figment::new(),
            RunMode::Sandbox { dir: dir.path().to_path_buf() },
            Arc::new(runner.clone()),
            Arc::new(RecordingPower::new(dir.path().join("power.log"))),
        );
        let hw = Arc::new(HardwareManagers::from_ranked(vec![RankedManager {
            manager: Arc::new(Mgr("sim", Some("sim log\n"))) as Arc<dyn HardwareManager>,
            support: HardwareSupport::GENERIC,
        }]));
        let v = LogExtension::new(s.clone(), hw)
            .execute("collect_system_logs", Params::new(), CommandContext::detached("log"))
            .await
            .unwrap();
        let names: Vec<String> =
            untar(v["system_logs"].as_str().unwrap()).into_iter().map(|m| m.0).collect();
        assert_eq!(names, ["steps.log", "sandbox"]);
        assert!(runner.calls().is_empty(), "ran {:?}", runner.command_lines());
    }

    #[test]
    fn long_names_survive_the_archive_whole() {
        let names = [
            format!("{}/{}", "d".repeat(120), "f".repeat(50)),
            // One component longer than a ustar name field: the old writer cut it.
            format!("mgr/{}.log", "n".repeat(180)),
            "short".to_string(),
        ];
        let files: Vec<LogFile> = names
            .iter()
            .map(|n| LogFile { name: n.clone(), data: n.len().to_string().into_bytes() })
            .collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(tar_gz(&files).unwrap());
        let got = untar(&b64);
        let want: Vec<(String, String)> =
            names.iter().map(|n| (n.clone(), n.len().to_string())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn mask_without_a_token_still_hides_the_kernel_argument() {
        assert_eq!(mask(b"a ipa-agent-token=xyz b", None), b"a ipa-agent-token=*** b");
        assert_eq!(mask(b"plain", None), b"plain");
    }
}
