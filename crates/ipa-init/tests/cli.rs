//! The built binary, run as an ordinary (non-PID-1) process: it must refuse to act as init
//! and its read-only host modes must work.

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_ipa-init");

fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    })
}

#[test]
fn refuses_to_act_as_init_when_not_pid_1() {
    for args in [&[][..], &["quiet", "splash"][..]] {
        let out = run(args, "");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("refusing to act as init"), "{err}");
        assert!(err.contains("not 1"), "{err}");
        assert!(err.contains("--check-cmdline"), "{err}");
        assert!(out.stdout.is_empty());
    }
    let out = run(&["--bogus"], "");
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["--check-cmdline"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs an argument"));
    let out = run(&["--version"], "");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ipa-init "));
}

#[test]
fn check_cmdline_prints_the_plan() {
    let v = json(&run(
        &[
            "--check-cmdline",
            "BOOT_IMAGE=vmlinuz ipa-api-url=http://10.0.0.1:6385 BOOTIF=01-52-54-00-AA-BB-CC \
             ip=10.0.0.5::10.0.0.1:255.255.255.0:node1:eth0:none nameserver=10.0.0.53 \
             ipa-init.net_timeout=30 ipa-init.agent_args=\"--debug --standalone\" ipa-init.shell=1 \
             modprobe.blacklist=nouveau nvme_core.multipath=N ip=bogus",
        ],
        "",
    ));
    assert_eq!(v["bootif"], "52:54:00:aa:bb:cc");
    assert_eq!(v["net_timeout_s"], 30);
    assert_eq!(v["default_network"], false);
    assert_eq!(v["ip"][0]["method"], "static");
    assert_eq!(v["ip"][0]["address"], "10.0.0.5");
    assert_eq!(v["ip"][0]["prefix"], 24);
    assert_eq!(v["ip"][0]["gateway"], "10.0.0.1");
    assert_eq!(v["ip"][0]["hostname"], "node1");
    assert_eq!(v["ip"][0]["interface"], "eth0");
    assert_eq!(v["nameservers"], serde_json::json!(["10.0.0.53"]));
    assert_eq!(v["agent"]["path"], "/usr/bin/ipa-agent");
    assert_eq!(v["agent"]["args"], serde_json::json!(["--debug", "--standalone"]));
    assert_eq!(v["shell"], true);
    assert_eq!(v["modules"]["blacklist"], serde_json::json!(["nouveau"]));
    assert_eq!(v["modules"]["params"]["nvme_core"], "multipath=N");
    assert_eq!(v["warnings"].as_array().unwrap().len(), 1, "{v}");
    assert!(v.get("interfaces").is_none());

    let v = json(&run(&["--check-cmdline", ""], ""));
    assert_eq!(v["default_network"], true);
    assert_eq!(v["bootif"], serde_json::Value::Null);
    assert_eq!(v["net_timeout_s"], 60);
    let v = json(&run(&["--check-cmdline", "ip=off"], ""));
    assert_eq!(v["network_off"], true);
}

fn nic(sys: &Path, name: &str, ifindex: u32, mac: &str, physical: bool) -> std::path::PathBuf {
    let dir = sys.join("class/net").join(name);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("address"), format!("{mac}\n")).unwrap();
    fs::write(dir.join("ifindex"), format!("{ifindex}\n")).unwrap();
    fs::write(dir.join("type"), "1\n").unwrap();
    if physical {
        let dev = sys.join("devices/pci0000:00").join(name);
        fs::create_dir_all(&dev).unwrap();
        std::os::unix::fs::symlink(&dev, dir.join("device")).unwrap();
    }
    dir
}

#[test]
fn check_cmdline_applies_the_plan_to_a_sysfs_fixture() {
    let t = tempfile::tempdir().unwrap();
    let sys = t.path();
    nic(sys, "eth0", 2, "52:54:00:12:34:56", true);
    nic(sys, "eth1", 3, "52:54:00:aa:bb:cc", true);
    fs::create_dir_all(nic(sys, "wlan0", 4, "02:00:00:00:00:01", true).join("wireless")).unwrap();
    fs::create_dir_all(nic(sys, "br0", 5, "52:54:00:12:34:56", false).join("bridge")).unwrap();
    nic(sys, "veth0", 6, "02:00:00:00:00:02", false);
    let sysfs = sys.to_str().unwrap();

    let v = json(&run(&["--check-cmdline", "BOOTIF=01-52-54-00-aa-bb-cc", "--sysfs", sysfs], ""));
    let ifs = v["interfaces"].as_array().unwrap();
    let names: Vec<&str> = ifs.iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["eth0", "eth1"]);
    assert_eq!(ifs[1]["primary"], true);
    assert_eq!(ifs[1]["stage"], "first");
    assert_eq!(ifs[0]["stage"], "later");
    assert_eq!(ifs[0]["dhcp4"], true);
    assert_eq!(ifs[0]["dhcp6"], true);
    assert_eq!(v["wait_for"], "eth1");

    let v = json(&run(
        &[
            "--check-cmdline",
            "BOOTIF=52:54:00:aa:bb:cc ipa-dhcp-all-interfaces=1 ip=dhcp",
            "--sysfs",
            sysfs,
        ],
        "",
    ));
    assert!(
        v["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["stage"] == "first" && i["dhcp6"] == false)
    );

    let v = json(&run(&["--check-cmdline", "", "--sysfs", sysfs], ""));
    assert_eq!(v["wait_for"], "any");
}

