//! LLDP: TLV parsing and raw `AF_PACKET` capture with a bounded wait.
//!
//! Capture joins promiscuous mode with a per-socket `PACKET_MR_PROMISC` membership, which the
//! kernel drops when the socket closes: no interface flag is ever changed.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::MsgFlags;

/// LLDP ethertype.
pub const LLDP_ETHERTYPE: u16 = 0x88cc;

/// Parse an LLDPDU (the frame after its 14-byte Ethernet header) into `(type, hex value)`
/// pairs, End TLV included, as IPA does. Trailing bytes shorter than a TLV header are dropped.
pub fn parse_tlvs(mut buf: &[u8]) -> Vec<(u8, String)> {
    let mut out = Vec::new();
    while buf.len() >= 2 {
        let hdr = u16::from_be_bytes([buf[0], buf[1]]);
        let ty = (hdr >> 9) as u8;
        let len = (hdr & 0x01ff) as usize;
        let end = (2 + len).min(buf.len());
        out.push((ty, hex(&buf[2..end])));
        buf = &buf[end..];
    }
    out
}

/// Parse a whole Ethernet frame; frames shorter than a header give nothing.
pub fn parse_frame(frame: &[u8]) -> Vec<(u8, String)> {
    if frame.len() < 14 { Vec::new() } else { parse_tlvs(&frame[14..]) }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Open an `AF_PACKET` socket bound to `iface` that receives LLDP frames, in promiscuous mode
/// for as long as it is open.
fn open(iface: &str) -> std::io::Result<OwnedFd> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockProtocol, SockType, socket};
    // Created for every ethertype, then narrowed to LLDP by `bind`; a frame of another type
    // queued in between is dropped by `is_lldp` when it is read.
    let fd = socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        SockProtocol::EthAll,
    )?;
    let idx = nix::net::if_::if_nametoindex(iface)? as i32;
    let sll = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: LLDP_ETHERTYPE.to_be(),
        sll_ifindex: idx,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    };
    // SAFETY: binding a socket this function owns to a fully initialised sockaddr_ll of the
    // stated size (nix has no safe constructor for a packet address).
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mr = libc::packet_mreq {
        mr_ifindex: idx,
        mr_type: libc::PACKET_MR_PROMISC as u16,
        mr_alen: 0,
        mr_address: [0; 8],
    };
    // SAFETY: setsockopt with a fully initialised packet_mreq of the stated size (nix has no
    // PACKET_ADD_MEMBERSHIP option); the membership ends when the socket closes.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            (&mr as *const libc::packet_mreq).cast(),
            std::mem::size_of::<libc::packet_mreq>() as u32,
        )
    };
    Ok(fd)
}

/// Whether an Ethernet frame carries LLDP (untagged ethertype 0x88cc).
fn is_lldp(frame: &[u8]) -> bool {
    frame.len() >= 14 && u16::from_be_bytes([frame[12], frame[13]]) == LLDP_ETHERTYPE
}

/// Listen on each interface until one LLDP frame arrived on each or `timeout` passed.
/// Interfaces without a frame map to `[]`; interfaces whose socket cannot be opened are
/// reported as `[]` too (the reference gives up on all; we keep the others).
pub fn collect(interfaces: &[String], timeout: Duration) -> BTreeMap<String, Vec<(u8, String)>> {
    let mut out: BTreeMap<String, Vec<(u8, String)>> = BTreeMap::new();
    let mut socks = Vec::new();
    for name in interfaces.iter().filter(|n| *n != "lo") {
        match open(name) {
            Ok(s) => socks.push((name.clone(), s)),
            Err(e) => tracing::warn!(interface = %name, error = %e, "LLDP socket failed"),
        }
        out.insert(name.clone(), Vec::new());
    }
    let deadline = Instant::now() + timeout;
    while !socks.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let mut fds: Vec<PollFd<'_>> =
            socks.iter().map(|(_, s)| PollFd::new(s.as_fd(), PollFlags::POLLIN)).collect();
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX).max(1);
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => break,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|p| p.revents().is_some_and(|r| r.contains(PollFlags::POLLIN)))
            .collect();
        drop(fds);
        let mut done = Vec::new();
        for (i, ready) in ready.into_iter().enumerate() {
            if !ready {
                continue;
            }
            let mut buf = [0u8; 1600];
            let fd = socks[i].1.as_raw_fd();
            if let Ok(n) = nix::sys::socket::recv(fd, &mut buf, MsgFlags::empty())
                && is_lldp(&buf[..n])
            {
                out.insert(socks[i].0.clone(), parse_frame(&buf[..n]));
                done.push(i);
            }
        }
        for i in done.into_iter().rev() {
            socks.remove(i);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_untagged_lldp_frames_are_taken() {
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&LLDP_ETHERTYPE.to_be_bytes());
        frame.extend_from_slice(&[0x02, 0x01, 0x04, 0x00, 0x00]); // chassis id, End
        assert!(is_lldp(&frame));
        assert_eq!(parse_frame(&frame), [(1, "04".to_string()), (0, String::new())]);
        frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
        assert!(!is_lldp(&frame));
        assert!(!is_lldp(&frame[..13]));
    }
}
