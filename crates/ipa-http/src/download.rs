//! The download policy on top of the client ([`crate::HttpClient`]): what image writes, checksum
//! files, config drives and vendor firmware fetches share.
//!
//! * URLs are tried in order; connection errors and 5xx are retried `retries` times,
//!   `retry_interval` apart, then the next URL is tried; 4xx is fatal (no failover).
//! * A stream that is cut mid-way is resumed with `Range: bytes=<pos>-` (on the same URL, then
//!   the others), never restarted from byte 0 unless the server ignores ranges.
//! * Every read has a timeout; the whole download may have a maximum duration.
//! * Redirects are followed by [`crate::HttpClient`] (hop limit, `Range` kept, credentials only to the
//!   first origin); URL userinfo becomes basic auth; every URL in a log line or an error is
//!   redacted ([`crate::redact`]).
//! * Proxies and `no_proxy`; an `Authorization` header; custom CA file and an insecure mode.

use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{HttpSettings, Outgoing, Redacted, TlsPolicy, redact};
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

/// Result alias for downloads.
pub type Result<T, E = DownloadError> = std::result::Result<T, E>;

/// Why a download failed. The messages carry only redacted URLs.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// Transient (5xx, connection, a cut stream) after all retries and URLs.
    #[error("{msg}")]
    Transient {
        /// What is downloaded (an image id, a firmware URL).
        id: String,
        /// What happened.
        msg: String,
    },
    /// Retrying cannot help (4xx, a bad URL, a redirect loop).
    #[error("{msg}")]
    Fatal {
        /// What is downloaded.
        id: String,
        /// What happened.
        msg: String,
    },
    /// A 4xx answer: not retried, no failover.
    #[error("Received status code {status} from {url}, expected {expected}")]
    Status {
        /// What is downloaded.
        id: String,
        /// The URL, redacted.
        url: String,
        /// The status received.
        status: u16,
        /// The status wanted (200, or 206 for a range).
        expected: u16,
    },
    /// The maximum duration was exceeded.
    #[error("{msg}")]
    Timeout {
        /// What is downloaded.
        id: String,
        /// What happened.
        msg: String,
    },
    /// The client could not be built (CA file, TLS settings).
    #[error(transparent)]
    Client(#[from] crate::HttpError),
}

impl DownloadError {
    /// What was being downloaded (none for a client that could not be built).
    pub fn id(&self) -> Option<&str> {
        match self {
            Self::Transient { id, .. }
            | Self::Fatal { id, .. }
            | Self::Status { id, .. }
            | Self::Timeout { id, .. } => Some(id),
            Self::Client(_) => None,
        }
    }
}

/// Download settings.
#[derive(Clone)]
pub struct HttpOptions {
    /// Connect timeout and per-read timeout.
    pub timeout: Duration,
    /// Retries per URL (attempts = retries + 1), and resume attempts without progress.
    pub retries: u32,
    /// Pause between attempts.
    pub retry_interval: Duration,
    /// Upper bound of the whole download (None = unlimited).
    pub max_duration: Option<Duration>,
    /// Skip TLS verification.
    pub insecure: bool,
    /// Extra CA bundle (PEM).
    pub cafile: Option<PathBuf>,
    /// Full `Authorization` header value (secret).
    pub authorization: Option<String>,
    /// Proxy URL per scheme (`http`, `https`).
    pub proxies: Vec<(String, String)>,
    /// Hosts (suffixes) that bypass the proxy; `*` for all.
    pub no_proxy: Vec<String>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            retries: 9,
            retry_interval: Duration::from_secs(10),
            max_duration: None,
            insecure: false,
            cafile: None,
            authorization: None,
            proxies: Vec::new(),
            no_proxy: Vec::new(),
        }
    }
}

impl std::fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpOptions")
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("retry_interval", &self.retry_interval)
            .field("insecure", &self.insecure)
            .field("authorization", &self.authorization.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

/// Why one request failed.
#[derive(Debug)]
pub enum FetchErr {
    /// Connection-level failure (retryable). The text is already redacted.
    Connect(String),
    /// A non-success HTTP status, with the redacted URL.
    Status(u16, String),
    /// Retrying cannot help (bad URL, redirect loop, TLS setup). Already redacted.
    Fatal(String),
}

impl std::fmt::Display for FetchErr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchErr::Connect(m) | FetchErr::Fatal(m) => f.write_str(m),
            FetchErr::Status(c, u) => write!(f, "Received status code {c} from {u}, expected 200"),
        }
    }
}

