//! `[address_map]`: nodes announce addresses the proxy must not dial as they are
//! (Docker, Kubernetes, NAT). slotgate dials the mapped address instead — an IP, or a
//! host name, looked up by the refresher (after each refresh) so that workers do not
//! block on the resolver.
//!
//! End to end, on two clusters that announce what this host cannot reach: host names
//! that do not resolve (`cluster-announce-hostname`, preferred as the endpoint, as
//! containers announce their names), and `127.0.0.2:<port>` addresses that only the
//! nodes reach (as a container's address). With the map, seeded by announced address,
//! every kind of command, a live reshard and a failover work; without it, the error
//! names the announced address that could not be reached.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::Commands;
use support::{
    free_port, info_counter, key_slot, keys_on_every_master, require_redis, Cluster, ClusterConfig,
    Network, Proxy,
};

/// A proxy whose `[address_map]` sends each master's announced `127.0.0.1:port` to
/// `dial(port)`.
fn mapped_proxy(cluster: &Cluster, dial: impl Fn(u16) -> String) -> Proxy {
    let mut text = String::from("[address_map]\n");
    for port in cluster.master_ports() {
        text.push_str(&format!("\"127.0.0.1:{port}\" = \"{}\"\n", dial(port)));
    }
    Proxy::start_with_config(&cluster.seeds(), &text)
}

/// Every key on every master is served through the proxy.
fn serves_every_master(cluster: &Cluster, proxy: &Proxy, prefix: &str) {
    let mut con = proxy.client();
    for key in keys_on_every_master(cluster, prefix, 2) {
        let _: () = con.set(&key, format!("{key}!")).unwrap();
        let v: String = con.get(&key).unwrap();
        assert_eq!(v, format!("{key}!"));
    }
}

#[test]
fn requests_go_to_the_mapped_address_not_the_announced_one() {
    require_redis();
    // The nodes also listen on 127.0.0.2 (loopback), which they never announce.
    let cluster = Cluster::start_with(
        3,
        0,
        ClusterConfig {
            extra_config: vec!["bind 127.0.0.1 127.0.0.2".into()],
            ..ClusterConfig::default()
        },
    );
    let proxy = mapped_proxy(&cluster, |port| format!("127.0.0.2:{port}"));
    serves_every_master(&cluster, &proxy, "mapped");

    // Each node sees the proxy's data connection arrive on the mapped address.
    for port in cluster.master_ports() {
        let clients = cluster.cli(port, &["CLIENT", "LIST"]);
        assert!(
            clients.contains(&format!("laddr=127.0.0.2:{port}")),
            "no connection to 127.0.0.2:{port} on the node:\n{clients}"
        );
    }
    let info = proxy.cli(&["INFO"]);
    for port in cluster.master_ports() {
        let line = format!("addr=127.0.0.1:{port},dial=127.0.0.2:{port},down=0");
        assert!(info.contains(&line), "{line} missing from INFO:\n{info}");
    }
}

#[test]
fn a_mapped_host_name_is_resolved() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = mapped_proxy(&cluster, |port| format!("localhost:{port}"));
    serves_every_master(&cluster, &proxy, "named");
    let info = proxy.cli(&["INFO"]);
    for port in cluster.master_ports() {
        let line = format!("dial=localhost:{port},down=0");
        assert!(info.contains(&line), "{line} missing from INFO:\n{info}");
    }
    // The name was looked up by the refresher, off the workers' event loops.
    let log = proxy.log();
    for port in cluster.master_ports() {
        let line = format!("dial=localhost:{port} addr=127.0.0.1:{port} by=refresher");
        assert!(log.contains(&line), "{line} missing from the log:\n{log}");
    }
}

// ---- nodes that announce what slotgate cannot reach ----

/// A cluster whose nodes announce addresses slotgate cannot dial as they are, and what
/// each node announces (by real port).
struct Announcing {
    cluster: Cluster,
    /// Real port → announced `host:port`.
    announced: BTreeMap<u16, String>,
}

impl Announcing {
    /// Nodes announce the host names `redis-node-<index>`, which do not resolve, and
    /// prefer them as their endpoint: `MOVED`, `ASK` and `CLUSTER SHARDS` carry the names,
    /// as in a Docker network with container names.
    fn hostnames(masters: usize, replicas: usize) -> Announcing {
        fn hostname(index: usize, _port: u16) -> Vec<String> {
            vec![
                format!("cluster-announce-hostname redis-node-{index}"),
                "cluster-preferred-endpoint-type hostname".to_string(),
            ]
        }
        let cluster = Cluster::start_with(
            masters,
            replicas,
            ClusterConfig {
                node_config: Some(hostname),
                ..ClusterConfig::default()
            },
        );
        let announced = cluster
            .ports()
            .iter()
            .enumerate()
            .map(|(index, &port)| (port, format!("redis-node-{index}:{port}")))
            .collect();
        Announcing { cluster, announced }
    }

