//! A worker thread's backend side: its own connections to each node, found by address
//! or by shard index of the current slot table, and what the event loop does with them
//! — connect, flush once per turn, read replies, time out, fail. Nothing here is shared
//! with other threads, so sending a request takes no lock and no atomic operation.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, Cache};
use bytes::{Bytes, BytesMut};
use mio::{Registry, Token};

use super::connection::{Conn, Owner, ReadOutcome, State};
use super::handshake::Handshake;
use super::{
    take_dropped, BackendError, BackendRequest, NodeShared, Place, ReplyDeadline, ReplyResult,
    ReplyTo, Target,
};
use crate::admin::{Metrics, METRICS};
use crate::cluster::table::SlotTable;
use crate::cluster::NodeAddr;
use crate::dispatch::retry::RetryQueue;
use crate::dispatch::Router;
use crate::protocol::reply::Proto;

/// How often the watchdog looks for connections whose replies are overdue.
pub const WATCHDOG_TICK: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
const MIN_BACKOFF: Duration = Duration::from_millis(50);

/// Tokens of backend connections are odd; the event loop uses the even ones.
pub fn conn_token(index: usize) -> Token {
    Token(index * 2 + 1)
}

/// One cluster node as one worker reaches it: RESP2 and RESP3 connections kept apart
/// so replies pass through byte-for-byte in the client's protocol.
struct Node {
    resp2: Box<[usize]>,
    resp3: Box<[usize]>,
    /// Pinned connections between owners, kept for the next blocking request.
    spare: Vec<usize>,
    /// Reconnect backoff after failed connects.
    backoff: Duration,
}

/// Spare pinned connections a worker keeps per node; more are closed.
const SPARE_PER_NODE: usize = 8;

/// The router's slot table, as a [`Cache`] needs it: something that derefs to the
/// `ArcSwap` and owns it.
pub struct PublishedTable(Arc<Router>);

impl Deref for PublishedTable {
    type Target = ArcSwap<SlotTable>;

    fn deref(&self) -> &ArcSwap<SlotTable> {
        &self.0.table
    }
}

/// Per-thread state: the shared router plus this thread's node connections.
pub struct Worker {
    pub router: Arc<Router>,
    /// Position among the worker threads (for per-worker counters).
    pub index: usize,
    registry: Registry,
    nodes: Vec<Node>,
    by_addr: HashMap<NodeAddr, usize>,
    /// This worker's view of the published slot table: a load costs one atomic read
    /// while the table is unchanged, not the shared load's reference counting.
    table: Cache<PublishedTable, Arc<SlotTable>>,
    /// Shard index → node index, for the table of `generation`.
    by_shard: (u64, Vec<usize>),
    conns: Vec<Conn>,
    /// Connections with something to write (or to connect) at the end of this turn.
    dirty: Vec<usize>,
    /// Connections whose last read stopped at the per-turn limit: read again next turn.
    unread: Vec<usize>,
    /// Pinned connections with an owner now.
    pinned: Vec<usize>,
    /// Slots of `conns` whose pinned connection was closed for good, for the next one.
    free: Vec<usize>,
    /// Watchdog ticks since the worker started: a coarse clock that costs nothing to read.
    pub tick: u64,
    /// Requests waiting to be sent again, in order.
    pub retry: RetryQueue,
    /// Replies for the sessions, handed over by the event loop after each event.
    pub deliveries: Vec<(Place, ReplyResult)>,
    /// Replies read in one go, before the decision point sees them.
    replies: Vec<(BackendRequest, Bytes)>,
    /// What every socket read of this worker lands in first.
    pub scratch: Box<[u8]>,
    /// Emptied client read buffers, kept for the next read on this worker so an idle
    /// client holds none and a busy one does not allocate per read.
    read_buffers: Vec<BytesMut>,
}

/// Read buffers a worker keeps at most.
const KEEP_READ_BUFFERS: usize = 64;

/// Size of a worker's read buffer: one read takes at most this much.
pub const SCRATCH: usize = 64 * 1024;

