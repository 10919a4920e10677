//! Chaos under load: many clients with a mixed workload run through slotgate while a
//! script fails the cluster over (coordinated), migrates slots back and forth, stops a
//! master with SIGSTOP for a couple of seconds and kills one with SIGKILL (then starts it
//! again: it rejoins as a replica). Afterwards every acknowledged write must be readable
//! (writes lost to a hard kill inside its replication window are counted apart), no
//! client may have seen `MOVED`/`ASK` or an error outside a fault window, no reply may
//! have answered another request, and slotgate's RSS and open fds come back near their
//! baseline once the clients are gone.
//!
//! The normal suite runs a short version (12 clients, one round of each fault, about
//! 40 s). `SLOTGATE_CHAOS_SECS=N` runs rounds of faults for N seconds with 50 clients
//! (`SLOTGATE_CHAOS_CLIENTS` overrides the count); `benches/chaos.sh` wraps it.
//!
//! The clients speak RESP over plain sockets (a small parser below) so that every reply
//! of a pipeline or a transaction is seen on its own, errors included, and a reply that
//! belongs to another request is caught: every value written names its key.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use support::{key_slot, require_redis, Cluster, ClusterConfig, Proxy};

/// `cluster-node-timeout`: a stop shorter than this does not fail the node over.
const NODE_TIMEOUT_MS: u64 = 3000;
/// How long a SIGSTOPped master stays stopped.
const STOP_FOR: Duration = Duration::from_secs(2);
/// Errors this long after a fault window closed still belong to it: slotgate's backend
/// timeout (5 s) plus its retries of requests queued during the fault.
const GRACE: Duration = Duration::from_secs(10);
/// A client waits this long for a reply before it counts as a hang.
const CLIENT_READ_TIMEOUT: Duration = Duration::from_secs(20);
/// How far before a hard kill an acknowledged write may still be lost: Redis
/// replicates asynchronously, and a write is safe only once the replica has it.
const LOSS_WINDOW_BEFORE: Duration = Duration::from_millis(NODE_TIMEOUT_MS);
/// After this much above its baseline, slotgate's RSS has not come back.
const RSS_MARGIN: u64 = 32 << 20;
/// Descriptors other than sockets (epoll, eventfd, pipes, log) may differ by this many.
const OTHER_FD_MARGIN: usize = 4;
/// slotgate keeps up to this many idle pinned connections per node and worker as spares
/// for the next blocking command or transaction (`SPARE_PER_NODE` in
/// src/backend/node_connections.rs): node sockets may exceed the baseline by that pool.
const SPARES_PER_NODE_AND_WORKER: usize = 8;
const WORKERS: usize = 2;

// ---------------------------------------------------------------- RESP on a socket

#[derive(Clone, Debug, PartialEq)]
enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    fn bulk_str(&self) -> Option<String> {
        match self {
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

/// One complete reply at the start of `buf` and its length, `None` if incomplete.
fn parse(buf: &[u8]) -> Option<(Reply, usize)> {
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&buf[1..end]).ok()?;
    let after = end + 2;
    let int = || line.parse::<i64>().ok();
    match *buf.first()? {
        b'+' => Some((Reply::Status(line.to_string()), after)),
        b'-' => Some((Reply::Error(line.to_string()), after)),
        b':' => Some((Reply::Int(int()?), after)),
        b'$' => {
            let n = int()?;
            if n < 0 {
                return Some((Reply::Bulk(None), after));
            }
            let n = n as usize;
            if buf.len() < after + n + 2 {
                return None;
            }
            Some((
                Reply::Bulk(Some(buf[after..after + n].to_vec())),
                after + n + 2,
            ))
        }
        b'*' => {
            let n = int()?;
            if n < 0 {
                return Some((Reply::Array(None), after));
            }
            let mut at = after;
            let mut items = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let (item, used) = parse(&buf[at..])?;
                items.push(item);
                at += used;
            }
            Some((Reply::Array(Some(items)), at))
        }
        other => panic!(
            "not a RESP2 reply: byte {other:?} in {:?}",
            String::from_utf8_lossy(buf)
        ),
    }
}

fn encode(out: &mut Vec<u8>, args: &[&str]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
}

/// A client connection: requests written whole, replies read into a buffer that
/// survives a read timeout (a subscriber polls with one).
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn connect(port: u16, timeout: Duration) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(CLIENT_READ_TIMEOUT))?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
        })
    }

    fn send(&mut self, requests: &[Vec<&str>]) -> std::io::Result<()> {
        let mut out = Vec::new();
        for r in requests {
            encode(&mut out, r);
        }
        self.stream.write_all(&out)
    }

    fn read(&mut self) -> std::io::Result<Reply> {
        loop {
            if let Some((reply, used)) = parse(&self.buf) {
                self.buf.drain(..used);
                return Ok(reply);
            }
            let mut chunk = [0u8; 16384];
            match self.stream.read(&mut chunk)? {
                0 => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "closed by slotgate",
                    ))
                }
                n => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Sends `requests` in one write and reads one reply each.
    fn pipeline(&mut self, requests: &[Vec<&str>]) -> std::io::Result<Vec<Reply>> {
        self.send(requests)?;
        requests.iter().map(|_| self.read()).collect()
    }

    fn call(&mut self, request: Vec<&str>) -> std::io::Result<Reply> {
        Ok(self.pipeline(&[request])?.remove(0))
    }
}

// ---------------------------------------------------------------- what the clients saw