    /// Nodes announce `127.0.0.2:<a port of their own>`, which only the other nodes
    /// reach (see `Network::HiddenAddress`), as a container's address seen from the host.
    fn hidden_addresses(masters: usize, replicas: usize) -> Announcing {
        let cluster = Cluster::start_with(
            masters,
            replicas,
            ClusterConfig {
                network: Network::HiddenAddress,
                ..ClusterConfig::default()
            },
        );
        let announced = cluster
            .ports()
            .iter()
            .map(|&port| (port, cluster.announced(port)))
            .collect();
        Announcing { cluster, announced }
    }

    fn announced(&self, port: u16) -> &str {
        &self.announced[&port]
    }

    /// Every node's announced address, comma-separated: seeds given by announced name.
    fn announced_seeds(&self) -> String {
        self.announced
            .values()
            .cloned()
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `[address_map]` sending each announced address to `127.0.0.1:<real port>`.
    fn address_map(&self) -> String {
        let mut text = String::from("[address_map]\n");
        for (port, announced) in &self.announced {
            text.push_str(&format!("\"{announced}\" = \"127.0.0.1:{port}\"\n"));
        }
        text
    }

    /// A proxy seeded by announced address, with the address map (and `extra` config).
    fn mapped_proxy(&self, extra: &str) -> Proxy {
        let config = format!("{extra}\n{}", self.address_map());
        Proxy::start_with_config(&self.announced_seeds(), &config)
    }

    /// Proves the premise: the node on `port` gives this host nothing at its
    /// announced address (a name that does not resolve, or an address whose gateway
    /// admits only the nodes).
    fn assert_unreachable_as_announced(&self, port: u16) {
        let announced = self.announced(port);
        let Ok(addrs) = announced.to_socket_addrs() else {
            return; // the name does not resolve
        };
        for addr in addrs {
            let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
                continue; // refused
            };
            stream
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let _ = stream.write_all(b"PING\r\n");
            let mut reply = [0u8; 16];
            let n = stream.read(&mut reply).unwrap_or(0);
            assert_eq!(
                n,
                0,
                "{announced} answered this host: {:?}",
                String::from_utf8_lossy(&reply[..n])
            );
        }
    }
}

/// slotgate knows each node by the address the cluster announces (the one `MOVED`
/// carries, one record per node) and dials it at the mapped one.
fn assert_nodes_known_as_announced(announcing: &Announcing, proxy: &Proxy) {
    let info = proxy.cli(&["INFO", "nodes"]);
    let mut seen = 0;
    for line in info.lines().filter(|l| l.starts_with("node")) {
        let addr = line
            .split_once("addr=")
            .and_then(|(_, rest)| rest.split(',').next())
            .unwrap();
        let (port, _) = announcing
            .announced
            .iter()
            .find(|(_, announced)| announced.as_str() == addr)
            .unwrap_or_else(|| panic!("{addr} is not an announced address:\n{info}"));
        let dial = line
            .split_once(",dial=")
            .and_then(|(_, rest)| rest.split(',').next())
            .unwrap();
        assert_eq!(dial, format!("127.0.0.1:{port}"), "{line}");
        seen += 1;
    }
    assert!(seen >= 3, "{info}");
}

/// A key of `prefix` whose slot the master on `port` owns.
fn key_on(cluster: &Cluster, port: u16, prefix: &str) -> String {
    let owners = cluster.owners_by_slot();
    (0..100_000)
        .map(|i| format!("{prefix}:{i}"))
        .find(|k| owners[usize::from(key_slot(k.as_bytes()))] == port)
        .unwrap_or_else(|| panic!("no key of {prefix} on {port}"))
}

