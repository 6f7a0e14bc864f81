//! Native disk I/O for erasure: whole-device overwrite (zeros or a reproducible pseudo-random
//! pattern) with large aligned `O_DIRECT` writes from a few worker threads, zeroing through the
//! kernel's `BLKZEROOUT` (the device's Write Zeroes / Write Same when it has one), sampled
//! read-back verification that records what it read ([`ipa_core::attest::Sample`]), and the
//! metadata wipe (both ends, GPT regions, a few superblock offsets).
//!
//! Everything here takes a path that already went through `RunMode::device_path`; nothing in
//! this module decides which device to open.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ipa_core::attest::{Expect as Claim, Sample, sha256_hex};

/// Alignment for `O_DIRECT` buffers, offsets and lengths (covers 512 B and 4 KiB sectors).
pub const ALIGN: usize = 4096;
/// Bytes per write request.
pub const CHUNK: usize = 8 << 20;
/// Granularity of the pseudo-random pattern: each block's bytes depend only on the pass seed
/// and the block's offset, so any sampled region can be recomputed for verification.
pub const PATTERN_BLOCK: u64 = 64 << 10;
/// Bytes read back at the head and at the tail of a device.
pub const EDGE_SAMPLE: u64 = 1 << 20;
/// Bytes per random sample.
pub const RANDOM_SAMPLE: u64 = 256 << 10;
/// Bytes per `BLKZEROOUT` request (progress and cancellation between requests).
pub const ZEROOUT_CHUNK: u64 = 1 << 30;

// <linux/fs.h>: `_IO(0x12, 127)` and `_IO(0x12, 119)`, both taking `uint64_t[2]` {start, len}.
nix::ioctl_write_ptr_bad!(blkzeroout, nix::request_code_none!(0x12, 127), [u64; 2]);
nix::ioctl_write_ptr_bad!(blkdiscard, nix::request_code_none!(0x12, 119), [u64; 2]);
nix::ioctl_write_ptr_bad!(blksecdiscard, nix::request_code_none!(0x12, 125), [u64; 2]);

/// The kind of discard [`Target::discard`] issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discard {
    /// `BLKDISCARD`: the blocks are unmapped; what reads back is device-defined.
    Plain,
    /// `BLKSECDISCARD`: unmapped and every copy destroyed (EOPNOTSUPP on most devices).
    Secure,
}

/// A page-aligned heap buffer (for `O_DIRECT`).
pub struct AlignedBuf {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the buffer is uniquely owned heap memory.
unsafe impl Send for AlignedBuf {}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuf").field("len", &self.len).finish()
    }
}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes (rounded up to [`ALIGN`]).
    pub fn zeroed(len: usize) -> Self {
        let len = len.max(ALIGN).div_ceil(ALIGN) * ALIGN;
        let layout = std::alloc::Layout::from_size_align(len, ALIGN).expect("valid layout");
        // SAFETY: layout has a non-zero size.
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr =
            std::ptr::NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        Self { ptr, len }
    }
    fn layout(&self) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(self.len, ALIGN).expect("valid layout")
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr is valid for len initialised bytes for the buffer's lifetime.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and we hold the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with the same layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout()) }
    }
}

/// An open target: a direct handle when the filesystem/device accepts `O_DIRECT`, and a
/// buffered handle for unaligned remainders.
#[derive(Debug)]
pub struct Target {
    direct: Option<File>,
    buffered: File,
    /// Size in bytes (seek to end: works for block devices and files).
    pub size: u64,
}

impl Target {
    /// Open `path` (read-write when `write`).
    pub fn open(path: &Path, write: bool) -> std::io::Result<Self> {
        let mut opts = OpenOptions::new();
        opts.read(true).write(write);
        let mut buffered = opts.open(path)?;
        let size = buffered.seek(SeekFrom::End(0))?;
        let direct = opts.custom_flags(libc::O_DIRECT).open(path).ok();
        Ok(Self { direct, buffered, size })
    }

