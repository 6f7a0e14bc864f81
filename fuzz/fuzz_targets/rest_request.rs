#![no_main]
//! REST: what a client controls before a command runs (method, percent-encoded path and query,
//! the JSON command body) must give a route or IPA's fault body, never a panic, and the access
//! log's form of the query never carries an `agent_token`.
//!
//! Input: `METHOD SP TARGET LF BODY`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (head, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let (method, target) = match head.iter().position(|&b| b == b' ') {
        Some(i) => (&head[..i], &head[i + 1..]),
        None => (&b"POST"[..], head),
    };
    let target = String::from_utf8_lossy(target);
    ipa_transport_rest::fuzzing::request(method, &target, body);
});
