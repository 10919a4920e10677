//! Every client connected to this slotgate, whichever worker thread serves it: what
//! `CLIENT LIST`/`CLIENT INFO` show of each, `CLIENT KILL` and `CLIENT UNBLOCK` of a
//! client on any worker, and the `MONITOR` feed.
//!
//! Each session owns a [`ClientHandle`], made when it connects and dropped when it
//! ends, which registers its [`ClientEntry`] with its worker. An entry is written only
//! by that session's worker: its activity and last command once per read (one relaxed
//! store), its buffers once per watchdog tick, its name and protocol when they change;
//! any worker may read it to list clients. A worker reaches another worker's clients
//! only through that worker's mail and the waker of its event loop: a kill, an
//! unblock, or lines for its monitoring clients. With no client monitoring, a request pays one relaxed
//! load ([`ClientRegistry::monitored`]).

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering::*,
};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::cluster::NodeAddr;

/// Identifies a client connection (`CLIENT ID`), unique across workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(pub u64);

/// The client's state bits behind `CLIENT LIST`'s `flags` field.
pub mod flags {
    /// `O`: in `MONITOR` mode.
    pub const MONITOR: u32 = 1 << 0;
    /// `P`: subscribed to a channel or pattern (its type is `pubsub`). The pub/sub code
    /// sets it with the counts ([`super::ClientHandle::set_subscriptions`]).
    pub const PUBSUB: u32 = 1 << 1;
    /// `x`: in a `MULTI` ([`super::ClientHandle::set_multi`]).
    pub const MULTI: u32 = 1 << 2;
    /// `b`: waiting in a blocking command.
    pub const BLOCKED: u32 = 1 << 3;
    /// `c`: closing once its replies are written.
    pub const CLOSING: u32 = 1 << 4;
    /// `e`: `CLIENT NO-EVICT on`.
    pub const NO_EVICT: u32 = 1 << 5;
    /// `r`: `READONLY`: its reads go to replicas.
    pub const READONLY: u32 = 1 << 6;

    /// In Redis's order; `N` when none is set.
    pub(super) const LETTERS: [(u32, char); 7] = [
        (MONITOR, 'O'),
        (PUBSUB, 'P'),
        (MULTI, 'x'),
        (BLOCKED, 'b'),
        (CLOSING, 'c'),
        (READONLY, 'r'),
        (NO_EVICT, 'e'),
    ];
}

/// `flags=` as Redis writes it.
pub fn flag_letters(bits: u32) -> String {
    let letters: String = flags::LETTERS
        .iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|&(_, c)| c)
        .collect();
    if letters.is_empty() {
        "N".to_string()
    } else {
        letters
    }
}

/// No command yet (`cmd=NULL`), or one the table does not know.
pub const NO_COMMAND: u16 = u16::MAX;

/// Every client of this slotgate, by worker.
pub struct ClientRegistry {
    /// Time zero of the coarse clocks and of the entries' `since`.
    started: Instant,
    workers: Box<[Arc<WorkerClients>]>,
    /// Monitoring clients on all workers. A session's `MONITOR` adds one, its end (or
    /// `RESET`) takes it away; every request loads it (relaxed) to know whether to feed.
    monitors: AtomicUsize,
    /// Each worker's event-loop waker, set once when the workers start: a kill or
    /// monitor lines for a worker wake it (the server also wakes them all on shutdown).
    wakers: OnceLock<Box<[Arc<mio::Waker>]>>,
}

/// One worker's clients, on their own cache line.
#[repr(align(64))]
struct WorkerClients {
    /// Milliseconds since `started` at the worker's last watchdog tick (100 ms):
    /// stored by the worker, loaded by its sessions once per read.
    clock: AtomicU64,
    /// `mail` has something: set by whoever posts, cleared by the worker when it takes
    /// the mail (each turn it loads this once).
    has_mail: AtomicBool,
    /// Monitoring clients on this worker: feeders skip a worker without any.
    monitors: AtomicUsize,
    mail: Mutex<Mail>,
    /// This worker's clients, by session key: the worker inserts and removes, any
    /// worker locks it briefly to list or kill.
    entries: Mutex<Vec<Option<Arc<ClientEntry>>>>,
    /// What this worker's pub/sub hub subscribes at the nodes: written by the worker
    /// when a client (un)subscribes, read by any worker answering `PUBSUB NUMSUB`.
    subscriptions: Mutex<HubSubscriptions>,
}

/// One worker's pub/sub hub as the nodes count it: each channel, pattern or shard
/// channel its clients want is subscribed once at one node ([`SubscriptionCounts`]).
#[derive(Default)]
struct HubSubscriptions {
    /// Clients of this worker subscribed, by kind (0 channel, 1 pattern, 2 shard
    /// channel) and name; only names with clients.
    clients: [std::collections::HashMap<Bytes, u32>; 3],
    /// Where the hub subscribes plain channels and patterns.
    plain_node: Option<NodeAddr>,
}

/// Slotgate's share of what nodes count for `PUBSUB NUMSUB`/`SHARDNUMSUB`/`NUMPAT`: the
/// clients subscribed through slotgate, and the subscriptions slotgate's hubs hold at
/// the nodes on their behalf (one per worker with clients for that name).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscriptionCounts {
    /// Clients of this slotgate subscribed (patterns: distinct patterns).
    pub clients: u64,
    /// Subscriptions slotgate's hubs hold at the nodes (patterns: distinct per node).
    pub at_nodes: u64,
}

impl SubscriptionCounts {
    /// What the nodes counted, `nodes`, as a client of a server expects it: slotgate's
    /// own subscriptions at the nodes replaced by its clients.
    pub fn adjust(self, nodes: i64) -> i64 {
        nodes
            .saturating_sub(self.at_nodes as i64)
            .saturating_add(self.clients as i64)
            .max(0)
    }
}

