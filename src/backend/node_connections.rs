//! A worker thread's connections to the cluster's nodes, and what its event loop does
//! with them: connect, flush once per turn, read replies, time out, fail, pin one to a
//! client. Nothing here knows about routing: the owner (`dispatch::Worker`) says which
//! node a request goes to, and the connections report back what happened — replies read
//! with their requests, requests never sent, requests failed — for it to decide on.
//! Nothing here is shared with other threads, so sending a request takes no lock and no
//! atomic operation.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mio::{Registry, Token};

use super::connection::{Conn, Owner, ReadOutcome, State};
use super::handshake::Handshake;
use super::{
    BackendError, BackendRequest, Hold, NodeShared, Place, Push, ReplyDeadline, ReplyTo, Target,
};
use crate::admin::{Metrics, METRICS};
use crate::clients::Unblock;
use crate::cluster::NodeAddr;
use crate::config::{BackendConfig, Config};
use crate::protocol::reply::{encode_command, Proto};
use crate::protocol::scan::Limits;

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
    /// Its connections carry reads to a replica: they open with `READONLY`, their
    /// replies are due within `replica_timeout_ms`, and what they had in flight when
    /// they fail is handed back to be sent again (to the master), not failed.
    readonly: bool,
}

/// Spare pinned connections a worker keeps per node; more are closed.
const SPARE_PER_NODE: usize = 8;

/// Size of a worker's read buffer: one read takes at most this much.
pub const SCRATCH: usize = 64 * 1024;

/// One worker thread's connections to every node it has met, shared by its clients or
/// pinned to one of them. Calls that may fail requests leave them in
/// [`NodeConnections::unsent`] and [`NodeConnections::failed`] for the owner to take.
pub struct NodeConnections {
    /// `backend` of the configuration: connections per node, pinned cap, timeouts,
    /// credentials for the handshake. A reload replaces it ([`NodeConnections::reconfigure`]).
    config: BackendConfig,
    /// `replica_timeout_ms`: the reply deadline of a read at a replica.
    replica_timeout: Duration,
    limits: Limits,
    registry: Registry,
    nodes: Vec<Node>,
    by_addr: HashMap<NodeAddr, usize>,
    /// The nodes for reads at replicas ([`NodeConnections::read_node`]), apart from
    /// `by_addr`'s: a node keeps both kinds of connection.
    by_addr_reads: HashMap<NodeAddr, usize>,
    conns: Vec<Conn>,
    /// Connections with something to write (or to connect) at the end of this turn.
    dirty: Vec<usize>,
    /// Connections whose last read stopped at the per-turn limit: read again next turn.
    unread: Vec<usize>,
    /// Pinned connections with an owner now.
    pinned: Vec<usize>,
    /// The connections held for each client's transaction, by (session key, client id):
    /// one per slot of the transaction (its lane, [`lane`]), each from the request that
    /// opens it ([`Hold::Open`]) to the one that releases it, or until it fails. Not
    /// returned to the spares meanwhile, however quiet.
    held: HashMap<(usize, u64), Vec<(u16, usize)>>,
    /// Slots of `conns` whose pinned connection was closed for good, for the next one.
    free: Vec<usize>,
    /// `CLIENT UNBLOCK`s under way: asked again at each watchdog tick while their
    /// request is still in flight ([`NodeConnections::unblock`]).
    unblocking: Vec<Unblocking>,
    /// Requests waiting for a pinned connection (a cap is reached), oldest first.
    waiters: Vec<PinWaiter>,
    /// Watchdog ticks since the worker started: a coarse clock that costs nothing to read.
    pub tick: u64,
    /// Requests that never reached their node (it could not be connected), with why:
    /// the owner decides whether they are retried. Kept between calls for its capacity.
    pub unsent: Vec<(BackendRequest, BackendError)>,
    /// Requests answered here with an error: in flight on a connection that died or
    /// timed out (they may have run), or refused a pinned connection.
    pub failed: Vec<(ReplyTo, BackendError)>,
    /// Push frames read on pinned connections, for their clients, in order.
    pub pushes: Vec<Push>,
    /// Frames read on subscriber connections (by connection), in order, for the owner's
    /// pub/sub hub.
    pub sub_frames: Vec<(usize, Bytes)>,
    /// Subscriber connections that failed (lost, or could not connect): the hub opens
    /// new ones where it needs them and closes these for good.
    pub sub_down: Vec<usize>,
    /// What every socket read of this worker lands in first.
    pub scratch: Box<[u8]>,
}

