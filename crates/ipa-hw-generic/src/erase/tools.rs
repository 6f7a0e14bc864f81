//! Parser for `hdparm -I` (ATA security state).

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
}
