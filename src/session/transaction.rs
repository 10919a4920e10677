//! Transactions: `MULTI` ... `EXEC`/`DISCARD` and `WATCH`/`UNWATCH`, over the keys of one
//! slot or of several.
//!
//! Each slot a transaction touches is a *group*: its commands run in one `MULTI`/`EXEC` on
//! a node connection held for the client ([`Hold`]) at that slot's master, opened by
//! `WATCH` or by the slot's first command after `MULTI`. Until the first key, `MULTI` is
//! answered here and keyless commands are held (answered `+QUEUED`, as the node would);
//! once a slot is known, `MULTI` and the held commands go first and the node's replies to
//! them are absorbed (their places stay empty). Later keyless commands go with the first
//! group; a transaction with no key at all runs on any master at `EXEC`. Every request of
//! a group goes on its held connection, pipelined. Nothing else of the client's overtakes
//! the transaction or is overtaken by it (`Session::may_send_held`).
//!
//! One slot, the usual case, costs what a transaction at a Redis node costs: one held
//! connection, one `MULTI`/`EXEC`, the client's `EXEC` passed to the node as it is.
//!
//! Several slots (a [`Run`] from `EXEC` on) keep Redis's promise except isolation across
//! slots:
//! - Every group's commands are queued at their node, and answered, before any `EXEC` is
//!   sent: an error at queue time anywhere (the node's or slotgate's) discards every group
//!   and `EXEC` answers `EXECABORT`. Nothing runs.
//! - `WATCH`ed keys are in one slot (`WATCH` over two slots stays `CROSSSLOT`), and that
//!   slot's group runs first (without `WATCH`, the group opened first). If its `EXEC`
//!   aborts (a watched key changed: nil) or fails, every other group is discarded and the
//!   client gets that reply: nothing applied.
//! - Only then do the other groups' `EXEC`s go, together. They watch nothing and were
//!   queued without error, so only a failing node (or a slot moved since) can make one
//!   fail: then, and only then, the transaction is partly applied, and the client's error
//!   names the slots (and commands) that ran and those that did not.
//! - The client's `EXEC` reply is one array of every command's reply in the client's
//!   order, merged from the groups' replies (RESP2 or RESP3, as the client speaks).
//! - Isolation is per slot: each group runs atomically at its node, but other clients may
//!   see one group's writes before another's.
//!
//! A command refused here inside `MULTI` — Redis's own errors (unknown command, wrong
//! arity), one over keys of several slots (`CROSSSLOT`), one slotgate answers itself or
//! that runs on several nodes, one more slot than [`MAX_SLOTS`] — gets its error and makes
//! `EXEC` answer `EXECABORT` after a `DISCARD` at the nodes, as Redis does. A slot that
//! moved meanwhile (the node's `MOVED`/`ASK`, never followed for these requests) or a lost
//! connection aborts the transaction the same way: nothing of it runs.
//!
//! The held connections go back to the spares after the request that leaves the node with
//! no state of the client (`EXEC`, `DISCARD`, `UNWATCH`; `RESET` sends one of them), and
//! are closed when the client leaves or a connection fails (a client that leaves while a
//! multi-slot `EXEC` is under way may leave it partly applied).

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::Session;
use crate::admin::{Metrics, METRICS};
use crate::backend::{BackendError, BackendRequest, Hold, Place, ReplyResult, ReplyTo, Target};
use crate::cluster::NodeAddr;
use crate::command::Local;
use crate::dispatch::merge::{merge, Merge};
use crate::dispatch::plan::{Plan, PlanError};
use crate::dispatch::Worker;
use crate::protocol::redirect::{parse_redirect, Redirect};
use crate::protocol::reply::ReplyWriter;
use crate::protocol::scan::Request;
use crate::slot::Slot;

const MULTI: &[u8] = b"*1\r\n$5\r\nMULTI\r\n";
const EXEC: &[u8] = b"*1\r\n$4\r\nEXEC\r\n";
const DISCARD: &[u8] = b"*1\r\n$7\r\nDISCARD\r\n";
const UNWATCH: &[u8] = b"*1\r\n$7\r\nUNWATCH\r\n";
/// Redis's reply to `EXEC` after an error in the transaction.
const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";
/// The most slots one transaction may hold a connection for (`backend.max_pinned`)
/// until `EXEC`. Lone reads ([`Transaction::lone`]) hold none and do not count.
pub const MAX_SLOTS: usize = 32;
/// In [`Transaction::order`], marks a lone read's index.
const LONE: u16 = 0x8000;

/// A client's transaction, from `WATCH` or `MULTI` until everything it sent is
/// answered. Boxed in the session, which has none the rest of the time.
#[derive(Default)]
pub(super) struct Transaction {
    /// The slots the transaction's commands go to, each with its held connection, in the
    /// order opened (a `WATCH`'s first). Empty while no connection is held.
    groups: Vec<Group>,
    /// Connections opened so far: numbers them, so that a reply to a request on an
    /// earlier one says nothing about one held now.
    opened: u32,
    multi: Multi,
    /// Bytes of the commands held in [`Multi::Local`].
    held_bytes: usize,
    /// A command inside `MULTI` was refused, here or at its node: `EXEC` answers
    /// `EXECABORT`.
    aborted: bool,
    /// Why the transaction on connection number `.0` cannot run any more (its slot
    /// moved, the connection failed): while that one is held, the transaction's later
    /// commands get this, unsent, and `EXEC` fails.
    broken: Option<(u32, String)>,
    /// Where each command since `MULTI` goes, in the client's order (with several slots,
    /// `EXEC`'s reply is merged by it): a group's index, or [`LONE`] plus a lone read's.
    order: Vec<u16>,
    /// Lone reads: a read-only command for a slot the transaction has no group for yet,
    /// answered `+QUEUED` here and sent alone after the first group ran (one command
    /// runs atomically: it needs no `MULTI`, nor a held connection). A second command
    /// for its slot makes it a group (`None` here then).
    lone: Vec<Option<(Slot, Bytes)>>,
    /// Requests on their way whose replies this reads, in the order sent: their place,
    /// what the reply stands for, and the connection (numbered as `opened` counts) they
    /// went on.
    expect: VecDeque<(u64, Expect, u32)>,
    /// `EXEC`s over several slots under way, oldest first.
    runs: VecDeque<Run>,
}

/// One slot of a transaction and the connection held for it.
struct Group {
    /// `None` for a transaction with no key at all (any master).
    slot: Option<Slot>,
    target: Target,
    /// The connection's number (see `Transaction::opened`).
    pin: u32,
}

/// An `EXEC` over several slots, from the client's `EXEC` until its reply is known.
struct Run {
    /// The place of the client's `EXEC` reply.
    visible: u64,
    /// The groups, in the order they run: the first alone, then the others together.
    groups: Vec<RunGroup>,
    /// The group of each command in the client's order.
    order: Vec<u16>,
    stage: Stage,
    /// The reply `EXEC` gets instead of running: an error at queue time.
    failed: Option<String>,
}

struct RunGroup {
    slot: Option<Slot>,
    /// A lone read's command (sent alone, no connection held), or `None` for a group.
    lone: Option<Bytes>,
    target: Target,
    pin: u32,
    /// The place of this group's `EXEC` or `DISCARD` (the client gets nothing there).
    seq: u64,
    reply: Option<ReplyResult>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Waiting for the replies to the queued commands.
    Queueing,
    /// The first group's `EXEC` is on its way.
    First,
    /// The other groups' `EXEC`s are on their way.
    Rest,
}

