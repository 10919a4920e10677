//! Split and merge (`MGET`, `MSET`, `DEL`, `UNLINK`, `EXISTS`, `TOUCH` over keys in many
//! slots) and cluster-wide commands (`DBSIZE`, `KEYS`, `SCAN`, `FLUSHALL`, `SCRIPT`,
//! `FUNCTION`, `SLOWLOG`, `CONFIG SET`, `PUBSUB`), through slotgate to a real cluster,
//! as a client of a standalone server sees them, in RESP2 and RESP3.

#[macro_use]
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use redis::{Commands, Value};
use support::{cluster_and_proxy, require_redis, wait_until, wait_until_within, Cluster, Proxy};

/// How long the cluster may take to settle (a failover, gossip) or slotgate to see it.
const SETTLE: Duration = Duration::from_secs(30);

/// Slotgate learns a topology change (a migration begun or finished) within a fifth of a
/// second.
const FAST_REFRESH: &str = "[cluster]\nrefresh_interval_ms = 200\n";

fn slots_of<'a>(keys: impl Iterator<Item = &'a String>) -> usize {
    keys.map(|k| support::key_slot(k.as_bytes()))
        .collect::<BTreeSet<_>>()
        .len()
}

#[test]
fn split_commands_merge_in_the_clients_key_order() {
    let (cluster, proxy) = cluster_and_proxy(3, 0, &[]);
    for protocol in ["resp2", "resp3"] {
        let mut con = proxy.client_in(protocol);
        let keys: Vec<String> = (0..1000).map(|i| format!("{protocol}:sp:{i}")).collect();
        assert!(slots_of(keys.iter()) > 900, "keys in many slots");
        // MSET of all 1,000 in one request.
        let mut mset = redis::cmd("MSET");
        for k in &keys {
            mset.arg(k).arg(format!("v-{k}"));
        }
        let ok: String = mset.query(&mut con).unwrap();
        assert_eq!(ok, "OK");
        // Every key landed on the master that owns it.
        for k in keys.iter().step_by(97) {
            let mut node = cluster.node_client(cluster.node_for_key(k));
            let v: Option<String> = node.get(k).unwrap();
            assert_eq!(
                v.as_deref(),
                Some(format!("v-{k}").as_str()),
                "{k} on its owner"
            );
        }
        // MGET with missing keys in between, and a key twice.
        let mut asked: Vec<String> = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            asked.push(k.clone());
            if i % 10 == 0 {
                asked.push(format!("{protocol}:missing:{i}"));
            }
        }
        asked.push(keys[0].clone());
        let got: Vec<Option<String>> = con.mget(&asked).unwrap();
        let want: Vec<Option<String>> = asked
            .iter()
            .map(|k| (!k.contains(":missing:")).then(|| format!("v-{k}")))
            .collect();
        assert_eq!(got, want, "{protocol}: MGET in the client's key order");

        let exists: usize = query!(&mut con, "EXISTS", &asked);
        assert_eq!(
            exists, 1001,
            "{protocol}: EXISTS counts each key asked, twice counts twice"
        );
        let touched: usize = query!(&mut con, "TOUCH", &keys);
        assert_eq!(touched, 1000);
        let deleted: usize = con.del(&keys[..500]).unwrap();
        assert_eq!(deleted, 500, "{protocol}: DEL");
        let unlinked: usize = con.unlink(&asked).unwrap();
        assert_eq!(
            unlinked, 500,
            "{protocol}: UNLINK of the rest (missing keys count 0)"
        );
        let got: Vec<Option<String>> = con.mget(&keys).unwrap();
        assert!(got.iter().all(Option::is_none), "{protocol}: all gone");
    }
}

#[test]
fn a_pipeline_mixing_split_and_plain_commands_keeps_its_order() {
    let (_cluster, proxy) = cluster_and_proxy(3, 0, &[]);
    let mut con = proxy.client();
    let (a, b, c) = ("pl:a", "pl:b", "pl:c");
    assert_eq!(slots_of([a, b, c].map(String::from).iter()), 3);
    type Replies = (
        String,
        Vec<Option<String>>,
        usize,
        Option<String>,
        String,
        Vec<Option<String>>,
        usize,
    );
    let (set, mget1, del, get, mset, mget2, exists): Replies = redis::pipe()
        .set(a, "1")
        .mget(&[a, b, c])
        .del(&[a, b])
        .get(a)
        .mset(&[(b, "2"), (c, "3")])
        .mget(&[a, b, c])
        .exists(&[a, b, c])
        .query(&mut con)
        .unwrap();
    assert_eq!(set, "OK");
    assert_eq!(mget1, vec![Some("1".into()), None, None]);
    assert_eq!(del, 1);
    assert_eq!(get, None);
    assert_eq!(mset, "OK");
    assert_eq!(mget2, vec![None, Some("2".into()), Some("3".into())]);
    assert_eq!(exists, 2);
}

