//! The address put into `callback_url` (spec `ipa-agent.md` §4.6).
//!
//! `advertise_host` if set; else the IPv4 address of `network_interface`; else the source
//! address the kernel would use to reach each Ironic API host (a connected UDP socket sends
//! nothing but asks the routing table, like `ip route get`), skipping link-local results.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::error::IronicError;
use crate::http::split_url;

/// The source address the kernel picks to reach `dest`.
pub fn route_source(dest: IpAddr) -> std::io::Result<IpAddr> {
    let bind: SocketAddr = match dest {
        IpAddr::V4(_) => "0.0.0.0:0".parse().expect("literal"),
        IpAddr::V6(_) => "[::]:0".parse().expect("literal"),
    };
    let s = std::net::UdpSocket::bind(bind)?;
    s.connect(SocketAddr::new(dest, 9))?;
    Ok(s.local_addr()?.ip())
}

fn link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// The first IPv4 address of interface `name`.
pub fn interface_ipv4(name: &str) -> Option<IpAddr> {
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    for a in addrs {
        if a.interface_name != name {
            continue;
        }
        if let Some(sin) = a.address.as_ref().and_then(|s| s.as_sockaddr_in()) {
            return Some(IpAddr::V4(sin.ip()));
        }
    }
    None
}

/// One round over the API URLs: resolve each host and ask the kernel for the source address.
pub async fn find_routable(api_urls: &[String]) -> Option<IpAddr> {
    for url in api_urls {
        let Ok((_, host, port, _)) = split_url(url) else { continue };
        let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host.as_str(), port)).await {
            Ok(a) => a.collect(),
            Err(e) => {
                tracing::warn!(host = %host, error = %e, "cannot resolve the Ironic host");
                continue;
            }
        };
        for a in addrs {
            match route_source(a.ip()) {
                Ok(src) if !link_local(&src) && !src.is_unspecified() => return Some(src),
                Ok(src) => tracing::debug!(%src, "skipping unusable source address"),
                Err(e) => tracing::debug!(dest = %a.ip(), error = %e, "no route"),
            }
        }
    }
    None
}

/// Decide the advertise host (as an address string, without brackets).
pub async fn advertise_host(config: &ipa_core::config::AgentConfig) -> Result<String, IronicError> {
    if let Some(h) = config.api.advertise_host.as_deref().filter(|h| !h.is_empty()) {
        return Ok(h.trim_start_matches('[').trim_end_matches(']').to_string());
    }
    if let Some(iface) = config.api.network_interface.as_deref().filter(|i| !i.is_empty()) {
        return interface_ipv4(iface).map(|ip| ip.to_string()).ok_or_else(|| {
            IronicError::AdvertiseAddress(format!("interface {iface} has no IPv4 address"))
        });
    }
    let urls = config.ironic.api_urls();
    if urls.is_empty() {
        return Err(IronicError::AdvertiseAddress("no Ironic API URL to route to".into()));
    }
    let attempts = config.api.ip_lookup_attempts.max(1);
    for round in 1..=attempts {
        if let Some(ip) = find_routable(&urls).await {
            tracing::info!(address = %ip, "advertise address found by routing to Ironic");
            return Ok(ip.to_string());
        }
        if round < attempts {
            tokio::time::sleep(Duration::from_secs(config.api.ip_lookup_sleep)).await;
        }
    }
    Err(IronicError::AdvertiseAddress(format!(
        "no routable source address towards {} after {attempts} attempts",
        urls.join(", ")
    )))
}

/// `<protocol>://<host>:<port>`, IPv6 hosts in brackets.
pub fn callback_url(protocol: &str, host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("{protocol}://[{host}]:{port}")
    } else {
        format!("{protocol}://{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipa_core::config::AgentConfig;

    #[test]
    fn callback_urls_bracket_ipv6() {
        assert_eq!(callback_url("https", "10.0.0.5", 9999), "https://10.0.0.5:9999");
        assert_eq!(callback_url("http", "::1", 9999), "http://[::1]:9999");
        assert_eq!(callback_url("http", "node.example", 1), "http://node.example:1");
    }

    #[test]
    fn kernel_routes_loopback_from_loopback() {
        assert_eq!(route_source("127.0.0.1".parse().unwrap()).unwrap().to_string(), "127.0.0.1");
        if let Ok(src) = route_source("::1".parse().unwrap()) {
            assert_eq!(src.to_string(), "::1");
        }
        assert!(link_local(&"fe80::1".parse().unwrap()));
        assert!(link_local(&"169.254.1.1".parse().unwrap()));
        assert!(!link_local(&"10.1.1.1".parse().unwrap()));
    }

    #[tokio::test]
    async fn advertise_host_precedence() {
        let mut c = AgentConfig::default();
        c.ironic.api_url = Some("http://127.0.0.1:6385".into());
        assert_eq!(advertise_host(&c).await.unwrap(), "127.0.0.1");
        c.ironic.api_url = Some("http://[::1]:6385".into());
        if route_source("::1".parse().unwrap()).is_ok() {
            assert_eq!(advertise_host(&c).await.unwrap(), "::1");
        }
        c.api.network_interface = Some("lo".into());
        assert_eq!(advertise_host(&c).await.unwrap(), "127.0.0.1");
        c.api.advertise_host = Some("[fd00::5]".into());
        assert_eq!(advertise_host(&c).await.unwrap(), "fd00::5");
        let mut none = AgentConfig::default();
        none.api.ip_lookup_attempts = 1;
        assert!(matches!(advertise_host(&none).await, Err(IronicError::AdvertiseAddress(_))));
    }
}