/// What other workers (or this one's sessions) leave for a worker's event loop.
#[derive(Default)]
struct Mail {
    /// Clients to close now: session key and id.
    kills: Vec<(usize, ClientId)>,
    /// Clients to unblock (`CLIENT UNBLOCK`): session key, id and how.
    unblocks: Vec<(usize, ClientId, Unblock)>,
    /// `MONITOR` lines for this worker's monitoring clients, in the order fed.
    lines: BytesMut,
    /// This worker's monitoring sessions (key, id); not taken with the mail.
    monitoring: Vec<(usize, ClientId)>,
}

/// What a worker's event loop takes from its mail in one turn.
#[derive(Default)]
pub struct Delivery {
    /// Sessions to close (key, id): check the id, the key may be another's by now.
    pub kills: Vec<(usize, ClientId)>,
    /// Sessions to unblock (key, id, how), likewise.
    pub unblocks: Vec<(usize, ClientId, Unblock)>,
    /// Lines for every session in `monitoring`, in one frame.
    pub lines: Option<Bytes>,
    pub monitoring: Vec<(usize, ClientId)>,
}

impl ClientRegistry {
    /// `workers`: the most worker threads that may run.
    pub fn new(workers: usize) -> ClientRegistry {
        ClientRegistry {
            started: Instant::now(),
            workers: (0..workers.max(1))
                .map(|_| {
                    Arc::new(WorkerClients {
                        clock: AtomicU64::new(0),
                        has_mail: AtomicBool::new(false),
                        monitors: AtomicUsize::new(0),
                        mail: Mutex::new(Mail::default()),
                        entries: Mutex::new(Vec::new()),
                        subscriptions: Mutex::new(HubSubscriptions::default()),
                    })
                })
                .collect(),
            monitors: AtomicUsize::new(0),
            wakers: OnceLock::new(),
        }
    }

    /// The event loops' wakers, by worker index (once, at start-up).
    pub fn set_wakers(&self, wakers: Vec<Arc<mio::Waker>>) {
        let _ = self.wakers.set(wakers.into_boxed_slice());
    }

    /// Worker `index`'s clients; an index past the most workers shares the last one's.
    #[inline]
    fn worker(&self, index: usize) -> &Arc<WorkerClients> {
        let last = self.workers.len() - 1;
        &self.workers[index.min(last)]
    }

