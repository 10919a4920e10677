//! Transactions through slotgate: `WATCH`/`MULTI`/`EXEC` run on one node connection
//! held for the client, pipelined, at the master of the transaction's slot. Optimistic
//! locking works under contention; a key in another slot, a command that cannot run in
//! a transaction here, a slot that moves meanwhile or a client that leaves abort the
//! transaction with nothing of it applied; the held connection goes back to the spares
//! when the transaction ends, and is closed when the client leaves.

mod support;

use std::time::{Duration, Instant};

use redis::Commands;
use support::{
    cluster_and_proxy, info_counter, keys_in_slot, keys_on_masters, require_redis, wait_until,
    Cluster, Proxy, RawClient,
};

const EXECABORT: &str = "-EXECABORT Transaction discarded because of previous errors.\r\n";
const CROSSSLOT: &str = "-CROSSSLOT Keys in request don't hash to the same slot\r\n";

/// Waits until every node agrees on the slots' owners: moving a slot back and forth
/// leaves the nodes' views apart for a moment (Redis's gossip), which is not what these
/// tests are about.
fn settled(cluster: &Cluster) {
    cluster.wait_for_ok(Duration::from_secs(10));
}

fn get(con: &mut redis::Connection, key: &str) -> Option<String> {
    con.get(key).unwrap()
}

/// None of `keys` exists: nothing of an aborted transaction was applied.
fn assert_none_applied(con: &mut redis::Connection, keys: &[&String]) {
    for key in keys {
        assert_eq!(get(con, key), None, "{key} was applied");
    }
}

