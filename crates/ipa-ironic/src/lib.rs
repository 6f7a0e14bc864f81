//! # ipa-ironic
//!
//! The agent's side of the Ironic lifecycle, driven by a stock Ironic exactly as
//! ironic-python-agent is (spec `ironic-contract.md` §3–§8, `ipa-agent.md` §1.6, §4):
//!
//! * [`client`]: the Ironic API client on the shared stack ([`ipa_http`]): version discovery, lookup with
//!   random exponential backoff and extra waits on 409, heartbeat (202), `continue_inspection`,
//!   Ironic's error envelope turned into a readable message; custom CA and `insecure`;
//! * [`heartbeat`]: the heartbeater (jittered interval, error backoff, forced beats after async
//!   commands, own thread so it never starves);
//! * [`advertise`]: the callback address (option, interface, or the kernel's route source);
//! * [`autotls`]: the self-signed P-384 certificate with a critical IP SAN;
//! * [`inspection`]: inventory posted to `inspection_callback_url`;
//! * [`rescue`]: the `rescue.finalize_rescue` extension;
//! * [`lifecycle`]: the sequence the runtime runs before serving and while serving.
//!
//! Secrets (the agent token, the auto-TLS key, rescue passwords) never reach a log line.

pub mod advertise;
pub mod autotls;
pub mod client;
pub mod error;
pub mod heartbeat;
pub mod http;
pub mod inspection;
pub mod lifecycle;
pub mod rescue;
#[cfg(feature = "test-harness")]
pub mod testing;

pub use client::{ApiVersion, IronicClient};
pub use error::IronicError;
pub use lifecycle::{Lifecycle, idle_until_signal};
