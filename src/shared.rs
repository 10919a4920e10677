//! What every worker thread shares, and the control plane with them: the
//! configuration, the published slot table, the refresh signals, the cluster's server
//! version, the per-worker counters, the node registry, the learned commands and the
//! connected clients. Made once at start-up and held in an `Arc` by each worker,
//! session and the refresher; the slot table and the few things learned later change
//! through `ArcSwap`, a watch channel or a `OnceLock`, never a lock held across network
//! calls.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, OnceLock};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::{watch, Notify};

use crate::admin::metrics::{RefreshCause, RefreshCauses};
use crate::admin::{StatsTotal, WorkerStats};
use crate::admission::PerAddress;
use crate::backend::{NodeRegistry, NodeShared};
use crate::clients::ClientRegistry;
use crate::cluster::table::SlotTable;
use crate::cluster::NodeAddr;
use crate::command::learned::LearnedCommands;
use crate::config::Config;
use crate::scripts::Scripts;

/// Shared by every worker thread and the control plane.
pub struct Shared {
    /// The configuration in force. The control plane loads it where it needs it; a
    /// reload ([`crate::reload`]) swaps in a new one, then bumps `config_generation`.
    /// The data path never loads it: each worker keeps its own `Arc<Config>` (the
    /// worker's, and a copy in each of its sessions) and takes the new one at its next
    /// tick once the generation moved.
    pub config: ArcSwap<Config>,
    /// How many reloads have been applied: written by the reload after swapping
    /// `config`, read by each worker at its ticks (one load per tick, none per request).
    pub config_generation: AtomicU64,
    /// The generation each worker has in force, by worker index: written by that worker
    /// when it took a new config, read by the reload to know when it is in force.
    pub config_applied: Box<[AtomicU64]>,
    /// The published slot table: readers `load()` without locking; the refresher and
    /// `MOVED` handling swap in a new table.
    pub table: ArcSwap<SlotTable>,
    /// Wakes the refresher. Anyone may notify; notifications while a refresh runs merge
    /// into one more refresh.
    pub refresh_wanted: Notify,
    /// Why refreshes were asked for since the refresher last looked ([`Shared::want_refresh`];
    /// the refresher takes them when it wakes).
    pub refresh_causes: RefreshCauses,
    /// Counts finished refreshes (successful or not). The refresher sends; requests
    /// waiting to be retried after a refresh receive.
    pub refreshed: watch::Sender<u64>,
    /// `redis_version` of the cluster's nodes, learned at start-up (for `HELLO`/`INFO`).
    pub server_version: ArcSwapOption<String>,
    /// One set of counters per worker (summed for `INFO`); room for the most workers
    /// that may run.
    pub stats: Box<[WorkerStats]>,
    /// How many workers run, once the server has chosen.
    pub workers: OnceLock<usize>,
    /// What every worker knows about each node (dial address, down or up).
    pub registry: NodeRegistry,
    /// Commands the built-in table lacks, learned from a node at start-up.
    pub learned: OnceLock<LearnedCommands>,
    /// Scripts seen loaded or evaluated, to heal a `NOSCRIPT`.
    pub scripts: Scripts,
    /// When this slotgate started (`INFO` `uptime_in_seconds`).
    pub started: std::time::Instant,
    /// This run's id (`INFO` `run_id`): 40 hex digits, new at every start.
    pub run_id: String,
    /// Every connected client, by worker (`CLIENT LIST`/`KILL`, `MONITOR`).
    pub clients: Arc<ClientRegistry>,
    /// Connections open per client address (`max_clients_per_ip`).
    pub per_address: PerAddress,
    /// Wakes the replica poller (`replicas::run`) when `read_from` is `master` and a
    /// client first sends `READONLY` (the session that sets `replica_reads_asked`
    /// notifies, once); the poller waits on it and runs from then on.
    pub replica_reads_wanted: Notify,
    /// Some client sent `READONLY` (set once, by the first).
    pub replica_reads_asked: AtomicBool,
}

impl Shared {
    /// `workers`: the most worker threads that may run.
    pub fn new(config: Config, workers: usize) -> Arc<Shared> {
        Arc::new(Shared {
            per_address: PerAddress::new(config.max_clients_per_ip),
            config: ArcSwap::from_pointee(config),
            config_generation: AtomicU64::new(0),
            config_applied: (0..workers.max(1)).map(|_| AtomicU64::new(0)).collect(),
            table: ArcSwap::from_pointee(SlotTable::empty()),
            refresh_wanted: Notify::new(),
            refresh_causes: RefreshCauses::default(),
            refreshed: watch::Sender::new(0),
            server_version: ArcSwapOption::empty(),
            stats: (0..workers.max(1))
                .map(|_| WorkerStats::default())
                .collect(),
            workers: OnceLock::new(),
            registry: NodeRegistry::default(),
            learned: OnceLock::new(),
            scripts: Scripts::default(),
            started: std::time::Instant::now(),
            run_id: run_id(),
            clients: Arc::new(ClientRegistry::new(workers)),
            replica_reads_wanted: Notify::new(),
            replica_reads_asked: AtomicBool::new(false),
        })
    }

    /// The registry's record of the node announced as `addr`, made on first use with
    /// the address to dial (through `[address_map]`).
    pub fn node_record(&self, addr: &NodeAddr) -> Arc<NodeShared> {
        self.registry
            .get_or_insert(addr, || self.config.load().dial_addr(addr).clone())
    }

    pub fn stats_total(&self) -> StatsTotal {
        let workers = self.workers.get().copied().unwrap_or(0);
        StatsTotal::sum(workers, self.stats.iter())
    }

    /// Ask the refresher for a refresh, saying why (several asks merge into one refresh).
    pub fn want_refresh(&self, cause: RefreshCause) {
        self.refresh_causes.note(cause);
        self.refresh_wanted.notify_one();
    }
}

/// 40 hex digits that differ between runs (from the time and the process id).
fn run_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::with_capacity(40);
    let state = std::collections::hash_map::RandomState::new();
    for i in 0..3u64 {
        let mut h = state.build_hasher();
        h.write_u64(i);
        h.write_u32(std::process::id());
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(40);
    out
}
