//! Keeps the slot table fresh: at start-up, periodically, and whenever a redirect or a
//! failure asks for it. Refreshes are merged and rate-limited; the new table is built
//! off to the side and swapped in, no lock held across network calls. Each refresh
//! asks several nodes at once and merges their views (`gather`); every change of a
//! slot's owner is logged (`owners`).

mod gather;
mod owners;

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis_protocol::resp2::types::OwnedFrame;

use crate::admin::metrics::{self, RefreshCause};
use crate::admin::{Metrics, METRICS};
use crate::backend::control::{self, ControlError};
use crate::cluster::table::SlotTable;
use crate::cluster::topology::{format_slot_ranges, importing_slots, Topology, TopologyError};
use crate::cluster::NodeAddr;
use crate::command::learned::LearnedCommands;
use crate::shared::Shared;

/// At most one refresh per this interval, however many are asked for.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("no cluster node answered ({0})")]
    NoAnswer(String),
    #[error("slots {0} are not served by any node")]
    Uncovered(String),
}

/// Why one node gave no topology (or no answer to another query).
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("backend {addr}: {source}")]
    Node {
        addr: NodeAddr,
        source: ControlError,
    },
    /// The node answered both `CLUSTER SHARDS` and `CLUSTER SLOTS` with an error.
    #[error("backend {addr}: CLUSTER SLOTS refused: {text}")]
    Refused { addr: NodeAddr, text: String },
    /// The message names the command and the node.
    #[error(transparent)]
    Topology(#[from] TopologyError),
}

/// Learn the topology from the seeds and publish the first table; fails when no seed
/// answers or slots are uncovered.
pub async fn initial(shared: &Arc<Shared>) -> Result<(), RefreshError> {
    let seeds = shared.config.load_full().seeds.clone();
    let started = Instant::now();
    let fetched = gather::merged_topology(shared, &seeds).await;
    let complete = fetched.as_ref().is_ok_and(|(t, _)| t.covers_all());
    metrics::refresh_done(RefreshCause::Startup, complete, started.elapsed());
    let (topology, _) = fetched?;
    if !topology.covers_all() {
        return Err(RefreshError::Uncovered(format_slot_ranges(
            &topology.uncovered(),
        )));
    }
    let importing = learn_importing(shared, &topology).await;
    publish(shared, &topology, &importing);
    resolve_names(shared).await;
    learn_version(shared).await;
    learn_commands(shared).await;
    Ok(())
}

/// The refresher task: runs for the life of the process.
pub async fn run(shared: Arc<Shared>) {
    let mut last = Instant::now();
    let mut owners = owners::OwnerLog::new(shared.table.load_full());
    let mut syncing = SyncingReplicas::default();
    loop {
        let configured = shared.config.load_full().refresh_interval;
        let loading = loading_replicas(&shared.table.load());
        let interval = syncing.next_wait(loading, configured, Instant::now());
        let timer = tokio::select! {
            _ = shared.refresh_wanted.notified() => false,
            _ = tokio::time::sleep(interval) => true,
        };
        let next_allowed = last + MIN_REFRESH_INTERVAL;
        if Instant::now() < next_allowed {
            tokio::time::sleep_until(next_allowed.into()).await;
        }
        last = Instant::now();
        // Taken after the wait, so the asks that came meanwhile are this refresh's too.
        let cause = match shared.refresh_causes.take() {
            Some(cause) => cause,
            None if timer => RefreshCause::Interval,
            None => RefreshCause::Other,
        };
        let before: Vec<NodeAddr> = shared.table.load().masters().cloned().collect();
        let ok = refresh(&shared).await;
        metrics::refresh_done(cause, ok, last.elapsed());
        owners.update(shared.table.load_full());
        // Names first: requests waiting on this refresh may need them.
        resolve_names(&shared).await;
        shared.refreshed.send_modify(|n| *n += 1);
        share_functions(&shared, &before).await;
    }
}

/// While replicas are syncing, how often the table is refreshed, and for how long
/// after the set of syncing replicas last changed.
const SYNCING_REFRESH: Duration = Duration::from_secs(1);
const SYNCING_WATCH: Duration = Duration::from_secs(60);

/// Replicas still syncing (`loading` in `CLUSTER SHARDS`) serve no reads and get no
/// `CONFIG SET` fan-out until a refresh sees them online, so while there are some the
/// table is refreshed every second instead of every `cluster.refresh_interval_ms`, for
/// up to a minute after the set of syncing replicas last changed (a replica that
/// cannot sync does not keep it up for ever). On Redis 7.0 a replica of a master never
/// written to counts as `loading` until the master's first replication `PING` (10 s);
/// a replica that finishes its sync serves reads a second later, not an interval later.
#[derive(Default)]
struct SyncingReplicas {
    loading: Vec<NodeAddr>,
    since: Option<Instant>,
}

impl SyncingReplicas {
    /// How long until the next periodic refresh, given the replicas loading `now`.
    fn next_wait(&mut self, loading: Vec<NodeAddr>, interval: Duration, now: Instant) -> Duration {
        if loading != self.loading {
            self.loading = loading;
            self.since = Some(now);
        }
        let watching = self.since.is_some_and(|since| now - since < SYNCING_WATCH);
        if !self.loading.is_empty() && watching {
            SYNCING_REFRESH.min(interval)
        } else {
            interval
        }
    }
}

