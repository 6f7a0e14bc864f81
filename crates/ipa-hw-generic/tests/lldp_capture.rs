//! LLDP capture on a real interface: a veth pair inside a network namespace this test creates
//! (and deletes). One end sends LLDP frames (and an IPv4 frame first, which must be ignored);
//! `lldp::collect` listens on the other end from a thread that has joined the namespace.
//! Needs root and `ip`; it fails, never skips, without them.

use std::fs::File;
use std::process::Command;
use std::time::Duration;

use ipa_hw_generic::lldp::{self, LLDP_ETHERTYPE};

struct Netns(String);

impl Netns {
    fn create() -> Self {
        let name = format!("ipa-lldp-{}", std::process::id());
        let ns = Netns(name.clone());
        ip(&["netns", "add", &name]);
        ip(&["-n", &name, "link", "add", "lldpA", "type", "veth", "peer", "name", "lldpB"]);
        ip(&["-n", &name, "link", "set", "lldpA", "up"]);
        ip(&["-n", &name, "link", "set", "lldpB", "up"]);
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("`ip` (iproute2) is required");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// An Ethernet frame to the LLDP multicast address with a chassis-id and a port-id TLV.
fn lldp_frame() -> Vec<u8> {
    let mut f = vec![0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e, 0x02, 0, 0, 0, 0, 1];
    f.extend_from_slice(&LLDP_ETHERTYPE.to_be_bytes());
    f.extend_from_slice(&[0x02, 0x07, 0x04, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56]); // chassis MAC
    f.extend_from_slice(&[0x04, 0x03, 0x05, b'p', b'1']); // port id "p1"
    f.extend_from_slice(&[0x00, 0x00]); // End
    f
}

/// Send `frames` on `iface` in namespace `ns` through a Python AF_PACKET socket (the sending
/// side is not the code under test).
fn send(ns: &str, iface: &str, frames: &[Vec<u8>]) {
    let hex: Vec<String> =
        frames.iter().map(|f| f.iter().map(|b| format!("{b:02x}")).collect()).collect();
    let script = format!(
        "import socket\ns = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\ns.bind(({iface:?}, 0))\nfor h in {hex:?}:\n    s.send(bytes.fromhex(h))\n"
    );
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", &script])
        .output()
        .expect("ip netns exec python3");
    assert!(out.status.success(), "sender: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn collect_reads_the_lldp_frame_of_each_interface_and_ignores_other_traffic() {
    let ns = Netns::create();
    let handle = File::open(format!("/run/netns/{}", ns.0)).expect("namespace handle");
    let listener = std::thread::spawn(move || {
        nix::sched::setns(&handle, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        lldp::collect(&["lldpB".to_string(), "nosuch0".to_string()], Duration::from_secs(20))
    });
    let mut ipv4 = lldp_frame();
    ipv4[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    // The listener opens its socket asynchronously; keep sending (bounded) until it is done.
    for _ in 0..60 {
        if listener.is_finished() {
            break;
        }
        send(&ns.0, "lldpA", &[ipv4.clone(), lldp_frame()]);
        std::thread::sleep(Duration::from_millis(250));
    }
    let got = listener.join().expect("listener thread");
    let tlvs = &got["lldpB"];
    assert_eq!(
        tlvs,
        &[(1, "04525400123456".to_string()), (2, "057031".to_string()), (0, String::new())],
        "{got:?}"
    );
    assert!(got["nosuch0"].is_empty(), "an interface that cannot be opened maps to []");
}