impl From<crate::HttpError> for FetchErr {
    fn from(e: crate::HttpError) -> Self {
        if e.is_transient() {
            FetchErr::Connect(e.to_string())
        } else {
            FetchErr::Fatal(e.to_string())
        }
    }
}

/// A reusable client for downloads: [`crate::HttpClient`] plus the download policy.
#[derive(Clone)]
pub struct DownloadClient {
    opts: HttpOptions,
    inner: crate::HttpClient,
}

impl std::fmt::Debug for DownloadClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownloadClient").field("opts", &self.opts).finish()
    }
}

impl HttpOptions {
    /// The shared stack's settings for these options (`cafile` replaces the system roots).
    pub fn settings(&self) -> HttpSettings {
        HttpSettings {
            tls: TlsPolicy {
                cafile: self.cafile.clone(),
                insecure: self.insecure,
                ..Default::default()
            },
            timeout: self.timeout,
            proxies: self.proxies.clone(),
            no_proxy: self.no_proxy.clone(),
            ..Default::default()
        }
    }
}

impl DownloadClient {
    /// Build a client; fails if the CA file cannot be read or holds no certificate.
    pub fn new(opts: HttpOptions) -> Result<Self> {
        let inner = crate::HttpClient::new(opts.settings())?;
        Ok(Self { opts, inner })
    }

    /// The options.
    pub fn options(&self) -> &HttpOptions {
        &self.opts
    }

    /// One GET (optionally ranged), redirects followed. Any final status other than 200/206
    /// is an error.
    pub async fn get(
        &self,
        url: &str,
        range: Option<(u64, Option<u64>)>,
    ) -> std::result::Result<Response<Incoming>, FetchErr> {
        let mut req = Outgoing::get(url).authorization(self.opts.authorization.clone());
        if let Some((start, end)) = range {
            req = req.range(start, end);
        }
        let answer = self.inner.send(req).await?;
        let st = answer.response.status();
        if st == StatusCode::OK || st == StatusCode::PARTIAL_CONTENT {
            Ok(answer.response)
        } else {
            Err(FetchErr::Status(st.as_u16(), redact(url)))
        }
    }

    /// GET a small document (a checksum file, a config drive) with the retry rules, up to
    /// `limit` bytes.
    pub async fn fetch_small(&self, id: &str, urls: &[String], limit: usize) -> Result<Bytes> {
        let mut dl = Download::new(Arc::new(self.clone()), id, urls.to_vec());
        let mut out = Vec::new();
        while let Some(c) = dl.next_chunk().await? {
            out.extend_from_slice(&c);
            if out.len() > limit {
                return Err(DownloadError::Transient {
                    id: id.into(),
                    msg: format!("document larger than {limit} bytes"),
                });
            }
        }
        Ok(out.into())
    }
}