/// Where `MULTI` is.
#[derive(Default)]
enum Multi {
    #[default]
    Off,
    /// `MULTI` was answered here and not sent: no slot yet, or the held connection's
    /// transaction is broken. The keyless commands since, held to go after it.
    Local(Vec<Bytes>),
    /// `MULTI` went on the held connections.
    Sent,
}

/// What a transaction request's reply stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// A request the client was answered for here (`MULTI`, held commands) or did not
    /// send (what `RESET` ends at the node): the client gets nothing.
    Absorb,
    /// The client's `WATCH` or `MULTI`: its reply as it is, unless its slot moved.
    Reply,
    /// The client's command queued inside `MULTI`: as [`Expect::Reply`]; anything but
    /// `+QUEUED` aborts the transaction.
    Queued,
    /// `EXEC` of one group.
    Exec,
    /// `EXEC` of a transaction that failed, sent as `DISCARD` or `UNWATCH`: `EXECABORT`.
    ExecAbort,
    /// The client's `DISCARD` or `UNWATCH`: whatever became of the connection, nothing
    /// of the transaction is left, so `+OK` unless the node says otherwise.
    Forget,
    /// A group's `EXEC` or `DISCARD` in a [`Run`]: the run reads the reply.
    Run,
}

/// What a request is to a transaction: its plan, owned (the plan may borrow the learned
/// commands).
enum Step {
    /// Goes to the master of this slot.
    Keyed(Slot),
    /// No key: any master, so the transaction's.
    Keyless,
    /// `MULTI`, `EXEC`, `DISCARD`, `WATCH`, `UNWATCH`.
    Txn(&'static str),
    /// `QUIT`, `RESET`: act at once, as in Redis.
    Now,
    /// Cannot be queued: the error text.
    Refused(String),
}

/// What the client gets for a transaction request's reply.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    AsIs,
    /// Nothing: an absorbed reply.
    Nothing,
    Ok,
    Error(String),
}

/// What a run's `EXEC` answers the client.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// A node's reply, or the merged one, as it is.
    Reply(ReplyResult),
    /// An error made here.
    Error(String),
}

impl Transaction {
    /// Nothing is held, queued or awaited: the session can forget it.
    fn is_over(&self) -> bool {
        self.groups.is_empty()
            && matches!(self.multi, Multi::Off)
            && self.expect.is_empty()
            && self.runs.is_empty()
    }

    pub(super) fn in_multi(&self) -> bool {
        !matches!(self.multi, Multi::Off)
    }

    fn held(&self) -> bool {
        !self.groups.is_empty()
    }

    /// Connection number `pin` is one held now.
    fn holds(&self, pin: u32) -> bool {
        self.groups.iter().any(|g| g.pin == pin)
    }

    /// Why the transaction on the connections held now broke, if it did.
    fn broken_now(&self) -> Option<&str> {
        match &self.broken {
            Some((pin, why)) if self.holds(*pin) => Some(why),
            _ => None,
        }
    }

    /// Why connection number `pin` broke, if it did.
    fn broken_on(&self, pin: u32) -> Option<&str> {
        match &self.broken {
            Some((p, why)) if *p == pin => Some(why),
            _ => None,
        }
    }

    /// The group of `slot`, if the transaction has one.
    fn group_of(&self, slot: Slot) -> Option<usize> {
        self.groups.iter().position(|g| g.slot == Some(slot))
    }

    /// A command goes to group `g`'s node to be queued there.
    fn note_queued(&mut self, g: usize) {
        self.order.push(g as u16);
    }

    /// The lone read of `slot`, if the transaction has one.
    fn lone_of(&self, slot: Slot) -> Option<usize> {
        (self.lone.iter()).position(|l| l.as_ref().is_some_and(|l| l.0 == slot))
    }

    fn has_lone(&self) -> bool {
        self.lone.iter().any(Option::is_some)
    }

    /// The request at place `seq` on connection `pin` failed at queue time (`why`: what
    /// `EXEC` answers): the transaction it belongs to will not run.
    fn queue_failed(&mut self, seq: u64, pin: u32, why: String) {
        let holds = self.holds(pin);
        let run = (self.runs.iter_mut())
            .find(|r| seq < r.visible && r.groups.iter().any(|g| g.pin == pin));
        match run {
            Some(run) => {
                run.failed.get_or_insert(why);
            }
            None if holds => self.aborted = true,
            None => {}
        }
    }

    /// Forget the groups, the lone reads and where each command went (the groups were
    /// released, or go to a run).
    fn take_groups(&mut self) -> (Vec<Group>, Vec<u16>, Vec<(Slot, Bytes)>) {
        // The lone reads that are left, renumbered, and the order pointing at them.
        let mut renumbered = Vec::with_capacity(self.lone.len());
        let mut kept = 0u16;
        for l in &self.lone {
            renumbered.push(kept);
            kept += u16::from(l.is_some());
        }
        let mut order = std::mem::take(&mut self.order);
        for p in order.iter_mut().filter(|p| **p & LONE != 0) {
            *p = LONE | renumbered[usize::from(*p & !LONE)];
        }
        let lone = std::mem::take(&mut self.lone)
            .into_iter()
            .flatten()
            .collect();
        (std::mem::take(&mut self.groups), order, lone)
    }
}

impl Session {
    /// `MULTI`, `EXEC`, `DISCARD`, `WATCH`, `UNWATCH` outside a transaction.
    pub(super) fn transaction(&mut self, w: &mut Worker, request: Request, name: &str) {
        match name {
            "multi" => self.multi(w, request),
            "watch" => self.watch(w, request),
            "unwatch" => self.unwatch(w, request),
            "exec" => self.push_error("ERR EXEC without MULTI"),
            "discard" => self.push_error("ERR DISCARD without MULTI"),
            _ => self.push_error(&format!(
                "ERR slotgate: unexpected transaction command '{name}'"
            )),
        }
        self.forget_finished_transaction();
    }

    /// A request while a transaction is under way (`self.txn` is set). Inside `MULTI`
    /// it is queued, refused or ends the transaction here; outside, `RESET` ends what the
    /// node holds for the client first. Given back to be handled as usual: everything
    /// outside `MULTI`, and `QUIT` and `RESET` inside.
    pub(super) fn transaction_request(
        &mut self,
        w: &mut Worker,
        request: Request,
        planned: &Result<Plan, PlanError>,
    ) -> Option<Request> {
        let in_multi = self.txn.as_ref().is_some_and(|t| t.in_multi());
        if !in_multi {
            if request.arg(0).eq_ignore_ascii_case(b"RESET") {
                self.release_for_reset(w);
            }
            return Some(request);
        }
        match Self::step(&request, planned) {
            Step::Keyed(slot) => self.queue_keyed(w, request, slot),
            Step::Keyless => self.queue_keyless(w, request),
            Step::Txn("exec") => self.exec(w, request),
            Step::Txn("discard") => self.discard(w, request),
            Step::Txn("multi") => self.push_error("ERR MULTI calls can not be nested"),
            Step::Txn("watch") => self.push_error("ERR WATCH inside MULTI is not allowed"),
            // Queued, as in Redis (it runs at EXEC, which forgets the keys anyway).
            Step::Txn(_) => self.queue_keyless(w, request),
            Step::Now => {
                if request.arg(0).eq_ignore_ascii_case(b"RESET") {
                    self.release_for_reset(w);
                }
                return Some(request);
            }
            Step::Refused(text) => self.refuse_in_multi(&text),
        }
        self.forget_finished_transaction();
        None
    }

