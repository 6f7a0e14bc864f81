#![no_main]
//! The qcow2 header/table parser and the streaming converter must never panic or allocate
//! without bound on hostile input.

use std::io::Cursor;

use ipa_image::pipeline::Sink;
use ipa_image::qcow2;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(h) = qcow2::Header::parse(data) else { return };
    let _ = qcow2::parse_table(data);
    for chunk in data.chunks_exact(8) {
        let _ = qcow2::l2_entry(u64::from_be_bytes(chunk.try_into().unwrap()));
    }
    // Keep the fuzzer's memory bounded: small guests only.
    if h.size.div_ceil(h.cluster_size()) > 1 << 16 {
        return;
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(4);
    let drain = std::thread::spawn(move || for _ in rx {});
    let sink = Sink::new(tx);
    let mut cur = Cursor::new(data);
    let _ = qcow2::stream(&mut cur, &[], &sink, None);
    drop(sink);
    let _ = drain.join();
});
