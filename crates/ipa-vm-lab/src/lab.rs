//! The whole lab: namespace + bridge, dnsmasq (DHCP, TFTP of iPXE), an HTTP server for Ironic's
//! `http_root` (iPXE scripts, the deploy kernel and ramdisk, test images), libvirt, sushy-tools
//! (Redfish over libvirt) and a real, unmodified Ironic configured for `redfish` power and
//! management, `ipxe` boot, `direct` deploy, `agent` inspection and rescue. Everything runs
//! inside the namespace; the calling test thread enters it. Dropping the lab stops every
//! process by PID, removes the VMs, restores `/dev/kvm` and deletes the namespace.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ipa_ironic::testing::{IronicServer, free_port};
use serde_json::{Value, json};

use crate::LabError;
use crate::daemon::{Daemon, tail, wait_for};
use crate::libvirt::{KvmPermissions, Libvirt, VmSpec};
use crate::netns::Netns;

/// The Python that has Debian's `python3-libvirt` (sushy-tools' venv is made from it).
pub const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// Where sushy-tools is installed (`scripts/setup-vm-lab.sh`), or `$SUSHY_VENV`.
pub fn sushy_venv() -> PathBuf {
    std::env::var_os("SUSHY_VENV").map(PathBuf::from).unwrap_or_else(|| "/opt/sushy-venv".into())
}

/// Options of one lab.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Short tag in the namespace name.
    pub tag: String,
    /// Deploy kernel (the ramdisk builder's `ipa-rs.kernel`).
    pub kernel: PathBuf,
    /// Deploy ramdisk (`ipa-rs.initramfs`).
    pub initramfs: PathBuf,
    /// Extra kernel parameters for the ramdisk (`[pxe]kernel_append_params`).
    pub kernel_params: String,
    /// `[agent]require_tls`.
    pub require_tls: bool,
    /// `[deploy]fast_track`.
    pub fast_track: bool,
    /// `[conductor]automated_clean`.
    pub automated_clean: bool,
    /// `[api]ramdisk_heartbeat_timeout`.
    pub heartbeat_timeout: u64,
    /// Put Ironic's API behind a TLS front (socat, as Metal3 puts httpd in front of it) with a
    /// certificate from a private CA made for this lab; the ramdisk is told
    /// `ipa-api-url=https://…` through `[service_catalog]endpoint_override`.
    pub ironic_tls: bool,
    /// Append a Metal3-style CA-bundle initrd to the served ramdisk: only
    /// `/etc/ironic-python-agent.crt` (the lab's private CA) and
    /// `/etc/ironic-python-agent.d/ironic-tls.conf` (`[DEFAULT] cafile=…`).
    pub metal3_ca_bundle: bool,
    /// `[conductor]clean_step_priority_override` (`deploy.clean_uefi_nvram:20` adds that step
    /// to automated cleaning).
    pub clean_step_priority_override: Option<String>,
}

impl LabOptions {
    /// Defaults for the ramdisk at `target/ramdisk`.
    pub fn new(tag: &str, ramdisk_dir: &Path) -> Self {
        Self {
            tag: tag.into(),
            kernel: ramdisk_dir.join("ipa-rs.kernel"),
            initramfs: ramdisk_dir.join("ipa-rs.initramfs"),
            kernel_params: "console=ttyS0 ipa-debug=1".into(),
            require_tls: true,
            fast_track: false,
            automated_clean: true,
            heartbeat_timeout: 60,
            ironic_tls: false,
            metal3_ca_bundle: false,
            clean_step_priority_override: None,
        }
    }
}

/// A running lab.
#[derive(Debug)]
pub struct Lab {
    /// Real Ironic (dropped first).
    pub ironic: IronicServer,
    sushy: Daemon,
    http: Daemon,
    dnsmasq: Daemon,
    tls_front: Option<Daemon>,
    /// The private CA of the TLS front (PEM), when [`LabOptions::ironic_tls`] is set.
    pub ca_pem: Option<PathBuf>,
    /// The URL the ramdisk is given for Ironic (`http://…` or, behind the TLS front, `https://…`).
    pub api_url: String,
    /// libvirt.
    pub libvirt: Libvirt,
    vms: Vec<String>,
    _kvm: KvmPermissions,
    /// The namespace (dropped last).
    pub ns: Netns,
    /// Lab directory (consoles, disks, logs).
    pub dir: tempfile::TempDir,
    /// Port of sushy-tools on the bridge address.
    pub sushy_port: u16,
    /// Port of the HTTP server on the bridge address.
    pub http_port: u16,
    /// When the lab was ready.
    pub ready_at: Instant,
}