#[test]
fn an_optimistic_counter_under_8_concurrent_clients_ends_at_the_exact_total() {
    let (_cluster, proxy) = cluster_and_proxy(3, 0, &["--workers", "2"]);
    const CLIENTS: usize = 8;
    const EACH: i64 = 40;
    let counter = "{counter}n";
    let log = "{counter}log";
    let threads: Vec<_> = (0..CLIENTS)
        .map(|t| {
            let mut con = proxy.client();
            std::thread::spawn(move || {
                let started = Instant::now();
                let (mut done, mut attempts) = (0, 0);
                while done < EACH {
                    attempts += 1;
                    assert!(
                        attempts < 50_000 && started.elapsed() < Duration::from_secs(120),
                        "client {t}: {done} increments after {attempts} attempts"
                    );
                    let () = redis::cmd("WATCH").arg(counter).query(&mut con).unwrap();
                    let now: Option<i64> = con.get(counter).unwrap();
                    let next = now.unwrap_or(0) + 1;
                    // MULTI, SET, RPUSH, EXEC in one write; EXEC answers nil when another
                    // client changed the counter since the WATCH.
                    let applied: Option<(i64,)> = redis::pipe()
                        .atomic()
                        .set(counter, next)
                        .ignore()
                        .rpush(log, format!("{t}:{next}"))
                        .query(&mut con)
                        .unwrap();
                    if applied.is_some() {
                        done += 1;
                    }
                }
                attempts
            })
        })
        .collect();
    let attempts: i64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let mut con = proxy.client();
    let total: i64 = con.get(counter).unwrap();
    assert_eq!(total, CLIENTS as i64 * EACH);
    // Every increment was applied exactly once, in order.
    let entries: Vec<String> = con.lrange(log, 0, -1).unwrap();
    let values: Vec<i64> = entries
        .iter()
        .map(|e| e.split(':').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(values, (1..=total).collect::<Vec<_>>());
    println!("{total} increments in {attempts} attempts");
    // Every transaction ended cleanly: the held connections went back to the spares.
    assert!(info_counter(&proxy, "pinned_connections") <= CLIENTS as u64);
}

#[test]
fn the_redis_crates_atomic_pipeline_and_transaction_helper() {
    let (_cluster, proxy) = cluster_and_proxy(3, 0, &[]);
    let mut con = proxy.client();
    let (a, n): (String, i64) = redis::pipe()
        .atomic()
        .set("{rc}a", "x")
        .ignore()
        .get("{rc}a")
        .incr("{rc}n", 5)
        .query(&mut con)
        .unwrap();
    assert_eq!((a.as_str(), n), ("x", 5));
    // The helper that WATCHes, runs the closure and retries on nil.
    let (new,): (i64,) = redis::transaction(&mut con, &["{rc}n"], |con, pipe| {
        let n: i64 = con.get("{rc}n")?;
        pipe.set("{rc}n", n * 10).ignore().get("{rc}n").query(con)
    })
    .unwrap();
    assert_eq!(new, 50);
    // Keys in two slots: one EXEC runs them both, the replies in the client's order.
    let (x, y): (String, i64) = redis::pipe()
        .atomic()
        .set("{rc}x", "1")
        .ignore()
        .incr("{other}y", 2)
        .ignore()
        .get("{rc}x")
        .get("{other}y")
        .query(&mut con)
        .unwrap();
    assert_eq!((x.as_str(), y), ("1", 2));
    // One command over keys of two slots at once: the redis crate reports the first
    // error, and nothing runs.
    let err = redis::pipe()
        .atomic()
        .set("{rc}z", 1)
        .ignore()
        .del(&["{rc}x", "{other}y"])
        .ignore()
        .query::<()>(&mut con)
        .unwrap_err();
    assert!(err.to_string().contains("CrossSlot"), "{err}");
    assert_eq!(get(&mut con, "{rc}z"), None);
    assert_eq!(get(&mut con, "{other}y").as_deref(), Some("2"));
}

#[test]
fn crossslot_and_refused_commands_abort_the_transaction_with_nothing_applied() {
    let (_cluster, proxy) = cluster_and_proxy(3, 0, &[]);
    let mut raw = RawClient::connect(proxy.port());
    let mut con = proxy.client();

    // One command over keys of two slots: CROSSSLOT, and EXEC aborts; the first key is
    // not set.
    let replies = raw.transaction(&["SET {a}x 1", "MSET {a}y 1 {b}y 2", "INCR {a}n"]);
    assert_eq!(
        replies,
        [
            "+OK\r\n",
            "+QUEUED\r\n",
            CROSSSLOT,
            "+QUEUED\r\n",
            EXECABORT
        ]
    );
    for key in ["{a}x", "{a}y", "{b}y", "{a}n"] {
        assert_eq!(get(&mut con, key), None, "{key} was applied");
    }

    // Redis's own refusals abort it too (unknown command, wrong arity), and so does a
    // command slotgate answers itself; the errors that do not (nested MULTI, WATCH
    // inside MULTI) leave it to run.
    let replies = raw.transaction(&["SET {a}x 1", "NOSUCHCMD"]);
    assert_eq!(replies[1], "+QUEUED\r\n");
    assert!(
        replies[2].starts_with("-ERR unknown command"),
        "{replies:?}"
    );
    assert_eq!(replies[3], EXECABORT);
    let replies = raw.transaction(&["SET {a}x 1", "CLIENT SETNAME me"]);
    assert!(
        replies[2].starts_with("-ERR slotgate: 'CLIENT' cannot be queued in a transaction"),
        "{replies:?}"
    );
    assert_eq!(replies[3], EXECABORT);
    // Commands that run on several nodes cannot be part of it: keys of several slots
    // are CROSSSLOT, a cluster-wide command is refused.
    let replies = raw.transaction(&["SET {a}x 1", "DEL {a}x {b}y"]);
    assert_eq!(replies[2..], [CROSSSLOT, EXECABORT]);
    let replies = raw.transaction(&["SET {a}x 1", "DBSIZE"]);
    assert!(
        replies[2].starts_with("-ERR slotgate: 'DBSIZE' cannot be queued in a transaction"),
        "{replies:?}"
    );
    assert_eq!(replies[3], EXECABORT);
    assert_eq!(get(&mut con, "{a}x"), None);
    // A script is queued like any command of its keys' slot.
    let replies = raw.pipeline(&[
        "MULTI",
        "SET {a}x 1",
        "EVAL \"return redis.call('incr', KEYS[1])\" 1 {a}x",
        "DISCARD",
    ]);
    assert_eq!(
        replies,
        ["+OK\r\n", "+QUEUED\r\n", "+QUEUED\r\n", "+OK\r\n"]
    );
    let replies = raw.pipeline(&["MULTI", "MULTI", "WATCH {a}x", "SET {a}x 1", "EXEC"]);
    assert_eq!(
        replies,
        [
            "+OK\r\n",
            "-ERR MULTI calls can not be nested\r\n",
            "-ERR WATCH inside MULTI is not allowed\r\n",
            "+QUEUED\r\n",
            "*1\r\n+OK\r\n",
        ]
    );

    // WATCH: keys in two slots, or a second WATCH in another slot, are CROSSSLOT.
    let replies = raw.pipeline(&["WATCH {a}x {b}y", "WATCH {a}x", "WATCH {b}y", "UNWATCH"]);
    assert_eq!(replies, [CROSSSLOT, "+OK\r\n", CROSSSLOT, "+OK\r\n"]);

    // EXEC and DISCARD without MULTI keep Redis's errors; the session goes on.
    let replies = raw.pipeline(&["EXEC", "DISCARD", "GET {a}x"]);
    assert_eq!(
        replies,
        [
            "-ERR EXEC without MULTI\r\n",
            "-ERR DISCARD without MULTI\r\n",
            "$1\r\n1\r\n"
        ]
    );
}

#[test]
fn keyless_multi_then_keyed_commands_discard_blocking_and_reset() {
    let (_cluster, proxy) = cluster_and_proxy(3, 0, &["--workers", "1"]);
    let mut raw = RawClient::connect(proxy.port());
    let mut con = proxy.client();

    // MULTI and keyless commands are answered here until the first key; PING and ECHO
    // are queued at the node (their results are in EXEC's reply), and a blocking
    // command inside MULTI does not block.
    let replies = raw.transaction(&[
        "PING",
        "ECHO hi",
        "SET {k}a v",
        "GET {k}a",
        "BLPOP {k}list 0",
    ]);
    assert_eq!(
        replies,
        [
            "+OK\r\n",
            "+QUEUED\r\n",
            "+QUEUED\r\n",
            "+QUEUED\r\n",
            "+QUEUED\r\n",
            "+QUEUED\r\n",
            "*5\r\n+PONG\r\n$2\r\nhi\r\n+OK\r\n$1\r\nv\r\n*-1\r\n",
        ]
    );
    // No key at all: it runs on any master at EXEC; nothing in it: an empty reply.
    let replies = raw.pipeline(&["MULTI", "PING", "EXEC", "MULTI", "EXEC"]);
    assert_eq!(
        replies,
        [
            "+OK\r\n",
            "+QUEUED\r\n",
            "*1\r\n+PONG\r\n",
            "+OK\r\n",
            "*0\r\n"
        ]
    );

    // DISCARD: nothing applied, before or after the slot is known.
    let replies = raw.pipeline(&[
        "MULTI",
        "SET {d}a 1",
        "DISCARD",
        "MULTI",
        "PING",
        "DISCARD",
        "GET {d}a",
    ]);
    assert_eq!(
        replies,
        [
            "+OK\r\n",
            "+QUEUED\r\n",
            "+OK\r\n",
            "+OK\r\n",
            "+QUEUED\r\n",
            "+OK\r\n",
            "$-1\r\n"
        ]
    );

    // Requests of one pipeline keep their order across the held connection and the
    // shared ones: each sees what the one before it did.
    let replies = raw.pipeline(&[
        "SET {o}k 1",
        "WATCH {o}k",
        "GET {o}k",
        "SET {elsewhere}k 1",
        "MULTI",
        "INCR {o}k",
        "EXEC",
        "GET {o}k",
        "INCR {o}k",
    ]);
    assert_eq!(
        replies,
        [
            "+OK\r\n",
            "+OK\r\n",
            "$1\r\n1\r\n",
            "+OK\r\n",
            "+OK\r\n",
            "+QUEUED\r\n",
            "*1\r\n:2\r\n",
            "$1\r\n2\r\n",
            ":3\r\n"
        ]
    );

    // RESET ends the transaction at the node; nothing applied, and the next works.
    let replies = raw.pipeline(&[
        "WATCH {r}k",
        "MULTI",
        "SET {r}k 1",
        "RESET",
        "GET {r}k",
        "MULTI",
        "SET {r}k 2",
        "EXEC",
    ]);
    assert_eq!(
        replies,
        [
            "+OK\r\n",
            "+OK\r\n",
            "+QUEUED\r\n",
            "+RESET\r\n",
            "$-1\r\n",
            "+OK\r\n",
            "+QUEUED\r\n",
            "*1\r\n+OK\r\n"
        ]
    );
    assert_eq!(get(&mut con, "{r}k").as_deref(), Some("2"));

    // Once warm, a transaction leaves for its node in one write.
    let replies = raw.transaction(&["SET {w}a 0"]);
    assert_eq!(replies[2], "*1\r\n+OK\r\n");
    // (`INFO proxy` asks no node, so it writes to none.)
    let writes = || {
        let info = proxy.cli(&["INFO", "proxy"]);
        info.lines()
            .find_map(|l| l.strip_prefix("backend_writes:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no backend_writes in {info}"))
    };
    let before = writes();
    let replies = raw.transaction(&["SET {w}a 1", "SET {w}b 2", "INCR {w}c"]);
    assert_eq!(replies[4], "*3\r\n+OK\r\n+OK\r\n:1\r\n");
    assert_eq!(
        writes() - before,
        1,
        "MULTI ... EXEC went in more than one write"
    );

    // In RESP3, EXEC's reply comes in RESP3.
    let replies = raw.pipeline(&["HELLO 3", "MULTI", "HSET {h}h f v", "HGETALL {h}h", "EXEC"]);
    assert_eq!(replies[4], "*2\r\n:1\r\n%1\r\n$1\r\nf\r\n$1\r\nv\r\n");
}

#[test]
fn a_transaction_across_a_slot_migration_fails_cleanly_with_nothing_applied() {
    let (cluster, proxy) = cluster_and_proxy(3, 0, &[]);
    let mut raw = RawClient::connect(proxy.port());
    let mut con = proxy.client();
    let keys = keys_in_slot(support::key_slot(b"{mig}"), "{mig}", 3);
    let (k1, k2, k3) = (&keys[0], &keys[1], &keys[2]);
    let slot = support::key_slot(k1.as_bytes());
    let a = cluster.node_for_key(k1);
    let b = *cluster.master_ports().iter().find(|&&p| p != a).unwrap();

    // The slot moves between two queued commands: the node answers MOVED to the second
    // (it does not follow it), the transaction is aborted, EXEC says so.
    let replies = raw.pipeline(&["MULTI", &format!("SET {k1} 1")]);
    assert_eq!(replies, ["+OK\r\n", "+QUEUED\r\n"]);
    cluster.migrate_slots(slot..=slot, a, b);
    settled(&cluster);
    let replies = raw.pipeline(&[&format!("SET {k2} 2"), "EXEC"]);
    assert!(
        replies[0].starts_with(&format!(
            "-ERR slotgate: transaction aborted: slot {slot} moved to"
        )),
        "{replies:?}"
    );
    // The node refused EXEC too (its queued SET is in a slot it lost).
    assert!(
        replies[1].starts_with(&format!(
            "-EXECABORT Transaction discarded: slot {slot} moved to"
        )),
        "{replies:?}"
    );
    assert_eq!((get(&mut con, k1), get(&mut con, k2)), (None, None));

    // The slot moves after the commands are queued: the node refuses EXEC (MOVED) and
    // discards the transaction.
    let replies = raw.pipeline(&[
        &format!("WATCH {k1}"),
        "MULTI",
        &format!("SET {k1} 1"),
        &format!("SET {k2} 2"),
    ]);
    assert_eq!(
        replies,
        ["+OK\r\n", "+OK\r\n", "+QUEUED\r\n", "+QUEUED\r\n"]
    );
    cluster.migrate_slots(slot..=slot, b, a);
    settled(&cluster);
    let replies = raw.pipeline(&["EXEC"]);
    assert!(
        replies[0].starts_with(&format!(
            "-EXECABORT Transaction discarded: slot {slot} moved to"
        )),
        "{replies:?}"
    );
    assert_eq!((get(&mut con, k1), get(&mut con, k2)), (None, None));

    // A WATCH on the old owner fails the same way, and the client can start over.
    let replies = raw.pipeline(&[&format!("WATCH {k1}"), "MULTI"]);
    assert_eq!(replies, ["+OK\r\n", "+OK\r\n"]);
    cluster.migrate_slots(slot..=slot, a, b);
    settled(&cluster);
    let replies = raw.pipeline(&[&format!("SET {k1} 1"), "EXEC"]);
    assert!(
        replies[0].starts_with("-ERR slotgate: transaction aborted: slot"),
        "{replies:?}"
    );
    assert_eq!(replies[1], EXECABORT);
    assert_eq!(get(&mut con, k1), None);

    // Half-migrated (ASK territory): a key already moved is not followed either.
    let _: () = con.set(k1, "stays").unwrap();
    let _: () = con.set(k3, "before").unwrap();
    let owner = cluster.node_for_key(k3);
    let other = if owner == a { b } else { a };
    cluster.begin_slot_migration(slot, owner, other);
    let moved = cluster.cli(
        owner,
        &["MIGRATE", "127.0.0.1", &other.to_string(), k3, "0", "5000"],
    );
    assert_eq!(moved, "OK");
    let replies = raw.transaction(&[&format!("SET {k1} 1"), &format!("APPEND {k3} -after")]);
    assert_eq!(replies[0..2], ["+OK\r\n", "+QUEUED\r\n"], "{replies:?}");
    assert!(
        replies[2].starts_with(&format!(
            "-ERR slotgate: transaction aborted: slot {slot} is moving to"
        )),
        "{replies:?}"
    );
    assert_eq!(replies[3], EXECABORT);
    cluster.finish_slot_migration(slot, owner, other);
    settled(&cluster);
    assert_eq!(get(&mut con, k1).as_deref(), Some("stays"));
    assert_eq!(get(&mut con, k3).as_deref(), Some("before"));

    // The client starts over, as clients do after EXECABORT: once slotgate has caught
    // up with the move (at the latest after the MOVED the next try meets), it runs.
    let mut tries = 0;
    let exec = loop {
        tries += 1;
        let replies = raw.pipeline(&[
            &format!("WATCH {k1}"),
            "MULTI",
            &format!("SET {k1} 1"),
            &format!("APPEND {k3} -after"),
            "EXEC",
        ]);
        if replies[4].starts_with('*') || tries == 3 {
            break replies[4].clone();
        }
    };
    assert_eq!(exec, "*2\r\n+OK\r\n:12\r\n");
    assert_eq!(get(&mut con, k3).as_deref(), Some("before-after"));
}

#[test]
fn a_client_leaving_mid_transaction_applies_nothing_and_its_connection_is_closed() {
    let (_cluster, proxy) = cluster_and_proxy(3, 0, &[]);
    let mut con = proxy.client();
    assert_eq!(info_counter(&proxy, "pinned_connections"), 0);

    let mut raw = RawClient::connect(proxy.port());
    let replies = raw.pipeline(&["WATCH {gone}a", "MULTI", "SET {gone}a 1", "INCR {gone}n"]);
    assert_eq!(
        replies,
        ["+OK\r\n", "+OK\r\n", "+QUEUED\r\n", "+QUEUED\r\n"]
    );
    assert_eq!(info_counter(&proxy, "pinned_connections"), 1);
    drop(raw);
    wait_until("the held connection is closed", || {
        info_counter(&proxy, "pinned_connections") == 0
    });
    assert_eq!(get(&mut con, "{gone}a"), None);
    assert_eq!(get(&mut con, "{gone}n"), None);

    // A transaction that ends cleanly gives its connection back to the spares, and the
    // next one takes it again.
    let mut raw = RawClient::connect(proxy.port());
    for round in 1..=3 {
        let replies = raw.pipeline(&["WATCH {gone}a", "MULTI", "INCR {gone}a", "EXEC"]);
        assert_eq!(replies[3], format!("*1\r\n:{round}\r\n"));
        assert_eq!(info_counter(&proxy, "pinned_connections"), 1);
    }
}

#[test]
fn the_pinned_connection_cap_refuses_a_transaction_before_anything_runs() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    // pinned_wait_ms = 0: at the cap, refused at once rather than after a wait.
    let proxy = Proxy::start_with_config(
        &cluster.seeds(),
        "[backend]\nmax_pinned = 1\npinned_wait_ms = 0\n",
    );
    let mut con = proxy.client();
    let mut first = RawClient::connect(proxy.port());
    assert_eq!(first.pipeline(&["WATCH {cap}a"]), ["+OK\r\n"]);

    let mut second = RawClient::connect(proxy.port());
    let replies = second.transaction(&["SET {cap}b 1"]);
    assert_eq!(replies[0], "+OK\r\n");
    assert!(
        replies[1].starts_with(
            "-ERR slotgate: transaction aborted: too many blocked clients or transactions"
        ),
        "{replies:?}"
    );
    assert!(replies[2].starts_with("-EXECABORT"), "{replies:?}");
    assert_eq!(get(&mut con, "{cap}b"), None);

    // Once the first ends, its connection serves the second.
    assert_eq!(first.pipeline(&["UNWATCH"]), ["+OK\r\n"]);
    let replies = second.transaction(&["SET {cap}b 1"]);
    assert_eq!(replies[2], "*1\r\n+OK\r\n");
    assert_eq!(get(&mut con, "{cap}b").as_deref(), Some("1"));
}

