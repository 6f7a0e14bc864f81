//! The HTTP(S) download client: hyper over tokio, rustls with ring.
//!
//! * URLs are tried in order; connection errors and 5xx are retried `retries` times,
//!   `retry_interval` apart, then the next URL is tried; 4xx is fatal (no failover).
//! * A stream that is cut mid-way is resumed with `Range: bytes=<pos>-` (on the same URL, then
//!   the others), never restarted from byte 0 unless the server ignores ranges.
//! * Every read has a timeout; the whole download may have a maximum duration.
//! * Proxies (`http://` proxies, with CONNECT for https) and `no_proxy`; an `Authorization`
//!   header; custom CA file and an insecure mode.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

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
    /// Connection-level failure (retryable).
    Connect(String),
    /// A non-success HTTP status.
    Status(u16, String),
}

impl std::fmt::Display for FetchErr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchErr::Connect(m) => f.write_str(m),
            FetchErr::Status(c, u) => write!(f, "Received status code {c} from {u}, expected 200"),
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A reusable client (TLS configuration built once).
pub struct HttpClient {
    opts: HttpOptions,
    tls: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").field("opts", &self.opts).finish()
    }
}

#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

struct Parsed {
    https: bool,
    host: String,
    port: u16,
    authority: String,
    path: String,
}

fn parse_url(url: &str) -> std::result::Result<Parsed, String> {
    let uri: Uri = url.parse().map_err(|e| format!("invalid URL {url}: {e}"))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(format!("unsupported URL scheme in {url}")),
    };
    let auth = uri.authority().ok_or_else(|| format!("no host in URL {url}"))?;
    let host = auth.host().trim_start_matches('[').trim_end_matches(']').to_string();
    let port = auth.port_u16().unwrap_or(if https { 443 } else { 80 });
    let path = uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or("/".into());
    Ok(Parsed { https, host, port, authority: auth.as_str().to_string(), path })
}

