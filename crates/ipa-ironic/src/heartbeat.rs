//! The heartbeater (spec `ipa-agent.md` §4.5, `ironic-contract.md` §3.4).
//!
//! * The first heartbeat is immediate.
//! * After a success the next is due after `heartbeat_timeout × U(0.3, 0.6)`.
//! * After an error, after `5 s × U(1, 2)`; after a 409 (node locked), sooner: `U(1, 2) s`.
//! * When an async command finishes (the dispatcher publishes `command.finished` with mode
//!   `Async`), a heartbeat is forced: it goes out as soon as 5 s have passed since the previous
//!   one, so Ironic learns of the completion within about 5 s.
//! * It runs on its own OS thread with its own single-threaded runtime
//!   ([`Heartbeater::spawn_dedicated`]), so a command saturating the agent's runtime can never
//!   delay it past Ironic's callback timeout.
//! * It stops when the agent stops serving (rescue, lockdown) or on shutdown.
//! * With [`Heartbeater::with_metrics`] every attempt is recorded (outcome, latency, time of
//!   the last success) in the agent's [`Metrics`]: the bus carries no heartbeat outcomes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ipa_core::command::CommandMode;
use ipa_core::events::AgentEvent;
use ipa_core::metrics::{HeartbeatResult, Metrics};
use ipa_core::services::{ServeState, TokenStore};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::{HeartbeatRequest, IronicClient};
use crate::error::IronicError;

/// Minimum spacing of a forced heartbeat after the previous one.
pub const MIN_FORCED_GAP: Duration = Duration::from_secs(5);

/// How a heartbeat attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeatOutcome {
    /// 202.
    Accepted,
    /// 409: the node is locked; retry soon.
    Conflict,
    /// Anything else (connection error, 4xx/5xx).
    Failed(String),
}

/// Something that can send one heartbeat (the Ironic client, or a test recorder).
#[async_trait]
pub trait HeartbeatSink: Send + Sync + 'static {
    /// Send one heartbeat.
    async fn beat(&self) -> BeatOutcome;
}

/// The real sink: heartbeats to Ironic.
#[derive(Debug)]
pub struct IronicSink {
    /// The client.
    pub client: Arc<IronicClient>,
    /// Node UUID.
    pub node_uuid: String,
    /// Fixed callback URL.
    pub callback_url: String,
    /// Token store (read at each beat: a token can arrive later).
    pub token: TokenStore,
    /// Auto-TLS certificate PEM.
    pub verify_ca: Option<String>,
}

#[async_trait]
impl HeartbeatSink for IronicSink {
    async fn beat(&self) -> BeatOutcome {
        let token = self.token.get();
        let req = HeartbeatRequest {
            node_uuid: &self.node_uuid,
            callback_url: &self.callback_url,
            token: token.as_deref(),
            verify_ca: self.verify_ca.as_deref(),
        };
        match self.client.heartbeat(&req).await {
            Ok(()) => {
                tracing::debug!(callback_url = %self.callback_url, "heartbeat accepted");
                BeatOutcome::Accepted
            }
            Err(e @ IronicError::Api { status: 409, .. }) => {
                tracing::warn!(error = %e, "heartbeat conflict; retrying soon");
                BeatOutcome::Conflict
            }
            Err(e) => {
                tracing::error!(error = %e, "heartbeat failed");
                BeatOutcome::Failed(e.to_string())
            }
        }
    }
}

/// The heartbeat loop.
#[derive(Debug)]
pub struct Heartbeater {
    heartbeat_timeout: f64,
    events: broadcast::Receiver<AgentEvent>,
    control: watch::Receiver<ServeState>,
    stop: CancellationToken,
    metrics: Option<Metrics>,
}

impl Heartbeater {
    /// A heartbeater for `heartbeat_timeout` seconds (from lookup). `events` is a subscription
    /// to the agent's event bus; `control` its serve state.
    pub fn new(
        heartbeat_timeout: f64,
        events: broadcast::Receiver<AgentEvent>,
        control: watch::Receiver<ServeState>,
        stop: CancellationToken,
    ) -> Self {
        Self { heartbeat_timeout, events, control, stop, metrics: None }
    }

    /// Record every attempt in `metrics` (attempts, failures by reason, latency, last success).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The interval after an outcome.
    pub fn interval_after(&self, outcome: &BeatOutcome) -> Duration {
        let f = match outcome {
            BeatOutcome::Accepted => {
                self.heartbeat_timeout.max(1.0) * rand::random_range(0.3..=0.6)
            }
            BeatOutcome::Conflict => rand::random_range(1.0..=2.0),
            BeatOutcome::Failed(_) => 5.0 * rand::random_range(1.0..=2.0),
        };
        Duration::from_secs_f64(f)
    }

