//! Backend side. Each worker thread has its own connections to each node
//! ([`NodeConnections`], each a [`connection::Conn`]), driven by the worker's event
//! loop; what all workers share about a node lives in the [`registry`]. Requests reach
//! a connection as [`BackendRequest`]s carrying a [`ReplyTo`]; every one is answered
//! exactly once, with the node's reply or an error, even when it is dropped. Every
//! connection to a node, the workers' and the control plane's own ([`control`]), opens
//! with the one [`handshake::Handshake`].

pub mod connection;
pub mod control;
pub mod handshake;
pub mod node_connections;
pub mod read_health;
pub mod registry;

use std::cell::{Cell, RefCell};
use std::mem::ManuallyDrop;
use std::time::Instant;

use bytes::Bytes;

use crate::admin::RequestClass;
use crate::cluster::NodeAddr;
use crate::config::ReadFrom;
use crate::protocol::reply::Proto;
use crate::slot::Slot;

pub use node_connections::NodeConnections;
pub use registry::{NodeRegistry, NodeShared};

/// Which side of the proxy a failure comes from (pingora's `ErrorSource`), so logs and
/// counters can tell a misbehaving client from a sick cluster from a proxy fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The client sent what the proxy cannot serve (the session's errors; no
    /// [`BackendError`] is the client's).
    Client,
    /// A node, or the cluster as a whole, did not serve the request.
    Node,
    /// The proxy itself gave the request up.
    Proxy,
}

/// Why a request got no reply from a node. Each says which backend failed and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    /// A blocking command or a transaction found every pinned connection in use, and
    /// none freed within `backend.pinned_wait_ms`.
    #[error(
        "too many blocked clients or transactions: all {limit} pinned connections are in use (backend.max_pinned){}", waited(*.waited_ms)
    )]
    TooManyPinned { limit: usize, waited_ms: u64 },
    /// The same, at one node's cap.
    #[error(
        "too many blocked clients or transactions at {addr}: all {limit} pinned connections to it are in use (backend.max_pinned_per_node){}", waited(*.waited_ms)
    )]
    TooManyPinnedAt {
        addr: NodeAddr,
        limit: usize,
        waited_ms: u64,
    },
    /// A request of a transaction found no connection held for it: an earlier request
    /// of the transaction failed and its connection was closed, with the transaction's
    /// state at the node. Never sent.
    #[error("the connection of this client's transaction is gone (an earlier request of it failed); not sent")]
    HeldGone,
}

impl BackendError {
    /// Which side failed: the node or cluster, except for a request the proxy dropped.
    pub fn side(&self) -> Side {
        match self {
            BackendError::Unreachable { .. }
            | BackendError::Lost { .. }
            | BackendError::Timeout { .. }
            // The nodes kept redirecting, or the cluster's topology leaves the slot out,
            // or no node of the cluster could be learned.
            | BackendError::TooManyRedirects { .. }
            | BackendError::SlotNotServed(_)
            | BackendError::NoNodes => Side::Node,
            BackendError::Dropped
            | BackendError::TooManyPinned { .. }
            | BackendError::TooManyPinnedAt { .. }
            | BackendError::HeldGone => Side::Proxy,
        }
    }
}

/// How long a request waited for a pinned connection, for its error (nothing when it
/// did not wait).
fn waited(millis: u64) -> String {
    match millis {
        0 => String::new(),
        ms => format!(", and none freed within {ms} ms (backend.pinned_wait_ms)"),
    }
}

pub type ReplyResult = Result<Bytes, BackendError>;

/// One place in one session's reply queue: the session's key in its worker's session
/// table, its client id (a key can be reused by a later client) and the place's
/// sequence number; `part` names one part of a request sent as several (split per
/// slot or fanned out to every master), [`Place::WHOLE`] for the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    pub session: usize,
    pub client: u64,
    pub seq: u64,
    pub part: u16,
}

impl Place {
    /// The `part` of a request sent whole.
    pub const WHOLE: u16 = u16::MAX;
}

thread_local! {
    /// Places whose [`ReplyTo`] was dropped unanswered on this worker thread; the event
    /// loop answers them with [`BackendError::Dropped`].
    static DROPPED: RefCell<Vec<Place>> = const { RefCell::new(Vec::new()) };
    /// `DROPPED` may be non-empty: a check that costs no lazy thread-local set-up.
    static ANY_DROPPED: Cell<bool> = const { Cell::new(false) };
}

/// Fills one place of a session's reply queue, exactly once: the worker's `deliver`
/// consumes it; dropping it unanswered queues [`BackendError::Dropped`] for that place,
/// so no client waits for a reply that cannot come. It carries what the counters need:
/// the request's class and, for a timed one, when it was sent.
#[derive(Debug)]
pub struct ReplyTo {
    place: ManuallyDrop<Place>,
    class: RequestClass,
    /// Microseconds on its worker's sampling clock when it was sent; 0: not timed.
    sent_at: u32,
}

impl ReplyTo {
    pub fn new(place: Place) -> ReplyTo {
        ReplyTo {
            place: ManuallyDrop::new(place),
            class: RequestClass::default(),
            sent_at: 0,
        }
    }

    /// The place this handle answers.
    pub fn place(&self) -> Place {
        *self.place
    }

    /// The place, answered by whoever takes it.
    pub fn into_place(self) -> Place {
        let me = ManuallyDrop::new(self);
        *me.place
    }

    /// The class of the request this answers (for the counters).
    #[inline]
    pub fn class(&self) -> RequestClass {
        self.class
    }

    #[inline]
    pub fn set_class(&mut self, class: RequestClass) {
        self.class = class;
    }

