#![no_main]
//! Root-device hints from the node (`properties.root_device`, JSON an operator or a tenant
//! may set): validated with Ironic's texts and matched against a fixed inventory; never a
//! panic (size/operator/regex parsing included).

use std::sync::OnceLock;

use ipa_core::hardware::BlockDevice;
use ipa_core::hardware::hints::{HintDevice, find_devices_by_hints, match_root_device_hints};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn devices() -> &'static [HintDevice] {
    static D: OnceLock<Vec<HintDevice>> = OnceLock::new();
    D.get_or_init(|| {
        let disks = serde_json::json!([
            {"name": "/dev/sda", "model": "QEMU HARDDISK", "size": 21474836480u64, "rotational": true,
             "wwn": "0x5000c500a1b2c3d4", "serial": "WD-123", "vendor": "ATA", "hctl": "0:0:0:0",
             "by_path": "/dev/disk/by-path/pci-0000:00:1f.2-ata-1", "tran": "sata"},
            {"name": "/dev/nvme0n1", "model": "QEMU NVMe Ctrl", "size": 8589934592u64,
             "rotational": false, "serial": "nvme-1", "logical_sectors": 4096, "tran": "nvme"},
            {"name": "/dev/vda", "size": 4294967296u64, "rotational": false}
        ]);
        let list: Vec<BlockDevice> = serde_json::from_value(disks).unwrap();
        list.into_iter().map(HintDevice::from).collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(Value::Object(hints)) = serde_json::from_slice::<Value>(data) else { return };
    let all = find_devices_by_hints(devices(), &hints);
    let first = match_root_device_hints(devices(), &hints);
    if let (Ok(all), Ok(first)) = (&all, &first) {
        assert_eq!(all.first(), first.as_ref(), "the first match is the first of all matches");
    }
});