fn io(e: std::io::Error) -> LabError {
    LabError::Setup(e.to_string())
}

impl Lab {
    /// Build the lab. The calling thread enters the namespace.
    pub fn start(opts: &LabOptions) -> Result<Self, LabError> {
        crate::require_tools()?;
        for f in [&opts.kernel, &opts.initramfs] {
            if !f.is_file() {
                return Err(LabError::Missing(format!(
                    "{} (build it with scripts/build-ramdisk.sh)",
                    f.display()
                )));
            }
        }
        let dir = tempfile::Builder::new().prefix("ipa-vm-lab-").tempdir().map_err(io)?;
        {
            // libvirt's QEMU user must reach the disk, NVRAM and console files.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .map_err(io)?;
        }
        let ns = Netns::create(&opts.tag)?;
        ns.enter_current_thread()?;
        let kvm = KvmPermissions::adjust();
        let host = ns.host_ip.clone();
        let p = ns.net_prefix().to_string();

        std::fs::create_dir_all(dir.path().join("libvirt")).map_err(io)?;
        let libvirt = Libvirt::start(&ns, &dir.path().join("libvirt"))?;

        let http_port = free_port();
        let sushy_port = free_port();
        let tls_port = free_port();
        let tls = if opts.ironic_tls {
            Some(crate::tls::PrivateCa::create(&dir.path().join("tls"), &host)?)
        } else {
            None
        };
        let ironic_opts = opts.clone();
        let (h, hp, front) = (host.clone(), http_port, tls.as_ref().map(|_| tls_port));
        let ironic = IronicServer::start_with(
            move |me| {
                let endpoint = match front {
                    Some(p) => format!("https://{h}:{p}"),
                    None => format!("http://{h}:{}", me.port),
                };
                ironic_config(me, &ironic_opts, &h, hp, &endpoint)
            },
            "redfish",
        )
        .map_err(LabError::Setup)?;
        let api_url = match &tls {
            Some(_) => format!("https://{host}:{tls_port}"),
            None => format!("http://{host}:{}", ironic.port),
        };
        let mut tls_front = match &tls {
            Some(ca) => {
                Some(ca.front(&host, tls_port, ironic.port, &dir.path().join("tls-front.log"))?)
            }
            None => None,
        };
        let http_root = ironic.dir.path().join("http");
        let images = http_root.join("lab");
        std::fs::create_dir_all(&images).map_err(io)?;
        std::fs::copy(&opts.kernel, images.join("ipa-rs.kernel")).map_err(io)?;
        let served = images.join("ipa-rs.initramfs");
        std::fs::copy(&opts.initramfs, &served).map_err(io)?;
        if opts.metal3_ca_bundle {
            let ca = tls.as_ref().ok_or_else(|| {
                LabError::Setup(
                    "metal3_ca_bundle needs ironic_tls (the bundle carries its CA)".into(),
                )
            })?;
            crate::tls::append_ca_bundle_initrd(
                &served,
                &ca.ca_pem,
                &dir.path().join("ca-bundle"),
            )?;
        }

        let mut c = Command::new(SYSTEM_PYTHON);
        c.args(["-m", "http.server", "--bind", &host, &http_port.to_string(), "--directory"])
            .arg(&http_root);
        let mut http = Daemon::spawn("http.server", c, &dir.path().join("http.log"))?;

        // DHCP for the bridge network; UEFI PXE clients get iPXE over TFTP, iPXE gets Ironic's
        // boot script over HTTP (Ironic's own [dhcp] provider is off: dnsmasq is static here).
        let tftp = dir.path().join("tftp");
        std::fs::create_dir_all(&tftp).map_err(io)?;
        std::fs::copy("/usr/lib/ipxe/snponly.efi", tftp.join("snponly.efi")).map_err(io)?;
        let d = dir.path().display();
        let conf = format!(
            "port=0\nbind-interfaces\ninterface={br}\nexcept-interface=lo\n\
             dhcp-range={p}.50,{p}.150,255.255.255.0,1h\ndhcp-range={p6},ra-stateless\n\
             no-ping\ndhcp-authoritative\ndhcp-leasefile={d}/dnsmasq.leases\n\
             enable-tftp\ntftp-root={tftp}\n\
             dhcp-match=set:ipxe,175\n\
             dhcp-match=set:efi64,option:client-arch,7\ndhcp-match=set:efi64,option:client-arch,9\n\
             dhcp-boot=tag:efi64,tag:!ipxe,snponly.efi\n\
             dhcp-boot=tag:ipxe,http://{host}:{http_port}/boot.ipxe\n\
             log-dhcp\nlog-facility={d}/dnsmasq.log\n",
            br = ns.bridge,
            p6 = "::",
            tftp = tftp.display(),
        );
        std::fs::write(dir.path().join("dnsmasq.conf"), conf).map_err(io)?;
        let mut c = ns.exec("dnsmasq");
        c.arg("-k").arg("-C").arg(dir.path().join("dnsmasq.conf"));
        let mut dnsmasq = Daemon::spawn("dnsmasq", c, &dir.path().join("dnsmasq.out"))?;

        let sushy_conf = format!(
            "SUSHY_EMULATOR_LISTEN_IP = '{host}'\nSUSHY_EMULATOR_LISTEN_PORT = {sushy_port}\n\
             SUSHY_EMULATOR_LIBVIRT_URI = '{uri}'\n\
             SUSHY_EMULATOR_BOOT_LOADER_MAP = {{'UEFI': {{'x86_64': '{code}'}}, 'Legacy': {{'x86_64': None}}}}\n\
             SUSHY_EMULATOR_SECURE_BOOT_DISABLED_NVRAM = '{vars}'\n\
             SUSHY_EMULATOR_SECURE_BOOT_ENABLED_NVRAM = '{vars}'\n\
             SUSHY_EMULATOR_IGNORE_BOOT_DEVICE = False\n\
             SUSHY_EMULATOR_VMEDIA_VERIFY_SSL = False\n",
            uri = libvirt.uri,
            code = crate::libvirt::OVMF_CODE,
            vars = crate::libvirt::OVMF_VARS,
        );
        std::fs::write(dir.path().join("sushy.conf"), sushy_conf).map_err(io)?;
        let mut c = Command::new(sushy_venv().join("bin/sushy-emulator"));
        c.arg("--config").arg(dir.path().join("sushy.conf"));
        let mut sushy = Daemon::spawn("sushy-emulator", c, &dir.path().join("sushy.log"))?;

        wait_for(
            "sushy-tools and the HTTP server",
            Duration::from_secs(60),
            Duration::from_millis(200),
            || {
                let a = ipa_ironic::testing::http_to(
                    &host,
                    sushy_port,
                    "GET",
                    "/redfish/v1/Systems",
                    &[],
                    None,
                )
                .ok()
                .filter(|(c, _)| *c == 200);
                let b =
                    ipa_ironic::testing::http_to(&host, http_port, "GET", "/boot.ipxe", &[], None)
                        .ok()
                        .filter(|(c, _)| *c == 200);
                (a.is_some() && b.is_some()).then_some(())
            },
        )
        .map_err(|e| {
            LabError::Setup(format!(
                "{e}\nsushy:\n{}\nhttp:\n{}\nironic http_root: {:?}",
                tail(&dir.path().join("sushy.log"), 20),
                tail(&dir.path().join("http.log"), 5),
                std::fs::read_dir(&http_root)
                    .map(|r| r.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
                    .ok()
            ))
        })?;
        for dmn in [&mut http, &mut dnsmasq, &mut sushy].into_iter().chain(tls_front.as_mut()) {
            dmn.check_alive()?;
        }
        Ok(Self {
            ironic,
            sushy,
            http,
            dnsmasq,
            tls_front,
            ca_pem: tls.map(|ca| ca.ca_pem),
            api_url,
            libvirt,
            vms: Vec::new(),
            _kvm: kvm,
            ns,
            dir,
            sushy_port,
            http_port,
            ready_at: Instant::now(),
        })
    }

    /// `http://<bridge>:<port>/lab/<name>` for a file in the served image directory.
    pub fn image_url(&self, name: &str) -> String {
        format!("http://{}:{}/lab/{name}", self.ns.host_ip, self.http_port)
    }

    /// The node PATCH that points `instance_info` at a whole-disk image (sha256 checksum).
    pub fn image_patch(url: &str, sha256: &str, disk_format: &str) -> serde_json::Value {
        serde_json::json!([
            {"op": "add", "path": "/instance_info/image_source", "value": url},
            {"op": "add", "path": "/instance_info/image_os_hash_algo", "value": "sha256"},
            {"op": "add", "path": "/instance_info/image_os_hash_value", "value": sha256},
            {"op": "add", "path": "/instance_info/image_disk_format", "value": disk_format},
        ])
    }

    /// Copy a file into the served image directory.
    pub fn serve(&self, src: &Path, name: &str) -> Result<String, LabError> {
        std::fs::copy(src, self.ironic.dir.path().join("http/lab").join(name)).map_err(io)?;
        Ok(self.image_url(name))
    }

    /// A VM spec with files under the lab dir: `disks` as (bus, size, serial).
    pub fn vm_spec(
        &self,
        name: &str,
        mac: &str,
        memory_mib: u64,
        disks: &[(crate::libvirt::DiskBus, u64, &str)],
    ) -> VmSpec {
        let d = self.dir.path();
        VmSpec {
            name: name.into(),
            uuid: format!(
                "{:08x}-0000-4000-8000-{}",
                name.len() as u32 + 0x1ab,
                mac.replace(':', "")
            ),
            mac: mac.into(),
            memory_mib,
            bridge: self.ns.bridge.clone(),
            nvram: d.join(format!("{name}_VARS.nosecboot.fd")),
            console: d.join(format!("{name}-console.log")),
            disks: disks
                .iter()
                .enumerate()
                .map(|(i, (bus, size, serial))| crate::libvirt::DiskSpec {
                    path: d.join(format!("{name}-disk{i}.raw")),
                    bus: bus.clone(),
                    serial: serial.to_string(),
                    size: *size,
                })
                .collect(),
        }
    }

    /// Create the VM's files and define it (powered off).
    pub fn define_vm(&mut self, vm: &VmSpec) -> Result<(), LabError> {
        vm.create_files()?;
        self.libvirt.define(vm)?;
        self.vms.push(vm.name.clone());
        Ok(())
    }

    /// Enroll the VM in Ironic as a `redfish` node booting our ramdisk over iPXE; returns its
    /// UUID (state `enroll`).
    pub fn enroll(&self, vm: &VmSpec, extra: Value) -> Result<String, LabError> {
        let mut node = json!({
            "name": vm.name,
            "driver": "redfish",
            "boot_interface": "ipxe",
            "deploy_interface": "direct",
            "inspect_interface": "agent",
            "rescue_interface": "agent",
            "network_interface": "noop",
            "power_interface": "redfish",
            "management_interface": "redfish",
            "driver_info": {
                "redfish_address": format!("http://{}:{}", self.ns.host_ip, self.sushy_port),
                "redfish_system_id": format!("/redfish/v1/Systems/{}", vm.uuid),
                "redfish_username": "admin",
                "redfish_password": "password",
                "deploy_kernel": self.image_url("ipa-rs.kernel"),
                "deploy_ramdisk": self.image_url("ipa-rs.initramfs"),
                "rescue_kernel": self.image_url("ipa-rs.kernel"),
                "rescue_ramdisk": self.image_url("ipa-rs.initramfs"),
            },
            "properties": {"capabilities": "boot_mode:uefi"},
        });
        if let (Some(n), Some(e)) = (node.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                n.insert(k.clone(), v.clone());
            }
        }
        let created = self.ironic.ok("POST", "/v1/nodes", Some(&node)).map_err(LabError::Ironic)?;
        let uuid = created["uuid"].as_str().ok_or(LabError::Ironic("no uuid".into()))?.to_string();
        self.ironic
            .ok(
                "POST",
                "/v1/ports",
                Some(&json!({"node_uuid": uuid, "address": vm.mac, "pxe_enabled": true})),
            )
            .map_err(LabError::Ironic)?;
        Ok(uuid)
    }

