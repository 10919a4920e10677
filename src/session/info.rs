//! `INFO [section ...]`, as a standalone Redis 7 gives it: sections by name
//! (case-insensitive; `default`, `all`, `everything`), with the fields that make sense
//! for a proxy in front of a cluster. Fields about the data (`used_memory`,
//! `total_commands_processed`, `db0:keys=...`) are summed over the masters, asked with
//! one `INFO memory stats keyspace` each when a requested section needs them; fields
//! about connections and CPU are slotgate's own. `# Cluster` says `cluster_enabled:0`:
//! a plain client sees one server. slotgate's own counters are in `# Proxy` and its view
//! of the nodes in `# Nodes`.

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;

use super::{Combine, Session};
use crate::admin::METRICS;
use crate::backend::Target;
use crate::dispatch::merge::{node_sums, NodeSums};
use crate::dispatch::Worker;
use crate::protocol::reply::encode_command;
use crate::protocol::scan::Request;

/// Every section slotgate has, in the order it writes them.
const SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "cluster",
    "keyspace",
    "proxy",
    "nodes",
];

/// Sections whose fields come from the masters.
const FROM_NODES: &[&str] = &["memory", "stats", "keyspace"];

impl Session {
    /// `INFO [section ...]`: ask the masters when a section needs their figures, else
    /// answer at once.
    pub(super) fn info(&mut self, w: &mut Worker, req: &Request) {
        let sections = sections(req);
        if !sections.iter().any(|s| FROM_NODES.contains(&s.as_str())) {
            let text = self.render_info(&sections, None);
            return self.push_local(|w| w.verbatim(&text));
        }
        let bytes: Bytes = encode_command(&[b"INFO", b"memory", b"stats", b"keyspace"]).freeze();
        let parts: Vec<(Bytes, Target)> = w
            .every_node(false)
            .into_iter()
            .map(|(target, _)| (bytes.clone(), target))
            .collect();
        if parts.is_empty() {
            let text = self.render_info(&sections, Some(&node_sums(&[])));
            return self.push_local(|w| w.verbatim(&text));
        }
        self.gather(w, Combine::Info(sections), parts);
    }

    /// The text of `sections`, with the masters' figures when they were asked.
    pub(super) fn render_info(&self, sections: &[String], nodes: Option<&NodeSums>) -> String {
        let empty = node_sums(&[]);
        let nodes = nodes.unwrap_or(&empty);
        let mut out = String::new();
        for section in sections {
            if !out.is_empty() {
                out.push_str("\r\n");
            }
            match section.as_str() {
                "server" => self.info_server(&mut out),
                "clients" => info_clients(&mut out, self.config.max_clients),
                "memory" => info_memory(&mut out, nodes),
                "persistence" => out.push_str("# Persistence\r\nloading:0\r\nasync_loading:0\r\n"),
                "stats" => info_stats(&mut out, nodes),
                "replication" => out.push_str(
                    "# Replication\r\nrole:master\r\nconnected_slaves:0\r\nmaster_failover_state:no-failover\r\n",
                ),
                "cpu" => info_cpu(&mut out),
                "cluster" => self.info_cluster(&mut out, nodes),
                "keyspace" => info_keyspace(&mut out, nodes),
                "proxy" => METRICS.info_section(&mut out, &self.shared.stats_total()),
                "nodes" => self.shared.registry.info_section(&mut out),
                _ => {}
            }
        }
        out
    }

    fn info_server(&self, out: &mut String) {
        let uptime = self.shared.started.elapsed().as_secs();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        let _ = write!(
            out,
            "# Server\r\nredis_version:{}\r\nredis_mode:standalone\r\nslotgate_version:{}\r\nos:{} {}\r\narch_bits:{}\r\nmultiplexing_api:epoll\r\nprocess_id:{}\r\nrun_id:{}\r\ntcp_port:{}\r\nserver_time_usec:{now}\r\nuptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\nexecutable:{}\r\n",
            self.server_version(),
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::env::consts::ARCH,
            usize::BITS,
            std::process::id(),
            self.shared.run_id,
            self.local_addr.port(),
            uptime / 86_400,
            std::env::current_exe().map_or_else(|_| String::new(), |p| p.display().to_string()),
        );
    }

    fn info_cluster(&self, out: &mut String, nodes: &NodeSums) {
        let table = self.shared.table.load();
        let _ = write!(
            out,
            "# Cluster\r\ncluster_enabled:0\r\nslotgate_masters:{}\r\nslotgate_unserved_slots:{}\r\nslotgate_importing_slots:{}\r\nslotgate_learned_commands:{}\r\nslotgate_info_nodes:{}\r\nslotgate_info_nodes_failed:{}\r\n",
            table.masters().count(),
            table.unserved(),
            table.importing().len(),
            self.shared.learned.get().map_or(0, |l| l.len()),
            nodes.nodes,
            nodes.failed,
        );
    }
}

