//! One worker thread's side of the data path: its node connections plus what routing
//! needs — its view of the slot table, the shard → node map, the retry queue, the
//! replies waiting for the sessions. It picks the node for each request, hands every
//! reply or failure the connections report to [`decide()`], and carries the decision
//! out: deliver, resend, patch the table and resend, retry later, fail. Nothing here is
//! shared with other threads.

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering::Acquire, Ordering::Release};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::{ArcSwap, Cache};
use bytes::{Bytes, BytesMut};
use mio::{Registry, Token};

use super::decide::{self, decide, Cause, Decision, Failure, Outcome, Policy, RequestState};
use super::pubsub::{PubSub, PubSubIo};
use super::reads::{self, Candidate, Pick};
use super::retry::{Due, RetryQueue, When};
use crate::admin::metrics::RefreshCause;
use crate::admin::{
    bump, ErrorKind, Latency, Metrics, Redirect, RequestClass, WorkerStats, METRICS, SAMPLE_EVERY,
};
use crate::backend::{
    take_dropped, BackendError, BackendRequest, Hold, NodeConnections, NodeShared, Place, Push,
    ReplyResult, ReplyTo, Side, Target,
};
use crate::clients::Unblock;
use crate::cluster::table::SlotTable;
use crate::cluster::NodeAddr;
use crate::config::{Config, ReadFrom};
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
    /// The configuration in force on this worker (its sessions hold the same): taken
    /// from `shared.config` at start and at the first tick after a reload
    /// ([`Worker::take_config`]), so the data path reads a plain field.
    pub config: Arc<Config>,
    /// The reload generation `config` came with (`shared.config_generation`).
    config_generation: u64,
    /// Position among the worker threads (for per-worker counters).
    pub index: usize,
    /// This worker's block in `shared.stats` (its index, taken once: no division per
    /// request).
    stats_at: usize,
    /// What [`decide()`] applies, from the configuration.
    policy: Policy,
    /// This worker's connections to the nodes.
    conns: NodeConnections,
    /// This worker's view of the published slot table: a load costs one atomic read
    /// while the table is unchanged, not the shared load's reference counting.
    table: Cache<PublishedTable, Arc<SlotTable>>,
    /// Shard index → node index, for the table of `generation`.
    by_shard: (u64, Vec<usize>),
    /// Shard index → where its reads may go, for the table of `generation`; made the
    /// first time a read may go to a replica ([`Worker::read_node`]).
    reads: (u64, Vec<ShardReads>),
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
    /// The clock the latency samples are read on (microseconds since this).
    clock: Instant,
    /// Requests to send before the next one is timed.
    until_sample: u32,
    /// This worker's latency histogram of each node (by node index), once it timed one.
    node_latency: Vec<Option<Arc<Latency>>>,
}

/// One shard's nodes as a read sees them: the master (its shared connections), and each
/// replica the slot table lists as serving (its connections for reads, which open with
/// `READONLY`), with what all workers know of each.
struct ShardReads {
    master: (usize, Arc<NodeShared>),
    replicas: Vec<(usize, Arc<NodeShared>)>,
}

/// The slot table as a `SCAN` sees it.
pub struct ScanView {
    /// Shards the walk goes through, in order.
    pub shards: usize,
    /// A fingerprint of which node owns which slots: a scan started on one fingerprint
    /// starts over on another.
    pub fingerprint: u8,
    /// The shards to walk again after the walk ([`SlotTable::rescans`]).
    pub rescans: Vec<u16>,
}

impl Worker {
    pub fn new(shared: Arc<Shared>, index: usize, registry: Registry) -> Worker {
        let config_generation = shared.config_generation.load(Acquire);
        let config = shared.config.load_full();
        Worker {
            table: Cache::new(PublishedTable(Arc::clone(&shared))),
            conns: NodeConnections::new(&config, registry),
            policy: Policy::new(&config),
            config,
            config_generation,
            stats_at: index % shared.stats.len(),
            shared,
            index,
            by_shard: (u64::MAX, Vec::new()),
            reads: (u64::MAX, Vec::new()),
            fingerprint: (u64::MAX, 0),
            retry: RetryQueue::default(),
            deliveries: Vec::new(),
            replies: Vec::new(),
            read_buffers: Vec::new(),
            pubsub: PubSub::default(),
            clock: Instant::now(),
            until_sample: SAMPLE_EVERY,
            node_latency: Vec::new(),
        }
    }

