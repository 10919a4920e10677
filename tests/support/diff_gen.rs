//! The command generator of `tests/differential.rs`: a seeded, deterministic stream of
//! units (one command, a pipeline, a transaction, a `WATCH` race with a second
//! connection, a whole `SCAN`) over a small key space. It never looks at replies, so a
//! seed replays the same sequence whatever the servers answer.
//!
//! Keys: each data family has 24 names, `<f>{tN}i` (6 hash tags `t0`..`t5` x 3) and
//! `<f>:uN` (6 untagged), where `<f>` is the family's letter; one key in 20 is taken
//! from another family, so wrong-type errors happen. A tag is shared across families,
//! so `s{t1}0` and `l{t1}2` share a slot. Multi-key commands take keys of one tag
//! (same slot) six times in ten, otherwise any keys (usually several slots). Expiries
//! are long (100 s and more), or zero/negative (the key goes at once), so nothing
//! expires during a run at a moment that differs between two servers.

/// splitmix64: small, fast, and the same everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// 0..n
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// lo..=hi
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// One request as the client sends it.
#[derive(Clone, Debug)]
pub struct Cmd {
    pub args: Vec<String>,
    /// What the totals count it under.
    pub family: &'static str,
    /// The keys it names (for the slot check of the exceptions table).
    pub keys: Vec<String>,
}

impl Cmd {
    pub fn new(family: &'static str, args: &[&str], keys: &[&str]) -> Cmd {
        Cmd {
            args: args.iter().map(|a| a.to_string()).collect(),
            family,
            keys: keys.iter().map(|k| k.to_string()).collect(),
        }
    }

    /// The command's name, upper-cased.
    pub fn name(&self) -> String {
        self.args[0].to_ascii_uppercase()
    }

