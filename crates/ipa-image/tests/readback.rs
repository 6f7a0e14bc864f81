//! Read-back verification: the written range is re-read and compared with the bytes written.

mod common;

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use common::*;
use ipa_core::error::AgentError;
use ipa_core::events::{AgentEvent, EventBus, Progress};
use ipa_core::extension::CommandContext;
use ipa_http::download::{Download, DownloadClient, HttpOptions};
use ipa_image::checksum::{Algo, Expected};
use ipa_image::pipeline::{FormatPolicy, ReadbackHook, StreamSpec, stream_image};
use serde_json::{Value, json};

const MIB: usize = 1 << 20;

fn info(url: &str, served: &[u8]) -> Value {
    json!({"id": "img-rb", "urls": [url], "disk_format": "raw",
           "os_hash_algo": "sha256", "os_hash_value": sha256(served)})
}

/// Run `write_image` with a context whose progress events are collected.
async fn write_collect(
    agent: &Agent,
    image_info: Value,
) -> (Result<Value, AgentError>, Vec<Progress>) {
    let bus = EventBus::new(1024);
    let mut rx = bus.subscribe();
    let ctx = CommandContext::new("r1", "standby.prepare_image", bus);
    let res = agent.pipeline.write_image(&params(json!({"image_info": image_info})), &ctx).await;
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        if let AgentEvent::CommandProgress { progress, .. } = e {
            events.push(progress);
        }
    }
    (res, events)
}

fn readback_event(events: &[Progress]) -> Option<&Progress> {
    events.iter().find(|p| {
        p.phase == "verify"
            && p.message.as_deref().is_some_and(|m| m.starts_with("read-back verified"))
    })
}

#[tokio::test]
async fn readback_requested_in_image_info_passes_for_raw_and_zstd() {
    let img = gpt_image(5 * MIB as u64 + 4096 * 3, 21);
    for kind in ["raw", "zstd"] {
        let srv = Server::start().await;
        let served =
            if kind == "zstd" { zstd::encode_all(&img[..], 1).unwrap() } else { img.clone() };
        let url = srv.add("/disk.img", served.clone(), Mode::Normal);
        let agent = Agent::new(8 * MIB as u64).await;
        let mut i = info(&url, &served);
        i["image_verify_readback"] = json!(true);
        let (res, events) = write_collect(&agent, i).await;
        res.unwrap_or_else(|e| panic!("{kind}: {e:?}"));
        // Primary GPT header and the backup area are rewritten by the backup-GPT fix.
        let end = img.len() - MIB;
        same(&agent.read_disk()[34 * 512..end], &img[34 * 512..end]);
        let ev = readback_event(&events).unwrap_or_else(|| panic!("{kind}: no read-back event"));
        assert_eq!(ev.done, img.len() as u64, "{kind}: the whole written range is re-read");
        assert_eq!(ev.total, Some(img.len() as u64));
        assert!(ev.rate.unwrap() > 0.0, "{kind}: read-back throughput reported");
    }
}

#[tokio::test]
async fn readback_follows_the_config_option_and_is_off_by_default() {
    let img = gpt_image(3 * MIB as u64, 22);
    for on in [true, false] {
        let srv = Server::start().await;
        let url = srv.add("/disk.img", img.clone(), Mode::Normal);
        let agent =
            Agent::with_config(4 * MIB as u64, |c| c.image.image_verify_readback = on).await;
        let (res, events) = write_collect(&agent, info(&url, &img)).await;
        res.unwrap();
        assert_eq!(readback_event(&events).is_some(), on, "config image_verify_readback={on}");
    }
}

fn spec(
    url: &str,
    served: &[u8],
    target: &std::path::Path,
    hook: Option<ReadbackHook>,
) -> StreamSpec {
    StreamSpec {
        image_id: "img-rb".into(),
        location: url.into(),
        expected: Expected { algo: Algo::Sha256, value: sha256(served) },
        policy: FormatPolicy::default(),
        target: target.to_path_buf(),
        device: "/dev/sda".into(),
        base: 0,
        limit: None,
        readback: true,
        before_readback: hook,
        metrics: None,
    }
}

