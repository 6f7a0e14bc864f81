//! The crate's error type and its one mapping to IPA's catalogue ([`AgentError`]).

use ipa_core::error::AgentError;

/// Everything the image pipeline can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// `image_info` or a command parameter is invalid (400 at validation time).
    #[error("{0}")]
    InvalidParams(String),
    /// Transient download failure (5xx, connection, cut stream after all retries).
    #[error("Download of image {image_id} failed: {msg}")]
    Download {
        /// Image id.
        image_id: String,
        /// What happened.
        msg: String,
    },
    /// 4xx: not retried, no failover.
    #[error("Download of image {image_id} failed: {msg}")]
    DownloadFatal {
        /// Image id.
        image_id: String,
        /// What happened.
        msg: String,
    },
    /// `image_download_max_duration` exceeded.
    #[error("Download of image {image_id} failed: {msg}")]
    DownloadTimeout {
        /// Image id.
        image_id: String,
        /// What happened.
        msg: String,
    },
    /// The digest of the received bytes differs from the expected one.
    #[error("checksum mismatch for {image_id}: expected {expected}, got {actual}")]
    Checksum {
        /// Image id.
        image_id: String,
        /// First URL.
        location: String,
        /// Expected digest.
        expected: String,
        /// Computed digest.
        actual: String,
    },
    /// No usable checksum (`RESTError` in IPA).
    #[error("{0}")]
    NoChecksum(String),
    /// Format inspection refused the image.
    #[error("{0}")]
    InvalidImage(String),
    /// Writing to the target failed.
    #[error("writing to {device} failed: {msg}")]
    Write {
        /// Target device.
        device: String,
        /// What happened.
        msg: String,
    },
    /// The install device could not be found.
    #[error("{0}")]
    DeviceNotFound(String),
    /// Partitioning / config drive / post-write checks failed (`DeploymentError`).
    #[error("{0}")]
    Deployment(String),
    /// Anything else (`CommandExecutionError`).
    #[error("{0}")]
    Other(String),
    /// An error already in IPA's catalogue.
    #[error("{0}")]
    Agent(AgentError),
}

impl From<ImageError> for AgentError {
    fn from(e: ImageError) -> Self {
        match e {
            ImageError::InvalidParams(d) => AgentError::InvalidCommandParams { details: d },
            ImageError::Download { image_id, msg } => AgentError::ImageDownload { image_id, msg },
            ImageError::DownloadFatal { image_id, msg } => {
                AgentError::ImageDownloadFatal { image_id, msg }
            }
            ImageError::DownloadTimeout { image_id, msg } => {
                AgentError::ImageDownloadTimeout { image_id, msg }
            }
            ImageError::Checksum { image_id, location, expected, actual } => {
                AgentError::ImageChecksum { image_id, location, expected, actual }
            }
            ImageError::NoChecksum(d) => AgentError::Rest { details: d },
            ImageError::InvalidImage(d) => AgentError::InvalidImage { details: d },
            ImageError::Write { device, msg } => {
                AgentError::ImageWrite { device, exit_code: 1, stdout: String::new(), stderr: msg }
            }
            ImageError::DeviceNotFound(d) => AgentError::DeviceNotFound { details: d },
            ImageError::Deployment(d) => AgentError::Deployment { details: d },
            ImageError::Other(d) => AgentError::execution(d),
            ImageError::Agent(a) => a,
        }
    }
}

impl From<AgentError> for ImageError {
    fn from(e: AgentError) -> Self {
        ImageError::Agent(e)
    }
}

/// Result alias.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;
