//! Requests to URLs our customers choose — token callbacks (`callback_settings.
//! zoom_tokens_url`) now, outgoing webhooks later (DESIGN.md §4, §7): the URL check,
//! the client that goes only where the check looked, and the request signature.
//!
//! A URL is checked once: absolute http(s), no user info, and every address its host
//! resolves to must be public — not loopback, private, link-local, shared (CGNAT),
//! multicast, broadcast, documentation or otherwise reserved — unless
//! `allow_private_callback_urls` is on. The request then connects to exactly the
//! addresses that were checked ([`CheckedUrl::client`] pins them), so a DNS answer
//! that changes between the check and the connection (DNS rebinding) cannot send it
//! elsewhere. Redirects are never followed. Signing is [`crate::core::signing`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use url::{Host, Url};

/// Longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// How long a host name's DNS lookup may take before the URL is refused as
/// unresolvable (a slow resolver must not hold a request or a worker).
pub const DNS_TIMEOUT: Duration = Duration::from_secs(3);

/// Why an outgoing URL is refused. Messages name the host, never the path or query
/// (they may carry a customer's secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundUrlError {
    #[error("must be an absolute http:// or https:// URL of at most {MAX_URL_LEN} characters")]
    NotHttp,
    #[error("must not carry a user name or password")]
    UserInfo,
    #[error("the host {0} could not be resolved")]
    Unresolvable(String),
    #[error("the host {host} resolves to {ip}, a loopback, private, link-local or otherwise non-public address; such addresses are refused unless allow_private_callback_urls is on")]
    NonPublic { host: String, ip: IpAddr },
}

/// A URL that passed the check, with the addresses it may be reached at.
#[derive(Debug, Clone)]
pub struct CheckedUrl {
    pub url: Url,
    /// The host name, when it is not an IP literal (the one to pin).
    domain: Option<String>,
    addrs: Vec<SocketAddr>,
}

impl CheckedUrl {
    /// A client for this URL alone: connects only to the checked addresses, follows
    /// no redirects, and gives up after `timeout`.
    pub fn client(&self, timeout: Duration) -> reqwest::Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            // A proxy would resolve the name again, elsewhere.
            .no_proxy()
            .user_agent(concat!("zoomkeeper/", env!("CARGO_PKG_VERSION")));
        if let Some(domain) = &self.domain {
            builder = builder.resolve_to_addrs(domain, &self.addrs);
        }
        builder.build()
    }

    /// The addresses the check allowed.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }
}

/// Checks `raw` and resolves its host once (see the module docs).
pub async fn check(raw: &str, allow_private: bool) -> Result<CheckedUrl, OutboundUrlError> {
    let raw = raw.trim();
    if raw.len() > MAX_URL_LEN {
        return Err(OutboundUrlError::NotHttp);
    }
    let url = Url::parse(raw).map_err(|_| OutboundUrlError::NotHttp)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(OutboundUrlError::NotHttp);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(OutboundUrlError::UserInfo);
    }
    let port = url
        .port_or_known_default()
        .ok_or(OutboundUrlError::NotHttp)?;
    let (domain, addrs) = match url.host() {
        Some(Host::Ipv4(ip)) => (None, vec![SocketAddr::new(IpAddr::V4(ip), port)]),
        Some(Host::Ipv6(ip)) => (None, vec![SocketAddr::new(IpAddr::V6(ip), port)]),
        Some(Host::Domain(d)) => {
            let domain = d.to_owned();
            let lookup = tokio::net::lookup_host((domain.as_str(), port));
            let addrs: Vec<SocketAddr> = tokio::time::timeout(DNS_TIMEOUT, lookup)
                .await
                .map_err(|_| OutboundUrlError::Unresolvable(shown(&domain)))?
                .map_err(|_| OutboundUrlError::Unresolvable(shown(&domain)))?
                .collect();
            if addrs.is_empty() {
                return Err(OutboundUrlError::Unresolvable(shown(&domain)));
            }
            (Some(domain), addrs)
        }
        None => return Err(OutboundUrlError::NotHttp),
    };
    if !allow_private {
        // Every address must be public: the connection may use any of them.
        if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
            return Err(OutboundUrlError::NonPublic {
                host: shown(url.host_str().unwrap_or("")),
                ip: bad.ip(),
            });
        }
    }
    Ok(CheckedUrl { url, domain, addrs })
}

