//! The binary's configuration sources, flag by flag: `--kernel-cmdline FILE` is the kernel
//! command line that is read (and `none` reads none), IPA's INI file and directory are read below
//! the kernel command line, and `none` turns each off.

use std::path::Path;

use clap::Parser;
use ipa_agent::{Cli, config_sources};
use ipa_core::config::load;

fn cli(args: &[&str]) -> Cli {
    Cli::parse_from(std::iter::once("ipa-agent").chain(args.iter().copied()))
}

#[test]
fn the_kernel_cmdline_flag_names_the_file_that_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let cmdline = dir.path().join("cmdline");
    std::fs::write(&cmdline, "BOOT_IMAGE=/k ipa-lookup-timeout=77 BOOTIF=01-52-54-00-aa-bb-cc\n")
        .unwrap();
    let arg = cmdline.to_str().unwrap();
    let (c, _) = load(&config_sources(&cli(&["--kernel-cmdline", arg]))).unwrap();
    assert_eq!(c.ironic.lookup_timeout, 77);
    assert_eq!(c.agent.bootif.as_deref(), Some("01-52-54-00-aa-bb-cc"));

    let (c, _) = load(&config_sources(&cli(&["--kernel-cmdline", "none"]))).unwrap();
    assert_eq!(c.ironic.lookup_timeout, 600, "`none` reads no kernel parameters");
    assert_eq!(c.agent.bootif, None);
}

#[test]
fn metal3s_ca_bundle_conf_is_read_and_kernel_parameters_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let conf_d = dir.path().join("ironic-python-agent.d");
    std::fs::create_dir(&conf_d).unwrap();
    // What Metal3's ipa-cacert-bundle initrd adds.
    std::fs::write(
        conf_d.join("ironic-tls.conf"),
        "[DEFAULT]\ncafile=/etc/ironic-python-agent.crt\n",
    )
    .unwrap();
    let main = dir.path().join("ironic-python-agent.conf");
    std::fs::write(&main, "[DEFAULT]\ninsecure = True\nlookup_timeout = 5\n").unwrap();
    let cmdline = dir.path().join("cmdline");
    std::fs::write(&cmdline, "ipa-insecure=0\n").unwrap();
    let (m, d, k) = (main.to_str().unwrap(), conf_d.to_str().unwrap(), cmdline.to_str().unwrap());

    let flags = ["--ipa-config-file", m, "--ipa-config-dir", d, "--kernel-cmdline", k];
    let (c, _) = load(&config_sources(&cli(&flags))).unwrap();
    assert_eq!(c.http.cafile.as_deref(), Some(Path::new("/etc/ironic-python-agent.crt")));
    assert_eq!(c.ironic.lookup_timeout, 5);
    assert!(!c.http.insecure, "ipa-insecure=0 on the kernel command line wins over the file");

    let off = ["--ipa-config-file", "none", "--ipa-config-dir", "none", "--kernel-cmdline", "none"];
    let (c, _) = load(&config_sources(&cli(&off))).unwrap();
    assert_eq!((c.http.cafile, c.ironic.lookup_timeout), (None, 600));
    let only_dir = ["--ipa-config-file", "none", "--ipa-config-dir", d, "--kernel-cmdline", "none"];
    let (c, _) = load(&config_sources(&cli(&only_dir))).unwrap();
    assert!(c.http.cafile.is_some() && c.ironic.lookup_timeout == 600);
}
