//! Selection across several managers registered at once (spec §5.2–5.5): the three vendor
//! managers built from their registry descriptors over one fixture host, plus a stand-in
//! generic manager and an operator (SERVICE_PROVIDER) manager.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::Arc;

use figment::Figment;
use ipa_core::config::AgentConfig;
use ipa_core::extension::{CommandContext, Extension};
use ipa_core::extensions::StepsExtension;
use ipa_core::hardware::{
    HardwareManager, HardwareManagerVersion, HardwareManagers, HardwareSupport, NetworkInterface,
    Step, StepCall, StepKind,
};
use ipa_core::os::{CommandRunner, FakeRunner, RecordingPower};
use ipa_core::services::{AgentServices, RunMode};
use ipa_core::{AgentError, Params, registry};
use serde_json::{Value, json};

// Name the plugin crates so their registrations are linked into this test binary.
use ipa_hw_container as _;
use ipa_hw_intel_cna as _;
use ipa_hw_mellanox as _;

const IB_ADDR: &str = "a0:00:02:20:fe:80:00:00:00:00:00:00:7c:fe:90:03:00:29:26:52";

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// One host with a ConnectX InfiniBand port, an X710 (i40e) port with debugfs, and a container
/// steps file (one good step, one colliding with a Mellanox step).
fn host(root: &Path) {
    write(root, "sys/class/net/ib0/address", IB_ADDR);
    write(root, "sys/class/net/ib0/device/vendor", "0x15b3");
    let pci = root.join("sys/devices/pci0000:17/0000:18:00.0");
    std::fs::create_dir_all(&pci).unwrap();
    std::fs::create_dir_all(root.join("sys/bus/pci/drivers/i40e")).unwrap();
    symlink(root.join("sys/bus/pci/drivers/i40e"), pci.join("driver")).unwrap();
    write(root, "sys/devices/pci0000:17/0000:18:00.0/vendor", "0x8086");
    std::fs::create_dir_all(root.join("sys/class/net/eno1")).unwrap();
    symlink(&pci, root.join("sys/class/net/eno1/device")).unwrap();
    write(root, "sys/class/net/eno1/address", "3c:fd:fe:aa:bb:01");
    write(root, "sys/kernel/debug/i40e/0000:18:00.0/command", "");
    write(
        root,
        "etc/ironic-python-agent.d/mysteps.yaml",
        "steps:\n  - name: acme_burnin\n    image: registry.example/burnin:1\n    priority: 15\n  \
         - name: update_nvidia_nic_firmware_image\n    image: registry.example/evil:1\n",
    );
}

/// The generic manager's role: every interface, a couple of steps.
struct Generic(std::path::PathBuf);

#[async_trait::async_trait]
impl HardwareManager for Generic {
    fn name(&self) -> &str {
        "GenericHardwareManager"
    }
    fn version(&self) -> HardwareManagerVersion {
        HardwareManagerVersion { name: "generic_hardware_manager".into(), version: "1.2".into() }
    }
    async fn evaluate_hardware_support(&self) -> HardwareSupport {
        HardwareSupport::GENERIC
    }
    async fn get_interface_info(&self, name: &str) -> Result<NetworkInterface, AgentError> {
        let mac =
            std::fs::read_to_string(self.0.join(format!("sys/class/net/{name}/address"))).unwrap();
        Ok(NetworkInterface { name: name.into(), mac_address: mac, ..Default::default() })
    }
    async fn get_clean_steps(&self, _n: &Value, _p: &Value) -> Result<Vec<Step>, AgentError> {
        Ok(vec![
            Step::new("erase_devices", 10, "deploy").abortable(true),
            // Same name as the container manager's step, higher priority: support still wins.
            Step::new("generic_container_step", 99, "deploy").abortable(true),
        ])
    }
}

/// An operator's manager (SERVICE_PROVIDER) that overrides one NVIDIA step and abstains from
/// everything else; its BMC method fails hard.
struct Operator;

