#![no_main]
//! The format sniffer, the GPT parser and the checksum-file parser must never panic.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ipa_image::format::sniff_compression(data);
    let _ = ipa_image::format::sniff_disk(data);
    if data.len() > 512 {
        let _ = ipa_image::disk::parse_gpt(&data[..512], &data[512..]);
    }
    let text = String::from_utf8_lossy(data);
    let _ = ipa_image::checksum::parse_checksum_file(&text, "disk.img");
});
