//! Test support: real `redis-server` clusters on free loopback ports, and the
//! `slotgate` binary started in front of them.
//!
//! Use it from an integration test with `mod support;`:
//!
//! ```ignore
//! mod support;
//! use support::{Cluster, Proxy};
//!
//! #[test]
//! fn get_through_the_proxy() {
//!     let cluster = Cluster::start(3, 0);
//!     let proxy = Proxy::start(&cluster.seeds(), &[]);
//!     let mut con = proxy.client();
//!     let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
//! }
//! ```
//!
//! # Layout
//! - `ports`   — free 127.0.0.1 ports (and cluster bus ports), never handed out twice per process.
//! - `cluster` — [`Cluster`]: starts, inspects, kills, restarts and reshards redis-server nodes.
//! - `gateway` — a TCP relay that admits peers by source address and can cut them off:
//!   hidden announced addresses and network partitions on loopback.
//! - `proxy`   — [`Proxy`]: starts the `slotgate` binary on port 0 and reads its listening line.
//! - `raw`     — a plain-socket client and key/config helpers for the data-path tests.
//! - `tls`     — certificates made in the test (rcgen), and the ports of TLS-only nodes.
//! - `standalone` — [`Standalone`]: one plain (non-cluster) redis-server, to compare with.
//! - `python`  — venvs under target/ with packages from PyPI (redis-py, RQ, Celery), and
//!   the scripts in tests/py run with them.
//!
//! Everything here panics on failure with the evidence a reader needs (the nodes' or the
//! proxy's log tail), because a test that cannot set up its world has nothing else to do.
//! Every process is started as a child of the test and killed by pid on drop.

// Each test binary uses a different part of this module.
#![allow(dead_code, unused_imports, unused_macros)]

/// `query!(con, "NAME", arg, ...)`: the command's reply on `con` (`&mut` a connection),
/// as the type the caller asks for; panics on an error reply. Needs `#[macro_use] mod
/// support;`.
macro_rules! query {
    ($con:expr, $name:expr $(, $arg:expr)* $(,)?) => {
        redis::cmd($name)$(.arg($arg))*.query($con).unwrap()
    };
}

/// `query_err!(con, "NAME", arg, ...)`: the error the command gets on `con`; panics if
/// it succeeds.
macro_rules! query_err {
    ($con:expr, $name:expr $(, $arg:expr)* $(,)?) => {
        redis::cmd($name)$(.arg($arg))*.query::<redis::Value>($con).unwrap_err()
    };
}

mod cluster;
mod gateway;
mod ports;
mod proxy;
mod python;
mod raw;
mod standalone;
mod tls;

pub use cluster::{Cluster, ClusterConfig, Network};
pub use ports::{free_cluster_port, free_port};
pub use proxy::{binary, Proxy};
pub use python::{
    py_script, python_or_skip, python_venv, python_with_redis_py, run_py_check, venv_or_skip,
};
pub use raw::*;
pub use standalone::Standalone;
pub use tls::{mark_tls_port, tls_port, TlsFiles, TlsPeer};

use std::path::Path;
use std::process::{Command, Stdio};

/// Panics with a clear message unless `redis-server` and `redis-cli` can be run.
pub fn require_redis() {
    for bin in ["redis-server", "redis-cli"] {
        let found = Command::new(bin)
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !found {
            panic!(
                "{bin}: redis-server not found on PATH: run .ci/run or apt-get install -y redis-server redis-tools"
            );
        }
    }
}

/// Polls `cond` every 20 ms until it holds, for at most 10 s; panics naming `what`.
pub fn wait_until(what: &str, cond: impl FnMut() -> bool) {
    wait_until_within(std::time::Duration::from_secs(10), what, cond);
}

/// [`wait_until`], for at most `limit`.
pub fn wait_until_within(limit: std::time::Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The usual start of a test: `redis-server` is there, a cluster of `masters` masters
/// with `replicas` replicas each runs, and slotgate runs in front of it with `args`
/// ([`Proxy::start`]).
pub fn cluster_and_proxy(masters: usize, replicas: usize, args: &[&str]) -> (Cluster, Proxy) {
    require_redis();
    let cluster = Cluster::start(masters, replicas);
    let proxy = Proxy::start(&cluster.seeds(), args);
    (cluster, proxy)
}

/// The last `lines` lines of a text file, or a note saying why there are none.
pub fn tail_file(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// The CRC16/XMODEM hash slot of `key` (with `{hash tag}` rules), computed locally so a test
/// can pick keys for a slot without asking a node.
pub fn key_slot(key: &[u8]) -> u16 {
    slotgate::slot::Slot::of_key(key).get()
}

/// `count` distinct keys `"{prefix}:N"` whose slot is `slot` (searched by brute force;
/// about 16384 candidates per key).
pub fn keys_in_slot(slot: u16, prefix: &str, count: usize) -> Vec<String> {
    (0u64..)
        .map(|n| format!("{prefix}:{n}"))
        .filter(|k| key_slot(k.as_bytes()) == slot)
        .take(count)
        .collect()
}

/// Resident memory of process `pid` now, in bytes (`VmRSS` from /proc; 0 if gone).
pub fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
