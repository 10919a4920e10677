//! One worker thread's side of the data path: its node connections plus what routing
//! needs — its view of the slot table, the shard → node map, the retry queue, the
//! replies waiting for the sessions. It picks the node for each request, hands every
//! reply or failure the connections report to [`decide()`], and carries the decision
//! out: deliver, resend, patch the table and resend, retry later, fail. Nothing here is
//! shared with other threads.

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::{ArcSwap, Cache};
use bytes::{Bytes, BytesMut};
use mio::{Registry, Token};

use super::decide::{self, decide, Cause, Decision, Failure, Outcome, Policy, RequestState};
use super::pubsub::{PubSub, PubSubIo};
use super::retry::{Due, RetryQueue, When};
use crate::admin::{Metrics, WorkerStats, METRICS};
use crate::backend::{
    take_dropped, BackendError, BackendRequest, Hold, NodeConnections, Place, Push, ReplyResult,
    ReplyTo, Target,
};
use crate::clients::Unblock;
use crate::cluster::table::SlotTable;
use crate::cluster::NodeAddr;
use crate::shared::Shared;
use crate::slot::Slot;

/// The published slot table, as a [`Cache`] needs it: something that derefs to the
/// `ArcSwap` and owns it.
pub struct PublishedTable(Arc<Shared>);

impl Deref for PublishedTable {
    type Target = ArcSwap<SlotTable>;

    fn deref(&self) -> &ArcSwap<SlotTable> {
        &self.0.table
    }
}

/// Read buffers a worker keeps at most.
const KEEP_READ_BUFFERS: usize = 64;

/// Per-thread state: what all workers share, this thread's node connections and what
/// it routes them with.
pub struct Worker {
    pub shared: Arc<Shared>,
    /// Position among the worker threads (for per-worker counters).
    pub index: usize,
    /// What [`decide()`] applies, from the configuration.
    policy: Policy,
    /// This worker's connections to the nodes.
    conns: NodeConnections,
    /// This worker's view of the published slot table: a load costs one atomic read
    /// while the table is unchanged, not the shared load's reference counting.
    table: Cache<PublishedTable, Arc<SlotTable>>,
    /// Shard index → node index, for the table of `generation`.
    by_shard: (u64, Vec<usize>),
    /// The slot ownership's fingerprint, for the table of `generation`.
    fingerprint: (u64, u8),
    /// Requests waiting to be sent again, in order.
    pub retry: RetryQueue,
    /// Replies for the sessions, handed over by the event loop after each event.
    pub deliveries: Vec<(Place, ReplyResult)>,
    /// Replies read in one go, before the decision point sees them.
    replies: Vec<(BackendRequest, Bytes)>,
    /// Emptied client read buffers, kept for the next read on this worker so an idle
    /// client holds none and a busy one does not allocate per read.
    read_buffers: Vec<BytesMut>,
    /// The subscriptions of this worker's clients, shared at the nodes.
    pubsub: PubSub,
}

impl Worker {
    pub fn new(shared: Arc<Shared>, index: usize, registry: Registry) -> Worker {
        Worker {
            table: Cache::new(PublishedTable(Arc::clone(&shared))),
            conns: NodeConnections::new(&shared.config, registry),
            policy: Policy::new(&shared.config),
            shared,
            index,
            by_shard: (u64::MAX, Vec::new()),
            fingerprint: (u64::MAX, 0),
            retry: RetryQueue::default(),
            deliveries: Vec::new(),
            replies: Vec::new(),
            read_buffers: Vec::new(),
            pubsub: PubSub::default(),
        }
    }

    /// The pub/sub hub, with what it works with.
    pub fn pubsub(&mut self) -> (&mut PubSub, PubSubIo<'_>) {
        let io = PubSubIo {
            conns: &mut self.conns,
            shared: &self.shared,
            table: self.table.load(),
            deliveries: &mut self.deliveries,
            worker: self.index,
        };
        (&mut self.pubsub, io)
    }

