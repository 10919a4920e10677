//! The replica poller: what reads at replicas need to know of each node, learned once a
//! second on the control runtime and published in each node's
//! [`ReadHealth`](crate::backend::read_health::ReadHealth) for the workers.
//!
//! Each poll, every node of the slot table gets a `PING` on a connection the poller
//! keeps open (so the round trip measured is the node's, not a connect's), folded into
//! its smoothed round trip (`nearest`). Each master is asked, on the same connection:
//! - `INFO replication`: its `master_repl_offset` and, per replica, the offset the
//!   replica last acknowledged (replicas acknowledge every second) and its link state;
//!   a replica's lag is the difference. When the master refuses `INFO` (an ACL user
//!   without it) or says nothing usable, `CLUSTER SHARDS`' `replication-offset` per
//!   node (Redis 7.0+) is used instead; it is learned through gossip, so it can be
//!   several seconds old, which is why `INFO` comes first.
//! - `CLUSTER NODES`: the flags it holds for each node; a replica flagged `fail?`
//!   (`pfail`: not answering the master) or `fail` serves no reads.
//!
//! A replica is unfit for reads when its `PING` goes unanswered within the poll's
//! limit, its master flags it failing, or its link is not `online`; its lag is unknown
//! when neither source says (a lag limit then keeps it out). A worker marks a replica
//! unfit at once when a read there times out; the next poll that finds it well clears
//! that. `loading` replicas are not in the slot table's serving list at all.
//!
//! It runs from start-up when `read_from` is not `master`, else from the first
//! `READONLY` a client sends: with every client reading from masters, nothing is asked
//! of the nodes.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis_protocol::resp2::types::{BytesFrame, OwnedFrame};

use crate::backend::control::ControlConnection;
use crate::cluster::NodeAddr;
use crate::config::ReadFrom;
use crate::shared::Shared;

