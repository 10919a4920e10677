//! Free loopback ports for test servers.
//!
//! Ports come from a small PRNG seeded from the clock and the pid, so parallel test
//! processes start in different places; within one process a set of handed-out ports
//! (never returned) keeps parallel test threads apart. A port is handed out only if
//! it binds on 127.0.0.1 at that moment. The ranges stay below Linux's ephemeral range
//! (32768+), so outgoing connections do not take them in the meantime.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Ports (and bus ports) this process has handed out; guarded so that two test
/// threads never get the same one. Entries are never removed.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// xorshift64 state; 0 means "not seeded yet".
static RNG: AtomicU64 = AtomicU64::new(0);

/// Redis nodes listen on `port` and on the cluster bus at `port + BUS_OFFSET`.
pub const BUS_OFFSET: u16 = 10000;

fn next_random() -> u64 {
    let mut x = RNG.load(Ordering::Relaxed);
    if x == 0 {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15);
        x = (nanos ^ (u64::from(std::process::id()) << 32)) | 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    RNG.store(x, Ordering::Relaxed);
    x
}

fn bindable(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

fn pick(low: u16, high: u16, also_bus: bool) -> u16 {
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..10_000 {
        let port = low + (next_random() % u64::from(high - low)) as u16;
        let bus = port + BUS_OFFSET;
        if handed.contains(&port) || (also_bus && handed.contains(&bus)) {
            continue;
        }
        if bindable(port) && (!also_bus || bindable(bus)) {
            handed.insert(port);
            if also_bus {
                handed.insert(bus);
            }
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 in {low}..{high} after 10000 tries");
}

/// A port for a Redis Cluster node: `port` in 12000..22000 and its bus port
/// `port + 10000` are both bindable on 127.0.0.1 now and not handed out before.
pub fn free_cluster_port() -> u16 {
    pick(12_000, 22_000, true)
}

/// A single free port in 2000..12000 (for fake servers, metrics endpoints, ...).
pub fn free_port() -> u16 {
    pick(2_000, 12_000, false)
}
