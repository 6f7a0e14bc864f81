//! Inspection collectors beyond the base inventory, selected by `inspection_collectors`:
//! `pci-devices`, `numa-topology`, `dmi-decode`, `usb-devices`, `lldp`. Their output keys are
//! the reference collectors' keys; they are merged after the inventory's own keys.

use serde_json::{Map, Value, json};

use crate::machine::Machine;

/// Collector names this manager implements.
pub const COLLECTORS: &[&str] =
    &["pci-devices", "numa-topology", "dmi-decode", "usb-devices", "lldp"];

/// `pci_devices: [{vendor_id, product_id, class, revision, bus, numa_node_id}]` from
/// `/sys/bus/pci/devices`.
pub fn pci_devices(m: &Machine) -> Value {
    let base = "/sys/bus/pci/devices";
    let strip = |s: Option<String>| s.map(|v| v.trim_start_matches("0x").to_string());
    let devs: Vec<Value> = m
        .list(base)
        .into_iter()
        .map(|bus| {
            let r = |f: &str| m.read(&format!("{base}/{bus}/{f}"));
            let numa = r("numa_node").and_then(|n| n.parse::<i64>().ok()).filter(|n| *n >= 0);
            json!({
                "vendor_id": strip(r("vendor")),
                "product_id": strip(r("device")),
                "class": strip(r("class")),
                "revision": strip(r("revision")),
                "bus": bus,
                "numa_node_id": numa,
            })
        })
        .collect();
    Value::Array(devs)
}

fn cpu_list(spec: &str) -> Vec<u64> {
    spec.split(',')
        .filter(|p| !p.is_empty())
        .flat_map(|p| match p.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (a.parse().unwrap_or(1), b.parse().unwrap_or(0));
                (a..=b).collect::<Vec<u64>>()
            }
            None => p.parse().ok().into_iter().collect(),
        })
        .collect()
}

/// `numa_topology: {ram: [{numa_node, size_kb}], cpus: [{cpu, numa_node, thread_siblings}],
/// nics: [{name, numa_node}]}` from `/sys/devices/system/node`.
pub fn numa_topology(m: &Machine) -> Value {
    let base = "/sys/devices/system/node";
    let nodes: Vec<(u64, String)> = m
        .list(base)
        .into_iter()
        .filter_map(|n| n.strip_prefix("node").and_then(|i| i.parse().ok()).map(|i| (i, n)))
        .collect();
    let mut ram = Vec::new();
    let mut cpus = Vec::new();
    for (id, dir) in &nodes {
        let kb = m.read(&format!("{base}/{dir}/meminfo")).and_then(|t| {
            t.lines().find_map(|l| {
                let rest = l.split_once("MemTotal:")?.1;
                rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok()
            })
        });
        ram.push(json!({"numa_node": id, "size_kb": kb}));
        let mut by_core: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
        for c in cpu_list(&m.read(&format!("{base}/{dir}/cpulist")).unwrap_or_default()) {
            let core = m
                .read(&format!("/sys/devices/system/cpu/cpu{c}/topology/core_id"))
                .unwrap_or_else(|| c.to_string());
            by_core.entry(core).or_default().push(c);
        }
        for (core, threads) in by_core {
            cpus.push(json!({"cpu": core.parse::<u64>().unwrap_or(0), "numa_node": id, "thread_siblings": threads}));
        }
    }
    let nics: Vec<Value> = m
        .interface_names()
        .into_iter()
        .filter_map(|n| {
            let node =
                m.read(&format!("/sys/class/net/{n}/device/numa_node"))?.parse::<i64>().ok()?;
            Some(json!({"name": n, "numa_node": node}))
        })
        .collect();
    json!({"ram": ram, "cpus": cpus, "nics": nics})
}

/// `dmi: {bios, system, baseboard, chassis}` from `/sys/class/dmi/id` (the reference parses
/// `dmidecode`; this covers the identity sections, not per-DIMM/CPU records).
pub fn dmi(m: &Machine) -> Value {
    let id = |f: &str| m.read(&format!("/sys/class/dmi/id/{f}"));
    json!({
        "bios": {"Vendor": id("bios_vendor"), "Version": id("bios_version"), "Release Date": id("bios_date")},
        "system": {"Manufacturer": id("sys_vendor"), "Product Name": id("product_name"),
                   "Version": id("product_version"), "Serial Number": id("product_serial"),
                   "UUID": id("product_uuid"), "SKU Number": id("product_sku"), "Family": id("product_family")},
        "baseboard": {"Manufacturer": id("board_vendor"), "Product Name": id("board_name"),
                      "Version": id("board_version"), "Serial Number": id("board_serial")},
        "chassis": {"Manufacturer": id("chassis_vendor"), "Type": id("chassis_type"),
                    "Serial Number": id("chassis_serial")},
    })
}

/// `usb_devices: [{product, vendor, handle}]` from `/sys/bus/usb/devices` (the reference
/// uses lshw; `handle` is `USB:<bus>:<devnum>`).
pub fn usb_devices(m: &Machine) -> Value {
    let base = "/sys/bus/usb/devices";
    let devs: Vec<Value> = m
        .list(base)
        .into_iter()
        .filter(|d| !d.contains(':'))
        .filter_map(|d| {
            let r = |f: &str| m.read(&format!("{base}/{d}/{f}"));
            let busnum = r("busnum")?;
            let devnum = r("devnum")?;
            Some(json!({
                "product": r("product").unwrap_or_default(),
                "vendor": r("manufacturer").unwrap_or_default(),
                "handle": format!("USB:{busnum}:{devnum}"),
            }))
        })
        .collect();
    Value::Array(devs)
}

/// Run the selected collectors (names from `inspection_collectors`, comma-separated).
pub fn run(m: &Machine, selected: &[String], lldp: Option<Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for name in selected {
        match name.as_str() {
            "pci-devices" => {
                out.insert("pci_devices".into(), pci_devices(m));
            }
            "numa-topology" => {
                out.insert("numa_topology".into(), numa_topology(m));
            }
            "dmi-decode" => {
                out.insert("dmi".into(), dmi(m));
            }
            "usb-devices" => {
                out.insert("usb_devices".into(), usb_devices(m));
            }
            "lldp" => {
                out.insert("lldp_raw".into(), lldp.clone().unwrap_or_else(|| json!({})));
            }
            _ => {}
        }
    }
    out
}
