//! The node registry shared by all workers: announced address → what every worker
//! should know about that node (where to dial it, whether it is down, counters). Each
//! worker looks a node up once, when it first needs it, and keeps the handle; requests
//! never touch the map.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use dashmap::DashMap;

use super::read_health::ReadHealth;
use crate::cluster::NodeAddr;

/// What all workers share about one node.
pub struct NodeShared {
    /// The address the cluster announces.
    pub addr: NodeAddr,
    /// The address to dial: `addr` after the configured address map. Read when a
    /// connection opens; a reload that changes the node's `[address_map]` entry swaps
    /// it ([`NodeShared::set_dial`]).
    dial: ArcSwap<NodeAddr>,
    /// Milliseconds after `epoch` until which the node counts as down (a connect just
    /// failed); 0 when up. Any worker's failure makes every worker fail fast.
    down_until_ms: AtomicU64,
    epoch: Instant,
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    /// Pinned connections to this node open now, in use or spare, all workers together
    /// (against `backend.max_pinned_per_node`).
    pub pinned: AtomicU64,
    /// Why the last connect failed (for the errors of requests failed while down).
    last_failure: Mutex<String>,
    /// The last connect failed (for the log's up/down lines; `down_until_ms` expires).
    unreachable: AtomicBool,
    /// `dial` looked up, when it is a host name (kept fresh by the refresher).
    resolved: Mutex<Option<SocketAddr>>,
    /// Why the last lookup of `dial` failed, until one succeeds: workers then fail
    /// fast with it instead of blocking on the resolver again.
    unresolved: Mutex<Option<String>>,
    /// For reads at replicas: round trip, lag, fitness ([`ReadHealth`]).
    pub reads: ReadHealth,
}

impl NodeShared {
    /// The address to dial: `addr` after the configured address map.
    pub fn dial(&self) -> Arc<NodeAddr> {
        self.dial.load_full()
    }

    /// A reload changed the node's `[address_map]` entry: dial `dial` from now on
    /// (connections open stay as they are). What was known of the old address (looked
    /// up, down) is forgotten, so the next connect tries the new one at once.
    pub fn set_dial(&self, dial: NodeAddr) {
        if *self.dial.load_full() == dial {
            return;
        }
        tracing::info!(node = %self.addr, old = %self.dial.load(), new = %dial, "dial address changed by a reload");
        self.dial.store(Arc::new(dial));
        if let Ok(mut resolved) = self.resolved.lock() {
            *resolved = None;
        }
        if let Ok(mut unresolved) = self.unresolved.lock() {
            *unresolved = None;
        }
        self.down_until_ms.store(0, Relaxed);
    }

    pub fn is_down(&self) -> bool {
        let until = self.down_until_ms.load(Relaxed);
        until != 0 && (self.epoch.elapsed().as_millis() as u64) < until
    }

    /// `dial` as a socket address when it is an IP literal (no lookup needed).
    pub fn dial_ip(&self) -> Option<SocketAddr> {
        self.dial.load().as_str().parse().ok()
    }

    /// The last address `dial` (a host name) was found at.
    pub fn resolved(&self) -> Option<SocketAddr> {
        self.resolved.lock().ok().and_then(|r| *r)
    }

    /// Remember where `dial` was found; `by` says who looked (for the log).
    pub fn set_resolved(&self, addr: SocketAddr, by: &str) {
        if let Ok(mut unresolved) = self.unresolved.lock() {
            *unresolved = None;
        }
        if let Ok(mut resolved) = self.resolved.lock() {
            if *resolved != Some(addr) {
                tracing::info!(node = %self.addr, dial = %self.dial.load(), %addr, %by, "host name resolved");
                *resolved = Some(addr);
            }
        }
    }

    /// Remember that looking `dial` up failed, and why; logged when the reason is new.
    /// An address found before is kept (a resolver hiccup should not cut a node off).
    pub fn set_unresolved(&self, reason: &str, by: &str) {
        let Ok(mut unresolved) = self.unresolved.lock() else {
            return;
        };
        if unresolved.as_deref() == Some(reason) {
            return;
        }
        let dial = self.dial.load();
        if **dial == self.addr {
            tracing::warn!(node = %self.addr, %reason, %by, "cannot resolve the host name the cluster announces for this node; if slotgate cannot reach the nodes by their announced names (Docker, Kubernetes, NAT), map it in [address_map]");
        } else {
            tracing::warn!(node = %self.addr, dial = %dial, %reason, %by, "cannot resolve the host name [address_map] gives for this node");
        }
        *unresolved = Some(reason.to_string());
    }

    /// Why the last lookup of `dial` failed, if it did and none succeeded since.
    pub fn unresolved(&self) -> Option<String> {
        self.unresolved.lock().ok().and_then(|u| u.clone())
    }

