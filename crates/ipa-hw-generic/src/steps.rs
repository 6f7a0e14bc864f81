//! The generic manager's steps (spec §5.6) and their implementations.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use futures_util::StreamExt;
use ipa_core::command::Params;
use ipa_core::error::AgentError;
use ipa_core::hardware::{BlockDevice, HardwareManagers, Step, StepCall, StepKind};
use ipa_core::os::ExecRequest;
use serde_json::{Map, Value, json};

use std::time::SystemTime;

use ipa_core::attest::{DeviceRecord, DiskId, EraseReport, Outcome, REPORT_FORMAT, utc_rfc3339};
use ipa_core::hardware::LogFile;

use crate::erase::{CancelOnDrop, EraseError, EraseOutcome, ErasePolicy, Eraser, Erasure};
use crate::{GenericError, GenericHardwareManager, lock};

/// A report being assembled by a step.
pub(crate) struct ReportBuilder {
    step: &'static str,
    started_at: String,
    /// Every disk of the inventory at the start.
    disks: Vec<BlockDevice>,
    devices: Vec<DeviceRecord>,
}

impl ReportBuilder {
    /// Record every inventory disk that is not in `kept` as skipped.
    fn not_selected(&mut self, kept: &[BlockDevice]) {
        for d in &self.disks {
            if !kept.iter().any(|k| k.name == d.name) {
                let mut r = record_for(d);
                r.finish(
                    Outcome::Skipped,
                    Some(
                        "not selected: skip_block_devices, a kept RAID volume, or a hardware \
                         manager's device filter"
                            .into(),
                    ),
                );
                self.devices.push(r);
            }
        }
    }
}

fn record_for(d: &BlockDevice) -> DeviceRecord {
    DeviceRecord::new(&d.name, d.size, d.logical_sectors.unwrap_or(512), d.serial.clone())
}

fn fill(r: &mut DeviceRecord, e: Erasure) {
    r.method = Some(e.method.into());
    r.parameters = e.parameters;
    r.bytes = e.bytes;
    r.samples = e.samples;
}

fn outcome_word(r: &DeviceRecord) -> &'static str {
    match r.outcome {
        Outcome::Erased => "erased",
        Outcome::Skipped => "skipped",
        Outcome::Failed => "failed",
    }
}

impl GenericHardwareManager {
    /// Whether steps are offered: a manager that may write (`disk_mode`), and in sandbox mode
    /// only over a fixture tree (over the live host the disks are the host's own, which the
    /// sandbox never touches; the simulated manager's steps apply instead).
    pub(crate) fn offers_steps(&self) -> bool {
        match &self.opts.disk_mode {
            None => false,
            Some(m) if m.is_sandbox() => !self.opts.machine.is_live(),
            Some(_) => true,
        }
    }

    /// The step list of `kind` (IPA names, priorities, interfaces, abortable flags, argsinfo).
    pub fn steps(&self, kind: StepKind) -> Vec<Step> {
        if !self.offers_steps() {
            return Vec::new();
        }
        match kind {
            StepKind::Clean => vec![
                Step::new("erase_devices", 10, "deploy").abortable(true),
                Step::new("erase_devices_metadata", 99, "deploy").abortable(true),
                Step::new("erase_devices_express", 0, "deploy").abortable(true),
                Step::new("erase_pstore", 0, "deploy").abortable(true),
                nvram_step().abortable(true),
            ],
            // `write_image` (deploy and service) is run by the image pipeline's `standby`
            // fragment, not by a manager: see `ipa_image::StandbyImageExtension`.
            StepKind::Deploy => {
                vec![Step::new("erase_devices_metadata", 0, "deploy"), nvram_step()]
            }
            StepKind::Service => Vec::new(),
        }
    }

    /// An erase engine for `node` (refuses when the manager may not write).
    pub fn eraser(&self, node: &Value) -> Result<Eraser, AgentError> {
        let Some(mode) = self.opts.disk_mode.clone() else {
            return Err(GenericError::ReadOnly { method: "erase" }.into());
        };
        Ok(Eraser {
            runner: self.runner.clone(),
            mode,
            machine: self.opts.machine.clone(),
            tools: self.opts.erase_tools,
            nvme: self.opts.nvme.clone(),
            policy: ErasePolicy::from_node(node),
            overwrite: self.opts.overwrite.clone(),
            writer: self.opts.erase_writer.clone(),
            samples: self.opts.verify_samples,
            sanitize_poll: crate::erase::SANITIZE_POLL,
        })
    }

