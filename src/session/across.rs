//! List commands over keys of several slots, which Redis Cluster refuses (`CROSSSLOT`)
//! and job queues send all the same: `LMOVE`/`RPOPLPUSH` and their blocking forms
//! `BLMOVE`/`BRPOPLPUSH` (RQ's worker takes each job with `BLMOVE queue
//! queue:intermediate`), and `BLPOP`/`BRPOP` over several lists (Celery's worker waits on
//! its queue and the queue's priority lists with one `BRPOP`).
//!
//! They run as a sequence of single-slot commands, one after the other, each on a
//! connection pinned to the client while it runs (so, as for any blocking command,
//! nothing else of the client's runs meanwhile):
//! - A move pops the element from the source (`LPOP`/`RPOP`, or `BLPOP`/`BRPOP` with the
//!   client's timeout), then pushes it onto the destination (`LPUSH`/`RPUSH`), and only
//!   then answers the element. If the push fails (a wrong type, a node failing), the
//!   element is put back where it was popped and the client gets the push's error; if
//!   even that fails, the error says the element is lost. What is not kept is
//!   atomicity: between the pop and the push the element is in neither list (other
//!   clients see it in neither, and it is lost if slotgate dies then).
//! - A pop over several slots tries the slots in the order of their first key, blocking
//!   on one slot at a time: 1 ms on each in the first round (so a list that has elements
//!   is served in key order, as Redis does), then [`SLICE`] each, round after round,
//!   until an element comes or the client's timeout is spent. Nothing is popped that the
//!   client does not get; an element pushed while slotgate waits on another slot is
//!   seen at most one round later.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::Session;
use crate::backend::{BackendRequest, Place, ReplyDeadline, ReplyResult, ReplyTo, Target};
use crate::clients::Unblock;
use crate::command::blocking::{block_for, BlockFor};
use crate::dispatch::Worker;
use crate::protocol::reply::{encode_command, ReplyWriter};
use crate::protocol::scan::{parse_int, Request};
use crate::slot::Slot;

/// The `part` of the places of an across-slots command's steps (a split request's parts
/// are numbered from 0 and never get this far: there are 16384 slots).
pub(super) const ACROSS: u16 = u16::MAX - 1;

/// How long a pop over several slots blocks on one slot before it tries the next, after
/// the first round: an element pushed while slotgate waits elsewhere waits at most
/// this long per other slot.
pub const SLICE: Duration = Duration::from_millis(100);

/// The first round's wait on each slot: long enough for the node to answer from a
/// list that has elements, short enough to go through every slot at once.
const FIRST_ROUND: Duration = Duration::from_millis(1);

/// One of the client's across-slots commands, from its request until its reply.
pub(super) struct Across {
    /// The place of the client's reply (the steps' places are this with part
    /// [`ACROSS`]).
    visible: u64,
    op: Op,
    /// `CLIENT UNBLOCK` chose the client: a pop ends with the step under way.
    unblocked: Option<Unblock>,
}

/// Which end of a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Left,
    Right,
}

#[derive(Debug, PartialEq, Eq)]
enum Op {
    /// `LMOVE`, `BLMOVE`, `RPOPLPUSH`, `BRPOPLPUSH`.
    Move {
        src: Bytes,
        dst: Bytes,
        from: End,
        to: End,
        /// The blocking forms' wait (`None`: `LMOVE`, `RPOPLPUSH`).
        wait: Option<(Bytes, BlockFor)>,
        step: MoveStep,
    },
    /// `BLPOP`, `BRPOP` over keys of several slots.
    Pop {
        /// The keys of each slot, in the order of each slot's first key.
        groups: Vec<(Slot, Vec<Bytes>)>,
        from: End,
        /// When the client's timeout is spent (`None`: never).
        deadline: Option<Instant>,
        /// The group the step on its way waits on, and how many rounds went before.
        at: usize,
        round: u32,
    },
}

