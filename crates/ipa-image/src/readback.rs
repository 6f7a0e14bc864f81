//! Optional read-back verification (`image_info["image_verify_readback"]` or the
//! `image_verify_readback` option).
//!
//! The image checksum covers the *downloaded* bytes (compressed, qcow2), so it says nothing
//! about what reached the target. While writing, [`OutputDigest`] digests the *written* byte
//! stream (after decompression / conversion); after the write, the fsync and the withheld head,
//! [`read_back`] re-reads the written range of the target (O_DIRECT when the target allows it,
//! 8 MiB aligned reads on a reader thread) and digests it the same way; the two must match.
//!
//! The digest is order independent, because qcow2 clusters may be written out of order: the
//! image is cut into 64 KiB cells, each cell gives `sha256(index ‖ crc32(cell))` and the cells of
//! every 64 MiB region are XOR-combined. Per-region sums let a mismatch name the first
//! differing 64 MiB region. The per-cell CRC-32 (PCLMUL, many GB/s) keeps both passes I/O
//! bound: this guards against torn, lost or misdirected writes and media corruption, while the
//! image's own checksum (over the downloaded bytes) remains the cryptographic check.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::writer::WriteOp;

/// Digest granularity.
pub const CELL: u64 = 64 << 10;
/// Granularity of the per-region sums (what a mismatch can name).
pub const REGION: u64 = 64 << 20;
const CELLS_PER_REGION: u64 = REGION / CELL;
const ALIGN: usize = 4096;
const READ_BUF: usize = 8 << 20;
/// Upper bound of memory held for partly written cells (out-of-order small qcow2 clusters).
const PENDING_CAP: usize = 64 << 20;

type Sum = [u8; 32];

/// The read-back digest of an image: one XOR sum per [`REGION`] and the image's extent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionSums {
    /// Bytes covered (the image's extent on the target).
    pub len: u64,
    sums: Vec<Sum>,
}

impl RegionSums {
    /// The first region whose sums differ, as an image-relative byte range.
    pub fn first_difference(&self, other: &RegionSums) -> Option<(u64, u64)> {
        let n = self.sums.len().max(other.sums.len());
        let zero = [0u8; 32];
        (0..n)
            .find(|&i| self.sums.get(i).unwrap_or(&zero) != other.sums.get(i).unwrap_or(&zero))
            .map(|i| {
                let start = i as u64 * REGION;
                (start, (start + REGION).min(self.len.max(other.len)))
            })
    }
}

/// Accumulates cell digests into region sums.
#[derive(Debug, Default)]
struct Sums {
    sums: Vec<Sum>,
}

impl Sums {
    fn add_cell(&mut self, index: u64, data: &[u8]) {
        let mut h = Sha256::new();
        h.update(index.to_le_bytes());
        h.update(crc32fast::hash(data).to_le_bytes());
        let mixed: Sum = h.finalize().into();
        let r = (index / CELLS_PER_REGION) as usize;
        if self.sums.len() <= r {
            self.sums.resize(r + 1, [0u8; 32]);
        }
        for (a, b) in self.sums[r].iter_mut().zip(mixed) {
            *a ^= b;
        }
    }
}

/// Digests the written byte stream, op by op, in any order (each byte written once).
#[derive(Debug, Default)]
pub struct OutputDigest {
    sums: Sums,
    /// Partly written cells: buffer (zero-initialised) and bytes filled.
    pending: HashMap<u64, (Vec<u8>, u64)>,
    end: u64,
    overflow: bool,
}

impl OutputDigest {
    /// An empty digest.
    pub fn new() -> Self {
        Self::default()
    }

    /// Account for one write operation.
    pub fn apply(&mut self, op: &WriteOp) {
        match op {
            WriteOp::Data(off, d) => self.piece(*off, d.len() as u64, Some(d)),
            WriteOp::Zero(off, len) => self.piece(*off, *len, None),
        }
    }

    fn piece(&mut self, mut off: u64, len: u64, data: Option<&[u8]>) {
        if self.overflow || len == 0 {
            return;
        }
        self.end = self.end.max(off + len);
        let zeros = vec![0u8; if data.is_none() { CELL as usize } else { 0 }];
        let mut pos = 0u64;
        while pos < len {
            let idx = off / CELL;
            let in_cell = off % CELL;
            let n = (CELL - in_cell).min(len - pos);
            let slice: &[u8] = match data {
                Some(d) => &d[pos as usize..(pos + n) as usize],
                None => &zeros[..n as usize],
            };
            if in_cell == 0 && n == CELL && !self.pending.contains_key(&idx) {
                self.sums.add_cell(idx, slice);
            } else {
                self.partial(idx, in_cell, slice);
            }
            off += n;
            pos += n;
        }
    }