    /// Run a step of ours.
    pub(crate) async fn run_step(&self, call: StepCall<'_>) -> Result<Value, AgentError> {
        if !self.steps(call.kind).iter().any(|s| s.step == call.step) {
            return Err(AgentError::incompatible(format!(
                "{} is not a {} step of the generic manager",
                call.step,
                call.kind.as_str()
            )));
        }
        match call.step {
            "erase_devices" => self.erase_devices(&call).await,
            "erase_devices_metadata" => self.erase_devices_metadata(call.node, call.peers).await,
            "erase_devices_express" => self.erase_devices_express(call.node, call.peers).await,
            "erase_pstore" => self.erase_pstore().await,
            "clean_uefi_nvram" => self.clean_uefi_nvram(&call.args).await,
            other => Err(AgentError::incompatible(format!("{other} is not implemented"))),
        }
    }

    async fn kept_disks(
        &self,
        node: &Value,
        peers: &HardwareManagers,
    ) -> Result<Vec<BlockDevice>, AgentError> {
        Ok(self.candidate_devices(Some(node), peers).await?.into_iter().map(|h| h.device).collect())
    }

    /// IPA's `erase_devices`: every disk left after skip lists and filters, a safety check,
    /// then `erase_block_device` through the managers, `disk_erasure_concurrency` at a time.
    /// Every disk ends the step with a record in the signed report, erased or not; a disk that
    /// fails (or vanishes) fails the step after the others have finished.
    async fn erase_devices(&self, call: &StepCall<'_>) -> Result<Value, AgentError> {
        let node = call.node;
        let eraser = self.eraser(node)?;
        let mut report = self.report_start("erase_devices").await?;
        let disks = self.kept_disks(node, call.peers).await?;
        report.not_selected(&disks);
        for d in &disks {
            if let Err(e) = eraser.safety_check(&d.name, &eraser.facts(&d.name)) {
                let mut r = record_for(d);
                r.finish(Outcome::Failed, Some(e.to_string()));
                report.devices.push(r);
                self.report_finish(report, node);
                return Err(GenericError::from(e).into());
            }
        }
        lock(&self.records).clear();
        {
            let mut p = lock(&self.progress);
            for d in &disks {
                p.insert(d.name.clone(), call.ctx.clone());
            }
        }
        let peers = call.peers;
        let results: Vec<(String, Result<(), AgentError>)> =
            futures_util::stream::iter(disks.iter().cloned().map(|d| {
                let node = node.clone();
                async move {
                    let r = peers
                        .dispatch("erase_block_device", |m, _| {
                            let (node, d) = (node.clone(), d.clone());
                            Box::pin(async move { m.erase_block_device(&node, &d).await })
                        })
                        .await;
                    (d.name, r)
                }
            }))
            .buffer_unordered(eraser.policy.concurrency)
            .collect()
            .await;
        {
            let mut p = lock(&self.progress);
            for d in &disks {
                p.remove(&d.name);
            }
        }
        let mut records = std::mem::take(&mut *lock(&self.records));
        let mut out = Map::new();
        let mut first_err = None;
        for d in &disks {
            let result = results.iter().find(|(n, _)| *n == d.name).map(|(_, r)| r);
            let record = match (records.remove(&d.name), result) {
                (Some(r), _) => r,
                (None, Some(Ok(()))) => {
                    // Erased by another manager, which reports nothing of how.
                    let mut r = record_for(d);
                    r.method = Some("other_manager".into());
                    r.finish(Outcome::Erased, None);
                    r
                }
                (None, other) => {
                    let mut r = record_for(d);
                    let why = match other {
                        Some(Err(e)) => e.to_string(),
                        _ => "not erased".into(),
                    };
                    r.finish(Outcome::Failed, Some(why));
                    r
                }
            };
            out.insert(d.name.clone(), json!(outcome_word(&record)));
            report.devices.push(record);
            if let Some(Err(e)) = result
                && first_err.is_none()
            {
                first_err = Some(e.clone());
            }
        }
        let signed = self.report_finish(report, node);
        if let Some(e) = first_err {
            return Err(e);
        }
        out.insert("erase_report".into(), signed);
        Ok(Value::Object(out))
    }

