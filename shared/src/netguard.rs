//! Which metrics URLs the agent may fetch: a server-side request forgery guard.
//!
//! The agent runs inside a cloud account and fetches URLs that operators register, so a URL must never
//! reach the instance metadata service, link-local addresses or (unless allowed) loopback services.
//! The same rules apply at three points: when an instance is registered (IP literals), when a host
//! name is resolved (every address it resolves to, so DNS rebinding cannot slip through), and on every
//! redirect hop.

use ipnet::IpNet;
use std::net::IpAddr;
use std::str::FromStr;
use url::Url;

/// Why a URL or address may not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRejected {
    #[error("not a valid URL: {0}")]
    Malformed(String),
    #[error("scheme {0:?} is not allowed: use http or https")]
    Scheme(String),
    #[error("the URL has no host")]
    NoHost,
    #[error("credentials in the URL are not allowed")]
    Credentials,
    #[error(
        "{0} is a forbidden address (link-local, metadata, unspecified, multicast or broadcast)"
    )]
    Forbidden(IpAddr),
    #[error("{0} is a loopback address and loopback is not in the allowed networks")]
    Loopback(IpAddr),
    #[error("{0} is outside the allowed networks")]
    NotAllowed(IpAddr),
}

/// The configured guard: an optional allow-list of networks. Forbidden networks are never allowed,
/// whatever the allow-list says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetGuard {
    allowed: Vec<IpNet>,
}

impl NetGuard {
    pub fn new(allowed: Vec<IpNet>) -> Self {
        NetGuard { allowed }
    }

    /// Parses a comma-separated list of CIDRs (`ALLOWED_NETWORKS`); empty means "any address that is
    /// not forbidden and not loopback".
    pub fn from_list(list: &str) -> Result<Self, String> {
        let allowed = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                IpNet::from_str(s)
                    .or_else(|_| IpAddr::from_str(s).map(IpNet::from))
                    .map_err(|_| format!("{s:?} is not a network (CIDR) or an address"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NetGuard { allowed })
    }

    /// Checks the parts of a URL that can be checked without resolving it.
    pub fn check_url(&self, raw: &str) -> Result<Url, UrlRejected> {
        let url = Url::parse(raw).map_err(|e| UrlRejected::Malformed(e.to_string()))?;
        self.check_parsed(&url)?;
        Ok(url)
    }

    pub fn check_parsed(&self, url: &Url) -> Result<(), UrlRejected> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UrlRejected::Scheme(url.scheme().to_string()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlRejected::Credentials);
        }
        match url.host() {
            None => Err(UrlRejected::NoHost),
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)),
            // Host names are checked when resolved (see `check_ip`), every address of them.
            Some(url::Host::Domain(_)) => Ok(()),
        }
    }

    /// Checks one address a URL resolves to.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), UrlRejected> {
        let ip = canonical(ip);
        if is_forbidden(ip) {
            return Err(UrlRejected::Forbidden(ip));
        }
        let allowed = self.allowed.iter().any(|n| n.contains(&ip));
        if ip.is_loopback() && !allowed {
            return Err(UrlRejected::Loopback(ip));
        }
        if !self.allowed.is_empty() && !allowed {
            return Err(UrlRejected::NotAllowed(ip));
        }
        Ok(())
    }
}

/// An IPv4 address written as IPv6 (`::ffff:169.254.169.254`) is judged as the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_link_local() // 169.254.0.0/16, the metadata service among them
                || v4.is_unspecified()
                || v4.octets()[0] == 0 // 0.0.0.0/8 reaches the local host on Linux
                || v4.is_multicast()
                || v4.is_broadcast()
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            v6 == std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) // EC2 metadata over IPv6
                || (seg[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || v6.is_unspecified()
                || v6.is_multicast()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(g: &NetGuard, url: &str) -> UrlRejected {
        g.check_url(url).unwrap_err()
    }

    #[test]
    fn the_metadata_service_is_refused_in_every_spelling() {
        let open = NetGuard::from_list("0.0.0.0/0,::/0").unwrap();
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00:ec2::254]/latest/",
            "http://[::ffff:169.254.169.254]/",
            "http://[fe80::1]/",
            "http://0.0.0.0:8000/metrics",
        ] {
            assert!(
                matches!(rejected(&open, url), UrlRejected::Forbidden(_)),
                "{url}"
            );
        }
    }

    #[test]
    fn schemes_other_than_http_and_https_are_refused() {
        let g = NetGuard::default();
        for url in [
            "file:///etc/passwd",
            "gopher://10.0.0.1/",
            "ftp://10.0.0.1/",
        ] {
            assert!(matches!(rejected(&g, url), UrlRejected::Scheme(_)), "{url}");
        }
    }

    #[test]
    fn loopback_needs_an_explicit_allowance() {
        let g = NetGuard::default();
        assert!(matches!(
            rejected(&g, "http://127.0.0.1:9100/metrics"),
            UrlRejected::Loopback(_)
        ));
        let local = NetGuard::from_list("127.0.0.0/8").unwrap();
        assert!(local.check_url("http://127.0.0.1:9100/metrics").is_ok());
    }

    #[test]
    fn an_allow_list_refuses_everything_outside_it() {
        let g = NetGuard::from_list("10.0.0.0/8, 192.168.1.7").unwrap();
        assert!(g.check_url("http://10.1.2.3/metrics").is_ok());
        assert!(g.check_url("http://192.168.1.7/metrics").is_ok());
        assert!(matches!(
            rejected(&g, "http://192.168.1.8/metrics"),
            UrlRejected::NotAllowed(_)
        ));
    }

    #[test]
    fn credentials_and_garbage_are_refused() {
        let g = NetGuard::default();
        assert_eq!(
            rejected(&g, "http://user:pw@10.0.0.1/"),
            UrlRejected::Credentials
        );
        assert!(matches!(
            rejected(&g, "not a url"),
            UrlRejected::Malformed(_)
        ));
    }

    #[test]
    fn a_bad_allow_list_is_a_configuration_error() {
        assert!(NetGuard::from_list("10.0.0.0/33").is_err());
        assert!(NetGuard::from_list("nonsense").is_err());
    }
}
