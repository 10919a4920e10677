//! Bounded memory and isolation with the default configuration: a client that
//! pipelines requests for big values and never reads its replies must not grow
//! slotgate's memory, nor hold up other clients of the same node; once it leaves, the
//! memory goes back. A client that does read a big pipeline gets every reply, with
//! slotgate's memory bounded all along. All clients together are capped too.
//!
//! Figures (peak RSS, worst latency of the other client) are printed; run with
//! `--nocapture` to see them.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{require_redis, Cluster, Proxy, RawClient};

const MIB: u64 = 1024 * 1024;
/// How long the slow readers keep pipelining.
const SLOW_FOR: Duration = Duration::from_secs(20);

/// `readers` clients pipeline `GET` of a 1 MiB value for 20 s and never read; another
/// client GETs a key in the same slot every 50 ms meanwhile. Returns (peak RSS, worst
/// latency of the other client, RSS 10 s after the readers left).
fn slow_readers(readers: usize) {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let value = "v".repeat(MIB as usize);
    let mut con = proxy.client();
    let _: () = redis::cmd("SET")
        .arg("{slow}big")
        .arg(&value)
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("{slow}small")
        .arg("x")
        .query(&mut con)
        .unwrap();
    let baseline = proxy.rss();

    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for _ in 0..readers {
        let stop = stop.clone();
        let port = proxy.port();
        writers.push(std::thread::spawn(move || {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream.set_nonblocking(true).unwrap();
            let chunk = b"*2\r\n$3\r\nGET\r\n$9\r\n{slow}big\r\n".repeat(256);
            let mut sent = 0u64;
            let mut pos = 0;
            while !stop.load(Ordering::Relaxed) {
                match stream.write(&chunk[pos..]) {
                    Ok(n) => {
                        sent += n as u64;
                        pos = (pos + n) % chunk.len();
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    // Closed by slotgate (over a limit: logged, and fine), or gone.
                    Err(_) => break,
                }
            }
            // Leaves without reading a byte.
            sent
        }));
    }

    // Meanwhile: another client on the same slot, and slotgate's memory.
    let started = Instant::now();
    let mut worst = Duration::ZERO;
    let mut peak = 0u64;
    let mut answered = 0u32;
    while started.elapsed() < SLOW_FOR {
        let asked = Instant::now();
        let got: String = redis::cmd("GET")
            .arg("{slow}small")
            .query(&mut con)
            .unwrap_or_else(|e| {
                panic!(
                    "the other client got no answer after {:?}: {e}",
                    asked.elapsed()
                )
            });
        assert_eq!(got, "x");
        answered += 1;
        worst = worst.max(asked.elapsed());
        peak = peak.max(proxy.rss());
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let sent: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    let left = Instant::now();

    // Memory comes back once they are gone, while the other client goes on (the
    // allocator, mimalloc, returns freed memory to the system as it keeps allocating;
    // a slotgate that serves no one at all keeps it until its next request).
    let mut after = proxy.rss();
    while after >= 128 * MIB && left.elapsed() < Duration::from_secs(10) {
        let got: String = redis::cmd("GET")
            .arg("{slow}small")
            .query(&mut con)
            .unwrap();
        assert_eq!(got, "x");
        std::thread::sleep(Duration::from_millis(100));
        after = proxy.rss();
    }
    let closed = support::info_counter(&proxy, "clients_over_output_limit");
    let held = support::info_counter(&proxy, "client_output_bytes");
    let clients = proxy.cli(&["INFO"]);
    let clients = clients
        .lines()
        .find(|l| l.starts_with("connected_clients:"))
        .unwrap_or_default()
        .to_string();
    println!("after: {clients}, client_output_bytes:{held}");
    println!(
        "{readers} slow reader(s) ({closed} closed over limits.max_output_buffer), {} MiB of GETs sent: RSS baseline {} MiB, peak {} MiB, \
         {} MiB {:?} after they left; other client: {answered} GETs, worst {worst:?}",
        sent / MIB,
        baseline / MIB,
        peak / MIB,
        after / MIB,
        left.elapsed(),
    );
    assert!(
        peak < 1024 * MIB,
        "RSS peaked at {} MiB with {readers} slow reader(s)",
        peak / MIB
    );
    assert!(
        after < 128 * MIB,
        "RSS still {} MiB 10 s after the slow readers left",
        after / MIB
    );
    // The proxy is still fine for everyone.
    let got: String = redis::cmd("GET")
        .arg("{slow}small")
        .query(&mut con)
        .unwrap();
    assert_eq!(got, "x");
}

#[test]
fn one_slow_reader_holds_no_memory_and_no_one_up() {
    slow_readers(1);
}

#[test]
fn ten_slow_readers_hold_no_memory_and_no_one_up() {
    slow_readers(10);
}

#[test]
fn a_client_reading_a_big_pipeline_gets_every_reply_in_bounded_memory() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let mut con = proxy.client();
    // Each value names itself, so a reply in the wrong place shows.
    let values: Vec<String> = (0..4)
        .map(|i| format!("{i}").repeat(MIB as usize))
        .collect();
    for (i, v) in values.iter().enumerate() {
        let _: () = redis::cmd("SET")
            .arg(format!("big:{i}"))
            .arg(v)
            .query(&mut con)
            .unwrap();
    }
    let count = 2000;
    let mut raw = RawClient::connect(proxy.port());
    let mut pipeline = Vec::new();
    for n in 0..count {
        let key = format!("big:{}", n % values.len());
        pipeline.extend_from_slice(
            format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).as_bytes(),
        );
    }
    let pid_rss = {
        let pid = proxy.pid();
        move || support::rss_of(pid)
    };
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(pid_rss());
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };
    raw.write(&pipeline);
    // Read and compare as bytes, reply by reply (a debug build would spend most of the
    // test in UTF-8 checks of 2 GiB otherwise).
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 1 << 20];
    for n in 0..count {
        let want = &values[n % values.len()];
        let mut expected = format!("${}\r\n", want.len()).into_bytes();
        expected.extend_from_slice(want.as_bytes());
        expected.extend_from_slice(b"\r\n");
        while buf.len() < expected.len() {
            assert!(
                Instant::now() < deadline,
                "only {n} of {count} replies in 120 s"
            );
            match std::io::Read::read(&mut raw.stream, &mut chunk) {
                Ok(0) => panic!("slotgate closed the connection after {n} replies"),
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
                Err(_) => continue,
            }
        }
        assert!(
            buf[..expected.len()] == expected[..],
            "reply {n} is not value {}",
            n % values.len()
        );
        buf.drain(..expected.len());
    }
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    println!(
        "{count} pipelined 1 MiB GETs read back: slotgate's RSS peaked at {} MiB",
        peak / MIB
    );
    assert!(
        peak < 1024 * MIB,
        "RSS peaked at {} MiB for a client that reads",
        peak / MIB
    );
}

#[test]
fn all_clients_together_are_capped_by_max_output_total() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    // Each slow reader may hold up to its 4 MiB window; together they pass 8 MiB.
    let proxy = Proxy::start_with_config(
        &cluster.seeds(),
        "[limits]\nmax_output_total = 8388608\nreply_window = 4194304\n",
    );
    let mut con = proxy.client();
    let value = "v".repeat(MIB as usize);
    let _: () = redis::cmd("SET")
        .arg("total:big")
        .arg(&value)
        .query(&mut con)
        .unwrap();
    let mut readers: Vec<RawClient> = (0..4).map(|_| RawClient::connect(proxy.port())).collect();
    for r in &mut readers {
        r.write(&b"*2\r\n$3\r\nGET\r\n$9\r\ntotal:big\r\n".repeat(64));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while support::info_counter(&proxy, "clients_over_output_total") == 0 {
        assert!(
            Instant::now() < deadline,
            "no client was closed over limits.max_output_total:\n{}",
            proxy.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(proxy.log().contains("limits.max_output_total"));
    // Others are served as before.
    let got: String = redis::cmd("GET").arg("total:big").query(&mut con).unwrap();
    assert_eq!(got.len(), value.len());
}