/// How an error reply is judged.
#[derive(Debug, PartialEq)]
enum Judged {
    /// A redirect: slotgate must never let one through.
    Redirect,
    /// An error a client may see while a node fails or is unreachable, named by kind.
    Tolerated(&'static str),
    /// Anything else: slotgate should have absorbed it or it is a wrong reply.
    Unexpected,
}

/// The errors a client may see during a fault, and why each is expected:
/// - `connection lost`: the request was in flight to a node that died (it may have run);
/// - `cannot connect`, `no reply within`: a dead or stopped node, past slotgate's
///   retries (`backend.timeout_ms`);
/// - `CLUSTERDOWN`, `MASTERDOWN`, `no node serves slot`: a failover still under way
///   when the retries ran out;
/// - `LOADING`: a node still loading after a restart;
/// - `transaction aborted` / `partly applied` / `transaction is gone`: a transaction
///   whose node connection died;
/// - `EXECABORT`: a transaction whose slot moved (or whose node was lost) before `EXEC`:
///   slotgate does not follow a slot mid-transaction, nothing of it ran (README,
///   Transactions), as a cluster client would see it from the node.
fn judge(error: &str) -> Judged {
    if error.starts_with("MOVED") || error.starts_with("ASK") {
        return Judged::Redirect;
    }
    const TOLERATED: [(&str, &str); 11] = [
        ("connection lost", "connection lost"),
        ("cannot connect", "cannot connect"),
        ("no reply within", "no reply within"),
        ("CLUSTERDOWN", "CLUSTERDOWN"),
        ("MASTERDOWN", "MASTERDOWN"),
        ("no node serves slot", "no node serves slot"),
        ("LOADING", "LOADING"),
        ("transaction aborted", "transaction aborted"),
        ("partly applied", "transaction partly applied"),
        ("transaction is gone", "transaction gone"),
        ("EXECABORT", "EXECABORT"),
    ];
    TOLERATED
        .iter()
        .find(|(needle, _)| error.contains(needle))
        .map_or(Judged::Unexpected, |&(_, kind)| Judged::Tolerated(kind))
}

/// A write slotgate acknowledged: `key` must hold `value` at the end.
struct Acked {
    key: String,
    value: String,
    at: Instant,
}

/// What one client saw, merged at the end.
#[derive(Default)]
struct Seen {
    ops: BTreeMap<&'static str, u64>,
    acked: Vec<Acked>,
    /// Tolerated errors: when, kind, text.
    tolerated: Vec<(Instant, &'static str, String)>,
    /// Redirects, unexpected errors, wrong replies, dropped connections.
    violations: Vec<String>,
    /// Keys an acknowledged write put there that a read found missing (judged at the end).
    read_missing: Vec<(String, Instant)>,
    /// `INCR` counters in transactions that went back after a hard kill.
    counter_rollbacks: u64,
    /// Blocking pairs: pushes acknowledged (seq, when), items popped, pop errors.
    pushed: Vec<(u64, Instant)>,
    popped: Vec<u64>,
    pop_errors: u64,
    /// Pub/sub: messages published, received per subscriber.
    published: u64,
    received: u64,
    /// Messages that came after a later one on their channel: when, which.
    reordered: Vec<(Instant, String)>,
}

impl Seen {
    fn op(&mut self, kind: &'static str) {
        *self.ops.entry(kind).or_default() += 1;
    }

    /// Records an error reply; true when it is one a fault explains.
    fn error(&mut self, what: &str, error: &str) -> bool {
        match judge(error) {
            Judged::Tolerated(kind) => {
                self.tolerated
                    .push((Instant::now(), kind, format!("{what}: {error}")));
                true
            }
            Judged::Redirect => {
                self.violations
                    .push(format!("{what}: a redirect reached the client: {error}"));
                false
            }
            Judged::Unexpected => {
                self.violations
                    .push(format!("{what}: unexpected error: {error}"));
                false
            }
        }
    }

    fn wrong(&mut self, what: &str, reply: &Reply) {
        self.violations
            .push(format!("{what}: wrong reply {reply:?}"));
    }

    fn merge(&mut self, other: Seen) {
        for (k, v) in other.ops {
            *self.ops.entry(k).or_default() += v;
        }
        self.acked.extend(other.acked);
        self.tolerated.extend(other.tolerated);
        self.violations.extend(other.violations);
        self.read_missing.extend(other.read_missing);
        self.counter_rollbacks += other.counter_rollbacks;
        self.pop_errors += other.pop_errors;
        self.published += other.published;
        self.received += other.received;
        self.reordered.extend(other.reordered);
    }
}

/// Shared between the script and the clients.
struct Run {
    port: u16,
    stop: AtomicBool,
    /// Bumped by the script at each hard kill (and a stop that turned into a failover),
    /// so a transaction counter may go back.
    hard_faults: AtomicU64,
}

impl Run {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// A small xorshift generator, one per client.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn connect_or_wait(run: &Run, timeout: Duration) -> Option<Conn> {
    for _ in 0..100 {
        if let Ok(conn) = Conn::connect(run.port, timeout) {
            return Some(conn);
        }
        if run.stopped() {
            return None;
        }
        sleep(Duration::from_millis(100));
    }
    panic!("cannot connect to slotgate on {}", run.port)
}

// ---------------------------------------------------------------- the mixed clients

/// One mixed client: writes to keys of its own (each key written once, its value names
/// it), reads them back, pipelines, split MGET/MSET, transactions.
struct Mixed {
    id: usize,
    next_key: u64,
    rng: Rng,
    seen: Seen,
    /// The transaction counter's value as last seen, if certain.
    counter: Option<i64>,
    counter_faults: u64,
}

impl Mixed {
    fn new_key(&mut self) -> (String, String) {
        self.next_key += 1;
        let key = format!("c{}:{}", self.id, self.next_key);
        let value = format!("{key}|{}", self.rng.next() % 1_000_000);
        (key, value)
    }

    /// A key this client had acknowledged, and its value.
    fn old_key(&mut self) -> Option<(String, String)> {
        if self.seen.acked.is_empty() {
            return None;
        }
        let a = &self.seen.acked[self.rng.below(self.seen.acked.len())];
        Some((a.key.clone(), a.value.clone()))
    }

    fn ack(&mut self, key: String, value: String) {
        self.seen.acked.push(Acked {
            key,
            value,
            at: Instant::now(),
        });
    }

    /// Judges a SET's reply.
    fn judge_set(&mut self, what: &str, key: String, value: String, reply: &Reply) {
        match reply {
            Reply::Status(s) if s == "OK" => self.ack(key, value),
            Reply::Error(e) => {
                self.seen.error(what, e);
            }
            other => self.seen.wrong(&format!("{what} {key}"), other),
        }
    }

    /// Judges a GET's reply for a key that holds `value` (or `None`: never written).
    fn judge_get(&mut self, what: &str, key: &str, value: Option<&str>, reply: &Reply) {
        match (reply, value) {
            (Reply::Bulk(None), None) => {}
            (Reply::Bulk(None), Some(_)) => self
                .seen
                .read_missing
                .push((key.to_string(), Instant::now())),
            (Reply::Bulk(Some(_)), Some(v)) if reply.bulk_str().as_deref() == Some(v) => {}
            (Reply::Error(e), _) => {
                self.seen.error(what, e);
            }
            (other, _) => self
                .seen
                .wrong(&format!("{what} {key} (holds {value:?})"), other),
        }
    }