    fn wake(&self, index: usize) {
        if let Some(waker) = self.wakers.get().and_then(|w| w.get(index)) {
            let _ = waker.wake();
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Worker `index`'s coarse clock reads `now` (each watchdog tick).
    #[inline]
    pub fn tick(&self, index: usize, now: Instant) {
        let ms = now.saturating_duration_since(self.started).as_millis() as u64;
        self.worker(index).clock.store(ms, Relaxed);
    }

    /// Register a client connecting on worker `worker` as session `key`.
    pub fn join(self: &Arc<Self>, client: NewClient) -> ClientHandle {
        let worker = client.worker;
        let entry = Arc::new(ClientEntry {
            id: client.id,
            addr: client.addr,
            laddr: client.laddr,
            fd: client.fd,
            worker: worker as u32,
            key: client.key as u32,
            since: self.now_ms(),
            activity: AtomicU64::new(self.worker(worker).clock.load(Relaxed) << 16 | 0xFFFF),
            flags: AtomicU32::new(0),
            subscriptions: [AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0)],
            multi: AtomicI32::new(-1),
            resp: AtomicU8::new(2),
            buffers: [const { AtomicU32::new(0) }; 5],
            killed: AtomicBool::new(false),
            blocked: AtomicBool::new(false),
            names: Mutex::new(None),
        });
        let mut entries = lock(&self.worker(worker).entries);
        if entries.len() <= client.key {
            entries.resize(client.key + 1, None);
        }
        entries[client.key] = Some(entry.clone());
        drop(entries);
        ClientHandle {
            registry: self.clone(),
            worker: self.worker(worker).clone(),
            entry,
        }
    }

    /// Whether any client monitors: then every request is fed to them.
    #[inline(always)]
    pub fn monitored(&self) -> bool {
        self.monitors.load(Relaxed) != 0
    }

    /// Hand `line` (one `MONITOR` line) to every worker with monitoring clients; each
    /// is woken when its mail was empty (its own too: a worker takes its mail when
    /// woken, and at each watchdog tick).
    pub fn feed(&self, line: &[u8]) {
        for (index, w) in self.workers.iter().enumerate() {
            if w.monitors.load(Relaxed) == 0 {
                continue;
            }
            lock(&w.mail).lines.extend_from_slice(line);
            if !w.has_mail.swap(true, AcqRel) {
                self.wake(index);
            }
        }
    }

    /// Whether worker `index` has mail.
    #[inline]
    pub fn has_mail(&self, index: usize) -> bool {
        self.worker(index).has_mail.load(Relaxed)
    }

    /// Take worker `index`'s mail.
    pub fn take_mail(&self, index: usize) -> Delivery {
        let w = self.worker(index);
        w.has_mail.store(false, Release);
        let mut mail = lock(&w.mail);
        let lines = (!mail.lines.is_empty()).then(|| mail.lines.split().freeze());
        Delivery {
            kills: std::mem::take(&mut mail.kills),
            unblocks: std::mem::take(&mut mail.unblocks),
            monitoring: if lines.is_some() {
                mail.monitoring.clone()
            } else {
                Vec::new()
            },
            lines,
        }
    }

    /// Worker `index`'s hub has `clients` clients subscribed to `name` of `kind` (0
    /// channel, 1 pattern, 2 shard channel).
    pub fn note_subscribers(&self, index: usize, kind: usize, name: &[u8], clients: usize) {
        let mut hub = lock(&self.worker(index).subscriptions);
        let Some(map) = hub.clients.get_mut(kind) else {
            return;
        };
        let clients = u32::try_from(clients).unwrap_or(u32::MAX);
        if clients == 0 {
            map.remove(name);
        } else if let Some(n) = map.get_mut(name) {
            *n = clients;
        } else {
            map.insert(Bytes::copy_from_slice(name), clients);
        }
    }

    /// Worker `index`'s hub subscribes plain channels and patterns at `node`.
    pub fn note_plain_node(&self, index: usize, node: Option<&NodeAddr>) {
        lock(&self.worker(index).subscriptions).plain_node = node.cloned();
    }

    /// Slotgate's share of the nodes' count of subscribers to each of `names` (`kind`
    /// 0: channels, 2: shard channels), in order.
    pub fn subscriber_counts(&self, kind: usize, names: &[&[u8]]) -> Vec<SubscriptionCounts> {
        let mut counts = vec![SubscriptionCounts::default(); names.len()];
        for w in self.workers.iter() {
            let hub = lock(&w.subscriptions);
            let Some(map) = hub.clients.get(kind) else {
                continue;
            };
            for (count, name) in counts.iter_mut().zip(names) {
                if let Some(&n) = map.get(*name) {
                    count.clients += u64::from(n);
                    count.at_nodes += 1;
                }
            }
        }
        counts
    }

    /// Slotgate's share of the nodes' count of patterns (`PUBSUB NUMPAT`, each node
    /// counting each pattern once): the distinct patterns its clients subscribe, and
    /// the distinct (node, pattern) subscriptions its hubs hold.
    pub fn pattern_counts(&self) -> SubscriptionCounts {
        let mut patterns: std::collections::HashSet<Bytes> = Default::default();
        let mut at_nodes: std::collections::HashSet<(Option<NodeAddr>, Bytes)> = Default::default();
        for w in self.workers.iter() {
            let hub = lock(&w.subscriptions);
            for pattern in hub.clients[1].keys() {
                patterns.insert(pattern.clone());
                at_nodes.insert((hub.plain_node.clone(), pattern.clone()));
            }
        }
        SubscriptionCounts {
            clients: patterns.len() as u64,
            at_nodes: at_nodes.len() as u64,
        }
    }

    /// Every client, in id order (connection order).
    pub fn all(&self) -> Vec<Arc<ClientEntry>> {
        let mut all: Vec<Arc<ClientEntry>> = Vec::new();
        for w in self.workers.iter() {
            all.extend(lock(&w.entries).iter().flatten().cloned());
        }
        all.sort_by_key(|e| e.id);
        all
    }

    /// Close every client `filter` matches: mark each killed (its next read ends it)
    /// and post it to its worker, woken. The client asking, `me`,
    /// is left to its own session (which closes it after its reply): only counted,
    /// and only with `SKIPME no`. Returns how many matched, and whether `me` did.
    pub fn kill(&self, filter: &KillFilter, me: ClientId) -> (usize, bool) {
        let now = self.now_ms();
        let mut count = 0;
        let mut me_too = false;
        for entry in self.all() {
            if !filter.matches(&entry, now) || (filter.skip_me && entry.id == me) {
                continue;
            }
            count += 1;
            if entry.id == me {
                me_too = true;
                continue;
            }
            if entry.killed.swap(true, Release) {
                continue;
            }
            let w = self.worker(entry.worker as usize);
            lock(&w.mail).kills.push((entry.key as usize, entry.id));
            if !w.has_mail.swap(true, AcqRel) {
                self.wake(entry.worker as usize);
            }
        }
        (count, me_too)
    }

    /// `CLIENT UNBLOCK id [TIMEOUT|ERROR]`: whether client `id` is blocked in a command
    /// now; if so it is posted to its worker (woken), which unblocks it at its node.
    pub fn unblock(&self, id: ClientId, how: Unblock) -> bool {
        let entry = self.workers.iter().find_map(|w| {
            lock(&w.entries)
                .iter()
                .flatten()
                .find(|e| e.id == id)
                .cloned()
        });
        let Some(entry) = entry.filter(|e| e.blocked.load(Acquire)) else {
            return false;
        };
        let w = self.worker(entry.worker as usize);
        lock(&w.mail)
            .unblocks
            .push((entry.key as usize, entry.id, how));
        if !w.has_mail.swap(true, AcqRel) {
            self.wake(entry.worker as usize);
        }
        true
    }

    /// How long ago (seconds) `ms` was on the registry's clock.
    fn secs_since(&self, now: u64, ms: u64) -> u64 {
        now.saturating_sub(ms) / 1000
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What is known of a client when it connects.
pub struct NewClient {
    pub id: ClientId,
    pub worker: usize,
    /// Its session's key in the worker's session table.
    pub key: usize,
    pub addr: SocketAddr,
    pub laddr: SocketAddr,
    /// The socket's file descriptor, or -1.
    pub fd: i32,
}

/// The name and library a client gave (`CLIENT SETNAME`, `HELLO SETNAME`,
/// `CLIENT SETINFO`).
#[derive(Clone, Default)]
pub struct Names {
    pub name: Option<Bytes>,
    pub lib_name: Option<Bytes>,
    pub lib_ver: Option<Bytes>,
    /// The user it logged in as; `None`: `default`.
    pub user: Option<Bytes>,
}

/// What `CLIENT LIST` shows of one client. Written by its own worker only.
pub struct ClientEntry {
    pub id: ClientId,
    pub addr: SocketAddr,
    pub laddr: SocketAddr,
    pub fd: i32,
    worker: u32,
    /// Its session's key in its worker's session table.
    key: u32,
    /// Connected at, on the registry's clock (ms).
    since: u64,
    /// `(ms << 16) | command index`: the coarse time of its last read and the last
    /// command of a read ([`NO_COMMAND`] before the first).
    activity: AtomicU64,
    /// Bits of [`flags`].
    flags: AtomicU32,
    /// `sub`, `psub`, `ssub`.
    subscriptions: [AtomicU32; 3],
    /// Commands queued in its `MULTI`, or -1.
    multi: AtomicI32,
    resp: AtomicU8,
    /// [`Buffers`], as of its worker's last watchdog tick (each saturating at 4 GiB:
    /// a client costs little memory here).
    buffers: [AtomicU32; 5],
    /// `CLIENT KILL` chose it: set (once) by the worker of the client that killed it,
    /// loaded by its own worker before each read of it, which then closes it.
    killed: AtomicBool,
    /// Waiting in a blocking command (`CLIENT UNBLOCK` may end it): stored by its own
    /// worker when it blocks and when it is answered.
    blocked: AtomicBool,
    /// Only for a client that gave a name or library.
    names: Mutex<Option<Box<Names>>>,
}

/// A client's buffers, as `CLIENT LIST` counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Buffers {
    /// Bytes read and not yet a whole request (`qbuf`).
    pub query: u64,
    /// The read buffer's capacity (`rbs`; `qbuf-free` is the rest of it).
    pub read_capacity: u64,
    /// Bytes of replies held for the client (`omem`).
    pub held: u64,
    /// Replies held, in pieces (`oll`).
    pub replies: u64,
    /// The flags that change with each request (blocked, closing).
    pub flags: u32,
}

/// The bits of [`Buffers::flags`]: published with the buffers, not as they change.
const DYNAMIC_FLAGS: u32 = flags::BLOCKED | flags::CLOSING;

impl ClientEntry {
    fn buffers(&self) -> Buffers {
        let b = |i: usize| u64::from(self.buffers[i].load(Relaxed));
        Buffers {
            query: b(0),
            read_capacity: b(1),
            held: b(2),
            replies: b(3),
            flags: self.buffers[4].load(Relaxed),
        }
    }

    fn flags(&self) -> u32 {
        self.flags.load(Relaxed)
    }

    pub fn is_pubsub(&self) -> bool {
        self.flags() & flags::PUBSUB != 0
    }

    /// Its `CLIENT LIST` line (with the newline). `live`: the numbers its own worker
    /// knows now, and the command it runs, for the client asking about itself (idle
    /// 0: it is running a command).
    pub fn line(&self, registry: &ClientRegistry, live: Option<(Buffers, u16)>) -> String {
        let now = registry.now_ms();
        let activity = self.activity.load(Relaxed);
        let (buffers, cmd, active) = match live {
            Some((buffers, cmd)) => (buffers, cmd, now),
            None => (self.buffers(), (activity & 0xFFFF) as u16, activity >> 16),
        };
        let flags = (self.flags() & !DYNAMIC_FLAGS) | (buffers.flags & DYNAMIC_FLAGS);
        let names = lock(&self.names).as_deref().cloned().unwrap_or_default();
        let text = |b: &Option<Bytes>| {
            b.as_ref()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        let [sub, psub, ssub] = self.subscriptions.each_ref().map(|s| s.load(Relaxed));
        let mut line = String::with_capacity(384);
        let _ = writeln!(
            line,
            "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={} db=0 sub={sub} \
             psub={psub} ssub={ssub} multi={} qbuf={} qbuf-free={} argv-mem=0 multi-mem=0 \
             rbs={} rbp={} obl=0 oll={} omem={} tot-mem={} events=r cmd={} user={} \
             redir=-1 resp={} lib-name={} lib-ver={}",
            self.id.0,
            self.addr,
            self.laddr,
            self.fd,
            text(&names.name),
            registry.secs_since(now, self.since),
            registry.secs_since(now, active),
            flag_letters(flags),
            self.multi.load(Relaxed),
            buffers.query,
            buffers.read_capacity.saturating_sub(buffers.query),
            buffers.read_capacity,
            buffers.read_capacity,
            buffers.replies,
            buffers.held,
            SESSION_MEM + buffers.read_capacity + buffers.held,
            command_name(cmd),
            names
                .user
                .as_ref()
                .map_or_else(|| "default".into(), |u| String::from_utf8_lossy(u)),
            self.resp.load(Relaxed),
            text(&names.lib_name),
            text(&names.lib_ver),
        );
        line
    }
}

/// What a session costs besides its buffers, counted in `tot-mem`: about its own size
/// plus its entry here.
const SESSION_MEM: u64 = 1024;

/// `cmd=` for a command index: the table's name (`client|list`), or `NULL`.
fn command_name(index: u16) -> &'static str {
    crate::command::at_position(index).map_or("NULL", |spec| spec.name)
}

/// A session's registration: its entry, kept while the session lives. Dropping it
/// removes the entry (and the session from the monitors).
pub struct ClientHandle {
    registry: Arc<ClientRegistry>,
    /// Its worker's slot in the registry (its clock, its mail).
    worker: Arc<WorkerClients>,
    entry: Arc<ClientEntry>,
}

impl ClientHandle {
    pub fn entry(&self) -> &ClientEntry {
        &self.entry
    }

    pub fn registry(&self) -> &Arc<ClientRegistry> {
        &self.registry
    }

    /// The worker serving the client.
    pub fn worker(&self) -> usize {
        self.entry.worker as usize
    }

    /// The client read something; `command`: the index of the last command of the read
    /// ([`NO_COMMAND`] keeps the one before). One relaxed store.
    #[inline(always)]
    pub fn touched(&self, command: u16) {
        let clock = self.worker.clock.load(Relaxed);
        let command = match command {
            NO_COMMAND => self.entry.activity.load(Relaxed) & 0xFFFF,
            c => u64::from(c),
        };
        self.entry.activity.store(clock << 16 | command, Relaxed);
    }

    /// The worker's coarse clock: ms since the registry started, at its last tick.
    pub fn clock_ms(&self) -> u64 {
        self.worker.clock.load(Relaxed)
    }

    /// When the client last sent something, on the worker's coarse clock (ms).
    pub fn last_read_ms(&self) -> u64 {
        self.entry.activity.load(Relaxed) >> 16
    }

    /// `CLIENT KILL` chose this client.
    #[inline(always)]
    pub fn killed(&self) -> bool {
        self.entry.killed.load(Acquire)
    }

    /// The client waits in a blocking command (`on`), or no more.
    pub fn set_blocked(&self, on: bool) {
        self.entry.blocked.store(on, Release);
    }

    /// Publish the buffers (each watchdog tick).
    pub fn publish(&self, buffers: Buffers) {
        let small = |n: u64| n.min(u64::from(u32::MAX)) as u32;
        let values = [
            small(buffers.query),
            small(buffers.read_capacity),
            small(buffers.held),
            small(buffers.replies),
            buffers.flags,
        ];
        for (slot, value) in self.entry.buffers.iter().zip(values) {
            slot.store(value, Relaxed);
        }
    }

    pub fn set_names(&self, names: Names) {
        let given = names.name.is_some()
            || names.lib_name.is_some()
            || names.lib_ver.is_some()
            || names.user.is_some();
        *lock(&self.entry.names) = given.then(|| Box::new(names));
    }

    pub fn set_resp(&self, resp: u8) {
        self.entry.resp.store(resp, Relaxed);
    }

    /// Set (`on`) or clear the [`flags`] bits `bits` (a load and a store: only the
    /// client's own worker writes its flags).
    pub fn set_flag(&self, bits: u32, on: bool) {
        let flags = &self.entry.flags;
        let old = flags.load(Relaxed);
        flags.store(if on { old | bits } else { old & !bits }, Relaxed);
    }

    /// Hook for pub/sub: the client's channel, pattern and shard-channel subscriptions
    /// (`sub`, `psub`, `ssub`); any makes it a `pubsub` client (`P`).
    pub fn set_subscriptions(&self, sub: u32, psub: u32, ssub: u32) {
        for (slot, n) in self.entry.subscriptions.iter().zip([sub, psub, ssub]) {
            slot.store(n, Relaxed);
        }
        self.set_flag(flags::PUBSUB, sub + psub + ssub > 0);
    }

    /// Hook for transactions: commands queued in the client's `MULTI` (`multi`, and
    /// `x`), or `None` outside one.
    pub fn set_multi(&self, queued: Option<u32>) {
        let n = queued.map_or(-1, |n| n.min(i32::MAX as u32) as i32);
        self.entry.multi.store(n, Relaxed);
        self.set_flag(flags::MULTI, queued.is_some());
    }

    pub fn is_monitoring(&self) -> bool {
        self.entry.flags() & flags::MONITOR != 0
    }

    /// Start (`on`) or stop feeding this client every request.
    pub fn set_monitoring(&self, on: bool) {
        if self.is_monitoring() == on {
            return;
        }
        self.set_flag(flags::MONITOR, on);
        let w = &self.worker;
        let me = (self.entry.key as usize, self.entry.id);
        let mut mail = lock(&w.mail);
        if on {
            mail.monitoring.push(me);
            w.monitors.fetch_add(1, Relaxed);
            self.registry.monitors.fetch_add(1, Relaxed);
        } else {
            mail.monitoring.retain(|m| *m != me);
            w.monitors.fetch_sub(1, Relaxed);
            self.registry.monitors.fetch_sub(1, Relaxed);
        }
    }
}

impl Drop for ClientHandle {
    fn drop(&mut self) {
        self.set_monitoring(false);
        let mut entries = lock(&self.worker.entries);
        if let Some(slot) = entries.get_mut(self.entry.key as usize) {
            if slot.as_ref().is_some_and(|e| e.id == self.entry.id) {
                *slot = None;
            }
        }
    }
}

/// How `CLIENT UNBLOCK` ends a blocking command: as if its timeout ran out (its null
/// reply, or what `WAIT` counted), or with `-UNBLOCKED`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unblock {
    Timeout,
    Error,
}

impl Unblock {
    /// The word `CLIENT UNBLOCK` takes, any case.
    pub fn parse(word: &[u8]) -> Option<Unblock> {
        if word.eq_ignore_ascii_case(b"timeout") {
            Some(Unblock::Timeout)
        } else if word.eq_ignore_ascii_case(b"error") {
            Some(Unblock::Error)
        } else {
            None
        }
    }

