//! A worker's pub/sub hub: the subscriptions of all its clients, each channel, pattern
//! or shard channel subscribed once at a node however many of the worker's clients
//! want it, and the messages that come back fanned out to them.
//!
//! - Plain channels and patterns are subscribed at one master per worker (every
//!   `PUBLISH` in a Redis Cluster reaches every node); shard channels at the master
//!   owning their slot (`SPUBLISH` reaches only that shard). The hub keeps one
//!   subscriber connection per node it needs ([`NodeConnections::open_subscriber`]):
//!   every frame read there comes to [`PubSub::take_reports`] as it arrives.
//! - A channel is subscribed at its node when its first subscriber on this worker comes
//!   and unsubscribed when its last one leaves. A client's confirmation of a new
//!   channel waits for the node's (no message published after the client saw it is
//!   missed); one already confirmed at the node is answered at once.
//! - When a subscription is lost — its connection died, the node left the table, a
//!   shard channel's slot moved (the node says `sunsubscribe` by itself, or answers
//!   `MOVED`) — the hub subscribes again where the table (or the `MOVED`) says, logs
//!   it and counts it (`pubsub_resubscribes`). Messages published meanwhile are lost,
//!   as with Redis itself.
//!
//! Every command the hub writes names one channel, so each gets exactly one reply
//! frame: a confirmation or an error, in order (`Link::expect`); anything else read
//! there is a message or a confirmation nobody asked for.

use std::collections::{HashMap, VecDeque};

use bytes::{Bytes, BytesMut};

use crate::admin::{Metrics, METRICS};
use crate::backend::node_connections::WATCHDOG_TICK;
use crate::backend::{BackendError, NodeConnections, Place, Push, ReplyResult, ReplyTo};
use crate::cluster::table::SlotTable;
use crate::cluster::NodeAddr;
use crate::protocol::redirect::{parse_redirect, Redirect};
use crate::protocol::reply::{encode_command, Proto};
use crate::shared::Shared;
use crate::slot::Slot;

/// What a subscription names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `SUBSCRIBE`: a channel, at any node.
    Channel,
    /// `PSUBSCRIBE`: a pattern, at any node.
    Pattern,
    /// `SSUBSCRIBE`: a shard channel, at its slot's master.
    Shard,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Channel, Kind::Pattern, Kind::Shard];

    /// 0, 1, 2: its place in [`Kind::ALL`] (and in the client registry's counts).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The kind and direction (true: subscribe) of a command by its lower-case name.
    pub fn of_command(name: &str) -> Option<(Kind, bool)> {
        Some(match name {
            "subscribe" => (Kind::Channel, true),
            "unsubscribe" => (Kind::Channel, false),
            "psubscribe" => (Kind::Pattern, true),
            "punsubscribe" => (Kind::Pattern, false),
            "ssubscribe" => (Kind::Shard, true),
            "sunsubscribe" => (Kind::Shard, false),
            _ => return None,
        })
    }

    /// The first element of a (un)subscribe confirmation, which is also the command's
    /// lower-case name.
    pub fn confirmation(self, subscribe: bool) -> &'static [u8] {
        match (self, subscribe) {
            (Kind::Channel, true) => b"subscribe",
            (Kind::Channel, false) => b"unsubscribe",
            (Kind::Pattern, true) => b"psubscribe",
            (Kind::Pattern, false) => b"punsubscribe",
            (Kind::Shard, true) => b"ssubscribe",
            (Kind::Shard, false) => b"sunsubscribe",
        }
    }
}

/// A frame read on a subscriber connection, as the hub reads it (pure).
#[derive(Debug, PartialEq, Eq)]
enum Event<'a> {
    /// `message`, `pmessage`, `smessage`: for the subscribers of `name` (the channel,
    /// or the pattern a `pmessage` matched).
    Message { kind: Kind, name: &'a [u8] },
    /// A (un)subscribe confirmation, asked for or not.
    Confirmed {
        kind: Kind,
        subscribe: bool,
        name: &'a [u8],
    },
    /// An error reply: it answers the oldest command waiting.
    Error,
    /// Anything else (nothing the hub sends asks for it).
    Other,
}