    /// Run until stopped. Uses `tokio::time`, so tests drive it with a paused clock.
    pub async fn run(mut self, sink: Arc<dyn HeartbeatSink>) {
        let mut last: Option<Instant> = None;
        let mut due = Instant::now();
        let mut forced = false;
        loop {
            if *self.control.borrow() != ServeState::Serving {
                tracing::info!("agent stopped serving; heartbeats stop");
                return;
            }
            let now = Instant::now();
            let fire_forced = forced && last.is_none_or(|l| now >= l + MIN_FORCED_GAP);
            if now >= due || fire_forced {
                let outcome = sink.beat().await;
                let at = Instant::now();
                if let Some(m) = &self.metrics {
                    let result = match outcome {
                        BeatOutcome::Accepted => HeartbeatResult::Accepted,
                        BeatOutcome::Conflict => HeartbeatResult::Conflict,
                        BeatOutcome::Failed(_) => HeartbeatResult::Error,
                    };
                    m.heartbeat(result, at - now);
                }
                last = Some(at);
                if outcome == BeatOutcome::Accepted {
                    forced = false;
                }
                due = at + self.interval_after(&outcome);
                continue;
            }
            let wake = match (forced, last) {
                (true, Some(l)) => due.min(l + MIN_FORCED_GAP),
                _ => due,
            };
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => return,
                r = self.control.changed() => {
                    if r.is_err() { return; }
                }
                ev = self.events.recv() => match ev {
                    Ok(AgentEvent::CommandFinished { mode: CommandMode::Async, name, .. }) => {
                        tracing::debug!(command = %name, "async command finished; forcing a heartbeat");
                        forced = true;
                    }
                    Ok(_) => {}
                    // Missed events might include a completion: be safe.
                    Err(broadcast::error::RecvError::Lagged(_)) => forced = true,
                    Err(broadcast::error::RecvError::Closed) => {
                        self.events = broadcast::channel(1).1;
                        if self.stop.is_cancelled() { return; }
                    }
                },
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// Run on a dedicated thread with its own runtime; never starved by the agent's runtime.
    pub fn spawn_dedicated(
        self,
        sink: Arc<dyn HeartbeatSink>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new().name("ipa-heartbeat".into()).spawn(move || {
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt.block_on(self.run(sink)),
                Err(e) => tracing::error!(error = %e, "cannot start the heartbeat runtime"),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use ipa_core::command::CommandStatus;

    #[derive(Default)]
    struct Recorder {
        at: Mutex<Vec<Instant>>,
        script: Mutex<Vec<BeatOutcome>>,
    }

    #[async_trait]
    impl HeartbeatSink for Recorder {
        async fn beat(&self) -> BeatOutcome {
            self.at.lock().unwrap().push(Instant::now());
            let mut s = self.script.lock().unwrap();
            if s.is_empty() { BeatOutcome::Accepted } else { s.remove(0) }
        }
    }

    struct Rig {
        bus: broadcast::Sender<AgentEvent>,
        control: watch::Sender<ServeState>,
        stop: CancellationToken,
        rec: Arc<Recorder>,
        start: Instant,
    }

    fn rig(timeout: f64, script: Vec<BeatOutcome>) -> Rig {
        let (bus, rx) = broadcast::channel(16);
        let (control, crx) = watch::channel(ServeState::Serving);
        let stop = CancellationToken::new();
        let rec = Arc::new(Recorder { at: Mutex::default(), script: Mutex::new(script) });
        let hb = Heartbeater::new(timeout, rx, crx, stop.clone());
        let sink: Arc<dyn HeartbeatSink> = rec.clone();
        tokio::spawn(hb.run(sink));
        Rig { bus, control, stop, rec, start: Instant::now() }
    }

    impl Rig {
        fn times(&self) -> Vec<Duration> {
            self.rec.at.lock().unwrap().iter().map(|t| *t - self.start).collect()
        }
        fn finish(&self, mode: CommandMode) {
            let _ = self.bus.send(AgentEvent::CommandFinished {
                id: "1".into(),
                name: "clean.execute_clean_step".into(),
                mode,
                status: CommandStatus::Succeeded,
                duration_secs: None,
            });
        }
    }

    async fn advance(secs: f64) {
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn first_beat_is_immediate_then_every_030_to_060_of_the_timeout() {
        let r = rig(300.0, vec![]);
        advance(3000.0).await;
        let t = r.times();
        assert_eq!(t[0], Duration::ZERO);
        assert!(t.len() >= 3000 / 180 && t.len() <= 3000 / 90 + 1, "{}", t.len());
        for w in t.windows(2) {
            let gap = (w[1] - w[0]).as_secs_f64();
            assert!((90.0..=180.0).contains(&gap), "gap {gap}");
        }
        r.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn errors_back_off_5_to_10s_and_conflicts_retry_sooner() {
        let r = rig(
            300.0,
            vec![BeatOutcome::Failed("boom".into()), BeatOutcome::Conflict, BeatOutcome::Accepted],
        );
        advance(30.0).await;
        let t = r.times();
        assert_eq!(t.len(), 3, "{t:?}");
        let g1 = (t[1] - t[0]).as_secs_f64();
        let g2 = (t[2] - t[1]).as_secs_f64();
        assert!((5.0..=10.0).contains(&g1), "after error {g1}");
        assert!((1.0..=2.0).contains(&g2), "after 409 {g2}");
        r.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn async_completion_forces_a_beat_within_5s() {
        let r = rig(300.0, vec![]);
        advance(1.0).await; // first beat at 0
        r.finish(CommandMode::Async);
        advance(10.0).await;
        let t = r.times();
        assert_eq!(t.len(), 2, "{t:?}");
        assert_eq!(t[1], Duration::from_secs(5), "forced beat waits for the 5 s gap");
        // Long after the previous beat: immediate.
        advance(50.0).await;
        r.finish(CommandMode::Async);
        advance(1.0).await;
        let t = r.times();
        assert_eq!(t.len(), 3, "{t:?}");
        assert_eq!(t[2], Duration::from_secs(61));
        r.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn every_attempt_is_recorded_in_the_metrics_with_its_outcome() {
        let (_bus, rx) = broadcast::channel(4);
        let (_control, crx) = watch::channel(ServeState::Serving);
        let stop = CancellationToken::new();
        let rec = Arc::new(Recorder {
            at: Mutex::default(),
            script: Mutex::new(vec![
                BeatOutcome::Failed("boom".into()),
                BeatOutcome::Conflict,
                BeatOutcome::Accepted,
            ]),
        });
        let metrics = Metrics::new();
        let hb = Heartbeater::new(300.0, rx, crx, stop.clone()).with_metrics(metrics.clone());
        let sink: Arc<dyn HeartbeatSink> = rec.clone();
        tokio::spawn(hb.run(sink));
        advance(30.0).await;
        assert_eq!(rec.at.lock().unwrap().len(), 3);
        let text = metrics.encode().unwrap();
        for line in [
            "ipa_heartbeat_attempts_total 3",
            "ipa_heartbeat_failures_total{reason=\"error\"} 1",
            "ipa_heartbeat_failures_total{reason=\"conflict\"} 1",
            "ipa_heartbeat_latency_seconds_count 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert!(text.contains("ipa_heartbeat_seconds_since_last_success "), "{text}");
        stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn sync_completions_do_not_force() {
        let r = rig(300.0, vec![]);
        advance(20.0).await;
        r.finish(CommandMode::Sync);
        advance(20.0).await;
        assert_eq!(r.times().len(), 1);
        r.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn stops_when_the_agent_stops_serving() {
        let r = rig(10.0, vec![]);
        advance(1.0).await;
        r.control.send_replace(ServeState::Stop);
        advance(100.0).await;
        assert_eq!(r.times().len(), 1);
    }

    #[test]
    fn dedicated_thread_beats_while_the_main_runtime_is_blocked() {
        let (_bus, rx) = broadcast::channel(4);
        let (_control, crx) = watch::channel(ServeState::Serving);
        let stop = CancellationToken::new();
        let rec = Arc::new(Recorder::default());
        let hb = Heartbeater::new(300.0, rx, crx, stop.clone());
        let sink: Arc<dyn HeartbeatSink> = rec.clone();
        // A runtime whose only worker is blocked: a task-based heartbeater would never run.
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let handle = hb.spawn_dedicated(sink).unwrap();
        rt.block_on(async {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while rec.at.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
                std::thread::yield_now(); // busy: never yields to the runtime
            }
        });
        assert_eq!(rec.at.lock().unwrap().len(), 1);
        stop.cancel();
        handle.join().unwrap();
    }
}
