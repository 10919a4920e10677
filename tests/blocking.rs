//! Blocking commands on connections pinned to their client: a `BLPOP key 0` waits as
//! long as it must (past `backend.timeout_ms`), while a stuck shared connection still
//! times out; other clients are not held up; a client that leaves while blocked pops
//! nothing; nothing after a blocking command runs before it ends; the number of pinned
//! connections is capped, in all and per node, and at a cap a blocking command waits a
//! bounded time for one to free.

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
fn at_the_pinned_cap_a_blocking_command_waits_for_a_connection_to_free() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    // Two workers: the connection that frees may be another worker's.
    let proxy = Proxy::start(
        &cluster.seeds(),
        &[
            "--workers",
            "2",
            "--config",
            &support::write_config("[backend]\nmax_pinned = 2\npinned_wait_ms = 10000\n"),
        ],
    );
    let node = cluster.node_for_key("{cap}a");
    let mut first = RawClient::connect(proxy.port());
    first.write(b"BLPOP {cap}a 0\r\n");
    let mut second = RawClient::connect(proxy.port());
    second.write(b"BLPOP {cap}b 0\r\n");
    wait_until("both BLPOPs block", || blocked_on_node(&cluster, node) == 2);

    // The third finds both pinned connections in use: it waits for one.
    let mut third = RawClient::connect(proxy.port());
    third.write(b"BLPOP {cap}c 0\r\n");
    wait_until("the third waits for a connection", || {
        info_counter(&proxy, "pinned_waiting") == 1
    });
    assert_eq!(
        third.read_quiet(),
        "",
        "the third was answered while waiting"
    );
    assert_eq!(blocked_on_node(&cluster, node), 2);

    // The first is served: its connection frees, and the third blocks on it.
    let mut con = proxy.client();
    let _: () = redis::cmd("RPUSH")
        .arg("{cap}a")
        .arg("1")
        .query(&mut con)
        .unwrap();
    assert_eq!(
        first.read_replies(1, Duration::from_secs(10)),
        ["*2\r\n$6\r\n{cap}a\r\n$1\r\n1\r\n"]
    );
    wait_until("the third blocks at the node", || {
        info_counter(&proxy, "pinned_waiting") == 0 && blocked_on_node(&cluster, node) == 2
    });
    let _: () = redis::cmd("RPUSH")
        .arg("{cap}c")
        .arg("3")
        .query(&mut con)
        .unwrap();
    assert_eq!(
        third.read_replies(1, Duration::from_secs(10)),
        ["*2\r\n$6\r\n{cap}c\r\n$1\r\n3\r\n"]
    );
    assert!(info_counter(&proxy, "pinned_connections") <= 2);
}

#[test]
fn at_the_pinned_cap_transactions_and_wait_wait_too() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start_with_config(
        &cluster.seeds(),
        "[backend]\nmax_pinned = 1\npinned_wait_ms = 10000\n",
    );
    let node = cluster.node_for_key("{tw}a");
    let mut blocked = RawClient::connect(proxy.port());
    blocked.write(b"BLPOP {tw}a 0\r\n");
    wait_until("the BLPOP blocks", || blocked_on_node(&cluster, node) == 1);

    // A transaction (its commands wait behind the one that opens its connection) and
    // a WAIT (behind the write it counts from), each waiting for the one connection.
    let mut txn = RawClient::connect(proxy.port());
    txn.write(b"MULTI\r\nSET {tw}x 1\r\nINCR {tw}x\r\nEXEC\r\n");
    assert_eq!(
        txn.read_replies(1, Duration::from_secs(10)),
        ["+OK\r\n"],
        "MULTI is answered by slotgate"
    );
    let mut waiting = RawClient::connect(proxy.port());
    waiting.write(b"SET {tw}y 1\r\nWAIT 0 0\r\n");
    assert_eq!(
        waiting.read_replies(1, Duration::from_secs(10)),
        ["+OK\r\n"]
    );
    wait_until("both wait for a connection", || {
        info_counter(&proxy, "pinned_waiting") == 2
    });
    assert_eq!(txn.read_quiet(), "");

    // The BLPOP is served: the connection goes to the transaction, then to WAIT.
    let mut con = proxy.client();
    let _: () = redis::cmd("RPUSH")
        .arg("{tw}a")
        .arg("1")
        .query(&mut con)
        .unwrap();
    assert_eq!(blocked.read_replies(1, Duration::from_secs(10)).len(), 1);
    assert_eq!(
        txn.read_replies(3, Duration::from_secs(10)),
        ["+QUEUED\r\n", "+QUEUED\r\n", "*2\r\n+OK\r\n:2\r\n"]
    );
    assert_eq!(
        waiting.read_replies(1, Duration::from_secs(10)),
        [":0\r\n"],
        "no replicas here"
    );
    assert_eq!(info_counter(&proxy, "pinned_waiting"), 0);
    assert_eq!(info_counter(&proxy, "pinned_connections"), 1);
}