#[test]
fn msetnx_is_split_never_and_crossslot_stays_for_commands_that_cannot_split() {
    let (_cluster, proxy) = cluster_and_proxy(3, 0, &[]);
    let mut con = proxy.client();
    let err = redis::cmd("MSETNX")
        .arg(&["nx:a", "1", "nx:b", "2"])
        .query::<i64>(&mut con)
        .unwrap_err();
    assert_eq!(err.code(), Some("CROSSSLOT"), "{err}");
    assert!(err.to_string().contains("all of its keys or none"), "{err}");
    let none: Vec<Option<String>> = con.mget(&["nx:a", "nx:b"]).unwrap();
    assert_eq!(none, vec![None, None], "nothing of the refused MSETNX ran");
    let set: i64 = redis::cmd("MSETNX")
        .arg(&["{nx}a", "1", "{nx}b", "2"])
        .query(&mut con)
        .unwrap();
    assert_eq!(set, 1, "same-slot MSETNX works");
    let err = redis::cmd("RENAME")
        .arg(&["nx:a", "nx:b"])
        .query::<String>(&mut con)
        .unwrap_err();
    assert_eq!(err.code(), Some("CROSSSLOT"));
}

#[test]
fn cluster_wide_commands_answer_for_the_whole_cluster() {
    let (cluster, proxy) = cluster_and_proxy(3, 0, &[]);
    for protocol in ["resp2", "resp3"] {
        let mut con = proxy.client_in(protocol);
        let _: String = query!(&mut con, "FLUSHALL");
        let keys: BTreeSet<String> = (0..300).map(|i| format!("fo:{i}")).collect();
        for k in &keys {
            let _: () = con.set(k, "x").unwrap();
        }
        let dbsize: usize = query!(&mut con, "DBSIZE");
        assert_eq!(dbsize, 300, "{protocol}: DBSIZE sums the masters");
        let all: BTreeSet<String> = con.keys("fo:*").unwrap();
        assert_eq!(all, keys, "{protocol}: KEYS concatenates the masters");
        let one: Vec<String> = con.keys("fo:1?").unwrap();
        assert_eq!(one.len(), 10);
        for _ in 0..10 {
            let random: String = query!(&mut con, "RANDOMKEY");
            assert!(keys.contains(&random), "{protocol}: RANDOMKEY {random}");
        }
        let ok: String = query!(&mut con, "FLUSHALL", "SYNC");
        assert_eq!(ok, "OK");
        for port in cluster.master_ports() {
            let n: usize = query!(&mut cluster.node_client(port), "DBSIZE");
            assert_eq!(n, 0, "{protocol}: FLUSHALL reached master {port}");
        }
        let random: Option<String> = query!(&mut con, "RANDOMKEY");
        assert_eq!(random, None, "{protocol}: RANDOMKEY of an empty cluster");
        let _: () = con.set("fo:again", "x").unwrap();
        let ok: String = query!(&mut con, "FLUSHDB", "ASYNC");
        assert_eq!(ok, "OK");
        let dbsize: usize = query!(&mut con, "DBSIZE");
        assert_eq!(dbsize, 0);
    }
}

#[test]
fn scan_returns_every_key_exactly_as_written() {
    let (_cluster, proxy) = cluster_and_proxy(3, 0, &[]);
    let mut con = proxy.client();
    let keys: BTreeSet<String> = (0..10_000).map(|i| format!("sc:{i}")).collect();
    write_keys(&mut con, &keys);
    for i in 0..50 {
        let _: () = con.hset(format!("sc:h{i}"), "f", "v").unwrap();
    }
    for protocol in ["resp2", "resp3"] {
        let mut con = proxy.client_in(protocol);
        let mut seen = BTreeSet::new();
        let mut cursor = "0".to_string();
        let mut calls = 0;
        loop {
            let (next, batch): (String, Vec<String>) =
                query!(&mut con, "SCAN", &cursor, "MATCH", "sc:*", "COUNT", 500, "TYPE", "string");
            seen.extend(batch);
            calls += 1;
            assert!(calls < 1000, "{protocol}: the scan ends");
            if next == "0" {
                break;
            }
            cursor = next;
        }
        assert_eq!(
            seen, keys,
            "{protocol}: exactly the keys written (TYPE string)"
        );
        // The client libraries' iterator.
        let all: BTreeSet<String> = con.scan_match("sc:h*").unwrap().collect();
        assert_eq!(all.len(), 50, "{protocol}: scan_match");
    }
    let err = query_err!(&mut con, "SCAN", "abc");
    assert!(err.to_string().contains("invalid cursor"), "{err}");
    // redis-cli's own walkers.
    let out = proxy.cli(&["--scan", "--pattern", "sc:h*"]);
    assert_eq!(out.lines().count(), 50, "redis-cli --scan: {out}");
    let out = proxy.cli(&["--bigkeys"]);
    assert!(
        out.contains("10000 strings") || out.contains("10000 keys"),
        "{out}"
    );
    let out = proxy.cli(&["--memkeys"]);
    assert!(out.contains("10050 keys"), "redis-cli --memkeys: {out}");
}

