//! Live resharding under load: clients writing and reading through slotgate see no
//! error while slots move, and every acknowledged write is readable afterwards.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::Commands;
use support::{info_counter, require_redis, Cluster, Proxy};

#[test]
fn live_resharding_is_invisible_to_clients() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    // Two workers whatever the machine: the clients spread over both, and each worker
    // must follow the moved slots on its own connections.
    let proxy = Proxy::start(&cluster.seeds(), &["--workers", "2"]);
    let from = cluster.node_for_slot(0);
    let to = cluster.node_for_slot(16383);
    assert_ne!(from, to);
    // The first 40 slots of `from`'s range move to `to`.
    let first = (0..16384u16)
        .find(|&s| cluster.node_for_slot(s) == from)
        .unwrap();
    let moving = first..=first + 39;

    // Keys in the moving slots (half of each client's keys) and elsewhere.
    let in_range: Vec<String> = (0..200_000)
        .map(|i| format!("rs:{i}"))
        .filter(|k| moving.contains(&slotgate::slot::Slot::of_key(k.as_bytes()).get()))
        .take(2000)
        .collect();
    assert!(
        in_range.len() >= 400,
        "found {} keys in range",
        in_range.len()
    );

    // Some keys exist before the move so MIGRATE has work to do.
    {
        let mut con = proxy.client();
        for key in in_range.iter().take(300) {
            let _: () = con.set(key, format!("pre-{key}")).unwrap();
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let acked = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let mut workers = Vec::new();
    for t in 0..4 {
        let port = proxy.port();
        let stop = stop.clone();
        let errors = errors.clone();
        let acked = acked.clone();
        let mine: Vec<String> = in_range.iter().skip(300 + t).step_by(4).cloned().collect();
        workers.push(std::thread::spawn(move || {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
            let mut con = client.get_connection().unwrap();
            con.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let started = Instant::now();
            let mut i = 0usize;
            // Bounded in count and time.
            while !stop.load(Ordering::Relaxed)
                && i < 200_000
                && started.elapsed() < Duration::from_secs(60)
            {
                let key = if i % 2 == 0 {
                    mine[(i / 2) % mine.len()].clone()
                } else {
                    format!("rs-other:{t}:{i}")
                };
                let value = format!("{t}-{i}");
                match con.set::<_, _, ()>(&key, &value) {
                    Ok(()) => match con.get::<_, String>(&key) {
                        Ok(v) if v == value => acked.lock().unwrap().push((key, value)),
                        Ok(v) => errors
                            .lock()
                            .unwrap()
                            .push(format!("{key}: read {v}, wrote {value}")),
                        Err(e) => errors.lock().unwrap().push(format!("GET {key}: {e}")),
                    },
                    Err(e) => errors.lock().unwrap().push(format!("SET {key}: {e}")),
                }
                i += 1;
            }
        }));
    }

    std::thread::sleep(Duration::from_millis(300));
    // One key per MIGRATE with a pause, so each slot stays half-moved (ASK territory) for a while.
    cluster.migrate_slots_paced(moving.clone(), from, to, Duration::from_millis(2));
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }

    let errors = errors.lock().unwrap();
    assert!(
        errors.is_empty(),
        "{} client errors, first: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );

    // The slots really moved.
    for s in [*moving.start(), *moving.end()] {
        assert_eq!(cluster.node_for_slot(s), to, "slot {s}");
    }

    // Every acknowledged write is readable (the last value written to each key).
    let acked = acked.lock().unwrap();
    assert!(
        acked.len() > 500,
        "only {} writes acknowledged",
        acked.len()
    );
    let mut last: std::collections::HashMap<&str, &str> = Default::default();
    for (k, v) in acked.iter() {
        last.insert(k, v);
    }
    let mut con = proxy.client();
    for (k, v) in &last {
        let got: String = con.get(*k).unwrap();
        assert_eq!(&got, v, "{k}");
    }
    for key in in_range.iter().take(300) {
        let got: String = con.get(key).unwrap();
        assert_eq!(got, format!("pre-{key}"));
    }

    let moved = info_counter(&proxy, "redirects_moved");
    let ask = info_counter(&proxy, "redirects_ask");
    println!(
        "absorbed {moved} MOVED and {ask} ASK redirects over {} writes",
        acked.len()
    );
    assert!(moved > 0, "no MOVED was absorbed");
    assert!(ask > 0, "no ASK was absorbed");
}
