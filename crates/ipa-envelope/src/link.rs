//! Link-side plumbing shared by the broker transports (AMQP, ZeroMQ): the [`LinkState`] watch a
//! config clone carries, the [`LinkReporter`] that publishes on it and keeps the link metrics,
//! the "ready exactly once" report, the heartbeat ticker and the event subscription read.
//! Everything protocol-specific stays in the transports.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ipa_core::events::AgentEvent;
use ipa_core::metrics::Metrics;
use ipa_core::transport::{ReadyBoard, ReadyInfo};
use tokio::sync::{broadcast, watch};

use crate::LinkState;

/// The [`LinkState`] channel of one transport config, created on first use (starting at
/// [`LinkState::Connecting`]) and shared by every clone of the `Arc` that holds it, so a test
/// or operator can watch a transport it configured before the agent started it.
#[derive(Debug, Default)]
pub struct LinkStateCell(OnceLock<watch::Sender<LinkState>>);

impl LinkStateCell {
    /// The sender the transport publishes on.
    pub fn sender(&self) -> &watch::Sender<LinkState> {
        self.0.get_or_init(|| watch::channel(LinkState::Connecting).0)
    }

    /// A receiver of the current and future states.
    pub fn subscribe(&self) -> watch::Receiver<LinkState> {
        self.sender().subscribe()
    }
}

/// The one writer of a transport's [`LinkState`]: every change goes to the watch channel and
/// to the agent's metrics (`ipa_link_up{transport}`, and `ipa_link_reconnects_total` each time
/// the link comes up again after its first connection).
#[derive(Debug)]
pub struct LinkReporter {
    tx: watch::Sender<LinkState>,
    metrics: Metrics,
    transport: &'static str,
    ups: AtomicU64,
}

impl LinkReporter {
    /// Publish `transport`'s states on `tx` and record them in `metrics`.
    pub fn new(tx: watch::Sender<LinkState>, metrics: Metrics, transport: &'static str) -> Self {
        metrics.link_state(transport, matches!(*tx.borrow(), LinkState::Up { .. }));
        Self { tx, metrics, transport, ups: AtomicU64::new(0) }
    }

    /// The link is now in `state`.
    pub fn set(&self, state: LinkState) {
        let up = matches!(state, LinkState::Up { .. });
        if up && !self.is_up() && self.ups.fetch_add(1, Ordering::Relaxed) > 0 {
            self.metrics.link_reconnected(self.transport);
        }
        self.metrics.link_state(self.transport, up);
        self.tx.send_replace(state);
    }

    /// Whether the link is up.
    pub fn is_up(&self) -> bool {
        matches!(*self.tx.borrow(), LinkState::Up { .. })
    }
}

/// Reports a transport's readiness to the [`ReadyBoard`] exactly once: the first call of
/// [`ReadyOnce::report`] wins (first connect, or "(connecting)" after the ready timeout), later
/// ones are ignored. Clones share the flag.
#[derive(Debug, Clone)]
pub struct ReadyOnce {
    done: Arc<AtomicBool>,
    board: ReadyBoard,
    transport: &'static str,
}

impl ReadyOnce {
    /// Report for `transport` on `board`.
    pub fn new(board: ReadyBoard, transport: &'static str) -> Self {
        Self { done: Arc::default(), board, transport }
    }

    /// Report `endpoint` unless a report was already made.
    pub fn report(&self, endpoint: String) {
        if !self.done.swap(true, Ordering::SeqCst) {
            self.board.report(ReadyInfo { transport: self.transport.into(), endpoint });
        }
    }

    /// Whether the report was made.
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }
}

/// The `agent.heartbeat` ticker: every `ms` (at least 100 ms), delaying (not bursting) missed
/// ticks. The first tick completes at once.
pub fn heartbeat_interval(ms: u64) -> tokio::time::Interval {
    let mut heartbeat = tokio::time::interval(Duration::from_millis(ms.max(100)));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat
}

