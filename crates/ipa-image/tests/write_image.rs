//! End-to-end image writes over a real loopback HTTP server into file-backed disks.

mod common;

use std::io::Write;

use common::*;
use serde_json::json;

const MIB: usize = 1 << 20;

#[tokio::test]
async fn raw_gpt_image_is_written_verified_and_backup_gpt_moved_to_disk_end() {
    let srv = Server::start().await;
    let img = gpt_image(8 * MIB as u64, 1);
    let url = srv.add("/disk.img", img.clone(), Mode::Normal);
    let agent = Agent::new(16 * MIB as u64).await;
    let out = write(&agent, info(&url, &img)).await.unwrap();
    let disk = agent.read_disk();
    // Data region identical (the backup GPT area at the image end is rewritten by the fix).
    same(&disk[34 * 512..7 * MIB], &img[34 * 512..7 * MIB]);
    let f = std::fs::File::open(agent.disk()).unwrap();
    match ipa_image::disk::read_table(&f).unwrap() {
        ipa_image::disk::Table::Gpt(g) => {
            assert_eq!(g.alternate_lba, (16 * MIB / 512 - 1) as u64);
            assert_eq!(g.parts.len(), 1);
        }
        other => panic!("expected GPT, got {other:?}"),
    }
    assert_eq!(out, json!("image (img-1) written to device /dev/sda root_uuid=0x00000000"));
    let st = agent.pipeline.state();
    assert_eq!(st.cached_image_id.as_deref(), Some("img-1"));
    assert_eq!(st.partition_uuids.get("root uuid"), Some(&json!("0x00000000")));
}

#[tokio::test]
async fn bad_checksum_fails_with_ipa_error_and_leaves_head_zeroed() {
    let srv = Server::start().await;
    let img = gpt_image(4 * MIB as u64, 2);
    let url = srv.add("/disk.img", img.clone(), Mode::Normal);
    let agent = Agent::new(8 * MIB as u64).await;
    // Old bootable content on the disk.
    std::fs::write(agent.disk(), vec![0xAAu8; 8 * MIB]).unwrap();
    let mut i = info(&url, &img);
    i["os_hash_value"] = json!("0".repeat(64));
    let err = write(&agent, i).await.unwrap_err();
    assert_eq!(err.kind(), "ImageChecksumError");
    let d = err.details();
    assert!(
        d.starts_with("Image failed to verify against checksum. location: img-1; image ID: "),
        "{d}"
    );
    assert!(d.contains(&format!("verification checksum: {}", sha256(&img))), "{d}");
    let disk = agent.read_disk();
    assert!(disk[..MIB].iter().all(|b| *b == 0), "head must stay zeroed");
    assert!(disk[3 * MIB..4 * MIB].iter().all(|b| *b == 0), "image tail (backup GPT) wiped");
    assert!(agent.pipeline.state().cached_image_id.is_none());
}

#[tokio::test]
async fn cut_stream_is_resumed_with_a_range_request() {
    let srv = Server::start().await;
    let img = gpt_image(6 * MIB as u64, 3);
    let url = srv.add("/cut.img", img.clone(), Mode::CutOnce(2 * MIB + 12345));
    let agent = Agent::new(6 * MIB as u64).await;
    write(&agent, info(&url, &img)).await.unwrap();
    same(&agent.read_disk(), &img);
    assert_eq!(srv.hits("/cut.img"), 2);
    assert_eq!(srv.ranged_hits("/cut.img"), 1, "resumed, not restarted from byte 0");
}

#[tokio::test]
async fn server_error_fails_over_to_next_url() {
    let srv = Server::start().await;
    let img = gpt_image(2 * MIB as u64, 4);
    let bad = srv.add("/bad.img", vec![], Mode::Status(500));
    let good = srv.add("/good.img", img.clone(), Mode::Normal);
    let agent = Agent::new(2 * MIB as u64).await;
    let mut i = info(&bad, &img);
    i["urls"] = json!([bad, good]);
    write(&agent, i).await.unwrap();
    same(&agent.read_disk(), &img);
    assert_eq!(srv.hits("/bad.img"), 3, "retries + 1 attempts on the failing URL");
    assert_eq!(srv.hits("/good.img"), 1);
}

