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
//! - [`backend`]: per worker thread, one task per backend socket (pipelined), the
//!   reply queues and their flusher; the node registry shared by the workers.
//! - [`dispatch`]: the router: picks the node for a request and decides what happens
//!   after a redirect, a retryable error or a dead node; the ordered retry queue.
//! - [`session`]: one task per client: framing, routing, local commands.
//! - [`server`]: worker threads, listeners, connection limit, shutdown.
//! - [`admin`]: counters shown by `INFO`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod backend;
pub mod cluster;
pub mod command;
pub mod config;
pub mod dispatch;
pub mod event_loop;
pub mod protocol;
pub mod server;
pub mod session;
pub mod slot;
