//! Cluster-aware clients pointed at slotgate: it answers `CLUSTER SLOTS`, `SHARDS`,
//! `NODES`, `INFO`, `MYID`, `MYSHARDID` and `KEYSLOT` as a one-node cluster owning every
//! slot at the address the client connected to, routes `COUNTKEYSINSLOT` and
//! `GETKEYSINSLOT` to the slot's master, and `redis-cli -c` and redis-py's
//! `RedisCluster` keep talking to slotgate alone.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use redis::{Value, VerbatimFormat};
use support::{
    key_slot, keys_in_slot, python_or_skip, require_redis, run_py_check, Cluster, Proxy, RawClient,
};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis` connection to slotgate, RESP3 (`HELLO 3`) when `resp3`.
fn connect(port: u16, resp3: bool) -> redis::Connection {
    let query = if resp3 { "?protocol=resp3" } else { "" };
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/{query}")).unwrap();
    let con = client.get_connection_with_timeout(TIMEOUT).unwrap();
    con.set_read_timeout(Some(TIMEOUT)).unwrap();
    con.set_write_timeout(Some(TIMEOUT)).unwrap();
    con
}

/// `CLUSTER args...`.
fn ask(con: &mut redis::Connection, args: &[&str]) -> redis::RedisResult<Value> {
    redis::cmd("CLUSTER").arg(args).query(con)
}

fn bulk(text: &str) -> Value {
    Value::BulkString(text.as_bytes().to_vec())
}

/// The text of a bulk string (RESP2) or a verbatim `txt` string (RESP3).
fn text_of(v: Value, resp3: bool) -> String {
    match (v, resp3) {
        (Value::BulkString(b), false) => String::from_utf8(b).unwrap(),
        (
            Value::VerbatimString {
                format: VerbatimFormat::Text,
                text,
            },
            true,
        ) => text,
        (other, _) => panic!("expected a text reply (resp3: {resp3}), got {other:?}"),
    }
}

/// A RESP3 map, or RESP2's flat array of keys and values.
fn map(pairs: Vec<(&str, Value)>, resp3: bool) -> Value {
    if resp3 {
        Value::Map(pairs.into_iter().map(|(k, v)| (bulk(k), v)).collect())
    } else {
        Value::Array(pairs.into_iter().flat_map(|(k, v)| [bulk(k), v]).collect())
    }
}

fn is_node_id(id: &str) -> bool {
    id.len() == 40
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The cluster bus port slotgate shows: the client port + 10000, or 0 past 65535.
fn bus_port(port: u16) -> u32 {
    let bus = u32::from(port) + 10_000;
    if bus <= 65_535 {
        bus
    } else {
        0
    }
}

/// `CLUSTER INFO`'s fields.
fn info_fields(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn cluster_queries_describe_one_node_at_the_connected_address() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let port = proxy.port();
    let mut ids = BTreeSet::new();
    for resp3 in [false, true] {
        let mut con = connect(port, resp3);
        let what = if resp3 { "RESP3" } else { "RESP2" };

        let Value::BulkString(id) = ask(&mut con, &["MYID"]).unwrap() else {
            panic!("{what}: MYID is not a bulk string");
        };
        let id = String::from_utf8(id).unwrap();
        assert!(is_node_id(&id), "{what}: {id}");
        ids.insert(id.clone());

        // [[0, 16383, [ip, port, id, {}]]]: networking metadata is a map in RESP3.
        let metadata = if resp3 {
            Value::Map(vec![])
        } else {
            Value::Array(vec![])
        };
        assert_eq!(
            ask(&mut con, &["SLOTS"]).unwrap(),
            Value::Array(vec![Value::Array(vec![
                Value::Int(0),
                Value::Int(16383),
                Value::Array(vec![
                    bulk("127.0.0.1"),
                    Value::Int(i64::from(port)),
                    bulk(&id),
                    metadata
                ]),
            ])]),
            "{what}: CLUSTER SLOTS"
        );

        let node = map(
            vec![
                ("id", bulk(&id)),
                ("port", Value::Int(i64::from(port))),
                ("ip", bulk("127.0.0.1")),
                ("endpoint", bulk("127.0.0.1")),
                ("role", bulk("master")),
                ("replication-offset", Value::Int(0)),
                ("health", bulk("online")),
            ],
            resp3,
        );
        assert_eq!(
            ask(&mut con, &["SHARDS"]).unwrap(),
            Value::Array(vec![map(
                vec![
                    (
                        "slots",
                        Value::Array(vec![Value::Int(0), Value::Int(16383)])
                    ),
                    ("nodes", Value::Array(vec![node])),
                ],
                resp3
            )]),
            "{what}: CLUSTER SHARDS"
        );

        assert_eq!(
            text_of(ask(&mut con, &["NODES"]).unwrap(), resp3),
            format!(
                "{id} 127.0.0.1:{port}@{} myself,master - 0 0 1 connected 0-16383\n",
                bus_port(port)
            ),
            "{what}: CLUSTER NODES"
        );

        let info = text_of(ask(&mut con, &["INFO"]).unwrap(), resp3);
        let fields = info_fields(&info);
        let field = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("{what}: no {name} in CLUSTER INFO:\n{info}"))
        };
        assert_eq!(field("cluster_state"), "ok");
        assert_eq!(field("cluster_slots_assigned"), "16384");
        assert_eq!(field("cluster_slots_ok"), "16384");
        assert_eq!(field("cluster_slots_fail"), "0");
        assert_eq!(field("cluster_known_nodes"), "1");
        assert_eq!(field("cluster_size"), "1");
        assert!(info.ends_with("\r\n"), "{info:?}");

        let Value::BulkString(shard_id) = ask(&mut con, &["MYSHARDID"]).unwrap() else {
            panic!("{what}: MYSHARDID is not a bulk string");
        };
        let shard_id = String::from_utf8(shard_id).unwrap();
        assert!(
            is_node_id(&shard_id) && shard_id != id,
            "{what}: {shard_id}"
        );

        assert_eq!(
            ask(&mut con, &["KEYSLOT", "foo"]).unwrap(),
            Value::Int(12182)
        );
        assert_eq!(
            ask(&mut con, &["keyslot", "{user1000}.following"]).unwrap(),
            Value::Int(i64::from(key_slot(b"user1000")))
        );
        let e = ask(&mut con, &["KEYSLOT"]).unwrap_err();
        assert_eq!(
            e.detail(),
            Some("wrong number of arguments for 'cluster|keyslot' command"),
            "{what}"
        );

        // The rest of CLUSTER stays refused, with the reason.
        let e = ask(&mut con, &["LINKS"]).unwrap_err();
        assert_eq!(
            e.detail(),
            Some("'CLUSTER LINKS' is not supported: the proxy hides the cluster topology"),
            "{what}"
        );

        // Plain clients still see a standalone server.
        let info: String = redis::cmd("INFO").query(&mut con).unwrap();
        assert!(info.contains("cluster_enabled:0\r\n"), "{what}: {info}");
    }
    assert_eq!(ids.len(), 1, "one id in both protocols: {ids:?}");
    // The same id on every connection (several workers serve them).
    let id = ids.into_iter().next().unwrap();
    for _ in 0..8 {
        let mut con = connect(port, false);
        assert_eq!(
            ask(&mut con, &["MYID"]).unwrap(),
            bulk(&id),
            "another connection"
        );
    }
}

/// The exact bytes, in both protocols, as a Redis 7 node writes them.
#[test]
fn replies_are_byte_for_byte_those_of_a_node() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let port = proxy.port();
    let mut raw = RawClient::connect(port);
    raw.write(b"*2\r\n$7\r\nCLUSTER\r\n$4\r\nMYID\r\n");
    let reply = raw.read_replies(1, TIMEOUT).concat();
    let id = reply.trim_start_matches("$40\r\n").trim_end().to_string();
    assert!(is_node_id(&id), "{reply:?}");

    let slots = |map0: &str| {
        format!("*1\r\n*3\r\n:0\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:{port}\r\n$40\r\n{id}\r\n{map0}\r\n")
    };
    let node = format!(
        "$2\r\nid\r\n$40\r\n{id}\r\n$4\r\nport\r\n:{port}\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n\
         $8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\nmaster\r\n\
         $18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n"
    );
    let shards = |shard: &str, node_map: &str| {
        format!("*1\r\n{shard}\r\n$5\r\nslots\r\n*2\r\n:0\r\n:16383\r\n$5\r\nnodes\r\n*1\r\n{node_map}\r\n{node}")
    };
    let line = format!(
        "{id} 127.0.0.1:{port}@{} myself,master - 0 0 1 connected 0-16383\n",
        bus_port(port)
    );
    let request = b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n\
                    *2\r\n$7\r\nCLUSTER\r\n$6\r\nSHARDS\r\n\
                    *2\r\n$7\r\nCLUSTER\r\n$5\r\nNODES\r\n\
                    *3\r\n$7\r\nCLUSTER\r\n$7\r\nKEYSLOT\r\n$3\r\nfoo\r\n";

    raw.write(request);
    let resp2 = raw.read_replies(4, TIMEOUT);
    assert_eq!(
        resp2,
        vec![
            slots("*0"),
            shards("*4", "*14"),
            format!("${}\r\n{line}\r\n", line.len()),
            ":12182\r\n".to_string(),
        ]
    );

    raw.write(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n");
    assert_eq!(raw.read_replies(1, TIMEOUT).len(), 1);
    raw.write(request);
    let resp3 = raw.read_replies(4, TIMEOUT);
    assert_eq!(
        resp3,
        vec![
            slots("%0"),
            shards("%2", "%7"),
            format!("={}\r\ntxt:{line}\r\n", line.len() + 4),
            ":12182\r\n".to_string(),
        ]
    );
}

#[test]
fn keys_in_a_slot_are_counted_and_listed_by_its_master() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let port = proxy.port();
    // Three slots, each on another master.
    let slots = [0u16, 8000, 16000];
    let owners: BTreeSet<u16> = slots.iter().map(|&s| cluster.node_for_slot(s)).collect();
    assert_eq!(owners.len(), 3, "the slots live on three masters");
    let mut written = Vec::new();
    let mut con = connect(port, false);
    for (i, &slot) in slots.iter().enumerate() {
        let keys = keys_in_slot(slot, &format!("kis{i}"), 3 + 2 * i);
        for key in &keys {
            let _: () = redis::cmd("SET").arg(key).arg("v").query(&mut con).unwrap();
        }
        written.push((slot, keys));
    }
    let empty = (1u16..)
        .find(|s| !slots.contains(s))
        .expect("a slot with no key");

    for resp3 in [false, true] {
        let mut con = connect(port, resp3);
        let what = if resp3 { "RESP3" } else { "RESP2" };
        for (slot, keys) in &written {
            let slot = slot.to_string();
            assert_eq!(
                ask(&mut con, &["COUNTKEYSINSLOT", &slot]).unwrap(),
                Value::Int(keys.len() as i64),
                "{what}: slot {slot}"
            );
            let Value::Array(listed) = ask(&mut con, &["GETKEYSINSLOT", &slot, "100"]).unwrap()
            else {
                panic!("{what}: GETKEYSINSLOT is not an array");
            };
            let listed: BTreeSet<Vec<u8>> = listed
                .into_iter()
                .map(|v| match v {
                    Value::BulkString(b) => b,
                    other => panic!("{what}: {other:?}"),
                })
                .collect();
            let want: BTreeSet<Vec<u8>> = keys.iter().map(|k| k.as_bytes().to_vec()).collect();
            assert_eq!(listed, want, "{what}: slot {slot}");
            let Value::Array(two) = ask(&mut con, &["getkeysinslot", &slot, "2"]).unwrap() else {
                panic!("{what}: GETKEYSINSLOT is not an array");
            };
            assert_eq!(two.len(), 2, "{what}: count is a limit");
        }
        let empty = empty.to_string();
        assert_eq!(
            ask(&mut con, &["COUNTKEYSINSLOT", &empty]).unwrap(),
            Value::Int(0)
        );
        assert_eq!(
            ask(&mut con, &["GETKEYSINSLOT", &empty, "10"]).unwrap(),
            Value::Array(vec![])
        );
    }

    // Bad arguments get the error a node gives, word for word.
    let mut node = cluster.node_client(cluster.master_ports()[0]);
    let mut con = connect(port, false);
    for args in [
        &["COUNTKEYSINSLOT", "16384"][..],
        &["COUNTKEYSINSLOT", "-1"],
        &["COUNTKEYSINSLOT", "x"],
        &["COUNTKEYSINSLOT", "05"],
        &["COUNTKEYSINSLOT", "+5"],
        &["GETKEYSINSLOT", "16384", "1"],
        &["GETKEYSINSLOT", "1", "-1"],
        &["GETKEYSINSLOT", "x", "1"],
        &["GETKEYSINSLOT", "1", "x"],
        &["COUNTKEYSINSLOT"],
        &["GETKEYSINSLOT", "1"],
    ] {
        let ours = ask(&mut con, args).unwrap_err();
        let theirs = ask(&mut node, args).unwrap_err();
        assert_eq!(
            (ours.code(), ours.detail()),
            (theirs.code(), theirs.detail()),
            "CLUSTER {args:?}"
        );
    }
    let e = ask(&mut con, &["COUNTKEYSINSLOT", "16384"]).unwrap_err();
    assert_eq!((e.code(), e.detail()), (Some("ERR"), Some("Invalid slot")));
    let e = ask(&mut con, &["GETKEYSINSLOT", "0", "-1"]).unwrap_err();
    assert_eq!(e.detail(), Some("Invalid slot or number of keys"));
}

/// `redis-cli -c -p PORT` with `commands` on its standard input; its output lines.
fn redis_cli_c(port: u16, commands: &str) -> Vec<String> {
    let mut child = Command::new("redis-cli")
        .args(["-c", "-p", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn redis-cli");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(commands.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("redis-cli output");
    assert!(out.status.success(), "redis-cli -c: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn redis_cli_in_cluster_mode_sets_and_gets_keys_in_many_slots() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let port = proxy.port();
    let keys: Vec<String> = (0..200).map(|i| format!("cli:c:{i}")).collect();
    let slots: BTreeSet<u16> = keys.iter().map(|k| key_slot(k.as_bytes())).collect();
    assert!(slots.len() > 150, "many slots: {}", slots.len());
    let owners: BTreeSet<u16> = keys.iter().map(|k| cluster.node_for_key(k)).collect();
    assert_eq!(owners.len(), 3, "keys on every master");

    let sets: String = keys
        .iter()
        .map(|k| format!("SET {k} value-of-{k}\n"))
        .collect();
    assert_eq!(redis_cli_c(port, &sets), vec!["OK".to_string(); keys.len()]);
    let gets: String = keys.iter().map(|k| format!("GET {k}\n")).collect();
    let want: Vec<String> = keys.iter().map(|k| format!("value-of-{k}")).collect();
    assert_eq!(redis_cli_c(port, &gets), want);

    // One command at a time, as a person types them.
    for key in keys.iter().step_by(40) {
        assert_eq!(
            proxy.cli(&["-c", "GET", key]),
            format!("value-of-{key}"),
            "{key}"
        );
    }
    let nodes = proxy.cli(&["-c", "CLUSTER", "NODES"]);
    assert!(
        nodes.contains(&format!("127.0.0.1:{port}@"))
            && nodes.contains("myself,master")
            && nodes.ends_with("connected 0-16383"),
        "{nodes}"
    );
    // Each value is on the master of its slot, not anywhere else.
    let key = &keys[7];
    let mut owner = cluster.node_client(cluster.node_for_key(key));
    let value: String = redis::cmd("GET").arg(key).query(&mut owner).unwrap();
    assert_eq!(value, format!("value-of-{key}"));
}

#[test]
fn redis_py_cluster_client_talks_to_slotgate_alone() {
    require_redis();
    let Some(python) = python_or_skip("redis_py_cluster_client_talks_to_slotgate_alone") else {
        return;
    };
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let stdout = run_py_check(&python, "redis_py_cluster_check.py", proxy.port(), || {
        proxy.log()
    });
    println!("{}", stdout.lines().next().unwrap_or_default());
    // What it wrote is in the cluster, on the master of each key's slot.
    let key = "pyc:resp2:42";
    let mut owner = cluster.node_client(cluster.node_for_key(key));
    let value: String = redis::cmd("GET").arg(key).query(&mut owner).unwrap();
    assert_eq!(value, "v42");
}
