//! Inspection on boot (spec `ipa-agent.md` §4.8, `ironic-contract.md` §3.5, §5.4): collect the
//! inventory from the hardware managers and POST it, with `root_disk`, `boot_interface` and
//! `configuration`, to each `inspection_callback_url`. The reply's `uuid` feeds lookup.

use std::time::Duration;

use ipa_core::config::AgentConfig;
use ipa_core::hardware::{BlockDevice, HardwareManagers, Inventory};
use serde_json::{Value, json};

use crate::client::IronicClient;
use crate::error::IronicError;

/// Smallest disk IPA will guess as root: 4 GiB.
pub const MIN_ROOT_DISK: u64 = 4 * 1024 * 1024 * 1024;

/// IPA's `guess_root_disk`: the smallest device of at least 4 GiB (ties by name).
pub fn guess_root_disk(disks: &[BlockDevice]) -> Option<&BlockDevice> {
    let mut v: Vec<&BlockDevice> = disks.iter().filter(|d| d.size >= MIN_ROOT_DISK).collect();
    v.sort_by(|a, b| a.size.cmp(&b.size).then_with(|| a.name.cmp(&b.name)));
    v.first().copied()
}

/// `BOOTIF=01-aa-bb-cc-dd-ee-ff` → `aa:bb:cc:dd:ee:ff`.
pub fn bootif_mac(bootif: &str) -> Option<String> {
    let s = bootif.trim().to_ascii_lowercase();
    let parts: Vec<&str> = s.split(['-', ':']).collect();
    let parts = match parts.len() {
        7 => &parts[1..],
        6 => &parts[..],
        _ => return None,
    };
    if parts.iter().all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit())) {
        Some(parts.join(":"))
    } else {
        None
    }
}

/// Build the payload from an inventory.
pub fn payload(config: &AgentConfig, hw: &HardwareManagers, inventory: &Inventory) -> Value {
    let root_disk = guess_root_disk(&inventory.disks)
        .and_then(|d| serde_json::to_value(d).ok())
        .unwrap_or(Value::Null);
    let boot_interface = config
        .agent
        .bootif
        .as_deref()
        .and_then(bootif_mac)
        .or_else(|| inventory.boot.pxe_interface.clone());
    let collectors: Vec<&str> = config
        .inspection
        .inspection_collectors
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let managers: Vec<Value> = hw
        .ranked()
        .iter()
        .map(|r| {
            let v = r.manager.version();
            json!({"name": v.name, "version": v.version})
        })
        .collect();
    json!({
        "inventory": inventory,
        "root_disk": root_disk,
        "boot_interface": boot_interface,
        "configuration": {"collectors": collectors, "managers": managers},
        "error": Value::Null,
    })
}

/// Where to POST: the comma-separated `inspection_callback_url` entries.
pub fn callback_urls(config: &AgentConfig) -> Vec<String> {
    config
        .inspection
        .inspection_callback_url
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != "mdns")
        .map(str::to_string)
        .collect()
}

/// Collect and post. Returns the node UUID from the (last successful) reply.
///
/// `logs` is the `logs` collector's output (base64 tar.gz of the system logs), added as the
/// payload's `logs` key when given.
pub async fn inspect(
    config: &AgentConfig,
    hw: &HardwareManagers,
    client: &IronicClient,
    logs: Option<String>,
) -> Result<Option<String>, IronicError> {
    let urls = callback_urls(config);
    if urls.is_empty() {
        return Err(IronicError::Inspection("no usable inspection_callback_url".into()));
    }
    let inventory = hw.list_hardware_info().await?;
    let mut data = payload(config, hw, &inventory);
    if let (Some(logs), Some(obj)) = (logs, data.as_object_mut()) {
        obj.insert("logs".into(), Value::String(logs));
    }
    let mut uuid = None;
    for url in &urls {
        let reply = post_with_retry(client, url, &data).await?;
        tracing::info!(url = %url, "inspection data accepted");
        if let Some(u) = reply.get("uuid").and_then(Value::as_str) {
            uuid = Some(u.to_string());
        }
    }
    Ok(uuid)
}

/// Five attempts; waits `1.5 × 2^n` clamped to 5–30 s; retried on connection errors, 5xx, 409.
async fn post_with_retry(
    client: &IronicClient,
    url: &str,
    data: &Value,
) -> Result<Value, IronicError> {
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match client.post_inspection(url, data).await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() && attempt < 5 => {
                let wait = (1.5 * f64::from(1u32 << attempt)).clamp(5.0, 30.0);
                tracing::warn!(error = %e, attempt, wait, "inspection post failed; retrying");
                tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(name: &str, gib: u64) -> BlockDevice {
        BlockDevice { name: name.into(), size: gib << 30, ..Default::default() }
    }

    #[test]
    fn root_disk_is_the_smallest_of_at_least_4_gib() {
        let d =
            [disk("/dev/sdc", 100), disk("/dev/sda", 2), disk("/dev/sdb", 8), disk("/dev/sdd", 8)];
        assert_eq!(guess_root_disk(&d).unwrap().name, "/dev/sdb");
        assert!(guess_root_disk(&[disk("/dev/x", 3)]).is_none());
    }

    #[test]
    fn bootif_becomes_a_mac() {
        assert_eq!(bootif_mac("01-AA-bb-cc-dd-ee-ff").as_deref(), Some("aa:bb:cc:dd:ee:ff"));
        assert_eq!(bootif_mac("aa:bb:cc:dd:ee:ff").as_deref(), Some("aa:bb:cc:dd:ee:ff"));
        assert_eq!(bootif_mac("garbage"), None);
    }

    #[test]
    fn callback_urls_split() {
        let mut c = AgentConfig::default();
        c.inspection.inspection_callback_url =
            Some("http://a/v1/continue_inspection, mdns,".into());
        assert_eq!(callback_urls(&c), ["http://a/v1/continue_inspection"]);
    }
}
