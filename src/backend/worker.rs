//! A worker thread's view of the backends: its own connections to each node, found by
//! address or by shard index of the current slot table. Nothing here is shared with
//! other threads, so sending a request takes no lock and no atomic operation.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use super::connection::{self, Conn};
use super::BackendRequest;
use crate::cluster::table::SlotTable;
use crate::cluster::NodeAddr;
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
    /// Client sessions open on this worker.
    pub sessions_open: Cell<usize>,
}

impl Worker {
    pub fn new(router: Arc<Router>, index: usize) -> Rc<Worker> {
        Rc::new(Worker {
            router,
            index,
            nodes: RefCell::new(HashMap::new()),
            by_shard: RefCell::new((0, Vec::new())),
            sessions_open: Cell::new(0),
        })
    }

    /// The node at `addr`, creating it (and its idle connection tasks, which connect on
    /// first use) when it is new. Must run inside this worker's `LocalSet`.
    pub fn node(self: &Rc<Self>, addr: &NodeAddr) -> Rc<Node> {
        if let Some(node) = self.nodes.borrow().get(addr) {
            return node.clone();
        }
        let config = &self.router.config;
        let dial = config
            .address_map
            .get(addr)
            .cloned()
            .unwrap_or_else(|| addr.clone());
        let spawn = |proto| -> Box<[Rc<Conn>]> {
            (0..config.backend.connections_per_node)
                .map(|_| {
                    let conn = Rc::new(Conn::new(addr.clone()));
                    tokio::task::spawn_local(connection::run(
                        self.clone(),
                        conn.clone(),
                        dial.clone(),
                        proto,
                    ));
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
