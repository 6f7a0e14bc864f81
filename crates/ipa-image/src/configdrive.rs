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
    // Inflating stops one byte past the limit: a gzip bomb costs at most 64 MiB + 1 byte of
    // memory, and the partition step refuses anything over 64 MiB with IPA's text.
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
        decode_downloaded(&raw)?
    } else {
        decode_inline(node, s)?
    };
    Ok(Some(data))
}

/// An inline config drive (Ironic's gzip+base64 string) → the image bytes. Decompression
/// stops at [`MAX_CONFIG_DRIVE`] + 1 byte; anything that long is refused when the config drive
/// partition is made (IPA's "exceeds maximum limit of 64MiB").
pub fn decode_inline(node: &str, s: &str) -> Result<Vec<u8>> {
    let d = b64(s.as_bytes()).ok_or_else(|| ImageError::Deployment {
        details: format!(
            "Config drive for node {node} is not base64 encoded or the content is malformed."
        ),
    })?;
    gunzip_bounded(d)
}

/// A downloaded config drive: gzip+base64 like the inline form, or the raw image.
pub fn decode_downloaded(raw: &[u8]) -> Result<Vec<u8>> {
    match b64(raw) {
        Some(d) => gunzip_bounded(d),
        None => Ok(raw.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip_b64(data: &[u8]) -> String {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(data).unwrap();
        base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap())
    }

    #[test]
    fn inline_gzip_base64_decodes_to_the_image_and_garbage_is_a_clear_error() {
        let iso = b"CD001 a tiny config drive".repeat(100);
        assert_eq!(decode_inline("n1", &gzip_b64(&iso)).unwrap(), iso);
        let e = decode_inline("n1", "not base64 at all!").unwrap_err().to_string();
        assert!(e.contains("not base64 encoded"), "{e}");
        // A downloaded raw image that is not base64 is taken as is.
        assert_eq!(decode_downloaded(&[0xff, 0, 1]).unwrap(), vec![0xff, 0, 1]);
    }

    #[test]
    fn a_gzip_bomb_stops_inflating_one_byte_past_64_mib() {
        let bomb = vec![0u8; 3 * MAX_CONFIG_DRIVE as usize];
        let d = decode_inline("n1", &gzip_b64(&bomb)).unwrap();
        assert_eq!(d.len() as u64, MAX_CONFIG_DRIVE + 1, "bounded, and too long to be accepted");
        let fits = vec![0u8; MAX_CONFIG_DRIVE as usize];
        assert_eq!(decode_inline("n1", &gzip_b64(&fits)).unwrap().len(), fits.len());
    }
}
