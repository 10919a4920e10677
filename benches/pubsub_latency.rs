//! Pub/sub message delivery latency through slotgate against direct to a node, in one
//! run: the time from writing `PUBLISH` (or `SPUBLISH`) on one connection until the
//! message is read on a subscribed one, one message at a time. Run by
//! `benches/pubsub_latency.sh`, which starts the cluster and slotgate and sets:
//!
//! - `PUBSUB_SLOTGATE`: slotgate's `host:port`;
//! - `PUBSUB_NODES`: the masters' `host:port`, comma-separated;
//! - `PUBSUB_MESSAGES` (per case and round, default 5000), `PUBSUB_ROUNDS` (default 3),
//!   `PUBSUB_SECONDS` (the whole run stops after this, default 300).
//!
//! Cases, interleaved round after round: plain channels published and subscribed at
//! one node; published at one node and subscribed at another (the cluster bus carries
//! every `PUBLISH` to every node); both through slotgate (which publishes at one master
//! and subscribes at one master, the same or not); shard channels at the slot's master,
//! directly and through slotgate. Plain RESP2 over loopback, no client library.
//! Without `PUBSUB_SLOTGATE` it says how to run it and exits.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A connection's reads wait at most this long: a lost message stops the run.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Messages sent before each case's measured ones.
const WARMUP: usize = 200;
/// The shard channels' hash tag: every one of them lives in one slot.
const TAG: &str = "{pubsub-latency}";

/// A RESP2 value, as far as this bench reads them. The texts and numbers are only
/// shown (through `Debug`) when a reply is not what the bench expects.
#[derive(Debug)]
#[allow(dead_code)]
enum Value {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Value>),
}

struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(addr: &str) -> Conn {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        Conn {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    fn send(&mut self, args: &[&[u8]]) {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&out).expect("write");
    }

    fn read(&mut self) -> Value {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .expect("read (a message did not arrive in time?)");
        let line = line.trim_end_matches("\r\n");
        let (kind, rest) = line.split_at(1);
        match kind {
            "+" => Value::Simple(rest.to_string()),
            "-" => Value::Error(rest.to_string()),
            ":" => Value::Int(rest.parse().expect("integer")),
            "$" => match rest.parse::<i64>().expect("length") {
                -1 => Value::Bulk(None),
                len => {
                    let mut body = vec![0; len as usize + 2];
                    self.reader.read_exact(&mut body).expect("bulk");
                    body.truncate(len as usize);
                    Value::Bulk(Some(body))
                }
            },
            "*" => {
                let len: i64 = rest.parse().expect("length");
                Value::Array((0..len.max(0)).map(|_| self.read()).collect())
            }
            _ => panic!("unexpected reply line {line:?}"),
        }
    }

    fn call(&mut self, args: &[&[u8]]) -> Value {
        self.send(args);
        self.read()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Shard,
}

struct Case {
    name: &'static str,
    kind: Kind,
    publish_at: String,
    subscribe_at: String,
    samples: Vec<u64>,
}

/// Publish `messages` messages (after a warm-up) on a fresh pair of connections,
/// one at a time; the nanoseconds each took to arrive.
fn run(case: &Case, channel: &str, messages: usize, deadline: Instant) -> Vec<u64> {
    let (subscribe, publish, message): (&[u8], &[u8], &str) = match case.kind {
        Kind::Plain => (b"SUBSCRIBE", b"PUBLISH", "message"),
        Kind::Shard => (b"SSUBSCRIBE", b"SPUBLISH", "smessage"),
    };
    let mut sub = Conn::open(&case.subscribe_at);
    match sub.call(&[subscribe, channel.as_bytes()]) {
        Value::Array(confirmation) if confirmation.len() == 3 => {}
        other => panic!("{}: subscribing: {other:?}", case.name),
    }
    let mut publisher = Conn::open(&case.publish_at);
    let mut samples = Vec::with_capacity(messages);
    for i in 0..WARMUP + messages {
        assert!(Instant::now() < deadline, "the run took too long");
        let payload = i.to_string();
        let start = Instant::now();
        publisher.send(&[publish, channel.as_bytes(), payload.as_bytes()]);
        match sub.read() {
            Value::Array(parts) => match &parts[..] {
                [Value::Bulk(Some(kind)), _, Value::Bulk(Some(body))]
                    if kind == message.as_bytes() && body == payload.as_bytes() => {}
                other => panic!("{}: unexpected message {other:?}", case.name),
            },
            other => panic!("{}: unexpected frame {other:?}", case.name),
        }
        let took = start.elapsed().as_nanos() as u64;
        // The receivers at the node it was published at (0 across the bus).
        match publisher.read() {
            Value::Int(_) => {}
            other => panic!("{}: {publish:?} answered {other:?}", case.name),
        }
        if i >= WARMUP {
            samples.push(took);
        }
    }
    samples
}

/// The master that owns the shard channels' slot: the one that takes an `SPUBLISH`
/// of one without `MOVED`.
fn shard_owner(nodes: &[String]) -> String {
    let channel = format!("{TAG}probe");
    for node in nodes {
        let mut conn = Conn::open(node);
        if let Value::Int(_) = conn.call(&[b"SPUBLISH", channel.as_bytes(), b"x"]) {
            return node.clone();
        }
    }
    panic!("no node of {nodes:?} owns the slot of {channel}");
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: not a number: {v}"))
        })
        .unwrap_or(default)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at] as f64 / 1000.0
}