    /// When a timed request was sent (its worker's clock, microseconds); 0 if untimed.
    #[inline]
    pub fn sent_at(&self) -> u32 {
        self.sent_at
    }

    #[inline]
    pub fn set_sent_at(&mut self, micros: u32) {
        self.sent_at = micros;
    }
}

impl Drop for ReplyTo {
    fn drop(&mut self) {
        let place = *self.place;
        DROPPED.with(|d| d.borrow_mut().push(place));
        ANY_DROPPED.with(|any| any.set(true));
    }
}

/// Takes the places dropped unanswered on this thread since the last call (no
/// allocation when there are none, the usual case).
pub fn take_dropped() -> Vec<Place> {
    if ANY_DROPPED.with(|any| any.replace(false)) {
        DROPPED.with(|d| std::mem::take(&mut *d.borrow_mut()))
    } else {
        Vec::new()
    }
}

/// A frame a pinned connection received that answers no request (a RESP3 push), for
/// the client the connection is pinned to: a request's reply may come with several
/// frames, and the session takes them all.
#[derive(Debug)]
pub struct Push {
    pub session: usize,
    pub client: u64,
    pub frame: Bytes,
}

/// Where a request should go when it is (re)routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The master of this slot.
    Slot(Slot),
    /// Any master (keyless commands); the number spreads clients over the shards.
    Any(u32),
    /// The master of the shard at this index in the slot table (one part of a
    /// cluster-wide command).
    Shard(u16),
    /// A replica: the shard's index in the slot table and the replica's among its
    /// connected replicas (`Shard::connected_replicas`; one part of `CONFIG SET`, which
    /// every node takes).
    Replica(u16, u16),
}

/// One request on its way to a node, with everything needed to re-route it after a
/// redirect or a failure.
pub struct BackendRequest {
    /// The RESP request exactly as it goes on the wire.
    pub bytes: Bytes,
    pub target: Target,
    pub proto: Proto,
    /// Which of the node's connections to use: a client sticks to one, so its requests
    /// to one node stay in order.
    pub conn_hint: u32,
    /// Send `ASKING` first (after an `ASK` redirect).
    pub asking: bool,
    /// Redirects (`MOVED`, `ASK`) followed so far, against the redirect budget (at
    /// most 100). A `u16`: with [`BackendRequest::reads`] the request stays 128 bytes,
    /// two cache lines (a `u32` here made it 136 and cost about 25 instructions per
    /// GET in moves, callgrind -c 50 -P 16).
    pub redirects: u16,
    /// Retries after `TRYAGAIN`/`LOADING` so far (sets the backoff).
    pub retries: u32,
    /// Retries (refresh, `TRYAGAIN`, unreachable node) stop at this instant; set at the
    /// first failure.
    pub retry_deadline: Option<Instant>,
    /// How long the node may take to answer once the request's turn at it comes.
    pub deadline: ReplyDeadline,
    /// Goes on a connection of its own, pinned to the client while it waits (a blocking
    /// command), so it is never behind or ahead of other clients' requests.
    pub pinned: bool,
    /// Part of the client's transaction (with `pinned`): it goes on the connection held
    /// for the transaction, and no redirect is followed and nothing retried, since the
    /// transaction's state lives on that one connection.
    pub hold: Hold,
    /// Where a read may go (`dispatch::reads`): [`ReadFrom::Master`] for every request
    /// but a client's reads under `read_from` or after its `READONLY`.
    pub reads: ReadFrom,
    pub reply: ReplyTo,
}

/// How a request of a client's transaction (`MULTI` ... `EXEC`, `WATCH`) uses the
/// connection held for it, from the request that opens it to the one that releases it.
/// A client has one held connection per slot of its transaction (the request's
/// [`Target`] says which), so a transaction over several slots runs one `MULTI`/`EXEC`
/// per slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Hold {
    /// Not part of a transaction.
    #[default]
    No,
    /// Opens the transaction's connection, to its target's node (a spare or a new
    /// pinned connection, within `backend.max_pinned`), and holds it for the client.
    Open,
    /// Goes on the connection held for the client ([`BackendError::HeldGone`] when
    /// there is none).
    On,
    /// The last request on the held connection (`EXEC`, `DISCARD`, `UNWATCH`: the node
    /// keeps no state of the client after it): once everything on it is answered, the
    /// connection goes back to the spares.
    Release,
}

/// A request's reply deadline: counted from when its turn at the node comes (it was
/// written, or the reply before it arrived). On a shared connection an overdue reply
/// closes the connection (everything in flight on it gets an error: the node is stuck);
/// a pinned connection holds one request, so only its client is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyDeadline {
    /// `backend.timeout_ms`.
    Backend,
    /// A blocking command's own timeout, plus `backend.timeout_ms`.
    Extra(std::time::Duration),
    /// A blocking command with timeout 0: it may wait forever.
    Never,
}

impl BackendRequest {
    /// Part of a client's transaction ([`Hold`]).
    #[inline]
    pub fn in_transaction(&self) -> bool {
        self.hold != Hold::No
    }

    pub fn new(
        bytes: Bytes,
        target: Target,
        proto: Proto,
        conn_hint: u32,
        reply: ReplyTo,
    ) -> BackendRequest {
        BackendRequest {
            bytes,
            target,
            proto,
            conn_hint,
            asking: false,
            redirects: 0,
            retries: 0,
            retry_deadline: None,
            deadline: ReplyDeadline::Backend,
            pinned: false,
            hold: Hold::No,
            reads: ReadFrom::Master,
            reply,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_fits_two_cache_lines() {
        // Moved by value from the session to the connection's queue and in-flight list;
        // past 128 bytes every GET paid for a third cache line (see `redirects`).
        assert!(std::mem::size_of::<BackendRequest>() <= 128);
    }
}
