//! Logging setup. Secrets never reach a log line by construction (tokens are masked at the
//! transport edge, `Debug` of secret holders is redacted); this only picks level and format.

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The filter: `IPA_LOG` (`LEVEL` or `target=LEVEL,...`, e.g. `info,ipa_image=debug`) or the
/// default level. `Targets` rather than `EnvFilter`: no regex engine in the ramdisk's agent.
pub fn filter(debug: bool, env: Option<&str>) -> Targets {
    let default = if debug { LevelFilter::DEBUG } else { LevelFilter::INFO };
    env.and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(default))
}

/// Install the global subscriber (idempotent).
pub fn init(debug: bool, format: &str) {
    let filter = filter(debug, std::env::var("IPA_LOG").ok().as_deref());
    let registry = tracing_subscriber::registry().with(filter);
    // Colour only on a terminal: in the ramdisk stderr is a pipe that ipa-init copies to the
    // serial console and to /run/ipa-agent.log (which the log bundle carries to Ironic).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let _ = if format == "json" {
        registry.with(fmt.json()).try_init()
    } else {
        registry.with(fmt).try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn ipa_log_sets_levels_per_target_and_garbage_falls_back_to_the_default() {
        let f = filter(false, Some("warn,ipa_image=debug"));
        assert!(f.would_enable("ipa_image::pipeline", &Level::DEBUG));
        assert!(!f.would_enable("ipa_core", &Level::INFO));
        let d = filter(true, None);
        assert!(d.would_enable("anything", &Level::DEBUG));
        let bad = filter(false, Some("=?=nonsense=="));
        assert!(bad.would_enable("x", &Level::INFO) && !bad.would_enable("x", &Level::DEBUG));
    }
}
