//! Partition tables, natively: read/write GPT and MBR, move the backup GPT to the end of a
//! larger disk, add a partition at the end (config drive), lay out partition images.

use std::fs::File;
use std::os::unix::fs::FileExt;

use uuid::Uuid;

use crate::error::{ImageError, Result};

/// Logical sector size used for tables.
pub const SECTOR: u64 = 512;
const MIB: u64 = 1 << 20;

/// Linux filesystem data.
pub const GUID_LINUX: &str = "0fc63daf-8483-4772-8e79-3d69d8477de4";
/// EFI system partition.
pub const GUID_ESP: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
/// BIOS boot partition.
pub const GUID_BIOS_BOOT: &str = "21686148-6449-6e6f-744e-656564454649";
/// Linux swap.
pub const GUID_SWAP: &str = "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f";

/// One GPT entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptPart {
    /// 1-based slot number.
    pub number: u32,
    /// Partition type.
    pub type_guid: Uuid,
    /// Unique partition GUID (PARTUUID).
    pub guid: Uuid,
    /// First LBA.
    pub first: u64,
    /// Last LBA (inclusive).
    pub last: u64,
    /// Attribute bits.
    pub attrs: u64,
    /// Name (UTF-16LE on disk).
    pub name: String,
}

/// A GPT as read from the primary header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpt {
    /// Disk GUID.
    pub disk_guid: Uuid,
    /// Backup header LBA recorded in the primary.
    pub alternate_lba: u64,
    /// First usable LBA.
    pub first_usable: u64,
    /// Last usable LBA.
    pub last_usable: u64,
    /// Number of entry slots.
    pub num_entries: u32,
    /// Bytes per entry.
    pub entry_size: u32,
    /// Used entries.
    pub parts: Vec<GptPart>,
}

/// One primary MBR entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MbrPart {
    /// 1-based slot.
    pub number: u32,
    /// Boot flag.
    pub bootable: bool,
    /// Type byte.
    pub typ: u8,
    /// First LBA.
    pub start: u64,
    /// Sectors.
    pub sectors: u64,
}

/// The partition table found on a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Table {
    /// GPT.
    Gpt(Gpt),
    /// MBR (msdos) with its disk signature.
    Mbr {
        /// Disk signature (bytes 440..444, little endian).
        signature: u32,
        /// Used primary entries.
        parts: Vec<MbrPart>,
    },
    /// None recognised.
    None,
}

impl Table {
    /// Number of partitions.
    pub fn count(&self) -> usize {
        match self {
            Table::Gpt(g) => g.parts.len(),
            Table::Mbr { parts, .. } => parts.len(),
            Table::None => 0,
        }
    }
}

fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn le64(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}
fn guid(b: &[u8]) -> Uuid {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    Uuid::from_bytes_le(a)
}

fn io(dev: &str) -> impl Fn(std::io::Error) -> ImageError + '_ {
    move |e| ImageError::Deployment { details: format!("I/O error on {dev}: {e}") }
}

fn read_at(f: &File, off: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut b = vec![0u8; len];
    f.read_exact_at(&mut b, off)?;
    Ok(b)
}

/// Parse a GPT header (92+ bytes) and its entry array.
pub fn parse_gpt(header: &[u8], entries: &[u8]) -> Option<Gpt> {
    if header.len() < 92 || &header[0..8] != b"EFI PART" {
        return None;
    }
    let hs = le32(header, 12) as usize;
    if !(92..=header.len()).contains(&hs) {
        return None;
    }
    let mut h = header[..hs].to_vec();
    let crc = le32(&h, 16);
    h[16..20].fill(0);
    if crc32fast::hash(&h) != crc {
        return None;
    }
    let num_entries = le32(header, 80);
    let entry_size = le32(header, 84);
    if !(128..=4096).contains(&entry_size) || num_entries > 4096 {
        return None;
    }
    let total = num_entries as usize * entry_size as usize;
    if entries.len() < total || crc32fast::hash(&entries[..total]) != le32(header, 88) {
        return None;
    }
    let mut parts = Vec::new();
    for i in 0..num_entries as usize {
        let e = &entries[i * entry_size as usize..(i + 1) * entry_size as usize];
        let t = guid(&e[0..16]);
        if t.is_nil() {
            continue;
        }
        let name: Vec<u16> =
            e[56..128].chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        let name = String::from_utf16_lossy(&name).trim_end_matches('\0').to_string();
        parts.push(GptPart {
            number: i as u32 + 1,
            type_guid: t,
            guid: guid(&e[16..32]),
            first: le64(e, 32),
            last: le64(e, 40),
            attrs: le64(e, 48),
            name,
        });
    }
    Some(Gpt {
        disk_guid: guid(&header[56..72]),
        alternate_lba: le64(header, 32),
        first_usable: le64(header, 40),
        last_usable: le64(header, 48),
        num_entries,
        entry_size,
        parts,
    })
}