#[test]
fn scan_across_a_slot_migration_loses_no_key() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    // Slotgate learns a finished migration within a fifth of a second.
    let proxy = Proxy::start_with_config(&cluster.seeds(), FAST_REFRESH);
    let mut con = proxy.client();
    let keys: BTreeSet<String> = (0..3000).map(|i| format!("mg:{i}")).collect();
    write_keys(&mut con, &keys);
    // Slots move from the last master to the first while the scan walks the masters
    // in order: keys move from a master not yet scanned to one already scanned.
    let masters = cluster.master_ports();
    let (first, last) = (cluster.node_for_slot(0), cluster.node_for_slot(16383));
    assert!(masters.contains(&first) && first != last);
    let moving: Vec<u16> = (0..16384u16)
        .filter(|&s| cluster.node_for_slot(s) == last)
        .take(20)
        .collect();
    let mut seen = BTreeSet::new();
    let mut cursor = "0".to_string();
    let mut calls = 0;
    let started = Instant::now();
    loop {
        let (next, batch): (String, Vec<String>) = query!(&mut con, "SCAN", &cursor, "COUNT", 100);
        seen.extend(batch);
        calls += 1;
        if calls == 3 {
            for &slot in &moving {
                cluster.migrate_slots(slot..=slot, last, first);
            }
            std::thread::sleep(Duration::from_millis(600));
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the scan ends");
        if next == "0" {
            break;
        }
        cursor = next;
    }
    assert_none_missed(&keys, &seen);
}

/// `keys` set to `v`, 500 to an `MSET`.
fn write_keys(con: &mut redis::Connection, keys: &BTreeSet<String>) {
    for chunk in keys.iter().collect::<Vec<_>>().chunks(500) {
        let pairs: Vec<(&String, &str)> = chunk.iter().map(|k| (*k, "v")).collect();
        let _: () = con.mset(&pairs).unwrap();
    }
}