#[test]
fn a_timed_out_exec_is_reported_and_the_next_transaction_runs_on_a_new_connection() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start_with_config(&cluster.seeds(), "[backend]\ntimeout_ms = 500\n");
    let node = cluster.node_for_key("{slow}k");
    let mut raw = RawClient::connect(proxy.port());
    let replies = raw.pipeline(&["WATCH {slow}k", "MULTI", "INCR {slow}k"]);
    assert_eq!(replies, ["+OK\r\n", "+OK\r\n", "+QUEUED\r\n"]);
    // The node stops answering: EXEC may or may not run, and the client is told so.
    cluster.cli(node, &["CLIENT", "PAUSE", "1500", "ALL"]);
    let replies = raw.pipeline(&["EXEC"]);
    assert!(
        replies[0].starts_with("-ERR slotgate: backend") && replies[0].contains("no reply within"),
        "{replies:?}"
    );
    wait_until("the pause is over", || {
        cluster.cli(node, &["PING"]) == "PONG"
    });
    // The held connection was closed with the transaction's state: the next one starts
    // clean (a WATCH or MULTI left behind would fail it).
    let replies = raw.pipeline(&[
        "SET {slow}k 10",
        "WATCH {slow}k",
        "MULTI",
        "INCR {slow}k",
        "EXEC",
    ]);
    assert_eq!(
        replies,
        [
            "+OK\r\n",
            "+OK\r\n",
            "+OK\r\n",
            "+QUEUED\r\n",
            "*1\r\n:11\r\n"
        ]
    );
}

