//! A topology slotgate can trust: it asks several nodes and prefers the claims with the
//! highest config epochs, so a node cut off from the cluster cannot hold the table;
//! every change of a slot range's owner is logged with the old and the new owner; a
//! node that hangs (SIGSTOP) times out its own requests while the other nodes keep
//! answering.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use redis::Commands;
use support::{
    key_slot, keys_on_every_master, require_redis, Cluster, ClusterConfig, Network, Proxy,
};

fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One `slot owner changed` line: `(slot ranges, from, to)`.
type OwnerChange = (Vec<(u16, u16)>, String, String);

/// Every `slot owner changed` line in the proxy's log.
fn owner_changes(proxy: &Proxy) -> Vec<OwnerChange> {
    let field = |line: &str, name: &str| -> String {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_default()
            .to_string()
    };
    proxy
        .log()
        .lines()
        .filter(|l| l.contains("slot owner changed"))
        .map(|l| {
            let slots = field(l, "slots")
                .split(',')
                .filter_map(|r| match r.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => r.parse().ok().map(|s| (s, s)),
                })
                .collect();
            (slots, field(l, "from"), field(l, "to"))
        })
        .collect()
}

/// Whether the log has said, in one line or several, that every slot of `slots` went
/// from `from` to `to`.
fn logged_move(proxy: &Proxy, slots: &[u16], from: &str, to: &str) -> bool {
    let changes = owner_changes(proxy);
    slots.iter().all(|&slot| {
        changes.iter().any(|(ranges, f, t)| {
            f == from && t == to && ranges.iter().any(|&(a, b)| a <= slot && slot <= b)
        })
    })
}

#[test]
fn every_owner_change_is_logged_with_the_old_and_the_new_owner() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start_with_config(
        &cluster.seeds(),
        "seeds = []\n[cluster]\nrefresh_interval_ms = 200\n",
    );
    let from = cluster.node_for_slot(0);
    let to = cluster.node_for_slot(16383);
    let (a, b) = (format!("127.0.0.1:{from}"), format!("127.0.0.1:{to}"));
    cluster.migrate_slots(0..=9, from, to);
    cluster.migrate_slots(100..=100, from, to);
    let moved: Vec<u16> = (0..=9).chain([100]).collect();
    wait_until(Duration::from_secs(20), "the moves in the log", || {
        logged_move(&proxy, &moved, &a, &b)
    });
    // Nothing else changed owner.
    for (slots, f, t) in owner_changes(&proxy) {
        assert_eq!((f.as_str(), t.as_str()), (a.as_str(), b.as_str()));
        for (first, last) in slots {
            assert!(
                (first..=last).all(|s| moved.contains(&s)),
                "{first}-{last} logged as moved"
            );
        }
    }
    // And back: the other direction is logged too.
    cluster.migrate_slots(0..=9, to, from);
    wait_until(Duration::from_secs(20), "the move back in the log", || {
        logged_move(&proxy, &(0..=9).collect::<Vec<_>>(), &b, &a)
    });
}

/// Heals every partition when dropped, so a failing test leaves the cluster whole.
struct Healed<'a>(&'a Cluster);

impl Drop for Healed<'_> {
    fn drop(&mut self) {
        self.0.heal();
    }
}