    /// Messages for the subscribed sessions since the last call, in order (handed over
    /// after the replies, so a confirmation leaves before its channel's messages).
    #[inline]
    pub fn take_messages(&mut self) -> std::vec::Drain<'_, Push> {
        self.pubsub.messages.drain(..)
    }

    /// What every socket read of this worker lands in first.
    #[inline]
    pub fn scratch(&mut self) -> &mut [u8] {
        &mut self.conns.scratch
    }

    /// A read buffer for a client, from the worker's spares when it has one.
    pub fn take_read_buffer(&mut self) -> BytesMut {
        self.read_buffers.pop().unwrap_or_default()
    }

    /// Give back an empty read buffer. A buffer whose memory is still shared with requests
    /// in flight reclaims it once they complete; a big one is dropped.
    pub fn give_read_buffer(&mut self, buf: BytesMut) {
        if buf.capacity() > 0
            && buf.capacity() <= 4 * 16 * 1024
            && self.read_buffers.len() < KEEP_READ_BUFFERS
        {
            self.read_buffers.push(buf);
        }
    }

    /// Add one to this worker's counter `which` (a plain load and store: only this
    /// worker writes it).
    #[inline]
    pub fn count(&self, which: impl Fn(&WorkerStats) -> &AtomicU64) {
        self.add(which, 1);
    }

    /// Add `n` to this worker's counter `which`.
    #[inline]
    fn add(&self, which: impl Fn(&WorkerStats) -> &AtomicU64, n: u64) {
        let counter = which(&self.shared.stats[self.index % self.shared.stats.len()]);
        counter.store(counter.load(Relaxed) + n, Relaxed);
    }

    /// Count one client request.
    #[inline]
    pub fn count_request(&self) {
        self.count(|s| &s.requests);
    }

    /// Answer a place of a session (through the event loop, which owns the sessions).
    #[inline]
    pub fn deliver(&mut self, reply: ReplyTo, result: ReplyResult) {
        self.deliveries.push((reply.into_place(), result));
    }

    /// Queue an error for every place whose handle was dropped unanswered.
    #[inline]
    pub fn collect_dropped(&mut self) {
        for place in take_dropped() {
            self.deliveries.push((place, Err(BackendError::Dropped)));
        }
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
                    Target::Any(_) | Target::Shard(_) | Target::Replica(..) => {
                        BackendError::NoNodes
                    }
                };
                self.not_sent(req, err);
            }
        }
    }

    /// The node at `addr`, made known to this worker's connections on first use.
    fn node(&mut self, addr: &NodeAddr) -> usize {
        let shared = &self.shared;
        self.conns.node(addr, || shared.node_record(addr))
    }

    /// The node that serves `target` in the current slot table: its shard's master.
    #[inline]
    fn target_node(&mut self, target: Target) -> Option<usize> {
        let table = self.table.load();
        let shard = match target {
            Target::Slot(slot) => table.shard_for(slot)?,
            Target::Any(n) => match table.shards().len() {
                0 => return None,
                len => n as usize % len,
            },
            Target::Shard(i) => i as usize,
            Target::Replica(shard, i) => {
                let addr = table
                    .shards()
                    .get(shard as usize)?
                    .replicas
                    .get(i as usize)?;
                let addr = addr.clone();
                return Some(self.node(&addr));
            }
        };
        if self.by_shard.0 != table.generation() {
            // A new table (rare): map its shards to this worker's nodes once.
            let table = Arc::clone(table);
            let nodes: Vec<usize> = table
                .shards()
                .iter()
                .map(|s| self.node(&s.master))
                .collect();
            self.by_shard = (table.generation(), nodes);
        }
        self.by_shard.1.get(shard).copied()
    }

    /// The parts of a cluster-wide command, from the current slot table: every master
    /// in shard order (then every replica when `replicas`), each with its address.
    pub fn every_node(&mut self, replicas: bool) -> Vec<(Target, String)> {
        let table = self.table.load();
        let mut nodes: Vec<(Target, String)> = (table.shards().iter().enumerate())
            .map(|(i, s)| (Target::Shard(i as u16), s.master.to_string()))
            .collect();
        if replicas {
            for (i, shard) in table.shards().iter().enumerate() {
                for (r, addr) in shard.replicas.iter().enumerate() {
                    nodes.push((Target::Replica(i as u16, r as u16), addr.to_string()));
                }
            }
        }
        nodes
    }

    /// How many shards the current slot table has, and a fingerprint of which node
    /// owns which slots (a `SCAN` started on one fingerprint starts over on another).
    pub fn shards_and_fingerprint(&mut self) -> (usize, u8) {
        let table = self.table.load();
        if self.fingerprint.0 != table.generation() {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            table.ranges().hash(&mut hasher);
            let h = hasher.finish().to_le_bytes();
            let fp = h.iter().fold(0u8, |a, b| a ^ b);
            self.fingerprint = (table.generation(), fp);
        }
        (table.shards().len(), self.fingerprint.1)
    }

    /// Queue a request on a connection to `node`: a shared one, or one pinned to its
    /// client (a blocking command), which may be refused.
    #[inline]
    fn send(&mut self, node: usize, req: BackendRequest) {
        if !req.pinned {
            return self.conns.send(node, req);
        }
        if let Err((reply, err)) = self.conns.send_pinned(node, req) {
            self.deliver(reply, Err(err));
        }
    }

    /// Send a request of a client's transaction on the connection held for it ([`Hold`]):
    /// the one that opens it goes to its target's node, the others wherever the held
    /// connection is, whatever the slot table says now (a slot that moved meanwhile is
    /// the node's to report). Never queued for a retry: the transaction's requests must
    /// reach their connection in the order the client sent them.
    pub fn dispatch_held(&mut self, req: BackendRequest) {
        let node = if req.hold == Hold::Open {
            match self.target_node(req.target) {
                Some(node) => Some(node),
                None => {
                    let err = match req.target {
                        Target::Slot(slot) => BackendError::SlotNotServed(slot),
                        _ => BackendError::NoNodes,
                    };
                    return self.not_sent(req, err);
                }
            }
        } else {
            None
        };
        if let Err((reply, err)) = self.conns.send_held(node, req) {
            self.deliver(reply, Err(err));
        }
    }

    /// The client of session `session` (client id `client`) is gone: close the
    /// connections pinned to it.
    pub fn release_session(&mut self, session: usize, client: u64) {
        self.conns.release_session(session, client);
    }

    /// `CLIENT UNBLOCK` of the client of session `session` (client id `client`),
    /// blocked in its request at place `seq`: unblocked at its node
    /// ([`NodeConnections::unblock`]).
    pub fn unblock_pinned(&mut self, session: usize, client: u64, seq: u64, how: Unblock) {
        self.conns.unblock(session, client, seq, how);
    }

    /// Write every connection that has something queued (once per turn of the loop).
    pub fn flush_conns(&mut self) {
        let writes = self.conns.flush();
        if writes > 0 {
            self.add(|s| &s.backend_writes, writes);
        }
        self.take_reports();
    }

    /// An event on the backend connection of `token`.
    pub fn conn_event(&mut self, token: Token, readable: bool, writable: bool) {
        if let Some(ci) = self.conns.event(token, writable) {
            if readable {
                self.read_replies(ci);
            }
        }
        self.take_reports();
    }

    /// Some connection has more to read than its last turn took.
    pub fn has_unread(&self) -> bool {
        self.conns.has_unread()
    }

    /// Read again the connections whose last read stopped at the per-turn limit.
    pub fn read_unread(&mut self) {
        for ci in self.conns.take_unread() {
            if self.conns.is_unread(ci) {
                self.read_replies(ci);
            }
        }
        self.take_reports();
    }

    /// The watchdog, once per tick: time out overdue replies and slow connects.
    pub fn watchdog(&mut self) {
        self.conns.watchdog();
        self.take_reports();
        let (hub, mut io) = self.pubsub();
        hub.tick(&mut io);
    }

    /// Push frames read on pinned connections since the last call, for their clients.
    #[inline]
    pub fn take_pushes(&mut self) -> std::vec::Drain<'_, Push> {
        self.conns.pushes.drain(..)
    }

    /// Read connection `ci` and hand each reply to the decision point, in order.
    #[inline]
    fn read_replies(&mut self, ci: usize) {
        let mut replies = std::mem::take(&mut self.replies);
        let outcome = self.conns.read(ci, &mut replies);
        for (req, frame) in replies.drain(..) {
            self.complete(req, frame, ci);
        }
        self.replies = replies;
        self.conns.finish_read(ci, outcome);
    }

    /// Carry out what the connections reported: requests never sent go to the decision
    /// point, requests failed get their error.
    #[inline]
    fn take_reports(&mut self) {
        if self.conns.has_reports() {
            self.take_reports_now();
        }
        if !self.conns.sub_frames.is_empty() || !self.conns.sub_down.is_empty() {
            let (hub, mut io) = self.pubsub();
            hub.take_reports(&mut io);
        }
    }

    #[cold]
    fn take_reports_now(&mut self) {
        // Deciding on a request never sent sends nothing (it is retried later or fails),
        // so this loop runs once; it would take what such a decision reported too.
        while !self.conns.unsent.is_empty() {
            let mut unsent = std::mem::take(&mut self.conns.unsent);
            for (req, err) in unsent.drain(..) {
                self.unsent(req, err);
            }
            if self.conns.unsent.is_empty() {
                // Keep the capacity for next time.
                self.conns.unsent = unsent;
            }
        }
        for (reply, err) in self.conns.failed.drain(..) {
            self.deliveries.push((reply.into_place(), Err(err)));
        }
    }

    /// A node's reply to `req`, read from connection `conn`: [`decide()`] what happens
    /// and carry it out.
    #[inline]
    fn complete(&mut self, req: BackendRequest, frame: Bytes, conn: usize) {
        // What `decide` does with a reply that is not an error, without reading the clock
        // or parsing anything. An error reply costs one clock read.
        if !decide::is_error(&frame) {
            self.deliver(req.reply, Ok(frame));
            return;
        }
        if frame.starts_with(b"-NOSCRIPT") && !req.pinned {
            if let Some(eval) = self.shared.scripts.as_eval(&req.bytes) {
                return self.heal_noscript(req, eval, conn);
            }
        }
        let state = RequestState::of(&req);
        let outcome = Outcome::Reply {
            frame,
            from: self.conns.conn_addr(conn),
        };
        let decision = decide(outcome, &state, &self.policy, Instant::now());
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
                tracing::debug!(%slot, from = %self.conns.conn_addr(conn), %to, "MOVED");
            }
            Decision::Resend { slot, to, .. } => {
                tracing::debug!(%slot, from = %self.conns.conn_addr(conn), %to, "ASK");
            }
            Decision::Unfollowed { cause, .. } => {
                tracing::debug!(?cause, from = %self.conns.conn_addr(conn), "a transaction's request met a redirect: not followed, the transaction fails");
            }
            _ => {}
        }
        self.carry_out(req, decision);
    }

    /// An `EVALSHA` the node answered `NOSCRIPT`: send it again to the same node as
    /// the `EVAL` of the script slotgate remembers, which runs it and caches it there.
    #[cold]
    fn heal_noscript(&mut self, mut req: BackendRequest, eval: Bytes, conn: usize) {
        Metrics::inc(&METRICS.scripts_healed);
        tracing::info!(node = %self.conns.conn_addr(conn), "NOSCRIPT: sending the script itself");
        req.bytes = eval;
        let node = self.conns.conn_node(conn);
        self.send(node, req);
    }

    /// A request that never reached its node (it could not be connected).
    fn unsent(&mut self, req: BackendRequest, err: BackendError) {
        Metrics::inc(&METRICS.retries_unreachable);
        self.not_sent(req, err);
    }

    /// A request that reached no node, for the reason `err`.
    fn not_sent(&mut self, req: BackendRequest, err: BackendError) {
        let state = RequestState::of(&req);
        let outcome = Outcome::NotSent(err);
        let decision = decide(outcome, &state, &self.policy, Instant::now());
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
                self.shared.refresh_wanted.notify_one();
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
                let seen = *self.shared.refreshed.borrow();
                self.shared.refresh_wanted.notify_one();
                let when = When::Refresh { seen, not_before };
                self.retry.push(req, when, on_deadline.into_result());
            }
            Decision::Fail { failure, .. } => {
                if let Failure::Proxy(BackendError::TooManyRedirects { last }) = &failure {
                    tracing::warn!(%last, "redirect budget spent");
                }
                self.deliver(req.reply, failure.into_result());
            }
            Decision::Unfollowed {
                frame,
                cause,
                moved,
            } => {
                self.deliver(req.reply, Ok(frame));
                if let Some((slot, to)) = moved {
                    self.patch_slot(slot, &to);
                }
                if matches!(cause, Cause::Moved | Cause::Ask | Cause::ClusterDown) {
                    self.shared.refresh_wanted.notify_one();
                }
            }
        }
    }

    /// Point one slot at `addr` at once (after `MOVED`); the full refresh follows.
    fn patch_slot(&self, slot: Slot, addr: &NodeAddr) {
        if self.shared.table.load().master(slot) == Some(addr) {
            return;
        }
        self.shared
            .table
            .rcu(|table| table.with_slot_moved(slot, addr));
    }

    /// Send the waiting requests whose time has come, in order, and answer those whose
    /// deadline passed first. Returns when to look again (`None`: nothing waits).
    pub fn run_retries(&mut self, now: Instant) -> Option<Instant> {
        if self.retry.is_empty() {
            return None;
        }
        let refreshes = *self.shared.refreshed.borrow();
        loop {
            match self.retry.next_due(now, refreshes) {
                Due::Send(mut req) => {
                    // Re-routed by the current table: an `ASK` does not carry over.
                    req.asking = false;
                    self.dispatch_now(req);
                }
                Due::Expired(reply, answer) => self.deliver(reply, answer),
                Due::Wait(next) => return next,
            }
        }
    }
}