fn shown(host: &str) -> String {
    host.chars().take(100).collect()
}

/// An address on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let segments = ip.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    // NAT64 (64:ff9b::/96) and SIIT IPv4-translated addresses (::ffff:0:0:0/96)
    // reach the embedded IPv4 address.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || segments[..6] == [0, 0, 0, 0, 0xffff, 0] {
        return is_public_v4(v4(segments[6], segments[7]));
    }
    // NAT64 local-use prefix (64:ff9b:1::/48): translated to anything, refused.
    if segments[..3] == [0x64, 0xff9b, 1] {
        return false;
    }
    // 6to4 (2002::/16): the relay reaches the IPv4 address in bits 16..48.
    if segments[0] == 0x2002 && !is_public_v4(v4(segments[1], segments[2])) {
        return false;
    }
    // Teredo (2001::/32): the server's IPv4 address in bits 32..64, the client's,
    // inverted, in the last 32 bits.
    if segments[..2] == [0x2001, 0]
        && (!is_public_v4(v4(segments[2], segments[3]))
            || !is_public_v4(v4(!segments[6], !segments[7])))
    {
        return false;
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00 // unique local
        || (segments[0] & 0xffc0) == 0xfe80 // link-local
        || (segments[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (segments[0] == 0x2001 && segments[1] == 0x0db8) // documentation
        || segments[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible (deprecated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "::1",
            "::",
            "fc00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2001:db8::1",
            // SIIT IPv4-translated, mapped with 0.0.0.0/8 and CGNAT inside.
            "::ffff:0:7f00:1",
            "::ffff:0:a9fe:a9fe",
            "::ffff:0.1.2.3",
            "::ffff:100.64.0.1",
            "64:ff9b:1::8.8.8.8",
            // 6to4 of 10.0.0.1, 127.0.0.1, 192.168.1.1.
            "2002:a00:1::1",
            "2002:7f00:1::",
            "2002:c0a8:101::1",
            // Teredo: server 10.0.0.1; client 127.0.0.1 (inverted: 80ff:fffe).
            "2001:0:a00:1::1",
            "2001:0:808:808:0:0:80ff:fffe",
            "0.1.2.3",
            "100.127.255.255",
        ] {
            let ip: IpAddr = bad.parse().expect("ip");
            assert!(!is_public(ip), "{bad}");
        }
        for good in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "::ffff:0:808:808",
            // 6to4 of 8.8.8.8; Teredo with public server 8.8.8.8 and client 1.1.1.1.
            "2002:808:808::1",
            "2001:0:808:808:0:0:fefe:fefe",
            "100.128.0.1",
        ] {
            let ip: IpAddr = good.parse().expect("ip");
            assert!(is_public(ip), "{good}");
        }
    }

    #[tokio::test]
    async fn urls_are_refused_for_scheme_user_info_and_private_targets() {
        assert_eq!(
            check("ftp://example.com/x", true).await.err(),
            Some(OutboundUrlError::NotHttp)
        );
        assert_eq!(
            check("not a url", true).await.err(),
            Some(OutboundUrlError::NotHttp)
        );
        assert_eq!(
            check("https://user:pw@example.com/x", true).await.err(),
            Some(OutboundUrlError::UserInfo)
        );
        assert!(matches!(
            check("http://127.0.0.1:9/x", false).await,
            Err(OutboundUrlError::NonPublic { .. })
        ));
        assert!(matches!(
            check("http://[::1]:9/x", false).await,
            Err(OutboundUrlError::NonPublic { .. })
        ));
        assert!(matches!(
            check("http://localhost:9/x", false).await,
            Err(OutboundUrlError::NonPublic { .. })
        ));
        let ok = check("http://localhost:9/x?secret=1", true)
            .await
            .expect("allowed");
        assert!(ok.addrs().iter().all(|a| a.port() == 9));
    }
}
