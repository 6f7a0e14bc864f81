//! Signed erase reports: what was erased, how, and what was read back, signed by this boot.
//!
//! Every boot of the agent makes one Ed25519 key ([`ReportSigner`]); the private half never
//! leaves memory. The public half (`ed25519:<base64>`) is published three ways, so an operator
//! can later tie a report to the machine that wrote it:
//! * in the inventory (`erase_report_key`), which Ironic stores with the inspection data;
//! * in the auto-TLS certificate the agent sends with **every heartbeat** (`agent_verify_ca`;
//!   Ironic keeps it as `<certificates_path>/<node>.crt`) as the subject's organizational unit;
//! * in each report itself.
//!
//! An [`EraseReport`] lists every disk of the inventory when the step started, and one
//! [`DeviceRecord`] per device: the method and its parameters, start and end, the bytes the
//! method covered, and the [`Sample`]s read back afterwards (offset, length, SHA-256 of what
//! was read, what the method guarantees there). The signature covers the report's canonical
//! JSON ([`canonical_json`]: keys sorted, no whitespace) without the `signature` member.
//!
//! [`check`] is what `ipactl verify-erase` runs: the signature (optionally against a key the
//! operator trusts), completeness against an inventory, every sample's claim (zeros hash as
//! zeros, "changed" regions differ from before), and, given the disk images, that the bytes on
//! the disk still hash as reported.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::PathBuf;
use std::time::SystemTime;

use base64::Engine as _;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// The `format` of reports this module writes.
pub const REPORT_FORMAT: &str = "ipa-rs-erase-report/1";
/// Prefix of a public key in text form.
pub const KEY_PREFIX: &str = "ed25519:";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Why signing or checking failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestError {
    /// No key could be made (the system RNG failed).
    #[error("no erase-report key: {0}")]
    NoKey(String),
    /// The report has no signature.
    #[error("the report is not signed")]
    Unsigned,
    /// A key or signature is not well-formed.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which field.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The signature does not match the report.
    #[error("the signature does not match the report (altered, or signed by another key)")]
    BadSignature,
    /// Signed by a key other than the trusted one.
    #[error("signed by {found}, not by the trusted key {expected}")]
    KeyMismatch {
        /// The trusted key.
        expected: String,
        /// The key in the report.
        found: String,
    },
}

/// What a method guarantees in a sampled region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// Binary zeros.
    Zero,
    /// The pseudo-random stream of the last overwrite pass (seed in the parameters).
    Pattern,
    /// Anything but what was there before (NVMe format, ATA enhanced erase).
    Changed,
}

/// One region read back after an erase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// Byte offset on the device.
    pub offset: u64,
    /// Bytes read.
    pub length: u64,
    /// What the method guarantees here.
    pub expect: Expect,
    /// SHA-256 (hex) of the bytes read after the erase.
    pub sha256: String,
    /// SHA-256 (hex) of the bytes before the erase (`changed` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_sha256: Option<String>,
    /// The region held one byte value before the erase, so a change cannot be judged
    /// (`changed` only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub uniform_before: bool,
    /// The agent found what the method guarantees.
    pub ok: bool,
}

impl Sample {
    /// A sample that must read as zeros: `ok` when `data` is all zero.
    pub fn zero(offset: u64, data: &[u8]) -> Self {
        Self {
            offset,
            length: data.len() as u64,
            expect: Expect::Zero,
            sha256: sha256_hex(data),
            before_sha256: None,
            uniform_before: false,
            ok: data.iter().all(|b| *b == 0),
        }
    }
}

/// What happened to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Erased and verified.
    Erased,
    /// Deliberately not erased (`reason` says why).
    Skipped,
    /// The erase failed (`reason` says how).
    Failed,
}

/// A disk as the inventory named it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskId {
    /// Device name (`/dev/sda`).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Serial number.
    #[serde(default)]
    pub serial: Option<String>,
    /// WWN.
    #[serde(default)]
    pub wwn: Option<String>,
    /// Model.
    #[serde(default)]
    pub model: Option<String>,
}

