#![no_main]
//! The kernel command line (`ipa-*` parameters, BOOTIF, quoting) through the whole
//! configuration loader: a typed configuration or a clear error, never a panic.

use ipa_core::config::{ConfigSources, load, parse_cmdline};
use libfuzzer_sys::fuzz_target;

#[path = "scratch.rs"]
mod scratch;

fuzz_target!(|data: &[u8]| {
    let _ = parse_cmdline(&String::from_utf8_lossy(data));
    let (path, _) = scratch::file("cmdline", data);
    let sources = ConfigSources {
        kernel_cmdline: Some(path),
        kernel_aliases: vec![("ipa-amqp-url".into(), "amqp.url".into())],
        ..Default::default()
    };
    let _ = load(&sources);
});