impl Worker {
    pub fn new(router: Arc<Router>, index: usize, registry: Registry) -> Worker {
        Worker {
            table: Cache::new(PublishedTable(Arc::clone(&router))),
            router,
            index,
            registry,
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            by_shard: (u64::MAX, Vec::new()),
            conns: Vec::new(),
            dirty: Vec::new(),
            unread: Vec::new(),
            pinned: Vec::new(),
            free: Vec::new(),
            tick: 0,
            retry: RetryQueue::default(),
            deliveries: Vec::new(),
            replies: Vec::new(),
            scratch: vec![0; SCRATCH].into_boxed_slice(),
            read_buffers: Vec::new(),
        }
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

    /// The node at `addr`, creating it (its connections connect on first use).
    pub fn node(&mut self, addr: &NodeAddr) -> usize {
        if let Some(&index) = self.by_addr.get(addr) {
            return index;
        }
        let shared = self.router.node_record(addr);
        let config = &self.router.config;
        let index = self.nodes.len();
        let per_node = config.backend.connections_per_node;
        let limits = config.limits;
        let mut make = |proto| -> Box<[usize]> {
            (0..per_node)
                .map(|_| {
                    let ci = self.conns.len();
                    let token = conn_token(ci);
                    self.conns
                        .push(Conn::new(shared.clone(), index, proto, token, limits));
                    ci
                })
                .collect()
        };
        let resp2 = make(Proto::Resp2);
        let resp3 = make(Proto::Resp3);
        self.nodes.push(Node {
            resp2,
            resp3,
            spare: Vec::new(),
            backoff: MIN_BACKOFF,
        });
        self.by_addr.insert(addr.clone(), index);
        index
    }

    /// The node that serves `target` in the current slot table: its shard's master.
    #[inline]
    pub fn target_node(&mut self, target: Target) -> Option<usize> {
        let table = self.table.load();
        let shard = match target {
            Target::Slot(slot) => table.shard_for(slot)?,
            Target::Any(n) => match table.shards().len() {
                0 => return None,
                len => n as usize % len,
            },
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

    /// Queue a request on one of the node's connections (chosen by its `conn_hint`);
    /// it is written at the end of this turn of the event loop.
    #[inline]
    pub fn send(&mut self, node: usize, req: BackendRequest) {
        if req.pinned {
            return self.send_pinned(node, req);
        }
        let node = &self.nodes[node];
        let conns = match req.proto {
            Proto::Resp2 => &node.resp2,
            Proto::Resp3 => &node.resp3,
        };
        let ci = conns[req.conn_hint as usize % conns.len()];
        self.conns[ci].queue.push_back(req);
        self.mark_dirty(ci);
    }

    /// Queue a request on a connection of its own to `node`, pinned to its client until
    /// the reply is in: a spare one, or a new one within `backend.max_pinned`.
    fn send_pinned(&mut self, node: usize, req: BackendRequest) {
        let place = req.reply.place();
        let owner = Owner::Pinned {
            session: place.session,
            client: place.client,
        };
        let spare = self.nodes[node]
            .spare
            .iter()
            .position(|&ci| self.conns[ci].proto == req.proto);
        let ci = match spare {
            Some(i) => self.nodes[node].spare.swap_remove(i),
            None => {
                let limit = self.router.config.backend.max_pinned;
                if METRICS.pinned_connections.load(Relaxed) >= limit as u64 {
                    tracing::warn!(limit, "a blocking command refused: every pinned connection is in use (backend.max_pinned)");
                    self.deliver(req.reply, Err(BackendError::TooManyPinned { limit }));
                    return;
                }
                METRICS.pinned_connections.fetch_add(1, Relaxed);
                let shared = self.nodes_shared(node);
                let limits = self.router.config.limits;
                let ci = self.free.pop().unwrap_or(self.conns.len());
                let conn = Conn::new(shared, node, req.proto, conn_token(ci), limits);
                if ci == self.conns.len() {
                    self.conns.push(conn);
                } else {
                    self.conns[ci] = conn;
                }
                ci
            }
        };
        self.conns[ci].owner = owner;
        self.pinned.push(ci);
        self.conns[ci].queue.push_back(req);
        self.mark_dirty(ci);
    }

    /// What all workers share about node `node` (through any of its connections).
    fn nodes_shared(&self, node: usize) -> Arc<NodeShared> {
        let ci = self.nodes[node].resp2[0];
        self.conns[ci].node.clone()
    }

    /// A pinned connection whose request is answered goes back to its node's spares
    /// (or is closed when there are enough).
    fn settle_pinned(&mut self, ci: usize) {
        if !matches!(self.conns[ci].owner, Owner::Pinned { .. }) || !self.conns[ci].is_quiet() {
            return;
        }
        if let Some(i) = self.pinned.iter().position(|&p| p == ci) {
            self.pinned.swap_remove(i);
        }
        let node = self.conns[ci].node_index;
        if self.nodes[node].spare.len() < SPARE_PER_NODE {
            self.conns[ci].owner = Owner::Spare;
            self.nodes[node].spare.push(ci);
        } else {
            self.retire(ci);
        }
    }

    /// Close a pinned connection for good and free its slot.
    fn retire(&mut self, ci: usize) {
        drop(self.conns[ci].close(&self.registry));
        self.conns[ci].owner = Owner::Spare;
        self.free.push(ci);
        METRICS.pinned_connections.fetch_sub(1, Relaxed);
    }

    /// The client of session `session` (client id `client`) is gone: close the
    /// connections pinned to it, so a command it is blocked in ends at the node and
    /// nothing is popped for a client that is gone.
    pub fn release_session(&mut self, session: usize, client: u64) {
        if self.pinned.is_empty() {
            return;
        }
        let owner = Owner::Pinned { session, client };
        let mine: Vec<usize> = self
            .pinned
            .iter()
            .copied()
            .filter(|&ci| self.conns[ci].owner == owner)
            .collect();
        for ci in mine {
            if let Some(i) = self.pinned.iter().position(|&p| p == ci) {
                self.pinned.swap_remove(i);
            }
            tracing::debug!(node = %self.conns[ci].addr(), client, "client left while blocked; closing its pinned connection");
            let in_flight = self.conns[ci].close(&self.registry);
            let queued: Vec<BackendRequest> = self.conns[ci].queue.drain(..).collect();
            // Their client is gone: the handles answer a place no one reads.
            drop(in_flight);
            drop(queued);
            self.retire(ci);
        }
    }

    #[inline]
    fn mark_dirty(&mut self, ci: usize) {
        if !self.conns[ci].dirty {
            self.conns[ci].dirty = true;
            self.dirty.push(ci);
        }
    }

    /// Write every connection that has something queued: once per turn of the loop, so
    /// the requests of many clients go out in one syscall.
    pub fn flush_conns(&mut self) {
        while let Some(ci) = self.dirty.pop() {
            self.conns[ci].dirty = false;
            match self.conns[ci].state {
                State::Idle => {
                    if !self.conns[ci].queue.is_empty() {
                        self.connect(ci);
                    }
                }
                State::Connecting => {}
                State::Handshaking | State::Ready => {
                    let tick = self.tick;
                    let conn = &mut self.conns[ci];
                    conn.take_queue(tick);
                    match conn.write_out() {
                        Ok(true) => self.count(|s| &s.backend_writes),
                        Ok(false) => {}
                        Err(e) => self.failed(ci, &e.to_string()),
                    }
                }
            }
        }
    }

    /// Start connecting, unless the node failed a connect moments ago (on any worker):
    /// then the queued requests fail at once and go to the retry queue.
    fn connect(&mut self, ci: usize) {
        let node = &self.conns[ci].node;
        if node.is_down() {
            let reason = format!(
                "{} (recently; waiting before reconnecting)",
                node.last_failure()
            );
            self.fail_queued(ci, &reason);
            return;
        }
        let tick = self.tick;
        if let Err(e) = self.conns[ci].start_connect(&self.registry, tick) {
            self.connect_failed(ci, &e.to_string());
        }
    }

    /// An event on connection `ci`.
    pub fn conn_event(&mut self, token: Token, readable: bool, writable: bool) {
        let ci = token.0 / 2;
        if ci >= self.conns.len() {
            return;
        }
        if self.conns[ci].state == State::Connecting {
            let handshake = Handshake::new(self.conns[ci].proto, &self.router.config.backend);
            let tick = self.tick;
            match self.conns[ci].finish_connect(handshake, tick) {
                Ok(false) => return,
                Ok(true) => {
                    Metrics::inc(&METRICS.backend_connects);
                    let conn = &self.conns[ci];
                    tracing::debug!(node = %conn.addr(), proto = ?conn.proto, "backend connected");
                    conn.node.mark_up();
                    let node = self.conns[ci].node_index;
                    self.nodes[node].backoff = MIN_BACKOFF;
                    self.mark_dirty(ci);
                }
                Err(e) => return self.connect_failed(ci, &e.to_string()),
            }
        }
        if writable {
            self.conns[ci].writable();
            self.mark_dirty(ci);
        }
        if readable {
            self.read_replies(ci);
        }
    }

    /// Some connection has more to read than its last turn took.
    pub fn has_unread(&self) -> bool {
        !self.unread.is_empty()
    }

    /// Read again the connections whose last read stopped at the per-turn limit.
    pub fn read_unread(&mut self) {
        for ci in std::mem::take(&mut self.unread) {
            if self.conns[ci].unread {
                self.read_replies(ci);
            }
        }
    }

    /// Read connection `ci` and hand each reply to the decision point, in order.
    fn read_replies(&mut self, ci: usize) {
        let tick = self.tick;
        let mut replies = std::mem::take(&mut self.replies);
        let outcome = self.conns[ci].read_in(&mut self.scratch, &mut replies, tick);
        if self.conns[ci].unread {
            self.unread.push(ci);
        }
        for (req, frame) in replies.drain(..) {
            self.complete(req, frame, ci);
        }
        self.replies = replies;
        match outcome {
            ReadOutcome::Open => {}
            ReadOutcome::HandshakeDone => self.mark_dirty(ci),
            ReadOutcome::HandshakeRefused(e) => self.connect_failed(ci, &e.to_string()),
            ReadOutcome::Failed(e) => self.failed(ci, &e.to_string()),
        }
        if self.conns[ci].owner != Owner::Shared {
            self.settle_pinned(ci);
        }
    }

    /// The socket failed. Before the handshake completed that is a failed connect (the
    /// node counts as down and is retried after a backoff, not at once); after, the
    /// connection was lost.
    fn failed(&mut self, ci: usize, reason: &str) {
        if self.conns[ci].state == State::Handshaking {
            self.connect_failed(ci, reason);
        } else {
            self.conn_lost(ci, reason);
        }
    }

    /// The announced address of connection `ci`'s node.
    pub fn conn_addr(&self, ci: usize) -> &NodeAddr {
        self.conns[ci].addr()
    }

    /// Connecting failed: the node counts as down for a while (every worker fails fast),
    /// and what was queued goes to the retry queue.
    fn connect_failed(&mut self, ci: usize, reason: &str) {
        Metrics::inc(&METRICS.backend_connect_failures);
        let node = self.conns[ci].node_index;
        let backoff = self.nodes[node].backoff;
        self.nodes[node].backoff = (backoff * 2).min(MAX_BACKOFF);
        let conn = &mut self.conns[ci];
        tracing::warn!(node = %conn.addr(), dial = %conn.node.dial, %reason, "backend connect failed");
        conn.node.mark_down(backoff, reason);
        // Only the handshake can be in flight while connecting.
        drop(conn.close(&self.registry));
        self.fail_queued(ci, reason);
        self.settle_pinned(ci);
    }

    /// Hand back everything queued as never sent.
    fn fail_queued(&mut self, ci: usize, reason: &str) {
        let conn = &mut self.conns[ci];
        let err = BackendError::Unreachable {
            addr: conn.addr().clone(),
            reason: reason.to_string(),
        };
        let queued: Vec<BackendRequest> = conn.queue.drain(..).collect();
        for req in queued {
            self.unsent(req, err.clone());
        }
    }

    /// The connection died: what was in flight gets an error (it may have run); what
    /// was queued goes out on the next connection.
    fn conn_lost(&mut self, ci: usize, reason: &str) {
        tracing::warn!(node = %self.conns[ci].addr(), %reason, "backend connection closed");
        let err = BackendError::Lost {
            addr: self.conns[ci].addr().clone(),
            reason: reason.to_string(),
        };
        if self.close_with(ci, err) > 0 {
            Metrics::inc(&METRICS.backend_connections_lost);
        }
        self.settle_pinned(ci);
    }

    /// Close connection `ci`: every request in flight gets `err` (it may have run); what
    /// is queued goes out on the next connection. Returns how many were in flight.
    fn close_with(&mut self, ci: usize, err: BackendError) -> usize {
        let in_flight = self.conns[ci].close(&self.registry);
        let count = in_flight.len();
        for req in in_flight {
            self.deliver(req.reply, Err(err.clone()));
        }
        if !self.conns[ci].queue.is_empty() {
            self.mark_dirty(ci);
        }
        count
    }

    /// The watchdog, once per tick: time out connections whose in-flight requests got no
    /// reply for the backend timeout, and connects that take too long.
    pub fn watchdog(&mut self) {
        self.tick += 1;
        let config = &self.router.config.backend;
        let tick_ms = WATCHDOG_TICK.as_millis();
        let limit = (config.timeout.as_millis() / tick_ms).max(1) as u64;
        let connect_limit = (config.connect_timeout.as_millis() / tick_ms).max(1) as u64;
        let connect_timeout = config.connect_timeout;
        for ci in 0..self.conns.len() {
            let conn = &self.conns[ci];
            let waited = self.tick.saturating_sub(conn.progress);
            match conn.state {
                State::Connecting | State::Handshaking if waited > connect_limit => {
                    let reason = format!("connect timed out after {connect_timeout:?}");
                    self.connect_failed(ci, &reason);
                }
                State::Ready => {
                    // The oldest request's own deadline, from when its turn came.
                    let allowed = match conn.front_deadline() {
                        None | Some(ReplyDeadline::Never) => continue,
                        Some(ReplyDeadline::Backend) => limit,
                        Some(ReplyDeadline::Extra(extra)) => {
                            limit + (extra.as_millis() / tick_ms) as u64
                        }
                    };
                    if waited <= allowed {
                        continue;
                    }
                    let addr = conn.addr().clone();
                    let millis = u128::from(allowed) * tick_ms;
                    tracing::warn!(node = %addr, millis, pinned = conn.owner != Owner::Shared, "backend reply overdue; closing the connection");
                    self.close_with(ci, BackendError::Timeout { addr, millis });
                    self.settle_pinned(ci);
                }
                _ => {}
            }
        }
    }
}