    fn partial(&mut self, idx: u64, at: u64, slice: &[u8]) {
        if !self.pending.contains_key(&idx)
            && (self.pending.len() + 1) * CELL as usize > PENDING_CAP
        {
            tracing::warn!(
                "read-back digest: too many partly written cells (fragmented image); read-back \
                 verification will be skipped"
            );
            self.overflow = true;
            self.pending.clear();
            return;
        }
        let e = self.pending.entry(idx).or_insert_with(|| (vec![0u8; CELL as usize], 0));
        e.0[at as usize..at as usize + slice.len()].copy_from_slice(slice);
        e.1 += slice.len() as u64;
        if e.1 >= CELL {
            let (buf, _) = self.pending.remove(&idx).unwrap_or_default();
            self.sums.add_cell(idx, &buf);
        }
    }

    /// Close the digest; `None` if it had to give up (see [`PENDING_CAP`]).
    pub fn finish(mut self) -> Option<RegionSums> {
        if self.overflow {
            return None;
        }
        let end = self.end;
        for (idx, (buf, _)) in std::mem::take(&mut self.pending) {
            let start = idx * CELL;
            let n = (end.saturating_sub(start)).min(CELL) as usize;
            self.sums.add_cell(idx, &buf[..n]);
        }
        Some(RegionSums { len: end, sums: self.sums.sums })
    }
}

/// What a read-back did.
#[derive(Debug, Clone)]
pub struct ReadbackReport {
    /// Bytes read back.
    pub bytes: u64,
    /// Wall time of the read-back.
    pub elapsed: Duration,
    /// Whether the reads bypassed the page cache (O_DIRECT).
    pub direct: bool,
}

impl ReadbackReport {
    /// Read-back throughput in bytes per second.
    pub fn rate(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64().max(1e-6)
    }
}

struct AlignedBuf {
    mem: Vec<u8>,
    start: usize,
}

impl AlignedBuf {
    fn new() -> Self {
        let mem = vec![0u8; READ_BUF + ALIGN];
        let start = mem.as_ptr().align_offset(ALIGN).min(ALIGN);
        Self { mem, start }
    }
    fn buf(&mut self) -> &mut [u8] {
        &mut self.mem[self.start..self.start + READ_BUF]
    }
    fn data(&self, n: usize) -> &[u8] {
        &self.mem[self.start..self.start + n]
    }
}

fn read_full(f: &File, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], at + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Re-read `[base, base + len)` of `path` and digest it like [`OutputDigest`]. `done` counts
/// bytes read (for progress).
pub fn read_back(
    path: &Path,
    base: u64,
    len: u64,
    done: Arc<AtomicU64>,
) -> std::io::Result<(RegionSums, ReadbackReport)> {
    let started = Instant::now();
    let direct = if base.is_multiple_of(ALIGN as u64) {
        OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(path).ok()
    } else {
        None
    };
    let (file, mut is_direct) = match direct {
        Some(f) => (f, true),
        None => {
            let f = File::open(path)?;
            // The write was fsynced: drop the clean cached pages so the data really comes back
            // from the target, not from memory.
            let _ = drop_cache(&f, base, len);
            (f, false)
        }
    };
    let buffered = File::open(path)?;
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<(u64, usize, AlignedBuf)>(2);
    let (free_tx, free_rx) = std::sync::mpsc::sync_channel::<AlignedBuf>(3);
    for _ in 0..3 {
        let _ = free_tx.send(AlignedBuf::new());
    }
    let mut sums = Sums::default();
    let reader = std::thread::scope(|scope| {
        let h = scope.spawn(move || -> std::io::Result<bool> {
            let mut pos = 0u64;
            while pos < len {
                let Ok(mut b) = free_rx.recv() else { return Ok(is_direct) };
                let want = (len - pos).min(READ_BUF as u64) as usize;
                let rounded = want.div_ceil(ALIGN) * ALIGN;
                let got = if is_direct {
                    match read_full(&file, &mut b.buf()[..rounded], base + pos) {
                        Ok(g) => g,
                        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                            tracing::info!("O_DIRECT read refused; reading back buffered");
                            is_direct = false;
                            let _ = drop_cache(&buffered, base, len);
                            read_full(&buffered, &mut b.buf()[..want], base + pos)?
                        }
                        Err(e) => return Err(e),
                    }
                } else {
                    read_full(&buffered, &mut b.buf()[..want], base + pos)?
                };
                if got < want {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("target ends at {} before the image does", base + pos + got as u64),
                    ));
                }
                if full_tx.send((pos, want, b)).is_err() {
                    break;
                }
                pos += want as u64;
            }
            Ok(is_direct)
        });
        for (pos, n, b) in full_rx.iter() {
            for (i, cell) in b.data(n).chunks(CELL as usize).enumerate() {
                sums.add_cell(pos / CELL + i as u64, cell);
            }
            done.fetch_add(n as u64, Ordering::Relaxed);
            let _ = free_tx.send(b);
        }
        h.join().unwrap_or_else(|_| Err(std::io::Error::other("read-back reader panicked")))
    });
    let is_direct = reader?;
    let report = ReadbackReport { bytes: len, elapsed: started.elapsed(), direct: is_direct };
    Ok((RegionSums { len, sums: sums.sums }, report))
}