#[derive(Debug, PartialEq, Eq)]
enum MoveStep {
    Pop,
    /// The pop's reply, and the element, being pushed onto the destination.
    Push {
        popped: Bytes,
        element: Bytes,
    },
    /// Putting the element back on the source after the push failed (`why`: the push's
    /// reply, an error).
    PutBack {
        element: Bytes,
        why: ReplyResult,
    },
}

/// What a step's reply leads to.
enum Next {
    /// The next step: its command and target, with its deadline.
    Step(Bytes, Slot, ReplyDeadline),
    /// The client's reply.
    Done(ReplyResult),
    /// An error made here for the client.
    Fail(String),
}

impl Session {
    /// A request planned [`Plan::AcrossSlots`](crate::dispatch::plan::Plan::AcrossSlots):
    /// run here, or given back when it is not in a form served across slots (a bad
    /// `LEFT`/`RIGHT` or timeout: it is answered `CROSSSLOT`, as Redis Cluster would).
    pub(super) fn across_slots(&mut self, w: &mut Worker, request: Request) -> Option<Request> {
        let Some(op) = across_op(&request, Instant::now()) else {
            return Some(request);
        };
        let visible = self.reserve();
        let (bytes, slot, deadline) = match &op {
            Op::Move {
                src, from, wait, ..
            } => first_pop(src, *from, wait.as_ref()),
            Op::Pop {
                groups,
                from,
                deadline,
                ..
            } => match pop_step(groups, *from, 0, 0, *deadline, Instant::now()) {
                Some(step) => step,
                None => return Some(request),
            },
        };
        if let Op::Move { dst, .. } = &op {
            // Where `WAIT` counts from: the push comes last.
            self.last_write = Slot::of_key(dst).get();
        }
        self.across.push(Across {
            visible,
            op,
            unblocked: None,
        });
        let req = self.across_request(visible, bytes, slot, deadline);
        self.submit(w, req);
        None
    }

    /// The reply to a step of the across-slots command at place `visible`: the next step
    /// goes first among the client's waiting requests, or the client's reply fills its
    /// place. True when the front place is ready.
    #[cold]
    pub(super) fn fill_across(&mut self, place: Place, reply: ReplyResult) -> bool {
        let Some(i) = self.across.iter().position(|a| a.visible == place.seq) else {
            return false;
        };
        self.sent = self.sent.saturating_sub(1);
        let visible = place.seq;
        let popping = match &self.across[i].op {
            Op::Pop { groups, at, .. } => Some(groups[*at].0),
            Op::Move { .. } => None,
        };
        let next = match self.across[i].unblocked {
            Some(how) if popping.is_some() && matches!(&reply, Ok(frame) if is_nil(frame)) => {
                // Unblocked: the step's nil (the node's, or its own short wait's) ends
                // the pop, as the client's timeout would.
                match (how, reply) {
                    (Unblock::Timeout, reply) => Next::Done(reply),
                    (Unblock::Error, _) => Next::Fail(super::unblock::UNBLOCKED.to_string()),
                }
            }
            _ => advance(&mut self.across[i].op, reply, Instant::now()),
        };
        if let (Some(slot), Next::Done(Ok(frame))) = (popping, &next) {
            if !is_nil(frame) {
                self.last_write = slot.get();
            }
        }
        let reply = match next {
            Next::Step(bytes, slot, deadline) => {
                let req = self.across_request(visible, bytes, slot, deadline);
                self.waiting_bytes += req.bytes.len();
                self.waiting.push_front(req);
                return false;
            }
            Next::Done(reply) => reply,
            Next::Fail(text) => {
                crate::admin::Metrics::inc(&crate::admin::METRICS.proxy_errors);
                let mut out = BytesMut::new();
                ReplyWriter {
                    out: &mut out,
                    proto: self.proto,
                }
                .error(&text);
                Ok(out.freeze())
            }
        };
        self.across.swap_remove(i);
        self.fill_place(visible, reply)
    }