fn flip_byte_at(at: u64) -> ReadbackHook {
    ReadbackHook(Arc::new(move |p: &std::path::Path| {
        let f = std::fs::OpenOptions::new().read(true).write(true).open(p).unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at).unwrap();
        f.write_all_at(&[b[0] ^ 0x40], at).unwrap();
        f.sync_all().unwrap();
    }))
}

#[tokio::test]
async fn corrupted_byte_is_detected_error_returned_and_head_zeroed() {
    let img = gpt_image(6 * MIB as u64, 23);
    let served = zstd::encode_all(&img[..], 1).unwrap();
    // One corruption in the image body (second 64 MiB region is absent: offset in region 0),
    // one inside the withheld head written last.
    for at in [4 * MIB as u64 + 12345, 700] {
        let srv = Server::start().await;
        let url = srv.add("/disk.img.zst", served.clone(), Mode::Normal);
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("sda");
        let mut f = std::fs::File::create(&target).unwrap();
        f.write_all(&vec![0xAAu8; 8 * MIB]).unwrap();
        drop(f);
        let client = Arc::new(DownloadClient::new(HttpOptions::default()).unwrap());
        let dl = Download::new(client, "img-rb", vec![url.clone()]);
        let err = stream_image(dl, spec(&url, &served, &target, Some(flip_byte_at(at))), None)
            .await
            .unwrap_err();
        let err = AgentError::from(err);
        assert_eq!(err.kind(), "ImageWriteError", "{err:?}");
        let d = err.details();
        assert!(d.contains("read-back verification failed"), "{d}");
        assert!(d.contains(&format!("0..{}", img.len())), "names the differing region: {d}");
        let disk = std::fs::read(&target).unwrap();
        assert!(disk[..MIB].iter().all(|b| *b == 0), "head zeroed after a read-back mismatch");
        assert!(disk[img.len() - MIB..img.len()].iter().all(|b| *b == 0), "backup GPT area wiped");
    }
}

#[tokio::test]
async fn uncorrupted_stream_reports_readback_in_the_outcome() {
    let img = gpt_image(4 * MIB as u64 + 777, 24);
    let srv = Server::start().await;
    let url = srv.add("/disk.img", img.clone(), Mode::Normal);
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("sda");
    std::fs::File::create(&target).unwrap().set_len(8 * MIB as u64).unwrap();
    let client = Arc::new(DownloadClient::new(HttpOptions::default()).unwrap());
    let dl = Download::new(client, "img-rb", vec![url.clone()]);
    let out = stream_image(dl, spec(&url, &img, &target, None), None).await.unwrap();
    let rb = out.readback.expect("read-back done");
    assert_eq!(rb.bytes, img.len() as u64);
    same(&std::fs::read(&target).unwrap()[..img.len()], &img);
}

#[tokio::test]
async fn readback_passes_for_qcow2_with_small_clusters() {
    require_tool("qemu-img", "qemu-utils");
    let img = gpt_image(6 * MIB as u64, 25);
    for cluster in ["4096", "512"] {
        let d = tempfile::tempdir().unwrap();
        let src = tmpfile(d.path(), "src.raw", &img);
        let dst = d.path().join("out.qcow2");
        let o = format!("cluster_size={cluster}");
        run(
            "qemu-img",
            &[
                "convert",
                "-q",
                "-f",
                "raw",
                "-O",
                "qcow2",
                "-o",
                &o,
                src.to_str().unwrap(),
                dst.to_str().unwrap(),
            ],
        );
        let q = std::fs::read(dst).unwrap();
        let srv = Server::start().await;
        let url = srv.add("/disk.qcow2", q.clone(), Mode::Normal);
        let agent = Agent::new(6 * MIB as u64).await;
        std::fs::write(agent.disk(), vec![0x55u8; 6 * MIB]).unwrap();
        let mut i = info(&url, &q);
        i["disk_format"] = json!("qcow2");
        i["image_verify_readback"] = json!("true");
        let (res, events) = write_collect(&agent, i).await;
        res.unwrap_or_else(|e| panic!("cluster {cluster}: {e:?}"));
        same(&agent.read_disk(), &img);
        assert!(readback_event(&events).is_some(), "cluster {cluster}: read-back ran");
    }
}