    /// Whether writes bypass the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    fn write_at(&self, buf: &[u8], off: u64) -> std::io::Result<()> {
        match &self.direct {
            Some(d) if is_aligned(off, buf.len()) => d.write_all_at(buf, off),
            _ => self.buffered.write_all_at(buf, off),
        }
    }

    fn read_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<()> {
        match &self.direct {
            Some(d) if is_aligned(off, buf.len()) => d.read_exact_at(buf, off),
            _ => self.buffered.read_exact_at(buf, off),
        }
    }

    /// Whether this is a block device (the block ioctls apply) rather than a file.
    pub fn is_block_device(&self) -> bool {
        self.buffered.metadata().is_ok_and(|m| m.file_type().is_block_device())
    }

    /// `BLKZEROOUT` of `len` bytes at `off`: the kernel zeroes the range with the device's
    /// Write Zeroes command when it has one, else by writing zero pages itself. `Ok(false)`
    /// on a regular file (nothing done).
    pub fn zeroout(&self, off: u64, len: u64) -> std::io::Result<bool> {
        if !self.is_block_device() {
            return Ok(false);
        }
        let range = [off, len];
        // SAFETY: the fd is open for writing; the kernel reads two u64 from `range`.
        unsafe { blkzeroout(self.buffered.as_raw_fd(), &range) }.map_err(std::io::Error::from)?;
        Ok(true)
    }

    /// `BLKDISCARD` / `BLKSECDISCARD` of `len` bytes at `off` (block devices only).
    pub fn discard(&self, off: u64, len: u64, kind: Discard) -> std::io::Result<()> {
        if !self.is_block_device() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "discard needs a block device",
            ));
        }
        let range = [off, len];
        let fd = self.buffered.as_raw_fd();
        let r = match kind {
            // SAFETY: as for `zeroout`: an open fd, two u64 read by the kernel.
            Discard::Plain => unsafe { blkdiscard(fd, &range) },
            // SAFETY: as above.
            Discard::Secure => unsafe { blksecdiscard(fd, &range) },
        };
        r.map(|_| ()).map_err(std::io::Error::from)
    }

    /// Flush data to stable storage (a cache flush on block devices).
    pub fn sync(&self) -> std::io::Result<()> {
        self.buffered.sync_data()?;
        if let Some(d) = &self.direct {
            d.sync_data()?;
        }
        Ok(())
    }
}

fn is_aligned(off: u64, len: usize) -> bool {
    off.is_multiple_of(ALIGN as u64) && len.is_multiple_of(ALIGN)
}

/// What one overwrite pass writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// Binary zeros.
    Zero,
    /// The reproducible pseudo-random stream of this seed.
    Random(u64),
}

/// splitmix64: seeds the per-block generator.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fill `buf` (which starts at device offset `off`, a multiple of [`PATTERN_BLOCK`] or not)
/// with the pattern's bytes for that range.
pub fn fill_pattern(pattern: Pattern, buf: &mut [u8], off: u64) {
    let Pattern::Random(seed) = pattern else {
        buf.fill(0);
        return;
    };
    let mut pos = 0usize;
    while pos < buf.len() {
        let abs = off + pos as u64;
        let block = abs / PATTERN_BLOCK;
        let in_block = abs % PATTERN_BLOCK;
        let take = ((PATTERN_BLOCK - in_block) as usize).min(buf.len() - pos);
        // xorshift64* stream, one 8-byte word per step, restarted at every block.
        let mut x = splitmix(seed ^ block.wrapping_mul(0xA24B_AED4_963E_E407)) | 1;
        let skip_words = in_block / 8;
        for _ in 0..skip_words {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
        }
        let mut word_off = (in_block % 8) as usize;
        let mut written = 0;
        while written < take {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let w = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            let n = (8 - word_off).min(take - written);
            buf[pos + written..pos + written + n].copy_from_slice(&w[word_off..word_off + n]);
            written += n;
            word_off = 0;
        }
        pos += take;
    }
}

/// Knobs of one overwrite pass.
#[derive(Debug, Clone, Default)]
pub struct OverwriteOptions {
    /// Worker threads (queue depth); 0 means 4.
    pub workers: usize,
}

