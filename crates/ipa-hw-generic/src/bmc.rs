//! BMC addresses through `ipmitool` (channels 1–11), only when an IPMI device exists.

use std::time::Duration;

use ipa_core::os::{CommandRunner, ExecRequest};

const TIMEOUT: Duration = Duration::from_secs(30);

async fn run(runner: &dyn CommandRunner, args: &[String]) -> Option<(String, String)> {
    let req = ExecRequest::new("ipmitool", args.iter().cloned()).timeout(TIMEOUT);
    match runner.run(req).await {
        Ok(o) if o.success() => Some((o.stdout, o.stderr)),
        Ok(o) => Some((String::new(), o.stderr)),
        Err(e) => {
            tracing::warn!(error = %e, "ipmitool failed");
            None
        }
    }
}

/// `$4` of the first line matching `<label>[ \t]*:` (awk semantics).
fn field4(out: &str, label: &str) -> Vec<String> {
    out.lines()
        .filter(|l| {
            l.find(label).is_some_and(|i| {
                l[i + label.len()..].trim_start_matches([' ', '\t']).starts_with(':')
            })
        })
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
        .collect()
}

fn args(parts: &[&str], channel: u32) -> Vec<String> {
    let mut v: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
    v.insert(2, channel.to_string());
    v
}

/// `get_bmc_address`: first valid, non-zero IPv4 of channels 1–11; `0.0.0.0` if none; `None`
/// if ipmitool cannot run.
pub async fn address(runner: &dyn CommandRunner) -> Option<String> {
    for ch in 1..=11 {
        let (out, err) = run(runner, &args(&["lan", "print"], ch)).await?;
        if err.starts_with("Invalid channel") {
            continue;
        }
        let ip = field4(&out, "IP Address").into_iter().next().unwrap_or_default();
        if ip.parse::<std::net::IpAddr>().is_ok() && ip != "0.0.0.0" {
            return Some(ip);
        }
    }
    Some("0.0.0.0".into())
}

/// `get_bmc_mac`: first non-zero MAC of a channel with an IPv4 (or a global IPv6).
pub async fn mac(runner: &dyn CommandRunner) -> Option<String> {
    for ch in 1..=11 {
        let (out, err) = run(runner, &args(&["lan", "print"], ch)).await?;
        if err.starts_with("Invalid channel") {
            continue;
        }
        let (Some(ip), Some(mac)) = (
            field4(&out, "IP Address").into_iter().next(),
            field4(&out, "MAC Address").into_iter().next(),
        ) else {
            continue;
        };
        if ip == "0.0.0.0" {
            let (out6, err6) = run(runner, &args(&["lan6", "print"], ch)).await?;
            if err6.starts_with("Invalid channel") {
                continue;
            }
            let mut in_section = false;
            let mut found = false;
            for l in out6.lines() {
                if l.starts_with("IPv6 Dynamic Address") || l.starts_with("IPv6 Static Address") {
                    in_section = true;
                    continue;
                }
                if l.starts_with("IPv6 ") {
                    in_section = false;
                }
                if in_section
                    && l.contains("Address:")
                    && let Some(a) = l.split_whitespace().nth(1)
                {
                    found |= !a.starts_with("::") && !a.starts_with("fe80");
                }
            }
            if !found {
                continue;
            }
        }
        let valid = mac.len() == 17
            && mac.split(':').all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit()));
        if valid && mac != "00:00:00:00:00:00" {
            return Some(mac);
        }
    }
    None
}

fn yaml_blocks(out: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut blocks = Vec::new();
    let mut cur: Option<std::collections::BTreeMap<String, String>> = None;
    for l in out.lines() {
        if l.trim().is_empty() {
            continue;
        }
        if !l.starts_with([' ', '\t']) {
            blocks.extend(cur.take());
            cur = Some(Default::default());
        } else if let (Some(c), Some((k, v))) = (cur.as_mut(), l.trim().split_once(':')) {
            c.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    blocks.extend(cur);
    blocks
}

/// `get_bmc_v6address`: an active dynamic (DHCPv6/SLAAC) or enabled static address on a
/// channel with IPv6 enabled; `::/0` if none.
pub async fn v6address(runner: &dyn CommandRunner) -> Option<String> {
    for ch in 1..=11 {
        let (out, _) = run(runner, &args(&["lan6", "print", "enables"], ch)).await?;
        let mode = out
            .lines()
            .find(|l| l.contains("IPv6/IPv4 Addressing Enables"))
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or("");
        if mode != "ipv6" && mode != "both" {
            continue;
        }
        for dynamic in [true, false] {
            let which = if dynamic { "dynamic_addr" } else { "static_addr" };
            let Some((out, _)) = run(runner, &args(&["lan6", "print", which], ch)).await else {
                continue;
            };
            for b in yaml_blocks(&out) {
                let addr = b.get("Address").cloned().unwrap_or_default();
                let enabled = if dynamic {
                    matches!(b.get("Source/Type").map(String::as_str), Some("DHCPv6" | "SLAAC"))
                } else {
                    b.get("Enabled").is_some_and(|e| e.eq_ignore_ascii_case("true"))
                };
                let null = is_null_v6(&addr);
                if b.get("Status").map(String::as_str) == Some("active") && enabled && !null {
                    let ip = addr.split('/').next().unwrap_or("");
                    if let Ok(ip) = ip.parse::<std::net::Ipv6Addr>() {
                        return Some(ip.to_string());
                    }
                }
            }
        }
    }
    Some("::/0".into())
}

/// `^::(/\d{1,3})*$`.
fn is_null_v6(a: &str) -> bool {
    let Some(rest) = a.strip_prefix("::") else { return false };
    rest.is_empty()
        || rest.strip_prefix('/').is_some_and(|r| {
            r.split('/')
                .all(|p| (1..=3).contains(&p.len()) && p.chars().all(|c| c.is_ascii_digit()))
        })
}