    /// Erase one device (the trait method): progress goes to the running step's context, and
    /// what happened goes to the step's report.
    pub(crate) async fn erase_one(
        &self,
        node: &Value,
        device: &BlockDevice,
    ) -> Result<(), AgentError> {
        let eraser = self.eraser(node)?;
        let ctx = lock(&self.progress).get(&device.name).cloned();
        let cancel = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(cancel.clone());
        let mut record = record_for(device);
        let result = eraser.erase_device(device, ctx.as_ref(), &cancel).await;
        match &result {
            Ok(EraseOutcome::Skipped(reason)) => {
                tracing::info!(device = %device.name, reason, "erase skipped");
                record.finish(Outcome::Skipped, Some(reason.clone()));
            }
            Ok(EraseOutcome::Erased { method, erasure }) => {
                tracing::info!(device = %device.name, method, "erased and verified");
                fill(&mut record, erasure.clone());
                record.finish(Outcome::Erased, None);
            }
            Err(e) => record.finish(Outcome::Failed, Some(e.to_string())),
        }
        lock(&self.records).insert(device.name.clone(), record);
        result.map(|_| ()).map_err(|e| GenericError::from(e).into())
    }

    /// Disks kept for erasure plus their partitions, partitions first (reverse name order).
    async fn metadata_targets(
        &self,
        node: &Value,
        peers: &HardwareManagers,
    ) -> Result<(Vec<BlockDevice>, Vec<BlockDevice>), AgentError> {
        let kept_disks = self.kept_disks(node, peers).await?;
        let kept: BTreeSet<String> = kept_disks.iter().map(|d| d.name.clone()).collect();
        let all = self.blocking(|m| m.block_devices(true)).await?;
        let mut out: Vec<BlockDevice> = all
            .into_iter()
            .map(|r| r.device)
            .filter(|d| {
                kept.contains(&d.name)
                    || self
                        .opts
                        .machine
                        .erase_facts(&d.name)
                        .parent
                        .is_some_and(|p| kept.contains(&p))
            })
            .collect();
        out.sort_by(|a, b| b.name.cmp(&a.name));
        Ok((kept_disks, out))
    }

