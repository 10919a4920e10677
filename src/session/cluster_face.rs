//! The face slotgate shows cluster-aware clients: a one-node cluster that owns every slot
//! slotgate can route, at the address the client connected to. redis-py `RedisCluster`,
//! ioredis `Cluster`, node-redis `createCluster` and `redis-cli -c` pointed at slotgate
//! therefore find one node, slotgate itself, and send everything there; slotgate routes
//! each request as it does for any client, so no client ever sees `MOVED` or `ASK`.
//!
//! Pure: [`ClusterFace`] is built from slotgate's listen address, the client's local
//! address and the slot table's served ranges, and writes `CLUSTER SLOTS`, `SHARDS`,
//! `NODES`, `INFO`, `MYID`, `MYSHARDID` and `KEYSLOT` replies in the client's protocol,
//! shaped as a Redis 7 node gives them (checked against `redis-server` 7.0 in RESP2
//! and RESP3).
//!
//! Plain and cluster clients both hold: what the cluster clients ask at start-up is
//! `CLUSTER SLOTS` (redis-py, ioredis, node-redis) and, in ioredis's ready check,
//! `CLUSTER INFO`'s `cluster_state`; none of them reads `INFO` or `HELLO`. So `INFO`
//! keeps saying `cluster_enabled:0` and `HELLO` `mode standalone`, which is what
//! plain clients and tools look at to stay out of cluster mode.
//!
//! The node id is derived from slotgate's listen address (its port resolved when it is
//! 0), so it is the same in every worker, connection and run of one slotgate; the
//! cluster bus port shown is the client port + 10000, as Redis's default, or 0 where
//! that is no port. While slotgate's slot table misses slots, the face says so as a
//! node would: only the served slots are listed and `CLUSTER INFO` says
//! `cluster_state:fail`.

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

use crate::cluster::table::SlotTable;
use crate::protocol::reply::ReplyWriter;
use crate::slot::{Slot, SLOT_COUNT};

/// The config epoch the face reports (any positive value; a fresh cluster's first).
const EPOCH: u64 = 1;
/// The cluster bus port is the client port plus this, as Redis's default.
const BUS_PORT_OFFSET: u32 = 10_000;

/// slotgate as a one-node cluster, as one client sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterFace {
    /// The address the client connected to.
    ip: IpAddr,
    port: u16,
    /// 40 hex digits, stable for one listen address.
    id: String,
    shard_id: String,
    /// Runs of slots slotgate can route, ascending, `(first, last)`.
    served: Vec<(u16, u16)>,
}

impl ClusterFace {
    /// `listen`: slotgate's configured listen address; `local`: the address this client
    /// connected to (its port is the listen port resolved); `served`: [`served_runs`].
    pub fn new(listen: SocketAddr, local: SocketAddr, served: Vec<(u16, u16)>) -> ClusterFace {
        let port = if listen.port() == 0 {
            local.port()
        } else {
            listen.port()
        };
        let identity = SocketAddr::new(listen.ip(), port).to_string();
        ClusterFace {
            ip: local.ip().to_canonical(),
            port: local.port(),
            id: hex_id("node", &identity),
            shard_id: hex_id("shard", &identity),
            served,
        }
    }

    /// Slots listed as assigned (and served).
    pub fn slots_assigned(&self) -> usize {
        self.served
            .iter()
            .map(|&(first, last)| usize::from(last - first) + 1)
            .sum()
    }

    /// `CLUSTER SLOTS`: per run, `[first, last, [ip, port, id, {}]]`.
    pub fn slots(&self, w: &mut ReplyWriter) {
        let ip = self.ip.to_string();
        w.array(self.served.len());
        for &(first, last) in &self.served {
            w.array(3);
            w.int(i64::from(first));
            w.int(i64::from(last));
            w.array(4);
            w.bulk(ip.as_bytes());
            w.int(i64::from(self.port));
            w.bulk(self.id.as_bytes());
            // Networking metadata: none (no hostname announced).
            w.map(0);
        }
    }