fn content_length(resp: &Response<Incoming>) -> Option<u64> {
    resp.headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// `Content-Range: bytes a-b/total` → (a, total).
fn content_range(resp: &Response<Incoming>) -> Option<(u64, Option<u64>)> {
    let v = resp.headers().get(http::header::CONTENT_RANGE)?.to_str().ok()?;
    let rest = v.strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let start = range.split_once('-')?.0.trim().parse().ok()?;
    Some((start, total.trim().parse().ok()))
}

/// A resumable, failing-over download of one image: a sequence of byte chunks.
pub struct Download {
    client: Arc<DownloadClient>,
    id: String,
    urls: Vec<String>,
    url_idx: usize,
    pos: u64,
    skip: u64,
    body: Option<Incoming>,
    total: Option<u64>,
    started: Instant,
    stalls: u32,
    resumes: u32,
    retries: u32,
    range_ok: bool,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("id", &self.id)
            .field("pos", &self.pos)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl Download {
    /// A download of `urls` (nothing is requested until the first [`Download::next_chunk`]).
    pub fn new(client: Arc<DownloadClient>, id: &str, urls: Vec<String>) -> Self {
        Self {
            client,
            id: id.to_string(),
            urls,
            url_idx: 0,
            pos: 0,
            skip: 0,
            body: None,
            total: None,
            started: Instant::now(),
            stalls: 0,
            resumes: 0,
            retries: 0,
            range_ok: false,
        }
    }

    /// Total size if the server said.
    pub fn total(&self) -> Option<u64> {
        self.total
    }
    /// Bytes delivered so far.
    pub fn position(&self) -> u64 {
        self.pos
    }
    /// How many times a cut stream was resumed with a Range request.
    pub fn resumes(&self) -> u32 {
        self.resumes
    }
    /// How many requests were repeated after a connection error or a 5xx (on the same URL
    /// after `retry_interval`, or on the next URL).
    pub fn retries(&self) -> u32 {
        self.retries
    }
    /// Whether the server answered a ranged request (or advertised `Accept-Ranges: bytes`).
    pub fn range_supported(&self) -> bool {
        self.range_ok
    }
    /// The URL currently used.
    pub fn current_url(&self) -> &str {
        &self.urls[self.url_idx.min(self.urls.len().saturating_sub(1))]
    }
    /// A handle for random-access reads of the same resource.
    pub fn ranges(&self) -> RangeReader {
        RangeReader {
            client: self.client.clone(),
            id: self.id.clone(),
            url: self.current_url().to_string(),
        }
    }

    fn err(&self, msg: impl Into<String>) -> DownloadError {
        DownloadError::Transient { id: self.id.clone(), msg: msg.into() }
    }

    fn check_duration(&self) -> Result<()> {
        if let Some(max) = self.client.opts.max_duration
            && self.started.elapsed() > max
        {
            return Err(DownloadError::Timeout {
                id: self.id.clone(),
                msg: format!("Download exceeded max duration of {} seconds", max.as_secs()),
            });
        }
        Ok(())
    }

    async fn open(&mut self) -> Result<()> {
        let opts = self.client.opts.clone();
        let mut last = String::from("no URL");
        let mut first = true;
        while self.url_idx < self.urls.len() {
            let url = self.urls[self.url_idx].clone();
            for attempt in 0..=opts.retries {
                self.check_duration()?;
                if attempt > 0 {
                    tokio::time::sleep(opts.retry_interval).await;
                }
                if !std::mem::take(&mut first) {
                    self.retries += 1;
                }
                let range = (self.pos > 0).then_some((self.pos, None));
                match self.client.get(&url, range).await {
                    Ok(resp) => {
                        self.accept(resp)?;
                        return Ok(());
                    }
                    Err(FetchErr::Status(code, _)) if (400..500).contains(&code) => {
                        return Err(DownloadError::Status {
                            id: self.id.clone(),
                            url: redact(&url),
                            status: code,
                            expected: 200,
                        });
                    }
                    Err(FetchErr::Fatal(m)) => {
                        return Err(DownloadError::Fatal { id: self.id.clone(), msg: m });
                    }
                    Err(e) => {
                        tracing::warn!(url = %Redacted(&url), attempt, error = %e, "image download attempt failed");
                        last = e.to_string();
                    }
                }
            }
            self.url_idx += 1;
        }
        self.url_idx = self.urls.len().saturating_sub(1);
        Err(self.err(last))
    }

    fn accept(&mut self, resp: Response<Incoming>) -> Result<()> {
        let ranges_advertised = resp
            .headers()
            .get(http::header::ACCEPT_RANGES)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("bytes"));
        if resp.status() == StatusCode::PARTIAL_CONTENT {
            let (start, total) = content_range(&resp)
                .ok_or_else(|| self.err("206 response without a valid Content-Range"))?;
            if start != self.pos {
                return Err(
                    self.err(format!("server resumed at byte {start}, expected {}", self.pos))
                );
            }
            if total.is_some() {
                self.total = total;
            }
            self.range_ok = true;
            self.skip = 0;
        } else {
            // 200: the whole resource. If resuming, drop what we already have.
            self.skip = self.pos;
            if self.pos > 0 {
                tracing::warn!(pos = self.pos, "server ignored the Range request; skipping");
            }
            self.total = content_length(&resp);
            self.range_ok |= ranges_advertised;
        }
        self.body = Some(resp.into_body());
        Ok(())
    }

    /// The next chunk of the image, `None` at the end. Cuts are resumed transparently.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        loop {
            self.check_duration()?;
            let Some(body) = self.body.as_mut() else {
                self.open().await?;
                continue;
            };
            let timeout = self.client.opts.timeout;
            let cut = match tokio::time::timeout(timeout, body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    let Ok(mut data) = frame.into_data() else { continue };
                    if self.skip > 0 {
                        let n = (self.skip as usize).min(data.len());
                        self.skip -= n as u64;
                        let _ = data.split_to(n);
                    }
                    if data.is_empty() {
                        continue;
                    }
                    self.pos += data.len() as u64;
                    self.stalls = 0;
                    return Ok(Some(data));
                }
                Ok(None) => match self.total {
                    Some(t) if self.pos < t => format!("stream ended at byte {} of {t}", self.pos),
                    _ => {
                        self.body = None;
                        return Ok(None);
                    }
                },
                Ok(Some(Err(e))) => format!("stream cut at byte {}: {e}", self.pos),
                Err(_) => format!("no data for {} seconds at byte {}", timeout.as_secs(), self.pos),
            };
            self.body = None;
            self.stalls += 1;
            if self.stalls > self.client.opts.retries.max(1) {
                return Err(self.err(cut));
            }
            tracing::warn!(reason = %cut, "image stream interrupted; resuming with a Range request");
            self.resumes += 1;
            if self.stalls > 1 {
                tokio::time::sleep(self.client.opts.retry_interval).await;
            }
        }
    }
}