/// Every one of `keys` was `seen`.
fn assert_none_missed(keys: &BTreeSet<String>, seen: &BTreeSet<String>) {
    let missing: Vec<&String> = keys.difference(seen).collect();
    assert!(
        missing.is_empty(),
        "{} keys missed: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
}

/// One `SCAN` call through slotgate: the next cursor and the keys.
fn scan_step(con: &mut redis::Connection, cursor: u64, count: usize) -> (u64, Vec<String>) {
    redis::cmd("SCAN")
        .arg(cursor)
        .arg("COUNT")
        .arg(count)
        .query(con)
        .unwrap()
}

#[test]
fn scan_ending_while_slots_migrate_loses_no_key() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start_with_config(&cluster.seeds(), FAST_REFRESH);
    let mut con = proxy.client();
    // The walk goes through the masters by their lowest slot: first, middle, last.
    let (first, last) = (cluster.node_for_slot(0), cluster.node_for_slot(16383));
    // One slot moves from the last master to the first (walked already when its keys
    // move), one from the first to the last (not walked yet).
    let (backward, forward) = (16383u16, 0u16);
    let mut keys: BTreeSet<String> = BTreeSet::new();
    keys.extend(support::keys_in_slot(backward, "back", 200));
    keys.extend(support::keys_in_slot(forward, "fwd", 200));
    keys.extend((0..2000).map(|i| format!("rest:{i}")));
    write_keys(&mut con, &keys);
    let mut seen = BTreeSet::new();
    let mut cursor = 0u64;
    let mut calls = 0;
    let mut migrated = false;
    loop {
        let (next, batch) = scan_step(&mut con, cursor, 50);
        seen.extend(batch);
        calls += 1;
        assert!(calls < 2000, "the scan ends");
        // The low byte of slotgate's cursor is the master it is at: past the first.
        if !migrated && next & 0xff == 1 {
            migrated = true;
            cluster.begin_slot_migration(backward, last, first);
            cluster.begin_slot_migration(forward, first, last);
            // Key by key, as `redis-cli --cluster reshard` does.
            while cluster.migrate_keys(backward, last, first, 1) > 0 {}
            while cluster.migrate_keys(forward, first, last, 1) > 0 {}
            // Slotgate's refresh sees both migrations under way.
            wait_until_within(SETTLE, "slotgate sees the migrations", || {
                support::info_counter(&proxy, "slotgate_importing_slots") == 2
            });
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    assert!(migrated, "the scan went past the first master");
    assert_none_missed(&keys, &seen);
    // Both migrations were still under way when the scan ended.
    assert_eq!(support::info_counter(&proxy, "slotgate_importing_slots"), 2);
    cluster.finish_slot_migration(backward, last, first);
    cluster.finish_slot_migration(forward, first, last);
    wait_until_within(SETTLE, "slotgate sees the migrations end", || {
        support::info_counter(&proxy, "slotgate_importing_slots") == 0
    });
    // A scan now walks each master once and finds every key once.
    let mut again = Vec::new();
    let mut cursor = 0u64;
    for _ in 0..2000 {
        let (next, batch) = scan_step(&mut con, cursor, 50);
        again.extend(batch);
        cursor = next;
        if next == 0 {
            break;
        }
    }
    assert_eq!(cursor, 0, "the scan ends");
    assert_eq!(again.len(), keys.len(), "no master walked twice");
}

#[test]
fn scripts_and_functions_reach_every_master() {
    let (cluster, proxy) = cluster_and_proxy(3, 0, &[]);
    for protocol in ["resp2", "resp3"] {
        let mut con = proxy.client_in(protocol);
        let script = "return redis.call('GET', KEYS[1])";
        let sha: String = query!(&mut con, "SCRIPT", "LOAD", script);
        assert_eq!(sha.len(), 40);
        let keys = support::keys_on_every_master(&cluster, "ev", 2);
        for k in &keys {
            let _: () = con.set(k, format!("val-{k}")).unwrap();
            let v: String = query!(&mut con, "EVALSHA", &sha, 1, k);
            assert_eq!(
                v,
                format!("val-{k}"),
                "{protocol}: EVALSHA on the key's master"
            );
        }
        let exists: Vec<i64> = query!(
            &mut con,
            "SCRIPT",
            "EXISTS",
            &sha,
            "0000000000000000000000000000000000000000"
        );
        assert_eq!(exists, vec![1, 0]);
        let ok: String = query!(&mut con, "SCRIPT", "FLUSH");
        assert_eq!(ok, "OK");
        let exists: Vec<i64> = query!(&mut con, "SCRIPT", "EXISTS", &sha);
        assert_eq!(exists, vec![0], "{protocol}: flushed on every master");

        let lib = "#!lua name=sglib\nredis.register_function('sgget', function(keys, args) return redis.call('GET', keys[1]) end)";
        let name: String = query!(&mut con, "FUNCTION", "LOAD", "REPLACE", lib);
        assert_eq!(name, "sglib");
        for k in &keys {
            let v: String = query!(&mut con, "FCALL", "sgget", 1, k);
            assert_eq!(
                v,
                format!("val-{k}"),
                "{protocol}: FCALL on the key's master"
            );
        }
        let ok: String = query!(&mut con, "FUNCTION", "DELETE", "sglib");
        assert_eq!(ok, "OK");
        for port in cluster.master_ports() {
            let libs: Vec<Value> = query!(&mut cluster.node_client(port), "FUNCTION", "LIST");
            assert!(libs.is_empty(), "{protocol}: deleted on {port}");
        }
        let err = query_err!(&mut con, "SCRIPT", "KILL");
        assert_eq!(err.code(), Some("NOTBUSY"), "{err}");
    }
}

#[test]
fn config_set_reaches_the_replicas_of_a_cluster_never_written_to() {
    require_redis();
    let cluster = Cluster::start(3, 1);
    // Redis 7.0 calls a replica `loading` in `CLUSTER SHARDS` until its master's first
    // write; this cluster has had none. Every node sees every replica first.
    for port in cluster.master_ports() {
        wait_until_within(SETTLE, &format!("{port} sees every replica"), || {
            let shards = cluster.cli(port, &["CLUSTER", "SHARDS"]);
            shards.matches("replica").count() >= 3
        });
    }
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let mut con = proxy.client();
    let dbsize: i64 = query!(&mut con, "DBSIZE");
    assert_eq!(dbsize, 0, "never written to");
    for policy in ["allkeys-lru", "volatile-ttl"] {
        let ok: String = query!(&mut con, "CONFIG", "SET", "maxmemory-policy", policy);
        assert_eq!(ok, "OK");
        for port in cluster.ports() {
            let got: Vec<String> = query!(
                &mut cluster.node_client(port),
                "CONFIG",
                "GET",
                "maxmemory-policy"
            );
            assert_eq!(got[1], policy, "CONFIG SET reached node {port}");
        }
    }
    let ok: String = query!(&mut con, "CONFIG", "RESETSTAT");
    assert_eq!(ok, "OK");
}

#[test]
fn config_set_slowlog_and_pubsub_counts_cover_every_node() {
    let (cluster, proxy) = cluster_and_proxy(3, 1, &[]);
    let mut con = proxy.client();
    let ok: String = query!(&mut con, "CONFIG", "SET", "slowlog-log-slower-than", "0");
    assert_eq!(ok, "OK");
    for port in cluster.ports() {
        let got: Vec<String> = query!(
            &mut cluster.node_client(port),
            "CONFIG",
            "GET",
            "slowlog-log-slower-than"
        );
        assert_eq!(
            got[1], "0",
            "CONFIG SET reached node {port} (masters and replicas)"
        );
    }
    let _: String = query!(&mut con, "SLOWLOG", "RESET");
    for k in support::keys_on_every_master(&cluster, "sl", 3) {
        let _: () = con.set(&k, "v").unwrap();
    }
    let len: usize = query!(&mut con, "SLOWLOG", "LEN");
    assert!(len >= 9, "SLOWLOG LEN sums the masters: {len}");
    let entries: Vec<Vec<Value>> = query!(&mut con, "SLOWLOG", "GET", 5);
    assert_eq!(entries.len(), 5);
    let masters: BTreeSet<String> = cluster
        .master_ports()
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let mut last_time = i64::MAX;
    for e in &entries {
        assert_eq!(e.len(), 7, "a node's 6 fields and its address: {e:?}");
        let node: String = redis::from_redis_value(&e[6]).unwrap();
        assert!(masters.contains(&node), "{node}");
        let time: i64 = redis::from_redis_value(&e[1]).unwrap();
        assert!(time <= last_time, "newest first");
        last_time = time;
    }
    let _: String = query!(
        &mut con,
        "CONFIG",
        "SET",
        "slowlog-log-slower-than",
        "10000"
    );
    let err = query_err!(&mut con, "CONFIG", "SET", "no-such-parameter", "1");
    assert!(err.to_string().contains("no-such-parameter"), "{err}");

    // A slow script on one master shows up in LATENCY LATEST, with its node.
    let _: String = query!(&mut con, "CONFIG", "SET", "latency-monitor-threshold", "1");
    let slow = "local s = redis.call('TIME') repeat local n = redis.call('TIME') until (n[1] - s[1]) * 1000000 + (n[2] - s[2]) > 5000 return 1";
    let _: i64 = query!(&mut con, "EVAL", slow, 1, "lat:k");
    let latest: Vec<Vec<Value>> = query!(&mut con, "LATENCY", "LATEST");
    let owner = format!("127.0.0.1:{}", cluster.node_for_key("lat:k"));
    assert!(
        latest
            .iter()
            .any(|e| e.len() == 5 && redis::from_redis_value::<String>(&e[4]).unwrap() == owner),
        "an entry of {owner}: {latest:?}"
    );
    let doctor: String = query!(&mut con, "LATENCY", "DOCTOR");
    assert_eq!(doctor.matches("--- node ").count(), 3, "{doctor}");
    let reset: i64 = query!(&mut con, "LATENCY", "RESET");
    assert!(reset >= 1);

    // Subscribers on two different masters, connected to them directly.
    let masters = cluster.master_ports();
    let mut subs = Vec::new();
    for &port in &masters[..2] {
        let mut sub = support::RawClient::connect(port);
        sub.write(b"*2\r\n$9\r\nSUBSCRIBE\r\n$5\r\nnews1\r\n");
        let _ = sub.read_replies(1, Duration::from_secs(5));
        subs.push(sub);
    }
    let numsub: Vec<Value> = query!(&mut con, "PUBSUB", "NUMSUB", "news1", "other");
    let numsub: Vec<(String, i64)> = numsub
        .chunks(2)
        .map(|p| {
            (
                redis::from_redis_value(&p[0]).unwrap(),
                redis::from_redis_value(&p[1]).unwrap(),
            )
        })
        .collect();
    assert_eq!(numsub, vec![("news1".into(), 2), ("other".into(), 0)]);
    let channels: Vec<String> = query!(&mut con, "PUBSUB", "CHANNELS");
    assert_eq!(channels, vec!["news1".to_string()], "the union, once");
}

/// The pairs of a map reply: a RESP3 map, or RESP2's flat array.
fn map_pairs(v: &Value) -> Vec<(Value, Value)> {
    match v {
        Value::Map(pairs) => pairs.clone(),
        Value::Array(flat) => flat
            .chunks(2)
            .map(|p| (p[0].clone(), p[1].clone()))
            .collect(),
        other => panic!("expected a map, got {other:?}"),
    }
}

fn text_of(v: &Value) -> String {
    redis::from_redis_value(v).unwrap()
}

/// One command of `LATENCY HISTOGRAM`: name, calls, `(usec, cumulative count)`.
type Histogram = (String, i64, Vec<(i64, i64)>);

fn histograms(v: &Value) -> Vec<Histogram> {
    map_pairs(v)
        .iter()
        .map(|(name, fields)| {
            let fields = map_pairs(fields);
            let field = |want: &str| {
                fields
                    .iter()
                    .find(|(k, _)| text_of(k) == want)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| panic!("no {want} in {fields:?}"))
            };
            let calls: i64 = redis::from_redis_value(&field("calls")).unwrap();
            let buckets = map_pairs(&field("histogram_usec"))
                .iter()
                .map(|(b, n)| {
                    (
                        redis::from_redis_value(b).unwrap(),
                        redis::from_redis_value(n).unwrap(),
                    )
                })
                .collect();
            (text_of(name), calls, buckets)
        })
        .collect()
}

#[test]
fn latency_histogram_merges_every_masters_histograms() {
    let (cluster, proxy) = cluster_and_proxy(3, 0, &[]);
    let mut con = proxy.client();
    let keys = support::keys_on_every_master(&cluster, "lh", 20);
    for k in &keys {
        let _: () = con.set(k, "v").unwrap();
    }
    for k in &keys[..10] {
        let _: Option<String> = con.get(k).unwrap();
    }
    // What each master says of its own SETs, summed.
    let mut direct_calls = 0;
    for port in cluster.master_ports() {
        let v: Value = query!(
            &mut cluster.node_client(port),
            "LATENCY",
            "HISTOGRAM",
            "set"
        );
        let h = histograms(&v);
        assert_eq!(h.len(), 1, "{port}: {h:?}");
        direct_calls += h[0].1;
    }
    assert_eq!(direct_calls, 60);
    for protocol in ["resp2", "resp3"] {
        let mut con = proxy.client_in(protocol);
        let v: Value = query!(
            &mut con,
            "LATENCY",
            "HISTOGRAM",
            "set",
            "get",
            "no-such-command"
        );
        if protocol == "resp3" {
            assert!(matches!(v, Value::Map(_)), "{protocol}: a map: {v:?}");
        }
        let h = histograms(&v);
        let names: Vec<&str> = h.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names.len(), 2, "{protocol}: {names:?}");
        assert!(
            names.contains(&"set") && names.contains(&"get"),
            "{names:?}"
        );
        for (name, calls, buckets) in &h {
            let want = if name == "set" { 60 } else { 10 };
            assert_eq!(*calls, want, "{protocol}: {name} calls over every master");
            // Cumulative: rising, the last bucket counts every call.
            assert!(buckets
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1));
            assert_eq!(buckets.last().map(|b| b.1), Some(want), "{buckets:?}");
        }
        // Without arguments: every command any master ran.
        let all: Value = query!(&mut con, "LATENCY", "HISTOGRAM");
        let all = histograms(&all);
        assert!(
            all.iter().any(|(n, c, _)| n == "set" && *c == 60),
            "{all:?}"
        );
    }
}

