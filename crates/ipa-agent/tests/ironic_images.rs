//! Image formats end to end with a **real, unmodified Ironic 39** (see `ironic_e2e.rs` and
//! `ipa_ironic::testing`): direct deploys of a small whole-disk GPT image served as raw, qcow2
//! (`qemu-img convert`) and zstd (`zstd` CLI), each with and without a config drive that Ironic
//! builds itself from `{meta_data, user_data}`, and a deploy with a wrong sha256 that must fail
//! with IPA's `ImageChecksumError` text while the disk's first MiB stays zeroed. After every
//! successful deploy the simulated disk is read back: the image's partition data at the start,
//! the backup GPT at the end of the disk, and (with a config drive) a `config-2` ISO partition
//! at the end holding the user data. One Ironic, one fresh simulated machine per flow.
//!
//! After every deploy the agent's `GET /metrics` (no token) is scraped: a successful deploy
//! shows the image bytes written, one successful write and heartbeats Ironic accepted; the
//! wrong checksum shows one checksum failure. The scrape after the raw deploy is kept in
//! `<target>/tmp/metrics-after-deploy.txt`.
#![cfg(feature = "transport-rest")]

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipa_ironic::testing::{FileServer, IronicOptions, IronicServer, free_port, http};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(180);
const SECTOR: u64 = 512;
const MIB: u64 = 1 << 20;
/// Image: 3 MiB, GPT, one ESP at LBA 2048..4095 (1 MiB .. 2 MiB).
const IMAGE_BYTES: u64 = 3 * MIB;
const PART_FIRST: u64 = 2048;
const PART_LAST: u64 = 4095;
const DISK_BYTES: u64 = 8 << 30;
const ESP_TYPE: [u8; 16] = [
    0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b,
];
const USER_DATA_MARK: &str = "ipa-images-e2e-user-data-marker";

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn gpt_header(
    current: u64,
    backup: u64,
    entries_lba: u64,
    last_usable: u64,
    entries: &[u8],
) -> Vec<u8> {
    let mut h = vec![0u8; SECTOR as usize];
    h[0..8].copy_from_slice(b"EFI PART");
    h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    h[12..16].copy_from_slice(&92u32.to_le_bytes());
    h[24..32].copy_from_slice(&current.to_le_bytes());
    h[32..40].copy_from_slice(&backup.to_le_bytes());
    h[40..48].copy_from_slice(&34u64.to_le_bytes());
    h[48..56].copy_from_slice(&last_usable.to_le_bytes());
    h[56..72].copy_from_slice(&[0x5a; 16]); // disk GUID
    h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
    h[80..84].copy_from_slice(&128u32.to_le_bytes());
    h[84..88].copy_from_slice(&128u32.to_le_bytes());
    h[88..92].copy_from_slice(&crc32(entries).to_le_bytes());
    let c = crc32(&h[..92]);
    h[16..20].copy_from_slice(&c.to_le_bytes());
    h
}

