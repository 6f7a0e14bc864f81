//! Test support: a real loopback HTTP server with Range support and failure modes, and an
//! agent harness whose install device is a file under a temp dir.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ipa_core::config::AgentConfig;
use ipa_core::error::AgentError;
use ipa_core::hardware::{
    HardwareManager, HardwareManagerVersion, HardwareManagers, HardwareSupport,
};
use ipa_core::os::{FakeRunner, RecordingPower};
use ipa_core::services::{AgentServices, RunMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How a path is served.
#[derive(Clone, Debug)]
pub enum Mode {
    /// 200 / 206 with Range support.
    Normal,
    /// The first full (non-range) response is cut after this many bytes.
    CutOnce(usize),
    /// Always this status.
    Status(u16),
    /// Ignore Range headers (always 200 full body).
    NoRange,
    /// `302 Found` to this location.
    Redirect(String),
}

#[derive(Default)]
struct State {
    files: HashMap<String, (Arc<Vec<u8>>, Mode)>,
    hits: HashMap<String, usize>,
    ranged: HashMap<String, usize>,
    cut_done: HashMap<String, bool>,
    heads: HashMap<String, Vec<String>>,
}

/// A loopback HTTP/1.1 server.
#[derive(Clone)]
pub struct Server {
    pub base: String,
    state: Arc<Mutex<State>>,
    conns: Arc<AtomicUsize>,
}

impl Server {
    pub async fn start() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        let conns = Arc::new(AtomicUsize::new(0));
        let c2 = conns.clone();
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = l.accept().await else { break };
                c2.fetch_add(1, Ordering::Relaxed);
                let st = st.clone();
                tokio::spawn(async move {
                    let _ = serve(sock, st).await;
                });
            }
        });
        Self { base, state, conns }
    }

    pub fn add(&self, path: &str, data: Vec<u8>, mode: Mode) -> String {
        self.state.lock().unwrap().files.insert(path.to_string(), (Arc::new(data), mode));
        format!("{}{}", self.base, path)
    }

    pub fn hits(&self, path: &str) -> usize {
        *self.state.lock().unwrap().hits.get(path).unwrap_or(&0)
    }

    pub fn ranged_hits(&self, path: &str) -> usize {
        *self.state.lock().unwrap().ranged.get(path).unwrap_or(&0)
    }

    /// Every request head received for `path` (request line and headers), in order.
    pub fn heads(&self, path: &str) -> Vec<String> {
        self.state.lock().unwrap().heads.get(path).cloned().unwrap_or_default()
    }
}

async fn serve(mut sock: tokio::net::TcpStream, st: Arc<Mutex<State>>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = sock.read(&mut b).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&b[..n]);
        if buf.len() > 65536 {
            return Ok(());
        }
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let mut lines = text.split("\r\n");
    let req = lines.next().unwrap_or("");
    let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range: Option<(usize, Option<usize>)> = None;
    for l in lines {
        if let Some(v) = l.strip_prefix("Range: bytes=").or_else(|| l.strip_prefix("range: bytes="))
        {
            let (a, b) = v.split_once('-').unwrap();
            range = Some((a.parse().unwrap(), b.parse().ok()));
        }
    }
    let found = {
        let mut s = st.lock().unwrap();
        *s.hits.entry(path.clone()).or_default() += 1;
        s.heads.entry(path.clone()).or_default().push(text.clone());
        if range.is_some() {
            *s.ranged.entry(path.clone()).or_default() += 1;
        }
        match s.files.get(&path).cloned() {
            None => None,
            Some((d, m)) => {
                let cut = match m {
                    Mode::CutOnce(n)
                        if range.is_none() && !s.cut_done.get(&path).copied().unwrap_or(false) =>
                    {
                        s.cut_done.insert(path.clone(), true);
                        Some(n)
                    }
                    _ => None,
                };
                Some((d, m, cut))
            }
        }
    };
    let Some((data, mode, cut)) = found else {
        sock.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await?;
        return Ok(());
    };
    if let Mode::Redirect(to) = &mode {
        let msg = format!(
            "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        sock.write_all(msg.as_bytes()).await?;
        return Ok(());
    }
    if let Mode::Status(code) = mode {
        let msg =
            format!("HTTP/1.1 {code} Oops\r\nContent-Length: 4\r\nConnection: close\r\n\r\noops");
        sock.write_all(msg.as_bytes()).await?;
        return Ok(());
    }
    let total = data.len();
    let (status, start, end) = match (range, &mode) {
        (Some((a, b)), m) if !matches!(m, Mode::NoRange) => {
            let e = b.unwrap_or(total - 1).min(total - 1);
            ("206 Partial Content", a, e + 1)
        }
        _ => ("200 OK", 0, total),
    };
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n",
        end - start
    );
    if status.starts_with("206") {
        head.push_str(&format!("Content-Range: bytes {start}-{}/{total}\r\n", end - 1));
    }
    head.push_str("\r\n");
    sock.write_all(head.as_bytes()).await?;
    let body = &data[start..end];
    let limit = cut.unwrap_or(body.len()).min(body.len());
    for chunk in body[..limit].chunks(256 * 1024) {
        sock.write_all(chunk).await?;
    }
    sock.flush().await?;
    Ok(())
}

/// A hardware manager whose install device is `/dev/sda`.
#[derive(Debug)]
pub struct DiskManager;

