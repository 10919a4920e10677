//! What slotgate counts, and the admin port that shows it.
//!
//! - Here: the counters. [`WorkerStats`], one block per worker thread, written by that
//!   thread alone with a plain load and store (no lock, no atomic read-modify-write: the
//!   request path stays as cheap as it was), summed when someone reads them; and
//!   [`METRICS`], process-wide relaxed atomics for events that are not per request
//!   (connections, refreshes, connects). `INFO` shows both (section `proxy`).
//! - [`metrics`]: the same in Prometheus's text format, plus the control plane's own
//!   (topology refreshes, slot-table age, node probes).
//! - [`http`]: the admin port (axum on the control runtime): `/metrics`, `/healthz`,
//!   `/readyz`, the status page `/` and its `/status.json`.
//! - [`status`]: readiness, the node prober and the status page's data.

pub mod http;
pub mod metrics;
pub mod status;

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::cluster::NodeAddr;

/// What kind of request a client sent, for the counters by class. Decided once per
/// request, from its plan (`session::Session::handle`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum RequestClass {
    /// A read-only command for one slot (or any master, keyless).
    Read,
    /// Any other command for one node: it may write (also scripts and commands learned
    /// from the cluster).
    #[default]
    Write,
    /// Keys of several slots: split per slot (`MGET`, `MSET`, `DEL`, ...) or run one slot
    /// after another (`LMOVE`, `BLPOP`, ... over several slots).
    MultiSlot,
    /// Sent to every master (or every node), the replies merged (`DBSIZE`, `SCAN`, ...).
    FanOut,
    /// A blocking command on a connection pinned to its client (`BLPOP`, `XREAD BLOCK`).
    Blocking,
    /// `MULTI`, `EXEC`, `DISCARD`, `WATCH`, `UNWATCH` and the commands queued between.
    Transaction,
    /// `(S|P)SUBSCRIBE`, `(S|P)UNSUBSCRIBE`, `PUBLISH`, and what a subscribed client sends.
    PubSub,
    /// Answered by slotgate itself (`PING`, `HELLO`, `CLIENT ...`, `CLUSTER SLOTS`, `INFO`).
    Local,
    /// Refused before reaching a node: unknown command, wrong arity, `CROSSSLOT`,
    /// unsupported.
    Rejected,
}

/// How many [`RequestClass`]es there are.
pub const CLASSES: usize = 9;

impl RequestClass {
    pub const ALL: [RequestClass; CLASSES] = [
        RequestClass::Read,
        RequestClass::Write,
        RequestClass::MultiSlot,
        RequestClass::FanOut,
        RequestClass::Blocking,
        RequestClass::Transaction,
        RequestClass::PubSub,
        RequestClass::Local,
        RequestClass::Rejected,
    ];

    /// The `class` label.
    pub fn name(self) -> &'static str {
        match self {
            RequestClass::Read => "read",
            RequestClass::Write => "write",
            RequestClass::MultiSlot => "multi_slot",
            RequestClass::FanOut => "fan_out",
            RequestClass::Blocking => "blocking",
            RequestClass::Transaction => "transaction",
            RequestClass::PubSub => "pubsub",
            RequestClass::Local => "local",
            RequestClass::Rejected => "rejected",
        }
    }
}

/// Where an error reply a client got came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ErrorKind {
    /// A node's error reply, passed on (`WRONGTYPE`, `OOM`, `NOSCRIPT`, ...).
    Reply,
    /// No usable reply from the cluster: a node unreachable, a timeout, a lost
    /// connection, the redirect budget spent, a slot no node serves.
    Node,
    /// slotgate gave the request up (the pinned-connection cap, a dropped request).
    Proxy,
    /// slotgate refused the request before any node saw it (unknown command, wrong
    /// arity, `CROSSSLOT`, an unsupported command).
    Client,
}

pub const ERROR_KINDS: usize = 4;

impl ErrorKind {
    pub const ALL: [ErrorKind; ERROR_KINDS] = [
        ErrorKind::Reply,
        ErrorKind::Node,
        ErrorKind::Proxy,
        ErrorKind::Client,
    ];