/// How often every node is polled.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The poller: waits until reads at replicas are wanted, then polls every
/// [`POLL_INTERVAL`] for the life of the process.
pub async fn run(shared: Arc<Shared>) {
    if shared.config.load().reads.read_from == ReadFrom::Master
        && !shared.replica_reads_asked.load(Relaxed)
    {
        shared.replica_reads_wanted.notified().await;
        tracing::info!("a client sent READONLY: polling replicas for reads");
    }
    let mut conns: HashMap<NodeAddr, ControlConnection> = HashMap::new();
    loop {
        poll(&shared, &mut conns).await;
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// What one node told a poll.
#[derive(Default)]
struct Answer {
    /// The `PING`'s round trip; `None`: no answer within the limit.
    rtt: Option<Duration>,
    /// A master's replication as it reports it.
    replication: Option<Replication>,
    /// A master's `CLUSTER NODES` reply.
    nodes: Option<String>,
}

/// One poll of every node of the current slot table, all at once.
async fn poll(shared: &Arc<Shared>, conns: &mut HashMap<NodeAddr, ControlConnection>) {
    let table = shared.table.load_full();
    let mut nodes: Vec<(NodeAddr, Option<NodeAddr>)> = Vec::new();
    for shard in table.shards() {
        nodes.push((shard.master.clone(), None));
        for replica in &shard.replicas {
            nodes.push((replica.clone(), Some(shard.master.clone())));
        }
    }
    conns.retain(|addr, _| nodes.iter().any(|(a, _)| a == addr));
    let config = shared.config.load();
    let limit = config.backend.connect_timeout + config.reads.replica_timeout;
    let mut asks = tokio::task::JoinSet::new();
    for (addr, master_of) in nodes.iter().cloned() {
        let conn = conns.remove(&addr);
        let shared = Arc::clone(shared);
        asks.spawn(async move {
            let is_master = master_of.is_none();
            let mut conn = conn;
            let asked = tokio::time::timeout(limit, ask(&shared, &addr, &mut conn, is_master));
            let answer = asked.await.unwrap_or_default();
            // A connection that timed out mid-reply is not reused.
            let keep = if answer.rtt.is_some() { conn } else { None };
            (addr, keep, answer)
        });
    }
    let mut answers: HashMap<NodeAddr, Answer> = HashMap::new();
    while let Some(done) = asks.join_next().await {
        if let Ok((addr, conn, answer)) = done {
            if let Some(conn) = conn {
                conns.insert(addr.clone(), conn);
            }
            answers.insert(addr, answer);
        }
    }
    for (addr, master_of) in &nodes {
        let node = shared.node_record(addr);
        let answer = answers.get(addr);
        let rtt = answer.and_then(|a| a.rtt);
        if let Some(rtt) = rtt {
            node.reads.record_rtt(rtt);
        }
        let Some(master) = master_of else {
            continue;
        };
        let from_master = answers.get(master);
        let replication = from_master.and_then(|a| a.replication.as_ref());
        let state = replication.and_then(|r| r.replica(addr));
        let flagged = (from_master.and_then(|a| a.nodes.as_deref()))
            .is_some_and(|text| failing(text).iter().any(|f| same_node(f, addr)));
        let link_down = state.is_some_and(|s| !s.online);
        let unfit = rtt.is_none() || flagged || link_down;
        if node.reads.is_unfit() != unfit {
            if unfit {
                let why = if rtt.is_none() {
                    "no answer to PING"
                } else if flagged {
                    "its master flags it failing"
                } else {
                    "replication link not online"
                };
                tracing::info!(replica = %addr, %master, why, "replica serves no reads");
            } else {
                tracing::info!(replica = %addr, %master, "replica serves reads");
            }
        }
        node.reads.set_unfit(unfit);
        let lag = match (replication, state) {
            (Some(r), Some(s)) => Some(r.offset.saturating_sub(s.offset)),
            _ => None,
        };
        node.reads.set_lag(lag);
    }
}

/// Ask one node: `PING` (timed), and for a master `INFO replication` and `CLUSTER
/// NODES` (`CLUSTER SHARDS` when `INFO` says nothing usable). Opens the connection
/// first when there is none.
async fn ask(
    shared: &Shared,
    addr: &NodeAddr,
    conn: &mut Option<ControlConnection>,
    is_master: bool,
) -> Answer {
    let mut answer = Answer::default();
    if conn.is_none() {
        let config = shared.config.load_full();
        let dial = config.dial_addr(addr);
        match ControlConnection::open(dial, &config.backend).await {
            Ok(opened) => *conn = Some(opened),
            Err(e) => {
                tracing::debug!(node = %addr, error = %e, "replica poller cannot connect");
                return answer;
            }
        }
    }
    let Some(c) = conn.as_mut() else {
        return answer;
    };
    let started = Instant::now();
    match c.request(&[b"PING"]).await {
        Ok(BytesFrame::SimpleString(_)) => answer.rtt = Some(started.elapsed()),
        _ => {
            *conn = None;
            return answer;
        }
    }
    if !is_master {
        return answer;
    }
    if let Ok(BytesFrame::BulkString(text)) = c.request(&[b"INFO", b"replication"]).await {
        answer.replication = Replication::parse(&String::from_utf8_lossy(&text));
    }
    if answer.replication.is_none() {
        if let Ok(frame) = c.request(&[b"CLUSTER", b"SHARDS"]).await {
            answer.replication = Replication::from_shards(&frame.to_owned_frame(), addr);
        }
    }
    if let Ok(BytesFrame::BulkString(text)) = c.request(&[b"CLUSTER", b"NODES"]).await {
        answer.nodes = Some(String::from_utf8_lossy(&text).into_owned());
    }
    answer
}

/// A master's replication: its offset and each replica's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Replication {
    offset: u64,
    replicas: Vec<ReplicaState>,
}

/// One replica as its master reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ReplicaState {
    host: String,
    port: u16,
    /// The link is up (`state=online`; always, from `CLUSTER SHARDS`).
    online: bool,
    /// The offset the replica last acknowledged.
    offset: u64,
}

impl Replication {
    /// From a master's `INFO replication`: `master_repl_offset:N` and lines
    /// `slave0:ip=...,port=...,state=online,offset=N,lag=0`. `None` for a node that is
    /// not a master or a reply without an offset.
    fn parse(text: &str) -> Option<Replication> {
        let mut offset = None;
        let mut is_master = false;
        let mut replicas = Vec::new();
        for line in text.lines().map(str::trim) {
            if let Some(role) = line.strip_prefix("role:") {
                is_master = role == "master";
            } else if let Some(n) = line.strip_prefix("master_repl_offset:") {
                offset = n.parse().ok();
            } else if line.starts_with("slave") && line.contains(":ip=") {
                let Some((_, fields)) = line.split_once(':') else {
                    continue;
                };
                let field = |name: &str| {
                    fields
                        .split(',')
                        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                };
                let (Some(host), Some(port), Some(offset)) = (
                    field("ip"),
                    field("port").and_then(|p| p.parse().ok()),
                    field("offset").and_then(|o| o.parse().ok()),
                ) else {
                    continue;
                };
                replicas.push(ReplicaState {
                    host: host.to_string(),
                    port,
                    online: field("state") == Some("online"),
                    offset,
                });
            }
        }
        is_master.then_some(Replication {
            offset: offset?,
            replicas,
        })
    }

