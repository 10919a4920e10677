//! One client connection, driven by its worker's event loop: read and frame requests,
//! route each, and write the replies back strictly in request order, one write per
//! turn of the loop for every reply that is ready.
//!
//! Memory a client can make slotgate hold is bounded (DESIGN.md, resource model):
//! - requests: reading pauses at `limits.max_pipeline` unanswered requests, or when
//!   1024 requests (or `limits.reply_window` bytes of them) wait to be sent;
//! - replies: a request goes to its node only while the client's replies held here plus
//!   those on their way (counted at the size its recent replies had) fit in
//!   `limits.reply_window`; later ones wait in [`Session::waiting`], in order. A client
//!   that stops reading therefore stops being served, holds about one window, and never
//!   has more than a window's worth of work queued at a node ahead of other clients;
//! - a client holding more than `limits.max_output_buffer` (besides the reply being
//!   written, which may be bigger) is closed with a log line.

mod access;
mod across;
mod clients;
mod cluster_face;
mod fan_out;
mod info;
mod local;
mod monitor;
mod pubsub;
mod reads;
mod transaction;
mod unblock;
mod wait;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::admin::{ErrorKind, Metrics, RequestClass, METRICS};
use crate::backend::{BackendRequest, Place, ReplyDeadline, ReplyResult, ReplyTo, Target};
use crate::command::blocking::BlockFor;
use crate::command::flags;
use crate::config::Config;
use crate::dispatch::merge::{merge, Merge};
use crate::dispatch::plan::{plan_with_flags, Plan, PlanError};
use crate::dispatch::Worker;
use crate::net::{read_some, write_all_now, write_chunks, ReadSome, Transport, Written};
use crate::protocol::reply::{Proto, ReplyWriter};
use crate::protocol::scan::{Request, RequestScanner};
use crate::shared::Shared;

pub use crate::clients::ClientId;

/// A client's read buffer grows by at least this much.
const READ_CHUNK: usize = 16 * 1024;

/// Requests waiting for room in the reply window at which reading pauses.
const WAITING_AT_MOST: usize = 1024;
/// Replies from this size on are written from where they are, not copied first.
const COPY_AT_MOST: usize = 16 * 1024;
/// The smallest reply size the flow control assumes (a `+OK` costs more than its 5
/// bytes in places and handles).
const MIN_REPLY_ESTIMATE: usize = 64;
/// A new client's replies are assumed to be this fraction of the window until some
/// arrive: the first pipeline may send 8 requests before sizes are known (4 MiB of
/// 1 MiB values with the default window). Smaller replies then open the window by a
/// sixteenth per reply: about 150 replies of a few bytes open it fully.
const FIRST_WINDOW_REQUESTS: usize = 8;

/// What [`Session::flush`] left behind.
#[derive(Debug, PartialEq, Eq)]
pub enum Flushed {
    /// Everything ready was written.
    Done,
    /// Some bytes wait for the socket to become writable.
    Blocked,
    /// The client is gone.
    Failed,
    /// The client holds more than `limits.max_output_buffer` (logged): close it.
    OverLimit,
}

/// How the replies of a request's parts become its reply.
enum Combine {
    /// A merge of the parts ([`merge`]).
    Merge(Merge),
    /// `INFO` of these sections, with the masters' figures from the parts.
    Info(Vec<String>),
}

impl From<Merge> for Combine {
    fn from(merge: Merge) -> Combine {
        Combine::Merge(merge)
    }
}

/// A request sent as several parts (split per slot, or to every node): their replies,
/// in part order, until the last is in and [`merge`] makes the request's one reply.
struct Gather {
    seq: u64,
    combine: Combine,
    parts: Vec<Option<ReplyResult>>,
    missing: usize,
    /// Bytes of the parts' replies held here.
    bytes: usize,
}

