//! The system calls only PID 1 makes: mounts, device nodes, standard descriptors, link
//! flags, hostname, final unmount. Nothing here is called outside init mode.

use std::fs;
use std::io;
use std::os::fd::AsRawFd as _;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{Mode, SFlag, makedev, mknod};

use crate::error::Error;

/// A filesystem to mount early.
#[derive(Debug, Clone, Copy)]
pub struct MountSpec {
    pub fstype: &'static str,
    pub target: &'static str,
    pub flags: MsFlags,
    pub data: Option<&'static str>,
}

const NOSUID_NODEV_NOEXEC: MsFlags =
    MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV).union(MsFlags::MS_NOEXEC);

/// The early mounts, in order.
pub const EARLY_MOUNTS: &[MountSpec] = &[
    MountSpec { fstype: "proc", target: "/proc", flags: NOSUID_NODEV_NOEXEC, data: None },
    MountSpec { fstype: "sysfs", target: "/sys", flags: NOSUID_NODEV_NOEXEC, data: None },
    MountSpec {
        fstype: "devtmpfs",
        target: "/dev",
        flags: MsFlags::MS_NOSUID,
        data: Some("mode=0755"),
    },
    MountSpec {
        fstype: "devpts",
        target: "/dev/pts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: Some("gid=5,mode=0620,ptmxmode=0666"),
    },
    MountSpec {
        fstype: "tmpfs",
        target: "/dev/shm",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=1777"),
    },
    MountSpec {
        fstype: "tmpfs",
        target: "/run",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=0755"),
    },
    MountSpec {
        fstype: "tmpfs",
        target: "/tmp",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=1777"),
    },
];

/// Is `path` already a mount point (a different device than its parent)?
pub fn is_mountpoint(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let (Ok(me), Some(parent)) = (fs::metadata(path), path.parent()) else {
        return false;
    };
    fs::metadata(parent).is_ok_and(|p| p.dev() != me.dev())
}

/// Mount `fstype` on `target` (created if missing). `Ok(false)` when it already was.
pub fn mount_fs(
    fstype: &str,
    target: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<bool, Error> {
    fs::create_dir_all(target).map_err(|e| Error::io(target, e))?;
    if is_mountpoint(Path::new(target)) {
        return Ok(false);
    }
    match mount(Some(fstype), target, Some(fstype), flags, data) {
        Ok(()) => Ok(true),
        Err(nix::Error::EBUSY) => Ok(false),
        Err(e) => Err(Error::sys(format!("mount {fstype} on {target}"), e)),
    }
}

/// Character devices every ramdisk needs: (path, major, minor, mode).
const DEV_NODES: &[(&str, u64, u64, u32)] = &[
    ("/dev/console", 5, 1, 0o600),
    ("/dev/null", 1, 3, 0o666),
    ("/dev/zero", 1, 5, 0o666),
    ("/dev/full", 1, 7, 0o666),
    ("/dev/random", 1, 8, 0o666),
    ("/dev/urandom", 1, 9, 0o666),
    ("/dev/kmsg", 1, 11, 0o644),
    ("/dev/tty", 5, 0, 0o666),
    ("/dev/ptmx", 5, 2, 0o666),
];

/// Create the basic device nodes devtmpfs did not (or that a tmpfs fallback lacks), and the
/// `/dev/fd`, `/dev/std*` links. Returns the nodes created.
pub fn ensure_dev_nodes() -> Vec<&'static str> {
    let mut made = Vec::new();
    for &(path, major, minor, mode) in DEV_NODES {
        if fs::symlink_metadata(path).is_ok() {
            continue;
        }
        if mknod(path, SFlag::S_IFCHR, Mode::from_bits_truncate(mode), makedev(major, minor))
            .is_ok()
        {
            made.push(path);
        }
    }
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        if fs::symlink_metadata(link).is_err() {
            let _ = std::os::unix::fs::symlink(target, link);
        }
    }
    made
}

/// Make sure fds 0, 1 and 2 are open (the kernel leaves them closed when the initramfs has
/// no `/dev/console`): `/dev/console`, else `/dev/null`. Returns true if any was reopened.
pub fn ensure_std_fds() -> bool {
    // SAFETY: fcntl(F_GETFD) only queries the descriptor's flags.
    let closed: Vec<i32> =
        (0..3).filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1).collect();
    if closed.is_empty() {
        return false;
    }
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags_noctty()
        .open("/dev/console")
        .or_else(|_| fs::OpenOptions::new().read(true).write(true).open("/dev/null"));
    if let Ok(f) = file {
        for fd in closed {
            // SAFETY: dup2 onto a closed standard descriptor; `f` stays open for the call.
            unsafe { libc::dup2(f.as_raw_fd(), fd) };
        }
        // The descriptor `f` itself may be 0-2 (lowest free): don't close it then.
        if f.as_raw_fd() <= 2 {
            let _ = std::os::fd::IntoRawFd::into_raw_fd(f);
        }
    }
    true
}

trait NoCtty {
    fn custom_flags_noctty(&mut self) -> &mut Self;
}

impl NoCtty for fs::OpenOptions {
    fn custom_flags_noctty(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt as _;
        self.custom_flags(libc::O_NOCTTY)
    }
}