    /// The word as Redis spells it.
    pub fn word(self) -> &'static str {
        match self {
            Unblock::Timeout => "TIMEOUT",
            Unblock::Error => "ERROR",
        }
    }
}

/// A `CLIENT LIST`/`CLIENT KILL TYPE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientType {
    Normal,
    Master,
    Replica,
    PubSub,
}

impl ClientType {
    /// Redis's names, any case (`slave` is `replica`).
    pub fn parse(name: &[u8]) -> Option<ClientType> {
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if is("normal") {
            Some(ClientType::Normal)
        } else if is("master") {
            Some(ClientType::Master)
        } else if is("replica") || is("slave") {
            Some(ClientType::Replica)
        } else if is("pubsub") {
            Some(ClientType::PubSub)
        } else {
            None
        }
    }

    /// Whether `entry` is of this type (no client of slotgate is a master or replica;
    /// a monitor is normal, as in Redis).
    pub fn matches(self, entry: &ClientEntry) -> bool {
        match self {
            ClientType::Normal => !entry.is_pubsub(),
            ClientType::PubSub => entry.is_pubsub(),
            ClientType::Master | ClientType::Replica => false,
        }
    }
}

/// Which clients a `CLIENT LIST` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListFilter {
    All,
    Type(ClientType),
    Ids(Vec<ClientId>),
}

