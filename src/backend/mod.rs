//! Backend side: one task owns each node socket ([`connection`]); nodes and their
//! connections are found through the [`registry`]. Requests travel to a connection task
//! as [`BackendRequest`]s carrying a [`ReplyHandle`]; every handle is answered exactly
//! once, with the node's reply or an error, even when the request is dropped.

pub mod connection;
pub mod registry;

use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::cluster::NodeAddr;
use crate::protocol::reply::Proto;
use crate::slot::Slot;

pub use registry::{Node, NodeRegistry};

/// Why a request got no reply from a node. Each says which backend failed and how.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// The request was never written: the node could not be reached.
    #[error("backend {addr}: cannot connect: {reason}")]
    Unreachable { addr: NodeAddr, reason: String },
    /// The connection died after the request was written; it may or may not have run.
    #[error("backend {addr}: connection lost: {reason}")]
    Lost { addr: NodeAddr, reason: String },
    #[error("backend {addr}: no reply within {millis} ms")]
    Timeout { addr: NodeAddr, millis: u128 },
    #[error("too many redirects (last: {last})")]
    TooManyRedirects { last: String },
    #[error("no node serves slot {0} (cluster topology incomplete)")]
    SlotNotServed(Slot),
    #[error("no cluster node is known")]
    NoNodes,
    #[error("request dropped by the proxy before a reply arrived")]
    Dropped,
}

impl BackendError {
    /// True when the request certainly did not reach the node, so retrying it is safe.
    pub fn never_sent(&self) -> bool {
        matches!(
            self,
            BackendError::Unreachable { .. }
                | BackendError::SlotNotServed(_)
                | BackendError::NoNodes
        )
    }
}

pub type ReplyResult = Result<Bytes, BackendError>;

/// The sending half a session (or an internal query) hands out; replies come back
/// tagged with the request's sequence number.
pub type ReplySender = mpsc::UnboundedSender<(u64, ReplyResult)>;

/// Answers one request exactly once. Dropping an unanswered handle answers it with
/// [`BackendError::Dropped`], so no client ever waits for a reply that cannot come.
pub struct ReplyHandle {
    tx: Option<ReplySender>,
    seq: u64,
}

impl ReplyHandle {
    pub fn new(tx: ReplySender, seq: u64) -> ReplyHandle {
        ReplyHandle { tx: Some(tx), seq }
    }

    pub fn send(mut self, result: ReplyResult) {
        if let Some(tx) = self.tx.take() {
            // The receiver is gone when the client disconnected: nothing left to do.
            let _ = tx.send((self.seq, result));
        }
    }
}

impl Drop for ReplyHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send((self.seq, Err(BackendError::Dropped)));
        }
    }
}

/// Where a request should go when it is (re)routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The master of this slot.
    Slot(Slot),
    /// Any master (keyless commands).
    Any,
}

/// One request on its way to a node, with everything needed to re-route it after a
/// redirect or a failure.
pub struct BackendRequest {
    /// The RESP request exactly as it goes on the wire.
    pub bytes: Bytes,
    pub target: Target,
    pub proto: Proto,
    /// Which of the node's connections to use (a client sticks to one, so its requests
    /// to one node stay in order).
    pub conn_hint: u32,
    /// Send `ASKING` first (after an `ASK` redirect).
    pub asking: bool,
    /// Redirects (`MOVED`, `ASK`) followed so far, against the redirect budget.
    pub redirects: u32,
    /// Retries after `TRYAGAIN`/`LOADING` so far (sets the backoff).
    pub retries: u32,
    /// Retries (refresh, `TRYAGAIN`, unreachable node) stop at this instant; set at the
    /// first failure.
    pub retry_deadline: Option<Instant>,
    /// Internal queries (topology) fail at once rather than being retried.
    pub no_retry: bool,
    pub reply: ReplyHandle,
}