/// What an overwrite pass writes to: the device ([`Target`]) or a fake.
pub trait BlockWriter: Sync {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Write all of `buf` at `off`.
    fn write_at(&self, buf: &[u8], off: u64) -> std::io::Result<()>;
    /// Flush to stable storage.
    fn sync(&self) -> std::io::Result<()>;
    /// Have the device zero `len` bytes at `off` (`BLKZEROOUT`); `Ok(false)` when it cannot
    /// (a file, a fake), and the caller writes zeros itself.
    fn zero_range(&self, _off: u64, _len: u64) -> std::io::Result<bool> {
        Ok(false)
    }
}

impl BlockWriter for Target {
    fn size(&self) -> u64 {
        self.size
    }
    fn write_at(&self, buf: &[u8], off: u64) -> std::io::Result<()> {
        Target::write_at(self, buf, off)
    }
    fn zero_range(&self, off: u64, len: u64) -> std::io::Result<bool> {
        self.zeroout(off, len)
    }
    fn sync(&self) -> std::io::Result<()> {
        Target::sync(self)
    }
}

/// Opens the [`BlockWriter`] of an overwrite pass.
pub trait OpenWriter: Send + Sync + std::fmt::Debug {
    /// Open `path` for writing.
    fn open(&self, path: &Path) -> std::io::Result<Box<dyn BlockWriter + Send>>;
}

/// The real opener: the device itself, `O_DIRECT` where possible.
#[derive(Debug, Default, Clone, Copy)]
pub struct DeviceWriter;

impl OpenWriter for DeviceWriter {
    fn open(&self, path: &Path) -> std::io::Result<Box<dyn BlockWriter + Send>> {
        Ok(Box::new(Target::open(path, true)?))
    }
}

/// A fake opener beside the real one: a writer that silently leaves `skip` unwritten, the
/// kind of firmware or driver bug the read-back verification exists to catch.
#[derive(Debug, Clone)]
pub struct SkippingWriter {
    /// The byte range never written.
    pub skip: Range<u64>,
}

struct Skipping {
    inner: Target,
    skip: Range<u64>,
}

impl OpenWriter for SkippingWriter {
    fn open(&self, path: &Path) -> std::io::Result<Box<dyn BlockWriter + Send>> {
        Ok(Box::new(Skipping { inner: Target::open(path, true)?, skip: self.skip.clone() }))
    }
}

impl BlockWriter for Skipping {
    fn size(&self) -> u64 {
        self.inner.size
    }
    fn write_at(&self, data: &[u8], off: u64) -> std::io::Result<()> {
        let (t, skip) = (&self.inner, &self.skip);
        let end = off + data.len() as u64;
        if end <= skip.start || off >= skip.end {
            return t.write_at(data, off);
        }
        if off < skip.start {
            t.write_at(&data[..(skip.start - off) as usize], off)?;
        }
        if end > skip.end {
            t.write_at(&data[(skip.end - off) as usize..], skip.end)?;
        }
        Ok(())
    }
    fn sync(&self) -> std::io::Result<()> {
        self.inner.sync()
    }
}

/// A fake opener beside the real one: the device whose file name is `name` disappears after
/// `after` bytes were written to it (writes then fail with `ENODEV`, as when a disk drops off
/// the bus); other devices are written normally.
#[derive(Debug, Clone)]
pub struct VanishingWriter {
    /// File name of the device that vanishes (`sdb`).
    pub name: String,
    /// Bytes accepted before it vanishes.
    pub after: u64,
}

struct Vanishing {
    inner: Target,
    after: u64,
    written: AtomicU64,
}

impl OpenWriter for VanishingWriter {
    fn open(&self, path: &Path) -> std::io::Result<Box<dyn BlockWriter + Send>> {
        let inner = Target::open(path, true)?;
        if path.file_name().is_some_and(|n| n.to_string_lossy() == self.name) {
            Ok(Box::new(Vanishing { inner, after: self.after, written: AtomicU64::new(0) }))
        } else {
            Ok(Box::new(inner))
        }
    }
}

