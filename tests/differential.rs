//! Differential test: the same random command sequences run against a standalone
//! `redis-server` and through slotgate against a 3-master cluster, and every reply is
//! compared frame by frame, error texts included, in RESP2 and (shorter) RESP3.
//!
//! The only replies not compared byte for byte are those of [`EXCEPTIONS`], the one list
//! of where Redis Cluster (and so slotgate) differs from one server, each with its
//! reason; README's "Differences from a single server" is the same list. A reply that
//! differs anywhere else fails the test with the seed, the step, the command and both
//! replies.
//!
//! - `SLOTGATE_DIFF_SEED=N` runs only seed N (in both protocols), to replay a failure;
//! - `SLOTGATE_DIFF_STEPS=N` runs N units per seed instead of the default;
//! - `SLOTGATE_DIFF_TRACE=1` prints every command and slotgate's reply.
//!
//! The generator is `tests/support/diff_gen.rs`.

mod support;

#[path = "support/diff_gen.rs"]
mod diff_gen;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diff_gen::{Cmd, Conn, Gen, Unit};
use support::{cluster_and_proxy, free_port, key_slot, tail_file, wait_until, RawClient};

/// Seeds and units per seed of the default run (RESP2), and of the shorter RESP3 run.
const RESP2_SEEDS: [u64; 4] = [1, 2, 3, 4];
const RESP2_UNITS: usize = 1500;
const RESP3_SEEDS: [u64; 2] = [101, 102];
const RESP3_UNITS: usize = 700;
/// How long one step's replies may take.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

// ---- where Redis Cluster differs from one server: the one list ----

/// When an exception applies to a command.
#[derive(Clone, Copy)]
enum When {
    /// Its keys are in more than one slot.
    KeysInSeveralSlots,
    /// Always.
    Always,
    /// Its first argument is not `0` (`SELECT 1`).
    NotDatabaseZero,
    /// The generator never sends it in this case (the row documents why).
    NeverGenerated,
}

/// What the comparison does instead of comparing bytes.
#[derive(Clone, Copy)]
enum Treat {
    /// Sent only through slotgate, whose reply must begin with this error; the standalone
    /// server is not asked (it would run the command and the two data sets would part).
    RefusedBySlotgate(&'static str),
    /// Both replies' elements are sorted before comparing.
    Sorted,
    /// A non-negative integer compares as "has a TTL"; -1 and -2 exactly.
    TtlClass,
    /// Both nil, or both a bulk string.
    NilOrString,
    /// The walk's keys compare as a set.
    KeySet,
    /// Not compared.
    NotCompared,
}

struct Exception {
    commands: &'static [&'static str],
    when: When,
    treat: Treat,
    reason: &'static str,
}

const CROSSSLOT: &str = "-CROSSSLOT Keys in request don't hash to the same slot";