#[async_trait::async_trait]
impl HardwareManager for Operator {
    fn name(&self) -> &str {
        "AcmeOperatorHardwareManager"
    }
    fn version(&self) -> HardwareManagerVersion {
        HardwareManagerVersion { name: "acme_operator".into(), version: "3.1".into() }
    }
    async fn evaluate_hardware_support(&self) -> HardwareSupport {
        HardwareSupport::SERVICE_PROVIDER
    }
    async fn get_bmc_mac(&self) -> Result<Option<String>, AgentError> {
        Err(AgentError::HardwareManagerConfiguration { details: "acme BMC misconfigured".into() })
    }
    async fn get_clean_steps(&self, _n: &Value, _p: &Value) -> Result<Vec<Step>, AgentError> {
        Ok(vec![
            Step::new("update_nvidia_nic_firmware_settings", 0, "deploy")
                .reboot_requested(true)
                .abortable(false),
        ])
    }
    async fn execute_step(&self, call: StepCall<'_>) -> Result<Value, AgentError> {
        match call.step {
            "update_nvidia_nic_firmware_settings" => Ok(json!("operator settings")),
            other => Err(AgentError::incompatible(other)),
        }
    }
}

/// Scores NONE: never loaded.
struct Absent;

#[async_trait::async_trait]
impl HardwareManager for Absent {
    fn name(&self) -> &str {
        "AbsentHardwareManager"
    }
    fn version(&self) -> HardwareManagerVersion {
        HardwareManagerVersion { name: "absent".into(), version: "9".into() }
    }
    async fn evaluate_hardware_support(&self) -> HardwareSupport {
        HardwareSupport::NONE
    }
}

struct World {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    runner: FakeRunner,
    services: Arc<AgentServices>,
    hw: Arc<HardwareManagers>,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    host(&root);
    let runner = FakeRunner::new();
    let mut config = AgentConfig::default();
    config.inspection.collect_lldp = true;
    let services = AgentServices::new(
        config,
        Figment::new(),
        RunMode::Sandbox { dir: dir.path().to_path_buf() },
        Arc::new(runner.clone()) as Arc<dyn CommandRunner>,
        Arc::new(RecordingPower::new(dir.path().join("power.log"))),
    );
    let mut candidates: Vec<Arc<dyn HardwareManager>> =
        vec![Arc::new(Generic(root.clone())), Arc::new(Operator), Arc::new(Absent)];
    for d in registry::hardware_managers() {
        candidates.push((d.build)(&services).unwrap());
    }
    let hw = Arc::new(HardwareManagers::probe(candidates).await.unwrap());
    hw.initialize().await.unwrap();
    World { _dir: dir, root, runner, services, hw }
}

#[tokio::test]
async fn all_three_vendor_managers_register_and_rank_by_support() {
    let names: Vec<_> = registry::hardware_managers().iter().map(|d| d.name).collect();
    assert_eq!(names, ["container", "intel-cna", "mellanox"]);
    let w = world().await;
    let ranked: Vec<_> =
        w.hw.ranked().iter().map(|r| (r.manager.name().to_string(), r.support.0)).collect();
    assert_eq!(
        ranked,
        [
            ("AcmeOperatorHardwareManager".to_string(), 3),
            ("ContainerHardwareManager".into(), 2),
            ("IntelCnaHardwareManager".into(), 2),
            ("MellanoxDeviceHardwareManager".into(), 2),
            ("GenericHardwareManager".into(), 1),
        ],
        "NONE is dropped; ties keep name order"
    );
    // initialize() ran on the CNA manager with collect_lldp on.
    let cmd =
        std::fs::read_to_string(w.root.join("sys/kernel/debug/i40e/0000:18:00.0/command")).unwrap();
    assert_eq!(cmd, "lldp stop");
}

#[tokio::test]
async fn first_answer_wins_and_incompatible_passes_to_the_next_manager() {
    let w = world().await;
    let ib = w.hw.dispatch("get_interface_info", |m, _| m.get_interface_info("ib0")).await.unwrap();
    assert_eq!(
        (ib.mac_address.as_str(), ib.client_id.is_some()),
        ("7c:fe:90:29:26:52", true),
        "Mellanox answers for InfiniBand"
    );
    let eth =
        w.hw.dispatch("get_interface_info", |m, _| m.get_interface_info("eno1")).await.unwrap();
    assert_eq!(
        (eth.mac_address.as_str(), eth.client_id),
        ("3c:fd:fe:aa:bb:01", None),
        "everyone above is incompatible: generic answers"
    );
    let e = w.hw.dispatch("get_bmc_mac", |m, _| m.get_bmc_mac()).await.unwrap_err();
    assert_eq!(e.kind(), "HardwareManagerConfigurationError", "a real error does not fall through");
    let e = w.hw.dispatch("get_cpus", |m, _| m.get_cpus()).await.unwrap_err();
    assert_eq!(e.kind(), "HardwareManagerMethodNotFound");
}