impl BlockWriter for Vanishing {
    fn size(&self) -> u64 {
        self.inner.size
    }
    fn write_at(&self, data: &[u8], off: u64) -> std::io::Result<()> {
        if self.written.fetch_add(data.len() as u64, Ordering::Relaxed) >= self.after {
            return Err(std::io::Error::from_raw_os_error(libc::ENODEV));
        }
        self.inner.write_at(data, off)
    }
    fn sync(&self) -> std::io::Result<()> {
        if self.written.load(Ordering::Relaxed) >= self.after {
            return Err(std::io::Error::from_raw_os_error(libc::ENODEV));
        }
        self.inner.sync()
    }
}

/// Why an overwrite stopped.
#[derive(Debug, thiserror::Error)]
pub enum OverwriteError {
    /// An I/O error at an offset.
    #[error("write at offset {offset} failed: {source}")]
    Io {
        /// Byte offset.
        offset: u64,
        /// Cause.
        source: std::io::Error,
    },
    /// The operation was cancelled (step aborted).
    #[error("cancelled after {done} bytes")]
    Cancelled {
        /// Bytes written.
        done: u64,
    },
}

/// Overwrite the whole target with `pattern`, then flush. `progress(done)` is called from the
/// calling thread about twice a second.
pub fn overwrite(
    t: &dyn BlockWriter,
    pattern: Pattern,
    opts: &OverwriteOptions,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, OverwriteError> {
    let size = t.size();
    let chunks = size.div_ceil(CHUNK as u64);
    let next = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let workers =
        if opts.workers == 0 { 4 } else { opts.workers }.max(1).min(chunks.max(1) as usize);
    let first_err: std::sync::Mutex<Option<OverwriteError>> = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                let mut buf = AlignedBuf::zeroed(CHUNK);
                loop {
                    if cancel.load(Ordering::Relaxed) || failed.load(Ordering::Relaxed) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= chunks {
                        return;
                    }
                    let off = i * CHUNK as u64;
                    let len = (size - off).min(CHUNK as u64) as usize;
                    let data = &mut buf[..len];
                    if pattern != Pattern::Zero {
                        fill_pattern(pattern, data, off);
                    }
                    if let Err(source) = t.write_at(data, off) {
                        failed.store(true, Ordering::Relaxed);
                        let mut g = first_err.lock().unwrap_or_else(|p| p.into_inner());
                        g.get_or_insert(OverwriteError::Io { offset: off, source });
                        return;
                    }
                    done.fetch_add(len as u64, Ordering::Relaxed);
                }
            });
        }
        // Progress from the calling thread until every chunk is written or work stops.
        let mut last = Instant::now();
        loop {
            let d = done.load(Ordering::Relaxed);
            let stop = failed.load(Ordering::Relaxed) || cancel.load(Ordering::Relaxed);
            if d >= size || stop {
                progress(d);
                break;
            }
            if last.elapsed() >= Duration::from_millis(500) {
                progress(d);
                last = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    if let Some(e) = first_err.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let written = done.load(Ordering::Relaxed);
    if cancel.load(Ordering::Relaxed) && written < size {
        return Err(OverwriteError::Cancelled { done: written });
    }
    t.sync().map_err(|source| OverwriteError::Io { offset: size, source })?;
    Ok(written)
}

/// Zero the whole target: `BLKZEROOUT` in [`ZEROOUT_CHUNK`] requests when the writer can
/// ([`BlockWriter::zero_range`]), else an [`overwrite`] with zeros. Returns the bytes zeroed
/// and whether the kernel did it.
pub fn zero_fill(
    t: &dyn BlockWriter,
    opts: &OverwriteOptions,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(u64),
) -> Result<(u64, bool), OverwriteError> {
    let size = t.size();
    let mut off = 0;
    while off < size {
        if cancel.load(Ordering::Relaxed) {
            return Err(OverwriteError::Cancelled { done: off });
        }
        let len = (size - off).min(ZEROOUT_CHUNK);
        match t.zero_range(off, len) {
            Ok(true) => {
                off += len;
                progress(off);
            }
            Ok(false) if off == 0 => {
                return overwrite(t, Pattern::Zero, opts, cancel, progress).map(|n| (n, false));
            }
            Ok(false) => {
                return Err(OverwriteError::Io {
                    offset: off,
                    source: std::io::Error::other("zeroout stopped working mid-device"),
                });
            }
            Err(source) => return Err(OverwriteError::Io { offset: off, source }),
        }
    }
    t.sync().map_err(|source| OverwriteError::Io { offset: size, source })?;
    Ok((size, true))
}

/// Regions read back after an erase: the head and tail ([`EDGE_SAMPLE`] each) and `random`
/// aligned regions of [`RANDOM_SAMPLE`] at offsets drawn from `seed`. Sorted, merged.
pub fn sample_regions(size: u64, random: usize, seed: u64) -> Vec<Range<u64>> {
    let mut v = vec![0..EDGE_SAMPLE.min(size), size.saturating_sub(EDGE_SAMPLE)..size];
    if size > 2 * EDGE_SAMPLE + RANDOM_SAMPLE {
        let span = size - RANDOM_SAMPLE;
        for i in 0..random {
            let r = splitmix(seed.wrapping_add(i as u64)) % span;
            let start = r / ALIGN as u64 * ALIGN as u64;
            v.push(start..start + RANDOM_SAMPLE);
        }
    }
    v.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::new();
    for r in v.into_iter().filter(|r| r.start < r.end) {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// What verification expects of the sampled regions.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// The pattern a pass wrote (zeros, or the reproducible random stream).
    Pattern(Pattern),
    /// The content must differ from these fingerprints taken before the erase (for methods
    /// that guarantee the data is gone but not what replaces it).
    ChangedFrom(Vec<Fingerprint>),
}

/// A region's fingerprint before an erase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// Region.
    pub range: Range<u64>,
    /// SHA-256 (hex) of its bytes.
    pub sha256: String,
    /// All bytes equal (such regions cannot show a change reliably and are not judged).
    pub uniform: bool,
}

/// A failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A byte differs from what the method guarantees.
    #[error("byte at offset {offset} is {found:#04x}, expected {expected:#04x}")]
    Mismatch {
        /// Absolute offset.
        offset: u64,
        /// Found.
        found: u8,
        /// Expected.
        expected: u8,
    },
    /// A region still holds exactly what it held before the erase.
    #[error("region {start}..{end} is unchanged by the erase")]
    Unchanged {
        /// Start.
        start: u64,
        /// End.
        end: u64,
    },
    /// Reading back failed.
    #[error("read back at offset {offset} failed: {reason}")]
    Read {
        /// Offset.
        offset: u64,
        /// OS error.
        reason: String,
    },
}

