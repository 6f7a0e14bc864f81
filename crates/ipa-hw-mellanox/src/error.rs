//! Errors of the NVIDIA NIC manager, mapped to IPA's error classes in one place.

use ipa_core::AgentError;
use ipa_core::hardware::StepKind;

/// What can go wrong in the firmware steps.
#[derive(Debug, thiserror::Error)]
pub enum MellanoxError {
    /// A step argument is missing or malformed.
    #[error("{0}")]
    InvalidArgs(String),
    /// A firmware image could not be fetched.
    #[error("download of {url} failed: {reason}")]
    Download {
        /// Image URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The downloaded image does not match its checksum.
    #[error("checksum mismatch for {url}: expected {expected}, got {actual}")]
    Checksum {
        /// Image URL.
        url: String,
        /// Where it was stored.
        path: String,
        /// Declared checksum.
        expected: String,
        /// Computed checksum.
        actual: String,
    },
    /// The image is not the one it claims to be, or not for the NIC it is meant for.
    #[error("refusing firmware image {url}: {reason}")]
    WrongImage {
        /// Image URL.
        url: String,
        /// What did not match.
        reason: String,
    },
    /// A firmware tool failed.
    #[error("{command} failed with exit code {status}: {stderr}")]
    Tool {
        /// Command line.
        command: String,
        /// Exit status.
        status: i32,
        /// Its stderr (or stdout when stderr is empty).
        stderr: String,
    },
    /// A firmware tool could not be run at all.
    #[error(transparent)]
    Exec(#[from] ipa_core::os::ExecError),
    /// No NVIDIA NIC on this machine matches what the step needs.
    #[error("{0}")]
    NoDevice(String),
    /// A requested mstconfig parameter does not exist on the device.
    #[error("unknown NVIDIA NIC setting {name} on {pci}")]
    UnknownSetting {
        /// Parameter.
        name: String,
        /// Device.
        pci: String,
    },
    /// Refused in sandbox mode: firmware writes never leave the sandbox.
    #[error("sandbox mode: refusing to {action} on {pci}")]
    Sandbox {
        /// What would have been done.
        action: String,
        /// Device.
        pci: String,
    },
    /// Local file I/O (download directory).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

impl MellanoxError {
    /// The IPA error a failed step reports: bad arguments are `InvalidCommandParamsError`, a
    /// download failure `ImageDownloadError`, a checksum mismatch `ImageChecksumError`; every
    /// other failure is the step kind's error (`CleaningError`, `DeploymentError`,
    /// `ServicingError`) with this error's text as details.
    pub fn into_agent_error(self, kind: StepKind) -> AgentError {
        match self {
            MellanoxError::InvalidArgs(d) => AgentError::invalid_params(d),
            MellanoxError::Download { url, reason } => {
                AgentError::ImageDownload { image_id: url, msg: reason }
            }
            MellanoxError::Checksum { url, path, expected, actual } => {
                AgentError::ImageChecksum { image_id: url, location: path, expected, actual }
            }
            other => {
                let details = other.to_string();
                match kind {
                    StepKind::Clean => AgentError::Cleaning { details },
                    StepKind::Deploy => AgentError::Deployment { details },
                    StepKind::Service => AgentError::Servicing { details },
                }
            }
        }
    }
}