/// Per-client state. Buffers exist only while there is something in them, so an idle
/// client costs little memory.
pub struct Session {
    shared: Arc<Shared>,
    /// The configuration in force: its worker's, replaced by the worker after a reload
    /// ([`Session::reconfigure`]), so reading a limit costs what a plain field does.
    config: Arc<Config>,
    pub id: ClientId,
    /// The session's key in its worker's session table (names its reply places).
    key: usize,
    /// Its entry in the client registry, `CLIENT REPLY` and `MONITOR` state. Before
    /// `stream`: a closed client leaves the registry before its socket closes.
    client: clients::ClientState,
    pub stream: Transport,
    peer: SocketAddr,
    local_addr: SocketAddr,
    name: Option<Bytes>,
    lib_name: Option<Bytes>,
    lib_ver: Option<Bytes>,
    /// The client's protocol (RESP2 until `HELLO 3`): replies made here are written in
    /// it, and its requests go to connections of the same protocol.
    proto: Proto,
    scanner: RequestScanner,
    rbuf: BytesMut,
    /// One place per request in request order; `None` while the reply is on its way.
    places: VecDeque<Option<ReplyResult>>,
    /// Sequence number of the front place.
    front_seq: u64,
    /// Places still waiting for their reply.
    pending: usize,
    /// Sequence number of the last request of each read that still has replies
    /// unwritten, oldest first: the requests a client sent together.
    batch_ends: VecDeque<u64>,
    /// When the event loop first held back this session's ready replies, waiting for
    /// the rest of their batch.
    pub held_since: Option<Instant>,
    /// Replies a blocked write left behind, in order; the first from `unwritten_offset`.
    unwritten: VecDeque<Bytes>,
    unwritten_offset: usize,
    write_blocked: bool,
    /// Frames a node sent this client that answer no request (RESP3 pushes on its
    /// pinned connection), each with the place it goes before: the first reply still
    /// awaited when it arrived (so it leaves in the order the node sent it).
    pushed: VecDeque<(u64, Bytes)>,
    /// Requests routed but not sent yet because the reply window is full; sent in order
    /// as replies leave. Their places are reserved.
    waiting: VecDeque<BackendRequest>,
    /// Bytes of the requests in `waiting`.
    waiting_bytes: usize,
    /// Requests sent to nodes whose replies have not arrived (each part of a split or
    /// fanned-out request counts).
    sent: usize,
    /// Requests sent as several parts whose replies are not all in, oldest first.
    gathers: Vec<Gather>,
    /// Bytes of replies held for the client: ready in `places` and in `unwritten`.
    pub held: usize,
    /// The size this client's next replies are expected to have: the largest recent one,
    /// decaying by 1/16 per reply.
    reply_estimate: usize,
    /// The place of the blocking command this client waits in (on a pinned connection),
    /// or of its transaction's last request on its way; nothing else of its requests
    /// goes to a node meanwhile (but the transaction's next ones).
    blocked_at: Option<u64>,
    /// The client's transaction ([`transaction`]), from `WATCH` or `MULTI` until
    /// everything it sent is answered.
    txn: Option<Box<transaction::Transaction>>,
    /// The client's list commands over several slots under way ([`across`]).
    across: Vec<across::Across>,
    /// What the client subscribes to, while it has something ([`pubsub`]).
    subscriptions: Option<Box<pubsub::Subscriptions>>,
    /// The slot of the client's last write ([`wait::NO_WRITE`] before one): where
    /// `WAIT` counts from ([`wait`]).
    last_write: u16,
    /// No more requests are read (QUIT, protocol error, shutdown); the session ends once
    /// the pending replies are written.
    closing: bool,
    /// Reading stopped at the pipeline limit; the socket may hold more.
    pub read_paused: bool,
    /// In the event loop's list of sessions to flush.
    pub dirty: bool,
    /// Flushes that wrote something to the client (for `INFO` `client_writes`).
    pub writes: u64,
    /// The user the client is logged in as ([`access`]); `None`: not logged in, or
    /// no auth configured.
    user: Option<Arc<crate::acl::User>>,
    /// Each request needs a look first ([`Session::refuse_access`]): auth is configured
    /// and the client is not logged in, or its user has rules.
    guarded: bool,
    /// The worker's coarse clock (ms) when the client was last seen busy (`timeout`).
    busy_at: u64,
    /// Bytes written to the client.
    pub written: u64,
    /// The class of the request being handled, given to what it sends to nodes.
    class: RequestClass,
    /// Where this client's reads go: `read_from`, until `READONLY`/`READWRITE` ([`reads`]).
    reads: crate::config::ReadFrom,
}