    /// The `kind` label.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Reply => "reply",
            ErrorKind::Node => "node",
            ErrorKind::Proxy => "proxy",
            ErrorKind::Client => "client",
        }
    }
}

/// What a node answered instead of a reply, sending the request elsewhere or later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Redirect {
    Moved,
    Ask,
    TryAgain,
    ClusterDown,
}

pub const REDIRECT_KINDS: usize = 4;

impl Redirect {
    pub const ALL: [Redirect; REDIRECT_KINDS] = [
        Redirect::Moved,
        Redirect::Ask,
        Redirect::TryAgain,
        Redirect::ClusterDown,
    ];

    /// The `kind` label.
    pub fn name(self) -> &'static str {
        match self {
            Redirect::Moved => "moved",
            Redirect::Ask => "ask",
            Redirect::TryAgain => "tryagain",
            Redirect::ClusterDown => "clusterdown",
        }
    }
}

/// Add `n` to a counter only this thread writes: a plain load and store, which costs
/// what a non-atomic add costs (no locked instruction); readers on other threads see
/// the value whole.
#[inline(always)]
pub fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed) + n, Relaxed);
}

/// Upper bounds of the latency buckets, in microseconds (then +Inf).
pub const LATENCY_BOUNDS_US: [u64; 17] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// A latency histogram with fixed buckets, written by one thread (see [`bump`]).
#[derive(Default)]
pub struct Latency {
    /// Per bucket (not cumulative): `LATENCY_BOUNDS_US`, then +Inf.
    pub buckets: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    pub sum_us: AtomicU64,
}

impl Latency {
    /// Record one measurement; only the owning thread calls this.
    pub fn record(&self, micros: u64) {
        let i = LATENCY_BOUNDS_US.partition_point(|&bound| bound < micros);
        bump(&self.buckets[i], 1);
        bump(&self.sum_us, micros);
    }

    /// Add this histogram into `total`.
    pub fn add_to(&self, total: &mut LatencyTotal) {
        for (t, b) in total.buckets.iter_mut().zip(&self.buckets) {
            *t += b.load(Relaxed);
        }
        total.sum_us += self.sum_us.load(Relaxed);
    }
}

/// [`Latency`] histograms summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencyTotal {
    pub buckets: [u64; LATENCY_BOUNDS_US.len() + 1],
    pub sum_us: u64,
}

impl LatencyTotal {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// One worker's counters for one [`RequestClass`].
#[derive(Default)]
pub struct ClassStats {
    pub requests: AtomicU64,
    /// By [`ErrorKind`].
    pub errors: [AtomicU64; ERROR_KINDS],
    /// Sampled requests (one in [`SAMPLE_EVERY`]), from being sent to a node to their
    /// reply (redirects and retries included).
    pub latency: Latency,
}

/// One request in this many (per worker) has its latency measured: two clock reads
/// per timed request. Under callgrind they cost about 3 instructions per GET at this
/// rate; timing every request would cost about 50 (of some 4,700).
pub const SAMPLE_EVERY: u32 = 16;

/// Counters written by one worker thread only (a plain load and store, no atomic
/// read-modify-write), on their own cache lines; `INFO` and `/metrics` sum them over
/// the workers.
#[repr(align(64))]
#[derive(Default)]
pub struct WorkerStats {
    /// Writes to backend connections (each carries every request queued in one turn).
    pub backend_writes: AtomicU64,
    /// Writes of replies to clients.
    pub client_writes: AtomicU64,
    /// Bytes of replies held for this worker's clients, as of its last watchdog tick.
    pub output_bytes: AtomicU64,
    /// Bytes read from clients and written to them.
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Shared node connections open (connected), as of the last watchdog tick.
    pub shared_connections: AtomicU64,
    /// By [`Redirect`].
    pub redirects: [AtomicU64; REDIRECT_KINDS],
    /// By [`RequestClass`].
    pub classes: [ClassStats; CLASSES],
    /// Sampled latency per node, from a request's being sent until its reply is read.
    /// The worker adds a node the first time it times one of its replies (the lock is
    /// taken then and by readers, never per request); it keeps its own handles.
    pub nodes: Mutex<Vec<(NodeAddr, Arc<Latency>)>>,
}

impl WorkerStats {
    /// Count one request of `class`.
    #[inline(always)]
    pub fn request(&self, class: RequestClass) {
        bump(&self.classes[class as usize].requests, 1);
    }

