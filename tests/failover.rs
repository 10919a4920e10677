//! Failover under a write load through slotgate: a manual `CLUSTER FAILOVER` and a
//! master killed with SIGKILL. The proxy follows the new master without a restart,
//! errors stay inside the failover window, and no client ever sees MOVED or ASK.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis::Commands;
use support::{keys_on_every_master, require_redis, Cluster, Proxy};

/// Writers that SET keys through the proxy until stopped, noting each error and when.
struct Load {
    stop: Arc<AtomicBool>,
    errors: Arc<Mutex<Vec<(Instant, String)>>>,
    writes: Arc<Mutex<u64>>,
    workers: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(port: u16, keys: &[String], threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let writes = Arc::new(Mutex::new(0));
        let workers = (0..threads)
            .map(|t| {
                let (stop, errors, writes) = (stop.clone(), errors.clone(), writes.clone());
                let keys: Vec<String> = keys.iter().skip(t).step_by(threads).cloned().collect();
                std::thread::spawn(move || {
                    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
                    let mut con = client.get_connection().unwrap();
                    con.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
                    let started = Instant::now();
                    let mut i = 0usize;
                    while !stop.load(Ordering::Relaxed)
                        && started.elapsed() < Duration::from_secs(90)
                    {
                        let key = &keys[i % keys.len()];
                        if let Err(e) = con.set::<_, _, ()>(key, i) {
                            errors.lock().unwrap().push((Instant::now(), e.to_string()));
                            if e.is_io_error() {
                                con = client.get_connection().unwrap();
                                con.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
                            }
                        } else {
                            *writes.lock().unwrap() += 1;
                        }
                        i += 1;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                })
            })
            .collect();
        Load {
            stop,
            errors,
            writes,
            workers,
        }
    }

    fn finish(self) -> (Vec<(Instant, String)>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            w.join().unwrap();
        }
        let errors = self.errors.lock().unwrap().clone();
        let writes = *self.writes.lock().unwrap();
        (errors, writes)
    }
}

fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Wait until `replica` reports itself master and every node agrees the cluster is ok.
fn wait_for_promotion(cluster: &Cluster, replica: u16, limit: Duration) {
    wait_until(limit, "the replica to be promoted", || {
        cluster.cli(replica, &["ROLE"]).starts_with("master")
    });
    cluster.wait_for_ok(limit);
}

fn assert_no_redirect_leaked(errors: &[(Instant, String)]) {
    for (_, e) in errors {
        assert!(
            !e.contains("MOVED") && !e.contains("ASK"),
            "a redirect reached the client: {e}"
        );
    }
}

#[test]
fn manual_failover_under_load() {
    require_redis();
    let cluster = Cluster::start(3, 1);
    // Two workers whatever the machine: the load's clients spread over both, and each
    // worker must follow the failover on its own connections.
    let proxy = Proxy::start(&cluster.seeds(), &["--workers", "2"]);
    let keys = keys_on_every_master(&cluster, "fo", 30);
    let old_master = cluster.master_ports()[0];
    let replica = cluster.replica_of(old_master).expect("a replica");
    let load = Load::start(proxy.port(), &keys, 3);
    std::thread::sleep(Duration::from_millis(500));

    let window_start = Instant::now();
    assert_eq!(cluster.cli(replica, &["CLUSTER", "FAILOVER"]), "OK");
    wait_for_promotion(&cluster, replica, Duration::from_secs(30));
    let window_end = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let (errors, writes) = load.finish();

    assert_no_redirect_leaked(&errors);
    for (at, e) in &errors {
        assert!(
            *at >= window_start && *at <= window_end + Duration::from_secs(2),
            "error outside the failover window: {e}"
        );
    }
    println!("manual failover: {writes} writes, {} errors", errors.len());
    assert!(writes > 100);

    // The old master's slots are served by the new master, without a proxy restart.
    let mut con = proxy.client();
    for key in &keys {
        let _: () = con.set(key, "after").unwrap();
        let v: String = con.get(key).unwrap();
        assert_eq!(v, "after");
    }
    let key = keys
        .iter()
        .find(|k| {
            cluster.node_for_slot(slotgate::slot::Slot::of_key(k.as_bytes()).get()) == replica
        })
        .expect("a key on the promoted node");
    assert_eq!(cluster.cli(replica, &["GET", key]), "after");
}