/// Every replica of the table still syncing, sorted.
fn loading_replicas(table: &SlotTable) -> Vec<NodeAddr> {
    let mut loading: Vec<NodeAddr> = (table.shards().iter())
        .flat_map(|shard| shard.loading_replicas.iter().cloned())
        .collect();
    loading.sort();
    loading
}

/// Masters that joined since `before` (added to the cluster, or promoted) get the
/// functions the others have: `FUNCTION DUMP` from a master that was one before,
/// `FUNCTION RESTORE ... REPLACE` on each new one, so an `FCALL` routed there finds
/// its library. A failure is logged; the next change of masters tries again.
async fn share_functions(shared: &Arc<Shared>, before: &[NodeAddr]) {
    let now: Vec<NodeAddr> = shared.table.load().masters().cloned().collect();
    let joined: Vec<&NodeAddr> = now.iter().filter(|m| !before.contains(m)).collect();
    let Some(source) = before.iter().find(|m| now.contains(m)) else {
        return;
    };
    if joined.is_empty() {
        return;
    }
    let payload = match query(shared, source, &[b"FUNCTION", b"DUMP"]).await {
        Ok(OwnedFrame::BulkString(payload)) => payload,
        Ok(other) => {
            return tracing::warn!(node = %source, reply = ?other, "FUNCTION DUMP refused; new masters do not get the functions")
        }
        Err(e) => {
            return tracing::warn!(error = %e, "FUNCTION DUMP failed; new masters do not get the functions")
        }
    };
    for addr in joined {
        match query(
            shared,
            addr,
            &[b"FUNCTION", b"RESTORE", &payload, b"REPLACE"],
        )
        .await
        {
            Ok(OwnedFrame::SimpleString(_)) => {
                tracing::info!(node = %addr, from = %source, "gave a new master the cluster's functions")
            }
            Ok(other) => {
                tracing::warn!(node = %addr, reply = ?other, "FUNCTION RESTORE refused on a new master")
            }
            Err(e) => tracing::warn!(error = %e, "FUNCTION RESTORE failed on a new master"),
        }
    }
}

/// One refresh: ask several of the known nodes (masters first) at once, publish their
/// merged views (slots none covers keep their old owners). False when no node answered.
pub async fn refresh(shared: &Arc<Shared>) -> bool {
    let mut candidates: Vec<NodeAddr> = Vec::new();
    {
        let table = shared.table.load();
        let config = shared.config.load_full();
        for addr in table
            .masters()
            .chain(table.replicas())
            .chain(config.seeds.iter())
        {
            if !candidates.contains(addr) {
                candidates.push(addr.clone());
            }
        }
    }
    match gather::merged_topology(shared, &candidates).await {
        Ok((topology, from)) => {
            Metrics::inc(&METRICS.topology_refreshes);
            tracing::debug!(views = ?from.iter().map(NodeAddr::as_str).collect::<Vec<_>>(), "topology views merged");
            let importing = learn_importing(shared, &topology).await;
            publish(shared, &topology, &importing);
            true
        }
        Err(e) => {
            Metrics::inc(&METRICS.topology_refresh_failures);
            tracing::warn!(error = %e, "topology refresh failed");
            false
        }
    }
}

/// The slots each master of `topology` imports, from its own `CLUSTER NODES` line (no
/// other reply shows a migration under way; `SCAN` needs them, see
/// [`SlotTable::rescans`]). A master that does not answer counts as importing nothing.
async fn learn_importing(shared: &Arc<Shared>, topology: &Topology) -> Vec<(NodeAddr, Vec<u16>)> {
    let mut importing = Vec::new();
    for shard in &topology.shards {
        match query(shared, &shard.master, &[b"CLUSTER", b"NODES"]).await {
            Ok(OwnedFrame::BulkString(text)) => {
                let slots = importing_slots(&String::from_utf8_lossy(&text));
                if !slots.is_empty() {
                    importing.push((shard.master.clone(), slots));
                }
            }
            Ok(other) => {
                tracing::debug!(node = %shard.master, reply = ?other, "CLUSTER NODES refused")
            }
            Err(e) => tracing::debug!(error = %e, "CLUSTER NODES failed"),
        }
    }
    importing
}

fn publish(shared: &Arc<Shared>, topology: &Topology, importing: &[(NodeAddr, Vec<u16>)]) {
    let previous = shared.table.load_full();
    let table = SlotTable::build(topology, &previous).with_importing(importing);
    let ranges = table.ranges();
    if ranges == previous.ranges() && table.shards() == previous.shards() {
        if table.importing() != previous.importing() {
            tracing::debug!(importing = ?table.importing(), "slots being imported");
            shared.table.store(Arc::new(table));
        }
        return;
    }
    tracing::info!(
        shards = topology.shards.len(),
        ranges = ranges.len(),
        masters = ?table.masters().map(|n| n.to_string()).collect::<Vec<_>>(),
        "slot table updated"
    );
    shared.table.store(Arc::new(table));
}