/// `posix_fadvise(DONTNEED)`: evict clean cached pages of the range (failure is harmless).
fn drop_cache(f: &File, base: u64, len: u64) -> i32 {
    use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
    let (Ok(off), Ok(l)) = (i64::try_from(base), i64::try_from(len)) else { return -1 };
    match posix_fadvise(f, off, l, PosixFadviseAdvice::POSIX_FADV_DONTNEED) {
        Ok(()) => 0,
        Err(e) => e as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn data(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8).collect()
    }

    fn digest(ops: Vec<WriteOp>) -> RegionSums {
        let mut d = OutputDigest::new();
        for op in &ops {
            d.apply(op);
        }
        d.finish().unwrap()
    }

    #[test]
    fn digest_does_not_depend_on_op_order_or_split() {
        let img = data(3 * CELL as usize + 1234, 7);
        let whole = digest(vec![WriteOp::Data(0, Bytes::from(img.clone()))]);
        // Odd split, reversed order.
        let cuts = [0usize, 100, 70_000, 70_001, 150_000, img.len()];
        let mut ops: Vec<WriteOp> = cuts
            .windows(2)
            .map(|w| WriteOp::Data(w[0] as u64, Bytes::copy_from_slice(&img[w[0]..w[1]])))
            .collect();
        ops.reverse();
        assert_eq!(digest(ops), whole);
        // A zero op equals zero data.
        let mut z = img.clone();
        z[CELL as usize..2 * CELL as usize + 10].fill(0);
        let a = digest(vec![WriteOp::Data(0, Bytes::from(z.clone()))]);
        let b = digest(vec![
            WriteOp::Data(0, Bytes::copy_from_slice(&z[..CELL as usize])),
            WriteOp::Zero(CELL, CELL + 10),
            WriteOp::Data(2 * CELL + 10, Bytes::copy_from_slice(&z[2 * CELL as usize + 10..])),
        ]);
        assert_eq!(a, b);
        assert_ne!(a, whole);
    }

    #[test]
    fn read_back_matches_and_names_the_corrupted_region() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        let img = data(REGION as usize + 3 * CELL as usize + 5, 3);
        let mut file = vec![0xEEu8; 8192];
        file.extend_from_slice(&img);
        file.extend_from_slice(&[0xEE; 100]);
        std::fs::write(&p, &file).unwrap();
        let want = digest(vec![WriteOp::Data(0, Bytes::from(img.clone()))]);
        let done = Arc::new(AtomicU64::new(0));
        let (got, rep) = read_back(&p, 8192, img.len() as u64, done.clone()).unwrap();
        assert_eq!(got, want);
        assert_eq!(rep.bytes, img.len() as u64);
        assert_eq!(done.load(Ordering::Relaxed), img.len() as u64);
        file[8192 + REGION as usize + 17] ^= 1;
        std::fs::write(&p, &file).unwrap();
        let (bad, _) = read_back(&p, 8192, img.len() as u64, done).unwrap();
        assert_eq!(want.first_difference(&bad), Some((REGION, img.len() as u64)));
        let short = read_back(&p, 8192, file.len() as u64, Arc::default()).unwrap_err();
        assert_eq!(short.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
