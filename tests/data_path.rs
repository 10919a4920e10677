//! The core data path through slotgate against a real 3-master cluster: plain clients
//! (the `redis` crate, `redis-cli`) see one server.

mod support;

use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use redis::Commands;
use support::{keys_on_every_master, require_redis, Cluster, Proxy, RawClient};

#[test]
fn redis_crate_commands_on_every_master() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let mut con = proxy.client();
    let keys = keys_on_every_master(&cluster, "user", 2);
    assert!(keys.len() >= 6);

    for key in &keys {
        let _: () = con.set(format!("{key}:s"), "v1").unwrap();
        let got: String = con.get(format!("{key}:s")).unwrap();
        assert_eq!(got, "v1");
        let n: i64 = con.incr(format!("{key}:n"), 5).unwrap();
        assert_eq!(n, 5);
        let _: () = con.hset(format!("{key}:h"), "field", "value").unwrap();
        let h: std::collections::HashMap<String, String> = con.hgetall(format!("{key}:h")).unwrap();
        assert_eq!(h.get("field").map(String::as_str), Some("value"));
        let len: i64 = con.lpush(format!("{key}:l"), &["a", "b", "c"]).unwrap();
        assert_eq!(len, 3);
        let range: Vec<String> = con.lrange(format!("{key}:l"), 0, -1).unwrap();
        assert_eq!(range, vec!["c", "b", "a"]);
        let added: i64 = con.zadd(format!("{key}:z"), "m", 1.5).unwrap();
        assert_eq!(added, 1);
        let score: f64 = con.zscore(format!("{key}:z"), "m").unwrap();
        assert_eq!(score, 1.5);
        let id: String = redis::cmd("XADD")
            .arg(format!("{key}:x"))
            .arg("*")
            .arg("f")
            .arg("v")
            .query(&mut con)
            .unwrap();
        assert!(id.contains('-'), "stream id {id}");
        let xlen: i64 = redis::cmd("XLEN")
            .arg(format!("{key}:x"))
            .query(&mut con)
            .unwrap();
        assert_eq!(xlen, 1);
        let set: bool = con.expire(format!("{key}:s"), 100).unwrap();
        assert!(set);
        let ttl: i64 = con.ttl(format!("{key}:s")).unwrap();
        assert!((1..=100).contains(&ttl), "ttl {ttl}");
    }

    // Binary values: every byte value, CR/LF inside, and 1 MiB.
    let all_bytes: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    for key in &keys {
        let _: () = con.set(format!("{key}:bin"), &all_bytes).unwrap();
        let got: Vec<u8> = con.get(format!("{key}:bin")).unwrap();
        assert_eq!(got, all_bytes);
        let _: () = con.set(format!("{key}:big"), &big).unwrap();
        let got: Vec<u8> = con.get(format!("{key}:big")).unwrap();
        assert_eq!(got, big);
    }

    // The values really live in the cluster: read one back from its owner directly.
    let key = format!("{}:n", keys[0]);
    let owner = cluster.node_for_slot(slotgate::slot::Slot::of_key(key.as_bytes()).get());
    assert_eq!(cluster.cli(owner, &["GET", &key]), "5");
}

#[test]
fn redis_cli_interactive_and_pipe() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let keys = keys_on_every_master(&cluster, "cli", 1);
    for key in &keys {
        assert_eq!(proxy.cli(&["SET", key, "hello world"]), "OK");
        assert_eq!(proxy.cli(&["GET", key]), "hello world");
    }
    assert_eq!(proxy.cli(&["PING"]), "PONG");

    // Interactive style: commands on stdin, one per line.
    let out = run_stdin(
        &["redis-cli", "-p", &proxy.port().to_string()],
        format!("SET {} a\nGET {}\nINCR counter:x\nPING\n", keys[0], keys[0]).as_bytes(),
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec!["OK", "a", "1", "PONG"],
        "{out}"
    );

    // --pipe: the mass-insert protocol, 5,000 SETs over all masters.
    let mut input = Vec::new();
    for i in 0..5000 {
        let key = format!("pipe:{i}");
        let val = format!("v{i}");
        input.extend_from_slice(
            format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{val}\r\n",
                key.len(),
                val.len()
            )
            .as_bytes(),
        );
    }
    let out = run_stdin(
        &["redis-cli", "-p", &proxy.port().to_string(), "--pipe"],
        &input,
    );
    assert!(out.contains("errors: 0, replies: 5000"), "{out}");
    assert_eq!(proxy.cli(&["GET", "pipe:4321"]), "v4321");
}

