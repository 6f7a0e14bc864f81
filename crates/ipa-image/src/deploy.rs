//! `prepare_image` / `write_image`: the whole flow around the streaming pipeline.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use ipa_core::command::Params;
use ipa_core::extension::CommandContext;
use ipa_core::os::ExecRequest;
use ipa_core::services::AgentServices;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::ImageState;
use crate::checksum::{Algo, Expected, legacy_expected, parse_checksum_file, url_basename};
use crate::disk::{self, GptPart, MbrPart, Region, Table};
use crate::error::{ImageError, Result};
use crate::info::{ImageInfo, is_url, validate_image_info};
use crate::pipeline::{FormatPolicy, StreamSpec, stream_image};
use crate::writer::target_size;
use ipa_http::download::{Download, DownloadClient, HttpOptions};

const MIB: u64 = 1 << 20;

/// Effective `md5_enabled` (Ironic's override wins).
pub fn md5_enabled(s: &AgentServices) -> bool {
    s.ironic_settings().md5_enabled.unwrap_or(s.config.image.md5_enabled)
}

/// Synchronous validation of `{image_info, configdrive}` (400 with IPA's text).
pub fn validate(s: &AgentServices, args: &Params) -> Result<()> {
    validate_image_info(args.get("image_info"), md5_enabled(s))
}

/// Download options from the configuration and `image_info`.
pub fn http_options(s: &AgentServices, info: &ImageInfo) -> Result<HttpOptions> {
    let c = &s.config;
    let mut o = HttpOptions {
        timeout: Duration::from_secs(c.image.image_download_connection_timeout.max(1)),
        retries: c.image.image_download_connection_retries,
        retry_interval: Duration::from_secs(c.image.image_download_connection_retry_interval),
        max_duration: (c.image.image_download_max_duration > 0)
            .then(|| Duration::from_secs(c.image.image_download_max_duration)),
        insecure: c.http.insecure,
        cafile: c.http.cafile.clone(),
        authorization: None,
        proxies: info.proxies.clone(),
        no_proxy: info
            .no_proxy
            .as_deref()
            .map(|n| n.split(',').map(|x| x.trim().to_string()).collect())
            .unwrap_or_default(),
    };
    if let Some(a) = &info.request_authorization {
        let raw = base64::engine::general_purpose::STANDARD.decode(a.trim()).map_err(|_| {
            ImageError::InvalidParams {
                details: "image_request_authorization is not base64".into(),
            }
        })?;
        o.authorization = Some(String::from_utf8_lossy(&raw).into_owned());
    } else {
        let strategy = info
            .auth_strategy
            .clone()
            .unwrap_or_else(|| c.image.image_server_auth_strategy.clone());
        if strategy == "http_basic" {
            let user = info.user.clone().or_else(|| c.image.image_server_user.clone());
            let pass = info
                .password
                .clone()
                .or_else(|| c.image.image_server_password.as_ref().map(|p| p.expose().to_string()));
            match (user, pass) {
                (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => {
                    let t = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
                    o.authorization = Some(format!("Basic {t}"));
                }
                _ => {
                    return Err(ImageError::Download {
                        image_id: info.id.clone(),
                        msg: "Missing image server credentials for the http_basic auth strategy"
                            .into(),
                    });
                }
            }
        }
    }
    Ok(o)
}

/// Resolve what the image must hash to (§6.4), fetching checksum files.
pub async fn expected_checksum(
    client: &DownloadClient,
    info: &ImageInfo,
    md5: bool,
) -> Result<Expected> {
    let name = info.urls.first().map(|u| url_basename(u).to_string()).unwrap_or_default();
    let fetch = |v: String| async move {
        let body = client.fetch_small(&info.id, std::slice::from_ref(&v), 1 << 20).await?;
        parse_checksum_file(&String::from_utf8_lossy(&body), &name)
            .map_err(|m| ImageError::Download { image_id: info.id.clone(), msg: m })
    };
    if let (Some(a), Some(v)) = (&info.os_hash_algo, &info.os_hash_value) {
        if let Some(algo) = Algo::from_name(a) {
            let value = if is_url(v) { fetch(v.clone()).await? } else { v.trim().to_string() };
            return Ok(Expected { algo, value: value.to_ascii_lowercase() });
        }
        tracing::warn!(algo = %a, "os_hash_algo is not supported; falling back to 'checksum'");
    }
    match &info.checksum {
        Some(c) if is_url(c) => {
            let v = fetch(c.clone()).await?;
            legacy_expected(&info.id, &v, md5)
        }
        Some(c) => legacy_expected(&info.id, c, md5),
        None => Err(ImageError::NoChecksum {
            details: format!(
                "Unable to verify image {} with available checksums. Please make sure the specified \
             'os_hash_algo' (currently {}) is supported by this ramdisk, or provide a md5 \
             checksum via the 'checksum' field",
                info.id,
                info.os_hash_algo.as_deref().unwrap_or("None")
            ),
        }),
    }
}

fn policy(s: &AgentServices, info: &ImageInfo) -> FormatPolicy {
    let ir = s.ironic_settings();
    let permitted =
        ir.permitted_image_formats.clone().unwrap_or_else(|| s.config.image.permitted_formats());
    let deep =
        !ir.disable_deep_image_inspection.unwrap_or(s.config.image.disable_deep_image_inspection);
    FormatPolicy { disk_format: info.disk_format.clone(), permitted, deep_inspection: deep }
}

async fn rescan(s: &AgentServices, device: &str) {
    if s.mode.is_sandbox() {
        return;
    }
    let _ = s.runner.run(ExecRequest::new("partprobe", [device])).await;
    let _ = s.runner.run(ExecRequest::new("udevadm", ["settle"])).await;
}

/// Run a filesystem tool on a partition: fatal on real hardware, recorded in the sandbox.
async fn fs_tool(s: &AgentServices, program: &str, args: Vec<String>) -> Result<()> {
    let req = ExecRequest::new(program, args);
    let line = req.command_line();
    let out =
        s.runner.run(req).await.map_err(|e| ImageError::Deployment { details: e.to_string() })?;
    if !out.success() {
        if s.mode.is_sandbox() {
            tracing::info!(command = %line, "sandbox: filesystem tool not run on a file-backed disk");
            return Ok(());
        }
        return Err(ImageError::Deployment {
            details: format!("{line} failed with exit code {}: {}", out.status, out.stderr),
        });
    }
    Ok(())
}

/// Run blocking disk I/O (open, pwrite, fsync, partition-table reads) on tokio's blocking
/// pool, never on an async worker: a config drive's fsync can take seconds on a real disk.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|source| ImageError::Task { stage: "disk I/O task", source })?
}

