//! Reads from replicas (`read_from`, `READONLY`/`READWRITE`) against a real cluster of
//! 3 masters and 3 replicas. Who served what is read from each node's own `INFO
//! commandstats` (asked directly, not through slotgate): a `GET` a replica executed
//! counts in its `cmdstat_get` calls; a `MOVED` it answered would not.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use redis::Commands;
use support::{keys_in_slot, require_redis, wait_until, wait_until_within, Cluster, Proxy};

/// `calls` of `cmdstat_<command>` in the node's `INFO commandstats` (0 when absent).
fn calls(cluster: &Cluster, port: u16, command: &str) -> u64 {
    let text = cluster.cli(port, &["INFO", "commandstats"]);
    let prefix = format!("cmdstat_{command}:calls=");
    text.lines()
        .find_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The sum of `calls(command)` over `ports`.
fn total(cluster: &Cluster, ports: &[u16], command: &str) -> u64 {
    ports.iter().map(|&p| calls(cluster, p, command)).sum()
}

/// `CONFIG RESETSTAT` on each of `ports`, directly.
fn reset_stats(cluster: &Cluster, ports: &[u16]) {
    for &port in ports {
        assert_eq!(cluster.cli(port, &["CONFIG", "RESETSTAT"]), "OK");
    }
}

/// The masters, and each master's replica (same order).
fn roles(cluster: &Cluster) -> (Vec<u16>, Vec<u16>) {
    let masters = cluster.master_ports();
    let replicas = masters
        .iter()
        .map(|&m| cluster.replica_of(m).expect("every master has a replica"))
        .collect();
    (masters, replicas)
}

/// A key in the shard of each master: slot 0 is the first master's, and so on.
fn keys_per_shard(count: usize) -> Vec<String> {
    [0u16, 6000, 12000]
        .iter()
        .flat_map(|&slot| keys_in_slot(slot, "rf", count))
        .collect()
}

/// Until the replica poller has found the replicas fit (within a second or two of
/// start-up or of the first `READONLY`): GETs on `con` until every replica in
/// `replicas` has served one.
fn wait_for_replica_reads(cluster: &Cluster, con: &mut redis::Connection, replicas: &[u16]) {
    let keys = keys_per_shard(1);
    wait_until_within(Duration::from_secs(15), "GETs reach every replica", || {
        for key in &keys {
            let _: Option<String> = con.get(key).unwrap();
        }
        replicas.iter().all(|&r| calls(cluster, r, "get") > 0)
    });
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid}");
}