/// A whole-disk image written natively: protective MBR, primary and backup GPT, one EFI
/// system partition filled with a pattern (so a misplaced byte shows).
fn whole_disk_image() -> Vec<u8> {
    let mut img = vec![0u8; IMAGE_BYTES as usize];
    let last = IMAGE_BYTES / SECTOR - 1;
    let e = 446;
    img[e + 4] = 0xee;
    img[e + 8..e + 12].copy_from_slice(&1u32.to_le_bytes());
    img[e + 12..e + 16].copy_from_slice(&(last as u32).to_le_bytes());
    img[510] = 0x55;
    img[511] = 0xaa;
    let mut entries = vec![0u8; 128 * 128];
    entries[0..16].copy_from_slice(&ESP_TYPE);
    entries[16..32].copy_from_slice(&[
        0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x48, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
        0x01,
    ]);
    entries[32..40].copy_from_slice(&PART_FIRST.to_le_bytes());
    entries[40..48].copy_from_slice(&PART_LAST.to_le_bytes());
    for (i, c) in "esp".encode_utf16().enumerate() {
        entries[56 + 2 * i..58 + 2 * i].copy_from_slice(&c.to_le_bytes());
    }
    let last_usable = last - 33;
    let s = SECTOR as usize;
    img[s..2 * s].copy_from_slice(&gpt_header(1, last, 2, last_usable, &entries));
    img[2 * s..34 * s].copy_from_slice(&entries);
    let backup_entries = (last - 32) as usize;
    img[backup_entries * s..(backup_entries + 32) * s].copy_from_slice(&entries);
    img[last as usize * s..].copy_from_slice(&gpt_header(
        last,
        1,
        last - 32,
        last_usable,
        &entries,
    ));
    let start = (PART_FIRST * SECTOR) as usize;
    let end = ((PART_LAST + 1) * SECTOR) as usize;
    for (i, b) in img[start..end].iter_mut().enumerate() {
        *b = (i % 253) as u8 ^ 0x5c;
    }
    img
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn machine_toml(mac: &str, ip: &str) -> String {
    format!(
        r#"hostname = "img-{ip}"
[cpu]
model_name = "Simulated CPU"
count = 2
[memory]
total = "4GiB"
[[interfaces]]
name = "eno1"
mac_address = "{mac}"
ipv4_address = "{ip}"
[[disks]]
name = "/dev/vda"
size = "8GiB"
[boot]
current_boot_mode = "uefi"
pxe_interface = "{mac}"
"#
    )
}

/// One agent boot on a fresh simulated machine; stopped (by PID) when dropped.
struct Agent {
    child: Child,
    log: PathBuf,
    sandbox: PathBuf,
    port: u16,
}

impl Agent {
    fn boot(dir: &Path, mac: &str, ip: &str, api: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let machine = dir.join("machine.toml");
        std::fs::write(&machine, machine_toml(mac, ip)).unwrap();
        let sandbox = dir.join("sandbox");
        let port = free_port();
        let conf = dir.join("agent.toml");
        std::fs::write(
            &conf,
            format!(
                "api_url = \"{api}\"\nlisten_host = \"127.0.0.1\"\nlisten_port = {port}\n\
                 advertise_port = {port}\nenable_auto_tls = false\nmachine = \"{}\"\n\
                 sandbox = \"{}\"\nkernel_cmdline_path = \"/dev/null\"\nlookup_timeout = 120\n\
                 debug = true\n",
                machine.display(),
                sandbox.display()
            ),
        )
        .unwrap();
        let log = dir.join("agent.log");
        let out = File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ipa-agent"))
            .arg("--config")
            .arg(&conf)
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Self { child, log, sandbox, port }
    }

    /// `GET /metrics` without a token.
    fn metrics(&self) -> String {
        let (code, body) = http(self.port, "GET", "/metrics", &[], None).unwrap();
        assert_eq!(code, 200, "{body}");
        body
    }

    fn log_tail(&self, n: usize) -> String {
        let t = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    fn disk(&self) -> File {
        File::open(self.sandbox.join("disks/vda")).unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        if self.child.try_wait().ok().flatten().is_none() {
            // SAFETY: signalling the agent process this test started, by its PID.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(10) {
                if self.child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // SAFETY: as above; the child may already be gone, which is harmless.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = self.child.wait();
    }
}

/// The value of `series` (name and labels exactly as written) in a scrape.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// What the agent's metrics must say after a deploy that reached `active`.
fn check_metrics_after_deploy(name: &str, text: &str) {
    let get = |s: &str| sample(text, s).unwrap_or_else(|| panic!("{name}: no {s} in:\n{text}"));
    assert!(get("ipa_image_bytes_written_total") > 0.0, "{name}: {text}");
    assert_eq!(get("ipa_image_writes_total{result=\"success\"}"), 1.0, "{name}: {text}");
    assert_eq!(get("ipa_image_checksum_failures_total"), 0.0, "{name}");
    assert!(get("ipa_image_write_throughput_bytes_per_second") > 0.0, "{name}");
    let failures: f64 = ["conflict", "error"]
        .iter()
        .map(|r| get(&format!("ipa_heartbeat_failures_total{{reason=\"{r}\"}}")))
        .sum();
    let accepted = get("ipa_heartbeat_attempts_total") - failures;
    assert!(accepted > 0.0, "{name}: no heartbeat accepted by Ironic: {text}");
    assert!(get("ipa_heartbeat_latency_seconds_count") >= 1.0, "{name}");
    assert!(get("ipa_heartbeat_seconds_since_last_success") >= 0.0, "{name}");
    let deploy = "ipa_commands_total{command=\"deploy.execute_deploy_step\",status=\"SUCCEEDED\"}";
    assert!(get(deploy) >= 1.0, "{name}: {text}");
    assert!(get("ipa_process_resident_memory_bytes") > 0.0, "{name}");
}

fn read_at(f: &File, offset: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    f.read_exact_at(&mut b, offset).unwrap();
    b
}

/// (first LBA, last LBA, type GUID bytes) of every used GPT entry of the primary table.
fn gpt_partitions(f: &File) -> Vec<(u64, u64, [u8; 16])> {
    let h = read_at(f, SECTOR, SECTOR as usize);
    assert_eq!(&h[..8], b"EFI PART", "primary GPT header present");
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    let entries_lba = u64_at(&h, 72);
    let n = u32::from_le_bytes(h[80..84].try_into().unwrap()) as usize;
    let size = u32::from_le_bytes(h[84..88].try_into().unwrap()) as usize;
    let entries = read_at(f, entries_lba * SECTOR, n * size);
    assert_eq!(
        crc32(&entries),
        u32::from_le_bytes(h[88..92].try_into().unwrap()),
        "partition entry array CRC"
    );
    entries
        .chunks(size)
        .filter(|e| e[..16].iter().any(|&b| b != 0))
        .map(|e| (u64_at(e, 32), u64_at(e, 40), e[..16].try_into().unwrap()))
        .collect()
}

/// What a successful deploy must leave on the simulated disk.
fn check_disk(agent: &Agent, image: &[u8], configdrive: bool) {
    let f = agent.disk();
    let start = (PART_FIRST * SECTOR) as usize;
    let end = ((PART_LAST + 1) * SECTOR) as usize;
    assert!(
        read_at(&f, start as u64, end - start) == image[start..end],
        "the image's partition data is at the start of the disk"
    );
    let lbas = DISK_BYTES / SECTOR;
    let backup = read_at(&f, (lbas - 1) * SECTOR, SECTOR as usize);
    assert_eq!(&backup[..8], b"EFI PART", "backup GPT moved to the end of the disk");
    let parts = gpt_partitions(&f);
    assert_eq!(parts[0], (PART_FIRST, PART_LAST, ESP_TYPE), "{parts:?}");
    if !configdrive {
        assert_eq!(parts.len(), 1, "no config drive partition: {parts:?}");
        return;
    }
    assert_eq!(parts.len(), 2, "a config drive partition was added: {parts:?}");
    let (first, last, _) = parts[1];
    assert!(last >= lbas - 34 - 2048 && last < lbas - 33, "config drive at the end: {parts:?}");
    let pvd = read_at(&f, first * SECTOR + 0x8000, 2048);
    assert_eq!(&pvd[1..6], b"CD001", "ISO 9660 volume descriptor");
    assert_eq!(String::from_utf8_lossy(&pvd[40..72]).trim(), "config-2");
    let iso = read_at(&f, first * SECTOR, 2 * MIB as usize);
    assert!(
        iso.windows(USER_DATA_MARK.len()).any(|w| w == USER_DATA_MARK.as_bytes()),
        "the user data Ironic put in the config drive is on the disk"
    );
}

struct Flow {
    name: &'static str,
    file: &'static str,
    disk_format: &'static str,
    configdrive: bool,
    bad_checksum: bool,
}

#[test]
fn real_ironic_deploys_raw_qcow2_and_zstd_images_with_and_without_config_drive() {
    if IronicServer::venv_or_skip("real-Ironic image test").is_none() {
        return;
    }
    let t_all = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let files = work.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let image = whole_disk_image();
    std::fs::write(files.join("disk.raw"), &image).unwrap();
    run(Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(files.join("disk.raw"))
        .arg(files.join("disk.qcow2")));
    run(Command::new("zstd")
        .args(["-q", "-19", "-o"])
        .arg(files.join("disk.raw.zst"))
        .arg(files.join("disk.raw")));
    let fs = FileServer::start(&files).unwrap();
    let ir =
        IronicServer::start(&IronicOptions { require_tls: false, heartbeat_timeout: 30 }).unwrap();
    let api = ir.url();
    let mut times: Vec<(String, Duration)> = vec![("ironic start".into(), ir.startup)];

    let flows = [
        Flow {
            name: "bad checksum",
            file: "disk.raw",
            disk_format: "raw",
            configdrive: false,
            bad_checksum: true,
        },
        Flow {
            name: "raw",
            file: "disk.raw",
            disk_format: "raw",
            configdrive: false,
            bad_checksum: false,
        },
        Flow {
            name: "raw+configdrive",
            file: "disk.raw",
            disk_format: "raw",
            configdrive: true,
            bad_checksum: false,
        },
        Flow {
            name: "qcow2",
            file: "disk.qcow2",
            disk_format: "qcow2",
            configdrive: false,
            bad_checksum: false,
        },
        Flow {
            name: "qcow2+configdrive",
            file: "disk.qcow2",
            disk_format: "qcow2",
            configdrive: true,
            bad_checksum: false,
        },
        Flow {
            name: "zstd",
            file: "disk.raw.zst",
            disk_format: "raw",
            configdrive: false,
            bad_checksum: false,
        },
        Flow {
            name: "zstd+configdrive",
            file: "disk.raw.zst",
            disk_format: "raw",
            configdrive: true,
            bad_checksum: false,
        },
    ];
    for (i, flow) in flows.iter().enumerate() {
        let t = Instant::now();
        let mac = format!("52:54:00:1a:9e:{:02x}", i + 1);
        let ip = format!("192.0.2.{}", 40 + i);
        let uuid = ir
            .create_node(
                json!({"name": format!("img-{i}"), "automated_clean": false,
                       "properties": {"vendor": "lenovo", "capabilities": "boot_mode:uefi"}}),
                &mac,
            )
            .unwrap();
        ir.transition(&uuid, "manage", &["manageable"], WAIT).unwrap();
        ir.transition(&uuid, "provide", &["available"], WAIT).unwrap();
        let served = files.join(flow.file);
        let hash = if flow.bad_checksum {
            // The sha256 of something else: well formed, wrong.
            sha256(&files.join("disk.qcow2"))
        } else {
            sha256(&served)
        };
        ir.patch_node(
            &uuid,
            json!([
                {"op": "add", "path": "/instance_info/image_source", "value": fs.url(flow.file)},
                {"op": "add", "path": "/instance_info/image_os_hash_algo", "value": "sha256"},
                {"op": "add", "path": "/instance_info/image_os_hash_value", "value": hash},
                {"op": "add", "path": "/instance_info/image_disk_format", "value": flow.disk_format},
            ]),
        )
        .unwrap();
        let mut req = json!({"target": "active"});
        if flow.configdrive {
            req["configdrive"] = json!({
                "meta_data": {"uuid": uuid, "hostname": format!("img-{i}"), "name": format!("img-{i}")},
                "user_data": format!("#cloud-config\n# {USER_DATA_MARK}\n"),
            });
        }
        ir.provision(&uuid, req).unwrap();
        ir.wait_state(&uuid, &["wait call-back"], WAIT).unwrap();
        let agent = Agent::boot(&work.path().join(format!("m{i}")), &mac, &ip, &api);
        let want: &[&str] = if flow.bad_checksum { &["deploy failed"] } else { &["active"] };
        let node: Value = ir.wait_state(&uuid, want, WAIT).unwrap_or_else(|e| {
            panic!("{}: {e}\n--- agent log tail ---\n{}", flow.name, agent.log_tail(60))
        });
        if flow.bad_checksum {
            let last_error = node["last_error"].as_str().unwrap_or_default();
            let expected = format!(
                "Image failed to verify against checksum. \
                 location: disk.raw; image ID: {}; image checksum: {hash}; verification \
                 checksum: {}",
                fs.url("disk.raw"),
                sha256(&served)
            );
            assert!(last_error.contains(&expected), "last_error: {last_error}\nwant: {expected}");
            let head = read_at(&agent.disk(), 0, MIB as usize);
            assert!(head.iter().all(|&b| b == 0), "the first MiB of the disk stays zeroed");
            // Ironic collected the agent's logs after the failure.
            let logs: Vec<PathBuf> = std::fs::read_dir(ir.dir.path().join("deploy-logs"))
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            assert!(
                logs.iter().any(|p| p.to_string_lossy().contains(&uuid)),
                "log.collect_system_logs answered and Ironic stored the archive: {logs:?}\n{}",
                ir.log_problems(20)
            );
            let text = agent.metrics();
            assert_eq!(sample(&text, "ipa_image_checksum_failures_total"), Some(1.0), "{text}");
            assert_eq!(sample(&text, "ipa_image_writes_total{result=\"failure\"}"), Some(1.0));
        } else {
            check_disk(&agent, &image, flow.configdrive);
            let text = agent.metrics();
            check_metrics_after_deploy(flow.name, &text);
            if flow.name == "raw" {
                let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("metrics-after-deploy.txt");
                std::fs::write(&out, &text).unwrap();
                eprintln!("[ironic images] metrics after the raw deploy: {}", out.display());
            }
        }
        drop(agent);
        times.push((flow.name.into(), t.elapsed()));
    }
    times.push(("total".into(), t_all.elapsed()));
    let summary: Vec<String> =
        times.iter().map(|(n, d)| format!("{n}={:.1}s", d.as_secs_f64())).collect();
    eprintln!("[ironic images] {}", summary.join(" "));
}
