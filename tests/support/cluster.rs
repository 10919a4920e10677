//! A Redis Cluster of real `redis-server` child processes on free loopback ports.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use redis::{FromRedisValue, Value};

use super::gateway::{Admit, Gateway};
use super::ports::{free_cluster_port, free_port, BUS_OFFSET};
use super::{require_redis, tail_file};

/// How many lines of each node's log a failure prints.
const LOG_TAIL_LINES: usize = 30;
/// How long `start` waits for the cluster to settle.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one command to a node may take before it counts as failed.
const NODE_IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Bounded retries for each step of a slot migration.
const STEP_ATTEMPTS: u32 = 100;
const STEP_BACKOFF: Duration = Duration::from_millis(20);

/// Knobs for [`Cluster::start_with`]; [`Default`] is what [`Cluster::start`] uses.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// `cluster-node-timeout` in ms: how long a node may be unreachable before it is
    /// marked failing. A failover after [`Cluster::kill`] takes about 2-3 times this.
    pub node_timeout_ms: u64,
    /// Extra `redis.conf` lines (e.g. `"requirepass secret"`), appended verbatim.
    pub extra_config: Vec<String>,
    /// Lines for one node's `redis.conf`, after `extra_config`: called with the node's
    /// index in start order (0, 1, ...) and its port (e.g. a host name to announce).
    pub node_config: Option<fn(usize, u16) -> Vec<String>>,
    /// How the nodes reach each other and what they announce.
    pub network: Network,
    /// TLS only: every node listens with `tls-port` (no plain port), talks TLS on the
    /// cluster bus and for replication, and asks clients for a certificate signed by
    /// the CA. The harness reaches the nodes with these files too.
    pub tls: Option<super::tls::TlsPeer>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_timeout_ms: 1500,
            extra_config: Vec::new(),
            node_config: None,
            network: Network::Direct,
            tls: None,
        }
    }
}

/// How the nodes reach each other and what they announce. Every address is loopback.
///
/// Beyond `Direct`, each node connects out from a source address of its own,
/// `127.0.0.<10 + index>` (`bind-source-addr`), so a [`Gateway`] can tell the nodes apart
/// from each other and from the test and slotgate (which connect from 127.0.0.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Network {
    /// Every node listens on 127.0.0.1 and announces `127.0.0.1:<port>`.
    #[default]
    Direct,
    /// Each node announces, for clients, `127.0.0.2:<a port of its own>` that only the
    /// other nodes can reach (a gateway there admits them, not 127.0.0.1), as a
    /// container's address is reachable inside its network and not from the host. The
    /// node really listens on `127.0.0.1:<port>` (and on 127.0.0.2 for the cluster bus,
    /// which is announced as it is). [`Cluster::announced`] names the address; the
    /// harness translates announced ports back to real ones wherever it reads a node's
    /// view.
    HiddenAddress,
    /// Each node's cluster bus runs through a gateway on `port + 10000` (the node's own
    /// bus listens on a port nobody is told), so [`Cluster::partition`] can cut a node
    /// off from the others while clients (slotgate) still reach it.
    PartitionableBus,
}

struct Node {
    port: u16,
    /// Its index in start order.
    index: usize,
    /// The client port it announces (its `port` unless the network hides it).
    announced_port: u16,
    dir: PathBuf,
    /// `None` once killed (and reaped) by the test.
    child: Option<Child>,
    /// The relay in front of its announced client address ([`Network::HiddenAddress`])
    /// or of its cluster bus ([`Network::PartitionableBus`]).
    gateway: Option<Gateway>,
    /// The real bus port behind the gateway ([`Network::PartitionableBus`]).
    hidden_bus_port: Option<u16>,
}

impl Node {
    /// The address this node connects out from (`bind-source-addr`) on a network
    /// other than [`Network::Direct`].
    fn source(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + self.index as u8))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("redis.conf")
    }
}

/// A running Redis Cluster owned by the test. Dropping it SIGKILLs and reaps every
/// node it started and removes the temp dir; if the thread is panicking it first
/// prints each node's log tail to stderr.
pub struct Cluster {
    nodes: Vec<Node>,
    /// Holds every node's dir (`node-<port>/` with `redis.conf`, `redis.log`, `nodes.conf`).
    tmp: tempfile::TempDir,
    masters: usize,
    config: ClusterConfig,
    /// Announced client port → real port, for the nodes whose differ.
    ports: PortMap,
}

/// Announced client port → real port ([`Network::HiddenAddress`]); empty otherwise.
type PortMap = BTreeMap<u16, u16>;

/// The real port of a node announced on `port`.
fn real(ports: &PortMap, port: u16) -> u16 {
    ports.get(&port).copied().unwrap_or(port)
}

/// `(first slot, last slot, master port)` ranges, sorted: who owns what.
type SlotMap = Vec<(u16, u16, u16)>;

/// One node's own view of the cluster, as far as this harness cares.
struct View {
    state_ok: bool,
    known_nodes: usize,
    slots: SlotMap,
    /// `Some((master port, link up))` if the node is a replica.
    replica_of: Option<(u16, bool)>,
    /// `(port, is_master)` of every node this one does not consider failed, sorted:
    /// all nodes must agree before a manual failover can gather votes.
    roles: Vec<(u16, bool)>,
}