fn read_region(t: &Target, r: &Range<u64>, buf: &mut AlignedBuf) -> Result<usize, VerifyError> {
    let len = (r.end - r.start) as usize;
    if buf.len() < len {
        *buf = AlignedBuf::zeroed(len);
    }
    let data = &mut buf[..len];
    t.read_at(data, r.start)
        .map_err(|e| VerifyError::Read { offset: r.start, reason: e.to_string() })?;
    Ok(len)
}

/// Fingerprint regions before an erase.
pub fn fingerprint(t: &Target, regions: &[Range<u64>]) -> Result<Vec<Fingerprint>, VerifyError> {
    let mut buf = AlignedBuf::zeroed(EDGE_SAMPLE as usize);
    let mut out = Vec::new();
    for r in regions {
        let len = read_region(t, r, &mut buf)?;
        let data = &buf[..len];
        let uniform = data.iter().all(|b| *b == data[0]);
        out.push(Fingerprint { range: r.clone(), sha256: sha256_hex(data), uniform });
    }
    Ok(out)
}

/// Read back `regions` and check them against `expect`. Returns what was read, as report
/// samples (every one `ok`: the first region that is not is an error).
pub fn verify(
    t: &Target,
    regions: &[Range<u64>],
    expect: &Expect,
) -> Result<Vec<Sample>, VerifyError> {
    match expect {
        Expect::Pattern(p) => {
            let mut buf = AlignedBuf::zeroed(EDGE_SAMPLE as usize);
            let mut want = Vec::new();
            let mut samples = Vec::new();
            let claim = if *p == Pattern::Zero { Claim::Zero } else { Claim::Pattern };
            for r in regions {
                let len = read_region(t, r, &mut buf)?;
                want.resize(len, 0);
                fill_pattern(*p, &mut want, r.start);
                if let Some(i) = buf[..len].iter().zip(&want).position(|(a, b)| a != b) {
                    return Err(VerifyError::Mismatch {
                        offset: r.start + i as u64,
                        found: buf[i],
                        expected: want[i],
                    });
                }
                samples.push(Sample {
                    offset: r.start,
                    length: len as u64,
                    expect: claim,
                    sha256: sha256_hex(&buf[..len]),
                    before_sha256: None,
                    uniform_before: false,
                    ok: true,
                });
            }
            Ok(samples)
        }
        Expect::ChangedFrom(before) => {
            let ranges: Vec<Range<u64>> = before.iter().map(|f| f.range.clone()).collect();
            let after = fingerprint(t, &ranges)?;
            let mut samples = Vec::new();
            for (b, a) in before.iter().zip(&after) {
                if !b.uniform && b.sha256 == a.sha256 {
                    return Err(VerifyError::Unchanged { start: b.range.start, end: b.range.end });
                }
                samples.push(Sample {
                    offset: b.range.start,
                    length: b.range.end - b.range.start,
                    expect: Claim::Changed,
                    sha256: a.sha256.clone(),
                    before_sha256: Some(b.sha256.clone()),
                    uniform_before: b.uniform,
                    ok: true,
                });
            }
            Ok(samples)
        }
    }
}

