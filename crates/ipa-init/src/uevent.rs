//! Kernel uevents (`NETLINK_KOBJECT_UEVENT`): how coldplug knows a module it loaded created
//! new devices, without sleeping and re-walking `/sys/devices`, and how devices that appear
//! later (a USB virtual-media stick, a disk scanned asynchronously) still get their driver.
//!
//! A uevent datagram is `ACTION@DEVPATH\0KEY=VALUE\0...`; the ones that matter here are `add`
//! events with a `MODALIAS`. Messages from udevd (`libudev\0` prefix) are ignored: there is no
//! udevd in the ramdisk, and its messages never reach group 1 anyway.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, setsockopt,
    socket, sockopt,
};

use crate::modules::DeviceAlias;

/// One parsed uevent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uevent {
    /// `add`, `remove`, `bind`, `change`, ...
    pub action: String,
    /// `/devices/...`
    pub devpath: String,
    /// The device's modalias, when it has one.
    pub modalias: Option<String>,
}

/// Parse one kernel uevent datagram; `None` for anything else (udevd's binary format,
/// garbage, a missing `@`).
pub fn parse_uevent(buf: &[u8]) -> Option<Uevent> {
    let mut fields = buf.split(|b| *b == 0).filter(|f| !f.is_empty());
    let head = std::str::from_utf8(fields.next()?).ok()?;
    let (action, devpath) = head.split_once('@')?;
    if action.is_empty() || !devpath.starts_with('/') {
        return None;
    }
    let mut modalias = None;
    for f in fields {
        let Ok(f) = std::str::from_utf8(f) else { continue };
        if let Some(v) = f.strip_prefix("MODALIAS=")
            && !v.is_empty()
        {
            modalias = Some(v.to_string());
        }
    }
    Some(Uevent { action: action.to_string(), devpath: devpath.to_string(), modalias })
}

/// A bound `NETLINK_KOBJECT_UEVENT` socket on the kernel's multicast group.
#[derive(Debug)]
pub struct UeventSocket {
    fd: OwnedFd,
}

/// Receive buffer asked for: a burst of coldplug events (hundreds of devices) must not
/// overflow it while init is busy inserting a module.
const RCVBUF: usize = 4 << 20;

impl UeventSocket {
    /// Open and bind the socket (needs CAP_NET_ADMIN for the forced buffer size; without it
    /// the default size is kept).
    pub fn open() -> io::Result<Self> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            SockProtocol::NetlinkKObjectUEvent,
        )?;
        if setsockopt(&fd, sockopt::RcvBufForce, &RCVBUF).is_err() {
            let _ = setsockopt(&fd, sockopt::RcvBuf, &RCVBUF);
        }
        bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &NetlinkAddr::new(0, 1))?;
        Ok(UeventSocket { fd })
    }

    /// Wait up to `timeout` for the socket to become readable, then read every queued event.
    /// Returns the `add`/`bind` events' modaliases (in arrival order, duplicates removed) and
    /// how many events were read.
    pub fn poll_modaliases(&self, timeout: Duration) -> io::Result<(Vec<String>, usize)> {
        let (devices, events) = self.poll_devices(timeout)?;
        let mut out: Vec<String> = Vec::new();
        for d in devices {
            if !out.contains(&d.modalias) {
                out.push(d.modalias);
            }
        }
        Ok((out, events))
    }

    /// [`UeventSocket::poll_modaliases`] with each modalias's device (`DEVPATH`), in arrival
    /// order (a device announced twice, by `add` and `bind`, is listed once).
    pub fn poll_devices(&self, timeout: Duration) -> io::Result<(Vec<DeviceAlias>, usize)> {
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        let ready = match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => 0,
            Err(e) => return Err(e.into()),
        };
        let mut out: Vec<DeviceAlias> = Vec::new();
        let mut events = 0;
        if ready == 0 {
            return Ok((out, 0));
        }
        let mut buf = vec![0u8; 16 * 1024];
        // Bounded: the queue is finite; stop after a generous number of datagrams anyway.
        for _ in 0..100_000 {
            match recv(std::os::fd::AsRawFd::as_raw_fd(&self.fd), &mut buf, MsgFlags::empty()) {
                Ok(0) => break,
                Ok(n) => {
                    events += 1;
                    if let Some(ev) = parse_uevent(&buf[..n])
                        && matches!(ev.action.as_str(), "add" | "bind")
                        && let Some(modalias) = ev.modalias
                    {
                        let d = DeviceAlias { devpath: ev.devpath, modalias };
                        if !out.contains(&d) {
                            out.push(d);
                        }
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                // ENOBUFS: events were lost; the caller rescans sysfs.
                Err(e) => return Err(e.into()),
            }
        }
        Ok((out, events))
    }

    /// Collect modaliases until no event arrived for `quiet`, or `max` has passed.
    pub fn settle(&self, quiet: Duration, max: Duration) -> io::Result<Vec<String>> {
        let t0 = Instant::now();
        let mut all: Vec<String> = Vec::new();
        while t0.elapsed() < max {
            let (found, events) = self.poll_modaliases(quiet.min(max - t0.elapsed()))?;
            for m in found {
                if !all.contains(&m) {
                    all.push(m);
                }
            }
            if events == 0 {
                break;
            }
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_uevents_parse_and_others_are_ignored() {
        let ev = parse_uevent(
            b"add@/devices/pci0000:00/0000:00:02.0/virtio0\0ACTION=add\0DEVPATH=/devices/pci0000:00/0000:00:02.0/virtio0\0SUBSYSTEM=virtio\0MODALIAS=virtio:d00000001v00001AF4\0SEQNUM=1234\0",
        )
        .unwrap();
        assert_eq!(ev.action, "add");
        assert_eq!(ev.devpath, "/devices/pci0000:00/0000:00:02.0/virtio0");
        assert_eq!(ev.modalias.as_deref(), Some("virtio:d00000001v00001AF4"));

        let ev = parse_uevent(b"add@/devices/virtual/block/loop0\0ACTION=add\0SUBSYSTEM=block\0")
            .unwrap();
        assert_eq!(ev.modalias, None);
        assert!(parse_uevent(b"libudev\0\xfe\xed\xca\xfe binary").is_none());
        assert!(parse_uevent(b"").is_none());
        assert!(parse_uevent(b"no at sign\0KEY=1\0").is_none());
        assert!(parse_uevent(b"add@relative\0").is_none());
        assert!(parse_uevent(b"add@/x\0MODALIAS=\0").unwrap().modalias.is_none());
    }

    #[test]
    fn the_socket_binds_to_the_kernel_group_and_a_quiet_poll_returns_nothing_or_real_events() {
        // Listening is harmless: nothing is triggered here, events of the machine (if any
        // arrive during the 20 ms) are only parsed.
        let u = UeventSocket::open().expect("NETLINK_KOBJECT_UEVENT socket");
        let (aliases, events) = u.poll_modaliases(Duration::from_millis(20)).unwrap();
        assert!(aliases.len() <= events);
        let settled = u.settle(Duration::from_millis(10), Duration::from_millis(50)).unwrap();
        assert!(settled.iter().all(|m| !m.is_empty()));
    }
}
