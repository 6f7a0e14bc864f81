#![no_main]
//! A signed erase report given to `ipactl verify-erase` (a file from anywhere): it parses or
//! not, its signature checks or fails, and every completeness/sample check gives findings,
//! never a panic.

use ipa_core::attest::{CheckOptions, EraseReport, check};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(report) = serde_json::from_slice::<EraseReport>(data) else { return };
    let _ = report.verify_signature(None);
    let _ = report.verify_signature(Some("ed25519:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="));
    let _ = check(&report, &CheckOptions::default());
});
