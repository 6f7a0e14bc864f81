//! The control-plane sequence before and while the API is served (spec `ipa-agent.md` §4.2):
//!
//! ```text
//! inspection (inspection_callback_url) ─► lookup (api_url) ─► process_lookup_data
//!   ─► rescued marker / fatal token → do not serve
//!   ─► TLS: static files, or auto-TLS when Ironic ≥ 1.68 ─► advertise address ─► callback URL
//! (runtime starts the transports with that TLS)
//!   ─► heartbeater on its own thread until stop / rescue / lockdown
//! ```

use std::sync::Arc;
use std::time::Duration;

use ipa_core::hardware::HardwareManagers;
use ipa_core::lookup::{TokenOutcome, process_lookup_data};
use ipa_core::services::{AgentServices, ServeState};
use ipa_core::transport::ServerTls;
use tokio_util::sync::CancellationToken;

use crate::advertise::{advertise_host, callback_url};
use crate::autotls;
use crate::client::{ApiVersion, ClientOptions, IronicClient};
use crate::error::IronicError;
use crate::heartbeat::{Heartbeater, IronicSink};
use crate::inspection;
use crate::rescue::already_rescued;

/// Where auto-TLS files are written (under the root prefix).
pub const AUTO_TLS_DIR: &str = "/run/ironic-python-agent";

/// The prepared lifecycle.
#[derive(Debug)]
pub struct Lifecycle {
    services: Arc<AgentServices>,
    client: Option<Arc<IronicClient>>,
    node_uuid: Option<String>,
    heartbeat_timeout: f64,
    callback_url: Option<String>,
    tls: Option<ServerTls>,
    verify_ca: Option<String>,
    serve: bool,
    stop: CancellationToken,
}

impl Lifecycle {
    /// Whether the configuration asks for any Ironic interaction.
    pub fn applies(services: &AgentServices) -> bool {
        let c = &services.config;
        !c.ironic.standalone
            && (!c.ironic.api_urls().is_empty() || c.inspection.inspection_callback_url.is_some())
    }

