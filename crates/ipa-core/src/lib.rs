//! # ipa-core
//!
//! The transport- and hardware-neutral heart of the deploy agent, a drop-in replacement for
//! OpenStack's ironic-python-agent (IPA). Depend on this crate (not on the agent binary's crate)
//! to write a transport or a hardware manager.
//!
//! What lives here:
//! * the command model ([`command`]) and IPA's error catalogue ([`error`]);
//! * the one [`Dispatcher`](dispatcher::Dispatcher) implementation, owner of all command state;
//! * the [`Extension`](extension::Extension) trait and the neutral extensions ([`extensions`]);
//! * the [`HardwareManager`](hardware::HardwareManager) trait, ranking, dispatch, steps;
//! * the [`Transport`](transport::Transport) trait;
//! * shared services ([`services`]): token, node cache, sandbox/real mode, OS seams ([`os`]);
//! * configuration with figment ([`config`]) and the `inventory` plugin registry ([`registry`]);
//! * the process's Prometheus metrics ([`metrics`]).
//!
//! Runtime shape: the agent binary builds [`services::AgentServices`], probes the registered
//! hardware managers, builds the registered extensions into an
//! [`ExtensionSet`](dispatcher::ExtensionSet), wraps them in a
//! [`CommandDispatcher`](dispatcher::CommandDispatcher) and hands an `Arc<dyn Dispatcher>` to
//! every configured transport. Sync commands run inside the request under one lock; async
//! commands are recorded `RUNNING` and run on a tokio task; completions are published on the
//! event bus.
//!
//! No hyper, lapin or zmq here: this crate must stay buildable and testable without any wire.

pub mod attest;
pub mod command;
pub mod config;
pub mod dispatcher;
pub mod error;
pub mod events;
pub mod extension;
pub mod extensions;
pub mod hardware;
pub mod lookup;
pub mod metrics;
pub mod os;
pub mod registry;
pub mod secret;
pub mod services;
pub mod transport;

pub use command::{CommandRequest, CommandResult, CommandStatus, Params};
pub use dispatcher::{AgentStatus, CommandDispatcher, Dispatcher, ExtensionSet, SharedDispatcher};
pub use error::{AgentError, ErrorBody};
pub use events::{AgentEvent, EventBus, Progress};
pub use hardware::{HardwareManager, HardwareManagers, HardwareSupport};
pub use services::{AgentServices, RunMode};
pub use transport::{Transport, TransportContext, TransportError};

/// Re-exported so plugin crates register with the same `inventory` version.
pub use inventory;

/// The IPA version this agent is compatible with; reported as `agent_version` and in
/// `/v1/status`, because Ironic gates behaviour on the agent version it sees.
pub const IPA_COMPAT_VERSION: &str = "13.0.0";

/// This agent's own version.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
