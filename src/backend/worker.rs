//! A worker thread's view of the backends: its own connections to each node, found by
//! address or by shard index of the current slot table. Nothing here is shared with
//! other threads, so sending a request takes no lock and no atomic operation.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;

use super::connection::{self, Conn};
use super::{BackendRequest, ReplyQueue};
use crate::cluster::table::SlotTable;
use crate::cluster::NodeAddr;
use crate::dispatch::retry::RetryQueue;
use crate::dispatch::Router;
use crate::protocol::reply::Proto;

/// One cluster node as one worker reaches it: RESP2 and RESP3 connections kept apart
/// so replies pass through byte-for-byte in the client's protocol.
pub struct Node {
    /// The address the cluster announces.
    pub addr: NodeAddr,
    resp2: Box<[Rc<Conn>]>,
    resp3: Box<[Rc<Conn>]>,
}

impl Node {
    /// Queue a request on one of this node's connections (chosen by its `conn_hint`).
    pub fn send(&self, req: BackendRequest) {
        let conns = match req.proto {
            Proto::Resp2 => &self.resp2,
            Proto::Resp3 => &self.resp3,
        };
        conns[req.conn_hint as usize % conns.len()].push(req);
    }
}

/// Per-thread state: the shared router plus this thread's node connections.
pub struct Worker {
    pub router: Arc<Router>,
    /// Position among the worker threads (for per-worker counters).
    pub index: usize,
    nodes: RefCell<HashMap<NodeAddr, Rc<Node>>>,
    /// Shard index → node, for the table of `generation`.
    by_shard: RefCell<(u64, Vec<Rc<Node>>)>,
    /// Reply queues of the sessions open on this worker (by client id), so shutdown
    /// can reach them without every session polling a shared signal.
    sessions: RefCell<HashMap<u64, Rc<ReplyQueue>>>,
    stopping: Cell<bool>,
    /// Every connection of this worker, for the watchdog.
    conns: RefCell<Vec<Rc<Conn>>>,
    /// Watchdog ticks since the worker started: a coarse clock that costs nothing to read.
    tick: Cell<u64>,
    /// Requests waiting to be sent again, in order.
    pub retry: RetryQueue,
    /// Emptied client read buffers, kept for the next read on this worker so an idle
    /// client holds none and a busy one does not allocate per read.
    read_buffers: RefCell<Vec<BytesMut>>,
}

/// Read buffers a worker keeps at most.
const KEEP_READ_BUFFERS: usize = 64;

/// How often the watchdog looks for connections whose replies are overdue.
const WATCHDOG_TICK: Duration = Duration::from_millis(100);

impl Worker {
    pub fn new(router: Arc<Router>, index: usize) -> Rc<Worker> {
        Rc::new(Worker {
            router,
            index,
            nodes: RefCell::new(HashMap::new()),
            by_shard: RefCell::new((0, Vec::new())),
            sessions: RefCell::new(HashMap::new()),
            stopping: Cell::new(false),
            conns: RefCell::new(Vec::new()),
            tick: Cell::new(0),
            retry: RetryQueue::default(),
            read_buffers: RefCell::new(Vec::new()),
        })
    }

    /// A read buffer for a client, from the worker's spares when it has one.
    pub fn take_read_buffer(&self) -> BytesMut {
        self.read_buffers.borrow_mut().pop().unwrap_or_default()
    }

    /// Give back an empty read buffer. A buffer whose memory is still shared with requests
    /// in flight reclaims it once they complete; a big one is dropped.
    pub fn give_read_buffer(&self, buf: BytesMut) {
        let mut spares = self.read_buffers.borrow_mut();
        if buf.capacity() > 0 && buf.capacity() <= 4 * 16 * 1024 && spares.len() < KEEP_READ_BUFFERS
        {
            spares.push(buf);
        }
    }

    pub fn tick(&self) -> u64 {
        self.tick.get()
    }

    /// Times out connections whose in-flight requests got no reply for the backend
    /// timeout. Runs for the life of the worker (spawn it on the worker's `LocalSet`).
    pub async fn watchdog(self: Rc<Self>) {
        let limit = self.router.config.backend.timeout.as_millis() / WATCHDOG_TICK.as_millis();
        let limit = limit.max(1) as u64;
        let mut ticker = tokio::time::interval(WATCHDOG_TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let now = self.tick.get() + 1;
            self.tick.set(now);
            for conn in self.conns.borrow().iter() {
                conn.check_timeout(now, limit);
            }
        }
    }

    /// Track a session's reply queue until [`Worker::session_closed`].
    pub fn session_opened(&self, id: u64, queue: Rc<ReplyQueue>) {
        if self.stopping.get() {
            queue.request_stop();
        }
        self.sessions.borrow_mut().insert(id, queue);
    }

    pub fn session_closed(&self, id: u64) {
        self.sessions.borrow_mut().remove(&id);
    }

    pub fn sessions_open(&self) -> usize {
        self.sessions.borrow().len()
    }

    /// Shutdown: every session stops reading and ends once its replies are written.
    pub fn stop_sessions(&self) {
        self.stopping.set(true);
        let queues: Vec<Rc<ReplyQueue>> = self.sessions.borrow().values().cloned().collect();
        for queue in queues {
            queue.request_stop();
        }
    }

    /// The node at `addr`, creating it (and its idle connection tasks, which connect on
    /// first use) when it is new. Must run inside this worker's `LocalSet`.
    pub fn node(self: &Rc<Self>, addr: &NodeAddr) -> Rc<Node> {
        if let Some(node) = self.nodes.borrow().get(addr) {
            return node.clone();
        }
        let config = &self.router.config;
        let shared = self.router.registry.get_or_insert(addr, || {
            config
                .address_map
                .get(addr)
                .cloned()
                .unwrap_or_else(|| addr.clone())
        });
        let spawn = |proto| -> Box<[Rc<Conn>]> {
            (0..config.backend.connections_per_node)
                .map(|_| {
                    let conn = Rc::new(Conn::new(shared.clone()));
                    self.conns.borrow_mut().push(conn.clone());
                    tokio::task::spawn_local(connection::run(self.clone(), conn.clone(), proto));
                    conn
                })
                .collect()
        };
        let node = Rc::new(Node {
            addr: addr.clone(),
            resp2: spawn(Proto::Resp2),
            resp3: spawn(Proto::Resp3),
        });
        self.nodes.borrow_mut().insert(addr.clone(), node.clone());
        node
    }

    /// The master node of shard `index` in `table`.
    #[inline]
    pub fn shard_node(self: &Rc<Self>, table: &SlotTable, index: usize) -> Option<Rc<Node>> {
        {
            let cache = self.by_shard.borrow();
            if cache.0 == table.generation() {
                return cache.1.get(index).cloned();
            }
        }
        let nodes: Vec<Rc<Node>> = table
            .shards()
            .iter()
            .map(|s| self.node(&s.master))
            .collect();
        let node = nodes.get(index).cloned();
        *self.by_shard.borrow_mut() = (table.generation(), nodes);
        node
    }
}
