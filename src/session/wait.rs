//! `WAIT numreplicas timeout` and `WAITAOF numlocal numreplicas timeout`.
//!
//! A node answers `WAIT` from the replication offset of the connection it arrives on:
//! the offset after that connection's last write. A client's writes go over the shared
//! connections, so `WAIT` there would count from other clients' writes, and would hold
//! up every client behind it while it blocks. Instead the session remembers the slot of
//! the client's last write (`Session::last_write`: a `u16` stored per write request,
//! nothing else), and `WAIT` goes to that slot's master on a connection pinned to the
//! client, right behind a write there that replicates and changes nothing ([`noop_write`]:
//! a script that sets and deletes a scratch key of that slot, `slotgate:wait:{N}`). That
//! write comes after the client's own (the `WAIT` goes once every earlier request is
//! answered), so the connection's offset is past them, and the node's answer counts the
//! replicas that have them. The reply is the node's, as it gives it (`WAITAOF` on Redis
//! 7.0: its unknown-command error; with `appendonly no`: its error).
//!
//! Before any write, `WAIT` goes as it is to any master on a connection of its own,
//! which answers as a fresh connection does (the replicas that acknowledged offset 0:
//! all of them). Only the last write's master is asked: a client that wrote to several
//! masters learns about the last one. `WAIT` is bounded by its own timeout (0 waits
//! forever), and a client that leaves while waiting has its connection closed, as for
//! any blocking command. Inside `MULTI` it is queued like any keyless command and the
//! node answers at once, as Redis does.

use std::sync::OnceLock;

use bytes::Bytes;

use super::Session;
use crate::admin::{Metrics, METRICS};
use crate::backend::{BackendRequest, Hold, Place, ReplyDeadline, ReplyResult, ReplyTo, Target};
use crate::command::blocking::BlockFor;
use crate::dispatch::Worker;
use crate::protocol::reply::{encode_command, ReplyWriter};
use crate::protocol::scan::Request;
use crate::slot::{crc16, Slot, SLOT_COUNT};

/// The `part` of a `WAIT`'s place, and of the write it counts from ([`PRELUDE`]). A
/// split request's parts are numbered from 0 and never get this far.
pub(super) const WAIT: u16 = u16::MAX - 2;
pub(super) const PRELUDE: u16 = u16::MAX - 3;

/// `Session::last_write` before the client's first write.
pub(super) const NO_WRITE: u16 = u16::MAX;

/// Sets and deletes its key in one step: replicated (as `MULTI`, `SET`, `DEL`,
/// `EXEC`: the replication offset moves), with nothing for anyone to see.
const NOOP_SCRIPT: &[u8] = b"redis.call('SET',KEYS[1],'1') redis.call('DEL',KEYS[1]) return 1";

impl Session {
    /// `WAIT`/`WAITAOF` (`name`), planned [`Plan::Wait`](crate::dispatch::plan::Plan::Wait).
    pub(super) fn wait(&mut self, w: &mut Worker, request: Request, name: &str, wait: BlockFor) {
        let deadline = match wait {
            BlockFor::Forever => ReplyDeadline::Never,
            BlockFor::For(wait) => ReplyDeadline::Extra(wait),
            BlockFor::Invalid => ReplyDeadline::Backend,
        };
        let Some(slot) = Slot::new(self.last_write) else {
            // Nothing written yet: what a fresh connection answers.
            let target = Target::Any(self.id.0 as u32);
            return self.forward_pinned(w, request, target, deadline);
        };
        if self.txn.is_some() {
            // Keys are watched: the connections held for them are per slot, and this
            // would take the one of the last write's slot.
            let text = format!(
                "ERR slotgate: {} while keys are watched is not supported (UNWATCH first)",
                name.to_uppercase()
            );
            return self.push_error(&text);
        }
        let place = Place {
            session: self.key,
            client: self.id.0,
            seq: self.reserve(),
            part: WAIT,
        };
        let mut req = BackendRequest::new(
            request.into_raw(),
            Target::Slot(slot),
            self.proto,
            self.id.0 as u32,
            ReplyTo::new(place),
        );
        req.pinned = true;
        req.deadline = deadline;
        self.submit(w, req);
    }

    /// `req`, a `WAIT` whose turn came (`send_now`, which counted it sent): the write
    /// to count from opens a connection held for the client at its slot's master, the
    /// `WAIT` follows it there and lets the connection go (both in this turn's write).
    #[cold]
    pub(super) fn send_wait(&mut self, w: &mut Worker, mut req: BackendRequest) {
        let Target::Slot(slot) = req.target else {
            return w.dispatch(req);
        };
        let place = Place {
            part: PRELUDE,
            ..req.reply.place()
        };
        let mut prelude = BackendRequest::new(
            noop_write(slot),
            req.target,
            self.proto,
            req.conn_hint,
            ReplyTo::new(place),
        );
        prelude.pinned = true;
        prelude.hold = Hold::Open;
        req.hold = Hold::Release;
        if self.blocked_at.is_none() {
            Metrics::inc(&METRICS.blocked_clients);
            self.note_blocked(true);
        }
        self.blocked_at = Some(place.seq);
        w.dispatch_held(prelude);
        w.dispatch_held(req);
    }

