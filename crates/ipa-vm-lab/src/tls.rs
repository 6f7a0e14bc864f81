//! Ironic behind TLS the way Metal3 runs it: a private CA made for one lab (openssl), a TLS
//! front that terminates HTTPS on the bridge address and forwards to Ironic's plain API
//! (socat, where Metal3 uses httpd), and the CA-bundle initrd Metal3 appends to the ramdisk
//! (`ipa-cacert-bundle`: the CA at `/etc/ironic-python-agent.crt` and
//! `/etc/ironic-python-agent.d/ironic-tls.conf` pointing `[DEFAULT] cafile` at it).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::LabError;
use crate::daemon::Daemon;

/// Where the CA-bundle initrd puts the CA, and what its `ironic-tls.conf` says.
pub const BUNDLE_CA_PATH: &str = "/etc/ironic-python-agent.crt";

/// A private CA and one server certificate it signed for the lab's bridge address.
#[derive(Debug)]
pub struct PrivateCa {
    /// The CA certificate (PEM).
    pub ca_pem: PathBuf,
    /// The server certificate (PEM), `subjectAltName = IP:<bridge address>`.
    pub cert: PathBuf,
    /// The server key (PEM).
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), LabError> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| LabError::Setup(format!("openssl: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LabError::Setup(format!(
            "openssl {}: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

impl PrivateCa {
    /// Make the CA and a server certificate for `ip` in `dir` (P-256, valid two days).
    pub fn create(dir: &Path, ip: &str) -> Result<Self, LabError> {
        let io = |e: std::io::Error| LabError::Setup(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(io)?;
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=ipa-rs lab private CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(dir, &ca)?;
        let mut csr = vec!["req"];
        csr.extend(ec);
        csr.extend(["-keyout", "ironic.key", "-out", "ironic.csr", "-subj", "/CN=ironic"]);
        openssl(dir, &csr)?;
        std::fs::write(
            dir.join("ext.cnf"),
            format!(
                "subjectAltName=IP:{ip}\nbasicConstraints=CA:FALSE\n\
                 keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
            ),
        )
        .map_err(io)?;
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "ironic.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
                "-out",
                "ironic.crt",
            ],
        )?;
        Ok(Self {
            ca_pem: dir.join("ca.crt"),
            cert: dir.join("ironic.crt"),
            key: dir.join("ironic.key"),
        })
    }

    /// Serve HTTPS on `host:port` with the server certificate and forward every connection to
    /// Ironic's plain API on `127.0.0.1:backend`; started in the caller's network namespace.
    pub fn front(
        &self,
        host: &str,
        port: u16,
        backend: u16,
        log: &Path,
    ) -> Result<Daemon, LabError> {
        let mut c = Command::new("socat");
        c.arg("-d")
            .arg("-d")
            .arg(format!(
                "OPENSSL-LISTEN:{port},bind={host},reuseaddr,fork,cert={},key={},verify=0",
                self.cert.display(),
                self.key.display()
            ))
            .arg(format!("TCP:127.0.0.1:{backend}"));
        Daemon::spawn("TLS front (socat)", c, log)
    }
}

/// Append Metal3's CA-bundle initrd to the ramdisk at `ramdisk`: a gzip-compressed newc cpio
/// holding only the CA (`/etc/ironic-python-agent.crt`) and
/// `/etc/ironic-python-agent.d/ironic-tls.conf`. The kernel unpacks concatenated archives in
/// order, so the files land in the ramdisk's root without rebuilding it. `stage` is a scratch
/// directory.
pub fn append_ca_bundle_initrd(
    ramdisk: &Path,
    ca_pem: &Path,
    stage: &Path,
) -> Result<(), LabError> {
    let io = |e: std::io::Error| LabError::Setup(format!("CA bundle initrd: {e}"));
    let conf_d = stage.join("etc/ironic-python-agent.d");
    std::fs::create_dir_all(&conf_d).map_err(io)?;
    std::fs::copy(ca_pem, stage.join("etc/ironic-python-agent.crt")).map_err(io)?;
    std::fs::write(
        conf_d.join("ironic-tls.conf"),
        format!("[DEFAULT]\ncafile = {BUNDLE_CA_PATH}\n"),
    )
    .map_err(io)?;
    let out = Command::new("sh")
        .arg("-c")
        .arg("find etc | sort | cpio -o -H newc -R 0:0 --quiet | gzip -9n")
        .current_dir(stage)
        .output()
        .map_err(io)?;
    if !out.status.success() || out.stdout.is_empty() {
        return Err(LabError::Setup(format!(
            "CA bundle initrd: cpio | gzip failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let mut f = std::fs::OpenOptions::new().append(true).open(ramdisk).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    // Archives start on a 4-byte boundary; the kernel skips the zero padding between them.
    let pad = (4 - len % 4) % 4;
    f.write_all(&vec![0u8; pad as usize]).map_err(io)?;
    f.write_all(&out.stdout).map_err(io)?;
    Ok(())
}
