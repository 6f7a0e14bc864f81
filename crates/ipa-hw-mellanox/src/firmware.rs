//! The two firmware steps: `update_nvidia_nic_firmware_image` and
//! `update_nvidia_nic_firmware_settings`.
//!
//! Both validate everything first (arguments, devices, downloads, checksums, the image's own
//! PSID and version, setting names) and only then write: a wrong image or an unknown setting is
//! refused before any `mstflint … burn` or `mstconfig … set` runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ipa_core::Params;
use ipa_core::os::{CommandRunner, ExecOutput, ExecRequest};
use ipa_http::download::HttpOptions;
use serde_json::{Map, Value, json};

use crate::download::{ChecksumType, fetch};
use crate::error::MellanoxError;
use crate::sysfs::Sysfs;

/// The firmware flashing tool.
pub const MSTFLINT: &str = "mstflint";
/// The firmware configuration tool (the open-source `mlxconfig`).
pub const MSTCONFIG: &str = "mstconfig";

/// What the steps need from the manager.
#[derive(Debug, Clone)]
pub struct FirmwareContext {
    /// sysfs under the root prefix.
    pub sysfs: Sysfs,
    /// Runs mstflint / mstconfig.
    pub runner: Arc<dyn CommandRunner>,
    /// Where images are downloaded (a per-call directory is made and removed inside).
    pub work_dir: PathBuf,
    /// False in sandbox mode: everything is validated, but nothing is written.
    pub allow_writes: bool,
    /// Download settings (ipa-image's client): timeouts, retries, CA file / insecure, proxies.
    pub http: HttpOptions,
}

async fn run(ctx: &FirmwareContext, req: ExecRequest) -> Result<ExecOutput, MellanoxError> {
    let command = req.command_line();
    let out = ctx.runner.run(req).await?;
    if !out.success() {
        let stderr = if out.stderr.trim().is_empty() { &out.stdout } else { &out.stderr };
        return Err(MellanoxError::Tool {
            command,
            status: out.status,
            stderr: stderr.trim().into(),
        });
    }
    Ok(out)
}

/// `PSID` and `FW Version` from `mstflint … query` output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FwInfo {
    /// Parameter-set id: which board the firmware is for (`MT_0000000080`).
    pub psid: Option<String>,
    /// Running (device) or contained (image file) firmware version (`16.35.2000`).
    pub version: Option<String>,
}

/// Parse `key: value` lines of `mstflint query`.
pub fn parse_query(stdout: &str) -> FwInfo {
    let mut info = FwInfo::default();
    for line in stdout.lines() {
        let Some((k, v)) = line.split_once(':') else { continue };
        let v = v.split_whitespace().next().unwrap_or("").to_string();
        match k.trim() {
            "PSID" if !v.is_empty() => info.psid = Some(v),
            "FW Version" if !v.is_empty() => info.version = Some(v),
            _ => {}
        }
    }
    info
}

/// One entry of the `images` argument (IPA's key names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// `url`: `http://`, `https://` or `file://`.
    pub url: String,
    /// `checksum`: hex digest of the file.
    pub checksum: String,
    /// `checksumType` (`md5`, `sha256`, `sha512`), inferred from the length when absent.
    pub checksum_type: ChecksumType,
    /// `componentFlavor`: the PSID of the NICs this image is for.
    pub psid: String,
    /// `version`: the firmware version the image contains.
    pub version: String,
}

fn str_field(
    obj: &Map<String, Value>,
    key: &str,
    i: usize,
    arg: &str,
) -> Result<String, MellanoxError> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err(MellanoxError::InvalidArgs(format!(
            "{arg}[{i}]: \"{key}\" is required and must be a non-empty string"
        ))),
    }
}

/// Validate the `images` argument.
pub fn parse_images(args: &Params) -> Result<Vec<ImageSpec>, MellanoxError> {
    let Some(Value::Array(items)) = args.get("images") else {
        return Err(MellanoxError::InvalidArgs(
            "update_nvidia_nic_firmware_image requires \"images\", a list of {url, checksum, checksumType, componentFlavor, version}".into(),
        ));
    };
    if items.is_empty() {
        return Err(MellanoxError::InvalidArgs("\"images\" is empty".into()));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let Value::Object(o) = item else {
                return Err(MellanoxError::InvalidArgs(format!("images[{i}] is not an object")));
            };
            let checksum = str_field(o, "checksum", i, "images")?.to_ascii_lowercase();
            let declared = o.get("checksumType").and_then(Value::as_str);
            let checksum_type = ChecksumType::resolve(declared, &checksum)
                .map_err(|e| MellanoxError::InvalidArgs(format!("images[{i}]: {e}")))?;
            Ok(ImageSpec {
                url: str_field(o, "url", i, "images")?,
                checksum,
                checksum_type,
                psid: str_field(o, "componentFlavor", i, "images")?,
                version: str_field(o, "version", i, "images")?,
            })
        })
        .collect()
}