fn step_names(v: &Value, manager: &str) -> Vec<String> {
    v[manager].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn shared_step_names_go_to_the_highest_support_and_versions_list_every_manager() {
    let w = world().await;
    let ext = StepsExtension::new(StepKind::Clean, w.services.clone(), w.hw.clone());
    let params: Params =
        serde_json::from_value(json!({"node": {"uuid": "n1"}, "ports": []})).unwrap();
    let out = ext
        .execute("get_clean_steps", params, CommandContext::detached("clean.get_clean_steps"))
        .await
        .unwrap();
    let steps = &out["clean_steps"];
    assert_eq!(
        step_names(steps, "AcmeOperatorHardwareManager"),
        ["update_nvidia_nic_firmware_settings"]
    );
    assert_eq!(
        step_names(steps, "ContainerHardwareManager"),
        ["generic_container_step", "container_clean_step", "acme_burnin"],
        "the YAML step colliding with a Mellanox step is refused"
    );
    assert_eq!(
        step_names(steps, "MellanoxDeviceHardwareManager"),
        ["update_nvidia_nic_firmware_image"]
    );
    assert_eq!(step_names(steps, "IntelCnaHardwareManager"), Vec::<String>::new());
    assert_eq!(
        step_names(steps, "GenericHardwareManager"),
        ["erase_devices"],
        "MAINLINE beats GENERIC priority 99"
    );
    assert_eq!(
        out["hardware_manager_version"],
        json!({"acme_operator": "3.1", "ContainerHardwareManager": "2", "IntelCnaHardwareManager": "1.0",
               "MellanoxDeviceHardwareManager": "1", "generic_hardware_manager": "1.2"})
    );
}

#[tokio::test]
async fn clean_version_mismatch_refuses_and_matching_versions_run_the_winning_manager() {
    let w = world().await;
    w.runner.on_ok("podman", &["--version"], "podman version 5.4.0");
    let ext = StepsExtension::new(StepKind::Clean, w.services.clone(), w.hw.clone());
    let versions = Value::Object(w.hw.versions());
    let exec = |clean_version: Value, step: &str| {
        let params: Params = serde_json::from_value(json!({
            "step": {"step": step, "interface": "deploy", "priority": 0, "args": {}},
            "node": {"uuid": "n1"}, "ports": [], "clean_version": clean_version,
        }))
        .unwrap();
        ext.execute(
            "execute_clean_step",
            params,
            CommandContext::detached("clean.execute_clean_step"),
        )
    };
    // Ironic cached the versions before the CNA manager existed.
    let mut stale = versions.clone();
    stale.as_object_mut().unwrap().remove("IntelCnaHardwareManager");
    let e = exec(stale, "acme_burnin").await.unwrap_err();
    assert_eq!((e.kind(), e.code()), ("VersionMismatch", 409));
    assert!(
        e.details().starts_with(
            "Current versions: {'acme_operator': '3.1', 'ContainerHardwareManager': '2'"
        ),
        "{}",
        e.details()
    );
    let mut changed = versions.clone();
    changed["MellanoxDeviceHardwareManager"] = json!("0.9");
    assert_eq!(exec(changed, "acme_burnin").await.unwrap_err().kind(), "VersionMismatch");
    assert!(
        !w.runner.command_lines().iter().any(|l| l.contains("burnin")),
        "nothing ran on a mismatch"
    );

    let r = exec(versions.clone(), "acme_burnin").await.unwrap();
    assert_eq!(r["clean_result"]["container_url"], "registry.example/burnin:1");
    let r = exec(versions, "update_nvidia_nic_firmware_settings").await.unwrap();
    assert_eq!(r["clean_result"], "operator settings", "the operator's manager outranks Mellanox");
    let lines = w.runner.command_lines();
    assert!(
        lines.contains(&"podman run --rm --network=host registry.example/burnin:1".to_string()),
        "{lines:?}"
    );
    assert!(!lines.iter().any(|l| l.starts_with("mstconfig")), "{lines:?}");
}
