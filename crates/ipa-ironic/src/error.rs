//! This crate's errors, and their one mapping to IPA's error catalogue.

use ipa_core::AgentError;

/// Everything that can go wrong talking to Ironic or preparing to be driven by it.
#[derive(Debug, thiserror::Error)]
pub enum IronicError {
    /// A URL we were given cannot be used.
    #[error("invalid URL {url:?}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// TCP connect, TLS handshake or HTTP exchange failed.
    #[error("{method} {url}: connection failed: {reason}")]
    Connection {
        /// HTTP method.
        method: String,
        /// Target.
        url: String,
        /// What happened.
        reason: String,
    },
    /// No answer within `http_request_timeout`.
    #[error("{method} {url}: no answer within {secs} s")]
    Timeout {
        /// HTTP method.
        method: String,
        /// Target.
        url: String,
        /// Seconds waited.
        secs: u64,
    },
    /// Ironic answered with an error status; `message` is the readable fault string.
    #[error("{method} {url}: Ironic answered HTTP {status}: {message}")]
    Api {
        /// HTTP method.
        method: String,
        /// Target.
        url: String,
        /// HTTP status.
        status: u16,
        /// Fault string from Ironic's error envelope (or the raw body).
        message: String,
    },
    /// A 2xx answer whose body is not what the protocol promises.
    #[error("{url}: unexpected answer: {reason}")]
    BadReply {
        /// Target.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// Outbound TLS settings are unusable (CA bundle, client cert).
    #[error("outbound TLS setup: {0}")]
    TlsSetup(String),
    /// Lookup did not succeed within `lookup_timeout`.
    #[error("Could not look up node info. Check logs for details. (last error: {last})")]
    LookupTimeout {
        /// The last attempt's error.
        last: String,
    },
    /// No address to advertise could be found.
    #[error("cannot find an address to advertise to Ironic: {0}")]
    AdvertiseAddress(String),
    /// Generating the auto-TLS certificate failed.
    #[error("auto-TLS certificate generation failed: {0}")]
    AutoTls(String),
    /// Reading or writing a local file failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What we were doing.
        what: &'static str,
        /// Which file.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Inspection data could not be collected or delivered.
    #[error("inspection failed: {0}")]
    Inspection(String),
    /// An agent-level error (hardware managers, lookup processing).
    #[error(transparent)]
    Agent(#[from] AgentError),
}

impl IronicError {
    /// True for a 409 answer (node locked by the conductor).
    pub fn is_conflict(&self) -> bool {
        matches!(self, IronicError::Api { status: 409, .. })
    }
    /// True for transport-level failures or 5xx answers (worth retrying elsewhere/later).
    pub fn is_transient(&self) -> bool {
        match self {
            IronicError::Connection { .. } | IronicError::Timeout { .. } => true,
            IronicError::Api { status, .. } => *status >= 500 || *status == 409,
            _ => false,
        }
    }
}

impl From<IronicError> for AgentError {
    fn from(e: IronicError) -> Self {
        match e {
            IronicError::Agent(a) => a,
            IronicError::LookupTimeout { .. } => AgentError::LookupNode { details: e.to_string() },
            IronicError::AdvertiseAddress(_) => {
                AgentError::LookupAgentIp { details: e.to_string() }
            }
            other => AgentError::execution(other.to_string()),
        }
    }
}
