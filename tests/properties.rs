//! Properties over generated inputs (proptest):
//! - any sequence of valid requests, and of valid replies, cut at arbitrary byte
//!   boundaries scans to the same frames as the whole stream, and to what was encoded;
//! - the key slot slotgate computes equals a real node's `CLUSTER KEYSLOT`, for random
//!   keys and hash tags;
//! - `MGET`/`MSET`/`DEL`/`EXISTS` over random key sets, split per slot through slotgate
//!   in front of a cluster, reply as the same commands on a standalone server;
//! - the SCAN cursor slotgate hands out decodes to what it encoded.
//!
//! Case counts keep the file well under a minute; a failing case is shrunk and printed.

mod support;

use bytes::{BufMut, BytesMut};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use slotgate::dispatch::merge::ScanCursor;
use slotgate::protocol::scan::{Limits, ReplyScanner, RequestScanner};
use slotgate::slot::Slot;
use support::{require_redis, Cluster, Proxy, Standalone};

fn config(cases: u32) -> Config {
    Config {
        cases,
        // Regressions are printed with the failure; nothing is written beside the tests.
        failure_persistence: None,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------
// Requests and replies cut anywhere.

/// One request's arguments: a name and up to 6 arguments of any bytes.
fn request_args() -> impl Strategy<Value = Vec<Vec<u8>>> {
    (
        prop::collection::vec(prop::num::u8::ANY, 1..10),
        prop::collection::vec(prop::collection::vec(prop::num::u8::ANY, 0..24), 0..6),
    )
        .prop_map(|(name, rest)| std::iter::once(name).chain(rest).collect())
}

/// An inline command's words: letters, digits and a few symbols Redis splits plainly.
fn inline_words() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let word_byte = prop::sample::select(b"abcxyzABC019:_-.{}".to_vec());
    prop::collection::vec(prop::collection::vec(word_byte, 1..10), 1..5)
}

/// A request as bytes (a RESP array, or an inline line) and the arguments it carries.
fn request() -> impl Strategy<Value = (Vec<u8>, Vec<Vec<u8>>)> {
    prop_oneof![
        4 => request_args().prop_map(|args| (encode_request(&args), args)),
        1 => inline_words().prop_map(|words| (inline_line(&words), words)),
    ]
}

fn encode_request(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn inline_line(words: &[Vec<u8>]) -> Vec<u8> {
    let mut out = words.join(&b' ');
    out.extend_from_slice(b"\r\n");
    out
}

/// A stream's bytes cut into pieces at the given points (taken modulo its length).
fn pieces(stream: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    at.sort_unstable();
    let mut out = Vec::new();
    let mut from = 0;
    for cut in at.into_iter().chain([stream.len()]) {
        out.push(stream[from..cut].to_vec());
        from = cut;
    }
    out
}

/// Every request scanned from `pieces` appended one after another.
fn scan_requests(pieces: &[Vec<u8>]) -> Vec<Vec<Vec<u8>>> {
    let mut scanner = RequestScanner::new(Limits::default());
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        while let Some(request) = scanner.next_request(&mut buf).expect("valid requests") {
            out.push(request.args().map(<[u8]>::to_vec).collect());
        }
    }
    assert!(buf.is_empty(), "{} bytes left unscanned", buf.len());
    out
}

#[test]
fn requests_cut_at_any_byte_scan_to_the_same_requests() {
    let strategy = (
        prop::collection::vec(request(), 1..12),
        prop::collection::vec(any::<usize>(), 0..16),
    );
    TestRunner::new(config(400))
        .run(&strategy, |(requests, cuts)| {
            let stream: Vec<u8> = requests.iter().flat_map(|(b, _)| b.clone()).collect();
            let expected: Vec<Vec<Vec<u8>>> = requests.into_iter().map(|(_, a)| a).collect();
            prop_assert_eq!(&scan_requests(std::slice::from_ref(&stream)), &expected);
            prop_assert_eq!(&scan_requests(&pieces(&stream, &cuts)), &expected);
            Ok(())
        })
        .unwrap();
}

/// A RESP2 or RESP3 reply frame, nested up to 3 levels.
fn reply() -> impl Strategy<Value = Vec<u8>> {
    let text = || prop::collection::vec(prop::sample::select(b"abc OKxyz019-.".to_vec()), 0..16);
    let blob = || prop::collection::vec(prop::num::u8::ANY, 0..32);
    let leaf = prop_oneof![
        text().prop_map(|t| [b"+".as_ref(), &t, b"\r\n"].concat()),
        text().prop_map(|t| [b"-ERR ".as_ref(), &t, b"\r\n"].concat()),
        any::<i64>().prop_map(|n| format!(":{n}\r\n").into_bytes()),
        blob().prop_map(|b| [format!("${}\r\n", b.len()).as_bytes(), &b, b"\r\n"].concat()),
        Just(b"$-1\r\n".to_vec()),
        Just(b"*-1\r\n".to_vec()),
        Just(b"_\r\n".to_vec()),
        any::<bool>().prop_map(|b| if b {
            b"#t\r\n".to_vec()
        } else {
            b"#f\r\n".to_vec()
        }),
        any::<f64>().prop_map(|f| format!(",{f}\r\n").into_bytes()),
        (1u64..).prop_map(|n| format!("({n}{n}\r\n").into_bytes()),
        blob().prop_map(|b| [format!("!{}\r\n", b.len()).as_bytes(), &b, b"\r\n"].concat()),
        blob().prop_map(|b| [format!("={}\r\ntxt:", b.len() + 4).as_bytes(), &b, b"\r\n"].concat()),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        let items = prop::collection::vec(inner, 0..6);
        (prop::sample::select(b"*~>%|".to_vec()), items).prop_map(|(ty, items)| {
            let mut out = Vec::new();
            match ty {
                // A map or an attribute needs pairs; an attribute annotates one more value.
                b'%' | b'|' => {
                    let pairs = items.len() / 2;
                    out.extend_from_slice(format!("{}{pairs}\r\n", ty as char).as_bytes());
                    items[..pairs * 2]
                        .iter()
                        .for_each(|i| out.extend_from_slice(i));
                    if ty == b'|' {
                        out.extend_from_slice(b":1\r\n");
                    }
                }
                _ => {
                    out.extend_from_slice(format!("{}{}\r\n", ty as char, items.len()).as_bytes());
                    items.iter().for_each(|i| out.extend_from_slice(i));
                }
            }
            out
        })
    })
}