#[test]
fn function_stats_shows_a_function_running_on_any_master() {
    let (cluster, proxy) = cluster_and_proxy(3, 0, &[]);
    let mut con = proxy.client();
    let lib = "#!lua name=slowlib\nredis.register_function{function_name='slowfn', callback=function(keys, args) local s = redis.call('TIME') repeat local n = redis.call('TIME') until (n[1] - s[1]) * 1000000 + (n[2] - s[2]) > 3000000 return 1 end, flags={'no-writes'}}";
    let _: String = query!(&mut con, "FUNCTION", "LOAD", lib);
    let idle: Value = query!(&mut con, "FUNCTION", "STATS");
    let idle = map_pairs(&idle);
    assert_eq!(text_of(&idle[0].0), "running_script");
    assert_eq!(idle[0].1, Value::Nil, "nothing runs");
    let engines = map_pairs(&idle[1].1);
    let lua = map_pairs(&engines[0].1);
    assert_eq!(
        redis::from_redis_value::<i64>(&lua[0].1).unwrap(),
        1,
        "one library, from one master: {lua:?}"
    );
    // A node answers others while a function runs only past busy-reply-threshold
    // (5 s by default).
    let _: String = query!(&mut con, "CONFIG", "SET", "busy-reply-threshold", "100");
    // The function runs on the last master, called there directly.
    let busy = *cluster.master_ports().last().unwrap();
    let mut direct = cluster.node_client(busy);
    let runner = std::thread::spawn(move || {
        redis::cmd("FCALL")
            .arg("slowfn")
            .arg(0)
            .query::<i64>(&mut direct)
    });
    for protocol in ["resp2", "resp3"] {
        let mut con = proxy.client_in(protocol);
        let deadline = Instant::now() + Duration::from_secs(3);
        let running = loop {
            let stats: Value = query!(&mut con, "FUNCTION", "STATS");
            let stats = map_pairs(&stats);
            if stats[0].1 != Value::Nil {
                break map_pairs(&stats[0].1);
            }
            assert!(Instant::now() < deadline, "{protocol}: never saw it run");
            std::thread::sleep(Duration::from_millis(20));
        };
        let field = |want: &str| running.iter().find(|(k, _)| text_of(k) == want).cloned();
        assert_eq!(
            field("name").map(|(_, v)| text_of(&v)).as_deref(),
            Some("slowfn"),
            "{protocol}: {running:?}"
        );
    }
    assert_eq!(runner.join().unwrap().unwrap(), 1);
}