fn open_rw(path: &Path, device: &str) -> Result<std::fs::File> {
    OpenOptions::new().read(true).write(true).open(path).map_err(|source| ImageError::Io {
        device: device.to_string(),
        op: format!("cannot open {}", path.display()),
        source,
    })
}

fn write_region(f: &std::fs::File, device: &str, r: Region, data: &[u8]) -> Result<()> {
    if data.len() as u64 > r.len {
        return Err(ImageError::Deployment {
            details: format!(
                "config drive ({} bytes) does not fit partition {} of {device}",
                data.len(),
                r.number
            ),
        });
    }
    f.write_all_at(data, r.offset).and_then(|_| f.sync_all()).map_err(|source| ImageError::Io {
        device: device.into(),
        op: format!("config drive write at {}", r.offset),
        source,
    })
}

/// A partition-image layout (§6.7).
#[derive(Debug, Default, Clone, Copy)]
struct Layout {
    root: Option<Region>,
    esp: Option<Region>,
    bios: Option<Region>,
    swap: Option<Region>,
    ephemeral: Option<Region>,
    configdrive: Option<Region>,
}

fn create_layout(
    f: &std::fs::File,
    device: &str,
    disk_bytes: u64,
    info: &ImageInfo,
    uefi: bool,
    gpt: bool,
    configdrive_mb: u64,
) -> Result<Layout> {
    let mut plan: Vec<(&str, u64)> = Vec::new();
    if uefi {
        plan.push(("esp", 550));
    }
    if !uefi && gpt {
        plan.push(("bios", 1));
    }
    if info.ephemeral_mb > 0 {
        plan.push(("ephemeral", info.ephemeral_mb));
    }
    if info.swap_mb > 0 {
        plan.push(("swap", info.swap_mb));
    }
    if configdrive_mb > 0 {
        plan.push(("configdrive", configdrive_mb));
    }
    plan.push(("root", info.root_mb));
    let total_mb: u64 = 1 + plan.iter().map(|p| p.1).sum::<u64>() + 1;
    if total_mb * MIB > disk_bytes {
        return Err(ImageError::InvalidParams {
            details: format!(
                "Requested partitions ({total_mb} MiB) do not fit on {device} ({} MiB)",
                disk_bytes / MIB
            ),
        });
    }
    if !gpt && plan.len() > 4 {
        return Err(ImageError::Deployment {
            details: "more than 4 partitions on an msdos label".into(),
        });
    }
    let mut layout = Layout::default();
    let mut start = MIB;
    let mut gparts = Vec::new();
    let mut mparts = Vec::new();
    for (i, (kind, mb)) in plan.iter().enumerate() {
        let number = i as u32 + 1;
        let r = Region { number, offset: start, len: mb * MIB };
        let (tg, tm) = match *kind {
            "esp" => (disk::GUID_ESP, 0xef),
            "bios" => (disk::GUID_BIOS_BOOT, 0xef),
            "swap" => (disk::GUID_SWAP, 0x82),
            "configdrive" => (disk::GUID_LINUX, 0x0c),
            _ => (disk::GUID_LINUX, 0x83),
        };
        gparts.push(GptPart {
            number,
            type_guid: Uuid::parse_str(tg).unwrap_or_default(),
            guid: Uuid::new_v4(),
            first: start / disk::SECTOR,
            last: (start + r.len) / disk::SECTOR - 1,
            attrs: 0,
            name: "primary".into(),
        });
        mparts.push(MbrPart {
            number,
            bootable: *kind == "root" && !uefi,
            typ: tm,
            start: start / disk::SECTOR,
            sectors: r.len / disk::SECTOR,
        });
        match *kind {
            "esp" => layout.esp = Some(r),
            "bios" => layout.bios = Some(r),
            "swap" => layout.swap = Some(r),
            "ephemeral" => layout.ephemeral = Some(r),
            "configdrive" => layout.configdrive = Some(r),
            _ => layout.root = Some(r),
        }
        start += r.len;
    }
    let e = |e: std::io::Error| ImageError::Deployment {
        details: format!("partitioning {device}: {e}"),
    };
    if gpt {
        disk::write_protective_mbr(f, disk_bytes).map_err(e)?;
        let mut g = disk::Gpt {
            disk_guid: Uuid::new_v4(),
            alternate_lba: 0,
            first_usable: 34,
            last_usable: 0,
            num_entries: 128,
            entry_size: 128,
            parts: gparts,
        };
        disk::write_gpt(f, &mut g, disk_bytes).map_err(e)?;
    } else {
        let sig = rand_sig();
        disk::write_mbr(f, sig, &mparts).map_err(e)?;
    }
    f.sync_all().map_err(e)?;
    Ok(layout)
}