/// The length of every frame scanned from `pieces` appended one after another.
fn scan_replies(pieces: &[Vec<u8>]) -> Vec<usize> {
    let mut scanner = ReplyScanner::new(Limits::default());
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in pieces {
        buf.put_slice(piece);
        while let Some(len) = scanner.scan(&buf).expect("valid replies") {
            out.push(len);
            let _ = buf.split_to(len);
        }
    }
    assert!(buf.is_empty(), "{} bytes left unscanned", buf.len());
    out
}

#[test]
fn replies_cut_at_any_byte_scan_to_the_same_frames() {
    let strategy = (
        prop::collection::vec(reply(), 1..10),
        prop::collection::vec(any::<usize>(), 0..16),
    );
    TestRunner::new(config(400))
        .run(&strategy, |(replies, cuts)| {
            let stream = replies.concat();
            let expected: Vec<usize> = replies.iter().map(Vec::len).collect();
            prop_assert_eq!(&scan_replies(std::slice::from_ref(&stream)), &expected);
            prop_assert_eq!(&scan_replies(&pieces(&stream, &cuts)), &expected);
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------
// Key slots against a real node.

/// A key: random bytes, or built around a hash tag (`pre{tag}post`, empty tags, nested
/// and unbalanced braces).
fn key() -> impl Strategy<Value = Vec<u8>> {
    let part = || prop::collection::vec(prop::sample::select(b"ab{}x0\x00\xff".to_vec()), 0..6);
    prop_oneof![
        prop::collection::vec(prop::num::u8::ANY, 0..24),
        (part(), part(), part())
            .prop_map(|(a, tag, b)| [a, b"{".to_vec(), tag, b"}".to_vec(), b].concat()),
        prop::collection::vec(prop::sample::select(b"{}ab".to_vec()), 0..12),
    ]
}

#[test]
fn key_slots_match_cluster_keyslot_on_a_real_node() {
    require_redis();
    let cluster = Cluster::start(1, 0);
    // TestRunner::run takes an `Fn`: the connection is borrowed per case.
    let node = std::cell::RefCell::new(cluster.node_client(cluster.ports()[0]));
    TestRunner::new(config(24))
        .run(&prop::collection::vec(key(), 64), |keys| {
            let mut pipe = redis::pipe();
            for key in &keys {
                pipe.cmd("CLUSTER").arg("KEYSLOT").arg(key);
            }
            let theirs: Vec<u16> = pipe
                .query(&mut *node.borrow_mut())
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            for (key, slot) in keys.iter().zip(theirs) {
                prop_assert_eq!(
                    Slot::of_key(key).get(),
                    slot,
                    "key {:?}",
                    String::from_utf8_lossy(key)
                );
            }
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------
// Split and merge against a standalone server.

/// One multi-key command over a small key space (keys share hash tags in places, so
/// some sets fall in one slot and most in several).
#[derive(Debug, Clone)]
enum Multi {
    Mget(Vec<usize>),
    Mset(Vec<(usize, u8)>),
    Del(Vec<usize>),
    Exists(Vec<usize>),
}

const KEYS: [&str; 12] = [
    "a", "b", "c", "{t}1", "{t}2", "{t}3", "user:1", "user:2", "{user}:x", "{user}:y", "z{a}", "",
];

fn multi() -> impl Strategy<Value = Multi> {
    let keys = || prop::collection::vec(0..KEYS.len(), 1..9);
    prop_oneof![
        keys().prop_map(Multi::Mget),
        prop::collection::vec((0..KEYS.len(), any::<u8>()), 1..7).prop_map(Multi::Mset),
        keys().prop_map(Multi::Del),
        keys().prop_map(Multi::Exists),
    ]
}

impl Multi {
    fn cmd(&self, prefix: &str) -> redis::Cmd {
        let key = |i: &usize| format!("{prefix}{}", KEYS[*i]);
        let (name, keys) = match self {
            Multi::Mget(k) => ("MGET", k),
            Multi::Del(k) => ("DEL", k),
            Multi::Exists(k) => ("EXISTS", k),
            Multi::Mset(pairs) => {
                let mut cmd = redis::cmd("MSET");
                for (i, v) in pairs {
                    cmd.arg(key(i)).arg(format!("v{v}"));
                }
                return cmd;
            }
        };
        let mut cmd = redis::cmd(name);
        keys.iter().for_each(|i| {
            cmd.arg(key(i));
        });
        cmd
    }
}

#[test]
fn split_mget_mset_del_exists_reply_as_a_standalone_server() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let standalone = Standalone::start();
    // TestRunner::run takes an `Fn`: the connections are borrowed per case.
    let through = std::cell::RefCell::new(proxy.client());
    let plain = std::cell::RefCell::new(standalone.client());
    let case = std::cell::Cell::new(0u32);
    TestRunner::new(config(40))
        .run(&prop::collection::vec(multi(), 1..12), |commands| {
            // Each case has keys of its own: a prefix outside the tags keeps their slots
            // apart from the previous cases' and the tags' groupings as they are.
            case.set(case.get() + 1);
            let prefix = format!("p{}:", case.get());
            for command in &commands {
                let cmd = command.cmd(&prefix);
                let ours: redis::RedisResult<redis::Value> = cmd.query(&mut *through.borrow_mut());
                let theirs: redis::RedisResult<redis::Value> = cmd.query(&mut *plain.borrow_mut());
                prop_assert_eq!(
                    format!("{ours:?}"),
                    format!("{theirs:?}"),
                    "{:?} through slotgate vs standalone",
                    command
                );
            }
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------
// SCAN cursors.

#[test]
fn scan_cursors_round_trip() {
    let cursor = (
        0..ScanCursor::SHARDS_MAX,
        0..=ScanCursor::NODE_MAX,
        any::<u8>(),
        any::<bool>(),
    );
    TestRunner::new(config(2000))
        .run(&cursor, |(shard, node, fingerprint, rescan)| {
            let cursor = ScanCursor {
                shard,
                node,
                fingerprint,
                rescan,
            };
            let text = cursor.encode().to_string();
            prop_assert_eq!(ScanCursor::decode(text.as_bytes()), Ok(cursor));
            Ok(())
        })
        .unwrap();
    // Any number a client sends back decodes to a cursor that encodes to that number.
    TestRunner::new(config(2000))
        .run(&any::<u64>(), |n| {
            let cursor = ScanCursor::decode(n.to_string().as_bytes());
            prop_assert_eq!(cursor.map(ScanCursor::encode), Ok(n));
            Ok(())
        })
        .unwrap();
}