    /// `CLIENT UNBLOCK` of the client, blocked in the across-slots command at place `seq`
    /// (if that is one): a pop ends with the step under way.
    pub(super) fn unblock_across(&mut self, seq: u64, how: Unblock) {
        if let Some(across) = self.across.iter_mut().find(|a| a.visible == seq) {
            across.unblocked = Some(how);
        }
    }

    /// A step: on a connection pinned to the client while it runs, at `slot`'s master.
    fn across_request(
        &self,
        visible: u64,
        bytes: Bytes,
        slot: Slot,
        deadline: ReplyDeadline,
    ) -> BackendRequest {
        let place = Place {
            session: self.key,
            client: self.id.0,
            seq: visible,
            part: ACROSS,
        };
        let client = self.id.0 as u32;
        let target = Target::Slot(slot);
        let mut req = BackendRequest::new(bytes, target, self.proto, client, ReplyTo::new(place));
        req.pinned = true;
        req.deadline = deadline;
        req
    }
}

/// The across-slots command `request` is (its keys known to be in several slots), or
/// `None` for any other. Pure but for `now` (a pop's deadline).
fn across_op(request: &Request, now: Instant) -> Option<Op> {
    let name = request.arg(0).to_ascii_lowercase();
    let argc = request.argc();
    let end = |i: usize| -> Option<End> {
        let arg = request.arg(i);
        if arg.eq_ignore_ascii_case(b"LEFT") {
            Some(End::Left)
        } else if arg.eq_ignore_ascii_case(b"RIGHT") {
            Some(End::Right)
        } else {
            None
        }
    };
    let bytes = |i: usize| Bytes::copy_from_slice(request.arg(i));
    let wait = |i: usize, name: &str| Some((bytes(i), block_for(name, request)));
    let (src, dst, from, to, wait) = match (name.as_slice(), argc) {
        (b"lmove", 5) => (1, 2, end(3)?, end(4)?, None),
        (b"rpoplpush", 3) => (1, 2, End::Right, End::Left, None),
        (b"blmove", 6) => (1, 2, end(3)?, end(4)?, wait(5, "blmove")),
        (b"brpoplpush", 4) => (1, 2, End::Right, End::Left, wait(3, "brpoplpush")),
        (b"blpop" | b"brpop", 3..) => {
            let from = if name == b"blpop" {
                End::Left
            } else {
                End::Right
            };
            let deadline = match block_for("blpop", request) {
                BlockFor::For(wait) => Some(now + wait),
                BlockFor::Forever | BlockFor::Invalid => None,
            };
            let mut groups: Vec<(Slot, Vec<Bytes>)> = Vec::new();
            for i in 1..argc - 1 {
                let slot = Slot::of_key(request.arg(i));
                match groups.iter_mut().find(|g| g.0 == slot) {
                    Some(group) => group.1.push(bytes(i)),
                    None => groups.push((slot, vec![bytes(i)])),
                }
            }
            // A timeout the nodes refuse: `CROSSSLOT` first, as Redis Cluster checks.
            if groups.len() < 2 || matches!(block_for("blpop", request), BlockFor::Invalid) {
                return None;
            }
            return Some(Op::Pop {
                groups,
                from,
                deadline,
                at: 0,
                round: 0,
            });
        }
        _ => return None,
    };
    Some(Op::Move {
        src: bytes(src),
        dst: bytes(dst),
        from,
        to,
        wait,
        step: MoveStep::Pop,
    })
}

/// A move's first step: the pop from `src`, blocking with the client's timeout when
/// the command is a blocking one.
fn first_pop(
    src: &Bytes,
    from: End,
    wait: Option<&(Bytes, BlockFor)>,
) -> (Bytes, Slot, ReplyDeadline) {
    let slot = Slot::of_key(src);
    match wait {
        None => {
            let name: &[u8] = if from == End::Left { b"LPOP" } else { b"RPOP" };
            (command(&[name, src]), slot, ReplyDeadline::Backend)
        }
        Some((timeout, wait)) => {
            let name: &[u8] = if from == End::Left {
                b"BLPOP"
            } else {
                b"BRPOP"
            };
            let deadline = match wait {
                BlockFor::Forever => ReplyDeadline::Never,
                BlockFor::For(wait) => ReplyDeadline::Extra(*wait),
                BlockFor::Invalid => ReplyDeadline::Backend,
            };
            (command(&[name, src, timeout]), slot, deadline)
        }
    }
}