/// Every place where a reply through slotgate may differ from a standalone server's.
/// README's "Differences from a single server" lists the same rows.
const EXCEPTIONS: &[Exception] = &[
    Exception {
        commands: &[
            "SINTER",
            "SUNION",
            "SDIFF",
            "SINTERSTORE",
            "SUNIONSTORE",
            "SDIFFSTORE",
            "SINTERCARD",
            "SMOVE",
            "ZRANGESTORE",
            "ZUNIONSTORE",
            "RENAME",
            "RENAMENX",
            "EVAL",
            "EVALSHA",
        ],
        when: When::KeysInSeveralSlots,
        treat: Treat::RefusedBySlotgate(CROSSSLOT),
        reason: "a cluster node runs a command only over keys of one slot, and these \
                 commands' meaning needs all their keys on one node, so slotgate cannot \
                 split them: it answers Redis Cluster's CROSSSLOT",
    },
    Exception {
        commands: &["MSETNX"],
        when: When::KeysInSeveralSlots,
        treat: Treat::RefusedBySlotgate(CROSSSLOT),
        reason: "MSETNX must set all of its keys or none, which keys of several slots \
                 (several nodes) cannot promise; slotgate does not split it and answers \
                 CROSSSLOT with that reason",
    },
    Exception {
        commands: &["SELECT"],
        when: When::NotDatabaseZero,
        treat: Treat::RefusedBySlotgate("-ERR SELECT is not allowed in cluster mode"),
        reason: "a cluster has only database 0",
    },
    Exception {
        commands: &["KEYS"],
        when: When::Always,
        treat: Treat::Sorted,
        reason: "every master answers for its own keys and slotgate concatenates the \
                 answers, master after master; one server's order is its hash table's",
    },
    Exception {
        commands: &["SCAN"],
        when: When::Always,
        treat: Treat::KeySet,
        reason: "slotgate's cursor walks the masters one after another, so cursors and \
                 the order of keys differ; a full walk returns the same keys",
    },
    Exception {
        commands: &["RANDOMKEY"],
        when: When::Always,
        treat: Treat::NilOrString,
        reason: "random on both sides; slotgate asks the masters in turn",
    },
    Exception {
        commands: &["SMEMBERS", "SINTER", "SUNION", "SDIFF"],
        when: When::Always,
        treat: Treat::Sorted,
        reason: "a set of strings is a hash table whose order depends on the process's \
                 random hash seed: two servers differ, a cluster or not",
    },
    Exception {
        commands: &["TTL", "PTTL"],
        when: When::Always,
        treat: Treat::TtlClass,
        reason: "the time left depends on the moment each server runs the command",
    },
    Exception {
        commands: &["HELLO"],
        when: When::Always,
        treat: Treat::NotCompared,
        reason: "slotgate answers HELLO itself: its client id and the server fields are \
                 its own",
    },
    Exception {
        commands: &["any multi-key command over several slots inside MULTI"],
        when: When::NeverGenerated,
        treat: Treat::NotCompared,
        reason: "slotgate refuses it at queue time with CROSSSLOT (a command over two \
                 slots cannot run on one node) and the EXEC answers EXECABORT",
    },
    Exception {
        commands: &["DBSIZE, KEYS, RANDOMKEY, SCAN, SCRIPT inside MULTI"],
        when: When::NeverGenerated,
        treat: Treat::NotCompared,
        reason: "cluster-wide commands cannot be queued in a transaction held at one \
                 node: slotgate aborts the transaction",
    },
];

fn applies(row: &Exception, cmd: &Cmd) -> bool {
    if !row.commands.contains(&cmd.name().as_str()) {
        return false;
    }
    match row.when {
        When::Always => true,
        When::KeysInSeveralSlots => {
            cmd.keys
                .iter()
                .map(|k| key_slot(k.as_bytes()))
                .collect::<BTreeSet<_>>()
                .len()
                > 1
        }
        When::NotDatabaseZero => cmd.args.get(1).is_some_and(|a| a != "0"),
        When::NeverGenerated => false,
    }
}

/// The exception row that applies to `cmd`, if any (the first, in table order).
fn exception_for(cmd: &Cmd) -> Option<usize> {
    EXCEPTIONS.iter().position(|row| applies(row, cmd))
}

// ---- replies as trees, for the listed normalizations ----

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Resp {
    /// `+`, `-`, `:`, `_`, `,`, `#`, `(` and null aggregates: the type and the line.
    Line(u8, String),
    /// `$`, `!`, `=`: the type and the payload (`None`: null bulk).
    Bulk(u8, Option<String>),
    /// `*`, `~`, `>`, `%`, `|`: the type and the elements (a map's keys and values in turn).
    Agg(u8, Vec<Resp>),
}

fn parse(text: &str) -> Resp {
    let bytes = text.as_bytes();
    let mut pos = 0;
    parse_at(bytes, &mut pos)
}