/// Byte ranges a metadata wipe zeroes on a device of `size` bytes with `sector`-byte logical
/// sectors: IPA's 33 (512 B) / 5 (4 KiB) sectors at both ends, the GPT partition-entry arrays
/// and the backup header named by a primary GPT header (even when the device was resized and
/// the backup is no longer at the end), the btrfs superblock (64 KiB), the md 0.90
/// superblock (last 64 KiB-aligned 64 KiB; 1.0–1.2 are inside the ends), the ISO 9660
/// descriptors (32 KiB) and, on devices of 64 MiB or more, the ZFS labels (512 KiB at each
/// end; they also cover LVM, bcache and LUKS headers). Sorted, merged, clamped to the device.
pub fn metadata_regions(size: u64, sector: u64, gpt_header: Option<&[u8]>) -> Vec<Range<u64>> {
    let count = if sector >= 4096 { 5 } else { 33 };
    let edge = (sector * count).min(size);
    let mut v = vec![0..edge, size - edge..size, 64 << 10..(64 << 10) + 4096];
    // ISO 9660 volume descriptors (32 KiB..), and ZFS's four 256 KiB vdev labels (two at
    // each end) on anything big enough to hold a pool.
    v.push(32 << 10..40 << 10);
    if size >= 64 << 20 {
        v.push(0..512 << 10);
        v.push(size - (512 << 10)..size);
    }
    let md = (size & !((64 << 10) - 1)).saturating_sub(64 << 10);
    v.push(md..md + (64 << 10));
    if let Some(h) = gpt_header.filter(|h| h.len() >= 92 && &h[..8] == b"EFI PART") {
        let u64_at = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |o: usize| u32::from_le_bytes(h[o..o + 4].try_into().unwrap_or([0; 4]));
        let backup_lba = u64_at(32);
        let entries_lba = u64_at(72);
        let entries_len = u64::from(u32_at(80)) * u64::from(u32_at(84));
        let entries_len = entries_len.min(1 << 20).div_ceil(sector) * sector;
        v.push(entries_lba * sector..entries_lba * sector + entries_len);
        // The backup header, and its entry array right before it.
        let bh = backup_lba.saturating_mul(sector);
        v.push(bh.saturating_sub(entries_len)..bh.saturating_add(sector));
    }
    v.iter_mut().for_each(|r| {
        r.start = r.start.min(size);
        r.end = r.end.min(size);
    });
    v.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::new();
    for r in v.into_iter().filter(|r| r.start < r.end) {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// What [`probe_content`] found on a device by reading it (no udev needed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContentProbe {
    /// Partition type GUIDs (lower case) of the GPT, and `0xNN` types of the MBR.
    pub part_types: Vec<String>,
    /// Filesystems recognised at the start of the device or of a partition (`gfs2`).
    pub fs_types: Vec<String>,
}

fn guid(b: &[u8]) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{}",
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_le_bytes([b[4], b[5]]),
        u16::from_le_bytes([b[6], b[7]]),
        b[8],
        b[9],
        b[10..16].iter().map(|x| format!("{x:02x}")).collect::<String>()
    )
}