/// One device of a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// Device name.
    pub device: String,
    /// Serial number (disks).
    #[serde(default)]
    pub serial: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// Logical sector size.
    pub logical_sector_size: u32,
    /// Outcome.
    pub outcome: Outcome,
    /// Why it was skipped, or how it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Method: `nvme_format`, `nvme_sanitize`, `ata_security_erase`, `overwrite`, `zeroout`,
    /// `metadata`, or `other_manager` (erased by a vendor manager that reports nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The method's parameters (secure-erase setting, passes, seeds, regions …).
    #[serde(default)]
    pub parameters: serde_json::Map<String, Value>,
    /// Start (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// End (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Bytes the method covered (written, zeroed, or the device for a format).
    pub bytes: u64,
    /// Regions read back afterwards.
    #[serde(default)]
    pub samples: Vec<Sample>,
}

impl DeviceRecord {
    /// A record for `device` before anything happened.
    pub fn new(device: &str, size: u64, logical_sector_size: u32, serial: Option<String>) -> Self {
        Self {
            device: device.to_string(),
            serial,
            size,
            logical_sector_size,
            outcome: Outcome::Failed,
            reason: None,
            method: None,
            parameters: serde_json::Map::new(),
            started_at: Some(utc_rfc3339(SystemTime::now())),
            finished_at: None,
            bytes: 0,
            samples: Vec::new(),
        }
    }

    /// Mark the end with `outcome`.
    pub fn finish(&mut self, outcome: Outcome, reason: Option<String>) {
        self.outcome = outcome;
        self.reason = reason;
        self.finished_at = Some(utc_rfc3339(SystemTime::now()));
    }
}

/// The signature member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// Always `ed25519`.
    pub algorithm: String,
    /// The signing key (`ed25519:<base64>`).
    pub public_key: String,
    /// Base64 of the 64-byte signature over [`EraseReport::signed_bytes`].
    pub value: String,
}

/// A report for one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EraseReport {
    /// [`REPORT_FORMAT`].
    pub format: String,
    /// The step (`erase_devices`, `erase_devices_metadata`, `erase_devices_express`).
    pub step: String,
    /// Ironic's node UUID, when known.
    #[serde(default)]
    pub node_uuid: Option<String>,
    /// The agent's version.
    pub agent_version: String,
    /// The kernel's boot id (`/proc/sys/kernel/random/boot_id`).
    pub boot_id: String,
    /// Start of the step (RFC 3339, UTC).
    pub started_at: String,
    /// End of the step.
    pub finished_at: String,
    /// Every disk of the inventory at the start of the step.
    pub disks: Vec<DiskId>,
    /// What happened to each device.
    pub devices: Vec<DeviceRecord>,
    /// The signature (absent only if no key could be made).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Signature>,
}

impl EraseReport {
    /// The bytes the signature covers: canonical JSON without `signature`.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut unsigned = self.clone();
        unsigned.signature = None;
        let v = serde_json::to_value(&unsigned).unwrap_or(Value::Null);
        canonical_json(&v)
    }

    /// Check the signature; returns the signing key. With `trusted`, the key must be it.
    pub fn verify_signature(&self, trusted: Option<&str>) -> Result<String, AttestError> {
        let sig = self.signature.as_ref().ok_or(AttestError::Unsigned)?;
        if sig.algorithm != "ed25519" {
            return Err(AttestError::Malformed {
                what: "signature",
                reason: format!("algorithm {:?} is not ed25519", sig.algorithm),
            });
        }
        if let Some(t) = trusted
            && t.trim() != sig.public_key
        {
            return Err(AttestError::KeyMismatch {
                expected: t.trim().to_string(),
                found: sig.public_key.clone(),
            });
        }
        let key = decode_key(&sig.public_key)?;
        let value = B64
            .decode(&sig.value)
            .map_err(|e| AttestError::Malformed { what: "signature", reason: e.to_string() })?;
        UnparsedPublicKey::new(&ED25519, key)
            .verify(&self.signed_bytes(), &value)
            .map_err(|_| AttestError::BadSignature)?;
        Ok(sig.public_key.clone())
    }
}

fn decode_key(text: &str) -> Result<Vec<u8>, AttestError> {
    let b64 = text.strip_prefix(KEY_PREFIX).ok_or_else(|| AttestError::Malformed {
        what: "public key",
        reason: format!("does not start with {KEY_PREFIX}"),
    })?;
    let key = B64
        .decode(b64)
        .map_err(|e| AttestError::Malformed { what: "public key", reason: e.to_string() })?;
    if key.len() != 32 {
        return Err(AttestError::Malformed {
            what: "public key",
            reason: format!("{} bytes, not 32", key.len()),
        });
    }
    Ok(key)
}