    /// `RESET`: forget the transaction (what it held at the node was released first).
    pub(super) fn end_transaction(&mut self) {
        if let Some(txn) = self.txn.as_mut() {
            txn.multi = Multi::Off;
            txn.held_bytes = 0;
            txn.aborted = false;
            txn.take_groups();
        }
        self.forget_finished_transaction();
    }

    /// A node's reply (or the error standing for it) to a request of the transaction,
    /// at its place: filled with what the client gets, and what it moves on (a run's next
    /// step, whose `EXEC` reply may become ready here). True when the front place is
    /// ready.
    #[cold]
    pub(super) fn fill_transaction(&mut self, place: Place, reply: ReplyResult) -> bool {
        let reply = self.transaction_reply(place.seq, reply);
        let front = self.fill_whole(place, reply);
        front || matches!(self.places.front(), Some(Some(_)))
    }

    /// The reply to place `seq`, made into what the client gets when it answers a
    /// request of the transaction; the transaction follows what it says.
    fn transaction_reply(&mut self, seq: u64, reply: ReplyResult) -> ReplyResult {
        let Some(txn) = self.txn.as_mut() else {
            return reply;
        };
        let Some(i) = txn.expect.iter().position(|e| e.0 == seq) else {
            return reply;
        };
        let Some((_, expect, pin)) = txn.expect.remove(i) else {
            return reply;
        };
        let verdict = if expect == Expect::Run {
            let group = (txn.runs.iter_mut())
                .flat_map(|r| r.groups.iter_mut())
                .find(|g| g.seq == seq);
            if let Some(group) = group {
                group.reply = Some(reply.clone());
            }
            Verdict::Nothing
        } else {
            let (verdict, breaks) = judge(expect, &reply, txn.broken_on(pin));
            if let Some(why) = breaks {
                // The first failure says why; one on a connection no longer held says
                // nothing about those held now (`broken_now`), nor hides theirs.
                if txn.broken_now().is_none() {
                    tracing::debug!(client = self.id.0, %why, "transaction broken");
                    txn.broken = Some((pin, why));
                }
            }
            if matches!(expect, Expect::Absorb | Expect::Reply | Expect::Queued) {
                if let Some(why) = queue_failure(&reply) {
                    txn.queue_failed(seq, pin, why);
                }
            }
            verdict
        };
        if self.blocked_at == Some(seq) {
            // Other requests of the client wait while one of the transaction's is on its
            // way (not as a blocked client: see `send_now`); with several groups, other
            // connections may still have some.
            self.blocked_at = self.transaction_on_its_way();
        }
        for (visible, outcome) in self.advance_runs() {
            let reply = match outcome {
                Outcome::Reply(reply) => reply,
                Outcome::Error(text) => {
                    Metrics::inc(&METRICS.proxy_errors);
                    Ok(self.made(|w| w.error(&text)))
                }
            };
            self.fill_place(visible, reply);
        }
        self.forget_finished_transaction();
        match verdict {
            Verdict::AsIs => reply,
            Verdict::Nothing => Ok(Bytes::new()),
            Verdict::Ok => Ok(self.made(|w| w.ok())),
            Verdict::Error(text) => {
                Metrics::inc(&METRICS.proxy_errors);
                Ok(self.made(|w| w.error(&text)))
            }
        }
    }

    /// A request of the transaction that went to a node and is not answered yet, if any.
    fn transaction_on_its_way(&self) -> Option<u64> {
        let txn = self.txn.as_deref()?;
        let waiting = |seq: u64| self.waiting.iter().any(|r| r.reply.place().seq == seq);
        txn.expect.iter().map(|e| e.0).find(|&seq| !waiting(seq))
    }

    /// Whether a pinned request may go now. A blocking command, and a request that opens
    /// a transaction's connection, once every earlier request is answered; the other
    /// requests of a transaction also right behind those of the transaction on their
    /// way, within the reply window.
    pub(super) fn may_send_held(&self, req: &BackendRequest) -> bool {
        match req.hold {
            Hold::No | Hold::Open => self.sent == 0,
            Hold::On | Hold::Release => {
                self.sent == 0 || (self.on_held_connection() && self.fits_window())
            }
        }
    }

    /// The requests on their way are a transaction's, on its held connections: the last
    /// one sent (`blocked_at`, which keeps every other request back) is.
    pub(super) fn on_held_connection(&self) -> bool {
        match (self.blocked_at, self.txn.as_deref()) {
            (Some(seq), Some(txn)) => txn.expect.iter().any(|e| e.0 == seq),
            _ => false,
        }
    }

    /// What a request is to the transaction, by its plan.
    fn step(request: &Request, planned: &Result<Plan, PlanError>) -> Step {
        let name = || String::from_utf8_lossy(request.arg(0)).to_uppercase();
        match *planned {
            // A script too (NOSCRIPT is not healed inside a transaction: the node's error
            // is in EXEC's reply). Inside MULTI a blocking command does not block: it is
            // queued like any.
            Ok(
                Plan::Node(Target::Slot(slot))
                | Plan::Script(Target::Slot(slot))
                | Plan::Pinned {
                    target: Target::Slot(slot),
                    ..
                },
            ) => Step::Keyed(slot),
            // WAIT inside MULTI answers at once at the node, as in Redis.
            Ok(Plan::Node(_) | Plan::Script(_) | Plan::Pinned { .. } | Plan::Wait { .. }) => {
                Step::Keyless
            }
            // Their results belong in EXEC's reply: the node answers them there.
            Ok(Plan::Local(Local::Ping | Local::Echo | Local::Select)) => Step::Keyless,
            Ok(Plan::Local(Local::Quit | Local::Reset)) => Step::Now,
            Ok(Plan::Local(_)) => Step::Refused(format!(
                "ERR slotgate: '{}' cannot be queued in a transaction: slotgate answers it itself",
                name()
            )),
            Ok(Plan::Refuse { name, reason }) => {
                let text = Plan::refusal(name, reason, request);
                crate::log_limit::refused(&text);
                Step::Refused(text)
            }
            Ok(Plan::Transaction(name)) => Step::Txn(name),
            // Keys in several slots: what Redis Cluster answers at EXEC.
            Ok(Plan::Split | Plan::AcrossSlots) => Step::Refused(PlanError::CrossSlot.to_string()),
            // Cluster-wide commands, and any plan that runs on several nodes or
            // connections.
            Ok(_) => Step::Refused(format!(
                "ERR slotgate: '{}' cannot be queued in a transaction: it does not run on one node",
                name()
            )),
            Err(ref e) => Step::Refused(e.to_string()),
        }
    }

    /// `MULTI` outside a transaction: sent on the held connection (after `WATCH`), else
    /// answered here until the transaction's first slot is known.
    fn multi(&mut self, w: &mut Worker, request: Request) {
        let txn = self.txn.get_or_insert_with(Box::default);
        if txn.held() && txn.broken_now().is_none() {
            txn.multi = Multi::Sent;
            self.send_on(w, 0, request.into_raw(), Hold::On, Expect::Reply);
        } else {
            txn.multi = Multi::Local(Vec::new());
            txn.held_bytes = 0;
            self.push_local(|w| w.ok());
        }
    }