/// `args` as one RESP request.
fn request(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// A client that sent `args` (a subscribe) to `port` and got its confirmation.
fn subscribed(port: u16, args: &[&str]) -> support::RawClient {
    let mut c = support::RawClient::connect(port);
    c.write(&request(args));
    let confirmed = c.read_replies(1, Duration::from_secs(10));
    assert_eq!(confirmed.len(), 1, "{args:?} confirmed");
    c
}

/// `PUBSUB NUMSUB`/`SHARDNUMSUB` as (channel, count) pairs.
fn numsub(con: &mut redis::Connection, sub: &str, channels: &[&str]) -> Vec<(String, i64)> {
    let v: Value = redis::cmd("PUBSUB")
        .arg(sub)
        .arg(channels)
        .query(con)
        .unwrap();
    map_pairs(&v)
        .iter()
        .map(|(c, n)| (text_of(c), redis::from_redis_value(n).unwrap()))
        .collect()
}

#[test]
fn pubsub_counts_count_slotgates_clients_not_its_own_subscriptions() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    // Clients spread over both workers, each worker's hub subscribing once at a node.
    let proxy = Proxy::start(&cluster.seeds(), &["--workers", "2"]);
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(subscribed(proxy.port(), &["SUBSCRIBE", "news"]));
    }
    for _ in 0..3 {
        clients.push(subscribed(proxy.port(), &["PSUBSCRIBE", "news.*"]));
    }
    clients.push(subscribed(proxy.port(), &["PSUBSCRIBE", "sports.*"]));
    for _ in 0..3 {
        clients.push(subscribed(proxy.port(), &["SSUBSCRIBE", "{s}ch"]));
    }
    // One more of each at a node directly.
    let node = cluster.master_ports()[1];
    clients.push(subscribed(node, &["SUBSCRIBE", "news"]));
    clients.push(subscribed(node, &["PSUBSCRIBE", "direct.*"]));
    let owner = cluster.node_for_key("{s}ch");
    clients.push(subscribed(owner, &["SSUBSCRIBE", "{s}ch"]));
    for protocol in ["resp2", "resp3"] {
        let mut con = proxy.client_in(protocol);
        assert_eq!(
            numsub(&mut con, "NUMSUB", &["news", "none"]),
            vec![("news".into(), 6), ("none".into(), 0)],
            "{protocol}: 5 through slotgate, 1 at a node"
        );
        assert_eq!(
            numsub(&mut con, "SHARDNUMSUB", &["{s}ch"]),
            vec![("{s}ch".into(), 4)],
            "{protocol}"
        );
        let numpat: i64 = query!(&mut con, "PUBSUB", "NUMPAT");
        assert_eq!(numpat, 3, "{protocol}: news.*, sports.*, direct.*");
    }
    // Clients that leave are counted out.
    drop(clients.drain(..3));
    let mut con = proxy.client();
    wait_until("the 3 that left are counted out", || {
        numsub(&mut con, "NUMSUB", &["news"])[0].1 == 3
    });
}

