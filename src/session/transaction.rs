//! Transactions: `MULTI` ... `EXEC`/`DISCARD` and `WATCH`/`UNWATCH`, run on one node
//! connection held for the client ([`Hold`]) at the master of the transaction's slot.
//!
//! The slot is decided by `WATCH` or by the first keyed command after `MULTI`. Until
//! then `MULTI` is answered here and keyless commands are held (answered `+QUEUED`, as
//! the node would); once the slot is known, `MULTI` and the held commands go first and
//! the node's replies to them are absorbed (their places stay empty). A transaction
//! with no key at all runs on any master at `EXEC`. Every request of a transaction goes
//! on the held connection, pipelined. Nothing else of the client's overtakes it or is
//! overtaken by it: a request waits for the replies on their way when it goes on the
//! held connection and they do not, or the other way round (`Session::may_send_held`).
//!
//! A command refused here inside `MULTI` — Redis's own errors (unknown command, wrong
//! arity), a key in another slot than the transaction's (`CROSSSLOT`), a command that
//! cannot run in a transaction here (one slotgate answers itself, one that runs on
//! several nodes) — gets its error and makes `EXEC` answer `EXECABORT` after a
//! `DISCARD` at the node, as Redis does. A slot that moved meanwhile (the node's
//! `MOVED`/`ASK`, never followed for these requests) or a lost connection aborts the
//! transaction the same way: nothing of it runs.
//!
//! The held connection goes back to the spares after the request that leaves the node
//! with no state of the client (`EXEC`, `DISCARD`, `UNWATCH`; `RESET` sends one of
//! them), and is closed when the client leaves or the connection fails.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::Session;
use crate::admin::{Metrics, METRICS};
use crate::backend::{BackendError, BackendRequest, Hold, Place, ReplyResult, ReplyTo, Target};
use crate::cluster::NodeAddr;
use crate::command::Local;
use crate::dispatch::plan::{plan, refusal, Plan, PlanError};
use crate::dispatch::Worker;
use crate::protocol::redirect::{parse_redirect, Redirect};
use crate::protocol::reply::ReplyWriter;
use crate::protocol::scan::Request;
use crate::slot::Slot;

const MULTI: &[u8] = b"*1\r\n$5\r\nMULTI\r\n";
const DISCARD: &[u8] = b"*1\r\n$7\r\nDISCARD\r\n";
const UNWATCH: &[u8] = b"*1\r\n$7\r\nUNWATCH\r\n";
/// Redis's reply to `EXEC` after an error in the transaction.
const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";

/// A client's transaction, from `WATCH` or `MULTI` until everything it sent is
/// answered. Boxed in the session, which has none the rest of the time.
#[derive(Default)]
pub(super) struct Transaction {
    /// The transaction's slot, from `WATCH` or the first keyed command after `MULTI`.
    /// Set exactly while a connection is held.
    slot: Option<Slot>,
    /// Where the held connection was opened to (for the requests' routing state).
    target: Option<Target>,
    /// A connection is held: a request opened it ([`Hold::Open`]) and none released it.
    held: bool,
    /// How many times a connection was opened: a reply to a request on an earlier one
    /// says nothing about the one held now.
    pin: u32,
    multi: Multi,
    /// Bytes of the commands held in [`Multi::Local`].
    held_bytes: usize,
    /// A command inside `MULTI` was refused: `EXEC` answers `EXECABORT`.
    aborted: bool,
    /// Why the transaction on connection number `.0` cannot run any more (its slot
    /// moved, the connection failed): while that one is held, the transaction's later
    /// commands get this, unsent, and `EXEC` fails.
    broken: Option<(u32, String)>,
    /// Requests on their way whose replies this reads, in the order sent: their place,
    /// what the reply stands for, and the connection (`pin`) they went on.
    expect: VecDeque<(u64, Expect, u32)>,
}

/// Where `MULTI` is.
#[derive(Default)]
enum Multi {
    #[default]
    Off,
    /// `MULTI` was answered here and not sent: no slot yet, or the held connection's
    /// transaction is broken. The keyless commands since, held to go after it.
    Local(Vec<Bytes>),
    /// `MULTI` went on the held connection.
    Sent,
}

