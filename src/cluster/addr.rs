//! Node addresses as the cluster announces them and as the proxy dials them.

use std::fmt;
use std::sync::Arc;

/// A node's `host:port`, as announced by the cluster or given as a seed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeAddr(Arc<str>);

impl NodeAddr {
    pub fn new(host: &str, port: u16) -> NodeAddr {
        if host.contains(':') && !host.starts_with('[') {
            NodeAddr(format!("[{host}]:{port}").into())
        } else {
            NodeAddr(format!("{host}:{port}").into())
        }
    }

    /// Parse `host:port` (IPv6 as `[::1]:7000`); `None` when the port is missing or bad.
    pub fn parse(text: &str) -> Option<NodeAddr> {
        let (host, port) = text.rsplit_once(':')?;
        let port: u16 = port.parse().ok()?;
        if host.is_empty() {
            return None;
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Some(NodeAddr::new(host, port))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The host part (an IPv6 address without its brackets).
    pub fn host(&self) -> &str {
        let host = self.0.rsplit_once(':').map_or(&*self.0, |(host, _)| host);
        host.trim_start_matches('[').trim_end_matches(']')
    }

    /// A loopback address (`127.0.0.0/8`, `::1`) or `localhost`: a node on this host.
    pub fn is_loopback(&self) -> bool {
        let Some((host, _)) = self.0.rsplit_once(':') else {
            return false;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match host.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.is_loopback(),
            Err(_) => host.eq_ignore_ascii_case("localhost"),
        }
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        assert_eq!(
            NodeAddr::parse("127.0.0.1:7001").unwrap().as_str(),
            "127.0.0.1:7001"
        );
        assert_eq!(
            NodeAddr::parse("[::1]:7001").unwrap().as_str(),
            "[::1]:7001"
        );
        assert_eq!(NodeAddr::new("::1", 7001).as_str(), "[::1]:7001");
        assert_eq!(NodeAddr::parse("[::1]:7001").unwrap().host(), "::1");
        assert_eq!(
            NodeAddr::parse("redis-1.svc:7001").unwrap().host(),
            "redis-1.svc"
        );
        assert!(NodeAddr::parse("127.0.0.1").is_none());
        assert!(NodeAddr::parse(":7001").is_none());
        assert!(NodeAddr::parse("h:99999").is_none());
    }

    #[test]
    fn loopback_addresses_are_on_this_host() {
        for local in [
            "127.0.0.1:7001",
            "127.3.2.1:1",
            "[::1]:7001",
            "localhost:7001",
        ] {
            assert!(NodeAddr::parse(local).unwrap().is_loopback(), "{local}");
        }
        assert!(NodeAddr::new("LocalHost", 7001).is_loopback());
        for remote in [
            "10.0.0.5:7001",
            "[fe80::1]:7001",
            "redis-0.svc:7001",
            "128.0.0.1:1",
        ] {
            assert!(!NodeAddr::parse(remote).unwrap().is_loopback(), "{remote}");
        }
    }
}