    fn step(&mut self, conn: &mut Conn, run: &Run) -> std::io::Result<()> {
        match self.rng.below(20) {
            0..=5 => self.read(conn),
            6..=10 => self.write(conn),
            11..=13 => self.pipelined(conn),
            14..=16 => self.split(conn),
            _ => self.transaction(conn, run),
        }
    }

    fn read(&mut self, conn: &mut Conn) -> std::io::Result<()> {
        self.seen.op("get");
        let (key, value) = match self.old_key() {
            Some((k, v)) => (k, Some(v)),
            None => (format!("c{}:never", self.id), None),
        };
        let reply = conn.call(vec!["GET", &key])?;
        self.judge_get("GET", &key, value.as_deref(), &reply);
        Ok(())
    }

    fn write(&mut self, conn: &mut Conn) -> std::io::Result<()> {
        self.seen.op("set");
        let (key, value) = self.new_key();
        let reply = conn.call(vec!["SET", &key, &value])?;
        self.judge_set("SET", key, value, &reply);
        Ok(())
    }

    /// Four SETs of new keys and four GETs of old ones, in one write.
    fn pipelined(&mut self, conn: &mut Conn) -> std::io::Result<()> {
        self.seen.op("pipeline");
        let sets: Vec<(String, String)> = (0..4).map(|_| self.new_key()).collect();
        let gets: Vec<(String, Option<String>)> = (0..4)
            .map(|i| match self.old_key() {
                Some((k, v)) => (k, Some(v)),
                None => (format!("c{}:never{i}", self.id), None),
            })
            .collect();
        let mut requests: Vec<Vec<&str>> = Vec::new();
        for i in 0..4 {
            requests.push(vec!["SET", &sets[i].0, &sets[i].1]);
            requests.push(vec!["GET", &gets[i].0]);
        }
        let replies = conn.pipeline(&requests)?;
        for (i, (key, value)) in sets.into_iter().enumerate() {
            self.judge_set("pipelined SET", key, value, &replies[2 * i]);
            let (key, value) = &gets[i];
            self.judge_get("pipelined GET", key, value.as_deref(), &replies[2 * i + 1]);
        }
        Ok(())
    }

    /// An MSET of five new keys in different slots, then an MGET of six old ones:
    /// slotgate splits both per slot and merges the replies in key order.
    fn split(&mut self, conn: &mut Conn) -> std::io::Result<()> {
        self.seen.op("mset+mget");
        let pairs: Vec<(String, String)> = (0..5).map(|_| self.new_key()).collect();
        let mut mset = vec!["MSET"];
        for (k, v) in &pairs {
            mset.extend([k.as_str(), v.as_str()]);
        }
        match conn.call(mset)? {
            Reply::Status(s) if s == "OK" => {
                for (k, v) in pairs {
                    self.ack(k, v);
                }
            }
            Reply::Error(e) => {
                self.seen.error("MSET", &e);
            }
            other => self.seen.wrong("MSET", &other),
        }
        let olds: Vec<(String, String)> = (0..6).filter_map(|_| self.old_key()).collect();
        if olds.is_empty() {
            return Ok(());
        }
        let mut mget = vec!["MGET"];
        mget.extend(olds.iter().map(|(k, _)| k.as_str()));
        match conn.call(mget)? {
            Reply::Array(Some(items)) if items.len() == olds.len() => {
                for ((k, v), item) in olds.iter().zip(&items) {
                    self.judge_get("MGET", k, Some(v), item);
                }
            }
            Reply::Error(e) => {
                self.seen.error("MGET", &e);
            }
            other => self.seen.wrong("MGET", &other),
        }
        Ok(())
    }