/// Read the partition table of a disk (or disk image file).
pub fn read_table(f: &File) -> std::io::Result<Table> {
    let mut mbr = vec![0u8; 512];
    if f.read_exact_at(&mut mbr, 0).is_err() {
        return Ok(Table::None);
    }
    if mbr[510] != 0x55 || mbr[511] != 0xaa {
        return Ok(Table::None);
    }
    if mbr[446 + 4] == 0xee {
        let hdr = read_at(f, SECTOR, 512)?;
        if &hdr[0..8] == b"EFI PART" {
            let n = le32(&hdr, 80) as usize;
            let es = le32(&hdr, 84) as usize;
            let lba = le64(&hdr, 72);
            if n <= 4096 && (128..=4096).contains(&es) {
                let ents = read_at(f, lba.saturating_mul(SECTOR), n * es)?;
                if let Some(g) = parse_gpt(&hdr, &ents) {
                    return Ok(Table::Gpt(g));
                }
            }
        }
    }
    let signature = le32(&mbr, 440);
    let mut parts = Vec::new();
    for i in 0..4 {
        let e = &mbr[446 + 16 * i..446 + 16 * (i + 1)];
        let typ = e[4];
        let sectors = le32(e, 12) as u64;
        if typ == 0 || sectors == 0 {
            continue;
        }
        parts.push(MbrPart {
            number: i as u32 + 1,
            bootable: e[0] == 0x80,
            typ,
            start: le32(e, 8) as u64,
            sectors,
        });
    }
    Ok(Table::Mbr { signature, parts })
}

fn entries_bytes(g: &Gpt) -> Vec<u8> {
    let es = g.entry_size as usize;
    let mut b = vec![0u8; g.num_entries as usize * es];
    for p in &g.parts {
        let i = (p.number - 1) as usize;
        if i >= g.num_entries as usize {
            continue;
        }
        let e = &mut b[i * es..(i + 1) * es];
        e[0..16].copy_from_slice(&p.type_guid.to_bytes_le());
        e[16..32].copy_from_slice(&p.guid.to_bytes_le());
        e[32..40].copy_from_slice(&p.first.to_le_bytes());
        e[40..48].copy_from_slice(&p.last.to_le_bytes());
        e[48..56].copy_from_slice(&p.attrs.to_le_bytes());
        for (k, u) in p.name.encode_utf16().take(36).enumerate() {
            e[56 + 2 * k..58 + 2 * k].copy_from_slice(&u.to_le_bytes());
        }
    }
    b
}