impl ListFilter {
    /// `CLIENT LIST [TYPE type | ID id ...]`'s arguments after `LIST`; the error text
    /// as Redis words it.
    pub fn parse(args: &[&[u8]]) -> Result<ListFilter, String> {
        let Some((option, rest)) = args.split_first() else {
            return Ok(ListFilter::All);
        };
        if option.eq_ignore_ascii_case(b"type") && rest.len() == 1 {
            return ClientType::parse(rest[0])
                .map(ListFilter::Type)
                .ok_or_else(|| format!("ERR Unknown client type '{}'", lossy(rest[0])));
        }
        if option.eq_ignore_ascii_case(b"id") && !rest.is_empty() {
            let ids = rest
                .iter()
                .map(|id| positive(id).map(ClientId))
                .collect::<Option<Vec<_>>>()
                .ok_or("ERR Invalid client ID")?;
            return Ok(ListFilter::Ids(ids));
        }
        Err(SYNTAX.to_string())
    }

    pub fn matches(&self, entry: &ClientEntry) -> bool {
        match self {
            ListFilter::All => true,
            ListFilter::Type(t) => t.matches(entry),
            ListFilter::Ids(ids) => ids.contains(&entry.id),
        }
    }
}

/// A `CLIENT KILL`: the old form (one address: `+OK` or `No such client`) or filters
/// (the count).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KillFilter {
    /// `CLIENT KILL addr:port`.
    pub old_form: bool,
    pub id: Option<ClientId>,
    pub kind: Option<ClientType>,
    pub addr: Option<String>,
    pub laddr: Option<String>,
    /// Only clients older than this many seconds (`MAXAGE`, Redis 7.4).
    pub max_age: Option<u64>,
    /// Only clients logged in as this user (`USER`).
    pub user: Option<Vec<u8>>,
    /// Leave the client asking alone (`SKIPME`, yes unless said).
    pub skip_me: bool,
}

