//! Image pipeline benchmark: serves images from a loopback HTTP server and writes them into a
//! file-backed target, next to `curl -s URL | dd of=target bs=4M oflag=direct` in the same run.
//!
//! ```text
//! cargo run --release -p ipa-image --example bench -- [--size-gib 2] [--dir /tmp/ipa-bench]
//!     [--formats raw,qcow2,zstd,xz,gzip] [--runs 1] [--readback]
//! ```
//! Each pipeline run happens in a child process so its peak RSS (VmHWM) is its own.
//! `--readback` turns on read-back verification (its time is included in "ours").

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use ipa_http::download::{Download, DownloadClient, HttpOptions};
use ipa_image::checksum::{Algo, Expected};
use ipa_image::pipeline::{FormatPolicy, StreamSpec, stream_image};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

const MIB: u64 = 1 << 20;

fn vmhwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

/// Raw GPT disk: 64 MiB blocks, 3 of 4 pseudo-random, every 4th zeros (as ipa-baselines.md).
fn make_raw(path: &Path, size: u64) {
    let mut f = std::io::BufWriter::with_capacity(8 << 20, std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut block = vec![0u8; 64 << 20];
    for i in 0..size / (64 * MIB) {
        if i % 4 == 3 {
            block.fill(0);
        } else {
            for c in block.chunks_exact_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                c.copy_from_slice(&x.to_le_bytes());
            }
        }
        f.write_all(&block).unwrap();
    }
    drop(f);
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    ipa_image::disk::write_protective_mbr(&f, size).unwrap();
    let mut g = ipa_image::disk::Gpt {
        disk_guid: uuid::Uuid::new_v4(),
        alternate_lba: 0,
        first_usable: 34,
        last_usable: 0,
        num_entries: 128,
        entry_size: 128,
        parts: vec![ipa_image::disk::GptPart {
            number: 1,
            type_guid: uuid::Uuid::parse_str(ipa_image::disk::GUID_LINUX).unwrap(),
            guid: uuid::Uuid::new_v4(),
            first: 2048,
            last: size / 512 - 2048,
            attrs: 0,
            name: "root".into(),
        }],
    };
    ipa_image::disk::write_gpt(&f, &mut g, size).unwrap();
}

fn sh(cmd: &str) -> f64 {
    let t = Instant::now();
    let st = Command::new("bash").arg("-c").arg(cmd).status().unwrap();
    assert!(st.success(), "{cmd} failed");
    t.elapsed().as_secs_f64()
}

fn sha256_file(p: &Path) -> String {
    let out = Command::new("openssl").args(["dgst", "-sha256", "-r"]).arg(p).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

async fn serve(dir: PathBuf) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { break };
            let dir = dir.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut n = 0;
                while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => n += k,
                    }
                }
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = req
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("/")
                    .trim_start_matches('/')
                    .to_string();
                let start: u64 = req
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase().strip_prefix("range: bytes=").map(str::to_string)
                    })
                    .and_then(|v| v.split('-').next().and_then(|a| a.parse().ok()))
                    .unwrap_or(0);
                let end_req: Option<u64> = req
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase().strip_prefix("range: bytes=").map(str::to_string)
                    })
                    .and_then(|v| v.split('-').nth(1).and_then(|a| a.trim().parse().ok()));
                let Ok(mut f) = tokio::fs::File::open(dir.join(&path)).await else {
                    let _ = s.write_all(b"HTTP/1.1 404 NF\r\nContent-Length: 0\r\n\r\n").await;
                    return;
                };
                let total = f.metadata().await.unwrap().len();
                let end = end_req.map(|e| e + 1).unwrap_or(total).min(total);
                let ranged = req.to_ascii_lowercase().contains("range: bytes=");
                let mut head = format!(
                    "HTTP/1.1 {}\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n",
                    if ranged { "206 Partial Content" } else { "200 OK" },
                    end - start
                );
                if ranged {
                    head.push_str(&format!("Content-Range: bytes {start}-{}/{total}\r\n", end - 1));
                }
                head.push_str("\r\n");
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                f.seek(std::io::SeekFrom::Start(start)).await.unwrap();
                let mut left = end - start;
                let mut chunk = vec![0u8; 1 << 20];
                while left > 0 {
                    let k = (left as usize).min(chunk.len());
                    let r = f.read(&mut chunk[..k]).await.unwrap();
                    if r == 0 || s.write_all(&chunk[..r]).await.is_err() {
                        return;
                    }
                    left -= r as u64;
                }
            });
        }
    });
    base
}