    /// `MULTI`, a SET and an INCR of the client's counter and a GET in one slot (hash
    /// tag), `EXEC`; every other time a second SET in another slot joins it.
    fn transaction(&mut self, conn: &mut Conn, run: &Run) -> std::io::Result<()> {
        self.seen.op("multi/exec");
        let tag = format!("{{c{}}}", self.id);
        self.next_key += 1;
        let key = format!("{tag}:t{}", self.next_key);
        let value = format!("{key}|{}", self.rng.next() % 1_000_000);
        let counter = format!("{tag}:counter");
        let other = (self.rng.below(2) == 0).then(|| self.new_key());
        let mut requests: Vec<Vec<&str>> = vec![
            vec!["MULTI"],
            vec!["SET", &key, &value],
            vec!["INCR", &counter],
            vec!["GET", &key],
        ];
        if let Some((k, v)) = &other {
            requests.push(vec!["SET", k, v]);
        }
        requests.push(vec!["EXEC"]);
        let faults_before = self.counter_faults;
        self.counter_faults = run.hard_faults.load(Ordering::Relaxed);
        let replies = conn.pipeline(&requests)?;
        let n = requests.len();
        let mut failed = false;
        for (i, reply) in replies[..n - 1].iter().enumerate() {
            let expected = if i == 0 { "OK" } else { "QUEUED" };
            match reply {
                Reply::Status(s) if s == expected => {}
                Reply::Error(e) => {
                    failed = true;
                    self.seen.error("transaction", e);
                }
                other => {
                    failed = true;
                    self.seen.wrong(&format!("transaction step {i}"), other);
                }
            }
        }
        match &replies[n - 1] {
            Reply::Array(Some(items)) if !failed && items.len() == n - 2 => {
                let ok = |r: &Reply| matches!(r, Reply::Status(s) if s == "OK");
                if !ok(&items[0]) || items[2].bulk_str().as_deref() != Some(value.as_str()) {
                    self.seen.wrong("EXEC", &replies[n - 1]);
                    self.counter = None;
                    return Ok(());
                }
                self.ack(key, value);
                if let Some((k, v)) = other {
                    if ok(&items[3]) {
                        self.ack(k, v);
                    } else {
                        self.seen.wrong("EXEC's second SET", &items[3]);
                    }
                }
                let Reply::Int(now) = items[1] else {
                    self.seen.wrong("EXEC's INCR", &items[1]);
                    self.counter = None;
                    return Ok(());
                };
                if let Some(before) = self.counter {
                    if now != before + 1 {
                        if self.counter_faults != faults_before && now <= before {
                            self.seen.counter_rollbacks += 1;
                        } else {
                            self.seen.violations.push(format!(
                                "transaction counter {counter}: {now} after {before}"
                            ));
                        }
                    }
                }
                self.counter = Some(now);
            }
            Reply::Error(e) => {
                self.counter = None;
                self.seen.error("EXEC", e);
            }
            _ if failed => self.counter = None,
            other => {
                self.counter = None;
                self.seen.wrong("EXEC", other);
            }
        }
        Ok(())
    }
}

fn mixed_client(run: Arc<Run>, id: usize) -> Seen {
    let mut me = Mixed {
        id,
        next_key: 0,
        rng: Rng::new(id as u64 + 1),
        seen: Seen::default(),
        counter: None,
        counter_faults: 0,
    };
    let Some(mut conn) = connect_or_wait(&run, CLIENT_READ_TIMEOUT) else {
        return me.seen;
    };
    while !run.stopped() {
        if let Err(e) = me.step(&mut conn, &run) {
            me.seen
                .violations
                .push(format!("client {id}: connection to slotgate failed: {e}"));
            me.counter = None;
            match connect_or_wait(&run, CLIENT_READ_TIMEOUT) {
                Some(c) => conn = c,
                None => break,
            }
        }
        sleep(Duration::from_millis(1));
    }
    me.seen
}

// ---------------------------------------------------------------- blocking pairs

fn queue_name(pair: usize) -> String {
    format!("{{q{pair}}}:list")
}

/// RPUSHes numbered items onto its pair's list until stopped.
fn producer(run: Arc<Run>, pair: usize) -> Seen {
    let mut seen = Seen::default();
    let list = queue_name(pair);
    let Some(mut conn) = connect_or_wait(&run, CLIENT_READ_TIMEOUT) else {
        return seen;
    };
    let mut seq = 0u64;
    while !run.stopped() {
        seq += 1;
        seen.op("rpush");
        let item = format!("{list}|{seq}");
        match conn.call(vec!["RPUSH", &list, &item]) {
            Ok(Reply::Int(_)) => seen.pushed.push((seq, Instant::now())),
            Ok(Reply::Error(e)) => {
                seen.error("RPUSH", &e);
            }
            Ok(other) => seen.wrong("RPUSH", &other),
            Err(e) => {
                seen.violations
                    .push(format!("producer {pair}: connection failed: {e}"));
                match connect_or_wait(&run, CLIENT_READ_TIMEOUT) {
                    Some(c) => conn = c,
                    None => break,
                }
            }
        }
        sleep(Duration::from_millis(5));
    }
    seen
}

/// BLPOPs its pair's list (1 s timeout) until stopped; items must come in order.
fn consumer(run: Arc<Run>, pair: usize) -> Seen {
    let mut seen = Seen::default();
    let list = queue_name(pair);
    let Some(mut conn) = connect_or_wait(&run, CLIENT_READ_TIMEOUT) else {
        return seen;
    };
    let mut last = 0u64;
    while !run.stopped() {
        seen.op("blpop");
        match conn.call(vec!["BLPOP", &list, "1"]) {
            Ok(Reply::Array(None)) => {}
            Ok(Reply::Array(Some(items)))
                if items.len() == 2 && items[0].bulk_str().as_deref() == Some(list.as_str()) =>
            {
                let item = items[1].bulk_str().unwrap_or_default();
                let seq = item
                    .strip_prefix(&format!("{list}|"))
                    .and_then(|s| s.parse::<u64>().ok());
                match seq {
                    Some(seq) if seq > last => {
                        last = seq;
                        seen.popped.push(seq);
                    }
                    _ => seen
                        .violations
                        .push(format!("BLPOP {list}: {item:?} after item {last}")),
                }
            }
            Ok(Reply::Error(e)) => {
                seen.pop_errors += 1;
                seen.error("BLPOP", &e);
            }
            Ok(other) => seen.wrong("BLPOP", &other),
            Err(e) => {
                seen.pop_errors += 1;
                seen.violations
                    .push(format!("consumer {pair}: connection failed: {e}"));
                match connect_or_wait(&run, CLIENT_READ_TIMEOUT) {
                    Some(c) => conn = c,
                    None => break,
                }
            }
        }
    }
    seen
}

// ---------------------------------------------------------------- pub/sub

const CHANNELS: [&str; 3] = ["chaos:a", "chaos:b", "chaos:c"];

/// Publishes numbered messages round the channels until stopped.
fn publisher(run: Arc<Run>) -> Seen {
    let mut seen = Seen::default();
    let Some(mut conn) = connect_or_wait(&run, CLIENT_READ_TIMEOUT) else {
        return seen;
    };
    let mut seq = 0u64;
    while !run.stopped() {
        seq += 1;
        let channel = CHANNELS[seq as usize % CHANNELS.len()];
        seen.op("publish");
        let message = format!("{channel}|{seq}");
        match conn.call(vec!["PUBLISH", channel, &message]) {
            Ok(Reply::Int(_)) => seen.published += 1,
            Ok(Reply::Error(e)) => {
                seen.error("PUBLISH", &e);
            }
            Ok(other) => seen.wrong("PUBLISH", &other),
            Err(e) => {
                seen.violations
                    .push(format!("publisher: connection failed: {e}"));
                match connect_or_wait(&run, CLIENT_READ_TIMEOUT) {
                    Some(c) => conn = c,
                    None => break,
                }
            }
        }
        sleep(Duration::from_millis(10));
    }
    seen
}

/// Subscribes to every channel and checks each message: its channel, and per channel
/// numbers that only go up (at most once, in order; pub/sub may drop messages while a
/// node fails, as Redis does). After the stop, waits for the final marker on each
/// channel: slotgate must have subscribed again wherever a node died.
fn subscriber(run: Arc<Run>, final_markers: Arc<AtomicBool>) -> Seen {
    let mut seen = Seen::default();
    let Some(mut conn) = connect_or_wait(&run, Duration::from_millis(500)) else {
        return seen;
    };
    let mut request = vec!["SUBSCRIBE"];
    request.extend(CHANNELS);
    conn.send(&[request]).expect("SUBSCRIBE");
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut confirmed = 0;
    let mut marked: HashSet<String> = HashSet::new();
    let deadline_after_stop = Duration::from_secs(30);
    let mut stop_seen: Option<Instant> = None;
    loop {
        if run.stopped() && stop_seen.is_none() {
            stop_seen = Some(Instant::now());
        }
        if let Some(at) = stop_seen {
            if marked.len() == CHANNELS.len() {
                break;
            }
            if at.elapsed() > deadline_after_stop {
                seen.violations.push(format!(
                    "subscriber: no final message within {deadline_after_stop:?} on {:?}",
                    CHANNELS
                        .iter()
                        .filter(|c| !marked.contains(**c))
                        .collect::<Vec<_>>()
                ));
                break;
            }
        }
        let reply = match conn.read() {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => {
                seen.violations
                    .push(format!("subscriber: connection failed: {e}"));
                break;
            }
        };
        let Reply::Array(Some(items)) = &reply else {
            seen.wrong("subscriber", &reply);
            continue;
        };
        let kind = items.first().and_then(Reply::bulk_str).unwrap_or_default();
        match (kind.as_str(), items.len()) {
            ("subscribe", 3) => confirmed += 1,
            ("message", 3) => {
                let channel = items[1].bulk_str().unwrap_or_default();
                let payload = items[2].bulk_str().unwrap_or_default();
                if payload == format!("{channel}|final") {
                    if final_markers.load(Ordering::Relaxed) {
                        marked.insert(channel);
                    }
                    continue;
                }
                let seq = payload
                    .strip_prefix(&format!("{channel}|"))
                    .and_then(|s| s.parse::<u64>().ok());
                let before = last.get(&channel).copied().unwrap_or(0);
                match seq {
                    Some(seq) if seq > before && CHANNELS.contains(&channel.as_str()) => {
                        seen.received += 1;
                        last.insert(channel, seq);
                    }
                    // Published earlier at another node: slotgate sends a client's
                    // PUBLISH to one master, which a failover changes, and Redis
                    // Cluster orders nothing between messages that cross the cluster
                    // bus from different nodes. Judged against the fault windows.
                    Some(seq) if seq < before && CHANNELS.contains(&channel.as_str()) => {
                        seen.received += 1;
                        seen.reordered.push((
                            Instant::now(),
                            format!("{payload:?} on {channel:?} after number {before}"),
                        ));
                    }
                    _ => seen.violations.push(format!(
                        "subscriber: message {payload:?} on {channel:?} after number {before}"
                    )),
                }
            }
            _ => seen.wrong("subscriber", &reply),
        }
    }
    if confirmed != CHANNELS.len() {
        seen.violations.push(format!(
            "subscriber: {confirmed} subscribe confirmations for {} channels",
            CHANNELS.len()
        ));
    }
    seen.op("subscriber");
    seen
}

// ---------------------------------------------------------------- the fault script

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum FaultKind {
    Migration,
    Failover,
    Stop,
    Kill,
}

/// One fault: while it lasted, tolerated errors may come; a hard one may lose writes.
struct Fault {
    kind: FaultKind,
    start: Instant,
    end: Instant,
    /// For a kill (or a stop that turned into a failover): the victim, which master
    /// owned each slot when it went, and the moment acknowledged writes to it may have
    /// been lost after (`start - LOSS_WINDOW_BEFORE`) and before.
    lost: Option<LossWindow>,
    what: String,
}

struct LossWindow {
    victim: u16,
    owners: Vec<u16>,
    from: Instant,
    to: Instant,
}

fn signal(pid: u32, which: &str) {
    let status = Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {which} {pid}");
}

/// Continues a stopped node when dropped, whatever happened meanwhile.
struct Stopped(u32);

impl Drop for Stopped {
    fn drop(&mut self) {
        signal(self.0, "-CONT");
    }
}

fn role_is_master(cluster: &Cluster, port: u16) -> bool {
    cluster.cli(port, &["ROLE"]).starts_with("master")
}

fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        sleep(Duration::from_millis(100));
    }
}