impl NodeConnections {
    pub fn new(config: &Config, registry: Registry) -> NodeConnections {
        NodeConnections {
            config: config.backend.clone(),
            replica_timeout: config.reads.replica_timeout,
            limits: config.limits,
            registry,
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            by_addr_reads: HashMap::new(),
            conns: Vec::new(),
            dirty: Vec::new(),
            unread: Vec::new(),
            pinned: Vec::new(),
            held: HashMap::new(),
            free: Vec::new(),
            unblocking: Vec::new(),
            waiters: Vec::new(),
            tick: 0,
            unsent: Vec::new(),
            failed: Vec::new(),
            pushes: Vec::new(),
            sub_frames: Vec::new(),
            sub_down: Vec::new(),
            scratch: vec![0; SCRATCH].into_boxed_slice(),
        }
    }

    /// A reload's configuration: caps, timeouts and credentials apply from the next
    /// check or connect; connections open stay. `connections_per_node` needs a restart
    /// (the connections of every node are made with the count), so it stays.
    #[cold]
    pub fn reconfigure(&mut self, config: &Config) {
        let per_node = self.config.connections_per_node;
        self.config = config.backend.clone();
        self.config.connections_per_node = per_node;
        self.limits = config.limits;
        self.replica_timeout = config.reads.replica_timeout;
    }

    /// `backend` of the configuration in force on this worker.
    pub fn config(&self) -> &BackendConfig {
        &self.config
    }

    /// Did the last calls leave requests for the owner in `unsent` or `failed`?
    #[inline]
    pub fn has_reports(&self) -> bool {
        !self.unsent.is_empty() || !self.failed.is_empty()
    }

    /// The node at `addr`, creating it with the registry's `record` of it (its
    /// connections connect on first use).
    pub fn node(&mut self, addr: &NodeAddr, record: impl FnOnce() -> Arc<NodeShared>) -> usize {
        if let Some(&index) = self.by_addr.get(addr) {
            return index;
        }
        let index = self.add_node(record(), false);
        self.by_addr.insert(addr.clone(), index);
        index
    }

    /// The node at `addr` as a replica serving reads: connections of its own, apart from
    /// [`NodeConnections::node`]'s, that send `READONLY` after the handshake, so a
    /// request meant for a master never lands on one of them and is served stale by a
    /// node that became a replica meanwhile (it gets `MOVED` instead).
    pub fn read_node(
        &mut self,
        addr: &NodeAddr,
        record: impl FnOnce() -> Arc<NodeShared>,
    ) -> usize {
        if let Some(&index) = self.by_addr_reads.get(addr) {
            return index;
        }
        let index = self.add_node(record(), true);
        self.by_addr_reads.insert(addr.clone(), index);
        index
    }

