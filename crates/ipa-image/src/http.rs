//! The download policy on top of the workspace's HTTP stack ([`ipa_http`]).
//!
//! * URLs are tried in order; connection errors and 5xx are retried `retries` times,
//!   `retry_interval` apart, then the next URL is tried; 4xx is fatal (no failover).
//! * A stream that is cut mid-way is resumed with `Range: bytes=<pos>-` (on the same URL, then
//!   the others), never restarted from byte 0 unless the server ignores ranges.
//! * Every read has a timeout; the whole download may have a maximum duration.
//! * Redirects are followed by [`ipa_http`] (hop limit, `Range` kept, credentials only to the
//!   first origin); URL userinfo becomes basic auth; every URL in a log line or an error is
//!   redacted ([`ipa_http::redact`]).
//! * Proxies and `no_proxy`; an `Authorization` header; custom CA file and an insecure mode.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use ipa_http::{HttpSettings, Outgoing, Redacted, TlsPolicy, redact};

use crate::error::{ImageError, Result};

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
pub(crate) enum FetchErr {
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

impl From<ipa_http::HttpError> for FetchErr {
    fn from(e: ipa_http::HttpError) -> Self {
        if e.is_transient() {
            FetchErr::Connect(e.to_string())
        } else {
            FetchErr::Fatal(e.to_string())
        }
    }
}

/// A reusable client: the workspace's [`ipa_http::HttpClient`] plus the download policy.
#[derive(Clone)]
pub struct HttpClient {
    opts: HttpOptions,
    inner: ipa_http::HttpClient,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").field("opts", &self.opts).finish()
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

impl HttpClient {
    /// Build a client; fails if the CA file cannot be read or holds no certificate.
    pub fn new(opts: HttpOptions) -> Result<Self> {
        let inner = ipa_http::HttpClient::new(opts.settings())
            .map_err(|e| ImageError::Other(e.to_string()))?;
        Ok(Self { opts, inner })
    }

    /// The options.
    pub fn options(&self) -> &HttpOptions {
        &self.opts
    }

    /// One GET (optionally ranged), redirects followed. Any final status other than 200/206
    /// is an error.
    pub(crate) async fn get(
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
    pub async fn fetch_small(
        &self,
        image_id: &str,
        urls: &[String],
        limit: usize,
    ) -> Result<Bytes> {
        let mut dl = Download::new(Arc::new(self.clone()), image_id, urls.to_vec());
        let mut out = Vec::new();
        while let Some(c) = dl.next_chunk().await? {
            out.extend_from_slice(&c);
            if out.len() > limit {
                return Err(ImageError::Download {
                    image_id: image_id.into(),
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
    client: Arc<HttpClient>,
    image_id: String,
    urls: Vec<String>,
    url_idx: usize,
    pos: u64,
    skip: u64,
    body: Option<Incoming>,
    total: Option<u64>,
    started: Instant,
    stalls: u32,
    resumes: u32,
    range_ok: bool,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("image_id", &self.image_id)
            .field("pos", &self.pos)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl Download {
    /// A download of `urls` (nothing is requested until the first [`Download::next_chunk`]).
    pub fn new(client: Arc<HttpClient>, image_id: &str, urls: Vec<String>) -> Self {
        Self {
            client,
            image_id: image_id.to_string(),
            urls,
            url_idx: 0,
            pos: 0,
            skip: 0,
            body: None,
            total: None,
            started: Instant::now(),
            stalls: 0,
            resumes: 0,
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
            image_id: self.image_id.clone(),
            url: self.current_url().to_string(),
        }
    }

    fn err(&self, msg: impl Into<String>) -> ImageError {
        ImageError::Download { image_id: self.image_id.clone(), msg: msg.into() }
    }

    fn check_duration(&self) -> Result<()> {
        if let Some(max) = self.client.opts.max_duration
            && self.started.elapsed() > max
        {
            return Err(ImageError::DownloadTimeout {
                image_id: self.image_id.clone(),
                msg: format!("Download exceeded max duration of {} seconds", max.as_secs()),
            });
        }
        Ok(())
    }

    async fn open(&mut self) -> Result<()> {
        let opts = self.client.opts.clone();
        let mut last = String::from("no URL");
        while self.url_idx < self.urls.len() {
            let url = self.urls[self.url_idx].clone();
            for attempt in 0..=opts.retries {
                self.check_duration()?;
                if attempt > 0 {
                    tokio::time::sleep(opts.retry_interval).await;
                }
                let range = (self.pos > 0).then_some((self.pos, None));
                match self.client.get(&url, range).await {
                    Ok(resp) => {
                        self.accept(resp)?;
                        return Ok(());
                    }
                    Err(FetchErr::Status(code, _)) if (400..500).contains(&code) => {
                        return Err(ImageError::DownloadFatal {
                            image_id: self.image_id.clone(),
                            msg: format!(
                                "Received status code {code} from {}, expected 200",
                                Redacted(&url)
                            ),
                        });
                    }
                    Err(FetchErr::Fatal(m)) => {
                        return Err(ImageError::DownloadFatal {
                            image_id: self.image_id.clone(),
                            msg: m,
                        });
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
    client: Arc<HttpClient>,
    image_id: String,
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
                        return Err(ImageError::DownloadFatal {
                            image_id: self.image_id.clone(),
                            msg: format!("Received status code {code} from {u}, expected 206"),
                        });
                    }
                    Err(FetchErr::Fatal(m)) => {
                        return Err(ImageError::DownloadFatal {
                            image_id: self.image_id.clone(),
                            msg: m,
                        });
                    }
                    Err(e) => {
                        last = e.to_string();
                        continue;
                    }
                };
            if resp.status() != StatusCode::PARTIAL_CONTENT
                || content_range(&resp).map(|r| r.0) != Some(offset)
            {
                return Err(ImageError::Download {
                    image_id: self.image_id.clone(),
                    msg: format!("{} does not support Range requests", Redacted(&self.url)),
                });
            }
            match tokio::time::timeout(opts.timeout, resp.into_body().collect()).await {
                Ok(Ok(b)) => return Ok(b.to_bytes()),
                Ok(Err(e)) => last = format!("range read failed: {e}"),
                Err(_) => last = "range read timed out".into(),
            }
        }
        Err(ImageError::Download { image_id: self.image_id.clone(), msg: last })
    }
}
