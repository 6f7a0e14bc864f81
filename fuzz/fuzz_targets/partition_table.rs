#![no_main]
//! The partition-table reader (protective/legacy MBR, GPT header and entries at the LBA the
//! header names, entry counts and sizes from the disk) on a hostile disk image: a table or
//! `None`, never a panic or an unbounded read.

use ipa_image::disk;
use libfuzzer_sys::fuzz_target;

#[path = "scratch.rs"]
mod scratch;

fuzz_target!(|data: &[u8]| {
    if data.len() > 512 {
        let _ = disk::parse_gpt(&data[..512], &data[512..]);
    }
    // The input is the disk's first sectors: the MBR, then LBA 1 (the GPT header), then entries.
    let (_, f) = scratch::file("pt", data);
    if let Ok(t) = disk::read_table(&f) {
        let _ = disk::part_uuid(&t, 1);
    }
});
