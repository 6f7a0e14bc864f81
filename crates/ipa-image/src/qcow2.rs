//! A native qcow2 reader that converts while streaming.
//!
//! The file is read once, front to back (that pass is what gets hashed). The L1 table and the L2
//! tables are picked up as the stream passes them; a data cluster is written to its guest offset
//! when the stream reaches it. Unallocated ranges are written as zeros, in guest order, as soon
//! as they are known to be unallocated. Anything the stream passed before its reference was
//! known (an L2 table stored before the L1 table, a data cluster before its L2 table) is read
//! afterwards with HTTP Range requests — never by staging the file.
//!
//! Refused: backing files, external data files, encryption, compressed clusters, extended L2
//! entries, unknown incompatible features.

use std::collections::BTreeMap;
use std::io::Read;

use bytes::Bytes;

use crate::error::{ImageError, Result};
use crate::pipeline::Sink;
use crate::writer::WriteOp;
use ipa_http::download::RangeReader;

const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const COMPRESSED: u64 = 1 << 62;
const ZERO_FLAG: u64 = 1;
/// Largest accepted virtual size (64 TiB).
pub const MAX_VIRTUAL_SIZE: u64 = 64 << 40;
const MAX_L1_BYTES: u64 = 32 << 20;
/// Largest accepted number of guest clusters (one state byte each).
pub const MAX_CLUSTERS: u64 = 1 << 28;

/// The parts of the qcow2 header the reader needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// 2 or 3.
    pub version: u32,
    /// log2 of the cluster size.
    pub cluster_bits: u32,
    /// Guest size in bytes.
    pub size: u64,
    /// L1 entries.
    pub l1_size: u32,
    /// L1 table host offset.
    pub l1_table_offset: u64,
}

fn be32(b: &[u8], o: usize) -> u32 {
    u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn be64(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_be_bytes(a)
}

fn invalid(m: impl Into<String>) -> ImageError {
    ImageError::InvalidImage { details: m.into() }
}

impl Header {
    /// Parse and safety-check a header (the first bytes of the file; at least one
    /// header plus its extensions, ideally the first cluster).
    pub fn parse(b: &[u8]) -> Result<Self> {
        if b.len() < 72 || &b[0..4] != b"QFI\xfb" {
            return Err(invalid("not a qcow2 image"));
        }
        let version = be32(b, 4);
        if version != 2 && version != 3 {
            return Err(invalid(format!("unsupported qcow2 version {version}")));
        }
        if be64(b, 8) != 0 || be32(b, 16) != 0 {
            return Err(invalid("qcow2 images with a backing file are not allowed"));
        }
        let cluster_bits = be32(b, 20);
        if !(9..=21).contains(&cluster_bits) {
            return Err(invalid(format!("invalid qcow2 cluster_bits {cluster_bits}")));
        }
        let size = be64(b, 24);
        if size > MAX_VIRTUAL_SIZE {
            return Err(invalid(format!("qcow2 virtual size {size} is too large")));
        }
        if be32(b, 32) != 0 {
            return Err(invalid("encrypted qcow2 images are not supported"));
        }
        let l1_size = be32(b, 36);
        let l1_table_offset = be64(b, 40);
        let cs = 1u64 << cluster_bits;
        let per_l2 = cs / 8;
        let needed = size.div_ceil(cs).div_ceil(per_l2);
        if (l1_size as u64) < needed {
            return Err(invalid("qcow2 L1 table is too small for the virtual size"));
        }
        if size.div_ceil(cs) > MAX_CLUSTERS {
            return Err(invalid("qcow2 image has too many clusters for its cluster size"));
        }
        if l1_size as u64 * 8 > MAX_L1_BYTES {
            return Err(invalid("qcow2 L1 table is too large"));
        }
        if !l1_table_offset.is_multiple_of(cs) || (l1_size > 0 && l1_table_offset == 0) {
            return Err(invalid("qcow2 L1 table offset is invalid"));
        }
        let mut ext_start = 72usize;
        if version == 3 {
            if b.len() < 104 {
                return Err(invalid("truncated qcow2 v3 header"));
            }
            let incompat = be64(b, 72);
            if incompat & 2 != 0 {
                return Err(invalid("qcow2 image is marked corrupt"));
            }
            if incompat & 4 != 0 {
                return Err(invalid("qcow2 images with an external data file are not allowed"));
            }
            if incompat & 16 != 0 {
                return Err(invalid("qcow2 extended L2 entries are not supported"));
            }
            if incompat & !0x1f != 0 {
                return Err(invalid(format!("unknown qcow2 incompatible features {incompat:#x}")));
            }
            let hl = be32(b, 100) as usize;
            if !(104..=b.len()).contains(&hl) && hl < 104 {
                return Err(invalid("invalid qcow2 header length"));
            }
            ext_start = hl.max(104);
        }
        // Header extensions: refuse an external data file name; bounded walk.
        let mut o = ext_start;
        let mut n = 0;
        while o + 8 <= b.len() && n < 64 {
            let typ = be32(b, o);
            let len = be32(b, o + 4) as usize;
            if typ == 0 {
                break;
            }
            if typ == 0x4441_5441 {
                return Err(invalid("qcow2 images with an external data file are not allowed"));
            }
            o = o.saturating_add(8).saturating_add(len.div_ceil(8) * 8);
            n += 1;
        }
        Ok(Self { version, cluster_bits, size, l1_size, l1_table_offset })
    }

    /// Cluster size in bytes.
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }
}

