//! Many clients blocked at once: 200 concurrent `BLPOP` clients share the 200 elements
//! a producer pushes, exactly once each, while some of them leave mid-wait; and what
//! 1,000 blocked clients cost the nodes in connections.

mod support;

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use support::{keys_on_every_master, require_redis, Cluster, Proxy, RawClient};

/// Polls `cond` every 50 ms until it holds, for at most `limit`.
fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// A field of a node's `INFO clients`.
fn node_clients_field(cluster: &Cluster, port: u16, field: &str) -> u64 {
    let info = cluster.cli(port, &["INFO", "clients"]);
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} missing from INFO clients of {port}:\n{info}"))
}

/// `field` summed over the masters.
fn masters_sum(cluster: &Cluster, field: &str) -> u64 {
    (cluster.master_ports().iter())
        .map(|&port| node_clients_field(cluster, port, field))
        .sum()
}

/// A connection to the proxy whose reads wait up to a minute (a BLPOP's own timeout
/// bounds it first).
fn patient_client(proxy: &Proxy) -> redis::Connection {
    let client = redis::Client::open(format!("redis://{}/", proxy.addr())).unwrap();
    let con = client
        .get_connection_with_timeout(Duration::from_secs(10))
        .unwrap();
    con.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    con
}

#[test]
fn two_hundred_blocked_clients_get_each_element_once_even_when_some_leave() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let queue = "{many}q";
    let node = cluster.node_for_key(queue);
    const STAYING: usize = 180;
    const LEAVING: usize = 20;
    const ELEMENTS: usize = STAYING + LEAVING;

    // 180 clients of the redis crate wait in BLPOP (30 s at most), each in a thread.
    let waiters: Vec<_> = (0..STAYING)
        .map(|_| {
            let mut con = patient_client(&proxy);
            thread::spawn(move || {
                redis::cmd("BLPOP")
                    .arg(queue)
                    .arg(30)
                    .query::<Option<(String, String)>>(&mut con)
            })
        })
        .collect();
    // 20 more, on plain sockets, will leave while blocked.
    let leaving: Vec<RawClient> = (0..LEAVING)
        .map(|_| {
            let mut raw = RawClient::connect(proxy.port());
            raw.write(format!("BLPOP {queue} 30\r\n").as_bytes());
            raw
        })
        .collect();
    wait_until("all 200 block at the node", Duration::from_secs(30), || {
        node_clients_field(&cluster, node, "blocked_clients") == ELEMENTS as u64
    });
    drop(leaving);
    wait_until(
        "the leaving clients' connections are closed",
        Duration::from_secs(30),
        || node_clients_field(&cluster, node, "blocked_clients") == STAYING as u64,
    );

    // The producer pushes 200 elements at once.
    let elements: Vec<String> = (0..ELEMENTS).map(|i| format!("e{i}")).collect();
    let mut con = proxy.client();
    let pushed: i64 = redis::cmd("RPUSH")
        .arg(queue)
        .arg(&elements)
        .query(&mut con)
        .unwrap();
    assert!(pushed >= 0);

    let mut received = Vec::new();
    for waiter in waiters {
        let reply = waiter.join().expect("the thread").expect("BLPOP's reply");
        let (key, element) = reply.expect("an element, not the timeout");
        assert_eq!(key, queue);
        received.push(element);
    }
    let left: Vec<String> = redis::cmd("LRANGE")
        .arg(queue)
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .unwrap();
    // Each connected client got one element, no element twice, and what nobody got is
    // still in the list: nothing was popped for the clients that left.
    let got: BTreeSet<&String> = received.iter().collect();
    assert_eq!(got.len(), STAYING, "an element was received twice");
    assert_eq!(left.len(), LEAVING, "{left:?}");
    let mut all: Vec<&String> = received.iter().chain(left.iter()).collect();
    all.sort();
    let mut expected: Vec<&String> = elements.iter().collect();
    expected.sort();
    assert_eq!(all, expected, "every element received once or still listed");
}

#[test]
fn the_node_connections_of_a_thousand_blocked_clients() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start_with_config(
        &cluster.seeds(),
        "[backend]\nmax_pinned = 2000\nmax_pinned_per_node = 2000\n",
    );
    const CLIENTS: usize = 1000;
    // Lists spread over the masters, one per client.
    let keys = keys_on_every_master(&cluster, "thousand", CLIENTS.div_ceil(3));
    // Once slotgate's shared connections are open (INFO asks every master).
    assert_eq!(support::info_counter(&proxy, "pinned_connections"), 0);
    let before = masters_sum(&cluster, "connected_clients");

    let clients: Vec<RawClient> = keys
        .iter()
        .take(CLIENTS)
        .map(|key| {
            let mut raw = RawClient::connect(proxy.port());
            raw.write(format!("BLPOP {key} 0\r\n").as_bytes());
            raw
        })
        .collect();
    wait_until("1,000 clients block", Duration::from_secs(60), || {
        masters_sum(&cluster, "blocked_clients") == CLIENTS as u64
    });
    let pinned = support::info_counter(&proxy, "pinned_connections");
    let during = masters_sum(&cluster, "connected_clients");
    let per_node: Vec<String> = (cluster.master_ports().iter())
        .map(|&port| {
            let n = node_clients_field(&cluster, port, "connected_clients");
            format!("{port}: {n}")
        })
        .collect();
    println!(
        "1,000 blocked BLPOP clients: {pinned} pinned connections (INFO pinned_connections); \
         the masters' connected_clients went from {before} to {during} (+{}); per master: {}",
        during - before,
        per_node.join(", ")
    );
    // A blocked client waits on a node connection of its own: one each, no more.
    assert_eq!(pinned, CLIENTS as u64);
    assert!(during - before >= CLIENTS as u64);

    // They leave: every pinned connection is closed, and the nodes are back where they
    // were.
    drop(clients);
    wait_until(
        "the pinned connections are closed",
        Duration::from_secs(30),
        || support::info_counter(&proxy, "pinned_connections") == 0,
    );
    wait_until("the nodes see them gone", Duration::from_secs(30), || {
        masters_sum(&cluster, "blocked_clients") == 0
            && masters_sum(&cluster, "connected_clients") == before
    });
}