/// The per-boot signing key. Its `Debug` shows only the public half.
pub struct ReportSigner {
    pair: Result<Ed25519KeyPair, String>,
    public: String,
    boot_id: String,
}

impl std::fmt::Debug for ReportSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportSigner").field("public_key", &self.public).finish_non_exhaustive()
    }
}

impl ReportSigner {
    /// A fresh key for this boot. If the RNG fails, reports are written unsigned and
    /// [`Self::public_key`] is empty (logged at ERROR by the caller).
    pub fn generate() -> Self {
        let rng = ring::rand::SystemRandom::new();
        let pair = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|e| e.to_string())
            .and_then(|doc| Ed25519KeyPair::from_pkcs8(doc.as_ref()).map_err(|e| e.to_string()));
        let public = match &pair {
            Ok(p) => format!("{KEY_PREFIX}{}", B64.encode(p.public_key().as_ref())),
            Err(_) => String::new(),
        };
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        Self { pair, public, boot_id }
    }

    /// `ed25519:<base64>`, or empty without a key.
    pub fn public_key(&self) -> &str {
        &self.public
    }

    /// The kernel's boot id (empty if unreadable).
    pub fn boot_id(&self) -> &str {
        &self.boot_id
    }

    /// Sign `report` in place (replacing any signature).
    pub fn sign(&self, report: &mut EraseReport) -> Result<(), AttestError> {
        let pair = self.pair.as_ref().map_err(|e| AttestError::NoKey(e.clone()))?;
        report.signature = None;
        let sig = pair.sign(&report.signed_bytes());
        report.signature = Some(Signature {
            algorithm: "ed25519".into(),
            public_key: self.public.clone(),
            value: B64.encode(sig.as_ref()),
        });
        Ok(())
    }
}

/// Canonical JSON: object keys sorted (byte order) at every level, no whitespace.
pub fn canonical_json(v: &Value) -> Vec<u8> {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Value::Object(keys.into_iter().map(|k| (k.clone(), sorted(&m[k]))).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_vec(&sorted(v)).unwrap_or_default()
}

/// SHA-256, lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn zeros_sha256(len: u64) -> String {
    let mut h = Sha256::new();
    let block = [0u8; 64 << 10];
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        h.update(&block[..n]);
        left -= n as u64;
    }
    hex::encode(h.finalize())
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for `t` (UTC).
pub fn utc_rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian, era-based).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// The erase-report key carried in a PEM certificate (the auto-TLS certificate of a
/// heartbeat): the `ed25519:<base64>` text in its subject.
pub fn key_from_certificate(pem: &str) -> Option<String> {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = B64.decode(body.trim()).ok()?;
    let marker = KEY_PREFIX.as_bytes();
    let at = der.windows(marker.len()).position(|w| w == marker)?;
    let rest = &der[at..];
    let len = marker.len() + 44;
    let text = std::str::from_utf8(rest.get(..len)?).ok()?;
    decode_key(text).ok().map(|_| text.to_string())
}

/// Disks of an inventory: `inventory.disks`, or `disks` of a bare inventory object.
pub fn inventory_disks(v: &Value) -> Option<Vec<DiskId>> {
    let disks = v.get("inventory").and_then(|i| i.get("disks")).or_else(|| v.get("disks"))?;
    serde_json::from_value(disks.clone()).ok()
}

/// What [`check`] compares a report with.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// The key the report must be signed with (from the inventory or the heartbeat's
    /// certificate).
    pub trusted_key: Option<String>,
    /// Every disk that should be covered (from the inventory).
    pub inventory: Option<Vec<DiskId>>,
    /// Device name → a file or device holding its bytes now (re-read every sample).
    pub disk_files: BTreeMap<String, PathBuf>,
}

/// One result of [`check`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The check passed.
    pub ok: bool,
    /// What was checked (`signature`, a device name, `inventory`).
    pub subject: String,
    /// What was found.
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", if self.ok { "ok  " } else { "FAIL" }, self.subject, self.message)
    }
}

fn read_region(path: &PathBuf, offset: u64, length: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::with_capacity(length as usize);
    f.take(length).read_to_end(&mut buf)?;
    if (buf.len() as u64) < length {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("{} bytes at {offset}, wanted {length}", buf.len()),
        ));
    }
    Ok(buf)
}