/// The next step of a pop over several slots: wait on group `at` in round `round`, for
/// at most what is left until `deadline`. `None` when the client's timeout is spent.
fn pop_step(
    groups: &[(Slot, Vec<Bytes>)],
    from: End,
    at: usize,
    round: u32,
    deadline: Option<Instant>,
    now: Instant,
) -> Option<(Bytes, Slot, ReplyDeadline)> {
    let slice = if round == 0 { FIRST_ROUND } else { SLICE };
    let wait = match deadline {
        None => slice,
        Some(deadline) => {
            let left = deadline.checked_duration_since(now)?;
            if left < FIRST_ROUND {
                return None;
            }
            left.min(slice)
        }
    };
    let (slot, keys) = &groups[at];
    let name: &[u8] = if from == End::Left {
        b"BLPOP"
    } else {
        b"BRPOP"
    };
    // Whole milliseconds, at least one: a timeout of 0 would wait forever.
    let timeout = format!("{:.3}", wait.as_millis().max(1) as f64 / 1000.0);
    let mut args: Vec<&[u8]> = Vec::with_capacity(keys.len() + 2);
    args.push(name);
    args.extend(keys.iter().map(|k| &k[..]));
    args.push(timeout.as_bytes());
    Some((command(&args), *slot, ReplyDeadline::Extra(wait)))
}

/// What the reply to the step on its way leads to, `op` moved on to it. Pure but for
/// `now`.
fn advance(op: &mut Op, reply: ReplyResult, now: Instant) -> Next {
    match op {
        Op::Move {
            src,
            dst,
            from,
            to,
            wait,
            step,
        } => {
            let current = std::mem::replace(step, MoveStep::Pop);
            match current {
                MoveStep::Pop => {
                    let frame = match reply {
                        Ok(frame) => frame,
                        Err(e) => return Next::Done(Err(e)),
                    };
                    let element = match wait {
                        None => bulk(&frame),
                        Some(_) => second_of_two(&frame),
                    };
                    // Nil (nothing to move, or the timeout) or the node's error: as it is.
                    let Some(element) = element else {
                        return Next::Done(Ok(frame));
                    };
                    let name: &[u8] = if *to == End::Left { b"LPUSH" } else { b"RPUSH" };
                    let push = command(&[name, dst, &element]);
                    *step = MoveStep::Push {
                        popped: frame,
                        element,
                    };
                    Next::Step(push, Slot::of_key(dst), ReplyDeadline::Backend)
                }
                MoveStep::Push { popped, element } => {
                    let pushed = matches!(&reply, Ok(frame) if frame.first() == Some(&b':'));
                    if pushed {
                        return match wait {
                            // LMOVE answers the element: the pop's own reply.
                            None => Next::Done(Ok(popped)),
                            Some(_) => Next::Done(Ok(bulk_reply(&element))),
                        };
                    }
                    // Back where it was popped: the front for a pop from the left.
                    let name: &[u8] = if *from == End::Left {
                        b"LPUSH"
                    } else {
                        b"RPUSH"
                    };
                    let back = command(&[name, src, &element]);
                    *step = MoveStep::PutBack {
                        element,
                        why: reply,
                    };
                    Next::Step(back, Slot::of_key(src), ReplyDeadline::Backend)
                }
                MoveStep::PutBack { element, why } => {
                    let back = matches!(&reply, Ok(frame) if frame.first() == Some(&b':'));
                    match (back, why) {
                        // The push's own error, as LMOVE gives it (WRONGTYPE).
                        (true, Ok(frame)) => Next::Done(Ok(frame)),
                        (true, Err(e)) => Next::Fail(format!(
                            "ERR slotgate: moving across slots: the push to '{}' failed: {e}; the element was put back on '{}'",
                            text(dst),
                            text(src)
                        )),
                        (false, why) => Next::Fail(format!(
                            "ERR slotgate: moving across slots: the push to '{}' failed ({}) and putting the element back on '{}' failed ({}): the element ({} bytes) is lost",
                            text(dst),
                            describe(&why),
                            text(src),
                            describe(&reply),
                            element.len()
                        )),
                    }
                }
            }
        }
        Op::Pop {
            groups,
            from,
            deadline,
            at,
            round,
        } => {
            let frame = match reply {
                Ok(frame) => frame,
                Err(e) => return Next::Done(Err(e)),
            };
            // An element (`[key, element]`) or the node's error: the client's reply.
            if !is_nil(&frame) {
                return Next::Done(Ok(frame));
            }
            *at += 1;
            if *at == groups.len() {
                *at = 0;
                *round += 1;
            }
            match pop_step(groups, *from, *at, *round, *deadline, now) {
                Some((bytes, slot, wait)) => Next::Step(bytes, slot, wait),
                // The timeout is spent: the last nil is the client's.
                None => Next::Done(Ok(frame)),
            }
        }
    }
}

