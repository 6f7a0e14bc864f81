//! Unit-level tests of the Acme manager against fixture trees (no agent process).

use std::path::Path;

use acme_hardware_manager::AcmeWidgetHardwareManager;
use ipa_core::extension::CommandContext;
use ipa_core::hardware::{HardwareManager, HardwareManagers, HardwareSupport, StepCall, StepKind};
use serde_json::json;

fn fixture(root: &Path, vendor: &str) {
    let widget = root.join("sys/class/acme_widget/widget0");
    std::fs::create_dir_all(&widget).unwrap();
    std::fs::create_dir_all(root.join("sys/class/dmi/id")).unwrap();
    std::fs::write(root.join("sys/class/dmi/id/sys_vendor"), vendor).unwrap();
    std::fs::write(widget.join("firmware_version"), "7.3.1\n").unwrap();
}

#[tokio::test]
async fn scores_mainline_only_on_acme_machines() {
    let acme = tempfile::tempdir().unwrap();
    fixture(acme.path(), "Acme\n");
    let other = tempfile::tempdir().unwrap();
    fixture(other.path(), "Dell Inc.\n");
    assert_eq!(
        AcmeWidgetHardwareManager::new(acme.path()).evaluate_hardware_support().await,
        HardwareSupport::MAINLINE
    );
    assert_eq!(
        AcmeWidgetHardwareManager::new(other.path()).evaluate_hardware_support().await,
        HardwareSupport::NONE
    );
}

#[tokio::test]
async fn inventory_field_and_step_behaviour() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path(), "Acme\n");
    let m = AcmeWidgetHardwareManager::new(dir.path());
    assert_eq!(
        m.inventory_extensions().await.unwrap()["acme_widget"],
        json!({"firmware_version": "7.3.1"})
    );

    let ctx = CommandContext::detached("clean.execute_clean_step");
    let (node, ports) = (json!({}), json!([]));
    let peers = HardwareManagers::empty();
    let call = |step: &'static str, args: serde_json::Value| StepCall {
        step,
        kind: StepKind::Clean,
        node: &node,
        ports: &ports,
        args: serde_json::from_value(args).unwrap(),
        ctx: &ctx,
        peers: &peers,
    };
    assert_eq!(
        m.execute_step(call("reset_acme_widget", json!({}))).await.unwrap(),
        json!({"reset": "soft"})
    );
    let reset = dir.path().join("sys/class/acme_widget/widget0/reset");
    assert_eq!(std::fs::read_to_string(&reset).unwrap(), "soft");
    let e = m.execute_step(call("reset_acme_widget", json!({"mode": "hard"}))).await.unwrap_err();
    assert_eq!(e.kind(), "InvalidCommandParamsError");
    assert!(m.execute_step(call("erase_devices", json!({}))).await.unwrap_err().is_incompatible());
}
