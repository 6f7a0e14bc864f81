//! Issue 11, defects 1 and 2: URL credentials are basic auth and never leak; redirects are
//! followed with Range resume across them. Against a real loopback server.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::json;

const MIB: usize = 1 << 20;
const PASSWORD: &str = "s3cr3t-Pa55";

/// `http://alice:<PASSWORD>@127.0.0.1:port/path`.
fn with_userinfo(url: &str) -> String {
    url.replacen("http://", &format!("http://alice:{PASSWORD}@"), 1)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Everything logged while `f` runs, at every level.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let w = self.clone();
        let sub = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || w.clone())
            .finish();
        tracing::subscriber::set_default(sub)
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn assert_no_secret(what: &str, text: &str) {
    assert!(!text.contains(PASSWORD), "{what} leaks the password: {text}");
}

#[tokio::test(flavor = "current_thread")]
async fn userinfo_is_sent_as_basic_auth_never_as_the_host_header() {
    let srv = Server::start().await;
    let img = gpt_image(2 * MIB as u64, 7);
    let url = srv.add("/auth.img", img.clone(), Mode::Normal);
    let agent = Agent::new(4 * MIB as u64).await;
    let out = write(&agent, info(&with_userinfo(&url), &img)).await.unwrap();
    assert_no_secret("the result", &out.to_string());
    let head = srv.heads("/auth.img").remove(0);
    let host = url.trim_start_matches("http://").split('/').next().unwrap();
    assert_eq!(header(&head, "host"), Some(host), "{head}");
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("alice:{PASSWORD}"));
    assert_eq!(header(&head, "authorization"), Some(format!("Basic {basic}").as_str()));
}

#[tokio::test(flavor = "current_thread")]
async fn failing_urls_with_credentials_are_redacted_in_errors_and_logs() {
    let logs = Logs::default();
    let _guard = logs.install();
    let srv = Server::start().await;
    let img = gpt_image(2 * MIB as u64, 8);
    let agent = Agent::new(4 * MIB as u64).await;

    // 404: fatal, the URL is named in the error.
    let missing = with_userinfo(&format!("{}/missing.img", srv.base));
    let e = write(&agent, info(&missing, &img)).await.unwrap_err();
    assert_eq!(e.kind(), "ImageDownloadFatalError");
    assert!(e.details().contains("***@127.0.0.1"), "{}", e.details());
    assert_no_secret("a 404 error", &serde_json::to_string(&e.to_body()).unwrap());

    // 5xx: retried with WARN lines naming the URL, then failed.
    let broken = srv.add("/broken.img", vec![], Mode::Status(503));
    let e = write(&agent, info(&with_userinfo(&broken), &img)).await.unwrap_err();
    assert_no_secret("a 503 error", &serde_json::to_string(&e.to_body()).unwrap());

    // A checksum file behind credentials that is not there.
    let good = srv.add("/good.img", img.clone(), Mode::Normal);
    let mut i = info(&with_userinfo(&good), &img);
    i["os_hash_value"] =
        json!(with_userinfo(&format!("{}/SHA256SUMS?temp_url_sig=abcdef", srv.base)));
    let e = write(&agent, i).await.unwrap_err();
    let body = serde_json::to_string(&e.to_body()).unwrap();
    assert_no_secret("a checksum-file error", &body);
    assert!(!body.contains("abcdef"), "temp_url_sig leaked: {body}");

    // A checksum mismatch names the location.
    let mut i = info(&with_userinfo(&good), &img);
    i["os_hash_value"] = json!("0".repeat(64));
    let e = write(&agent, i).await.unwrap_err();
    assert_eq!(e.kind(), "ImageChecksumError");
    assert_no_secret("a checksum error", &serde_json::to_string(&e.to_body()).unwrap());

    let text = logs.text();
    assert!(text.contains("broken.img"), "the retries were logged: {text}");
    assert_no_secret("the log", &text);
}

#[tokio::test]
async fn redirects_are_followed_and_a_cut_stream_resumes_through_them() {
    let srv = Server::start().await;
    let img = gpt_image(6 * MIB as u64, 9);
    srv.add("/store/real.img", img.clone(), Mode::CutOnce(MIB + 777));
    let first = srv.add("/images/latest", vec![], Mode::Redirect("/store/real.img".into()));
    let agent = Agent::new(6 * MIB as u64).await;
    write(&agent, info(&first, &img)).await.unwrap();
    same(&agent.read_disk(), &img);
    assert_eq!(srv.hits("/images/latest"), 2, "the resume asked the first URL again");
    assert_eq!(srv.ranged_hits("/store/real.img"), 1, "the Range header crossed the redirect");
    for head in srv.heads("/store/real.img") {
        assert_eq!(header(&head, "authorization"), None);
    }
}

#[tokio::test]
async fn credentials_do_not_follow_a_redirect_to_another_host() {
    let a = Server::start().await;
    let b = Server::start().await;
    let img = gpt_image(2 * MIB as u64, 10);
    let target = b.add("/mirror.img", img.clone(), Mode::Normal);
    let first = a.add("/img", vec![], Mode::Redirect(target));
    let agent = Agent::new(4 * MIB as u64).await;
    write(&agent, info(&with_userinfo(&first), &img)).await.unwrap();
    assert!(header(&a.heads("/img")[0], "authorization").is_some());
    assert_eq!(header(&b.heads("/mirror.img")[0], "authorization"), None);
}