async fn one(url: String, target: PathBuf, sha: String, readback: bool) {
    let client = Arc::new(DownloadClient::new(HttpOptions::default()).unwrap());
    let dl = Download::new(client, "bench", vec![url.clone()]);
    let spec = StreamSpec {
        image_id: "bench".into(),
        location: url,
        expected: Expected { algo: Algo::Sha256, value: sha },
        policy: FormatPolicy::default(),
        target,
        device: "bench-target".into(),
        base: 0,
        limit: None,
        readback,
        before_readback: None,
        metrics: None,
    };
    let t = Instant::now();
    let out = stream_image(dl, spec, None).await.unwrap();
    let rb = out.readback.as_ref().map(|r| r.rate() / 1e6).unwrap_or(0.0);
    println!(
        "{{\"secs\": {}, \"vmhwm_kib\": {}, \"image_size\": {}, \"downloaded\": {}, \"direct\": {}, \"random_reads\": {}, \"readback_mb_s\": {rb}}}",
        t.elapsed().as_secs_f64(),
        vmhwm_kib(),
        out.image_size,
        out.downloaded,
        out.direct,
        out.random_reads
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--one") {
        one(args[2].clone(), PathBuf::from(&args[3]), args[4].clone(), args.len() > 5).await;
        return;
    }
    let size = arg(&args, "--size-gib", "2").parse::<u64>().unwrap() << 30;
    let dir = PathBuf::from(arg(&args, "--dir", "/tmp/ipa-bench"));
    let runs: usize = arg(&args, "--runs", "1").parse().unwrap();
    let formats = arg(&args, "--formats", "raw,qcow2,zstd,xz,gzip");
    let readback = args.iter().any(|a| a == "--readback");
    std::fs::create_dir_all(&dir).unwrap();
    let gib = size >> 30;
    let raw = dir.join(format!("img{gib}.raw"));
    if !raw.exists() || std::fs::metadata(&raw).unwrap().len() != size {
        eprintln!("generating {}", raw.display());
        make_raw(&raw, size);
    }
    let r = raw.display();
    let mk = |name: String, cmd: String| {
        let p = dir.join(&name);
        if !p.exists() {
            eprintln!("generating {}", p.display());
            sh(&cmd);
        }
        name
    };
    let mut images = Vec::new();
    for f in formats.split(',') {
        let name = match f {
            "raw" => format!("img{gib}.raw"),
            "qcow2" => mk(
                format!("img{gib}.qcow2"),
                format!("qemu-img convert -f raw -O qcow2 {r} {}/img{gib}.qcow2", dir.display()),
            ),
            "zstd" => mk(
                format!("img{gib}.raw.zst"),
                format!("zstd -q -1 -T0 -f {r} -o {}/img{gib}.raw.zst", dir.display()),
            ),
            "xz" => mk(
                format!("img{gib}.raw.xz"),
                format!("xz -0 -T0 -k -c {r} > {}/img{gib}.raw.xz", dir.display()),
            ),
            "gzip" => mk(
                format!("img{gib}.raw.gz"),
                format!("gzip -1 -c {r} > {}/img{gib}.raw.gz", dir.display()),
            ),
            other => panic!("unknown format {other}"),
        };
        images.push((f.to_string(), name));
    }
    let base = serve(dir.clone()).await;
    let target = dir.join("target.img");
    let exe = std::env::current_exe().unwrap();
    println!(
        "| image | run | ours s | ours MB/s | peak RSS MiB | O_DIRECT | random reads | curl\\|dd s | curl\\|dd MB/s | ours/curl\\|dd speed | curl\\|tee(openssl)\\|dd MB/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (fmt, name) in &images {
        let file = dir.join(name);
        let sha = sha256_file(&file);
        let url = format!("{base}/{name}");
        for run in 1..=runs {
            // Fresh sparse target of the disk size.
            let _ = std::fs::remove_file(&target);
            std::fs::File::create(&target).unwrap().set_len(size).unwrap();
            sh(&format!("cat {} > /dev/null", file.display()));
            let exe2 = exe.clone();
            let (u2, t2, s2) = (url.clone(), target.clone(), sha.clone());
            let out = tokio::task::spawn_blocking(move || {
                let mut c = Command::new(exe2);
                c.args(["--one", &u2, t2.to_str().unwrap(), &s2]);
                if readback {
                    c.arg("--readback");
                }
                c.output().unwrap()
            })
            .await
            .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let ours = j["secs"].as_f64().unwrap();
            let virt = j["image_size"].as_u64().unwrap() as f64;
            // Check the written bytes (GPT backup header area skipped).
            let cmp = Command::new("cmp")
                .args(["-n", &(size - MIB).to_string()])
                .arg(&raw)
                .arg(&target)
                .status()
                .unwrap();
            assert!(cmp.success(), "target differs from the raw image for {fmt}");
            let _ = std::fs::remove_file(&target);
            std::fs::File::create(&target).unwrap().set_len(size).unwrap();
            let u = url.clone();
            let t = target.display().to_string();
            let curl = tokio::task::spawn_blocking(move || {
                sh(&format!("curl -s {u} | dd of={t} bs=4M iflag=fullblock oflag=direct conv=notrunc status=none"))
            })
            .await
            .unwrap();
            let openssl = if fmt == "raw" {
                let u = url.clone();
                let t = target.display().to_string();
                let s = tokio::task::spawn_blocking(move || {
                    sh(&format!(
                        "curl -s {u} | tee >(openssl dgst -sha256 >/dev/null) | dd of={t} bs=4M iflag=fullblock oflag=direct conv=notrunc status=none"
                    ))
                })
                .await
                .unwrap();
                format!("{:.0}", virt / s / 1e6)
            } else {
                "–".into()
            };
            let file_len = std::fs::metadata(&file).unwrap().len() as f64;
            println!(
                "| {fmt} {gib} GiB | {run} | {ours:.2} | {:.0} | {:.1} | {} | {} | {curl:.2} | {:.0} | {:.2} | {openssl} |",
                virt / ours / 1e6,
                j["vmhwm_kib"].as_f64().unwrap() / 1024.0,
                j["direct"],
                j["random_reads"],
                file_len / curl / 1e6,
                curl / ours,
            );
            if readback {
                println!(
                    "|   read-back verification: {:.0} MB/s |",
                    j["readback_mb_s"].as_f64().unwrap()
                );
            }
        }
    }
    let _ = std::fs::remove_file(&target);
    println!(
        "\nbytes staged in RAM or on disk by the pipeline: 0 (no temporary files; bounded channels)"
    );
    println!(
        "curl|dd writes the file as served (compressed/qcow2 bytes are not decoded): it is a transfer reference only."
    );
}
