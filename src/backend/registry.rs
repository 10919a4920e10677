//! The node registry: announced node address → [`Node`], shared by every session.

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::mpsc;

use super::{connection, BackendError, BackendRequest};
use crate::cluster::NodeAddr;
use crate::dispatch::Router;
use crate::protocol::reply::Proto;

/// One cluster node: its shared, multiplexed connections, RESP2 and RESP3 kept apart so
/// replies pass through byte-for-byte in the client's protocol.
pub struct Node {
    /// The address the cluster announces (the registry key).
    pub addr: NodeAddr,
    /// Senders to the connection tasks. Sessions and the router send; each task
    /// receives and ends when the node is dropped from the registry.
    resp2: Box<[mpsc::UnboundedSender<BackendRequest>]>,
    resp3: Box<[mpsc::UnboundedSender<BackendRequest>]>,
}

impl Node {
    /// Queue a request on one of this node's connections (chosen by its `conn_hint`).
    pub fn send(&self, req: BackendRequest) {
        let conns = match req.proto {
            Proto::Resp2 => &self.resp2,
            Proto::Resp3 => &self.resp3,
        };
        let conn = &conns[req.conn_hint as usize % conns.len()];
        if let Err(mpsc::error::SendError(req)) = conn.send(req) {
            req.reply.send(Err(BackendError::Lost {
                addr: self.addr.clone(),
                reason: "connection task ended".into(),
            }));
        }
    }
}

#[derive(Default)]
pub struct NodeRegistry {
    nodes: DashMap<NodeAddr, Arc<Node>>,
}

impl NodeRegistry {
    pub fn get(&self, addr: &NodeAddr) -> Option<Arc<Node>> {
        self.nodes.get(addr).map(|n| n.clone())
    }

    /// The node at `addr`, creating it (and its idle connection tasks, which connect on
    /// first use) when it is new.
    pub fn get_or_create(&self, addr: &NodeAddr, router: &Arc<Router>) -> Arc<Node> {
        if let Some(node) = self.nodes.get(addr) {
            return node.clone();
        }
        self.nodes
            .entry(addr.clone())
            .or_insert_with(|| {
                let dial = router
                    .config
                    .address_map
                    .get(addr)
                    .cloned()
                    .unwrap_or_else(|| addr.clone());
                let n = router.config.backend.connections_per_node;
                let spawn = |proto| -> Box<[_]> {
                    (0..n)
                        .map(|_| {
                            let (tx, rx) = mpsc::unbounded_channel();
                            tokio::spawn(connection::run(
                                router.clone(),
                                addr.clone(),
                                dial.clone(),
                                proto,
                                rx,
                            ));
                            tx
                        })
                        .collect()
                };
                Arc::new(Node {
                    addr: addr.clone(),
                    resp2: spawn(Proto::Resp2),
                    resp3: spawn(Proto::Resp3),
                })
            })
            .clone()
    }
}
