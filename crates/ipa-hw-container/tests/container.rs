//! Container steps: support, YAML steps, the allowed_containers policy and exact command lines.

use std::path::Path;
use std::sync::Arc;

use ipa_core::extension::CommandContext;
use ipa_core::hardware::{HardwareManager, HardwareSupport, StepCall, StepKind};
use ipa_core::os::{CommandRunner, ExecOutput, FakeResponse, FakeRunner};
use ipa_core::{AgentError, Params};
use ipa_hw_container::{ContainerConfig, ContainerHardwareManager};
use serde_json::{Value, json};

const STEPS_YAML: &str = r#"
steps:
  - name: acme_wipe_nvme
    image: docker://registry.example/acme/wipe:1.2
    priority: 42
    interface: deploy
    reboot_requested: true
    abortable: true
    pull_options: ["--tls-verify=false"]
    run_options: ["--rm", "--privileged", "-v", "/dev:/dev"]
  - name: acme_report
    image: oci://registry.example/acme/report:3
  - name: erase_devices
    image: registry.example/evil:1
  - name: generic_container_step
    image: registry.example/evil:1
  - name: get_clean_steps
    image: registry.example/evil:1
  - name: Not-A-Name
    image: registry.example/evil:1
  - name: acme_report
    image: registry.example/evil:1
"#;

fn with_steps_file(root: &Path) {
    let p = root.join("etc/ironic-python-agent.d/mysteps.yaml");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, STEPS_YAML).unwrap();
}

fn manager(root: &Path, runner: &FakeRunner, config: ContainerConfig) -> ContainerHardwareManager {
    ContainerHardwareManager::new(root, Arc::new(runner.clone()) as Arc<dyn CommandRunner>, config)
}

async fn run(
    m: &ContainerHardwareManager,
    kind: StepKind,
    step: &str,
    args: Value,
) -> Result<Value, AgentError> {
    let ctx = CommandContext::detached("x");
    let (node, ports) = (json!({}), json!([]));
    let args: Params = serde_json::from_value(args).unwrap();
    let peers = ipa_core::hardware::HardwareManagers::empty();
    m.execute_step(StepCall {
        step,
        kind,
        node: &node,
        ports: &ports,
        args,
        ctx: &ctx,
        peers: &peers,
    })
    .await
}

fn names(steps: &[ipa_core::hardware::Step]) -> Vec<(String, i64)> {
    steps.iter().map(|s| (s.step.clone(), s.priority)).collect()
}

#[tokio::test]
async fn supported_when_podman_or_docker_answers() {
    let dir = tempfile::tempdir().unwrap();
    let r = FakeRunner::new();
    assert_eq!(
        manager(dir.path(), &r, Default::default()).evaluate_hardware_support().await,
        HardwareSupport::MAINLINE
    );
    r.missing("podman");
    assert_eq!(
        manager(dir.path(), &r, Default::default()).evaluate_hardware_support().await,
        HardwareSupport::MAINLINE
    );
    assert_eq!(r.command_lines(), ["podman --version", "podman --version", "docker --version"]);
    r.on("docker", &["--version"], [FakeResponse::Output(ExecOutput::failed(127, "no"))]);
    assert_eq!(
        manager(dir.path(), &r, Default::default()).evaluate_hardware_support().await,
        HardwareSupport::NONE
    );
}

