//! `/metrics`: every counter in Prometheus's text format, encoded by prometheus-client
//! at scrape time from what the workers and the control plane keep (a [`Collector`]:
//! nothing is copied between scrapes). Also the control plane's own numbers: topology
//! refreshes by cause and their duration, the slot table's age.
//!
//! prometheus-client writes OpenMetrics; Prometheus asks for it (its `Accept` header)
//! and gets it. Anyone else (curl, `promtool check metrics`) gets the classic text
//! format 0.0.4, made from the same text by [`to_prometheus_text`]: a counter's
//! `# HELP`/`# TYPE` name gains the `_total` its samples carry, `# UNIT`/`# EOF` go.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::status::Health;
use super::{ErrorKind, LatencyTotal, Metrics, Redirect, RequestClass, LATENCY_BOUNDS_US, METRICS};
use crate::shared::Shared;

/// Why a topology refresh ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RefreshCause {
    /// The first one, before clients are accepted.
    Startup,
    /// `cluster.refresh_interval_ms` passed with nothing asking for one.
    Interval,
    /// A node answered `MOVED`.
    Moved,
    /// A node answered `ASK` to a request that may not follow it (in a transaction).
    Ask,
    /// A node answered `CLUSTERDOWN`/`MASTERDOWN`.
    ClusterDown,
    /// A node could not be reached.
    Unreachable,
    /// A subscription found its node gone or its shard channel's slot moved.
    PubSub,
    /// Anything else that asked.
    Other,
}

pub const REFRESH_CAUSES: usize = 8;

impl RefreshCause {
    /// In precedence order: a refresh several causes asked for counts under the first.
    pub const ALL: [RefreshCause; REFRESH_CAUSES] = [
        RefreshCause::Startup,
        RefreshCause::Moved,
        RefreshCause::Ask,
        RefreshCause::ClusterDown,
        RefreshCause::Unreachable,
        RefreshCause::PubSub,
        RefreshCause::Other,
        RefreshCause::Interval,
    ];

    /// The `cause` label.
    pub fn name(self) -> &'static str {
        match self {
            RefreshCause::Startup => "startup",
            RefreshCause::Interval => "interval",
            RefreshCause::Moved => "moved",
            RefreshCause::Ask => "ask",
            RefreshCause::ClusterDown => "clusterdown",
            RefreshCause::Unreachable => "unreachable",
            RefreshCause::PubSub => "pubsub",
            RefreshCause::Other => "other",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// The causes asked for since the refresher last took them: a bit per [`RefreshCause`].
/// Set by workers on a redirect (a load first, so a storm of `MOVED`s writes the shared
/// word once), taken by the refresher when it wakes.
#[derive(Default)]
pub struct RefreshCauses(AtomicU8);

impl RefreshCauses {
    pub fn note(&self, cause: RefreshCause) {
        if self.0.load(Relaxed) & cause.bit() == 0 {
            self.0.fetch_or(cause.bit(), Relaxed);
        }
    }

    /// The cause that asked first in precedence, clearing them all; `None` if none did.
    pub fn take(&self) -> Option<RefreshCause> {
        let bits = self.0.swap(0, Relaxed);
        RefreshCause::ALL.into_iter().find(|c| bits & c.bit() != 0)
    }
}

/// The control plane's record of its refreshes (written by the refresher only).
pub struct RefreshStats {
    /// By cause, then [ok, failed].
    counts: [[AtomicU64; 2]; REFRESH_CAUSES],
    duration: Histogram,
    /// When a refresh last succeeded.
    last_ok: Mutex<Option<Instant>>,
}

/// Buckets of the refresh duration, in seconds.
const REFRESH_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

pub static REFRESHES: LazyLock<RefreshStats> = LazyLock::new(|| RefreshStats {
    counts: Default::default(),
    duration: Histogram::new(REFRESH_BUCKETS),
    last_ok: Mutex::new(None),
});

/// A refresh asked for by `cause` ended (`ok`: a topology was published) after `took`.
pub fn refresh_done(cause: RefreshCause, ok: bool, took: Duration) {
    let stats = &*REFRESHES;
    Metrics::inc(&stats.counts[cause as usize][usize::from(!ok)]);
    stats.duration.observe(took.as_secs_f64());
    if ok {
        if let Ok(mut last) = stats.last_ok.lock() {
            *last = Some(Instant::now());
        }
    }
}

/// Seconds since a refresh last succeeded (`None` before the first).
pub fn slot_table_age() -> Option<f64> {
    let last = *REFRESHES.last_ok.lock().ok()?;
    last.map(|at| at.elapsed().as_secs_f64())
}

/// The `/metrics` registry: one collector that reads everything at scrape time.
pub fn registry(shared: Arc<Shared>, health: Arc<Health>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SlotgateCollector { shared, health }));
    registry
}

