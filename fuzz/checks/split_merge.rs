//! Split and merge: a multi-key request cut per slot and its parts' replies made into
//! the client's one reply; and every merge policy over whatever replies nodes send.
//!
//! Structured mode (byte 0 < 0x80): `MGET`/`MSET`/`DEL`/`UNLINK`/`EXISTS`/`TOUCH` over
//! the keys in the input (separated by `\n`), answered by simulated nodes that all hold
//! the same data. Invariants:
//! - each part is one request naming the command as the client wrote it, its keys all of
//!   the part's slot, the slots distinct; the parts hold every key (`MSET`: with its
//!   value) in the client's order;
//! - the merged reply equals what one standalone server holding that data answers (for
//!   `MGET`: the values in the client's key order), in the client's protocol;
//! - when parts fail, the client gets the first failed part's error.
//!
//! Raw mode (byte 0 >= 0x80): the rest is node replies, one frame per part, merged with
//! the policy byte 1 picks. Invariant: the merged reply is exactly one complete frame.

use bytes::{Bytes, BytesMut};
use slotgate::clients::SubscriptionCounts;
use slotgate::dispatch::merge::{merge, Merge, ScanCursor};
use slotgate::dispatch::split::split;
use slotgate::protocol::reply::{Proto, ReplyWriter};
use slotgate::protocol::scan::{Limits, ReplyScanner, RequestScanner};
use slotgate::slot::Slot;

const COMMANDS: [&[u8]; 6] = [b"MGET", b"mset", b"DEL", b"exists", b"Unlink", b"TOUCH"];

/// The simulated data set: a key exists when its bytes sum to an even number; its value
/// is the key reversed.
fn value_of(key: &[u8]) -> Option<Vec<u8>> {
    let sum: u32 = key.iter().map(|&b| u32::from(b)).sum();
    (sum % 2 == 0).then(|| key.iter().rev().copied().collect())
}

fn one_frame(reply: &[u8]) {
    assert_eq!(
        ReplyScanner::new(Limits::default()).scan(reply),
        Ok(Some(reply.len())),
        "the merged reply is one whole frame: {reply:?}"
    );
}

/// What a standalone server answers to `args` over the simulated data.
fn standalone(args: &[Vec<u8>], proto: Proto) -> Bytes {
    let name = args[0].to_ascii_lowercase();
    let keys = &args[1..];
    let mut out = BytesMut::new();
    let mut w = ReplyWriter {
        out: &mut out,
        proto,
    };
    match &name[..] {
        b"mget" => {
            w.array(keys.len());
            for key in keys {
                match value_of(key) {
                    Some(v) => w.bulk(&v),
                    None => w.null(),
                }
            }
        }
        b"mset" => w.ok(),
        b"del" | b"unlink" => {
            let mut distinct: Vec<&Vec<u8>> = keys.iter().collect();
            distinct.sort();
            distinct.dedup();
            w.int(distinct.iter().filter(|k| value_of(k).is_some()).count() as i64);
        }
        _ => w.int(keys.iter().filter(|k| value_of(k).is_some()).count() as i64),
    }
    out.freeze()
}

