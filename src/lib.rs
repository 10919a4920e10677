//! slotgate: a Redis Cluster proxy. Any plain Redis client connects to one port and
//! sees one server; slotgate routes each request to the node that owns its slot and
//! absorbs the cluster's redirects.
//!
//! # Layout
//! - [`config`]: configuration from the TOML file and the command line, validated.
//! - [`slot`]: hash tags, CRC16, the `Slot` newtype (pure).
//! - [`protocol`]: the resumable, bounded frame scanner, reply encoding, redirect parsing (pure).
//! - [`command`]: the command table: arity, key positions, flags, route (pure).
//! - [`cluster`]: node addresses, topology parsing (pure), the slot table and its refresher.
//! - [`backend`]: one task per backend socket, pipelined; the node registry.
//! - [`dispatch`]: the router: picks the node for a request and decides what happens
//!   after a redirect, a retryable error or a dead node.
//! - [`session`]: one task per client: framing, ordering, local commands.
//! - [`server`]: listener, connection limit, shutdown.
//! - [`admin`]: counters shown by `INFO`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod backend;
pub mod cluster;
pub mod command;
pub mod config;
pub mod dispatch;
pub mod protocol;
pub mod server;
pub mod session;
pub mod slot;