/// The registry's metrics as OpenMetrics text.
pub fn encode_openmetrics(registry: &Registry) -> String {
    let mut out = String::with_capacity(16 * 1024);
    // Writing to a String cannot fail; a collector's error would leave a partial text.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

/// OpenMetrics text (as prometheus-client writes it) in the classic Prometheus text
/// format 0.0.4: a counter `foo` is declared as `foo_total` like its samples, and the
/// `# UNIT` and `# EOF` lines are dropped. Samples pass as they are.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line.starts_with("# HELP ") {
            if let Some(previous) = help.replace(line) {
                out.push_str(previous);
                out.push('\n');
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let counter = kind == "counter" && !name.ends_with("_total");
            if let Some(h) = help.take() {
                match h["# HELP ".len()..].split_once(' ') {
                    Some((n, text)) if counter && n == name => {
                        let _ = writeln!(out, "# HELP {name}_total {text}");
                    }
                    _ => {
                        out.push_str(h);
                        out.push('\n');
                    }
                }
            }
            if counter {
                let _ = writeln!(out, "# TYPE {name}_total counter");
            } else {
                out.push_str(line);
                out.push('\n');
            }
            continue;
        }
        if let Some(h) = help.take() {
            out.push_str(h);
            out.push('\n');
        }
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if let Some(h) = help {
        out.push_str(h);
        out.push('\n');
    }
    out
}

/// Reads the workers' counters, the process-wide ones, the node registry and the
/// prober's results at each scrape.
struct SlotgateCollector {
    shared: Arc<Shared>,
    health: Arc<Health>,
}

impl std::fmt::Debug for SlotgateCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SlotgateCollector")
    }
}

type Enc<'a> = DescriptorEncoder<'a>;
type Res = Result<(), std::fmt::Error>;

fn counter(enc: &mut Enc, name: &str, help: &str, value: u64) -> Res {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    m.encode_counter::<NoLabelSet, _, u64>(&value, None)
}

fn counters<L: EncodeLabelSet>(
    enc: &mut Enc,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, u64)>,
) -> Res {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in rows {
        m.encode_family(&labels)?
            .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
    }
    Ok(())
}

fn gauge(enc: &mut Enc, name: &str, help: &str, value: f64) -> Res {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    m.encode_gauge(&value)
}

fn gauges<L: EncodeLabelSet>(
    enc: &mut Enc,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, f64)>,
) -> Res {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in rows {
        m.encode_family(&labels)?.encode_gauge(&value)?;
    }
    Ok(())
}

fn histograms<'t, L: EncodeLabelSet>(
    enc: &mut Enc,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, &'t LatencyTotal)>,
) -> Res {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, latency) in rows {
        let mut buckets: Vec<(f64, u64)> = LATENCY_BOUNDS_US
            .iter()
            .zip(&latency.buckets)
            .map(|(&bound, &n)| (bound as f64 / 1e6, n))
            .collect();
        buckets.push((f64::MAX, latency.buckets[LATENCY_BOUNDS_US.len()]));
        m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
            latency.sum_us as f64 / 1e6,
            latency.count(),
            &buckets,
            None,
        )?;
    }
    Ok(())
}