#[test]
fn at_the_pinned_cap_a_blocking_command_fails_once_the_wait_is_spent() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start_with_config(
        &cluster.seeds(),
        "[backend]\nmax_pinned = 2\npinned_wait_ms = 300\n",
    );
    let node = cluster.node_for_key("{full}a");
    let mut first = RawClient::connect(proxy.port());
    first.write(b"BLPOP {full}a 0\r\n");
    let mut second = RawClient::connect(proxy.port());
    second.write(b"BLPOP {full}b 0\r\n");
    wait_until("both BLPOPs block", || blocked_on_node(&cluster, node) == 2);
    // Nothing frees: the third gets the error once its wait is spent.
    let mut third = RawClient::connect(proxy.port());
    third.write(b"BLPOP {full}c 0\r\n");
    let replies = third.read_replies(1, Duration::from_secs(10));
    assert_eq!(
        replies,
        [
            "-ERR slotgate: too many blocked clients or transactions: all 2 pinned connections \
          are in use (backend.max_pinned), and none freed within 300 ms \
          (backend.pinned_wait_ms)\r\n"
        ]
    );
    assert_eq!(info_counter(&proxy, "pinned_waiting"), 0);
    // The client is served on; the blocked ones still wait.
    assert_eq!(third.roundtrip(b"PING\r\n"), "+PONG\r\n");
    assert_eq!(blocked_on_node(&cluster, node), 2);
}

#[test]
fn pinned_connections_are_capped_per_node_too() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start_with_config(
        &cluster.seeds(),
        "[backend]\nmax_pinned = 10\nmax_pinned_per_node = 1\npinned_wait_ms = 300\n",
    );
    let keys = support::keys_on_every_master(&cluster, "pn", 2);
    let (here, also_here) = (&keys[0], &keys[1]);
    let elsewhere = &keys[2];
    let node = cluster.node_for_key(here);
    assert_eq!(cluster.node_for_key(also_here), node);
    let other = cluster.node_for_key(elsewhere);
    assert_ne!(other, node);

    let mut first = RawClient::connect(proxy.port());
    first.write(format!("BLPOP {here} 0\r\n").as_bytes());
    wait_until("the first BLPOP blocks", || {
        blocked_on_node(&cluster, node) == 1
    });
    // Another node has room: served at once.
    let mut there = RawClient::connect(proxy.port());
    there.write(format!("BLPOP {elsewhere} 0\r\n").as_bytes());
    wait_until("the BLPOP on another node blocks", || {
        blocked_on_node(&cluster, other) == 1
    });
    // The same node has none: the error names it, once the wait is spent.
    let mut second = RawClient::connect(proxy.port());
    second.write(format!("BLPOP {also_here} 0\r\n").as_bytes());
    let reply = second.read_replies(1, Duration::from_secs(10)).join("");
    assert!(
        reply.starts_with(&format!(
            "-ERR slotgate: too many blocked clients or transactions at 127.0.0.1:{node}: all 1 \
             pinned connections to it are in use (backend.max_pinned_per_node)"
        )),
        "{reply}"
    );
    // INFO's nodes section shows the pinned connections per node.
    let nodes = proxy.cli(&["INFO", "nodes"]);
    let line = |port: u16| {
        nodes
            .lines()
            .find(|l| l.contains(&format!("addr=127.0.0.1:{port},")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line(node).ends_with(",pinned=1"), "{nodes}");
    assert!(line(other).ends_with(",pinned=1"), "{nodes}");
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

#[test]
fn a_client_blocked_at_a_master_that_fails_over_is_served_by_the_new_master() {
    require_redis();
    let cluster = Cluster::start(3, 1);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let queue = "{failing-over}q";
    let master = cluster.node_for_key(queue);
    let replica = cluster.replica_of(master).expect("a replica");
    let mut blocked = RawClient::connect(proxy.port());
    blocked.write(format!("BLPOP {queue} 0\r\n").as_bytes());
    wait_until("the BLPOP blocks at its node", || {
        blocked_on_node(&cluster, master) == 1
    });
    // A coordinated failover: the old master turns replica and tells its blocked client
    // `-UNBLOCKED force unblock from blocking operation, instance state changed`; nothing
    // was popped, so slotgate sends the BLPOP again to the new master.
    assert_eq!(cluster.cli(replica, &["CLUSTER", "FAILOVER"]), "OK");
    wait_until("the BLPOP blocks at the new master", || {
        blocked_on_node(&cluster, replica) == 1
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

#[test]
fn blocking_commands_refused_for_a_dead_node_give_their_pinned_connections_back() {
    require_redis();
    let mut cluster = Cluster::start(3, 0);
    // A short backend timeout: each BLPOP is retried for that long, then fails.
    let proxy = Proxy::start_with_config(
        &cluster.seeds(),
        "workers = 1\n[backend]\ntimeout_ms = 500\n",
    );
    let queue = "{dead-node}q";
    let dead = cluster.node_for_key(queue);
    cluster.kill(dead);
    let before = info_counter(&proxy, "pinned_connections");
    // Each BLPOP pins a connection to the dead node; while the node counts as down it
    // fails at once ("cannot connect ... recently"), and its connection must be given
    // back (kept as one of a few spares or closed), not stay pinned to the client.
    let mut client = RawClient::connect(proxy.port());
    for _ in 0..10 {
        let reply = client.pipeline(&[&format!("BLPOP {queue} 1")]);
        assert!(reply[0].contains("cannot connect"), "{reply:?}");
    }
    let after = info_counter(&proxy, "pinned_connections");
    assert!(
        after <= before + 8,
        "{after} pinned connections after 10 refused BLPOPs, {before} before"
    );
}
