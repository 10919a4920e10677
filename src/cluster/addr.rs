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
        assert!(NodeAddr::parse("127.0.0.1").is_none());
        assert!(NodeAddr::parse(":7001").is_none());
        assert!(NodeAddr::parse("h:99999").is_none());
    }
}