/// Read the partition table(s) of `path` (GPT with 512 B or 4 KiB sectors, else the MBR),
/// look for md RAID superblocks (0.90, 1.0, 1.1, 1.2) and for a GFS2 superblock at the
/// device's and each partition's start + 64 KiB. What IPA
/// asks `lsblk` (i.e. udev) for, read from the media itself: the ramdisk has no udev.
pub fn probe_content(path: &Path) -> std::io::Result<ContentProbe> {
    let f = File::open(path)?;
    let size = f.metadata()?.len().max({
        let mut g = &f;
        g.seek(SeekFrom::End(0))?
    });
    let read = |off: u64, len: usize| -> Vec<u8> {
        let mut buf = vec![0u8; len];
        match f.read_exact_at(&mut buf, off) {
            Ok(()) => buf,
            Err(_) => Vec::new(),
        }
    };
    let mut out = ContentProbe::default();
    let mut starts: Vec<u64> = vec![0];
    let mut gpt = false;
    for sector in [512u64, 4096] {
        let h = read(sector, 92);
        if h.len() < 92 || &h[..8] != b"EFI PART" {
            continue;
        }
        gpt = true;
        let entries_lba = u64::from_le_bytes(h[72..80].try_into().unwrap_or([0; 8]));
        let count = u32::from_le_bytes(h[80..84].try_into().unwrap_or([0; 4])).min(1024);
        let esize = u32::from_le_bytes(h[84..88].try_into().unwrap_or([0; 4]));
        if !(128..=4096).contains(&esize) {
            break;
        }
        let table = read(entries_lba * sector, (count * esize) as usize);
        for e in table.chunks(esize as usize) {
            if e.len() < 48 || e[..16].iter().all(|b| *b == 0) {
                continue;
            }
            out.part_types.push(guid(&e[..16]));
            starts.push(u64::from_le_bytes(e[32..40].try_into().unwrap_or([0; 8])) * sector);
        }
        break;
    }
    if !gpt {
        let mbr = read(0, 512);
        if mbr.len() == 512 && mbr[510] == 0x55 && mbr[511] == 0xaa {
            for i in 0..4 {
                let e = &mbr[446 + 16 * i..446 + 16 * (i + 1)];
                if e[4] != 0 && e[4] != 0xee {
                    out.part_types.push(format!("0x{:02x}", e[4]));
                    starts.push(u64::from(u32::from_le_bytes([e[8], e[9], e[10], e[11]])) * 512);
                }
            }
        }
    }
    // Linux md superblocks: 0.90 in the last 64 KiB-aligned 64 KiB, 1.0 8 KiB from the end
    // (4 KiB aligned), 1.1 at 0, 1.2 at 4 KiB; magic 0xa92b4efc little-endian.
    let md_at = [
        (size & !((64 << 10) - 1)).saturating_sub(64 << 10),
        (size.saturating_sub(8 << 10)) & !4095,
        0,
        4096,
    ];
    if size >= 128 << 10 && md_at.iter().any(|o| read(*o, 4) == [0xfc, 0x4e, 0x2b, 0xa9]) {
        out.fs_types.push("linux_raid_member".into());
    }
    for start in starts {
        // GFS2: struct gfs2_meta_header at 64 KiB, big-endian magic 0x01161970, type 1 (SB).
        let sb = read(start + (64 << 10), 12);
        if start < size
            && sb.len() == 12
            && sb[..4] == [0x01, 0x16, 0x19, 0x70]
            && sb[4..8] == [0, 0, 0, 1]
            && !out.fs_types.iter().any(|f| f == "gfs2")
        {
            out.fs_types.push("gfs2".into());
        }
    }
    Ok(out)
}