#[tokio::test]
async fn yaml_steps_priority_is_honoured_for_clean_only_and_collisions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    with_steps_file(dir.path());
    let m = manager(dir.path(), &FakeRunner::new(), Default::default());
    let (n, p) = (json!({}), json!([]));
    let clean = m.get_clean_steps(&n, &p).await.unwrap();
    assert_eq!(
        names(&clean),
        [
            ("generic_container_step".to_string(), 0),
            ("container_clean_step".into(), 0),
            ("acme_wipe_nvme".into(), 42),
            ("acme_report".into(), 0)
        ]
    );
    let wipe = serde_json::to_value(&clean[2]).unwrap();
    assert_eq!(
        wipe,
        json!({"step": "acme_wipe_nvme", "priority": 42, "interface": "deploy", "reboot_requested": true, "abortable": true})
    );
    let generic = serde_json::to_value(&clean[0]).unwrap();
    assert_eq!(generic["abortable"], true);
    assert_eq!(generic["argsinfo"]["container_url"]["required"], true);
    assert_eq!(generic["argsinfo"]["pull_options"]["required"], false);
    assert_eq!(generic["argsinfo"]["run_options"]["required"], false);
    for steps in
        [m.get_deploy_steps(&n, &p).await.unwrap(), m.get_service_steps(&n, &p).await.unwrap()]
    {
        assert_eq!(
            names(&steps)[2],
            ("acme_wipe_nvme".to_string(), 0),
            "deploy/service force priority 0"
        );
        assert_eq!(steps.len(), 4);
    }
    // Refused names are not runnable either: they fall through to the next manager.
    let e = run(&m, StepKind::Clean, "erase_devices", json!({})).await.unwrap_err();
    assert!(e.is_incompatible());
}

#[tokio::test]
async fn declared_step_pulls_then_runs_its_image_with_its_options() {
    let dir = tempfile::tempdir().unwrap();
    with_steps_file(dir.path());
    let r = FakeRunner::new();
    let m = manager(dir.path(), &r, Default::default());
    run(&m, StepKind::Clean, "acme_wipe_nvme", json!({})).await.unwrap();
    run(&m, StepKind::Deploy, "acme_report", json!({})).await.unwrap();
    assert_eq!(
        r.command_lines(),
        [
            "podman pull --tls-verify=false docker://registry.example/acme/wipe:1.2",
            "podman run --rm --privileged -v /dev:/dev docker://registry.example/acme/wipe:1.2",
            "podman pull oci://registry.example/acme/report:3",
            "podman run --rm --network=host oci://registry.example/acme/report:3",
        ]
    );
}

fn allow(list: &[&str]) -> ContainerConfig {
    ContainerConfig {
        allowed_containers: list.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn allowed_image_runs_with_configured_options_only() {
    let dir = tempfile::tempdir().unwrap();
    let r = FakeRunner::new();
    let m = manager(dir.path(), &r, allow(&["registry.example/tools/burn:7"]));
    let args = json!({"container_url": "docker://registry.example/tools/burn:7",
                      "pull_options": ["--creds=x:y"], "run_options": ["--privileged"]});
    run(&m, StepKind::Clean, "generic_container_step", args.clone()).await.unwrap();
    run(&m, StepKind::Service, "container_clean_step", args).await.unwrap();
    assert_eq!(
        r.command_lines(),
        [
            "podman pull docker://registry.example/tools/burn:7",
            "podman run --rm --network=host docker://registry.example/tools/burn:7",
            "podman pull docker://registry.example/tools/burn:7",
            "podman run --rm --network=host docker://registry.example/tools/burn:7",
        ],
        "caller options ignored without allow_arbitrary_containers"
    );
}

#[tokio::test]
async fn image_not_in_allowed_containers_is_refused_before_any_command() {
    let dir = tempfile::tempdir().unwrap();
    let r = FakeRunner::new();
    let m = manager(dir.path(), &r, allow(&["registry.example/tools/burn:7"]));
    for url in [
        "registry.example/tools/burn:8",
        "docker://registry.example/tools/burn",
        "evil.example/tools/burn:7",
    ] {
        let e = run(&m, StepKind::Clean, "generic_container_step", json!({"container_url": url}))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), "ContainerNotPermittedError");
        assert_eq!(e.code(), 500);
        assert!(e.details().contains(url), "{}", e.details());
    }
    let e = run(&m, StepKind::Clean, "generic_container_step", json!({})).await.unwrap_err();
    assert_eq!(e.kind(), "InvalidCommandParamsError");
    assert!(r.calls().is_empty());
}

