#![no_main]
//! IPA's oslo.config INI files (`/etc/ironic-python-agent.d/*.conf`, what Metal3's CA-bundle
//! initrd drops): parsed and merged by the real loader, never a panic; bad values are errors.

use ipa_core::config::{ConfigSources, load, parse_ini};
use libfuzzer_sys::fuzz_target;

#[path = "scratch.rs"]
mod scratch;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse_ini(&text);
    let (path, _) = scratch::file("ini", data);
    let sources = ConfigSources { ipa_ini: vec![path], ..Default::default() };
    let _ = load(&sources);
});
