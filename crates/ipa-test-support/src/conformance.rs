//! The transport conformance cases. Every case takes a client of the transport under test and
//! the harness behind it. Assertions are on what a control plane sees: statuses, error texts,
//! result shapes, ordering.

use std::time::Duration;

use ipa_core::command::CommandStatus;
use serde_json::json;

use crate::{Harness, WireClient};

/// Poll `get(id)` until final (bounded: 10 s).
pub async fn wait_final(c: &dyn WireClient, id: &str) -> ipa_core::command::CommandResult {
    for _ in 0..1000 {
        let r = c.get(id).await.expect("get");
        if r.command_status.is_done() {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("command {id} did not finish within 10 s");
}

/// A sync command round-trips with IPA's result shape and is visible by id and in the list.
pub async fn round_trip(c: &dyn WireClient, _h: &Harness) {
    let r = c.run("conformance.echo", json!({"value": "hello"}), false, None).await.expect("run");
    assert_eq!(r.command_name, "echo");
    assert_eq!(r.command_status, CommandStatus::Succeeded);
    assert_eq!(r.command_error, None);
    assert_eq!(r.command_result, json!({"result": "hello"}));
    assert_eq!(c.get(&r.id).await.expect("get"), r);
    assert!(c.list().await.expect("list").contains(&r));
    let r =
        c.run("conformance.echo", json!({"value": {"k": [1, 2]}}), true, None).await.expect("run");
    assert_eq!(r.command_result, json!({"k": [1, 2]}), "objects pass through unwrapped");
}

/// While an async command runs, everything else gets 409 "Agent is busy"; after it finishes
/// the agent accepts commands again and the result carries the async string wrapping.
pub async fn busy_while_async_runs(c: &dyn WireClient, h: &Harness) {
    let r = c.run("conformance.slow", json!({}), false, None).await.expect("run");
    assert_eq!(r.command_status, CommandStatus::Running);
    assert_eq!(r.command_name, "slow");
    let e = c.run("conformance.echo", json!({}), false, None).await.expect_err("busy");
    assert_eq!(e.code, 409);
    assert!(e.message.contains("Agent is busy: executing command slow"), "{e:?}");
    let e = c.run("nope.x", json!({}), false, None).await.expect_err("busy before lookup");
    assert_eq!(e.code, 409, "busy is checked before the extension lookup");
    let listed = c.list().await.expect("list");
    assert_eq!(listed.last().map(|r| r.command_status), Some(CommandStatus::Running));
    h.release(1);
    let done = wait_final(c, &r.id).await;
    assert_eq!(done.command_status, CommandStatus::Succeeded);
    assert_eq!(done.command_result, json!({"result": "slow: done"}));
    c.run("conformance.echo", json!({}), false, None).await.expect("not busy any more");
}

/// `wait=true` returns only when the command is final.
pub async fn wait_returns_final_result(c: &dyn WireClient, h: &Harness) {
    h.release(1);
    let r = c.run("conformance.slow", json!({"value": "w"}), true, None).await.expect("run");
    assert_eq!(r.command_status, CommandStatus::Succeeded);
    assert_eq!(r.command_result, json!({"result": "slow: w"}));
    let r = c.run("conformance.fail", json!({}), true, None).await.expect("run");
    assert_eq!(r.command_status, CommandStatus::Failed);
    let err = r.command_error.expect("error object");
    assert_eq!(err.kind, "CommandExecutionError");
    assert_eq!(err.details, "requested failure");
}

/// Unknown extension 404, unknown command 400, malformed name 400, validator 400; none recorded.
pub async fn request_errors(c: &dyn WireClient, _h: &Harness) {
    let before = c.list().await.expect("list").len();
    let e = c.run("nope.x", json!({}), false, None).await.expect_err("404");
    assert_eq!((e.code, e.message.as_str()), (404, "Not found: Extension with id nope not found."));
    let e = c.run("conformance.nope", json!({}), false, None).await.expect_err("400");
    assert_eq!((e.code, e.message.as_str()), (400, "Invalid command: Unknown command: nope"));
    let e = c.run("nodot", json!({}), false, None).await.expect_err("400");
    assert_eq!(e.code, 400);
    assert_eq!(e.message, "Invalid command: Command name must be of the form <extension>.<name>");
    let e = c.run("conformance.needs_int", json!({"x": "a"}), false, None).await.expect_err("400");
    assert_eq!(
        (e.code, e.message.as_str()),
        (400, "Invalid command parameters: x must be an integer")
    );
    assert_eq!(c.list().await.expect("list").len(), before, "request errors are not recorded");
}

/// Unknown keyword arguments give a recorded FAILED result with type `TypeError` — and the list
/// still serialises afterwards.
pub async fn type_error_is_a_failed_result(c: &dyn WireClient, _h: &Harness) {
    let r = c.run("conformance.echo", json!({"bogus": 1}), false, None).await.expect("200");
    assert_eq!(r.command_status, CommandStatus::Failed);
    let e = r.command_error.expect("error");
    assert_eq!(e.kind, "TypeError");
    assert_eq!(e.details, "ConformanceExtension.echo() got an unexpected keyword argument 'bogus'");
    let r = c.run("conformance.fail_sync", json!({}), false, None).await.expect("200");
    assert_eq!(r.command_error.expect("error").kind, "RuntimeError");
    assert!(c.list().await.is_ok());
}

/// The list is in insertion order.
pub async fn ordering(c: &dyn WireClient, h: &Harness) {
    let mut ids = Vec::new();
    for i in 0..6 {
        let r = if i % 3 == 2 {
            h.release(1);
            c.run("conformance.slow", json!({"value": i}), true, None).await
        } else {
            c.run("conformance.echo", json!({"value": i}), false, None).await
        }
        .expect("run");
        ids.push(r.id);
    }
    let listed: Vec<_> = c.list().await.expect("list").into_iter().map(|r| r.id).collect();
    assert_eq!(&listed[listed.len() - ids.len()..], &ids[..]);
}

/// A repeat with the same idempotency key returns the stored result; nothing runs twice.
pub async fn idempotent_repeat(c: &dyn WireClient, h: &Harness) {
    let a = c.run("conformance.slow", json!({}), false, Some("key-1")).await.expect("run");
    let b = c.run("conformance.slow", json!({}), false, Some("key-1")).await.expect("repeat");
    assert_eq!(a.id, b.id);
    h.release(1);
    wait_final(c, &a.id).await;
    let c2 = c.run("conformance.slow", json!({}), false, Some("key-1")).await.expect("repeat");
    assert_eq!((c2.id.as_str(), c2.command_status), (a.id.as_str(), CommandStatus::Succeeded));
    let n = c.list().await.expect("list").iter().filter(|r| r.id == a.id).count();
    assert_eq!(n, 1);
}

/// An unknown result id is 404 with IPA's text.
pub async fn unknown_result_id(c: &dyn WireClient, _h: &Harness) {
    let e = c.get("no-such-id").await.expect_err("404");
    assert_eq!(e.code, 404);
    assert_eq!(e.message, "Not found: Command Result with id no-such-id not found.");
}

/// Every command operation demands the token.
pub async fn token_required(c: &dyn WireClient, _h: &Harness) {
    for bad in [None, Some("wrong"), Some("")] {
        let w = c.with_token(bad);
        assert_eq!(
            w.run("conformance.echo", json!({}), false, None).await.expect_err("401").code,
            401
        );
        assert_eq!(w.list().await.expect_err("401").code, 401);
        assert_eq!(w.get("x").await.expect_err("401").code, 401);
    }
}

/// One `#[tokio::test]` per conformance case. `$setup` is an async fn returning
/// `(Harness, Box<dyn WireClient>)`.
#[macro_export]
macro_rules! conformance_suite {
    ($setup:path) => {
        $crate::conformance_suite!(@cases $setup;
            round_trip, busy_while_async_runs, wait_returns_final_result, request_errors,
            type_error_is_a_failed_result, ordering, idempotent_repeat, unknown_result_id,
            token_required);
    };
    (@cases $setup:path; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (h, c) = $setup().await;
                $crate::conformance::$case(&*c, &h).await;
            }
        )*
    };
}