    /// As it would be typed.
    pub fn text(&self) -> String {
        self.args
            .iter()
            .map(|a| {
                if a.is_empty() || a.contains([' ', '\'', '"']) {
                    format!("{a:?}")
                } else {
                    a.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The RESP array the client writes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(format!("*{}\r\n", self.args.len()).as_bytes());
        for a in &self.args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Which of the two connections of a side a step is written on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conn {
    /// The client under test.
    Main,
    /// A second client, for the conflicting write of a `WATCH` race.
    Other,
}

/// What the generator hands out: the steps run in order, each step's commands in one
/// write on its connection, its replies read before the next step.
#[derive(Clone, Debug)]
pub enum Unit {
    Steps(Vec<(Conn, Vec<Cmd>)>),
    /// `SCAN 0 [MATCH pattern] COUNT count`, followed until the cursor is 0.
    Scan {
        pattern: Option<String>,
        count: u32,
    },
}

const TAGS: usize = 6;
const PER_TAG: usize = 3;
const UNTAGGED: usize = 6;
const FAMILIES: [char; 6] = ['s', 'h', 'l', 'e', 'z', 'x'];

const VALUES: [&str; 12] = [
    "a",
    "b",
    "hello",
    "",
    "10",
    "-3",
    "3.5",
    "7",
    "x y",
    "0",
    "zz",
    "12345678901",
];
const FIELDS: [&str; 6] = ["f1", "f2", "f3", "name", "n", "x"];
const MEMBERS: [&str; 10] = ["m1", "m2", "m3", "apple", "pear", "1", "2", "30", "-5", "z"];

/// Deterministic scripts with their number of keys: they read and write only their keys.
pub const SCRIPTS: [(&str, usize); 6] = [
    ("return redis.call('INCRBY', KEYS[1], ARGV[1])", 1),
    (
        "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[2])",
        2,
    ),
    (
        "return {redis.call('RPUSH', KEYS[1], ARGV[1]), redis.call('LRANGE', KEYS[1], 0, -1)}",
        1,
    ),
    ("return redis.call('EXISTS', KEYS[1], KEYS[2])", 2),
    ("return redis.error_reply('my failure')", 0),
    ("return {1, 'two', 3.99, false, {ARGV[1]}}", 0),
];

pub struct Gen {
    rng: Rng,
    /// The next stream id's milliseconds part: mostly increasing, so most `XADD`s succeed.
    stream_ms: i64,
    /// Inside a transaction: every command over one slot, no cluster-wide command.
    in_multi: bool,
}

impl Gen {
    pub fn new(seed: u64) -> Gen {
        Gen {
            rng: Rng::new(seed),
            stream_ms: 1,
            in_multi: false,
        }
    }

    /// The next unit.
    pub fn unit(&mut self) -> Unit {
        let r = self.rng.below(100);
        match r {
            0..=67 => Unit::Steps(vec![(Conn::Main, vec![self.command()])]),
            68..=79 => {
                let n = self.rng.range(2, 12) as usize;
                let cmds = (0..n).map(|_| self.command()).collect();
                Unit::Steps(vec![(Conn::Main, cmds)])
            }
            80..=88 => self.transaction(),
            89..=94 => self.watch_race(),
            95..=96 => self.script_load(),
            97 => Unit::Scan {
                pattern: self.rng.chance(50).then(|| {
                    self.rng
                        .pick(&["*{t1}*", "s*", "*:u*", "x*", "nomatch*"])
                        .to_string()
                }),
                count: *self.rng.pick(&[3, 10, 100]),
            },
            _ => Unit::Steps(vec![(Conn::Main, vec![self.error()])]),
        }
    }

    fn tag(&mut self) -> usize {
        self.rng.below(TAGS as u64) as usize
    }

    fn key_of(&mut self, family: char, tag: Option<usize>) -> String {
        let family = if self.rng.chance(5) {
            *self.rng.pick(&FAMILIES)
        } else {
            family
        };
        match tag {
            Some(t) => format!("{family}{{t{t}}}{}", self.rng.below(PER_TAG as u64)),
            None => {
                let n = self.rng.below((TAGS * PER_TAG + UNTAGGED) as u64) as usize;
                if n < TAGS * PER_TAG {
                    format!("{family}{{t{}}}{}", n / PER_TAG, n % PER_TAG)
                } else {
                    format!("{family}:u{}", n - TAGS * PER_TAG)
                }
            }
        }
    }

    fn key(&mut self, family: char) -> String {
        self.key_of(family, None)
    }

    /// `n` keys of `family`: of one tag six times in ten (always inside a transaction).
    fn keys(&mut self, family: char, n: usize) -> Vec<String> {
        let tag = (self.in_multi || self.rng.chance(60)).then(|| self.tag());
        (0..n).map(|_| self.key_of(family, tag)).collect()
    }

    fn value(&mut self) -> String {
        self.rng.pick(&VALUES).to_string()
    }

    fn int(&mut self, lo: i64, hi: i64) -> String {
        self.rng.range(lo, hi).to_string()
    }

    /// One command of any family.
    pub fn command(&mut self) -> Cmd {
        match self.rng.below(100) {
            0..=21 => self.string(),
            22..=33 => self.hash(),
            34..=47 => self.list(),
            48..=59 => self.set(),
            60..=71 => self.zset(),
            72..=79 => self.stream(),
            80..=89 => self.expiry(),
            90..=96 => self.keyspace(),
            _ => self.script(),
        }
    }

    fn string(&mut self) -> Cmd {
        let k = self.key('s');
        let f = "string";
        match self.rng.below(19) {
            0..=2 => {
                let v = self.value();
                let mut args = vec!["SET".to_string(), k.clone(), v];
                match self.rng.below(5) {
                    0 => args.extend(["EX".into(), self.int(100, 10_000)]),
                    1 => args.extend(["PX".into(), self.int(100_000, 10_000_000)]),
                    2 => args.push("KEEPTTL".into()),
                    _ => {}
                }
                match self.rng.below(4) {
                    0 => args.push("NX".into()),
                    1 => args.push("XX".into()),
                    _ => {}
                }
                if self.rng.chance(30) {
                    args.push("GET".into());
                }
                Cmd {
                    args,
                    family: f,
                    keys: vec![k],
                }
            }
            3 => Cmd::new(f, &["GET", &k], &[&k]),
            4 => Cmd::new(f, &["GETDEL", &k], &[&k]),
            5 => {
                let opt: &[&str] = match self.rng.below(4) {
                    0 => &["EX", "500"],
                    1 => &["PX", "900000"],
                    2 => &["PERSIST"],
                    _ => &[],
                };
                let mut args = vec!["GETEX", &k];
                args.extend_from_slice(opt);
                Cmd::new(f, &args, &[&k])
            }
            6 => Cmd::new(f, &["APPEND", &k, &self.value()], &[&k]),
            7 => Cmd::new(f, &["INCR", &k], &[&k]),
            8 => Cmd::new(f, &["INCRBY", &k, &self.int(-100, 100)], &[&k]),
            9 => {
                let by = *self.rng.pick(&["0.5", "-1.25", "3", "1e2", "abc"]);
                Cmd::new(f, &["INCRBYFLOAT", &k, by], &[&k])
            }
            10 => Cmd::new(f, &["DECR", &k], &[&k]),
            11 => Cmd::new(f, &["STRLEN", &k], &[&k]),
            12 => Cmd::new(f, &["SETRANGE", &k, &self.int(0, 12), &self.value()], &[&k]),
            13 => Cmd::new(
                f,
                &["GETRANGE", &k, &self.int(-5, 5), &self.int(-3, 20)],
                &[&k],
            ),
            14 | 15 => {
                let n = self.rng.range(1, 4) as usize;
                let keys = self.keys('s', n);
                let mut args = vec!["MSET".to_string()];
                for key in &keys {
                    args.push(key.clone());
                    args.push(self.value());
                }
                Cmd {
                    args,
                    family: f,
                    keys,
                }
            }
            16 | 17 => {
                let n = self.rng.range(1, 5) as usize;
                let keys = self.keys('s', n);
                let mut args = vec!["MGET".to_string()];
                args.extend(keys.iter().cloned());
                Cmd {
                    args,
                    family: f,
                    keys,
                }
            }
            _ => {
                let n = self.rng.range(1, 3) as usize;
                let keys = self.keys('s', n);
                let mut args = vec!["MSETNX".to_string()];
                for key in &keys {
                    args.push(key.clone());
                    args.push(self.value());
                }
                Cmd {
                    args,
                    family: f,
                    keys,
                }
            }
        }
    }

    fn hash(&mut self) -> Cmd {
        let k = self.key('h');
        let f = "hash";
        let field = self.rng.pick(&FIELDS).to_string();
        match self.rng.below(13) {
            0..=2 => {
                let mut args = vec!["HSET".to_string(), k.clone()];
                for _ in 0..self.rng.range(1, 3) {
                    args.push(self.rng.pick(&FIELDS).to_string());
                    args.push(self.value());
                }
                Cmd {
                    args,
                    family: f,
                    keys: vec![k],
                }
            }
            3 => Cmd::new(f, &["HGET", &k, &field], &[&k]),
            4 => Cmd::new(f, &["HDEL", &k, &field, "n"], &[&k]),
            5 => Cmd::new(f, &["HGETALL", &k], &[&k]),
            6 => Cmd::new(f, &["HKEYS", &k], &[&k]),
            7 => Cmd::new(f, &["HVALS", &k], &[&k]),
            8 => Cmd::new(f, &["HLEN", &k], &[&k]),
            9 => Cmd::new(f, &["HINCRBY", &k, &field, &self.int(-5, 5)], &[&k]),
            10 => Cmd::new(f, &["HEXISTS", &k, &field], &[&k]),
            11 => Cmd::new(f, &["HMGET", &k, &field, "f1", "nope"], &[&k]),
            _ => Cmd::new(f, &["HSETNX", &k, &field, &self.value()], &[&k]),
        }
    }

    fn list(&mut self) -> Cmd {
        let k = self.key('l');
        let f = "list";
        let side = |g: &mut Gen| g.rng.pick(&["LEFT", "RIGHT"]).to_string();
        match self.rng.below(17) {
            0..=2 => {
                let push = *self.rng.pick(&["LPUSH", "RPUSH"]);
                let mut args = vec![push.to_string(), k.clone()];
                for _ in 0..self.rng.range(1, 3) {
                    args.push(self.value());
                }
                Cmd {
                    args,
                    family: f,
                    keys: vec![k],
                }
            }
            3 => Cmd::new(f, &["LPOP", &k], &[&k]),
            4 => Cmd::new(f, &["RPOP", &k, &self.int(1, 3)], &[&k]),
            5 => Cmd::new(f, &["LRANGE", &k, "0", "-1"], &[&k]),
            6 => Cmd::new(
                f,
                &["LRANGE", &k, &self.int(-4, 2), &self.int(-2, 5)],
                &[&k],
            ),
            7 => Cmd::new(f, &["LLEN", &k], &[&k]),
            8 => Cmd::new(f, &["LINDEX", &k, &self.int(-3, 3)], &[&k]),
            9 => Cmd::new(f, &["LSET", &k, &self.int(-2, 2), &self.value()], &[&k]),
            10 => Cmd::new(f, &["LREM", &k, &self.int(-2, 2), &self.value()], &[&k]),
            11 => {
                let pos = *self.rng.pick(&["BEFORE", "AFTER"]);
                Cmd::new(
                    f,
                    &["LINSERT", &k, pos, &self.value(), &self.value()],
                    &[&k],
                )
            }
            12 => Cmd::new(f, &["LTRIM", &k, &self.int(0, 2), &self.int(-1, 6)], &[&k]),
            13 | 14 => {
                let keys = self.keys('l', 2);
                let (from, to) = (side(self), side(self));
                Cmd::new(
                    f,
                    &["LMOVE", &keys[0], &keys[1], &from, &to],
                    &[&keys[0], &keys[1]],
                )
            }
            15 => {
                let keys = self.keys('l', 2);
                Cmd::new(f, &["RPOPLPUSH", &keys[0], &keys[1]], &[&keys[0], &keys[1]])
            }
            _ => Cmd::new(f, &["LPOS", &k, &self.value()], &[&k]),
        }
    }

    fn set(&mut self) -> Cmd {
        let k = self.key('e');
        let f = "set";
        let m = self.rng.pick(&MEMBERS).to_string();
        let multi = |g: &mut Gen, name: &str, store: bool| {
            let n = g.rng.range(2, 3) as usize + usize::from(store);
            let keys = g.keys('e', n);
            let mut args = vec![name.to_string()];
            args.extend(keys.iter().cloned());
            Cmd {
                args,
                family: "set",
                keys,
            }
        };
        match self.rng.below(14) {
            0..=2 => {
                let mut args = vec!["SADD".to_string(), k.clone()];
                for _ in 0..self.rng.range(1, 4) {
                    args.push(self.rng.pick(&MEMBERS).to_string());
                }
                Cmd {
                    args,
                    family: f,
                    keys: vec![k],
                }
            }
            3 => Cmd::new(f, &["SREM", &k, &m], &[&k]),
            4 => Cmd::new(f, &["SMEMBERS", &k], &[&k]),
            5 => Cmd::new(f, &["SCARD", &k], &[&k]),
            6 => Cmd::new(f, &["SISMEMBER", &k, &m], &[&k]),
            7 => Cmd::new(f, &["SMISMEMBER", &k, &m, "m1"], &[&k]),
            8 => {
                let name = *self.rng.pick(&["SINTER", "SUNION", "SDIFF"]);
                multi(self, name, false)
            }
            9 | 10 => {
                let name = *self.rng.pick(&["SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE"]);
                multi(self, name, true)
            }
            11 => {
                let keys = self.keys('e', 2);
                Cmd::new(f, &["SMOVE", &keys[0], &keys[1], &m], &[&keys[0], &keys[1]])
            }
            12 => {
                let keys = self.keys('e', 2);
                Cmd::new(
                    f,
                    &["SINTERCARD", "2", &keys[0], &keys[1]],
                    &[&keys[0], &keys[1]],
                )
            }
            _ => Cmd::new(f, &["SADD", &k, &self.int(0, 20)], &[&k]),
        }
    }

    fn zset(&mut self) -> Cmd {
        let k = self.key('z');
        let f = "zset";
        let m = self.rng.pick(&MEMBERS).to_string();
        let score = |g: &mut Gen| {
            g.rng
                .pick(&["1", "2", "2.5", "-1", "10", "inf", "0"])
                .to_string()
        };
        match self.rng.below(16) {
            0..=3 => {
                let mut args = vec!["ZADD".to_string(), k.clone()];
                for flag in [
                    self.rng.pick(&["", "", "NX", "XX"]),
                    self.rng.pick(&["", "", "", "GT", "LT"]),
                    self.rng.pick(&["", "CH"]),
                ] {
                    if !flag.is_empty() {
                        args.push(flag.to_string());
                    }
                }
                let incr = self.rng.chance(10);
                if incr {
                    args.push("INCR".into());
                }
                let pairs = if incr { 1 } else { self.rng.range(1, 3) };
                for _ in 0..pairs {
                    args.push(score(self));
                    args.push(self.rng.pick(&MEMBERS).to_string());
                }
                Cmd {
                    args,
                    family: f,
                    keys: vec![k],
                }
            }
            4 => Cmd::new(f, &["ZSCORE", &k, &m], &[&k]),
            5 => Cmd::new(f, &["ZINCRBY", &k, &score(self), &m], &[&k]),
            6 => Cmd::new(f, &["ZRANGE", &k, "0", "-1", "WITHSCORES"], &[&k]),
            7 => Cmd::new(
                f,
                &["ZRANGE", &k, "(1", "+inf", "BYSCORE", "LIMIT", "0", "3"],
                &[&k],
            ),
            8 => Cmd::new(f, &["ZRANGE", &k, "+inf", "-inf", "BYSCORE", "REV"], &[&k]),
            9 => Cmd::new(f, &["ZRANGE", &k, "[a", "(z", "BYLEX"], &[&k]),
            10 => Cmd::new(f, &["ZRANK", &k, &m], &[&k]),
            11 => Cmd::new(f, &["ZREM", &k, &m, "m2"], &[&k]),
            12 => Cmd::new(f, &["ZCARD", &k], &[&k]),
            13 => {
                let keys = self.keys('z', 2);
                Cmd::new(
                    f,
                    &["ZRANGESTORE", &keys[0], &keys[1], "0", &self.int(-1, 3)],
                    &[&keys[0], &keys[1]],
                )
            }
            14 => {
                let n = self.rng.range(1, 3) as usize;
                let keys = self.keys('z', n + 1);
                let mut args = vec!["ZUNIONSTORE".to_string(), keys[0].clone(), n.to_string()];
                args.extend(keys[1..].iter().cloned());
                if self.rng.chance(30) {
                    args.push("AGGREGATE".into());
                    args.push(self.rng.pick(&["SUM", "MIN", "MAX"]).to_string());
                }
                Cmd {
                    args,
                    family: f,
                    keys,
                }
            }
            _ => Cmd::new(f, &["ZPOPMIN", &k], &[&k]),
        }
    }

    fn stream(&mut self) -> Cmd {
        let k = self.key('x');
        let f = "stream";
        match self.rng.below(8) {
            0..=3 => {
                // Mostly a new id; one in five reuses an old one (refused as not greater).
                if !self.rng.chance(20) {
                    self.stream_ms += self.rng.range(0, 3);
                }
                let id = format!("{}-{}", self.stream_ms, self.rng.below(3));
                let mut args = vec!["XADD".to_string(), k.clone()];
                if self.rng.chance(20) {
                    args.extend(["MAXLEN".into(), "=".into(), self.int(1, 5)]);
                }
                args.extend([id, "f".into(), self.value()]);
                Cmd {
                    args,
                    family: f,
                    keys: vec![k],
                }
            }
            4 => Cmd::new(
                f,
                &["XRANGE", &k, "-", "+", "COUNT", &self.int(1, 5)],
                &[&k],
            ),
            5 => Cmd::new(f, &["XREVRANGE", &k, "+", "-"], &[&k]),
            6 => Cmd::new(f, &["XLEN", &k], &[&k]),
            _ => Cmd::new(f, &["XTRIM", &k, "MAXLEN", &self.int(0, 4)], &[&k]),
        }
    }

    fn any_key(&mut self) -> String {
        let family = *self.rng.pick(&FAMILIES);
        self.key(family)
    }

    fn expiry(&mut self) -> Cmd {
        let k = self.any_key();
        let f = "expiry";
        match self.rng.below(8) {
            0 | 1 => {
                let secs = if self.rng.chance(15) {
                    self.int(-5, 0)
                } else {
                    self.int(100, 10_000)
                };
                let mut args = vec!["EXPIRE", &k, &secs];
                let opt = *self.rng.pick(&["", "", "NX", "XX", "GT", "LT"]);
                if !opt.is_empty() {
                    args.push(opt);
                }
                Cmd::new(f, &args, &[&k])
            }
            2 => Cmd::new(f, &["PEXPIRE", &k, &self.int(100_000, 10_000_000)], &[&k]),
            3 | 4 => Cmd::new(f, &["TTL", &k], &[&k]),
            5 => Cmd::new(f, &["PTTL", &k], &[&k]),
            _ => Cmd::new(f, &["PERSIST", &k], &[&k]),
        }
    }

    fn keyspace(&mut self) -> Cmd {
        let f = "keys";
        let several = |g: &mut Gen, name: &str| {
            let n = g.rng.range(1, 4) as usize;
            let tag = (g.in_multi || g.rng.chance(50)).then(|| g.tag());
            let keys: Vec<String> = (0..n)
                .map(|_| {
                    let family = *g.rng.pick(&FAMILIES);
                    g.key_of(family, tag)
                })
                .collect();
            let mut args = vec![name.to_string()];
            args.extend(keys.iter().cloned());
            Cmd {
                args,
                family: "keys",
                keys,
            }
        };
        match self.rng.below(13) {
            0 => several(self, "DEL"),
            1 => several(self, "UNLINK"),
            2 => several(self, "EXISTS"),
            3 => several(self, "TOUCH"),
            4 | 5 => {
                let k = self.any_key();
                Cmd::new(f, &["TYPE", &k], &[&k])
            }
            6 | 7 => {
                let name = *self.rng.pick(&["RENAME", "RENAMENX"]);
                let family = *self.rng.pick(&FAMILIES);
                let keys = self.keys(family, 2);
                Cmd::new(f, &[name, &keys[0], &keys[1]], &[&keys[0], &keys[1]])
            }
            8 if !self.in_multi => Cmd::new(f, &["DBSIZE"], &[]),
            9 if !self.in_multi => {
                let pattern = *self.rng.pick(&["*", "s*", "*{t2}*", "?:u*"]);
                Cmd::new(f, &["KEYS", pattern], &[])
            }
            10 if !self.in_multi => Cmd::new(f, &["RANDOMKEY"], &[]),
            11 => {
                let db = if !self.in_multi && self.rng.chance(30) {
                    "1"
                } else {
                    "0"
                };
                Cmd::new(f, &["SELECT", db], &[])
            }
            _ => Cmd::new(f, &["ECHO", &self.value()], &[]),
        }
    }

    fn script(&mut self) -> Cmd {
        let (body, nkeys) = *self.rng.pick(&SCRIPTS);
        let keys = if nkeys == 0 {
            Vec::new()
        } else {
            let family = *self.rng.pick(&['s', 'l']);
            self.keys(family, nkeys)
        };
        let mut args = vec!["EVAL".to_string(), body.to_string(), nkeys.to_string()];
        args.extend(keys.iter().cloned());
        args.push(self.int(1, 9));
        Cmd {
            args,
            family: "script",
            keys,
        }
    }

    /// `SCRIPT LOAD` then `EVALSHA` of what it answered (the SHA1 is the script's, so the
    /// generator knows it without the reply), or an `EVALSHA` nobody loaded.
    fn script_load(&mut self) -> Unit {
        let i = self.rng.below(SCRIPTS.len() as u64) as usize;
        let (body, nkeys) = SCRIPTS[i];
        let keys = if nkeys == 0 {
            Vec::new()
        } else {
            self.keys('s', nkeys)
        };
        let sha = if self.rng.chance(15) {
            "ffffffffffffffffffffffffffffffffffffffff".to_string()
        } else {
            sha1_hex(body.as_bytes())
        };
        let mut args = vec!["EVALSHA".to_string(), sha.clone(), nkeys.to_string()];
        args.extend(keys.iter().cloned());
        args.push(self.int(1, 9));
        let evalsha = Cmd {
            args,
            family: "script",
            keys,
        };
        Unit::Steps(vec![(
            Conn::Main,
            vec![
                Cmd::new("script", &["SCRIPT", "LOAD", body], &[]),
                Cmd::new("script", &["SCRIPT", "EXISTS", &sha, "0000"], &[]),
                evalsha,
            ],
        )])
    }

    /// A command that fails the same way everywhere: wrong arity, unknown, bad syntax.
    pub fn error(&mut self) -> Cmd {
        let k = self.key('s');
        let f = "error";
        match self.rng.below(10) {
            0 => Cmd::new(f, &["GET"], &[]),
            1 => Cmd::new(f, &["SET", &k], &[&k]),
            2 => Cmd::new(f, &["HSET", &k, "f"], &[&k]),
            3 => Cmd::new(f, &["LPUSH", &k], &[&k]),
            4 => Cmd::new(f, &["ZADD", &k, "1"], &[&k]),
            5 => Cmd::new(f, &["NOSUCHCOMMAND", &k, "x"], &[]),
            6 => Cmd::new(f, &["SET", &k, "v", "EX", "abc"], &[&k]),
            7 => Cmd::new(f, &["EXPIRE", &k], &[&k]),
            8 => Cmd::new(f, &["XADD", &k, "1-1"], &[&k]),
            _ => Cmd::new(f, &["INCRBY", &k, "1.5"], &[&k]),
        }
    }

    /// `MULTI`, 1-6 commands over one slot each (one in six an error at queue time or a
    /// wrong-type one at run time), then `EXEC`, or `DISCARD` one time in six.
    fn transaction(&mut self) -> Unit {
        let mut cmds = vec![Cmd::new("transaction", &["MULTI"], &[])];
        self.in_multi = true;
        for _ in 0..self.rng.range(1, 6) {
            let cmd = if self.rng.chance(12) {
                self.error()
            } else {
                self.command()
            };
            cmds.push(cmd);
        }
        self.in_multi = false;
        let end = if self.rng.chance(16) {
            "DISCARD"
        } else {
            "EXEC"
        };
        cmds.push(Cmd::new("transaction", &[end], &[]));
        Unit::Steps(vec![(Conn::Main, cmds)])
    }

    /// `WATCH` keys of one slot, maybe a read, then (half the time) another client
    /// writes one of them, or a key next to them; maybe `UNWATCH`; then a transaction.
    fn watch_race(&mut self) -> Unit {
        let family = *self.rng.pick(&['s', 'l', 'h']);
        let tag = self.tag();
        let watched: Vec<String> = (0..self.rng.range(1, 2))
            .map(|_| self.key_of(family, Some(tag)))
            .collect();
        let mut watch = vec!["WATCH".to_string()];
        watch.extend(watched.iter().cloned());
        let mut first = vec![Cmd {
            args: watch,
            family: "transaction",
            keys: watched.clone(),
        }];
        if self.rng.chance(50) {
            first.push(Cmd::new("keys", &["TYPE", &watched[0]], &[&watched[0]]));
        }
        let mut steps = vec![(Conn::Main, first)];
        let touched = if self.rng.chance(60) {
            watched[0].clone()
        } else {
            self.key_of('s', Some(tag))
        };
        let conflict = match self.rng.below(3) {
            0 => Some(Cmd::new("keys", &["DEL", &touched], &[&touched])),
            1 => Some(Cmd::new(
                "expiry",
                &["EXPIRE", &touched, "5000"],
                &[&touched],
            )),
            _ => None,
        };
        if let Some(c) = conflict {
            steps.push((Conn::Other, vec![c]));
        }
        let mut second = Vec::new();
        if self.rng.chance(20) {
            second.push(Cmd::new("transaction", &["UNWATCH"], &[]));
        }
        if let Unit::Steps(mut tx) = self.transaction() {
            second.append(&mut tx[0].1);
        }
        steps.push((Conn::Main, second));
        Unit::Steps(steps)
    }
}

/// SHA1 as lowercase hex: what `SCRIPT LOAD` answers.
pub fn sha1_hex(data: &[u8]) -> String {
    sha1_smol::Sha1::from(data).digest().to_string()
}
