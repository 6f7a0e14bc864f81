//! The streaming pipeline: download → (decompress → convert) → write, with hashing on its own
//! thread. Stages are joined by bounded channels so they overlap and memory stays flat.
//!
//! ```text
//!   download (tokio) ──Bytes──► hash thread ──► digest
//!          └──────────Bytes──► decode thread (sniff, gzip/xz/zstd/bzip2, qcow2) ──WriteOp──► writer thread
//! ```

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ipa_core::events::Progress;
use ipa_core::extension::CommandContext;
use ipa_core::metrics::Metrics;
use tokio::sync::mpsc;

use crate::checksum::Expected;
use crate::error::{ImageError, Result};
use crate::format::{Compression, DiskFormat, SNIFF_LEN, sniff_compression, sniff_disk};
use crate::qcow2;
use crate::readback::{OutputDigest, ReadbackReport, read_back};
use crate::writer::{WriteOp, Writer};
use ipa_http::download::{Download, RangeReader};

/// Which formats may be written (`disk_format`, `permitted_image_formats`, deep inspection).
#[derive(Debug, Clone)]
pub struct FormatPolicy {
    /// Ironic's `disk_format`.
    pub disk_format: Option<String>,
    /// `permitted_image_formats`.
    pub permitted: Vec<String>,
    /// Deep inspection on (IPA default).
    pub deep_inspection: bool,
}

impl Default for FormatPolicy {
    fn default() -> Self {
        Self {
            disk_format: None,
            permitted: vec!["raw".into(), "gpt".into(), "qcow2".into()],
            deep_inspection: true,
        }
    }
}

impl FormatPolicy {
    /// Decide whether a detected format may be written; returns how to write it.
    pub fn check(&self, detected: DiskFormat) -> Result<DiskFormat> {
        let declared = self.disk_format.as_deref().filter(|d| !d.is_empty() && *d != "unknown");
        let declared_raw = matches!(declared, Some("raw") | Some("gpt"));
        if declared_raw && detected == DiskFormat::Qcow2 {
            return Err(ImageError::InvalidImage {
                details: format!(
                    "Image format mismatch: detected qcow2 but disk_format is {}",
                    declared.unwrap_or("raw")
                ),
            });
        }
        if declared_raw {
            // IPA trusts Ironic for raw images and writes the bytes as they are.
            return Ok(if detected == DiskFormat::Gpt { DiskFormat::Gpt } else { DiskFormat::Raw });
        }
        if let Some(d) = declared
            && d != detected.name()
        {
            return Err(ImageError::InvalidImage {
                details: format!(
                    "Image format mismatch: detected {} but disk_format is {d}",
                    detected.name()
                ),
            });
        }
        let permitted = |n: &str| self.permitted.iter().any(|p| p.trim() == n);
        if self.deep_inspection {
            let ok = match detected {
                DiskFormat::Gpt => permitted("gpt") || permitted("raw"),
                f => permitted(f.name()),
            };
            if !ok {
                return Err(ImageError::InvalidImage {
                    details: format!(
                        "Image format {} not permitted (permitted_image_formats: {})",
                        detected.name(),
                        self.permitted.join(",")
                    ),
                });
            }
        }
        match detected {
            DiskFormat::Raw | DiskFormat::Gpt | DiskFormat::Qcow2 | DiskFormat::Iso => Ok(detected),
            other => Err(ImageError::InvalidImage {
                details: format!("Image format {} is not supported by this agent", other.name()),
            }),
        }
    }
}

/// Where and how to write one image.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// Image id (for error texts).
    pub image_id: String,
    /// First URL (for the checksum error text).
    pub location: String,
    /// What the downloaded bytes must hash to.
    pub expected: Expected,
    /// Format rules.
    pub policy: FormatPolicy,
    /// File or block device to open.
    pub target: PathBuf,
    /// Device name for messages.
    pub device: String,
    /// Offset of the region (partition) on the target.
    pub base: u64,
    /// Size of the region, if bounded.
    pub limit: Option<u64>,
    /// Re-read the written range after the write and compare it with what was written
    /// ([`crate::readback`]).
    pub readback: bool,
    /// Test hook: called with the target path after the write, before the read-back.
    #[doc(hidden)]
    pub before_readback: Option<ReadbackHook>,
    /// Where to record bytes written, throughput, retries, resumes and checksum failures (the
    /// agent's `AgentServices::metrics`); `None` records nothing.
    pub metrics: Option<Metrics>,
}