fn run_stdin(cmd: &[&str], input: &[u8]) -> String {
    let mut child = std::process::Command::new(cmd[0])
        .args(&cmd[1..])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    text
}

#[test]
fn pipeline_of_10000_comes_back_complete_and_in_order() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let mut con = proxy.client();
    let mut pipe = redis::pipe();
    for i in 0..5000 {
        pipe.set(format!("p:{i}"), i).ignore();
    }
    let _: () = pipe.query(&mut con).unwrap();
    let mut pipe = redis::pipe();
    for i in 0..10_000 {
        pipe.get(format!("p:{}", i % 5000));
    }
    let values: Vec<i64> = pipe.query(&mut con).unwrap();
    assert_eq!(values.len(), 10_000);
    for (i, v) in values.iter().enumerate() {
        assert_eq!(*v, (i % 5000) as i64, "reply {i} out of order");
    }
    let slots: HashSet<u16> = (0..5000)
        .map(|i| slotgate::slot::Slot::of_key(format!("p:{i}").as_bytes()).get())
        .collect();
    let owners: HashSet<u16> = slots.iter().map(|&s| cluster.node_for_slot(s)).collect();
    assert_eq!(owners.len(), 3, "the pipeline spans every master");

    // INFO shows the batching: 15,000 requests went out in far fewer writes to the
    // nodes, and came back in far fewer writes to the client.
    let requests = support::info_counter(&proxy, "requests");
    let backend_writes = support::info_counter(&proxy, "backend_writes");
    let client_writes = support::info_counter(&proxy, "client_writes");
    assert!(requests >= 15_000, "requests:{requests}");
    assert!(
        backend_writes > 0 && backend_writes * 10 < requests,
        "backend_writes:{backend_writes} for requests:{requests}"
    );
    assert!(
        client_writes > 0 && client_writes * 10 < requests,
        "client_writes:{client_writes} for requests:{requests}"
    );
}

#[test]
fn crossslot_unknown_and_refused_commands() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let mut con = proxy.client();

    // Same hash tag: one slot, served.
    let _: () = con.set("{user1}.a", "1").unwrap();
    let _: () = con.set("{user1}.b", "2").unwrap();
    let v: Vec<String> = con.mget(&["{user1}.a", "{user1}.b"]).unwrap();
    assert_eq!(v, vec!["1", "2"]);

    // Different slots: Redis's own CROSSSLOT error.
    let err = redis::cmd("MSETNX")
        .arg("a")
        .arg("1")
        .arg("b")
        .arg("2")
        .query::<()>(&mut con)
        .unwrap_err();
    assert_eq!(err.code(), Some("CROSSSLOT"), "{err}");
    assert!(
        err.to_string()
            .contains("Keys in request don't hash to the same slot"),
        "{err}"
    );

    let err = redis::cmd("FOOBAR")
        .arg("x")
        .query::<()>(&mut con)
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown command 'FOOBAR'"),
        "{err}"
    );

    let err = redis::cmd("GET").query::<()>(&mut con).unwrap_err();
    assert!(
        err.to_string()
            .contains("wrong number of arguments for 'get' command"),
        "{err}"
    );

    // A command the proxy cannot serve says so instead of hanging.
    let err = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(10)
        .query::<()>(&mut con)
        .unwrap_err();
    assert!(err.to_string().contains("CLIENT PAUSE"), "{err}");

    // The connection is still usable after all those errors.
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
}

/// `INFO`'s `workers` line.
fn workers_of(proxy: &Proxy) -> usize {
    let info: String = redis::cmd("INFO").query(&mut proxy.client()).unwrap();
    let line = info.lines().find(|l| l.starts_with("workers:"));
    let line = line.unwrap_or_else(|| panic!("no workers line in INFO:\n{info}"));
    line["workers:".len()..].trim().parse().unwrap()
}

#[test]
fn default_workers_leave_the_local_nodes_a_core_each() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The three nodes run on this host's loopback: one worker per core they leave.
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    assert_eq!(workers_of(&proxy), cores.saturating_sub(3).max(1));
    // Chosen on the command line, the count is taken as given, and clients on every
    // worker are served.
    let proxy = Proxy::start(&cluster.seeds(), &["--workers", "3"]);
    assert_eq!(workers_of(&proxy), 3);
    let mut clients: Vec<_> = (0..12).map(|_| proxy.client()).collect();
    for (i, con) in clients.iter_mut().enumerate() {
        let _: () = con.set(format!("w{i}"), i).unwrap();
    }
    for (i, con) in clients.iter_mut().enumerate() {
        let got: usize = con.get(format!("w{}", 11 - i)).unwrap();
        assert_eq!(got, 11 - i);
    }
}