    /// `CLUSTER SHARDS`: one shard, `{slots: [first, last, ...], nodes: [{...}]}`.
    pub fn shards(&self, w: &mut ReplyWriter) {
        let ip = self.ip.to_string();
        w.array(1);
        w.map(2);
        w.bulk(b"slots");
        w.array(self.served.len() * 2);
        for &(first, last) in &self.served {
            w.int(i64::from(first));
            w.int(i64::from(last));
        }
        w.bulk(b"nodes");
        w.array(1);
        w.map(7);
        w.bulk(b"id");
        w.bulk(self.id.as_bytes());
        w.bulk(b"port");
        w.int(i64::from(self.port));
        w.bulk(b"ip");
        w.bulk(ip.as_bytes());
        w.bulk(b"endpoint");
        w.bulk(ip.as_bytes());
        w.bulk(b"role");
        w.bulk(b"master");
        w.bulk(b"replication-offset");
        w.int(0);
        w.bulk(b"health");
        w.bulk(b"online");
    }

    /// `CLUSTER NODES`: one line, `myself,master`, then the served runs.
    pub fn nodes(&self, w: &mut ReplyWriter) {
        let bus = u32::from(self.port) + BUS_PORT_OFFSET;
        let bus = if bus <= u32::from(u16::MAX) { bus } else { 0 };
        let mut line = format!(
            "{} {}:{}@{} myself,master - 0 0 {EPOCH} connected",
            self.id, self.ip, self.port, bus
        );
        for &(first, last) in &self.served {
            if first == last {
                let _ = write!(line, " {first}");
            } else {
                let _ = write!(line, " {first}-{last}");
            }
        }
        line.push('\n');
        w.verbatim(&line);
    }

    /// `CLUSTER INFO`: a healthy one-node cluster, or `cluster_state:fail` with the slots
    /// really served while the slot table misses some.
    pub fn info(&self, w: &mut ReplyWriter) {
        let assigned = self.slots_assigned();
        let state = if assigned == SLOT_COUNT { "ok" } else { "fail" };
        let size = usize::from(assigned > 0);
        let text = format!(
            "cluster_state:{state}\r\n\
             cluster_slots_assigned:{assigned}\r\n\
             cluster_slots_ok:{assigned}\r\n\
             cluster_slots_pfail:0\r\n\
             cluster_slots_fail:0\r\n\
             cluster_known_nodes:1\r\n\
             cluster_size:{size}\r\n\
             cluster_current_epoch:{EPOCH}\r\n\
             cluster_my_epoch:{EPOCH}\r\n\
             cluster_stats_messages_sent:0\r\n\
             cluster_stats_messages_received:0\r\n\
             total_cluster_links_buffer_limit_exceeded:0\r\n"
        );
        w.verbatim(&text);
    }

    /// `CLUSTER MYID`.
    pub fn myid(&self, w: &mut ReplyWriter) {
        w.bulk(self.id.as_bytes());
    }

    /// `CLUSTER MYSHARDID`.
    pub fn myshardid(&self, w: &mut ReplyWriter) {
        w.bulk(self.shard_id.as_bytes());
    }
}

/// `CLUSTER KEYSLOT key`: the slot, as every node computes it.
pub fn keyslot(key: &[u8], w: &mut ReplyWriter) {
    w.int(i64::from(Slot::of_key(key).get()));
}

/// The runs of slots `table` routes somewhere, ascending: `[(0, 16383)]` when complete.
pub fn served_runs(table: &SlotTable) -> Vec<(u16, u16)> {
    let mut runs: Vec<(u16, u16)> = Vec::new();
    for n in 0..SLOT_COUNT as u16 {
        let served = Slot::new(n).is_some_and(|slot| table.shard_for(slot).is_some());
        if !served {
            continue;
        }
        match runs.last_mut() {
            Some(run) if run.1 + 1 == n => run.1 = n,
            _ => runs.push((n, n)),
        }
    }
    runs
}

