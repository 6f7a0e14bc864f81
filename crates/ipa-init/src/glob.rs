//! `fnmatch(3)` with flags 0, as kmod matches `modules.alias` patterns against modaliases:
//! `*` (any run, `/` included), `?` (one character), `[...]` (set, ranges, `!`/`^` negation,
//! `]` first is literal) and `\` escaping the next character. An unterminated `[` is literal.

/// Does `text` match the glob `pattern`?
pub fn fnmatch(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0usize, 0usize);
    // Where to resume after the last `*`: (pattern index after the star, text index).
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let step = match p.get(pi) {
            Some(b'*') => {
                // Collapse runs of stars.
                while p.get(pi) == Some(&b'*') {
                    pi += 1;
                }
                if pi == p.len() {
                    return true;
                }
                star = Some((pi, ti));
                continue;
            }
            Some(b'?') => Some(1),
            Some(b'[') => match bracket(&p[pi..], t[ti]) {
                Some((true, len)) => Some(len),
                Some((false, _)) => None,
                // Unterminated: a literal '['.
                None => (t[ti] == b'[').then_some(1),
            },
            Some(b'\\') if pi + 1 < p.len() => (p[pi + 1] == t[ti]).then_some(2),
            Some(&c) => (c == t[ti]).then_some(1),
            None => None,
        };
        match step {
            Some(len) => {
                pi += len;
                ti += 1;
            }
            None => match star {
                // Let the last star swallow one more character and retry.
                Some((sp, st)) => {
                    pi = sp;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    while p.get(pi) == Some(&b'*') {
        pi += 1;
    }
    pi == p.len()
}

/// Match one byte against the bracket expression at the start of `p` (`p[0] == b'['`).
/// Returns (matched, length of the expression), or `None` when it is unterminated.
fn bracket(p: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some(b'!') | Some(b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let mut lo = *p.get(i)?;
        if lo == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if lo == b'\\' {
            i += 1;
            lo = *p.get(i)?;
        }
        i += 1;
        if p.get(i) == Some(&b'-') && p.get(i + 1).is_some_and(|&h| h != b']') {
            let mut hi = p[i + 1];
            i += 2;
            if hi == b'\\' {
                hi = *p.get(i)?;
                i += 1;
            }
            if lo <= c && c <= hi {
                matched = true;
            }
        } else if lo == c {
            matched = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fnmatch;

    #[test]
    fn basics() {
        assert!(fnmatch("abc", "abc"));
        assert!(!fnmatch("abc", "abcd"));
        assert!(!fnmatch("abcd", "abc"));
        assert!(fnmatch("a*", "a"));
        assert!(fnmatch("a*c", "abbbbc"));
        assert!(!fnmatch("a*c", "abbbbd"));
        assert!(fnmatch("*", ""));
        assert!(fnmatch("a?c", "abc"));
        assert!(!fnmatch("a?c", "ac"));
        assert!(fnmatch("a*b*c*d", "aXbYcZd"));
        assert!(fnmatch("a*b*c*d", "abcbcd"));
        assert!(!fnmatch("a*b*c*d", "abcbce"));
        assert!(fnmatch("*/x", "a/b/x"), "no FNM_PATHNAME");
    }

    #[test]
    fn brackets_and_escapes() {
        assert!(fnmatch("[abc]", "b"));
        assert!(!fnmatch("[abc]", "d"));
        assert!(fnmatch("[a-f]x", "ex"));
        assert!(!fnmatch("[a-f]x", "gx"));
        assert!(fnmatch("[!a-f]x", "gx"));
        assert!(fnmatch("[^a-f]x", "gx"));
        assert!(!fnmatch("[!a-f]x", "ax"));
        assert!(fnmatch("[]]", "]"));
        assert!(fnmatch("[!]]", "a"));
        assert!(fnmatch("[a-]", "-"));
        assert!(fnmatch("[", "["), "unterminated bracket is literal");
        assert!(fnmatch("a\\*", "a*"));
        assert!(!fnmatch("a\\*", "ab"));
        // A real acpi alias with brackets.
        assert!(fnmatch("acpi*:PNP0C0[9A]:*", "acpi:PNP0C0A:PNP0C0A:"));
        assert!(!fnmatch("acpi*:PNP0C0[9A]:*", "acpi:PNP0C0B:"));
    }

    #[test]
    fn real_modules_alias_lines() {
        // virtio-net PCI function (1af4:1000) on QEMU.
        let virtio_net_pci = "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00";
        assert!(fnmatch("pci:v00001AF4d*sv*sd*bc*sc*i*", virtio_net_pci)); // virtio_pci
        assert!(!fnmatch("pci:v*d*sv*sd*bc01sc08i02*", virtio_net_pci)); // nvme
        // The virtio devices virtio_pci creates.
        assert!(fnmatch("virtio:d00000001v*", "virtio:d00000001v00001AF4")); // virtio_net
        assert!(fnmatch("virtio:d00000002v*", "virtio:d00000002v00001AF4")); // virtio_blk
        assert!(!fnmatch("virtio:d00000002v*", "virtio:d00000001v00001AF4"));
        // An NVMe controller (class 01 08 02) and an AHCI one (01 06 01).
        let nvme = "pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02";
        let ahci = "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01";
        assert!(fnmatch("pci:v*d*sv*sd*bc01sc08i02*", nvme));
        assert!(!fnmatch("pci:v*d*sv*sd*bc01sc06i01*", nvme));
        assert!(fnmatch("pci:v*d*sv*sd*bc01sc06i01*", ahci));
        assert!(!fnmatch("pci:v00001AF4d*sv*sd*bc*sc*i*", ahci));
        // A CPU feature alias (crc32c_intel: feature 0094).
        let cpu = "cpu:type:x86,ven0000fam0006mod003F:feature:,0000,0001,0002,0094,00E5,";
        assert!(fnmatch("cpu:type:x86,ven*fam*mod*:feature:*0094*", cpu));
        assert!(!fnmatch("cpu:type:x86,ven*fam*mod*:feature:*0095*", cpu));
    }
}
