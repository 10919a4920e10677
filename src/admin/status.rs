//! What the admin port says about the cluster as slotgate sees it: readiness
//! ([`readiness`]), the node prober that feeds it ([`probe_nodes`]: a `PING` to every
//! node each second, on a connection of its own), and the status page's data
//! ([`status`]). Control plane only: nothing here runs on a worker thread.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis_protocol::resp2::types::BytesFrame;
use serde::Serialize;

use super::metrics::slot_table_age;
use super::{Redirect, RequestClass, METRICS};
use crate::backend::control;
use crate::cluster::NodeAddr;
use crate::shared::Shared;
use crate::slot::SLOT_COUNT;

/// How often every node is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// The status page asks the masters for their migrating slots at most this often.
const MIGRATIONS_MAX_AGE: Duration = Duration::from_secs(2);

/// One node's last probe.
#[derive(Clone, Debug)]
pub struct Probe {
    pub ok: bool,
    /// "master" or "replica", as the slot table said when it was probed.
    pub role: &'static str,
    pub rtt: Duration,
    /// Why it failed.
    pub error: Option<String>,
}

/// A slot on its way from one master to another, as the master holding it says
/// (`CLUSTER NODES`: `[slot->-id]` on the source, `[slot-<-id]` on the target).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Migration {
    pub slot: u16,
    /// The node that said so (as the slot table names it).
    pub node: String,
    /// `migrating` (leaving `node`) or `importing` (coming to `node`).
    pub state: &'static str,
    /// The other end, as `CLUSTER NODES` names it (`ip:port`), or its id if unknown.
    pub peer: String,
}

/// What the prober learned. Written by the prober task and the status handler, read
/// by `/readyz`, `/metrics` and the status page: all on the control runtime, never on
/// the request path.
#[derive(Default)]
pub struct Health {
    probes: Mutex<HashMap<NodeAddr, Probe>>,
    /// When the masters were last asked for their migrating slots, and what they said.
    migrations: Mutex<Option<(Instant, Vec<Migration>)>>,
}

impl Health {
    pub fn probe_of(&self, addr: &NodeAddr) -> Option<Probe> {
        self.probes.lock().ok()?.get(addr).cloned()
    }

