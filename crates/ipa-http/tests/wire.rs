//! The client against real loopback sockets: what goes on the wire for credentials and
//! redirects.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipa_http::{HttpClient, HttpError, HttpSettings, Method, Outgoing};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type Seen = Arc<Mutex<Vec<String>>>;

/// A server answering each request with `reply(request head)`; records every request head.
async fn server(reply: impl Fn(&str) -> String + Send + Sync + 'static) -> (u16, Seen) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let reply = Arc::new(reply);
    tokio::spawn(async move {
        for _ in 0..64 {
            let Ok((mut c, _)) = l.accept().await else { return };
            let mut buf = Vec::new();
            let mut b = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut b).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&b[..n]),
                }
            }
            let head = String::from_utf8_lossy(&buf).to_string();
            s.lock().unwrap().push(head.clone());
            let _ = c.write_all(reply(&head).as_bytes()).await;
            let _ = c.shutdown().await;
        }
    });
    (port, seen)
}

fn ok(body: &str) -> String {
    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
}

fn redirect(code: u16, to: &str) -> String {
    format!(
        "HTTP/1.1 {code} Moved\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn client() -> HttpClient {
    HttpClient::new(HttpSettings { timeout: Duration::from_secs(5), ..Default::default() }).unwrap()
}

#[tokio::test]
async fn url_userinfo_becomes_basic_auth_and_never_reaches_the_host_header() {
    let (port, seen) = server(|_| ok("x")).await;
    let c = client();
    let got = c
        .send_collect(
            Outgoing::get(format!("http://us%40er:s3cret@127.0.0.1:{port}/x.raw")),
            1024,
            None,
        )
        .await
        .unwrap();
    assert_eq!(&got.body[..], b"x");
    let head = seen.lock().unwrap()[0].clone();
    assert!(head.starts_with("GET /x.raw HTTP/1.1"), "{head}");
    assert_eq!(header(&head, "host"), Some(format!("127.0.0.1:{port}").as_str()));
    // base64("us@er:s3cret")
    assert_eq!(header(&head, "authorization"), Some("Basic dXNAZXI6czNjcmV0"));
    assert!(!head.contains("s3cret"));
}

#[tokio::test]
async fn redirects_are_followed_keeping_range_and_credentials_stay_with_their_origin() {
    let (other, other_seen) = server(|_| ok("far")).await;
    let (port, seen) = server(move |head| {
        if head.starts_with("GET /a ") {
            redirect(302, "/b")
        } else if head.starts_with("GET /b ") {
            redirect(307, &format!("http://127.0.0.1:{other}/c?temp_url_sig=zz"))
        } else {
            ok("?")
        }
    })
    .await;
    let c = client();
    let a = c
        .send(Outgoing::get(format!("http://u:pw@127.0.0.1:{port}/a")).range(5, None))
        .await
        .unwrap();
    assert_eq!(a.redirects, 2);
    assert_eq!(a.response.status(), 200);
    assert!(a.final_url.ends_with(&format!("{other}/c?temp_url_sig=zz")));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for h in &seen {
        assert_eq!(header(h, "authorization"), Some("Basic dTpwdw=="), "{h}");
        assert_eq!(header(h, "range"), Some("bytes=5-"));
    }
    let far = other_seen.lock().unwrap()[0].clone();
    assert_eq!(header(&far, "authorization"), None, "credentials crossed origins: {far}");
    assert_eq!(header(&far, "range"), Some("bytes=5-"));

    // An explicit authorization is treated the same way.
    let (port2, seen2) =
        server(move |_| redirect(301, &format!("http://127.0.0.1:{other}/d"))).await;
    c.send(
        Outgoing::get(format!("http://127.0.0.1:{port2}/")).authorization(Some("Bearer t".into())),
    )
    .await
    .unwrap();
    assert_eq!(header(&seen2.lock().unwrap()[0], "authorization"), Some("Bearer t"));
    assert_eq!(header(other_seen.lock().unwrap().last().unwrap(), "authorization"), None);
}

#[tokio::test]
async fn a_redirect_loop_stops_at_the_hop_limit_with_a_redacted_error() {
    let (port, seen) = server(|_| redirect(308, "/loop")).await;
    let c = HttpClient::new(HttpSettings {
        timeout: Duration::from_secs(5),
        max_redirects: 3,
        ..Default::default()
    })
    .unwrap();
    let e =
        c.send(Outgoing::get(format!("http://u:hunter2@127.0.0.1:{port}/x"))).await.unwrap_err();
    assert!(matches!(e, HttpError::TooManyRedirects { max: 3, .. }), "{e}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    assert_eq!(seen.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn see_other_after_a_post_continues_as_a_get_without_the_body() {
    let (port, seen) =
        server(|head| if head.starts_with("POST") { redirect(303, "/done") } else { ok("fine") })
            .await;
    let got = client()
        .send_collect(
            Outgoing::new(Method::POST, format!("http://127.0.0.1:{port}/form")).body("payload"),
            64,
            None,
        )
        .await
        .unwrap();
    assert_eq!(&got.body[..], b"fine");
    let seen = seen.lock().unwrap().clone();
    assert!(seen[1].starts_with("GET /done "), "{}", seen[1]);
}

#[tokio::test]
async fn connection_errors_name_the_url_without_its_secrets() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let e = client()
        .send(Outgoing::get(format!("http://admin:pa55@127.0.0.1:{port}/i?temp_url_sig=abc")))
        .await
        .unwrap_err();
    let s = e.to_string();
    assert!(e.is_transient());
    assert!(s.contains("***@127.0.0.1") && s.contains("temp_url_sig=***"), "{s}");
    assert!(!s.contains("pa55") && !s.contains("abc"), "{s}");
}
