//! qcow2 (via qemu-img), partition images, config drives on GPT and MBR, install_bootloader.

mod common;

use std::io::Write;

use base64::Engine as _;
use common::*;
use ipa_core::error::AgentError;
use serde_json::{Value, json};

const MIB: usize = 1 << 20;

async fn write(agent: &Agent, args: Value) -> Result<Value, AgentError> {
    agent.pipeline.write_image(&params(args), &ctx()).await
}

fn to_qcow2(raw: &[u8], extra: &[&str]) -> Vec<u8> {
    let d = tempfile::tempdir().unwrap();
    let src = tmpfile(d.path(), "src.raw", raw);
    let dst = d.path().join("out.qcow2");
    let mut args = vec!["convert", "-q", "-f", "raw", "-O", "qcow2"];
    args.extend_from_slice(extra);
    args.push(src.to_str().unwrap());
    args.push(dst.to_str().unwrap());
    run("qemu-img", &args);
    std::fs::read(dst).unwrap()
}

#[tokio::test]
async fn qcow2_image_is_converted_while_streaming() {
    require_tool("qemu-img", "qemu-utils");
    for cluster in ["65536", "4096"] {
        let srv = Server::start().await;
        let img = gpt_image(6 * MIB as u64, 11);
        let q = to_qcow2(&img, &["-o", &format!("cluster_size={cluster}")]);
        assert!(q.len() < img.len(), "zero clusters are unallocated in the qcow2");
        let url = srv.add("/disk.qcow2", q.clone(), Mode::Normal);
        let agent = Agent::new(6 * MIB as u64).await;
        // Old data everywhere: zero clusters must really be written as zeros.
        std::fs::write(agent.disk(), vec![0x55u8; 6 * MIB]).unwrap();
        let h512 = {
            use sha2::Digest;
            hex::encode(sha2::Sha512::digest(&q))
        };
        let i = json!({"id": format!("q{cluster}"), "urls": [url], "disk_format": "qcow2",
                       "os_hash_algo": "sha512", "os_hash_value": h512});
        write(&agent, json!({"image_info": i})).await.unwrap();
        same(&agent.read_disk(), &img);
    }
}

#[tokio::test]
async fn zstd_wrapped_qcow2_is_streamed() {
    require_tool("qemu-img", "qemu-utils");
    let srv = Server::start().await;
    let img = gpt_image(4 * MIB as u64, 12);
    let q = zstd::encode_all(&to_qcow2(&img, &[])[..], 1).unwrap();
    let url = srv.add("/disk.qcow2.zst", q.clone(), Mode::Normal);
    let agent = Agent::new(4 * MIB as u64).await;
    let i = json!({"id": "qz", "urls": [url], "disk_format": "qcow2",
                   "os_hash_algo": "sha256", "os_hash_value": sha256(&q)});
    write(&agent, json!({"image_info": i})).await.unwrap();
    same(&agent.read_disk(), &img);
}

#[tokio::test]
async fn qcow2_with_backing_file_is_refused() {
    require_tool("qemu-img", "qemu-utils");
    let d = tempfile::tempdir().unwrap();
    let base = tmpfile(d.path(), "base.raw", &gpt_image(2 * MIB as u64, 13));
    let top = d.path().join("top.qcow2");
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "raw",
            "-b",
            base.to_str().unwrap(),
            top.to_str().unwrap(),
        ],
    );
    let q = std::fs::read(&top).unwrap();
    let srv = Server::start().await;
    let url = srv.add("/top.qcow2", q.clone(), Mode::Normal);
    let agent = Agent::new(2 * MIB as u64).await;
    let i = json!({"id": "bk", "urls": [url], "disk_format": "qcow2",
                   "os_hash_algo": "sha256", "os_hash_value": sha256(&q)});
    let err = write(&agent, json!({"image_info": i})).await.unwrap_err();
    assert_eq!(err.kind(), "InvalidImage");
    assert!(err.details().contains("backing file"), "{}", err.details());
    assert!(agent.read_disk()[..MIB].iter().all(|b| *b == 0));
}

#[tokio::test]
async fn qcow2_content_with_raw_disk_format_is_a_mismatch() {
    require_tool("qemu-img", "qemu-utils");
    let q = to_qcow2(&gpt_image(2 * MIB as u64, 14), &[]);
    let srv = Server::start().await;
    let url = srv.add("/x", q.clone(), Mode::Normal);
    let agent = Agent::new(2 * MIB as u64).await;
    let i = json!({"id": "mm", "urls": [url], "disk_format": "raw",
                   "os_hash_algo": "sha256", "os_hash_value": sha256(&q)});
    let err = write(&agent, json!({"image_info": i})).await.unwrap_err();
    assert_eq!(err.kind(), "InvalidImage");
    assert!(err.details().contains("mismatch"));
}