/// Check a report; every failed check is a finding with `ok: false`.
pub fn check(report: &EraseReport, opts: &CheckOptions) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut push = |ok: bool, subject: &str, message: String| {
        out.push(Finding { ok, subject: subject.to_string(), message })
    };
    if report.format != REPORT_FORMAT {
        push(false, "format", format!("{:?} is not {REPORT_FORMAT}", report.format));
    }
    match report.verify_signature(opts.trusted_key.as_deref()) {
        Ok(key) => push(
            true,
            "signature",
            format!(
                "valid, by {key}{}",
                if opts.trusted_key.is_some() { " (the trusted key)" } else { "" }
            ),
        ),
        Err(e) => push(false, "signature", e.to_string()),
    }
    if let Some(inv) = &opts.inventory {
        for d in inv {
            let listed = report.disks.iter().any(|r| r.name == d.name && r.serial == d.serial);
            let covered = report.devices.iter().any(|r| r.device == d.name);
            match (listed, covered) {
                (true, true) => {}
                (false, _) => push(
                    false,
                    &d.name,
                    format!(
                        "in the inventory (serial {:?}) but not in the report's disks",
                        d.serial
                    ),
                ),
                (true, false) => {
                    push(false, &d.name, "no record: neither erased nor skipped".into())
                }
            }
        }
    }
    for r in &report.devices {
        let dev = r.device.as_str();
        match r.outcome {
            Outcome::Failed => {
                push(false, dev, format!("failed: {}", r.reason.as_deref().unwrap_or("?")));
                continue;
            }
            Outcome::Skipped => {
                push(true, dev, format!("skipped: {}", r.reason.as_deref().unwrap_or("?")));
                continue;
            }
            Outcome::Erased => {}
        }
        let method = r.method.as_deref().unwrap_or("?");
        if r.samples.is_empty() {
            push(false, dev, format!("erased by {method} but nothing was read back"));
            continue;
        }
        let mut bad = Vec::new();
        for s in &r.samples {
            let claim = match s.expect {
                Expect::Zero => s.sha256 == zeros_sha256(s.length),
                Expect::Changed => {
                    s.uniform_before || s.before_sha256.as_deref() != Some(s.sha256.as_str())
                }
                Expect::Pattern => true,
            };
            if !s.ok || !claim {
                bad.push(format!("{}+{} ({:?})", s.offset, s.length, s.expect));
            }
        }
        if bad.is_empty() {
            let bytes: u64 = r.samples.iter().map(|s| s.length).sum();
            push(
                true,
                dev,
                format!(
                    "erased by {method}; {} samples, {bytes} bytes as claimed",
                    r.samples.len()
                ),
            );
        } else {
            push(false, dev, format!("samples contradict the method: {}", bad.join(", ")));
        }
        if let Some(file) = opts.disk_files.get(dev) {
            let mut differ = Vec::new();
            for s in &r.samples {
                match read_region(file, s.offset, s.length) {
                    Ok(data) if sha256_hex(&data) == s.sha256 => {}
                    Ok(_) => differ.push(format!("{}+{}", s.offset, s.length)),
                    Err(e) => differ.push(format!("{}+{}: {e}", s.offset, s.length)),
                }
            }
            if differ.is_empty() {
                push(true, dev, format!("{} reads as reported at every sample", file.display()));
            } else {
                push(
                    false,
                    dev,
                    format!("{} differs from the report at {}", file.display(), differ.join(", ")),
                );
            }
        }
    }
    for name in opts.disk_files.keys() {
        if !report.devices.iter().any(|r| &r.device == name) {
            push(false, name, "a disk file was given but the report has no such device".into());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn report(signer: &ReportSigner) -> EraseReport {
        let mut dev = DeviceRecord::new("/dev/vda", 8192, 512, Some("S1".into()));
        dev.method = Some("zeroout".into());
        dev.bytes = 8192;
        dev.samples.push(Sample::zero(0, &[0u8; 4096]));
        dev.finish(Outcome::Erased, None);
        let mut skipped = DeviceRecord::new("/dev/vdb", 4096, 512, None);
        skipped.finish(Outcome::Skipped, Some("skip_block_devices".into()));
        let mut r = EraseReport {
            format: REPORT_FORMAT.into(),
            step: "erase_devices".into(),
            node_uuid: Some("n1".into()),
            agent_version: "test".into(),
            boot_id: signer.boot_id().into(),
            started_at: utc_rfc3339(SystemTime::UNIX_EPOCH),
            finished_at: utc_rfc3339(SystemTime::UNIX_EPOCH),
            disks: vec![
                DiskId {
                    name: "/dev/vda".into(),
                    size: 8192,
                    serial: Some("S1".into()),
                    wwn: None,
                    model: None,
                },
                DiskId {
                    name: "/dev/vdb".into(),
                    size: 4096,
                    serial: None,
                    wwn: None,
                    model: None,
                },
            ],
            devices: vec![dev, skipped],
            signature: None,
        };
        signer.sign(&mut r).unwrap();
        r
    }

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(utc_rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_356_800_123);
        assert_eq!(utc_rfc3339(t), "2026-12-04T04:00:00.123Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(utc_rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v: Value =
            serde_json::from_str(r#"{"b":1,"a":{"d":[{"z":0,"y":1}],"c":null}}"#).unwrap();
        assert_eq!(canonical_json(&v), br#"{"a":{"c":null,"d":[{"y":1,"z":0}]},"b":1}"#);
    }

    #[test]
    fn a_signed_report_verifies_and_any_change_breaks_it() {
        let signer = ReportSigner::generate();
        assert!(signer.public_key().starts_with(KEY_PREFIX), "{}", signer.public_key());
        let r = report(&signer);
        assert_eq!(r.verify_signature(Some(signer.public_key())).unwrap(), signer.public_key());
        // Survives a JSON round trip with reordered keys.
        let text = serde_json::to_string_pretty(&r).unwrap();
        let back: EraseReport = serde_json::from_str(&text).unwrap();
        back.verify_signature(None).unwrap();

        let mut altered = r.clone();
        altered.devices[1].outcome = Outcome::Erased;
        assert_eq!(altered.verify_signature(None), Err(AttestError::BadSignature));
        let other = ReportSigner::generate();
        assert!(matches!(
            r.verify_signature(Some(other.public_key())),
            Err(AttestError::KeyMismatch { .. })
        ));
        // Re-signed by another key: valid on its own, refused against the trusted key.
        let mut forged = altered;
        other.sign(&mut forged).unwrap();
        forged.verify_signature(None).unwrap();
        assert!(forged.verify_signature(Some(signer.public_key())).is_err());
        let mut unsigned = r;
        unsigned.signature = None;
        assert_eq!(unsigned.verify_signature(None), Err(AttestError::Unsigned));
    }

    #[test]
    fn check_reports_coverage_claims_and_disk_contents() {
        let signer = ReportSigner::generate();
        let r = report(&signer);
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("vda.img");
        std::fs::write(&img, vec![0u8; 8192]).unwrap();
        let mut opts = CheckOptions {
            trusted_key: Some(signer.public_key().to_string()),
            inventory: Some(r.disks.clone()),
            disk_files: BTreeMap::from([("/dev/vda".to_string(), img.clone())]),
        };
        let f = check(&r, &opts);
        assert!(f.iter().all(|f| f.ok), "{f:#?}");
        assert_eq!(f.len(), 4, "{f:#?}");

        // A disk the inventory has and the report does not cover.
        opts.inventory.as_mut().unwrap().push(DiskId {
            name: "/dev/nvme0n1".into(),
            size: 1,
            serial: Some("N".into()),
            wwn: None,
            model: None,
        });
        // The disk no longer holds zeros where the report says it read zeros.
        std::fs::write(&img, vec![7u8; 8192]).unwrap();
        let failed: Vec<String> =
            check(&r, &opts).into_iter().filter(|f| !f.ok).map(|f| f.subject).collect();
        assert_eq!(failed, ["/dev/nvme0n1", "/dev/vda"]);

        // A sample claiming zeros whose hash is not that of zeros.
        let mut lie = r.clone();
        lie.devices[0].samples[0].sha256 = sha256_hex(b"not zero");
        signer.sign(&mut lie).unwrap();
        let f = check(&lie, &CheckOptions::default());
        assert!(f.iter().any(|f| !f.ok && f.message.contains("contradict")), "{f:#?}");
    }

    #[test]
    fn the_key_is_found_in_a_certificate_subject() {
        let signer = ReportSigner::generate();
        let key = signer.public_key();
        // A DER blob with the key as a UTF8String, wrapped as PEM.
        let mut der = vec![0x30, 0x80, 0x0c, key.len() as u8];
        der.extend(key.as_bytes());
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            B64.encode(&der)
        );
        assert_eq!(key_from_certificate(&pem).as_deref(), Some(key));
        assert_eq!(key_from_certificate("no pem"), None);
    }
}
