//! # ipa-test-support
//!
//! * [`Harness`]: a real [`CommandDispatcher`](ipa_core::CommandDispatcher) with a
//!   `conformance` extension whose async command is held by a gate the test controls, so busy
//!   and wait behaviour is tested deterministically, without sleeps.
//! * [`conformance`]: the cases every transport must pass, written against [`WireClient`], and
//!   the [`conformance_suite!`] macro that turns them into one `#[tokio::test]` per case.
//!
//! A transport's test module implements `WireClient` for its wire and provides a setup
//! function `async fn() -> (Harness, Box<dyn WireClient>)`.

pub mod conformance;
mod harness;

pub use harness::{ConformanceExtension, Harness, TEST_TOKEN, init_tracing};

use async_trait::async_trait;
use ipa_core::command::CommandResult;
use serde_json::Value;

/// A failure as seen over a wire: an HTTP-like status and the error text (REST `faultstring`,
/// envelope `error.message: error.details`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    /// 400, 401, 404, 409, 500, ...
    pub code: u16,
    /// The error text.
    pub message: String,
}

/// What a conformance test needs from a client of the transport under test.
#[async_trait]
pub trait WireClient: Send + Sync {
    /// Run a command. `wait` blocks until it is final.
    async fn run(
        &self,
        name: &str,
        params: Value,
        wait: bool,
        idempotency_key: Option<&str>,
    ) -> Result<CommandResult, WireError>;
    /// One result by id.
    async fn get(&self, id: &str) -> Result<CommandResult, WireError>;
    /// All results, oldest first.
    async fn list(&self) -> Result<Vec<CommandResult>, WireError>;
    /// The same client presenting a different token (`None`: no token).
    fn with_token(&self, token: Option<&str>) -> Box<dyn WireClient>;
}