    /// Inspect, look up, decide TLS and the callback URL. `static_tls` is the operator's
    /// `tls_cert_file`/`tls_key_file` (it disables auto-TLS). Errors are fatal to the process
    /// (IPA's `LookupNodeError` / `LookupAgentIPError`).
    pub async fn prepare(
        services: &Arc<AgentServices>,
        hw: &Arc<HardwareManagers>,
        static_tls: Option<ServerTls>,
    ) -> Result<Self, IronicError> {
        let config = services.config.clone();
        let mut me = Self {
            services: services.clone(),
            client: None,
            node_uuid: None,
            heartbeat_timeout: 300.0,
            callback_url: None,
            tls: static_tls.clone(),
            verify_ca: None,
            serve: true,
            stop: CancellationToken::new(),
        };
        let opts = ClientOptions::from_config(&config);
        let client = Arc::new(IronicClient::new(opts.clone())?);

        let mut node_uuid = None;
        if config.inspection.inspection_callback_url.is_some() {
            let logs = if collector_selected(&config.inspection.inspection_collectors, "logs") {
                let ext = ipa_core::extensions::LogExtension::new(services.clone(), hw.clone());
                match ext.archive_base64().await {
                    Ok(b64) => Some(b64),
                    Err(e) => {
                        tracing::warn!(error = %e, "logs collector failed; inspecting without logs");
                        None
                    }
                }
            } else {
                None
            };
            match inspection::inspect(&config, hw, &client, logs).await {
                Ok(u) => node_uuid = u,
                Err(e) => tracing::error!(error = %e, "inspection failed (continuing)"),
            }
        }

        if !opts.urls.is_empty() {
            let nics =
                hw.dispatch("list_network_interfaces", |m, p| m.list_network_interfaces(p)).await?;
            let macs: Vec<String> = nics
                .iter()
                .map(|n| n.mac_address.to_ascii_lowercase())
                .filter(|m| !m.is_empty())
                .collect();
            let content = client
                .lookup(
                    &macs,
                    node_uuid.as_deref(),
                    Duration::from_secs(config.ironic.lookup_timeout),
                    Duration::from_secs(config.ironic.lookup_interval.max(1)),
                )
                .await?;
            let outcome = process_lookup_data(services, &content)?;
            tracing::info!(
                node = %outcome.node_uuid,
                heartbeat_timeout = outcome.heartbeat_timeout,
                token = ?outcome.token,
                "lookup succeeded"
            );
            if outcome.token == TokenOutcome::Fatal {
                me.serve = false;
            }
            me.heartbeat_timeout = outcome.heartbeat_timeout;
            me.node_uuid = Some(outcome.node_uuid);
            // Ironic's TLS overrides apply to the static server TLS too (before serving).
            let settings = services.ironic_settings();
            if let Some(t) = me.tls.as_mut() {
                if let Some(v) = settings.tls_min_version {
                    t.min_version = v;
                }
                if settings.tls_cipher_suites.is_some() {
                    t.cipher_suites = settings.tls_cipher_suites;
                }
            }
            me.client = Some(client);
        }

        if already_rescued(services) {
            tracing::warn!("this boot already finalised a rescue: the API is not served");
            me.serve = false;
        }
        if services.control.state() != ServeState::Serving {
            me.serve = false;
        }
        if !me.serve {
            return Ok(me);
        }

        let Some(client) = me.client.clone() else { return Ok(me) };
        let mut protocol = config.api.advertise_protocol.clone();
        if static_tls.is_none() && config.api.enable_auto_tls && !config.api.listen_tls {
            let version = client.api_version().await;
            if version >= ApiVersion::HEARTBEAT {
                let host = advertise_host(&config).await?;
                let cn = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_string())
                    .unwrap_or_else(|_| "ipa-agent".into());
                let cert = autotls::generate(
                    &host,
                    &config.api.tls_certificate_curve,
                    config.api.auto_tls_allowed_clock_skew,
                    &cn,
                    Some(services.attest.public_key()),
                )?;
                let dir = services.mode.os_path(AUTO_TLS_DIR);
                if let Err(e) = autotls::write_files(&dir, &cert) {
                    tracing::warn!(error = %e, "cannot store the auto-TLS files (continuing)");
                }
                let settings = services.ironic_settings();
                me.tls = Some(ServerTls {
                    cert_pem: cert.cert_pem.clone(),
                    key_pem: cert.key_pem.clone(),
                    min_version: settings
                        .tls_min_version
                        .unwrap_or_else(|| config.api.tls_min_version.clone()),
                    cipher_suites: settings
                        .tls_cipher_suites
                        .or_else(|| config.api.tls_cipher_suites.clone()),
                });
                me.verify_ca = Some(cert.cert_pem);
                protocol = "https".into();
                tracing::info!(advertise = %host, "auto-TLS certificate generated");
                me.callback_url = Some(callback_url(&protocol, &host, config.api.advertise_port));
                return Ok(me);
            }
            tracing::info!(%version, "Ironic API below 1.68: auto-TLS not used");
        }
        let host = advertise_host(&config).await?;
        me.callback_url = Some(callback_url(&protocol, &host, config.api.advertise_port));
        Ok(me)
    }

    /// TLS the transports must serve with (auto-TLS, or the static files passed in).
    pub fn server_tls(&self) -> Option<ServerTls> {
        self.tls.clone()
    }

    /// False when the API must not be served (rescued, or a token we can never get).
    pub fn should_serve(&self) -> bool {
        self.serve
    }

    /// The fixed callback URL.
    pub fn callback_url(&self) -> Option<&str> {
        self.callback_url.as_deref()
    }

    /// The node UUID from lookup.
    pub fn node_uuid(&self) -> Option<&str> {
        self.node_uuid.as_deref()
    }

    /// Start heartbeating (after the transports are up). No-op without lookup.
    pub fn start_heartbeating(&self) -> Option<std::thread::JoinHandle<()>> {
        let (Some(client), Some(uuid), Some(url)) =
            (self.client.clone(), self.node_uuid.clone(), self.callback_url.clone())
        else {
            return None;
        };
        tracing::info!(callback_url = %url, node = %uuid, "heartbeating to Ironic");
        let sink = Arc::new(IronicSink {
            client,
            node_uuid: uuid,
            callback_url: url,
            token: self.services.token.clone(),
            verify_ca: self.verify_ca.clone(),
        });
        let hb = Heartbeater::new(
            self.heartbeat_timeout,
            self.services.events.subscribe(),
            self.services.control.watch(),
            self.stop.clone(),
        )
        .with_metrics(self.services.metrics.clone());
        match hb.spawn_dedicated(sink) {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the heartbeat thread");
                None
            }
        }
    }

    /// Stop heartbeating.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for Lifecycle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Wait for SIGTERM or SIGINT (the agent idles here when it must not serve).
pub async fn idle_until_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Whether `name` is in the comma-separated `inspection_collectors` list.
fn collector_selected(list: &str, name: &str) -> bool {
    list.split(',').map(str::trim).any(|c| c == name)
}

#[cfg(test)]
mod collector_tests {
    use super::collector_selected;

    #[test]
    fn the_logs_collector_is_selected_by_ipa_default_list_only_when_named() {
        assert!(collector_selected("default,logs", "logs"));
        assert!(collector_selected(" default , logs ", "logs"));
        assert!(!collector_selected("default", "logs"));
        assert!(!collector_selected("default,logs-extra", "logs"));
    }
}