/// A callback run between the write and the read-back (fault injection in tests).
#[doc(hidden)]
#[derive(Clone)]
pub struct ReadbackHook(pub Arc<dyn Fn(&std::path::Path) + Send + Sync>);

impl std::fmt::Debug for ReadbackHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadbackHook")
    }
}

/// What a finished stream did.
#[derive(Debug, Clone)]
pub struct StreamOutcome {
    /// Bytes received from the network.
    pub downloaded: u64,
    /// Bytes of image written (virtual size for qcow2).
    pub image_size: u64,
    /// Detected disk format.
    pub format: DiskFormat,
    /// Detected compression wrapper.
    pub compression: Compression,
    /// Hex digest of the received bytes.
    pub digest: String,
    /// Range resumes after cut streams.
    pub resumes: u32,
    /// Clusters fetched with random-access Range requests (qcow2 out of order).
    pub random_reads: u64,
    /// Whether O_DIRECT was used.
    pub direct: bool,
    /// Wall time (the read-back included).
    pub elapsed: Duration,
    /// The read-back, when it was requested and done.
    pub readback: Option<ReadbackReport>,
}

/// Pulls `Bytes` from the download channel; also a `Read` for the decoders.
pub(crate) struct ChanReader {
    rx: mpsc::Receiver<Bytes>,
    cur: Bytes,
    eof: bool,
}

impl ChanReader {
    fn next_bytes(&mut self) -> Option<Bytes> {
        if !self.cur.is_empty() {
            return Some(std::mem::take(&mut self.cur));
        }
        if self.eof {
            return None;
        }
        let b = self.rx.blocking_recv();
        if b.is_none() {
            self.eof = true;
        }
        b
    }
    fn peek(&mut self, n: usize) -> &[u8] {
        if self.cur.len() < n && !self.eof {
            let mut m = BytesMut::from(&self.cur[..]);
            while m.len() < n {
                match self.rx.blocking_recv() {
                    Some(b) => m.extend_from_slice(&b),
                    None => {
                        self.eof = true;
                        break;
                    }
                }
            }
            self.cur = m.freeze();
        }
        &self.cur
    }
}

impl Read for ChanReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.cur.is_empty() {
            match self.next_bytes() {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

/// Sends write operations to the writer thread.
#[derive(Debug)]
pub struct Sink {
    tx: std::sync::mpsc::SyncSender<WriteOp>,
}

impl Sink {
    /// A sink feeding `tx`.
    pub fn new(tx: std::sync::mpsc::SyncSender<WriteOp>) -> Self {
        Self { tx }
    }
    /// Send one operation; fails once the writer has stopped.
    pub fn send(&self, op: WriteOp) -> Result<()> {
        self.tx.send(op).map_err(|_| ImageError::WriterStopped)
    }
}

struct DecodeOut {
    format: DiskFormat,
    compression: Compression,
    size: u64,
    random_reads: u64,
}

fn decoder<'a>(c: Compression, r: ChanReader) -> Result<Box<dyn Read + 'a>> {
    let io = |e: std::io::Error| ImageError::InvalidImage { details: format!("decompressor: {e}") };
    Ok(match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(r).map_err(io)?),
        Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(r)),
    })
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(ImageError::InvalidImage {
                    details: format!("cannot decode image: {e}"),
                });
            }
        }
    }
    Ok(n)
}

fn decode_stage(
    mut input: ChanReader,
    sink: Sink,
    policy: FormatPolicy,
    ranges: RangeReader,
    rt: tokio::runtime::Handle,
) -> Result<DecodeOut> {
    let compression = sniff_compression(input.peek(8));
    if compression == Compression::None {
        let format = policy.check(sniff_disk(input.peek(SNIFF_LEN)))?;
        if format == DiskFormat::Qcow2 {
            let out = qcow2::stream(&mut input, &[], &sink, Some((&ranges, &rt)))?;
            drain(&mut input);
            return Ok(DecodeOut {
                format,
                compression,
                size: out.virtual_size,
                random_reads: out.random_reads,
            });
        }
        let mut off = 0u64;
        while let Some(b) = input.next_bytes() {
            let n = b.len() as u64;
            sink.send(WriteOp::Data(off, b))?;
            off += n;
        }
        return Ok(DecodeOut { format, compression, size: off, random_reads: 0 });
    }
    let mut dec = decoder(compression, input)?;
    let mut head = vec![0u8; SNIFF_LEN];
    let hn = read_full(&mut *dec, &mut head)?;
    head.truncate(hn);
    let format = policy.check(sniff_disk(&head))?;
    if format == DiskFormat::Qcow2 {
        let out = qcow2::stream(&mut *dec, &head, &sink, None)?;
        let mut scratch = vec![0u8; 1 << 20];
        while read_full(&mut *dec, &mut scratch)? > 0 {}
        return Ok(DecodeOut { format, compression, size: out.virtual_size, random_reads: 0 });
    }
    let mut off = head.len() as u64;
    sink.send(WriteOp::Data(0, Bytes::from(head)))?;
    loop {
        let mut buf = vec![0u8; 4 << 20];
        let n = read_full(&mut *dec, &mut buf)?;
        if n == 0 {
            break;
        }
        buf.truncate(n);
        sink.send(WriteOp::Data(off, Bytes::from(buf)))?;
        off += n as u64;
    }
    Ok(DecodeOut { format, compression, size: off, random_reads: 0 })
}