/// The slots moved back and forth: a block owned at first by the master of slot 0.
const MOVING: std::ops::RangeInclusive<u16> = 100..=131;

struct Script {
    faults: Vec<Fault>,
    round: usize,
}

impl Script {
    fn settle(&self, cluster: &Cluster) {
        cluster.wait_for_ok(Duration::from_secs(90));
    }

    /// A master picked round-robin; `offset` makes each kind of fault start elsewhere.
    fn pick_master(&self, cluster: &Cluster, offset: usize) -> u16 {
        let masters = cluster.master_ports();
        masters[(self.round + offset) % masters.len()]
    }

    fn migrate(&mut self, cluster: &Cluster) {
        let from = cluster.node_for_slot(*MOVING.start());
        let masters = cluster.master_ports();
        let others: Vec<u16> = masters.into_iter().filter(|&m| m != from).collect();
        let to = others[self.round % others.len()];
        let start = Instant::now();
        cluster.migrate_slots(MOVING, from, to);
        self.settle(cluster);
        self.faults.push(Fault {
            kind: FaultKind::Migration,
            start,
            end: Instant::now(),
            lost: None,
            what: format!("slots {MOVING:?} {from} -> {to}"),
        });
    }

    fn failover(&mut self, cluster: &Cluster) {
        let master = self.pick_master(cluster, 0);
        let replica = cluster
            .replica_of(master)
            .expect("every master has a replica");
        let start = Instant::now();
        let answer = cluster.cli(replica, &["CLUSTER", "FAILOVER"]);
        assert_eq!(answer, "OK", "CLUSTER FAILOVER on {replica}");
        wait_for(Duration::from_secs(60), "a coordinated failover", || {
            role_is_master(cluster, replica)
        });
        self.settle(cluster);
        self.faults.push(Fault {
            kind: FaultKind::Failover,
            start,
            end: Instant::now(),
            lost: None,
            what: format!("CLUSTER FAILOVER: {replica} replaces {master}"),
        });
    }