#[test]
fn read_from_replica_reads_at_replicas_and_writes_at_masters() {
    require_redis();
    let cluster = Cluster::start(3, 1);
    let (masters, replicas) = roles(&cluster);
    let all: Vec<u16> = masters.iter().chain(&replicas).copied().collect();
    let proxy = Proxy::start(&cluster.seeds(), &["--read-from", "replica"]);
    let mut con = proxy.client();
    let keys = keys_per_shard(20);
    for key in &keys {
        let _: () = con.set(key, format!("v-{key}")).unwrap();
    }
    wait_for_replica_reads(&cluster, &mut con, &replicas);

    reset_stats(&cluster, &all);
    for key in &keys {
        let _: () = con.set(key, format!("w-{key}")).unwrap();
    }
    // Writes: every SET at a master (a replica counts them too, as it applies its
    // master's stream).
    assert_eq!(total(&cluster, &masters, "set"), keys.len() as u64);

    // Read-your-writes is not promised: right after its own SET a client reading at a
    // replica may still see the old value, until the replica has the write. What it
    // sees is one or the other, never anything else.
    let seen: String = con.get(&keys[0]).unwrap();
    assert!(
        seen == format!("v-{}", keys[0]) || seen == format!("w-{}", keys[0]),
        "{seen}"
    );
    wait_until("the replicas have the new values", || {
        keys.iter()
            .all(|k| con.get::<_, String>(k).unwrap() == format!("w-{k}"))
    });

    reset_stats(&cluster, &all);
    for key in &keys {
        let value: String = con.get(key).unwrap();
        assert_eq!(value, format!("w-{key}"));
    }
    assert_eq!(total(&cluster, &replicas, "get"), keys.len() as u64);
    assert_eq!(total(&cluster, &masters, "get"), 0, "no GET at a master");
    for (&m, &r) in masters.iter().zip(&replicas) {
        assert_eq!(
            calls(&cluster, r, "get"),
            20,
            "replica {r} of {m} serves its shard"
        );
    }

    // MGET over the three shards: split per slot, each part read at a replica.
    reset_stats(&cluster, &all);
    let three = [&keys[0], &keys[20], &keys[40]];
    let values: Vec<String> = con.mget(&three).unwrap();
    let want: Vec<String> = three.iter().map(|k| format!("w-{k}")).collect();
    assert_eq!(values, want);
    assert_eq!(total(&cluster, &replicas, "mget"), 3);
    assert_eq!(total(&cluster, &masters, "mget"), 0);

    // A transaction reads at its master, whatever `read_from` says.
    reset_stats(&cluster, &all);
    let (got,): (String,) = redis::pipe()
        .atomic()
        .get(&keys[0])
        .query(&mut con)
        .unwrap();
    assert_eq!(got, format!("w-{}", keys[0]));
    assert_eq!(total(&cluster, &replicas, "get"), 0);
    assert_eq!(calls(&cluster, masters[0], "get"), 1);
}

#[test]
fn a_stopped_or_killed_replica_is_skipped_and_reads_keep_answering() {
    require_redis();
    let mut cluster = Cluster::start(3, 1);
    let (masters, replicas) = roles(&cluster);
    let (master, replica) = (masters[0], replicas[0]);
    let proxy = Proxy::start(&cluster.seeds(), &["--read-from", "replica"]);
    let mut con = proxy.client();
    let keys = keys_in_slot(0, "stop", 10);
    for key in &keys {
        let _: () = con.set(key, key).unwrap();
    }
    wait_for_replica_reads(&cluster, &mut con, &replicas);

    let pid = cluster.pid(replica).expect("the replica runs");
    signal(pid, "-STOP");
    // Reads of the stopped replica's shard keep answering: the first ones in flight
    // there go to the master once their `replica_timeout_ms` passes, and the replica is
    // skipped from then on (the poller's PING to it goes unanswered; the cluster flags
    // it failing soon after).
    let before = calls(&cluster, master, "get");
    let started = Instant::now();
    let mut answered = 0;
    while answered < 200 && started.elapsed() < Duration::from_secs(20) {
        let key = &keys[answered % keys.len()];
        let value: String = con.get(key).expect("reads keep answering");
        assert_eq!(&value, key);
        answered += 1;
    }
    assert_eq!(answered, 200);
    wait_until("the master serves the shard's reads", || {
        let _: String = con.get(&keys[0]).unwrap();
        calls(&cluster, master, "get") > before
    });
    // Resumed, it serves reads again.
    signal(pid, "-CONT");
    let again = calls(&cluster, replica, "get");
    wait_until_within(
        Duration::from_secs(30),
        "the resumed replica serves reads",
        || {
            let _: String = con.get(&keys[0]).unwrap();
            calls(&cluster, replica, "get") > again
        },
    );

    // Killed: the same.
    cluster.kill(replica);
    let before = calls(&cluster, master, "get");
    for i in 0..100 {
        let key = &keys[i % keys.len()];
        let value: String = con.get(key).expect("reads keep answering");
        assert_eq!(&value, key);
    }
    wait_until("the master serves the shard's reads", || {
        let _: String = con.get(&keys[0]).unwrap();
        calls(&cluster, master, "get") > before
    });
}

