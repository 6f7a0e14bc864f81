//! Structured agent events: command lifecycle and progress, agent presence.
//!
//! The dispatcher publishes command events on an [`EventBus`]; long-running commands publish
//! [`Progress`] through their [`CommandContext`](crate::extension::CommandContext). Transports may
//! forward events (AMQP topic exchange, ZeroMQ PUB), the Ironic lifecycle turns "async command
//! finished" into a forced heartbeat, the metrics collector ([`crate::metrics`]) counts
//! completions and per-device erase progress, and logs show progress. Nobody polls.

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::command::{CommandMode, CommandStatus};

/// Progress of a long operation (image write, erase, firmware flash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Progress {
    /// Free-form phase name: `"download"`, `"write"`, `"verify"`, `"erase"`, ...
    pub phase: String,
    /// Units done in this phase (bytes for I/O phases).
    pub done: u64,
    /// Total units if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// Current rate in units per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Estimated seconds to the end of the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_secs: Option<f64>,
    /// Optional human-readable note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The device this record is about (`/dev/sda` for an erase pass, the install device of
    /// an image write), when there is one. Per-device erase metrics are keyed by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

/// Everything the agent announces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event")]
pub enum AgentEvent {
    /// A command was recorded and started.
    #[serde(rename = "command.started")]
    CommandStarted {
        /// Result id.
        id: String,
        /// Full `<ext>.<cmd>` name.
        name: String,
        /// Sync or async.
        mode: CommandMode,
    },
    /// A running command reported progress.
    #[serde(rename = "command.progress")]
    CommandProgress {
        /// Result id.
        id: String,
        /// Full name.
        name: String,
        /// The progress record.
        progress: Progress,
    },
    /// A command reached a final status.
    #[serde(rename = "command.finished")]
    CommandFinished {
        /// Result id.
        id: String,
        /// Full name.
        name: String,
        /// Sync or async (only async completions force a heartbeat).
        mode: CommandMode,
        /// Final status.
        status: CommandStatus,
        /// Seconds from the start of the command (after the busy check) to its final status,
        /// measured by the dispatcher.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_secs: Option<f64>,
    },
    /// The agent came up on a transport or changed identity.
    #[serde(rename = "agent.online")]
    AgentOnline {
        /// Agent identity (node UUID after lookup, else configured/MAC-derived).
        agent_id: String,
    },
    /// The agent is shutting down or stopped serving.
    #[serde(rename = "agent.offline")]
    AgentOffline {
        /// Agent identity.
        agent_id: String,
        /// Why.
        reason: String,
    },
    /// Liveness beacon for broker transports.
    #[serde(rename = "agent.heartbeat")]
    AgentHeartbeat {
        /// Agent identity.
        agent_id: String,
    },
}

impl AgentEvent {
    /// The dotted event name used as a routing key / topic.
    pub fn topic(&self) -> &'static str {
        match self {
            AgentEvent::CommandStarted { .. } => "command.started",
            AgentEvent::CommandProgress { .. } => "command.progress",
            AgentEvent::CommandFinished { .. } => "command.finished",
            AgentEvent::AgentOnline { .. } => "agent.online",
            AgentEvent::AgentOffline { .. } => "agent.offline",
            AgentEvent::AgentHeartbeat { .. } => "agent.heartbeat",
        }
    }
}

/// A broadcast bus. Slow subscribers lose old events (lagged), never block the agent.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<AgentEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(1024)
    }
}

impl EventBus {
    /// A bus that buffers `capacity` events per subscriber.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity);
        Self { tx }
    }
    /// Publish; having no subscriber is fine.
    pub fn publish(&self, event: AgentEvent) {
        let _ = self.tx.send(event);
    }
    /// A new subscription that sees events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<AgentEvent> {
        self.tx.subscribe()
    }
}