fn main() {
    let Ok(slotgate) = std::env::var("PUBSUB_SLOTGATE") else {
        eprintln!(
            "pubsub_latency: run benches/pubsub_latency.sh (it starts a cluster and slotgate)"
        );
        return;
    };
    let nodes: Vec<String> = std::env::var("PUBSUB_NODES")
        .expect("PUBSUB_NODES")
        .split(',')
        .map(str::to_string)
        .collect();
    let messages = env_number("PUBSUB_MESSAGES", 5000);
    let rounds = env_number("PUBSUB_ROUNDS", 3);
    let deadline = Instant::now() + Duration::from_secs(env_number("PUBSUB_SECONDS", 300) as u64);
    let owner = shard_owner(&nodes);
    let other = nodes
        .iter()
        .find(|n| **n != owner)
        .expect("two masters")
        .clone();
    let case = |name, kind, publish_at: &str, subscribe_at: &str| Case {
        name,
        kind,
        publish_at: publish_at.to_string(),
        subscribe_at: subscribe_at.to_string(),
        samples: Vec::new(),
    };
    let mut cases = vec![
        case("direct, one node", Kind::Plain, &owner, &owner),
        case("direct, across the bus", Kind::Plain, &owner, &other),
        case("slotgate", Kind::Plain, &slotgate, &slotgate),
        case("direct, shard channel", Kind::Shard, &owner, &owner),
        case("slotgate, shard channel", Kind::Shard, &slotgate, &slotgate),
    ];
    for round in 0..rounds {
        for (i, case) in cases.iter_mut().enumerate() {
            let channel = format!("{TAG}r{round}c{i}");
            let samples = run(case, &channel, messages, deadline);
            case.samples.extend(samples);
        }
        eprintln!("pubsub_latency: round {} of {rounds} done", round + 1);
    }
    println!(
        "Pub/sub delivery latency, PUBLISH written -> message read, one at a time, {rounds} \
         rounds x {messages} messages per case (µs):"
    );
    println!(
        "{:<26}{:>9}{:>9}{:>9}{:>9}{:>9}",
        "case", "n", "p50", "p99", "p99.9", "max"
    );
    for case in &mut cases {
        case.samples.sort_unstable();
        let s = &case.samples;
        println!(
            "{:<26}{:>9}{:>9.1}{:>9.1}{:>9.1}{:>9.1}",
            case.name,
            s.len(),
            percentile(s, 0.50),
            percentile(s, 0.99),
            percentile(s, 0.999),
            percentile(s, 1.0)
        );
    }
}
