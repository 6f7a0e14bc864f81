//! `ipactl verify-erase`: the real binary checks a signed erase report against a trusted key
//! (given, from the inventory, or from the heartbeat certificate), the inventory's disks and
//! the disk images' bytes, and exits non-zero on any problem.

mod cli;

use std::path::Path;
use std::time::Duration;

use cli::ipactl;
use ipa_core::attest::{
    DeviceRecord, DiskId, EraseReport, Outcome, REPORT_FORMAT, ReportSigner, Sample,
};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(30);

fn disk(name: &str, serial: &str) -> DiskId {
    DiskId { name: name.into(), size: 1 << 20, serial: Some(serial.into()), wwn: None, model: None }
}

/// A report of `/dev/vda` zeroed (two samples read from `image`) and `/dev/vdb` skipped.
fn signed_report(signer: &ReportSigner, image: &Path) -> EraseReport {
    let data = std::fs::read(image).unwrap();
    let mut vda = DeviceRecord::new("/dev/vda", 1 << 20, 512, Some("S-A".into()));
    vda.method = Some("overwrite".into());
    vda.bytes = 1 << 20;
    vda.samples =
        vec![Sample::zero(0, &data[..4096]), Sample::zero(4096 * 10, &data[40960..45056])];
    vda.finish(Outcome::Erased, None);
    let mut vdb = DeviceRecord::new("/dev/vdb", 1 << 20, 512, Some("S-B".into()));
    vdb.finish(Outcome::Skipped, Some("skip_block_devices".into()));
    let mut r = EraseReport {
        format: REPORT_FORMAT.into(),
        step: "erase_devices".into(),
        node_uuid: Some("node-1".into()),
        agent_version: "test".into(),
        boot_id: "b".into(),
        started_at: "2026-12-04T05:00:00.000Z".into(),
        finished_at: "2026-12-04T05:00:01.000Z".into(),
        disks: vec![disk("/dev/vda", "S-A"), disk("/dev/vdb", "S-B")],
        devices: vec![vda, vdb],
        signature: None,
    };
    signer.sign(&mut r).unwrap();
    r
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn verify_erase_accepts_a_true_report_and_refuses_tampering_other_keys_and_changed_disks() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("vda.img");
    std::fs::write(&image, vec![0u8; 1 << 20]).unwrap();
    let signer = ReportSigner::generate();
    let report = signed_report(&signer, &image);
    // As `ipactl run … --wait` prints a clean step's result.
    let result = dir.path().join("result.json");
    std::fs::write(
        &result,
        serde_json::to_vec(&json!({"command_result": {"clean_result": {
            "/dev/vda": "erased", "erase_report": report}}}))
        .unwrap(),
    )
    .unwrap();
    let inventory = dir.path().join("inventory.json");
    let inv =
        json!({"inventory": {"disks": report.disks, "erase_report_key": signer.public_key()}});
    std::fs::write(&inventory, serde_json::to_vec(&inv).unwrap()).unwrap();
    let (r, i) = (result.to_str().unwrap(), inventory.to_str().unwrap());
    let disk_arg = format!("/dev/vda={}", image.display());

    let out = ipactl(&["verify-erase", r, "--inventory", i, "--disk", &disk_arg], LIMIT);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("ok   signature: valid, by ed25519:"), "{stdout}");
    assert!(stdout.contains("(the trusted key)"), "the inventory's key is trusted: {stdout}");
    assert!(stdout.contains("ok   /dev/vdb: skipped: skip_block_devices"), "{stdout}");
    assert!(stdout.contains("reads as reported at every sample"), "{stdout}");

    // JSON output for scripts.
    let out = ipactl(&["--json", "verify-erase", r, "--inventory", i], LIMIT);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v}");

    // Another boot's key is not this report's signer.
    let other = ReportSigner::generate();
    let out = ipactl(&["verify-erase", r, "--key", other.public_key()], LIMIT);
    assert!(!out.status.success());
    assert!(text(&out.stdout).contains("FAIL signature: signed by"), "{}", text(&out.stdout));

    // The disk no longer reads as the report says.
    std::fs::write(&image, vec![0x5a; 1 << 20]).unwrap();
    let out = ipactl(&["verify-erase", r, "--disk", &disk_arg], LIMIT);
    assert!(!out.status.success());
    assert!(text(&out.stdout).contains("FAIL /dev/vda:"), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("does not verify"), "{}", text(&out.stderr));

    // A skipped disk turned into "erased" after signing.
    let mut tampered = report.clone();
    tampered.devices[1].outcome = Outcome::Erased;
    let bad = dir.path().join("tampered.json");
    std::fs::write(&bad, serde_json::to_vec(&tampered).unwrap()).unwrap();
    let out = ipactl(&["verify-erase", bad.to_str().unwrap()], LIMIT);
    assert!(!out.status.success());
    assert!(text(&out.stdout).contains("FAIL signature: the signature does not match"));

    // An inventory disk the report does not cover.
    let mut inv2 = inv.clone();
    inv2["inventory"]["disks"].as_array_mut().unwrap().push(json!({
        "name": "/dev/nvme0n1", "size": 1, "serial": "N"}));
    std::fs::write(&inventory, serde_json::to_vec(&inv2).unwrap()).unwrap();
    let out = ipactl(&["verify-erase", r, "--inventory", i], LIMIT);
    assert!(!out.status.success());
    assert!(text(&out.stdout).contains("FAIL /dev/nvme0n1: in the inventory"));

    // Not a report at all: a clear error.
    let out = ipactl(&["verify-erase", i], LIMIT);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("holds no erase report"), "{}", text(&out.stderr));
}

#[test]
fn verify_erase_trusts_the_key_in_the_heartbeat_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("vda.img");
    std::fs::write(&image, vec![0u8; 1 << 20]).unwrap();
    let signer = ReportSigner::generate();
    let report = dir.path().join("report.json");
    std::fs::write(&report, serde_json::to_vec(&signed_report(&signer, &image)).unwrap()).unwrap();
    // A certificate like the agent's auto-TLS one: the key in the subject's OU.
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".into()]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "agent");
    params.distinguished_name.push(rcgen::DnType::OrganizationalUnitName, signer.public_key());
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let crt = dir.path().join("node.crt");
    std::fs::write(&crt, cert.pem()).unwrap();
    let out =
        ipactl(&["verify-erase", report.to_str().unwrap(), "--cert", crt.to_str().unwrap()], LIMIT);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("(the trusted key)"));
    // Another boot's certificate.
    let other = ReportSigner::generate();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".into()]).unwrap();
    params.distinguished_name.push(rcgen::DnType::OrganizationalUnitName, other.public_key());
    std::fs::write(&crt, params.self_signed(&key).unwrap().pem()).unwrap();
    let out =
        ipactl(&["verify-erase", report.to_str().unwrap(), "--cert", crt.to_str().unwrap()], LIMIT);
    assert!(!out.status.success());
}