fn command(args: &[&[u8]]) -> Bytes {
    encode_command(args).freeze()
}

/// Nil in RESP2 (`$-1`, `*-1`) or RESP3 (`_`).
fn is_nil(frame: &[u8]) -> bool {
    frame.starts_with(b"_") || frame.starts_with(b"*-1") || frame.starts_with(b"$-1")
}

/// The payload of a bulk string reply (`$n\r\n...\r\n`); `None` for anything else.
fn bulk(frame: &[u8]) -> Option<Bytes> {
    bulk_at(frame).map(|(payload, _)| Bytes::copy_from_slice(payload))
}

/// A bulk string at the start of `frame`: its payload and the bytes after it.
fn bulk_at(frame: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = frame.strip_prefix(b"$")?;
    let cr = rest.iter().position(|&b| b == b'\r')?;
    let len = usize::try_from(parse_int(&rest[..cr])?).ok()?;
    let body = rest.get(cr + 2..)?;
    let payload = body.get(..len)?;
    let after = body.get(len..)?.strip_prefix(b"\r\n")?;
    Some((payload, after))
}

/// The second of a two-element array of bulk strings (`BLPOP`'s `[key, element]`).
fn second_of_two(frame: &[u8]) -> Option<Bytes> {
    let rest = frame.strip_prefix(b"*2\r\n")?;
    let (_, rest) = bulk_at(rest)?;
    let (element, _) = bulk_at(rest)?;
    Some(Bytes::copy_from_slice(element))
}

/// `element` as a bulk string reply (the same in RESP2 and RESP3).
fn bulk_reply(element: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(element.len() + 16);
    ReplyWriter {
        out: &mut out,
        proto: crate::protocol::reply::Proto::Resp2,
    }
    .bulk(element);
    out.freeze()
}

fn text(key: &[u8]) -> String {
    String::from_utf8_lossy(key.get(..100).unwrap_or(key)).into_owned()
}

