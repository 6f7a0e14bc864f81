//! `image_info` as Ironic sends it (ironic-contract §2.2), and IPA's synchronous validation
//! (ipa-agent §6.1).

use serde_json::{Map, Value};

use crate::error::{ImageError, Result};

/// The fields of `image_info` the pipeline consumes. Secrets (`image_server_password`,
/// `image_request_authorization`) are never printed by `Debug`.
#[derive(Clone, Default)]
pub struct ImageInfo {
    /// Image id (last path segment of the image source).
    pub id: String,
    /// URLs, tried in order.
    pub urls: Vec<String>,
    /// Legacy checksum, or a checksum-file URL.
    pub checksum: Option<String>,
    /// `os_hash_algo`.
    pub os_hash_algo: Option<String>,
    /// `os_hash_value` (may be a URL).
    pub os_hash_value: Option<String>,
    /// `disk_format` (`raw`, `qcow2`, `gpt`, null).
    pub disk_format: Option<String>,
    /// `image_type == "partition"`.
    pub partition: bool,
    /// Partition layout (partition images).
    pub root_mb: u64,
    /// Swap size in MiB.
    pub swap_mb: u64,
    /// Ephemeral size in MiB.
    pub ephemeral_mb: u64,
    /// Ephemeral filesystem.
    pub ephemeral_format: Option<String>,
    /// Keep the ephemeral partition.
    pub preserve_ephemeral: bool,
    /// `uefi` or `bios`.
    pub deploy_boot_mode: Option<String>,
    /// `gpt` or `msdos`.
    pub disk_label: Option<String>,
    /// `{"http": …, "https": …}`.
    pub proxies: Vec<(String, String)>,
    /// Comma-separated hosts that bypass the proxy.
    pub no_proxy: Option<String>,
    /// `http_basic` or `noauth`.
    pub auth_strategy: Option<String>,
    /// Basic-auth user.
    pub user: Option<String>,
    /// Basic-auth password (secret).
    pub password: Option<String>,
    /// Base64 of a full `Authorization` header value (secret).
    pub request_authorization: Option<String>,
    /// Legacy location of the config drive.
    pub configdrive: Option<Value>,
    /// `image_verify_readback`: re-read and compare the written bytes.
    pub verify_readback: bool,
}

impl std::fmt::Debug for ImageInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageInfo")
            .field("id", &self.id)
            .field("urls", &self.urls)
            .field("disk_format", &self.disk_format)
            .field("partition", &self.partition)
            .finish_non_exhaustive()
    }
}

fn s(m: &Map<String, Value>, k: &str) -> Option<String> {
    match m.get(k) {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    }
}

fn mb(m: &Map<String, Value>, k: &str) -> Result<u64> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => Ok(n.as_f64().unwrap_or(0.0).max(0.0) as u64),
        Some(Value::String(s)) => {
            s.trim().parse::<f64>().map(|v| v.max(0.0) as u64).map_err(|_| {
                ImageError::InvalidParams { details: format!("Image '{k}' must be a number.") }
            })
        }
        Some(_) => {
            Err(ImageError::InvalidParams { details: format!("Image '{k}' must be a number.") })
        }
    }
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => ipa_core::config::parse_bool(s).unwrap_or(false),
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0) != 0.0,
        _ => false,
    }
}

/// Whether a checksum value is a URL to a checksum file.
pub(crate) fn is_url(v: &str) -> bool {
    v.starts_with("http://") || v.starts_with("https://")
}

