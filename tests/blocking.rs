//! Blocking commands on connections pinned to their client: a `BLPOP key 0` waits as
//! long as it must (past `backend.timeout_ms`), while a stuck shared connection still
//! times out; other clients are not held up; a client that leaves while blocked pops
//! nothing; nothing after a blocking command runs before it ends; the number of pinned
//! connections is capped.

mod support;

use std::time::{Duration, Instant};

use support::{info_counter, keys_in_slot, require_redis, Cluster, Proxy, RawClient};

/// Polls `cond` every 20 ms until it holds, for at most 10 s.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `blocked_clients` in a node's INFO.
fn blocked_on_node(cluster: &Cluster, port: u16) -> u64 {
    let info = cluster.cli(port, &["INFO", "clients"]);
    info.lines()
        .find_map(|l| l.strip_prefix("blocked_clients:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn blpop_0_waits_past_the_backend_timeout_while_a_stuck_shared_connection_times_out() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start_with_config(&cluster.seeds(), "[backend]\ntimeout_ms = 500\n");
    let keys = keys_in_slot(support::key_slot(b"{bq}"), "{bq}", 2);
    let (queue, other) = (keys[0].clone(), keys[1].clone());
    let node = cluster.node_for_key(&queue);

    let mut blocked = RawClient::connect(proxy.port());
    blocked.write(format!("BLPOP {queue} 0\r\n").as_bytes());
    wait_until("the BLPOP blocks at its node", || {
        blocked_on_node(&cluster, node) == 1
    });
    // Another client of the same slot is served meanwhile.
    let mut con = proxy.client();
    let _: () = redis::cmd("SET")
        .arg(&other)
        .arg("v")
        .query(&mut con)
        .unwrap();

    // The node stops answering: requests on the shared connection time out...
    cluster.cli(node, &["CLIENT", "PAUSE", "1500", "ALL"]);
    let err = redis::cmd("GET")
        .arg(&other)
        .query::<String>(&mut con)
        .unwrap_err();
    assert!(err.to_string().contains("no reply within"), "{err}");
    // ...while the BLPOP, past three backend timeouts, still waits for its element.
    wait_until("the pause is over", || {
        cluster.cli(node, &["PING"]) == "PONG"
    });
    assert_eq!(blocked.read_quiet(), "", "the BLPOP was answered early");
    let _: () = redis::cmd("RPUSH")
        .arg(&queue)
        .arg("job")
        .query(&mut con)
        .unwrap();
    let replies = blocked.read_replies(1, Duration::from_secs(10));
    assert_eq!(
        replies,
        vec![format!(
            "*2\r\n${}\r\n{queue}\r\n$3\r\njob\r\n",
            queue.len()
        )]
    );
    // Its pinned connection went back to the spares, still counted.
    assert_eq!(info_counter(&proxy, "pinned_connections"), 1);
}

#[test]
fn blocking_commands_with_a_timeout_keys_and_order() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let mut raw = RawClient::connect(proxy.port());

    // Its own timeout runs out: a null reply. The LPUSH behind it in the same pipeline
    // runs only after it (as Redis runs nothing else of a blocked client's).
    raw.write(b"BLPOP {o}q 0.3\r\nLPUSH {o}q x\r\nBRPOP {o}q 1\r\n");
    let replies = raw.read_replies(3, Duration::from_secs(10));
    assert_eq!(
        replies,
        ["*-1\r\n", ":1\r\n", "*2\r\n$4\r\n{o}q\r\n$1\r\nx\r\n"]
    );

    // Keys in two slots: Redis Cluster's own error (BLPOP/BRPOP over several slots are
    // served, see tests/job_queues.rs; the sorted-set pops are not); WAIT (no key, no
    // replicas here) counts none (tests/wait.rs).
    raw.write(b"BZPOPMIN a b 0\r\nWAIT 0 0\r\n");
    let replies = raw.read_replies(2, Duration::from_secs(10));
    assert_eq!(
        replies,
        [
            "-CROSSSLOT Keys in request don't hash to the same slot\r\n",
            ":0\r\n"
        ]
    );

    // The other blocking commands, each served on its own slot's node.
    raw.write(
        b"RPUSH {o}l a b\r\nBLMOVE {o}l {o}m LEFT RIGHT 1\r\nBRPOPLPUSH {o}l {o}m 1\r\n\
          ZADD {o}z 1 m\r\nBZPOPMIN {o}z 1\r\nXADD {o}s 1-1 f v\r\n\
          XREAD BLOCK 100 STREAMS {o}s 0\r\nXREAD BLOCK 100 STREAMS {o}s $\r\n",
    );
    let replies = raw.read_replies(8, Duration::from_secs(10));
    assert_eq!(
        replies[..4],
        [":2\r\n", "$1\r\na\r\n", "$1\r\nb\r\n", ":1\r\n"]
    );
    assert_eq!(replies[4], "*3\r\n$4\r\n{o}z\r\n$1\r\nm\r\n$1\r\n1\r\n");
    assert_eq!(replies[5], "$3\r\n1-1\r\n");
    assert!(replies[6].contains("$1\r\nf\r\n$1\r\nv\r\n"), "{replies:?}");
    assert_eq!(replies[7], "*-1\r\n", "nothing new in 100 ms");
}

#[test]
fn a_client_that_leaves_while_blocked_pops_nothing() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let node = cluster.node_for_key("{gone}q");
    let blocked = {
        let mut raw = RawClient::connect(proxy.port());
        raw.write(b"BLPOP {gone}q 0\r\n");
        raw
    };
    wait_until("the BLPOP blocks at its node", || {
        blocked_on_node(&cluster, node) == 1
    });
    drop(blocked);
    wait_until("its pinned connection is closed", || {
        blocked_on_node(&cluster, node) == 0
    });
    let mut con = proxy.client();
    let _: () = redis::cmd("RPUSH")
        .arg("{gone}q")
        .arg("job")
        .query(&mut con)
        .unwrap();
    let len: i64 = redis::cmd("LLEN").arg("{gone}q").query(&mut con).unwrap();
    assert_eq!(len, 1, "the element was popped for a client that had left");
    assert_eq!(info_counter(&proxy, "pinned_connections"), 0);
}