    /// `WATCH key...` outside `MULTI`: its keys' slot becomes the transaction's first,
    /// and opens the held connection to its master.
    fn watch(&mut self, w: &mut Worker, request: Request) {
        let Some(slot) = keys_slot(&request) else {
            return self.push_error(&PlanError::CrossSlot.to_string());
        };
        let txn = self.txn.get_or_insert_with(Box::default);
        if txn.held() && txn.broken_now().is_some() {
            // Start over where the slot is now.
            self.release_all(w, Bytes::from_static(UNWATCH), Expect::Absorb);
        }
        let txn = self.txn.get_or_insert_with(Box::default);
        match txn.groups.first() {
            Some(g) if g.slot != Some(slot) => self.push_error(&PlanError::CrossSlot.to_string()),
            Some(_) => self.send_on(w, 0, request.into_raw(), Hold::On, Expect::Reply),
            None => {
                let g = self.open(Target::Slot(slot));
                self.send_on(w, g, request.into_raw(), Hold::Open, Expect::Reply);
            }
        }
    }

    /// `UNWATCH` outside `MULTI`.
    fn unwatch(&mut self, w: &mut Worker, request: Request) {
        if self.txn.as_ref().is_some_and(|t| t.held()) {
            self.release_all(w, request.into_raw(), Expect::Forget);
        } else {
            self.push_local(|w| w.ok());
        }
    }

    /// A command for `slot` inside `MULTI`: on its slot's held connection; the slot's
    /// first command opens one to the slot's master, with `MULTI` before it (and the
    /// commands held so far, for the transaction's first slot).
    fn queue_keyed(&mut self, w: &mut Worker, request: Request, slot: Slot) {
        let Some(txn) = self.txn.as_mut() else {
            return;
        };
        if let Some(why) = txn.broken_now() {
            let text = aborted(why);
            return self.refuse_in_multi(&text);
        }
        if let Some(g) = txn.group_of(slot) {
            return self.queue_on(w, g, request.into_raw());
        }
        if !txn.held() {
            let held = match std::mem::replace(&mut txn.multi, Multi::Sent) {
                Multi::Local(held) => held,
                _ => Vec::new(),
            };
            txn.held_bytes = 0;
            let g = self.open(Target::Slot(slot));
            self.send_opening(w, g, held);
            return self.queue_on(w, g, request.into_raw());
        }
        let lone = txn.lone_of(slot);
        if lone.is_none() && is_read_only(&request) && txn.lone.len() < usize::from(!LONE) {
            // A read for a new slot: alone after the first group, unless more comes.
            txn.order.push(LONE | txn.lone.len() as u16);
            txn.lone.push(Some((slot, request.into_raw())));
            return self.push_local(|w| w.simple("QUEUED"));
        }
        if txn.groups.len() >= MAX_SLOTS {
            let text = format!(
                "ERR slotgate: a transaction may write to at most {MAX_SLOTS} slots (each holds a node connection until EXEC)"
            );
            return self.refuse_in_multi(&text);
        }
        let g = self.open(Target::Slot(slot));
        self.send_on(w, g, Bytes::from_static(MULTI), Hold::Open, Expect::Absorb);
        if let Some(l) = lone {
            // The slot's lone read becomes the first command of its group.
            let Some(txn) = self.txn.as_mut() else {
                return;
            };
            let read = txn.lone[l].take().map(|(_, bytes)| bytes);
            let was = LONE | l as u16;
            for p in txn.order.iter_mut().filter(|p| **p == was) {
                *p = g as u16;
            }
            if let Some(read) = read {
                self.send_on(w, g, read, Hold::On, Expect::Absorb);
            }
        }
        self.queue_on(w, g, request.into_raw());
    }

    /// A keyless command inside `MULTI`: with the first group, or held here until the
    /// transaction's first slot is known.
    fn queue_keyless(&mut self, w: &mut Worker, request: Request) {
        let config = &self.config;
        let (max_count, max_bytes) = (config.max_pipeline, config.reply_window);
        let Some(txn) = self.txn.as_mut() else {
            return;
        };
        if let Some(why) = txn.broken_now() {
            let text = aborted(why);
            return self.refuse_in_multi(&text);
        }
        if txn.held() {
            return self.queue_on(w, 0, request.into_raw());
        }
        let bytes = request.into_raw();
        let Multi::Local(held) = &mut txn.multi else {
            return;
        };
        if held.len() >= max_count || txn.held_bytes + bytes.len() > max_bytes {
            let text = format!(
                "ERR slotgate: too many commands before the transaction's first key (at most {max_count}, {max_bytes} bytes, are held)"
            );
            return self.refuse_in_multi(&text);
        }
        txn.held_bytes += bytes.len();
        held.push(bytes);
        self.push_local(|w| w.simple("QUEUED"));
    }

    /// `EXEC` inside `MULTI`.
    fn exec(&mut self, w: &mut Worker, request: Request) {
        let Some(txn) = self.txn.as_mut() else {
            return;
        };
        let failed = txn.aborted || txn.broken_now().is_some();
        if let Some(slot) = txn.groups.last().and_then(|g| g.slot) {
            // Where `WAIT` counts from.
            self.last_write = slot.get();
        }
        txn.aborted = false;
        txn.held_bytes = 0;
        let lone = txn.has_lone();
        match (std::mem::take(&mut txn.multi), txn.groups.len()) {
            (Multi::Sent, _) if failed => {
                self.release_all(w, Bytes::from_static(DISCARD), Expect::ExecAbort);
            }
            (Multi::Sent, 1) if !lone => self.release_all(w, request.into_raw(), Expect::Exec),
            (Multi::Sent, 1..) => self.start_run(w),
            // Keys watched, MULTI not sent (the transaction broke first).
            (_, 1..) => {
                self.release_all(w, Bytes::from_static(UNWATCH), Expect::ExecAbort);
            }
            (_, 0) if failed => self.push_error(EXECABORT),
            (Multi::Local(held), 0) if !held.is_empty() => {
                // No key at all: any master runs it.
                let g = self.open(Target::Any(self.id.0 as u32));
                self.send_opening(w, g, held);
                self.release_all(w, request.into_raw(), Expect::Exec);
            }
            (_, 0) => self.push_local(|w| w.array(0)),
        }
    }

    /// `DISCARD` inside `MULTI` (it forgets the watched keys too).
    fn discard(&mut self, w: &mut Worker, request: Request) {
        let Some(txn) = self.txn.as_mut() else {
            return;
        };
        txn.aborted = false;
        txn.held_bytes = 0;
        match (std::mem::take(&mut txn.multi), txn.held()) {
            (Multi::Sent, true) => self.release_all(w, request.into_raw(), Expect::Forget),
            (_, true) => self.release_all(w, Bytes::from_static(UNWATCH), Expect::Forget),
            (_, false) => self.push_local(|w| w.ok()),
        }
    }

    /// `RESET`: end what the held connections have of the client (`MULTI`, watched keys).
    fn release_for_reset(&mut self, w: &mut Worker) {
        let Some(txn) = self.txn.as_mut() else {
            return;
        };
        if txn.held() {
            let end = if matches!(txn.multi, Multi::Sent) {
                DISCARD
            } else {
                UNWATCH
            };
            self.release_all(w, Bytes::from_static(end), Expect::Absorb);
        }
    }

    /// A command inside `MULTI` refused here: its error, and `EXEC` will abort.
    pub(super) fn refuse_in_multi(&mut self, text: &str) {
        if let Some(txn) = self.txn.as_mut() {
            txn.aborted = true;
        }
        self.push_error(text);
    }

    /// A new group: a connection is to be opened to `target`'s node for the transaction.
    /// Its index.
    fn open(&mut self, target: Target) -> usize {
        let Some(txn) = self.txn.as_mut() else {
            return 0;
        };
        txn.opened = txn.opened.wrapping_add(1);
        let slot = match target {
            Target::Slot(slot) => Some(slot),
            _ => None,
        };
        txn.groups.push(Group {
            slot,
            target,
            pin: txn.opened,
        });
        txn.groups.len() - 1
    }