fn parse_at(b: &[u8], pos: &mut usize) -> Resp {
    let kind = b[*pos];
    let end = *pos + b[*pos..].windows(2).position(|w| w == b"\r\n").unwrap();
    let line = String::from_utf8_lossy(&b[*pos + 1..end]).into_owned();
    *pos = end + 2;
    match kind {
        b'$' | b'!' | b'=' => {
            let len: i64 = line.parse().unwrap();
            if len < 0 {
                return Resp::Bulk(kind, None);
            }
            let len = len as usize;
            let payload = String::from_utf8_lossy(&b[*pos..*pos + len]).into_owned();
            *pos += len + 2;
            Resp::Bulk(kind, Some(payload))
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n: i64 = line.parse().unwrap();
            if n < 0 {
                return Resp::Line(kind, line);
            }
            let n = n as usize * if matches!(kind, b'%' | b'|') { 2 } else { 1 };
            Resp::Agg(kind, (0..n).map(|_| parse_at(b, pos)).collect())
        }
        _ => Resp::Line(kind, line),
    }
}

/// `reply` as the comparison sees it under `treat`.
fn normalize(reply: Resp, treat: Option<Treat>) -> Resp {
    match (treat, reply) {
        (Some(Treat::Sorted), Resp::Agg(kind, mut items)) => {
            items.sort();
            Resp::Agg(kind, items)
        }
        (Some(Treat::TtlClass), Resp::Line(b':', n)) if !n.starts_with('-') => {
            Resp::Line(b':', "<has a ttl>".into())
        }
        (Some(Treat::NilOrString), Resp::Bulk(kind, Some(_))) => {
            Resp::Bulk(kind, Some("<a key>".into()))
        }
        (_, reply) => reply,
    }
}

fn treat_of(cmd: &Cmd) -> Option<Treat> {
    exception_for(cmd).map(|i| EXCEPTIONS[i].treat)
}

/// Both sides' replies to one step's commands, normalized: an `EXEC`'s elements by the
/// commands it ran.
fn normalize_step(cmds: &[&Cmd], replies: &[String]) -> Vec<Resp> {
    let mut queued: Option<Vec<&Cmd>> = None;
    let mut out = Vec::with_capacity(replies.len());
    for (cmd, reply) in cmds.iter().zip(replies) {
        let tree = parse(reply);
        let name = cmd.name();
        let tree = match name.as_str() {
            "MULTI" => {
                queued = Some(Vec::new());
                tree
            }
            "EXEC" | "DISCARD" => match (queued.take(), tree) {
                (Some(ran), Resp::Agg(kind, items))
                    if name == "EXEC" && ran.len() == items.len() =>
                {
                    let items = items
                        .into_iter()
                        .zip(&ran)
                        .map(|(item, c)| normalize(item, treat_of(c)))
                        .collect();
                    Resp::Agg(kind, items)
                }
                (_, tree) => tree,
            },
            _ => {
                if let Some(q) = queued.as_mut() {
                    q.push(cmd);
                }
                normalize(tree, treat_of(cmd))
            }
        };
        out.push(tree);
    }
    out
}

// ---- the standalone server ----

/// A plain (non-cluster) `redis-server` on a free loopback port; killed by pid on drop.
struct Standalone {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Standalone {
    fn start() -> Standalone {
        let dir = tempfile::Builder::new()
            .prefix("slotgate-standalone-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let log = dir.path().join("redis.log");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let server = Standalone {
            child,
            port,
            log,
            _dir: dir,
        };
        wait_until("the standalone redis-server answers PING", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && RawClient::connect(port).pipeline(&["PING"]) == ["+PONG\r\n"]
        });
        server
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "===== standalone redis-server on {}: log tail =====\n{}",
                self.port,
                tail_file(&self.log, 20)
            );
        }
    }
}

// ---- running units on both sides ----

/// One side's two connections: the client under test and a second one for `WATCH` races.
struct Side {
    main: RawClient,
    other: RawClient,
}

