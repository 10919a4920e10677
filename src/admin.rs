//! Process-wide counters, shown through `INFO` (section `proxy`). Relaxed atomics:
//! each is written by many tasks and only read for reporting. Beside them, the counters
//! each worker thread keeps for itself ([`WorkerStats`]), summed for `INFO`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters written by one worker thread only (a plain load and store, no atomic
/// read-modify-write), on their own cache line; `INFO` sums them over the workers.
#[repr(align(64))]
#[derive(Default)]
pub struct WorkerStats {
    /// Requests read from clients.
    pub requests: AtomicU64,
    /// Writes to backend connections (each carries every request queued in one turn).
    pub backend_writes: AtomicU64,
    /// Writes of replies to clients.
    pub client_writes: AtomicU64,
    /// Bytes of replies held for this worker's clients, as of its last watchdog tick.
    pub output_bytes: AtomicU64,
}

/// [`WorkerStats`] summed over the workers.
#[derive(Clone, Copy, Debug, Default)]
pub struct StatsTotal {
    /// Worker threads running.
    pub workers: usize,
    pub requests: u64,
    pub backend_writes: u64,
    pub client_writes: u64,
    pub output_bytes: u64,
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
    pub redirects_moved: AtomicU64,
    pub redirects_ask: AtomicU64,
    pub retries_tryagain: AtomicU64,
    pub retries_clusterdown: AtomicU64,
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
}

pub static METRICS: Metrics = Metrics {
    connections_total: AtomicU64::new(0),
    connections_open: AtomicU64::new(0),
    connections_rejected: AtomicU64::new(0),
    clients_over_output_limit: AtomicU64::new(0),
    clients_over_output_total: AtomicU64::new(0),
    requests_local: AtomicU64::new(0),
    proxy_errors: AtomicU64::new(0),
    redirects_moved: AtomicU64::new(0),
    redirects_ask: AtomicU64::new(0),
    retries_tryagain: AtomicU64::new(0),
    retries_clusterdown: AtomicU64::new(0),
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
};

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// The `# Proxy` section of `INFO`, `name:value` lines ending in CRLF.
    /// `workers` are the per-worker counters, summed by the caller.
    pub fn info_section(&self, out: &mut String, workers: StatsTotal) {
        let rows: [(&str, &AtomicU64); 22] = [
            ("connections_total", &self.connections_total),
            ("connections_open", &self.connections_open),
            ("connections_rejected", &self.connections_rejected),
            ("clients_over_output_limit", &self.clients_over_output_limit),
            ("clients_over_output_total", &self.clients_over_output_total),
            ("requests_local", &self.requests_local),
            ("proxy_errors", &self.proxy_errors),
            ("redirects_moved", &self.redirects_moved),
            ("redirects_ask", &self.redirects_ask),
            ("retries_tryagain", &self.retries_tryagain),
            ("retries_clusterdown", &self.retries_clusterdown),
            ("retries_unreachable", &self.retries_unreachable),
            ("topology_refreshes", &self.topology_refreshes),
            ("topology_refresh_failures", &self.topology_refresh_failures),
            ("backend_connects", &self.backend_connects),
            ("backend_connect_failures", &self.backend_connect_failures),
            ("backend_connections_lost", &self.backend_connections_lost),
            ("pinned_connections", &self.pinned_connections),
            ("pinned_waiting", &self.pinned_waiting),
            ("scripts_healed", &self.scripts_healed),
            ("subscriber_connections", &self.subscriber_connections),
            ("pubsub_resubscribes", &self.pubsub_resubscribes),
        ];
        out.push_str("# Proxy\r\n");
        let _ = write!(
            out,
            "workers:{}\r\nrequests:{}\r\nbackend_writes:{}\r\nclient_writes:{}\r\nclient_output_bytes:{}\r\n",
            workers.workers,
            workers.requests,
            workers.backend_writes,
            workers.client_writes,
            workers.output_bytes
        );
        for (name, value) in rows {
            let _ = write!(out, "{name}:{}\r\n", value.load(Relaxed));
        }
    }
}