impl Collector for SlotgateCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let shared = &self.shared;
        let total = shared.stats_total();
        let e = &mut enc;
        let at = |c: &AtomicU64| c.load(Relaxed);

        gauges(
            e,
            "slotgate_build_info",
            "Always 1; the labels say which slotgate this is.",
            [([("version", env!("CARGO_PKG_VERSION"))], 1.0)],
        )?;
        gauge(
            e,
            "slotgate_uptime_seconds",
            "Seconds since this slotgate started.",
            shared.started.elapsed().as_secs_f64(),
        )?;
        gauge(
            e,
            "slotgate_workers",
            "Worker threads serving clients.",
            total.workers as f64,
        )?;

        // Requests.
        counters(
            e,
            "slotgate_requests",
            "Requests read from clients, by command class.",
            RequestClass::ALL.map(|c| ([("class", c.name())], total.requests_by_class[c as usize])),
        )?;
        let errors = RequestClass::ALL.into_iter().flat_map(|c| {
            ErrorKind::ALL.map(|k| {
                (
                    [("class", c.name()), ("kind", k.name())],
                    total.errors[c as usize][k as usize],
                )
            })
        });
        counters(
            e,
            "slotgate_errors",
            "Error replies sent to clients, by command class and kind: reply (a node's error \
             passed on), node (no usable reply from the cluster), proxy (slotgate gave up), \
             client (refused before any node saw it).",
            errors,
        )?;
        histograms(
            e,
            "slotgate_request_duration_seconds",
            "Time from sending a request to a node until its reply is in, redirects and \
             retries included, by command class; one request in 16 per worker is timed.",
            RequestClass::ALL
                .iter()
                .map(|&c| ([("class", c.name())], &total.latency[c as usize])),
        )?;
        histograms(
            e,
            "slotgate_node_request_duration_seconds",
            "Time from sending a request until its reply is read, by the node that \
             answered; one request in 16 per worker is timed.",
            total
                .node_latency
                .iter()
                .map(|(addr, latency)| ([("node", addr.as_str())], latency)),
        )?;
        counters(
            e,
            "slotgate_redirects",
            "Redirects and retries nodes asked for, by kind (moved, ask, tryagain, \
             clusterdown); clients never see them.",
            Redirect::ALL.map(|k| ([("kind", k.name())], total.redirects[k as usize])),
        )?;
        counter(
            e,
            "slotgate_retries_unreachable",
            "Requests retried because their node could not be reached.",
            at(&METRICS.retries_unreachable),
        )?;
        counter(
            e,
            "slotgate_replica_read_fallbacks",
            "Reads meant for a replica sent to the master instead (replica unreachable, \
             connection lost, or reply later than replica_timeout_ms).",
            at(&METRICS.replica_read_fallbacks),
        )?;
        counter(
            e,
            "slotgate_scripts_healed",
            "EVALSHA requests a node answered NOSCRIPT, sent again with the script.",
            at(&METRICS.scripts_healed),
        )?;
        counter(
            e,
            "slotgate_pubsub_resubscribes",
            "Subscriptions made again at a node after losing them.",
            at(&METRICS.pubsub_resubscribes),
        )?;

        // Bytes.
        counter(
            e,
            "slotgate_client_received_bytes",
            "Bytes read from clients.",
            total.bytes_in,
        )?;
        counter(
            e,
            "slotgate_client_sent_bytes",
            "Bytes written to clients.",
            total.bytes_out,
        )?;
        counter(
            e,
            "slotgate_client_writes",
            "Writes of replies to clients (each carries every reply ready in one turn).",
            total.client_writes,
        )?;
        counter(
            e,
            "slotgate_node_writes",
            "Writes to node connections (each carries every request queued in one turn).",
            total.backend_writes,
        )?;
        gauge(
            e,
            "slotgate_client_output_bytes",
            "Bytes of replies held for clients that have not read them yet.",
            total.output_bytes as f64,
        )?;

        // Client connections.
        gauge(
            e,
            "slotgate_client_connections",
            "Client connections open.",
            at(&METRICS.connections_open) as f64,
        )?;
        counter(
            e,
            "slotgate_client_connections_accepted",
            "Client connections accepted.",
            at(&METRICS.connections_total),
        )?;
        counter(
            e,
            "slotgate_client_connections_rejected",
            "Client connections refused because max_clients or max_clients_per_ip was reached.",
            at(&METRICS.connections_rejected),
        )?;
        counters(
            e,
            "slotgate_client_connections_closed_over_limit",
            "Clients closed for holding too many unread replies: output_buffer \
             (limits.max_output_buffer), output_total (limits.max_output_total).",
            [
                (
                    [("limit", "output_buffer")],
                    at(&METRICS.clients_over_output_limit),
                ),
                (
                    [("limit", "output_total")],
                    at(&METRICS.clients_over_output_total),
                ),
            ],
        )?;
        gauge(
            e,
            "slotgate_blocked_clients",
            "Clients waiting in a blocking command.",
            at(&METRICS.blocked_clients) as f64,
        )?;
        gauge(
            e,
            "slotgate_pinned_waiting",
            "Requests waiting for a pinned connection to free (a cap is reached).",
            at(&METRICS.pinned_waiting) as f64,
        )?;

        // Node connections.
        gauges(
            e,
            "slotgate_node_connections",
            "Connections to nodes open, by kind: shared (multiplexed, per worker and node), \
             pinned (to one client: blocking commands, transactions), subscriber (pub/sub).",
            [
                ([("kind", "shared")], total.shared_connections as f64),
                ([("kind", "pinned")], at(&METRICS.pinned_connections) as f64),
                (
                    [("kind", "subscriber")],
                    at(&METRICS.subscriber_connections) as f64,
                ),
            ],
        )?;
        let nodes = shared.registry.snapshot();
        counters(
            e,
            "slotgate_node_connects",
            "Connections opened to each node (handshake done).",
            nodes
                .iter()
                .map(|n| ([("node", n.addr.as_str())], at(&n.connects))),
        )?;
        counters(
            e,
            "slotgate_node_connect_failures",
            "Failed attempts to connect to each node.",
            nodes
                .iter()
                .map(|n| ([("node", n.addr.as_str())], at(&n.connect_failures))),
        )?;
        counter(
            e,
            "slotgate_node_connections_lost",
            "Node connections that died with requests in flight.",
            at(&METRICS.backend_connections_lost),
        )?;

        // Topology.
        let table = shared.table.load();
        let refreshes = RefreshCause::ALL.into_iter().flat_map(|c| {
            [("ok", 0), ("failed", 1)].map(|(result, i)| {
                (
                    [("cause", c.name()), ("result", result)],
                    at(&REFRESHES.counts[c as usize][i]),
                )
            })
        });
        counters(
            e,
            "slotgate_topology_refreshes",
            "Topology refreshes, by what asked for them and whether a topology was \
             learned.",
            refreshes,
        )?;
        REFRESHES.duration.encode(e.encode_descriptor(
            "slotgate_topology_refresh_duration_seconds",
            "How long topology refreshes took.",
            None,
            MetricType::Histogram,
        )?)?;
        gauge(
            e,
            "slotgate_slot_table_age_seconds",
            "Seconds since a topology refresh last succeeded (NaN before the first).",
            slot_table_age().unwrap_or(f64::NAN),
        )?;
        gauge(
            e,
            "slotgate_slots_unserved",
            "Slots no known node serves (0 when the slot table is complete).",
            table.unserved() as f64,
        )?;
        gauge(
            e,
            "slotgate_cluster_masters",
            "Masters in the slot table.",
            table.shards().len() as f64,
        )?;
        let probes = self.health.snapshot();
        gauges(
            e,
            "slotgate_node_up",
            "1 when the node answered slotgate's last PING probe, 0 when it did not.",
            probes.iter().map(|(addr, role, probe)| {
                (
                    [("node", addr.as_str()), ("role", *role)],
                    if probe.ok { 1.0 } else { 0.0 },
                )
            }),
        )?;
        counters(
            e,
            "slotgate_config_reloads",
            "Configuration reloads (SIGHUP, POST /reload), by result: ok (applied), error \
             (a bad file, refused: the configuration in force stayed).",
            [
                ([("result", "ok")], at(&METRICS.config_reloads_ok)),
                ([("result", "error")], at(&METRICS.config_reloads_failed)),
            ],
        )?;
        gauge(
            e,
            "slotgate_config_last_reload_successful",
            "0 when the last configuration reload was refused, else 1 (also before any).",
            if at(&METRICS.config_last_reload_failed) == 0 {
                1.0
            } else {
                0.0
            },
        )?;
        gauge(
            e,
            "slotgate_config_last_reload_timestamp_seconds",
            "When the last configuration reload was tried (Unix time; 0 before any).",
            at(&METRICS.config_last_reload_unix) as f64,
        )?;
        gauge(
            e,
            "slotgate_ready",
            "1 when /readyz says ready (slot table complete, every master reachable).",
            if super::status::readiness(shared, &self.health).is_ok() {
                1.0
            } else {
                0.0
            },
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_declared_with_their_total_suffix() {
        let open = "# HELP a_requests Requests.\n# TYPE a_requests counter\n\
                    a_requests_total{class=\"read\"} 3\n\
                    # HELP a_open Open.\n# TYPE a_open gauge\na_open 5\n\
                    # HELP a_d_seconds D.\n# TYPE a_d_seconds histogram\n# UNIT a_d_seconds seconds\n\
                    a_d_seconds_sum 0.5\n# EOF\n";
        let text = to_prometheus_text(open);
        assert_eq!(
            text,
            "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\n\
             a_requests_total{class=\"read\"} 3\n\
             # HELP a_open Open.\n# TYPE a_open gauge\na_open 5\n\
             # HELP a_d_seconds D.\n# TYPE a_d_seconds histogram\na_d_seconds_sum 0.5\n"
        );
    }

    #[test]
    fn refresh_causes_merge_and_take_the_first_in_precedence() {
        let causes = RefreshCauses::default();
        assert_eq!(causes.take(), None);
        causes.note(RefreshCause::PubSub);
        causes.note(RefreshCause::Moved);
        causes.note(RefreshCause::Moved);
        assert_eq!(causes.take(), Some(RefreshCause::Moved));
        assert_eq!(causes.take(), None, "taking clears them");
    }
}