    /// `MULTI` and the commands held since, opening group `g`'s connection; the client
    /// had its replies from here.
    fn send_opening(&mut self, w: &mut Worker, g: usize, held: Vec<Bytes>) {
        self.send_on(w, g, Bytes::from_static(MULTI), Hold::Open, Expect::Absorb);
        for bytes in held {
            if let Some(txn) = self.txn.as_mut() {
                txn.note_queued(g);
            }
            self.send_on(w, g, bytes, Hold::On, Expect::Absorb);
        }
    }

    /// The client's command, queued in group `g`.
    fn queue_on(&mut self, w: &mut Worker, g: usize, bytes: Bytes) {
        if let Some(txn) = self.txn.as_mut() {
            txn.note_queued(g);
        }
        self.send_on(w, g, bytes, Hold::On, Expect::Queued);
    }

    /// End every group: the first with `bytes` (its reply standing for `expect`), the
    /// others with `DISCARD` (they are inside `MULTI`), absorbed. Nothing is held after.
    fn release_all(&mut self, w: &mut Worker, bytes: Bytes, expect: Expect) {
        let Some(txn) = self.txn.as_mut() else {
            return;
        };
        let (groups, _, _) = txn.take_groups();
        for (i, g) in groups.iter().enumerate() {
            let (bytes, expect) = match i {
                0 => (bytes.clone(), expect),
                _ => (Bytes::from_static(DISCARD), Expect::Absorb),
            };
            let seq = self.reserve();
            self.send_held(w, seq, g.target, g.pin, bytes, Hold::Release, expect);
        }
    }

    /// `EXEC` of a transaction over several slots: its reply's place and one for each
    /// group's `EXEC` (or `DISCARD`), which go once every queued command is answered
    /// ([`Session::advance_runs`]).
    fn start_run(&mut self, w: &mut Worker) {
        let Some(txn) = self.txn.as_mut() else {
            return;
        };
        let (groups, mut order, lone) = txn.take_groups();
        let held = groups.len() as u16;
        for p in order.iter_mut().filter(|p| **p & LONE != 0) {
            *p = held + (*p & !LONE);
        }
        let visible = self.reserve();
        let mut parts: Vec<RunGroup> = (groups.into_iter())
            .map(|g| RunGroup {
                slot: g.slot,
                lone: None,
                target: g.target,
                pin: g.pin,
                seq: self.reserve(),
                reply: None,
            })
            .collect();
        parts.extend(lone.into_iter().map(|(slot, bytes)| RunGroup {
            slot: Some(slot),
            lone: Some(bytes),
            target: Target::Slot(slot),
            pin: 0,
            seq: self.reserve(),
            reply: None,
        }));
        let groups = parts;
        if let Some(txn) = self.txn.as_mut() {
            txn.runs.push_back(Run {
                visible,
                groups,
                order,
                stage: Stage::Queueing,
                failed: None,
            });
        }
        for (visible, outcome) in self.advance_runs() {
            let reply = match outcome {
                Outcome::Reply(reply) => reply,
                Outcome::Error(text) => {
                    Metrics::inc(&METRICS.proxy_errors);
                    Ok(self.made(|w| w.error(&text)))
                }
            };
            self.fill_place(visible, reply);
        }
        self.send_waiting(w);
    }

