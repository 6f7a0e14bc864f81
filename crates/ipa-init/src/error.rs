//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in ipa-init's library functions.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A system call failed.
    #[error("{op}: {source}")]
    Sys {
        op: String,
        #[source]
        source: nix::Error,
    },
    /// A modules directory without `modules.dep` (depmod was not run).
    #[error("{}: no modules.dep (was depmod run?)", dir.display())]
    NoModulesDep { dir: PathBuf },
    /// A value that does not parse.
    #[error("invalid {what} {value:?}: {reason}")]
    Parse { what: &'static str, value: String, reason: String },
    /// `request_power` outside an ipa-init ramdisk.
    #[error("not running under ipa-init (IPA_INIT=1 is not set): refusing to signal PID 1")]
    NotUnderIpaInit,
    /// Signalling PID 1 failed.
    #[error("cannot send {signal} to PID 1: {source}")]
    Signal {
        signal: &'static str,
        #[source]
        source: nix::Error,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    pub(crate) fn sys(op: impl Into<String>, source: nix::Error) -> Self {
        Error::Sys { op: op.into(), source }
    }
}