/// The next agent event to forward, or `None` when there is none to send this time: a lagging
/// subscriber is logged (`transport` names it) and skips what it lost; a closed channel yields
/// `None`. Cancel-safe like [`broadcast::Receiver::recv`], so it can sit in a `select!`.
pub async fn next_event(
    events: &mut broadcast::Receiver<AgentEvent>,
    transport: &str,
) -> Option<AgentEvent> {
    match events.recv().await {
        Ok(ev) => Some(ev),
        Err(broadcast::error::RecvError::Lagged(n)) => {
            tracing::warn!(lost = n, "{transport}: event subscriber lagged");
            None
        }
        Err(broadcast::error::RecvError::Closed) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_state_cell_is_shared_and_starts_connecting() {
        let cell = Arc::new(LinkStateCell::default());
        let rx = cell.clone().subscribe();
        assert_eq!(*rx.borrow(), LinkState::Connecting);
        cell.sender().send_replace(LinkState::Up { endpoint: "e".into() });
        assert_eq!(*rx.borrow(), LinkState::Up { endpoint: "e".into() });
        assert_eq!(*cell.subscribe().borrow(), LinkState::Up { endpoint: "e".into() });
    }

    #[test]
    fn the_reporter_publishes_states_and_counts_reconnects_after_the_first_connection() {
        let cell = LinkStateCell::default();
        let rx = cell.subscribe();
        let metrics = Metrics::new();
        let link = LinkReporter::new(cell.sender().clone(), metrics.clone(), "amqp");
        let up = || LinkState::Up { endpoint: "amqp://broker/q".into() };
        let line = |text: &str, series: &str| {
            text.lines().find(|l| l.starts_with(series)).map(str::to_string).unwrap_or_default()
        };
        let text = metrics.encode().unwrap();
        assert_eq!(line(&text, "ipa_link_up{"), "ipa_link_up{transport=\"amqp\"} 0", "{text}");
        link.set(up());
        link.set(up()); // still up: not a reconnect
        assert_eq!(*rx.borrow(), up());
        let text = metrics.encode().unwrap();
        assert_eq!(line(&text, "ipa_link_up{"), "ipa_link_up{transport=\"amqp\"} 1");
        assert_eq!(line(&text, "ipa_link_reconnects_total"), "", "first connection: {text}");
        link.set(LinkState::Down { reason: "broker restarted".into() });
        link.set(LinkState::Connecting);
        assert_eq!(
            line(&metrics.encode().unwrap(), "ipa_link_up{"),
            "ipa_link_up{transport=\"amqp\"} 0"
        );
        link.set(up());
        let text = metrics.encode().unwrap();
        assert_eq!(
            line(&text, "ipa_link_reconnects_total"),
            "ipa_link_reconnects_total{transport=\"amqp\"} 1",
            "{text}"
        );
        assert!(link.is_up());
    }

    #[test]
    fn ready_is_reported_once() {
        let board = ReadyBoard::default();
        let ready = ReadyOnce::new(board.clone(), "amqp");
        assert!(!ready.is_done());
        ready.clone().report("first".into());
        ready.report("second (connecting)".into());
        assert!(ready.is_done());
        let all = board.all();
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].transport.as_str(), all[0].endpoint.as_str()), ("amqp", "first"));
    }

    #[tokio::test]
    async fn next_event_skips_lag_and_ends_on_close() {
        let (tx, mut rx) = broadcast::channel(1);
        let ev = |id: &str| AgentEvent::AgentHeartbeat { agent_id: id.into() };
        tx.send(ev("a")).unwrap();
        tx.send(ev("b")).unwrap();
        assert!(next_event(&mut rx, "t").await.is_none(), "lagged: one lost");
        assert!(matches!(next_event(&mut rx, "t").await,
            Some(AgentEvent::AgentHeartbeat { agent_id }) if agent_id == "b"));
        drop(tx);
        assert!(next_event(&mut rx, "t").await.is_none());
    }
}
