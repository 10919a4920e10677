//! Routing. [`plan()`](plan::plan) (pure, in [`plan`](mod@plan)) decides what happens to
//! a client's request, built-in or learned command alike: answered locally, sent to one
//! node (a slot's master or any master), refused, handed to the session's transaction
//! state, or an error reply (unknown command, arity, `CROSSSLOT`). [`Router`] is what
//! all worker threads share: configuration, the decision [`Policy`], the published slot
//! table and the refresh signals. The methods on [`Worker`] here pick the node for a
//! request and carry out what [`decide()`] (pure, in [`decide`](mod@decide)) says after
//! a node's reply or a failure to send: deliver it, follow a redirect, retry after a
//! backoff or a refresh, or fail. Requests waiting to be sent again queue in [`retry`],
//! in each slot's order.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::{watch, Notify};

use crate::backend::{NodeRegistry, NodeShared};
use crate::cluster::table::SlotTable;
use crate::cluster::NodeAddr;
use crate::command::learned::LearnedCommands;
use crate::config::Config;

pub mod decide;
pub mod plan;
pub mod retry;
pub mod worker;

use decide::Policy;
pub use worker::Worker;

/// Counters written by one worker thread only (a plain load and store, no atomic
/// read-modify-write), on their own cache line; `INFO` sums them over the workers.
#[repr(align(64))]
#[derive(Default)]
pub struct WorkerStats {
    /// Requests read from clients.
    pub requests: AtomicU64,
    /// Writes to backend connections (each carries every request queued in one turn).
    pub backend_writes: AtomicU64,
    /// Writes of replies to clients.
    pub client_writes: AtomicU64,
    /// Bytes of replies held for this worker's clients, as of its last watchdog tick.
    pub output_bytes: AtomicU64,
}

/// [`WorkerStats`] summed over the workers.
#[derive(Clone, Copy, Debug, Default)]
pub struct StatsTotal {
    /// Worker threads running.
    pub workers: usize,
    pub requests: u64,
    pub backend_writes: u64,
    pub client_writes: u64,
    pub output_bytes: u64,
}

/// Shared by every worker thread.
pub struct Router {
    pub config: Config,
    /// What [`decide()`] applies, from `config`.
    pub policy: Policy,
    /// The published slot table: readers `load()` without locking; the refresher and
    /// `MOVED` handling swap in a new table.
    pub table: ArcSwap<SlotTable>,
    /// Wakes the refresher. Anyone may notify; notifications while a refresh runs merge
    /// into one more refresh.
    pub refresh_wanted: Notify,
    /// Counts finished refreshes (successful or not). The refresher sends; requests
    /// waiting to be retried after a refresh receive.
    pub refreshed: watch::Sender<u64>,
    /// `redis_version` of the cluster's nodes, learned at start-up (for `HELLO`/`INFO`).
    pub server_version: ArcSwapOption<String>,
    /// One set of counters per worker (summed for `INFO`); room for the most workers
    /// that may run.
    pub stats: Box<[WorkerStats]>,
    /// How many workers run, once the server has chosen.
    pub workers: std::sync::OnceLock<usize>,
    /// What every worker knows about each node (dial address, down or up).
    pub registry: NodeRegistry,
    /// Commands the built-in table lacks, learned from a node at start-up.
    pub learned: std::sync::OnceLock<LearnedCommands>,
}

impl Router {
    /// `workers`: the most worker threads that may run.
    pub fn new(config: Config, workers: usize) -> Arc<Router> {
        Arc::new(Router {
            policy: Policy::new(&config),
            config,
            table: ArcSwap::from_pointee(SlotTable::empty()),
            refresh_wanted: Notify::new(),
            refreshed: watch::Sender::new(0),
            server_version: ArcSwapOption::empty(),
            stats: (0..workers.max(1))
                .map(|_| WorkerStats::default())
                .collect(),
            workers: std::sync::OnceLock::new(),
            registry: NodeRegistry::default(),
            learned: std::sync::OnceLock::new(),
        })
    }

    /// The registry's record of the node announced as `addr`, made on first use with
    /// the address to dial (through `[address_map]`).
    pub fn node_record(&self, addr: &NodeAddr) -> Arc<NodeShared> {
        self.registry
            .get_or_insert(addr, || self.config.dial_addr(addr).clone())
    }

    pub fn stats_total(&self) -> StatsTotal {
        let mut total = StatsTotal {
            workers: self.workers.get().copied().unwrap_or(0),
            ..StatsTotal::default()
        };
        for s in self.stats.iter() {
            total.requests += s.requests.load(Relaxed);
            total.backend_writes += s.backend_writes.load(Relaxed);
            total.client_writes += s.client_writes.load(Relaxed);
            total.output_bytes += s.output_bytes.load(Relaxed);
        }
        total
    }
}