impl Side {
    fn open(port: u16, protocol: u8) -> Side {
        let mut side = Side {
            main: RawClient::connect(port),
            other: RawClient::connect(port),
        };
        if protocol == 3 {
            for con in [&mut side.main, &mut side.other] {
                let hello = Cmd::new("server", &["HELLO", "3"], &[]);
                let reply = send(con, &[&hello]);
                assert!(reply[0].starts_with('%'), "HELLO 3 on {port}: {reply:?}");
            }
        }
        side
    }

    fn con(&mut self, conn: Conn) -> &mut RawClient {
        match conn {
            Conn::Main => &mut self.main,
            Conn::Other => &mut self.other,
        }
    }
}

/// Writes `cmds` in one write and reads one reply each.
fn send(con: &mut RawClient, cmds: &[&Cmd]) -> Vec<String> {
    if cmds.is_empty() {
        return Vec::new();
    }
    let mut bytes = Vec::new();
    for c in cmds {
        c.encode(&mut bytes);
    }
    con.write(&bytes);
    let replies = con.read_replies(cmds.len(), REPLY_TIMEOUT);
    assert_eq!(
        replies.len(),
        cmds.len(),
        "{} replies to {:?}",
        replies.len(),
        cmds.iter().map(|c| c.text()).collect::<Vec<_>>()
    );
    replies
}

/// What went wrong, with what a reader needs to replay it.
struct Mismatch {
    protocol: u8,
    seed: u64,
    unit: usize,
    step: usize,
    command: String,
    context: Vec<String>,
    standalone: String,
    slotgate: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "RESP{} seed {} unit {} step {}: `{}`\n  standalone: {:?}\n  slotgate:   {:?}\n  \
             the step: {:?}\n  replay: SLOTGATE_DIFF_SEED={} SLOTGATE_DIFF_STEPS={} cargo test --test differential",
            self.protocol,
            self.seed,
            self.unit,
            self.step,
            self.command,
            self.standalone,
            self.slotgate,
            self.context,
            self.seed,
            self.unit + 1
        )
    }
}

#[derive(Default)]
struct Totals {
    /// Replies compared, by family.
    compared: BTreeMap<&'static str, u64>,
    /// Replies handled by an exception row instead, by row.
    excepted: BTreeMap<usize, u64>,
    units: u64,
    mismatches: Vec<Mismatch>,
}