    /// Move the runs on as far as the replies in allow, oldest first: the groups' `EXEC`s
    /// and `DISCARD`s and the lone reads they send go first among the client's waiting
    /// requests (those waiting came after the run's `EXEC`). The replies that became
    /// known, with their places: the client's `EXEC` reply, and nothing for the places of
    /// lone reads that will not be sent.
    fn advance_runs(&mut self) -> Vec<(u64, Outcome)> {
        let mut done = Vec::new();
        loop {
            let Some(txn) = self.txn.as_mut() else {
                return done;
            };
            let Some(run) = txn.runs.front_mut() else {
                return done;
            };
            let visible = run.visible;
            // What each part is sent now: `None` for a lone read's own command.
            let mut ends: Vec<(usize, Option<&'static [u8]>)> = Vec::new();
            let mut unsent_lone = false;
            match run.stage {
                Stage::Queueing => {
                    if txn.expect.iter().any(|e| e.0 < visible) {
                        return done;
                    }
                    if let Some(why) = run.failed.take() {
                        done.push((visible, Outcome::Error(why)));
                        ends.extend(held_parts(&run.groups, 0).map(|i| (i, Some(DISCARD))));
                        unsent_lone = true;
                    } else {
                        run.stage = Stage::First;
                        ends.push((0, Some(EXEC)));
                    }
                }
                Stage::First => {
                    let Some(reply) = &run.groups[0].reply else {
                        return done;
                    };
                    let others = slots_of(&run.groups[1..]);
                    match after_first(reply, &slot_name(run.groups[0].slot), &others) {
                        None => {
                            run.stage = Stage::Rest;
                            ends.extend(held_parts(&run.groups, 1).map(|i| (i, Some(EXEC))));
                            let lone =
                                (1..run.groups.len()).filter(|&i| run.groups[i].lone.is_some());
                            ends.extend(lone.map(|i| (i, None)));
                        }
                        Some(outcome) => {
                            done.push((visible, outcome));
                            ends.extend(held_parts(&run.groups, 1).map(|i| (i, Some(DISCARD))));
                            unsent_lone = true;
                        }
                    }
                }
                Stage::Rest => {
                    if run.groups.iter().any(|g| g.reply.is_none()) {
                        return done;
                    }
                    let parts: Vec<Part> = (run.groups.iter_mut())
                        .map(|g| Part {
                            slot: g.slot,
                            lone: g.lone.is_some(),
                            reply: g.reply.take().unwrap_or(Err(BackendError::Dropped)),
                        })
                        .collect();
                    done.push((visible, merged(parts, &run.order, self.proto)));
                }
            }
            if unsent_lone {
                let lone = run.groups.iter().filter(|g| g.lone.is_some());
                done.extend(lone.map(|g| (g.seq, Outcome::Reply(Ok(Bytes::new())))));
            }
            let sends: Vec<(u64, Target, u32, Bytes, bool)> = (ends.iter())
                .map(|&(i, bytes)| {
                    let g = &run.groups[i];
                    match (bytes, &g.lone) {
                        (Some(bytes), _) => {
                            (g.seq, g.target, g.pin, Bytes::from_static(bytes), true)
                        }
                        (None, Some(read)) => (g.seq, g.target, g.pin, read.clone(), false),
                        (None, None) => (g.seq, g.target, g.pin, Bytes::from_static(EXEC), true),
                    }
                })
                .collect();
            let finished = done.iter().any(|d| d.0 == visible);
            if finished {
                txn.runs.pop_front();
            }
            let mut reqs = Vec::with_capacity(sends.len());
            for (seq, target, pin, bytes, held) in sends {
                if let Some(txn) = self.txn.as_mut() {
                    txn.expect.push_back((seq, Expect::Run, pin));
                }
                let req = if held {
                    self.held_request(seq, target, bytes, Hold::Release)
                } else {
                    self.lone_request(seq, target, bytes)
                };
                reqs.push(req);
            }
            for req in reqs.into_iter().rev() {
                self.waiting_bytes += req.bytes.len();
                self.waiting.push_front(req);
            }
            if !finished {
                return done;
            }
        }
    }

    /// A lone read of a run: alone, on a connection shared with other clients.
    fn lone_request(&self, seq: u64, target: Target, bytes: Bytes) -> BackendRequest {
        let place = Place {
            session: self.key,
            client: self.id.0,
            seq,
            part: Place::WHOLE,
        };
        let client = self.id.0 as u32;
        BackendRequest::new(bytes, target, self.proto, client, ReplyTo::new(place))
    }

    /// Send a request of group `g` of the transaction, in its place among the client's
    /// requests.
    fn send_on(&mut self, w: &mut Worker, g: usize, bytes: Bytes, hold: Hold, expect: Expect) {
        let client = self.id.0 as u32;
        let (target, pin) = match self.txn.as_ref().and_then(|t| t.groups.get(g)) {
            Some(group) => (group.target, group.pin),
            None => (Target::Any(client), 0),
        };
        let seq = self.reserve();
        self.send_held(w, seq, target, pin, bytes, hold, expect);
    }

    /// Send a request of the transaction on connection number `pin` (to `target`), at
    /// place `seq`.
    #[allow(clippy::too_many_arguments)]
    fn send_held(
        &mut self,
        w: &mut Worker,
        seq: u64,
        target: Target,
        pin: u32,
        bytes: Bytes,
        hold: Hold,
        expect: Expect,
    ) {
        if let Some(txn) = self.txn.as_mut() {
            txn.expect.push_back((seq, expect, pin));
        }
        let req = self.held_request(seq, target, bytes, hold);
        self.submit(w, req);
    }

    /// A request of the transaction for its held connection to `target`'s slot.
    fn held_request(&self, seq: u64, target: Target, bytes: Bytes, hold: Hold) -> BackendRequest {
        let client = self.id.0 as u32;
        let place = Place {
            session: self.key,
            client: self.id.0,
            seq,
            part: Place::WHOLE,
        };
        let mut req = BackendRequest::new(bytes, target, self.proto, client, ReplyTo::new(place));
        req.pinned = true;
        req.hold = hold;
        req
    }

    /// A reply made here, in the client's protocol.
    fn made(&self, f: impl FnOnce(&mut ReplyWriter)) -> Bytes {
        let mut out = BytesMut::new();
        f(&mut ReplyWriter {
            out: &mut out,
            proto: self.proto,
        });
        out.freeze()
    }

    fn forget_finished_transaction(&mut self) {
        if self.txn.as_ref().is_some_and(|t| t.is_over()) {
            self.txn = None;
        }
    }
}

/// A command that only reads and never blocks outside `MULTI` (the built-in table's
/// flags; a learned command is neither).
fn is_read_only(request: &Request) -> bool {
    use crate::command::flags::{BLOCKING, READONLY};
    crate::command::spec_of(request)
        .is_some_and(|spec| spec.has_flag(READONLY) && spec.flags & BLOCKING == 0)
}

/// The slot of `WATCH`'s keys; `None` when they are in different slots.
fn keys_slot(request: &Request) -> Option<Slot> {
    let slot = Slot::of_key(request.arg(1));
    (2..request.argc())
        .all(|i| Slot::of_key(request.arg(i)) == slot)
        .then_some(slot)
}

/// The error for a command of a transaction that broke because of `why`.
fn aborted(why: &str) -> String {
    format!("ERR slotgate: transaction aborted: {why}; nothing of it will run")
}

/// What `EXEC` answers when a request of its transaction got `reply` at queue time, if
/// that was a failure (an error, a redirect, no reply). Pure.
fn queue_failure(reply: &ReplyResult) -> Option<String> {
    match reply {
        Err(e) => Some(format!(
            "EXECABORT Transaction discarded: {e}; nothing of it ran (slotgate)"
        )),
        Ok(frame) => match (slot_moved(frame), frame.first()) {
            (Some(why), _) => Some(format!(
                "EXECABORT Transaction discarded: {why}; nothing of it ran (slotgate)"
            )),
            (None, Some(b'-' | b'!')) => Some(EXECABORT.to_string()),
            _ => None,
        },
    }
}

/// How a slot is named in the client's errors.
fn slot_name(slot: Option<Slot>) -> String {
    slot.map_or_else(|| "(no key)".to_string(), |s| s.to_string())
}

fn slots_of(groups: &[RunGroup]) -> String {
    let names: Vec<String> = groups.iter().map(|g| slot_name(g.slot)).collect();
    names.join(", ")
}

/// What the client's `EXEC` gets after the first group's `EXEC` answered `reply`: `None`
/// when it ran (an array), and the other groups run next; else they are discarded and
/// this is the client's reply. `first`, `others`: the slots, for the error texts. Pure.
fn after_first(reply: &ReplyResult, first: &str, others: &str) -> Option<Outcome> {
    match reply {
        Ok(frame) if ran(frame) => None,
        Ok(frame) => match slot_moved(frame) {
            Some(why) => Some(Outcome::Error(format!(
                "EXECABORT Transaction discarded: {why}; nothing of it ran (slotgate)"
            ))),
            // Nil (a watched key changed) or the node's error: nothing ran.
            None => Some(Outcome::Reply(Ok(frame.clone()))),
        },
        Err(
            e @ (BackendError::HeldGone
            | BackendError::TooManyPinned { .. }
            | BackendError::TooManyPinnedAt { .. }
            | BackendError::Unreachable { .. }
            | BackendError::SlotNotServed(_)
            | BackendError::NoNodes),
        ) => Some(Outcome::Error(format!(
            "EXECABORT Transaction discarded: {e}; nothing of it ran (slotgate)"
        ))),
        Err(e) => Some(Outcome::Error(format!(
            "ERR slotgate: transaction may be partly applied: {e}: the commands of slot {first} may or may not have run; those of slots {others} were discarded"
        ))),
    }
}

/// `EXEC`'s reply says the transaction ran: an array, not the nil of an aborted one.
fn ran(frame: &[u8]) -> bool {
    frame.first() == Some(&b'*') && !frame.starts_with(b"*-1")
}

/// One part of a run, for [`merged`]: a group's `EXEC` reply or a lone read's reply.
struct Part {
    slot: Option<Slot>,
    lone: bool,
    reply: ReplyResult,
}

/// The groups of a run (not the lone reads), from index `from` on.
fn held_parts(groups: &[RunGroup], from: usize) -> impl Iterator<Item = usize> + '_ {
    (from..groups.len()).filter(|&i| groups[i].lone.is_none())
}

