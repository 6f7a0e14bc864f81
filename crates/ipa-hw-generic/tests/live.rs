//! The inventory of this very machine (read-only) has IPA's key set, key order and types —
//! checked against the example in spec `ipa-agent.md` §5.7.

use std::sync::Arc;

use ipa_core::hardware::HardwareManagers;
use ipa_core::os::FakeRunner;
use ipa_hw_generic::{GenericHardwareManager, GenericOptions, Machine};
use serde_json::{Value, json};

fn spec_example() -> Value {
    json!({"interfaces": [
       {"name": "eno1", "mac_address": "3c:fd:fe:aa:bb:01", "ipv4_address": "10.0.0.5",
        "ipv6_address": "fe80::3efd:feff:feaa:bb01%eno1", "has_carrier": true, "lldp": null,
        "vendor": "0x8086", "product": "0x1572", "client_id": null, "biosdevname": "em1",
        "speed_mbps": 10000, "pci_address": "0000:18:00.0", "driver": "i40e"}],
     "cpu": {"model_name": "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", "frequency": "3200.0000", "count": 128,
             "architecture": "x86_64", "flags": ["fpu", "vme", "sse2", "avx2", "avx512f"], "socket_count": 2},
     "disks": [
       {"name": "/dev/sda", "model": "PERC H755 Front", "size": 479559942144u64, "rotational": false,
        "wwn": "0x6f4ee0806b3a1c00", "serial": "006b3a1c8006e0ee4f", "vendor": "DELL",
        "wwn_with_extension": "0x6f4ee0806b3a1c002a1b2c3d4e5f6071", "wwn_vendor_extension": "0x2a1b2c3d4e5f6071",
        "hctl": "0:3:111:0", "by_path": "/dev/disk/by-path/pci-0000:65:00.0-scsi-0:3:111:0",
        "logical_sectors": 512, "physical_sectors": 512, "tran": "sas"}],
     "memory": {"total": 540800000000u64, "physical_mb": 524288},
     "bmc_address": "10.1.0.5", "bmc_v6address": "::/0",
     "system_vendor": {"product_name": "PowerEdge R650 (SKU=0A5C;ModelName=PowerEdge R650)",
                       "serial_number": "ABC1234", "manufacturer": "Dell Inc.",
                       "firmware": {"vendor": "Dell Inc.", "version": "1.10.2", "build_date": "03/22/2023"}},
     "boot": {"current_boot_mode": "uefi", "pxe_interface": "01-3c-fd-fe-aa-bb-01"},
     "hostname": "localhost.localdomain",
     "bmc_mac": "d0:8e:79:aa:bb:cc"})
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// Same keys in the same order; every non-null value has the example's type (null is
/// allowed where IPA allows it: optional fields).
fn assert_shape(path: &str, got: &Value, want: &Value) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            let gk: Vec<_> = g.keys().collect();
            let wk: Vec<_> =
                w.keys().filter(|k| *k != "bmc_mac" || g.contains_key("bmc_mac")).collect();
            assert_eq!(gk, wk, "keys of {path}");
            for (k, wv) in w {
                if let Some(gv) = g.get(k) {
                    assert_shape(&format!("{path}.{k}"), gv, wv);
                }
            }
        }
        (Value::Array(g), Value::Array(w)) => {
            if let Some(wf) = w.first() {
                for (i, gv) in g.iter().enumerate() {
                    assert_shape(&format!("{path}[{i}]"), gv, wf);
                }
            }
        }
        (Value::Null, _) | (_, Value::Null) => {}
        (g, w) => assert_eq!(type_name(g), type_name(w), "type of {path}: {g}"),
    }
}

#[tokio::test]
async fn live_inventory_has_ipa_keys_types_and_real_values() {
    let runner = FakeRunner::new();
    let mgr = HardwareManagers::single(Arc::new(GenericHardwareManager::new(
        GenericOptions { machine: Machine::live(), ..Default::default() },
        Arc::new(runner.clone()),
    )));
    let mut inv = serde_json::to_value(mgr.list_hardware_info().await.unwrap()).unwrap();
    // After IPA's keys, ours: the key that signs erase reports.
    let obj = inv.as_object_mut().unwrap();
    assert_eq!(obj.keys().next_back().map(String::as_str), Some("erase_report_key"));
    let key = obj.shift_remove("erase_report_key").unwrap();
    assert!(key.as_str().unwrap().starts_with("ed25519:"), "{key}");
    assert_shape("inventory", &inv, &spec_example());
    // Real values of this machine.
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as u64;
    assert!(inv["cpu"]["count"].as_u64().unwrap() >= cpus);
    assert!(inv["cpu"]["frequency"].is_string(), "IPA keeps the frequency a string");
    assert!(inv["memory"]["total"].as_u64().unwrap() > 1 << 28);
    assert!(!inv["cpu"]["architecture"].as_str().unwrap().is_empty());
    let disks = inv["disks"].as_array().unwrap();
    for d in disks {
        let name = d["name"].as_str().unwrap();
        assert!(name.starts_with("/dev/"));
        let k = name.trim_start_matches("/dev/");
        assert!(!k.starts_with("loop") && !k.starts_with("zram") && !k.starts_with("ram"));
        assert!(d["size"].as_u64().unwrap() > 0);
        assert!(d.get("uuid").is_none(), "disks carry no uuid");
    }
    let sys_block = std::fs::read_dir("/sys/block").unwrap().count();
    assert!(sys_block == 0 || !disks.is_empty() || cfg!(not(target_os = "linux")));
    for nic in inv["interfaces"].as_array().unwrap() {
        assert_ne!(nic["name"], "lo");
        assert!(!nic["mac_address"].as_str().unwrap().starts_with("fa:"));
    }
    let boot = inv["boot"]["current_boot_mode"].as_str().unwrap();
    assert_eq!(boot == "uefi", std::path::Path::new("/sys/firmware/efi").is_dir());
    // No IPMI device here: no external process at all in the common path.
    if !std::path::Path::new("/dev/ipmi0").exists() {
        assert!(runner.calls().is_empty(), "{:?}", runner.command_lines());
        assert_eq!(inv["bmc_address"], Value::Null);
    }
}