    /// From a `CLUSTER SHARDS` reply (Redis 7.0+): the shard whose master is `master`,
    /// with each node's `replication-offset`.
    fn from_shards(frame: &OwnedFrame, master: &NodeAddr) -> Option<Replication> {
        let OwnedFrame::Array(shards) = frame else {
            return None;
        };
        for shard in shards {
            let Some(OwnedFrame::Array(nodes)) = field(shard, "nodes") else {
                continue;
            };
            let mut out = Replication::default();
            let mut has_master = false;
            for node in nodes {
                let host = (["endpoint", "ip", "hostname"].iter())
                    .filter_map(|k| text_field(node, k))
                    .find(|h| !h.is_empty() && *h != "?");
                let port = match field(node, "port") {
                    Some(OwnedFrame::Integer(p)) => u16::try_from(*p).ok(),
                    _ => None,
                };
                let offset = match field(node, "replication-offset") {
                    Some(OwnedFrame::Integer(o)) => u64::try_from(*o).ok(),
                    _ => None,
                };
                let (Some(host), Some(port), Some(offset)) = (host, port, offset) else {
                    continue;
                };
                match text_field(node, "role") {
                    Some("master") if same_node(&(host.to_string(), port), master) => {
                        has_master = true;
                        out.offset = offset;
                    }
                    Some("replica") => out.replicas.push(ReplicaState {
                        host: host.to_string(),
                        port,
                        online: true,
                        offset,
                    }),
                    _ => {}
                }
            }
            if has_master {
                return Some(out);
            }
        }
        None
    }

    /// The replica at `addr`: the one with its host and port, else the only one with
    /// its port (a master may see a replica's address differently from how the
    /// cluster announces it, e.g. a host name).
    fn replica(&self, addr: &NodeAddr) -> Option<&ReplicaState> {
        let exact = (self.replicas.iter()).find(|r| same_node(&(r.host.clone(), r.port), addr));
        exact.or_else(|| {
            let port = port_of(addr)?;
            let mut same_port = self.replicas.iter().filter(|r| r.port == port);
            match (same_port.next(), same_port.next()) {
                (Some(only), None) => Some(only),
                _ => None,
            }
        })
    }
}

/// A field of a `CLUSTER SHARDS` name/value list.
fn field<'a>(frame: &'a OwnedFrame, name: &str) -> Option<&'a OwnedFrame> {
    let OwnedFrame::Array(items) = frame else {
        return None;
    };
    items.chunks_exact(2).find_map(|pair| match &pair[0] {
        OwnedFrame::BulkString(k) | OwnedFrame::SimpleString(k) if k == name.as_bytes() => {
            Some(&pair[1])
        }
        _ => None,
    })
}

fn text_field<'a>(frame: &'a OwnedFrame, name: &str) -> Option<&'a str> {
    match field(frame, name)? {
        OwnedFrame::BulkString(b) | OwnedFrame::SimpleString(b) => std::str::from_utf8(b).ok(),
        _ => None,
    }
}

/// `host:port` of the nodes a `CLUSTER NODES` reply flags failing (`fail?` or `fail`).
fn failing(text: &str) -> Vec<(String, u16)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(_id), Some(addr), Some(flags)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if !flags.split(',').any(|f| f == "fail" || f == "fail?") {
            continue;
        }
        // `ip:port@cport[,hostname]`
        let (ip_port, rest) = addr.split_once('@').unwrap_or((addr, ""));
        let Some((ip, port)) = ip_port.rsplit_once(':') else {
            continue;
        };
        let Ok(port) = port.parse() else {
            continue;
        };
        out.push((ip.to_string(), port));
        if let Some((_, hostname)) = rest.split_once(',') {
            if !hostname.is_empty() {
                out.push((hostname.to_string(), port));
            }
        }
    }
    out
}