/// Zero the metadata regions of `path`, flush, and read them back. Returns one sample per
/// region (what was read; `ok` when it is zeros).
pub fn wipe_metadata(path: &Path, sector: u64) -> std::io::Result<Vec<Sample>> {
    let t = Target::open(path, true)?;
    let sector = if sector == 0 { 512 } else { sector };
    let mut header = vec![0u8; sector as usize];
    let gpt = (t.size >= 2 * sector && t.buffered.read_exact_at(&mut header, sector).is_ok())
        .then_some(header.as_slice());
    let regions = metadata_regions(t.size, sector, gpt);
    let mut buf = AlignedBuf::zeroed(CHUNK);
    for r in &regions {
        let mut off = r.start;
        while off < r.end {
            let n = (r.end - off).min(CHUNK as u64) as usize;
            buf[..n].fill(0);
            t.write_at(&buf[..n], off)?;
            off += n as u64;
        }
    }
    t.sync()?;
    let mut samples = Vec::with_capacity(regions.len());
    for r in &regions {
        let len = read_region(&t, r, &mut buf).map_err(std::io::Error::other)?;
        samples.push(Sample::zero(r.start, &buf[..len]));
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_reproducible_at_any_offset() {
        let mut whole = vec![0u8; 3 * PATTERN_BLOCK as usize];
        fill_pattern(Pattern::Random(7), &mut whole, 0);
        let mut part = vec![0u8; 100_003];
        fill_pattern(Pattern::Random(7), &mut part, 12_345);
        assert_eq!(&whole[12_345..12_345 + 100_003], &part[..]);
        assert!(whole.iter().filter(|b| **b == 0).count() < whole.len() / 100);
        let mut other = vec![0u8; 4096];
        fill_pattern(Pattern::Random(8), &mut other, 0);
        assert_ne!(&whole[..4096], &other[..]);
    }

    #[test]
    fn samples_cover_head_and_tail_and_stay_inside() {
        let size = 1 << 30;
        let r = sample_regions(size, 16, 42);
        assert_eq!(r[0].start, 0);
        assert_eq!(r.last().unwrap().end, size);
        assert!(r.len() >= 3);
        assert!(r.windows(2).all(|w| w[0].end < w[1].start));
        // Tiny device: one merged region covering it all.
        assert_eq!(sample_regions(5000, 16, 1), vec![0..5000]);
    }

    #[test]
    fn metadata_regions_follow_a_gpt_header_to_a_moved_backup() {
        let mut h = vec![0u8; 512];
        h[..8].copy_from_slice(b"EFI PART");
        h[32..40].copy_from_slice(&1_000_000u64.to_le_bytes()); // backup at old end
        h[72..80].copy_from_slice(&2u64.to_le_bytes());
        h[80..84].copy_from_slice(&128u32.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        let size = 2_000_000 * 512;
        let r = metadata_regions(size, 512, Some(&h));
        let covers = |a: u64, b: u64| r.iter().any(|x| x.start <= a && b <= x.end);
        assert!(covers(0, 33 * 512));
        assert!(covers(size - 33 * 512, size));
        assert!(covers(1_000_000 * 512 - 32 * 512, 1_000_001 * 512), "{r:?}");
        assert!(covers(64 << 10, (64 << 10) + 4096));
        // 4 KiB sectors: 5 sectors each end.
        let r4 = metadata_regions(32 << 20, 4096, None);
        assert_eq!(r4[0], 0..5 * 4096);
        // ZFS labels at both ends of a big device.
        let big = metadata_regions(1 << 30, 4096, None);
        assert_eq!(big[0], 0..512 << 10);
        assert_eq!(*big.last().unwrap(), (1 << 30) - (512 << 10)..1 << 30);
        assert_eq!(r4.last().unwrap().end, 32 << 20);
        // Tiny device is clamped.
        assert_eq!(metadata_regions(4096, 512, None), vec![0..4096]);
    }
}