fn drain(input: &mut ChanReader) {
    while input.next_bytes().is_some() {}
}

/// Shared counters for progress.
#[derive(Debug, Default)]
pub struct Stats {
    /// Bytes received.
    pub downloaded: AtomicU64,
    /// Bytes written (including the withheld head).
    pub written: Arc<AtomicU64>,
    /// Content length, 0 if unknown.
    pub total: AtomicU64,
}

/// Moves one write's counters into the agent's metrics: the bytes written since the last
/// sync and the write rate so far. Safe to call from the progress ticker and the end of the
/// stream at once (`fetch_max`: nothing is counted twice).
struct WriteMeter {
    metrics: Metrics,
    written: Arc<AtomicU64>,
    synced: AtomicU64,
    started: Instant,
}

impl WriteMeter {
    fn sync(&self) {
        let now = self.written.load(Ordering::Relaxed);
        let before = self.synced.fetch_max(now, Ordering::Relaxed);
        self.metrics.image_bytes_written(now.saturating_sub(before));
        let secs = self.started.elapsed().as_secs_f64();
        if secs > 0.0 {
            self.metrics.image_write_throughput(now as f64 / secs);
        }
    }
}

fn spawn_progress(
    ctx: Option<CommandContext>,
    meter: Option<Arc<WriteMeter>>,
    stats: Arc<Stats>,
    device: String,
    every: Duration,
) -> tokio::sync::oneshot::Sender<()> {
    let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
    if ctx.is_none() && meter.is_none() {
        return tx;
    }
    tokio::spawn(async move {
        let start = Instant::now();
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = &mut rx => break,
                _ = tick.tick() => {}
            }
            if let Some(m) = &meter {
                m.sync();
            }
            let Some(ctx) = &ctx else { continue };
            let done = stats.downloaded.load(Ordering::Relaxed);
            let total = stats.total.load(Ordering::Relaxed);
            let secs = start.elapsed().as_secs_f64().max(1e-3);
            let rate = done as f64 / secs;
            let eta = (total > done && rate > 0.0).then(|| (total - done) as f64 / rate);
            ctx.progress(Progress {
                phase: "download".into(),
                done,
                total: (total > 0).then_some(total),
                rate: Some(rate),
                eta_secs: eta,
                message: Some(format!("{} bytes written", stats.written.load(Ordering::Relaxed))),
                device: Some(device.clone()),
            });
        }
    });
    tx
}

/// Download counters already moved into the metrics.
#[derive(Default)]
struct DownloadSynced {
    retries: u32,
    resumes: u32,
}

impl DownloadSynced {
    fn sync(&mut self, metrics: Option<&Metrics>, dl: &Download) {
        let Some(m) = metrics else { return };
        let (retries, resumes) = (dl.retries(), dl.resumes());
        m.download_retried(u64::from(retries.saturating_sub(self.retries)));
        m.download_resumed(u64::from(resumes.saturating_sub(self.resumes)));
        self.retries = retries;
        self.resumes = resumes;
    }
}

