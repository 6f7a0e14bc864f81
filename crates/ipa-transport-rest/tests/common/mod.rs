//! Shared test plumbing: start the REST transport on 127.0.0.1:0 against a [`Harness`], a raw
//! HTTP client ([`client`]) and a conformance-suite [`WireClient`] over it.
#![allow(dead_code)]

pub mod client;

use std::net::SocketAddr;

use async_trait::async_trait;
use ipa_core::command::CommandResult;
use ipa_core::transport::ServerTls;
use ipa_test_support::{Harness, TEST_TOKEN, WireClient, WireError};
use ipa_transport_rest::RestTransport;

use client::{ClientError, RestClient};
use serde_json::Value;

/// Serve `transport` for `h`; returns the bound address (from the ready report).
pub async fn serve(h: &Harness, transport: RestTransport, tls: Option<ServerTls>) -> SocketAddr {
    let ready = h.serve(&transport, tls).await;
    assert_eq!(ready.transport, "rest");
    let hostport = ready.endpoint.split_once("://").expect("scheme").1;
    let addr: SocketAddr = hostport.parse().expect("endpoint is ip:port");
    assert_ne!(addr.port(), 0, "the real bound port is reported");
    addr
}

/// A harness with the REST transport on 127.0.0.1:0 and a client holding the right token.
pub async fn start() -> (Harness, RestClient) {
    start_with(Harness::new(), RestTransport::new("127.0.0.1", 0)).await
}

/// Same, with a given harness and transport config.
pub async fn start_with(h: Harness, t: RestTransport) -> (Harness, RestClient) {
    let addr = serve(&h, t, None).await;
    (h, RestClient::new(addr, Some(TEST_TOKEN)))
}

/// The conformance suite's view of the REST API.
pub struct RestWire(pub RestClient);

fn wire(e: ClientError) -> WireError {
    match e {
        ClientError::Fault { code, faultstring } => WireError { code, message: faultstring },
        other => panic!("transport-level failure, not a fault: {other}"),
    }
}

#[async_trait]
impl WireClient for RestWire {
    async fn run(
        &self,
        name: &str,
        params: Value,
        wait: bool,
        key: Option<&str>,
    ) -> Result<CommandResult, WireError> {
        self.0.run(name, params, wait, key).await.map_err(wire)
    }
    async fn get(&self, id: &str) -> Result<CommandResult, WireError> {
        self.0.get(id, false).await.map_err(wire)
    }
    async fn list(&self) -> Result<Vec<CommandResult>, WireError> {
        self.0.list().await.map_err(wire)
    }
    fn with_token(&self, token: Option<&str>) -> Box<dyn WireClient> {
        Box::new(RestWire(self.0.with_token(token)))
    }
}

/// Setup for `conformance_suite!`.
pub async fn conformance_setup() -> (Harness, Box<dyn WireClient>) {
    let (h, c) = start().await;
    (h, Box::new(RestWire(c)))
}