/// One L2 entry, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cluster {
    /// Reads as zeros.
    Zero,
    /// Stored at this host offset.
    Data(u64),
    /// Compressed (refused).
    Compressed,
}

/// Decode an L2 entry.
pub fn l2_entry(e: u64) -> Cluster {
    if e & COMPRESSED != 0 {
        Cluster::Compressed
    } else if e & ZERO_FLAG != 0 || e & OFFSET_MASK == 0 {
        Cluster::Zero
    } else {
        Cluster::Data(e & OFFSET_MASK)
    }
}

/// Parse a big-endian table of u64 entries.
pub fn parse_table(b: &[u8]) -> Vec<u64> {
    b.chunks_exact(8).map(|c| be64(c, 0)).collect()
}

/// What the conversion did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Guest size written.
    pub virtual_size: u64,
    /// Clusters fetched by random access.
    pub random_reads: u64,
}

const UNKNOWN: u8 = 0;
const UNALLOC: u8 = 1;
const PENDING: u8 = 2;
const DONE: u8 = 3;

struct Conv<'a> {
    h: Header,
    cs: u64,
    per_l2: u64,
    nclusters: u64,
    state: Vec<u8>,
    l1: Option<Vec<u64>>,
    l2_pending: BTreeMap<u64, Vec<u64>>,
    data: BTreeMap<u64, Vec<u64>>,
    missed_l2: Vec<(u64, u64)>,
    missed_data: Vec<(u64, u64)>,
    cursor: u64,
    sink: &'a Sink,
    pos: u64,
}