#[async_trait]
impl HardwareManager for DiskManager {
    fn name(&self) -> &str {
        "TestDiskManager"
    }
    fn version(&self) -> HardwareManagerVersion {
        HardwareManagerVersion { name: "test".into(), version: "1.0".into() }
    }
    async fn evaluate_hardware_support(&self) -> HardwareSupport {
        HardwareSupport::SERVICE_PROVIDER
    }
    async fn get_os_install_device(
        &self,
        _p: bool,
        _peers: &HardwareManagers,
    ) -> Result<String, AgentError> {
        Ok("/dev/sda".into())
    }
}

/// Services in sandbox mode with a disk file of `disk_bytes` at `dir/disks/sda`.
pub struct Agent {
    pub dir: tempfile::TempDir,
    pub services: Arc<AgentServices>,
    pub runner: Arc<FakeRunner>,
    /// The managers (one, answering `/dev/sda`).
    pub hw: Arc<HardwareManagers>,
    /// The pipeline as the agent builds it (its own image state, the managers above).
    pub pipeline: ipa_image::ImagePipeline,
}

impl Agent {
    pub async fn new(disk_bytes: u64) -> Self {
        Self::with_config(disk_bytes, |_| {}).await
    }

    pub async fn with_config(disk_bytes: u64, f: impl FnOnce(&mut AgentConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("disks")).unwrap();
        let disk = std::fs::File::create(dir.path().join("disks/sda")).unwrap();
        disk.set_len(disk_bytes).unwrap();
        let mut cfg = AgentConfig::default();
        cfg.image.image_download_connection_retries = 2;
        cfg.image.image_download_connection_retry_interval = 0;
        cfg.image.image_download_connection_timeout = 10;
        f(&mut cfg);
        let runner = Arc::new(FakeRunner::default());
        let services = AgentServices::new(
            cfg,
            figment::Figment::new(),
            RunMode::Sandbox { dir: dir.path().to_path_buf() },
            runner.clone(),
            Arc::new(RecordingPower::new(dir.path().join("power.log"))),
        );
        let hw = Arc::new(HardwareManagers::probe(vec![Arc::new(DiskManager)]).await.unwrap());
        let pipeline = ipa_image::ImagePipeline::new(services.clone(), hw.clone());
        Self { dir, services, runner, hw, pipeline }
    }

    pub fn disk(&self) -> PathBuf {
        self.dir.path().join("disks/sda")
    }

    pub fn read_disk(&self) -> Vec<u8> {
        std::fs::read(self.disk()).unwrap()
    }
}

pub fn sha256(d: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(d))
}

/// Deterministic pseudo-random bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// A GPT disk image of `size` bytes with one Linux partition (1 MiB .. end-1MiB) filled with
/// noise, plus zero blocks; built natively.
pub fn gpt_image(size: u64, seed: u64) -> Vec<u8> {
    let mut img = vec![0u8; size as usize];
    // Data: noise in 3 of every 4 64 KiB blocks after the first 2 MiB.
    let n = noise(size as usize, seed);
    for (i, chunk) in img.chunks_mut(65536).enumerate().skip(32) {
        if i % 4 != 3 {
            let off = i * 65536;
            chunk.copy_from_slice(&n[off..off + chunk.len()]);
        }
    }
    let p = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(p.path(), &img).unwrap();
    let f = std::fs::OpenOptions::new().read(true).write(true).open(p.path()).unwrap();
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
            last: size / 512 - 2048 - 1,
            attrs: 0,
            name: "root".into(),
        }],
    };
    ipa_image::disk::write_gpt(&f, &mut g, size).unwrap();
    drop(f);
    std::fs::read(p.path()).unwrap()
}

pub fn params(v: serde_json::Value) -> ipa_core::command::Params {
    v.as_object().unwrap().clone()
}

pub fn ctx() -> ipa_core::extension::CommandContext {
    ipa_core::extension::CommandContext::detached("standby.prepare_image")
}

/// A test that needs `name` fails (never skips) when it is missing.
pub fn require_tool(name: &str, package: &str) {
    assert!(has_tool(name), "{name} is required by this test: apt-get install {package}");
}

pub fn has_tool(name: &str) -> bool {
    std::process::Command::new(name).arg("--version").output().is_ok()
}

pub fn run(cmd: &str, args: &[&str]) {
    let st = std::process::Command::new(cmd).args(args).status().unwrap();
    assert!(st.success(), "{cmd} {args:?} failed");
}

pub fn tmpfile(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// Compare two byte slices without printing megabytes on failure.
pub fn same(a: &[u8], b: &[u8]) {
    assert_eq!(a.len(), b.len(), "length differs");
    if let Some(i) = a.iter().zip(b).position(|(x, y)| x != y) {
        panic!("bytes differ first at offset {i}");
    }
}

/// `image_info` for a raw, streamed image `img-1` at `url` with the sha256 of `data`.
pub fn info(url: &str, data: &[u8]) -> serde_json::Value {
    serde_json::json!({"id": "img-1", "urls": [url], "disk_format": "raw",
                       "stream_raw_images": true, "os_hash_algo": "sha256",
                       "os_hash_value": sha256(data)})
}

/// `write_image` with `image_info` on the agent's disk.
pub async fn write(
    agent: &Agent,
    image_info: serde_json::Value,
) -> Result<serde_json::Value, AgentError> {
    agent.pipeline.write_image(&params(serde_json::json!({"image_info": image_info})), &ctx()).await
}