#[test]
fn local_handshake_commands() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let mut con = proxy.client();
    let echo: String = redis::cmd("ECHO").arg("hi").query(&mut con).unwrap();
    assert_eq!(echo, "hi");
    let _: () = redis::cmd("SELECT").arg(0).query(&mut con).unwrap();
    let err = redis::cmd("SELECT")
        .arg(1)
        .query::<()>(&mut con)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("SELECT is not allowed in cluster mode"),
        "{err}"
    );
    let _: () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("app1")
        .query(&mut con)
        .unwrap();
    let name: String = redis::cmd("CLIENT").arg("GETNAME").query(&mut con).unwrap();
    assert_eq!(name, "app1");
    let id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut con).unwrap();
    assert!(id > 0);
    let info: String = redis::cmd("INFO").query(&mut con).unwrap();
    assert!(info.contains("cluster_enabled:0"), "{info}");
    assert!(info.contains("redis_version:7."), "{info}");

    // HELLO 3 over a raw socket: the reply is a RESP3 map saying standalone.
    let mut raw = RawClient::connect(proxy.port());
    let reply = raw.roundtrip(b"HELLO 3\r\n");
    assert!(reply.starts_with("%7\r\n"), "{reply}");
    assert!(reply.contains("standalone"), "{reply}");
    // After HELLO 3 a node's RESP3 reply passes through byte-for-byte.
    raw.roundtrip(b"HSET h3 f v\r\n");
    let via_proxy = raw.roundtrip(b"HGETALL h3\r\n");
    assert_eq!(via_proxy, "%1\r\n$1\r\nf\r\n$1\r\nv\r\n");
    assert_eq!(raw.roundtrip(b"GET nosuchkey\r\n"), "_\r\n");
    assert_eq!(raw.roundtrip(b"ZADD z3 1.5 m\r\n"), ":1\r\n");
    assert_eq!(raw.roundtrip(b"ZSCORE z3 m\r\n"), ",1.5\r\n");
}

#[test]
fn malformed_input_closes_only_that_client() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let mut good = proxy.client();
    let _: () = good.set("survivor", "yes").unwrap();

    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "bad type byte",
            b"*1\r\n+foo\r\n".to_vec(),
            "-ERR Protocol error: expected '$', got '+'",
        ),
        (
            "bad multibulk length",
            b"*abc\r\n".to_vec(),
            "-ERR Protocol error: invalid multibulk length",
        ),
        (
            "bad bulk length",
            b"*1\r\n$x\r\n".to_vec(),
            "-ERR Protocol error: invalid bulk length",
        ),
        (
            "bulk over the limit",
            b"*2\r\n$3\r\nSET\r\n$99999999999\r\n".to_vec(),
            "-ERR Protocol error: invalid bulk length",
        ),
        (
            "100,000 nested arrays",
            b"*1\r\n".repeat(100_000),
            "-ERR Protocol error: expected '$', got '*'",
        ),
    ];
    for (name, input, expected) in cases {
        let mut raw = RawClient::connect(proxy.port());
        let reply = raw.roundtrip(&input);
        assert!(reply.starts_with(expected), "{name}: got {reply:?}");
        assert!(raw.is_closed(), "{name}: the connection should be closed");
    }

    // A request split over many tiny reads still works.
    let mut raw = RawClient::connect(proxy.port());
    for b in b"*3\r\n$3\r\nSET\r\n$5\r\ntiny1\r\n$5\r\nhello\r\n".iter() {
        raw.write(&[*b]);
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(raw.read_quiet(), "+OK\r\n");
    assert_eq!(raw.roundtrip(b"GET tiny1\r\n"), "$5\r\nhello\r\n");

    // Everyone else is unaffected.
    let v: String = good.get("survivor").unwrap();
    assert_eq!(v, "yes");
}

#[test]
fn fifty_megabyte_value() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let mut con = proxy.client();
    let value: Vec<u8> = (0..50 * 1024 * 1024).map(|i| (i % 253) as u8).collect();
    let _: () = con.set("huge", &value).unwrap();
    let got: Vec<u8> = con.get("huge").unwrap();
    assert_eq!(got.len(), value.len());
    assert!(got == value, "50 MB value differs after the round trip");
    let len: i64 = con.strlen("huge").unwrap();
    assert_eq!(len, value.len() as i64);
}