    /// Count one error reply of `class`.
    #[inline]
    pub fn error(&self, class: RequestClass, kind: ErrorKind) {
        bump(&self.classes[class as usize].errors[kind as usize], 1);
    }

    /// Count one redirect (or retry) a node asked for.
    #[inline]
    pub fn redirect(&self, kind: Redirect) {
        bump(&self.redirects[kind as usize], 1);
    }

    /// The latency histogram of `addr` on this worker, made on first use.
    pub fn node_latency(&self, addr: &NodeAddr) -> Arc<Latency> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, latency)) = nodes.iter().find(|(a, _)| a == addr) {
            return Arc::clone(latency);
        }
        let latency = Arc::new(Latency::default());
        nodes.push((addr.clone(), Arc::clone(&latency)));
        latency
    }
}

/// [`WorkerStats`] summed over the workers.
#[derive(Clone, Debug, Default)]
pub struct StatsTotal {
    /// Worker threads running.
    pub workers: usize,
    pub requests: u64,
    pub backend_writes: u64,
    pub client_writes: u64,
    pub output_bytes: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub shared_connections: u64,
    pub redirects: [u64; REDIRECT_KINDS],
    pub requests_by_class: [u64; CLASSES],
    pub errors: [[u64; ERROR_KINDS]; CLASSES],
    pub latency: [LatencyTotal; CLASSES],
    /// Per node, by announced address, sorted.
    pub node_latency: Vec<(NodeAddr, LatencyTotal)>,
}

impl StatsTotal {
    /// Sum `stats` (one per worker); `workers` say how many run.
    pub fn sum<'a>(workers: usize, stats: impl IntoIterator<Item = &'a WorkerStats>) -> StatsTotal {
        let mut total = StatsTotal {
            workers,
            ..StatsTotal::default()
        };
        for s in stats {
            total.backend_writes += s.backend_writes.load(Relaxed);
            total.client_writes += s.client_writes.load(Relaxed);
            total.output_bytes += s.output_bytes.load(Relaxed);
            total.bytes_in += s.bytes_in.load(Relaxed);
            total.bytes_out += s.bytes_out.load(Relaxed);
            total.shared_connections += s.shared_connections.load(Relaxed);
            for (t, r) in total.redirects.iter_mut().zip(&s.redirects) {
                *t += r.load(Relaxed);
            }
            for (c, class) in s.classes.iter().enumerate() {
                let n = class.requests.load(Relaxed);
                total.requests_by_class[c] += n;
                total.requests += n;
                for (t, e) in total.errors[c].iter_mut().zip(&class.errors) {
                    *t += e.load(Relaxed);
                }
                class.latency.add_to(&mut total.latency[c]);
            }
            let nodes = s.nodes.lock().unwrap_or_else(|e| e.into_inner());
            for (addr, latency) in nodes.iter() {
                match total.node_latency.iter_mut().find(|(a, _)| a == addr) {
                    Some((_, t)) => latency.add_to(t),
                    None => {
                        let mut t = LatencyTotal::default();
                        latency.add_to(&mut t);
                        total.node_latency.push((addr.clone(), t));
                    }
                }
            }
        }
        total.node_latency.sort_by(|a, b| a.0.cmp(&b.0));
        total
    }

    /// Error replies of every class and kind.
    pub fn errors_total(&self) -> u64 {
        self.errors.iter().flatten().sum()
    }
}