#[test]
fn per_client_readonly_prefer_replica_and_nearest() {
    require_redis();
    let cluster = Cluster::start(3, 1);
    let (masters, replicas) = roles(&cluster);
    let all: Vec<u16> = masters.iter().chain(&replicas).copied().collect();
    let keys = keys_per_shard(10);

    // read_from = master (the default): a client reads at masters until it says
    // READONLY, and again after READWRITE; other clients are not affected.
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let mut plain = proxy.client();
    for key in &keys {
        let _: () = plain.set(key, key).unwrap();
    }
    reset_stats(&cluster, &all);
    for key in &keys {
        assert_eq!(plain.get::<_, String>(key).unwrap(), *key);
    }
    assert_eq!(total(&cluster, &replicas, "get"), 0);
    assert_eq!(total(&cluster, &masters, "get"), keys.len() as u64);

    let mut reader = proxy.client();
    let ok: String = redis::cmd("READONLY").query(&mut reader).unwrap();
    assert_eq!(ok, "OK");
    wait_for_replica_reads(&cluster, &mut reader, &replicas);
    reset_stats(&cluster, &all);
    for key in &keys {
        assert_eq!(reader.get::<_, String>(key).unwrap(), *key);
    }
    assert_eq!(total(&cluster, &replicas, "get"), keys.len() as u64);
    assert_eq!(total(&cluster, &masters, "get"), 0);
    // Writes of a READONLY client still go to masters.
    let _: () = reader.set(&keys[0], &keys[0]).unwrap();
    assert_eq!(total(&cluster, &masters, "set"), 1);
    // CLIENT LIST shows it as Redis does: flag `r`.
    let info: String = redis::cmd("CLIENT").arg("INFO").query(&mut reader).unwrap();
    assert!(info.contains(" flags=r "), "{info}");
    let info: String = redis::cmd("CLIENT").arg("INFO").query(&mut plain).unwrap();
    assert!(info.contains(" flags=N "), "{info}");
    // The other client still reads at masters.
    reset_stats(&cluster, &all);
    for key in &keys {
        assert_eq!(plain.get::<_, String>(key).unwrap(), *key);
    }
    assert_eq!(total(&cluster, &replicas, "get"), 0);
    // READWRITE: back to the masters.
    let ok: String = redis::cmd("READWRITE").query(&mut reader).unwrap();
    assert_eq!(ok, "OK");
    let info: String = redis::cmd("CLIENT").arg("INFO").query(&mut reader).unwrap();
    assert!(info.contains(" flags=N "), "{info}");
    reset_stats(&cluster, &all);
    for key in &keys {
        assert_eq!(reader.get::<_, String>(key).unwrap(), *key);
    }
    assert_eq!(total(&cluster, &replicas, "get"), 0);
    assert_eq!(total(&cluster, &masters, "get"), keys.len() as u64);

    // prefer-replica: reads at replicas while they are usable.
    let prefer = Proxy::start(&cluster.seeds(), &["--read-from", "prefer-replica"]);
    let mut con = prefer.client();
    wait_for_replica_reads(&cluster, &mut con, &replicas);
    reset_stats(&cluster, &all);
    for key in &keys {
        assert_eq!(con.get::<_, String>(key).unwrap(), *key);
    }
    assert_eq!(total(&cluster, &replicas, "get"), keys.len() as u64);
    assert_eq!(total(&cluster, &masters, "get"), 0);

    // nearest: every read answered correctly, by one node of its shard or another
    // (all are on this host: which one is nearest is the round trips' call; the choice
    // itself is unit-tested with set round trips).
    let nearest = Proxy::start(&cluster.seeds(), &["--read-from", "nearest"]);
    let mut con = nearest.client();
    reset_stats(&cluster, &all);
    for key in &keys {
        assert_eq!(con.get::<_, String>(key).unwrap(), *key);
    }
    assert_eq!(total(&cluster, &all, "get"), keys.len() as u64);
    let values: Vec<String> = con.mget(&[&keys[0], &keys[10], &keys[20]]).unwrap();
    assert_eq!(
        values,
        vec![keys[0].clone(), keys[10].clone(), keys[20].clone()]
    );
}
