//! Logging setup. Secrets never reach a log line by construction (tokens are masked at the
//! transport edge, `Debug` of secret holders is redacted); this only picks level and format.

use tracing_subscriber::EnvFilter;

/// Install the global subscriber (idempotent).
pub fn init(debug: bool, format: &str) {
    let default = if debug { "debug" } else { "info" };
    let filter = EnvFilter::try_from_env("IPA_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if format == "json" { builder.json().try_init() } else { builder.try_init() };
}