fn structured(control: u8, fail: u8, rest: &[u8]) {
    let name = COMMANDS[usize::from(control) % COMMANDS.len()];
    let proto = if control & 0x40 != 0 {
        Proto::Resp3
    } else {
        Proto::Resp2
    };
    let mut args: Vec<Vec<u8>> = vec![name.to_vec()];
    args.extend(rest.split(|&b| b == b'\n').map(<[u8]>::to_vec));
    let mset = name.eq_ignore_ascii_case(b"mset");
    if mset && args.len() % 2 == 0 {
        args.pop();
    }
    if args.len() < 2 {
        return;
    }
    let step = if mset { 2 } else { 1 };
    let the_split = split(&args);
    // Every part: one request, the client's command name, keys of its slot only.
    let mut slots = Vec::new();
    let mut part_args = Vec::new();
    for (bytes, slot) in &the_split.parts {
        let mut buf = BytesMut::from(&bytes[..]);
        let request = RequestScanner::new(Limits::default())
            .next_request(&mut buf)
            .expect("a part scans")
            .expect("a part is whole");
        assert!(buf.is_empty(), "a part is one request");
        let a: Vec<Vec<u8>> = request.args().map(<[u8]>::to_vec).collect();
        assert_eq!(
            a[0], name,
            "the part names the command as the client wrote it"
        );
        assert!(a.len() > 1 && (a.len() - 1) % step == 0);
        for key in a[1..].iter().step_by(step) {
            assert_eq!(Slot::of_key(key), *slot, "a part's keys are of its slot");
        }
        assert!(!slots.contains(slot), "one part per slot");
        slots.push(*slot);
        part_args.push(a);
    }
    // The parts hold the client's key (and value) groups, each part in client order.
    let groups: Vec<&[Vec<u8>]> = args[1..].chunks(step).collect();
    let mut taken = vec![0usize; part_args.len()];
    for group in &groups {
        let part = slots
            .iter()
            .position(|s| *s == Slot::of_key(&group[0]))
            .expect("the key's slot has a part");
        let at = 1 + taken[part] * step;
        assert_eq!(&part_args[part][at..at + step], *group, "groups in order");
        taken[part] += 1;
    }
    for (part, n) in taken.iter().enumerate() {
        assert_eq!(
            1 + n * step,
            part_args[part].len(),
            "nothing else in a part"
        );
    }
    if let Merge::Interleave(order) = &the_split.merge {
        assert_eq!(order.len(), groups.len());
    }
    // Each part answered by a node holding the simulated data; some may fail.
    let failing = |i: usize| {
        fail & 0x80 != 0 && (i == usize::from(fail & 7) || i == usize::from(fail >> 3 & 7))
    };
    let replies: Vec<_> = part_args
        .iter()
        .enumerate()
        .map(|(i, a)| {
            if failing(i) {
                Ok(Bytes::from(format!("-ERR part {i} failed\r\n")))
            } else {
                Ok(standalone(a, proto))
            }
        })
        .collect();
    let merged = merge(&the_split.merge, replies, proto).expect("no backend error");
    let first_failed = (0..part_args.len()).find(|&i| failing(i));
    match first_failed {
        Some(i) => assert_eq!(merged, Bytes::from(format!("-ERR part {i} failed\r\n"))),
        None => assert_eq!(merged, standalone(&args, proto), "merged equals standalone"),
    }
}

fn raw(pick: u8, rest: &[u8]) {
    let proto = if pick & 0x80 != 0 {
        Proto::Resp3
    } else {
        Proto::Resp2
    };
    let mut parts = Vec::new();
    let mut buf = rest;
    while !buf.is_empty() && parts.len() < 16 {
        match ReplyScanner::new(Limits::default()).scan(buf) {
            Ok(Some(len)) => {
                parts.push(Bytes::copy_from_slice(&buf[..len]));
                buf = &buf[len..];
            }
            _ => break,
        }
    }
    if parts.is_empty() {
        return;
    }
    let nodes: Vec<String> = (0..parts.len())
        .map(|i| format!("127.0.0.1:{}", 7000 + i))
        .collect();
    let counts = SubscriptionCounts {
        clients: u64::from(pick & 3),
        at_nodes: u64::from(pick >> 2 & 3),
    };
    let policy = match pick & 0x1f {
        0 => Merge::Interleave(
            buf.iter()
                .map(|&b| u16::from(b) % parts.len() as u16)
                .collect(),
        ),
        1 => Merge::Sum,
        2 => Merge::AllOk,
        3 => Merge::Concat,
        4 => Merge::Union,
        5 => Merge::AllOnes,
        6 => Merge::Same,
        7 => Merge::FirstNonNull,
        8 => Merge::AnyOk,
        9 => Merge::NumSub(vec![counts; usize::from(pick >> 5)]),
        10 => Merge::NumPat(counts),
        11 => Merge::Tagged { nodes },
        12 => Merge::Texts { nodes },
        13 => Merge::SlowlogGet { count: None, nodes },
        14 => Merge::SlowlogGet {
            count: Some(i64::from(pick >> 5) - 2),
            nodes,
        },
        15 => Merge::LatencyHistogram,
        16 => Merge::FunctionStats,
        17 => Merge::Scan {
            at: ScanCursor::shard_start(1, 2, false),
            next: Some(ScanCursor::shard_start(2, 2, pick & 0x20 != 0)),
        },
        18 => Merge::Scan {
            at: ScanCursor::shard_start(3, 0, true),
            next: None,
        },
        _ => return,
    };
    let merged =
        merge(&policy, parts.into_iter().map(Ok).collect(), proto).expect("no backend error");
    one_frame(&merged);
}

/// One fuzz input through the checks above; panics on a broken invariant.
pub fn run(data: &[u8]) {
    let [control, second, rest @ ..] = data else {
        return;
    };
    if control & 0x80 == 0 {
        structured(*control, *second, rest);
    } else {
        raw(*second, rest);
    }
}
