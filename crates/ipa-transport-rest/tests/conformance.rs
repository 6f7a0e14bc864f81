//! The REST transport passes the transport conformance suite over real HTTP on loopback.

mod common;

ipa_test_support::conformance_suite!(common::conformance_setup);