/// The client's `EXEC` reply from every part's reply (in part order), the first group
/// having run: the replies merged in the client's order by `order`, or the error that
/// says which slots ran and which did not. A lone read that failed is that command's
/// error in the array: its failure applied nothing. Pure.
fn merged(parts: Vec<Part>, order: &[u16], proto: crate::protocol::reply::Proto) -> Outcome {
    let held_ran = |p: &Part| p.lone || matches!(&p.reply, Ok(frame) if ran(frame));
    if parts.iter().all(held_ran) {
        let replies = (parts.into_iter())
            .map(|p| match (p.lone, p.reply) {
                (false, reply) => reply,
                // One command's reply: an array of one, as its group's EXEC would give.
                (true, Ok(frame)) => {
                    let mut out = BytesMut::with_capacity(frame.len() + 4);
                    out.extend_from_slice(b"*1\r\n");
                    out.extend_from_slice(&frame);
                    Ok(out.freeze())
                }
                (true, Err(e)) => {
                    let mut out = BytesMut::new();
                    out.extend_from_slice(b"*1\r\n");
                    ReplyWriter {
                        out: &mut out,
                        proto,
                    }
                    .error(&format!("ERR slotgate: {e}"));
                    Ok(out.freeze())
                }
            })
            .collect();
        return Outcome::Reply(merge(&Merge::Interleave(order.to_vec()), replies, proto));
    }
    let commands = |g: usize| -> String {
        let numbers: Vec<String> = (order.iter().enumerate())
            .filter(|(_, &p)| usize::from(p) == g)
            .map(|(i, _)| (i + 1).to_string())
            .collect();
        numbers.join(", ")
    };
    let mut ran_slots = Vec::new();
    let mut failed = Vec::new();
    for (g, part) in parts.iter().enumerate().filter(|(_, p)| !p.lone) {
        let name = slot_name(part.slot);
        match &part.reply {
            Ok(frame) if ran(frame) => {
                ran_slots.push(format!("slot {name} (commands {})", commands(g)));
            }
            Ok(frame) => failed.push(format!(
                "slot {name} (commands {}) did not run: {}",
                commands(g),
                first_line(frame)
            )),
            Err(e) => failed.push(format!(
                "slot {name} (commands {}) may or may not have run: {e}",
                commands(g)
            )),
        }
    }
    Outcome::Error(format!(
        "ERR slotgate: transaction partly applied: {} ran; {}",
        ran_slots.join(", "),
        failed.join("; ")
    ))
}

/// The text of a reply's first line (an error's message), for an error text.
fn first_line(frame: &[u8]) -> String {
    let line = frame.split(|&b| b == b'\r').next().unwrap_or_default();
    let text = line.get(1..).unwrap_or_default();
    String::from_utf8_lossy(text.get(..120).unwrap_or(text)).into_owned()
}

/// What the client gets for the `reply` to a transaction request that stands for
/// `expect`, and why the transaction broke, if this says it did. `broken`: why it broke
/// before. Pure.
fn judge(expect: Expect, reply: &ReplyResult, broken: Option<&str>) -> (Verdict, Option<String>) {
    let moved = match reply {
        Ok(frame) => slot_moved(frame),
        Err(_) => None,
    };
    match expect {
        Expect::Absorb | Expect::Run => {
            let breaks = match reply {
                Err(e) => Some(e.to_string()),
                Ok(_) => moved,
            };
            (Verdict::Nothing, breaks)
        }
        Expect::Reply | Expect::Queued => match (reply, moved) {
            (_, Some(why)) => (Verdict::Error(aborted(&why)), Some(why)),
            (Ok(_), None) => (Verdict::AsIs, None),
            (Err(BackendError::HeldGone), None) => match broken {
                Some(why) => (Verdict::Error(aborted(why)), None),
                None => (Verdict::AsIs, None),
            },
            (Err(e), None) => (Verdict::AsIs, Some(e.to_string())),
        },
        Expect::Exec => match (reply, moved) {
            (_, Some(why)) => (
                Verdict::Error(format!(
                    "EXECABORT Transaction discarded: {why}; nothing of it ran (slotgate)"
                )),
                None,
            ),
            (Ok(_), None) => (Verdict::AsIs, None),
            // Never sent: nothing of it ran.
            (
                Err(
                    e @ (BackendError::HeldGone
                    | BackendError::TooManyPinned { .. }
                    | BackendError::TooManyPinnedAt { .. }
                    | BackendError::Unreachable { .. }
                    | BackendError::SlotNotServed(_)
                    | BackendError::NoNodes),
                ),
                None,
            ) => {
                let why = match (e, broken) {
                    (BackendError::HeldGone, Some(why)) => why.to_string(),
                    _ => e.to_string(),
                };
                (
                    Verdict::Error(format!(
                        "EXECABORT Transaction discarded: {why}; nothing of it ran (slotgate)"
                    )),
                    None,
                )
            }
            // Lost or timed out after it was sent: it may have run.
            (Err(_), None) => (Verdict::AsIs, None),
        },
        Expect::ExecAbort => (Verdict::Error(EXECABORT.to_string()), None),
        Expect::Forget => match reply {
            Ok(_) => (Verdict::AsIs, None),
            Err(_) => (Verdict::Ok, None),
        },
    }
}