/// Read a complete RESP2 (or RESP3 push) frame from a subscriber connection.
fn parse_event(frame: &[u8]) -> Event<'_> {
    match frame.first() {
        Some(b'-') => return Event::Error,
        Some(b'*' | b'>') => {}
        _ => return Event::Other,
    }
    let mut r = Reader { buf: frame, at: 0 };
    let (Some(len), Some(first), Some(name)) = (r.header(), r.bulk(), r.bulk()) else {
        return Event::Other;
    };
    let message = |kind, want| match len == want {
        true => Event::Message { kind, name },
        false => Event::Other,
    };
    let confirmed = |kind, subscribe| match len == 3 {
        true => Event::Confirmed {
            kind,
            subscribe,
            name,
        },
        false => Event::Other,
    };
    match first {
        b"message" => message(Kind::Channel, 3),
        b"pmessage" => message(Kind::Pattern, 4),
        b"smessage" => message(Kind::Shard, 3),
        b"subscribe" => confirmed(Kind::Channel, true),
        b"unsubscribe" => confirmed(Kind::Channel, false),
        b"psubscribe" => confirmed(Kind::Pattern, true),
        b"punsubscribe" => confirmed(Kind::Pattern, false),
        b"ssubscribe" => confirmed(Kind::Shard, true),
        b"sunsubscribe" => confirmed(Kind::Shard, false),
        _ => Event::Other,
    }
}

/// Reads the head of a complete frame: an aggregate header, then bulk strings.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn line(&mut self) -> Option<&'a [u8]> {
        let rest = self.buf.get(self.at..)?;
        let end = rest.windows(2).position(|w| w == b"\r\n")?;
        self.at += end + 2;
        Some(&rest[..end])
    }

    fn number(line: &[u8]) -> Option<i64> {
        std::str::from_utf8(line.get(1..)?).ok()?.parse().ok()
    }

    /// `*N` or `>N`.
    fn header(&mut self) -> Option<i64> {
        let line = self.line()?;
        matches!(line.first(), Some(b'*' | b'>'))
            .then(|| Self::number(line))
            .flatten()
    }

    /// `$len` and the string (not a nil).
    fn bulk(&mut self) -> Option<&'a [u8]> {
        let line = self.line()?;
        if line.first() != Some(&b'$') {
            return None;
        }
        let len = usize::try_from(Self::number(line)?).ok()?;
        let data = self.buf.get(self.at..self.at + len)?;
        self.at += len + 2;
        Some(data)
    }
}

/// `frame` (a RESP2 array from a node) as the RESP3 push it is to a RESP3 client: the
/// same elements, `>` for `*`.
fn as_push(frame: &Bytes) -> Bytes {
    let mut push = BytesMut::from(&frame[..]);
    push[0] = b'>';
    push.freeze()
}

/// A client subscribed to a channel: its session, client id and protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subscriber {
    pub session: usize,
    pub client: u64,
    pub proto: Proto,
}

/// A client's confirmation, sent once the node confirms the channel.
struct Waiter {
    reply: ReplyTo,
    frame: Bytes,
    /// The hub's tick when it began waiting.
    since: u64,
}

/// One channel, pattern or shard channel some of this worker's clients subscribe to.
#[derive(Default)]
struct Wanted {
    subscribers: Vec<Subscriber>,
    waiters: Vec<Waiter>,
    /// The node it is subscribed (or being subscribed) at; `None` while no node could
    /// be asked (tried again each tick).
    at: Option<usize>,
    /// The node confirmed it.
    confirmed: bool,
    /// It was confirmed once and lost: counted when confirmed again.
    restoring: bool,
    /// Refusals by nodes in a row (the first is logged as a warning).
    refusals: u32,
}

/// The hub's connection to one node.
struct Link {
    node: usize,
    /// The connection (an index among the worker's node connections).
    conn: usize,
    addr: NodeAddr,
    /// Each (un)subscribe written and not answered yet, oldest first.
    expect: VecDeque<(Kind, bool, Bytes)>,
}

/// What the hub works with, lent by its worker for one call.
pub struct PubSubIo<'a> {
    pub(super) conns: &'a mut NodeConnections,
    pub(super) shared: &'a Shared,
    pub(super) table: &'a SlotTable,
    pub(super) deliveries: &'a mut Vec<(Place, ReplyResult)>,
    pub(super) worker: usize,
}