#[tokio::test]
async fn client_error_is_fatal_without_failover() {
    let srv = Server::start().await;
    let img = gpt_image(2 * MIB as u64, 5);
    let missing = format!("{}/missing.img", srv.base);
    let good = srv.add("/good.img", img.clone(), Mode::Normal);
    let agent = Agent::new(2 * MIB as u64).await;
    let mut i = info(&missing, &img);
    i["urls"] = json!([missing, good]);
    let err = write(&agent, i).await.unwrap_err();
    assert_eq!(err.kind(), "ImageDownloadFatalError");
    assert!(err.details().contains("Received status code 404"), "{}", err.details());
    assert_eq!(srv.hits("/good.img"), 0);
}

#[tokio::test]
async fn md5_checksum_refused_when_disabled() {
    let srv = Server::start().await;
    let url = srv.add("/x.img", vec![1; 1024], Mode::Normal);
    let agent = Agent::with_config(MIB as u64, |c| c.image.md5_enabled = false).await;
    let i = json!({"id": "x", "urls": [url], "checksum": "0123456789abcdef0123456789abcdef"});
    let err = agent.pipeline.validate(&params(json!({"image_info": i}))).unwrap_err();
    assert_eq!(err.kind(), "InvalidCommandParamsError");
    assert_eq!(err.code(), 400);
    assert!(err.details().contains("Image checksum is not available"));
    assert_eq!(srv.hits("/x.img"), 0);
}

#[tokio::test]
async fn checksum_file_url_is_matched_by_basename() {
    let srv = Server::start().await;
    let img = gpt_image(2 * MIB as u64, 6);
    let url = srv.add("/images/disk.img", img.clone(), Mode::Normal);
    let sums = format!("{}  other.img\n{} *disk.img\n", "f".repeat(64), sha256(&img));
    let sums_url = srv.add("/images/SHA256SUMS", sums.into_bytes(), Mode::Normal);
    let agent = Agent::new(2 * MIB as u64).await;
    let i = json!({"id": "img-2", "urls": [url], "disk_format": "raw", "checksum": sums_url});
    write(&agent, i).await.unwrap();
    same(&agent.read_disk(), &img);
}

#[tokio::test]
async fn whole_disk_image_without_partition_table_is_refused() {
    let srv = Server::start().await;
    let img = noise(2 * MIB, 7);
    let url = srv.add("/blob.img", img.clone(), Mode::Normal);
    let agent = Agent::new(4 * MIB as u64).await;
    let err = write(&agent, info(&url, &img)).await.unwrap_err();
    assert_eq!(err.kind(), "DeploymentError");
    assert!(err.details().contains("No partitions found"), "{}", err.details());
}

fn compress(kind: &str, data: &[u8]) -> Vec<u8> {
    match kind {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "xz" => {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "zstd" => zstd::encode_all(data, 1).unwrap(),
        "bzip2" => {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn compressed_images_are_streamed_and_hash_covers_the_compressed_bytes() {
    for kind in ["gzip", "xz", "zstd", "bzip2"] {
        let srv = Server::start().await;
        let img = gpt_image(3 * MIB as u64, 8);
        let c = compress(kind, &img);
        let url = srv.add("/disk.img.c", c.clone(), Mode::Normal);
        let agent = Agent::new(3 * MIB as u64).await;
        let mut i = info(&url, &c);
        i["id"] = json!(format!("img-{kind}"));
        write(&agent, i).await.unwrap_or_else(|e| panic!("{kind}: {e:?}"));
        same(&agent.read_disk(), &img);
    }
}

#[tokio::test]
async fn repeat_of_the_same_image_id_is_a_no_op() {
    let srv = Server::start().await;
    let img = gpt_image(2 * MIB as u64, 9);
    let url = srv.add("/d.img", img.clone(), Mode::Normal);
    let agent = Agent::new(2 * MIB as u64).await;
    write(&agent, info(&url, &img)).await.unwrap();
    write(&agent, info(&url, &img)).await.unwrap();
    assert_eq!(srv.hits("/d.img"), 1);
}