impl HttpClient {
    /// Build a client; fails if the CA file cannot be read.
    pub fn new(opts: HttpOptions) -> Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ImageError::Other(format!("TLS setup failed: {e}")))?;
        let config = if opts.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
                .with_no_client_auth()
        } else {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
            if let Some(path) = &opts.cafile {
                let pem = std::fs::read(path).map_err(|e| {
                    ImageError::Other(format!("cannot read CA file {}: {e}", path.display()))
                })?;
                for c in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
                    roots.add(c).map_err(|e| {
                        ImageError::Other(format!("bad CA in {}: {e}", path.display()))
                    })?;
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        Ok(Self { opts, tls: tokio_rustls::TlsConnector::from(Arc::new(config)) })
    }

    /// The options.
    pub fn options(&self) -> &HttpOptions {
        &self.opts
    }

    fn proxy_for(&self, p: &Parsed) -> Option<Parsed> {
        let scheme = if p.https { "https" } else { "http" };
        let proxy = self.opts.proxies.iter().find(|(k, _)| k == scheme).map(|(_, v)| v)?;
        let bypass = self.opts.no_proxy.iter().any(|n| {
            let n = n.trim().trim_start_matches('.');
            !n.is_empty() && (n == "*" || p.host == n || p.host.ends_with(&format!(".{n}")))
        });
        if bypass {
            return None;
        }
        parse_url(proxy).ok()
    }

    async fn tcp(&self, host: &str, port: u16) -> std::result::Result<TcpStream, FetchErr> {
        let fut = TcpStream::connect((host, port));
        let s = tokio::time::timeout(self.opts.timeout, fut)
            .await
            .map_err(|_| FetchErr::Connect(format!("connection to {host}:{port} timed out")))?
            .map_err(|e| FetchErr::Connect(format!("connection to {host}:{port} failed: {e}")))?;
        let _ = s.set_nodelay(true);
        Ok(s)
    }

    async fn connect(&self, p: &Parsed) -> std::result::Result<(Box<dyn Io>, bool), FetchErr> {
        let proxy = self.proxy_for(p);
        let mut absolute = false;
        let stream: TcpStream = match &proxy {
            None => self.tcp(&p.host, p.port).await?,
            Some(px) => {
                let mut s = self.tcp(&px.host, px.port).await?;
                if p.https {
                    let req = format!(
                        "CONNECT {h}:{port} HTTP/1.1\r\nHost: {h}:{port}\r\n\r\n",
                        h = p.host,
                        port = p.port
                    );
                    s.write_all(req.as_bytes())
                        .await
                        .map_err(|e| FetchErr::Connect(format!("proxy CONNECT failed: {e}")))?;
                    let mut buf = Vec::new();
                    let mut b = [0u8; 1];
                    while !buf.ends_with(b"\r\n\r\n") && buf.len() < 8192 {
                        let n = tokio::time::timeout(self.opts.timeout, s.read(&mut b))
                            .await
                            .map_err(|_| FetchErr::Connect("proxy CONNECT timed out".into()))?
                            .map_err(|e| FetchErr::Connect(format!("proxy CONNECT: {e}")))?;
                        if n == 0 {
                            return Err(FetchErr::Connect("proxy closed the connection".into()));
                        }
                        buf.push(b[0]);
                    }
                    let line = String::from_utf8_lossy(&buf);
                    if !line.split_whitespace().nth(1).is_some_and(|c| c.starts_with('2')) {
                        return Err(FetchErr::Connect(format!(
                            "proxy refused CONNECT: {}",
                            line.lines().next().unwrap_or("")
                        )));
                    }
                } else {
                    absolute = true;
                }
                s
            }
        };
        if p.https {
            let name = rustls_pki_types::ServerName::try_from(p.host.clone())
                .map_err(|e| FetchErr::Connect(format!("bad TLS server name {}: {e}", p.host)))?;
            let tls = tokio::time::timeout(self.opts.timeout, self.tls.connect(name, stream))
                .await
                .map_err(|_| FetchErr::Connect("TLS handshake timed out".into()))?
                .map_err(|e| FetchErr::Connect(format!("TLS handshake failed: {e}")))?;
            Ok((Box::new(tls), false))
        } else {
            Ok((Box::new(stream), absolute))
        }
    }

    /// One GET (optionally ranged). Any status other than 200/206 is an error.
    pub(crate) async fn get(
        &self,
        url: &str,
        range: Option<(u64, Option<u64>)>,
    ) -> std::result::Result<Response<Incoming>, FetchErr> {
        let p = parse_url(url).map_err(FetchErr::Connect)?;
        let (io, absolute) = self.connect(&p).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| FetchErr::Connect(format!("HTTP handshake failed: {e}")))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let target = if absolute { url.to_string() } else { p.path.clone() };
        let mut req = Request::get(target)
            .header(http::header::HOST, &p.authority)
            .header(http::header::USER_AGENT, concat!("ipa-rs/", env!("CARGO_PKG_VERSION")));
        if let Some(a) = &self.opts.authorization {
            req = req.header(http::header::AUTHORIZATION, a);
        }
        if let Some((start, end)) = range {
            let v = match end {
                Some(e) => format!("bytes={start}-{e}"),
                None => format!("bytes={start}-"),
            };
            req = req.header(http::header::RANGE, v);
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| FetchErr::Connect(format!("bad request: {e}")))?;
        let resp = tokio::time::timeout(self.opts.timeout, sender.send_request(req))
            .await
            .map_err(|_| FetchErr::Connect(format!("no response from {url} (timeout)")))?
            .map_err(|e| FetchErr::Connect(format!("request to {url} failed: {e}")))?;
        let st = resp.status();
        if st == StatusCode::OK || st == StatusCode::PARTIAL_CONTENT {
            Ok(resp)
        } else {
            Err(FetchErr::Status(st.as_u16(), url.to_string()))
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
        let mut dl = Download::new(Arc::new(self.clone_shallow()), image_id, urls.to_vec());
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

    fn clone_shallow(&self) -> Self {
        Self { opts: self.opts.clone(), tls: self.tls.clone() }
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
                            msg: format!("Received status code {code} from {url}, expected 200"),
                        });
                    }
                    Err(e) => {
                        tracing::warn!(url = %url, attempt, error = %e, "image download attempt failed");
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
        f.debug_struct("RangeReader").field("url", &self.url).finish()
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
                    msg: format!("{} does not support Range requests", self.url),
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