    /// Every node probed, sorted by address.
    pub fn snapshot(&self) -> Vec<(NodeAddr, &'static str, Probe)> {
        let Ok(probes) = self.probes.lock() else {
            return Vec::new();
        };
        let mut all: Vec<_> = probes
            .iter()
            .map(|(addr, p)| (addr.clone(), p.role, p.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

/// Ready to serve: the workers run, every slot has a master, and every master
/// answered its last probe. Otherwise why not (the text `/readyz` answers with).
pub fn readiness(shared: &Shared, health: &Health) -> Result<(), String> {
    if shared.workers.get().is_none() {
        return Err("starting: learning the cluster's topology".to_string());
    }
    let table = shared.table.load();
    let unserved = table.unserved();
    if unserved > 0 {
        return Err(format!(
            "slot table incomplete: {unserved} of {SLOT_COUNT} slots have no master"
        ));
    }
    for master in table.masters() {
        match health.probe_of(master) {
            None => return Err(format!("master {master} not probed yet")),
            Some(Probe {
                ok: false, error, ..
            }) => {
                let why = error.unwrap_or_default();
                return Err(format!("master {master} unreachable: {why}"));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The prober: every [`PROBE_INTERVAL`], a `PING` to every node of the slot table (on
/// a control-plane connection of its own, within the connect timeout plus a second),
/// all at once. Runs for the life of the process.
pub async fn probe_nodes(shared: Arc<Shared>, health: Arc<Health>) {
    loop {
        let nodes: Vec<(NodeAddr, &'static str)> = {
            let table = shared.table.load();
            let masters = table.masters().map(|a| (a.clone(), "master"));
            masters
                .chain(table.replicas().map(|a| (a.clone(), "replica")))
                .collect()
        };
        let limit = shared.config.load_full().backend.connect_timeout + Duration::from_secs(1);
        let mut probes = tokio::task::JoinSet::new();
        for (addr, role) in nodes.iter().cloned() {
            let shared = Arc::clone(&shared);
            probes.spawn(async move {
                let config = shared.config.load_full();
                let dial = config.dial_addr(&addr);
                let started = Instant::now();
                let answer =
                    tokio::time::timeout(limit, control::query(dial, &config.backend, &[b"PING"]))
                        .await;
                let error = match answer {
                    Ok(Ok(BytesFrame::SimpleString(_))) => None,
                    Ok(Ok(BytesFrame::Error(text))) => Some(text.to_string()),
                    Ok(Ok(other)) => Some(format!("unexpected reply {other:?}")),
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(_) => Some(format!("no answer within {limit:?}")),
                };
                let probe = Probe {
                    ok: error.is_none(),
                    role,
                    rtt: started.elapsed(),
                    error,
                };
                (addr, probe)
            });
        }
        let mut results = HashMap::new();
        while let Some(done) = probes.join_next().await {
            if let Ok((addr, probe)) = done {
                results.insert(addr, probe);
            }
        }
        if let Ok(mut probes) = health.probes.lock() {
            for (addr, probe) in &results {
                let was_ok = probes.get(addr).map(|p| p.ok);
                if was_ok != Some(probe.ok) && (was_ok.is_some() || !probe.ok) {
                    match &probe.error {
                        None => {
                            tracing::info!(node = %addr, role = probe.role, "node answers probes again")
                        }
                        Some(e) => {
                            tracing::warn!(node = %addr, role = probe.role, error = %e, "node does not answer probes")
                        }
                    }
                }
            }
            *probes = results;
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

/// The migrating and importing slots `CLUSTER NODES` shows on its `myself` line, with
/// the other end named by the address the same text gives it. `node` names the node
/// asked. Pure.
pub fn parse_migrations(text: &str, node: &str) -> Vec<Migration> {
    let mut addr_of: HashMap<&str, &str> = HashMap::new();
    let mut myself: Option<&str> = None;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(id), Some(addr), Some(flags)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let addr = addr.split(['@', ',']).next().unwrap_or(addr);
        addr_of.insert(id, addr);
        if flags.split(',').any(|f| f == "myself") {
            myself = Some(line);
        }
    }
    let Some(line) = myself else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for field in line.split_whitespace().skip(8) {
        let Some(inner) = field.strip_prefix('[').and_then(|f| f.strip_suffix(']')) else {
            continue;
        };
        let (slot, state, peer) = if let Some((slot, peer)) = inner.split_once("->-") {
            (slot, "migrating", peer)
        } else if let Some((slot, peer)) = inner.split_once("-<-") {
            (slot, "importing", peer)
        } else {
            continue;
        };
        let Ok(slot) = slot.parse::<u16>() else {
            continue;
        };
        if usize::from(slot) >= SLOT_COUNT {
            continue;
        }
        out.push(Migration {
            slot,
            node: node.to_string(),
            state,
            peer: addr_of.get(peer).copied().unwrap_or(peer).to_string(),
        });
    }
    out
}

/// The slots on their way between masters: asked of every master (`CLUSTER NODES`) at
/// most every [`MIGRATIONS_MAX_AGE`], while someone looks at the status page.
async fn migrations(shared: &Arc<Shared>, health: &Health) -> Vec<Migration> {
    if let Ok(cached) = health.migrations.lock() {
        if let Some((at, found)) = cached.as_ref() {
            if at.elapsed() < MIGRATIONS_MAX_AGE {
                return found.clone();
            }
        }
    }
    let masters: Vec<NodeAddr> = shared.table.load().masters().cloned().collect();
    let limit = shared.config.load_full().backend.connect_timeout + Duration::from_secs(1);
    let mut asks = tokio::task::JoinSet::new();
    for addr in masters {
        let shared = Arc::clone(shared);
        asks.spawn(async move {
            let config = shared.config.load_full();
            let ask = control::query(
                config.dial_addr(&addr),
                &config.backend,
                &[b"CLUSTER", b"NODES"],
            );
            match tokio::time::timeout(limit, ask).await {
                Ok(Ok(BytesFrame::BulkString(text))) => {
                    parse_migrations(&String::from_utf8_lossy(&text), addr.as_str())
                }
                _ => Vec::new(),
            }
        });
    }
    let mut found = Vec::new();
    while let Some(done) = asks.join_next().await {
        found.extend(done.unwrap_or_default());
    }
    found.sort_by(|a, b| (a.slot, a.state).cmp(&(b.slot, b.state)));
    if let Ok(mut cached) = health.migrations.lock() {
        *cached = Some((Instant::now(), found.clone()));
    }
    found
}

/// `/status.json`: what the status page draws.
#[derive(Serialize)]
pub struct Status {
    pub version: &'static str,
    pub uptime_seconds: f64,
    pub ready: bool,
    /// Why not ready.
    pub reason: Option<String>,
    pub workers: usize,
    /// Seconds since a topology refresh last succeeded.
    pub slot_table_age_seconds: Option<f64>,
    pub unserved_slots: usize,
    /// Each master followed by its replicas.
    pub nodes: Vec<NodeStatus>,
    /// `[first slot, last slot, index in nodes]`, in slot order.
    pub ranges: Vec<(u16, u16, usize)>,
    pub migrating: Vec<Migration>,
    pub counters: Counters,
}

#[derive(Serialize)]
pub struct NodeStatus {
    pub addr: String,
    /// Where slotgate dials it (after `[address_map]`).
    pub dial: String,
    pub role: &'static str,
    /// A replica's master.
    pub master: Option<String>,
    pub slots: usize,
    /// `up` (answers probes, connects), `down`, or `unknown` (not probed yet).
    pub health: &'static str,
    pub rtt_ms: Option<f64>,
    pub error: Option<String>,
}

/// Totals since start; the page turns them into rates.
#[derive(Serialize)]
pub struct Counters {
    pub requests: u64,
    pub errors: u64,
    pub redirects: u64,
    pub by_class: Vec<(&'static str, u64)>,
    pub redirects_by_kind: Vec<(&'static str, u64)>,
    pub clients: u64,
    pub received_bytes: u64,
    pub sent_bytes: u64,
}

/// What the status page shows now.
pub async fn status(shared: &Arc<Shared>, health: &Health) -> Status {
    let migrating = migrations(shared, health).await;
    let table = shared.table.load_full();
    let mut nodes = Vec::new();
    let mut index_of: HashMap<&NodeAddr, usize> = HashMap::new();
    let mut slots: HashMap<&NodeAddr, usize> = HashMap::new();
    let ranges = table.ranges();
    for (first, last, owner) in &ranges {
        *slots.entry(owner).or_default() += usize::from(last - first) + 1;
    }
    // Nodes a worker failed to connect to moments ago.
    let down: Vec<NodeAddr> = (shared.registry.snapshot().into_iter())
        .filter(|n| n.is_down())
        .map(|n| n.addr.clone())
        .collect();
    let node = |addr: &NodeAddr, role, master: Option<&NodeAddr>, slots: usize| {
        let probe = health.probe_of(addr);
        let down = down.contains(addr);
        let health = match &probe {
            None => "unknown",
            Some(p) if p.ok && !down => "up",
            Some(_) => "down",
        };
        NodeStatus {
            addr: addr.to_string(),
            dial: shared.config.load_full().dial_addr(addr).to_string(),
            role,
            master: master.map(NodeAddr::to_string),
            slots,
            health,
            rtt_ms: probe.as_ref().map(|p| p.rtt.as_secs_f64() * 1e3),
            error: probe.and_then(|p| p.error),
        }
    };
    for shard in table.shards() {
        index_of.insert(&shard.master, nodes.len());
        let owned = slots.get(&shard.master).copied().unwrap_or(0);
        nodes.push(node(&shard.master, "master", None, owned));
        for replica in &shard.replicas {
            nodes.push(node(replica, "replica", Some(&shard.master), 0));
        }
    }
    let ranges = ranges
        .iter()
        .filter_map(|(first, last, owner)| Some((*first, *last, *index_of.get(owner)?)))
        .collect();
    let total = shared.stats_total();
    let ready = readiness(shared, health);
    Status {
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: shared.started.elapsed().as_secs_f64(),
        ready: ready.is_ok(),
        reason: ready.err(),
        workers: total.workers,
        slot_table_age_seconds: slot_table_age(),
        unserved_slots: table.unserved(),
        nodes,
        ranges,
        migrating,
        counters: Counters {
            requests: total.requests,
            errors: total.errors_total(),
            redirects: total.redirects.iter().sum(),
            by_class: RequestClass::ALL
                .iter()
                .map(|&c| (c.name(), total.requests_by_class[c as usize]))
                .collect(),
            redirects_by_kind: Redirect::ALL
                .iter()
                .map(|&k| (k.name(), total.redirects[k as usize]))
                .collect(),
            clients: METRICS
                .connections_open
                .load(std::sync::atomic::Ordering::Relaxed),
            received_bytes: total.bytes_in,
            sent_bytes: total.bytes_out,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `CLUSTER NODES` of a master in the middle of moving slot 12182 away, and of the
    /// master importing it (Redis 7.0 format, with a hostname on one node).
    const SOURCE: &str = "\
1bccc6bbd26ea507024e72b04c1445652f21d58e 127.0.0.1:27003@37003 myself,master - 0 0 3 connected 10923-16383 [12182->-15ead326a758895f034c3f3f497b0cef6cff2637]
15ead326a758895f034c3f3f497b0cef6cff2637 127.0.0.1:27001@37001,node-1.example master - 0 1700000000000 1 connected 0-5460
793e2fd25e157f32342e5351e6ddb0c1cdc31f48 127.0.0.1:27002@37002 master - 0 1700000000000 2 connected 5461-10922
";
    const TARGET: &str = "\
15ead326a758895f034c3f3f497b0cef6cff2637 127.0.0.1:27001@37001 myself,master - 0 0 1 connected 0-5460 [12182-<-1bccc6bbd26ea507024e72b04c1445652f21d58e]
1bccc6bbd26ea507024e72b04c1445652f21d58e 127.0.0.1:27003@37003 master - 0 1700000000000 3 connected 10923-16383
";

    #[test]
    fn migrating_and_importing_slots_name_the_other_end() {
        assert_eq!(
            parse_migrations(SOURCE, "127.0.0.1:27003"),
            vec![Migration {
                slot: 12182,
                node: "127.0.0.1:27003".into(),
                state: "migrating",
                peer: "127.0.0.1:27001".into(),
            }]
        );
        assert_eq!(
            parse_migrations(TARGET, "127.0.0.1:27001"),
            vec![Migration {
                slot: 12182,
                node: "127.0.0.1:27001".into(),
                state: "importing",
                peer: "127.0.0.1:27003".into(),
            }]
        );
    }

    #[test]
    fn nothing_moving_or_nothing_parsable_gives_nothing() {
        let still = SOURCE.replace(" [12182->-15ead326a758895f034c3f3f497b0cef6cff2637]", "");
        assert!(parse_migrations(&still, "a:1").is_empty());
        assert!(parse_migrations("", "a:1").is_empty());
        assert!(parse_migrations("garbage\n[1->-x]\n", "a:1").is_empty());
        let bad = SOURCE.replace("[12182->-", "[99999->-");
        assert!(parse_migrations(&bad, "a:1").is_empty());
    }
}
