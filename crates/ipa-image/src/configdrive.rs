//! Config drive input (§6.8): an inline gzip+base64 string or a URL, bounded to 64 MiB.

use std::io::Read;

use base64::Engine as _;
use serde_json::Value;

use crate::error::{ImageError, Result};
use ipa_http::download::DownloadClient;

/// Largest accepted config drive, decoded.
pub const MAX_CONFIG_DRIVE: u64 = 64 << 20;

fn b64(s: &[u8]) -> Option<Vec<u8>> {
    let clean: Vec<u8> = s.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(&clean).ok()
}

fn gunzip_bounded(data: Vec<u8>) -> Result<Vec<u8>> {
    if !data.starts_with(&[0x1f, 0x8b]) {
        return Ok(data);
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(&data[..])
        .take(MAX_CONFIG_DRIVE + 1)
        .read_to_end(&mut out)
        .map_err(|e| ImageError::Deployment {
        details: format!("Config drive could not be decompressed: {e}"),
    })?;
    Ok(out)
}

/// The config drive image bytes, or `None` if there is none. Never logs the contents.
pub async fn fetch(
    client: &DownloadClient,
    node: &str,
    value: Option<&Value>,
) -> Result<Option<Vec<u8>>> {
    let s = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.is_empty() => return Ok(None),
        Some(Value::String(s)) => s,
        Some(_) => {
            return Err(ImageError::Deployment {
                details:
                    "Config drive must be a string (gzip+base64 ISO or URL); build it in Ironic"
                        .into(),
            });
        }
    };
    let data = if crate::info::is_url(s) {
        let raw = client
            .fetch_small(node, std::slice::from_ref(s), (MAX_CONFIG_DRIVE * 2) as usize)
            .await
            .map_err(|e| ImageError::Deployment {
                details: format!("Can't download the configdrive content for node {node}: {e}"),
            })?;
        match b64(&raw) {
            Some(d) => gunzip_bounded(d)?,
            None => raw.to_vec(),
        }
    } else {
        let d = b64(s.as_bytes()).ok_or_else(|| ImageError::Deployment {
            details: format!(
                "Config drive for node {node} is not base64 encoded or the content is malformed."
            ),
        })?;
        gunzip_bounded(d)?
    };
    Ok(Some(data))
}