/// Runs one unit on both sides; the first mismatch, if any.
fn run_unit(
    std_side: &mut Side,
    gate: &mut Side,
    unit: &Unit,
    totals: &mut Totals,
    at: (u8, u64, usize),
) -> Option<Mismatch> {
    let (protocol, seed, index) = at;
    let mismatch = |step: usize, cmd: &str, context: Vec<String>, a: String, b: String| Mismatch {
        protocol,
        seed,
        unit: index,
        step,
        command: cmd.to_string(),
        context,
        standalone: a,
        slotgate: b,
    };
    match unit {
        Unit::Scan { pattern, count } => {
            let row = EXCEPTIONS
                .iter()
                .position(|r| r.commands.contains(&"SCAN"))
                .unwrap();
            let a = scan_all(&mut std_side.main, pattern.as_deref(), *count);
            let b = scan_all(&mut gate.main, pattern.as_deref(), *count);
            *totals.excepted.entry(row).or_default() += 1;
            if a != b {
                return Some(mismatch(
                    0,
                    &format!("SCAN ... MATCH {pattern:?} COUNT {count} (whole walk)"),
                    Vec::new(),
                    format!("{a:?}"),
                    format!("{b:?}"),
                ));
            }
        }
        Unit::Steps(steps) => {
            for (step, (conn, cmds)) in steps.iter().enumerate() {
                let context: Vec<String> = cmds.iter().map(|c| c.text()).collect();
                let refused: Vec<Option<usize>> = cmds
                    .iter()
                    .map(|c| {
                        exception_for(c)
                            .filter(|&i| matches!(EXCEPTIONS[i].treat, Treat::RefusedBySlotgate(_)))
                    })
                    .collect();
                let to_std: Vec<&Cmd> = cmds
                    .iter()
                    .zip(&refused)
                    .filter(|(_, r)| r.is_none())
                    .map(|(c, _)| c)
                    .collect();
                let all: Vec<&Cmd> = cmds.iter().collect();
                let std_replies = send(std_side.con(*conn), &to_std);
                let gate_replies = send(gate.con(*conn), &all);
                // The proxy's replies to what the standalone also ran, and the refusals.
                let mut gate_compared = Vec::new();
                for ((cmd, reply), row) in cmds.iter().zip(&gate_replies).zip(&refused) {
                    match row {
                        Some(i) => {
                            let Treat::RefusedBySlotgate(want) = EXCEPTIONS[*i].treat else {
                                unreachable!()
                            };
                            *totals.excepted.entry(*i).or_default() += 1;
                            if !reply.starts_with(want) {
                                return Some(mismatch(
                                    step,
                                    &cmd.text(),
                                    context,
                                    format!("(not asked; expected from slotgate: {want})"),
                                    reply.clone(),
                                ));
                            }
                        }
                        None => gate_compared.push(reply.clone()),
                    }
                }
                if trace() {
                    for (cmd, reply) in cmds.iter().zip(&gate_replies) {
                        eprintln!("{index}.{step} {:?} {} -> {reply:?}", conn, cmd.text());
                    }
                }
                let a = normalize_step(&to_std, &std_replies);
                let b = normalize_step(&to_std, &gate_compared);
                for (i, cmd) in to_std.iter().enumerate() {
                    if a[i] != b[i] {
                        return Some(mismatch(
                            step,
                            &cmd.text(),
                            context,
                            std_replies[i].clone(),
                            gate_compared[i].clone(),
                        ));
                    }
                    match exception_for(cmd) {
                        Some(row) => *totals.excepted.entry(row).or_default() += 1,
                        None => *totals.compared.entry(cmd.family).or_default() += 1,
                    }
                }
            }
        }
    }
    None
}

/// Every key a whole `SCAN` walk returns (at most 10,000 calls).
fn scan_all(con: &mut RawClient, pattern: Option<&str>, count: u32) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut cursor = "0".to_string();
    for _ in 0..10_000 {
        let mut args = vec!["SCAN".to_string(), cursor.clone()];
        if let Some(p) = pattern {
            args.extend(["MATCH".to_string(), p.to_string()]);
        }
        args.extend(["COUNT".to_string(), count.to_string()]);
        let cmd = Cmd {
            args,
            family: "keys",
            keys: Vec::new(),
        };
        let reply = parse(&send(con, &[&cmd])[0]);
        let Resp::Agg(_, parts) = reply else {
            panic!("SCAN answered {reply:?}");
        };
        let (Resp::Bulk(_, Some(next)), Resp::Agg(_, found)) = (&parts[0], &parts[1]) else {
            panic!("SCAN answered {parts:?}");
        };
        for k in found {
            if let Resp::Bulk(_, Some(k)) = k {
                keys.insert(k.clone());
            }
        }
        cursor = next.clone();
        if cursor == "0" {
            return keys;
        }
    }
    panic!("SCAN did not end within 10,000 calls");
}

/// Runs `units` units of `seed` in `protocol` on fresh connections to both sides, after
/// emptying both.
fn run_seed(
    std_port: u16,
    gate_port: u16,
    protocol: u8,
    seed: u64,
    units: usize,
    totals: &mut Totals,
) {
    let mut std_side = Side::open(std_port, protocol);
    let mut gate = Side::open(gate_port, protocol);
    for side in [&mut std_side, &mut gate] {
        let flush = Cmd::new("server", &["FLUSHALL"], &[]);
        let scripts = Cmd::new("server", &["SCRIPT", "FLUSH"], &[]);
        let replies = send(&mut side.main, &[&flush, &scripts]);
        assert_eq!(replies, ["+OK\r\n", "+OK\r\n"]);
    }
    let mut gen = Gen::new(seed);
    for index in 0..units {
        let unit = gen.unit();
        totals.units += 1;
        if let Some(m) = run_unit(
            &mut std_side,
            &mut gate,
            &unit,
            totals,
            (protocol, seed, index),
        ) {
            eprintln!("MISMATCH {m}");
            totals.mismatches.push(m);
            return;
        }
    }
}