    /// A new node entry with its shared connections (not connected yet).
    fn add_node(&mut self, shared: Arc<NodeShared>, readonly: bool) -> usize {
        let index = self.nodes.len();
        let per_node = self.config.connections_per_node;
        let limits = self.limits;
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
            readonly,
        });
        index
    }

    /// What all workers share about node `node` (its address, down state, read health).
    pub fn node_shared(&self, node: usize) -> &Arc<NodeShared> {
        &self.conns[self.nodes[node].resp2[0]].node
    }

    /// Queue a request on one of the node's shared connections (chosen by its
    /// `conn_hint`); it is written at the end of this turn of the event loop.
    #[inline(always)]
    pub fn send(&mut self, node: usize, req: BackendRequest) {
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
    /// the reply is in: a spare one, or a new one within the caps (`backend.max_pinned`,
    /// `backend.max_pinned_per_node`). At a cap it waits for one to free, at most
    /// `backend.pinned_wait_ms` ([`NodeConnections::park`]); refused (its reply handle
    /// and why) when that wait is zero.
    pub fn send_pinned(
        &mut self,
        node: usize,
        req: BackendRequest,
    ) -> Result<(), (ReplyTo, BackendError)> {
        let place = req.reply.place();
        match self.pin(node, req.proto, place.session, place.client) {
            Ok(ci) => {
                self.queue_on(ci, req);
                Ok(())
            }
            Err(cap) => self.park(node, None, cap, req),
        }
    }

    /// Queue a request of a client's transaction on the connection held for it (see
    /// [`Hold`]): [`Hold::Open`] takes one to `node` (`None` for the other kinds, which
    /// go wherever the held one is, or wait behind the request that opens it while that
    /// one waits for a connection). Refused when no connection frees within
    /// `backend.pinned_wait_ms`, or when no connection is held for the client (it failed
    /// with an earlier request).
    pub fn send_held(
        &mut self,
        node: Option<usize>,
        req: BackendRequest,
    ) -> Result<(), (ReplyTo, BackendError)> {
        let place = req.reply.place();
        let key = (place.session, place.client);
        let lane = lane(req.target);
        let lanes = self.held.get(&key);
        let held = lanes
            .and_then(|l| l.iter().find(|e| e.0 == lane))
            .map(|e| e.1);
        let parked = (self.waiters.iter())
            .position(|w| w.lane == Some(lane) && (w.session, w.client) == key);
        let ci = match (req.hold, held, node) {
            (Hold::Open, Some(ci), Some(node)) if self.conns[ci].node_index == node => ci,
            (_, None, _) if parked.is_some() => {
                // Behind the request that opens the connection, which waits for one.
                if let Some(i) = parked {
                    self.waiters[i].reqs.push(req);
                }
                return Ok(());
            }
            (Hold::Open, _, Some(node)) => {
                match self.pin(node, req.proto, place.session, place.client) {
                    Ok(ci) => {
                        self.hold(key, lane, ci);
                        ci
                    }
                    Err(cap) => return self.park(node, Some(lane), cap, req),
                }
            }
            (Hold::On | Hold::Release, Some(ci), _) => ci,
            _ => return Err((req.reply, BackendError::HeldGone)),
        };
        if req.hold == Hold::Release {
            // Back to the spares once quiet (`settle_pinned`).
            self.unhold(key, |e| e.0 == lane);
        }
        self.queue_on(ci, req);
        Ok(())
    }

    /// Hold connection `ci` for lane `lane` of client `key`'s transaction.
    fn hold(&mut self, key: (usize, u64), lane: u16, ci: usize) {
        let lanes = self.held.entry(key).or_default();
        lanes.retain(|e| e.0 != lane);
        lanes.push((lane, ci));
    }

    /// `req` found every pinned connection it may use taken (`cap` says which cap): it
    /// waits for one to free, at most `backend.pinned_wait_ms` (the requests of its
    /// transaction lane after it wait behind it); refused now when that is zero.
    fn park(
        &mut self,
        node: usize,
        lane: Option<u16>,
        cap: Cap,
        req: BackendRequest,
    ) -> Result<(), (ReplyTo, BackendError)> {
        let wait = self.config.pinned_wait;
        if wait.is_zero() {
            return Err((req.reply, self.cap_error(node, cap)));
        }
        if self.waiters.is_empty() {
            tracing::info!(node = %self.conns[self.nodes[node].resp2[0]].addr(), ?cap, "a blocking command or transaction waits for a pinned connection (backend.max_pinned, backend.max_pinned_per_node)");
        }
        let place = req.reply.place();
        let ticks = wait.as_millis().div_ceil(WATCHDOG_TICK.as_millis()) as u64;
        METRICS.pinned_waiting.fetch_add(1, Relaxed);
        self.waiters.push(PinWaiter {
            node,
            proto: req.proto,
            session: place.session,
            client: place.client,
            lane,
            cap,
            until: self.tick + ticks.max(1),
            unblock: None,
            reqs: vec![req],
        });
        Ok(())
    }

    /// The error for a request that found `cap` reached at `node` (after waiting
    /// `backend.pinned_wait_ms`).
    fn cap_error(&self, node: usize, cap: Cap) -> BackendError {
        let waited_ms = self.config.pinned_wait.as_millis() as u64;
        match cap {
            Cap::Total => {
                let limit = self.config.max_pinned;
                tracing::warn!(limit, waited_ms, "a blocking command or transaction refused: every pinned connection is in use (backend.max_pinned)");
                BackendError::TooManyPinned { limit, waited_ms }
            }
            Cap::Node => {
                let limit = self.config.max_pinned_per_node;
                let addr = self.conns[self.nodes[node].resp2[0]].addr().clone();
                tracing::warn!(limit, %addr, waited_ms, "a blocking command or transaction refused: every pinned connection to its node is in use (backend.max_pinned_per_node)");
                BackendError::TooManyPinnedAt {
                    addr,
                    limit,
                    waited_ms,
                }
            }
        }
    }

    /// Give the requests waiting for a pinned connection the ones that are free now (a
    /// spare, or room under the caps), oldest first.
    fn serve_waiters(&mut self) {
        let mut i = 0;
        while i < self.waiters.len() {
            let w = &self.waiters[i];
            match self.pin(w.node, w.proto, w.session, w.client) {
                Ok(ci) => {
                    let waiter = self.waiters.remove(i);
                    self.grant(ci, waiter);
                }
                Err(_) => i += 1,
            }
        }
    }

    /// Pinned connection `ci` for `waiter`: its requests go out on it, in order.
    fn grant(&mut self, ci: usize, waiter: PinWaiter) {
        METRICS.pinned_waiting.fetch_sub(1, Relaxed);
        let key = (waiter.session, waiter.client);
        if let Some(lane) = waiter.lane {
            self.hold(key, lane, ci);
        }
        for req in waiter.reqs {
            if req.hold == Hold::Release {
                self.unhold(key, |e| Some(e.0) == waiter.lane);
            }
            self.queue_on(ci, req);
        }
        if let Some((seq, how)) = waiter.unblock {
            // `CLIENT UNBLOCK` came while it waited: asked once it is on its way.
            self.unblocking.push(Unblocking {
                ci,
                owner: self.conns[ci].owner,
                seq,
                how,
                asks: 0,
            });
        }
    }

    /// At each watchdog tick: requests that waited `backend.pinned_wait_ms` for a pinned
    /// connection fail; when any worker has some waiting, this one's idle spares are
    /// closed to make room.
    fn pinned_tick(&mut self) {
        if !self.waiters.is_empty() {
            self.serve_waiters();
            let tick = self.tick;
            let mut i = 0;
            while i < self.waiters.len() {
                if self.waiters[i].until > tick {
                    i += 1;
                    continue;
                }
                let waiter = self.waiters.remove(i);
                METRICS.pinned_waiting.fetch_sub(1, Relaxed);
                let err = self.cap_error(waiter.node, waiter.cap);
                for req in waiter.reqs {
                    self.failed.push((req.reply, err.clone()));
                }
            }
        }
        if METRICS.pinned_waiting.load(Relaxed) > 0 {
            for node in 0..self.nodes.len() {
                while let Some(idle) = self.nodes[node].spare.pop() {
                    self.retire(idle);
                }
            }
        }
    }

    /// A connection of its own to `node` for the client of session `session` (client
    /// id `client`): a spare one, or a new one within the caps (an idle spare of this
    /// worker is closed to make room); which cap is reached, when none can be had.
    fn pin(
        &mut self,
        node: usize,
        proto: Proto,
        session: usize,
        client: u64,
    ) -> Result<usize, Cap> {
        let spare = self.nodes[node]
            .spare
            .iter()
            .position(|&ci| self.conns[ci].proto == proto);
        let ci = match spare {
            Some(i) => self.nodes[node].spare.swap_remove(i),
            None => {
                let shared = self.nodes_shared(node);
                if let Err(cap) = self.reserve_pinned(&shared) {
                    // An idle spare makes room: to any node for the total, to this one
                    // (in the other protocol) for its own cap.
                    let idle = match cap {
                        Cap::Total => self.nodes.iter_mut().find_map(|n| n.spare.pop()),
                        Cap::Node => self.nodes[node].spare.pop(),
                    };
                    let Some(idle) = idle else {
                        return Err(cap);
                    };
                    self.retire(idle);
                    self.reserve_pinned(&shared)?;
                }
                let limits = self.limits;
                let ci = self.free.pop().unwrap_or(self.conns.len());
                let conn = Conn::new(shared, node, proto, conn_token(ci), limits);
                if ci == self.conns.len() {
                    self.conns.push(conn);
                } else {
                    self.conns[ci] = conn;
                }
                ci
            }
        };
        self.conns[ci].owner = Owner::Pinned { session, client };
        self.pinned.push(ci);
        Ok(ci)
    }

    /// Count one more pinned connection, in all and to `node`, if both caps allow.
    fn reserve_pinned(&self, node: &NodeShared) -> Result<(), Cap> {
        let under = |limit: usize| move |n: u64| (n < limit as u64).then_some(n + 1);
        let total = &METRICS.pinned_connections;
        if total
            .fetch_update(Relaxed, Relaxed, under(self.config.max_pinned))
            .is_err()
        {
            return Err(Cap::Total);
        }
        if (node.pinned)
            .fetch_update(Relaxed, Relaxed, under(self.config.max_pinned_per_node))
            .is_err()
        {
            total.fetch_sub(1, Relaxed);
            return Err(Cap::Node);
        }
        Ok(())
    }

    fn queue_on(&mut self, ci: usize, req: BackendRequest) {
        self.conns[ci].queue.push_back(req);
        self.mark_dirty(ci);
    }

    /// Open a subscriber connection to `node` for the worker's pub/sub hub (RESP2: it
    /// only subscribes). It connects once [`NodeConnections::subscriber_write`] gives
    /// it a command. Counted in `subscriber_connections`, not against
    /// `backend.max_pinned`: a worker needs at most one per node, whatever the number
    /// of subscribed clients.
    pub fn open_subscriber(&mut self, node: usize) -> usize {
        METRICS.subscriber_connections.fetch_add(1, Relaxed);
        let shared = self.nodes_shared(node);
        let ci = self.free.pop().unwrap_or(self.conns.len());
        let mut conn = Conn::new(shared, node, Proto::Resp2, conn_token(ci), self.limits);
        conn.owner = Owner::Subscriber;
        if ci == self.conns.len() {
            self.conns.push(conn);
        } else {
            self.conns[ci] = conn;
        }
        ci
    }

    /// Queue `command` (RESP) on subscriber connection `ci`; written at the end of this
    /// turn, or once the connection is ready.
    pub fn subscriber_write(&mut self, ci: usize, command: &[u8]) {
        self.conns[ci].commands.extend_from_slice(command);
        self.mark_dirty(ci);
    }

    /// Close subscriber connection `ci` for good and free its slot.
    pub fn close_subscriber(&mut self, ci: usize) {
        if self.conns[ci].owner != Owner::Subscriber {
            return;
        }
        drop(self.conns[ci].close(&self.registry));
        self.conns[ci].owner = Owner::Spare;
        self.free.push(ci);
        METRICS.subscriber_connections.fetch_sub(1, Relaxed);
    }

    /// Node `node` failed a connect moments ago (on any worker).
    pub fn node_is_down(&self, node: usize) -> bool {
        self.conns[self.nodes[node].resp2[0]].node.is_down()
    }

    /// A subscriber connection failed: reported to the hub (once per failure).
    fn subscriber_down(&mut self, ci: usize) {
        if self.conns[ci].owner == Owner::Subscriber {
            self.conns[ci].commands.clear();
            self.sub_down.push(ci);
        }
    }

    /// What all workers share about node `node` (through any of its connections).
    fn nodes_shared(&self, node: usize) -> Arc<NodeShared> {
        let ci = self.nodes[node].resp2[0];
        self.conns[ci].node.clone()
    }

    /// A pinned connection whose request is answered goes back to its node's spares
    /// (or is closed when there are enough), unless a transaction holds it.
    fn settle_pinned(&mut self, ci: usize) {
        let Owner::Pinned { session, client } = self.conns[ci].owner else {
            return;
        };
        if !self.conns[ci].is_quiet() || self.is_held(session, client, ci) {
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
        if !self.waiters.is_empty() {
            self.serve_waiters();
        }
    }

    /// Connection `ci` is held for a transaction of the client of session `session`.
    fn is_held(&self, session: usize, client: u64, ci: usize) -> bool {
        self.held
            .get(&(session, client))
            .is_some_and(|lanes| lanes.iter().any(|e| e.1 == ci))
    }

    /// Forget the held connections of client `key` that `which` names.
    fn unhold(&mut self, key: (usize, u64), which: impl Fn(&(u16, usize)) -> bool) {
        if let Some(lanes) = self.held.get_mut(&key) {
            lanes.retain(|e| !which(e));
            if lanes.is_empty() {
                self.held.remove(&key);
            }
        }
    }

    /// Close a pinned connection for good and free its slot.
    fn retire(&mut self, ci: usize) {
        drop(self.conns[ci].close(&self.registry));
        self.conns[ci].owner = Owner::Spare;
        self.free.push(ci);
        METRICS.pinned_connections.fetch_sub(1, Relaxed);
        self.conns[ci].node.pinned.fetch_sub(1, Relaxed);
    }

    /// The client of session `session` (client id `client`) is gone: close the
    /// connections pinned to it, so a command it is blocked in ends at the node and
    /// nothing is popped for a client that is gone.
    pub fn release_session(&mut self, session: usize, client: u64) {
        if !self.waiters.is_empty() {
            // Its requests waiting for a connection: their client is gone.
            let before = self.waiters.len();
            self.waiters
                .retain(|w| (w.session, w.client) != (session, client));
            let gone = before - self.waiters.len();
            METRICS.pinned_waiting.fetch_sub(gone as u64, Relaxed);
        }
        if self.pinned.is_empty() {
            return;
        }
        self.held.remove(&(session, client));
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
            tracing::debug!(node = %self.conns[ci].addr(), client, "client left while blocked or in a transaction; closing its pinned connection");
            let in_flight = self.conns[ci].close(&self.registry);
            let queued: Vec<BackendRequest> = self.conns[ci].queue.drain(..).collect();
            // Their client is gone: the handles answer a place no one reads.
            drop(in_flight);
            drop(queued);
            self.retire(ci);
        }
        if !self.waiters.is_empty() {
            self.serve_waiters();
        }
    }

    /// `CLIENT UNBLOCK` of the client of session `session` (client id `client`), blocked
    /// in the request at place sequence number `seq`: the node of each connection pinned
    /// to it that carries that request is asked to unblock the connection's own client
    /// there, as `how` says, so the node answers the request (nothing is popped for a
    /// client that does not get it). Asked again at each watchdog tick, a few times,
    /// while the request is still on its way: its connection may still be connecting
    /// (its node id unknown), or the request not yet blocking when the ask arrived.
    pub fn unblock(&mut self, session: usize, client: u64, seq: u64, how: Unblock) {
        let owner = Owner::Pinned { session, client };
        for waiter in self.waiters.iter_mut() {
            let carries = waiter.reqs.iter().any(|r| r.reply.place().seq == seq);
            if (waiter.session, waiter.client) == (session, client) && carries {
                waiter.unblock = Some((seq, how));
            }
        }
        let mine: Vec<usize> = (self.pinned.iter().copied())
            .filter(|&ci| self.conns[ci].owner == owner && self.conns[ci].carries(seq))
            .collect();
        for ci in mine {
            let mut entry = Unblocking {
                ci,
                owner,
                seq,
                how,
                asks: 0,
            };
            self.ask_unblock(&mut entry);
            self.unblocking.push(entry);
        }
    }

    /// Ask for `entry`'s unblock at the node, once the request is written and the node's
    /// id of the connection known. The ask goes on a shared connection to that node
    /// only (never retried elsewhere: the id means nothing at another node); its reply
    /// goes to no session.
    fn ask_unblock(&mut self, entry: &mut Unblocking) {
        let conn = &self.conns[entry.ci];
        let Some(id) = conn.node_client_id.filter(|_| conn.awaits(entry.seq)) else {
            return;
        };
        entry.asks += 1;
        let node = conn.node_index;
        let id = id.to_string();
        let bytes = encode_command(&[
            b"CLIENT",
            b"UNBLOCK",
            id.as_bytes(),
            entry.how.word().as_bytes(),
        ])
        .freeze();
        let nowhere = Place {
            session: usize::MAX,
            client: 0,
            seq: 0,
            part: Place::WHOLE,
        };
        let mut req = BackendRequest::new(
            bytes,
            Target::Any(0),
            Proto::Resp2,
            0,
            ReplyTo::new(nowhere),
        );
        // Not retried, not redirected: like a transaction's request.
        req.hold = Hold::On;
        self.send(node, req);
    }

    /// At each watchdog tick: the unblocks whose request is still on its way are asked
    /// again, at most [`UNBLOCK_ASKS`] times.
    fn unblock_again(&mut self) {
        let mut entries = std::mem::take(&mut self.unblocking);
        entries.retain_mut(|entry| {
            let conn = &self.conns[entry.ci];
            if conn.owner != entry.owner || !conn.carries(entry.seq) || entry.asks >= UNBLOCK_ASKS {
                return false;
            }
            self.ask_unblock(entry);
            true
        });
        self.unblocking.append(&mut entries);
    }

    #[inline]
    fn mark_dirty(&mut self, ci: usize) {
        if !self.conns[ci].dirty {
            self.conns[ci].dirty = true;
            self.dirty.push(ci);
        }
    }

    /// Write every connection that has something queued: once per turn of the loop, so
    /// the requests of many clients go out in one syscall. Returns how many writes it
    /// made.
    pub fn flush(&mut self) -> u64 {
        let mut writes = 0;
        while let Some(ci) = self.dirty.pop() {
            self.conns[ci].dirty = false;
            match self.conns[ci].state {
                State::Idle => {
                    if !self.conns[ci].queue.is_empty() || !self.conns[ci].commands.is_empty() {
                        self.connect(ci);
                    }
                }
                State::Connecting => {}
                State::Handshaking | State::Ready => {
                    let tick = self.tick;
                    let conn = &mut self.conns[ci];
                    conn.take_queue(tick);
                    match conn.write_out() {
                        Ok(true) => writes += 1,
                        Ok(false) => {}
                        Err(e) => self.socket_failed(ci, &e.to_string()),
                    }
                }
            }
        }
        writes
    }

    /// Start connecting, unless the node failed a connect moments ago (on any worker):
    /// then the queued requests fail at once, reported as never sent, and a pinned
    /// connection is given back as after a failed connect (else each retry of a blocking
    /// command or transaction for a dead node kept one more pinned to its client, until
    /// `backend.max_pinned` refused everyone's).
    fn connect(&mut self, ci: usize) {
        let node = &self.conns[ci].node;
        if node.is_down() {
            let reason = format!(
                "{} (recently; waiting before reconnecting)",
                node.last_failure()
            );
            self.fail_queued(ci, &reason);
            self.drop_hold(ci);
            self.settle_pinned(ci);
            return;
        }
        let tick = self.tick;
        let tls = self.config.tls.as_ref();
        if let Err(e) = self.conns[ci].start_connect(&self.registry, tick, tls) {
            self.connect_failed(ci, &e.to_string());
        }
    }

    /// An event on the connection of `token`. Returns the connection when it may be
    /// read ([`NodeConnections::read`]): it is connected or connecting no more.
    pub fn event(&mut self, token: Token, writable: bool) -> Option<usize> {
        let ci = token.0 / 2;
        if ci >= self.conns.len() {
            return None;
        }
        if self.conns[ci].state == State::Connecting {
            let readonly = self.nodes[self.conns[ci].node_index].readonly;
            let handshake = Handshake::new(self.conns[ci].proto, &self.config).readonly(readonly);
            let tick = self.tick;
            match self.conns[ci].finish_connect(handshake, tick) {
                Ok(false) => return None,
                Ok(true) => {
                    Metrics::inc(&METRICS.backend_connects);
                    let conn = &self.conns[ci];
                    tracing::debug!(node = %conn.addr(), proto = ?conn.proto, "backend connected");
                    conn.node.mark_up();
                    let node = self.conns[ci].node_index;
                    self.nodes[node].backoff = MIN_BACKOFF;
                    self.mark_dirty(ci);
                }
                Err(e) => {
                    self.connect_failed(ci, &e.to_string());
                    return None;
                }
            }
        }
        if writable {
            self.conns[ci].writable();
            self.mark_dirty(ci);
        }
        Some(ci)
    }

    /// Shared connections connected now (the admin port's gauge; once per tick).
    pub fn open_shared(&self) -> usize {
        (self.conns.iter())
            .filter(|c| c.owner == Owner::Shared && c.state == State::Ready)
            .count()
    }

    /// Some connection has more to read than its last turn took.
    pub fn has_unread(&self) -> bool {
        !self.unread.is_empty()
    }

    /// The connections whose last read stopped at the per-turn limit, to read again;
    /// [`NodeConnections::is_unread`] says whether one still needs it.
    pub fn take_unread(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.unread)
    }

    /// Connection `ci` stopped its last read at the per-turn limit.
    pub fn is_unread(&self, ci: usize) -> bool {
        self.conns[ci].unread
    }

    /// Read connection `ci`: every complete reply goes to `replies` with its request, in
    /// order. The caller hands them on, then gives the outcome to
    /// [`NodeConnections::finish_read`], so what a reply starts happens before what the
    /// connection's failure does.
    #[inline]
    pub fn read(&mut self, ci: usize, replies: &mut Vec<(BackendRequest, Bytes)>) -> ReadOutcome {
        let tick = self.tick;
        let conn = &mut self.conns[ci];
        let outcome = conn.read_in(&mut self.scratch, replies, tick);
        if conn.unread {
            self.unread.push(ci);
        }
        if !conn.pushed.is_empty() {
            match conn.owner {
                Owner::Pinned { session, client } => {
                    let frames = conn.pushed.drain(..);
                    self.pushes.extend(frames.map(|frame| Push {
                        session,
                        client,
                        frame,
                    }));
                }
                Owner::Subscriber => {
                    self.sub_frames
                        .extend(conn.pushed.drain(..).map(|frame| (ci, frame)));
                }
                Owner::Shared | Owner::Spare => {}
            }
        }
        outcome
    }

    /// What a read of connection `ci` ended with: the handshake done or refused, the
    /// socket failed; a pinned connection whose request is answered is set free.
    #[inline]
    pub fn finish_read(&mut self, ci: usize, outcome: ReadOutcome) {
        match outcome {
            ReadOutcome::Open => {}
            ReadOutcome::HandshakeDone => self.mark_dirty(ci),
            ReadOutcome::HandshakeRefused(e) => self.connect_failed(ci, &e.to_string()),
            ReadOutcome::Failed(e) => self.socket_failed(ci, &e.to_string()),
        }
        if self.conns[ci].owner != Owner::Shared {
            self.settle_pinned(ci);
        }
    }

    /// The socket failed. Before the handshake completed that is a failed connect (the
    /// node counts as down and is retried after a backoff, not at once); after, the
    /// connection was lost.
    fn socket_failed(&mut self, ci: usize, reason: &str) {
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

    /// The node connection `ci` goes to.
    pub fn conn_node(&self, ci: usize) -> usize {
        self.conns[ci].node_index
    }

    /// Connecting failed: the node counts as down for a while (every worker fails fast),
    /// and what was queued is reported as never sent.
    fn connect_failed(&mut self, ci: usize, reason: &str) {
        Metrics::inc(&METRICS.backend_connect_failures);
        let node = self.conns[ci].node_index;
        let backoff = self.nodes[node].backoff;
        self.nodes[node].backoff = (backoff * 2).min(MAX_BACKOFF);
        let conn = &mut self.conns[ci];
        // The client's error names the announced address; say where it was dialled.
        let mapped;
        let dial = conn.node.dial();
        let reason = if *dial != conn.node.addr {
            mapped = format!("{reason} (dialled {dial}, its [address_map] entry)");
            &mapped
        } else {
            reason
        };
        tracing::warn!(node = %conn.addr(), dial = %dial, %reason, "backend connect failed");
        conn.node.mark_down(backoff, reason);
        // Only the handshake can be in flight while connecting.
        drop(conn.close(&self.registry));
        self.fail_queued(ci, reason);
        self.drop_hold(ci);
        self.settle_pinned(ci);
    }

    /// Hand back everything queued as never sent.
    fn fail_queued(&mut self, ci: usize, reason: &str) {
        let conn = &mut self.conns[ci];
        let err = BackendError::Unreachable {
            addr: conn.addr().clone(),
            reason: reason.to_string(),
        };
        for req in conn.queue.drain(..) {
            self.unsent.push((req, err.clone()));
        }
        self.subscriber_down(ci);
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
        self.subscriber_down(ci);
        self.settle_pinned(ci);
    }

    /// Close connection `ci`: every request in flight gets `err` (it may have run); what
    /// is queued goes out on the next connection. Returns how many were in flight.
    fn close_with(&mut self, ci: usize, err: BackendError) -> usize {
        let in_flight = self.conns[ci].close(&self.registry);
        let count = in_flight.len();
        if self.nodes[self.conns[ci].node_index].readonly {
            // Reads at a replica: safe to send again, and the owner sends them to the
            // master rather than fail them.
            for req in in_flight {
                self.unsent.push((req, err.clone()));
            }
        } else {
            for req in in_flight {
                self.failed.push((req.reply, err.clone()));
            }
        }
        if self.conns[ci].owner != Owner::Shared {
            self.drop_hold(ci);
        }
        if !self.conns[ci].queue.is_empty() {
            self.mark_dirty(ci);
        }
        count
    }

    /// Connection `ci` was closed (lost, timed out, or it could not connect): a
    /// transaction's state at the node went with it, so no transaction holds it any
    /// more, and the transaction requests queued for it fail rather than go out on a new
    /// connection that has none of that state.
    fn drop_hold(&mut self, ci: usize) {
        let Owner::Pinned { session, client } = self.conns[ci].owner else {
            return;
        };
        self.unhold((session, client), |e| e.1 == ci);
        if self.conns[ci]
            .queue
            .iter()
            .any(BackendRequest::in_transaction)
        {
            let queue = std::mem::take(&mut self.conns[ci].queue);
            for req in queue {
                if req.in_transaction() {
                    self.failed.push((req.reply, BackendError::HeldGone));
                } else {
                    self.conns[ci].queue.push_back(req);
                }
            }
        }
    }

    /// The watchdog, once per tick: time out connections whose in-flight requests got no
    /// reply for the backend timeout, and connects that take too long.
    pub fn watchdog(&mut self) {
        self.tick += 1;
        if !self.unblocking.is_empty() {
            self.unblock_again();
        }
        if !self.waiters.is_empty() || METRICS.pinned_waiting.load(Relaxed) > 0 {
            self.pinned_tick();
        }
        let config = &self.config;
        let tick_ms = WATCHDOG_TICK.as_millis();
        let limit = (config.timeout.as_millis() / tick_ms).max(1) as u64;
        let connect_limit = (config.connect_timeout.as_millis() / tick_ms).max(1) as u64;
        let connect_timeout = config.connect_timeout;
        let replica_limit = (self.replica_timeout.as_millis() / tick_ms).max(1) as u64;
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
                        Some(ReplyDeadline::Backend) if self.nodes[conn.node_index].readonly => {
                            replica_limit
                        }
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
                    if self.nodes[conn.node_index].readonly {
                        // No more reads there until the replica poller finds it well.
                        conn.node.reads.set_unfit(true);
                    }
                    self.close_with(ci, BackendError::Timeout { addr, millis });
                    self.settle_pinned(ci);
                }
                _ => {}
            }
        }
    }
}

