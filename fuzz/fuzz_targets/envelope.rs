#![no_main]
//! The broker envelope (AMQP and ZeroMQ): a request is decoded or answered with the error
//! reply to send back; replies and events decode or fail; a decoded request re-encodes.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match ipa_envelope::decode_request(data, 1 << 20) {
        Ok(req) => {
            let again = req.encode();
            assert!(ipa_envelope::decode_request(&again, usize::MAX).is_ok(), "re-encoded request decodes");
        }
        Err(reply) => {
            let _ = reply.encode();
        }
    }
    let _ = ipa_envelope::Message::decode(data);
});