/// Write a `/proc/sys` (or any) file, ignoring errors (IPv6 may be disabled).
pub fn write_quiet(path: &str, value: &str) -> bool {
    fs::write(path, value).is_ok()
}

/// Set `IFF_UP` on an interface (`SIOCGIFFLAGS`/`SIOCSIFFLAGS`).
pub fn link_up(ifname: &str) -> Result<(), Error> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
    let op = || format!("set {ifname} up");
    if ifname.len() >= libc::IFNAMSIZ || ifname.contains('\0') {
        return Err(Error::sys(op(), nix::Error::EINVAL));
    }
    let sock = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| Error::sys(op(), e))?;
    // SAFETY: ifreq is a plain C struct/union for which all-zero bytes are valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(ifname.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the NUL-terminated name and writes ifru_flags into the
    // valid, exclusively borrowed `ifr`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) } < 0 {
        return Err(Error::sys(op(), nix::Error::last()));
    }
    // SAFETY: after SIOCGIFFLAGS the union holds the flags (a c_short): reading and
    // updating that member is valid.
    unsafe {
        if ifr.ifr_ifru.ifru_flags & libc::IFF_UP as libc::c_short != 0 {
            return Ok(());
        }
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS reads the name and flags from the valid `ifr`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) } < 0 {
        return Err(Error::sys(op(), nix::Error::last()));
    }
    Ok(())
}

/// Set the calling thread's nice value (Linux keeps it per thread, so the rest of the
/// process keeps its priority).
pub fn nice_this_thread(nice: i32) -> io::Result<()> {
    let tid = nix::unistd::gettid().as_raw();
    // SAFETY: setpriority(2) only takes integers; no memory of ours is involved.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Set the hostname and `/etc/hostname`.
pub fn set_hostname(name: &str) -> Result<(), Error> {
    nix::unistd::sethostname(name).map_err(|e| Error::sys(format!("sethostname {name}"), e))?;
    let _ = fs::write("/etc/hostname", format!("{name}\n"));
    Ok(())
}

/// Filesystems that hold no data to flush (never unmounted at shutdown).
const VIRTUAL_FS: &[&str] = &[
    "rootfs",
    "ramfs",
    "tmpfs",
    "devtmpfs",
    "devpts",
    "proc",
    "sysfs",
    "securityfs",
    "cgroup",
    "cgroup2",
    "pstore",
    "efivarfs",
    "bpf",
    "debugfs",
    "tracefs",
    "configfs",
    "fusectl",
    "mqueue",
    "hugetlbfs",
    "binfmt_misc",
    "autofs",
    "overlay",
];

/// Mount points of real (disk) filesystems from `/proc/mounts` text, innermost first.
pub fn disk_mounts(proc_mounts: &str) -> Vec<String> {
    let mut out: Vec<String> = proc_mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && !VIRTUAL_FS.contains(&f[2]) && f[1] != "/")
                .then(|| f[1].replace("\\040", " "))
        })
        .collect();
    out.reverse();
    out
}

/// Unmount disk filesystems (best effort) so the written image is clean; returns
/// (unmounted, failed) mount points.
pub fn umount_disks() -> (Vec<String>, Vec<String>) {
    let text = fs::read_to_string("/proc/mounts").unwrap_or_default();
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    for m in disk_mounts(&text) {
        match umount2(m.as_str(), MntFlags::empty()) {
            Ok(()) => ok.push(m),
            Err(_) => failed.push(m),
        }
    }
    (ok, failed)
}

/// The terminal behind `/dev/console` (the last entry of `/sys/class/tty/console/active`),
/// for the debug shell; `/dev/console` when unknown.
pub fn console_tty() -> String {
    fs::read_to_string("/sys/class/tty/console/active")
        .ok()
        .and_then(|s| s.split_whitespace().last().map(|t| format!("/dev/{t}")))
        .filter(|p| Path::new(p).exists())
        .unwrap_or_else(|| "/dev/console".into())
}

/// Create a directory and its parents, ignoring errors.
pub fn mkdir_quiet(path: &str) {
    let _ = fs::create_dir_all(path);
}

/// Read a whole file, `None` if it is missing or unreadable.
pub fn read(path: impl AsRef<Path>) -> Option<String> {
    fs::read_to_string(path).ok()
}

/// Write a file atomically (temporary + rename).
pub fn write_atomic(path: &str, content: &str) -> io::Result<()> {
    let tmp = format!("{path}.ipa-init.tmp");
    fs::write(&tmp, content)?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn disk_mounts_skip_virtual_filesystems() {
        let m = "rootfs / rootfs rw 0 0\nproc /proc proc rw 0 0\n\
                 /dev/sda1 /mnt/root ext4 rw 0 0\n/dev/sda2 /mnt/root/boot\\040efi vfat rw 0 0\n\
                 tmpfs /run tmpfs rw 0 0\nefivarfs /sys/firmware/efi/efivars efivarfs rw 0 0\n";
        assert_eq!(super::disk_mounts(m), vec!["/mnt/root/boot efi", "/mnt/root"]);
    }
}
