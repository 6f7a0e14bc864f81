use proptest::prelude::*;
use serde_json::{Value, json};

use super::spec::{PyValue, matches, parse};
use super::*;

fn dev(name: &str, gib: u64) -> BlockDevice {
    BlockDevice { name: name.into(), size: gib * GIB, ..Default::default() }
}

fn hints(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

fn devices() -> Vec<HintDevice> {
    vec![
        BlockDevice {
            name: "/dev/sda".into(),
            model: Some("PERC H755 Front".into()),
            size: 480 * GIB,
            rotational: false,
            wwn: Some("0x6f4ee0806b3a1c00".into()),
            serial: Some("006b3a1c8006e0ee4f".into()),
            vendor: Some("DELL".into()),
            hctl: Some("0:3:111:0".into()),
            by_path: Some("/dev/disk/by-path/pci-0000:65:00.0-scsi-0:3:111:0".into()),
            tran: Some("sas".into()),
            ..Default::default()
        }
        .into(),
        BlockDevice {
            name: "/dev/sdb".into(),
            model: Some("ST4000NM".into()),
            size: 4000 * GIB,
            rotational: true,
            serial: Some("ZC1ABC".into()),
            vendor: Some("SEAGATE".into()),
            hctl: Some("0:0:1:0".into()),
            tran: Some("sas".into()),
            ..Default::default()
        }
        .into(),
        BlockDevice {
            name: "/dev/nvme0n1".into(),
            model: Some("Dell Ent NVMe P5600".into()),
            size: 1490 * GIB,
            rotational: false,
            wwn: Some("eui.01000000000000005cd2e4d1a2b34c51".into()),
            serial: Some("PHAB123400AB1P6CGN".into()),
            tran: Some("nvme".into()),
            ..Default::default()
        }
        .into(),
    ]
}

fn pick(h: Value) -> Result<String, AgentError> {
    select_install_device(devices(), Some(&h), &[])
}

#[test]
fn grammar_tokenises_like_the_reference() {
    assert_eq!(parse(">= 100").unwrap(), [">=", "100"]);
    assert_eq!(parse("==100").unwrap(), ["==", "100"]);
    assert_eq!(parse("= 5").unwrap(), ["=", "5"]);
    assert_eq!(parse("<or> a <or> b").unwrap(), ["<or>", "a", "b"]);
    assert_eq!(parse("<range-in> [ 10 20 ]").unwrap(), ["<range-in>", "[", "10", "20", "]"]);
    assert_eq!(parse("<all-in> aes mmx").unwrap(), ["<all-in>", "aes", "mmx"]);
    assert_eq!(parse("s<= abc").unwrap(), ["s<=", "abc"]);
    assert_eq!(parse("foo bar").unwrap(), ["foo"]);
    // `<range-in>` with too few atoms falls through to the unary `<` operator.
    assert_eq!(parse("<range-in> %5B").unwrap(), ["<", "range-in>"]);
    assert!(parse("s==").is_err());
    assert!(parse("").is_err());
}

#[test]
fn every_numeric_operator() {
    let v = PyValue::Float(100.0);
    let cases = [
        ("= 100", true),
        ("= 101", false),
        ("== 100", true),
        ("== 99", false),
        ("!= 100", false),
        ("!= 99", true),
        ("< 101", true),
        ("< 100", false),
        ("<= 100", true),
        ("<= 99", false),
        ("> 99", true),
        ("> 100", false),
        (">= 100", true),
        (">= 100.5", false),
    ];
    for (spec, want) in cases {
        assert_eq!(matches(&v, spec).unwrap(), want, "{spec}");
    }
    assert!(matches(&v, "== abc").is_err(), "float('abc') is a ValueError");
}

#[test]
fn every_string_operator() {
    let v = PyValue::Str("m".into());
    let cases = [
        ("s== m", true),
        ("s== n", false),
        ("s!= n", true),
        ("s!= m", false),
        ("s< n", true),
        ("s< m", false),
        ("s<= m", true),
        ("s<= l", false),
        ("s> l", true),
        ("s> m", false),
        ("s>= m", true),
        ("s>= n", false),
        ("<in> m", true),
        ("<or> a <or> m", true),
        ("<or> a <or> b", false),
        ("m", true),
    ];
    for (spec, want) in cases {
        assert_eq!(matches(&v, spec).unwrap(), want, "{spec}");
    }
    assert!(matches(&PyValue::Str("abcdef".into()), "<in> cde").unwrap());
    assert!(!matches(&PyValue::Str("abcdef".into()), "<in> xyz").unwrap());
    // Python typing: a float never equals a string; ordering them is a TypeError.
    assert!(!matches(&PyValue::Float(1.0), "s== 1").unwrap());
    assert!(matches(&PyValue::Float(1.0), "s< 1").is_err());
    assert!(matches(&PyValue::Float(1.0), "<in> 1").is_err());
    assert!(!matches(&PyValue::Float(1.0), "<or> 1 <or> 2").unwrap());
}

#[test]
fn range_in_operator_brackets() {
    let s = |x: &str| PyValue::Str(x.into());
    assert!(matches(&s("10"), "<range-in> [ 10 20 ]").unwrap());
    assert!(!matches(&s("10"), "<range-in> ( 10 20 ]").unwrap());
    assert!(matches(&s("20.0"), "<range-in> ( 10 20 ]").unwrap());
    assert!(!matches(&s("20"), "<range-in> ( 10 20 )").unwrap());
    assert!(matches(&s("15.5"), "<range-in> ( 10 20 )").unwrap());
    assert!(matches(&s("15"), "<range-in> [ 20 10 ]").is_err());
    assert!(matches(&s("15"), "<range-in> { 10 20 ]").is_err());
    assert!(matches(&s("15"), "<range-in> [ 10 20 }").is_err());
    assert!(matches(&s("abc"), "<range-in> [ 10 20 ]").is_err());
}

#[test]
fn all_in_operator_never_applies_to_device_values() {
    assert!(matches(&PyValue::Str("aes".into()), "<all-in> aes").is_err());
}

#[test]
fn normalisation_lowercases_strips_and_quotes() {
    assert_eq!(normalize_expression("  Foo Bar ", "model").unwrap(), "foo%20bar");
    assert_eq!(
        normalize_expression("<or> foo bar <or> Baz", "model").unwrap(),
        "<or> foo%20bar <or> baz"
    );
    assert_eq!(normalize_expression("s==Foo", "model").unwrap(), "s== foo");
    assert_eq!(normalize_expression("<in>0:0", "hctl").unwrap(), "<in> 0%3A0");
    assert_eq!(
        url_quote("/dev/disk/by-path/pci-0000:65:00.0"),
        "/dev/disk/by-path/pci-0000%3A65%3A00.0"
    );
    assert!(normalize_expression("   ", "model").is_err());
}

#[test]
fn parsing_adds_default_operators_and_validates_types() {
    let p = parse_root_device_hints(&hints(json!({
        "size": 100, "model": "Foo Bar", "rotational": "yes", "serial": "<in> ab"
    })))
    .unwrap()
    .unwrap();
    assert_eq!(p[0], ("size".into(), ParsedHint::Int("== 100".into())));
    assert_eq!(p[1], ("model".into(), ParsedHint::Str("s== foo%20bar".into())));
    assert_eq!(p[2], ("rotational".into(), ParsedHint::Bool(true)));
    assert_eq!(p[3], ("serial".into(), ParsedHint::Str("<in> ab".into())));
    assert_eq!(parse_root_device_hints(&Map::new()).unwrap(), None);

    let err = |v: Value| parse_root_device_hints(&hints(v)).unwrap_err().to_string();
    assert_eq!(
        err(json!({"colour": "red"})),
        "The hints \"colour\" are invalid. Valid hints are: \"size, model, wwn, serial, vendor, \
         wwn_with_extension, wwn_vendor_extension, name, rotational, hctl, by_path, tran\""
    );
    assert_eq!(
        err(json!({"size": "big"})),
        "Root device hint \"size\" is not an integer value. Current value: big"
    );
    assert_eq!(
        err(json!({"size": -3})),
        "Root device hint \"size\" should be a positive integer. Current value: -3"
    );
    assert_eq!(
        err(json!({"size": "<or> 10 <or> x"})),
        "Root device hint \"size\" is not an integer value. Current value: <or> 10 <or> x"
    );
    assert_eq!(
        err(json!({"model": 5})),
        "Root device hint \"model\" is not a string value. Hint expression: 5"
    );
    assert_eq!(
        err(json!({"rotational": "maybe"})),
        "Root device hint \"rotational\" is not a Boolean value. Current value: maybe"
    );
    assert_eq!(err(json!({"model": "  "})), "Root device hint model expression is empty");
    for b in ["1", "t", "TRUE", "on", "y", "Yes"] {
        assert_eq!(bool_from_value(&json!(b)), Some(true), "{b}");
    }
    for b in ["0", "f", "False", "OFF", "n", "no"] {
        assert_eq!(bool_from_value(&json!(b)), Some(false), "{b}");
    }
    assert_eq!(bool_from_value(&json!(1)), Some(true));
    assert_eq!(bool_from_value(&json!(2)), None);
}

#[test]
fn every_key_selects_the_expected_device() {
    let cases = [
        (json!({"size": 1490}), "/dev/nvme0n1"),
        (json!({"size": ">= 1000"}), "/dev/sdb"),
        (json!({"size": "<range-in> [ 400 500 ]"}), "/dev/sda"),
        (json!({"model": "dell ent nvme p5600"}), "/dev/nvme0n1"),
        (json!({"model": "<in> nvme"}), "/dev/nvme0n1"),
        (json!({"wwn": "0x6F4EE0806B3A1C00"}), "/dev/sda"),
        (json!({"serial": "<or> nope <or> zc1abc"}), "/dev/sdb"),
        (json!({"vendor": "seagate"}), "/dev/sdb"),
        (json!({"name": "/dev/nvme0n1"}), "/dev/nvme0n1"),
        (json!({"name": "s!= /dev/sda"}), "/dev/sdb"),
        (json!({"rotational": true}), "/dev/sdb"),
        (json!({"rotational": "false", "tran": "nvme"}), "/dev/nvme0n1"),
        (json!({"hctl": "0:0:1:0"}), "/dev/sdb"),
        (json!({"by_path": "/dev/disk/by-path/pci-0000:65:00.0-scsi-0:3:111:0"}), "/dev/sda"),
        (json!({"tran": "sas"}), "/dev/sda"),
        (json!({"tran": "sas", "size": "> 500"}), "/dev/sdb"),
        (json!({"model": "s> q"}), "/dev/sdb"),
    ];
    for (h, want) in cases {
        assert_eq!(pick(h.clone()).unwrap(), want, "{h}");
    }
}

#[test]
fn wwn_extension_hints_and_missing_values() {
    let mut d = devices();
    d[0].device.wwn_with_extension = Some("0x6f4ee0806b3a1c002a1b2c3d4e5f6071".into());
    d[0].device.wwn_vendor_extension = Some("0x2a1b2c3d4e5f6071".into());
    let h = json!({"wwn_vendor_extension": "0x2a1b2c3d4e5f6071"});
    assert_eq!(select_install_device(d.clone(), Some(&h), &[]).unwrap(), "/dev/sda");
    let h = json!({"wwn_with_extension": "0x6f4ee0806b3a1c002a1b2c3d4e5f6071"});
    assert_eq!(select_install_device(d.clone(), Some(&h), &[]).unwrap(), "/dev/sda");
    // A missing string attribute is `str(None)` in the reference: "none".
    let h = json!({"vendor": "s!= dell"});
    assert_eq!(select_install_device(d.clone(), Some(&h), &[]).unwrap(), "/dev/sdb");
    d[1].device.vendor = Some(String::new());
    assert_eq!(select_install_device(d, Some(&h), &[]).unwrap(), "/dev/nvme0n1");
}

#[test]
fn all_serial_mode_matches_any_listed_value() {
    let mut d = devices();
    d[2].serials = Some(vec![None, Some("SHORT1".into()), Some("Long_Serial_SHORT1".into())]);
    d[2].wwns = Some(vec![Some("eui.0100".into()), None]);
    let pick = |h: Value| select_install_device(d.clone(), Some(&h), &[]);
    assert_eq!(pick(json!({"serial": "short1"})).unwrap(), "/dev/nvme0n1");
    assert_eq!(pick(json!({"serial": "long_serial_short1"})).unwrap(), "/dev/nvme0n1");
    assert_eq!(pick(json!({"wwn": "eui.0100"})).unwrap(), "/dev/nvme0n1");
    let mut d2 = devices();
    d2[0].serials = Some(vec![None, None]);
    assert_eq!(
        select_install_device(d2, Some(&json!({"serial": "<in> c"})), &[]).unwrap(),
        "/dev/sdb",
        "a device with no serial at all never matches"
    );
}

#[test]
fn device_not_found_texts() {
    let e = pick(json!({"size": 3})).unwrap_err();
    assert_eq!(e.kind(), "DeviceNotFound");
    assert_eq!(e.code(), 404);
    assert_eq!(
        e.details(),
        "No suitable device was found for deployment using these hints {'size': 3}"
    );
    let e = pick(json!({"colour": "red"})).unwrap_err();
    assert_eq!(e.kind(), "DeviceNotFound");
    assert!(e.details().starts_with(
        "No devices could be found using the root device hints {'colour': 'red'} because they \
         failed to validate. Error: The hints \"colour\" are invalid."
    ));
    let e = pick(json!({"size": "<in> 4"})).unwrap_err();
    assert_eq!(e.kind(), "DeviceNotFound", "type errors while matching too");
    let e = select_install_device(vec![dev("/dev/sda", 2).into()], None, &[]).unwrap_err();
    assert_eq!(
        e.details(),
        "No suitable device was found for deployment - root device hints were not provided \
         and all found block devices are smaller than 4294967296B."
    );
    assert_eq!(select_install_device(vec![], None, &[]).unwrap_err().kind(), "DeviceNotFound");
}

#[test]
fn default_is_smallest_disk_of_at_least_4_gib_ties_by_name() {
    let d = vec![dev("/dev/sdc", 8), dev("/dev/sdb", 8), dev("/dev/sda", 3), dev("/dev/vda", 100)];
    assert_eq!(guess_root_disk(&d).unwrap().name, "/dev/sdb");
    let exact =
        vec![BlockDevice { name: "/dev/x".into(), size: MIN_ROOT_SIZE, ..Default::default() }];
    assert_eq!(guess_root_disk(&exact).unwrap().name, "/dev/x");
}

#[test]
fn first_match_in_device_order_wins_without_sorting() {
    let d: Vec<HintDevice> =
        vec![dev("/dev/sdb", 500).into(), dev("/dev/sda", 100).into(), dev("/dev/sdc", 50).into()];
    let h = json!({"size": ">= 60"});
    assert_eq!(select_install_device(d, Some(&h), &[]).unwrap(), "/dev/sdb");
}

#[test]
fn raid_root_volume_rules() {
    let d: Vec<HintDevice> = vec![
        dev("/dev/sda", 100).into(),
        dev("/dev/sdb", 100).into(),
        dev("/dev/md0", 90).into(),
        dev("/dev/md1", 10).into(),
    ];
    let vol = |device: &str, root: Option<bool>, related: &[&str]| RaidRootVolume {
        device: device.into(),
        is_root_volume: root,
        related: related.iter().map(|s| s.to_string()).collect(),
    };
    // is_root_volume: true wins even over hints.
    let r = [vol("/dev/md1", Some(true), &[])];
    assert_eq!(
        select_install_device(d.clone(), Some(&json!({"name": "/dev/sda"})), &r).unwrap(),
        "/dev/md1"
    );
    // false removes the volume and its holders/partitions.
    let r = [vol("/dev/md1", Some(false), &["/dev/sda"])];
    assert_eq!(select_install_device(d.clone(), None, &r).unwrap(), "/dev/md0");
    let e = select_install_device(d.clone(), Some(&json!({"name": "/dev/md1"})), &r).unwrap_err();
    assert_eq!(e.kind(), "DeviceNotFound");
}

#[test]
fn root_device_hints_come_from_instance_info_then_properties() {
    let n = json!({"instance_info": {"root_device": {"size": 1}}, "properties": {"root_device": {"size": 2}}});
    assert_eq!(node_root_device_hints(&n), Some(&json!({"size": 1})));
    let n =
        json!({"instance_info": {"root_device": {}}, "properties": {"root_device": {"size": 2}}});
    assert_eq!(node_root_device_hints(&n), Some(&json!({"size": 2})));
    assert_eq!(node_root_device_hints(&json!({"instance_info": {}, "properties": {}})), None);
}

#[test]
fn skip_lists_from_node_properties() {
    let d = devices();
    let node = json!({"properties": {"skip_block_devices": [
        {"name": "/dev/sda"}, {"rotational": true}, {"volume_name": "keepme"}
    ]}});
    let s = skip_list_for_disks(&node, &d).unwrap().unwrap();
    assert_eq!(s.into_iter().collect::<Vec<_>>(), ["/dev/sda", "/dev/sdb"]);
    assert_eq!(skip_list_for_raids(&node).unwrap().into_iter().collect::<Vec<_>>(), ["keepme"]);
    assert_eq!(skip_list_for_disks(&json!({"properties": {}}), &d).unwrap(), None);
    assert_eq!(skip_list_for_disks(&node, &[]).unwrap(), None);
    assert_eq!(
        skip_list_for_raids(&json!({"properties": {"skip_block_devices": [{"name": "x"}]}})),
        None
    );
    let bad = json!({"properties": {"skip_block_devices": [{"size": "huge"}]}});
    assert_eq!(skip_list_for_disks(&bad, &d).unwrap_err().kind(), "ValueError");
}

fn arb_devices() -> impl Strategy<Value = Vec<(u64, bool, String)>> {
    prop::collection::vec((1u64..5000, any::<bool>(), "[A-Za-z0-9 ]{1,8}"), 0..8)
}

fn to_devices(spec: &[(u64, bool, String)]) -> Vec<HintDevice> {
    spec.iter()
        .enumerate()
        .map(|(i, (gib, rot, serial))| {
            BlockDevice {
                name: format!("/dev/sd{}", (b'a' + i as u8) as char),
                size: gib * GIB,
                rotational: *rot,
                serial: Some(serial.clone()),
                ..Default::default()
            }
            .into()
        })
        .collect()
}

proptest! {
    #[test]
    fn size_operators_agree_with_hand_computation(spec in arb_devices(), n in 1u64..5000,
                                                  op in prop::sample::select(vec!["==", "!=", ">=", ">", "<=", "<", "="])) {
        let devs = to_devices(&spec);
        let h = json!({"size": format!("{op} {n}")});
        let expected = spec.iter().position(|(g, _, _)| match op {
            "==" => *g == n, "!=" => *g != n, ">=" | "=" => *g >= n,
            ">" => *g > n, "<=" => *g <= n, _ => *g < n,
        });
        let got = select_install_device(devs.clone(), Some(&h), &[]);
        match expected {
            Some(i) => prop_assert_eq!(got.unwrap(), devs[i].device.name.clone()),
            None => prop_assert_eq!(got.unwrap_err().kind().to_string(), "DeviceNotFound"),
        }
    }

    #[test]
    fn serial_equality_is_case_insensitive_and_space_safe(spec in arb_devices(), pick in 0usize..8, rot in any::<bool>()) {
        prop_assume!(!spec.is_empty());
        let devs = to_devices(&spec);
        let target = spec[pick % spec.len()].2.clone();
        prop_assume!(!target.trim().is_empty());
        let h = json!({"serial": target.to_uppercase(), "rotational": rot});
        let norm = |s: &str| s.trim().to_lowercase();
        let expected = spec.iter().position(|(_, r, s)| norm(s) == norm(&target) && *r == rot);
        let got = select_install_device(devs.clone(), Some(&h), &[]);
        match expected {
            Some(i) => prop_assert_eq!(got.unwrap(), devs[i].device.name.clone()),
            None => prop_assert_eq!(got.unwrap_err().kind().to_string(), "DeviceNotFound"),
        }
    }

    #[test]
    fn default_guess_agrees_with_sorting(spec in arb_devices()) {
        let devs: Vec<BlockDevice> = to_devices(&spec).into_iter().map(|d| d.device).collect();
        let mut sorted = devs.clone();
        sorted.sort_by_key(|d| (d.size, d.name.clone()));
        let expected = sorted.iter().find(|d| d.size >= 4 * GIB).map(|d| d.name.clone());
        prop_assert_eq!(guess_root_disk(&devs).ok().map(|d| d.name.clone()), expected);
    }

    #[test]
    fn in_operator_is_substring(hay in "[a-z0-9]{0,12}", needle in "[a-z0-9]{1,4}") {
        prop_assert_eq!(matches(&PyValue::Str(hay.clone()), &format!("<in> {needle}")).unwrap(), hay.contains(&needle));
    }
}
