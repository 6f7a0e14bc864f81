//! The crate's error type and its one mapping to IPA's catalogue ([`AgentError`]).

use ipa_core::error::AgentError;

/// Everything the image pipeline can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// `image_info` or a command parameter is invalid (400 at validation time).
    #[error("{details}")]
    InvalidParams {
        /// IPA's message.
        details: String,
    },
    /// A download-level failure found here (a document too large, a bad checksum file).
    #[error("Download of image {image_id} failed: {msg}")]
    Download {
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
    #[error("{details}")]
    NoChecksum {
        /// IPA's message.
        details: String,
    },
    /// Format inspection refused the image.
    #[error("{details}")]
    InvalidImage {
        /// IPA's message.
        details: String,
    },
    /// Writing to the target failed for a reason that is not an I/O error (the image is
    /// larger than the target, read-back found different bytes).
    #[error("writing to {device} failed: {msg}")]
    Write {
        /// Target device.
        device: String,
        /// What happened.
        msg: String,
    },
    /// Disk I/O on the target (or a file standing for it) failed.
    #[error("writing to {device} failed: {op}: {source}")]
    Io {
        /// Target device.
        device: String,
        /// What was being done (`"cannot open /dev/sda"`, `"write at 4096"`, `"fsync"`).
        op: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A download failed; its kind decides IPA's error (`ImageDownloadError`, the fatal 4xx
    /// variant, or the max-duration timeout).
    #[error("Download of image {image_id} failed: {source}")]
    Fetch {
        /// Image id.
        image_id: String,
        /// What the download stack reported (URLs already redacted).
        #[source]
        source: ipa_http::download::DownloadError,
    },
    /// An external tool could not be run.
    #[error("{command} could not be run: {source}")]
    Exec {
        /// The command line.
        command: String,
        /// Why.
        #[source]
        source: ipa_core::os::ExecError,
    },
    /// An external tool failed.
    #[error("{command} failed with exit code {status}: {stderr}")]
    Tool {
        /// The command line.
        command: String,
        /// Exit status.
        status: i32,
        /// Its standard error.
        stderr: String,
    },
    /// A pipeline stage or a blocking disk task died.
    #[error("{stage} failed: {source}")]
    Task {
        /// Which stage.
        stage: &'static str,
        /// The join error (a panic or a cancellation).
        #[source]
        source: tokio::task::JoinError,
    },
    /// The partition table of a device could not be read.
    #[error("cannot read the partition table of {device}: {source}")]
    Table {
        /// The device.
        device: String,
        /// The read error.
        #[source]
        source: std::io::Error,
    },
    /// The writer stage stopped before the stream ended (its own error is reported first).
    #[error("the writer stopped")]
    WriterStopped,
    /// No EFI system partition on the install device.
    #[error("No EFI partition could be detected on {device}")]
    NoEfiPartition {
        /// The device.
        device: String,
    },
    /// The install device could not be found.
    #[error("{details}")]
    DeviceNotFound {
        /// IPA's message.
        details: String,
    },
    /// Partitioning / config drive / post-write checks failed (`DeploymentError`).
    #[error("{details}")]
    Deployment {
        /// IPA's message.
        details: String,
    },
    /// An error already in IPA's catalogue.
    #[error("{0}")]
    Agent(AgentError),
}

impl From<ImageError> for AgentError {
    fn from(e: ImageError) -> Self {
        match e {
            ImageError::InvalidParams { details: d } => {
                AgentError::InvalidCommandParams { details: d }
            }
            ImageError::Download { image_id, msg } => AgentError::ImageDownload { image_id, msg },
            ImageError::Checksum { image_id, location, expected, actual } => {
                AgentError::ImageChecksum { image_id, location, expected, actual }
            }
            ImageError::NoChecksum { details: d } => AgentError::Rest { details: d },
            ImageError::InvalidImage { details: d } => AgentError::InvalidImage { details: d },
            ImageError::Write { device, msg } => {
                AgentError::ImageWrite { device, exit_code: 1, stdout: String::new(), stderr: msg }
            }
            ImageError::Io { device, op, source } => AgentError::ImageWrite {
                device,
                exit_code: 1,
                stdout: String::new(),
                stderr: format!("{op}: {source}"),
            },
            ImageError::Fetch { image_id, source } => {
                use ipa_http::download::DownloadError as D;
                let msg = source.to_string();
                match source {
                    D::Fatal { .. } | D::Status { .. } => {
                        AgentError::ImageDownloadFatal { image_id, msg }
                    }
                    D::Timeout { .. } => AgentError::ImageDownloadTimeout { image_id, msg },
                    D::Transient { .. } | D::Client(_) => {
                        AgentError::ImageDownload { image_id, msg }
                    }
                }
            }
            e @ (ImageError::Exec { .. }
            | ImageError::Tool { .. }
            | ImageError::Task { .. }
            | ImageError::Table { .. }
            | ImageError::WriterStopped
            | ImageError::NoEfiPartition { .. }) => AgentError::execution(e.to_string()),
            ImageError::DeviceNotFound { details: d } => AgentError::DeviceNotFound { details: d },
            ImageError::Deployment { details: d } => AgentError::Deployment { details: d },
            ImageError::Agent(a) => a,
        }
    }
}

impl From<ipa_http::download::DownloadError> for ImageError {
    fn from(source: ipa_http::download::DownloadError) -> Self {
        let image_id = source.id().unwrap_or_default().to_string();
        ImageError::Fetch { image_id, source }
    }
}

impl From<AgentError> for ImageError {
    fn from(e: AgentError) -> Self {
        ImageError::Agent(e)
    }
}

/// Result alias.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;