    /// Why the last connect failed.
    pub fn last_failure(&self) -> String {
        self.last_failure
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    pub fn mark_down(&self, for_how_long: Duration, reason: &str) {
        if let Ok(mut last) = self.last_failure.lock() {
            reason.clone_into(&mut last);
        }
        // One line per change, whichever worker saw it first.
        if !self.unreachable.swap(true, Relaxed) {
            tracing::info!(node = %self.addr, dial = %self.dial.load(), %reason, "node unreachable");
        }
        let until = self.epoch.elapsed() + for_how_long;
        self.down_until_ms
            .store(until.as_millis().max(1) as u64, Relaxed);
        self.connect_failures.fetch_add(1, Relaxed);
    }

    pub fn mark_up(&self) {
        if self.unreachable.swap(false, Relaxed) {
            tracing::info!(node = %self.addr, dial = %self.dial.load(), "node reachable again");
        }
        self.down_until_ms.store(0, Relaxed);
        self.connects.fetch_add(1, Relaxed);
    }
}

#[derive(Default)]
pub struct NodeRegistry {
    nodes: DashMap<NodeAddr, Arc<NodeShared>>,
}

impl NodeRegistry {
    /// The shared record of `addr`, made on first use with its dial address.
    pub fn get_or_insert(
        &self,
        addr: &NodeAddr,
        dial: impl FnOnce() -> NodeAddr,
    ) -> Arc<NodeShared> {
        if let Some(node) = self.nodes.get(addr) {
            return node.clone();
        }
        self.nodes
            .entry(addr.clone())
            .or_insert_with(|| {
                Arc::new(NodeShared {
                    addr: addr.clone(),
                    dial: ArcSwap::from_pointee(dial()),
                    down_until_ms: AtomicU64::new(0),
                    epoch: Instant::now(),
                    connects: AtomicU64::new(0),
                    connect_failures: AtomicU64::new(0),
                    pinned: AtomicU64::new(0),
                    last_failure: Mutex::new(String::new()),
                    unreachable: AtomicBool::new(false),
                    resolved: Mutex::new(None),
                    unresolved: Mutex::new(None),
                    reads: ReadHealth::default(),
                })
            })
            .clone()
    }

    /// Every node's record, sorted by announced address.
    pub fn snapshot(&self) -> Vec<Arc<NodeShared>> {
        let mut nodes: Vec<Arc<NodeShared>> =
            self.nodes.iter().map(|n| n.value().clone()).collect();
        nodes.sort_by(|a, b| a.addr.cmp(&b.addr));
        nodes
    }

    /// Nodes whose host name could not be looked up (for the refresher to try again,
    /// whether or not the slot table names them).
    pub fn unresolved(&self) -> Vec<Arc<NodeShared>> {
        self.nodes
            .iter()
            .filter(|n| n.value().unresolved().is_some())
            .map(|n| n.value().clone())
            .collect()
    }

    /// The `# Nodes` section of `INFO`: one line per node the proxy has talked to.
    pub fn info_section(&self, out: &mut String) {
        let mut nodes: Vec<Arc<NodeShared>> =
            self.nodes.iter().map(|n| n.value().clone()).collect();
        nodes.sort_by(|a, b| a.addr.cmp(&b.addr));
        out.push_str("# Nodes\r\n");
        for (i, n) in nodes.iter().enumerate() {
            let _ = write!(
                out,
                "node{i}:addr={},dial={},down={},connects={},connect_failures={},pinned={}\r\n",
                n.addr,
                n.dial.load(),
                u8::from(n.is_down()),
                n.connects.load(Relaxed),
                n.connect_failures.load(Relaxed),
                n.pinned.load(Relaxed),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_record_per_address_and_down_state() {
        let registry = NodeRegistry::default();
        let a = NodeAddr::parse("10.0.0.1:6379").unwrap();
        let first = registry.get_or_insert(&a, || NodeAddr::parse("127.0.0.1:7001").unwrap());
        let again = registry.get_or_insert(&a, || unreachable!("made twice"));
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(first.dial().as_str(), "127.0.0.1:7001");
        assert!(!first.is_down());
        first.mark_down(Duration::from_secs(60), "refused");
        assert_eq!(again.last_failure(), "refused");
        assert!(again.is_down());
        first.mark_up();
        assert!(!again.is_down());
        let mut info = String::new();
        registry.info_section(&mut info);
        assert!(
            info.contains(
                "addr=10.0.0.1:6379,dial=127.0.0.1:7001,down=0,connects=1,connect_failures=1,pinned=0"
            ),
            "{info}"
        );
    }

    #[test]
    fn a_failed_lookup_is_remembered_until_one_succeeds() {
        let registry = NodeRegistry::default();
        let a = NodeAddr::parse("redis-node-1:6379").unwrap();
        let node = registry.get_or_insert(&a, || a.clone());
        assert_eq!(node.unresolved(), None);
        assert!(registry.unresolved().is_empty());
        node.set_unresolved("Name or service not known", "refresher");
        node.set_unresolved("Name or service not known", "refresher");
        assert_eq!(
            node.unresolved().as_deref(),
            Some("Name or service not known")
        );
        assert_eq!(registry.unresolved().len(), 1);
        let found: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        node.set_resolved(found, "refresher");
        assert_eq!(node.unresolved(), None);
        assert_eq!(node.resolved(), Some(found));
        assert!(registry.unresolved().is_empty());
        // A later failure keeps the address found before.
        node.set_unresolved("lookup timed out", "refresher");
        assert_eq!(node.resolved(), Some(found));
    }
}
