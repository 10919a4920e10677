//! Routing. [`Router`] is what all worker threads share: configuration, the published
//! slot table and the refresh signals. The methods on [`Worker`] here pick the node for
//! a request and are the one place that decides what happens after a node's reply —
//! deliver it, follow a redirect, or retry after a refresh.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::Bytes;
use tokio::sync::{watch, Notify};

use crate::admin::{Metrics, METRICS};
use crate::backend::{BackendError, BackendRequest, NodeRegistry, NodeShared, Target, Worker};
use crate::cluster::table::SlotTable;
use crate::cluster::NodeAddr;
use crate::command::learned::LearnedCommands;
use crate::config::Config;
use crate::protocol::redirect::{parse_redirect, Redirect};
use crate::slot::Slot;

pub mod retry;

use retry::When;

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

impl Worker {
    /// Add one to this worker's counter `which` (a plain load and store: only this
    /// worker writes it).
    #[inline]
    pub fn count(&self, which: impl Fn(&WorkerStats) -> &AtomicU64) {
        let counter = which(&self.router.stats[self.index % self.router.stats.len()]);
        counter.store(counter.load(Relaxed) + 1, Relaxed);
    }

    /// Count one client request.
    #[inline]
    pub fn count_request(&self) {
        self.count(|s| &s.requests);
    }

    /// Send a request to the node its target names in the current table, or queue it
    /// behind a request for the same slot that waits to be retried.
    #[inline]
    pub fn dispatch(&mut self, req: BackendRequest) {
        if self.retry.holds(req.target) {
            self.retry
                .push(req, When::Now, (BackendError::Dropped, None));
            return;
        }
        self.dispatch_now(req);
    }

    /// Send a request to the node its target names in the current table.
    pub fn dispatch_now(&mut self, req: BackendRequest) {
        match self.target_node(req.target) {
            Some(node) => self.send(node, req),
            None => {
                let err = match req.target {
                    Target::Slot(slot) => BackendError::SlotNotServed(slot),
                    Target::Any(_) => BackendError::NoNodes,
                };
                self.retry_after_refresh(req, err, None);
            }
        }
    }

    /// The one decision point for a node's reply to `req`, read from connection `conn`.
    #[inline]
    pub fn complete(&mut self, req: BackendRequest, frame: Bytes, conn: usize) {
        if frame.first() != Some(&b'-') {
            self.deliver(req.reply, Ok(frame));
            return;
        }
        let Some(redirect) = parse_redirect(&frame, self.conn_addr(conn)) else {
            self.deliver(req.reply, Ok(frame));
            return;
        };
        // Only redirects need the address past this point (an error reply like
        // `-WRONGTYPE` is delivered above without touching it).
        let from = self.conn_addr(conn).clone();
        let from = &from;
        match redirect {
            Redirect::Moved { slot, addr } => {
                Metrics::inc(&METRICS.redirects_moved);
                let Some(mut req) = self.take_redirect(req, &frame) else {
                    return;
                };
                tracing::debug!(%slot, from = %from, to = %addr, "MOVED");
                req.asking = false;
                // Resend before patching the table: a later request from the same
                // client, routed by the patched table, then queues behind this one on
                // the same connection and cannot overtake it.
                let node = self.node(&addr);
                self.send(node, req);
                self.patch_slot(slot, &addr);
                self.router.refresh_wanted.notify_one();
            }
            Redirect::Ask { slot, addr } => {
                Metrics::inc(&METRICS.redirects_ask);
                let Some(mut req) = self.take_redirect(req, &frame) else {
                    return;
                };
                tracing::debug!(%slot, from = %from, to = %addr, "ASK");
                req.asking = true;
                let node = self.node(&addr);
                self.send(node, req);
            }
            Redirect::TryAgain | Redirect::Loading => {
                let mut req = req;
                Metrics::inc(&METRICS.retries_tryagain);
                if !self.within_deadline(&mut req) {
                    self.deliver(req.reply, Ok(frame));
                    return;
                }
                req.retries += 1;
                let delay = Duration::from_millis(5 * u64::from(req.retries.min(20)));
                let err = BackendError::Lost {
                    addr: from.clone(),
                    reason: "retried until the deadline".into(),
                };
                self.retry
                    .push(req, When::After(Instant::now() + delay), (err, Some(frame)));
            }
            Redirect::ClusterDown | Redirect::MasterDown => {
                Metrics::inc(&METRICS.retries_clusterdown);
                let err = BackendError::Lost {
                    addr: from.clone(),
                    reason: String::from_utf8_lossy(&frame[1..]).trim_end().to_string(),
                };
                self.retry_after_refresh(req, err, Some(frame));
            }
        }
    }

    /// A request that never reached its node (it could not be connected).
    pub fn unsent(&mut self, req: BackendRequest, err: BackendError) {
        Metrics::inc(&METRICS.retries_unreachable);
        self.retry_after_refresh(req, err, None);
    }

    /// Count a redirect against the budget; when it is spent, answer the client with an
    /// error and return `None`.
    fn take_redirect(&mut self, mut req: BackendRequest, frame: &Bytes) -> Option<BackendRequest> {
        req.redirects += 1;
        if req.redirects > self.router.config.redirect_budget {
            let last = String::from_utf8_lossy(&frame[1..]).trim_end().to_string();
            tracing::warn!(%last, "redirect budget spent");
            self.deliver(req.reply, Err(BackendError::TooManyRedirects { last }));
            return None;
        }
        Some(req)
    }

    /// Starts the retry clock on first use; false once it has run out.
    fn within_deadline(&self, req: &mut BackendRequest) -> bool {
        let now = Instant::now();
        let deadline = *req
            .retry_deadline
            .get_or_insert(now + self.router.config.backend.timeout);
        now < deadline
    }

    /// Ask for a refresh, wait for it, and send `req` again — until its deadline, when
    /// the client gets `final_reply` (the node's own error) or `err`.
    fn retry_after_refresh(
        &mut self,
        mut req: BackendRequest,
        err: BackendError,
        final_reply: Option<Bytes>,
    ) {
        if !self.within_deadline(&mut req) {
            match final_reply {
                Some(frame) => self.deliver(req.reply, Ok(frame)),
                None => self.deliver(req.reply, Err(err)),
            }
            return;
        }
        let seen = *self.router.refreshed.borrow();
        self.router.refresh_wanted.notify_one();
        // A moment after the refresh at least, so a node that is down is not hammered.
        let not_before = Instant::now() + Duration::from_millis(10);
        self.retry
            .push(req, When::Refresh { seen, not_before }, (err, final_reply));
    }

    /// Point one slot at `addr` at once (after `MOVED`); the full refresh follows.
    fn patch_slot(&self, slot: Slot, addr: &NodeAddr) {
        if self.router.table.load().master(slot) == Some(addr) {
            return;
        }
        self.router
            .table
            .rcu(|table| table.with_slot_moved(slot, addr));
    }
}