const SYNTAX: &str = "ERR syntax error";

impl KillFilter {
    /// `CLIENT KILL`'s arguments after `KILL`, with no users configured (every client
    /// is `default`); the error text as Redis words it.
    pub fn parse(args: &[&[u8]]) -> Result<KillFilter, String> {
        Self::parse_with_users(args, &|user| user == b"default")
    }

    /// [`KillFilter::parse`], `USER` naming a user `known` knows.
    pub fn parse_with_users(
        args: &[&[u8]],
        known: &dyn Fn(&[u8]) -> bool,
    ) -> Result<KillFilter, String> {
        let mut filter = KillFilter {
            old_form: false,
            id: None,
            kind: None,
            addr: None,
            laddr: None,
            max_age: None,
            user: None,
            skip_me: true,
        };
        if let [addr] = args {
            filter.old_form = true;
            filter.addr = Some(lossy(addr));
            filter.skip_me = false;
            return Ok(filter);
        }
        if args.is_empty() {
            return Err(SYNTAX.to_string());
        }
        for pair in args.chunks(2) {
            let [option, value] = pair else {
                return Err(SYNTAX.to_string());
            };
            let is = |n: &str| option.eq_ignore_ascii_case(n.as_bytes());
            if is("id") {
                let id = positive(value).ok_or("ERR client-id should be greater than 0")?;
                filter.id = Some(ClientId(id));
            } else if is("type") {
                filter.kind = Some(
                    ClientType::parse(value)
                        .ok_or_else(|| format!("ERR Unknown client type '{}'", lossy(value)))?,
                );
            } else if is("addr") {
                filter.addr = Some(lossy(value));
            } else if is("laddr") {
                filter.laddr = Some(lossy(value));
            } else if is("user") {
                if !known(value) {
                    return Err(format!("ERR No such user '{}'", lossy(value)));
                }
                filter.user = Some(value.to_vec());
            } else if is("skipme") {
                filter.skip_me = if value.eq_ignore_ascii_case(b"yes") {
                    true
                } else if value.eq_ignore_ascii_case(b"no") {
                    false
                } else {
                    return Err(SYNTAX.to_string());
                };
            } else if is("maxage") {
                let age = std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or("ERR value is not an integer or out of range")?;
                filter.max_age = Some(age.max(0) as u64);
            } else {
                return Err(SYNTAX.to_string());
            }
        }
        Ok(filter)
    }