    fn stop(&mut self, cluster: &Cluster, run: &Run) {
        let victim = self.pick_master(cluster, 1);
        let owners = cluster.owners_by_slot();
        let pid = cluster.pid(victim).expect("the master runs");
        let start = Instant::now();
        {
            signal(pid, "-STOP");
            let _continue = Stopped(pid);
            sleep(STOP_FOR);
        }
        let resumed = Instant::now();
        // A stop longer than the node timeout (a slow machine) fails the node over:
        // then it is a hard fault, and the writes it took after waking are lost.
        sleep(Duration::from_millis(500));
        let failed_over = !role_is_master(cluster, victim);
        if failed_over {
            run.hard_faults.fetch_add(1, Ordering::Relaxed);
        }
        self.settle(cluster);
        self.faults.push(Fault {
            kind: FaultKind::Stop,
            start,
            end: Instant::now(),
            lost: failed_over.then(|| LossWindow {
                victim,
                owners,
                from: start - LOSS_WINDOW_BEFORE,
                to: resumed + Duration::from_secs(2),
            }),
            what: format!(
                "SIGSTOP {victim} for {STOP_FOR:?}{}",
                if failed_over {
                    " (it was failed over)"
                } else {
                    ""
                }
            ),
        });
    }

    fn kill(&mut self, cluster: &mut Cluster, run: &Run) {
        let victim = self.pick_master(cluster, 2);
        let replica = cluster
            .replica_of(victim)
            .expect("every master has a replica");
        let owners = cluster.owners_by_slot();
        let start = Instant::now();
        run.hard_faults.fetch_add(1, Ordering::Relaxed);
        cluster.kill(victim);
        wait_for(
            Duration::from_secs(60),
            "the replica of a killed master to take over",
            || role_is_master(cluster, replica),
        );
        self.settle(cluster);
        cluster.restart(victim);
        self.settle(cluster);
        self.faults.push(Fault {
            kind: FaultKind::Kill,
            start,
            end: Instant::now(),
            lost: Some(LossWindow {
                victim,
                owners,
                from: start - LOSS_WINDOW_BEFORE,
                to: start + Duration::from_secs(1),
            }),
            what: format!("SIGKILL {victim} (replica {replica} took over), restarted"),
        });
    }

    /// One round: every kind of fault once, with the cluster settled between them.
    fn round(&mut self, cluster: &mut Cluster, run: &Run) {
        let pause = Duration::from_secs(2);
        self.migrate(cluster);
        sleep(pause);
        self.failover(cluster);
        sleep(pause);
        self.stop(cluster, run);
        sleep(pause);
        self.kill(cluster, run);
        sleep(pause);
        self.migrate(cluster);
        sleep(pause);
        self.round += 1;
    }
}

// ---------------------------------------------------------------- the run

/// slotgate's open descriptors: TCP sockets of clients (local port `port`), other TCP
/// sockets (to nodes, and listeners), and everything else.
#[derive(Clone, Copy, Debug, Default)]
struct Fds {
    clients: usize,
    nodes: usize,
    other: usize,
}

impl Fds {
    fn total(&self) -> usize {
        self.clients + self.nodes + self.other
    }
}

fn fds_of(pid: u32, port: u16) -> Fds {
    // Socket inode -> (local port, state) from /proc/net/tcp{,6}.
    let mut sockets: HashMap<u64, (u16, u8)> = HashMap::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                continue;
            }
            let local = f[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            let state = u8::from_str_radix(f[3], 16).ok();
            if let (Some(local), Some(state), Ok(inode)) = (local, state, f[9].parse::<u64>()) {
                sockets.insert(inode, (local, state));
            }
        }
    }
    const LISTEN: u8 = 0x0A;
    let mut fds = Fds::default();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return fds;
    };
    for entry in dir.flatten() {
        let target = std::fs::read_link(entry.path()).unwrap_or_default();
        let inode = target
            .to_str()
            .and_then(|t| t.strip_prefix("socket:["))
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse::<u64>().ok());
        match inode.and_then(|i| sockets.get(&i)) {
            Some(&(local, state)) if local == port && state != LISTEN => fds.clients += 1,
            Some(&(_, state)) if state != LISTEN => fds.nodes += 1,
            _ => fds.other += 1,
        }
    }
    fds
}

fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
    )
}