#[test]
fn a_transaction_over_several_slots_answers_every_command_in_order() {
    let (cluster, proxy) = cluster_and_proxy(3, 0, &["--workers", "1"]);
    let mut raw = RawClient::connect(proxy.port());
    let mut con = proxy.client();
    let ports = cluster.master_ports();
    let [a, b, c] = keys_on_masters(&cluster, ["a", "b", "c"]);
    // Two slots on one node are two groups too (Redis Cluster runs one slot per EXEC).
    let a2 = (0..10_000)
        .map(|i| format!("{{a2-{i}}}k"))
        .find(|k| {
            cluster.node_for_key(k) == ports[0]
                && support::key_slot(k.as_bytes()) != support::key_slot(a.as_bytes())
        })
        .unwrap();
    // Held keyless commands go first with the first slot; PING after the first key too.
    let replies = raw.transaction(&[
        "ECHO first",
        &format!("SET {a} 1"),
        &format!("INCR {b}"),
        &format!("GET {a}"),
        "PING",
        &format!("RPUSH {c} x y"),
        &format!("INCRBY {a2} 5"),
        &format!("GET {b}"),
    ]);
    assert_eq!(
        replies[..9],
        [
            "+OK\r\n",
            "+QUEUED\r\n",
            "+QUEUED\r\n",
            "+QUEUED\r\n",
            "+QUEUED\r\n",
            "+QUEUED\r\n",
            "+QUEUED\r\n",
            "+QUEUED\r\n",
            "+QUEUED\r\n"
        ]
    );
    assert_eq!(
        replies[9],
        "*8\r\n$5\r\nfirst\r\n+OK\r\n:1\r\n$1\r\n1\r\n+PONG\r\n:2\r\n:5\r\n$1\r\n1\r\n"
    );
    assert_eq!(get(&mut con, &a2).as_deref(), Some("5"));
    // A runtime error in one command is that command's reply, as in Redis; the others
    // run.
    let replies = raw.transaction(&[&format!("INCR {c}"), &format!("INCR {b}")]);
    assert!(
        replies[3].starts_with("*2\r\n-WRONGTYPE") && replies[3].ends_with(":2\r\n"),
        "{replies:?}"
    );
    // Every held connection went back to the spares.
    wait_until("the held connections are back", || {
        info_counter(&proxy, "pinned_connections") <= 4
    });

    // RESP3: the nodes' RESP3 replies, merged into one RESP3 array.
    let replies = raw.pipeline(&[
        "HELLO 3",
        "MULTI",
        &format!("HSET {a}h f v"),
        &format!("HGETALL {a}h"),
        &format!("SADD {b}s m"),
        &format!("SMEMBERS {b}s"),
        &format!("GET {c}nothing"),
        "EXEC",
    ]);
    assert_eq!(
        replies[7],
        "*5\r\n:1\r\n%1\r\n$1\r\nf\r\n$1\r\nv\r\n:1\r\n~1\r\n$1\r\nm\r\n_\r\n"
    );
    // Requests after EXEC see what it did, on every node.
    let replies = raw.pipeline(&[
        "MULTI",
        &format!("SET {a} after"),
        &format!("SET {b} after"),
        &format!("SET {c}s after"),
        "EXEC",
        &format!("GET {a}"),
        &format!("GET {b}"),
        &format!("GET {c}s"),
    ]);
    assert_eq!(replies[4], "*3\r\n+OK\r\n+OK\r\n+OK\r\n");
    assert_eq!(
        replies[5..],
        ["$5\r\nafter\r\n", "$5\r\nafter\r\n", "$5\r\nafter\r\n"]
    );
}

