//! Nodes that are down at start-up or die mid-pipeline: the proxy answers every
//! request (with the node's reply or an error) and keeps serving the other slots.

mod support;

use std::time::{Duration, Instant};

use redis::Commands;
use support::{keys_on_every_master, require_redis, Cluster, Proxy, RawClient};

#[test]
fn a_seed_down_at_start_up_does_not_stop_the_proxy() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let dead = support::free_port();
    let seeds = format!("127.0.0.1:{dead},{}", cluster.seeds());
    let proxy = Proxy::start(&seeds, &[]);
    let mut con = proxy.client();
    for key in keys_on_every_master(&cluster, "seed", 1) {
        let _: () = con.set(&key, "ok").unwrap();
        let v: String = con.get(&key).unwrap();
        assert_eq!(v, "ok");
    }
    // INFO lists every master the proxy talks to, up.
    let info: String = redis::cmd("INFO").query(&mut con).unwrap();
    for port in cluster.master_ports() {
        let line = format!("addr=127.0.0.1:{port},dial=127.0.0.1:{port},down=0");
        assert!(info.contains(&line), "{line} missing from INFO:\n{info}");
    }
}

#[test]
fn no_seed_answering_is_a_clear_start_up_error() {
    require_redis();
    let dead = support::free_port();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_slotgate"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--seeds",
            &format!("127.0.0.1:{dead}"),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no cluster node answered"), "{err}");
    assert!(err.contains(&dead.to_string()), "{err}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_slotgate"))
        .args(["--listen", "127.0.0.1:0", "--seeds", "nonsense"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`seeds`"), "{err}");
}

#[test]
fn a_node_killed_mid_pipeline_fails_only_its_requests() {
    require_redis();
    let mut cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(
        &cluster.seeds(),
        &[
            "--config",
            &support::write_config("seeds = []\n[backend]\ntimeout_ms = 2000\n"),
        ],
    );
    let keys = keys_on_every_master(&cluster, "mid", 20);
    let victim = cluster.master_ports()[0];
    let owners = cluster.owners_by_slot();
    let on_victim =
        |k: &String| owners[slotgate::slot::Slot::of_key(k.as_bytes()).index()] == victim;
    let mut con = proxy.client();
    for key in &keys {
        let _: () = con.set(key, "before").unwrap();
    }
    // Without full coverage the live masters keep serving when one dies for good.
    for port in cluster.master_ports() {
        cluster.cli(
            port,
            &["CONFIG", "SET", "cluster-require-full-coverage", "no"],
        );
    }

    // Hold the victim's clients so the pipeline's requests to it are in flight, then kill it.
    cluster.cli(victim, &["CLIENT", "PAUSE", "10000", "ALL"]);
    let mut raw = RawClient::connect(proxy.port());
    let mut pipeline = Vec::new();
    for key in &keys {
        pipeline.extend_from_slice(format!("GET {key}\r\n").as_bytes());
    }
    raw.write(&pipeline);
    std::thread::sleep(Duration::from_millis(500));
    cluster.kill(victim);

    let started = Instant::now();
    let replies = raw.read_replies(keys.len(), Duration::from_secs(20));
    assert_eq!(replies.len(), keys.len(), "every request was answered");
    assert!(started.elapsed() < Duration::from_secs(20));
    for (key, reply) in keys.iter().zip(&replies) {
        if on_victim(key) {
            assert!(
                reply.starts_with("-ERR"),
                "{key} on the dead node: {reply:?}"
            );
        } else {
            assert_eq!(reply, "$6\r\nbefore\r\n", "{key}");
        }
    }

    // The proxy keeps serving the live nodes' slots on a fresh connection.
    let mut con = proxy.client();
    for key in keys.iter().filter(|k| !on_victim(k)) {
        let v: String = con.get(key).unwrap();
        assert_eq!(v, "before");
    }
    // And the dead node's slots get an error, not a hang.
    let key = keys.iter().find(|k| on_victim(k)).unwrap();
    let err = con.get::<_, String>(key).unwrap_err();
    assert!(err.to_string().contains("slotgate"), "{err}");
}

#[test]
fn sigterm_drains_replies_then_exits() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let mut proxy = Proxy::start(&cluster.seeds(), &[]);
    let keys = keys_on_every_master(&cluster, "drain", 5);
    // Replies from every node are held back for a moment, so they are in flight when
    // the signal arrives.
    for port in cluster.master_ports() {
        cluster.cli(port, &["CLIENT", "PAUSE", "1000", "WRITE"]);
    }
    let mut raw = RawClient::connect(proxy.port());
    let pipeline: String = keys
        .iter()
        .map(|k| format!("SET {k} drained\r\n"))
        .collect();
    raw.write(pipeline.as_bytes());
    std::thread::sleep(Duration::from_millis(200));
    let status = proxy
        .terminate(Duration::from_secs(10))
        .expect("slotgate exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    let replies = raw.read_replies(keys.len(), Duration::from_secs(5));
    assert_eq!(replies, vec!["+OK\r\n".to_string(); keys.len()]);
    assert!(raw.is_closed());
    for key in &keys {
        let owner = cluster.node_for_key(key);
        assert_eq!(cluster.cli(owner, &["GET", key]), "drained");
    }
}

#[test]
fn a_node_that_stops_answering_times_out_its_requests() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let config = support::write_config("seeds = []\n[backend]\ntimeout_ms = 1000\n");
    let proxy = Proxy::start(&cluster.seeds(), &["--config", &config]);
    let keys = keys_on_every_master(&cluster, "slow", 1);
    let mut con = proxy.client();
    for key in &keys {
        let _: () = con.set(key, "v").unwrap();
    }
    let stuck = cluster.node_for_key(&keys[0]);
    cluster.cli(stuck, &["CLIENT", "PAUSE", "4000", "ALL"]);
    let started = Instant::now();
    let err = con.get::<_, String>(&keys[0]).unwrap_err();
    let waited = started.elapsed();
    assert!(err.to_string().contains("no reply within"), "{err}");
    assert!(
        waited < Duration::from_secs(4),
        "the timeout did not fire: waited {waited:?}"
    );
    // Keys on the other masters are served meanwhile.
    for key in keys.iter().filter(|k| cluster.node_for_key(k) != stuck) {
        let v: String = con.get(key).unwrap();
        assert_eq!(v, "v");
    }
}