pub struct Metrics {
    /// Client connections accepted since start.
    pub connections_total: AtomicU64,
    /// Client connections open now (incremented on accept, decremented when the session ends).
    pub connections_open: AtomicU64,
    /// Connections refused because `max_clients` was reached.
    pub connections_rejected: AtomicU64,
    /// Clients closed because the replies waiting for them passed
    /// `limits.max_output_buffer`.
    pub clients_over_output_limit: AtomicU64,
    /// Clients closed because all clients together held more than
    /// `limits.max_output_total` and they held the most.
    pub clients_over_output_total: AtomicU64,
    /// Requests answered by the proxy itself.
    pub requests_local: AtomicU64,
    /// Error replies the proxy made itself (not errors relayed from nodes).
    pub proxy_errors: AtomicU64,
    /// Requests retried because their node could not be reached (never sent).
    pub retries_unreachable: AtomicU64,
    pub topology_refreshes: AtomicU64,
    pub topology_refresh_failures: AtomicU64,
    pub backend_connects: AtomicU64,
    pub backend_connect_failures: AtomicU64,
    /// Pinned backend connections open now (blocking commands, transactions; a gauge), against
    /// `backend.max_pinned`.
    pub pinned_connections: AtomicU64,
    /// Requests waiting for a pinned connection now, a cap being reached (a gauge; at
    /// most `backend.pinned_wait_ms` each).
    pub pinned_waiting: AtomicU64,
    /// Backend connections that died with requests in flight.
    pub backend_connections_lost: AtomicU64,
    /// `EVALSHA`s a node answered `NOSCRIPT`, sent again with the script.
    pub scripts_healed: AtomicU64,
    /// Clients waiting in a blocking command now (a gauge; `INFO` `blocked_clients`).
    pub blocked_clients: AtomicU64,
    /// The pub/sub hubs' connections to nodes open now (a gauge): at most one per
    /// worker and node, however many clients subscribe.
    pub subscriber_connections: AtomicU64,
    /// Subscriptions the pub/sub hubs made again at a node after losing them (the node
    /// failed or was replaced, a shard channel's slot moved), without the clients'
    /// doing anything.
    pub pubsub_resubscribes: AtomicU64,
    /// Configuration reloads applied (`SIGHUP`, `POST /reload`; [`crate::reload`]).
    pub config_reloads_ok: AtomicU64,
    /// Configuration reloads refused (a bad file): the old configuration stayed.
    pub config_reloads_failed: AtomicU64,
    /// When the last reload was tried (Unix seconds; 0: none yet).
    pub config_last_reload_unix: AtomicU64,
    /// 1 when the last reload was refused.
    pub config_last_reload_failed: AtomicU64,
    /// Reads meant for a replica sent to the master instead: the replica could not be
    /// reached, lost the connection or answered too late (`replica_timeout_ms`).
    pub replica_read_fallbacks: AtomicU64,
}