#[test]
fn an_error_at_queue_time_in_any_slot_aborts_every_slot() {
    let (cluster, proxy) = cluster_and_proxy(3, 0, &[]);
    let mut raw = RawClient::connect(proxy.port());
    let mut con = proxy.client();
    let ports = cluster.master_ports();
    let [a, b, c] = keys_on_masters(&cluster, ["qa", "qb", "qc"]);

    // Refused by slotgate (a command over two slots) after two slots were queued.
    let replies = raw.transaction(&[
        &format!("SET {a} 1"),
        &format!("SET {b} 2"),
        &format!("MSET {a}x 1 {c} 2"),
        &format!("SET {c} 3"),
    ]);
    assert_eq!(replies[3], CROSSSLOT);
    assert_eq!(replies[5], EXECABORT);
    assert_none_applied(&mut con, &[&a, &b, &c]);

    // Refused by a node when queued (over its maxmemory, a write is refused before it
    // is queued): every other slot is discarded too.
    cluster.cli(ports[1], &["CONFIG", "SET", "maxmemory", "1"]);
    let replies = raw.transaction(&[
        &format!("SET {a} 1"),
        &format!("SET {b} 2"),
        &format!("SET {c} 3"),
    ]);
    assert!(replies[2].starts_with("-OOM"), "{replies:?}");
    assert_eq!(replies[4], EXECABORT);
    cluster.cli(ports[1], &["CONFIG", "SET", "maxmemory", "0"]);
    assert_none_applied(&mut con, &[&a, &b, &c]);

    // The same with the replies to the queued commands read before EXEC is sent.
    cluster.cli(ports[2], &["CONFIG", "SET", "maxmemory", "1"]);
    let replies = raw.pipeline(&[
        "MULTI",
        &format!("SET {a} 1"),
        &format!("SET {c} 3"),
        &format!("SET {b} 2"),
    ]);
    assert!(replies[2].starts_with("-OOM"), "{replies:?}");
    cluster.cli(ports[2], &["CONFIG", "SET", "maxmemory", "0"]);
    assert_eq!(raw.pipeline(&["EXEC"]), [EXECABORT]);
    assert_none_applied(&mut con, &[&a, &b, &c]);

    // DISCARD discards every slot; the session goes on.
    let replies = raw.pipeline(&[
        "MULTI",
        &format!("SET {a} 1"),
        &format!("SET {b} 2"),
        "DISCARD",
        &format!("GET {a}"),
    ]);
    assert_eq!(replies[3..], ["+OK\r\n", "$-1\r\n"]);
    assert_eq!(get(&mut con, &b), None);
}

