//! The block writer: large aligned writes with O_DIRECT (buffered fallback), the withheld
//! head, zero fill, fsync.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{ImageError, Result};

/// Bytes withheld at the start of the target until the checksum matches.
pub const HEAD: u64 = 1 << 20;
const ALIGN: usize = 4096;
const BUF: usize = 8 << 20;

/// A write to the target, relative to the writer's base offset.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Data at an offset.
    Data(u64, bytes::Bytes),
    /// `len` zero bytes at an offset.
    Zero(u64, u64),
}

/// Writes one image into a file or block device region.
pub struct Writer {
    device: String,
    direct: Option<File>,
    buffered: File,
    base: u64,
    limit: Option<u64>,
    mem: Vec<u8>,
    start: usize,
    fill: usize,
    buf_pos: u64,
    head: Vec<u8>,
    end: u64,
    written: Arc<AtomicU64>,
    direct_writes: u64,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("device", &self.device)
            .field("direct", &self.direct.is_some())
            .field("base", &self.base)
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

/// Size of a file or block device.
pub fn target_size(path: &Path) -> std::io::Result<u64> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::End(0))
}

impl Writer {
    /// Open `path` for writing at `base` (a partition offset, or 0), at most `limit` bytes.
    /// The target must exist (a device, or the sandbox's disk file).
    pub fn open(
        path: &Path,
        device: &str,
        base: u64,
        limit: Option<u64>,
        written: Arc<AtomicU64>,
    ) -> Result<Self> {
        let werr = |source: std::io::Error| ImageError::Io {
            device: device.to_string(),
            op: format!("cannot open {}", path.display()),
            source,
        };
        let buffered = OpenOptions::new().write(true).read(true).open(path).map_err(werr)?;
        let direct = if base.is_multiple_of(ALIGN as u64) {
            match OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(path) {
                Ok(f) => Some(f),
                Err(e) => {
                    tracing::info!(device, error = %e, "O_DIRECT refused; using buffered writes");
                    None
                }
            }
        } else {
            None
        };
        let mem = vec![0u8; BUF + ALIGN];
        let start = mem.as_ptr().align_offset(ALIGN).min(ALIGN);
        Ok(Self {
            device: device.to_string(),
            direct,
            buffered,
            base,
            limit,
            mem,
            start,
            fill: 0,
            buf_pos: 0,
            head: vec![0u8; HEAD as usize],
            end: 0,
            written,
            direct_writes: 0,
        })
    }

    fn err(&self, msg: String) -> ImageError {
        ImageError::Write { device: self.device.clone(), msg }
    }

    fn io(&self, op: String, source: std::io::Error) -> ImageError {
        ImageError::Io { device: self.device.clone(), op, source }
    }

    /// Whether O_DIRECT is in use.
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// The highest offset written (the image's extent on the target).
    pub fn extent(&self) -> u64 {
        self.end
    }