impl Cluster {
    /// Starts `masters` masters with `replicas` replicas each, creates the cluster and
    /// waits until every node says `cluster_state:ok`, all agree on the slot map, and
    /// every replica has synced with its master.
    pub fn start(masters: usize, replicas: usize) -> Cluster {
        Self::start_with(masters, replicas, ClusterConfig::default())
    }

    /// [`Cluster::start`] with explicit [`ClusterConfig`].
    pub fn start_with(masters: usize, replicas: usize, config: ClusterConfig) -> Cluster {
        assert!(masters >= 1, "a cluster needs at least one master");
        require_redis();
        let tmp = tempfile::Builder::new()
            .prefix("slotgate-cluster-")
            .tempdir()
            .expect("create temp dir for the cluster");
        let mut cluster = Cluster {
            nodes: Vec::new(),
            tmp,
            masters,
            config,
            ports: PortMap::new(),
        };
        // Spawn everything first, then wait: nodes boot in parallel.
        for _ in 0..masters * (1 + replicas) {
            cluster.spawn_new_node();
        }
        for i in 0..cluster.nodes.len() {
            cluster.wait_node_ready(i, true);
        }
        if masters >= 3 && cluster.config.network == Network::Direct {
            cluster.create_with_redis_cli(replicas);
        } else {
            // `redis-cli --cluster create` refuses fewer than 3 masters, and would try
            // to reach the nodes by the addresses they announce.
            cluster.create_by_hand(masters, replicas);
        }
        let n = cluster.nodes.len();
        if let Err(why) = cluster.poll_ok(START_TIMEOUT, Some(n)) {
            panic!(
                "cluster of {masters} masters x {replicas} replicas on ports {:?} did not settle within {START_TIMEOUT:?}: {why}",
                cluster.ports()
            );
        }
        cluster
    }

    /// Starts one more node and joins it to the cluster (`CLUSTER MEET`) as a master
    /// owning no slots, as an operator adds capacity; waits until every node knows it.
    /// Returns its port.
    #[allow(dead_code)]
    pub fn add_master(&mut self) -> u16 {
        self.spawn_new_node();
        let i = self.nodes.len() - 1;
        self.wait_node_ready(i, true);
        let port = self.nodes[i].port;
        let seed = self.live_ports()[0];
        must(seed, &["CLUSTER", "MEET", "127.0.0.1", &port.to_string()]);
        let n = self.live_ports().len();
        if let Err(why) = self.poll_ok(START_TIMEOUT, Some(n)) {
            panic!("node {port} did not join the cluster: {why}");
        }
        port
    }

