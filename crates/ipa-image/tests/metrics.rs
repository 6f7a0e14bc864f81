//! The image pipeline meters its writes in the agent's metrics (`AgentServices::metrics`):
//! bytes written and throughput, one write result per image, download retries and resumes,
//! checksum failures. Real loopback HTTP server, file-backed disk.

mod common;

use common::*;
use serde_json::json;

const MIB: usize = 1 << 20;

fn sample(agent: &Agent, series: &str) -> f64 {
    let text = agent.services.metrics.encode().unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

#[tokio::test]
async fn a_verified_write_counts_its_bytes_its_rate_and_one_success() {
    let srv = Server::start().await;
    let img = gpt_image(4 * MIB as u64, 11);
    let url = srv.add("/disk.img", img.clone(), Mode::Normal);
    let agent = Agent::new(8 * MIB as u64).await;
    write(&agent, info(&url, &img)).await.unwrap();
    assert_eq!(sample(&agent, "ipa_image_bytes_written_total"), img.len() as f64);
    assert!(sample(&agent, "ipa_image_write_throughput_bytes_per_second") > 0.0);
    assert_eq!(sample(&agent, "ipa_image_writes_total{result=\"success\"}"), 1.0);
    assert_eq!(sample(&agent, "ipa_image_writes_total{result=\"failure\"}"), 0.0);
    assert_eq!(sample(&agent, "ipa_image_checksum_failures_total"), 0.0);
    assert_eq!(sample(&agent, "ipa_image_download_retries_total"), 0.0);
}

#[tokio::test]
async fn a_checksum_mismatch_is_a_checksum_failure_and_a_failed_write() {
    let srv = Server::start().await;
    let img = gpt_image(2 * MIB as u64, 12);
    let url = srv.add("/disk.img", img.clone(), Mode::Normal);
    let agent = Agent::new(4 * MIB as u64).await;
    let mut i = info(&url, &img);
    i["os_hash_value"] = json!("0".repeat(64));
    assert_eq!(write(&agent, i).await.unwrap_err().kind(), "ImageChecksumError");
    assert_eq!(sample(&agent, "ipa_image_checksum_failures_total"), 1.0);
    assert_eq!(sample(&agent, "ipa_image_writes_total{result=\"failure\"}"), 1.0);
    assert_eq!(sample(&agent, "ipa_image_writes_total{result=\"success\"}"), 0.0);
    // The bytes did reach the disk before the digest was known (the head stays zeroed).
    assert!(sample(&agent, "ipa_image_bytes_written_total") > 0.0);
}

#[tokio::test]
async fn a_cut_stream_counts_one_resume() {
    let srv = Server::start().await;
    let img = gpt_image(6 * MIB as u64, 13);
    let url = srv.add("/cut.img", img.clone(), Mode::CutOnce(2 * MIB + 12345));
    let agent = Agent::new(6 * MIB as u64).await;
    write(&agent, info(&url, &img)).await.unwrap();
    assert_eq!(sample(&agent, "ipa_image_download_resumes_total"), 1.0);
    assert_eq!(sample(&agent, "ipa_image_bytes_written_total"), img.len() as f64);
}

#[tokio::test]
async fn server_errors_count_every_repeated_request_including_the_failover() {
    let srv = Server::start().await;
    let img = gpt_image(2 * MIB as u64, 14);
    let bad = srv.add("/bad.img", vec![], Mode::Status(500));
    let good = srv.add("/good.img", img.clone(), Mode::Normal);
    let agent = Agent::new(2 * MIB as u64).await;
    let mut i = info(&bad, &img);
    i["urls"] = json!([bad, good]);
    write(&agent, i).await.unwrap();
    // Three requests to the failing URL (retries = 2), then the good one: 3 repeats.
    assert_eq!(srv.hits("/bad.img"), 3);
    assert_eq!(sample(&agent, "ipa_image_download_retries_total"), 3.0);
    assert_eq!(sample(&agent, "ipa_image_writes_total{result=\"success\"}"), 1.0);
}