/// Stream one image to its target, verify it, and only then write its first MiB.
///
/// With `spec.metrics` the write is metered while it runs: bytes written and throughput every
/// second, download retries and resumes as they happen, and at the end one
/// `ipa_image_writes_total{result}` and, on a digest mismatch, a checksum failure.
pub async fn stream_image(
    dl: Download,
    spec: StreamSpec,
    ctx: Option<CommandContext>,
) -> Result<StreamOutcome> {
    let metrics = spec.metrics.clone();
    let stats = Arc::new(Stats::default());
    let meter = metrics.clone().map(|m| {
        Arc::new(WriteMeter {
            metrics: m,
            written: stats.written.clone(),
            synced: AtomicU64::new(0),
            started: Instant::now(),
        })
    });
    let result = stream_metered(dl, spec, ctx, stats, meter.clone()).await;
    if let Some(m) = &metrics {
        if let Some(meter) = &meter {
            meter.sync();
        }
        if matches!(result, Err(ImageError::Checksum { .. })) {
            m.checksum_failed();
        }
        m.image_write_finished(result.is_ok());
    }
    result
}

async fn stream_metered(
    mut dl: Download,
    spec: StreamSpec,
    ctx: Option<CommandContext>,
    stats: Arc<Stats>,
    meter: Option<Arc<WriteMeter>>,
) -> Result<StreamOutcome> {
    let started = Instant::now();
    let mut writer =
        Writer::open(&spec.target, &spec.device, spec.base, spec.limit, stats.written.clone())?;
    // Nothing bootable may remain while the new image is incomplete.
    writer.zero_abs(spec.base, spec.limit.unwrap_or(u64::MAX).min(crate::writer::HEAD))?;

    let (hash_tx, mut hash_rx) = mpsc::channel::<Bytes>(32);
    let (data_tx, data_rx) = mpsc::channel::<Bytes>(32);
    let (op_tx, op_rx) = std::sync::mpsc::sync_channel::<WriteOp>(16);

    let algo = spec.expected.algo;
    let hasher = tokio::task::spawn_blocking(move || {
        let mut h = algo.hasher();
        while let Some(b) = hash_rx.blocking_recv() {
            h.update(&b);
        }
        hex::encode(h.finalize())
    });
    // Read-back: digest the written (decoded) stream on its own thread.
    let (out_tx, out_digest) = if spec.readback {
        let (tx, rx) = std::sync::mpsc::sync_channel::<WriteOp>(32);
        let task = tokio::task::spawn_blocking(move || {
            let mut d = OutputDigest::new();
            for op in rx {
                d.apply(&op);
            }
            d.finish()
        });
        (Some(tx), Some(task))
    } else {
        (None, None)
    };
    let writer_task = tokio::task::spawn_blocking(move || -> Result<Writer> {
        for op in op_rx {
            if let Some(tx) = &out_tx {
                // Bytes clone: a reference count, not a copy.
                let _ = tx.send(op.clone());
            }
            writer.apply(op)?;
        }
        drop(out_tx);
        writer.finish_body()?;
        Ok(writer)
    });
    let policy = spec.policy.clone();
    let ranges = dl.ranges();
    let rt = tokio::runtime::Handle::current();
    let decoder = tokio::task::spawn_blocking(move || {
        let input = ChanReader { rx: data_rx, cur: Bytes::new(), eof: false };
        decode_stage(input, Sink { tx: op_tx }, policy, ranges, rt)
    });

    let stop_progress = spawn_progress(
        ctx.clone(),
        meter,
        stats.clone(),
        spec.device.clone(),
        Duration::from_secs(1),
    );
    let mut synced = DownloadSynced::default();
    let dl_result: Result<bool> = async {
        loop {
            let chunk = dl.next_chunk().await;
            synced.sync(spec.metrics.as_ref(), &dl);
            match chunk? {
                Some(b) => {
                    if let Some(t) = dl.total() {
                        stats.total.store(t, Ordering::Relaxed);
                    }
                    stats.downloaded.fetch_add(b.len() as u64, Ordering::Relaxed);
                    if data_tx.send(b.clone()).await.is_err() {
                        return Ok(false);
                    }
                    if hash_tx.send(b).await.is_err() {
                        return Ok(false);
                    }
                }
                None => return Ok(true),
            }
        }
    }
    .await;
    drop(data_tx);
    drop(hash_tx);
    let _ = stop_progress.send(());
    let joined =
        |source: tokio::task::JoinError| ImageError::Task { stage: "pipeline stage", source };
    let decoded = decoder.await.map_err(joined)?;
    let written = writer_task.await.map_err(joined)?;
    let digest = hasher.await.map_err(joined)?;
    dl_result?;
    let mut writer = written?;
    let decoded = decoded?;

    if !digest.eq_ignore_ascii_case(&spec.expected.value) {
        tracing::error!(image = %spec.image_id, "image checksum mismatch; the head of the disk stays zeroed");
        writer.poison()?;
        return Err(ImageError::Checksum {
            image_id: spec.image_id.clone(),
            location: spec.location.clone(),
            expected: spec.expected.value.clone(),
            actual: digest,
        });
    }
    writer.commit_head()?;
    let readback = match out_digest {
        Some(task) => match task.await.map_err(joined)? {
            Some(want) => Some(verify_readback(&spec, &mut writer, want, ctx.as_ref()).await?),
            None => {
                tracing::warn!(image = %spec.image_id, "read-back verification skipped");
                None
            }
        },
        None => None,
    };
    let out = StreamOutcome {
        downloaded: dl.position(),
        image_size: decoded.size,
        format: decoded.format,
        compression: decoded.compression,
        digest,
        resumes: dl.resumes(),
        random_reads: decoded.random_reads,
        direct: writer.is_direct(),
        elapsed: started.elapsed(),
        readback,
    };
    if let Some(ctx) = &ctx {
        ctx.progress(Progress {
            phase: "verify".into(),
            done: out.downloaded,
            total: Some(out.downloaded),
            rate: Some(out.downloaded as f64 / out.elapsed.as_secs_f64().max(1e-3)),
            eta_secs: Some(0.0),
            message: Some(format!(
                "{} verified, {} bytes written",
                algo_name(&spec.expected),
                out.image_size
            )),
            device: Some(spec.device.clone()),
        });
    }
    tracing::info!(image = %spec.image_id, format = out.format.name(), compression = out.compression.name(),
        bytes = out.image_size, secs = out.elapsed.as_secs_f64(), resumes = out.resumes, "image written and verified");
    Ok(out)
}