    /// The reply to a `WAIT` ([`WAIT`]) or to the write before it ([`PRELUDE`]): the
    /// `WAIT`'s is the client's; the write's only when it failed (then the client gets
    /// why, and the `WAIT`'s reply, which counts from nothing, is dropped). True when
    /// the front place is ready.
    #[cold]
    pub(super) fn fill_wait(&mut self, place: Place, reply: ReplyResult) -> bool {
        let Some(index) = place.seq.checked_sub(self.front_seq) else {
            return false;
        };
        if !matches!(self.places.get(index as usize), Some(None)) {
            return false;
        }
        let reply = if place.part == PRELUDE {
            match &reply {
                Ok(frame) if !matches!(frame.first(), Some(b'-' | b'!')) => return false,
                Ok(frame) => {
                    let slot = Slot::new(self.last_write).map_or(0, Slot::get);
                    let text = format!(
                        "ERR slotgate: WAIT counts from a write at the master of slot {slot} (that of the last write), and it failed: {}",
                        first_line(frame)
                    );
                    Metrics::inc(&METRICS.proxy_errors);
                    let mut out = bytes::BytesMut::new();
                    ReplyWriter {
                        out: &mut out,
                        proto: self.proto,
                    }
                    .error(&text);
                    Ok(out.freeze())
                }
                Err(_) => reply,
            }
        } else {
            reply
        };
        self.sent = self.sent.saturating_sub(1);
        if let Ok(bytes) = &reply {
            self.expect(bytes.len());
        }
        self.fill_place(place.seq, reply)
    }
}

/// The request that writes at `slot`'s master and changes nothing ([`NOOP_SCRIPT`]).
fn noop_write(slot: Slot) -> Bytes {
    let mut key = b"slotgate:wait:{".to_vec();
    key.extend_from_slice(itoa::Buffer::new().format(tag_of(slot)).as_bytes());
    key.push(b'}');
    encode_command(&[b"EVAL", NOOP_SCRIPT, b"1", &key]).freeze()
}

/// A number whose decimal digits hash to `slot`: the hash tag of that slot's scratch
/// key. Found once per process for every slot (about 170,000 CRC16s of short numbers).
fn tag_of(slot: Slot) -> u32 {
    static TAGS: OnceLock<Box<[u32]>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        let mut tags = vec![u32::MAX; SLOT_COUNT];
        let mut left = SLOT_COUNT;
        let mut digits = itoa::Buffer::new();
        let mut n = 0u32;
        while left > 0 {
            let at = usize::from(crc16(digits.format(n).as_bytes())) % SLOT_COUNT;
            if tags[at] == u32::MAX {
                tags[at] = n;
                left -= 1;
            }
            n += 1;
        }
        tags.into_boxed_slice()
    });
    tags[slot.index()]
}

/// The first line of a reply, without its type byte, for an error text.
fn first_line(frame: &[u8]) -> String {
    let line = frame.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = line.get(1..).unwrap_or_default();
    String::from_utf8_lossy(line.get(..200).unwrap_or(line)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slot_has_a_scratch_key_of_its_own() {
        for n in 0..SLOT_COUNT as u16 {
            let slot = Slot::new(n).unwrap();
            let bytes = noop_write(slot);
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let key = text.lines().last().unwrap().to_string();
            assert!(key.starts_with("slotgate:wait:{"), "{text}");
            assert_eq!(Slot::of_key(key.as_bytes()), slot, "{key}");
        }
    }

    #[test]
    fn the_write_is_one_script_over_its_key() {
        let slot = Slot::of_key(b"foo");
        let text = String::from_utf8(noop_write(slot).to_vec()).unwrap();
        let tag = tag_of(slot);
        let key = format!("slotgate:wait:{{{tag}}}");
        assert_eq!(
            text,
            format!(
                "*4\r\n$4\r\nEVAL\r\n${}\r\n{}\r\n$1\r\n1\r\n${}\r\n{key}\r\n",
                NOOP_SCRIPT.len(),
                String::from_utf8_lossy(NOOP_SCRIPT),
                key.len()
            )
        );
        assert_eq!(
            first_line(b"-MOVED 1 127.0.0.1:7000\r\n"),
            "MOVED 1 127.0.0.1:7000"
        );
    }
}