    /// Every node's port, in start order, killed ones included.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// Ports of the nodes that are running (not killed).
    pub fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
            .collect()
    }

    /// Running nodes that are masters by their own account, sorted by the first slot
    /// each owns (so `master_ports()[0]` owns slot 0); masters without slots come last.
    pub fn master_ports(&self) -> Vec<u16> {
        let mut masters: Vec<(u32, u16)> = Vec::new();
        for port in self.live_ports() {
            let Ok(nodes) = cluster_nodes(port, &self.ports) else {
                continue;
            };
            let Some(me) = nodes.iter().find(|l| l.myself) else {
                continue;
            };
            if me.master_id.is_none() && !me.failed {
                masters.push((me.first_slot.map_or(u32::MAX, u32::from), port));
            }
        }
        masters.sort();
        masters.into_iter().map(|(_, port)| port).collect()
    }

    /// A running replica of `master_port` (by the replica's own account), lowest port first.
    pub fn replica_of(&self, master_port: u16) -> Option<u16> {
        let master_id = self.node_id_of(master_port)?;
        self.live_ports().into_iter().find(|&port| {
            cluster_nodes(port, &self.ports)
                .ok()
                .and_then(|nodes| nodes.into_iter().find(|l| l.myself))
                .is_some_and(|me| me.master_id.as_deref() == Some(master_id.as_str()))
        })
    }

    /// `"127.0.0.1:p1,127.0.0.1:p2,..."` of every node, killed ones included.
    pub fn seeds(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Runs `redis-cli -p port args...` and returns its stdout, trimmed. redis-cli prints
    /// error replies on stdout too (`ERR ...`, `MOVED ...`), without `(error)`.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        redis_cli(port, args)
    }

    /// A plain `redis` connection straight to one node (10 s read timeout). Replies
    /// `MOVED`/`ASK` come back as errors; nothing is followed.
    pub fn node_client(&self, port: u16) -> redis::Connection {
        connect(port).unwrap_or_else(|e| panic!("connect to node {port}: {e}"))
    }

    /// The port of the master owning `slot`, by that master's own account. Waits up to
    /// 10 s for some running node to claim it (e.g. during a failover).
    pub fn node_for_slot(&self, slot: u16) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for port in self.live_ports() {
                if let Ok(view) = view_of(port, &self.ports) {
                    if owner_in(&view.slots, slot) == Some(port) {
                        return port;
                    }
                }
            }
            if Instant::now() > deadline {
                panic!("no running node claims slot {slot}");
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// For each of the 16384 slots, the port of its master (0 if uncovered), from the
    /// `CLUSTER SLOTS` of the first running master.
    pub fn owners_by_slot(&self) -> Vec<u16> {
        let mut owners = vec![0u16; 16384];
        let port = self.master_ports()[0];
        let view =
            view_of(port, &self.ports).unwrap_or_else(|e| panic!("CLUSTER SLOTS of {port}: {e}"));
        for (first, last, owner) in view.slots {
            for slot in first..=last {
                owners[usize::from(slot)] = owner;
            }
        }
        owners
    }

    /// The master owning the slot of `key` (see [`Cluster::node_for_slot`]).
    pub fn node_for_key(&self, key: &str) -> u16 {
        self.node_for_slot(super::key_slot(key.as_bytes()))
    }

    /// The node's cluster id (`CLUSTER MYID`), or what the other nodes remember of a
    /// killed one.
    pub fn node_id(&self, port: u16) -> String {
        self.node_id_of(port)
            .unwrap_or_else(|| panic!("no node id known for port {port}"))
    }

    /// SIGKILLs the node on `port` by pid and reaps it. Its dir and `nodes.conf` stay, so
    /// [`Cluster::restart`] can bring it back.
    pub fn kill(&mut self, port: u16) {
        let node = self.node_mut(port);
        let mut child = node
            .child
            .take()
            .unwrap_or_else(|| panic!("node {port} is not running"));
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts a killed node again with its old config and `nodes.conf`; it rejoins the
    /// cluster (an old master comes back as a replica of its successor). Waits until it
    /// answers PING, not for the cluster: call [`Cluster::wait_for_ok`] for that.
    pub fn restart(&mut self, port: u16) {
        let i = self.index_of(port);
        assert!(
            self.nodes[i].child.is_none(),
            "node {port} is still running"
        );
        let child = spawn_redis(&self.nodes[i]);
        self.nodes[i].child = Some(child);
        self.wait_node_ready(i, false);
    }

    /// Waits until every running node says `cluster_state:ok`, all of them agree on
    /// which master owns each of the 16384 slots, every owner is running, and every
    /// replica of a running master has its link up. Panics with the reason on timeout.
    pub fn wait_for_ok(&self, timeout: Duration) {
        if let Err(why) = self.poll_ok(timeout, None) {
            panic!(
                "cluster on ports {:?} not ok within {timeout:?}: {why}",
                self.ports()
            );
        }
    }

    /// Moves `slots` from master `from` to master `to` while clients keep working, as
    /// `redis-cli --cluster reshard` does, one slot at a time: IMPORTING on `to`,
    /// MIGRATING on `from`, MIGRATE the keys in batches of 100, then `SETSLOT NODE` on
    /// `to`, `from` and every other master. Replicas learn the change by gossip
    /// ([`Cluster::wait_for_ok`] waits for that).
    pub fn migrate_slots(&self, slots: RangeInclusive<u16>, from: u16, to: u16) {
        self.migrate_slots_paced(slots, from, to, Duration::ZERO);
    }

    /// [`Cluster::migrate_slots`], but when `pause_between_keys` is non-zero the keys move
    /// one per MIGRATE with that pause after each, so each slot stays half-migrated
    /// (some keys on `from`, some on `to`, i.e. `ASK` territory) for about
    /// `keys x pause`.
    pub fn migrate_slots_paced(
        &self,
        slots: RangeInclusive<u16>,
        from: u16,
        to: u16,
        pause_between_keys: Duration,
    ) {
        let mut m = Migration::new(self, from, to);
        for slot in slots {
            m.begin(slot);
            if pause_between_keys.is_zero() {
                while m.move_keys(slot, 100) > 0 {}
            } else {
                while m.move_keys(slot, 1) > 0 {
                    sleep(pause_between_keys);
                }
            }
            m.finish(slot);
        }
    }

    /// Step 1 of a hand-driven migration: `slot` IMPORTING on `to`, MIGRATING on `from`.
    /// Between this and [`Cluster::finish_slot_migration`] requests for keys already
    /// moved are answered with `ASK` by `from`.
    pub fn begin_slot_migration(&self, slot: u16, from: u16, to: u16) {
        Migration::new(self, from, to).begin(slot);
    }

    /// Step 2: MIGRATEs up to `max` keys of `slot` from `from` to `to`; returns how many
    /// moved (0 when `from` has none left in the slot).
    pub fn migrate_keys(&self, slot: u16, from: u16, to: u16, max: usize) -> usize {
        Migration::new(self, from, to).move_keys(slot, max)
    }

    /// Step 3: moves any keys left, then `SETSLOT slot NODE <to>` on `to`, `from` and
    /// every other master.
    pub fn finish_slot_migration(&self, slot: u16, from: u16, to: u16) {
        let mut m = Migration::new(self, from, to);
        while m.move_keys(slot, 100) > 0 {}
        m.finish(slot);
    }

    /// From now on every running node requires authentication, as an operator
    /// protects a cluster: `password` for the default user (`requirepass`), or, with
    /// `user`, an ACL user with every right while the default user is switched off.
    /// Replicas authenticate to their masters the same way (`masteruser`,
    /// `masterauth`). The harness's own queries do not authenticate, so this comes after
    /// the last of them (killing and dropping still work).
    pub fn require_auth(&self, user: Option<&str>, password: &str) {
        for port in self.live_ports() {
            let mut con = self.node_client(port);
            let mut steps: Vec<Vec<String>> = Vec::new();
            let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            match user {
                Some(user) => {
                    let secret = format!(">{password}");
                    steps.push(words(&[
                        "ACL", "SETUSER", user, "on", &secret, "~*", "&*", "+@all",
                    ]));
                    steps.push(words(&["CONFIG", "SET", "masteruser", user]));
                    steps.push(words(&["CONFIG", "SET", "masterauth", password]));
                    steps.push(words(&["ACL", "SETUSER", "default", "off"]));
                }
                None => {
                    steps.push(words(&["CONFIG", "SET", "masterauth", password]));
                    steps.push(words(&["CONFIG", "SET", "requirepass", password]));
                }
            }
            for step in steps {
                let args: Vec<&str> = step.iter().map(String::as_str).collect();
                if let Err(e) = run(&mut con, &args) {
                    panic!("{} on {port}: {e}", args[..2].join(" "));
                }
            }
        }
    }

    /// The temp dir holding every node's dir (`node-<port>/`).
    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// The last `lines` lines of the node's `redis.log`.
    pub fn log_tail(&self, port: u16, lines: usize) -> String {
        tail_file(&self.nodes[self.index_of(port)].log_path(), lines)
    }

    /// The pid of a running node (to check from outside that it is gone after drop).
    pub fn pid(&self, port: u16) -> Option<u32> {
        self.nodes[self.index_of(port)]
            .child
            .as_ref()
            .map(Child::id)
    }

    /// The client address the node on `port` announces: `127.0.0.2:<port of its own>`
    /// on [`Network::HiddenAddress`], else `127.0.0.1:<port>` (a host name given by
    /// `node_config` is not known here).
    pub fn announced(&self, port: u16) -> String {
        let node = &self.nodes[self.index_of(port)];
        match self.config.network {
            Network::HiddenAddress => format!("127.0.0.2:{}", node.announced_port),
            _ => format!("127.0.0.1:{port}"),
        }
    }

    /// Cuts the node on `port` off the cluster bus ([`Network::PartitionableBus`]):
    /// nobody reaches its bus and it reaches nobody's, while clients still reach it.
    /// Replication (over the client port) is not cut.
    pub fn partition(&self, port: u16) {
        assert_eq!(
            self.config.network,
            Network::PartitionableBus,
            "partition needs Network::PartitionableBus"
        );
        let cut = &self.nodes[self.index_of(port)];
        for node in &self.nodes {
            let Some(gateway) = &node.gateway else {
                continue;
            };
            if node.port == port {
                gateway.cut_all();
            } else {
                gateway.cut(cut.source());
            }
        }
    }

    /// Ends every partition: each gateway admits everyone again.
    pub fn heal(&self) {
        for gateway in self.nodes.iter().filter_map(|n| n.gateway.as_ref()) {
            gateway.heal();
        }
    }

    // ---- internals ----

    fn index_of(&self, port: u16) -> usize {
        self.nodes
            .iter()
            .position(|n| n.port == port)
            .unwrap_or_else(|| panic!("port {port} is not a node of this cluster"))
    }

    fn node_mut(&mut self, port: u16) -> &mut Node {
        let i = self.index_of(port);
        &mut self.nodes[i]
    }

    fn is_live(&self, port: u16) -> bool {
        self.nodes
            .iter()
            .any(|n| n.port == port && n.child.is_some())
    }

    fn node_id_of(&self, port: u16) -> Option<String> {
        if self.is_live(port) {
            if let Ok(id) = query::<String>(port, &["CLUSTER", "MYID"]) {
                return Some(id);
            }
        }
        self.live_ports().into_iter().find_map(|p| {
            cluster_nodes(p, &self.ports)
                .ok()?
                .into_iter()
                .find(|l| l.port == port)
                .map(|l| l.id)
        })
    }

    fn spawn_new_node(&mut self) {
        let port = free_cluster_port();
        let index = self.nodes.len();
        let dir = self.tmp.path().join(format!("node-{port}"));
        fs::create_dir_all(&dir).expect("create node dir");
        let mut node = Node {
            port,
            index,
            announced_port: port,
            dir,
            child: None,
            gateway: None,
            hidden_bus_port: None,
        };
        self.set_up_network(&mut node);
        if let Some(tls) = &self.config.tls {
            super::tls::mark_tls_port(port, tls.clone());
        }
        write_config(&node, &self.config);
        node.child = Some(spawn_redis(&node));
        self.nodes.push(node);
    }

    /// Opens the node's gateway and picks its announced or hidden ports, as the
    /// network asks; records an announced port that differs from the real one.
    fn set_up_network(&mut self, node: &mut Node) {
        let loopback = |last: u8, port: u16| SocketAddr::from(([127, 0, 0, last], port));
        match self.config.network {
            Network::Direct => {}
            Network::HiddenAddress => {
                // Slotgate and the test connect from 127.0.0.1: refused, as the host
                // is outside a container network.
                let (announced, gateway) = (0..100)
                    .find_map(|_| {
                        let announced = free_port();
                        let admit = Admit::AllBut(IpAddr::V4(Ipv4Addr::LOCALHOST));
                        Gateway::start(loopback(2, announced), loopback(1, node.port), admit)
                            .ok()
                            .map(|gateway| (announced, gateway))
                    })
                    .expect("a free port on 127.0.0.2 for a node's announced address");
                node.announced_port = announced;
                node.gateway = Some(gateway);
                self.ports.insert(announced, node.port);
            }
            Network::PartitionableBus => {
                let hidden = free_port();
                let gateway = Gateway::start(
                    loopback(1, node.port + BUS_OFFSET),
                    loopback(1, hidden),
                    Admit::All,
                )
                .unwrap_or_else(|e| panic!("gateway for the bus of node {}: {e}", node.port));
                node.hidden_bus_port = Some(hidden);
                node.gateway = Some(gateway);
            }
        }
    }

    /// Waits until node `i` answers PING. If another process took its port in the
    /// meantime, moves the node to a fresh port (before the cluster is created only).
    fn wait_node_ready(&mut self, i: usize, may_move: bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut port_retries = 0;
        loop {
            let port = self.nodes[i].port;
            if query::<String>(port, &["PING"]).is_ok() {
                return;
            }
            let exited = self.nodes[i]
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.nodes[i].child = None;
                let log = tail_file(&self.nodes[i].log_path(), LOG_TAIL_LINES);
                if may_move && log.contains("Address already in use") && port_retries < 5 {
                    port_retries += 1;
                    let new_port = free_cluster_port();
                    let new_dir = self.tmp.path().join(format!("node-{new_port}"));
                    fs::rename(&self.nodes[i].dir, &new_dir).expect("rename node dir");
                    let mut node = Node {
                        port: new_port,
                        index: self.nodes[i].index,
                        announced_port: new_port,
                        dir: new_dir,
                        child: None,
                        gateway: None,
                        hidden_bus_port: None,
                    };
                    let _ = fs::remove_file(node.log_path());
                    // The old gateway goes first, freeing its ports.
                    self.nodes[i].gateway = None;
                    self.ports.retain(|_, real| *real != port);
                    self.set_up_network(&mut node);
                    if let Some(tls) = &self.config.tls {
                        super::tls::mark_tls_port(new_port, tls.clone());
                    }
                    write_config(&node, &self.config);
                    node.child = Some(spawn_redis(&node));
                    self.nodes[i] = node;
                    continue;
                }
                panic!("redis-server on port {port} exited with {status}; log:\n{log}");
            }
            if Instant::now() > deadline {
                panic!("redis-server on port {port} did not answer PING within 10 s");
            }
            sleep(Duration::from_millis(20));
        }
    }

    fn create_with_redis_cli(&self, replicas: usize) {
        let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
        args.extend(self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)));
        args.extend([
            "--cluster-replicas".into(),
            replicas.to_string(),
            "--cluster-yes".into(),
        ]);
        if let Some(tls) = &self.config.tls {
            args.extend(tls.cli_args());
        }
        let out = Command::new("redis-cli")
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("spawn redis-cli --cluster create");
        if !out.status.success() {
            panic!(
                "redis-cli {} failed ({}):\n{}\n{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// What `redis-cli --cluster create` does, for 1 or 2 masters: slots split evenly
    /// over the first `masters` nodes, the rest replicate them round-robin.
    fn create_by_hand(&self, masters: usize, replicas: usize) {
        let ports = self.ports();
        for (i, &port) in ports.iter().enumerate() {
            must(port, &["CLUSTER", "SET-CONFIG-EPOCH", &(i + 1).to_string()]);
        }
        for (i, &port) in ports.iter().enumerate().take(masters) {
            let first = i * 16384 / masters;
            let last = (i + 1) * 16384 / masters - 1;
            must(
                port,
                &[
                    "CLUSTER",
                    "ADDSLOTSRANGE",
                    &first.to_string(),
                    &last.to_string(),
                ],
            );
        }
        for &port in &ports[1..] {
            must(
                port,
                &["CLUSTER", "MEET", "127.0.0.1", &ports[0].to_string()],
            );
        }
        if replicas == 0 {
            return;
        }
        let master_ids: Vec<String> = ports[..masters]
            .iter()
            .map(|&p| query::<String>(p, &["CLUSTER", "MYID"]).expect("CLUSTER MYID"))
            .collect();
        for (j, &port) in ports[masters..].iter().enumerate() {
            let master_id = &master_ids[j % masters];
            // The replica must have heard of its master through gossip first.
            retry(&format!("CLUSTER REPLICATE on {port}"), || {
                query::<String>(port, &["CLUSTER", "REPLICATE", master_id]).map(drop)
            });
        }
    }

    /// Polls until the cluster is ok (see [`Cluster::wait_for_ok`]); with
    /// `expect_known`, each node must also know exactly that many nodes and there must be
    /// `self.masters` masters owning slots.
    fn poll_ok(&self, timeout: Duration, expect_known: Option<usize>) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let why = match self.check_ok(expect_known) {
                Ok(()) => return Ok(()),
                Err(why) => why,
            };
            if Instant::now() > deadline {
                return Err(why);
            }
            sleep(Duration::from_millis(50));
        }
    }

    fn check_ok(&self, expect_known: Option<usize>) -> Result<(), String> {
        let live = self.live_ports();
        let mut reference: Option<(u16, SlotMap)> = None;
        let mut roles_reference: Option<(u16, Vec<(u16, bool)>)> = None;
        for &port in &live {
            let view = view_of(port, &self.ports).map_err(|e| format!("node {port}: {e}"))?;
            match &roles_reference {
                None => roles_reference = Some((port, view.roles.clone())),
                Some((ref_port, roles)) if *roles != view.roles => {
                    return Err(format!(
                        "nodes {ref_port} and {port} disagree on roles: {roles:?} vs {:?}",
                        view.roles
                    ));
                }
                Some(_) => {}
            }
            if !view.state_ok {
                return Err(format!("node {port} says cluster_state is not ok"));
            }
            if let Some(n) = expect_known {
                if view.known_nodes != n {
                    return Err(format!(
                        "node {port} knows {} of {n} nodes",
                        view.known_nodes
                    ));
                }
            }
            if let Some((master, link_up)) = view.replica_of {
                if self.is_live(master) && !link_up {
                    return Err(format!("replica {port} has its link to {master} down"));
                }
            }
            let covered: u32 = view
                .slots
                .iter()
                .map(|&(a, b, _)| u32::from(b) - u32::from(a) + 1)
                .sum();
            if covered != 16384 {
                return Err(format!("node {port} sees {covered} of 16384 slots covered"));
            }
            if let Some(&(_, _, owner)) = view.slots.iter().find(|s| !self.is_live(s.2)) {
                return Err(format!(
                    "node {port} still routes slots to killed node {owner}"
                ));
            }
            match &reference {
                None => reference = Some((port, view.slots)),
                Some((ref_port, slots)) if *slots != view.slots => {
                    return Err(format!(
                        "nodes {ref_port} and {port} disagree on the slot map: {} vs {}",
                        describe(slots),
                        describe(&view.slots)
                    ));
                }
                Some(_) => {}
            }
        }
        if expect_known.is_some() {
            let masters: std::collections::BTreeSet<u16> = reference
                .iter()
                .flat_map(|(_, slots)| slots.iter().map(|s| s.2))
                .collect();
            if masters.len() != self.masters {
                return Err(format!(
                    "{} masters own slots, expected {}",
                    masters.len(),
                    self.masters
                ));
            }
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        for node in &mut self.nodes {
            let pid = node.child.as_ref().map(Child::id);
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            if panicking {
                let state = match pid {
                    Some(pid) => format!("pid {pid}"),
                    None => "not running".to_string(),
                };
                eprintln!(
                    "===== redis node 127.0.0.1:{} ({state}): last {LOG_TAIL_LINES} lines of {} =====\n{}",
                    node.port,
                    node.log_path().display(),
                    tail_file(&node.log_path(), LOG_TAIL_LINES)
                );
            }
        }
    }
}

