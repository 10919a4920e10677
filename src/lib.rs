//! slotgate: a Redis Cluster proxy. Any plain Redis client connects to one port and
//! sees one server; slotgate routes each request to the node that owns its slot and
//! absorbs the cluster's redirects.
//!
//! # Layout
//! Modules import downwards in this order: `server` → `event_loop` → `session` →
//! `dispatch` → `shared` → `clients`/`backend` → `cluster`/`command`/`protocol`/`slot`, with
//! `refresh`, `reload` and `replicas` beside `server` and `config`, `admin` and `net` underneath all.
//! - [`config`]: configuration from the TOML file and the command line, validated.
//! - [`acl`]: client users, their passwords (SHA-256 digests, compared in constant
//!   time) and their Redis ACL rules compiled per user (pure).
//! - [`admission`]: connections per client address, shared by the workers' listeners.
//! - [`slot`]: hash tags, CRC16, the `Slot` newtype (pure).
//! - [`protocol`]: the resumable, bounded frame scanner, reply encoding, redirect parsing (pure).
//! - [`command`]: the command table: arity, key positions, flags, route (pure); plus the
//!   commands learned from the cluster's `COMMAND` reply.
//! - [`cluster`]: node addresses, topology parsing (pure), several nodes' views merged
//!   by config epoch (pure), the slot table and its owner changes (pure).
//! - [`backend`]: per worker thread, its pipelined connections to each node
//!   (`NodeConnections`: connect, handshake, flush, replies, timeouts, pinned
//!   connections), which report what happened rather than decide; the node registry
//!   shared by the workers; the `ReplyTo` contract between a request and its client's
//!   reply queue; the one `Handshake` (AUTH, HELLO) both planes open a node connection
//!   with (pure); the control plane's own connections for its queries (tokio,
//!   redis-protocol's codec).
//! - [`clients`]: every connected client across the workers (`CLIENT LIST`/`KILL`), and
//!   the `MONITOR` feed: entries written by their own worker, mail between workers.
//! - [`scripts`]: scripts seen loaded or evaluated, by SHA1, to heal a `NOSCRIPT`.
//! - [`shared`]: `Shared`, what every worker thread and the control plane share:
//!   configuration, the published slot table, refresh signals, server version,
//!   per-worker counters, the node registry, learned commands.
//! - [`dispatch`]: `plan` (pure): what happens to a request, built-in or learned
//!   command (local, one node, refused, transaction, or an error such as `CROSSSLOT`);
//!   the `Worker`: one thread's node connections and routing state, picking the node
//!   for a request and carrying out `decide` (pure): what happens after a reply, a
//!   redirect, a retryable error or a dead node; the ordered retry queue; the worker's
//!   pub/sub hub (each channel subscribed once at a node, messages fanned out).
//! - [`session`]: one client: framing, routing, local commands, who it is and what it
//!   may run (`AUTH`, rules, `ACL`, idle `timeout`), transactions (one
//!   `MULTI`/`EXEC` per slot), list moves and pops across slots, the in-order reply
//!   queue; the one-node cluster face cluster-aware clients see
//!   (`CLUSTER SLOTS`, ...; pure); its subscriptions and RESP2 subscriber mode.
//! - [`event_loop`]: one edge-triggered epoll loop (mio) per worker thread over its
//!   listener, sessions and backend connections; writes once per turn.
//! - [`net`]: `Transport`, the one socket type sessions and node connections read and
//!   write through (plain TCP, or TLS with rustls: `net::tls`, which also loads the
//!   `[tls]`/`[backend.tls]` PEM files), and the non-blocking read/write helpers over it.
//! - [`refresh`]: the task that keeps the slot table fresh (tokio: at start-up,
//!   periodically, on request; several nodes asked at once, every owner change logged),
//!   and learns the server version and commands.
//! - [`reload`]: `SIGHUP` and `POST /reload`: the config file read again, what changed
//!   ([`reload::diff`], pure), what applies live and what needs a restart, swapped in for
//!   the workers to take at their next tick; which login a client keeps
//!   ([`reload::rebind`], pure; the sessions call it).
//! - [`replicas`]: the replica poller (tokio): each node's round trip, each replica's
//!   lag and fitness for reads, once a second while reads may go to replicas.
//! - [`server`]: worker threads, listeners, the control runtime (tokio: topology
//!   refresh, signals, reload, the admin port), shutdown.
//! - [`admin`]: counters shown by `INFO` and `/metrics`, process-wide and per worker
//!   (underneath all); beside [`server`] on the control runtime, the admin HTTP port
//!   (`admin::http`: metrics, health, readiness, the status page) and what it reports
//!   (`admin::status`: the node prober, readiness, the status page's data).
//! - [`log_limit`]: log lines that could come once per request, one per subject a minute.
#![forbid(unsafe_code)]

pub mod acl;
pub mod admin;
pub mod admission;
pub mod backend;
pub mod clients;
pub mod cluster;
pub mod command;
pub mod config;
pub mod dispatch;
pub mod event_loop;
pub mod log_limit;
pub mod net;
pub mod protocol;
pub mod refresh;
pub mod reload;
pub mod replicas;
pub mod scripts;
pub mod server;
pub mod session;
pub mod shared;
pub mod slot;
