//! Connections per client IP address (`max_clients_per_ip`), counted across the
//! workers: each worker accepts on its own listener, so one address's connections may
//! land on any of them. A lock per accept and per close, never per request; nothing at
//! all when no limit is configured.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;

/// How many connections each client address has open.
pub struct PerAddress {
    /// Connections allowed from one address; 0: no limit (and no counting). Set at
    /// start-up and by a reload ([`PerAddress::set_limit`]); read per accept and close.
    limit: AtomicUsize,
    /// Open connections by address: a worker adds one when it accepts a client and takes
    /// it away when that client's session ends; addresses at zero are removed.
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerAddress {
    pub fn new(limit: usize) -> PerAddress {
        PerAddress {
            limit: AtomicUsize::new(limit),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// A client from `addr` connects: true (and counted) when it is under the limit.
    /// Each admitted client must be [`PerAddress::leave`]d once.
    pub fn admit(&self, addr: IpAddr) -> bool {
        let limit = self.limit();
        if limit == 0 {
            return true;
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(addr).or_insert(0);
        if *count >= limit {
            return false;
        }
        *count += 1;
        true
    }

    /// An admitted client from `addr` is gone.
    pub fn leave(&self, addr: IpAddr) {
        if self.limit() == 0 {
            return;
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&addr) {
            *count -= 1;
            if *count == 0 {
                open.remove(&addr);
            }
        }
    }

    pub fn limit(&self) -> usize {
        self.limit.load(Relaxed)
    }

    /// A reload's limit. Connections open while no limit was set were not counted, so
    /// a limit set (or set again) by a reload counts the connections made from then
    /// on: it may admit more than the limit from an address, never fewer.
    pub fn set_limit(&self, limit: usize) {
        if self.limit.swap(limit, Relaxed) != limit && limit == 0 {
            self.open.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_has_its_own_count() {
        let p = PerAddress::new(2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(p.admit(a));
        assert!(p.admit(a));
        assert!(!p.admit(a), "a third from the same address");
        assert!(p.admit(b));
        p.leave(a);
        assert!(p.admit(a), "room again once one left");
        p.leave(a);
        p.leave(a);
        p.leave(b);
        assert!(
            p.open.lock().unwrap().is_empty(),
            "nothing kept for gone addresses"
        );
    }

    #[test]
    fn no_limit_counts_nothing() {
        let p = PerAddress::new(0);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..10 {
            assert!(p.admit(a));
        }
        assert!(p.open.lock().unwrap().is_empty());
    }
}