#[test]
fn pinned_connections_are_capped_by_max_pinned() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start_with_config(&cluster.seeds(), "[backend]\nmax_pinned = 1\n");
    let node = cluster.node_for_key("{cap}a");
    let mut first = RawClient::connect(proxy.port());
    first.write(b"BLPOP {cap}a 0\r\n");
    wait_until("the first BLPOP blocks", || {
        blocked_on_node(&cluster, node) == 1
    });
    let mut second = RawClient::connect(proxy.port());
    let refused = second.roundtrip(b"BLPOP {cap}b 0\r\n");
    assert!(
        refused.starts_with("-ERR slotgate: too many blocked clients"),
        "{refused}"
    );
    // Once the first is served, its connection serves the second.
    let mut con = proxy.client();
    let _: () = redis::cmd("RPUSH")
        .arg("{cap}a")
        .arg("1")
        .query(&mut con)
        .unwrap();
    assert_eq!(first.read_replies(1, Duration::from_secs(10)).len(), 1);
    second.write(b"BLPOP {cap}b 0\r\n");
    wait_until("the second BLPOP blocks", || {
        blocked_on_node(&cluster, node) == 1
    });
    let _: () = redis::cmd("RPUSH")
        .arg("{cap}b")
        .arg("2")
        .query(&mut con)
        .unwrap();
    assert_eq!(
        second.read_replies(1, Duration::from_secs(10)),
        ["*2\r\n$6\r\n{cap}b\r\n$1\r\n2\r\n"]
    );
}

#[test]
fn a_client_blocked_on_a_slot_that_moves_is_served_by_the_new_owner() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let queue = "{moving}q";
    let slot = support::key_slot(queue.as_bytes());
    let from = cluster.node_for_key(queue);
    let to = *cluster
        .master_ports()
        .iter()
        .find(|&&p| p != from)
        .expect("another master");
    let mut blocked = RawClient::connect(proxy.port());
    blocked.write(format!("BLPOP {queue} 0\r\n").as_bytes());
    wait_until("the BLPOP blocks at its node", || {
        blocked_on_node(&cluster, from) == 1
    });
    // The slot moves; the node tells its blocked client MOVED, and slotgate sends the
    // BLPOP again to the new owner, where it blocks once more.
    cluster.migrate_slots(slot..=slot, from, to);
    wait_until("the BLPOP blocks at the new owner", || {
        blocked_on_node(&cluster, to) == 1
    });
    let mut con = proxy.client();
    let _: () = redis::cmd("RPUSH")
        .arg(queue)
        .arg("job")
        .query(&mut con)
        .unwrap();
    assert_eq!(
        blocked.read_replies(1, Duration::from_secs(10)),
        [format!(
            "*2\r\n${}\r\n{queue}\r\n$3\r\njob\r\n",
            queue.len()
        )]
    );
}