/// Which cap a request needing a new pinned connection found reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cap {
    /// `backend.max_pinned`.
    Total,
    /// `backend.max_pinned_per_node`.
    Node,
}

/// Requests waiting for a pinned connection to `node`: a blocking command, or the
/// request that opens a transaction's connection (`lane`) with the requests of that
/// lane after it.
struct PinWaiter {
    node: usize,
    proto: Proto,
    session: usize,
    client: u64,
    lane: Option<u16>,
    /// The cap it found reached (for its error, if none frees).
    cap: Cap,
    /// The watchdog tick at which it stops waiting.
    until: u64,
    /// `CLIENT UNBLOCK` of its client came meanwhile (for the request at this place).
    unblock: Option<(u64, Unblock)>,
    reqs: Vec<BackendRequest>,
}

/// The most times a `CLIENT UNBLOCK` is asked at the node for one request (once, then
/// at each watchdog tick while the request is still on its way).
const UNBLOCK_ASKS: u32 = 10;

/// A `CLIENT UNBLOCK` under way on pinned connection `ci` (while `owner` owns it and it
/// carries the request at `seq`).
struct Unblocking {
    ci: usize,
    owner: Owner,
    seq: u64,
    how: Unblock,
    /// Times asked at the node so far.
    asks: u32,
}

/// Which of a client's held connections a transaction request goes on: one per slot
/// (a transaction over several slots runs one `MULTI`/`EXEC` per slot), one for a
/// transaction with no key at all.
fn lane(target: Target) -> u16 {
    match target {
        Target::Slot(slot) => slot.get(),
        Target::Any(_) | Target::Shard(_) | Target::Replica(..) => u16::MAX,
    }
}