/// The sections `INFO` was asked for, in slotgate's order: the default set without
/// arguments or with `default`, every one with `all` or `everything`.
fn sections(req: &Request) -> Vec<String> {
    let asked: Vec<String> = (1..req.argc())
        .map(|i| String::from_utf8_lossy(req.arg(i)).to_ascii_lowercase())
        .collect();
    let all = asked.is_empty()
        || asked
            .iter()
            .any(|s| matches!(s.as_str(), "default" | "all" | "everything"));
    SECTIONS
        .iter()
        .filter(|s| all || asked.iter().any(|a| a == *s))
        .map(|s| s.to_string())
        .collect()
}

fn info_clients(out: &mut String, max_clients: usize) {
    let _ = write!(
        out,
        "# Clients\r\nconnected_clients:{}\r\ncluster_connections:0\r\nmaxclients:{max_clients}\r\nblocked_clients:{}\r\ntracking_clients:0\r\n",
        METRICS.connections_open.load(Relaxed),
        METRICS.blocked_clients.load(Relaxed),
    );
}

/// A sum over the masters (0 when none answered).
fn sum(nodes: &NodeSums, field: &str) -> u64 {
    nodes.get(field).unwrap_or(0)
}

fn info_memory(out: &mut String, nodes: &NodeSums) {
    let used = sum(nodes, "used_memory");
    let peak = sum(nodes, "used_memory_peak");
    let _ = write!(
        out,
        "# Memory\r\nused_memory:{used}\r\nused_memory_human:{}\r\nused_memory_peak:{peak}\r\nused_memory_peak_human:{}\r\nused_memory_dataset:{}\r\nslotgate_used_memory_rss:{}\r\n",
        human(used),
        human(peak),
        sum(nodes, "used_memory_dataset"),
        own_rss(),
    );
}

fn info_stats(out: &mut String, nodes: &NodeSums) {
    let _ = write!(
        out,
        "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\ninstantaneous_ops_per_sec:{}\r\ntotal_net_input_bytes:{}\r\ntotal_net_output_bytes:{}\r\nrejected_connections:{}\r\nexpired_keys:{}\r\nevicted_keys:{}\r\nkeyspace_hits:{}\r\nkeyspace_misses:{}\r\n",
        METRICS.connections_total.load(Relaxed),
        sum(nodes, "total_commands_processed"),
        sum(nodes, "instantaneous_ops_per_sec"),
        sum(nodes, "total_net_input_bytes"),
        sum(nodes, "total_net_output_bytes"),
        METRICS.connections_rejected.load(Relaxed),
        sum(nodes, "expired_keys"),
        sum(nodes, "evicted_keys"),
        sum(nodes, "keyspace_hits"),
        sum(nodes, "keyspace_misses"),
    );
}

fn info_keyspace(out: &mut String, nodes: &NodeSums) {
    out.push_str("# Keyspace\r\n");
    if nodes.keys > 0 {
        let _ = write!(
            out,
            "db0:keys={},expires={},avg_ttl={}\r\n",
            nodes.keys, nodes.expires, nodes.avg_ttl
        );
    }
}

/// slotgate's own CPU time, from /proc/self/stat (Linux; zeros elsewhere).
fn info_cpu(out: &mut String) {
    let (user, sys) = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // Fields after the command name (which may hold spaces) in parentheses;
            // utime and stime are the 14th and 15th, in ticks of 1/100 s.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
            Some((ticks(11)?, ticks(12)?))
        })
        .unwrap_or((0, 0));
    let secs = |ticks: u64| format!("{}.{:06}", ticks / 100, (ticks % 100) * 10_000);
    let _ = write!(
        out,
        "# CPU\r\nused_cpu_sys:{}\r\nused_cpu_user:{}\r\n",
        secs(sys),
        secs(user)
    );
}

/// slotgate's resident memory in bytes (Linux; 0 elsewhere).
fn own_rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Bytes as Redis writes them for people: `1023B`, `1.50K`, `2.00M`, `1.25G`.
fn human(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..=1023 => format!("{bytes}B"),
        1024..=1_048_575 => format!("{:.2}K", b / 1024.0),
        1_048_576..=1_073_741_823 => format!("{:.2}M", b / 1_048_576.0),
        _ => format!("{:.2}G", b / 1_073_741_824.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_follow_the_arguments() {
        let req = |args: &[&str]| Request::from_args(args);
        assert_eq!(sections(&req(&["INFO"])).len(), SECTIONS.len());
        assert_eq!(sections(&req(&["info", "ALL"])).len(), SECTIONS.len());
        assert_eq!(
            sections(&req(&["INFO", "keyspace", "Server"])),
            vec!["server".to_string(), "keyspace".to_string()],
            "in slotgate's order, case-insensitive"
        );
        assert!(sections(&req(&["INFO", "nosuch"])).is_empty());
    }

    #[test]
    fn human_sizes_read_as_redis_writes_them() {
        assert_eq!(human(1000), "1000B");
        assert_eq!(human(1536), "1.50K");
        assert_eq!(human(2 * 1024 * 1024), "2.00M");
    }
}