impl Conv<'_> {
    fn emit(&mut self, guest_cluster: u64, data: Bytes) -> Result<()> {
        let off = guest_cluster * self.cs;
        let len = (self.h.size - off).min(self.cs) as usize;
        let d = if data.len() >= len {
            data.slice(..len)
        } else {
            let mut v = data.to_vec();
            v.resize(len, 0);
            Bytes::from(v)
        };
        self.state[guest_cluster as usize] = DONE;
        self.sink.send(WriteOp::Data(off, d))?;
        self.advance()
    }

    /// Write zeros for every known-unallocated cluster from the cursor on.
    fn advance(&mut self) -> Result<()> {
        let mut run: Option<u64> = None;
        while self.cursor < self.nclusters {
            match self.state[self.cursor as usize] {
                UNALLOC => {
                    run.get_or_insert(self.cursor);
                    self.state[self.cursor as usize] = DONE;
                }
                DONE => {
                    if let Some(s) = run.take() {
                        self.zero(s, self.cursor)?;
                    }
                }
                _ => break,
            }
            self.cursor += 1;
        }
        if let Some(s) = run {
            self.zero(s, self.cursor)?;
        }
        Ok(())
    }

    fn zero(&self, from: u64, to: u64) -> Result<()> {
        let start = from * self.cs;
        let end = (to * self.cs).min(self.h.size);
        if end > start {
            self.sink.send(WriteOp::Zero(start, end - start))?;
        }
        Ok(())
    }

    fn mark(&mut self, from_cluster: u64, count: u64, st: u8) {
        let end = (from_cluster + count).min(self.nclusters);
        for c in from_cluster..end {
            if self.state[c as usize] == UNKNOWN {
                self.state[c as usize] = st;
            }
        }
    }

    fn take_l1(&mut self, l1: Vec<u64>) -> Result<()> {
        for (i, e) in l1.iter().enumerate() {
            let first = i as u64 * self.per_l2;
            if first >= self.nclusters {
                break;
            }
            let off = e & OFFSET_MASK;
            if off == 0 {
                self.mark(first, self.per_l2, UNALLOC);
            } else if !off.is_multiple_of(self.cs) {
                return Err(invalid("qcow2 L2 table offset is not cluster aligned"));
            } else if off < self.pos {
                self.missed_l2.push((off, i as u64));
            } else {
                self.l2_pending.entry(off).or_default().push(i as u64);
            }
        }
        self.l1 = Some(l1);
        self.advance()
    }

    fn take_l2(&mut self, l1_index: u64, table: &[u8]) -> Result<()> {
        let first = l1_index * self.per_l2;
        for (j, e) in parse_table(table).into_iter().enumerate() {
            let g = first + j as u64;
            if g >= self.nclusters {
                break;
            }
            match l2_entry(e) {
                Cluster::Zero => self.mark(g, 1, UNALLOC),
                Cluster::Compressed => {
                    return Err(invalid("compressed qcow2 clusters are not supported"));
                }
                Cluster::Data(off) => {
                    if self.state[g as usize] != UNKNOWN {
                        continue;
                    }
                    self.state[g as usize] = PENDING;
                    if off < self.pos {
                        self.missed_data.push((off, g));
                    } else {
                        self.data.entry(off).or_default().push(g);
                    }
                }
            }
        }
        self.advance()
    }

    fn next_event(&self) -> Option<u64> {
        let l1 = self.l1.is_none().then_some(self.h.l1_table_offset);
        [l1, self.l2_pending.keys().next().copied(), self.data.keys().next().copied()]
            .into_iter()
            .flatten()
            .min()
    }
}

/// Reads the sequential stream, with an already-consumed prefix.
struct Seq<'a> {
    prefix: &'a [u8],
    inner: &'a mut dyn Read,
    pos: u64,
}

