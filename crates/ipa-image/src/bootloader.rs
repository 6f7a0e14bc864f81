//! `image.install_bootloader` (§6.10): UEFI boot entries through efibootmgr; BIOS grub only
//! when enabled. In the sandbox the commands go to the command runner, which records or
//! refuses them; nothing touches the real NVRAM.

use std::sync::Arc;

use ipa_core::command::Params;
use ipa_core::extension::{param_bool, param_str};
use ipa_core::os::ExecRequest;
use ipa_core::services::AgentServices;
use serde_json::Value;

use crate::disk::{self, Table};
use crate::error::{ImageError, Result};

/// The fallback loader path IPA uses when no distribution loader is found.
pub const FALLBACK_LOADER: &str = "\\EFI\\BOOT\\BOOTX64.EFI";

async fn run(s: &AgentServices, args: Vec<String>) -> Result<String> {
    let req = ExecRequest::new("efibootmgr", args);
    let line = req.command_line();
    let out = s
        .runner
        .run(req)
        .await
        .map_err(|source| ImageError::Exec { command: line.clone(), source })?;
    if out.success() {
        return Ok(out.stdout);
    }
    if s.mode.is_sandbox() {
        tracing::info!(command = %line, "sandbox: boot entry change recorded, not performed");
        if let Some(dir) = s.mode.disks_dir().and_then(|d| d.parent().map(|p| p.to_path_buf())) {
            use std::io::Write as _;
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("bootloader.log"))
            {
                let _ = writeln!(f, "{line}");
            }
        }
        return Ok(String::new());
    }
    Err(ImageError::Tool { command: line, status: out.status, stderr: out.stderr })
}

/// Run `install_bootloader` for the OS on `device`. Returns `null` like IPA.
pub async fn install(s: &Arc<AgentServices>, device: &str, params: &Params) -> Result<Value> {
    let root_uuid = param_str(params, "root_uuid")?.map(str::to_string);
    let esp_uuid = param_str(params, "efi_system_part_uuid")?.map(str::to_string);
    let mode = param_str(params, "target_boot_mode")?.unwrap_or("bios").to_string();
    let ignore = param_bool(params, "ignore_bootloader_failure")
        .or(s.config.image.ignore_bootloader_failure)
        .unwrap_or(false);
    let device = device.to_string();
    let result = if mode == "uefi" || esp_uuid.is_some() {
        uefi(s, &device, esp_uuid.as_deref()).await
    } else if root_uuid.as_deref().is_none_or(|u| u == "0x00000000") {
        return Ok(Value::Null);
    } else if s
        .ironic_settings()
        .enable_bios_bootloader_install
        .unwrap_or(s.config.image.enable_bios_bootloader_install)
    {
        Err(ImageError::InvalidImage {
            details: "Legacy BIOS grub installation is not supported by this agent".into(),
        })
    } else {
        Err(ImageError::InvalidImage {
            details:
                "Legacy BIOS bootloader installation is disabled (enable_bios_bootloader_install)"
                    .into(),
        })
    };
    match result {
        Err(e) if ignore => {
            tracing::warn!(error = %e, "bootloader installation failed; ignored as requested");
            Ok(Value::Null)
        }
        other => other.map(|_| Value::Null),
    }
}

async fn uefi(s: &AgentServices, device: &str, esp_uuid: Option<&str>) -> Result<()> {
    let path = s.mode.device_path(device);
    let f = std::fs::File::open(&path).map_err(|e| ImageError::DeviceNotFound {
        details: format!("cannot open {device}: {e}"),
    })?;
    let table = disk::read_table(&f)
        .map_err(|source| ImageError::Table { device: device.to_string(), source })?;
    let esp = match &table {
        Table::Gpt(g) => g
            .parts
            .iter()
            .find(|p| {
                esp_uuid.is_some_and(|u| {
                    p.guid.to_string().eq_ignore_ascii_case(u)
                        || disk::fs_uuid(&f, p.first * disk::SECTOR)
                            .is_some_and(|x| x.eq_ignore_ascii_case(u))
                })
            })
            .or_else(|| g.parts.iter().find(|p| p.type_guid.to_string() == disk::GUID_ESP))
            .map(|p| p.number),
        Table::Mbr { parts, .. } => parts.iter().find(|p| p.typ == 0xef).map(|p| p.number),
        Table::None => None,
    };
    let Some(part) = esp else {
        return Err(ImageError::NoEfiPartition { device: device.to_string() });
    };
    let listing = run(s, vec!["-v".into()]).await?;
    for line in listing.lines() {
        // "Boot0003* ironic1\tHD(...)"
        if let Some(rest) = line.strip_prefix("Boot")
            && rest.len() > 5
            && rest.contains("ironic1")
        {
            let num = &rest[..4];
            run(s, vec!["-b".into(), num.into(), "-B".into()]).await?;
        }
    }
    run(
        s,
        vec![
            "-v".into(),
            "-c".into(),
            "-d".into(),
            device.into(),
            "-p".into(),
            part.to_string(),
            "-w".into(),
            "-L".into(),
            "ironic1".into(),
            "-l".into(),
            FALLBACK_LOADER.into(),
        ],
    )
    .await?;
    Ok(())
}