/// A reply or failure, for an error text.
fn describe(reply: &ReplyResult) -> String {
    match reply {
        Ok(frame) => {
            let line = frame.split(|&b| b == b'\r').next().unwrap_or_default();
            String::from_utf8_lossy(line.get(..120).unwrap_or(line)).into_owned()
        }
        Err(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(args: &[&str]) -> Request {
        Request::from_args(args)
    }

    fn ok(frame: &'static [u8]) -> ReplyResult {
        Ok(Bytes::from_static(frame))
    }

    fn step_text(next: &Next) -> String {
        match next {
            Next::Step(bytes, _, _) => String::from_utf8_lossy(bytes).into_owned(),
            Next::Done(r) => format!("done {:?}", r),
            Next::Fail(t) => format!("fail {t}"),
        }
    }

    #[test]
    fn only_the_list_commands_across_slots_are_served_here() {
        let now = Instant::now();
        assert!(across_op(&req(&["LMOVE", "a", "b", "LEFT", "RIGHT"]), now).is_some());
        assert!(across_op(&req(&["LMOVE", "a", "b", "UP", "RIGHT"]), now).is_none());
        assert!(across_op(&req(&["RPOPLPUSH", "a", "b"]), now).is_some());
        assert!(across_op(&req(&["BLMOVE", "a", "b", "RIGHT", "LEFT", "1"]), now).is_some());
        assert!(across_op(&req(&["BRPOPLPUSH", "a", "b", "0"]), now).is_some());
        assert!(across_op(&req(&["SMOVE", "a", "b", "m"]), now).is_none());
        // Keys of one slot are the node's business.
        assert!(across_op(&req(&["BLPOP", "{x}a", "{x}b", "1"]), now).is_none());
        let Some(Op::Pop {
            groups,
            from,
            deadline,
            ..
        }) = across_op(&req(&["BRPOP", "a", "{a}x", "b", "2"]), now)
        else {
            panic!("a pop over two slots");
        };
        assert_eq!(from, End::Right);
        assert_eq!(deadline, Some(now + Duration::from_secs(2)));
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].1, [Bytes::from("a"), Bytes::from("{a}x")]);
        assert_eq!(groups[1].1, [Bytes::from("b")]);
    }

    #[test]
    fn a_move_pops_pushes_and_answers_the_element() {
        let now = Instant::now();
        let mut op = across_op(&req(&["BLMOVE", "q", "q:i", "LEFT", "RIGHT", "5"]), now).unwrap();
        let Op::Move {
            src, from, wait, ..
        } = &op
        else {
            panic!()
        };
        let (first, slot, deadline) = first_pop(src, *from, wait.as_ref());
        assert_eq!(&first[..], b"*3\r\n$5\r\nBLPOP\r\n$1\r\nq\r\n$1\r\n5\r\n");
        assert_eq!(slot, Slot::of_key(b"q"));
        assert_eq!(deadline, ReplyDeadline::Extra(Duration::from_secs(5)));
        let next = advance(&mut op, ok(b"*2\r\n$1\r\nq\r\n$3\r\njob\r\n"), now);
        assert_eq!(
            step_text(&next),
            "*3\r\n$5\r\nRPUSH\r\n$3\r\nq:i\r\n$3\r\njob\r\n"
        );
        let next = advance(&mut op, ok(b":1\r\n"), now);
        assert_eq!(step_text(&next), format!("done {:?}", ok(b"$3\r\njob\r\n")));
        // The timeout: the pop's nil, as it is (RESP2 and RESP3).
        for nil in [&b"*-1\r\n"[..], b"_\r\n"] {
            let mut op =
                across_op(&req(&["BLMOVE", "q", "q:i", "LEFT", "RIGHT", "5"]), now).unwrap();
            let next = advance(&mut op, Ok(Bytes::copy_from_slice(nil)), now);
            assert_eq!(
                step_text(&next),
                format!("done {:?}", Ok::<_, ()>(Bytes::copy_from_slice(nil)))
            );
        }
        // LMOVE answers the pop's own reply.
        let mut op = across_op(&req(&["RPOPLPUSH", "a", "b"]), now).unwrap();
        assert_eq!(
            step_text(&advance(&mut op, ok(b"$1\r\nx\r\n"), now)),
            "*3\r\n$5\r\nLPUSH\r\n$1\r\nb\r\n$1\r\nx\r\n"
        );
        assert_eq!(
            step_text(&advance(&mut op, ok(b":3\r\n"), now)),
            format!("done {:?}", ok(b"$1\r\nx\r\n"))
        );
    }

    #[test]
    fn a_failed_push_puts_the_element_back_where_it_was() {
        let now = Instant::now();
        let mut op = across_op(&req(&["LMOVE", "a", "b", "LEFT", "LEFT"]), now).unwrap();
        advance(&mut op, ok(b"$1\r\nx\r\n"), now);
        let wrongtype = b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
        let next = advance(&mut op, ok(wrongtype), now);
        assert_eq!(
            step_text(&next),
            "*3\r\n$5\r\nLPUSH\r\n$1\r\na\r\n$1\r\nx\r\n"
        );
        // Put back: the client gets the push's error, as Redis gives it.
        let next = advance(&mut op, ok(b":1\r\n"), now);
        assert_eq!(step_text(&next), format!("done {:?}", ok(wrongtype)));
        // Not put back either: the error says the element is lost.
        let mut op = across_op(&req(&["LMOVE", "a", "b", "RIGHT", "LEFT"]), now).unwrap();
        advance(&mut op, ok(b"$1\r\nx\r\n"), now);
        let next = advance(&mut op, ok(wrongtype), now);
        assert!(step_text(&next).starts_with("*3\r\n$5\r\nRPUSH\r\n$1\r\na"));
        let next = advance(&mut op, ok(b"-ERR gone\r\n"), now);
        assert!(step_text(&next).contains("is lost"), "{}", step_text(&next));
    }

    #[test]
    fn a_pop_over_several_slots_goes_round_until_an_element_or_its_timeout() {
        let start = Instant::now();
        let mut op = across_op(&req(&["BRPOP", "a", "b", "c", "1"]), start).unwrap();
        let Op::Pop {
            groups,
            from,
            deadline,
            ..
        } = &op
        else {
            panic!()
        };
        // The first round waits 1 ms on each slot, in the keys' order.
        let (first, slot, _) = pop_step(groups, *from, 0, 0, *deadline, start).unwrap();
        assert_eq!(
            &first[..],
            b"*3\r\n$5\r\nBRPOP\r\n$1\r\na\r\n$5\r\n0.001\r\n"
        );
        assert_eq!(slot, Slot::of_key(b"a"));
        let next = advance(&mut op, ok(b"*-1\r\n"), start);
        assert_eq!(
            step_text(&next),
            "*3\r\n$5\r\nBRPOP\r\n$1\r\nb\r\n$5\r\n0.001\r\n"
        );
        advance(&mut op, ok(b"*-1\r\n"), start);
        // Then a slice each.
        let next = advance(&mut op, ok(b"_\r\n"), start);
        assert_eq!(
            step_text(&next),
            "*3\r\n$5\r\nBRPOP\r\n$1\r\na\r\n$5\r\n0.100\r\n"
        );
        // An element ends it.
        let element = b"*2\r\n$1\r\nb\r\n$1\r\nx\r\n";
        let next = advance(&mut op, ok(element), start);
        assert_eq!(step_text(&next), format!("done {:?}", ok(element)));
        // The timeout spent: the last nil.
        let mut op = across_op(&req(&["BLPOP", "a", "b", "1"]), start).unwrap();
        let later = start + Duration::from_millis(999_500);
        assert_eq!(
            step_text(&advance(&mut op, ok(b"*-1\r\n"), later)),
            format!("done {:?}", ok(b"*-1\r\n"))
        );
        // Forever: round after round.
        let mut op = across_op(&req(&["BLPOP", "a", "b", "0"]), start).unwrap();
        let much_later = start + Duration::from_secs(3600);
        assert!(step_text(&advance(&mut op, ok(b"*-1\r\n"), much_later)).contains("BLPOP"));
    }

    #[test]
    fn replies_are_read_exactly() {
        assert_eq!(bulk(b"$3\r\nabc\r\n"), Some(Bytes::from("abc")));
        assert_eq!(bulk(b"$-1\r\n"), None);
        assert_eq!(bulk(b"-ERR x\r\n"), None);
        assert_eq!(
            second_of_two(b"*2\r\n$1\r\nk\r\n$0\r\n\r\n"),
            Some(Bytes::new())
        );
        assert_eq!(second_of_two(b"*-1\r\n"), None);
        assert!(is_nil(b"_\r\n") && is_nil(b"*-1\r\n") && is_nil(b"$-1\r\n"));
        assert!(!is_nil(b"*2\r\n"));
    }
}
