//! Parsers for `hdparm -I` (ATA security state) and `nvme id-ctrl -o json` (format and
//! crypto-erase capabilities).

use serde_json::Value;

/// The ATA security section of `hdparm -I`, as whitespace-normalised exact lines
/// (`"not frozen"`, `"supported: enhanced erase"`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AtaSecurity {
    lines: Vec<String>,
}

impl AtaSecurity {
    /// Parse `hdparm -I` output: the tab-indented lines after `Security:`.
    pub fn parse(output: &str) -> Self {
        let mut lines = Vec::new();
        let mut it = output.lines().skip_while(|l| l.trim_end() != "Security:");
        if it.next().is_some() {
            for l in it {
                if !l.starts_with('\t') {
                    break;
                }
                lines.push(l.split_whitespace().collect::<Vec<_>>().join(" "));
            }
        }
        Self { lines }
    }
    fn has(&self, line: &str) -> bool {
        self.lines.iter().any(|l| l == line)
    }
    /// The security feature set is supported.
    pub fn supported(&self) -> bool {
        self.has("supported")
    }
    /// Not frozen (a frozen drive refuses security commands until a power cycle).
    pub fn not_frozen(&self) -> bool {
        self.has("not frozen")
    }
    /// Not locked.
    pub fn not_locked(&self) -> bool {
        self.has("not locked")
    }
    /// No user password is set.
    pub fn not_enabled(&self) -> bool {
        self.has("not enabled")
    }
    /// Enhanced erase is available (IPA: unless `not supported: enhanced erase` is listed).
    pub fn enhanced(&self) -> bool {
        !self.has("not supported: enhanced erase")
    }
}

/// NVMe controller capabilities relevant to erasure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NvmeCaps {
    /// `oacs & 0x2`: Format NVM is supported.
    pub format: bool,
    /// `fna & 0x4`: cryptographic erase is supported.
    pub crypto: bool,
}

impl NvmeCaps {
    /// Parse `nvme id-ctrl -o json`. `None` if the output is not JSON with `oacs`.
    pub fn parse(output: &str) -> Option<Self> {
        let v: Value = serde_json::from_str(output).ok()?;
        let num = |k: &str| v.get(k).and_then(Value::as_u64);
        let oacs = num("oacs")?;
        let fna = num("fna").unwrap_or(0);
        Some(Self { format: oacs & 0x2 != 0, crypto: fna & 0x4 != 0 })
    }
    /// Secure erase setting for `nvme format -s`: 2 (crypto) or 1 (user data).
    pub fn ses(&self) -> u8 {
        if self.crypto { 2 } else { 1 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const HDPARM_NOT_FROZEN: &str = "\n/dev/sda:\n\nATA device, with non-removable media\n\tModel Number:       Fake SSD\nSecurity: \n\tMaster password revision code = 65534\n\t\tsupported\n\tnot\tenabled\n\tnot\tlocked\n\tnot\tfrozen\n\tnot\texpired: security count\n\t\tsupported: enhanced erase\n\t2min for SECURITY ERASE UNIT. 2min for ENHANCED SECURITY ERASE UNIT.\nLogical Unit WWN Device Identifier: 5002538e40000000\n";

    #[test]
    fn parses_hdparm_security_lines_exactly() {
        let s = AtaSecurity::parse(HDPARM_NOT_FROZEN);
        assert!(s.supported() && s.not_frozen() && s.not_locked() && s.not_enabled());
        assert!(s.enhanced());
        let frozen = HDPARM_NOT_FROZEN.replace("\tnot\tfrozen", "\t\tfrozen");
        assert!(!AtaSecurity::parse(&frozen).not_frozen());
        let no_enh = HDPARM_NOT_FROZEN
            .replace("\t\tsupported: enhanced erase", "\tnot\tsupported: enhanced erase");
        assert!(!AtaSecurity::parse(&no_enh).enhanced());
        // Lines after the section (the WWN line) are not part of it.
        assert!(!AtaSecurity::parse("Security: \nfoo\n\tsupported\n").supported());
        assert_eq!(AtaSecurity::parse("no security section"), AtaSecurity::default());
    }

    #[test]
    fn parses_nvme_caps() {
        let c = NvmeCaps::parse(r#"{"vid":5197,"oacs":23,"fna":4}"#).unwrap();
        assert!(c.format && c.crypto);
        assert_eq!(c.ses(), 2);
        let c = NvmeCaps::parse(r#"{"oacs":6,"fna":0}"#).unwrap();
        assert!(c.format && !c.crypto);
        assert_eq!(c.ses(), 1);
        assert!(!NvmeCaps::parse(r#"{"oacs":0}"#).unwrap().format);
        assert!(NvmeCaps::parse("garbage").is_none());
    }
}