fn algo_name(e: &Expected) -> String {
    format!("{:?}", e.algo).to_lowercase()
}

/// Re-read the written range and compare it with the digest of the written stream. On a
/// mismatch the head is zeroed again (the target must not look bootable) and a write error
/// names the first differing region.
async fn verify_readback(
    spec: &StreamSpec,
    writer: &mut Writer,
    want: crate::readback::RegionSums,
    ctx: Option<&CommandContext>,
) -> Result<ReadbackReport> {
    if let Some(hook) = &spec.before_readback {
        (hook.0)(&spec.target);
    }
    let len = want.len;
    let done = Arc::new(AtomicU64::new(0));
    let (target, base, d2) = (spec.target.clone(), spec.base, done.clone());
    let mut task = tokio::task::spawn_blocking(move || read_back(&target, base, len, d2));
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let progress = |done: u64, final_rate: Option<f64>, msg: String| {
        if let Some(ctx) = ctx {
            let rate =
                final_rate.unwrap_or(done as f64 / started.elapsed().as_secs_f64().max(1e-3));
            ctx.progress(Progress {
                phase: "verify".into(),
                done,
                total: Some(len),
                rate: Some(rate),
                eta_secs: (rate > 0.0).then(|| len.saturating_sub(done) as f64 / rate),
                message: Some(msg),
                device: Some(spec.device.clone()),
            });
        }
    };
    let joined = loop {
        tokio::select! {
            r = &mut task => break r,
            _ = tick.tick() => progress(done.load(Ordering::Relaxed), None, "reading back".into()),
        }
    };
    let werr = |msg: String| ImageError::Write { device: spec.device.clone(), msg };
    let (got, report) = joined
        .map_err(|source| ImageError::Task { stage: "read-back", source })?
        .map_err(|e| werr(format!("read-back verification: {e}")))?;
    if let Some((start, end)) = want.first_difference(&got) {
        tracing::error!(image = %spec.image_id, device = %spec.device, start, end,
            "read-back verification failed; zeroing the head of the image");
        writer.poison()?;
        return Err(werr(format!(
            "read-back verification failed: the bytes read back from image offsets \
             {start}..{end} differ from the bytes written; the first MiB was zeroed"
        )));
    }
    let mbps = report.rate() / 1e6;
    progress(
        report.bytes,
        Some(report.rate()),
        format!("read-back verified {} bytes at {mbps:.0} MB/s", report.bytes),
    );
    tracing::info!(image = %spec.image_id, device = %spec.device, bytes = report.bytes,
        secs = report.elapsed.as_secs_f64(), mb_per_s = mbps, direct = report.direct,
        "read-back verification passed");
    Ok(report)
}