/// The port of `addr`.
fn port_of(addr: &NodeAddr) -> Option<u16> {
    addr.as_str().rsplit_once(':')?.1.parse().ok()
}

/// `(host, port)` names the node announced as `addr`.
fn same_node(node: &(String, u16), addr: &NodeAddr) -> bool {
    NodeAddr::new(&node.0, node.1) == *addr
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
        slave0:ip=127.0.0.1,port=7004,state=online,offset=1000,lag=0\r\n\
        slave1:ip=127.0.0.1,port=7005,state=wait_bgsave,offset=0,lag=0\r\n\
        master_failover_state:no-failover\r\nmaster_replid:abc\r\n\
        master_repl_offset:1500\r\nsecond_repl_offset:-1\r\n";

    #[test]
    fn info_replication_gives_offsets_and_link_states() {
        let r = Replication::parse(INFO).unwrap();
        assert_eq!(r.offset, 1500);
        let a = r.replica(&NodeAddr::new("127.0.0.1", 7004)).unwrap();
        assert_eq!((a.offset, a.online), (1000, true));
        let b = r.replica(&NodeAddr::new("127.0.0.1", 7005)).unwrap();
        assert!(!b.online);
        // Announced by a host name the master does not know: matched by its port.
        let c = r.replica(&NodeAddr::new("redis-4", 7004)).unwrap();
        assert_eq!(c.offset, 1000);
        assert!(r.replica(&NodeAddr::new("127.0.0.1", 7009)).is_none());
    }

    #[test]
    fn a_replica_or_a_bare_reply_gives_no_replication() {
        assert_eq!(
            Replication::parse("role:slave\r\nmaster_repl_offset:5\r\n"),
            None
        );
        assert_eq!(Replication::parse("role:master\r\n"), None);
        assert_eq!(Replication::parse(""), None);
    }

    #[test]
    fn cluster_nodes_flags_failing_nodes() {
        let text = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
a4 127.0.0.1:7004@17004 slave,fail? a1 0 0 1 connected
a5 127.0.0.1:7005@17005,redis-5 slave,fail a2 0 0 2 connected
a6 127.0.0.1:7006@17006 slave a3 0 0 3 connected
";
        let failing = failing(text);
        assert!(failing.contains(&("127.0.0.1".into(), 7004)));
        assert!(failing.contains(&("127.0.0.1".into(), 7005)));
        assert!(failing.contains(&("redis-5".into(), 7005)));
        assert!(!failing.iter().any(|f| f.1 == 7006 || f.1 == 7001));
    }

    fn bulk(s: &str) -> OwnedFrame {
        OwnedFrame::BulkString(s.as_bytes().to_vec())
    }

    fn shard_node(port: i64, role: &str, offset: i64) -> OwnedFrame {
        OwnedFrame::Array(vec![
            bulk("id"),
            bulk("x"),
            bulk("port"),
            OwnedFrame::Integer(port),
            bulk("ip"),
            bulk("127.0.0.1"),
            bulk("endpoint"),
            bulk("127.0.0.1"),
            bulk("role"),
            bulk(role),
            bulk("replication-offset"),
            OwnedFrame::Integer(offset),
            bulk("health"),
            bulk("online"),
        ])
    }

    #[test]
    fn cluster_shards_gives_offsets_of_the_masters_shard() {
        let shards = OwnedFrame::Array(vec![
            OwnedFrame::Array(vec![
                bulk("slots"),
                OwnedFrame::Array(vec![]),
                bulk("nodes"),
                OwnedFrame::Array(vec![
                    shard_node(7002, "master", 10),
                    shard_node(7005, "replica", 9),
                ]),
            ]),
            OwnedFrame::Array(vec![
                bulk("slots"),
                OwnedFrame::Array(vec![]),
                bulk("nodes"),
                OwnedFrame::Array(vec![
                    shard_node(7004, "replica", 700),
                    shard_node(7001, "master", 900),
                ]),
            ]),
        ]);
        let r = Replication::from_shards(&shards, &NodeAddr::new("127.0.0.1", 7001)).unwrap();
        assert_eq!(r.offset, 900);
        let replica = r.replica(&NodeAddr::new("127.0.0.1", 7004)).unwrap();
        assert_eq!(replica.offset, 700);
        assert!(Replication::from_shards(&shards, &NodeAddr::new("127.0.0.1", 7003)).is_none());
    }
}