    /// The VM's console so far.
    pub fn console(&self, vm: &VmSpec) -> String {
        String::from_utf8_lossy(&std::fs::read(&vm.console).unwrap_or_default()).into_owned()
    }

    /// Wait until the console contains `needle` (after byte `from`); returns seconds waited.
    pub fn wait_console(
        &self,
        vm: &VmSpec,
        from: usize,
        needle: &str,
        timeout: Duration,
    ) -> Result<f64, LabError> {
        let t0 = Instant::now();
        wait_for(
            &format!("{needle:?} on {}'s console", vm.name),
            timeout,
            Duration::from_millis(500),
            || {
                let c = std::fs::read(&vm.console).unwrap_or_default();
                let s = String::from_utf8_lossy(c.get(from..).unwrap_or_default()).into_owned();
                s.contains(needle).then(|| t0.elapsed().as_secs_f64())
            },
        )
        .map_err(|e| LabError::Timeout(format!("{e}\nconsole tail:\n{}", tail(&vm.console, 40))))
    }

    /// Lab diagnostics for a failure message: Ironic problems, dnsmasq and sushy tails.
    pub fn diagnostics(&self) -> String {
        let d = self.dir.path();
        format!(
            "--- ironic problems\n{}\n--- dnsmasq\n{}\n--- sushy\n{}\n--- http\n{}{}",
            self.ironic.log_problems(30),
            tail(&d.join("dnsmasq.log"), 15),
            tail(&d.join("sushy.log"), 15),
            tail(&d.join("http.log"), 15),
            self.tls_front
                .as_ref()
                .map(|f| format!("\n--- TLS front\n{}", tail(&f.log, 15)))
                .unwrap_or_default(),
        )
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.ironic.stop();
        for vm in &self.vms {
            self.libvirt.remove(vm);
        }
        self.sushy.stop();
        if let Some(front) = self.tls_front.as_mut() {
            front.stop();
        }
        self.http.stop();
        self.dnsmasq.stop();
        self.libvirt.stop();
        // _kvm and ns drop after this (field order): /dev/kvm restored, namespace deleted.
    }
}

