//! LLDP: TLV parsing and raw `AF_PACKET` capture with a bounded wait.
//!
//! Capture joins promiscuous mode with a per-socket `PACKET_MR_PROMISC` membership, which the
//! kernel drops when the socket closes: no interface flag is ever changed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

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

struct Sock(i32);
impl Drop for Sock {
    fn drop(&mut self) {
        // SAFETY: closing a descriptor this struct owns.
        unsafe { libc::close(self.0) };
    }
}

fn open(iface: &str) -> std::io::Result<Sock> {
    let proto = LLDP_ETHERTYPE.to_be() as i32;
    // SAFETY: plain socket creation.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            proto,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let sock = Sock(fd);
    let cname = std::ffi::CString::new(iface).map_err(|_| std::io::Error::other("bad name"))?;
    // SAFETY: cname is NUL-terminated.
    let idx = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if idx == 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: sockaddr_ll is plain data.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = LLDP_ETHERTYPE.to_be();
    sll.sll_ifindex = idx as i32;
    // SAFETY: binding our socket to a valid sockaddr_ll of the right size.
    let rc = unsafe {
        libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: packet_mreq is plain data.
    let mut mr: libc::packet_mreq = unsafe { std::mem::zeroed() };
    mr.mr_ifindex = idx as i32;
    mr.mr_type = libc::PACKET_MR_PROMISC as u16;
    // SAFETY: setsockopt with a valid packet_mreq; membership ends when the socket closes.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            (&mr as *const libc::packet_mreq).cast(),
            std::mem::size_of::<libc::packet_mreq>() as u32,
        )
    };
    Ok(sock)
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
        let mut fds: Vec<libc::pollfd> = socks
            .iter()
            .map(|(_, s)| libc::pollfd { fd: s.0, events: libc::POLLIN, revents: 0 })
            .collect();
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `fds` is a valid array of pollfd for the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms.max(1)) };
        if n <= 0 {
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        let mut done = Vec::new();
        for (i, p) in fds.iter().enumerate() {
            if p.revents & libc::POLLIN == 0 {
                continue;
            }
            let mut buf = [0u8; 1600];
            // SAFETY: reading into a buffer of the stated length.
            let r = unsafe { libc::recv(p.fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if r >= 0 {
                out.insert(socks[i].0.clone(), parse_frame(&buf[..r as usize]));
                done.push(i);
            }
        }
        for i in done.into_iter().rev() {
            socks.remove(i);
        }
    }
    out
}
