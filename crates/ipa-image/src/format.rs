//! Format detection from content: compression wrappers and disk formats.

/// A compression wrapper around the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Not compressed.
    None,
    /// gzip (`1f 8b`).
    Gzip,
    /// xz (`fd 37 7a 58 5a 00`).
    Xz,
    /// zstd (`28 b5 2f fd`).
    Zstd,
    /// bzip2 (`BZh1`..`BZh9`).
    Bzip2,
}

impl Compression {
    /// Name for logs and progress.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
            Compression::Bzip2 => "bzip2",
        }
    }
}

/// The disk format inside any compression wrapper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    /// Raw bytes with no recognised partition table.
    Raw,
    /// Raw bytes with a protective MBR and a GPT header.
    Gpt,
    /// QEMU copy-on-write v2/v3.
    Qcow2,
    /// VMware.
    Vmdk,
    /// VirtualBox.
    Vdi,
    /// Hyper-V (new).
    Vhdx,
    /// Hyper-V / Virtual PC (dynamic disks carry a footer copy at the start).
    Vhd,
    /// ISO 9660.
    Iso,
    /// LUKS container.
    Luks,
}

impl DiskFormat {
    /// The name used by Glance / `permitted_image_formats`.
    pub fn name(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Gpt => "gpt",
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Vmdk => "vmdk",
            DiskFormat::Vdi => "vdi",
            DiskFormat::Vhdx => "vhdx",
            DiskFormat::Vhd => "vhd",
            DiskFormat::Iso => "iso",
            DiskFormat::Luks => "luks",
        }
    }
}

/// How many leading bytes [`sniff_disk`] wants (ISO needs the volume descriptor at 32 KiB).
pub const SNIFF_LEN: usize = 0x8006;

/// Detect a compression wrapper from the first bytes.
pub fn sniff_compression(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Compression::Xz
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else if head.len() >= 4 && head.starts_with(b"BZh") && (b'1'..=b'9').contains(&head[3]) {
        Compression::Bzip2
    } else {
        Compression::None
    }
}

/// Detect the disk format from the first bytes (up to [`SNIFF_LEN`]).
pub fn sniff_disk(head: &[u8]) -> DiskFormat {
    if head.starts_with(b"QFI\xfb") {
        return DiskFormat::Qcow2;
    }
    if head.starts_with(b"KDMV") || head.starts_with(b"# Disk DescriptorFile") {
        return DiskFormat::Vmdk;
    }
    if head.starts_with(b"vhdxfile") {
        return DiskFormat::Vhdx;
    }
    if head.starts_with(b"conectix") {
        return DiskFormat::Vhd;
    }
    if head.starts_with(b"LUKS\xba\xbe") {
        return DiskFormat::Luks;
    }
    if head.len() >= 0x44 && head[0x40..0x44] == [0x7f, 0x10, 0xda, 0xbe] {
        return DiskFormat::Vdi;
    }
    if head.len() >= 520
        && head[510] == 0x55
        && head[511] == 0xaa
        && head[446 + 4] == 0xee
        && &head[512..520] == b"EFI PART"
    {
        return DiskFormat::Gpt;
    }
    if head.len() >= 0x8006 && &head[0x8001..0x8006] == b"CD001" {
        return DiskFormat::Iso;
    }
    DiskFormat::Raw
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_wrappers_and_formats() {
        assert_eq!(sniff_compression(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(sniff_compression(b"\xfd7zXZ\x00\x00"), Compression::Xz);
        assert_eq!(sniff_compression(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Compression::Zstd);
        assert_eq!(sniff_compression(b"BZh9"), Compression::Bzip2);
        assert_eq!(sniff_compression(b"BZhx"), Compression::None);
        assert_eq!(sniff_compression(b""), Compression::None);
        assert_eq!(sniff_disk(b"QFI\xfb\0\0\0\x03"), DiskFormat::Qcow2);
        let mut gpt = vec![0u8; 1024];
        gpt[510] = 0x55;
        gpt[511] = 0xaa;
        gpt[450] = 0xee;
        gpt[512..520].copy_from_slice(b"EFI PART");
        assert_eq!(sniff_disk(&gpt), DiskFormat::Gpt);
        assert_eq!(sniff_disk(&[0u8; 10]), DiskFormat::Raw);
    }
}