#[test]
fn chaos_under_mixed_load() {
    require_redis();
    let long = env_number("SLOTGATE_CHAOS_SECS");
    let clients =
        env_number("SLOTGATE_CHAOS_CLIENTS").unwrap_or(if long.is_some() { 50 } else { 12 })
            as usize;
    assert!(
        clients >= 8,
        "at least 8 clients: 3 for pub/sub, 2 blocking pairs"
    );

    let mut cluster = Cluster::start_with(
        3,
        1,
        ClusterConfig {
            node_timeout_ms: NODE_TIMEOUT_MS,
            ..ClusterConfig::default()
        },
    );
    let proxy = Proxy::start(&cluster.seeds(), &["--workers", "2"]);
    let pid = proxy.pid();

    // Warm up every path once (node connections, pinned, subscriber), then measure.
    {
        let mut conn = Conn::connect(proxy.port(), CLIENT_READ_TIMEOUT).expect("connect");
        for i in 0..64 {
            let key = format!("warm:{i}");
            let reply = conn.call(vec!["SET", &key, "v"]).expect("warm-up SET");
            assert_eq!(reply, Reply::Status("OK".into()), "warm-up SET {key}");
        }
        conn.call(vec!["BLPOP", "warm:list", "0.1"])
            .expect("warm-up BLPOP");
        conn.call(vec!["PUBLISH", "warm", "x"])
            .expect("warm-up PUBLISH");
    }
    sleep(Duration::from_secs(1));
    let (rss_before, fds_before) = (proxy.rss(), fds_of(pid, proxy.port()));

    let run = Arc::new(Run {
        port: proxy.port(),
        stop: AtomicBool::new(false),
        hard_faults: AtomicU64::new(0),
    });
    let final_markers = Arc::new(AtomicBool::new(false));
    let pairs = (clients / 10).max(2);
    let subscribers = 2;
    let mixed = clients - 2 * pairs - 1 - subscribers;
    let mut threads: Vec<(&'static str, std::thread::JoinHandle<Seen>)> = Vec::new();
    for _ in 0..subscribers {
        let (run, markers) = (run.clone(), final_markers.clone());
        threads.push((
            "subscriber",
            std::thread::spawn(move || subscriber(run, markers)),
        ));
    }
    sleep(Duration::from_millis(300));
    let r = run.clone();
    threads.push(("publisher", std::thread::spawn(move || publisher(r))));
    for pair in 0..pairs {
        let (a, b) = (run.clone(), run.clone());
        threads.push(("producer", std::thread::spawn(move || producer(a, pair))));
        threads.push(("consumer", std::thread::spawn(move || consumer(b, pair))));
    }
    for id in 0..mixed {
        let r = run.clone();
        threads.push(("mixed", std::thread::spawn(move || mixed_client(r, id))));
    }

    // The fault script, on this thread (it owns the cluster).
    let started = Instant::now();
    // `SLOTGATE_CHAOS_TRACE=1`: slotgate's pinned connections twice a second on stderr,
    // to line up with the faults' times (how the pinned-connection leak was found).
    if std::env::var_os("SLOTGATE_CHAOS_TRACE").is_some() {
        let (port, run) = (proxy.port(), run.clone());
        std::thread::spawn(move || {
            while !run.stopped() {
                let out = Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "INFO", "proxy"])
                    .output()
                    .unwrap();
                let info = String::from_utf8_lossy(&out.stdout).to_string();
                let pinned = info
                    .lines()
                    .find(|l| l.starts_with("pinned_connections"))
                    .unwrap_or("")
                    .to_string();
                eprintln!("trace {:>6.1?} {pinned}", started.elapsed());
                sleep(Duration::from_millis(500));
            }
        });
    }
    sleep(Duration::from_secs(2));
    let mut script = Script {
        faults: Vec::new(),
        round: 0,
    };
    let length = long.map(Duration::from_secs);
    loop {
        script.round(&mut cluster, &run);
        match length {
            Some(length) if started.elapsed() < length => continue,
            _ => break,
        }
    }
    sleep(Duration::from_secs(2));
    let load_time = started.elapsed();
    run.stop.store(true, Ordering::Relaxed);

    // The final markers: published until the subscribers have them (bounded).
    final_markers.store(true, Ordering::Relaxed);
    {
        let mut conn = Conn::connect(proxy.port(), CLIENT_READ_TIMEOUT).expect("connect");
        let subscribers_done = |threads: &[(&str, std::thread::JoinHandle<Seen>)]| {
            threads
                .iter()
                .filter(|(k, _)| *k == "subscriber")
                .all(|(_, t)| t.is_finished())
        };
        for _ in 0..60 {
            if subscribers_done(&threads) {
                break;
            }
            for channel in CHANNELS {
                let marker = format!("{channel}|final");
                conn.call(vec!["PUBLISH", channel, &marker])
                    .expect("PUBLISH the final marker");
            }
            sleep(Duration::from_millis(500));
        }
    }
    let mut seen = Seen::default();
    let mut pushed: BTreeMap<usize, Vec<(u64, Instant)>> = BTreeMap::new();
    let mut popped: BTreeMap<usize, (Vec<u64>, u64)> = BTreeMap::new();
    let (mut producer_n, mut consumer_n) = (0, 0);
    for (kind, t) in threads {
        let mut s = t.join().expect("a client thread panicked");
        match kind {
            "producer" => {
                pushed.insert(producer_n, std::mem::take(&mut s.pushed));
                producer_n += 1;
            }
            "consumer" => {
                popped.insert(consumer_n, (std::mem::take(&mut s.popped), s.pop_errors));
                consumer_n += 1;
            }
            _ => {}
        }
        seen.merge(s);
    }

    // ---- afterwards ----
    cluster.wait_for_ok(Duration::from_secs(90));
    let faults = script.faults;
    let may_be_lost = |key: &str, at: Instant| {
        let slot = usize::from(key_slot(key.as_bytes()));
        faults
            .iter()
            .filter_map(|f| f.lost.as_ref())
            .any(|w| w.owners[slot] == w.victim && at >= w.from && at <= w.to)
    };

    let mut violations = std::mem::take(&mut seen.violations);
    let mut conn = Conn::connect(proxy.port(), CLIENT_READ_TIMEOUT).expect("connect");
    // Every acknowledged write, read back through slotgate in pipelines of 200.
    let mut lost_after_kill = 0u64;
    let mut missing_now: HashSet<String> = HashSet::new();
    for chunk in seen.acked.chunks(200) {
        let requests: Vec<Vec<&str>> = chunk.iter().map(|a| vec!["GET", a.key.as_str()]).collect();
        let replies = conn
            .pipeline(&requests)
            .expect("read back acknowledged writes");
        for (a, reply) in chunk.iter().zip(replies) {
            match reply {
                Reply::Bulk(Some(v)) if v == a.value.as_bytes() => {}
                Reply::Bulk(None) if may_be_lost(&a.key, a.at) => {
                    lost_after_kill += 1;
                    missing_now.insert(a.key.clone());
                }
                other => violations.push(format!(
                    "acknowledged write {} = {:?} reads back as {other:?}",
                    a.key, a.value
                )),
            }
        }
    }
    // A read that found an acknowledged key missing while the key is there now (or was
    // not lost to a kill) saw something that never was.
    for (key, _) in &seen.read_missing {
        if !missing_now.contains(key) {
            violations.push(format!("a read found acknowledged key {key} missing"));
        }
    }
    // Blocking pairs: every acknowledged push was popped or is still in the list, in
    // order, but for pushes lost to a kill and items popped by a BLPOP whose reply was
    // lost (one per BLPOP error at most).
    let mut items_lost = 0u64;
    let mut items_unaccounted = 0u64;
    for (pair, acked) in &pushed {
        let list = queue_name(*pair);
        let (got, pop_errors) = &popped[pair];
        let rest = match conn.call(vec!["LRANGE", &list, "0", "-1"]).expect("LRANGE") {
            Reply::Array(Some(items)) => items
                .iter()
                .filter_map(|i| {
                    i.bulk_str()?
                        .strip_prefix(&format!("{list}|"))?
                        .parse()
                        .ok()
                })
                .collect::<Vec<u64>>(),
            other => panic!("LRANGE {list}: {other:?}"),
        };
        let all: Vec<u64> = got.iter().chain(&rest).copied().collect();
        if all.windows(2).any(|w| w[0] >= w[1]) {
            violations.push(format!("list {list}: items out of order or twice"));
        }
        let present: HashSet<u64> = all.into_iter().collect();
        let mut unaccounted = 0;
        for (seq, at) in acked {
            if !present.contains(seq) {
                if may_be_lost(&list, *at) {
                    items_lost += 1;
                } else {
                    unaccounted += 1;
                }
            }
        }
        if unaccounted > *pop_errors {
            violations.push(format!(
                "list {list}: {unaccounted} acknowledged pushes missing, only {pop_errors} BLPOP errors"
            ));
        }
        items_unaccounted += unaccounted;
    }
    drop(conn);

    // Tolerated errors and reordered messages only inside a fault window (and its grace).
    let in_window = |at: Instant| {
        faults
            .iter()
            .any(|f| at + Duration::from_millis(100) >= f.start && at <= f.end + GRACE)
    };
    for (at, text) in &seen.reordered {
        if !in_window(*at) {
            violations.push(format!(
                "subscriber: message {text} outside any fault window"
            ));
        }
    }
    let mut outside = 0;
    for (at, kind, text) in &seen.tolerated {
        let inside = in_window(*at);
        if !inside {
            outside += 1;
            if outside <= 10 {
                violations.push(format!("{kind} outside any fault window: {text}"));
            }
        }
    }

    // Resources back near the baseline once every client has gone.
    // Per worker and node: one shared connection and the spare pinned ones; per worker,
    // one subscriber connection for the pub/sub hub.
    let node_fd_limit = fds_before.nodes
        + WORKERS * cluster.ports().len() * (1 + SPARES_PER_NODE_AND_WORKER)
        + WORKERS;
    let fds_back = |f: &Fds| {
        f.clients == 0 && f.nodes <= node_fd_limit && f.other <= fds_before.other + OTHER_FD_MARGIN
    };
    let mut fds_after = fds_of(pid, proxy.port());
    let limit = Instant::now() + Duration::from_secs(15);
    while !fds_back(&fds_after) && Instant::now() < limit {
        sleep(Duration::from_millis(200));
        fds_after = fds_of(pid, proxy.port());
    }
    let rss_after = proxy.rss();

    // ---- figures ----
    let mut tolerated_by_kind: BTreeMap<&str, (u64, &str)> = BTreeMap::new();
    for (_, kind, text) in &seen.tolerated {
        tolerated_by_kind.entry(kind).or_insert((0, text)).0 += 1;
    }
    let mut faults_by_kind: BTreeMap<FaultKind, u64> = BTreeMap::new();
    for f in &faults {
        *faults_by_kind.entry(f.kind).or_default() += 1;
    }
    let total_ops: u64 = seen.ops.values().sum();
    println!("===== chaos: {clients} clients ({mixed} mixed, {pairs} blocking pairs, 1 publisher, {subscribers} subscribers) for {load_time:.1?} =====");
    println!(
        "operations: {total_ops} ({:.0}/s)",
        total_ops as f64 / load_time.as_secs_f64()
    );
    for (kind, n) in &seen.ops {
        println!("  {kind:<12} {n}");
    }
    println!(
        "acknowledged writes: {} (keys), {} pushes",
        seen.acked.len(),
        pushed.values().map(Vec::len).sum::<usize>()
    );
    println!("lost after hard kills: {lost_after_kill} writes, {items_lost} list items; list items unaccounted (BLPOP errors): {items_unaccounted}");
    println!(
        "transaction counters back after a hard kill: {}",
        seen.counter_rollbacks
    );
    println!(
        "pub/sub: {} published, {} received by {subscribers} subscribers, {} of them after a later one (in a fault window: a failover moved the publishing node)",
        seen.published,
        seen.received,
        seen.reordered.len()
    );
    println!(
        "tolerated errors: {} ({outside} outside a fault window)",
        seen.tolerated.len()
    );
    for (kind, (n, example)) in &tolerated_by_kind {
        println!("  {kind:<28} {n:>6}  e.g. {example}");
    }
    println!("faults injected: {}", faults.len());
    for (kind, n) in &faults_by_kind {
        println!("  {kind:?}: {n}");
    }
    for f in &faults {
        println!(
            "  at {:>6.1?} for {:>5.1?}: {}",
            f.start.duration_since(started),
            f.end.duration_since(f.start),
            f.what
        );
    }
    println!(
        "slotgate RSS: {:.1} MiB before, {:.1} MiB after (margin {} MiB)",
        rss_before as f64 / 1048576.0,
        rss_after as f64 / 1048576.0,
        RSS_MARGIN >> 20
    );
    println!(
        "slotgate fds: {} before, {} after; client sockets {} / {}; node sockets {} / {} (at most {node_fd_limit}: shared, spare pinned and subscriber connections); other {} / {}",
        fds_before.total(),
        fds_after.total(),
        fds_before.clients,
        fds_after.clients,
        fds_before.nodes,
        fds_after.nodes,
        fds_before.other,
        fds_after.other
    );
    println!("violations: {}", violations.len());
    for v in violations.iter().take(30) {
        println!("  {v}");
    }

    // ---- verdict ----
    assert!(
        violations.is_empty(),
        "{} violations, first: {:?}",
        violations.len(),
        &violations[..violations.len().min(10)]
    );
    for kind in [
        "get",
        "set",
        "pipeline",
        "mset+mget",
        "multi/exec",
        "rpush",
        "blpop",
        "publish",
    ] {
        assert!(
            seen.ops.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} ran"
        );
    }
    assert!(
        seen.acked.len() > 100,
        "only {} writes acknowledged",
        seen.acked.len()
    );
    assert!(seen.received > 0, "the subscribers got no message");
    for kind in [
        FaultKind::Migration,
        FaultKind::Failover,
        FaultKind::Stop,
        FaultKind::Kill,
    ] {
        assert!(
            faults_by_kind.contains_key(&kind),
            "no {kind:?} was injected"
        );
    }
    assert!(
        fds_back(&fds_after),
        "slotgate's fds did not come back: {fds_before:?} before, {fds_after:?} after (node sockets at most {node_fd_limit})"
    );
    assert!(
        rss_after <= rss_before + RSS_MARGIN,
        "slotgate's RSS is {rss_after} bytes after the run, {rss_before} before (margin {RSS_MARGIN})"
    );
    let mut proxy = proxy;
    assert!(proxy.try_wait().is_none(), "slotgate exited during the run");
}