fn rand_sig() -> u32 {
    let b = Uuid::new_v4().into_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]]) | 1
}

fn boot_mode(s: &AgentServices, info: &ImageInfo) -> String {
    if let Some(m) = &info.deploy_boot_mode {
        return m.clone();
    }
    let node = s.node.get().unwrap_or(Value::Null);
    let ii = node.pointer("/instance_info/deploy_boot_mode").and_then(Value::as_str);
    let caps = node.pointer("/properties/capabilities").and_then(Value::as_str).unwrap_or("");
    let cap = caps.split(',').find_map(|kv| kv.strip_prefix("boot_mode:"));
    ii.or(cap).unwrap_or("uefi").to_string()
}

/// The whole `prepare_image` flow onto `device` (the install device the caller resolved once),
/// recording the result in `state`. `args` were checked with [`validate`] by the caller.
/// Returns IPA's message.
pub async fn run(
    s: &Arc<AgentServices>,
    device: &str,
    state: &RwLock<ImageState>,
    args: &Params,
    ctx: &CommandContext,
) -> Result<String> {
    let info = ImageInfo::parse(args.get("image_info").unwrap_or(&Value::Null))?;
    let configdrive = args
        .get("configdrive")
        .filter(|v| !v.is_null())
        .cloned()
        .or_else(|| info.configdrive.clone());
    let device = device.to_string();
    let cached = state.read().unwrap_or_else(|p| p.into_inner()).cached_image_id.clone();
    let cached_msg = |st: &Map<String, Value>| {
        let root = st.get("root uuid").and_then(Value::as_str).unwrap_or("").to_string();
        format!("image ({}) written to device {device} root_uuid={root}", info.id)
    };
    if cached.as_deref() == Some(info.id.as_str()) {
        tracing::info!(image = %info.id, "image already written by this agent; skipping");
        let st = state.read().unwrap_or_else(|p| p.into_inner()).partition_uuids.clone();
        return Ok(cached_msg(&st));
    }
    let client = Arc::new(DownloadClient::new(http_options(s, &info)?)?);
    let expected = expected_checksum(&client, &info, md5_enabled(s)).await?;
    let cd =
        crate::configdrive::fetch(&client, &info.id, configdrive.as_ref()).await?.map(Arc::new);
    let target = s.mode.device_path(&device);
    let disk_bytes = target_size(&target).map_err(|e| ImageError::Write {
        device: device.clone(),
        msg: format!("cannot open {}: {e}", target.display()),
    })?;
    let mode = boot_mode(s, &info);
    let uefi = mode == "uefi";
    let mut uuids = Map::new();

    let location = info.urls.first().map(|u| ipa_http::redact(u)).unwrap_or_default();
    let dl = Download::new(client.clone(), &info.id, info.urls.clone());
    let mut spec = StreamSpec {
        image_id: info.id.clone(),
        location,
        expected,
        policy: policy(s, &info),
        target: target.clone(),
        device: device.clone(),
        base: 0,
        limit: (disk_bytes > 0).then_some(disk_bytes),
        readback: info.verify_readback || s.config.image.image_verify_readback,
        before_readback: None,
        metrics: Some(s.metrics.clone()),
    };
    if info.partition {
        if info.root_mb == 0 {
            return Err(ImageError::InvalidParams {
                details: "Image 'root_mb' must be set for partition images.".into(),
            });
        }
        let gpt = uefi || info.disk_label.as_deref() == Some("gpt");
        let cd_mb = cd.as_ref().map(|d| (d.len() as u64).div_ceil(MIB)).unwrap_or(0);
        let layout = {
            let (target, device, info, cd) =
                (target.clone(), device.clone(), info.clone(), cd.clone());
            blocking(move || {
                let f = open_rw(&target, &device)?;
                let layout = create_layout(&f, &device, disk_bytes, &info, uefi, gpt, cd_mb)?;
                if let (Some(r), Some(d)) = (layout.configdrive, cd.as_ref()) {
                    write_region(&f, &device, r, d)?;
                }
                Ok(layout)
            })
            .await?
        };
        let root = layout
            .root
            .ok_or_else(|| ImageError::Deployment { details: "no root partition".into() })?;
        rescan(s, &device).await;
        spec.base = root.offset;
        spec.limit = Some(root.len);
        stream_image(dl, spec, Some(ctx.clone())).await?;
        let p = |r: Option<Region>| r.map(|r| disk::partition_path(&device, r.number));
        if let Some(esp) = p(layout.esp) {
            fs_tool(
                s,
                "mkfs",
                vec!["-t".into(), "vfat".into(), "-n".into(), "efi-part".into(), esp],
            )
            .await?;
        }
        if let Some(sw) = p(layout.swap) {
            fs_tool(s, "mkswap", vec!["-L".into(), "swap1".into(), sw]).await?;
        }
        if let Some(eph) = p(layout.ephemeral)
            && !info.preserve_ephemeral
        {
            let fmt = info.ephemeral_format.clone().unwrap_or_else(|| "ext4".into());
            fs_tool(s, "mkfs", vec!["-t".into(), fmt, "-L".into(), "ephemeral0".into(), eph])
                .await?;
        }
        rescan(s, &device).await;
        let (target, dev) = (target.clone(), device.clone());
        let found = blocking(move || {
            let f = open_rw(&target, &dev)?;
            let table = disk::read_table(&f)
                .map_err(|e| ImageError::Deployment { details: e.to_string() })?;
            let uuid_of = |r: Region| {
                disk::fs_uuid(&f, r.offset).or_else(|| disk::part_uuid(&table, r.number))
            };
            let mut parts = Map::new();
            for (k, r) in [
                ("root", layout.root),
                ("swap", layout.swap),
                ("ephemeral", layout.ephemeral),
                ("configdrive", layout.configdrive),
                ("efi system partition", layout.esp),
                ("BIOS Boot partition", layout.bios),
            ] {
                if let Some(r) = r {
                    parts.insert(k.into(), json!(disk::partition_path(&dev, r.number)));
                }
            }
            Ok((parts, uuid_of(root).unwrap_or_default(), layout.esp.and_then(uuid_of)))
        })
        .await?;
        let (parts, root_uuid, esp_uuid) = found;
        uuids.insert("partitions".into(), Value::Object(parts));
        uuids.insert("root uuid".into(), json!(root_uuid));
        if let Some(e) = esp_uuid {
            uuids.insert("efi system partition uuid".into(), json!(e));
        }
    } else {
        stream_image(dl, spec, Some(ctx.clone())).await?;
        let (t, dev) = (target.clone(), device.clone());
        let (f, size) = blocking(move || {
            let f = Arc::new(open_rw(&t, &dev)?);
            let size = target_size(&t).unwrap_or(disk_bytes);
            match disk::fix_gpt_backup(&f, size) {
                Ok(true) => {
                    tracing::info!(device = %dev, "moved the backup GPT to the end of the disk")
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(device = %dev, error = %e, "fixing the backup GPT failed"),
            }
            Ok((f, size))
        })
        .await?;
        rescan(s, &device).await;
        let (f2, dev, cd2) = (f.clone(), device.clone(), cd.clone());
        let wrote_cd = blocking(move || {
            let f = &*f2;
            let table = disk::read_table(f).map_err(|e| ImageError::Deployment { details: e.to_string() })?;
            if table.count() == 0 {
                return Err(ImageError::Deployment { details: format!(
                    "No partitions found on the device {dev} after writing the image. The image \
                     is either not a whole disk image or it is corrupted."
                ) });
            }
            let Some(data) = cd2 else { return Ok(false) };
            let existing = match &table {
                Table::Gpt(g) => g
                    .parts
                    .iter()
                    .map(|p| Region {
                        number: p.number,
                        offset: p.first * disk::SECTOR,
                        len: (p.last + 1 - p.first) * disk::SECTOR,
                    })
                    .collect::<Vec<_>>(),
                Table::Mbr { parts, .. } => parts
                    .iter()
                    .map(|p| Region {
                        number: p.number,
                        offset: p.start * disk::SECTOR,
                        len: p.sectors * disk::SECTOR,
                    })
                    .collect(),
                Table::None => Vec::new(),
            };
            let reuse = existing.into_iter().find(|r| {
                disk::fs_label(f, r.offset).is_some_and(|l| l.eq_ignore_ascii_case("config-2"))
            });
            let region = match reuse {
                Some(r) => {
                    tracing::info!(partition = r.number, "reusing the existing config-2 partition");
                    r
                }
                None => disk::add_config_drive_partition(f, &dev, size, data.len() as u64)?,
            };
            write_region(f, &dev, region, &data)?;
            Ok(true)
        })
        .await?;
        if wrote_cd {
            rescan(s, &device).await;
        }
        let sig = blocking(move || {
            let mut sig = [0u8; 4];
            let _ = f.read_exact_at(&mut sig, 440);
            Ok(sig)
        })
        .await?;
        uuids.insert("root uuid".into(), json!(format!("0x{:08x}", u32::from_le_bytes(sig))));
    }
    let root = uuids.get("root uuid").and_then(Value::as_str).unwrap_or("").to_string();
    let mut msg = format!("image ({}) written to device {device} root_uuid={root}", info.id);
    if uefi && let Some(e) = uuids.get("efi system partition uuid").and_then(Value::as_str) {
        msg.push_str(&format!(" efi_system_partition_uuid={e}"));
    }
    {
        let mut st = state.write().unwrap_or_else(|p| p.into_inner());
        st.cached_image_id = Some(info.id.clone());
        st.partition_uuids = uuids;
    }
    Ok(msg)
}
