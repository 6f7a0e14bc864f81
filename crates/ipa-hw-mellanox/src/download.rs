//! Streaming firmware download (`http://`, `file://`) with the checksum computed on the way to
//! disk: the image is never held in memory.

use std::path::Path;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use md5::Digest as _;
use tokio::io::AsyncWriteExt;

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

/// Fetch `url` into `dest`, returning the hex digest of what was written.
pub async fn fetch(
    url: &str,
    dest: &Path,
    checksum: ChecksumType,
    timeout: Duration,
) -> Result<String, MellanoxError> {
    let fail = |reason: String| MellanoxError::Download { url: url.to_string(), reason };
    let mut file = tokio::fs::File::create(dest)
        .await
        .map_err(|e| fail(format!("cannot create {}: {e}", dest.display())))?;
    let mut hasher = Hasher::new(checksum);
    if let Some(path) = url.strip_prefix("file://") {
        let mut src = tokio::fs::File::open(path).await.map_err(|e| fail(e.to_string()))?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = tokio::io::AsyncReadExt::read(&mut src, &mut buf)
                .await
                .map_err(|e| fail(e.to_string()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n]).await.map_err(|e| fail(e.to_string()))?;
        }
    } else if url.starts_with("http://") {
        let uri: http::Uri = url.parse().map_err(|e| fail(format!("invalid URL: {e}")))?;
        let host = uri.host().ok_or_else(|| fail("URL has no host".into()))?.to_string();
        let port = uri.port_u16().unwrap_or(80);
        let authority = uri.authority().map(|a| a.to_string()).unwrap_or_else(|| host.clone());
        let connect = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port));
        let stream = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| fail(format!("connection timed out after {}s", timeout.as_secs())))?
            .map_err(|e| fail(e.to_string()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| fail(e.to_string()))?;
        let driver = tokio::spawn(conn);
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let req = http::Request::get(path)
            .header(http::header::HOST, authority)
            .header(http::header::USER_AGENT, "ipa-hw-mellanox")
            .body(Empty::<bytes::Bytes>::new())
            .map_err(|e| fail(e.to_string()))?;
        let resp = tokio::time::timeout(timeout, sender.send_request(req))
            .await
            .map_err(|_| fail(format!("no response after {}s", timeout.as_secs())))?
            .map_err(|e| fail(e.to_string()))?;
        if !resp.status().is_success() {
            driver.abort();
            return Err(fail(format!("HTTP status {}", resp.status())));
        }
        let mut body = resp.into_body();
        loop {
            let frame = tokio::time::timeout(timeout, body.frame())
                .await
                .map_err(|_| fail(format!("read timed out after {}s", timeout.as_secs())))?;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| fail(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                hasher.update(&data);
                file.write_all(&data).await.map_err(|e| fail(e.to_string()))?;
            }
        }
        driver.abort();
    } else {
        return Err(fail("only http:// and file:// URLs are supported".into()));
    }
    file.flush().await.map_err(|e| fail(e.to_string()))?;
    file.sync_all().await.map_err(|e| fail(e.to_string()))?;
    Ok(hasher.hex())
}
