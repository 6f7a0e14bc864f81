//! Issue 11, defect 4: a client cannot hold a connection forever — header and body read
//! timeouts, and a per-client connection limit. Real sockets against the real server.

mod common;

use std::time::{Duration, Instant};

use ipa_test_support::{Harness, TEST_TOKEN};
use ipa_transport_rest::{RestTransport, Timeouts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn quick() -> RestTransport {
    RestTransport {
        timeouts: Timeouts {
            headers: Duration::from_millis(500),
            body_idle: Duration::from_millis(300),
            body_total: Duration::from_millis(1500),
        },
        ..RestTransport::new("127.0.0.1", 0)
    }
}

/// Everything the server sends until it closes or resets the connection (bounded: 10 s).
async fn read_until_closed(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    match tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the server must close the connection")
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("read: {e}"),
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn chunked_post_head() -> String {
    format!(
        "POST /v1/commands/?agent_token={TEST_TOKEN} HTTP/1.1\r\nHost: a\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
}

#[tokio::test]
async fn an_authenticated_body_that_never_ends_gets_408_and_the_connection_closes() {
    let (_h, c) = common::start_with(Harness::new(), quick()).await;
    let mut s = TcpStream::connect(c.addr()).await.unwrap();
    s.write_all(format!("{}5\r\n{{\"nam\r\n", chunked_post_head()).as_bytes()).await.unwrap();
    let t0 = Instant::now();
    let wire = read_until_closed(&mut s).await;
    assert!(wire.starts_with("HTTP/1.1 408 "), "{wire}");
    assert!(
        wire.contains("408 Request Timeout: The request body was not received within"),
        "{wire}"
    );
    assert!(t0.elapsed() < Duration::from_secs(5), "took {:?}", t0.elapsed());
}

#[tokio::test]
async fn a_trickling_body_is_cut_at_the_total_timeout() {
    let (_h, c) = common::start_with(Harness::new(), quick()).await;
    let mut s = TcpStream::connect(c.addr()).await.unwrap();
    s.write_all(chunked_post_head().as_bytes()).await.unwrap();
    // One byte every 100 ms: never idle for 300 ms, but never done either (bounded: 5 s).
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        for _ in 0..50 {
            if wr.write_all(b"1\r\n \r\n").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut out))
        .await
        .expect("closed")
        .ok();
    let wire = String::from_utf8_lossy(&out);
    assert!(wire.starts_with("HTTP/1.1 408 "), "{wire}");
    assert!(wire.contains("within 1 seconds") || wire.contains("within 2 seconds"), "{wire}");
    writer.abort();
}

#[tokio::test]
async fn headers_that_never_end_close_the_connection() {
    let (_h, c) = common::start_with(Harness::new(), quick()).await;
    let mut s = TcpStream::connect(c.addr()).await.unwrap();
    s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: a\r\nX-Slow: ").await.unwrap();
    let t0 = Instant::now();
    read_until_closed(&mut s).await;
    assert!(t0.elapsed() < Duration::from_secs(5), "took {:?}", t0.elapsed());
}

#[tokio::test]
async fn connections_beyond_the_per_client_limit_are_closed_and_slots_come_back() {
    let t = RestTransport { max_connections_per_client: 2, ..RestTransport::new("127.0.0.1", 0) };
    let (_h, c) = common::start_with(Harness::new(), t).await;
    let a = TcpStream::connect(c.addr()).await.unwrap();
    let b = TcpStream::connect(c.addr()).await.unwrap();
    // Give the server time to accept both.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = TcpStream::connect(c.addr()).await.unwrap();
    let _ = third.write_all(b"GET /v1/status HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let wire = read_until_closed(&mut third).await;
    assert_eq!(wire, "", "the third connection is closed without an answer");
    drop(a);
    drop(b);
    // Slots are given back when the connections end (bounded wait).
    let mut answered = String::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut s = TcpStream::connect(c.addr()).await.unwrap();
        let _ =
            s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await;
        answered = read_until_closed(&mut s).await;
        if answered.starts_with("HTTP/1.1 200") {
            break;
        }
    }
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
}
