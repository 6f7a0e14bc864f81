//! Erasure: method choice with scripted tools (FakeRunner), native overwrite and read-back
//! verification on file-backed disks in a temporary sandbox, metadata wipe, steps.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use async_trait::async_trait;
use ipa_core::attest::{CheckOptions, EraseReport, Expect, Outcome, check};
use ipa_core::extension::CommandContext;
use ipa_core::hardware::{BlockDevice, HardwareManager, HardwareManagers, StepCall, StepKind};
use ipa_core::os::{
    CommandRunner, ExecError, ExecOutput, ExecRequest, FakeResponse, FakeRunner, SandboxRunner,
};
use ipa_core::{AgentError, RunMode};
use ipa_hw_generic::erase::native::{DeviceWriter, OverwriteOptions, SkippingWriter};
use ipa_hw_generic::erase::nvme::{ControllerId, FakeMedia, FakeNvme};
use ipa_hw_generic::{
    EraseError, EraseOutcome, ErasePolicy, Eraser, GenericHardwareManager, GenericOptions, Machine,
};
use serde_json::{Value, json};

const MIB: u64 = 1 << 20;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A disk file of `size` bytes filled with `byte`.
fn disk(sandbox: &Path, name: &str, size: u64, byte: u8) -> PathBuf {
    let dir = sandbox.join("disks");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    let mut f = std::fs::File::create(&p).unwrap();
    let block = vec![byte; MIB as usize];
    let mut left = size;
    while left > 0 {
        let n = left.min(MIB);
        f.write_all(&block[..n as usize]).unwrap();
        left -= n;
    }
    p
}

fn read_at(p: &Path, off: u64, len: usize) -> Vec<u8> {
    let mut f = std::fs::File::open(p).unwrap();
    f.seek(SeekFrom::Start(off)).unwrap();
    let mut b = vec![0; len];
    f.read_exact(&mut b).unwrap();
    b
}

fn all_zero(p: &Path) -> bool {
    std::fs::read(p).unwrap().iter().all(|b| *b == 0)
}

fn eraser(sandbox: &Path, runner: Arc<dyn CommandRunner>, tools: bool, node: Value) -> Eraser {
    eraser_with(
        sandbox,
        runner,
        tools,
        node,
        FakeNvme::new(ControllerId::default(), FakeMedia::Unchanged),
    )
}

fn eraser_with(
    sandbox: &Path,
    runner: Arc<dyn CommandRunner>,
    tools: bool,
    node: Value,
    nvme: FakeNvme,
) -> Eraser {
    Eraser {
        runner,
        nvme: Arc::new(nvme),
        mode: RunMode::Sandbox { dir: sandbox.to_path_buf() },
        machine: Machine::at(sandbox.join("no-such-root")),
        tools,
        policy: ErasePolicy::from_node(&node),
        overwrite: OverwriteOptions::default(),
        writer: Arc::new(DeviceWriter),
        samples: 8,
        sanitize_poll: (Duration::from_millis(5), Duration::from_millis(500)),
    }
}

fn dev(name: &str) -> BlockDevice {
    BlockDevice { name: name.into(), logical_sectors: Some(512), ..Default::default() }
}

async fn erase(e: &Eraser, name: &str) -> Result<EraseOutcome, EraseError> {
    e.erase_device(&dev(name), None, &Arc::new(AtomicBool::new(false))).await
}

/// A runner that scripts like FakeRunner and, for commands matching `trigger`, also fills the
/// sandbox disk with `byte` (what a drive's own erase would do to the media).
#[derive(Clone)]
struct MediaRunner {
    fake: FakeRunner,
    trigger: &'static str,
    file: PathBuf,
    byte: u8,
}

#[async_trait]
impl CommandRunner for MediaRunner {
    async fn run(&self, req: ExecRequest) -> Result<ExecOutput, ExecError> {
        if req.args.iter().any(|a| a == self.trigger) {
            let len = std::fs::metadata(&self.file).unwrap().len();
            disk(self.file.parent().unwrap().parent().unwrap(), "x", 0, 0);
            std::fs::write(&self.file, vec![self.byte; len as usize]).unwrap();
        }
        self.fake.run(req).await
    }
    async fn exists(&self, program: &str) -> bool {
        self.fake.exists(program).await
    }
}

const HDPARM: &str = "\n/dev/sda:\n\nATA device, with non-removable media\nSecurity: \n\tMaster password revision code = 65534\n\t\tsupported\n\tnot\tenabled\n\tnot\tlocked\n\tnot\tfrozen\n\tnot\texpired: security count\n\t\tsupported: enhanced erase\n\t2min for SECURITY ERASE UNIT.\nLogical Unit WWN Device Identifier: 5002538e40000000\n";

fn hdparm_with_password() -> String {
    HDPARM.replace("\tnot\tenabled", "\t\tenabled")
}

#[tokio::test]
async fn native_overwrite_zeroes_the_whole_disk_and_verifies() {
    let sb = tempfile::tempdir().unwrap();
    let p = disk(sb.path(), "sda", 24 * MIB + 4608, 0xAB); // unaligned tail too
    let e = eraser(sb.path(), Arc::new(FakeRunner::new()), false, json!({}));
    match erase(&e, "/dev/sda").await.unwrap() {
        EraseOutcome::Erased { method, .. } => assert!(method.contains("zero pass"), "{method}"),
        other => panic!("{other:?}"),
    }
    assert!(all_zero(&p));
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 24 * MIB + 4608, "size unchanged");
}

#[tokio::test]
async fn verification_catches_a_writer_that_skips_a_region() {
    let sb = tempfile::tempdir().unwrap();
    let p = disk(sb.path(), "sda", 16 * MIB, 0xCD);
    let mut e = eraser(sb.path(), Arc::new(FakeRunner::new()), false, json!({}));
    // The (deliberately buggy) writer leaves 4 KiB at offset 8 KiB: the head sample sees it.
    e.overwrite = OverwriteOptions { workers: 2 };
    e.writer = Arc::new(SkippingWriter { skip: 8192..12288 });
    let err = erase(&e, "/dev/sda").await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, EraseError::Erase { .. }), "{err:?}");
    assert!(msg.contains("verification failed") && msg.contains("8192"), "{msg}");
    assert_eq!(read_at(&p, 8192, 1), [0xCD], "the planted block really was left");
    // The same miss in the last MiB is caught by the tail sample.
    disk(sb.path(), "sda", 16 * MIB, 0xCD);
    e.writer = Arc::new(SkippingWriter { skip: 16 * MIB - 4096..16 * MIB });
    assert!(erase(&e, "/dev/sda").await.unwrap_err().to_string().contains("verification"));
    // With the real writer everything is zero and verification passes.
    e.writer = Arc::new(DeviceWriter);
    erase(&e, "/dev/sda").await.unwrap();
    assert!(all_zero(&p));
}

