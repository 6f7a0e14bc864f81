//! The few facts only system calls give: the permanent MAC (ethtool ioctl), interface
//! addresses (`getifaddrs`), `uname -m` and the hostname. All read-only.

use std::ffi::CStr;

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GPERMADDR: u32 = 0x20;
const MAX_ADDR_LEN: usize = 32;

#[repr(C)]
struct PermAddr {
    cmd: u32,
    size: u32,
    data: [u8; MAX_ADDR_LEN],
}

#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut PermAddr,
    _pad: [u8; 16],
}

/// `ETHTOOL_GPERMADDR`; `None` when the ioctl fails or the address is all zeros.
pub fn permanent_mac(iface: &str) -> Option<String> {
    if iface.len() >= libc::IFNAMSIZ {
        return None;
    }
    let mut perm = PermAddr { cmd: ETHTOOL_GPERMADDR, size: MAX_ADDR_LEN as u32, data: [0; 32] };
    let mut req = IfReq { name: [0; libc::IFNAMSIZ], data: &mut perm, _pad: [0; 16] };
    for (d, s) in req.name.iter_mut().zip(iface.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: plain socket creation; the fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `req` is a valid ifreq whose data pointer targets `perm`, both alive for the
    // call; SIOCETHTOOL with GPERMADDR only writes into `perm` (at most MAX_ADDR_LEN bytes).
    let rc = unsafe { libc::ioctl(fd, SIOCETHTOOL as _, &mut req as *mut IfReq) };
    // SAFETY: closing the fd we opened.
    unsafe { libc::close(fd) };
    if rc != 0 {
        return None;
    }
    let n = (perm.size as usize).min(MAX_ADDR_LEN);
    let bytes = &perm.data[..n];
    if bytes.iter().all(|b| *b == 0) {
        return None;
    }
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"))
}

/// First IPv4 and first IPv6 address of `iface` (psutil order: `getifaddrs` order). Link-local
/// IPv6 carries the `%iface` scope, as psutil reports it.
pub fn first_addresses(iface: &str) -> (Option<String>, Option<String>) {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list freed by freeifaddrs below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return (None, None);
    }
    let (mut v4, mut v6) = (None, None);
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned and has not been freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }.to_string_lossy();
        if name != iface {
            continue;
        }
        // SAFETY: ifa_addr is non-null and points at a sockaddr of the family it states.
        let family = unsafe { (*ifa.ifa_addr).sa_family } as i32;
        if family == libc::AF_INET && v4.is_none() {
            // SAFETY: the family is AF_INET, so this is a sockaddr_in.
            let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            v4 = Some(std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)).to_string());
        } else if family == libc::AF_INET6 && v6.is_none() {
            // SAFETY: the family is AF_INET6, so this is a sockaddr_in6.
            let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let text = if (ip.segments()[0] & 0xffc0) == 0xfe80 {
                format!("{ip}%{iface}")
            } else {
                ip.to_string()
            };
            v6 = Some(text);
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed exactly once.
    unsafe { libc::freeifaddrs(head) };
    (v4, v6)
}

/// `uname -m`.
pub fn machine_arch() -> String {
    // SAFETY: utsname is plain data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return String::new();
    }
    // SAFETY: uname NUL-terminates each field.
    unsafe { CStr::from_ptr(u.machine.as_ptr()) }.to_string_lossy().into_owned()
}

/// `gethostname()`.
pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is writable for its whole length.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}
