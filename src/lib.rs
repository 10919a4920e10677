//! slotgate: a Redis Cluster proxy. Any plain Redis client connects to one port and
//! sees one server; slotgate routes each request to the node that owns its slot and
//! absorbs the cluster's redirects.
//!
//! # Layout
//! - [`config`]: configuration from the TOML file and the command line, validated.
//! - [`slot`]: hash tags, CRC16, the `Slot` newtype (pure).
//! - [`protocol`]: the resumable, bounded frame scanner, reply encoding, redirect parsing (pure).
//! - [`command`]: the command table: arity, key positions, flags, route (pure); plus the
//!   commands learned from the cluster's `COMMAND` reply.
//! - [`cluster`]: node addresses, topology parsing (pure), the slot table and its refresher.
//! - [`backend`]: per worker thread, its pipelined connections to each node (connect,
//!   handshake, flush, replies, timeouts); the node registry shared by the workers; the
//!   `ReplyTo` contract between a request and its client's reply queue; the one
//!   `Handshake` (AUTH, HELLO) both planes open a node connection with (pure); the
//!   control plane's own connections for its queries (tokio, redis-protocol's codec).
//! - [`dispatch`]: `plan` (pure): what happens to a request, built-in or learned
//!   command (local, one node, refused, transaction, or an error such as `CROSSSLOT`);
//!   the router: picks the node for a request; `decide` (pure): what happens after a
//!   reply, a redirect, a retryable error or a dead node, carried out by the worker; the
//!   ordered retry queue.
//! - [`session`]: one client: framing, routing, local commands, the in-order reply queue.
//! - [`event_loop`]: one edge-triggered epoll loop (mio) per worker thread over its
//!   listener, sessions and backend connections; writes once per turn.
//! - [`net`]: `Transport`, the one socket type sessions and node connections read and
//!   write through (plain TCP; TLS is to be one more variant), and the non-blocking
//!   read/write helpers over it.
//! - [`server`]: worker threads, listeners, the control runtime (tokio: topology
//!   refresh, signals), shutdown.
//! - [`admin`]: counters shown by `INFO`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod backend;
pub mod cluster;
pub mod command;
pub mod config;
pub mod dispatch;
pub mod event_loop;
pub mod net;
pub mod protocol;
pub mod server;
pub mod session;
pub mod slot;
