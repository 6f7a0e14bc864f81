//! Errors of the outbound stack. Every URL stored in an error has been through
//! [`crate::redact`]: an error can be logged or returned to Ironic as it is.

use std::path::PathBuf;

/// What can go wrong making an outbound request.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL cannot be used.
    #[error("invalid URL {url}: {reason}")]
    Url {
        /// The URL, redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// TCP connect, proxy, TLS handshake or the HTTP exchange failed.
    #[error("{method} {url}: {reason}")]
    Connect {
        /// HTTP method.
        method: String,
        /// The URL, redacted.
        url: String,
        /// What happened.
        reason: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// No answer (connect or response headers) within the timeout.
    #[error("{method} {url}: no answer within {secs} s")]
    Timeout {
        /// HTTP method.
        method: String,
        /// The URL, redacted.
        url: String,
        /// Seconds waited.
        secs: u64,
    },
    /// A redirect chain longer than the hop limit (or a loop).
    #[error("{url}: more than {max} redirects")]
    TooManyRedirects {
        /// The first URL, redacted.
        url: String,
        /// The hop limit.
        max: u32,
    },
    /// Reading a response body failed or it was larger than allowed.
    #[error("{url}: reading the answer: {reason}")]
    Body {
        /// The URL, redacted.
        url: String,
        /// What happened.
        reason: String,
    },
    /// The TLS settings are unusable (CA bundle, client certificate).
    #[error("outbound TLS setup: {0}")]
    Tls(String),
    /// A TLS file cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

impl HttpError {
    /// Whether trying again may help (connection failures and timeouts; not bad URLs, TLS setup
    /// or redirect loops).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Connect { .. } | Self::Timeout { .. } | Self::Body { .. })
    }
}