fn header_bytes(g: &Gpt, my: u64, alt: u64, entries_lba: u64, ecrc: u32) -> Vec<u8> {
    let mut h = vec![0u8; 92];
    h[0..8].copy_from_slice(b"EFI PART");
    h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    h[12..16].copy_from_slice(&92u32.to_le_bytes());
    h[24..32].copy_from_slice(&my.to_le_bytes());
    h[32..40].copy_from_slice(&alt.to_le_bytes());
    h[40..48].copy_from_slice(&g.first_usable.to_le_bytes());
    h[48..56].copy_from_slice(&g.last_usable.to_le_bytes());
    h[56..72].copy_from_slice(&g.disk_guid.to_bytes_le());
    h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
    h[80..84].copy_from_slice(&g.num_entries.to_le_bytes());
    h[84..88].copy_from_slice(&g.entry_size.to_le_bytes());
    h[88..92].copy_from_slice(&ecrc.to_le_bytes());
    let crc = crc32fast::hash(&h);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Write a GPT (primary at LBA 1, backup at the disk's last LBA) for a disk of `disk_bytes`.
/// `last_usable` is recomputed for the disk size.
pub fn write_gpt(f: &File, g: &mut Gpt, disk_bytes: u64) -> std::io::Result<()> {
    let last_lba = disk_bytes / SECTOR - 1;
    let ent = entries_bytes(g);
    let ent_sectors = (ent.len() as u64).div_ceil(SECTOR);
    g.last_usable = last_lba - ent_sectors - 1;
    g.alternate_lba = last_lba;
    let ecrc = crc32fast::hash(&ent);
    let backup_entries = last_lba - ent_sectors;
    f.write_all_at(&ent, 2 * SECTOR)?;
    f.write_all_at(&header_bytes(g, 1, last_lba, 2, ecrc), SECTOR)?;
    f.write_all_at(&ent, backup_entries * SECTOR)?;
    f.write_all_at(&header_bytes(g, last_lba, 1, backup_entries, ecrc), last_lba * SECTOR)?;
    Ok(())
}

/// Write a protective MBR for a GPT disk.
pub fn write_protective_mbr(f: &File, disk_bytes: u64) -> std::io::Result<()> {
    let mut m = vec![0u8; 512];
    let sectors = (disk_bytes / SECTOR - 1).min(u32::MAX as u64) as u32;
    let e = &mut m[446..462];
    e[1..4].copy_from_slice(&[0, 2, 0]);
    e[4] = 0xee;
    e[5..8].copy_from_slice(&[0xff, 0xff, 0xff]);
    e[8..12].copy_from_slice(&1u32.to_le_bytes());
    e[12..16].copy_from_slice(&sectors.to_le_bytes());
    m[510] = 0x55;
    m[511] = 0xaa;
    f.write_all_at(&m, 0)
}

/// Write an MBR with the given disk signature and primary entries (keeps the boot code area).
pub fn write_mbr(f: &File, signature: u32, parts: &[MbrPart]) -> std::io::Result<()> {
    let mut m = read_at(f, 0, 512).unwrap_or_else(|_| vec![0u8; 512]);
    m[440..444].copy_from_slice(&signature.to_le_bytes());
    m[444..446].fill(0);
    m[446..510].fill(0);
    for p in parts {
        let i = (p.number - 1) as usize;
        let e = &mut m[446 + 16 * i..446 + 16 * (i + 1)];
        e[0] = if p.bootable { 0x80 } else { 0 };
        e[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
        e[4] = p.typ;
        e[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
        e[8..12].copy_from_slice(&(p.start as u32).to_le_bytes());
        e[12..16].copy_from_slice(&(p.sectors as u32).to_le_bytes());
    }
    m[510] = 0x55;
    m[511] = 0xaa;
    f.write_all_at(&m, 0)
}

/// `sgdisk -e`: if the disk is larger than the image, move the backup GPT to the disk's end.
/// Returns true if something was rewritten.
pub fn fix_gpt_backup(f: &File, disk_bytes: u64) -> std::io::Result<bool> {
    let Table::Gpt(mut g) = read_table(f)? else { return Ok(false) };
    let last_lba = disk_bytes / SECTOR - 1;
    if g.alternate_lba == last_lba {
        return Ok(false);
    }
    write_gpt(f, &mut g, disk_bytes)?;
    Ok(true)
}

/// The device path of partition `n` (`/dev/sda1`, `/dev/nvme0n1p1`).
pub fn partition_path(device: &str, n: u32) -> String {
    if device.chars().last().is_some_and(|c| c.is_ascii_digit()) {
        format!("{device}p{n}")
    } else {
        format!("{device}{n}")
    }
}

/// A partition's byte range on the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Partition number.
    pub number: u32,
    /// Byte offset.
    pub offset: u64,
    /// Byte length.
    pub len: u64,
}

/// §6.8: add a config-drive partition of up to 64 MiB at the end of the disk.
pub fn add_config_drive_partition(
    f: &File,
    device: &str,
    disk_bytes: u64,
    size: u64,
) -> Result<Region> {
    let e = io(device);
    let want = 64 * MIB;
    if size > want {
        return Err(ImageError::Deployment {
            details: format!(
                "Config drive size exceeds maximum limit of 64MiB. Size of the given config drive \
             is {} MiB",
                size.div_ceil(MIB)
            ),
        });
    }
    match read_table(f).map_err(&e)? {
        Table::Gpt(mut g) => {
            let end = g.last_usable;
            let start = (end + 1 - want / SECTOR).div_ceil(2048) * 2048;
            if let Some(p) = g.parts.iter().find(|p| p.last >= start && p.first <= end) {
                return Err(ImageError::Deployment {
                    details: format!(
                        "No space at the end of {device} for the config drive (partition {} ends at \
                     sector {})",
                        p.number, p.last
                    ),
                });
            }
            let number = (1..=g.num_entries)
                .find(|n| !g.parts.iter().any(|p| p.number == *n))
                .ok_or_else(|| ImageError::Deployment { details: "no free GPT slot".into() })?;
            g.parts.push(GptPart {
                number,
                type_guid: Uuid::parse_str(GUID_LINUX).unwrap_or_default(),
                guid: Uuid::new_v4(),
                first: start,
                last: end,
                attrs: 0,
                name: "config-2".into(),
            });
            write_gpt(f, &mut g, disk_bytes).map_err(&e)?;
            Ok(Region { number, offset: start * SECTOR, len: (end - start + 1) * SECTOR })
        }
        Table::Mbr { signature, mut parts } => {
            if parts.len() >= 4 {
                return Err(ImageError::Deployment {
                    details: format!(
                        "Config drive cannot be created for the disk {device}: the maximum number \
                     of primary partitions (4) is already reached."
                    ),
                });
            }
            let two_tib = 2u64 << 40;
            let end_bytes = disk_bytes.min(two_tib);
            let start = (end_bytes - want) / MIB * MIB / SECTOR;
            let sectors = end_bytes / SECTOR - start;
            if let Some(p) = parts.iter().find(|p| p.start + p.sectors > start) {
                return Err(ImageError::Deployment {
                    details: format!(
                        "No space at the end of {device} for the config drive (partition {} \
                     overlaps)",
                        p.number
                    ),
                });
            }
            let number = (1..=4).find(|n| !parts.iter().any(|p| p.number == *n)).unwrap_or(4);
            parts.push(MbrPart { number, bootable: false, typ: 0x0c, start, sectors });
            write_mbr(f, signature, &parts).map_err(&e)?;
            Ok(Region { number, offset: start * SECTOR, len: sectors * SECTOR })
        }
        Table::None => Err(ImageError::Deployment {
            details: format!("No partition table on {device}; cannot add a config drive partition"),
        }),
    }
}

/// The filesystem label of a region, if it holds ISO 9660 or FAT.
pub fn fs_label(f: &File, offset: u64) -> Option<String> {
    if let Ok(b) = read_at(f, offset + 0x8000, 2048)
        && &b[1..6] == b"CD001"
    {
        return Some(String::from_utf8_lossy(&b[40..72]).trim().to_string());
    }
    let b = read_at(f, offset, 512).ok()?;
    if b[510] == 0x55 && b[511] == 0xaa {
        if &b[82..87] == b"FAT32" {
            return Some(String::from_utf8_lossy(&b[71..82]).trim().to_string());
        }
        if &b[54..57] == b"FAT" {
            return Some(String::from_utf8_lossy(&b[43..54]).trim().to_string());
        }
    }
    None
}

/// The filesystem UUID of a region (ext2/3/4, FAT volume id), as `lsblk` prints it.
pub fn fs_uuid(f: &File, offset: u64) -> Option<String> {
    if let Ok(sb) = read_at(f, offset + 1024, 256)
        && sb[56] == 0x53
        && sb[57] == 0xef
    {
        return Some(guid_be(&sb[104..120]));
    }
    let b = read_at(f, offset, 512).ok()?;
    if b[510] == 0x55 && b[511] == 0xaa {
        let id = if &b[82..87] == b"FAT32" {
            le32(&b, 67)
        } else if &b[54..57] == b"FAT" {
            le32(&b, 39)
        } else {
            return None;
        };
        return Some(format!("{:04X}-{:04X}", id >> 16, id & 0xffff));
    }
    None
}

fn guid_be(b: &[u8]) -> String {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    Uuid::from_bytes(a).hyphenated().to_string()
}

/// `lsblk PARTUUID` of partition `number`.
pub fn part_uuid(table: &Table, number: u32) -> Option<String> {
    match table {
        Table::Gpt(g) => g.parts.iter().find(|p| p.number == number).map(|p| p.guid.to_string()),
        Table::Mbr { signature, parts } => parts
            .iter()
            .any(|p| p.number == number)
            .then(|| format!("{signature:08x}-{number:02x}")),
        Table::None => None,
    }
}