/// What a transaction request's reply stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// A request the client was answered for here (`MULTI`, held commands) or did not
    /// send (what `RESET` ends at the node): the client gets nothing.
    Absorb,
    /// The client's command: its reply as it is, unless its slot moved.
    Reply,
    /// `EXEC`.
    Exec,
    /// `EXEC` of a transaction that failed, sent as `DISCARD` or `UNWATCH`: `EXECABORT`.
    ExecAbort,
    /// The client's `DISCARD` or `UNWATCH`: whatever became of the connection, nothing
    /// of the transaction is left, so `+OK` unless the node says otherwise.
    Forget,
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

impl Transaction {
    /// Nothing is held, queued or awaited: the session can forget it.
    fn is_over(&self) -> bool {
        !self.held && matches!(self.multi, Multi::Off) && self.expect.is_empty()
    }

    fn in_multi(&self) -> bool {
        !matches!(self.multi, Multi::Off)
    }

    /// Why the transaction on the connection held now broke, if it did.
    fn broken_now(&self) -> Option<&str> {
        match &self.broken {
            Some((pin, why)) if self.held && *pin == self.pin => Some(why),
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
}

impl Session {
    /// `MULTI`, `EXEC`, `DISCARD`, `WATCH`, `UNWATCH` outside `MULTI`.
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
    ) -> Option<Request> {
        let in_multi = self.txn.as_ref().is_some_and(|t| t.in_multi());
        if !in_multi {
            if request.arg(0).eq_ignore_ascii_case(b"RESET") {
                self.release_for_reset(w);
            }
            return Some(request);
        }
        match self.step(&request) {
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
        }
        self.forget_finished_transaction();
    }

    /// The reply to place `seq`, made into what the client gets when it answers a
    /// request of the transaction; the transaction follows what it says.
    #[cold]
    pub(super) fn transaction_reply(&mut self, seq: u64, reply: ReplyResult) -> ReplyResult {
        let Some(txn) = self.txn.as_mut() else {
            return reply;
        };
        let Some(i) = txn.expect.iter().position(|e| e.0 == seq) else {
            return reply;
        };
        let Some((_, expect, pin)) = txn.expect.remove(i) else {
            return reply;
        };
        if self.blocked_at == Some(seq) {
            // The transaction's last request on its way (not a blocked client: see
            // `send_now`); other requests may go again.
            self.blocked_at = None;
        }
        let (verdict, breaks) = judge(expect, &reply, txn.broken_on(pin));
        if let Some(why) = breaks {
            // The first failure on a connection says why; one on an earlier connection
            // says nothing about the one held now.
            if pin == txn.pin && txn.broken_on(pin).is_none() {
                tracing::debug!(client = self.id.0, %why, "transaction broken");
                txn.broken = Some((pin, why));
            }
        }
        if txn.is_over() {
            self.txn = None;
        }
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

    /// Whether a pinned request may go now. A blocking command, and a request that opens
    /// a transaction's connection, once every earlier request is answered; the other
    /// requests of a transaction also right behind those of the transaction on their
    /// way (on the same connection, so in order), within the reply window.
    pub(super) fn may_send_held(&self, req: &BackendRequest) -> bool {
        match req.hold {
            Hold::No | Hold::Open => self.sent == 0,
            Hold::On | Hold::Release => {
                self.sent == 0 || (self.on_held_connection() && self.fits_window())
            }
        }
    }

    /// The requests on their way are a transaction's, on its held connection: the last
    /// one sent (`blocked_at`, which keeps every other request back) is.
    pub(super) fn on_held_connection(&self) -> bool {
        match (self.blocked_at, self.txn.as_deref()) {
            (Some(seq), Some(txn)) => txn.expect.iter().any(|e| e.0 == seq),
            _ => false,
        }
    }

    /// What a request is to the transaction.
    fn step(&self, request: &Request) -> Step {
        let name = || String::from_utf8_lossy(request.arg(0)).to_uppercase();
        match plan(request, self.shared.learned.get(), self.id.0 as u32) {
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
            Ok(Plan::Node(_) | Plan::Script(_) | Plan::Pinned { .. }) => Step::Keyless,
            // Their results belong in EXEC's reply: the node answers them there.
            Ok(Plan::Local(Local::Ping | Local::Echo | Local::Select)) => Step::Keyless,
            Ok(Plan::Local(Local::Quit | Local::Reset)) => Step::Now,
            Ok(Plan::Local(_)) => Step::Refused(format!(
                "ERR slotgate: '{}' cannot be queued in a transaction: slotgate answers it itself",
                name()
            )),
            Ok(Plan::Refuse { name, reason }) => Step::Refused(refusal(name, reason)),
            Ok(Plan::Transaction(name)) => Step::Txn(name),
            // Keys in several slots: what Redis Cluster answers at EXEC.
            Ok(Plan::Split) => Step::Refused(PlanError::CrossSlot.to_string()),
            // Cluster-wide commands, and any plan that runs on several nodes or
            // connections.
            Ok(_) => Step::Refused(format!(
                "ERR slotgate: '{}' cannot be queued in a transaction: it does not run on one node",
                name()
            )),
            Err(e) => Step::Refused(e.to_string()),
        }
    }

    /// `MULTI` outside a transaction: sent on the held connection (after `WATCH`), else
    /// answered here until the transaction's slot is known.
    fn multi(&mut self, w: &mut Worker, request: Request) {
        let txn = self.txn.get_or_insert_with(Box::default);
        if txn.held && txn.broken_now().is_none() {
            txn.multi = Multi::Sent;
            self.send_held(w, request.into_raw(), Hold::On, Expect::Reply);
        } else {
            txn.multi = Multi::Local(Vec::new());
            txn.held_bytes = 0;
            self.push_local(|w| w.ok());
        }
    }

    /// `WATCH key...` outside `MULTI`: its keys' slot becomes the transaction's, and
    /// opens the held connection to its master.
    fn watch(&mut self, w: &mut Worker, request: Request) {
        let Some(slot) = keys_slot(&request) else {
            return self.push_error(&PlanError::CrossSlot.to_string());
        };
        let txn = self.txn.get_or_insert_with(Box::default);
        if txn.held && txn.broken_now().is_some() {
            // Start over where the slot is now.
            self.release(w, Bytes::from_static(UNWATCH), Expect::Absorb);
        }
        let txn = self.txn.get_or_insert_with(Box::default);
        match txn.slot {
            Some(held) if held != slot => self.push_error(&PlanError::CrossSlot.to_string()),
            Some(_) => self.send_held(w, request.into_raw(), Hold::On, Expect::Reply),
            None => {
                self.open(Target::Slot(slot));
                self.send_held(w, request.into_raw(), Hold::Open, Expect::Reply);
            }
        }
    }

    /// `UNWATCH` outside `MULTI`.
    fn unwatch(&mut self, w: &mut Worker, request: Request) {
        if self.txn.as_ref().is_some_and(|t| t.held) {
            self.release(w, request.into_raw(), Expect::Forget);
        } else {
            self.push_local(|w| w.ok());
        }
    }

    /// A command for `slot` inside `MULTI`: the first keyed one opens the connection to
    /// the slot's master, with `MULTI` and the held commands before it.
    fn queue_keyed(&mut self, w: &mut Worker, request: Request, slot: Slot) {
        let Some(txn) = self.txn.as_mut() else {
            return;
        };
        if let Some(why) = txn.broken_now() {
            let text = aborted(why);
            return self.refuse_in_multi(&text);
        }
        match txn.slot {
            Some(held) if held != slot => {
                self.refuse_in_multi(&PlanError::CrossSlot.to_string());
            }
            Some(_) => self.send_held(w, request.into_raw(), Hold::On, Expect::Reply),
            None => {
                let held = match std::mem::replace(&mut txn.multi, Multi::Sent) {
                    Multi::Local(held) => held,
                    _ => Vec::new(),
                };
                txn.held_bytes = 0;
                self.open(Target::Slot(slot));
                self.send_opening(w, held);
                self.send_held(w, request.into_raw(), Hold::On, Expect::Reply);
            }
        }
    }

    /// A keyless command inside `MULTI`: on the held connection, or held here until the
    /// transaction's slot is known.
    fn queue_keyless(&mut self, w: &mut Worker, request: Request) {
        let config = &self.shared.config;
        let (max_count, max_bytes) = (config.max_pipeline, config.reply_window);
        let Some(txn) = self.txn.as_mut() else {
            return;
        };
        if let Some(why) = txn.broken_now() {
            let text = aborted(why);
            return self.refuse_in_multi(&text);
        }
        if txn.held {
            return self.send_held(w, request.into_raw(), Hold::On, Expect::Reply);
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
        txn.aborted = false;
        txn.held_bytes = 0;
        match (std::mem::take(&mut txn.multi), txn.held) {
            (Multi::Sent, _) if failed => {
                self.release(w, Bytes::from_static(DISCARD), Expect::ExecAbort);
            }
            (Multi::Sent, _) => self.release(w, request.into_raw(), Expect::Exec),
            // Keys watched, MULTI not sent (the transaction broke first).
            (_, true) => {
                self.release(w, Bytes::from_static(UNWATCH), Expect::ExecAbort);
            }
            (_, false) if failed => self.push_error(EXECABORT),
            (Multi::Local(held), false) if !held.is_empty() => {
                // No key at all: any master runs it.
                self.open(Target::Any(self.id.0 as u32));
                self.send_opening(w, held);
                self.release(w, request.into_raw(), Expect::Exec);
            }
            (_, false) => self.push_local(|w| w.array(0)),
        }
    }

    /// `DISCARD` inside `MULTI` (it forgets the watched keys too).
    fn discard(&mut self, w: &mut Worker, request: Request) {
        let Some(txn) = self.txn.as_mut() else {
            return;
        };
        txn.aborted = false;
        txn.held_bytes = 0;
        match (std::mem::take(&mut txn.multi), txn.held) {
            (Multi::Sent, _) => self.release(w, request.into_raw(), Expect::Forget),
            (_, true) => self.release(w, Bytes::from_static(UNWATCH), Expect::Forget),
            (_, false) => self.push_local(|w| w.ok()),
        }
    }

    /// `RESET`: end what the held connection has of the client (`MULTI`, watched keys).
    fn release_for_reset(&mut self, w: &mut Worker) {
        let Some(txn) = self.txn.as_mut() else {
            return;
        };
        if txn.held {
            let end = if matches!(txn.multi, Multi::Sent) {
                DISCARD
            } else {
                UNWATCH
            };
            self.release(w, Bytes::from_static(end), Expect::Absorb);
        }
    }

    /// A command inside `MULTI` refused here: its error, and `EXEC` will abort.
    fn refuse_in_multi(&mut self, text: &str) {
        if let Some(txn) = self.txn.as_mut() {
            txn.aborted = true;
        }
        self.push_error(text);
    }

    /// A connection is to be opened to `target`'s node for the transaction.
    fn open(&mut self, target: Target) {
        let Some(txn) = self.txn.as_mut() else {
            return;
        };
        txn.slot = match target {
            Target::Slot(slot) => Some(slot),
            _ => None,
        };
        txn.held = true;
        txn.pin = txn.pin.wrapping_add(1);
        txn.target = Some(target);
    }

    /// `MULTI` and the commands held since, opening the held connection; the client had
    /// its replies from here.
    fn send_opening(&mut self, w: &mut Worker, held: Vec<Bytes>) {
        self.send_held(w, Bytes::from_static(MULTI), Hold::Open, Expect::Absorb);
        for bytes in held {
            self.send_held(w, bytes, Hold::On, Expect::Absorb);
        }
    }

    /// The last request on the held connection: nothing of the client is left there
    /// after it.
    fn release(&mut self, w: &mut Worker, bytes: Bytes, expect: Expect) {
        self.send_held(w, bytes, Hold::Release, expect);
        if let Some(txn) = self.txn.as_mut() {
            txn.held = false;
            txn.slot = None;
        }
    }

    /// Send a request of the transaction, in its place among the client's requests.
    fn send_held(&mut self, w: &mut Worker, bytes: Bytes, hold: Hold, expect: Expect) {
        let seq = self.reserve();
        let client = self.id.0 as u32;
        let target = self
            .txn
            .as_ref()
            .and_then(|t| t.target)
            .unwrap_or(Target::Any(client));
        let place = Place {
            session: self.key,
            client: self.id.0,
            seq,
            part: Place::WHOLE,
        };
        let mut req = BackendRequest::new(bytes, target, self.proto, client, ReplyTo::new(place));
        req.pinned = true;
        req.hold = hold;
        if let Some(txn) = self.txn.as_mut() {
            txn.expect.push_back((seq, expect, txn.pin));
        }
        self.submit(w, req);
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

/// What the client gets for the `reply` to a transaction request that stands for
/// `expect`, and why the transaction broke, if this says it did. `broken`: why it broke
/// before. Pure.
fn judge(expect: Expect, reply: &ReplyResult, broken: Option<&str>) -> (Verdict, Option<String>) {
    let moved = match reply {
        Ok(frame) => slot_moved(frame),
        Err(_) => None,
    };
    match expect {
        Expect::Absorb => {
            let breaks = match reply {
                Err(e) => Some(e.to_string()),
                Ok(_) => moved,
            };
            (Verdict::Nothing, breaks)
        }
        Expect::Reply => match (reply, moved) {
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
}