#[tokio::test]
async fn qcow2_not_in_permitted_formats_is_refused() {
    require_tool("qemu-img", "qemu-utils");
    let q = to_qcow2(&gpt_image(2 * MIB as u64, 15), &[]);
    let srv = Server::start().await;
    let url = srv.add("/x", q.clone(), Mode::Normal);
    let agent =
        Agent::with_config(2 * MIB as u64, |c| c.image.permitted_image_formats = "raw".into())
            .await;
    let i =
        json!({"id": "np", "urls": [url], "os_hash_algo": "sha256", "os_hash_value": sha256(&q)});
    let err = write(&agent, json!({"image_info": i})).await.unwrap_err();
    assert!(err.details().contains("not permitted"), "{}", err.details());
}

fn gz_b64(data: &[u8]) -> String {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    base64::engine::general_purpose::STANDARD.encode(e.finish().unwrap())
}

fn fake_iso(len: usize) -> Vec<u8> {
    let mut iso = noise(len, 99);
    iso[0x8000] = 1;
    iso[0x8001..0x8006].copy_from_slice(b"CD001");
    let mut label = [b' '; 32];
    label[..8].copy_from_slice(b"config-2");
    iso[0x8028..0x8048].copy_from_slice(&label);
    iso
}

#[tokio::test]
async fn config_drive_gets_a_new_partition_at_the_end_of_a_gpt_disk() {
    let srv = Server::start().await;
    let img = gpt_image(4 * MIB as u64, 16);
    let url = srv.add("/d.img", img.clone(), Mode::Normal);
    let agent = Agent::new(200 * MIB as u64).await;
    let iso = fake_iso(3 * MIB);
    let i = json!({"id": "cd", "urls": [url], "disk_format": "raw",
                   "os_hash_algo": "sha256", "os_hash_value": sha256(&img)});
    write(&agent, json!({"image_info": i, "configdrive": gz_b64(&iso)})).await.unwrap();
    let f = std::fs::File::open(agent.disk()).unwrap();
    let ipa_image::disk::Table::Gpt(g) = ipa_image::disk::read_table(&f).unwrap() else {
        panic!("GPT expected")
    };
    assert_eq!(g.parts.len(), 2);
    let p = &g.parts[1];
    assert_eq!(p.number, 2);
    assert_eq!(p.last, g.last_usable);
    assert!((p.last - p.first + 1) * 512 <= 64 * MIB as u64);
    let disk = agent.read_disk();
    let off = (p.first * 512) as usize;
    same(&disk[off..off + iso.len()], &iso);
    assert_eq!(ipa_image::disk::fs_label(&f, p.first * 512).as_deref(), Some("config-2"));
}

#[tokio::test]
async fn config_drive_on_mbr_disk_and_too_large_config_drive() {
    let srv = Server::start().await;
    // An MBR image with one partition.
    let mut img = noise(4 * MIB, 17);
    img[..512].fill(0);
    let d = tempfile::tempdir().unwrap();
    let p = tmpfile(d.path(), "mbr.img", &img);
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&p).unwrap();
    ipa_image::disk::write_mbr(
        &f,
        0x1234abcd,
        &[ipa_image::disk::MbrPart {
            number: 1,
            bootable: true,
            typ: 0x83,
            start: 2048,
            sectors: 4096,
        }],
    )
    .unwrap();
    let img = std::fs::read(&p).unwrap();
    let url = srv.add("/mbr.img", img.clone(), Mode::Normal);
    let agent = Agent::new(100 * MIB as u64).await;
    let iso = fake_iso(MIB);
    let i = json!({"id": "mbr", "urls": [url], "disk_format": "raw",
                   "os_hash_algo": "sha256", "os_hash_value": sha256(&img)});
    let out =
        write(&agent, json!({"image_info": i.clone(), "configdrive": gz_b64(&iso)})).await.unwrap();
    assert_eq!(out, json!("image (mbr) written to device /dev/sda root_uuid=0x1234abcd"));
    let f = std::fs::File::open(agent.disk()).unwrap();
    let ipa_image::disk::Table::Mbr { parts, signature } = ipa_image::disk::read_table(&f).unwrap()
    else {
        panic!("MBR expected")
    };
    assert_eq!(signature, 0x1234abcd);
    assert_eq!(parts.len(), 2);
    assert_eq!((parts[1].start + parts[1].sectors) * 512, 100 * MIB as u64);
    let off = (parts[1].start * 512) as usize;
    same(&agent.read_disk()[off..off + iso.len()], &iso);

    let big = fake_iso(65 * MIB);
    let agent = Agent::new(200 * MIB as u64).await;
    let mut i2 = i.clone();
    i2["id"] = json!("mbr2");
    let err =
        write(&agent, json!({"image_info": i2, "configdrive": gz_b64(&big)})).await.unwrap_err();
    assert_eq!(err.kind(), "DeploymentError");
    assert!(err.details().contains("64MiB"), "{}", err.details());
}

