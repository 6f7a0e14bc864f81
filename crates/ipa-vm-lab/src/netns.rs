//! A network namespace made for one lab: a loopback, a bridge with a private address that exists
//! only inside it, and nothing else. The calling thread can enter it, so the test's own HTTP
//! calls and every child it spawns afterwards live there too; it is deleted on drop.

use std::fs::File;
use std::path::Path;
use std::process::Command;

use crate::{LabError, run};

/// The namespace, with its bridge.
#[derive(Debug)]
pub struct Netns {
    /// `ip netns` name.
    pub name: String,
    /// Bridge name inside the namespace.
    pub bridge: String,
    /// The bridge's address (the lab's "host": Ironic, dnsmasq, sushy-tools, HTTP).
    pub host_ip: String,
    /// Prefix length of the bridge network.
    pub prefix: u8,
}

impl Netns {
    /// Create `ipalab-<pid>-<tag>` with `lo` up and bridge `br0` at `10.<a>.<b>.1/24`.
    pub fn create(tag: &str) -> Result<Self, LabError> {
        let pid = std::process::id();
        let name = format!("ipalab-{pid}-{tag}");
        // A /24 derived from the PID: nothing outside the namespace ever sees it.
        let (a, b) = (200 + (pid % 50) as u8, (pid / 50 % 250) as u8);
        let me = Self { name, bridge: "br0".into(), host_ip: format!("10.{a}.{b}.1"), prefix: 24 };
        if Path::new(&format!("/run/netns/{}", me.name)).exists() {
            let _ = Command::new("ip").args(["netns", "del", &me.name]).status();
        }
        run("ip", &["netns", "add", &me.name])?;
        let n = me.name.as_str();
        run("ip", &["-n", n, "link", "set", "lo", "up"])?;
        run("ip", &["-n", n, "link", "add", &me.bridge, "type", "bridge", "stp_state", "0"])?;
        run("ip", &["-n", n, "link", "set", &me.bridge, "type", "bridge", "forward_delay", "0"])?;
        let cidr = format!("{}/{}", me.host_ip, me.prefix);
        run("ip", &["-n", n, "addr", "add", &cidr, "dev", &me.bridge])?;
        run("ip", &["-n", n, "link", "set", &me.bridge, "up"])?;
        Ok(me)
    }

    /// The first three octets of the bridge network (`10.a.b`).
    pub fn net_prefix(&self) -> &str {
        self.host_ip.rsplit_once('.').map(|(p, _)| p).unwrap_or(&self.host_ip)
    }

    /// Move the calling thread into the namespace (network only). Children spawned from this
    /// thread afterwards inherit it; sockets it opens are bound inside it.
    pub fn enter_current_thread(&self) -> Result<(), LabError> {
        let f = File::open(format!("/run/netns/{}", self.name))
            .map_err(|e| LabError::Setup(format!("open netns {}: {e}", self.name)))?;
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| LabError::Setup(format!("setns {}: {e}", self.name)))
    }

    /// `ip netns exec NAME` as a command prefix: a private mount of /sys showing the
    /// namespace's interfaces (libvirt reads bridge state there).
    pub fn exec(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}
