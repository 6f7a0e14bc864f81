//! The agent's Prometheus scrape (`GET /metrics`, docs/metrics.md) as structured data: what
//! `ipactl metrics --json` prints. The parser reads the text format 0.0.4 the agent serves
//! (`# HELP`, `# TYPE`, `name{label="value",…} value`); a line it cannot read is an error
//! naming the line, never a panic.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::ClientError;

/// One metric family: its declared name, type and help, and its samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricFamily {
    /// The name in `# TYPE` (`ipa_commands_total`, `ipa_command_duration_seconds`).
    pub name: String,
    /// `counter`, `gauge`, `histogram`, … (`untyped` when no `# TYPE` line named it).
    #[serde(rename = "type")]
    pub kind: String,
    /// The `# HELP` text.
    pub help: String,
    /// Its samples, in the order served.
    pub samples: Vec<Sample>,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// The sample's own name (`…_bucket`, `…_sum`, `…_count` for a histogram).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value (`NaN` and infinities serialise as `null` in JSON).
    pub value: f64,
}

fn bad(n: usize, why: &str) -> ClientError {
    ClientError::Transport(format!("metrics line {n}: {why}"))
}

fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

/// `{a="x",b="y"}` (after the name) → labels and the rest of the line.
fn labels(mut s: &str, n: usize) -> Result<(BTreeMap<String, String>, &str), ClientError> {
    let mut out = BTreeMap::new();
    s = s.strip_prefix('{').ok_or_else(|| bad(n, "expected `{`"))?;
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((out, rest));
        }
        let (key, rest) = s.split_once('=').ok_or_else(|| bad(n, "label without `=`"))?;
        let key = key.trim();
        if !is_name(key) {
            return Err(bad(n, "bad label name"));
        }
        let mut chars = rest.strip_prefix('"').ok_or_else(|| bad(n, "unquoted label"))?.chars();
        let mut value = String::new();
        loop {
            match chars.next().ok_or_else(|| bad(n, "unterminated label value"))? {
                '"' => break,
                '\\' => match chars.next().ok_or_else(|| bad(n, "dangling escape"))? {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                c => value.push(c),
            }
        }
        out.insert(key.to_string(), value);
        s = chars.as_str().trim_start();
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

fn unescape_help(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some('n')) => {
                out.push('\n');
                chars.next();
            }
            ('\\', Some('\\')) => {
                out.push('\\');
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

/// Parse a scrape into its families, in the order served.
pub fn parse(text: &str) -> Result<Vec<MetricFamily>, ClientError> {
    let mut families: Vec<MetricFamily> = Vec::new();
    let family = |families: &mut Vec<MetricFamily>, name: &str| -> usize {
        match families.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                families.push(MetricFamily {
                    name: name.to_string(),
                    kind: "untyped".into(),
                    help: String::new(),
                    samples: Vec::new(),
                });
                families.len() - 1
            }
        }
    };
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("HELP"), Some(name), help) => {
                    let f = family(&mut families, name);
                    families[f].help = unescape_help(help.unwrap_or(""));
                }
                (Some("TYPE"), Some(name), Some(kind)) => {
                    let f = family(&mut families, name);
                    families[f].kind = kind.trim().to_string();
                }
                _ => {} // other comments are comments
            }
            continue;
        }
        let end = line.find(['{', ' ', '\t']).ok_or_else(|| bad(n, "no value"))?;
        let (name, rest) = line.split_at(end);
        if !is_name(name) {
            return Err(bad(n, "bad metric name"));
        }
        let (labels, rest) =
            if rest.starts_with('{') { labels(rest, n)? } else { (BTreeMap::new(), rest) };
        let value = rest.split_whitespace().next().ok_or_else(|| bad(n, "no value"))?;
        let value: f64 = value.parse().map_err(|_| bad(n, "value is not a number"))?;
        // A histogram's `_bucket`/`_sum`/`_count` belong to the family declared last.
        let owner = match families.last() {
            Some(f) if name.starts_with(f.name.as_str()) => families.len() - 1,
            _ => family(&mut families, name),
        };
        families[owner].samples.push(Sample { name: name.to_string(), labels, value });
    }
    Ok(families)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_scrape_parses_into_typed_families_with_labels() {
        let m = ipa_core::metrics::Metrics::new();
        m.command_finished("standby.prepare_image", ipa_core::CommandStatus::Failed, Some(2.5));
        m.erase_progress("/dev/sd\"a\\", 40, Some(100));
        m.heartbeat(ipa_core::metrics::HeartbeatResult::Conflict, std::time::Duration::ZERO);
        let text = m.encode().unwrap();
        let fams = parse(&text).unwrap();
        let get = |n: &str| fams.iter().find(|f| f.name == n).unwrap_or_else(|| panic!("{n}"));
        let c = get("ipa_commands_total");
        assert_eq!(c.kind, "counter");
        assert!(c.help.starts_with("Commands that reached a final status"), "{}", c.help);
        assert_eq!(c.samples.len(), 1);
        assert_eq!(c.samples[0].labels["command"], "standby.prepare_image");
        assert_eq!(c.samples[0].labels["status"], "FAILED");
        assert_eq!(c.samples[0].value, 1.0);
        let h = get("ipa_command_duration_seconds");
        assert_eq!(h.kind, "histogram");
        assert!(h.samples.iter().any(|s| s.name.ends_with("_bucket") && s.labels["le"] == "+Inf"));
        let sum = h.samples.iter().find(|s| s.name == "ipa_command_duration_seconds_sum");
        assert_eq!(sum.map(|s| s.value), Some(2.5));
        let e = get("ipa_erase_bytes_done");
        assert_eq!(e.samples[0].labels["device"], "/dev/sd\"a\\", "escapes are undone");
        let f = get("ipa_heartbeat_failures_total");
        let conflict = f.samples.iter().find(|s| s.labels["reason"] == "conflict").unwrap();
        assert_eq!(conflict.value, 1.0);
        assert_eq!(get("ipa_process_threads").kind, "gauge");
        // Every sample of the scrape landed in a family declared by `# TYPE`.
        assert!(fams.iter().all(|f| f.kind != "untyped"), "{fams:?}");
    }

    #[test]
    fn malformed_lines_are_errors_not_panics() {
        for bad_text in [
            "x{a=\"1\" 2",
            "x{a=1} 2",
            "x{=\"1\"} 2",
            "x{a=\"1\\",
            "x",
            "x abc",
            "9x 1",
            "x{a=\"1\"}",
        ] {
            assert!(parse(bad_text).is_err(), "{bad_text:?}");
        }
        let ok = parse("# a comment\n\nx_total 3 1700000000\ny{a=\"b\",} -Inf\n").unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[0].kind, "untyped");
        assert_eq!(ok[1].samples[0].value, f64::NEG_INFINITY);
    }
}