/// `SLOTGATE_DIFF_TRACE=1`: every command and slotgate's reply on stderr.
fn trace() -> bool {
    std::env::var_os("SLOTGATE_DIFF_TRACE").is_some()
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a number"))
    })
}

#[test]
fn replies_through_slotgate_equal_a_standalone_servers() {
    let (_cluster, proxy) = cluster_and_proxy(3, 0, &[]);
    let standalone = Standalone::start();
    let replay = env_u64("SLOTGATE_DIFF_SEED");
    let steps = env_u64("SLOTGATE_DIFF_STEPS").map(|n| n as usize);
    let runs: Vec<(u8, Vec<u64>, usize)> = match replay {
        Some(seed) => vec![
            (2, vec![seed], steps.unwrap_or(RESP2_UNITS)),
            (3, vec![seed], steps.unwrap_or(RESP3_UNITS)),
        ],
        None => vec![
            (2, RESP2_SEEDS.to_vec(), steps.unwrap_or(RESP2_UNITS)),
            (3, RESP3_SEEDS.to_vec(), steps.unwrap_or(RESP3_UNITS)),
        ],
    };
    let started = Instant::now();
    let mut totals = Totals::default();
    let mut seeds = 0;
    for (protocol, list, units) in runs {
        for seed in list {
            run_seed(
                standalone.port,
                proxy.port(),
                protocol,
                seed,
                units,
                &mut totals,
            );
            seeds += 1;
        }
    }
    let compared: u64 = totals.compared.values().sum();
    let excepted: u64 = totals.excepted.values().sum();
    println!(
        "differential: {seeds} seeds, {} units, {compared} replies compared byte for byte, \
         {excepted} by a listed exception, {} mismatches, in {:.1?}",
        totals.units,
        totals.mismatches.len(),
        started.elapsed()
    );
    for (family, n) in &totals.compared {
        println!("  {family:<12} {n:>6} compared");
    }
    for (row, n) in &totals.excepted {
        println!(
            "  {:<12} {n:>6} by exception: {} ({})",
            "",
            EXCEPTIONS[*row].commands.join(" "),
            EXCEPTIONS[*row].reason
        );
    }
    if !totals.mismatches.is_empty() {
        let all: Vec<String> = totals.mismatches.iter().map(|m| m.to_string()).collect();
        panic!("{} mismatches:\n{}", all.len(), all.join("\n"));
    }
    assert!(compared > 1000, "too little compared: {compared}");
}

#[test]
fn the_exceptions_table_is_the_readme_list() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = readme
        .split("### Differences from a single server")
        .nth(1)
        .expect("README has a \"Differences from a single server\" section");
    let section = section.split("\n#").next().unwrap_or(section);
    for row in EXCEPTIONS {
        for name in row.commands {
            assert!(
                section.contains(&format!("`{name}`")),
                "README's Differences from a single server does not list `{name}`"
            );
        }
    }
}

#[test]
fn a_seed_generates_the_same_units_every_time() {
    let texts = |seed| {
        let mut gen = Gen::new(seed);
        (0..300)
            .map(|_| format!("{:?}", gen.unit()))
            .collect::<Vec<_>>()
    };
    assert_eq!(texts(7), texts(7));
    assert_ne!(texts(7), texts(8));
    assert_eq!(
        diff_gen::sha1_hex(b"return 1"),
        "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
    );
}