#[test]
fn a_noscript_after_a_failover_or_a_flush_on_one_node_is_healed() {
    let (cluster, proxy) = cluster_and_proxy(3, 1, &[]);
    let mut con = proxy.client();
    let script = "return redis.call('INCR', KEYS[1])";
    let sha: String = query!(&mut con, "SCRIPT", "LOAD", script);
    let keys = support::keys_on_every_master(&cluster, "ns", 1);
    // One master forgets every script (as a node added or restarted would).
    let forgetful = cluster.node_for_key(&keys[0]);
    assert_eq!(cluster.cli(forgetful, &["SCRIPT", "FLUSH"]), "OK");
    for k in &keys {
        let n: i64 = query!(&mut con, "EVALSHA", &sha, 1, k);
        assert_eq!(n, 1, "{k}");
    }
    assert_eq!(support::info_counter(&proxy, "scripts_healed"), 1);
    // The node has it again: no second healing.
    let n: i64 = query!(&mut con, "EVALSHA", &sha, 1, &keys[0]);
    assert_eq!(n, 2);
    assert_eq!(support::info_counter(&proxy, "scripts_healed"), 1);

    // A replica promoted by a manual failover has no scripts (Redis 7 does not
    // replicate them).
    let old = cluster.node_for_key(&keys[1]);
    let replica = cluster.replica_of(old).expect("a replica");
    assert_eq!(cluster.cli(replica, &["CLUSTER", "FAILOVER"]), "OK");
    wait_until_within(SETTLE, "the replica is promoted", || {
        cluster.cli(replica, &["ROLE"]).starts_with("master")
    });
    cluster.wait_for_ok(Duration::from_secs(30));
    let n: i64 = query!(&mut con, "EVALSHA", &sha, 1, &keys[1]);
    assert_eq!(n, 2, "the promoted replica ran the script it was given");
    assert_eq!(support::info_counter(&proxy, "scripts_healed"), 2);
    // A script slotgate never saw stays NOSCRIPT, as from a server.
    let err = query_err!(
        &mut con,
        "EVALSHA",
        "0123456789012345678901234567890123456789",
        0
    );
    assert_eq!(err.code(), Some("NOSCRIPT"), "{err}");
}

