//! Client limits. `limits.max_pipeline`: a client with more requests outstanding than
//! the limit is read in steps (slotgate stops reading, then resumes as replies leave)
//! and still gets every reply, in order — even when the rest of its pipeline already
//! sits in the socket, so no new readiness event will announce it. `max_clients`:
//! clients over the limit are told so and closed; the others are unaffected.

mod support;

use std::time::Duration;

use support::{keys_on_every_master, require_redis, Cluster, Proxy, RawClient};

#[test]
fn a_pipeline_far_over_max_pipeline_is_served_in_order() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let keys = keys_on_every_master(&cluster, "pipe", 1);
    let proxy = Proxy::start_with_config(&cluster.seeds(), "[limits]\nmax_pipeline = 8\n");
    let mut con = proxy.client();

    // 9,000 INCRs round-robin over a key on each master, sent as one pipeline: the
    // client writes them all before reading, so they wait in the socket while the
    // proxy holds at most 8 unanswered.
    let rounds = 3_000;
    let mut pipe = redis::pipe();
    for _ in 0..rounds {
        for key in &keys {
            pipe.cmd("INCR").arg(key);
        }
    }
    // On a thread, so a proxy that stops reading for good fails the test, not hangs it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let replies: redis::RedisResult<Vec<i64>> = pipe.query(&mut con);
        let _ = tx.send((replies, con));
    });
    let (replies, mut con) = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("no complete answer within 60 s: reading stalled at max_pipeline?");
    let replies = replies.unwrap();
    assert_eq!(replies.len(), rounds * keys.len());
    for (i, got) in replies.iter().enumerate() {
        let want = (i / keys.len()) as i64 + 1;
        assert_eq!(*got, want, "reply {i} out of order");
    }
    // The session is still usable afterwards.
    let n: i64 = redis::cmd("GET").arg(&keys[0]).query(&mut con).unwrap();
    assert_eq!(n, rounds as i64);
}

#[test]
fn clients_over_max_clients_are_refused_with_an_error() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start_with_config(&cluster.seeds(), "max_clients = 2\n");

    let mut first = RawClient::connect(proxy.port());
    let mut second = RawClient::connect(proxy.port());
    assert_eq!(first.roundtrip(b"PING\r\n"), "+PONG\r\n");
    assert_eq!(second.roundtrip(b"PING\r\n"), "+PONG\r\n");
    // The third is told why, then closed; the first two are unaffected.
    let mut third = RawClient::connect(proxy.port());
    assert_eq!(third.read_quiet(), "-ERR max number of clients reached\r\n");
    assert!(third.is_closed());
    assert_eq!(first.roundtrip(b"PING\r\n"), "+PONG\r\n");

    // Once one leaves, a new client gets in (as soon as the proxy saw it leave).
    drop(second);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = RawClient::connect(proxy.port());
        // A refused client hears so at once; an accepted one hears nothing until it asks.
        let greeting = again.read_quiet();
        if greeting.is_empty() {
            assert_eq!(again.roundtrip(b"PING\r\n"), "+PONG\r\n");
            break;
        }
        assert_eq!(greeting, "-ERR max number of clients reached\r\n");
        assert!(
            std::time::Instant::now() < deadline,
            "no room for a new client after one left"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_client_over_max_output_buffer_is_closed_and_others_are_served() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy =
        Proxy::start_with_config(&cluster.seeds(), "[limits]\nmax_output_buffer = 1048576\n");
    let value = "v".repeat(128 * 1024);
    let mut con = proxy.client();
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(&value)
        .query(&mut con)
        .unwrap();

    // 400 GETs of 128 KiB (50 MiB of replies) from a client that reads nothing: more
    // than the sockets hold, so replies wait in slotgate until the 1 MiB limit.
    let mut raw = RawClient::connect(proxy.port());
    raw.write(&b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n".repeat(400));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while support::info_counter(&proxy, "clients_over_output_limit") == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the client was not closed:\n{}",
            proxy.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // It finds the connection closed after what the sockets held, short of 400 replies.
    let mut received = 0usize;
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        match std::io::Read::read(&mut raw.stream, &mut chunk) {
            Ok(0) => break,
            Ok(n) => received += n,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                assert!(std::time::Instant::now() < deadline, "no end of stream");
            }
            Err(_) => break,
        }
    }
    assert!(received < 400 * value.len(), "got all {received} bytes");
    assert!(proxy.log().contains("limits.max_output_buffer"));
    // Everyone else is unaffected.
    let v: String = redis::cmd("GET").arg("big").query(&mut con).unwrap();
    assert_eq!(v.len(), value.len());
}