    async fn wipe_metadata_of(
        &self,
        eraser: &Eraser,
        devices: &[BlockDevice],
        report: &mut ReportBuilder,
    ) -> Result<(), AgentError> {
        let mut errors = Vec::new();
        for d in devices {
            let facts = eraser.facts(&d.name);
            let mut record = record_for(d);
            if facts.vmedia
                || facts.read_only
                || facts.fs_type.as_deref() == Some("linux_raid_member")
                || !facts.md_holders.is_empty()
            {
                tracing::info!(device = %d.name, "metadata erase skipped (vmedia, read-only or RAID member)");
                record.finish(
                    Outcome::Skipped,
                    Some("virtual media, read-only or a RAID member".into()),
                );
                report.devices.push(record);
                continue;
            }
            if let Err(e) = eraser.safety_check(&d.name, &facts) {
                record.finish(Outcome::Failed, Some(e.to_string()));
                report.devices.push(record);
                return Err(GenericError::from(e).into());
            }
            if eraser.mode.is_sandbox()
                && facts.parent.is_some()
                && !eraser.mode.device_path(&d.name).exists()
            {
                // Sandbox partitions are regions of the disk file, not files of their own.
                tracing::debug!(device = %d.name, "no sandbox backing file for the partition");
                record.finish(Outcome::Skipped, Some("sandbox: no backing file".into()));
                report.devices.push(record);
                continue;
            }
            match eraser.erase_metadata(d).await {
                Ok(erasure) => {
                    fill(&mut record, erasure);
                    record.finish(Outcome::Erased, None);
                }
                Err(e) => {
                    record.finish(Outcome::Failed, Some(e.to_string()));
                    errors.push(e.to_string());
                }
            }
            report.devices.push(record);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(GenericError::from(EraseError::Erase {
                device: devices.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", "),
                reason: errors.join("; "),
            })
            .into())
        }
    }

    async fn erase_devices_metadata(
        &self,
        node: &Value,
        peers: &HardwareManagers,
    ) -> Result<Value, AgentError> {
        let eraser = self.eraser(node)?;
        let mut report = self.report_start("erase_devices_metadata").await?;
        let (kept, targets) = self.metadata_targets(node, peers).await?;
        report.not_selected(&kept);
        let result = self.wipe_metadata_of(&eraser, &targets, &mut report).await;
        let signed = self.report_finish(report, node);
        result?;
        Ok(json!({ "erase_report": signed }))
    }

    /// NVMe format where allowed; otherwise, or if it fails, a metadata erase.
    async fn erase_devices_express(
        &self,
        node: &Value,
        peers: &HardwareManagers,
    ) -> Result<Value, AgentError> {
        let eraser = self.eraser(node)?;
        let mut report = self.report_start("erase_devices_express").await?;
        let (kept, targets) = self.metadata_targets(node, peers).await?;
        report.not_selected(&kept);
        let mut formatted = BTreeSet::new();
        for d in targets.iter().filter(|d| eraser.facts(&d.name).parent.is_none()) {
            let facts = eraser.facts(&d.name);
            if eraser.skip_reason(&d.name, &facts).ok().flatten().is_some() || facts.read_only {
                continue;
            }
            if let Err(e) = eraser.safety_check(&d.name, &facts) {
                let mut r = record_for(d);
                r.finish(Outcome::Failed, Some(e.to_string()));
                report.devices.push(r);
                self.report_finish(report, node);
                return Err(GenericError::from(e).into());
            }
            let mut record = record_for(d);
            match eraser.express_nvme(d).await {
                Ok(Some(erasure)) => {
                    formatted.insert(d.name.clone());
                    fill(&mut record, erasure);
                    record.finish(Outcome::Erased, None);
                    report.devices.push(record);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(device = %d.name, error = %e, "NVMe format failed; metadata erase instead")
                }
            }
        }
        let rest: Vec<BlockDevice> = targets
            .into_iter()
            .filter(|d| {
                let disk = eraser.facts(&d.name).parent.unwrap_or_else(|| d.name.clone());
                !formatted.contains(&disk)
            })
            .collect();
        let result = self.wipe_metadata_of(&eraser, &rest, &mut report).await;
        let signed = self.report_finish(report, node);
        result?;
        Ok(json!({ "erase_report": signed }))
    }

    /// Start a report: every disk of the inventory now.
    async fn report_start(&self, step: &'static str) -> Result<ReportBuilder, AgentError> {
        let disks = self.blocking(|m| m.block_devices(false)).await?;
        Ok(ReportBuilder {
            step,
            started_at: utc_rfc3339(SystemTime::now()),
            disks: disks.into_iter().map(|r| r.device).collect(),
            devices: Vec::new(),
        })
    }

    /// Sign the report, store it in the reports directory, and return it as JSON.
    fn report_finish(&self, b: ReportBuilder, node: &Value) -> Value {
        let signer = &self.opts.attest;
        let mut report = EraseReport {
            format: REPORT_FORMAT.into(),
            step: b.step.into(),
            node_uuid: node.get("uuid").and_then(Value::as_str).map(str::to_string),
            agent_version: self.opts.agent_version.clone(),
            boot_id: signer.boot_id().into(),
            started_at: b.started_at,
            finished_at: utc_rfc3339(SystemTime::now()),
            disks: b
                .disks
                .iter()
                .map(|d| DiskId {
                    name: d.name.clone(),
                    size: d.size,
                    serial: d.serial.clone(),
                    wwn: d.wwn.clone(),
                    model: d.model.clone(),
                })
                .collect(),
            devices: b.devices,
            signature: None,
        };
        if let Err(e) = signer.sign(&mut report) {
            tracing::error!(error = %e, "the erase report is NOT signed");
        }
        let erased = report.devices.iter().filter(|d| d.outcome == Outcome::Erased).count();
        let stored = self.opts.reports_dir.as_ref().and_then(|dir| {
            let name = format!("{}-{}.json", report.step, report.started_at.replace(':', ""));
            let path = dir.join(name);
            let text = serde_json::to_vec_pretty(&report).ok()?;
            match std::fs::create_dir_all(dir).and_then(|_| std::fs::write(&path, text)) {
                Ok(()) => Some(path),
                Err(e) => {
                    tracing::warn!(error = %e, path = %path.display(), "cannot store the erase report");
                    None
                }
            }
        });
        tracing::info!(
            step = %report.step,
            devices = report.devices.len(),
            erased,
            key = signer.public_key(),
            stored = ?stored,
            "erase report signed"
        );
        serde_json::to_value(&report).unwrap_or(Value::Null)
    }

    /// The stored reports, as log-bundle members `erase-reports/<file>`.
    pub(crate) fn stored_reports(&self) -> Vec<LogFile> {
        let Some(dir) = &self.opts.reports_dir else { return Vec::new() };
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        files
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .filter_map(|p| {
                let data = std::fs::read(&p).ok()?;
                let name = p.file_name()?.to_string_lossy().into_owned();
                Some(LogFile { name: format!("erase-reports/{name}"), data })
            })
            .collect()
    }

    /// Empty the pstore filesystem named in `/proc/mounts` (under the sandbox root in sandbox
    /// mode).
    async fn erase_pstore(&self) -> Result<Value, AgentError> {
        let Some(mode) = self.opts.disk_mode.clone() else {
            return Err(GenericError::ReadOnly { method: "erase_pstore" }.into());
        };
        let mounts = self.opts.machine.read("/proc/mounts").unwrap_or_default();
        let Some(mp) = mounts.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && f[2] == "pstore").then(|| f[1].to_string())
        }) else {
            tracing::warn!("no pstore mount found; nothing to erase");
            return Ok(Value::Null);
        };
        let dir = if mode.is_sandbox() { mode.os_path(&mp) } else { mp.into() };
        let entries =
            std::fs::read_dir(&dir).map(|rd| rd.flatten().collect::<Vec<_>>()).unwrap_or_default();
        for e in entries {
            let p = e.path();
            let r = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            r.map_err(|err| {
                AgentError::execution(format!("cannot remove {}: {err}", p.display()))
            })?;
        }
        Ok(Value::Null)
    }
    /// IPA's `clean_uefi_nvram`: delete every UEFI boot entry whose device path matches one of
    /// `match_patterns` (case-insensitive; IPA's default drops disk, shim and grub entries and
    /// keeps the firmware's own). Not a UEFI boot: nothing to do.
    async fn clean_uefi_nvram(&self, args: &Params) -> Result<Value, AgentError> {
        let patterns = crate::nvram::match_patterns(args)?;
        if self.opts.disk_mode.is_none() {
            return Err(GenericError::ReadOnly { method: "clean_uefi_nvram" }.into());
        }
        if !self.opts.machine.path("/sys/firmware/efi").is_dir() {
            tracing::info!("not booted in UEFI mode; no NVRAM entries to clean");
            return Ok(Value::Null);
        }
        let listing = self.efibootmgr(&["-v"]).await?;
        let entries = crate::nvram::parse_boot_entries(&listing);
        let doomed = crate::nvram::to_delete(&entries, &patterns);
        if doomed.is_empty() {
            tracing::info!(entries = entries.len(), "no UEFI boot entry matches; none deleted");
            return Ok(Value::Null);
        }
        for e in doomed {
            tracing::info!(entry = %e.number, label = %e.label, path = %e.device_path, "deleting UEFI boot entry");
            self.efibootmgr(&["-b", &e.number, "-B"]).await?;
        }
        let left = crate::nvram::parse_boot_entries(&self.efibootmgr(&["-v"]).await?);
        let labels: Vec<&str> = left.iter().map(|e| e.label.as_str()).collect();
        tracing::info!(left = ?labels, "UEFI boot entries after cleaning");
        Ok(Value::Null)
    }

    async fn efibootmgr(&self, args: &[&str]) -> Result<String, AgentError> {
        let req = ExecRequest::new("efibootmgr", args.iter().copied());
        let line = req.command_line();
        let out = self
            .runner
            .run(req)
            .await
            .map_err(|e| AgentError::execution(format!("{line}: {e}")))?;
        if !out.success() {
            return Err(AgentError::execution(format!(
                "{line} failed ({}): {}",
                out.status,
                out.stderr.trim()
            )));
        }
        Ok(out.stdout)
    }
}

/// `clean_uefi_nvram` as IPA lists it (clean: abortable; deploy: not).
fn nvram_step() -> Step {
    Step::new("clean_uefi_nvram", 0, "deploy").arg(
        "match_patterns",
        "Json blob contains a list of regex patterns where any UEFI NVRAM entry matching that \
         pattern will be deleted. Default value is '[\"^HD\\(\", \"shim.*\\.efi\", \"grub.*\\.efi\"]'",
        false,
    )
}