    /// A reload swapped in a new configuration since this worker took its own: one
    /// load, at a tick or a wake, never per request.
    #[inline]
    pub fn config_changed(&self) -> bool {
        self.shared.config_generation.load(Acquire) != self.config_generation
    }

    /// Take the configuration in force for this worker's node connections and routing;
    /// returns the one it replaces (the event loop then updates the sessions and calls
    /// [`Worker::config_taken`]).
    #[cold]
    pub fn take_config(&mut self) -> Arc<Config> {
        self.config_generation = self.shared.config_generation.load(Acquire);
        let config = self.shared.config.load_full();
        self.conns.reconfigure(&config);
        self.policy = Policy::new(&config);
        std::mem::replace(&mut self.config, config)
    }

    /// Tell the reload that this worker's sessions have the config of its generation.
    #[cold]
    pub fn config_taken(&self) {
        let applied = &self.shared.config_applied;
        applied[self.index % applied.len()].store(self.config_generation, Release);
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
    pub fn add(&self, which: impl Fn(&WorkerStats) -> &AtomicU64, n: u64) {
        bump(which(self.stats()), n);
    }

    /// This worker's counters.
    #[inline(always)]
    pub fn stats(&self) -> &WorkerStats {
        &self.shared.stats[self.stats_at]
    }

    /// Count one client request of `class`.
    #[inline]
    pub fn count_request(&self, class: RequestClass) {
        self.stats().request(class);
    }

    /// Count one error reply to a request of `class`.
    #[inline]
    pub fn count_error(&self, class: RequestClass, kind: ErrorKind) {
        self.stats().error(class, kind);
    }

    /// Answer a place of a session (through the event loop, which owns the sessions).
    #[inline]
    pub fn deliver(&mut self, reply: ReplyTo, result: ReplyResult) {
        if reply.sent_at() != 0 || result.is_err() {
            self.account(&reply, &result);
        }
        self.deliveries.push((reply.into_place(), result));
    }

    /// Count an answer that is an error, and time a request that was sampled.
    #[cold]
    #[inline(never)]
    fn account(&mut self, reply: &ReplyTo, result: &ReplyResult) {
        let class = reply.class();
        if let Err(e) = result {
            let kind = match e.side() {
                Side::Proxy => ErrorKind::Proxy,
                Side::Node | Side::Client => ErrorKind::Node,
            };
            self.count_error(class, kind);
        }
        if reply.sent_at() != 0 {
            let micros = self.micros().wrapping_sub(reply.sent_at());
            self.stats().classes[class as usize]
                .latency
                .record(u64::from(micros));
        }
    }

    /// Microseconds on this worker's sampling clock (wrapping after 71 minutes).
    #[inline]
    fn micros(&self) -> u32 {
        self.clock.elapsed().as_micros() as u32
    }

    /// Time one request in [`SAMPLE_EVERY`]: note when it leaves.
    #[inline(always)]
    fn sample(&mut self, reply: &mut ReplyTo) {
        self.until_sample -= 1;
        if self.until_sample == 0 {
            self.until_sample = SAMPLE_EVERY;
            reply.set_sent_at(self.micros().max(1));
        }
    }

    /// A timed request's reply came from connection `conn`, and is not an error: record
    /// its latency for its class and its node.
    #[cold]
    #[inline(never)]
    fn time_reply(&mut self, reply: &ReplyTo, conn: usize) {
        let micros = u64::from(self.micros().wrapping_sub(reply.sent_at()));
        let stats = &self.shared.stats[self.stats_at];
        stats.classes[reply.class() as usize].latency.record(micros);
        let node = self.conns.conn_node(conn);
        if self.node_latency.len() <= node {
            self.node_latency.resize(node + 1, None);
        }
        let latency = self.node_latency[node]
            .get_or_insert_with(|| stats.node_latency(self.conns.conn_addr(conn)));
        latency.record(micros);
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
    // Always inlined: it has several callers (a plain request, WAIT, the retry tests),
    // and outlined it costs the hot path a call and the spills around it.
    #[inline(always)]
    pub fn dispatch(&mut self, mut req: BackendRequest) {
        self.sample(&mut req.reply);
        if self.retry.holds(req.target) {
            self.retry.push(req, When::Now, Err(BackendError::Dropped));
            return;
        }
        self.dispatch_now(req);
    }

    /// Send a request to the node its target names in the current table (a read that
    /// may go to a replica: where [`reads::pick`] says).
    #[inline]
    pub fn dispatch_now(&mut self, req: BackendRequest) {
        let node = if req.reads == ReadFrom::Master {
            self.target_node(req.target)
        } else {
            self.read_node(&req)
        };
        match node {
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
            Target::Replica(shard, i) => return self.replica_node(shard, i),
        };
        if self.by_shard.0 != table.generation() {
            self.map_shards();
        }
        self.by_shard.1.get(shard).copied()
    }

    /// A new table (rare): map its shards to this worker's nodes once.
    #[cold]
    #[inline(never)]
    fn map_shards(&mut self) {
        let table = Arc::clone(self.table.load());
        let nodes: Vec<usize> = table
            .shards()
            .iter()
            .map(|s| self.node(&s.master))
            .collect();
        self.by_shard = (table.generation(), nodes);
    }

    /// The node of connected replica `i` of shard `shard` (fan-out to replicas).
    #[cold]
    #[inline(never)]
    fn replica_node(&mut self, shard: u16, i: u16) -> Option<usize> {
        let table = self.table.load();
        let addr = (table.shards().get(shard as usize)?)
            .connected_replicas()
            .nth(i as usize)?
            .clone();
        Some(self.node(&addr))
    }

    /// The node for a read that may go to a replica ([`BackendRequest::reads`]): its
    /// shard's master or one of its replicas, as [`reads::pick`] chooses.
    #[cold]
    #[inline(never)]
    fn read_node(&mut self, req: &BackendRequest) -> Option<usize> {
        let Target::Slot(slot) = req.target else {
            return self.target_node(req.target);
        };
        let table = self.table.load();
        let shard = table.shard_for(slot)?;
        if self.reads.0 != table.generation() {
            self.map_reads();
        }
        let max_lag = self.config.reads.max_lag;
        let reads = self.reads.1.get(shard)?;
        let master = Candidate {
            usable: true,
            rtt_us: reads.master.1.reads.rtt_us(),
        };
        let replica = |i: usize| {
            let node: &NodeShared = &reads.replicas[i].1;
            Candidate {
                usable: !node.is_down() && node.reads.fit_for_reads(max_lag),
                rtt_us: node.reads.rtt_us(),
            }
        };
        let count = reads.replicas.len();
        Some(
            match reads::pick(req.reads, master, count, replica, req.conn_hint) {
                Pick::Master => reads.master.0,
                Pick::Replica(i) => reads.replicas[i].0,
            },
        )
    }

    /// A new table (rare), with reads at replicas: map each shard's master and serving
    /// replicas to this worker's nodes once.
    #[cold]
    #[inline(never)]
    fn map_reads(&mut self) {
        let table = Arc::clone(self.table.load());
        let mut shards = Vec::with_capacity(table.shards().len());
        for shard in table.shards() {
            let master = self.node(&shard.master);
            let replicas = (shard.replicas.iter())
                .map(|addr| {
                    let shared = &self.shared;
                    let node = self.conns.read_node(addr, || shared.node_record(addr));
                    (node, Arc::clone(self.conns.node_shared(node)))
                })
                .collect();
            shards.push(ShardReads {
                master: (master, Arc::clone(self.conns.node_shared(master))),
                replicas,
            });
        }
        self.reads = (table.generation(), shards);
    }

    /// A read meant for a replica did not get its answer there (the replica could not
    /// be reached, its connection was lost, its reply was overdue): it goes to the
    /// master now, once, rather than fail or wait for a refresh (reads are safe to send
    /// again).
    #[cold]
    #[inline(never)]
    fn read_at_master(&mut self, mut req: BackendRequest, err: &BackendError) {
        Metrics::inc(&METRICS.replica_read_fallbacks);
        crate::log_limit::replica_read_fallback(err);
        req.reads = ReadFrom::Master;
        self.dispatch_now(req);
    }

    /// The parts of a cluster-wide command, from the current slot table: every master
    /// in shard order (then every connected replica, `loading` ones too, when
    /// `replicas`), each with its address.
    pub fn every_node(&mut self, replicas: bool) -> Vec<(Target, String)> {
        let table = self.table.load();
        let mut nodes: Vec<(Target, String)> = (table.shards().iter().enumerate())
            .map(|(i, s)| (Target::Shard(i as u16), s.master.to_string()))
            .collect();
        if replicas {
            for (i, shard) in table.shards().iter().enumerate() {
                for (r, addr) in shard.connected_replicas().enumerate() {
                    nodes.push((Target::Replica(i as u16, r as u16), addr.to_string()));
                }
            }
        }
        nodes
    }

    /// What a `SCAN` step needs of the current slot table.
    pub fn scan_view(&mut self) -> ScanView {
        let table = self.table.load();
        if self.fingerprint.0 != table.generation() {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            table.ranges().hash(&mut hasher);
            let h = hasher.finish().to_le_bytes();
            let fp = h.iter().fold(0u8, |a, b| a ^ b);
            self.fingerprint = (table.generation(), fp);
        }
        ScanView {
            shards: table.shards().len(),
            fingerprint: self.fingerprint.1,
            rescans: table.rescans(),
        }
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
    pub fn dispatch_held(&mut self, mut req: BackendRequest) {
        self.sample(&mut req.reply);
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
        let open = self.conns.open_shared() as u64;
        self.stats()
            .shared_connections
            .store(open, std::sync::atomic::Ordering::Relaxed);
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
        let mut failed = std::mem::take(&mut self.conns.failed);
        for (reply, err) in failed.drain(..) {
            self.deliver(reply, Err(err));
        }
        // Keep the capacity for next time.
        self.conns.failed = failed;
    }

    /// A node's reply to `req`, read from connection `conn`: [`decide()`] what happens
    /// and carry it out.
    #[inline]
    fn complete(&mut self, req: BackendRequest, frame: Bytes, conn: usize) {
        // What `decide` does with a reply that is not an error, without reading the clock
        // or parsing anything. An error reply costs one clock read.
        if !decide::is_error(&frame) {
            if req.reply.sent_at() != 0 {
                self.time_reply(&req.reply, conn);
            }
            // Not `deliver`: this is no error, and it is timed already.
            self.deliveries.push((req.reply.into_place(), Ok(frame)));
            return;
        }
        let mut req = req;
        if req.reads != ReadFrom::Master {
            // An error from where a read was sent (a replica's `MOVED` or `LOADING`,
            // say): whatever is retried goes to the master.
            req.reads = ReadFrom::Master;
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
        let redirect = match decision.cause() {
            Some(Cause::Moved) => Some(Redirect::Moved),
            Some(Cause::Ask) => Some(Redirect::Ask),
            Some(Cause::TryAgain) => Some(Redirect::TryAgain),
            Some(Cause::ClusterDown) => Some(Redirect::ClusterDown),
            // Delivered as it is; no reply is `NotSent`.
            None | Some(Cause::NotSent) => None,
        };
        if let Some(kind) = redirect {
            self.stats().redirect(kind);
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
        if req.reads != ReadFrom::Master {
            return self.read_at_master(req, &err);
        }
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
            Decision::Deliver(frame) => {
                if decide::is_error(&frame) {
                    self.count_error(req.reply.class(), ErrorKind::Reply);
                }
                self.deliver(req.reply, Ok(frame))
            }
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
                self.shared.want_refresh(RefreshCause::Moved);
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
                cause,
            } => {
                state.write_to(&mut req);
                let seen = *self.shared.refreshed.borrow();
                self.shared.want_refresh(match cause {
                    Cause::ClusterDown => RefreshCause::ClusterDown,
                    Cause::NotSent => RefreshCause::Unreachable,
                    Cause::Moved => RefreshCause::Moved,
                    Cause::Ask => RefreshCause::Ask,
                    Cause::TryAgain => RefreshCause::Other,
                });
                let when = When::Refresh { seen, not_before };
                self.retry.push(req, when, on_deadline.into_result());
            }
            Decision::Fail { failure, .. } => {
                if let Failure::Proxy(BackendError::TooManyRedirects { last }) = &failure {
                    tracing::warn!(%last, "redirect budget spent");
                }
                let result = failure.into_result();
                if result.is_ok() {
                    // A node's own error reply (`-TRYAGAIN ...`), the last one it gave.
                    self.count_error(req.reply.class(), ErrorKind::Reply);
                }
                self.deliver(req.reply, result);
            }
            Decision::Unfollowed {
                frame,
                cause,
                moved,
            } => {
                self.count_error(req.reply.class(), ErrorKind::Reply);
                self.deliver(req.reply, Ok(frame));
                if let Some((slot, to)) = moved {
                    self.patch_slot(slot, &to);
                }
                let refresh = match cause {
                    Cause::Moved => Some(RefreshCause::Moved),
                    Cause::Ask => Some(RefreshCause::Ask),
                    Cause::ClusterDown => Some(RefreshCause::ClusterDown),
                    Cause::TryAgain | Cause::NotSent => None,
                };
                if let Some(cause) = refresh {
                    self.shared.want_refresh(cause);
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