#[test]
fn info_gives_a_servers_sections_with_the_clusters_figures() {
    let (_cluster, proxy) = cluster_and_proxy(3, 0, &[]);
    let mut con = proxy.client();
    for i in 0..500 {
        let _: () = con.set(format!("inf:{i}"), "v").unwrap();
    }
    let _: () = con.set_ex("inf:ttl", "v", 1000).unwrap();
    let field = |text: &str, name: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
            .trim()
            .to_string()
    };
    for protocol in ["resp2", "resp3"] {
        let mut con = proxy.client_in(protocol);
        let all: String = query!(&mut con, "INFO");
        for section in [
            "Server", "Clients", "Memory", "Stats", "CPU", "Cluster", "Keyspace", "Proxy",
        ] {
            assert!(
                all.contains(&format!("# {section}\r\n")),
                "{protocol}: # {section}"
            );
        }
        assert_eq!(field(&all, "cluster_enabled"), "0");
        assert_eq!(field(&all, "arch_bits"), "64");
        assert_eq!(field(&all, "tcp_port"), proxy.port().to_string());
        assert!(
            field(&all, "db0").starts_with("keys=501,expires=1,"),
            "{protocol}: {}",
            field(&all, "db0")
        );
        let used: u64 = field(&all, "used_memory").parse().unwrap();
        assert!(
            used > 3 * 500_000,
            "{protocol}: used_memory summed over 3 masters: {used}"
        );
        let processed: u64 = field(&all, "total_commands_processed").parse().unwrap();
        assert!(processed >= 501, "{protocol}: {processed}");
        assert!(field(&all, "used_cpu_user").contains('.'));
        let server: String = query!(&mut con, "INFO", "server");
        assert!(
            server.starts_with("# Server\r\n") && !server.contains("# Keyspace"),
            "{server}"
        );
        let two: String = query!(&mut con, "INFO", "KEYSPACE", "clients");
        assert!(
            two.starts_with("# Clients") && two.contains("# Keyspace") && !two.contains("# Server"),
            "{two}"
        );
    }
    // redis-cli --stat reads keys, mem, clients, blocked, requests and connections.
    // Unbuffered: `timeout` ends redis-cli, which would lose a buffered stdout.
    let out = std::process::Command::new("timeout")
        .args([
            "3",
            "stdbuf",
            "-o0",
            "redis-cli",
            "-p",
            &proxy.port().to_string(),
            "--stat",
            "-i",
            "0.5",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(!out.contains("-9223372036854775808"), "{out}");
    let row = out.lines().nth(2).unwrap_or_else(|| panic!("{out}"));
    assert!(row.trim_start().starts_with("501 "), "keys column: {out}");
}

#[test]
fn redis_benchmark_default_tests_pass_with_random_keys() {
    let (cluster, proxy) = cluster_and_proxy(3, 0, &[]);
    let port = proxy.port().to_string();
    // Its default set, MSET of 10 random keys (many slots) included.
    let out = std::process::Command::new("timeout")
        .args([
            "240",
            "redis-benchmark",
            "-p",
            &port,
            "-r",
            "100000",
            "-n",
            "2000",
            "-c",
            "10",
        ])
        .arg("-q")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stdout.contains("ERR") && !stderr.contains("ERR"),
        "{stdout}\n{stderr}"
    );
    // Progress lines end in CR; each test's result is a line of its own.
    let results: Vec<&str> = stdout.split(['\r', '\n']).map(str::trim).collect();
    for test in [
        "PING_INLINE",
        "SET",
        "GET",
        "INCR",
        "LPUSH",
        "SPOP",
        "ZPOPMIN",
        "LRANGE_600 (first 600 elements)",
        "MSET (10 keys)",
    ] {
        assert!(
            results
                .iter()
                .any(|l| l.starts_with(&format!("{test}: ")) && l.contains("requests per second")),
            "{test} missing:\n{stdout}\n{stderr}"
        );
    }
    // The MSETs landed: random keys of the form key:NNNNNNNNNNNN on every master.
    for port in cluster.master_ports() {
        let n: usize = query!(&mut cluster.node_client(port), "DBSIZE");
        assert!(n > 0, "master {port} got keys");
    }
}

#[test]
fn a_master_added_to_the_cluster_gets_the_functions() {
    require_redis();
    let mut cluster = Cluster::start(3, 0);
    let proxy = Proxy::start_with_config(&cluster.seeds(), FAST_REFRESH);
    let mut con = proxy.client();
    let lib = "#!lua name=joinlib\nredis.register_function('joinget', function(keys, args) return redis.call('GET', keys[1]) end)";
    let _: String = query!(&mut con, "FUNCTION", "LOAD", lib);
    let key = "join:key";
    let _: () = con.set(key, "here").unwrap();
    let new = cluster.add_master();
    let slot = support::key_slot(key.as_bytes());
    cluster.migrate_slots(slot..=slot, cluster.node_for_key(key), new);
    // Slotgate's next refresh sees the new master and gives it the library.
    wait_until_within(SETTLE, "the new master gets the library", || {
        let libs: Vec<Value> = query!(&mut cluster.node_client(new), "FUNCTION", "LIST");
        !libs.is_empty()
    });
    let v: String = query!(&mut con, "FCALL", "joinget", 1, key);
    assert_eq!(v, "here", "FCALL on the new master");
    assert!(proxy
        .log()
        .contains("gave a new master the cluster's functions"));
}

#[test]
fn config_set_can_be_switched_off() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start_with_config(&cluster.seeds(), "[cluster]\nconfig_commands = false\n");
    let mut con = proxy.client();
    let err = query_err!(&mut con, "CONFIG", "SET", "maxmemory-policy", "allkeys-lru");
    assert!(err.to_string().contains("cluster.config_commands"), "{err}");
    let err = query_err!(&mut con, "CONFIG", "RESETSTAT");
    assert!(
        err.to_string()
            .contains("'CONFIG RESETSTAT' is not supported"),
        "{err}"
    );
    for port in cluster.master_ports() {
        let got: Vec<String> = query!(
            &mut cluster.node_client(port),
            "CONFIG",
            "GET",
            "maxmemory-policy"
        );
        assert_eq!(got[1], "noeviction", "nothing reached {port}");
    }
    let got: Vec<String> = query!(&mut con, "CONFIG", "GET", "maxmemory-policy");
    assert_eq!(got[1], "noeviction", "CONFIG GET still works");
}
