//! Micro-benchmarks of the pure hot-path pieces: slot hashing, request scanning with
//! classification and key extraction, and reply boundary scanning.
//!
//! `cargo bench --bench hot_path` runs them all in about a minute; a name filter runs
//! some (`cargo bench --bench hot_path -- slot`). Throughput is reported per key, per
//! request or per reply, so a change to the buffers does not change the unit.

use std::hint::black_box;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use slotgate::command::classify;
use slotgate::protocol::scan::{Limits, ReplyScanner, RequestScanner};
use slotgate::slot::Slot;

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

// ---- slot hashing ----

fn slot_hashing(c: &mut Criterion) {
    let long_plain: Vec<u8> = (0..100).map(|i| b'a' + (i % 26) as u8).collect();
    // 100 bytes with a short tag near the front, as `{user1000}.followers:...` keys are.
    let mut long_tagged = b"{user1000}.".to_vec();
    long_tagged.extend((0..89).map(|i| b'a' + (i % 26) as u8));
    assert_eq!(long_plain.len(), 100);
    assert_eq!(long_tagged.len(), 100);

    let keys: [(&str, &[u8]); 4] = [
        ("short", b"key:000042"),
        ("short_tag", b"{u42}:name"),
        ("100b", &long_plain),
        ("100b_tag", &long_tagged),
    ];
    let mut group = c.benchmark_group("slot_of_key");
    group.throughput(Throughput::Elements(1));
    for (name, key) in keys {
        group.bench_function(name, |b| b.iter(|| Slot::of_key(black_box(key))));
    }
    group.finish();
}

// ---- request scanning + classification + key extraction ----

fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A pipeline as a client sends it: mostly GET and SET (64-byte values, as
/// `redis-benchmark -d 64`), with a 3-key MGET and a 2-key EVAL mixed in.
fn request_pipeline(count: usize) -> Vec<u8> {
    let value = [b'x'; 64];
    let mut buf = Vec::new();
    for i in 0..count {
        let k1 = format!("key:{:06}", i);
        let k2 = format!("{{tag}}:a:{i}");
        let k3 = format!("{{tag}}:b:{i}");
        let req = match i % 8 {
            0..=3 => resp(&[b"GET", k1.as_bytes()]),
            4..=5 => resp(&[b"SET", k1.as_bytes(), &value]),
            6 => resp(&[b"MGET", k2.as_bytes(), k3.as_bytes(), b"{tag}:c"]),
            _ => resp(&[
                b"EVAL",
                b"return redis.call('GET', KEYS[1])",
                b"2",
                k2.as_bytes(),
                k3.as_bytes(),
                b"arg",
            ]),
        };
        buf.extend_from_slice(&req);
    }
    buf
}

fn request_path(c: &mut Criterion) {
    const REQUESTS: usize = 256;
    let wire = request_pipeline(REQUESTS);
    let mut group = c.benchmark_group("request");
    group.throughput(Throughput::Elements(REQUESTS as u64));

    // Scanning alone: where each request and its arguments lie.
    group.bench_function("scan", |b| {
        let mut scanner = RequestScanner::new(Limits::default());
        b.iter_batched_ref(
            || BytesMut::from(&wire[..]),
            |buf| {
                let mut n = 0;
                while let Some(req) = scanner.next_request(buf).expect("valid pipeline") {
                    black_box(&req);
                    n += 1;
                }
                assert_eq!(n, REQUESTS);
            },
            BatchSize::SmallInput,
        )
    });

    // What the session does per request before routing: scan, classify, hash each key.
    group.bench_function("scan_classify_keys", |b| {
        let mut scanner = RequestScanner::new(Limits::default());
        b.iter_batched_ref(
            || BytesMut::from(&wire[..]),
            |buf| {
                let mut slots = 0u32;
                while let Some(req) = scanner.next_request(buf).expect("valid pipeline") {
                    let classified = classify(&req).expect("known command");
                    for i in classified.keys.iter() {
                        slots = slots.wrapping_add(u32::from(Slot::of_key(req.arg(i)).get()));
                    }
                }
                black_box(slots)
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

// ---- reply boundary scanning ----

/// Replies as nodes send them: +OK, 64-byte bulks, integers, 3-element arrays, a null,
/// an error, and one 16 KiB bulk per buffer.
fn reply_stream(count: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    let bulk64 = [b'v'; 64];
    for i in 0..count {
        match i % 8 {
            0 | 1 => buf.extend_from_slice(b"+OK\r\n"),
            2..=4 => {
                buf.extend_from_slice(b"$64\r\n");
                buf.extend_from_slice(&bulk64);
                buf.extend_from_slice(b"\r\n");
            }
            5 => buf.extend_from_slice(format!(":{}\r\n", 1000 + i).as_bytes()),
            6 => buf.extend_from_slice(b"*3\r\n$3\r\nfoo\r\n$-1\r\n:42\r\n"),
            _ => buf.extend_from_slice(b"-ERR wrong number of arguments for 'get' command\r\n"),
        }
    }
    buf.extend_from_slice(b"$16384\r\n");
    buf.resize(buf.len() + 16384, b'z');
    buf.extend_from_slice(b"\r\n");
    buf
}

fn reply_path(c: &mut Criterion) {
    const REPLIES: usize = 255;
    let wire = reply_stream(REPLIES);
    let mut group = c.benchmark_group("reply");
    group.throughput(Throughput::Elements(REPLIES as u64 + 1));
    group.bench_function("scan", |b| {
        let mut scanner = ReplyScanner::new(Limits::default());
        b.iter(|| {
            let mut at = 0;
            let mut n = 0;
            while at < wire.len() {
                let len = scanner
                    .scan(black_box(&wire[at..]))
                    .expect("valid replies")
                    .expect("complete reply");
                at += len;
                n += 1;
            }
            assert_eq!(n, REPLIES + 1);
            black_box(at)
        })
    });

    // The same replies without the 16 KiB bulk, so small-reply cost is visible alone.
    let small_end = wire.len() - (16384 + 10);
    let small = &wire[..small_end];
    group.throughput(Throughput::Elements(REPLIES as u64));
    group.bench_function("scan_small_only", |b| {
        let mut scanner = ReplyScanner::new(Limits::default());
        b.iter(|| {
            let mut at = 0;
            while at < small.len() {
                at += scanner
                    .scan(black_box(&small[at..]))
                    .expect("valid replies")
                    .expect("complete reply");
            }
            black_box(at)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = slot_hashing, request_path, reply_path
}
criterion_main!(benches);