#[tokio::test]
async fn partition_image_gets_ipa_layout_and_uuids() {
    let srv = Server::start().await;
    // A fake ext4 root filesystem: superblock magic + UUID.
    let mut root = noise(3 * MIB, 18);
    root[1024 + 56] = 0x53;
    root[1024 + 57] = 0xef;
    let fsuuid = uuid::Uuid::new_v4();
    root[1024 + 104..1024 + 120].copy_from_slice(fsuuid.as_bytes());
    let url = srv.add("/root.img", root.clone(), Mode::Normal);
    let agent = Agent::new(700 * MIB as u64).await;
    let iso = fake_iso(MIB);
    let i = json!({"id": "part", "urls": [url], "disk_format": "raw", "image_type": "partition",
                   "root_mb": 10, "swap_mb": 4, "ephemeral_mb": 0, "ephemeral_format": null,
                   "preserve_ephemeral": false, "deploy_boot_mode": "uefi",
                   "os_hash_algo": "sha256", "os_hash_value": sha256(&root)});
    let out = write(&agent, json!({"image_info": i, "configdrive": gz_b64(&iso)})).await.unwrap();
    let st = agent.pipeline.state().partition_uuids;
    assert_eq!(st["root uuid"], json!(fsuuid.to_string()));
    assert_eq!(
        st["partitions"],
        json!({"root": "/dev/sda4", "swap": "/dev/sda2", "configdrive": "/dev/sda3",
               "efi system partition": "/dev/sda1"})
    );
    let esp_uuid = st["efi system partition uuid"].as_str().unwrap().to_string();
    assert_eq!(
        out,
        json!(format!(
            "image (part) written to device /dev/sda root_uuid={fsuuid} efi_system_partition_uuid={esp_uuid}"
        ))
    );
    let f = std::fs::File::open(agent.disk()).unwrap();
    let ipa_image::disk::Table::Gpt(g) = ipa_image::disk::read_table(&f).unwrap() else { panic!() };
    assert_eq!(g.parts[0].type_guid.to_string(), ipa_image::disk::GUID_ESP);
    assert_eq!(g.parts[0].first * 512, MIB as u64);
    assert_eq!((g.parts[0].last + 1 - g.parts[0].first) * 512, 550 * MIB as u64);
    let root_part = &g.parts[3];
    assert_eq!((root_part.last + 1 - root_part.first) * 512, 10 * MIB as u64);
    let disk = agent.read_disk();
    let off = (root_part.first * 512) as usize;
    same(&disk[off..off + root.len()], &root);
    let cd = (g.parts[2].first * 512) as usize;
    same(&disk[cd..cd + iso.len()], &iso);
    // mkfs/mkswap went through the command runner.
    let lines = agent.runner.command_lines();
    assert!(lines.contains(&"mkfs -t vfat -n efi-part /dev/sda1".to_string()), "{lines:?}");
    assert!(lines.contains(&"mkswap -L swap1 /dev/sda2".to_string()), "{lines:?}");
}

#[tokio::test]
async fn install_bootloader_uefi_runs_efibootmgr_through_the_runner() {
    let srv = Server::start().await;
    let root = noise(MIB, 19);
    let url = srv.add("/root.img", root.clone(), Mode::Normal);
    let agent = Agent::new(600 * MIB as u64).await;
    let i = json!({"id": "bl", "urls": [url], "disk_format": "raw", "image_type": "partition",
                   "root_mb": 4, "swap_mb": 0, "ephemeral_mb": 0, "preserve_ephemeral": false,
                   "deploy_boot_mode": "uefi", "os_hash_algo": "sha256", "os_hash_value": sha256(&root)});
    write(&agent, json!({"image_info": i})).await.unwrap();
    let ext = ipa_core::registry::extensions()
        .into_iter()
        .find(|d| d.name == "image")
        .map(|d| (d.build)(&agent.services, &agent.hw))
        .unwrap();
    let p = params(json!({"root_uuid": "x", "target_boot_mode": "uefi"}));
    ext.execute(
        "install_bootloader",
        p,
        ipa_core::extension::CommandContext::detached("image.install_bootloader"),
    )
    .await
    .unwrap();
    let lines = agent.runner.command_lines();
    assert!(
        lines
            .iter()
            .any(|l| l
                == "efibootmgr -v -c -d /dev/sda -p 1 -w -L ironic1 -l \\EFI\\BOOT\\BOOTX64.EFI"),
        "{lines:?}"
    );
    // BIOS without enable_bios_bootloader_install fails, unless ignored.
    let p = params(json!({"root_uuid": "abc", "target_boot_mode": "bios"}));
    let ctx = ipa_core::extension::CommandContext::detached("image.install_bootloader");
    let err = ext.execute("install_bootloader", p, ctx.clone()).await.unwrap_err();
    assert_eq!(err.kind(), "InvalidImage");
    let p = params(
        json!({"root_uuid": "abc", "target_boot_mode": "bios", "ignore_bootloader_failure": true}),
    );
    assert_eq!(ext.execute("install_bootloader", p, ctx).await.unwrap(), Value::Null);
}