impl PubSubIo<'_> {
    fn node(&mut self, addr: &NodeAddr) -> usize {
        let shared = self.shared;
        self.conns.node(addr, || shared.node_record(addr))
    }

    fn deliver(&mut self, reply: ReplyTo, result: ReplyResult) {
        self.deliveries.push((reply.into_place(), result));
    }

    /// Tell the client registry how many of this worker's clients want `name` (what
    /// `PUBSUB NUMSUB` counts across the workers).
    fn note_subscribers(&self, kind: Kind, name: &[u8], clients: usize) {
        (self.shared.clients).note_subscribers(self.worker, kind.index(), name, clients);
    }

    /// Ask the control plane for a fresh slot table.
    fn want_refresh(&self) {
        self.shared
            .want_refresh(crate::admin::metrics::RefreshCause::PubSub);
    }
}

/// One worker's subscriptions and subscriber connections. See the module doc.
#[derive(Default)]
pub struct PubSub {
    /// By [`Kind::index`]: what is subscribed, by name.
    wanted: [HashMap<Bytes, Wanted>; 3],
    links: Vec<Link>,
    /// Where plain channels and patterns go, once chosen.
    plain_node: Option<usize>,
    /// The slot table generation the subscriptions were last checked against.
    generation: u64,
    /// Some subscription waits for a node.
    unplaced: bool,
    /// Some link may have nothing left to do.
    maybe_idle: bool,
    /// Confirmations waiting for a node, over every subscription.
    waiting: usize,
    /// Watchdog ticks seen.
    tick: u64,
    /// Messages for the sessions, in order; the worker hands them over.
    pub messages: Vec<Push>,
}

