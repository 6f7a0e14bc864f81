//! Where the agent runs: ramdisk or not, and therefore sandbox or real hardware.

use std::path::{Path, PathBuf};

use ipa_core::config::AgentConfig;
use ipa_core::services::RunMode;

/// Facts about the environment that decide the run mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// The root file system is a ramdisk (`rootfs`, `tmpfs` or `ramfs`), as in an IPA ramdisk.
    pub in_ramdisk: bool,
    /// Default sandbox directory.
    pub default_sandbox: PathBuf,
}

impl Environment {
    /// Probe this machine.
    pub fn probe() -> Self {
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        Self {
            in_ramdisk: root_is_ramdisk(&mounts),
            default_sandbox: std::env::temp_dir().join("ipa-sandbox"),
        }
    }
}

/// The file system type of the last `/` mount in `/proc/mounts` is a ramdisk type.
pub fn root_is_ramdisk(proc_mounts: &str) -> bool {
    proc_mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_dev, mnt, fstype) = (f.next()?, f.next()?, f.next()?);
            (mnt == "/").then_some(fstype)
        })
        .next_back()
        .is_some_and(|t| matches!(t, "rootfs" | "tmpfs" | "ramfs"))
}

/// Why the mode could not be decided.
#[derive(Debug, thiserror::Error)]
pub enum ModeError {
    /// Contradictory options.
    #[error("`sandbox` and `real_hardware` cannot both be set")]
    Conflict,
    /// The sandbox directory cannot be created.
    #[error("cannot create sandbox directory {path}")]
    Sandbox {
        /// Directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Decide the run mode:
/// * `sandbox = DIR` → sandbox in DIR;
/// * `real_hardware = true` → real (explicit opt-in);
/// * otherwise real only inside a ramdisk, and a sandbox in the temp directory everywhere else.
pub fn decide_mode(config: &AgentConfig, env: &Environment) -> Result<RunMode, ModeError> {
    let mode = match (&config.agent.sandbox, config.agent.real_hardware) {
        (Some(_), true) => return Err(ModeError::Conflict),
        (Some(dir), false) => RunMode::Sandbox { dir: absolute(dir) },
        (None, true) => RunMode::Real,
        (None, false) if env.in_ramdisk => RunMode::Real,
        (None, false) => RunMode::Sandbox { dir: env.default_sandbox.clone() },
    };
    if let RunMode::Sandbox { dir } = &mode {
        for sub in [dir.clone(), dir.join("disks"), dir.join("root")] {
            std::fs::create_dir_all(&sub)
                .map_err(|source| ModeError::Sandbox { path: sub.clone(), source })?;
        }
    }
    Ok(mode)
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().map(|c| c.join(p)).unwrap_or_else(|_| p.to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramdisk_detection_uses_the_last_root_mount() {
        assert!(root_is_ramdisk("rootfs / rootfs rw 0 0\nproc /proc proc rw 0 0\n"));
        assert!(!root_is_ramdisk("rootfs / rootfs rw 0 0\n/dev/vda / ext4 rw 0 0\n"));
        assert!(!root_is_ramdisk("overlay / overlay rw 0 0\n"));
        assert!(root_is_ramdisk("none / tmpfs rw 0 0\n"));
        assert!(!root_is_ramdisk(""));
    }

    #[test]
    fn sandbox_is_the_default_off_a_ramdisk_and_real_needs_opt_in() {
        let dir = tempfile::tempdir().unwrap();
        let off = Environment { in_ramdisk: false, default_sandbox: dir.path().join("sb") };
        let on = Environment { in_ramdisk: true, ..off.clone() };
        let c = AgentConfig::default();
        assert_eq!(decide_mode(&c, &off).unwrap(), RunMode::Sandbox { dir: dir.path().join("sb") });
        assert!(dir.path().join("sb/disks").is_dir());
        assert_eq!(decide_mode(&c, &on).unwrap(), RunMode::Real);
        let mut explicit = AgentConfig::default();
        explicit.agent.sandbox = Some(dir.path().join("x"));
        assert!(
            decide_mode(&explicit, &on).unwrap().is_sandbox(),
            "--sandbox wins even on a ramdisk"
        );
        let mut real = AgentConfig::default();
        real.agent.real_hardware = true;
        assert_eq!(decide_mode(&real, &off).unwrap(), RunMode::Real);
        let mut both = real.clone();
        both.agent.sandbox = Some("/tmp/x".into());
        assert!(matches!(decide_mode(&both, &off), Err(ModeError::Conflict)));
    }
}
