#![no_main]
//! LLDP frames captured on any wired interface during inspection (a switch, or anyone on the
//! segment, sends them): TLVs parsed, never a panic or an out-of-bounds read.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ipa_hw_generic::lldp::parse_frame(data);
    let _ = ipa_hw_generic::lldp::parse_tlvs(data);
});