impl PubSub {
    /// Nothing is subscribed and no connection is open.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty() && self.wanted.iter().all(HashMap::is_empty)
    }

    /// Client `who` subscribes to `name`. True when the node has confirmed it already
    /// (the client may be answered now); else the confirmation is handed to
    /// [`PubSub::await_confirmation`].
    pub fn subscribe(
        &mut self,
        io: &mut PubSubIo<'_>,
        kind: Kind,
        name: &Bytes,
        who: Subscriber,
    ) -> bool {
        let map = &mut self.wanted[kind.index()];
        if let Some(wanted) = map.get_mut(name) {
            wanted.subscribers.push(who);
            io.note_subscribers(kind, name, wanted.subscribers.len());
            return wanted.confirmed;
        }
        let wanted = Wanted {
            subscribers: vec![who],
            ..Wanted::default()
        };
        map.insert(name.clone(), wanted);
        io.note_subscribers(kind, name, 1);
        self.place(io, kind, name);
        false
    }

    /// Send `frame` to `reply` once the node confirms `name` (or an error after
    /// `backend.timeout_ms`).
    pub fn await_confirmation(
        &mut self,
        io: &mut PubSubIo<'_>,
        kind: Kind,
        name: &[u8],
        reply: ReplyTo,
        frame: Bytes,
    ) {
        match self.wanted[kind.index()].get_mut(name) {
            Some(wanted) if !wanted.confirmed => {
                self.waiting += 1;
                wanted.waiters.push(Waiter {
                    reply,
                    frame,
                    since: self.tick,
                });
            }
            _ => io.deliver(reply, Ok(frame)),
        }
    }

    /// Client `client` of session `session` leaves `name`; the node's subscription goes
    /// with the last one.
    pub fn unsubscribe(
        &mut self,
        io: &mut PubSubIo<'_>,
        kind: Kind,
        name: &[u8],
        session: usize,
        client: u64,
    ) {
        let Some(wanted) = self.wanted[kind.index()].get_mut(name) else {
            return;
        };
        if let Some(i) = wanted
            .subscribers
            .iter()
            .position(|s| s.session == session && s.client == client)
        {
            wanted.subscribers.swap_remove(i);
        }
        io.note_subscribers(kind, name, wanted.subscribers.len());
        if wanted.subscribers.is_empty() && wanted.waiters.is_empty() {
            self.drop_wanted(io, kind, name);
        }
    }

    /// The client switched protocol (`HELLO`): its messages follow.
    pub fn set_proto(
        &mut self,
        kind: Kind,
        name: &[u8],
        session: usize,
        client: u64,
        proto: Proto,
    ) {
        if let Some(wanted) = self.wanted[kind.index()].get_mut(name) {
            for s in &mut wanted.subscribers {
                if s.session == session && s.client == client {
                    s.proto = proto;
                }
            }
        }
    }

    /// Take what the subscriber connections read and which of them failed.
    pub fn take_reports(&mut self, io: &mut PubSubIo<'_>) {
        let mut frames = std::mem::take(&mut io.conns.sub_frames);
        for (conn, frame) in frames.drain(..) {
            self.on_frame(io, conn, frame);
        }
        io.conns.sub_frames = frames;
        for conn in std::mem::take(&mut io.conns.sub_down) {
            self.link_down(io, conn);
        }
        if self.unplaced {
            self.place_unplaced(io);
        }
    }

    /// Once per watchdog tick: follow a new slot table, place what waits for a node,
    /// answer confirmations overdue, close connections no longer needed.
    pub fn tick(&mut self, io: &mut PubSubIo<'_>) {
        self.tick += 1;
        if self.is_empty() {
            return;
        }
        if io.table.generation() != self.generation {
            self.generation = io.table.generation();
            self.follow_table(io);
        }
        if self.unplaced {
            self.place_unplaced(io);
        }
        if self.waiting > 0 {
            self.expire_waiters(io);
        }
        if self.maybe_idle {
            self.close_idle(io);
        }
    }

    /// Subscribe `name` at its node: its slot's master, or the plain node.
    fn place(&mut self, io: &mut PubSubIo<'_>, kind: Kind, name: &Bytes) {
        let node = match kind {
            Kind::Shard => io
                .table
                .master(Slot::of_key(name))
                .cloned()
                .map(|addr| io.node(&addr)),
            Kind::Channel | Kind::Pattern => self.plain(io),
        };
        self.place_at(io, kind, name, node);
    }

    /// Subscribe `name` at `node` (when it is not known to be down; else next tick).
    fn place_at(&mut self, io: &mut PubSubIo<'_>, kind: Kind, name: &Bytes, node: Option<usize>) {
        let node = node.filter(|&n| !io.conns.node_is_down(n));
        let Some(wanted) = self.wanted[kind.index()].get_mut(name) else {
            return;
        };
        wanted.confirmed = false;
        wanted.at = node;
        let Some(node) = node else {
            self.unplaced = true;
            return;
        };
        let link = self.link(io, node);
        self.send(io, link, kind, true, name.clone());
    }

    /// Where plain channels and patterns go: the node chosen before while the hub has a
    /// connection to it, else a master picked by the worker's index (spreading workers
    /// over the masters) that is not known to be down.
    fn plain(&mut self, io: &mut PubSubIo<'_>) -> Option<usize> {
        if let Some(node) = self.plain_node {
            if self.links.iter().any(|l| l.node == node) && !io.conns.node_is_down(node) {
                return Some(node);
            }
        }
        let masters: Vec<NodeAddr> = io.table.masters().cloned().collect();
        let mut chosen = None;
        for i in 0..masters.len() {
            let addr = &masters[(io.worker + i) % masters.len()];
            let node = io.node(addr);
            if !io.conns.node_is_down(node) {
                chosen = Some((node, addr));
                break;
            }
        }
        (io.shared.clients).note_plain_node(io.worker, chosen.map(|(_, addr)| addr));
        self.plain_node = chosen.map(|(node, _)| node);
        self.plain_node
    }

    /// The index of the link to `node`, opened when there is none.
    fn link(&mut self, io: &mut PubSubIo<'_>, node: usize) -> usize {
        if let Some(i) = self.links.iter().position(|l| l.node == node) {
            return i;
        }
        let conn = io.conns.open_subscriber(node);
        self.links.push(Link {
            node,
            conn,
            addr: io.conns.conn_addr(conn).clone(),
            expect: VecDeque::new(),
        });
        self.links.len() - 1
    }

    /// Write `(UN)SUBSCRIBE name` (of `kind`) on link `link`.
    fn send(
        &mut self,
        io: &mut PubSubIo<'_>,
        link: usize,
        kind: Kind,
        subscribe: bool,
        name: Bytes,
    ) {
        let command = kind.confirmation(subscribe).to_ascii_uppercase();
        let link = &mut self.links[link];
        io.conns
            .subscriber_write(link.conn, &encode_command(&[&command, &name]));
        link.expect.push_back((kind, subscribe, name));
    }

    /// `name` leaves its node (unsubscribed there, when the hub still has the
    /// connection); it was confirmed there once, so the next confirmation counts as a
    /// resubscription.
    fn unplace(&mut self, io: &mut PubSubIo<'_>, kind: Kind, name: &Bytes) {
        let Some(wanted) = self.wanted[kind.index()].get_mut(name) else {
            return;
        };
        wanted.restoring |= wanted.confirmed;
        wanted.confirmed = false;
        let Some(node) = wanted.at.take() else {
            return;
        };
        if let Some(link) = self.links.iter().position(|l| l.node == node) {
            self.send(io, link, kind, false, name.clone());
        }
        self.maybe_idle = true;
    }

    /// No client wants `name` any more: forget it and unsubscribe at its node.
    fn drop_wanted(&mut self, io: &mut PubSubIo<'_>, kind: Kind, name: &[u8]) {
        let Some((name, wanted)) = self.wanted[kind.index()].remove_entry(name) else {
            return;
        };
        io.note_subscribers(kind, &name, 0);
        if let Some(link) = wanted
            .at
            .and_then(|node| self.links.iter().position(|l| l.node == node))
        {
            self.send(io, link, kind, false, name);
        }
        self.maybe_idle = true;
    }

    /// A frame read on connection `conn`.
    fn on_frame(&mut self, io: &mut PubSubIo<'_>, conn: usize, frame: Bytes) {
        let Some(li) = self.links.iter().position(|l| l.conn == conn) else {
            return;
        };
        let node = self.links[li].node;
        match parse_event(&frame) {
            Event::Message { kind, name } => self.fan_out(kind, name, node, &frame),
            Event::Confirmed {
                kind,
                subscribe,
                name,
            } => {
                let expect = &mut self.links[li].expect;
                let asked = expect
                    .front()
                    .is_some_and(|(k, s, n)| *k == kind && *s == subscribe && n == name);
                if asked {
                    expect.pop_front();
                }
                if subscribe && asked {
                    self.confirmed(io, kind, name, node);
                } else if !subscribe && !asked {
                    self.dropped_by_node(io, kind, name, node);
                }
            }
            Event::Error => {
                if let Some((kind, true, name)) = self.links[li].expect.pop_front() {
                    self.refused(io, kind, &name, li, &frame);
                }
            }
            Event::Other => {}
        }
    }

    /// A message from `node` for the subscribers of `name`, each in its protocol. Only
    /// from the node the subscription is at now: a node it moved away from may still
    /// send a few, which another node delivers too.
    fn fan_out(&mut self, kind: Kind, name: &[u8], node: usize, frame: &Bytes) {
        let Some(wanted) = self.wanted[kind.index()].get(name) else {
            return;
        };
        if wanted.at != Some(node) {
            return;
        }
        let mut push: Option<Bytes> = None;
        for s in &wanted.subscribers {
            let frame = match s.proto {
                Proto::Resp2 => frame.clone(),
                Proto::Resp3 => push.get_or_insert_with(|| as_push(frame)).clone(),
            };
            self.messages.push(Push {
                session: s.session,
                client: s.client,
                frame,
            });
        }
    }

    /// `node` confirmed `name`: answer the clients waiting for it.
    fn confirmed(&mut self, io: &mut PubSubIo<'_>, kind: Kind, name: &[u8], node: usize) {
        let Some(wanted) = self.wanted[kind.index()].get_mut(name) else {
            return;
        };
        if wanted.at != Some(node) || wanted.confirmed {
            return;
        }
        wanted.confirmed = true;
        wanted.refusals = 0;
        if std::mem::take(&mut wanted.restoring) {
            Metrics::inc(&METRICS.pubsub_resubscribes);
            tracing::debug!(kind = ?kind, name = %String::from_utf8_lossy(name), "pub/sub: subscribed again");
        }
        self.waiting -= wanted.waiters.len();
        for waiter in wanted.waiters.drain(..) {
            io.deliver(waiter.reply, Ok(waiter.frame));
        }
        if wanted.subscribers.is_empty() {
            self.drop_wanted(io, kind, name);
        }
    }

    /// `node` unsubscribed `name` by itself: Redis does so for the shard channels of a
    /// slot that left it (a migration, or a failover that made it a replica).
    fn dropped_by_node(&mut self, io: &mut PubSubIo<'_>, kind: Kind, name: &[u8], node: usize) {
        let Some((name, wanted)) = self.wanted[kind.index()].get_key_value(name) else {
            return;
        };
        if wanted.at != Some(node) {
            return;
        }
        let name = name.clone();
        let addr = self.addr_of(node);
        tracing::info!(kind = ?kind, name = %String::from_utf8_lossy(&name), node = %addr, "pub/sub: the node dropped a subscription (its slot moved); subscribing again at the slot's owner");
        if let Some(wanted) = self.wanted[kind.index()].get_mut(&name) {
            wanted.restoring |= wanted.confirmed;
            wanted.confirmed = false;
            // No unsubscribe to send: the node has none left.
            wanted.at = None;
        }
        io.want_refresh();
        self.place(io, kind, &name);
    }

    /// The node of link `li` refused to subscribe `name`: follow a `MOVED`; try again
    /// next tick otherwise. The clients waiting get the node's error unless it is one
    /// that passes (`TRYAGAIN`, `CLUSTERDOWN`, ...).
    fn refused(
        &mut self,
        io: &mut PubSubIo<'_>,
        kind: Kind,
        name: &Bytes,
        li: usize,
        frame: &Bytes,
    ) {
        let node = self.links[li].node;
        let redirect = parse_redirect(frame, &self.links[li].addr);
        let Some(wanted) = self.wanted[kind.index()].get_mut(name) else {
            return;
        };
        if wanted.at != Some(node) {
            return;
        }
        wanted.at = None;
        if let Some(Redirect::Moved { addr, .. }) = redirect {
            io.want_refresh();
            let to = io.node(&addr);
            return self.place_at(io, kind, name, Some(to));
        }
        if redirect.is_some() {
            // TRYAGAIN, CLUSTERDOWN, LOADING and the like pass: try again next tick,
            // the clients still waiting (until `backend.timeout_ms`).
            if matches!(redirect, Some(Redirect::ClusterDown | Redirect::MasterDown)) {
                io.want_refresh();
            }
            self.unplaced = true;
            return;
        }
        wanted.refusals += 1;
        let text = String::from_utf8_lossy(frame.strip_suffix(b"\r\n").unwrap_or(frame));
        let text = text.trim_start_matches('-').to_string();
        if wanted.refusals == 1 {
            tracing::warn!(kind = ?kind, name = %String::from_utf8_lossy(name), node = %self.links[li].addr, error = %text, "pub/sub: a node refused a subscription; trying again each tick");
        }
        let mut error = BytesMut::new();
        crate::protocol::reply::ReplyWriter {
            out: &mut error,
            proto: Proto::Resp2,
        }
        .error(&text);
        let error = error.freeze();
        self.waiting -= wanted.waiters.len();
        for waiter in wanted.waiters.drain(..) {
            io.deliver(waiter.reply, Ok(error.clone()));
        }
        self.unplaced = true;
    }

    /// Subscriber connection `conn` failed: what was subscribed through it is
    /// subscribed again elsewhere (or at the same node once it is back).
    fn link_down(&mut self, io: &mut PubSubIo<'_>, conn: usize) {
        let Some(li) = self.links.iter().position(|l| l.conn == conn) else {
            return;
        };
        let link = self.links.swap_remove(li);
        io.conns.close_subscriber(conn);
        if self.plain_node == Some(link.node) {
            self.plain_node = None;
        }
        let mut lost = 0;
        for map in &mut self.wanted {
            for wanted in map.values_mut().filter(|w| w.at == Some(link.node)) {
                wanted.restoring |= wanted.confirmed;
                wanted.confirmed = false;
                wanted.at = None;
                lost += 1;
            }
        }
        if lost > 0 {
            tracing::info!(node = %link.addr, subscriptions = lost, "pub/sub: connection to a node lost; subscribing again");
            self.unplaced = true;
            io.want_refresh();
        }
    }

    /// Place every subscription that waits for a node.
    fn place_unplaced(&mut self, io: &mut PubSubIo<'_>) {
        self.unplaced = false;
        for kind in Kind::ALL {
            let names: Vec<Bytes> = self.wanted[kind.index()]
                .iter()
                .filter(|(_, w)| w.at.is_none())
                .map(|(name, _)| name.clone())
                .collect();
            for name in names {
                self.place(io, kind, &name);
            }
        }
    }

    /// A new slot table: move each shard channel whose slot has a new master, and the
    /// plain channels and patterns at a node that left the cluster (a master demoted to
    /// replica still receives every `PUBLISH`: they stay).
    fn follow_table(&mut self, io: &mut PubSubIo<'_>) {
        let table = io.table;
        let gone: Vec<usize> = self
            .links
            .iter()
            .filter(|l| {
                !table
                    .masters()
                    .chain(table.replicas())
                    .any(|a| *a == l.addr)
            })
            .map(|l| l.node)
            .collect();
        if self.plain_node.is_some_and(|node| gone.contains(&node)) {
            self.plain_node = None;
        }
        let mut moves: Vec<(Kind, Bytes)> = Vec::new();
        for kind in Kind::ALL {
            for (name, wanted) in &self.wanted[kind.index()] {
                let Some(at) = wanted.at else { continue };
                let moved = match kind {
                    Kind::Shard => table
                        .master(Slot::of_key(name))
                        .is_some_and(|addr| io.node(addr) != at),
                    Kind::Channel | Kind::Pattern => gone.contains(&at),
                };
                if moved {
                    moves.push((kind, name.clone()));
                }
            }
        }
        if moves.is_empty() {
            return;
        }
        tracing::info!(
            subscriptions = moves.len(),
            "pub/sub: the slot table changed; subscribing again where it says"
        );
        for (kind, name) in moves {
            self.unplace(io, kind, &name);
            self.place(io, kind, &name);
        }
    }

    /// Answer the confirmations that waited longer than `backend.timeout_ms` with an
    /// error; the subscription itself stays wanted (and is made when a node takes it).
    fn expire_waiters(&mut self, io: &mut PubSubIo<'_>) {
        let timeout = io.conns.config().timeout;
        let limit = (timeout.as_millis() / WATCHDOG_TICK.as_millis()).max(1) as u64;
        let now = self.tick;
        for (kind, map) in Kind::ALL.iter().zip(&mut self.wanted) {
            for (name, wanted) in map.iter_mut() {
                if wanted
                    .waiters
                    .first()
                    .is_none_or(|w| now - w.since <= limit)
                {
                    continue;
                }
                let err = match (wanted.at, kind) {
                    (Some(node), _) => {
                        let addr = self
                            .links
                            .iter()
                            .find(|l| l.node == node)
                            .map(|l| l.addr.clone());
                        match addr {
                            Some(addr) => BackendError::Timeout {
                                addr,
                                millis: timeout.as_millis(),
                            },
                            None => BackendError::NoNodes,
                        }
                    }
                    (None, Kind::Shard) => BackendError::SlotNotServed(Slot::of_key(name)),
                    (None, _) => BackendError::NoNodes,
                };
                let (expired, kept): (Vec<Waiter>, Vec<Waiter>) = wanted
                    .waiters
                    .drain(..)
                    .partition(|w| now - w.since > limit);
                wanted.waiters = kept;
                self.waiting -= expired.len();
                for waiter in expired {
                    io.deliver(waiter.reply, Err(err.clone()));
                }
            }
        }
        // A subscription only waiters kept alive goes once they are answered.
        for kind in Kind::ALL {
            let done: Vec<Bytes> = self.wanted[kind.index()]
                .iter()
                .filter(|(_, w)| w.subscribers.is_empty() && w.waiters.is_empty())
                .map(|(name, _)| name.clone())
                .collect();
            for name in done {
                self.drop_wanted(io, kind, &name);
            }
        }
    }

    /// Close the connections that carry no subscription (the replies they still owe
    /// are to unsubscribes, or to subscriptions that went elsewhere: closing the
    /// connection unsubscribes everything at the node anyway).
    fn close_idle(&mut self, io: &mut PubSubIo<'_>) {
        self.maybe_idle = false;
        let mut li = 0;
        while li < self.links.len() {
            let node = self.links[li].node;
            let used = self
                .wanted
                .iter()
                .any(|map| map.values().any(|w| w.at == Some(node)));
            if used {
                li += 1;
                continue;
            }
            let link = self.links.swap_remove(li);
            tracing::debug!(node = %link.addr, "pub/sub: closing a subscriber connection with no subscription left");
            io.conns.close_subscriber(link.conn);
            if self.plain_node == Some(link.node) {
                self.plain_node = None;
            }
        }
    }

    /// The address of `node` (through its link), for logs.
    fn addr_of(&self, node: usize) -> String {
        self.links
            .iter()
            .find(|l| l.node == node)
            .map_or_else(String::new, |l| l.addr.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_read_as_messages_confirmations_and_errors() {
        assert_eq!(
            parse_event(b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n"),
            Event::Message {
                kind: Kind::Channel,
                name: b"ch"
            }
        );
        assert_eq!(
            parse_event(b"*4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$2\r\nch\r\n$0\r\n\r\n"),
            Event::Message {
                kind: Kind::Pattern,
                name: b"c*"
            },
            "a pattern message goes to the pattern's subscribers"
        );
        assert_eq!(
            parse_event(b"*3\r\n$8\r\nsmessage\r\n$1\r\ns\r\n$1\r\nx\r\n"),
            Event::Message {
                kind: Kind::Shard,
                name: b"s"
            }
        );
        assert_eq!(
            parse_event(b"*3\r\n$10\r\nssubscribe\r\n$1\r\ns\r\n:1\r\n"),
            Event::Confirmed {
                kind: Kind::Shard,
                subscribe: true,
                name: b"s"
            }
        );
        assert_eq!(
            parse_event(b">3\r\n$12\r\nsunsubscribe\r\n$1\r\ns\r\n:0\r\n"),
            Event::Confirmed {
                kind: Kind::Shard,
                subscribe: false,
                name: b"s"
            }
        );
        assert_eq!(parse_event(b"-MOVED 12 127.0.0.1:7000\r\n"), Event::Error);
        // A channel name holding CRLF is read by its length.
        assert_eq!(
            parse_event(b"*3\r\n$7\r\nmessage\r\n$4\r\na\r\nb\r\n$0\r\n\r\n"),
            Event::Message {
                kind: Kind::Channel,
                name: b"a\r\nb"
            }
        );
    }

    #[test]
    fn anything_else_is_nothing_to_act_on() {
        for frame in [
            &b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"[..],
            b"+PONG\r\n",
            b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n",
            b"*2\r\n$7\r\nmessage\r\n$2\r\nch\r\n",
            b"*3\r\n$7\r\nmessage\r\n$9\r\nch\r\n",
            b"*",
        ] {
            assert_eq!(parse_event(frame), Event::Other, "{frame:?}");
        }
    }

    #[test]
    fn a_resp3_client_gets_the_same_elements_as_a_push() {
        let frame = Bytes::from_static(b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n");
        assert_eq!(
            &as_push(&frame)[..],
            b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n"
        );
    }

    #[test]
    fn commands_name_their_kind() {
        assert_eq!(Kind::of_command("ssubscribe"), Some((Kind::Shard, true)));
        assert_eq!(
            Kind::of_command("punsubscribe"),
            Some((Kind::Pattern, false))
        );
        assert_eq!(Kind::of_command("publish"), None);
        for kind in Kind::ALL {
            for subscribe in [true, false] {
                let name = std::str::from_utf8(kind.confirmation(subscribe)).unwrap();
                assert_eq!(Kind::of_command(name), Some((kind, subscribe)));
            }
        }
    }
}