#[tokio::test]
async fn random_passes_without_zeroize_are_verified_against_the_pattern() {
    let sb = tempfile::tempdir().unwrap();
    let p = disk(sb.path(), "sda", 8 * MIB, 0);
    let node = json!({"driver_internal_info": {
        "agent_erase_devices_iterations": 2, "agent_erase_devices_zeroize": false}});
    let e = eraser(sb.path(), Arc::new(FakeRunner::new()), false, node);
    erase(&e, "/dev/sda").await.unwrap();
    let data = std::fs::read(&p).unwrap();
    assert!(data.iter().filter(|b| **b == 0).count() < data.len() / 100, "random content");
    // iterations 0 + zeroize false writes nothing.
    let node = json!({"driver_internal_info": {
        "agent_erase_devices_iterations": 0, "agent_erase_devices_zeroize": "false"}});
    let e = eraser(sb.path(), Arc::new(FakeRunner::new()), false, node);
    match erase(&e, "/dev/sda").await.unwrap() {
        EraseOutcome::Skipped(why) => assert!(why.contains("nothing written"), "{why}"),
        other => panic!("claimed an erase that wrote nothing: {other:?}"),
    }
    assert_eq!(std::fs::read(&p).unwrap(), data);
}

#[tokio::test]
async fn sandbox_device_without_backing_file_is_refused() {
    let sb = tempfile::tempdir().unwrap();
    let e = eraser(sb.path(), Arc::new(FakeRunner::new()), false, json!({}));
    let err = erase(&e, "/dev/sdz").await.unwrap_err();
    assert!(matches!(err, EraseError::Device { .. }), "{err:?}");
    assert!(err.to_string().contains("no sandbox backing file"), "{err}");
    let agent: AgentError = ipa_hw_generic::GenericError::from(err).into();
    assert_eq!(agent.kind(), "BlockDeviceError");
}