const DEP: &str = "\
kernel/drivers/nvme/host/nvme-core.ko: kernel/lib/crc64.ko
kernel/drivers/nvme/host/nvme.ko: kernel/drivers/nvme/host/nvme-core.ko kernel/lib/crc64.ko
kernel/lib/crc64.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/block/virtio_blk.ko:
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko
kernel/drivers/net/net_failover.ko:
kernel/drivers/ata/ahci.ko: kernel/drivers/ata/libahci.ko
kernel/drivers/ata/libahci.ko:
kernel/fs/isofs/isofs.ko:
";
const ALIAS: &str = "\
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000002v* virtio_blk
alias virtio:d00000001v* virtio_net
alias pci:v*d*sv*sd*bc01sc08i02* nvme
alias pci:v*d*sv*sd*bc01sc06i01* ahci
alias iso9660 isofs
";

#[test]
fn resolve_modules_prints_the_load_order() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    fs::write(dir.join("modules.dep"), DEP).unwrap();
    fs::write(dir.join("modules.alias"), ALIAS).unwrap();
    fs::write(dir.join("modules.builtin"), "kernel/drivers/scsi/sd_mod.ko\n").unwrap();
    fs::write(dir.join("list"), "# fixed list\nsd_mod\niso9660\nnosuch\n").unwrap();
    let d = dir.to_str().unwrap();
    let list = dir.join("list");
    let out = run(
        &[
            "--resolve-modules",
            d,
            "--list",
            list.to_str().unwrap(),
            "--cmdline",
            "nvme-core.multipath=N modprobe.blacklist=ahci",
        ],
        "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00\n\
         pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02\n\
         pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01\n\
         virtio:d00000001v00001AF4\n\
         # a comment\n\
         usb:v1D6Bp0002d0601dc09dsc00dp01ic09isc00ip00in00\n",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        vec![
            format!("virtio_pci_modern_dev {d}/kernel/drivers/virtio/virtio_pci_modern_dev.ko"),
            format!("virtio_pci {d}/kernel/drivers/virtio/virtio_pci.ko"),
            format!("crc64 {d}/kernel/lib/crc64.ko"),
            format!("nvme_core {d}/kernel/drivers/nvme/host/nvme-core.ko multipath=N"),
            format!("nvme {d}/kernel/drivers/nvme/host/nvme.ko"),
            format!("net_failover {d}/kernel/drivers/net/net_failover.ko"),
            format!("virtio_net {d}/kernel/drivers/net/virtio_net.ko"),
            format!("isofs {d}/kernel/fs/isofs/isofs.ko"),
        ]
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown modules in the list: nosuch"), "{err}");

    let out = run(&["--resolve-modules", t.path().join("missing").to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("modules.dep"));
}

#[test]
fn dry_run_reads_a_fixture_and_changes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let sys = t.path().join("sys");
    let mods = t.path().join("modules");
    fs::create_dir_all(&mods).unwrap();
    fs::write(mods.join("modules.dep"), DEP).unwrap();
    fs::write(mods.join("modules.alias"), ALIAS).unwrap();
    let dev = sys.join("devices/pci0000:00/0000:00:03.0");
    fs::create_dir_all(&dev).unwrap();
    fs::write(dev.join("modalias"), "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00\n")
        .unwrap();
    fs::create_dir_all(sys.join("module/virtio_pci_modern_dev")).unwrap();
    fs::write(sys.join("module/virtio_pci_modern_dev/initstate"), "live\n").unwrap();
    nic(&sys, "eth0", 2, "52:54:00:12:34:56", true);
    let out = run(
        &[
            "--dry-run",
            "--cmdline",
            "BOOTIF=01-52-54-00-12-34-56",
            "--sysfs",
            sys.to_str().unwrap(),
            "--modules-dir",
            mods.to_str().unwrap(),
        ],
        "",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("dry run"), "{s}");
    assert!(s.contains("1 already loaded; coldplug would load 1: virtio_pci\n"), "{s}");
    assert!(s.contains("\"wait_for\": \"eth0\""), "{s}");
    assert!(s.contains("would start: /usr/bin/ipa-agent (IPA_INIT=1)"), "{s}");
}

#[test]
fn manifest_lists_existing_files_and_the_hook_script_parses() {
    let files = Path::new(env!("CARGO_MANIFEST_DIR")).join("files");
    let manifest = fs::read_to_string(files.join("MANIFEST")).unwrap();
    let entries: Vec<Vec<&str>> = manifest
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(!entries.is_empty());
    for e in &entries {
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(files.join(e[0]).is_file(), "{e:?}");
        assert!(e[1].starts_with('/'), "{e:?}");
        assert!(u32::from_str_radix(e[2], 8).is_ok(), "{e:?}");
    }
    assert!(entries.iter().any(|e| e[1] == "/etc/ipa-init/modules"));
    assert!(entries.iter().any(|e| e[1] == ipa_init::net::DHCPCD_CONF && e[2] == "0644"));
    for hook in [ipa_init::net::UDHCPC_SCRIPT, ipa_init::net::DHCPCD_SCRIPT] {
        let script = entries.iter().find(|e| e[1] == hook).expect("hook script");
        assert_eq!(script[2], "0755");
        if Path::new("/bin/sh").exists() {
            let st = Command::new("/bin/sh").arg("-n").arg(files.join(script[0])).status().unwrap();
            assert!(st.success(), "sh -n {}", script[0]);
        }
    }
}