#[tokio::test]
async fn arbitrary_containers_use_the_callers_options() {
    let dir = tempfile::tempdir().unwrap();
    let r = FakeRunner::new();
    let config = ContainerConfig {
        allow_arbitrary_containers: true,
        runner: "docker".into(),
        ..Default::default()
    };
    let m = manager(dir.path(), &r, config);
    run(&m, StepKind::Clean, "generic_container_step",
        json!({"container_url": "anything.example/x:1", "pull_options": ["--quiet"], "run_options": "--rm --net=none"}))
        .await
        .unwrap();
    run(
        &m,
        StepKind::Clean,
        "generic_container_step",
        json!({"container_url": "anything.example/y:2"}),
    )
    .await
    .unwrap();
    assert_eq!(
        r.command_lines(),
        [
            "docker pull --quiet anything.example/x:1",
            "docker run --rm --net=none anything.example/x:1",
            "docker pull anything.example/y:2",
            "docker run --rm --network=host anything.example/y:2",
        ]
    );
}

#[tokio::test]
async fn failed_pull_stops_before_run_and_fails_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let r = FakeRunner::new();
    r.on("podman", &["pull"], [FakeResponse::Output(ExecOutput::failed(125, "manifest unknown"))]);
    let m = manager(dir.path(), &r, allow(&["registry.example/x:1"]));
    let e = run(
        &m,
        StepKind::Clean,
        "generic_container_step",
        json!({"container_url": "registry.example/x:1"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), "CleaningError");
    assert!(
        e.details().contains(
            "podman pull registry.example/x:1 failed with exit code 125: manifest unknown"
        ),
        "{}",
        e.details()
    );
    assert_eq!(r.calls().len(), 1);
    let e = run(
        &m,
        StepKind::Deploy,
        "generic_container_step",
        json!({"container_url": "registry.example/x:1"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), "DeploymentError");
}

#[test]
fn container_section_is_read_from_configuration_with_ipa_defaults() {
    use figment::providers::{Format, Toml};
    let d = ContainerConfig::default();
    assert_eq!(
        serde_json::to_value(&d).unwrap(),
        json!({"allow_arbitrary_containers": false, "allowed_containers": [],
               "container_steps_file": "/etc/ironic-python-agent.d/mysteps.yaml", "runner": "podman",
               "pull_options": [], "run_options": ["--rm", "--network=host"]})
    );
    let f = figment::Figment::new().merge(Toml::string(
        "[container]\nallowed_containers = \"a/b:1, c/d:2\"\nallow_arbitrary_containers = \"yes\"\nrunner = \"docker\"\n",
    ));
    let c = ContainerConfig::from_figment(&f).unwrap();
    assert_eq!(c.allowed_containers, ["a/b:1", "c/d:2"]);
    assert!(c.allow_arbitrary_containers);
    assert_eq!(c.runner, "docker");
    assert_eq!(ContainerConfig::from_figment(&figment::Figment::new()).unwrap(), d);
    let bad = figment::Figment::new().merge(Toml::string("[container]\nbogus = 1\n"));
    assert!(ContainerConfig::from_figment(&bad).is_err());
}

#[test]
fn ironic_agent_containers_block_overrides_and_ignores_junk() {
    let c = ContainerConfig::default().with_ironic_overrides(Some(&json!({
        "allowed_containers": ["q/r:1"], "runner": "docker", "allow_arbitrary_containers": "not-a-bool",
        "unknown_key": 1, "run_options": ["--rm"]
    })));
    assert_eq!(c.allowed_containers, ["q/r:1"]);
    assert_eq!(c.runner, "docker");
    assert!(!c.allow_arbitrary_containers);
    assert_eq!(c.run_options, ["--rm"]);
}