/// `slot N moved to host:port` when `frame` is the node's `MOVED` or `ASK`.
fn slot_moved(frame: &[u8]) -> Option<String> {
    if frame.first() != Some(&b'-') {
        return None;
    }
    let from = NodeAddr::new("?", 0);
    match parse_redirect(frame, &from)? {
        Redirect::Moved { slot, addr } => Some(format!("slot {slot} moved to {addr}")),
        Redirect::Ask { slot, addr } => Some(format!("slot {slot} is moving to {addr}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(frame: &'static [u8]) -> ReplyResult {
        Ok(Bytes::from_static(frame))
    }

    fn lost() -> BackendError {
        BackendError::Lost {
            addr: NodeAddr::new("127.0.0.1", 7000),
            reason: "closed by the node".into(),
        }
    }

    const MOVED: &[u8] = b"-MOVED 3999 127.0.0.1:7001\r\n";

    #[test]
    fn absorbed_replies_give_the_client_nothing() {
        assert_eq!(
            judge(Expect::Absorb, &ok(b"+OK\r\n"), None),
            (Verdict::Nothing, None)
        );
        assert_eq!(
            judge(Expect::Absorb, &ok(b"+QUEUED\r\n"), None),
            (Verdict::Nothing, None)
        );
        // A failure breaks the transaction: its later commands are not sent.
        let (verdict, breaks) = judge(Expect::Absorb, &Err(lost()), None);
        assert_eq!(verdict, Verdict::Nothing);
        assert!(breaks.unwrap().contains("connection lost"));
    }

    #[test]
    fn a_moved_slot_aborts_the_transaction() {
        let (verdict, breaks) = judge(Expect::Reply, &ok(MOVED), None);
        assert_eq!(
            verdict,
            Verdict::Error(
                "ERR slotgate: transaction aborted: slot 3999 moved to 127.0.0.1:7001; nothing of it will run"
                    .into()
            )
        );
        assert_eq!(breaks.as_deref(), Some("slot 3999 moved to 127.0.0.1:7001"));
        let (verdict, _) = judge(Expect::Reply, &ok(b"-ASK 3999 127.0.0.1:7001\r\n"), None);
        assert!(
            matches!(&verdict, Verdict::Error(t) if t.contains("slot 3999 is moving to 127.0.0.1:7001")),
            "{verdict:?}"
        );
        // At EXEC: the node discarded it.
        let (verdict, _) = judge(Expect::Exec, &ok(MOVED), None);
        assert_eq!(
            verdict,
            Verdict::Error(
                "EXECABORT Transaction discarded: slot 3999 moved to 127.0.0.1:7001; nothing of it ran (slotgate)"
                    .into()
            )
        );
    }

    #[test]
    fn later_commands_of_a_broken_transaction_say_why() {
        let gone = Err(BackendError::HeldGone);
        assert_eq!(
            judge(Expect::Reply, &gone, Some("slot 1 moved to a:1")),
            (
                Verdict::Error(
                    "ERR slotgate: transaction aborted: slot 1 moved to a:1; nothing of it will run"
                        .into()
                ),
                None
            )
        );
        assert_eq!(
            judge(Expect::Exec, &gone, Some("slot 1 moved to a:1")),
            (
                Verdict::Error(
                    "EXECABORT Transaction discarded: slot 1 moved to a:1; nothing of it ran (slotgate)"
                        .into()
                ),
                None
            )
        );
    }

    #[test]
    fn exec_passes_its_reply_and_an_uncertain_failure_as_they_are() {
        for reply in [
            ok(b"*2\r\n+OK\r\n:1\r\n"),
            ok(b"*-1\r\n"),
            ok(b"-EXECABORT Transaction discarded because of previous errors.\r\n"),
            Err(lost()),
        ] {
            assert_eq!(
                judge(Expect::Exec, &reply, None),
                (Verdict::AsIs, None),
                "{reply:?}"
            );
        }
    }

    #[test]
    fn an_aborted_exec_and_forgetting_answer_as_redis() {
        for reply in [ok(b"+OK\r\n"), Err(BackendError::HeldGone)] {
            assert_eq!(
                judge(Expect::ExecAbort, &reply, None),
                (Verdict::Error(EXECABORT.into()), None)
            );
        }
        assert_eq!(
            judge(Expect::Forget, &ok(b"+OK\r\n"), None),
            (Verdict::AsIs, None)
        );
        assert_eq!(
            judge(Expect::Forget, &Err(BackendError::HeldGone), None),
            (Verdict::Ok, None)
        );
    }

    #[test]
    fn only_reads_that_never_block_go_alone() {
        assert!(is_read_only(&Request::from_args(&["GET", "k"])));
        assert!(is_read_only(&Request::from_args(&["HGETALL", "k"])));
        assert!(!is_read_only(&Request::from_args(&["SET", "k", "v"])));
        // It would block, sent outside MULTI.
        assert!(!is_read_only(&Request::from_args(&[
            "XREAD", "BLOCK", "0", "STREAMS", "s", "$"
        ])));
        assert!(!is_read_only(&Request::from_args(&["NOSUCHCOMMAND", "k"])));
    }

    #[test]
    fn watch_keys_share_a_slot_or_are_crossslot() {
        let req = |args: &[&str]| {
            let mut raw = format!("*{}\r\n", args.len());
            for a in args {
                raw.push_str(&format!("${}\r\n{a}\r\n", a.len()));
            }
            let mut buf = BytesMut::from(raw.as_bytes());
            let mut scanner = crate::protocol::scan::RequestScanner::new(
                crate::protocol::scan::Limits::default(),
            );
            scanner.next_request(&mut buf).unwrap().unwrap()
        };
        assert_eq!(
            keys_slot(&req(&["WATCH", "{u}a", "{u}b"])),
            Some(Slot::of_key(b"u"))
        );
        assert_eq!(keys_slot(&req(&["WATCH", "a", "b"])), None);
    }

    fn part(slot: u16, lone: bool, reply: ReplyResult) -> Part {
        Part {
            slot: Slot::new(slot),
            lone,
            reply,
        }
    }

    #[test]
    fn a_run_merges_every_reply_in_the_clients_order() {
        use crate::protocol::reply::Proto;
        // Group 0 ran SET and GET, group 1 ran INCR; a lone read answered nil.
        let parts = vec![
            part(1, false, ok(b"*2\r\n+OK\r\n$1\r\nv\r\n")),
            part(2, false, ok(b"*1\r\n:5\r\n")),
            part(3, true, ok(b"$-1\r\n")),
        ];
        assert_eq!(
            merged(parts, &[0, 1, 2, 0], Proto::Resp2),
            Outcome::Reply(ok(b"*4\r\n+OK\r\n:5\r\n$-1\r\n$1\r\nv\r\n"))
        );
        // A lone read that got no reply is its command's error: nothing was applied by it.
        let parts = vec![
            part(1, false, ok(b"*1\r\n+OK\r\n")),
            part(3, true, Err(lost())),
        ];
        let Outcome::Reply(Ok(frame)) = merged(parts, &[1, 0], Proto::Resp3) else {
            panic!("merged");
        };
        let text = String::from_utf8_lossy(&frame).into_owned();
        assert!(
            text.starts_with("*2\r\n-ERR slotgate: backend 127.0.0.1:7000: connection lost"),
            "{text}"
        );
        assert!(text.ends_with("+OK\r\n"), "{text}");
    }

    #[test]
    fn a_run_that_failed_after_the_first_group_says_what_ran() {
        use crate::protocol::reply::Proto;
        let parts = vec![
            part(1, false, ok(b"*1\r\n+OK\r\n")),
            part(2, false, Err(lost())),
            part(
                3,
                false,
                ok(b"-READONLY You can't write against a read only replica.\r\n"),
            ),
            part(4, true, ok(b"$1\r\nx\r\n")),
        ];
        let Outcome::Error(text) = merged(parts, &[0, 1, 3, 2, 1], Proto::Resp2) else {
            panic!("an error");
        };
        assert_eq!(
            text,
            "ERR slotgate: transaction partly applied: slot 1 (commands 1) ran; \
             slot 2 (commands 2, 5) may or may not have run: backend 127.0.0.1:7000: connection lost: closed by the node; \
             slot 3 (commands 4) did not run: READONLY You can't write against a read only replica."
        );
    }

    #[test]
    fn the_first_groups_exec_decides_whether_the_others_run() {
        assert_eq!(after_first(&ok(b"*1\r\n+OK\r\n"), "1", "2"), None);
        assert_eq!(after_first(&ok(b"*0\r\n"), "1", "2"), None);
        // A watched key changed: nil for the client, the others discarded.
        for nil in [&b"*-1\r\n"[..], b"_\r\n"] {
            let reply = Ok(Bytes::copy_from_slice(nil));
            assert_eq!(
                after_first(&reply, "1", "2"),
                Some(Outcome::Reply(reply.clone()))
            );
        }
        assert_eq!(
            after_first(&ok(MOVED), "1", "2"),
            Some(Outcome::Error(
                "EXECABORT Transaction discarded: slot 3999 moved to 127.0.0.1:7001; nothing of it ran (slotgate)".into()
            ))
        );
        assert!(matches!(
            after_first(&Err(BackendError::HeldGone), "1", "2"),
            Some(Outcome::Error(t)) if t.starts_with("EXECABORT") && t.contains("nothing of it ran")
        ));
        assert!(matches!(
            after_first(&Err(lost()), "1", "2, 3"),
            Some(Outcome::Error(t)) if t.contains("the commands of slot 1 may or may not have run; those of slots 2, 3 were discarded")
        ));
    }

    #[test]
    fn any_failure_at_queue_time_aborts_the_exec() {
        assert_eq!(queue_failure(&ok(b"+QUEUED\r\n")), None);
        assert_eq!(queue_failure(&ok(b"+OK\r\n")), None);
        assert_eq!(
            queue_failure(&ok(b"-OOM command not allowed\r\n")),
            Some(EXECABORT.to_string())
        );
        assert!(queue_failure(&ok(MOVED))
            .unwrap()
            .contains("slot 3999 moved"));
        assert!(queue_failure(&Err(lost()))
            .unwrap()
            .starts_with("EXECABORT"));
    }

    #[test]
    fn lone_reads_are_renumbered_when_one_became_a_group() {
        let slot = |n| Slot::new(n).unwrap();
        let mut txn = Transaction {
            order: vec![0, LONE, LONE | 1, 1, LONE | 2],
            lone: vec![
                Some((slot(5), Bytes::from("a"))),
                None,
                Some((slot(7), Bytes::from("c"))),
            ],
            ..Transaction::default()
        };
        let (_, order, lone) = txn.take_groups();
        assert_eq!(order, [0, LONE, LONE | 1, 1, LONE | 1]);
        assert_eq!(
            lone,
            [(slot(5), Bytes::from("a")), (slot(7), Bytes::from("c"))]
        );
        assert!(txn.lone.is_empty() && txn.order.is_empty());
    }
}
