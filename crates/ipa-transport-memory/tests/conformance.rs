//! The in-memory transport passes the transport conformance suite.

use async_trait::async_trait;
use ipa_core::command::{CommandRequest, CommandResult};
use ipa_test_support::{Harness, TEST_TOKEN, WireClient, WireError};
use ipa_transport_memory::{MemoryClient, MemoryRequest, MemoryResponse, memory_transport};
use serde_json::Value;

struct Client {
    inner: MemoryClient,
    token: Option<String>,
}

fn wire(e: ipa_core::AgentError) -> WireError {
    WireError { code: e.code(), message: e.to_string() }
}

#[async_trait]
impl WireClient for Client {
    async fn run(
        &self,
        name: &str,
        params: Value,
        wait: bool,
        key: Option<&str>,
    ) -> Result<CommandResult, WireError> {
        let mut request =
            CommandRequest::new(name, params.as_object().cloned().unwrap_or_default());
        request.idempotency_key = key.map(str::to_string);
        match self.inner.call(MemoryRequest::Run { token: self.token.clone(), request, wait }).await
        {
            Ok(MemoryResponse::One(r)) => Ok(r),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => Err(wire(e)),
        }
    }
    async fn get(&self, id: &str) -> Result<CommandResult, WireError> {
        match self.inner.call(MemoryRequest::Get { token: self.token.clone(), id: id.into() }).await
        {
            Ok(MemoryResponse::One(r)) => Ok(r),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => Err(wire(e)),
        }
    }
    async fn list(&self) -> Result<Vec<CommandResult>, WireError> {
        match self.inner.call(MemoryRequest::List { token: self.token.clone() }).await {
            Ok(MemoryResponse::Many(r)) => Ok(r),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => Err(wire(e)),
        }
    }
    fn with_token(&self, token: Option<&str>) -> Box<dyn WireClient> {
        Box::new(Client { inner: self.inner.clone(), token: token.map(str::to_string) })
    }
}

async fn setup() -> (Harness, Box<dyn WireClient>) {
    let h = Harness::new();
    let (transport, client) = memory_transport();
    h.serve(&transport, None).await;
    (h, Box::new(Client { inner: client, token: Some(TEST_TOKEN.into()) }))
}

ipa_test_support::conformance_suite!(setup);
