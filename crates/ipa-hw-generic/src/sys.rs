//! The few facts only system calls give: the permanent MAC (ethtool ioctl), interface
//! addresses (`getifaddrs`), `uname -m` and the hostname. All read-only.

const SIOCETHTOOL: u16 = 0x8946;
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

// `SIOCETHTOOL` takes a `struct ifreq` whose data pointer names the ethtool command buffer.
nix::ioctl_readwrite_bad!(siocethtool, SIOCETHTOOL, IfReq);

/// `ETHTOOL_GPERMADDR`; `None` when the ioctl fails or the address is all zeros.
pub fn permanent_mac(iface: &str) -> Option<String> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
    use std::os::fd::AsRawFd;

    if iface.len() >= libc::IFNAMSIZ {
        return None;
    }
    let mut perm = PermAddr { cmd: ETHTOOL_GPERMADDR, size: MAX_ADDR_LEN as u32, data: [0; 32] };
    let mut req = IfReq { name: [0; libc::IFNAMSIZ], data: &mut perm, _pad: [0; 16] };
    for (d, s) in req.name.iter_mut().zip(iface.bytes()) {
        *d = s as libc::c_char;
    }
    // Closed when `fd` drops.
    let fd = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None).ok()?;
    // SAFETY: `req` is a valid ifreq whose data pointer targets `perm`, both alive for the
    // call; SIOCETHTOOL with GPERMADDR only writes into `perm` (at most MAX_ADDR_LEN bytes).
    unsafe { siocethtool(fd.as_raw_fd(), &mut req) }.ok()?;
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
    let Ok(list) = nix::ifaddrs::getifaddrs() else { return (None, None) };
    let (mut v4, mut v6) = (None, None);
    for ifa in list.filter(|a| a.interface_name == iface) {
        let Some(addr) = ifa.address else { continue };
        if let Some(sin) = addr.as_sockaddr_in()
            && v4.is_none()
        {
            v4 = Some(sin.ip().to_string());
        } else if let Some(sin6) = addr.as_sockaddr_in6()
            && v6.is_none()
        {
            let ip = sin6.ip();
            let text = if (ip.segments()[0] & 0xffc0) == 0xfe80 {
                format!("{ip}%{iface}")
            } else {
                ip.to_string()
            };
            v6 = Some(text);
        }
    }
    (v4, v6)
}

/// `uname -m`.
pub fn machine_arch() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.machine().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `gethostname()`.
pub fn hostname() -> Option<String> {
    nix::unistd::gethostname().ok().map(|h| h.to_string_lossy().into_owned())
}