impl Seq<'_> {
    fn read_exact_or_eof(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            if (self.pos as usize) < self.prefix.len() {
                let p = self.pos as usize;
                let k = (self.prefix.len() - p).min(buf.len() - n);
                buf[n..n + k].copy_from_slice(&self.prefix[p..p + k]);
                n += k;
                self.pos += k as u64;
                continue;
            }
            match self.inner.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => {
                    n += k;
                    self.pos += k as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(invalid(format!("reading qcow2 stream: {e}"))),
            }
        }
        Ok(n)
    }

    fn skip_to(&mut self, target: u64, scratch: &mut [u8]) -> Result<bool> {
        while self.pos < target {
            let n = ((target - self.pos) as usize).min(scratch.len());
            if self.read_exact_or_eof(&mut scratch[..n])? == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Convert a qcow2 stream into write operations. `head` is a prefix already read from
/// `input`; `ranges` allows random access for whatever the stream passed too early.
pub fn stream(
    input: &mut dyn Read,
    head: &[u8],
    sink: &Sink,
    ranges: Option<(&RangeReader, &tokio::runtime::Handle)>,
) -> Result<Outcome> {
    let mut seq = Seq { prefix: head, inner: input, pos: 0 };
    let mut hdr = vec![0u8; 4096];
    let n = seq.read_exact_or_eof(&mut hdr)?;
    hdr.truncate(n);
    let h = Header::parse(&hdr)?;
    let cs = h.cluster_size();
    let nclusters = h.size.div_ceil(cs);
    let mut c = Conv {
        per_l2: cs / 8,
        cs,
        nclusters,
        state: vec![UNKNOWN; nclusters as usize],
        l1: None,
        l2_pending: BTreeMap::new(),
        data: BTreeMap::new(),
        missed_l2: Vec::new(),
        missed_data: Vec::new(),
        cursor: 0,
        sink,
        pos: seq.pos,
        h: h.clone(),
    };
    if h.l1_size == 0 {
        c.l1 = Some(Vec::new());
        c.mark(0, nclusters, UNALLOC);
        c.advance()?;
    } else if h.l1_table_offset < seq.pos {
        // The L1 table lies inside what was already read (tiny clusters).
        let s = h.l1_table_offset as usize;
        let e = s + h.l1_size as usize * 8;
        if e <= hdr.len() {
            let l1 = parse_table(&hdr[s..e]);
            c.take_l1(l1)?;
        } else {
            return Err(invalid("qcow2 L1 table overlaps the header"));
        }
    }
    let mut scratch = vec![0u8; 1 << 20];
    while let Some(ev) = c.next_event() {
        if !seq.skip_to(ev, &mut scratch)? {
            break;
        }
        c.pos = seq.pos;
        if c.l1.is_none() && ev == h.l1_table_offset {
            let mut t = vec![0u8; h.l1_size as usize * 8];
            let n = seq.read_exact_or_eof(&mut t)?;
            c.pos = seq.pos;
            if n < t.len() {
                return Err(invalid("qcow2 stream ended inside the L1 table"));
            }
            c.take_l1(parse_table(&t))?;
            continue;
        }
        let mut buf = vec![0u8; cs as usize];
        let n = seq.read_exact_or_eof(&mut buf)?;
        buf.truncate(n);
        c.pos = seq.pos;
        let buf = Bytes::from(buf);
        if let Some(idx) = c.l2_pending.remove(&ev) {
            if n < cs as usize {
                return Err(invalid("qcow2 stream ended inside an L2 table"));
            }
            for i in idx {
                c.take_l2(i, &buf)?;
            }
        }
        if let Some(gs) = c.data.remove(&ev) {
            for g in gs {
                c.emit(g, buf.clone())?;
            }
        }
        // Anything else registered inside this cluster's span was passed.
        let passed: Vec<u64> = c.l2_pending.range(..c.pos).map(|(k, _)| *k).collect();
        for k in passed {
            for i in c.l2_pending.remove(&k).unwrap_or_default() {
                c.missed_l2.push((k, i));
            }
        }
        let passed: Vec<u64> = c.data.range(..c.pos).map(|(k, _)| *k).collect();
        for k in passed {
            for g in c.data.remove(&k).unwrap_or_default() {
                c.missed_data.push((k, g));
            }
        }
    }
    if c.l1.is_none() {
        return Err(invalid("qcow2 stream ended before the L1 table"));
    }
    // Whatever is left in the maps lies beyond the end of the file.
    if !c.l2_pending.is_empty() || !c.data.is_empty() {
        return Err(invalid("qcow2 image references clusters beyond the end of the file"));
    }
    let mut random_reads = 0u64;
    if !c.missed_l2.is_empty() || !c.missed_data.is_empty() {
        let Some((rr, rt)) = ranges else {
            return Err(invalid(
                "qcow2 clusters are out of order inside a compressed stream; \
                 publish the qcow2 uncompressed so it can be read with Range requests",
            ));
        };
        tracing::info!(
            l2 = c.missed_l2.len(),
            clusters = c.missed_data.len(),
            "qcow2 layout is not sequential; reading the rest with Range requests"
        );
        let missed_l2 = std::mem::take(&mut c.missed_l2);
        for (off, i) in missed_l2 {
            let t = rt.block_on(rr.read_at(off, cs))?;
            random_reads += 1;
            if (t.len() as u64) < cs {
                return Err(invalid("qcow2 L2 table beyond the end of the file"));
            }
            c.pos = u64::MAX; // every data reference is now a random read
            c.take_l2(i, &t)?;
        }
        let mut missed = std::mem::take(&mut c.missed_data);
        missed.sort_unstable();
        let mut i = 0;
        while i < missed.len() {
            // Coalesce host-contiguous clusters into one request (up to 8 MiB).
            let start = missed[i].0;
            let mut j = i + 1;
            while j < missed.len()
                && missed[j].0 == missed[j - 1].0 + cs
                && (j - i) as u64 * cs < (8 << 20)
            {
                j += 1;
            }
            let span = missed[j - 1].0 + cs - start;
            let data = rt.block_on(rr.read_at(start, span))?;
            random_reads += (j - i) as u64;
            for &(off, g) in &missed[i..j] {
                let s = (off - start) as usize;
                let e = (s + cs as usize).min(data.len());
                let piece = if s < data.len() { data.slice(s..e) } else { Bytes::new() };
                c.emit(g, piece)?;
            }
            i = j;
        }
    }
    c.advance()?;
    if c.cursor < c.nclusters {
        return Err(invalid("qcow2 conversion left clusters unresolved"));
    }
    Ok(Outcome { virtual_size: h.size, random_reads })
}