/// Send one command to `addr` (through its `[address_map]` entry) on a control-plane
/// connection of its own ([`control::query`]) and decode the reply, in the owned form
/// the topology parser and the command learner take.
pub async fn query(
    shared: &Shared,
    addr: &NodeAddr,
    args: &[&[u8]],
) -> Result<OwnedFrame, QueryError> {
    let config = shared.config.load_full();
    match control::query(config.dial_addr(addr), &config.backend, args).await {
        Ok(frame) => Ok(frame.to_owned_frame()),
        Err(source) => Err(QueryError::Node {
            addr: addr.clone(),
            source,
        }),
    }
}

/// Learn the commands the built-in table lacks from any master's `COMMAND` reply, so
/// newer commands route by the key positions the server reports. Failing to learn them
/// is not fatal: those commands then get "unknown command".
async fn learn_commands(shared: &Arc<Shared>) {
    let masters: Vec<NodeAddr> = shared.table.load().masters().cloned().collect();
    for addr in masters {
        match query(shared, &addr, &[b"COMMAND"]).await {
            Ok(frame @ OwnedFrame::Array(_)) => {
                let learned = LearnedCommands::from_command_reply(&frame);
                if !learned.is_empty() {
                    tracing::info!(count = learned.len(), commands = ?learned.names(), "learned commands the built-in table lacks");
                }
                let _ = shared.learned.set(learned);
                return;
            }
            Ok(other) => tracing::debug!(node = %addr, reply = ?other, "COMMAND refused"),
            Err(e) => tracing::debug!(node = %addr, error = %e, "COMMAND failed"),
        }
    }
    tracing::warn!(
        "could not learn the cluster's commands; commands newer than this build will be refused"
    );
}

/// Register every node of the table and look up the ones dialled by host name, here
/// on the control runtime, so a worker opening a connection finds the address ready
/// instead of blocking on the resolver. Runs after every refresh, so a name that moves
/// (a restarted Kubernetes pod) is followed.
async fn resolve_names(shared: &Arc<Shared>) {
    let table = shared.table.load_full();
    let replicas = table.shards().iter().flat_map(|s| s.connected_replicas());
    let mut nodes: Vec<_> = table
        .masters()
        .chain(replicas)
        .map(|addr| shared.node_record(addr))
        .collect();
    // Names a worker failed to look up, slot owners or not (an ASK target).
    for node in shared.registry.unresolved() {
        if !nodes.iter().any(|n| n.addr == node.addr) {
            nodes.push(node);
        }
    }
    for node in nodes {
        if node.dial_ip().is_some() {
            continue;
        }
        let lookup = tokio::net::lookup_host(node.dial().as_str().to_string());
        match tokio::time::timeout(shared.config.load_full().backend.connect_timeout, lookup).await
        {
            Ok(Ok(found)) => {
                let found: Vec<std::net::SocketAddr> = found.collect();
                match crate::backend::connection::prefer_ipv4(&found) {
                    Some(ip) => node.set_resolved(ip, "refresher"),
                    None => node.set_unresolved("no address", "refresher"),
                }
            }
            Ok(Err(e)) => node.set_unresolved(&e.to_string(), "refresher"),
            Err(_) => node.set_unresolved("lookup timed out", "refresher"),
        }
    }
}

/// Learn `redis_version` from any master (shown by `HELLO` and `INFO`).
async fn learn_version(shared: &Arc<Shared>) {
    let masters: Vec<NodeAddr> = shared.table.load().masters().cloned().collect();
    for addr in masters {
        if let Ok(OwnedFrame::BulkString(info)) = query(shared, &addr, &[b"INFO", b"server"]).await
        {
            let text = String::from_utf8_lossy(&info);
            if let Some(v) = text.lines().find_map(|l| l.strip_prefix("redis_version:")) {
                shared
                    .server_version
                    .store(Some(Arc::new(v.trim().to_string())));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncing_replicas_are_watched_every_second_for_a_minute() {
        let interval = Duration::from_secs(10);
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        let a = NodeAddr::new("127.0.0.1", 7004);
        let b = NodeAddr::new("127.0.0.1", 7005);
        let mut syncing = SyncingReplicas::default();
        assert_eq!(syncing.next_wait(vec![], interval, at(0)), interval);
        for secs in [1, 2, 30, 60] {
            let wait = syncing.next_wait(vec![a.clone()], interval, at(secs));
            assert_eq!(wait, SYNCING_REFRESH, "at {secs} s");
        }
        // A minute after the set last changed: the configured interval.
        assert_eq!(
            syncing.next_wait(vec![a.clone()], interval, at(61)),
            interval
        );
        // Another replica starts syncing: watched again.
        let both = vec![a.clone(), b];
        assert_eq!(syncing.next_wait(both, interval, at(70)), SYNCING_REFRESH);
        // All serve: the configured interval.
        assert_eq!(syncing.next_wait(vec![], interval, at(71)), interval);
        // An interval shorter than a second wins.
        let short = Duration::from_millis(300);
        assert_eq!(syncing.next_wait(vec![a], short, at(72)), short);
    }
}