/// 40 lower-case hex digits that depend only on `kind` and `identity`: three rounds of
/// FNV-1a, each from its own starting value and spread by splitmix64's finaliser. Its
/// own code (not `DefaultHasher`, whose output may change between Rust releases), so
/// the id survives rebuilds too.
fn hex_id(kind: &str, identity: &str) -> String {
    let mut out = String::with_capacity(48);
    for round in 1..=3u64 {
        let mut h = 0xcbf2_9ce4_8422_2325_u64 ^ round.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for &b in kind
            .as_bytes()
            .iter()
            .chain(b"/")
            .chain(identity.as_bytes())
        {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
        let _ = write!(out, "{h:016x}");
    }
    out.truncate(40);
    out
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::cluster::table::SlotTable;
    use crate::cluster::topology::{ShardInfo, Topology};
    use crate::cluster::NodeAddr;
    use crate::protocol::reply::Proto;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn face(served: Vec<(u16, u16)>) -> ClusterFace {
        ClusterFace::new(addr("0.0.0.0:6380"), addr("127.0.0.1:6380"), served)
    }

    fn reply(proto: Proto, f: impl FnOnce(&mut ReplyWriter)) -> String {
        let mut out = BytesMut::new();
        f(&mut ReplyWriter {
            out: &mut out,
            proto,
        });
        String::from_utf8(out.to_vec()).unwrap()
    }

    const ALL: (u16, u16) = (0, 16383);

    #[test]
    fn the_node_id_is_stable_per_listen_address() {
        let a = face(vec![ALL]);
        assert_eq!(a.id.len(), 40);
        assert!(a
            .id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        // Another connection, through another local address of the same listener.
        let b = ClusterFace::new(addr("0.0.0.0:6380"), addr("10.1.2.3:6380"), vec![]);
        assert_eq!(a.id, b.id);
        // Another slotgate.
        let c = ClusterFace::new(addr("0.0.0.0:6381"), addr("127.0.0.1:6381"), vec![]);
        assert_ne!(a.id, c.id);
        // A port-0 listen takes the port it resolved to.
        let d = ClusterFace::new(addr("0.0.0.0:0"), addr("127.0.0.1:6380"), vec![]);
        assert_eq!(a.id, d.id);
        let e = ClusterFace::new(addr("0.0.0.0:0"), addr("127.0.0.1:7000"), vec![]);
        assert_ne!(a.id, e.id);
        // The shard id is another id.
        assert_ne!(a.id, a.shard_id);
        assert_eq!(a.shard_id.len(), 40);
        // Fixed across builds: this value is what clients saw before.
        assert_eq!(a.id, "1ded89b3b82aa57399d24c0cc96948cd54c5f73c");
    }

    #[test]
    fn cluster_slots_in_both_protocols() {
        let f = face(vec![ALL]);
        let id = f.id.clone();
        assert_eq!(
            reply(Proto::Resp2, |w| f.slots(w)),
            format!("*1\r\n*3\r\n:0\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:6380\r\n$40\r\n{id}\r\n*0\r\n")
        );
        assert_eq!(
            reply(Proto::Resp3, |w| f.slots(w)),
            format!("*1\r\n*3\r\n:0\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:6380\r\n$40\r\n{id}\r\n%0\r\n")
        );
    }

    #[test]
    fn cluster_shards_in_both_protocols() {
        let f = face(vec![ALL]);
        let id = f.id.clone();
        let node = format!(
            "$2\r\nid\r\n$40\r\n{id}\r\n$4\r\nport\r\n:6380\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n\
             $8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\nmaster\r\n\
             $18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n"
        );
        assert_eq!(
            reply(Proto::Resp2, |w| f.shards(w)),
            format!("*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:16383\r\n$5\r\nnodes\r\n*1\r\n*14\r\n{node}")
        );
        assert_eq!(
            reply(Proto::Resp3, |w| f.shards(w)),
            format!("*1\r\n%2\r\n$5\r\nslots\r\n*2\r\n:0\r\n:16383\r\n$5\r\nnodes\r\n*1\r\n%7\r\n{node}")
        );
    }

    #[test]
    fn cluster_nodes_is_one_line_for_myself() {
        let f = face(vec![ALL]);
        let line = format!(
            "{} 127.0.0.1:6380@16380 myself,master - 0 0 1 connected 0-16383\n",
            f.id
        );
        assert_eq!(
            reply(Proto::Resp2, |w| f.nodes(w)),
            format!("${}\r\n{line}\r\n", line.len())
        );
        assert_eq!(
            reply(Proto::Resp3, |w| f.nodes(w)),
            format!("={}\r\ntxt:{line}\r\n", line.len() + 4)
        );
        // Runs of one slot are one number; a port with no room for +10000 shows bus 0.
        let f = ClusterFace::new(
            addr("[::]:60000"),
            addr("[::1]:60000"),
            vec![(0, 0), (5, 100)],
        );
        let text = reply(Proto::Resp2, |w| f.nodes(w));
        assert!(
            text.ends_with(" ::1:60000@0 myself,master - 0 0 1 connected 0 5-100\n\r\n"),
            "{text}"
        );
    }

    #[test]
    fn cluster_info_of_a_healthy_and_of_an_incomplete_table() {
        let text = reply(Proto::Resp2, |w| face(vec![ALL]).info(w));
        let body = "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\n\
                    cluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:1\r\n\
                    cluster_size:1\r\ncluster_current_epoch:1\r\ncluster_my_epoch:1\r\n\
                    cluster_stats_messages_sent:0\r\ncluster_stats_messages_received:0\r\n\
                    total_cluster_links_buffer_limit_exceeded:0\r\n";
        assert_eq!(text, format!("${}\r\n{body}\r\n", body.len()));
        assert!(reply(Proto::Resp3, |w| face(vec![ALL]).info(w))
            .starts_with(&format!("={}\r\ntxt:cluster_state:ok\r\n", body.len() + 4)));

        let text = reply(Proto::Resp2, |w| face(vec![(0, 99), (200, 16383)]).info(w));
        assert!(text.contains("cluster_state:fail\r\n"), "{text}");
        assert!(text.contains("cluster_slots_assigned:16284\r\n"), "{text}");
        assert!(text.contains("cluster_slots_ok:16284\r\n"), "{text}");
        assert!(text.contains("cluster_size:1\r\n"), "{text}");
        let text = reply(Proto::Resp2, |w| face(vec![]).info(w));
        assert!(text.contains("cluster_slots_assigned:0\r\ncluster_slots_ok:0\r\n"));
        assert!(text.contains("cluster_size:0\r\n"), "{text}");
    }

    #[test]
    fn myid_myshardid_and_keyslot() {
        let f = face(vec![ALL]);
        assert_eq!(
            reply(Proto::Resp3, |w| f.myid(w)),
            format!("$40\r\n{}\r\n", f.id)
        );
        assert_eq!(
            reply(Proto::Resp2, |w| f.myshardid(w)),
            format!("$40\r\n{}\r\n", f.shard_id)
        );
        assert_eq!(reply(Proto::Resp2, |w| keyslot(b"foo", w)), ":12182\r\n");
        assert_eq!(
            reply(Proto::Resp3, |w| keyslot(b"{user1000}.following", w)),
            format!(":{}\r\n", Slot::of_key(b"user1000").get())
        );
    }

    #[test]
    fn an_ipv4_client_of_an_ipv6_listener_sees_its_ipv4_address() {
        let f = ClusterFace::new(addr("[::]:6380"), addr("[::ffff:127.0.0.1]:6380"), vec![]);
        assert_eq!(f.ip, "127.0.0.1".parse::<IpAddr>().unwrap());
    }

    fn node(text: &str) -> NodeAddr {
        NodeAddr::parse(text).unwrap()
    }

    fn shard(master: &str, slots: &[(u16, u16)]) -> ShardInfo {
        ShardInfo {
            slots: slots.to_vec(),
            master: node(master),
            master_id: None,
            replicas: vec![],
            loading_replicas: vec![],
        }
    }

    #[test]
    fn served_runs_merge_shards_and_skip_holes() {
        assert_eq!(served_runs(&SlotTable::empty()), vec![]);
        let three = Topology {
            shards: vec![
                shard("10.0.0.1:7000", &[(0, 5460)]),
                shard("10.0.0.2:7001", &[(5461, 10922)]),
                shard("10.0.0.3:7002", &[(10923, 16383)]),
            ],
        };
        let table = SlotTable::build(&three, &SlotTable::empty());
        assert_eq!(served_runs(&table), vec![ALL]);
        let holes = Topology {
            shards: vec![
                shard("10.0.0.1:7000", &[(0, 0), (2, 5460)]),
                shard("10.0.0.3:7002", &[(10923, 16383)]),
            ],
        };
        let table = SlotTable::build(&holes, &SlotTable::empty());
        assert_eq!(served_runs(&table), vec![(0, 0), (2, 5460), (10923, 16383)]);
        assert_eq!(face(served_runs(&table)).slots_assigned(), 1 + 5459 + 5461);
    }
}