#[tokio::test]
async fn ata_normal_erase_sets_password_erases_and_verifies_zeros() {
    let sb = tempfile::tempdir().unwrap();
    let p = disk(sb.path(), "sda", 4 * MIB, 0x11);
    let fake = FakeRunner::new();
    fake.missing("smartctl");
    fake.on_ok(
        "hdparm",
        &["-I"],
        &HDPARM.replace("\t\tsupported: enhanced erase", "\tnot\tsupported: enhanced erase"),
    );
    let runner =
        MediaRunner { fake: fake.clone(), trigger: "--security-erase", file: p.clone(), byte: 0 };
    let e = eraser(sb.path(), Arc::new(runner), true, json!({}));
    match erase(&e, "/dev/sda").await.unwrap() {
        EraseOutcome::Erased { method, .. } => {
            assert!(method.starts_with("ata security erase ("), "{method}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        fake.command_lines(),
        [
            "hdparm -I /dev/sda",
            "hdparm --user-master u --security-set-pass NULL /dev/sda",
            "hdparm --user-master u --security-erase NULL /dev/sda",
            "hdparm -I /dev/sda",
        ]
    );
}

#[tokio::test]
async fn ata_erase_that_leaves_the_media_unchanged_fails_verification() {
    let sb = tempfile::tempdir().unwrap();
    let p = disk(sb.path(), "sda", 4 * MIB, 0x11);
    // Non-uniform content so "unchanged" can be judged.
    std::fs::write(&p, (0..4 * MIB).map(|i| (i % 251) as u8).collect::<Vec<u8>>()).unwrap();
    let fake = FakeRunner::new();
    fake.missing("smartctl");
    fake.on_ok("hdparm", &["-I"], HDPARM);
    // Normal erase claimed success, media untouched: zeros expected, not found.
    let e = eraser(
        sb.path(),
        Arc::new(fake.clone()),
        true,
        json!({"driver_internal_info": {
        "agent_continue_if_secure_erase_failed": false}}),
    );
    let err = erase(&e, "/dev/sda").await.unwrap_err();
    assert!(matches!(err, EraseError::Incompatible(_)), "{err:?}");
    assert!(err.to_string().contains("unchanged"), "{err}");
    assert!(fake.command_lines().iter().any(|l| l.contains("--security-erase-enhanced")));
    // A drive that really rewrote its media (vendor pattern 0x5A) passes the enhanced check.
    let runner = MediaRunner {
        fake: fake.clone(),
        trigger: "--security-erase-enhanced",
        file: p.clone(),
        byte: 0x5A,
    };
    let e = eraser(sb.path(), Arc::new(runner), true, json!({}));
    match erase(&e, "/dev/sda").await.unwrap() {
        EraseOutcome::Erased { method, .. } => assert!(method.contains("enhanced"), "{method}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(read_at(&p, 0, 1), [0x5A]);
}

#[tokio::test]
async fn frozen_drive_is_incompatible_unless_fallback_then_overwritten() {
    let sb = tempfile::tempdir().unwrap();
    let p = disk(sb.path(), "sda", 4 * MIB, 0x77);
    let fake = FakeRunner::new();
    fake.missing("smartctl");
    fake.on_ok("hdparm", &["-I"], &HDPARM.replace("\tnot\tfrozen", "\t\tfrozen"));
    let e = eraser(sb.path(), Arc::new(fake.clone()), true, json!({}));
    let err = erase(&e, "/dev/sda").await.unwrap_err();
    assert!(err.to_string().contains("frozen"), "{err}");
    let agent: AgentError = ipa_hw_generic::GenericError::from(err).into();
    assert!(agent.is_incompatible(), "dispatch may fall through to another manager");
    assert!(!fake.command_lines().iter().any(|l| l.contains("--security-erase")));
    assert_eq!(read_at(&p, 0, 1), [0x77]);
    let node = json!({"driver_internal_info": {"agent_continue_if_ata_erase_failed": true}});
    let e = eraser(sb.path(), Arc::new(fake), true, node);
    erase(&e, "/dev/sda").await.unwrap();
    assert!(all_zero(&p));
}

#[tokio::test]
async fn ata_password_still_set_after_erase_is_an_error() {
    let sb = tempfile::tempdir().unwrap();
    disk(sb.path(), "sda", 2 * MIB, 0);
    let fake = FakeRunner::new();
    fake.missing("smartctl");
    let hd = HDPARM.replace("\t\tsupported: enhanced erase", "\tnot\tsupported: enhanced erase");
    fake.on(
        "hdparm",
        &["-I"],
        [
            FakeResponse::Output(ExecOutput::ok(hd)),
            FakeResponse::Output(ExecOutput::ok(hdparm_with_password())),
        ],
    );
    let e = eraser(sb.path(), Arc::new(fake), true, json!({}));
    let err = erase(&e, "/dev/sda").await.unwrap_err();
    assert!(err.to_string().contains("password is still set"), "{err}");
}

#[tokio::test]
async fn unsupported_ata_security_falls_through_to_overwrite() {
    let sb = tempfile::tempdir().unwrap();
    let p = disk(sb.path(), "sda", 2 * MIB, 0x42);
    let fake = FakeRunner::new();
    fake.missing("smartctl");
    fake.on_ok("hdparm", &["-I"], "\n/dev/sda:\n\nATA device\n");
    let e = eraser(sb.path(), Arc::new(fake.clone()), true, json!({}));
    erase(&e, "/dev/sda").await.unwrap();
    assert!(all_zero(&p));
    assert_eq!(fake.command_lines(), ["hdparm -I /dev/sda"]);
}

#[tokio::test]
async fn nvme_format_uses_crypto_erase_when_supported() {
    // (oacs, fna) → secure erase setting; 0x10a/0 is QEMU 7.2's emulated controller.
    for (oacs, fna, ses) in [(23, 4, 2), (6, 0, 1), (0x10a, 0, 1)] {
        let sb = tempfile::tempdir().unwrap();
        let p = disk(sb.path(), "nvme0n1", 4 * MIB, 0);
        std::fs::write(&p, (0..4 * MIB).map(|i| (i % 253) as u8).collect::<Vec<u8>>()).unwrap();
        let fake = FakeRunner::new();
        let nvme = FakeNvme::new(ControllerId { oacs, fna, sanicap: 0 }, FakeMedia::Fill(0));
        let e = eraser_with(sb.path(), Arc::new(fake.clone()), true, json!({}), nvme.clone());
        match erase(&e, "/dev/nvme0n1").await.unwrap() {
            EraseOutcome::Erased { method, .. } => {
                assert!(method.starts_with(&format!("nvme format ses={ses} ")), "{method}")
            }
            other => panic!("{other:?}"),
        }
        assert!(all_zero(&p));
        let dev = p.display();
        assert_eq!(
            nvme.calls(),
            [format!("identify-controller {dev}"), format!("format {dev} ses={ses}")]
        );
        assert!(fake.command_lines().is_empty(), "no external tool: {:?}", fake.command_lines());
    }
}

#[tokio::test]
async fn nvme_sanitize_is_preferred_when_supported_polled_to_completion_and_verified() {
    use ipa_hw_generic::erase::nvme::FakeSanitize;
    let pattern: Vec<u8> = (0..4 * MIB).map(|i| (i % 253) as u8).collect();
    // (sanicap, action): crypto erase before block erase.
    for (sanicap, action) in [(0x3, "crypto"), (0x2, "block")] {
        let sb = tempfile::tempdir().unwrap();
        let p = disk(sb.path(), "nvme0n1", 4 * MIB, 0);
        std::fs::write(&p, &pattern).unwrap();
        let nvme = FakeNvme::new(ControllerId { oacs: 0x2, fna: 0x4, sanicap }, FakeMedia::Fill(0))
            .with_sanitize(FakeSanitize::Complete { polls: 3 });
        let e = eraser_with(sb.path(), Arc::new(FakeRunner::new()), true, json!({}), nvme.clone());
        match erase(&e, "/dev/nvme0n1").await.unwrap() {
            EraseOutcome::Erased { method, erasure } => {
                assert_eq!(
                    method,
                    format!(
                        "nvme sanitize {action} (verified {} bytes changed)",
                        erasure.verified_bytes()
                    )
                );
                assert_eq!(erasure.method, "nvme_sanitize");
                assert_eq!(erasure.parameters["action"], action);
                assert_eq!(erasure.parameters["status_polls"], 4, "3 in progress, then done");
                assert!(
                    erasure.samples.iter().all(|s| s.before_sha256.as_ref() != Some(&s.sha256))
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(all_zero(&p));
        let calls = nvme.calls();
        assert_eq!(calls[1], format!("sanitize {} action={action}", p.display()), "{calls:?}");
        assert!(!calls.iter().any(|c| c.starts_with("format")), "{calls:?}");
    }
}

#[tokio::test]
async fn nvme_overwrite_sanitize_only_without_format_and_must_read_back_as_zeros() {
    use ipa_core::attest::Expect as Claim;
    use ipa_hw_generic::erase::nvme::{FakeSanitize, SanitizeAction};
    // One pass of pattern 0, not inverted: the media must read as zeros afterwards.
    assert_eq!(SanitizeAction::Overwrite.cdw10_cdw11(), (0x3 | 1 << 4, 0));
    assert_eq!(SanitizeAction::Crypto.cdw10_cdw11(), (0x4, 0));
    let pattern: Vec<u8> = (0..4 * MIB).map(|i| (i % 253) as u8).collect();
    let sb = tempfile::tempdir().unwrap();
    let p = disk(sb.path(), "nvme0n1", 4 * MIB, 0);
    // Only overwrite offered (SANICAP bit 2) and no Format NVM: the drive overwrites itself.
    std::fs::write(&p, &pattern).unwrap();
    let nvme = FakeNvme::new(ControllerId { oacs: 0, fna: 0, sanicap: 0x4 }, FakeMedia::Fill(0))
        .with_sanitize(FakeSanitize::Complete { polls: 1 });
    let e = eraser_with(sb.path(), Arc::new(FakeRunner::new()), true, json!({}), nvme.clone());
    match erase(&e, "/dev/nvme0n1").await.unwrap() {
        EraseOutcome::Erased { method, erasure } => {
            assert!(method.starts_with("nvme sanitize overwrite (verified "), "{method}");
            assert!(method.ends_with(" bytes zero)"), "{method}");
            assert_eq!(erasure.parameters["action"], "overwrite");
            assert_eq!(erasure.parameters["overwrite_passes"], 1);
            assert!(erasure.samples.iter().all(|s| s.expect == Claim::Zero && s.ok));
        }
        other => panic!("{other:?}"),
    }
    assert!(all_zero(&p));
    // With Format NVM available, Format wins: seconds instead of hours.
    std::fs::write(&p, &pattern).unwrap();
    let nvme = FakeNvme::new(ControllerId { oacs: 0x2, fna: 0, sanicap: 0x4 }, FakeMedia::Fill(0))
        .with_sanitize(FakeSanitize::Complete { polls: 0 });
    let e = eraser_with(sb.path(), Arc::new(FakeRunner::new()), true, json!({}), nvme.clone());
    match erase(&e, "/dev/nvme0n1").await.unwrap() {
        EraseOutcome::Erased { erasure, .. } => assert_eq!(erasure.method, "nvme_format"),
        other => panic!("{other:?}"),
    }
    assert!(!nvme.calls().iter().any(|c| c.starts_with("sanitize")), "{:?}", nvme.calls());
    // A controller that reports success but leaves other bytes: verification fails.
    std::fs::write(&p, &pattern).unwrap();
    let nvme = FakeNvme::new(ControllerId { oacs: 0, fna: 0, sanicap: 0x4 }, FakeMedia::Fill(0xA5))
        .with_sanitize(FakeSanitize::Complete { polls: 0 });
    let e = eraser_with(sb.path(), Arc::new(FakeRunner::new()), true, json!({}), nvme);
    let err = erase(&e, "/dev/nvme0n1").await.unwrap_err();
    assert!(err.to_string().contains("verification failed"), "{err}");
}

#[tokio::test]
async fn nvme_sanitize_failure_hang_or_refusal_falls_back_to_format_or_fails_clearly() {
    use ipa_hw_generic::erase::nvme::FakeSanitize;
    let pattern: Vec<u8> = (0..4 * MIB).map(|i| (i % 253) as u8).collect();
    let sb = tempfile::tempdir().unwrap();
    let p = disk(sb.path(), "nvme0n1", 4 * MIB, 0);
    // The controller refuses Sanitize (as QEMU 7.2 does): Format NVM instead.
    std::fs::write(&p, &pattern).unwrap();
    let nvme = FakeNvme::new(ControllerId { oacs: 0x2, fna: 0, sanicap: 0x2 }, FakeMedia::Fill(0))
        .with_sanitize(FakeSanitize::Refuse(0x1));
    let e = eraser_with(sb.path(), Arc::new(FakeRunner::new()), true, json!({}), nvme.clone());
    match erase(&e, "/dev/nvme0n1").await.unwrap() {
        EraseOutcome::Erased { erasure, .. } => assert_eq!(erasure.method, "nvme_format"),
        other => panic!("{other:?}"),
    }
    assert!(nvme.calls().iter().any(|c| c.ends_with("ses=1")), "{:?}", nvme.calls());
    // A sanitize that never finishes, on a controller without Format: a clear time-out.
    std::fs::write(&p, &pattern).unwrap();
    let nvme = FakeNvme::new(ControllerId { oacs: 0, fna: 0, sanicap: 0x1 }, FakeMedia::Fill(0))
        .with_sanitize(FakeSanitize::Hang);
    let e = eraser_with(sb.path(), Arc::new(FakeRunner::new()), true, json!({}), nvme);
    let err = erase(&e, "/dev/nvme0n1").await.unwrap_err();
    assert!(err.to_string().contains("sanitize (crypto) still running after"), "{err}");
    assert!(matches!(err, EraseError::Incompatible(_)), "{err:?}");
    assert_eq!(std::fs::read(&p).unwrap(), pattern);
    // The sanitize log reports failure: the status is in the error.
    let nvme = FakeNvme::new(ControllerId { oacs: 0, fna: 0, sanicap: 0x2 }, FakeMedia::Fail(7))
        .with_sanitize(FakeSanitize::Complete { polls: 0 });
    let e = eraser_with(sb.path(), Arc::new(FakeRunner::new()), true, json!({}), nvme);
    let err = erase(&e, "/dev/nvme0n1").await.unwrap_err();
    assert!(err.to_string().contains("sanitize (block) failed (sanitize status 0x0003)"), "{err}");
    // Sanitize disabled by the node: Format NVM, as IPA.
    std::fs::write(&p, &pattern).unwrap();
    let nvme = FakeNvme::new(ControllerId { oacs: 0x2, fna: 0, sanicap: 0x1 }, FakeMedia::Fill(0))
        .with_sanitize(FakeSanitize::Complete { polls: 0 });
    let node = json!({"driver_internal_info": {"agent_enable_nvme_sanitize": false}});
    let e = eraser_with(sb.path(), Arc::new(FakeRunner::new()), true, node, nvme.clone());
    erase(&e, "/dev/nvme0n1").await.unwrap();
    assert!(!nvme.calls().iter().any(|c| c.starts_with("sanitize")), "{:?}", nvme.calls());
}

#[tokio::test]
async fn ata_locked_drive_is_unlocked_with_null_then_empty_password_or_refused() {
    let sb = tempfile::tempdir().unwrap();
    let p = disk(sb.path(), "sda", 2 * MIB, 0x11);
    let locked = HDPARM
        .replace("\tnot\tlocked", "\t\tlocked")
        .replace("\t\tsupported: enhanced erase", "\tnot\tsupported: enhanced erase");
    let unlocked =
        HDPARM.replace("\t\tsupported: enhanced erase", "\tnot\tsupported: enhanced erase");
    // Locked; NULL does not unlock it, "" does; then the normal erase.
    let fake = FakeRunner::new();
    fake.missing("smartctl");
    fake.on(
        "hdparm",
        &["-I"],
        [
            FakeResponse::Output(ExecOutput::ok(locked.clone())),
            FakeResponse::Output(ExecOutput::ok(locked.clone())),
            FakeResponse::Output(ExecOutput::ok(unlocked.clone())),
            FakeResponse::Output(ExecOutput::ok(unlocked.clone())),
        ],
    );
    let runner =
        MediaRunner { fake: fake.clone(), trigger: "--security-erase", file: p.clone(), byte: 0 };
    let e = eraser(sb.path(), Arc::new(runner), true, json!({}));
    erase(&e, "/dev/sda").await.unwrap();
    let lines = fake.command_lines();
    assert_eq!(lines[1], "hdparm --user-master u --security-unlock NULL /dev/sda", "{lines:?}");
    assert_eq!(lines[3], "hdparm --user-master u --security-unlock  /dev/sda", "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("--security-erase NULL")), "{lines:?}");
    // Still locked after both: refused before any erase, media untouched.
    std::fs::write(&p, vec![0x11; 2 * MIB as usize]).unwrap();
    let fake = FakeRunner::new();
    fake.missing("smartctl");
    fake.on_ok("hdparm", &["-I"], &locked);
    let e = eraser(sb.path(), Arc::new(fake.clone()), true, json!({}));
    let err = erase(&e, "/dev/sda").await.unwrap_err();
    assert!(err.to_string().contains("security-locked and cannot be unlocked"), "{err}");
    assert!(!fake.command_lines().iter().any(|l| l.contains("--security-erase")));
    assert_eq!(read_at(&p, 0, 1), [0x11]);
}

#[tokio::test]
async fn a_failed_ata_erase_unlocks_the_drive_again_and_reports_the_hdparm_error() {
    let sb = tempfile::tempdir().unwrap();
    let p = disk(sb.path(), "sda", 2 * MIB, 0x11);
    let fake = FakeRunner::new();
    fake.missing("smartctl");
    fake.on_ok("hdparm", &["-I"], HDPARM);
    fake.on(
        "hdparm",
        &["--user-master", "u", "--security-erase-enhanced"],
        [FakeResponse::Output(ExecOutput::failed(5, "SG_IO: bad/missing sense data"))],
    );
    let e = eraser(sb.path(), Arc::new(fake.clone()), true, json!({}));
    let err = erase(&e, "/dev/sda").await.unwrap_err();
    assert!(err.to_string().contains("bad/missing sense data"), "{err}");
    let lines = fake.command_lines();
    assert_eq!(
        lines.last().map(String::as_str),
        Some("hdparm --user-master u --security-unlock NULL /dev/sda"),
        "the password set for the erase is cleared again: {lines:?}"
    );
    assert_eq!(read_at(&p, 0, 1), [0x11]);
}

#[tokio::test]
async fn nvme_without_format_support_or_with_a_noop_or_failing_format_fails() {
    let sb = tempfile::tempdir().unwrap();
    let p = disk(sb.path(), "nvme0n1", 4 * MIB, 0);
    let pattern: Vec<u8> = (0..4 * MIB).map(|i| (i % 253) as u8).collect();
    std::fs::write(&p, &pattern).unwrap();
    let fake = FakeRunner::new();
    let no_format = FakeNvme::new(ControllerId { oacs: 0, fna: 0, sanicap: 0 }, FakeMedia::Fill(0));
    let e = eraser_with(sb.path(), Arc::new(fake.clone()), true, json!({}), no_format.clone());
    let err = erase(&e, "/dev/nvme0n1").await.unwrap_err();
    assert!(err.to_string().contains("does not support Format NVM"), "{err}");
    assert_eq!(no_format.calls().len(), 1, "identify only: {:?}", no_format.calls());
    // Format "succeeds" but nothing changed on the media.
    let lying = FakeNvme::new(ControllerId { oacs: 2, fna: 4, sanicap: 0 }, FakeMedia::Unchanged);
    let e = eraser_with(sb.path(), Arc::new(fake.clone()), true, json!({}), lying);
    let err = erase(&e, "/dev/nvme0n1").await.unwrap_err();
    assert!(err.to_string().contains("unchanged"), "{err}");
    // The controller rejects the format: its status is in the error, the media is untouched.
    let failing =
        FakeNvme::new(ControllerId { oacs: 2, fna: 0, sanicap: 0 }, FakeMedia::Fail(0x4002));
    let e = eraser_with(sb.path(), Arc::new(fake.clone()), true, json!({}), failing);
    let err = erase(&e, "/dev/nvme0n1").await.unwrap_err();
    assert!(err.to_string().contains("controller status 0x4002"), "{err}");
    assert_eq!(std::fs::read(&p).unwrap(), pattern);
    // NVMe secure erase disabled: overwrite instead.
    let node = json!({"driver_internal_info": {"agent_enable_nvme_secure_erase": false}});
    let e = eraser(sb.path(), Arc::new(fake), true, node);
    erase(&e, "/dev/nvme0n1").await.unwrap();
    assert!(all_zero(&p));
}

#[tokio::test]
async fn sandbox_runner_refusal_is_a_clear_error_not_a_panic() {
    let sb = tempfile::tempdir().unwrap();
    let p = disk(sb.path(), "sda", 2 * MIB, 0x33);
    let inner = FakeRunner::new();
    let e =
        eraser(sb.path(), Arc::new(SandboxRunner::new(inner.clone(), sb.path())), true, json!({}));
    let err = erase(&e, "/dev/sda").await.unwrap_err();
    assert!(err.to_string().contains("sandbox: refusing hdparm on real device /dev/sda"), "{err}");
    assert!(inner.calls().is_empty(), "never reached the real runner");
    assert_eq!(read_at(&p, 0, 1), [0x33]);
}

// ---- the manager: steps over a fixture machine with sandbox backing files -------------------

fn manager(sb: &Path, mode: Option<RunMode>) -> Arc<GenericHardwareManager> {
    Arc::new(GenericHardwareManager::new(
        GenericOptions {
            machine: Machine::at(fixture("server")),
            disk_mode: mode,
            verify_samples: 4,
            reports_dir: Some(sb.join("reports")),
            ..Default::default()
        },
        Arc::new(FakeRunner::new()),
    ))
}

/// Run a step as the agent does: the manager among its peers (here, itself alone).
async fn step(
    m: &Arc<GenericHardwareManager>,
    kind: StepKind,
    name: &str,
    node: &Value,
) -> Result<Value, AgentError> {
    step_with_args(m, kind, name, node, json!({})).await
}

/// [`step`] with the step's `args`.
async fn step_with_args(
    m: &Arc<GenericHardwareManager>,
    kind: StepKind,
    name: &str,
    node: &Value,
    args: Value,
) -> Result<Value, AgentError> {
    let ctx = CommandContext::detached("clean.execute_clean_step");
    let peers = HardwareManagers::single(m.clone());
    m.execute_step(StepCall {
        step: name,
        kind,
        node,
        ports: &json!([]),
        args: args.as_object().cloned().unwrap_or_default(),
        ctx: &ctx,
        peers: &peers,
    })
    .await
}

#[tokio::test]
async fn steps_match_ipa_table_and_are_absent_for_a_read_only_manager() {
    let sb = tempfile::tempdir().unwrap();
    let m = manager(sb.path(), Some(RunMode::Sandbox { dir: sb.path().into() }));
    let n = json!({});
    let clean = m.get_clean_steps(&n, &n).await.unwrap();
    let got: Vec<(String, i64, bool)> =
        clean.iter().map(|s| (s.step.clone(), s.priority, s.abortable == Some(true))).collect();
    assert_eq!(
        got,
        [
            ("erase_devices".into(), 10, true),
            ("erase_devices_metadata".into(), 99, true),
            ("erase_devices_express".into(), 0, true),
            ("erase_pstore".into(), 0, true),
            ("clean_uefi_nvram".into(), 0, true),
        ]
    );
    let deploy = serde_json::to_value(m.get_deploy_steps(&n, &n).await.unwrap()).unwrap();
    assert_eq!(
        deploy[0],
        json!({"step": "erase_devices_metadata", "priority": 0, "interface": "deploy", "reboot_requested": false})
    );
    assert_eq!(deploy[1]["step"], "clean_uefi_nvram");
    assert_eq!(deploy[1]["abortable"], Value::Null, "not abortable as a deploy step");
    assert_eq!(deploy[1]["argsinfo"]["match_patterns"]["required"], false);
    // `write_image` is listed and run by the image pipeline, not by the manager.
    assert_eq!(deploy.as_array().map(Vec::len), Some(2), "{deploy}");
    assert!(m.get_service_steps(&n, &n).await.unwrap().is_empty());
    // Not a deploy step.
    assert!(step(&m, StepKind::Deploy, "erase_devices", &n).await.unwrap_err().is_incompatible());
    let ro = manager(sb.path(), None);
    assert!(ro.get_clean_steps(&n, &n).await.unwrap().is_empty());
}

#[tokio::test]
async fn erase_devices_step_erases_every_disk_with_a_backing_file() {
    let sb = tempfile::tempdir().unwrap();
    let mode = RunMode::Sandbox { dir: sb.path().into() };
    let m = manager(sb.path(), Some(mode));
    let files: Vec<PathBuf> =
        ["sda", "sdb", "nvme0n1"].iter().map(|n| disk(sb.path(), n, 3 * MIB, 0x99)).collect();
    let node = json!({"driver_internal_info": {"disk_erasure_concurrency": 2}});
    let mut out = step(&m, StepKind::Clean, "erase_devices", &node).await.unwrap();
    let report = out.as_object_mut().unwrap().remove("erase_report").unwrap();
    assert_eq!(out, json!({"/dev/sda": "erased", "/dev/sdb": "erased", "/dev/nvme0n1": "erased"}));
    assert!(files.iter().all(|f| all_zero(f)));
    let report: EraseReport = serde_json::from_value(report).unwrap();
    let disk_files = ["sda", "sdb", "nvme0n1"]
        .iter()
        .zip(&files)
        .map(|(n, f)| (format!("/dev/{n}"), f.clone()))
        .collect();
    let findings = check(
        &report,
        &CheckOptions {
            trusted_key: Some(m.report_key().to_string()),
            inventory: Some(report.disks.clone()),
            disk_files,
        },
    );
    assert!(findings.iter().all(|f| f.ok), "{findings:#?}");
    for d in &report.devices {
        assert_eq!(d.method.as_deref(), Some("overwrite"), "{d:?}");
        assert_eq!(d.bytes, 2 * 3 * MIB, "a random and a zero pass over the disk: {d:?}");
        assert!(d.samples.iter().all(|s| s.expect == Expect::Zero && s.ok), "{d:?}");
    }
    // A missing backing file is a clear BlockDeviceError.
    std::fs::remove_file(&files[1]).unwrap();
    let err = step(&m, StepKind::Clean, "erase_devices", &node).await.unwrap_err();
    assert_eq!(err.kind(), "BlockDeviceError", "{err}");
    assert!(err.to_string().contains("sdb"), "{err}");
}

#[tokio::test]
async fn a_disk_that_vanishes_mid_erase_fails_alone_and_the_report_says_so() {
    use ipa_hw_generic::erase::native::VanishingWriter;
    let sb = tempfile::tempdir().unwrap();
    let mode = RunMode::Sandbox { dir: sb.path().into() };
    let m = Arc::new(GenericHardwareManager::new(
        GenericOptions {
            machine: Machine::at(fixture("server")),
            disk_mode: Some(mode),
            verify_samples: 4,
            reports_dir: Some(sb.path().join("reports")),
            erase_writer: Arc::new(VanishingWriter { name: "sdb".into(), after: 2 * MIB }),
            ..Default::default()
        },
        Arc::new(FakeRunner::new()),
    ));
    let files: Vec<PathBuf> =
        ["sda", "sdb", "nvme0n1"].iter().map(|n| disk(sb.path(), n, 24 * MIB, 0x99)).collect();
    let node = json!({"driver_internal_info": {"disk_erasure_concurrency": 3}});
    let err = step(&m, StepKind::Clean, "erase_devices", &node).await.unwrap_err();
    assert_eq!(err.kind(), "BlockDeviceEraseError", "{err}");
    let text = err.to_string();
    assert!(text.contains("/dev/sdb") && text.contains("No such device"), "{text}");
    // The others were erased completely.
    assert!(all_zero(&files[0]) && all_zero(&files[2]));
    // The stored report records the failure beside the two erased disks.
    let logs = m.collect_system_logs().await.unwrap();
    let report: EraseReport = serde_json::from_slice(&logs[0].data).unwrap();
    report.verify_signature(Some(m.report_key())).unwrap();
    let outcome = |n: &str| report.devices.iter().find(|d| d.device == n).unwrap().clone();
    assert_eq!(outcome("/dev/sda").outcome, Outcome::Erased);
    assert_eq!(outcome("/dev/nvme0n1").outcome, Outcome::Erased);
    let sdb = outcome("/dev/sdb");
    assert_eq!(sdb.outcome, Outcome::Failed);
    assert!(sdb.reason.as_deref().unwrap().contains("No such device"), "{sdb:?}");
    let findings = check(&report, &CheckOptions::default());
    assert!(findings.iter().any(|f| !f.ok && f.subject == "/dev/sdb"), "{findings:#?}");
}

/// What the media says, without udev: a GPFS GPT partition (made by the real sgdisk), a
/// VMFS MBR partition and a GFS2 superblock in a partition are found by reading the disk, and
/// every erase step refuses the disk with IPA's ProtectedDeviceError, keeping every byte.
#[tokio::test]
async fn protected_filesystems_are_found_on_the_media_and_refused_by_every_erase_step() {
    use ipa_hw_generic::erase::native::probe_content;
    let sb = tempfile::tempdir().unwrap();
    let m = manager(sb.path(), Some(RunMode::Sandbox { dir: sb.path().into() }));
    let gpfs = disk(sb.path(), "sda", 16 * MIB, 0x99);
    let st = std::process::Command::new("sgdisk")
        .args(["-o", "-n", "1:2048:+4M", "-t", "1:37AFFC90-EF7D-4E96-91C3-2D7AE055B174"])
        .arg(&gpfs)
        .output()
        .expect("sgdisk is needed by this test");
    assert!(st.status.success(), "{st:?}");
    let found = probe_content(&gpfs).unwrap();
    assert_eq!(found.part_types, ["37affc90-ef7d-4e96-91c3-2d7ae055b174"]);
    // Its partitions as devices of their own (the ramdisk has /dev/sda1): the metadata erase
    // visits partitions first and must refuse them too, by the disk's partition table.
    let parts: Vec<PathBuf> =
        ["sda1", "sda2"].iter().map(|n| disk(sb.path(), n, MIB, 0x42)).collect();
    // An MBR with a VMFS (0xfb) partition at sector 2048 holding a GFS2 superblock.
    let vmfs = disk(sb.path(), "sdb", 16 * MIB, 0x99);
    {
        let mut f = std::fs::OpenOptions::new().write(true).open(&vmfs).unwrap();
        let mut mbr = vec![0u8; 512];
        mbr[446 + 4] = 0xfb;
        mbr[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
        mbr[446 + 12..446 + 16].copy_from_slice(&8192u32.to_le_bytes());
        mbr[510..].copy_from_slice(&[0x55, 0xaa]);
        f.write_all(&mbr).unwrap();
        f.seek(SeekFrom::Start(2048 * 512 + (64 << 10))).unwrap();
        f.write_all(&[0x01, 0x16, 0x19, 0x70, 0, 0, 0, 1, 0, 0, 0, 0]).unwrap();
    }
    let found = probe_content(&vmfs).unwrap();
    assert_eq!(found.part_types, ["0xfb"]);
    assert_eq!(found.fs_types, ["gfs2"]);
    let plain = disk(sb.path(), "nvme0n1", 4 * MIB, 0x99);
    assert_eq!(probe_content(&plain).unwrap(), Default::default());
    let before: Vec<Vec<u8>> = [&gpfs, &vmfs].iter().map(|p| std::fs::read(p).unwrap()).collect();
    for (name, what) in [("sda", "GPFS"), ("sdb", "VMFS")] {
        let node = json!({"properties": {"skip_block_devices": [
            {"name": if name == "sda" { "/dev/sdb" } else { "/dev/sda" }}]}});
        for stepname in ["erase_devices_metadata", "erase_devices", "erase_devices_express"] {
            let err = step(&m, StepKind::Clean, stepname, &node).await.unwrap_err();
            assert_eq!(err.kind(), "ProtectedDeviceError", "{stepname}: {err}");
            assert!(err.to_string().contains(what), "{stepname}: {err}");
            assert!(err.to_string().contains("wipe_special_filesystems"), "{err}");
        }
    }
    let after: Vec<Vec<u8>> = [&gpfs, &vmfs].iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(before == after, "a protected disk lost bytes");
    for p in &parts {
        assert!(std::fs::read(p).unwrap().iter().all(|b| *b == 0x42), "{} was wiped", p.display());
    }
    for p in &parts {
        std::fs::remove_file(p).unwrap();
    }
    // An unassembled md member (1.2 superblock at 4 KiB) is skipped, not erased: IPA keeps
    // RAID members out of every erase.
    let member = disk(sb.path(), "nvme0n1", 4 * MIB, 0x99);
    {
        let mut f = std::fs::OpenOptions::new().write(true).open(&member).unwrap();
        f.seek(SeekFrom::Start(4096)).unwrap();
        f.write_all(&[0xfc, 0x4e, 0x2b, 0xa9, 1, 0, 0, 0]).unwrap();
    }
    assert_eq!(probe_content(&member).unwrap().fs_types, ["linux_raid_member"]);
    let node =
        json!({"properties": {"skip_block_devices": [{"name": "/dev/sda"}, {"name": "/dev/sdb"}]}});
    let mut out = step(&m, StepKind::Clean, "erase_devices", &node).await.unwrap();
    out.as_object_mut().unwrap().remove("erase_report");
    assert_eq!(out, json!({"/dev/nvme0n1": "skipped"}));
    assert_eq!(read_at(&member, 0, 1), [0x99]);
    // The operator's explicit override wipes it.
    let node = json!({"driver_internal_info": {"wipe_special_filesystems": false},
                      "properties": {"skip_block_devices": [{"name": "/dev/sdb"}]}});
    step(&m, StepKind::Clean, "erase_devices_metadata", &node).await.unwrap();
    assert!(probe_content(&gpfs).unwrap().part_types.is_empty());
}

/// The native metadata wipe alone (no wipefs: sandbox mode runs no tools) leaves nothing the
/// real `wipefs` recognises, for signatures made by the real tools.
#[tokio::test]
async fn native_metadata_wipe_leaves_nothing_wipefs_recognises() {
    let sb = tempfile::tempdir().unwrap();
    let m = manager(sb.path(), Some(RunMode::Sandbox { dir: sb.path().into() }));
    let run = |prog: &str, args: &[&str]| {
        let out = std::process::Command::new(prog)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{prog} is needed by this test: {e}"));
        assert!(out.status.success(), "{prog} {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let iso_dir = sb.path().join("iso");
    std::fs::create_dir_all(&iso_dir).unwrap();
    std::fs::write(iso_dir.join("a.txt"), "x").unwrap();
    let iso = sb.path().join("x.iso");
    run(
        "genisoimage",
        &["-quiet", "-V", "config-2", "-o", iso.to_str().unwrap(), iso_dir.to_str().unwrap()],
    );
    for (label, size) in [
        ("ext4", 80 * MIB),
        ("vfat", 80 * MIB),
        ("swap", 8 * MIB),
        ("iso9660", 8 * MIB),
        ("gpt", 8 * MIB),
    ] {
        let p = disk(sb.path(), "sda", size, 0);
        let f = p.to_str().unwrap();
        match label {
            "ext4" => drop(run("mkfs.ext4", &["-q", "-F", f])),
            "vfat" => drop(run("mkfs.vfat", &[f])),
            "swap" => drop(run("mkswap", &[f])),
            "iso9660" => {
                let data = std::fs::read(&iso).unwrap();
                let mut out = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
                out.write_all(&data).unwrap();
            }
            _ => drop(run("sgdisk", &["-o", "-n", "1:2048:+2M", f])),
        }
        let before = run("wipefs", &["--no-act", f]);
        assert!(!before.trim().is_empty(), "{label}: wipefs sees no signature to begin with");
        let node = json!({"properties": {"skip_block_devices": [{"name": "/dev/sdb"}, {"name": "/dev/nvme0n1"}]}});
        step(&m, StepKind::Clean, "erase_devices_metadata", &node).await.unwrap();
        let after = run("wipefs", &["--no-act", f]);
        assert!(after.trim().is_empty(), "{label}: left behind:\n{after}\n(before:\n{before})");
    }
}

#[tokio::test]
async fn metadata_erase_zeroes_both_ends_and_keeps_the_middle() {
    let sb = tempfile::tempdir().unwrap();
    let mode = RunMode::Sandbox { dir: sb.path().into() };
    let m = manager(sb.path(), Some(mode));
    let size = 4 * MIB;
    let files: Vec<PathBuf> =
        ["sda", "sdb", "nvme0n1"].iter().map(|n| disk(sb.path(), n, size, 0xEE)).collect();
    let mut reports = Vec::new();
    for kind in [StepKind::Clean, StepKind::Deploy] {
        let out = step(&m, kind, "erase_devices_metadata", &json!({})).await.unwrap();
        reports.push(serde_json::from_value::<EraseReport>(out["erase_report"].clone()).unwrap());
    }
    // The report names the zeroed regions, read back as zeros, and the files agree.
    let disk_files = ["sda", "sdb", "nvme0n1"]
        .iter()
        .zip(&files)
        .map(|(n, f)| (format!("/dev/{n}"), f.clone()))
        .collect();
    let opts = CheckOptions {
        trusted_key: Some(m.report_key().to_string()),
        inventory: Some(reports[0].disks.clone()),
        disk_files,
    };
    let findings = check(&reports[0], &opts);
    assert!(findings.iter().all(|f| f.ok), "{findings:#?}");
    let sda = reports[0].devices.iter().find(|d| d.device == "/dev/sda").unwrap();
    assert_eq!(sda.method.as_deref(), Some("metadata"));
    assert_eq!(sda.samples[0].offset, 0);
    let last = sda.samples.last().unwrap();
    assert_eq!(last.offset + last.length, size, "{sda:?}");
    // Stored, and collected into the log bundle.
    let logs = m.collect_system_logs().await.unwrap();
    let names: Vec<&str> = logs.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("erase-reports/erase_devices_metadata-")));
    let stored: EraseReport = serde_json::from_slice(&logs[0].data).unwrap();
    stored.verify_signature(Some(m.report_key())).unwrap();
    // Middle bytes were never claimed: a middle region fails the file check.
    let mut forged = reports[0].clone();
    forged.devices.iter_mut().find(|d| d.device == "/dev/sda").unwrap().samples[0].offset = 2 * MIB;
    let f = check(&forged, &opts);
    assert!(f.iter().any(|f| !f.ok && f.subject == "signature"), "{f:#?}");
    assert!(f.iter().any(|f| !f.ok && f.subject == "/dev/sda"), "{f:#?}");
    for f in &files {
        assert!(read_at(f, 0, 33 * 512).iter().all(|b| *b == 0));
        assert!(read_at(f, size - 33 * 512, 33 * 512).iter().all(|b| *b == 0));
        assert!(read_at(f, 64 << 10, 4096).iter().all(|b| *b == 0), "btrfs superblock");
        assert_eq!(read_at(f, 2 * MIB, 16), vec![0xEE; 16], "data in the middle kept");
    }
    // Express erase without tools is a metadata erase too.
    let f = disk(sb.path(), "sda", size, 0xEE);
    step(&m, StepKind::Clean, "erase_devices_express", &json!({})).await.unwrap();
    assert!(read_at(&f, 0, 512).iter().all(|b| *b == 0));
    assert_eq!(read_at(&f, MIB, 4), vec![0xEE; 4]);
}

#[tokio::test]
async fn skip_list_keeps_a_disk_out_of_erasure() {
    let sb = tempfile::tempdir().unwrap();
    let m = manager(sb.path(), Some(RunMode::Sandbox { dir: sb.path().into() }));
    let a = disk(sb.path(), "sda", 2 * MIB, 0x99);
    let b = disk(sb.path(), "sdb", 2 * MIB, 0x99);
    let nv = disk(sb.path(), "nvme0n1", 2 * MIB, 0x99);
    let node = json!({"properties": {"skip_block_devices": [{"name": "/dev/sdb"}]}});
    let mut out = step(&m, StepKind::Clean, "erase_devices", &node).await.unwrap();
    let report = out.as_object_mut().unwrap().remove("erase_report").unwrap();
    assert_eq!(out, json!({"/dev/sda": "erased", "/dev/nvme0n1": "erased"}));
    assert!(all_zero(&a) && all_zero(&nv));
    assert_eq!(read_at(&b, 0, 1), [0x99]);
    // The report covers the kept disk too: skipped, and why.
    let report: EraseReport = serde_json::from_value(report).unwrap();
    let sdb = report.devices.iter().find(|d| d.device == "/dev/sdb").unwrap();
    assert_eq!(sdb.outcome, Outcome::Skipped);
    assert!(sdb.reason.as_deref().unwrap().contains("skip_block_devices"), "{sdb:?}");
    let inventory = Some(report.disks.clone());
    let findings = check(&report, &CheckOptions { inventory, ..Default::default() });
    assert!(findings.iter().all(|f| f.ok), "{findings:#?}");
}

#[tokio::test]
async fn metadata_erase_runs_sgdisk_when_installed_and_partprobe_otherwise() {
    let sb = tempfile::tempdir().unwrap();
    let size = 4 * MIB;
    for (sgdisk, expected) in [
        (true, ["wipefs --force --all /dev/sda", "sgdisk -Z /dev/sda"]),
        (false, ["wipefs --force --all /dev/sda", "partprobe /dev/sda"]),
    ] {
        let f = disk(sb.path(), "sda", size, 0xEE);
        let fake = FakeRunner::new();
        if !sgdisk {
            fake.missing("sgdisk");
        }
        // A failing partprobe (busy partitions) is not an error of the step.
        fake.on(
            "partprobe",
            &[],
            [FakeResponse::Output(ExecOutput::failed(1, "Device or resource busy"))],
        );
        let e = eraser(sb.path(), Arc::new(fake.clone()), true, json!({}));
        e.erase_metadata(&dev("/dev/sda")).await.unwrap();
        assert_eq!(fake.command_lines(), expected, "sgdisk installed: {sgdisk}");
        assert!(read_at(&f, 0, 33 * 512).iter().all(|b| *b == 0), "primary GPT zeroed");
        assert!(read_at(&f, size - 33 * 512, 33 * 512).iter().all(|b| *b == 0), "backup GPT");
        assert_eq!(read_at(&f, 2 * MIB, 4), vec![0xEE; 4]);
    }
}

/// A manager on a machine root that booted in UEFI mode (or not), with `runner`.
fn nvram_manager(sb: &Path, uefi: bool, runner: &FakeRunner) -> Arc<GenericHardwareManager> {
    let root = sb.join("root");
    std::fs::create_dir_all(root.join("sys/firmware")).unwrap();
    if uefi {
        std::fs::create_dir_all(root.join("sys/firmware/efi")).unwrap();
    }
    Arc::new(GenericHardwareManager::new(
        GenericOptions {
            machine: Machine::at(root),
            disk_mode: Some(RunMode::Sandbox { dir: sb.into() }),
            ..Default::default()
        },
        Arc::new(runner.clone()),
    ))
}

async fn nvram_step(
    m: &Arc<GenericHardwareManager>,
    kind: StepKind,
    args: Value,
) -> Result<Value, AgentError> {
    step_with_args(m, kind, "clean_uefi_nvram", &json!({}), args).await
}

#[tokio::test]
async fn clean_uefi_nvram_deletes_the_entries_whose_device_path_matches() {
    let sb = tempfile::tempdir().unwrap();
    let ovmf = std::fs::read_to_string(fixture("efibootmgr-v-ovmf.txt")).unwrap();
    let runner = FakeRunner::new();
    runner.on_ok("efibootmgr", &["-v"], &ovmf);
    let m = nvram_manager(sb.path(), true, &runner);
    // IPA's default patterns: the disk entry and the shim entry go, the firmware's stay.
    assert_eq!(nvram_step(&m, StepKind::Clean, json!({})).await.unwrap(), Value::Null);
    assert_eq!(
        runner.command_lines(),
        ["efibootmgr -v", "efibootmgr -b 0001 -B", "efibootmgr -b 0005 -B", "efibootmgr -v"]
    );
    // As a deploy step, with the operator's patterns.
    let runner = FakeRunner::new();
    runner.on_ok("efibootmgr", &["-v"], &ovmf);
    let m = nvram_manager(sb.path(), true, &runner);
    let args = json!({"match_patterns": ["ipv4\\(", "FvFile\\(7c04a583"]});
    nvram_step(&m, StepKind::Deploy, args).await.unwrap();
    assert_eq!(
        runner.command_lines(),
        ["efibootmgr -v", "efibootmgr -b 0003 -B", "efibootmgr -b 0004 -B", "efibootmgr -v"]
    );
    // Nothing matches: nothing is deleted, nothing listed again.
    let runner = FakeRunner::new();
    runner.on_ok("efibootmgr", &["-v"], &ovmf);
    let m = nvram_manager(sb.path(), true, &runner);
    nvram_step(&m, StepKind::Clean, json!({"match_patterns": ["^nothing$"]})).await.unwrap();
    assert_eq!(runner.command_lines(), ["efibootmgr -v"]);
}

#[tokio::test]
async fn clean_uefi_nvram_refuses_bad_patterns_skips_bios_and_reports_efibootmgr_failures() {
    let sb = tempfile::tempdir().unwrap();
    let runner = FakeRunner::new();
    let m = nvram_manager(sb.path(), true, &runner);
    let e = nvram_step(&m, StepKind::Clean, json!({"match_patterns": "^HD"})).await.unwrap_err();
    assert_eq!(e.kind(), "InvalidCommandParamsError", "{e}");
    assert!(runner.calls().is_empty(), "nothing runs before the arguments are valid");

    let bios = nvram_manager(&sb.path().join("bios"), false, &runner);
    assert_eq!(nvram_step(&bios, StepKind::Clean, json!({})).await.unwrap(), Value::Null);
    assert!(runner.calls().is_empty(), "no NVRAM without UEFI: efibootmgr is not run");

    runner.on(
        "efibootmgr",
        &["-v"],
        [FakeResponse::Output(ExecOutput {
            status: 2,
            stdout: String::new(),
            stderr: "EFI variables are not supported on this system.".into(),
        })],
    );
    let e = nvram_step(&m, StepKind::Clean, json!({})).await.unwrap_err();
    assert!(e.to_string().contains("EFI variables are not supported"), "{e}");
    assert_eq!(runner.command_lines(), ["efibootmgr -v"], "nothing deleted after a failed listing");
}
