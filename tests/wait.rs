//! `WAIT` and `WAITAOF` through slotgate: they count from the client's own last write
//! (at its slot's master, on a connection pinned to the client), block only that
//! client, and give the node's own answer.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{require_redis, Cluster, Proxy, RawClient};

/// Sends `signal` (`STOP`, `CONT`) to the node on `port`, a child of this test.
fn signal(cluster: &Cluster, port: u16, signal: &str) {
    let pid = cluster.pid(port).expect("the node runs");
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// Resumes a stopped node when dropped, whatever the test did meanwhile.
struct Stopped<'a> {
    cluster: &'a Cluster,
    port: u16,
}

impl<'a> Stopped<'a> {
    fn stop(cluster: &'a Cluster, port: u16) -> Stopped<'a> {
        signal(cluster, port, "STOP");
        Stopped { cluster, port }
    }
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        signal(self.cluster, self.port, "CONT");
    }
}

fn wait(con: &mut redis::Connection, replicas: i64, millis: u64) -> i64 {
    redis::cmd("WAIT")
        .arg(replicas)
        .arg(millis)
        .query(con)
        .unwrap()
}

#[test]
fn wait_counts_the_replicas_that_have_the_clients_writes() {
    require_redis();
    let cluster = Cluster::start(3, 1);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let key = "{wait}k";
    let master = cluster.node_for_key(key);
    let replica = cluster
        .replica_of(master)
        .expect("the master has a replica");
    let mut con = proxy.client();

    // Before any write: what a fresh connection gets, every replica.
    assert_eq!(wait(&mut con, 1, 0), 1);
    let _: () = redis::cmd("SET").arg(key).arg("1").query(&mut con).unwrap();
    assert_eq!(wait(&mut con, 1, 0), 1, "the replica has the SET");
    // More replicas than there are: the count once the timeout is spent.
    assert_eq!(wait(&mut con, 2, 200), 1);

    // The replica stops reading: the client's next write is not acknowledged, and WAIT
    // says so (it counts from that write, not from what the replica had before).
    let stopped = Stopped::stop(&cluster, replica);
    let _: () = redis::cmd("SET").arg(key).arg("2").query(&mut con).unwrap();
    assert_eq!(wait(&mut con, 1, 300), 0);

    // WAIT 1 0 now blocks its client until the replica is back, and no one else.
    let mut waiting = RawClient::connect(proxy.port());
    waiting.write(format!("SET {key} 3\r\nWAIT 1 0\r\n").as_bytes());
    assert_eq!(
        waiting.read_replies(1, Duration::from_secs(10)),
        ["+OK\r\n"]
    );
    let value: String = redis::cmd("GET").arg(key).query(&mut con).unwrap();
    assert_eq!(value, "3", "other clients are served meanwhile");
    assert_eq!(
        waiting.read_quiet(),
        "",
        "WAIT answered while the replica is stopped"
    );
    drop(stopped);
    assert_eq!(
        waiting.read_replies(1, Duration::from_secs(10)),
        [":1\r\n"],
        "the replica caught up"
    );
}

#[test]
fn waitaof_gives_the_nodes_own_answer() {
    require_redis();
    let cluster = Cluster::start(3, 1);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let key = "{aof}k";
    let master = cluster.node_for_key(key);

    // appendonly is off (Redis 7.2+ says so; 7.0 does not know WAITAOF): the same
    // error through slotgate as from the node itself, after a write and before one.
    let mut direct = RawClient::connect(master);
    let from_node = direct.roundtrip(format!("SET {key} v\r\nWAITAOF 1 0 0\r\n").as_bytes());
    let from_node = from_node
        .strip_prefix("+OK\r\n")
        .expect("the SET")
        .to_string();
    assert!(from_node.starts_with("-ERR"), "{from_node}");

    let mut fresh = RawClient::connect(proxy.port());
    assert_eq!(fresh.roundtrip(b"WAITAOF 1 0 0\r\n"), from_node);
    let mut raw = RawClient::connect(proxy.port());
    let through = raw.roundtrip(format!("SET {key} v\r\nWAITAOF 1 0 0\r\n").as_bytes());
    assert_eq!(through, format!("+OK\r\n{from_node}"));
    // The client is served on afterwards.
    assert_eq!(raw.roundtrip(b"PING\r\n"), "+PONG\r\n");
}