/// Connections and node ids for moving slots between two masters.
struct Migration {
    from: u16,
    to: u16,
    from_id: String,
    to_id: String,
    /// Every running master, `to` and `from` first.
    masters: Vec<u16>,
    from_con: redis::Connection,
    to_con: redis::Connection,
}

impl Migration {
    fn new(cluster: &Cluster, from: u16, to: u16) -> Migration {
        assert_ne!(from, to, "migrating slots from a node to itself");
        let from_id = cluster.node_id(from);
        let to_id = cluster.node_id(to);
        let mut masters = vec![to, from];
        masters.extend(
            cluster
                .master_ports()
                .into_iter()
                .filter(|&p| p != from && p != to),
        );
        Migration {
            from,
            to,
            from_id,
            to_id,
            masters,
            from_con: connect(from).unwrap_or_else(|e| panic!("connect to {from}: {e}")),
            to_con: connect(to).unwrap_or_else(|e| panic!("connect to {to}: {e}")),
        }
    }

    fn begin(&mut self, slot: u16) {
        let s = slot.to_string();
        let (to, from) = (self.to, self.from);
        let (from_id, to_id) = (self.from_id.clone(), self.to_id.clone());
        retry(&format!("SETSLOT {slot} IMPORTING on {to}"), || {
            run(
                &mut self.to_con,
                &["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id],
            )
        });
        retry(&format!("SETSLOT {slot} MIGRATING on {from}"), || {
            run(
                &mut self.from_con,
                &["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id],
            )
        });
    }

    fn move_keys(&mut self, slot: u16, max: usize) -> usize {
        let (from, to) = (self.from, self.to);
        let to_port = to.to_string();
        let mut attempts = 0;
        loop {
            let keys: Vec<Vec<u8>> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(max)
                .query(&mut self.from_con)
                .unwrap_or_else(|e| panic!("CLUSTER GETKEYSINSLOT {slot} on {from}: {e}"));
            if keys.is_empty() {
                return 0;
            }
            let mut migrate = redis::cmd("MIGRATE");
            migrate
                .arg("127.0.0.1")
                .arg(&to_port)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(&keys);
            match migrate.query::<Value>(&mut self.from_con) {
                Ok(_) => return keys.len(),
                Err(e) if e.to_string().contains("BUSYKEY") => panic!(
                    "MIGRATE slot {slot} {from} -> {to}: {e} (a key exists on both nodes: \
                     something wrote to the importing node without ASKING?)"
                ),
                Err(e) => {
                    // IOERR / timeouts / TRYAGAIN: back off and try the batch again.
                    attempts += 1;
                    if attempts >= STEP_ATTEMPTS {
                        panic!("MIGRATE slot {slot} {from} -> {to} failed {attempts} times: {e}");
                    }
                    sleep(STEP_BACKOFF);
                    if e.is_io_error() {
                        self.from_con =
                            connect(from).unwrap_or_else(|e| panic!("reconnect to {from}: {e}"));
                    }
                }
            }
        }
    }

    fn finish(&mut self, slot: u16) {
        let s = slot.to_string();
        let to_id = self.to_id.clone();
        for &port in &self.masters {
            let args = ["CLUSTER", "SETSLOT", &s, "NODE", &to_id];
            if port == self.to {
                retry(&format!("SETSLOT {slot} NODE on {port}"), || {
                    run(&mut self.to_con, &args)
                });
            } else if port == self.from {
                retry(&format!("SETSLOT {slot} NODE on {port}"), || {
                    run(&mut self.from_con, &args)
                });
            } else {
                // Another master may not have heard of the bumped epoch yet; gossip
                // fixes it either way, so one attempt is enough.
                let _ = query::<Value>(port, &args);
            }
        }
    }
}

// ---- talking to nodes ----

fn connect(port: u16) -> redis::RedisResult<redis::Connection> {
    let client = match super::tls::tls_port(port) {
        None => redis::Client::open(format!("redis://127.0.0.1:{port}/"))?,
        Some(tls) => {
            redis::Client::build_with_tls(format!("rediss://127.0.0.1:{port}/"), tls.redis_certs())?
        }
    };
    let con = client.get_connection_with_timeout(NODE_IO_TIMEOUT)?;
    con.set_read_timeout(Some(NODE_IO_TIMEOUT.max(Duration::from_secs(10))))?;
    con.set_write_timeout(Some(NODE_IO_TIMEOUT))?;
    Ok(con)
}

fn run(con: &mut redis::Connection, args: &[&str]) -> Result<(), String> {
    let mut cmd = redis::Cmd::new();
    for a in args {
        cmd.arg(*a);
    }
    cmd.query::<Value>(con).map(drop).map_err(|e| e.to_string())
}

/// One command on a fresh connection to `port`.
fn query<T: FromRedisValue>(port: u16, args: &[&str]) -> Result<T, String> {
    let mut con = connect(port).map_err(|e| e.to_string())?;
    let mut cmd = redis::Cmd::new();
    for a in args {
        cmd.arg(*a);
    }
    cmd.query(&mut con).map_err(|e| e.to_string())
}

fn must(port: u16, args: &[&str]) {
    if let Err(e) = query::<Value>(port, args) {
        panic!("{} on {port}: {e}", args.join(" "));
    }
}

fn retry(what: &str, mut step: impl FnMut() -> Result<(), String>) {
    let mut last = String::new();
    for _ in 0..STEP_ATTEMPTS {
        match step() {
            Ok(()) => return,
            Err(e) => last = e,
        }
        sleep(STEP_BACKOFF);
    }
    panic!("{what} failed {STEP_ATTEMPTS} times, last error: {last}");
}

pub(super) fn redis_cli(port: u16, args: &[&str]) -> String {
    let tls = super::tls::tls_port(port).map_or_else(Vec::new, |tls| tls.cli_args());
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(tls)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawn redis-cli -p {port} {}: {e}", args.join(" ")));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn write_config(node: &Node, config: &ClusterConfig) {
    let mut text = format!(
        "port {port}\n\
         bind 127.0.0.1\n\
         protected-mode no\n\
         daemonize no\n\
         dir \"{dir}\"\n\
         logfile \"{log}\"\n\
         loglevel notice\n\
         cluster-enabled yes\n\
         cluster-config-file nodes.conf\n\
         cluster-node-timeout {timeout}\n\
         # Fail over whatever the replica's data age: tests kill masters on purpose.\n\
         cluster-replica-validity-factor 0\n\
         # Keep the topology the test built: a master emptied by a migration stays a master.\n\
         cluster-allow-replica-migration no\n\
         save \"\"\n\
         appendonly no\n\
         rdb-del-sync-files yes\n\
         repl-diskless-sync yes\n\
         repl-diskless-sync-delay 0\n\
         enable-debug-command local\n",
        port = node.port,
        dir = node.dir.display(),
        log = node.log_path().display(),
        timeout = config.node_timeout_ms,
    );
    let mut lines = config.extra_config.clone();
    if let Some(tls) = &config.tls {
        // Listen with TLS only, on the port the test knows; the bus port follows it.
        text = text.replace(
            &format!("port {}\n", node.port),
            &format!("port 0\ntls-port {}\n", node.port),
        );
        lines.extend([
            format!("tls-cert-file \"{}\"", tls.cert.display()),
            format!("tls-key-file \"{}\"", tls.key.display()),
            format!("tls-ca-cert-file \"{}\"", tls.ca.display()),
            "tls-cluster yes".to_string(),
            "tls-replication yes".to_string(),
        ]);
    }
    let source = node.source();
    match config.network {
        Network::Direct => {}
        Network::HiddenAddress => lines.extend([
            "bind 127.0.0.1 127.0.0.2".to_string(),
            "cluster-announce-ip 127.0.0.2".to_string(),
            format!("cluster-announce-port {}", node.announced_port),
            format!("cluster-announce-bus-port {}", node.port + BUS_OFFSET),
            format!("bind-source-addr {source}"),
        ]),
        Network::PartitionableBus => lines.extend([
            format!("cluster-port {}", node.hidden_bus_port.unwrap_or(0)),
            format!("cluster-announce-bus-port {}", node.port + BUS_OFFSET),
            format!("bind-source-addr {source}"),
        ]),
    }
    if let Some(per_node) = config.node_config {
        lines.extend(per_node(node.index, node.port));
    }
    for line in &lines {
        text.push_str(line);
        text.push('\n');
    }
    fs::write(node.config_path(), text).expect("write redis.conf");
}

/// Spawns `redis-server <dir>/redis.conf`; its stdout/stderr (early start-up errors)
/// go to the same `redis.log` the server logs to.
fn spawn_redis(node: &Node) -> Child {
    let log: File = OpenOptions::new()
        .create(true)
        .append(true)
        .open(node.log_path())
        .expect("open redis.log");
    let log2 = log.try_clone().expect("dup redis.log");
    Command::new("redis-server")
        .arg(node.config_path())
        .current_dir(&node.dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn redis-server for port {}: {e}", node.port))
}

// ---- parsing what nodes say ----

struct NodeLine {
    id: String,
    port: u16,
    myself: bool,
    failed: bool,
    master_id: Option<String>,
    first_slot: Option<u16>,
}

/// The node's `CLUSTER NODES`, ports translated back to real ones.
fn cluster_nodes(port: u16, ports: &PortMap) -> Result<Vec<NodeLine>, String> {
    let text: String = query(port, &["CLUSTER", "NODES"])?;
    Ok(text
        .lines()
        .filter_map(parse_node_line)
        .map(|line| NodeLine {
            port: real(ports, line.port),
            ..line
        })
        .collect())
}

/// `<id> <ip:port@cport[,hostname]> <flags> <master|-> <ping> <pong> <epoch> <link> <slot>...`
fn parse_node_line(line: &str) -> Option<NodeLine> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 8 {
        return None;
    }
    let addr = f[1].split(['@', ',']).next()?;
    let port = addr.rsplit(':').next()?.parse().ok()?;
    let flags: Vec<&str> = f[2].split(',').collect();
    let first_slot = f[8..]
        .iter()
        .filter(|s| !s.starts_with('['))
        .filter_map(|s| s.split('-').next()?.parse::<u16>().ok())
        .min();
    Some(NodeLine {
        id: f[0].to_string(),
        port,
        myself: flags.contains(&"myself"),
        failed: flags
            .iter()
            .any(|&fl| fl == "fail" || fl == "fail?" || fl == "noaddr"),
        master_id: (f[3] != "-").then(|| f[3].to_string()),
        first_slot,
    })
}

/// The node's view, ports translated back to real ones.
fn view_of(port: u16, ports: &PortMap) -> Result<View, String> {
    let mut con = connect(port).map_err(|e| e.to_string())?;
    let info: String = redis::cmd("CLUSTER")
        .arg("INFO")
        .query(&mut con)
        .map_err(|e| e.to_string())?;
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
            .unwrap_or("")
            .to_string()
    };
    let state_ok = field("cluster_state") == "ok";
    let known_nodes = field("cluster_known_nodes").parse().unwrap_or(0);

    let raw: Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query(&mut con)
        .map_err(|e| e.to_string())?;
    let mut slots = Vec::new();
    if let Value::Array(ranges) = raw {
        for range in ranges {
            let Value::Array(parts) = range else { continue };
            if parts.len() < 3 {
                continue;
            }
            let (Some(a), Some(b)) = (as_int(&parts[0]), as_int(&parts[1])) else {
                continue;
            };
            let Value::Array(master) = &parts[2] else {
                continue;
            };
            let Some(p) = master.get(1).and_then(as_int) else {
                continue;
            };
            slots.push((a as u16, b as u16, real(ports, p as u16)));
        }
    }
    slots.sort();

    let repl: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut con)
        .map_err(|e| e.to_string())?;
    let repl_field = |name: &str| {
        repl.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
            .unwrap_or("")
            .to_string()
    };
    let replica_of = (repl_field("role") == "slave").then(|| {
        (
            real(ports, repl_field("master_port").parse().unwrap_or(0)),
            repl_field("master_link_status") == "up",
        )
    });
    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query(&mut con)
        .map_err(|e| e.to_string())?;
    let mut roles: Vec<(u16, bool)> = nodes
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let addr = parts.nth(1)?;
            let flags = parts.next()?;
            if flags.contains("fail") || flags.contains("handshake") || flags.contains("noaddr") {
                return None;
            }
            let port = addr.split('@').next()?.rsplit(':').next()?.parse().ok()?;
            Some((real(ports, port), flags.contains("master")))
        })
        .collect();
    roles.sort();
    Ok(View {
        state_ok,
        known_nodes,
        slots,
        replica_of,
        roles,
    })
}

fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn owner_in(slots: &[(u16, u16, u16)], slot: u16) -> Option<u16> {
    slots
        .iter()
        .find(|&&(a, b, _)| a <= slot && slot <= b)
        .map(|s| s.2)
}

fn describe(slots: &[(u16, u16, u16)]) -> String {
    let mut by_owner: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for &(a, b, p) in slots {
        by_owner.entry(p).or_default().push(format!("{a}-{b}"));
    }
    by_owner
        .iter()
        .map(|(p, r)| format!("{p}:[{}]", r.join(",")))
        .collect::<Vec<_>>()
        .join(" ")
}