    /// Whether `entry` passes every filter given (`now`: the registry's clock).
    fn matches(&self, entry: &ClientEntry, now: u64) -> bool {
        self.id.is_none_or(|id| id == entry.id)
            && self.kind.is_none_or(|t| t.matches(entry))
            && self
                .addr
                .as_ref()
                .is_none_or(|a| *a == entry.addr.to_string())
            && self
                .laddr
                .as_ref()
                .is_none_or(|a| *a == entry.laddr.to_string())
            && self
                .max_age
                .is_none_or(|max| now.saturating_sub(entry.since) / 1000 > max)
            && self.user.as_ref().is_none_or(|user| {
                let names = lock(&entry.names);
                let theirs = names.as_ref().and_then(|n| n.user.as_deref());
                theirs.unwrap_or(b"default") == user.as_slice()
            })
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A positive integer, as Redis reads a client id.
fn positive(b: &[u8]) -> Option<u64> {
    let n: i64 = std::str::from_utf8(b).ok()?.parse().ok()?;
    (n > 0).then_some(n as u64)
}

/// One `MONITOR` line: `+SECS.MICROS [0 ADDR] "ARG" ...` and CRLF, each argument quoted
/// and escaped as Redis's `sdscatrepr` does. `unix_micros`: the time, in microseconds
/// since the epoch; `redact_from`: arguments from this index on read `(redacted)`.
pub fn monitor_line<'a>(
    unix_micros: u64,
    addr: &SocketAddr,
    args: impl Iterator<Item = &'a [u8]>,
    redacted: impl Fn(usize) -> bool,
) -> Vec<u8> {
    let mut line = Vec::with_capacity(128);
    let _ = std::io::Write::write_fmt(
        &mut line,
        format_args!(
            "+{}.{:06} [0 {addr}]",
            unix_micros / 1_000_000,
            unix_micros % 1_000_000
        ),
    );
    for (i, arg) in args.enumerate() {
        line.push(b' ');
        if redacted(i) {
            line.extend_from_slice(b"\"(redacted)\"");
        } else {
            quote(&mut line, arg);
        }
    }
    line.extend_from_slice(b"\r\n");
    line
}

/// `arg` in double quotes, escaped as Redis's `sdscatrepr`.
fn quote(out: &mut Vec<u8>, arg: &[u8]) {
    out.push(b'"');
    for &b in arg {
        match b {
            b'\\' | b'"' => out.extend_from_slice(&[b'\\', b]),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x07 => out.extend_from_slice(b"\\a"),
            0x08 => out.extend_from_slice(b"\\b"),
            b' '..=b'~' => out.push(b),
            _ => {
                let _ = std::io::Write::write_fmt(out, format_args!("\\x{b:02x}"));
            }
        }
    }
    out.push(b'"');
}

/// Which arguments `MONITOR` shows as `(redacted)`, as Redis does: `AUTH`'s, and the
/// user and password of `HELLO ... AUTH user pass`.
pub fn redacted(args: &[&[u8]]) -> impl Fn(usize) -> bool {
    let name = args.first().copied().unwrap_or_default();
    let auth = name.eq_ignore_ascii_case(b"auth");
    let hello_auth = if name.eq_ignore_ascii_case(b"hello") {
        args.iter()
            .skip(2)
            .position(|a| a.eq_ignore_ascii_case(b"auth"))
            .map(|p| p + 2)
    } else {
        None
    };
    move |i| (auth && i > 0) || hello_auth.is_some_and(|at| i == at + 1 || i == at + 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:5555".parse().unwrap()
    }

    fn line(args: &[&[u8]]) -> String {
        let redact = redacted(args);
        String::from_utf8(monitor_line(
            1_700_000_000_123_456,
            &addr(),
            args.iter().copied(),
            redact,
        ))
        .unwrap()
    }

    #[test]
    fn monitor_lines_quote_and_escape_as_redis() {
        assert_eq!(
            line(&[b"SET", b"k", b"v"]),
            "+1700000000.123456 [0 127.0.0.1:5555] \"SET\" \"k\" \"v\"\r\n"
        );
        // As redis-server 7.0 printed the same bytes.
        assert_eq!(
            line(&[b"SET", b"k y\"\\\n\x01\xff\t\x07\x08\r", b"v"]),
            "+1700000000.123456 [0 127.0.0.1:5555] \"SET\" \"k y\\\"\\\\\\n\\x01\\xff\\t\\a\\b\\r\" \"v\"\r\n"
        );
        assert_eq!(
            line(&[b"ECHO", "é".as_bytes()]),
            "+1700000000.123456 [0 127.0.0.1:5555] \"ECHO\" \"\\xc3\\xa9\"\r\n"
        );
        let early = String::from_utf8(monitor_line(
            5_000_007,
            &addr(),
            [&b"PING"[..]].into_iter(),
            |_| false,
        ))
        .unwrap();
        assert_eq!(early, "+5.000007 [0 127.0.0.1:5555] \"PING\"\r\n");
    }

    #[test]
    fn monitor_lines_redact_passwords() {
        assert_eq!(
            line(&[b"AUTH", b"secret"]),
            "+1700000000.123456 [0 127.0.0.1:5555] \"AUTH\" \"(redacted)\"\r\n"
        );
        assert_eq!(
            line(&[b"auth", b"user", b"secret"]),
            "+1700000000.123456 [0 127.0.0.1:5555] \"auth\" \"(redacted)\" \"(redacted)\"\r\n"
        );
        assert_eq!(
            line(&[b"HELLO", b"3", b"AUTH", b"default", b"x", b"SETNAME", b"n"]),
            "+1700000000.123456 [0 127.0.0.1:5555] \"HELLO\" \"3\" \"AUTH\" \"(redacted)\" \
             \"(redacted)\" \"SETNAME\" \"n\"\r\n"
        );
        assert_eq!(
            line(&[b"HELLO", b"3"]),
            "+1700000000.123456 [0 127.0.0.1:5555] \"HELLO\" \"3\"\r\n"
        );
    }

    #[test]
    fn flags_are_letters_in_redis_order() {
        assert_eq!(flag_letters(0), "N");
        assert_eq!(flag_letters(flags::MONITOR), "O");
        assert_eq!(
            flag_letters(flags::NO_EVICT | flags::PUBSUB | flags::CLOSING),
            "Pce"
        );
        assert_eq!(flag_letters(flags::NO_EVICT | flags::READONLY), "re");
    }

    #[test]
    fn client_list_filters_parse_as_redis_does() {
        assert_eq!(ListFilter::parse(&[]), Ok(ListFilter::All));
        assert_eq!(
            ListFilter::parse(&[b"TYPE", b"pubsub"]),
            Ok(ListFilter::Type(ClientType::PubSub))
        );
        assert_eq!(
            ListFilter::parse(&[b"type", b"slave"]),
            Ok(ListFilter::Type(ClientType::Replica))
        );
        assert_eq!(
            ListFilter::parse(&[b"ID", b"3", b"5"]),
            Ok(ListFilter::Ids(vec![ClientId(3), ClientId(5)]))
        );
        // Redis 7.0's replies to the same arguments.
        assert_eq!(
            ListFilter::parse(&[b"TYPE", b"foo"]).unwrap_err(),
            "ERR Unknown client type 'foo'"
        );
        assert_eq!(
            ListFilter::parse(&[b"ID", b"x"]).unwrap_err(),
            "ERR Invalid client ID"
        );
        assert_eq!(
            ListFilter::parse(&[b"ID", b"0"]).unwrap_err(),
            "ERR Invalid client ID"
        );
        assert_eq!(ListFilter::parse(&[b"foo"]).unwrap_err(), SYNTAX);
        assert_eq!(ListFilter::parse(&[b"ID"]).unwrap_err(), SYNTAX);
        assert_eq!(
            ListFilter::parse(&[b"TYPE", b"normal", b"ID", b"1"]).unwrap_err(),
            SYNTAX
        );
    }

    #[test]
    fn client_kill_filters_parse_as_redis_does() {
        let old = KillFilter::parse(&[b"1.2.3.4:5"]).unwrap();
        assert!(old.old_form && !old.skip_me);
        assert_eq!(old.addr.as_deref(), Some("1.2.3.4:5"));
        // `CLIENT KILL ID` is the old form with the address "ID".
        assert!(KillFilter::parse(&[b"ID"]).unwrap().old_form);
        let f = KillFilter::parse(&[b"id", b"7", b"SKIPME", b"no", b"MAXAGE", b"10"]).unwrap();
        assert_eq!(f.id, Some(ClientId(7)));
        assert!(!f.skip_me && !f.old_form);
        assert_eq!(f.max_age, Some(10));
        assert!(KillFilter::parse(&[b"USER", b"default"]).unwrap().skip_me);
        for (args, error) in [
            (
                &[&b"ID"[..], b"abc"][..],
                "ERR client-id should be greater than 0",
            ),
            (&[b"ID", b"0"], "ERR client-id should be greater than 0"),
            (&[b"TYPE", b"x"], "ERR Unknown client type 'x'"),
            (&[b"USER", b"nobody"], "ERR No such user 'nobody'"),
            (&[b"SKIPME", b"maybe"], SYNTAX),
            (&[b"foo", b"bar", b"baz"], SYNTAX),
            (&[b"foo", b"bar"], SYNTAX),
            (
                &[b"MAXAGE", b"x"],
                "ERR value is not an integer or out of range",
            ),
        ] {
            assert_eq!(KillFilter::parse(args).unwrap_err(), error, "{args:?}");
        }
    }

    fn registry_with_clients() -> (Arc<ClientRegistry>, Vec<ClientHandle>) {
        let registry = Arc::new(ClientRegistry::new(2));
        let handles = (0..3)
            .map(|i| {
                registry.join(NewClient {
                    id: ClientId(10 + i as u64),
                    worker: i % 2,
                    key: i,
                    addr: format!("127.0.0.1:{}", 4000 + i).parse().unwrap(),
                    laddr: "127.0.0.1:6380".parse().unwrap(),
                    fd: -1,
                })
            })
            .collect();
        (registry, handles)
    }

    #[test]
    fn the_registry_lists_every_worker_and_forgets_closed_clients() {
        let (registry, mut handles) = registry_with_clients();
        let ids: Vec<u64> = registry.all().iter().map(|e| e.id.0).collect();
        assert_eq!(ids, [10, 11, 12]);
        handles[0].set_names(Names {
            name: Some(Bytes::from_static(b"app")),
            ..Names::default()
        });
        handles[0].touched(crate::command::position(&["get"]).unwrap());
        let line = registry.all()[0].line(&registry, None);
        assert!(
            line.starts_with(
                "id=10 addr=127.0.0.1:4000 laddr=127.0.0.1:6380 fd=-1 name=app age=0 idle=0 \
                 flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 "
            ),
            "{line}"
        );
        assert!(
            line.ends_with(" events=r cmd=get user=default redir=-1 resp=2 lib-name= lib-ver=\n"),
            "{line}"
        );
        handles.remove(1);
        let ids: Vec<u64> = registry.all().iter().map(|e| e.id.0).collect();
        assert_eq!(ids, [10, 12]);
    }

    #[test]
    fn a_kill_marks_the_client_and_posts_it_to_its_worker() {
        let (registry, handles) = registry_with_clients();
        let by_id = KillFilter::parse(&[b"ID", b"11"]).unwrap();
        assert_eq!(registry.kill(&by_id, ClientId(10)), (1, false));
        assert!(handles[1].killed() && !handles[0].killed());
        assert!(registry.has_mail(1) && !registry.has_mail(0));
        let mail = registry.take_mail(1);
        assert_eq!(mail.kills, vec![(1, ClientId(11))]);
        assert!(!registry.has_mail(1));
        // SKIPME yes (the default) spares the caller; no counts it, but its own
        // session closes it (after its reply), so it is not posted.
        let all = KillFilter::parse(&[b"USER", b"default"]).unwrap();
        assert_eq!(registry.kill(&all, ClientId(10)), (2, false));
        let everyone = KillFilter::parse(&[b"SKIPME", b"no"]).unwrap();
        assert_eq!(registry.kill(&everyone, ClientId(10)), (3, true));
        assert!(!handles[0].killed());
        assert_eq!(
            registry.take_mail(0).kills,
            vec![(2, ClientId(12))],
            "posted once"
        );
        let by_addr = KillFilter::parse(&[b"127.0.0.1:4002"]).unwrap();
        assert_eq!(registry.kill(&by_addr, ClientId(10)), (1, false));
        let old_form_me = KillFilter::parse(&[b"127.0.0.1:4000"]).unwrap();
        assert_eq!(registry.kill(&old_form_me, ClientId(10)), (1, true));
        let none = KillFilter::parse(&[b"ADDR", b"127.0.0.1:1"]).unwrap();
        assert_eq!(registry.kill(&none, ClientId(10)), (0, false));
        let pubsub = KillFilter::parse(&[b"TYPE", b"pubsub"]).unwrap();
        assert_eq!(registry.kill(&pubsub, ClientId(10)), (0, false));
    }

    #[test]
    fn an_unblock_reaches_a_blocked_clients_worker_only() {
        let (registry, handles) = registry_with_clients();
        assert!(
            !registry.unblock(ClientId(11), Unblock::Timeout),
            "not blocked"
        );
        assert!(
            !registry.unblock(ClientId(99), Unblock::Timeout),
            "no such client"
        );
        assert!(!registry.has_mail(1));
        handles[1].set_blocked(true);
        assert!(registry.unblock(ClientId(11), Unblock::Error));
        assert!(registry.has_mail(1) && !registry.has_mail(0));
        let mail = registry.take_mail(1);
        assert_eq!(mail.unblocks, vec![(1, ClientId(11), Unblock::Error)]);
        handles[1].set_blocked(false);
        assert!(!registry.unblock(ClientId(11), Unblock::Timeout));
        assert_eq!(Unblock::parse(b"timeout"), Some(Unblock::Timeout));
        assert_eq!(Unblock::parse(b"ERROR"), Some(Unblock::Error));
        assert_eq!(Unblock::parse(b"now"), None);
    }

    #[test]
    fn monitor_lines_reach_the_workers_with_monitors() {
        let (registry, mut handles) = registry_with_clients();
        assert!(!registry.monitored());
        handles[1].set_monitoring(true);
        assert!(registry.monitored());
        registry.feed(b"+1 [0 a] \"PING\"\r\n");
        registry.feed(b"+2 [0 a] \"GET\"\r\n");
        assert!(!registry.has_mail(0), "no monitor there");
        let mail = registry.take_mail(1);
        assert_eq!(
            mail.lines.as_deref(),
            Some(&b"+1 [0 a] \"PING\"\r\n+2 [0 a] \"GET\"\r\n"[..])
        );
        assert_eq!(mail.monitoring, vec![(1, ClientId(11))]);
        let line = registry.all()[1].line(&registry, None);
        assert!(line.contains(" flags=O "), "{line}");
        // A monitor that goes away is no longer fed.
        handles.remove(1);
        assert!(!registry.monitored());
    }
}
