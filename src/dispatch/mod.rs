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
use std::time::Instant;

use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::Bytes;
use tokio::sync::{watch, Notify};

use crate::admin::{Metrics, METRICS};
use crate::backend::{BackendError, BackendRequest, NodeRegistry, NodeShared, Target, Worker};
use crate::cluster::table::SlotTable;
use crate::cluster::NodeAddr;
use crate::command::learned::LearnedCommands;
use crate::config::Config;
use crate::slot::Slot;

pub mod decide;
pub mod plan;
pub mod retry;

use decide::{decide, Cause, Decision, Failure, Outcome, Policy, RequestState};
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
            self.retry.push(req, When::Now, Err(BackendError::Dropped));
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
                self.not_sent(req, err);
            }
        }
    }

    /// A node's reply to `req`, read from connection `conn`: [`decide()`] what happens
    /// and carry it out.
    #[inline]
    pub fn complete(&mut self, req: BackendRequest, frame: Bytes, conn: usize) {
        // What `decide` does with a reply that is not an error, without reading the clock
        // or parsing anything. An error reply costs one clock read.
        if !decide::is_error(&frame) {
            self.deliver(req.reply, Ok(frame));
            return;
        }
        let state = RequestState::of(&req);
        let outcome = Outcome::Reply {
            frame,
            from: self.conn_addr(conn),
        };
        let decision = decide(outcome, &state, &self.router.policy, Instant::now());
        // Counted whatever became of the request (over the budget, past the deadline).
        let counter = match decision.cause() {
            Some(Cause::Moved) => Some(&METRICS.redirects_moved),
            Some(Cause::Ask) => Some(&METRICS.redirects_ask),
            Some(Cause::TryAgain) => Some(&METRICS.retries_tryagain),
            Some(Cause::ClusterDown) => Some(&METRICS.retries_clusterdown),
            // Delivered as it is; no reply is `NotSent`.
            None | Some(Cause::NotSent) => None,
        };
        if let Some(counter) = counter {
            Metrics::inc(counter);
        }
        match &decision {
            Decision::PatchAndResend { slot, to, .. } => {
                tracing::debug!(%slot, from = %self.conn_addr(conn), %to, "MOVED");
            }
            Decision::Resend { slot, to, .. } => {
                tracing::debug!(%slot, from = %self.conn_addr(conn), %to, "ASK");
            }
            _ => {}
        }
        self.carry_out(req, decision);
    }

    /// A request that never reached its node (it could not be connected).
    pub fn unsent(&mut self, req: BackendRequest, err: BackendError) {
        Metrics::inc(&METRICS.retries_unreachable);
        self.not_sent(req, err);
    }

    /// A request that reached no node, for the reason `err`.
    fn not_sent(&mut self, req: BackendRequest, err: BackendError) {
        let state = RequestState::of(&req);
        let outcome = Outcome::NotSent(err);
        let decision = decide(outcome, &state, &self.router.policy, Instant::now());
        self.carry_out(req, decision);
    }

    /// Do what [`decide()`] said with `req`.
    fn carry_out(&mut self, mut req: BackendRequest, decision: Decision) {
        match decision {
            Decision::Deliver(frame) => self.deliver(req.reply, Ok(frame)),
            Decision::Resend {
                to, asking, state, ..
            } => {
                state.write_to(&mut req);
                req.asking = asking;
                let node = self.node(&to);
                self.send(node, req);
            }
            Decision::PatchAndResend { slot, to, state } => {
                state.write_to(&mut req);
                req.asking = false;
                // Resend before patching the table: a later request from the same
                // client, routed by the patched table, then queues behind this one on
                // the same connection and cannot overtake it.
                let node = self.node(&to);
                self.send(node, req);
                self.patch_slot(slot, &to);
                self.router.refresh_wanted.notify_one();
            }
            Decision::RetryAfter {
                at,
                state,
                on_deadline,
            } => {
                state.write_to(&mut req);
                self.retry
                    .push(req, When::After(at), on_deadline.into_result());
            }
            Decision::RetryAfterRefresh {
                not_before,
                state,
                on_deadline,
                ..
            } => {
                state.write_to(&mut req);
                let seen = *self.router.refreshed.borrow();
                self.router.refresh_wanted.notify_one();
                let when = When::Refresh { seen, not_before };
                self.retry.push(req, when, on_deadline.into_result());
            }
            Decision::Fail { failure, .. } => {
                if let Failure::Proxy(BackendError::TooManyRedirects { last }) = &failure {
                    tracing::warn!(%last, "redirect budget spent");
                }
                self.deliver(req.reply, failure.into_result());
            }
        }
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