fn ironic_config(
    me: &IronicServer,
    o: &LabOptions,
    host: &str,
    http_port: u16,
    endpoint: &str,
) -> String {
    let st = me.dir.path().display();
    let port = me.port;
    format!(
        "[DEFAULT]
auth_strategy = noauth
rpc_transport = none
debug = true
enabled_hardware_types = redfish
enabled_boot_interfaces = ipxe
enabled_deploy_interfaces = direct
enabled_power_interfaces = redfish
enabled_management_interfaces = redfish
enabled_inspect_interfaces = agent,no-inspect
enabled_network_interfaces = noop
enabled_rescue_interfaces = agent,no-rescue
enabled_raid_interfaces = agent,no-raid
enabled_vendor_interfaces = redfish,no-vendor
enabled_bios_interfaces = no-bios
enabled_firmware_interfaces = no-firmware
enabled_console_interfaces = no-console
default_deploy_interface = direct
default_boot_interface = ipxe
[api]
host_ip = 0.0.0.0
port = {port}
ramdisk_heartbeat_timeout = {hb}
[database]
connection = sqlite:///{st}/ironic.sqlite
[agent]
require_tls = {tls}
certificates_path = {st}/certs
deploy_logs_local_path = {st}/deploy-logs
deploy_logs_collect = always
[deploy]
http_url = http://{host}:{http_port}
http_root = {st}/http
erase_devices_priority = 0
erase_devices_metadata_priority = 10
fast_track = {ft}
default_boot_mode = uefi
[conductor]
check_provision_state_interval = 5
automated_clean = {ac}
deploy_callback_timeout = 1200
clean_callback_timeout = 1200
soft_power_off_timeout = 120
power_state_change_timeout = 120
{clean_override}
[pxe]
kernel_append_params = {params}
tftp_root = {st}/tftp
images_path = {st}/images
instance_master_path = {st}/master
ipxe_timeout = 120
boot_retry_timeout = 1800
[redfish]
use_swift = False
kernel_append_params = {params}
[inspector]
hooks = $default_hooks,memory,cpus,root-device,boot-mode
require_managed_boot = True
[service_catalog]
auth_type = none
endpoint_override = {endpoint}
[dhcp]
dhcp_provider = none
",
        hb = o.heartbeat_timeout,
        tls = if o.require_tls { "True" } else { "False" },
        ft = if o.fast_track { "True" } else { "False" },
        ac = if o.automated_clean { "True" } else { "False" },
        params = o.kernel_params,
        clean_override = o
            .clean_step_priority_override
            .as_deref()
            .map(|o| format!("clean_step_priority_override = {o}"))
            .unwrap_or_default(),
    )
}
