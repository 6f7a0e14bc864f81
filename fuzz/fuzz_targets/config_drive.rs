#![no_main]
//! Config drive input: Ironic's gzip+base64 string (inline) or downloaded bytes, inflated to at
//! most 64 MiB + 1 byte (a gzip bomb is bounded, then refused by the partition step), and the file-system
//! label/UUID readers the deploy uses on what was written (FAT, ext, ISO 9660).

use std::os::unix::fs::FileExt;

use ipa_image::{configdrive, disk};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(d) = configdrive::decode_inline("fuzz-node", &text) {
        assert!(d.len() as u64 <= configdrive::MAX_CONFIG_DRIVE + 1);
    }
    if let Ok(d) = configdrive::decode_downloaded(data) {
        assert!(d.len() as u64 <= (configdrive::MAX_CONFIG_DRIVE + 1).max(data.len() as u64));
    }
    let f = scratch(data);
    let _ = disk::fs_label(&f, 0);
    let _ = disk::fs_uuid(&f, 0);
});

fn scratch(data: &[u8]) -> std::fs::File {
    let path = std::env::temp_dir().join(format!("ipa-fuzz-cd-{}", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    f.write_all_at(data, 0).unwrap();
    f
}
