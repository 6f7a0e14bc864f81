//! `clean_uefi_nvram`: UEFI boot entries from `efibootmgr -v`, and the deletion of those whose
//! device path matches one of the given patterns.

use ipa_core::AgentError;
use ipa_core::command::Params;
use serde_json::Value;

/// IPA's default `match_patterns`: entries on a disk (`HD(`), and shim or grub loaders.
pub const DEFAULT_MATCH_PATTERNS: &[&str] = &["^HD\\(", "shim.*\\.efi", "grub.*\\.efi"];

/// One `BootXXXX` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootEntry {
    /// The four hex digits (`0001`).
    pub number: String,
    /// Whether it is active (`*`).
    pub active: bool,
    /// Its label.
    pub label: String,
    /// Its device path (`HD(1,GPT,…)/File(\EFI\…)`), or what follows the label when the output
    /// has no tab between the two.
    pub device_path: String,
}

/// Parse `efibootmgr -v` output. Lines that are not `BootXXXX` entries (`BootCurrent:`,
/// `BootOrder:`, `Timeout:`) are skipped.
pub fn parse_boot_entries(text: &str) -> Vec<BootEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("Boot") else { continue };
        if rest.len() < 4 || !rest.as_bytes()[..4].iter().all(u8::is_ascii_hexdigit) {
            continue;
        }
        let (number, rest) = rest.split_at(4);
        // `BootXXXX* label<TAB>device path`; an inactive entry has a space for the `*`.
        let (active, rest) = match rest.as_bytes().first() {
            Some(b'*') => (true, &rest[1..]),
            Some(b' ') => (false, &rest[1..]),
            _ => continue,
        };
        let rest = rest.strip_prefix(' ').unwrap_or(rest);
        let (label, device_path) = match rest.split_once('\t') {
            Some((l, p)) => (l.trim_end(), p.trim()),
            None => (rest.trim_end(), rest.trim()),
        };
        out.push(BootEntry {
            number: number.to_ascii_uppercase(),
            active,
            label: label.to_string(),
            device_path: device_path.to_string(),
        });
    }
    out
}

/// The `match_patterns` argument as case-insensitive regular expressions (IPA's default when
/// absent). A value that is not a list of strings, or a pattern that does not compile, is an
/// `InvalidCommandParamsError`.
pub fn match_patterns(args: &Params) -> Result<Vec<regex_lite::Regex>, AgentError> {
    let list: Vec<String> = match args.get("match_patterns") {
        None | Some(Value::Null) => DEFAULT_MATCH_PATTERNS.iter().map(|p| p.to_string()).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                AgentError::invalid_params("match_patterns must be a list of strings")
            })?,
        Some(_) => {
            return Err(AgentError::invalid_params("match_patterns must be a list of strings"));
        }
    };
    list.iter()
        .map(|p| {
            regex_lite::RegexBuilder::new(p).case_insensitive(true).build().map_err(|e| {
                AgentError::invalid_params(format!(
                    "match_patterns: {p:?} is not a valid regular expression: {e}"
                ))
            })
        })
        .collect()
}

/// The entries to delete: those whose device path matches any pattern.
pub fn to_delete<'a>(
    entries: &'a [BootEntry],
    patterns: &[regex_lite::Regex],
) -> Vec<&'a BootEntry> {
    entries.iter().filter(|e| patterns.iter().any(|r| r.is_match(&e.device_path))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `efibootmgr -v` on an OVMF VM after a deploy, plus an inactive distribution entry.
    const OVMF: &str = include_str!("../tests/fixtures/efibootmgr-v-ovmf.txt");

    fn params(v: serde_json::Value) -> Params {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn efibootmgr_entries_are_parsed_with_number_flag_label_and_path() {
        let e = parse_boot_entries(OVMF);
        assert_eq!(e.len(), 6, "{e:?}");
        assert_eq!(e[1].number, "0001");
        assert!(e[1].active);
        assert_eq!(e[1].label, "ironic1");
        assert!(e[1].device_path.starts_with("HD(1,GPT,"), "{}", e[1].device_path);
        assert_eq!(e[4].label, "UEFI PXEv4 (MAC:525400123456)");
        assert!(!e[5].active, "no `*`: inactive");
        assert_eq!(e[5].label, "debian");
    }

    #[test]
    fn the_default_patterns_drop_disk_shim_and_grub_entries_and_keep_the_firmwares() {
        let e = parse_boot_entries(OVMF);
        let p = match_patterns(&Params::new()).unwrap();
        let gone: Vec<&str> = to_delete(&e, &p).iter().map(|e| e.number.as_str()).collect();
        assert_eq!(gone, ["0001", "0005"]);
        let p = match_patterns(&params(json!({"match_patterns": ["pxev4", "MAC\\("]}))).unwrap();
        let gone: Vec<&str> = to_delete(&e, &p).iter().map(|e| e.number.as_str()).collect();
        assert_eq!(gone, ["0004"], "patterns match the device path, case-insensitively");
        let p = match_patterns(&params(json!({"match_patterns": []}))).unwrap();
        assert!(to_delete(&e, &p).is_empty(), "an empty list deletes nothing");
    }

    #[test]
    fn match_patterns_that_are_not_a_list_of_valid_regexes_are_invalid_params() {
        for bad in [json!("^HD\\("), json!([1]), json!({"a": "b"}), json!(["(unclosed"])] {
            let e = match_patterns(&params(json!({"match_patterns": bad}))).unwrap_err();
            assert_eq!(e.kind(), "InvalidCommandParamsError", "{bad}: {e}");
        }
    }
}