/// Random-access reads of one resource (qcow2 tables and out-of-order clusters).
#[derive(Clone)]
pub struct RangeReader {
    client: Arc<DownloadClient>,
    id: String,
    url: String,
}

impl std::fmt::Debug for RangeReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeReader").field("url", &redact(&self.url)).finish()
    }
}

impl RangeReader {
    /// Read `len` bytes at `offset` (fewer at the end of the resource).
    pub async fn read_at(&self, offset: u64, len: u64) -> Result<Bytes> {
        let opts = self.client.opts.clone();
        let mut last = String::new();
        for attempt in 0..=opts.retries {
            if attempt > 0 {
                tokio::time::sleep(opts.retry_interval).await;
            }
            let resp =
                match self.client.get(&self.url, Some((offset, Some(offset + len - 1)))).await {
                    Ok(r) => r,
                    Err(FetchErr::Status(code, u)) if (400..500).contains(&code) => {
                        return Err(DownloadError::Status {
                            id: self.id.clone(),
                            url: u,
                            status: code,
                            expected: 206,
                        });
                    }
                    Err(FetchErr::Fatal(m)) => {
                        return Err(DownloadError::Fatal { id: self.id.clone(), msg: m });
                    }
                    Err(e) => {
                        last = e.to_string();
                        continue;
                    }
                };
            if resp.status() != StatusCode::PARTIAL_CONTENT
                || content_range(&resp).map(|r| r.0) != Some(offset)
            {
                return Err(DownloadError::Transient {
                    id: self.id.clone(),
                    msg: format!("{} does not support Range requests", Redacted(&self.url)),
                });
            }
            match tokio::time::timeout(opts.timeout, resp.into_body().collect()).await {
                Ok(Ok(b)) => return Ok(b.to_bytes()),
                Ok(Err(e)) => last = format!("range read failed: {e}"),
                Err(_) => last = "range read timed out".into(),
            }
        }
        Err(DownloadError::Transient { id: self.id.clone(), msg: last })
    }
}

