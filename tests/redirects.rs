//! Each redirect a node can answer, produced on demand with a real cluster: the client
//! gets the data, never the redirect, and loops end with a clear error.

mod support;

use std::time::Duration;

use redis::Commands;
use support::{info_counter, keys_in_slot, require_redis, Cluster, Proxy, RawClient};

/// A slot of `from` and a master `to` it can move to.
fn slot_and_target(cluster: &Cluster) -> (u16, u16, u16) {
    let from = cluster.node_for_slot(100);
    let to = cluster
        .master_ports()
        .into_iter()
        .find(|&p| p != from)
        .expect("another master");
    (100, from, to)
}

#[test]
fn ask_during_a_migration_is_followed() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let (slot, from, to) = slot_and_target(&cluster);
    let keys = keys_in_slot(slot, "ask", 4);
    let mut con = proxy.client();
    for k in &keys {
        let _: () = con.set(k, format!("v-{k}")).unwrap();
    }
    cluster.begin_slot_migration(slot, from, to);
    assert_eq!(cluster.migrate_keys(slot, from, to, 2), 2);
    let before = info_counter(&proxy, "redirects_ask");

    // Two keys now live on `to`; `from` answers ASK for them.
    for k in &keys {
        let v: String = con.get(k).unwrap();
        assert_eq!(v, format!("v-{k}"));
    }
    // A new key in a migrating slot is written on the importing node.
    let fresh = keys_in_slot(slot, "ask-new", 1).remove(0);
    let _: () = con.set(&fresh, "new").unwrap();
    let v: String = con.get(&fresh).unwrap();
    assert_eq!(v, "new");
    assert!(info_counter(&proxy, "redirects_ask") >= before + 3);
    let mut direct = cluster.node_client(to);
    let _: () = redis::cmd("ASKING").query(&mut direct).unwrap();
    let on_target: String = redis::cmd("GET").arg(&fresh).query(&mut direct).unwrap();
    assert_eq!(on_target, "new");

    // Finishing the move turns ASK into MOVED, also absorbed.
    cluster.finish_slot_migration(slot, from, to);
    let moved = info_counter(&proxy, "redirects_moved");
    for k in &keys {
        let v: String = con.get(k).unwrap();
        assert_eq!(v, format!("v-{k}"));
    }
    assert!(info_counter(&proxy, "redirects_moved") > moved);
}

#[test]
fn tryagain_is_retried_until_the_migration_ends() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let (slot, from, to) = slot_and_target(&cluster);
    // Two keys with one hash tag in `slot`.
    let tag = keys_in_slot(slot, "tag", 1).remove(0);
    let (a, b) = (format!("{{{tag}}}.a"), format!("{{{tag}}}.b"));
    let mut con = proxy.client();
    let _: () = con.set(&a, "A").unwrap();
    let _: () = con.set(&b, "B").unwrap();
    cluster.begin_slot_migration(slot, from, to);
    assert_eq!(cluster.migrate_keys(slot, from, to, 1), 1);

    // With the keys split between the nodes, MGET gets TRYAGAIN until the move ends.
    let port = proxy.port();
    let (a2, b2) = (a.clone(), b.clone());
    let reader = std::thread::spawn(move || {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
        let mut con = client.get_connection().unwrap();
        con.mget::<_, Vec<String>>(&[a2, b2])
    });
    std::thread::sleep(Duration::from_millis(700));
    cluster.finish_slot_migration(slot, from, to);
    let values = reader.join().unwrap().expect("MGET after the migration");
    assert_eq!(values, vec!["A", "B"]);
    assert!(info_counter(&proxy, "retries_tryagain") > 0);
}

#[test]
fn a_burst_of_moved_causes_one_refresh() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let (first, from, to) = slot_and_target(&cluster);
    let slots = first..=first + 49;
    let keys: Vec<String> = slots
        .clone()
        .flat_map(|s| keys_in_slot(s, "burst", 20))
        .collect();
    let mut con = proxy.client();
    for k in &keys {
        let _: () = con.set(k, "x").unwrap();
    }
    // Move the slots behind the proxy's back: its table is now stale for all of them.
    cluster.migrate_slots(slots, from, to);
    let refreshes = info_counter(&proxy, "topology_refreshes");
    let moved = info_counter(&proxy, "redirects_moved");

    let mut raw = RawClient::connect(proxy.port());
    let pipeline: String = keys.iter().map(|k| format!("GET {k}\r\n")).collect();
    raw.write(pipeline.as_bytes());
    let replies = raw.read_replies(keys.len(), Duration::from_secs(20));
    assert_eq!(replies.len(), keys.len());
    assert!(
        replies.iter().all(|r| r == "$1\r\nx\r\n"),
        "{:?}",
        &replies[..3]
    );

    std::thread::sleep(Duration::from_millis(500));
    let moved = info_counter(&proxy, "redirects_moved") - moved;
    let refreshes = info_counter(&proxy, "topology_refreshes") - refreshes;
    println!("{moved} MOVED replies led to {refreshes} refreshes");
    assert!(moved >= 50, "only {moved} MOVED seen");
    assert!(
        refreshes <= 3,
        "{refreshes} refreshes for one burst of {moved} MOVED"
    );
}

#[test]
fn a_redirect_loop_ends_with_a_clear_error() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let (slot, from, to) = slot_and_target(&cluster);
    let key = keys_in_slot(slot, "loop", 1).remove(0);
    // `from` now believes `to` owns the slot, while `to` still believes `from` does:
    // each answers MOVED to the other.
    let to_id = cluster.node_id(to);
    assert_eq!(
        cluster.cli(
            from,
            &["CLUSTER", "SETSLOT", &slot.to_string(), "NODE", &to_id]
        ),
        "OK"
    );
    let mut con = proxy.client();
    let err = con.get::<_, String>(&key).unwrap_err();
    assert!(err.to_string().contains("too many redirects"), "{err}");
    // Other slots are unaffected.
    let other = keys_in_slot(16000, "ok", 1).remove(0);
    let _: () = con.set(&other, "fine").unwrap();
}

#[test]
fn uncovered_slots_stop_start_up_and_say_which() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let owner = cluster.node_for_slot(100);
    assert_eq!(
        cluster
            .cli(owner, &["CLUSTER", "DELSLOTS", "100", "101", "102", "5000"])
            .lines()
            .next()
            .unwrap_or(""),
        "OK"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_slotgate"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--seeds",
            &format!("127.0.0.1:{owner}"),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not served"), "{err}");
    assert!(err.contains("100-102"), "{err}");
}
