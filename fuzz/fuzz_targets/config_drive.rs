#![no_main]
//! Config drive input: Ironic's gzip+base64 string (inline) or downloaded bytes, inflated to at
//! most 64 MiB + 1 byte (a gzip bomb is bounded, then refused by the partition step), and the file-system
//! label/UUID readers the deploy uses on what was written (FAT, ext, ISO 9660).

use ipa_image::{configdrive, disk};
use libfuzzer_sys::fuzz_target;

#[path = "scratch.rs"]
mod scratch;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(d) = configdrive::decode_inline("fuzz-node", &text) {
        assert!(d.len() as u64 <= configdrive::MAX_CONFIG_DRIVE + 1);
    }
    if let Ok(d) = configdrive::decode_downloaded(data) {
        assert!(d.len() as u64 <= (configdrive::MAX_CONFIG_DRIVE + 1).max(data.len() as u64));
    }
    let (_, f) = scratch::file("cd", data);
    let _ = disk::fs_label(&f, 0);
    let _ = disk::fs_uuid(&f, 0);
});
