//! The plugins linked into the `ipa-agent` binary are exactly the ones its cargo features ask
//! for. A plugin crate that `plugins.rs` forgets to name is not linked and its `inventory`
//! registrations vanish silently; this test catches that for whichever feature set it is built
//! with (CI runs it with the default features, with none, and with all).

use std::process::Command;

fn expected() -> Vec<String> {
    let mut v: Vec<&str> = vec![
        // Core extensions, always present.
        "extension:clean",
        "extension:deploy",
        "extension:flow",
        "extension:log",
        "extension:poll",
        "extension:service",
        "extension:standby-power",
        "extension:system",
        // Always linked: the image pipeline (`image.*`, `standby.prepare_image` & co.) and
        // the Ironic lifecycle (`rescue.*`).
        "extension:image",
        "extension:standby-image",
        "extension:rescue",
    ];
    if cfg!(feature = "transport-rest") {
        v.push("transport:rest");
    }
    if cfg!(feature = "transport-amqp") {
        v.push("transport:amqp");
    }
    if cfg!(feature = "transport-zmq") {
        v.push("transport:zmq");
    }
    if cfg!(feature = "hw-sim") {
        v.push("hardware:simulated");
    }
    if cfg!(feature = "hw-generic") {
        v.push("hardware:generic");
    }
    if cfg!(feature = "hw-mellanox") {
        v.push("hardware:mellanox");
    }
    if cfg!(feature = "hw-intel-cna") {
        v.push("hardware:intel-cna");
    }
    if cfg!(feature = "hw-container") {
        v.push("hardware:container");
    }
    let mut v: Vec<String> = v.into_iter().map(String::from).collect();
    v.sort();
    v
}

fn listed() -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_ipa-agent"))
        .arg("--list-plugins")
        .output()
        .expect("run ipa-agent --list-plugins");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect()
}

#[test]
fn the_binary_registers_exactly_the_plugins_its_features_select() {
    assert_eq!(listed(), expected());
}
