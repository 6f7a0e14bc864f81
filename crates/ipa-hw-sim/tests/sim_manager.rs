//! Behaviour of the simulated hardware manager against real sparse files in a temp sandbox.

use std::io::Read;
use std::sync::Arc;

use figment::Figment;
use ipa_core::config::AgentConfig;
use ipa_core::error::AgentError;
use ipa_core::extension::CommandContext;
use ipa_core::hardware::{HardwareManager, HardwareManagers, HardwareSupport, StepCall, StepKind};
use ipa_core::os::{FakeRunner, RecordingPower};
use ipa_core::services::{AgentServices, RunMode};
use ipa_hw_sim::{Machine, SimHardwareManager};
use serde_json::{Value, json};

fn services(dir: &std::path::Path, mode: RunMode) -> Arc<AgentServices> {
    AgentServices::new(
        AgentConfig::default(),
        Figment::new(),
        mode,
        Arc::new(FakeRunner::default()),
        Arc::new(RecordingPower::new(dir.join("power.log"))),
    )
}

fn machine(toml_text: &str) -> Machine {
    let m: Machine = toml::from_str(toml_text).unwrap();
    m.validate().unwrap();
    m
}

const TWO_DISKS: &str = r#"
[[interfaces]]
name = "eno1"
mac_address = "3c:fd:fe:aa:bb:01"
[[disks]]
name = "/dev/sda"
size = "2GiB"
serial = "small"
[[disks]]
name = "/dev/sdb"
size = "6GiB"
serial = "S2"
[[disks]]
name = "/dev/sdc"
size = "5GiB"
serial = "S3"
[[steps]]
name = "sim_fail"
kinds = ["clean"]
priority = 40
fail = "simulated firmware update failed"
[[steps]]
name = "sim_burnin"
kinds = ["clean", "service"]
sleep_ms = 10
args = { duration = "seconds to run" }
"#;

async fn ready(toml_text: &str) -> (tempfile::TempDir, Arc<AgentServices>, SimHardwareManager) {
    let tmp = tempfile::tempdir().unwrap();
    let svc = services(tmp.path(), RunMode::Sandbox { dir: tmp.path().to_path_buf() });
    let mgr = SimHardwareManager::new(machine(toml_text), true, svc.clone());
    mgr.initialize(&HardwareManagers::empty()).await.unwrap();
    (tmp, svc, mgr)
}

fn call<'a>(
    step: &'a str,
    kind: StepKind,
    node: &'a Value,
    ctx: &'a CommandContext,
) -> StepCall<'a> {
    static NO_PEERS: HardwareManagers = HardwareManagers::empty();
    StepCall {
        step,
        kind,
        node,
        ports: &Value::Null,
        args: Default::default(),
        ctx,
        peers: &NO_PEERS,
    }
}

#[tokio::test]
async fn disks_are_sparse_files_of_the_described_size_inside_the_sandbox() {
    let (tmp, _svc, _mgr) = ready(TWO_DISKS).await;
    let meta = std::fs::metadata(tmp.path().join("disks/sdb")).unwrap();
    assert_eq!(meta.len(), 6 << 30);
    use std::os::unix::fs::MetadataExt;
    assert!(meta.blocks() * 512 < 1 << 20, "backing file must be sparse");
}

#[tokio::test]
async fn support_is_none_with_real_hardware_and_service_provider_for_a_named_machine() {
    let tmp = tempfile::tempdir().unwrap();
    let real =
        SimHardwareManager::new(Machine::default(), true, services(tmp.path(), RunMode::Real));
    assert_eq!(real.evaluate_hardware_support().await, HardwareSupport::NONE);
    assert!(
        real.initialize(&HardwareManagers::empty()).await.is_err(),
        "must never create disks outside a sandbox"
    );
    let (_t, _s, named) = ready(TWO_DISKS).await;
    assert_eq!(named.evaluate_hardware_support().await, HardwareSupport::SERVICE_PROVIDER);
}

#[tokio::test]
async fn inventory_comes_from_the_description_in_ipa_shape() {
    let (_t, _s, mgr) = ready(TWO_DISKS).await;
    let inv =
        serde_json::to_value(mgr.list_hardware_info(&HardwareManagers::empty()).await.unwrap())
            .unwrap();
    assert_eq!(inv["interfaces"][0]["mac_address"], "3c:fd:fe:aa:bb:01");
    assert_eq!(inv["disks"].as_array().unwrap().len(), 3);
    assert_eq!(inv["disks"][1]["size"], json!(6u64 << 30));
    assert!(inv["cpu"]["frequency"].is_string());
    assert!(inv["disks"][0].get("uuid").is_none());
}

#[tokio::test]
async fn default_root_device_is_the_smallest_disk_of_at_least_4_gib() {
    let (_t, _s, mgr) = ready(TWO_DISKS).await;
    assert_eq!(
        mgr.get_os_install_device(false, &HardwareManagers::empty()).await.unwrap(),
        "/dev/sdc"
    );
}

#[tokio::test]
async fn root_device_hints_from_the_cached_node_select_the_disk() {
    let (_t, svc, mgr) = ready(TWO_DISKS).await;
    svc.node.set(json!({"uuid": "n1", "properties": {"root_device": {"serial": "S2"}}}));
    assert_eq!(
        mgr.get_os_install_device(false, &HardwareManagers::empty()).await.unwrap(),
        "/dev/sdb"
    );
    svc.node.set(json!({"uuid": "n1", "properties": {"root_device": {"serial": "nope"}}}));
    let e = mgr.get_os_install_device(false, &HardwareManagers::empty()).await.unwrap_err();
    assert!(matches!(e, AgentError::DeviceNotFound { .. }), "{e:?}");
}