    /// Zero `len` bytes at absolute offset `abs` (used to clear the head and old metadata).
    pub fn zero_abs(&mut self, abs: u64, len: u64) -> Result<()> {
        let z = vec![0u8; (len.min(BUF as u64)) as usize];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(z.len() as u64) as usize;
            self.buffered
                .write_all_at(&z[..n], abs + done)
                .map_err(|e| self.io(format!("zeroing at {}", abs + done), e))?;
            done += n as u64;
        }
        Ok(())
    }

    fn check_limit(&self, off: u64, len: u64) -> Result<()> {
        if let Some(l) = self.limit
            && off + len > l
        {
            return Err(
                self.err(format!("image is larger than the target ({} > {l} bytes)", off + len))
            );
        }
        Ok(())
    }

    /// Apply one operation.
    pub fn apply(&mut self, op: WriteOp) -> Result<()> {
        match op {
            WriteOp::Data(off, d) => self.write(off, &d),
            WriteOp::Zero(off, len) => self.zeros(off, len),
        }
    }

    /// Write `data` at image offset `off`.
    pub fn write(&mut self, mut off: u64, mut data: &[u8]) -> Result<()> {
        self.check_limit(off, data.len() as u64)?;
        self.end = self.end.max(off + data.len() as u64);
        if off < HEAD {
            let n = ((HEAD - off) as usize).min(data.len());
            self.head[off as usize..off as usize + n].copy_from_slice(&data[..n]);
            off += n as u64;
            data = &data[n..];
            self.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        while !data.is_empty() {
            if self.fill > 0 && off != self.buf_pos + self.fill as u64 {
                self.flush()?;
            }
            if self.fill == 0 {
                self.buf_pos = off;
            }
            let n = (BUF - self.fill).min(data.len());
            let s = self.start + self.fill;
            self.mem[s..s + n].copy_from_slice(&data[..n]);
            self.fill += n;
            off += n as u64;
            data = &data[n..];
            if self.fill == BUF {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Write `len` zeros at image offset `off`.
    pub fn zeros(&mut self, mut off: u64, mut len: u64) -> Result<()> {
        self.check_limit(off, len)?;
        self.end = self.end.max(off + len);
        if off < HEAD {
            let n = (HEAD - off).min(len);
            self.head[off as usize..(off + n) as usize].fill(0);
            off += n;
            len -= n;
            self.written.fetch_add(n, Ordering::Relaxed);
        }
        while len > 0 {
            if self.fill > 0 && off != self.buf_pos + self.fill as u64 {
                self.flush()?;
            }
            if self.fill == 0 {
                self.buf_pos = off;
            }
            let n = ((BUF - self.fill) as u64).min(len) as usize;
            let s = self.start + self.fill;
            self.mem[s..s + n].fill(0);
            self.fill += n;
            off += n as u64;
            len -= n as u64;
            if self.fill == BUF {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Write out the staging buffer.
    pub fn flush(&mut self) -> Result<()> {
        if self.fill == 0 {
            return Ok(());
        }
        let abs = self.base + self.buf_pos;
        let (s, n) = (self.start, self.fill);
        let mut done = 0usize;
        if abs.is_multiple_of(ALIGN as u64) {
            let aligned = n - n % ALIGN;
            if aligned > 0
                && let Some(d) = &self.direct
            {
                match d.write_all_at(&self.mem[s..s + aligned], abs) {
                    Ok(()) => {
                        done = aligned;
                        self.direct_writes += 1;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                        tracing::info!(device = %self.device, "O_DIRECT write refused; buffered from now on");
                        self.direct = None;
                    }
                    Err(e) => return Err(self.io(format!("write at {abs}"), e)),
                }
            }
        }
        if done < n {
            self.buffered
                .write_all_at(&self.mem[s + done..s + n], abs + done as u64)
                .map_err(|e| self.io(format!("write at {}", abs + done as u64), e))?;
        }
        self.written.fetch_add(n as u64, Ordering::Relaxed);
        self.fill = 0;
        Ok(())
    }

    /// Flush and fsync everything except the withheld head.
    pub fn finish_body(&mut self) -> Result<()> {
        self.flush()?;
        self.sync()
    }

    /// Write the withheld head (after the checksum matched) and fsync.
    pub fn commit_head(&mut self) -> Result<()> {
        let n = self.end.min(HEAD) as usize;
        if n > 0 {
            self.buffered
                .write_all_at(&self.head[..n], self.base)
                .map_err(|e| self.io("writing the image head".into(), e))?;
        }
        self.sync()
    }

    /// After a failed verification: make sure neither the head nor a backup GPT at the image's
    /// end can make the target look bootable.
    pub fn poison(&mut self) -> Result<()> {
        self.fill = 0;
        let n = self.end.min(HEAD);
        self.zero_abs(self.base, n.max(HEAD.min(self.limit.unwrap_or(HEAD))))?;
        if self.end > 2 * HEAD {
            self.zero_abs(self.base + self.end - HEAD, HEAD)?;
        }
        self.sync()
    }

    fn sync(&self) -> Result<()> {
        self.buffered.sync_all().map_err(|e| self.io("fsync".into(), e))?;
        if let Some(d) = &self.direct {
            d.sync_all().map_err(|e| self.io("fsync".into(), e))?;
        }
        Ok(())
    }
}