#[test]
fn a_watched_key_that_changed_aborts_every_slot_and_nothing_is_applied() {
    let (cluster, proxy) = cluster_and_proxy(3, 0, &[]);
    let mut raw = RawClient::connect(proxy.port());
    let mut con = proxy.client();
    let [w, b, c] = keys_on_masters(&cluster, ["w", "wb", "wc"]);
    let _: () = con.set(&w, "0").unwrap();

    for resp3 in [false, true] {
        if resp3 {
            assert!(raw.pipeline(&["HELLO 3"])[0].starts_with('%'));
        }
        let nil = if resp3 { "_\r\n" } else { "*-1\r\n" };
        // The watched slot has commands of its own, and is not the first slot queued.
        let replies = raw.pipeline(&[
            &format!("WATCH {w}"),
            &format!("GET {w}"),
            "MULTI",
            &format!("SET {b} 1"),
            &format!("INCR {w}"),
            &format!("SET {c} 1"),
        ]);
        assert_eq!(replies[0], "+OK\r\n");
        let _: () = con.set(&w, "changed").unwrap();
        assert_eq!(raw.pipeline(&["EXEC"]), [nil]);
        assert_eq!(get(&mut con, &b), None);
        assert_eq!(get(&mut con, &c), None);
        assert_eq!(get(&mut con, &w).as_deref(), Some("changed"));

        // The watched slot has no command: it still runs first, and decides.
        let replies = raw.pipeline(&[
            &format!("WATCH {w}"),
            "MULTI",
            &format!("SET {b} 1"),
            &format!("SET {c} 1"),
        ]);
        assert_eq!(
            replies,
            ["+OK\r\n", "+OK\r\n", "+QUEUED\r\n", "+QUEUED\r\n"]
        );
        let _: () = con.set(&w, "0").unwrap();
        assert_eq!(raw.pipeline(&["EXEC"]), [nil]);
        assert_eq!(get(&mut con, &b), None);
        assert_eq!(get(&mut con, &c), None);

        // Unchanged, it runs everywhere.
        let replies = raw.pipeline(&[
            &format!("WATCH {w}"),
            "MULTI",
            &format!("SET {b} 1"),
            &format!("INCR {w}"),
            &format!("SET {c} 1"),
            "EXEC",
        ]);
        assert_eq!(replies[5], "*3\r\n+OK\r\n:1\r\n+OK\r\n");
        let _: () = redis::cmd("DEL").arg(&b).arg(&c).query(&mut con).unwrap();
        let _: () = con.set(&w, "0").unwrap();
    }

    // WATCH over two slots stays CROSSSLOT.
    assert_eq!(raw.pipeline(&[&format!("WATCH {w} {b}")]), [CROSSSLOT]);

    // redis-py's way, through the redis crate: a transaction helper watching one key and
    // writing three slots retries until it applies, exactly once each time.
    let mut clients: Vec<_> = (0..4).map(|_| proxy.client()).collect();
    let threads: Vec<_> = clients
        .drain(..)
        .enumerate()
        .map(|(t, mut con)| {
            let (w, b, c) = (w.clone(), b.clone(), c.clone());
            std::thread::spawn(move || {
                for _ in 0..25 {
                    let () = redis::transaction(&mut con, &[&w], |con, pipe| {
                        let n: i64 = con.get(&w)?;
                        pipe.set(&w, n + 1)
                            .ignore()
                            .rpush(&b, format!("{t}:{}", n + 1))
                            .ignore()
                            .incr(&c, 1)
                            .ignore()
                            .query(con)
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(get(&mut con, &w).as_deref(), Some("100"));
    assert_eq!(get(&mut con, &c).as_deref(), Some("100"));
    let log: Vec<String> = con.lrange(&b, 0, -1).unwrap();
    let values: Vec<i64> = log
        .iter()
        .map(|e| e.split(':').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(values, (1..=100).collect::<Vec<_>>());
}

#[test]
fn held_connections_per_slot_count_against_the_cap_and_close_when_the_client_leaves() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    // pinned_wait_ms = 0: at the cap, refused at once rather than after a wait.
    let proxy = Proxy::start_with_config(
        &cluster.seeds(),
        "[backend]\nmax_pinned = 2\npinned_wait_ms = 0\n",
    );
    let mut con = proxy.client();
    let [a, b, c] = keys_on_masters(&cluster, ["ha", "hb", "hc"]);
    let mut raw = RawClient::connect(proxy.port());
    let replies = raw.pipeline(&["MULTI", &format!("SET {a} 1"), &format!("SET {b} 1")]);
    assert_eq!(replies[1..], ["+QUEUED\r\n", "+QUEUED\r\n"]);
    assert_eq!(info_counter(&proxy, "pinned_connections"), 2);
    // A third slot finds no connection: the transaction aborts, nothing runs.
    let replies = raw.pipeline(&[&format!("SET {c} 1"), "EXEC"]);
    assert!(
        replies[0].contains("pinned connections are in use"),
        "{replies:?}"
    );
    assert!(replies[1].starts_with("-EXECABORT"), "{replies:?}");
    assert_none_applied(&mut con, &[&a, &b, &c]);

    // A client that leaves mid-transaction: its held connections are closed, nothing
    // of it is applied.
    let replies = raw.pipeline(&["MULTI", &format!("SET {a} 1"), &format!("SET {b} 1")]);
    assert_eq!(replies[2], "+QUEUED\r\n");
    drop(raw);
    wait_until("the held connections are closed", || {
        info_counter(&proxy, "pinned_connections") == 0
    });
    assert_eq!(get(&mut con, &a), None);
    assert_eq!(get(&mut con, &b), None);

    // Within the cap it runs, and gives its connections back.
    let mut raw = RawClient::connect(proxy.port());
    let replies = raw.transaction(&[&format!("SET {a} 1"), &format!("SET {b} 1")]);
    assert_eq!(replies[3], "*2\r\n+OK\r\n+OK\r\n");
    assert_eq!(info_counter(&proxy, "pinned_connections"), 2);
    let replies = raw.transaction(&[&format!("SET {c} 1"), &format!("SET {b} 2")]);
    assert_eq!(replies[3], "*2\r\n+OK\r\n+OK\r\n");
}

#[test]
fn a_slot_whose_exec_gets_no_reply_after_the_first_ran_is_reported_partly_applied() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start_with_config(&cluster.seeds(), "[backend]\ntimeout_ms = 500\n");
    let ports = cluster.master_ports();
    let [a, b] = keys_on_masters(&cluster, ["pa", "pb"]);
    let mut raw = RawClient::connect(proxy.port());
    let mut con = proxy.client();
    let replies = raw.pipeline(&[
        "MULTI",
        &format!("SET {a} 1"),
        &format!("SET {b} 1"),
        &format!("INCR {a}n"),
    ]);
    assert_eq!(replies[1..], ["+QUEUED\r\n", "+QUEUED\r\n", "+QUEUED\r\n"]);
    // The second slot's node stops answering: the first slot runs, the second's EXEC
    // times out, and the client is told which ran.
    cluster.cli(ports[1], &["CLIENT", "PAUSE", "1500", "ALL"]);
    let replies = raw.pipeline(&["EXEC"]);
    let (sa, sb) = (
        support::key_slot(a.as_bytes()),
        support::key_slot(b.as_bytes()),
    );
    assert!(
        replies[0].starts_with(&format!(
            "-ERR slotgate: transaction partly applied: slot {sa} (commands 1, 3) ran; slot {sb} (commands 2) may or may not have run: backend"
        )),
        "{replies:?}"
    );
    assert_eq!(get(&mut con, &a).as_deref(), Some("1"));
    wait_until("the pause is over", || {
        cluster.cli(ports[1], &["PING"]) == "PONG"
    });
    // The next transaction runs on new connections.
    let replies = raw.transaction(&[&format!("INCR {a}n"), &format!("SET {b} 2")]);
    assert_eq!(replies[3], "*2\r\n:2\r\n+OK\r\n");
}

#[test]
fn reads_alone_in_their_slot_hold_no_connection_and_keep_their_place() {
    let (_cluster, proxy) = cluster_and_proxy(3, 0, &["--workers", "1"]);
    let mut raw = RawClient::connect(proxy.port());
    let mut con = proxy.client();
    // 60 keys of 60 slots, read in one transaction (RQ's `Job.fetch_many`): the first
    // slot holds a connection, the other reads go alone after it ran.
    let keys: Vec<String> = (0..60).map(|i| format!("{{fetch{i}}}h")).collect();
    for (i, key) in keys.iter().enumerate() {
        let _: () = redis::cmd("HSET")
            .arg(key)
            .arg("n")
            .arg(i)
            .query(&mut con)
            .unwrap();
    }
    let mut requests = vec!["MULTI".to_string()];
    requests.extend(keys.iter().map(|k| format!("HGET {k} n")));
    requests.push("EXEC".into());
    let requests: Vec<&str> = requests.iter().map(String::as_str).collect();
    let replies = raw.pipeline(&requests);
    let want: String = std::iter::once("*60\r\n".to_string())
        .chain((0..60).map(|i: usize| format!("${}\r\n{i}\r\n", i.to_string().len())))
        .collect();
    assert_eq!(replies[61], want);
    assert!(info_counter(&proxy, "pinned_connections") <= 1);

    // A read alone in its slot becomes a group when a write to its slot follows; the
    // replies keep the client's order.
    let (a, b, c) = ("{lone-a}k", "{lone-b}k", "{lone-c}k");
    let _: () = con.set(b, "old").unwrap();
    let replies = raw.transaction(&[
        &format!("SET {a} 1"),
        &format!("GET {b}"),
        &format!("GET {c}"),
        &format!("SET {b} new"),
        &format!("GET {b}"),
    ]);
    assert_eq!(
        replies[6],
        "*5\r\n+OK\r\n$3\r\nold\r\n$-1\r\n+OK\r\n$3\r\nnew\r\n"
    );
    // A watched key that changed: the reads are not sent either.
    let replies = raw.pipeline(&[
        &format!("WATCH {a}"),
        "MULTI",
        &format!("GET {b}"),
        &format!("GET {c}"),
    ]);
    assert_eq!(replies[2..], ["+QUEUED\r\n", "+QUEUED\r\n"]);
    let _: () = con.set(a, "changed").unwrap();
    assert_eq!(raw.pipeline(&["EXEC", "PING"]), ["*-1\r\n", "+PONG\r\n"]);
}