#[tokio::test]
async fn metadata_erase_zeroes_head_and_tail_only() {
    let (tmp, _svc, mgr) = ready(TWO_DISKS).await;
    let path = tmp.path().join("disks/sdc");
    let size = 5u64 << 30;
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0xAB; 4096], 0).unwrap();
        f.write_all_at(&[0xAB; 4096], 1 << 20).unwrap();
        f.write_all_at(&[0xAB; 4096], size - 4096).unwrap();
    }
    let ctx = CommandContext::detached("clean.execute_clean_step");
    let node = json!({"uuid": "n1"});
    mgr.execute_step(call("erase_devices_metadata", StepKind::Clean, &node, &ctx)).await.unwrap();
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(&path).unwrap();
    let mut buf = [0u8; 4096];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert!(buf.iter().all(|&b| b == 0), "head zeroed");
    f.read_exact_at(&mut buf, size - 4096).unwrap();
    assert!(buf.iter().all(|&b| b == 0), "tail zeroed");
    f.read_exact_at(&mut buf, 1 << 20).unwrap();
    assert!(buf.iter().all(|&b| b == 0xAB), "middle untouched");
    let log = std::fs::read_to_string(tmp.path().join("sim-steps.log")).unwrap();
    assert!(log.contains("\"erase_devices_metadata\""));
}

#[tokio::test]
async fn erase_devices_leaves_every_disk_all_zero() {
    let (tmp, _svc, mgr) = ready(TWO_DISKS).await;
    let path = tmp.path().join("disks/sdb");
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0x5A; 65536], 3 << 30).unwrap();
    }
    let ctx = CommandContext::detached("clean.execute_clean_step");
    let node = json!({});
    let out = mgr.execute_step(call("erase_devices", StepKind::Clean, &node, &ctx)).await.unwrap();
    assert_eq!(out, json!({"/dev/sda": null, "/dev/sdb": null, "/dev/sdc": null}));
    let mut f = std::fs::File::open(&path).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 6 << 30);
    use std::io::Seek;
    f.seek(std::io::SeekFrom::Start(3 << 30)).unwrap();
    let mut buf = vec![0u8; 65536];
    f.read_exact(&mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
}

#[tokio::test]
async fn machine_file_steps_are_listed_run_and_fail_as_described() {
    let (tmp, _svc, mgr) = ready(TWO_DISKS).await;
    let clean: Vec<_> = mgr
        .get_clean_steps(&Value::Null, &Value::Null)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.step, s.priority))
        .collect();
    assert!(clean.contains(&("sim_fail".into(), 40)));
    assert!(clean.contains(&("erase_devices_metadata".into(), 99)));
    let service: Vec<_> = mgr
        .get_service_steps(&Value::Null, &Value::Null)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.step)
        .collect();
    // `write_image` is the image pipeline's step, not the manager's.
    assert_eq!(service, ["sim_burnin"]);

    let ctx = CommandContext::detached("clean.execute_clean_step");
    let node = json!({"uuid": "n1"});
    let e = mgr.execute_step(call("sim_fail", StepKind::Clean, &node, &ctx)).await.unwrap_err();
    assert_eq!(e.to_string(), "Clean step failed: simulated firmware update failed");
    mgr.execute_step(call("sim_burnin", StepKind::Service, &node, &ctx)).await.unwrap();
    let log = std::fs::read_to_string(tmp.path().join("sim-steps.log")).unwrap();
    assert_eq!(log.lines().count(), 2);
    assert!(log.contains("\"sim_burnin\"") && log.contains("\"service\""));
    // A step not offered for this kind passes to the next manager.
    let e = mgr.execute_step(call("sim_fail", StepKind::Deploy, &node, &ctx)).await.unwrap_err();
    assert!(e.is_incompatible());
}

#[test]
fn machine_files_load_from_toml_and_json_and_report_bad_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().join("m.toml");
    std::fs::write(&t, TWO_DISKS).unwrap();
    assert_eq!(Machine::load(&t).unwrap().disks.len(), 3);
    let j = tmp.path().join("m.json");
    std::fs::write(&j, r#"{"hostname": "j", "disks": [{"name": "/dev/vdb", "size": "1GiB"}]}"#)
        .unwrap();
    assert_eq!(Machine::load(&j).unwrap().hostname, "j");
    std::fs::write(&j, r#"{"disks": [{"name": "vdb", "size": 1}]}"#).unwrap();
    let e = Machine::load(&j).unwrap_err().to_string();
    assert!(e.contains("must start with /dev/"), "{e}");
}

#[test]
fn the_example_machine_in_the_repository_loads() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/machines/two-disk-server.toml");
    let m = Machine::load(&path).unwrap();
    assert_eq!(m.disks.len(), 2);
    assert_eq!(m.steps[1].fail.as_deref(), Some("simulated failure requested by the machine file"));
}

#[tokio::test]
async fn root_device_hints_use_the_full_operator_grammar() {
    let (_t, svc, mgr) = ready(TWO_DISKS).await;
    svc.node.set(json!({"uuid": "n1", "properties": {"root_device": {"size": ">= 6"}}}));
    assert_eq!(
        mgr.get_os_install_device(false, &HardwareManagers::empty()).await.unwrap(),
        "/dev/sdb"
    );
    svc.node.set(
        json!({"uuid": "n1", "instance_info": {"root_device": {"serial": "<or> S9 <or> S3"}}}),
    );
    assert_eq!(
        mgr.get_os_install_device(false, &HardwareManagers::empty()).await.unwrap(),
        "/dev/sdc"
    );
}