/// Every kind of command through the proxy: strings on every master, an `MGET` split
/// over every master, a transaction, a `BLPOP` woken by a push, pub/sub.
fn every_kind_of_command_works(cluster: &Cluster, proxy: &Proxy, prefix: &str) {
    let mut con = proxy.client();
    // GET/SET on every master.
    let keys = keys_on_every_master(cluster, prefix, 2);
    for key in &keys {
        let _: () = con.set(key, format!("{key}!")).unwrap();
        let v: String = con.get(key).unwrap();
        assert_eq!(v, format!("{key}!"));
    }
    // One MGET over every master, split and merged in key order.
    let values: Vec<String> = redis::cmd("MGET").arg(&keys).query(&mut con).unwrap();
    let want: Vec<String> = keys.iter().map(|k| format!("{k}!")).collect();
    assert_eq!(values, want);

    // A transaction on one slot.
    let tag = format!("{{{prefix}-tx}}");
    let (n, v): (i64, String) = redis::pipe()
        .atomic()
        .incr(format!("{tag}n"), 5)
        .set(format!("{tag}s"), "in")
        .ignore()
        .get(format!("{tag}s"))
        .query(&mut con)
        .unwrap();
    assert_eq!((n, v.as_str()), (5, "in"));

    // BLPOP blocks on its own connection until another client pushes.
    let list = format!("{prefix}:list");
    let port = proxy.port();
    let waiter = {
        let list = list.clone();
        std::thread::spawn(move || {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
            let mut con = client.get_connection().unwrap();
            con.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let got: Option<(String, String)> = redis::cmd("BLPOP")
                .arg(&list)
                .arg(20)
                .query(&mut con)
                .unwrap();
            got
        })
    };
    wait_until(Duration::from_secs(10), "the BLPOP to block", || {
        info_counter(proxy, "blocked_clients") >= 1
    });
    let _: () = con.rpush(&list, "job").unwrap();
    assert_eq!(waiter.join().unwrap(), Some((list, "job".to_string())));

    // Pub/sub: a subscriber through the proxy gets what is published through it.
    let mut sub_con = proxy.client();
    let mut sub = sub_con.as_pubsub();
    let channel = format!("{prefix}:news");
    sub.subscribe(&channel).unwrap();
    sub.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The count is the receiving node's own subscribers: in a cluster the message
    // reaches the others over the bus.
    let _: i64 = con.publish(&channel, "hello").unwrap();
    let message = sub.get_message().expect("the published message");
    assert_eq!(message.get_payload::<String>().unwrap(), "hello");
}

fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Clients writing and reading their own keys through the proxy until stopped (at most
/// 90 s), noting every error.
struct Load {
    stop: Arc<AtomicBool>,
    errors: Arc<Mutex<Vec<String>>>,
    done: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(proxy: &Proxy, keys: &[String], clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicU64::new(0));
        let port = proxy.port();
        let threads = (0..clients)
            .map(|c| {
                let (stop, errors, done) = (stop.clone(), errors.clone(), done.clone());
                let mine: Vec<String> = keys.iter().skip(c).step_by(clients).cloned().collect();
                std::thread::spawn(move || {
                    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
                    let mut con = client.get_connection().unwrap();
                    con.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                    let started = Instant::now();
                    let mut i = 0usize;
                    while !stop.load(Ordering::Relaxed)
                        && started.elapsed() < Duration::from_secs(90)
                        && i < 1_000_000
                    {
                        let key = &mine[i % mine.len()];
                        let value = format!("{c}-{i}");
                        let result = con
                            .set::<_, _, ()>(key, &value)
                            .and_then(|()| con.get::<_, String>(key));
                        match result {
                            Ok(v) if v == value => {
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(v) => errors
                                .lock()
                                .unwrap()
                                .push(format!("{key}: read {v}, wrote {value}")),
                            Err(e) => {
                                errors.lock().unwrap().push(format!("{key}: {e}"));
                                if e.is_io_error() {
                                    con = client.get_connection().unwrap();
                                    con.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                                }
                            }
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        Load {
            stop,
            errors,
            done,
            threads,
        }
    }

    fn finish(self) -> (Vec<String>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let errors = self.errors.lock().unwrap().clone();
        (errors, self.done.load(Ordering::Relaxed))
    }
}

/// Slots move between two masters while clients work: the `MOVED` and `ASK` the nodes
/// answer carry announced addresses, which slotgate dials through the map; the clients
/// see no error.
fn live_reshard_works(announcing: &Announcing, proxy: &Proxy) {
    let cluster = &announcing.cluster;
    let from = cluster.node_for_slot(0);
    let to = cluster.node_for_slot(16383);
    let first = (0..16384u16)
        .find(|&s| cluster.node_for_slot(s) == from)
        .unwrap();
    let moving = first..=first + 19;
    let keys: Vec<String> = (0..200_000)
        .map(|i| format!("move:{i}"))
        .filter(|k| moving.contains(&key_slot(k.as_bytes())))
        .take(400)
        .collect();
    {
        let mut con = proxy.client();
        for key in &keys {
            let _: () = con.set(key, "before").unwrap();
        }
    }
    let load = Load::start(proxy, &keys, 3);
    wait_until(Duration::from_secs(20), "the load to run", || {
        load.done.load(Ordering::Relaxed) > 20
    });

    // Half-way through the first slot, the source answers ASK with the target's
    // announced address.
    let slot = *moving.start();
    cluster.begin_slot_migration(slot, from, to);
    cluster.migrate_keys(slot, from, to, 1);
    let ask = keys
        .iter()
        .filter(|k| key_slot(k.as_bytes()) == slot)
        .map(|k| cluster.cli(from, &["GET", k]))
        .find(|reply| reply.starts_with("ASK"));
    assert_eq!(
        ask,
        Some(format!("ASK {slot} {}", announcing.announced(to))),
        "the source's ASK names the target's announced address"
    );
    cluster.finish_slot_migration(slot, from, to);
    // The rest key by key, each slot half-moved for a while.
    cluster.migrate_slots_paced(
        (slot + 1)..=*moving.end(),
        from,
        to,
        Duration::from_millis(2),
    );
    let direct = cluster.cli(from, &["GET", &keys[0]]);
    assert_eq!(
        direct,
        format!(
            "MOVED {} {}",
            key_slot(keys[0].as_bytes()),
            announcing.announced(to)
        ),
        "the old owner's redirect names the announced address"
    );
    std::thread::sleep(Duration::from_millis(300));
    let (errors, done) = load.finish();
    assert!(
        errors.is_empty(),
        "{} client errors during the reshard, first: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(done > 50, "only {done} round trips during the reshard");
    let moved = info_counter(proxy, "redirects_moved");
    let ask = info_counter(proxy, "redirects_ask");
    println!("reshard: {done} round trips, absorbed {moved} MOVED and {ask} ASK");
    assert!(moved + ask > 0, "no redirect was absorbed");
    // Every key still readable, through the new owner.
    let mut con = proxy.client();
    for key in &keys {
        let _: String = con.get(key).unwrap();
    }
}

/// A manual failover while clients work: the promoted replica, known by its announced
/// address, is dialled through the map. Errors are allowed only inside the failover
/// window; none is a redirect.
fn failover_works(announcing: &Announcing, proxy: &Proxy) {
    let cluster = &announcing.cluster;
    let old_master = cluster.master_ports()[0];
    let replica = cluster.replica_of(old_master).expect("a replica");
    let keys = keys_on_every_master(cluster, "fo", 20);
    let load = Load::start(proxy, &keys, 3);
    wait_until(Duration::from_secs(20), "the load to run", || {
        load.done.load(Ordering::Relaxed) > 20
    });
    assert_eq!(cluster.cli(replica, &["CLUSTER", "FAILOVER"]), "OK");
    wait_until(Duration::from_secs(30), "the replica's promotion", || {
        cluster.cli(replica, &["ROLE"]).starts_with("master")
    });
    cluster.wait_for_ok(Duration::from_secs(30));
    let before = load.done.load(Ordering::Relaxed);
    wait_until(
        Duration::from_secs(20),
        "round trips after the failover",
        || load.done.load(Ordering::Relaxed) > before + 50,
    );
    let (errors, _) = load.finish();
    for e in &errors {
        assert!(
            !e.contains("MOVED") && !e.contains("ASK"),
            "a redirect reached the client: {e}"
        );
    }
    // The promoted replica serves its keys, through the map.
    let key = key_on(cluster, replica, "after");
    let mut con = proxy.client();
    let _: () = con.set(&key, "new").unwrap();
    assert_eq!(cluster.cli(replica, &["GET", &key]), "new");
    let info = proxy.cli(&["INFO", "nodes"]);
    let line = format!(
        "addr={},dial=127.0.0.1:{replica},down=0",
        announcing.announced(replica)
    );
    assert!(info.contains(&line), "{line} missing from INFO:\n{info}");
    // The log says the slots changed owner, naming both by their announced addresses.
    let (from, to) = (
        format!("from={}", announcing.announced(old_master)),
        format!("to={}", announcing.announced(replica)),
    );
    wait_until(
        Duration::from_secs(20),
        "the owner change in the log",
        || {
            proxy
                .log()
                .lines()
                .any(|l| l.contains("slot owner changed") && l.contains(&from) && l.contains(&to))
        },
    );
}

#[test]
fn hostnames_every_command_and_a_live_reshard_through_the_map() {
    require_redis();
    let announcing = Announcing::hostnames(3, 0);
    for port in announcing.cluster.ports() {
        announcing.assert_unreachable_as_announced(port);
    }
    let proxy = announcing.mapped_proxy("");
    every_kind_of_command_works(&announcing.cluster, &proxy, "names");
    live_reshard_works(&announcing, &proxy);
    assert_nodes_known_as_announced(&announcing, &proxy);
    let log = proxy.log();
    assert!(!log.contains("cannot resolve"), "{log}");
}

#[test]
fn hostnames_failover_through_the_map() {
    require_redis();
    let announcing = Announcing::hostnames(3, 1);
    let proxy = announcing.mapped_proxy("");
    failover_works(&announcing, &proxy);
    every_kind_of_command_works(&announcing.cluster, &proxy, "names-after");
    assert_nodes_known_as_announced(&announcing, &proxy);
}

#[test]
fn hidden_addresses_every_command_and_a_live_reshard_through_the_map() {
    require_redis();
    let announcing = Announcing::hidden_addresses(3, 0);
    for port in announcing.cluster.ports() {
        announcing.assert_unreachable_as_announced(port);
    }
    let proxy = announcing.mapped_proxy("");
    every_kind_of_command_works(&announcing.cluster, &proxy, "hidden");
    live_reshard_works(&announcing, &proxy);
    assert_nodes_known_as_announced(&announcing, &proxy);
}

#[test]
fn hidden_addresses_failover_through_the_map() {
    require_redis();
    let announcing = Announcing::hidden_addresses(3, 1);
    let proxy = announcing.mapped_proxy("");
    failover_works(&announcing, &proxy);
    every_kind_of_command_works(&announcing.cluster, &proxy, "hidden-after");
    assert_nodes_known_as_announced(&announcing, &proxy);
}

/// The first key of `prefix` on the master on `port`, through a proxy that cannot
/// reach that master: the client's error and a log line name the announced address
/// (and the log line `also`). Returns the client's error.
fn unreachable_is_named(
    announcing: &Announcing,
    proxy: &Proxy,
    port: u16,
    prefix: &str,
    also: &str,
) -> String {
    let key = key_on(&announcing.cluster, port, prefix);
    let mut con = proxy.client();
    let err = con.get::<_, String>(&key).unwrap_err().to_string();
    println!("client error: {err}");
    let announced = announcing.announced(port);
    assert!(
        err.contains(&format!("backend {announced}")),
        "the error does not name {announced}: {err}"
    );
    let log = proxy.log();
    let line = log
        .lines()
        .find(|l| l.contains(announced) && l.contains(also))
        .unwrap_or_else(|| panic!("no log line names {announced} and {also:?}:\n{log}"));
    println!("log: {line}");
    err
}

#[test]
fn hostnames_without_a_map_entry_the_error_names_the_announced_address() {
    require_redis();
    let announcing = Announcing::hostnames(3, 0);
    let cluster = &announcing.cluster;
    let master = cluster.master_ports()[1];
    // Seeded by real address, so start-up finds the cluster, but no name is mapped.
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let err = unreachable_is_named(&announcing, &proxy, master, "nomap", "[address_map]");
    assert!(err.contains("resolving"), "{err}");

    // A wrong entry: the name is mapped to a port nobody listens on.
    let wrong = free_port();
    let map = format!(
        "[address_map]\n\"{}\" = \"127.0.0.1:{wrong}\"\n",
        announcing.announced(master)
    );
    let proxy = Proxy::start_with_config(&cluster.seeds(), &map);
    let err = unreachable_is_named(&announcing, &proxy, master, "wrongmap", "connect failed");
    assert!(
        err.contains(&format!(
            "dialled 127.0.0.1:{wrong}, its [address_map] entry"
        )),
        "{err}"
    );
}

#[test]
fn hidden_addresses_without_a_map_entry_the_error_names_the_announced_address() {
    require_redis();
    let announcing = Announcing::hidden_addresses(3, 0);
    let cluster = &announcing.cluster;
    let master = cluster.master_ports()[2];
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    unreachable_is_named(&announcing, &proxy, master, "nomap", "backend");
}

/// README's Docker example is a valid configuration: every seed is an announced name
/// the map sends to a published port.
#[test]
fn the_readme_docker_example_is_a_valid_config() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = readme
        .split("### Docker, Kubernetes, NAT: the address map")
        .nth(1)
        .expect("the Docker section in README.md");
    let toml = section
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a toml block in the Docker section");
    let config = slotgate::config::Config::from_toml(toml).expect("README's example parses");
    assert_eq!(config.address_map.len(), 6);
    for seed in &config.seeds {
        let dial = config.dial_addr(seed);
        assert_ne!(dial, seed, "seed {seed} has no [address_map] entry");
        assert!(dial.is_loopback(), "{seed} -> {dial}");
    }
}