#[test]
fn killed_master_is_replaced_under_load() {
    require_redis();
    let mut cluster = Cluster::start(3, 1);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let keys = keys_on_every_master(&cluster, "kill", 30);
    let victim = cluster.master_ports()[1];
    let replica = cluster.replica_of(victim).expect("a replica");
    let load = Load::start(proxy.port(), &keys, 3);
    std::thread::sleep(Duration::from_millis(500));

    let window_start = Instant::now();
    cluster.kill(victim);
    wait_for_promotion(&cluster, replica, Duration::from_secs(60));
    let window_end = Instant::now();
    // Give the proxy's retries of the last failed requests time to finish.
    std::thread::sleep(Duration::from_secs(2));
    let (errors, writes) = load.finish();

    assert_no_redirect_leaked(&errors);
    for (at, e) in &errors {
        assert!(
            *at >= window_start && *at <= window_end + Duration::from_secs(7),
            "error {:?} after the failover window: {e}",
            at.duration_since(window_end)
        );
    }
    println!(
        "kill -9 failover: {writes} writes, {} errors inside a {:?} window",
        errors.len(),
        window_end - window_start
    );

    // Every key, the dead master's included, is writable and readable again.
    let mut con = proxy.client();
    for key in &keys {
        let _: () = con.set(key, "after").unwrap();
        let v: String = con.get(key).unwrap();
        assert_eq!(v, "after");
    }
}

#[test]
fn pipelined_writes_keep_their_order_through_a_failover() {
    require_redis();
    let mut cluster = Cluster::start(3, 1);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let key = "{order}list";
    let victim = cluster.node_for_key(key);
    let replica = cluster.replica_of(victim).expect("a replica");

    let port = proxy.port();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
            let mut con = client.get_connection().unwrap();
            con.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
            let started = Instant::now();
            let mut next = 0u64;
            let mut acked = 0u64;
            // Bounded in count and time: batches of 20 RPUSHes in one pipeline.
            while !stop.load(Ordering::Relaxed)
                && next < 200_000
                && started.elapsed() < Duration::from_secs(60)
            {
                let mut pipe = redis::pipe();
                for i in next..next + 20 {
                    pipe.cmd("RPUSH").arg(key).arg(i);
                }
                next += 20;
                let replies: Vec<redis::RedisResult<i64>> =
                    match pipe.query::<Vec<redis::Value>>(&mut con) {
                        Ok(values) => values
                            .into_iter()
                            .map(|v| redis::from_redis_value(&v))
                            .collect(),
                        Err(_) => vec![],
                    };
                acked += replies.iter().filter(|r| r.is_ok()).count() as u64;
                std::thread::sleep(Duration::from_millis(2));
            }
            acked
        })
    };
    std::thread::sleep(Duration::from_millis(700));
    cluster.kill(victim);
    wait_for_promotion(&cluster, replica, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let acked = writer.join().unwrap();

    // Whatever survived the failover is in the order it was sent: no retry overtook an
    // earlier request.
    let mut con = proxy.client();
    let list: Vec<u64> = con.lrange(key, 0, -1).unwrap();
    assert!(
        list.len() > 100,
        "only {} items ({acked} acknowledged)",
        list.len()
    );
    for pair in list.windows(2) {
        assert!(
            pair[0] < pair[1],
            "out of order: {} before {}",
            pair[0],
            pair[1]
        );
    }
    println!("{} items in order, {acked} acknowledged", list.len());
}
