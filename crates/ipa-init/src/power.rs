//! Power actions and busybox init's signal convention.

use std::fmt;
use std::str::FromStr;

use nix::sys::reboot::RebootMode;
use nix::sys::signal::Signal;

/// What to do with the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PowerAction {
    PowerOff,
    Reboot,
    Halt,
}

impl PowerAction {
    /// The signal that asks PID 1 for this action (busybox init's convention).
    pub fn signal(self) -> Signal {
        match self {
            PowerAction::PowerOff => Signal::SIGUSR2,
            PowerAction::Reboot => Signal::SIGTERM,
            PowerAction::Halt => Signal::SIGUSR1,
        }
    }

    /// The action a signal to PID 1 asks for (`SIGINT` is the kernel's ctrl-alt-del).
    pub fn from_signal(sig: Signal) -> Option<Self> {
        match sig {
            Signal::SIGUSR2 => Some(PowerAction::PowerOff),
            Signal::SIGTERM | Signal::SIGINT => Some(PowerAction::Reboot),
            Signal::SIGUSR1 => Some(PowerAction::Halt),
            _ => None,
        }
    }

    /// The `reboot(2)` command.
    pub fn reboot_mode(self) -> RebootMode {
        match self {
            PowerAction::PowerOff => RebootMode::RB_POWER_OFF,
            PowerAction::Reboot => RebootMode::RB_AUTOBOOT,
            PowerAction::Halt => RebootMode::RB_HALT_SYSTEM,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PowerAction::PowerOff => "poweroff",
            PowerAction::Reboot => "reboot",
            PowerAction::Halt => "halt",
        }
    }
}

impl fmt::Display for PowerAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PowerAction {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "poweroff" | "off" | "shutdown" => Ok(PowerAction::PowerOff),
            "reboot" | "restart" => Ok(PowerAction::Reboot),
            "halt" => Ok(PowerAction::Halt),
            _ => Err(crate::Error::Parse {
                what: "power action",
                value: s.to_string(),
                reason: "expected poweroff, reboot or halt".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_convention() {
        for a in [PowerAction::PowerOff, PowerAction::Reboot, PowerAction::Halt] {
            assert_eq!(PowerAction::from_signal(a.signal()), Some(a));
            assert_eq!(a.as_str().parse::<PowerAction>().unwrap(), a);
        }
        assert_eq!(PowerAction::PowerOff.signal(), Signal::SIGUSR2);
        assert_eq!(PowerAction::Reboot.signal(), Signal::SIGTERM);
        assert_eq!(PowerAction::Halt.signal(), Signal::SIGUSR1);
        assert_eq!(PowerAction::from_signal(Signal::SIGINT), Some(PowerAction::Reboot));
        assert_eq!(PowerAction::from_signal(Signal::SIGHUP), None);
        assert_eq!(PowerAction::PowerOff.reboot_mode(), RebootMode::RB_POWER_OFF);
        assert_eq!(PowerAction::Reboot.reboot_mode(), RebootMode::RB_AUTOBOOT);
        assert_eq!(PowerAction::Halt.reboot_mode(), RebootMode::RB_HALT_SYSTEM);
        assert_eq!("power_off".parse::<PowerAction>().unwrap(), PowerAction::PowerOff);
        assert!("sleep".parse::<PowerAction>().is_err());
    }

    #[test]
    fn request_power_refuses_outside_ipa_init() {
        // The test process is not started by ipa-init (no IPA_INIT=1): nothing is signalled.
        if !crate::under_ipa_init() {
            assert!(matches!(
                crate::request_power(PowerAction::Reboot),
                Err(crate::Error::NotUnderIpaInit)
            ));
        }
    }
}
