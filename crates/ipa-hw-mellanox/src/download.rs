//! Streaming firmware download (`http://`, `https://`, `file://`) through ipa-image's client,
//! with the checksum computed on the way to disk: the image is never held in memory.

use std::path::Path;
use std::sync::Arc;

use ipa_http::download::{DownloadClient, DownloadError, HttpOptions, download_to_file};
use md5::Digest as _;

use crate::error::MellanoxError;

/// Checksum algorithms IPA accepts for firmware images (`checksumType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumType {
    /// MD5 (32 hex digits).
    Md5,
    /// SHA-256 (64 hex digits).
    Sha256,
    /// SHA-512 (128 hex digits).
    Sha512,
}

impl ChecksumType {
    /// From `checksumType`, or from the checksum's length when the type is not given.
    pub fn resolve(declared: Option<&str>, checksum: &str) -> Result<Self, String> {
        match declared.map(str::to_ascii_lowercase).as_deref() {
            Some("md5") => Ok(Self::Md5),
            Some("sha256") => Ok(Self::Sha256),
            Some("sha512") => Ok(Self::Sha512),
            Some(other) => {
                Err(format!("unsupported checksumType {other:?} (expected md5, sha256 or sha512)"))
            }
            None => match checksum.len() {
                32 => Ok(Self::Md5),
                64 => Ok(Self::Sha256),
                128 => Ok(Self::Sha512),
                n => Err(format!("cannot infer the checksum type of a {n}-character checksum")),
            },
        }
    }
}

enum Hasher {
    Md5(md5::Md5),
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn new(t: ChecksumType) -> Self {
        match t {
            ChecksumType::Md5 => Self::Md5(md5::Md5::new()),
            ChecksumType::Sha256 => Self::Sha256(sha2::Sha256::new()),
            ChecksumType::Sha512 => Self::Sha512(sha2::Sha512::new()),
        }
    }
    fn update(&mut self, data: &[u8]) {
        match self {
            Self::Md5(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
            Self::Sha512(h) => h.update(data),
        }
    }
    fn hex(self) -> String {
        match self {
            Self::Md5(h) => hex::encode(h.finalize()),
            Self::Sha256(h) => hex::encode(h.finalize()),
            Self::Sha512(h) => hex::encode(h.finalize()),
        }
    }
}

/// Fetch `url` into `dest` with the shared downloader ([`ipa_http::download`]): `http://`
/// and `https://` with `opts` (agent CA file / insecure, proxies, retries, Range resume,
/// timeouts), or `file://`. Returns the hex digest of what was written, computed on the way to
/// disk.
pub async fn fetch(
    url: &str,
    dest: &Path,
    checksum: ChecksumType,
    opts: &HttpOptions,
) -> Result<String, MellanoxError> {
    let fail = |reason: String| MellanoxError::Download { url: ipa_http::redact(url), reason };
    let client = Arc::new(DownloadClient::new(opts.clone()).map_err(|e| fail(e.to_string()))?);
    let mut hasher = Hasher::new(checksum);
    let redacted = ipa_http::redact(url);
    download_to_file(&client, &redacted, url, dest, |chunk| hasher.update(chunk))
        .await
        .map_err(|e: DownloadError| fail(e.to_string()))?;
    Ok(hasher.hex())
}