#[test]
fn a_master_cut_off_from_the_cluster_does_not_hold_the_table() {
    require_redis();
    let cluster = Cluster::start_with(
        3,
        1,
        ClusterConfig {
            network: Network::PartitionableBus,
            ..ClusterConfig::default()
        },
    );
    let cut = cluster.master_ports()[0];
    let replica = cluster.replica_of(cut).expect("a replica");
    // The master to be cut off is the first seed and serves slot 0: a refresh that took
    // the first node's answer would ask it first, every time.
    let proxy = Proxy::start_with_config(
        &format!("127.0.0.1:{cut}"),
        "[cluster]\nrefresh_interval_ms = 200\n",
    );
    let keys = keys_on_every_master(&cluster, "cut", 10);
    let mut con = proxy.client();
    for key in &keys {
        let _: () = con.set(key, "before").unwrap();
    }
    let on_cut: Vec<&String> = keys
        .iter()
        .filter(|k| cluster.node_for_key(k) == cut)
        .collect();
    assert!(!on_cut.is_empty());

    let healed = Healed(&cluster);
    cluster.partition(cut);
    // The majority fails the master over to its replica; the cut-off master still
    // claims its slots (with its older config epoch) and answers slotgate's queries.
    wait_until(Duration::from_secs(60), "the replica's promotion", || {
        cluster.cli(replica, &["ROLE"]).starts_with("master")
    });
    let view_of_cut = cluster.cli(cut, &["CLUSTER", "SHARDS"]);
    assert!(
        cluster.cli(cut, &["ROLE"]).starts_with("master"),
        "the cut-off node should still think it is a master:\n{view_of_cut}"
    );

    // slotgate follows the promoted replica...
    let key = on_cut[0].as_str();
    wait_until(
        Duration::from_secs(30),
        "a write to the promoted replica",
        || con.set::<_, _, ()>(key, "after").is_ok(),
    );
    assert_eq!(cluster.cli(replica, &["GET", key]), "after");
    // ...and stays with it while refreshes keep asking the cut-off master (every
    // 200 ms): every request is answered.
    let started = Instant::now();
    let mut round_trips = 0;
    while started.elapsed() < Duration::from_secs(3) && round_trips < 100_000 {
        for key in &keys {
            let _: () = con
                .set(key, "steady")
                .unwrap_or_else(|e| panic!("SET {key} after the failover: {e}"));
            round_trips += 1;
        }
    }
    let (cut_addr, replica_addr) = (format!("127.0.0.1:{cut}"), format!("127.0.0.1:{replica}"));
    let slot = key_slot(key.as_bytes());
    assert!(
        logged_move(&proxy, &[slot], &cut_addr, &replica_addr),
        "no log line moves slot {slot} from {cut_addr} to {replica_addr}:\n{}",
        proxy.log()
    );

    // The partition heals: the old master rejoins as a replica; nothing moves back.
    drop(healed);
    cluster.wait_for_ok(Duration::from_secs(60));
    for key in &keys {
        let v: String = con.get(key).unwrap();
        assert_eq!(v, "steady");
    }
    let back: Vec<_> = owner_changes(&proxy)
        .into_iter()
        .filter(|(_, _, to)| *to == cut_addr)
        .collect();
    assert!(back.is_empty(), "slots went back to {cut_addr}: {back:?}");
}

/// A stopped process, continued when dropped (so a failing test leaves none stopped).
struct Stopped(u32);

impl Stopped {
    fn stop(pid: u32) -> Stopped {
        signal("-STOP", pid);
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal("-CONT", self.0);
    }
}

fn signal(which: &str, pid: u32) {
    let status = Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {which} {pid}: {status}");
}

#[test]
fn a_hung_master_times_out_its_own_requests_while_the_others_keep_answering() {
    require_redis();
    // A node timeout far beyond the test: the cluster itself does not react.
    let cluster = Cluster::start_with(
        3,
        0,
        ClusterConfig {
            node_timeout_ms: 60_000,
            ..ClusterConfig::default()
        },
    );
    let proxy = Proxy::start_with_config(
        &cluster.seeds(),
        "seeds = []\n[backend]\ntimeout_ms = 1000\n",
    );
    let keys = keys_on_every_master(&cluster, "hang", 5);
    let mut con = proxy.client();
    for key in &keys {
        let _: () = con.set(key, "v").unwrap();
    }
    let hung = cluster.master_ports()[1];
    let (on_hung, elsewhere): (Vec<String>, Vec<String>) = keys
        .iter()
        .cloned()
        .partition(|k| cluster.node_for_key(k) == hung);

    let stopped = Stopped::stop(cluster.pid(hung).expect("the node's pid"));
    // Requests to the hung node, from their own clients, each fail on the backend
    // timeout (the client's 10 s read timeout is the hang guard).
    let port = proxy.port();
    let waiting: Vec<_> = on_hung
        .iter()
        .take(3)
        .cloned()
        .map(|key| {
            std::thread::spawn(move || {
                let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
                let mut con = client.get_connection().unwrap();
                con.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                con.get::<_, String>(&key).map_err(|e| e.to_string())
            })
        })
        .collect();
    // Meanwhile every request to the other masters is answered.
    let mut answered = 0;
    let started = Instant::now();
    while answered < 300 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "only {answered} answers from the other masters in 60 s"
        );
        let key = &elsewhere[answered % elsewhere.len()];
        let _: () = con.set(key, answered).unwrap();
        let v: usize = con.get(key).unwrap();
        assert_eq!(v, answered);
        answered += 1;
    }
    for waiter in waiting {
        let err = waiter
            .join()
            .unwrap()
            .expect_err("a reply from a stopped node");
        assert!(
            err.contains(&format!("backend 127.0.0.1:{hung}")) && err.contains("no reply within"),
            "{err}"
        );
    }
    // A request after those timed out fails the same way, on a new connection.
    let err = con.get::<_, String>(&on_hung[0]).unwrap_err().to_string();
    assert!(err.contains("no reply within"), "{err}");
    for key in &elsewhere {
        let _: () = con.set(key, "still").unwrap();
    }

    // The node continues: it serves again.
    drop(stopped);
    wait_until(
        Duration::from_secs(30),
        "the continued node to answer",
        || con.get::<_, String>(&on_hung[0]).is_ok(),
    );
    for key in &on_hung {
        let _: () = con.set(key, "back").unwrap();
        assert_eq!(cluster.cli(hung, &["GET", key]), "back");
    }
}