pub static METRICS: Metrics = Metrics {
    connections_total: AtomicU64::new(0),
    connections_open: AtomicU64::new(0),
    connections_rejected: AtomicU64::new(0),
    clients_over_output_limit: AtomicU64::new(0),
    clients_over_output_total: AtomicU64::new(0),
    requests_local: AtomicU64::new(0),
    proxy_errors: AtomicU64::new(0),
    retries_unreachable: AtomicU64::new(0),
    topology_refreshes: AtomicU64::new(0),
    topology_refresh_failures: AtomicU64::new(0),
    backend_connects: AtomicU64::new(0),
    backend_connect_failures: AtomicU64::new(0),
    backend_connections_lost: AtomicU64::new(0),
    pinned_connections: AtomicU64::new(0),
    pinned_waiting: AtomicU64::new(0),
    scripts_healed: AtomicU64::new(0),
    blocked_clients: AtomicU64::new(0),
    subscriber_connections: AtomicU64::new(0),
    pubsub_resubscribes: AtomicU64::new(0),
    config_reloads_ok: AtomicU64::new(0),
    config_reloads_failed: AtomicU64::new(0),
    config_last_reload_unix: AtomicU64::new(0),
    config_last_reload_failed: AtomicU64::new(0),
    replica_read_fallbacks: AtomicU64::new(0),
};

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// The `# Proxy` section of `INFO`, `name:value` lines ending in CRLF.
    /// `workers` are the per-worker counters, summed by the caller.
    pub fn info_section(&self, out: &mut String, workers: &StatsTotal) {
        let at = |counter: &AtomicU64| counter.load(Relaxed);
        let [moved, ask, tryagain, clusterdown] = workers.redirects;
        let rows: [(&str, u64); 24] = [
            ("workers", workers.workers as u64),
            ("requests", workers.requests),
            ("backend_writes", workers.backend_writes),
            ("client_writes", workers.client_writes),
            ("client_output_bytes", workers.output_bytes),
            ("connections_total", at(&self.connections_total)),
            ("connections_open", at(&self.connections_open)),
            ("connections_rejected", at(&self.connections_rejected)),
            (
                "clients_over_output_limit",
                at(&self.clients_over_output_limit),
            ),
            (
                "clients_over_output_total",
                at(&self.clients_over_output_total),
            ),
            ("requests_local", at(&self.requests_local)),
            ("proxy_errors", at(&self.proxy_errors)),
            ("redirects_moved", moved),
            ("redirects_ask", ask),
            ("retries_tryagain", tryagain),
            ("retries_clusterdown", clusterdown),
            ("retries_unreachable", at(&self.retries_unreachable)),
            ("topology_refreshes", at(&self.topology_refreshes)),
            (
                "topology_refresh_failures",
                at(&self.topology_refresh_failures),
            ),
            ("backend_connects", at(&self.backend_connects)),
            (
                "backend_connect_failures",
                at(&self.backend_connect_failures),
            ),
            (
                "backend_connections_lost",
                at(&self.backend_connections_lost),
            ),
            ("pinned_connections", at(&self.pinned_connections)),
            ("pinned_waiting", at(&self.pinned_waiting)),
        ];
        out.push_str("# Proxy\r\n");
        for (name, value) in rows {
            let _ = write!(out, "{name}:{value}\r\n");
        }
        for (name, value) in [
            ("scripts_healed", &self.scripts_healed),
            ("subscriber_connections", &self.subscriber_connections),
            ("pubsub_resubscribes", &self.pubsub_resubscribes),
            ("config_reloads_ok", &self.config_reloads_ok),
            ("config_reloads_failed", &self.config_reloads_failed),
            ("config_last_reload_unix", &self.config_last_reload_unix),
            ("config_last_reload_failed", &self.config_last_reload_failed),
        ] {
            let _ = write!(out, "{name}:{}\r\n", at(value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_lands_in_the_first_bucket_at_or_above_it() {
        let latency = Latency::default();
        for micros in [0, 50, 51, 1_000, 10_000_000, 10_000_001, u64::MAX / 2] {
            latency.record(micros);
        }
        let mut total = LatencyTotal::default();
        latency.add_to(&mut total);
        assert_eq!(total.buckets[0], 2, "0 and 50 are <= 50 us");
        assert_eq!(total.buckets[1], 1, "51 us");
        assert_eq!(total.buckets[4], 1, "1 ms");
        assert_eq!(total.buckets[LATENCY_BOUNDS_US.len() - 1], 1, "10 s");
        assert_eq!(total.buckets[LATENCY_BOUNDS_US.len()], 2, "+Inf");
        assert_eq!(total.count(), 7);
    }

    #[test]
    fn workers_sum_by_class_kind_and_node() {
        let stats: Vec<WorkerStats> = (0..2).map(|_| WorkerStats::default()).collect();
        let a = NodeAddr::parse("127.0.0.1:7001").unwrap();
        let b = NodeAddr::parse("127.0.0.1:7002").unwrap();
        stats[0].request(RequestClass::Read);
        stats[1].request(RequestClass::Read);
        stats[1].request(RequestClass::Rejected);
        stats[1].error(RequestClass::Rejected, ErrorKind::Client);
        stats[0].redirect(Redirect::Moved);
        stats[0].node_latency(&b).record(100);
        stats[1].node_latency(&b).record(100);
        stats[1].node_latency(&a).record(100);
        let total = StatsTotal::sum(2, &stats);
        assert_eq!(total.requests, 3);
        assert_eq!(total.requests_by_class[RequestClass::Read as usize], 2);
        assert_eq!(total.errors_total(), 1);
        assert_eq!(
            total.errors[RequestClass::Rejected as usize][ErrorKind::Client as usize],
            1
        );
        assert_eq!(total.redirects, [1, 0, 0, 0]);
        let nodes: Vec<(String, u64)> = (total.node_latency.iter())
            .map(|(addr, l)| (addr.to_string(), l.count()))
            .collect();
        assert_eq!(
            nodes,
            [
                ("127.0.0.1:7001".to_string(), 1),
                ("127.0.0.1:7002".to_string(), 2)
            ]
        );
    }
}
