//! `ipa-init` — the PID 1 of the ipa-rs deploy ramdisk.
//!
//! The ramdisk builder installs the `ipa-init` binary as `/init` in an initramfs next to a
//! Debian kernel's modules, a static busybox and the agent (`/usr/bin/ipa-agent`). When the
//! kernel starts it as PID 1 it, in order:
//!
//! 1. mounts `/proc`, `/sys`, `/dev` (devtmpfs), `/dev/pts`, `/dev/shm`, `/run`, `/tmp` (and
//!    debugfs), makes sure fds 0-2 and the basic device nodes exist;
//! 2. loads kernel modules natively — `modules.alias`/`modules.dep`/`modules.builtin` are
//!    parsed here, every `modalias` under `/sys/devices` is matched (coldplug) and the
//!    modules are inserted after their dependencies with `finit_module(2)` — in two phases:
//!    first the drivers of the network controllers (PCI base class 0x02) and of the devices
//!    they create (virtio_pci's `virtio0` below a virtio-net function gets virtio_net), until
//!    each controller has an interface; then, on a thread of its own while the network comes
//!    up, every other device's driver, the fixed list `/etc/ipa-init/modules`, and rounds of
//!    kernel uevents (without a uevent socket: sysfs passes, at most 5) until one loads
//!    nothing; efivarfs is mounted when the machine booted with UEFI;
//! 3. brings `lo` and every wired NIC up, waits (at most 3 s) for carrier on one, and runs
//!    busybox `udhcpc` on them, and for DHCPv6 busybox `udhcpc6` when present, else dhcpcd in
//!    IPv6-only mode (2 s after udhcpc, or 3 s after the agent's start when the network was
//!    ready before; SLAAC comes from the kernel), or applies a static `ip=` from the kernel
//!    command line, and waits (bounded by `ipa-init.net_timeout=`) for the boot NIC
//!    (`BOOTIF=`) or any wired NIC to get a global address. When phase 1 found no wired NIC
//!    (a NIC that is not a PCI network controller), this starts after phase 2;
//! 4. starts and supervises the agent once the network wait is over *and* phase 2 is done
//!    (the agent's inventory lists the disks: they must all be there), restarting it with
//!    1 s → 30 s backoff, its output going to the console and to `/run/ipa-agent.log`; then
//!    loads the module list's `background` names on a low-priority thread that stays as the
//!    hotplug loader; optionally a debug shell (`ipa-init.shell=1`);
//! 5. reaps every child, orphans included;
//! 6. powers the machine off, reboots or halts on request.
//!
//! # Signal convention (busybox init's)
//!
//! | signal to PID 1 | action |
//! |---|---|
//! | `SIGUSR2` | power off |
//! | `SIGTERM` | reboot |
//! | `SIGUSR1` | halt |
//! | `SIGINT` (ctrl-alt-del) | reboot |
//!
//! So busybox `poweroff`/`reboot`/`halt` work unchanged, and the agent calls
//! [`request_power`] (which only sends the signal). On a request init SIGTERMs every process,
//! waits up to 10 s, SIGKILLs the rest, syncs, unmounts disk filesystems and calls
//! `reboot(2)`.
//!
//! # Safety off the ramdisk
//!
//! Nothing destructive happens unless the process really is PID 1. Run on a host, the binary
//! only offers read-only modes (`--check-cmdline`, `--resolve-modules`, `--dry-run`) and
//! refuses to act as init. This library's pure parts (command line, module index, NIC
//! selection, supervisor state machine) are what the tests drive.

pub mod cmdline;
pub mod console;
pub mod error;
pub mod glob;
pub mod json;
pub mod modules;
pub mod net;
pub mod power;
pub mod supervisor;
pub mod uevent;

#[doc(hidden)]
pub mod init;
#[doc(hidden)]
pub mod sys;

pub use error::Error;
pub use power::PowerAction;

/// Environment variable ipa-init sets (to `1`) for the agent it starts.
pub const IPA_INIT_ENV: &str = "IPA_INIT";

/// True when this process was started by ipa-init (`IPA_INIT=1` in the environment).
pub fn under_ipa_init() -> bool {
    std::env::var_os(IPA_INIT_ENV).is_some_and(|v| v == "1")
}

/// Ask ipa-init (PID 1) to power the machine off, reboot it or halt it.
///
/// Sends the busybox-init signal for `action` to PID 1 (`SIGUSR2` power off, `SIGTERM`
/// reboot, `SIGUSR1` halt) and returns at once; PID 1 then stops every process, so the caller
/// should expect its own SIGTERM shortly. As a guard against signalling a host's init by
/// mistake, it refuses (with [`Error::NotUnderIpaInit`]) unless `IPA_INIT=1` is set in the
/// environment, which ipa-init does for the agent.
pub fn request_power(action: PowerAction) -> Result<(), Error> {
    if !under_ipa_init() {
        return Err(Error::NotUnderIpaInit);
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(1), action.signal())
        .map_err(|source| Error::Signal { signal: action.signal().as_str(), source })
}
