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

use crate::erase::{CancelOnDrop, EraseError, EraseOutcome, ErasePolicy, Eraser};
use crate::{GenericError, GenericHardwareManager, lock};

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
            writer: Arc::new(crate::erase::native::DeviceWriter),
            samples: self.opts.verify_samples,
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
    async fn erase_devices(&self, call: &StepCall<'_>) -> Result<Value, AgentError> {
        let node = call.node;
        let eraser = self.eraser(node)?;
        let disks = self.kept_disks(node, call.peers).await?;
        for d in &disks {
            eraser.safety_check(&d.name, &eraser.facts(&d.name)).map_err(GenericError::from)?;
        }
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
        let mut out = Map::new();
        for d in &disks {
            if let Some((_, Err(e))) = results.iter().find(|(n, _)| *n == d.name) {
                return Err(e.clone());
            }
            out.insert(d.name.clone(), Value::Null);
        }
        Ok(Value::Object(out))
    }

    /// Erase one device (the trait method): progress goes to the running step's context.
    pub(crate) async fn erase_one(
        &self,
        node: &Value,
        device: &BlockDevice,
    ) -> Result<(), AgentError> {
        let eraser = self.eraser(node)?;
        let ctx = lock(&self.progress).get(&device.name).cloned();
        let cancel = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(cancel.clone());
        match eraser
            .erase_device(device, ctx.as_ref(), &cancel)
            .await
            .map_err(GenericError::from)?
        {
            EraseOutcome::Skipped(reason) => {
                tracing::info!(device = %device.name, reason, "erase skipped");
            }
            EraseOutcome::Erased { method, .. } => {
                tracing::info!(device = %device.name, method, "erased and verified");
            }
        }
        Ok(())
    }

    /// Disks kept for erasure plus their partitions, partitions first (reverse name order).
    async fn metadata_targets(
        &self,
        node: &Value,
        peers: &HardwareManagers,
    ) -> Result<Vec<BlockDevice>, AgentError> {
        let kept: BTreeSet<String> =
            self.kept_disks(node, peers).await?.into_iter().map(|d| d.name).collect();
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
        Ok(out)
    }

    async fn wipe_metadata_of(
        &self,
        eraser: &Eraser,
        devices: &[BlockDevice],
    ) -> Result<(), AgentError> {
        let mut errors = Vec::new();
        for d in devices {
            let facts = eraser.facts(&d.name);
            if facts.vmedia
                || facts.read_only
                || facts.fs_type.as_deref() == Some("linux_raid_member")
                || !facts.md_holders.is_empty()
            {
                tracing::info!(device = %d.name, "metadata erase skipped (vmedia, read-only or RAID member)");
                continue;
            }
            eraser.safety_check(&d.name, &facts).map_err(GenericError::from)?;
            if eraser.mode.is_sandbox()
                && facts.parent.is_some()
                && !eraser.mode.device_path(&d.name).exists()
            {
                // Sandbox partitions are regions of the disk file, not files of their own.
                tracing::debug!(device = %d.name, "no sandbox backing file for the partition");
                continue;
            }
            if let Err(e) = eraser.erase_metadata(d).await {
                errors.push(e.to_string());
            }
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
        let targets = self.metadata_targets(node, peers).await?;
        self.wipe_metadata_of(&eraser, &targets).await?;
        Ok(Value::Null)
    }

    /// NVMe format where allowed; otherwise, or if it fails, a metadata erase.
    async fn erase_devices_express(
        &self,
        node: &Value,
        peers: &HardwareManagers,
    ) -> Result<Value, AgentError> {
        let eraser = self.eraser(node)?;
        let targets = self.metadata_targets(node, peers).await?;
        let mut formatted = BTreeSet::new();
        for d in targets.iter().filter(|d| eraser.facts(&d.name).parent.is_none()) {
            let facts = eraser.facts(&d.name);
            if eraser.skip_reason(&d.name, &facts).ok().flatten().is_some() || facts.read_only {
                continue;
            }
            eraser.safety_check(&d.name, &facts).map_err(GenericError::from)?;
            match eraser.express_nvme(d).await {
                Ok(true) => {
                    formatted.insert(d.name.clone());
                }
                Ok(false) => {}
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
        self.wipe_metadata_of(&eraser, &rest).await?;
        Ok(json!(null))
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