impl HttpOptions {
    /// Options for an agent download: `timeout`, `retries`, `retry_interval` and
    /// `max_duration` (0 = unlimited) in seconds, `insecure` and `cafile`, and proxies from the
    /// `http_proxy` / `https_proxy` / `no_proxy` environment variables (either case). No
    /// `Authorization` header.
    pub fn from_agent(settings: AgentDownload) -> Self {
        let AgentDownload { timeout, retries, retry_interval, max_duration, insecure, cafile } =
            settings;
        HttpOptions {
            timeout: Duration::from_secs(timeout.max(1)),
            retries,
            retry_interval: Duration::from_secs(retry_interval),
            max_duration: (max_duration > 0).then(|| Duration::from_secs(max_duration)),
            insecure,
            cafile,
            authorization: None,
            proxies: env_proxies(|k| std::env::var(k).ok()),
            no_proxy: env_var_either(&|k| std::env::var(k).ok(), "no_proxy")
                .map(|n| {
                    n.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// The agent's download settings (`image_download_connection_*`, `image_download_max_duration`,
/// `insecure`, `cafile`), in seconds.
#[derive(Debug, Clone, Default)]
pub struct AgentDownload {
    /// Connect and per-read timeout.
    pub timeout: u64,
    /// Retries per URL.
    pub retries: u32,
    /// Pause between attempts.
    pub retry_interval: u64,
    /// Upper bound of a whole download; 0 is unlimited.
    pub max_duration: u64,
    /// Skip TLS verification.
    pub insecure: bool,
    /// CA bundle replacing the system roots.
    pub cafile: Option<PathBuf>,
}

fn env_var_either(get: &dyn Fn(&str) -> Option<String>, lower: &str) -> Option<String> {
    get(lower).or_else(|| get(&lower.to_ascii_uppercase())).filter(|v| !v.trim().is_empty())
}

fn env_proxies(get: impl Fn(&str) -> Option<String>) -> Vec<(String, String)> {
    [("http", "http_proxy"), ("https", "https_proxy")]
        .into_iter()
        .filter_map(|(scheme, var)| {
            env_var_either(&get, var).map(|v| (scheme.to_string(), v.trim().to_string()))
        })
        .collect()
}

/// Stream `url` into a new file at `dest` (created or truncated), handing every chunk to
/// `inspect` (a hasher, typically) before it is written, then fsync. Returns the byte count.
///
/// `http://` and `https://` go through [`DownloadClient`] / [`Download`] (retries, resume, TLS
/// settings of `client`); `file://<path>` reads a local file. `id` names the download in
/// errors (`ImageDownloadError` once mapped to an `AgentError`). Nothing is held in memory
/// beyond one chunk.
pub async fn download_to_file(
    client: &Arc<DownloadClient>,
    id: &str,
    url: &str,
    dest: &Path,
    mut inspect: impl FnMut(&[u8]) + Send,
) -> Result<u64> {
    let fail = |msg: String| DownloadError::Transient { id: id.to_string(), msg };
    let mut file = tokio::fs::File::create(dest)
        .await
        .map_err(|e| fail(format!("cannot create {}: {e}", dest.display())))?;
    let mut total = 0u64;
    if let Some(path) = url.strip_prefix("file://") {
        let mut src = tokio::fs::File::open(path)
            .await
            .map_err(|e| fail(format!("cannot open {path}: {e}")))?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = src.read(&mut buf).await.map_err(|e| fail(format!("reading {path}: {e}")))?;
            if n == 0 {
                break;
            }
            inspect(&buf[..n]);
            file.write_all(&buf[..n])
                .await
                .map_err(|e| fail(format!("writing {}: {e}", dest.display())))?;
            total += n as u64;
        }
    } else if url.starts_with("http://") || url.starts_with("https://") {
        let mut dl = Download::new(client.clone(), id, vec![url.to_string()]);
        while let Some(chunk) = dl.next_chunk().await? {
            inspect(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| fail(format!("writing {}: {e}", dest.display())))?;
            total += chunk.len() as u64;
        }
    } else {
        return Err(fail(format!(
            "unsupported URL {url}: only http://, https:// and file:// are supported"
        )));
    }
    file.flush().await.map_err(|e| fail(format!("writing {}: {e}", dest.display())))?;
    file.sync_all().await.map_err(|e| fail(format!("syncing {}: {e}", dest.display())))?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxies_come_from_either_case_of_the_environment_variables() {
        let env = |k: &str| match k {
            "HTTP_PROXY" => Some("http://proxy:3128".to_string()),
            "https_proxy" => Some("http://sproxy:3128".to_string()),
            "HTTPS_PROXY" => Some("http://ignored:1".to_string()),
            _ => None,
        };
        assert_eq!(
            env_proxies(env),
            vec![
                ("http".to_string(), "http://proxy:3128".to_string()),
                ("https".to_string(), "http://sproxy:3128".to_string())
            ]
        );
        assert!(env_proxies(|_| None).is_empty());
    }

    #[tokio::test]
    async fn file_urls_are_copied_through_the_inspector_and_other_schemes_refused() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.bin");
        std::fs::write(&src, b"firmware bytes").unwrap();
        let client = Arc::new(DownloadClient::new(HttpOptions::default()).unwrap());
        let dest = dir.path().join("dest.bin");
        let mut seen = Vec::new();
        let url = format!("file://{}", src.display());
        let n = download_to_file(&client, "fw", &url, &dest, |c| seen.extend_from_slice(c))
            .await
            .unwrap();
        assert_eq!(n, 14);
        assert_eq!(seen, b"firmware bytes");
        assert_eq!(std::fs::read(&dest).unwrap(), b"firmware bytes");
        let err = download_to_file(&client, "fw", "ftp://h/x", &dest, |_| {}).await.unwrap_err();
        assert!(matches!(err, DownloadError::Transient { .. }), "{err:?}");
    }
}