impl Session {
    pub fn new(
        shared: Arc<Shared>,
        config: Arc<Config>,
        id: ClientId,
        key: usize,
        stream: Transport,
        peer: SocketAddr,
    ) -> Session {
        let local_addr = stream
            .local_addr()
            .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into());
        let limits = config.limits;
        let reply_estimate = (config.reply_window / FIRST_WINDOW_REQUESTS).max(MIN_REPLY_ESTIMATE);
        let (user, guarded) = access::first_user(&config.users);
        let shared_reads = config.reads.read_from;
        Session {
            shared,
            config,
            id,
            key,
            stream,
            peer,
            local_addr,
            name: None,
            lib_name: None,
            lib_ver: None,
            proto: Proto::Resp2,
            scanner: RequestScanner::new(limits),
            rbuf: BytesMut::new(),
            places: VecDeque::new(),
            front_seq: 0,
            pending: 0,
            batch_ends: VecDeque::new(),
            held_since: None,
            unwritten: VecDeque::new(),
            unwritten_offset: 0,
            write_blocked: false,
            pushed: VecDeque::new(),
            waiting: VecDeque::new(),
            waiting_bytes: 0,
            sent: 0,
            gathers: Vec::new(),
            held: 0,
            reply_estimate,
            blocked_at: None,
            txn: None,
            across: Vec::new(),
            subscriptions: None,
            last_write: wait::NO_WRITE,
            closing: false,
            read_paused: false,
            dirty: false,
            writes: 0,
            written: 0,
            class: RequestClass::default(),
            client: clients::ClientState::default(),
            reads: shared_reads,
            user,
            guarded,
            busy_at: 0,
        }
    }

    /// Read what the client sent and handle every complete request. False when the
    /// client is gone (end of stream or a read error): the session ends at once.
    pub fn read(&mut self, w: &mut Worker) -> bool {
        if self.killed() {
            return false;
        }
        let places_before = self.places.len();
        let more = self.read_requests(w);
        self.after_read();
        if self.places.len() > places_before {
            self.end_batch();
        }
        more
    }

    /// The requests taken since the last call were sent together (one readiness event):
    /// their replies should leave together.
    fn end_batch(&mut self) {
        self.batch_ends
            .push_back(self.front_seq + self.places.len() as u64 - 1);
    }

    fn read_requests(&mut self, w: &mut Worker) -> bool {
        let max_pipeline = self.config.max_pipeline;
        loop {
            if self.closing {
                return true;
            }
            if self.places.len() >= max_pipeline || self.waiting_full() {
                self.read_paused = true;
                return true;
            }
            let n = match read_some(&mut self.stream, w.scratch()) {
                ReadSome::Data(n) => {
                    w.add(|s| &s.bytes_in, n as u64);
                    n
                }
                ReadSome::Drained => break,
                ReadSome::Closed => return false,
                ReadSome::Failed(e) => {
                    tracing::debug!(client = self.id.0, error = %e, "client read failed");
                    return false;
                }
            };
            if self.rbuf.capacity() == 0 {
                self.rbuf = w.take_read_buffer();
            }
            let need = n.max(self.scanner.bytes_needed(&self.rbuf));
            if self.rbuf.capacity() - self.rbuf.len() < need {
                self.rbuf.reserve(need.max(READ_CHUNK));
            }
            self.rbuf.extend_from_slice(&w.scratch()[..n]);
            self.take_requests(w);
            if self.rbuf.is_empty() {
                // Nothing partial is waiting: an idle client keeps no buffer; the
                // worker keeps a few for whichever client reads next.
                w.give_read_buffer(std::mem::take(&mut self.rbuf));
            }
            // A short read emptied the socket (edge-triggered: new bytes bring a new
            // event), so no read that would only say EAGAIN.
            if n < w.scratch().len() {
                break;
            }
        }
        self.read_paused = false;
        true
    }

    /// The front reply is ready to be written, or the session is done.
    pub fn wants_flush(&self) -> bool {
        matches!(self.places.front(), Some(Some(_))) || !self.pushed.is_empty() || self.finished()
    }

    /// A frame for this client that answers no request (a push): it goes out with the
    /// next write, after the replies ready now and before those still awaited.
    pub fn push_frame(&mut self, frame: Bytes) {
        self.held += frame.len();
        let awaited = self.places.iter().position(Option::is_none);
        let before = self.front_seq + awaited.unwrap_or(self.places.len()) as u64;
        self.pushed.push_back((before, frame));
    }

    /// Replies to requests that came in the same read as the front one are still on
    /// their way: writing the ready ones now would cost the client (and slotgate) a
    /// second write moments later. Replies to later reads never hold earlier ones back,
    /// so a client that keeps a window of requests in flight is not slowed down.
    pub fn awaits_more(&self) -> bool {
        if self.pending == 0 || self.closing {
            return false;
        }
        let Some(&end) = self.batch_ends.front() else {
            return false;
        };
        let span = end.saturating_sub(self.front_seq) as usize + 1;
        self.places.iter().take(span).any(Option::is_none)
    }

    /// Closing, and everything owed is written.
    pub fn finished(&self) -> bool {
        self.closing
            && self.places.is_empty()
            && self.unwritten.is_empty()
            && self.pushed.is_empty()
    }

    /// May read again: it paused at a limit and replies have left since.
    pub fn may_resume(&self) -> bool {
        self.read_paused
            && !self.closing
            && self.places.len() < self.config.max_pipeline
            && !self.waiting_full()
    }

    /// Enough requests wait for room in the reply window: reading more would only queue
    /// them here rather than in the client's socket.
    fn waiting_full(&self) -> bool {
        self.waiting.len() >= WAITING_AT_MOST || self.waiting_bytes > self.config.reply_window
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Requests wait for room in the reply window.
    pub fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Whether one more request may go to a node: the replies held plus those on their
    /// way, at the estimated size, fit in the window. With nothing on its way, one may
    /// go whatever its size, unless the client already holds a window's worth.
    fn may_send(&self) -> bool {
        self.blocked_at.is_none() && self.fits_window()
    }

    /// The replies held plus those on their way, at the estimated size, leave room for
    /// one more.
    fn fits_window(&self) -> bool {
        let window = self.config.reply_window;
        if self.sent == 0 {
            return self.held < window;
        }
        let owed = (self.sent + 1).saturating_mul(self.reply_estimate);
        self.held.saturating_add(owed) <= window
    }

    /// Send the waiting requests the window now has room for, in order.
    pub fn send_waiting(&mut self, w: &mut Worker) {
        while self
            .waiting
            .front()
            .is_some_and(|req| self.may_send_this(req))
        {
            if let Some(req) = self.waiting.pop_front() {
                self.waiting_bytes -= req.bytes.len();
                self.send_now(w, req);
            }
        }
    }

    /// Read no more requests (QUIT, a protocol error, shutdown); end once the replies
    /// owed are written.
    pub fn stop(&mut self) {
        self.closing = true;
    }

    /// The socket became writable again: true when the session should flush (its
    /// writes were blocked, or TLS holds bytes, e.g. of its handshake).
    pub fn writable(&mut self) -> bool {
        std::mem::replace(&mut self.write_blocked, false) || self.stream.wants_write()
    }

    /// Fill `place` with a node's reply (or the error that stands for it); true when
    /// that completed the front.
    #[inline]
    pub fn fill(&mut self, place: Place, reply: ReplyResult) -> bool {
        if place.part != Place::WHOLE {
            if place.part == across::ACROSS {
                return self.fill_across(place, reply);
            }
            if place.part == wait::WAIT || place.part == wait::PRELUDE {
                return self.fill_wait(place, reply);
            }
            return self.fill_part(place, reply);
        }
        if self.txn.is_some() {
            return self.fill_transaction(place, reply);
        }
        self.fill_whole(place, reply)
    }

    /// Fill `place` of a request sent whole; true when that completed the front.
    #[inline(always)]
    fn fill_whole(&mut self, place: Place, reply: ReplyResult) -> bool {
        let Some(index) = place.seq.checked_sub(self.front_seq) else {
            return false;
        };
        if !matches!(self.places.get(index as usize), Some(None)) {
            return false;
        }
        self.sent = self.sent.saturating_sub(1);
        if let Ok(bytes) = &reply {
            self.expect(bytes.len());
        }
        self.fill_place(place.seq, reply)
    }

    /// Fill place `seq`, known to be awaited, and count its bytes as held.
    #[inline(always)]
    fn fill_place(&mut self, seq: u64, reply: ReplyResult) -> bool {
        let index = (seq - self.front_seq) as usize;
        if let Ok(bytes) = &reply {
            self.held += bytes.len();
        }
        self.places[index] = Some(reply);
        self.pending -= 1;
        if self.blocked_at == Some(seq) {
            self.blocked_at = None;
            METRICS.blocked_clients.fetch_sub(1, Relaxed);
            self.note_blocked(false);
        }
        index == 0
    }

    /// A reply of `size` bytes arrived: the estimate of the next ones follows it.
    #[inline]
    fn expect(&mut self, size: usize) {
        let decayed = self.reply_estimate - self.reply_estimate / 16;
        self.reply_estimate = size.max(decayed).max(MIN_REPLY_ESTIMATE);
    }

    /// One part's reply of a request sent as several; the last one merges them into the
    /// request's place. True when that completed the front.
    #[cold]
    fn fill_part(&mut self, place: Place, reply: ReplyResult) -> bool {
        let Some(g) = self.gathers.iter().position(|g| g.seq == place.seq) else {
            return false;
        };
        let gather = &mut self.gathers[g];
        let Some(slot @ None) = gather.parts.get_mut(place.part as usize) else {
            return false;
        };
        let size = reply.as_ref().map_or(0, |b| b.len());
        *slot = Some(reply);
        gather.missing -= 1;
        gather.bytes += size;
        let done = gather.missing == 0;
        self.sent = self.sent.saturating_sub(1);
        self.held += size;
        self.expect(size);
        if !done {
            return false;
        }
        let gather = self.gathers.swap_remove(g);
        self.held -= gather.bytes;
        let parts: Vec<ReplyResult> = gather.parts.into_iter().flatten().collect();
        let reply = match gather.combine {
            Combine::Merge(how) => merge(&how, parts, self.proto),
            Combine::Info(sections) => {
                let sums = crate::dispatch::merge::node_sums(&parts);
                let text = self.render_info(&sections, Some(&sums));
                let mut out = BytesMut::new();
                ReplyWriter {
                    out: &mut out,
                    proto: self.proto,
                }
                .verbatim(&text);
                Ok(out.freeze())
            }
        };
        self.fill_place(gather.seq, reply)
    }

    /// Write every reply that is ready at the front, in order, in one write. `out` is
    /// the worker's write buffer: ready replies are copied into it and written at once;
    /// only what a blocked write leaves stays with the session, and replies that become
    /// ready behind it queue as they are (no copy), written with vectored writes.
    pub fn flush(&mut self, out: &mut BytesMut) -> Flushed {
        let (written, end) =
            if self.unwritten.is_empty() && !self.write_blocked && !self.front_is_big() {
                out.clear();
                self.take_ready(|bytes| out.extend_from_slice(&bytes));
                let (written, end) = write_all_now(&mut self.stream, out);
                // Blocked with all of it taken: TLS holds the rest, flushed when writable.
                if matches!(end, Written::Blocked) && written < out.len() {
                    self.unwritten
                        .push_back(Bytes::copy_from_slice(&out[written..]));
                }
                (written, end)
            } else {
                let mut unwritten = std::mem::take(&mut self.unwritten);
                self.take_ready(|bytes| unwritten.push_back(bytes));
                self.unwritten = unwritten;
                if self.write_blocked {
                    (0, Written::Blocked)
                } else {
                    write_chunks(
                        &mut self.stream,
                        &mut self.unwritten,
                        &mut self.unwritten_offset,
                    )
                }
            };
        self.held -= written;
        if written > 0 {
            self.writes += 1;
            self.written += written as u64;
        }
        match end {
            Written::All => Flushed::Done,
            Written::Blocked => {
                self.write_blocked = true;
                if self.over_output_limit() {
                    return Flushed::OverLimit;
                }
                Flushed::Blocked
            }
            Written::Failed(e) => {
                tracing::debug!(client = self.id.0, error = %e, "client write failed");
                Flushed::Failed
            }
        }
    }

    /// The front reply is big enough that copying it into the write buffer costs more
    /// than a vectored write of it as it is (and would hold it twice meanwhile).
    fn front_is_big(&self) -> bool {
        matches!(self.places.front(), Some(Some(Ok(b))) if b.len() >= COPY_AT_MOST)
    }

    /// The client holds more than `limits.max_output_buffer`, not counting the rest of
    /// the reply being written (one reply may be bigger than the limit); logged.
    fn over_output_limit(&self) -> bool {
        let limit = self.config.max_output_buffer;
        let writing = self
            .unwritten
            .front()
            .map_or(0, |b| b.len() - self.unwritten_offset);
        if limit == 0 || self.held - writing <= limit {
            return false;
        }
        Metrics::inc(&METRICS.clients_over_output_limit);
        tracing::warn!(
            client = self.id.0,
            peer = %self.peer,
            held = self.held,
            limit,
            "closing a client that does not read its replies (limits.max_output_buffer)"
        );
        true
    }

    /// Hand the replies ready at the front to `take`, in order (errors made into their
    /// reply frames here, and counted as held).
    fn take_ready(&mut self, mut take: impl FnMut(Bytes)) {
        loop {
            while self
                .pushed
                .front()
                .is_some_and(|&(before, _)| before <= self.front_seq)
            {
                if let Some((_, frame)) = self.pushed.pop_front() {
                    take(frame);
                }
            }
            let Some(Some(_)) = self.places.front() else {
                break;
            };
            if let Some(Some(reply)) = self.places.pop_front() {
                let bytes = match reply {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        Metrics::inc(&METRICS.proxy_errors);
                        let mut buf = BytesMut::new();
                        ReplyWriter {
                            out: &mut buf,
                            proto: self.proto,
                        }
                        .error(&format!("ERR slotgate: {e}"));
                        self.held += buf.len();
                        buf.freeze()
                    }
                };
                if bytes.is_empty() {
                    // A transaction's reply the client was answered for already.
                } else if self.client.is_quiet(self.front_seq) {
                    // `CLIENT REPLY OFF`/`SKIP`: dropped, no longer held.
                    self.held -= bytes.len();
                } else {
                    take(bytes);
                }
            }
            self.front_seq += 1;
        }
        while self
            .batch_ends
            .front()
            .is_some_and(|&end| end < self.front_seq)
        {
            self.batch_ends.pop_front();
        }
    }

    /// The read buffer, given back when the session ends.
    pub fn take_read_buffer(&mut self) -> BytesMut {
        std::mem::take(&mut self.rbuf)
    }

    /// Frame and handle every complete request in the read buffer.
    fn take_requests(&mut self, w: &mut Worker) {
        loop {
            match self.scanner.next_request(&mut self.rbuf) {
                Ok(Some(request)) => {
                    if self.rbuf.is_empty() {
                        // The last request of the read (`CLIENT LIST`'s `cmd`).
                        self.note_command(&request);
                    }
                    self.handle(w, request);
                    if self.closing {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::info!(client = self.id.0, peer = %self.peer, error = %e, "closing client after a protocol error");
                    self.push_error(&format!("ERR {e}"));
                    self.stop();
                    return;
                }
            }
        }
    }

    /// Carry out one request's [`plan`]: answer it here, send it to a node, refuse it,
    /// or answer its error.
    fn handle(&mut self, w: &mut Worker, mut request: Request) {
        if (self.client.special || self.shared.clients.monitored()) && self.screen(&request) {
            return w.count_request(RequestClass::Rejected);
        }
        if self.guarded && self.refuse_access(&request) {
            return;
        }
        // Decided once: the plan borrows nothing, and the transaction's state is changed
        // (its requests queued) by what it says.
        let (planned, flags) =
            plan_with_flags(&request, self.shared.learned.get(), self.id.0 as u32);
        if self.txn.is_some() {
            self.class = RequestClass::Transaction;
            match self.transaction_request(w, request, &planned) {
                Some(given_back) => request = given_back,
                None => return w.count_request(RequestClass::Transaction),
            }
        }
        if self.subscriptions.is_some() {
            self.class = RequestClass::PubSub;
            if self.subscribed_takes(w, &request) {
                return w.count_request(RequestClass::PubSub);
            }
        }
        self.class = class_of(&planned, flags);
        w.count_request(self.class);
        match planned {
            Ok(Plan::Local(crate::command::Local::Info)) => {
                Metrics::inc(&METRICS.requests_local);
                self.info(w, &request);
            }
            Ok(Plan::Local(which)) => {
                Metrics::inc(&METRICS.requests_local);
                self.local(which, &request);
            }
            // One call of `forward`, so that it stays inlined.
            Ok(planned @ (Plan::Node(target) | Plan::Script(target))) => {
                if let Plan::Script(_) = planned {
                    self.remember_script(&request, target);
                } else if flags & crate::command::flags::WRITE != 0 {
                    // The one cost of `WAIT` on the common path: where it counts from.
                    if let Target::Slot(slot) = target {
                        self.last_write = slot.get();
                    }
                }
                if self.reads != crate::config::ReadFrom::Master
                    && flags & crate::command::flags::READONLY != 0
                {
                    return self.forward_read(w, request, target);
                }
                self.forward(w, request, target)
            }
            Ok(Plan::Split) => {
                let split = crate::dispatch::split::split(&request);
                if flags & crate::command::flags::WRITE != 0 {
                    if let Some((_, slot)) = split.parts.last() {
                        self.last_write = slot.get();
                    }
                }
                let parts = (split.parts.into_iter())
                    .map(|(bytes, slot)| (bytes, Target::Slot(slot)))
                    .collect();
                if self.reads != crate::config::ReadFrom::Master
                    && flags & crate::command::flags::READONLY != 0
                {
                    return self.gather_read(w, split.merge, parts);
                }
                self.gather(w, split.merge, parts);
            }
            Ok(Plan::FanOut(kind)) => self.fan_out(w, request, kind),
            Ok(Plan::Pinned { target, wait }) => {
                let deadline = match wait {
                    BlockFor::Forever => ReplyDeadline::Never,
                    BlockFor::For(wait) => ReplyDeadline::Extra(wait),
                    BlockFor::Invalid => ReplyDeadline::Backend,
                };
                // Every blocking command but XREAD may write (a pop, XREADGROUP's PEL).
                if let Target::Slot(slot) = target {
                    if !request.arg(0).eq_ignore_ascii_case(b"xread") {
                        self.last_write = slot.get();
                    }
                }
                self.forward_pinned(w, request, target, deadline);
            }
            Ok(Plan::Wait { name, wait }) => self.wait(w, request, name, wait),
            Ok(Plan::Refuse { name, reason }) => {
                let text = Plan::refusal(name, reason, &request);
                crate::log_limit::refused(&text);
                w.count_error(self.class, ErrorKind::Client);
                self.push_error(&text);
            }
            Ok(Plan::Transaction(name)) => self.transaction(w, request, name),
            Ok(Plan::PubSub(name)) => self.pubsub(w, name, &request),
            Ok(Plan::AcrossSlots) => {
                if self.across_slots(w, request).is_some() {
                    // Not in a form served across slots (a bad LEFT/RIGHT or timeout):
                    // what Redis Cluster answers first.
                    w.count_error(self.class, ErrorKind::Client);
                    self.push_error(&PlanError::CrossSlot.to_string());
                }
            }
            Err(e) => {
                w.count_error(self.class, ErrorKind::Client);
                self.push_error(&e.to_string())
            }
        }
    }

    /// An `EVAL`'s body, kept to heal a `NOSCRIPT` later; a script with keys may write
    /// (where `WAIT` counts from).
    #[cold]
    #[inline(never)]
    fn remember_script(&mut self, request: &Request, target: Target) {
        self.shared.scripts.remember(request.arg(1));
        if let Target::Slot(slot) = target {
            self.last_write = slot.get();
        }
    }

    /// Send to a node, or queue behind the requests waiting for room in the reply
    /// window; the reply fills this request's place in the queue.
    fn forward(&mut self, w: &mut Worker, request: Request, target: Target) {
        let req = self.whole(request, target);
        self.submit(w, req);
    }

    /// `request` for `target`, its reply filling the next place of this client's queue.
    #[inline(always)]
    fn whole(&mut self, request: Request, target: Target) -> BackendRequest {
        let place = Place {
            session: self.key,
            client: self.id.0,
            seq: self.reserve(),
            part: Place::WHOLE,
        };
        BackendRequest::new(
            request.into_raw(),
            target,
            self.proto,
            self.id.0 as u32,
            ReplyTo::new(place),
        )
    }

    /// A blocking command: on a connection pinned to this client while it waits, with
    /// its own deadline. It goes once every earlier request is answered, and nothing
    /// after it goes until it is (as Redis runs nothing else of a blocked client's).
    fn forward_pinned(
        &mut self,
        w: &mut Worker,
        request: Request,
        target: Target,
        deadline: ReplyDeadline,
    ) {
        let mut req = self.whole(request, target);
        req.pinned = true;
        req.deadline = deadline;
        self.submit(w, req);
    }

    /// Send a request as `parts` (each its bytes and target), the replies merged by
    /// `merge` into one place. The parts go in order, like requests, through the reply
    /// window.
    fn gather(&mut self, w: &mut Worker, combine: impl Into<Combine>, parts: Vec<(Bytes, Target)>) {
        self.gather_as(w, combine, parts, crate::config::ReadFrom::Master)
    }

    /// [`Session::gather`], the parts going where `reads` says when they are reads.
    fn gather_as(
        &mut self,
        w: &mut Worker,
        combine: impl Into<Combine>,
        parts: Vec<(Bytes, Target)>,
        reads: crate::config::ReadFrom,
    ) {
        if parts.is_empty() {
            let text = crate::backend::BackendError::NoNodes.to_string();
            return self.push_error(&format!("ERR slotgate: {text}"));
        }
        let seq = self.reserve();
        self.gathers.push(Gather {
            seq,
            combine: combine.into(),
            parts: (0..parts.len()).map(|_| None).collect(),
            missing: parts.len(),
            bytes: 0,
        });
        for (part, (bytes, target)) in parts.into_iter().enumerate() {
            let place = Place {
                session: self.key,
                client: self.id.0,
                seq,
                part: part as u16,
            };
            let mut req = BackendRequest::new(
                bytes,
                target,
                self.proto,
                self.id.0 as u32,
                ReplyTo::new(place),
            );
            req.reads = reads;
            self.submit(w, req);
        }
    }

    /// Send `req` now if nothing waits before it and the window allows, else queue it.
    fn submit(&mut self, w: &mut Worker, mut req: BackendRequest) {
        req.reply.set_class(self.class);
        if self.waiting.is_empty() && self.may_send_this(&req) {
            self.send_now(w, req);
        } else {
            self.waiting_bytes += req.bytes.len();
            self.waiting.push_back(req);
        }
    }

    #[inline]
    fn may_send_this(&self, req: &BackendRequest) -> bool {
        if req.pinned {
            self.may_send_held(req)
        } else {
            self.may_send()
        }
    }

    fn send_now(&mut self, w: &mut Worker, req: BackendRequest) {
        self.sent += 1;
        if req.pinned {
            if req.reply.place().part == wait::WAIT {
                return self.send_wait(w, req);
            }
            if req.in_transaction() {
                // Not a blocked client: its transaction's next requests may follow.
                self.blocked_at = Some(req.reply.place().seq);
                return w.dispatch_held(req);
            }
            if self.blocked_at.is_none() {
                Metrics::inc(&METRICS.blocked_clients);
                self.note_blocked(true);
            }
            self.blocked_at = Some(req.reply.place().seq);
        }
        w.dispatch(req);
    }

    /// Reserve the next place for a reply on its way; its sequence number.
    fn reserve(&mut self) -> u64 {
        self.places.push_back(None);
        self.pending += 1;
        self.front_seq + self.places.len() as u64 - 1
    }

    /// Queue a reply made here, with `f` writing it.
    fn push_local(&mut self, f: impl FnOnce(&mut ReplyWriter)) {
        let mut out = BytesMut::new();
        f(&mut ReplyWriter {
            out: &mut out,
            proto: self.proto,
        });
        self.held += out.len();
        self.places.push_back(Some(Ok(out.freeze())));
    }

    fn push_error(&mut self, text: &str) {
        Metrics::inc(&METRICS.proxy_errors);
        self.push_local(|w| w.error(text));
    }
}