/// IPA's `_validate_image_info`: the checks that make `prepare_image` answer 400.
pub fn validate_image_info(info: Option<&Value>, md5_enabled: bool) -> Result<()> {
    let empty = Map::new();
    let m = match info {
        Some(Value::Object(m)) => m,
        _ => &empty,
    };
    for field in ["id", "urls"] {
        if !m.contains_key(field) {
            return Err(ImageError::InvalidParams {
                details: format!("Image is missing '{field}' field."),
            });
        }
    }
    match m.get("urls") {
        Some(Value::Array(a)) if !a.is_empty() => {}
        _ => {
            return Err(ImageError::InvalidParams {
                details: "Image 'urls' must be a list with at least one element.".into(),
            });
        }
    }
    let mut avail = false;
    if let Some(c) = m.get("checksum").filter(|v| !v.is_null()) {
        match c {
            Value::String(c) if !c.is_empty() => {
                if is_url(c) || c.len() > 32 || md5_enabled {
                    avail = true;
                }
            }
            _ => {
                return Err(ImageError::InvalidParams {
                    details: "Image 'checksum' must be a non-empty string.".into(),
                });
            }
        }
    }
    let algo = m.get("os_hash_algo").filter(|v| !v.is_null());
    let value = m.get("os_hash_value").filter(|v| !v.is_null());
    let nonempty = |v: Option<&Value>| matches!(v, Some(Value::String(s)) if !s.is_empty());
    if algo.is_some() || value.is_some() {
        if !nonempty(algo) {
            return Err(ImageError::InvalidParams {
                details: "Image 'os_hash_algo' must be a non-empty string.".into(),
            });
        }
        if !nonempty(value) {
            return Err(ImageError::InvalidParams {
                details: "Image 'os_hash_value' must be a non-empty string.".into(),
            });
        }
        avail = true;
    }
    if !avail {
        return Err(ImageError::InvalidParams { details: "Image checksum is not available, either the 'checksum' field or the 'os_hash_algo' \
             and 'os_hash_value' fields pair must be set for image verification."
                .into() });
    }
    Ok(())
}

impl ImageInfo {
    /// Parse a validated `image_info` object.
    pub fn parse(v: &Value) -> Result<Self> {
        let m = v.as_object().ok_or_else(|| ImageError::InvalidParams {
            details: "image_info must be an object".into(),
        })?;
        let id = match m.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(other) if !other.is_null() => other.to_string(),
            _ => {
                return Err(ImageError::InvalidParams {
                    details: "Image is missing 'id' field.".into(),
                });
            }
        };
        let urls = m
            .get("urls")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect::<Vec<_>>())
            .unwrap_or_default();
        let proxies = m
            .get("proxies")
            .and_then(Value::as_object)
            .map(|p| {
                p.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .filter(|(_, v)| !v.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            id,
            urls,
            checksum: s(m, "checksum").filter(|c| !c.is_empty()),
            os_hash_algo: s(m, "os_hash_algo").filter(|c| !c.is_empty()),
            os_hash_value: s(m, "os_hash_value").filter(|c| !c.is_empty()),
            disk_format: s(m, "disk_format"),
            partition: s(m, "image_type").as_deref() == Some("partition"),
            root_mb: mb(m, "root_mb")?,
            swap_mb: mb(m, "swap_mb")?,
            ephemeral_mb: mb(m, "ephemeral_mb")?,
            ephemeral_format: s(m, "ephemeral_format"),
            preserve_ephemeral: truthy(m.get("preserve_ephemeral")),
            deploy_boot_mode: s(m, "deploy_boot_mode"),
            disk_label: s(m, "disk_label"),
            proxies,
            no_proxy: s(m, "no_proxy").filter(|c| !c.is_empty()),
            auth_strategy: s(m, "image_server_auth_strategy"),
            user: s(m, "image_server_user"),
            password: s(m, "image_server_password"),
            request_authorization: s(m, "image_request_authorization"),
            configdrive: m.get("configdrive").filter(|v| !v.is_null()).cloned(),
            verify_readback: truthy(m.get("image_verify_readback")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn validation_follows_ipa_rules() {
        let ok = json!({"id": "x", "urls": ["http://a/x"], "os_hash_algo": "sha256", "os_hash_value": "ab"});
        validate_image_info(Some(&ok), false).unwrap();
        let e = validate_image_info(Some(&json!({"urls": ["u"]})), true).unwrap_err();
        assert_eq!(e.to_string(), "Image is missing 'id' field.");
        let e = validate_image_info(Some(&json!({"id": "x", "urls": []})), true).unwrap_err();
        assert!(e.to_string().contains("at least one element"));
        let md5 = json!({"id": "x", "urls": ["u"], "checksum": "0123456789abcdef0123456789abcdef"});
        validate_image_info(Some(&md5), true).unwrap();
        assert!(validate_image_info(Some(&md5), false).is_err());
        let half = json!({"id": "x", "urls": ["u"], "os_hash_algo": "sha256"});
        assert!(
            validate_image_info(Some(&half), true)
                .unwrap_err()
                .to_string()
                .contains("os_hash_value")
        );
    }
}