/// One adapter: function 0 of each Mellanox PCI device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    /// PCI address of function 0 (`0000:3b:00.0`).
    pub pci: String,
    /// PCI device id without `0x`, lower case (`1017`).
    pub device_id: String,
}

fn norm_device_id(s: &str) -> String {
    s.trim().trim_start_matches("0x").trim_start_matches("0X").to_ascii_lowercase()
}

fn card_base(pci: &str) -> &str {
    pci.rsplit_once('.').map(|(b, _)| b).unwrap_or(pci)
}

/// Adapters (one per PCI device, firmware is per adapter), from sysfs.
pub fn cards(sysfs: &Sysfs) -> Vec<Card> {
    let mut by_base: BTreeMap<String, Card> = BTreeMap::new();
    for (pci, device) in sysfs.mellanox_pci_functions() {
        by_base
            .entry(card_base(&pci).to_string())
            .or_insert(Card { pci: pci.clone(), device_id: norm_device_id(&device) });
    }
    by_base.into_values().collect()
}

static CALLS: AtomicU64 = AtomicU64::new(0);

struct WorkDir(PathBuf);

impl WorkDir {
    async fn create(base: &Path) -> Result<Self, MellanoxError> {
        let n = CALLS.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("nvidia-nic-fw-{}-{n}", std::process::id()));
        tokio::fs::create_dir_all(&dir).await.map_err(|source| MellanoxError::Io {
            context: format!("creating {}", dir.display()),
            source,
        })?;
        Ok(Self(dir))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `update_nvidia_nic_firmware_image(images)`.
pub async fn update_images(ctx: &FirmwareContext, args: &Params) -> Result<Value, MellanoxError> {
    let images = parse_images(args)?;
    let cards = cards(&ctx.sysfs);
    if cards.is_empty() {
        return Err(MellanoxError::NoDevice("no NVIDIA (vendor 0x15b3) NIC found".into()));
    }
    // 1. What is running on each adapter.
    let mut running = Vec::new();
    for c in &cards {
        let out =
            run(ctx, ExecRequest::new(MSTFLINT, ["-d", c.pci.as_str(), "-qq", "query"])).await?;
        let info = parse_query(&out.stdout);
        tracing::info!(pci = %c.pci, psid = ?info.psid, version = ?info.version, "NVIDIA NIC firmware");
        running.push((c.clone(), info));
    }
    // 2. Which image goes to which adapter.
    let mut plan: Vec<(ImageSpec, Vec<(Card, FwInfo)>)> = Vec::new();
    let mut skipped = Vec::new();
    for img in images {
        let targets: Vec<(Card, FwInfo)> = running
            .iter()
            .filter(|(_, info)| info.psid.as_deref() == Some(img.psid.as_str()))
            .cloned()
            .collect();
        if targets.is_empty() {
            tracing::warn!(psid = %img.psid, url = %img.url, "no NIC with this PSID; image skipped");
            skipped
                .push(json!({"url": img.url, "reason": format!("no NIC with PSID {}", img.psid)}));
            continue;
        }
        let (current, outdated): (Vec<_>, Vec<_>) = targets
            .into_iter()
            .partition(|(_, info)| info.version.as_deref() == Some(img.version.as_str()));
        for (c, _) in current {
            skipped.push(
                json!({"pci": c.pci, "reason": format!("already at version {}", img.version)}),
            );
        }
        if !outdated.is_empty() {
            plan.push((img, outdated));
        }
    }
    // 3. Fetch and verify every image before flashing anything.
    let work = WorkDir::create(&ctx.work_dir).await?;
    let mut verified = Vec::new();
    for (i, (img, targets)) in plan.into_iter().enumerate() {
        let path = work.0.join(format!("image-{i}.bin"));
        let actual = fetch(&img.url, &path, img.checksum_type, &ctx.http).await?;
        if actual != img.checksum {
            return Err(MellanoxError::Checksum {
                url: img.url.clone(),
                path: path.display().to_string(),
                expected: img.checksum.clone(),
                actual,
            });
        }
        let path_s = path.display().to_string();
        let out = run(ctx, ExecRequest::new(MSTFLINT, ["-i", path_s.as_str(), "query"])).await?;
        let inside = parse_query(&out.stdout);
        if inside.psid.as_deref() != Some(img.psid.as_str()) {
            return Err(MellanoxError::WrongImage {
                url: img.url.clone(),
                reason: format!(
                    "the image is for PSID {}, not {} (componentFlavor); nothing was flashed",
                    inside.psid.as_deref().unwrap_or("<unknown>"),
                    img.psid
                ),
            });
        }
        if inside.version.as_deref() != Some(img.version.as_str()) {
            return Err(MellanoxError::WrongImage {
                url: img.url.clone(),
                reason: format!(
                    "the image contains firmware version {}, not {}; nothing was flashed",
                    inside.version.as_deref().unwrap_or("<unknown>"),
                    img.version
                ),
            });
        }
        verified.push((img, path_s, targets));
    }
    // 4. Flash.
    let mut updated = Vec::new();
    for (img, path, targets) in &verified {
        for (card, info) in targets {
            if !ctx.allow_writes {
                return Err(MellanoxError::Sandbox {
                    action: format!("flash firmware {} ({})", img.version, img.url),
                    pci: card.pci.clone(),
                });
            }
            tracing::warn!(pci = %card.pci, from = ?info.version, to = %img.version, "flashing NVIDIA NIC firmware");
            run(
                ctx,
                ExecRequest::new(
                    MSTFLINT,
                    ["-d", card.pci.as_str(), "-i", path.as_str(), "-y", "burn"],
                ),
            )
            .await?;
            updated.push(json!({
                "pci": card.pci, "psid": img.psid,
                "from": info.version, "to": img.version,
            }));
        }
    }
    Ok(json!({"updated": updated, "skipped": skipped}))
}

/// One entry of the `settings` argument (IPA's key names).
#[derive(Debug, Clone, PartialEq)]
pub struct SettingSpec {
    /// `deviceID`: PCI device id the entry applies to (`1017`).
    pub device_id: String,
    /// Parameters per PCI function: `globalConfig` and `function0Config` go to function 0,
    /// `functionNConfig` to function N.
    pub per_function: BTreeMap<u32, Vec<(String, String)>>,
}

fn setting_value(v: &Value) -> Option<String> {
    match v {
        Value::Bool(true) => Some("True".into()),
        Value::Bool(false) => Some("False".into()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() && !s.contains(char::is_whitespace) => Some(s.clone()),
        _ => None,
    }
}

fn valid_param_name(name: &str) -> bool {
    let base = name.split('[').next().unwrap_or("");
    !base.is_empty()
        && base.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && name[base.len()..].chars().all(|c| c.is_ascii_digit() || c == '[' || c == ']')
}

/// Validate the `settings` argument.
pub fn parse_settings(args: &Params) -> Result<Vec<SettingSpec>, MellanoxError> {
    let Some(Value::Array(items)) = args.get("settings") else {
        return Err(MellanoxError::InvalidArgs(
            "update_nvidia_nic_firmware_settings requires \"settings\", a list of {deviceID, globalConfig, functionNConfig}".into(),
        ));
    };
    if items.is_empty() {
        return Err(MellanoxError::InvalidArgs("\"settings\" is empty".into()));
    }
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Value::Object(o) = item else {
            return Err(MellanoxError::InvalidArgs(format!("settings[{i}] is not an object")));
        };
        let device_id = norm_device_id(&str_field(o, "deviceID", i, "settings")?);
        let mut per_function: BTreeMap<u32, Vec<(String, String)>> = BTreeMap::new();
        for (key, val) in o {
            let function = if key == "globalConfig" {
                0
            } else if let Some(n) =
                key.strip_prefix("function").and_then(|r| r.strip_suffix("Config"))
            {
                n.parse::<u32>().map_err(|_| {
                    MellanoxError::InvalidArgs(format!("settings[{i}]: unknown key \"{key}\""))
                })?
            } else if key == "deviceID" {
                continue;
            } else {
                return Err(MellanoxError::InvalidArgs(format!(
                    "settings[{i}]: unknown key \"{key}\""
                )));
            };
            let Value::Object(params) = val else {
                return Err(MellanoxError::InvalidArgs(format!(
                    "settings[{i}].{key} is not an object"
                )));
            };
            for (name, v) in params {
                if !valid_param_name(name) {
                    return Err(MellanoxError::InvalidArgs(format!(
                        "settings[{i}].{key}: invalid parameter name {name:?}"
                    )));
                }
                let value = setting_value(v).ok_or_else(|| {
                    MellanoxError::InvalidArgs(format!(
                        "settings[{i}].{key}.{name}: value must be a boolean, a number or a word"
                    ))
                })?;
                per_function.entry(function).or_default().push((name.clone(), value));
            }
        }
        if per_function.is_empty() {
            return Err(MellanoxError::InvalidArgs(format!("settings[{i}] sets nothing")));
        }
        out.push(SettingSpec { device_id, per_function });
    }
    Ok(out)
}

/// Parameter names listed by `mstconfig -d PCI -e q`.
pub fn parse_config_names(stdout: &str) -> Vec<String> {
    let mut in_table = false;
    let mut names = Vec::new();
    for line in stdout.lines() {
        if line.trim_start().starts_with("Configurations:") {
            in_table = true;
            continue;
        }
        if !in_table {
            continue;
        }
        let mut words = line.split_whitespace();
        let Some(mut first) = words.next() else { continue };
        if first == "*" {
            first = words.next().unwrap_or("");
        }
        let first = first.trim_start_matches('*');
        if valid_param_name(first) {
            names.push(first.to_string());
        }
    }
    names
}

/// `update_nvidia_nic_firmware_settings(settings)`.
pub async fn update_settings(ctx: &FirmwareContext, args: &Params) -> Result<Value, MellanoxError> {
    let specs = parse_settings(args)?;
    let functions: Vec<(String, String)> = ctx
        .sysfs
        .mellanox_pci_functions()
        .into_iter()
        .map(|(pci, dev)| (pci, norm_device_id(&dev)))
        .collect();
    // (pci, [(name, value)]) in a stable order.
    let mut plan: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut skipped = Vec::new();
    for spec in &specs {
        let bases: Vec<&str> = {
            let mut b: Vec<&str> = functions
                .iter()
                .filter(|(_, dev)| *dev == spec.device_id)
                .map(|(pci, _)| card_base(pci))
                .collect();
            b.dedup();
            b
        };
        if bases.is_empty() {
            tracing::warn!(device_id = %spec.device_id, "no NVIDIA NIC with this device id; settings skipped");
            skipped
                .push(json!({"deviceID": spec.device_id, "reason": "no NIC with this device id"}));
            continue;
        }
        for base in bases {
            for (function, params) in &spec.per_function {
                let pci = format!("{base}.{function}");
                if !functions.iter().any(|(p, _)| *p == pci) {
                    return Err(MellanoxError::NoDevice(format!(
                        "settings for function {function} of device {}: {pci} does not exist",
                        spec.device_id
                    )));
                }
                plan.entry(pci).or_default().extend(params.iter().cloned());
            }
        }
    }
    // Every name must exist on its device before anything is set.
    for (pci, params) in &plan {
        let out = run(ctx, ExecRequest::new(MSTCONFIG, ["-d", pci.as_str(), "-e", "q"])).await?;
        let known = parse_config_names(&out.stdout);
        if let Some((name, _)) = params.iter().find(|(n, _)| !known.contains(n)) {
            return Err(MellanoxError::UnknownSetting { name: name.clone(), pci: pci.clone() });
        }
    }
    let mut applied = Vec::new();
    for (pci, params) in &plan {
        if !ctx.allow_writes {
            return Err(MellanoxError::Sandbox {
                action: "change firmware settings".into(),
                pci: pci.clone(),
            });
        }
        let mut a = vec!["-d".to_string(), pci.clone(), "-y".into(), "set".into()];
        a.extend(params.iter().map(|(n, v)| format!("{n}={v}")));
        run(ctx, ExecRequest::new(MSTCONFIG, a)).await?;
        let set: Map<String, Value> = params.iter().map(|(n, v)| (n.clone(), json!(v))).collect();
        applied.push(json!({"pci": pci, "settings": set}));
    }
    Ok(json!({"applied": applied, "skipped": skipped}))
}