/// The class a request is counted in, from its plan and its command's flags.
fn class_of(planned: &Result<Plan, PlanError>, command: u32) -> RequestClass {
    match planned {
        Ok(Plan::Local(_)) => RequestClass::Local,
        Ok(Plan::Node(_) | Plan::Script(_)) if command & flags::PUBSUB != 0 => RequestClass::PubSub,
        Ok(Plan::Node(_) | Plan::Script(_)) if command & flags::READONLY != 0 => RequestClass::Read,
        Ok(Plan::Node(_) | Plan::Script(_)) => RequestClass::Write,
        Ok(Plan::Split | Plan::AcrossSlots) => RequestClass::MultiSlot,
        Ok(Plan::FanOut(_)) => RequestClass::FanOut,
        Ok(Plan::Pinned { .. } | Plan::Wait { .. }) => RequestClass::Blocking,
        Ok(Plan::Transaction(_)) => RequestClass::Transaction,
        Ok(Plan::PubSub(_)) => RequestClass::PubSub,
        Ok(Plan::Refuse { .. }) | Err(_) => RequestClass::Rejected,
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.blocked_at.is_some() && !self.on_held_connection() {
            METRICS.blocked_clients.fetch_sub(1, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::backend::{take_dropped, BackendError};

    /// A session on one end of a loopback connection, and the other end.
    fn session_and_peer() -> (Session, std::net::TcpStream) {
        let config = Config::from_toml("seeds = [\"127.0.0.1:1\"]").unwrap();
        let shared = Shared::new(config, 1);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, addr) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let stream = Transport::from(mio::net::TcpStream::from_std(server));
        let config = shared.config.load_full();
        (
            Session::new(shared, config, ClientId(7), 3, stream, addr),
            peer,
        )
    }

    /// Place `seq` of the test session, for a request sent whole.
    fn whole(seq: u64) -> Place {
        Place {
            session: 3,
            client: 7,
            seq,
            part: Place::WHOLE,
        }
    }

    fn read_exactly(peer: &mut std::net::TcpStream, n: usize) -> String {
        let mut buf = vec![0u8; n];
        peer.read_exact(&mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn replies_leave_in_request_order_and_errors_take_their_place() {
        let (mut s, mut peer) = session_and_peer();
        let mut out = BytesMut::new();
        s.reserve();
        s.reserve();
        s.push_local(|w| w.simple("local"));
        s.reserve();
        s.end_batch();
        assert!(s.awaits_more());
        // Completing a later place writes nothing: the front is still missing.
        assert!(!s.fill(whole(1), Ok(Bytes::from_static(b"+b\r\n"))));
        assert!(!s.wants_flush());
        assert_eq!(s.flush(&mut out), Flushed::Done);
        assert_eq!(s.places.len(), 4);
        // Completing the front lets every ready reply out, in one write.
        assert!(s.fill(whole(0), Ok(Bytes::from_static(b"+a\r\n"))));
        assert!(s.wants_flush());
        assert_eq!(s.flush(&mut out), Flushed::Done);
        assert_eq!(read_exactly(&mut peer, 16), "+a\r\n+b\r\n+local\r\n");
        // An error reply is written in the client's protocol, in its place.
        assert!(s.fill(whole(3), Err(BackendError::Dropped)));
        assert_eq!(s.flush(&mut out), Flushed::Done);
        let text = read_exactly(&mut peer, 67);
        assert!(text.starts_with("-ERR slotgate: request dropped"), "{text}");
        assert!(s.places.is_empty());
        assert!(!s.awaits_more());
        // A place filled twice, or one that is gone, is ignored.
        assert!(!s.fill(whole(3), Ok(Bytes::from_static(b"+late\r\n"))));
    }

    #[test]
    fn replies_of_one_read_wait_for_each_other_but_not_for_later_reads() {
        let (mut s, mut peer) = session_and_peer();
        let mut out = BytesMut::new();
        // Read 1 brought requests 0 and 1, read 2 brought request 2.
        s.reserve();
        s.reserve();
        s.end_batch();
        s.reserve();
        s.end_batch();
        assert!(s.fill(whole(0), Ok(Bytes::from_static(b"+a\r\n"))));
        assert!(s.awaits_more(), "1 came with 0 and is still on its way");
        assert!(!s.fill(whole(1), Ok(Bytes::from_static(b"+b\r\n"))));
        assert!(!s.awaits_more(), "2 came later: it holds nothing back");
        assert_eq!(s.flush(&mut out), Flushed::Done);
        assert_eq!(read_exactly(&mut peer, 8), "+a\r\n+b\r\n");
        assert!(s.fill(whole(2), Ok(Bytes::from_static(b"+c\r\n"))));
        assert!(!s.awaits_more());
        assert_eq!(s.flush(&mut out), Flushed::Done);
        assert_eq!(read_exactly(&mut peer, 4), "+c\r\n");
        assert!(s.batch_ends.is_empty(), "written batches are forgotten");
        // A closing session holds nothing back.
        s.reserve();
        s.reserve();
        s.end_batch();
        assert!(s.fill(whole(3), Ok(Bytes::from_static(b"+d\r\n"))));
        assert!(s.awaits_more());
        s.stop();
        assert!(!s.awaits_more());
    }

    #[test]
    fn a_dropped_reply_handle_names_its_place() {
        let place = Place {
            session: 3,
            client: 7,
            seq: 42,
            part: Place::WHOLE,
        };
        // Whatever earlier tests on this thread left behind.
        let _ = take_dropped();
        drop(ReplyTo::new(place));
        // One answered explicitly is not reported.
        let answered = ReplyTo::new(Place { seq: 43, ..place });
        assert_eq!(answered.into_place().seq, 43);
        assert_eq!(take_dropped(), vec![place]);
        assert!(take_dropped().is_empty(), "reported once");
    }

    #[test]
    fn a_push_leaves_where_it_arrived_among_the_replies() {
        let (mut s, mut peer) = session_and_peer();
        let mut out = BytesMut::new();
        s.reserve();
        s.reserve();
        s.end_batch();
        // Reply 0 is in, 1 is awaited when the push arrives: it goes between them.
        assert!(s.fill(whole(0), Ok(Bytes::from_static(b"+a\r\n"))));
        s.push_frame(Bytes::from_static(b">1\r\n+p\r\n"));
        assert!(s.wants_flush());
        assert!(!s.fill(whole(1), Ok(Bytes::from_static(b"+b\r\n"))));
        assert_eq!(s.flush(&mut out), Flushed::Done);
        assert_eq!(read_exactly(&mut peer, 16), "+a\r\n>1\r\n+p\r\n+b\r\n");
        assert_eq!(s.held, 0, "everything written is no longer held");
    }

    #[test]
    fn a_stopped_session_finishes_once_its_replies_are_written() {
        let (mut s, mut peer) = session_and_peer();
        let mut out = BytesMut::new();
        s.reserve();
        s.stop();
        assert!(!s.finished(), "a reply is still owed");
        assert!(s.fill(whole(0), Ok(Bytes::from_static(b"+OK\r\n"))));
        assert_eq!(s.flush(&mut out), Flushed::Done);
        assert!(s.finished());
        assert_eq!(read_exactly(&mut peer, 5), "+OK\r\n");
    }
}
