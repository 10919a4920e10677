//! A worker thread's event loop: one `epoll` instance (through `mio`, edge-triggered)
//! for the worker's listener, its client sessions and its backend connections. Each
//! turn handles every ready socket, then runs the timers (watchdog, retries), then
//! writes every session that has replies ready and then every backend connection that
//! has requests — once per turn, so the requests of many clients leave in one syscall
//! per node and a client whose pipeline spans several nodes gets one write.
//!
//! This is STYLE.md's "one task owns each socket" taken one step further: one loop owns
//! every socket of its thread, and sessions reach a backend connection by queueing a
//! request with its reply handle, never through a lock. A task per socket on tokio cost
//! about 3.5k of the 9.4k instructions per proxied GET in wakes, polls and parks
//! (callgrind, issue 3); this loop brought the total to about 4.2k. tokio still runs
//! the control plane (topology refresh, signals) on the main thread.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::admin::{Metrics, METRICS};
use crate::backend::node_connections::WATCHDOG_TICK;
use crate::dispatch::retry::RETRY_POLL;
use crate::dispatch::Worker;
use crate::net::Transport;
use crate::session::{ClientId, Flushed, Session};
use crate::shared::Shared;

const LISTENER: Token = Token(0);
pub const WAKER: Token = Token(2);
/// The `[tls]` listener.
const TLS_LISTENER: Token = Token(4);
/// How long a shutdown waits for sessions to write the replies they still owe.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// After a failed accept (out of file descriptors), try again this much later.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// A session's ready replies wait at most this long for the rest of the requests that
/// came in the same read (replies from the other nodes usually take a fraction of it).
const HOLD_AT_MOST: Duration = Duration::from_millis(1);

/// Session tokens are even, from 6 up; backend connections' are odd.
fn session_token(key: usize) -> Token {
    Token((key + 3) * 2)
}

/// The session of a session token.
#[inline]
fn session_key(token: Token) -> usize {
    token.0 / 2 - 3
}

/// Put session `key` on the list of sessions to flush at the end of this turn, once.
#[inline]
fn mark_dirty(session: &mut Session, key: usize, dirty: &mut Vec<usize>) {
    if !session.dirty {
        session.dirty = true;
        dirty.push(key);
    }
}

/// Client ids are unique across workers.
static NEXT_CLIENT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

pub struct EventLoop {
    poll: Poll,
    worker: Worker,
    sessions: Slab<Session>,
    listener: Option<TcpListener>,
    /// The `[tls]` listener and its configuration: its clients' sessions speak TLS.
    tls_listener: Option<(TcpListener, Arc<rustls::ServerConfig>)>,
    /// Set by the main thread on SIGTERM/SIGINT (then it wakes the loop).
    stop: Arc<AtomicBool>,
    /// Sessions with replies to write at the end of this turn.
    dirty: Vec<usize>,
    /// Sessions whose ready replies were held back this turn (more of the same batch
    /// were on their way); looked at again next turn.
    held: Vec<usize>,
    /// When the first of the held sessions stops waiting.
    hold_until: Option<Instant>,
    /// Sessions that paused at the pipeline limit and may read again.
    resume: Vec<usize>,
    /// The worker's write buffer for client replies.
    out: BytesMut,
    accept_again: Option<Instant>,
    /// When idle clients are looked for next (`timeout`; once a second).
    idle_check_at: Instant,
}

impl EventLoop {
    pub fn new(
        shared: Arc<Shared>,
        index: usize,
        poll: Poll,
        listener: std::net::TcpListener,
        tls_listener: Option<std::net::TcpListener>,
        stop: Arc<AtomicBool>,
    ) -> io::Result<EventLoop> {
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let config = shared.config.load_full();
        let tls_listener = match (tls_listener, &config.tls) {
            (Some(tls_listener), Some(tls)) => {
                tls_listener.set_nonblocking(true)?;
                let mut tls_listener = TcpListener::from_std(tls_listener);
                poll.registry()
                    .register(&mut tls_listener, TLS_LISTENER, Interest::READABLE)?;
                Some((tls_listener, tls.server.clone()))
            }
            _ => None,
        };
        let registry = poll.registry().try_clone()?;
        Ok(EventLoop {
            poll,
            worker: Worker::new(shared, index, registry),
            sessions: Slab::new(),
            listener: Some(listener),
            tls_listener,
            stop,
            dirty: Vec::new(),
            held: Vec::new(),
            hold_until: None,
            resume: Vec::new(),
            out: BytesMut::new(),
            accept_again: None,
            idle_check_at: Instant::now(),
        })
    }

    /// Serve until the stop flag is set, then let the sessions write what they owe
    /// (at most [`DRAIN_TIMEOUT`]) and return.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut now = Instant::now();
        let mut next_tick = now + WATCHDOG_TICK;
        let mut retry_at: Option<Instant> = None;
        let mut stopping: Option<Instant> = None;
        loop {
            // `now` is from the end of the last turn: one clock read per turn.
            let timeout = if !self.resume.is_empty() || self.worker.has_unread() {
                Duration::ZERO
            } else if let Some(until) = self.hold_until {
                until.saturating_duration_since(now)
            } else {
                let mut until = retry_at.map_or(next_tick, |r| r.min(next_tick));
                if let Some(t) = self.accept_again {
                    until = until.min(t);
                }
                until.saturating_duration_since(now)
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(worker = self.worker.index, error = %e, "event loop failed");
                    return;
                }
            }
            // Node connections that had more to read than their last turn took (before
            // this turn's events, which may stop some at the limit again for next turn).
            self.worker.read_unread();
            let mut woken = false;
            for event in events.iter() {
                let token = event.token();
                let readable = event.is_readable() || event.is_read_closed() || event.is_error();
                if token.0 & 1 == 1 {
                    self.worker.conn_event(token, readable, event.is_writable());
                } else if token > TLS_LISTENER {
                    let gone = event.is_read_closed() || event.is_error();
                    self.session_event(session_key(token), readable, event.is_writable(), gone);
                } else if token == LISTENER {
                    self.accept(false);
                } else if token == TLS_LISTENER {
                    self.accept(true);
                } else {
                    woken = true;
                }
            }
            for key in std::mem::take(&mut self.resume) {
                self.read_session(key);
            }
            now = Instant::now();
            // Mail (`CLIENT KILL`, `MONITOR` lines) wakes the loop; the tick looks too.
            let tick = now >= next_tick;
            if (woken || tick) && self.worker.shared.clients.has_mail(self.worker.index) {
                self.take_mail();
            }
            if tick && self.worker.config_changed() {
                self.take_config();
            }
            if tick {
                // The sessions' coarse clock (`CLIENT LIST`'s idle): a wait in epoll
                // never outlasts the tick, so it is at most a tick behind.
                self.worker.shared.clients.tick(self.worker.index, now);
                self.worker.watchdog();
                self.enforce_output_total();
                if now >= self.idle_check_at {
                    self.close_idle(now);
                }
                next_tick = now + WATCHDOG_TICK;
            }
            if self.accept_again.is_some_and(|t| now >= t) {
                self.accept_again = None;
                self.accept(false);
                self.accept(true);
            }
            if retry_at.is_some() || !self.worker.retry.is_empty() {
                retry_at = self.worker.run_retries(now);
            }
            // Replies to clients first, then this turn's requests to the nodes. On a
            // machine the nodes share, the send that wakes a node usually hands it the
            // core at once (perf: the proxy is preempted right after `send`), so
            // replies written after the node writes would wait for the nodes' turns.
            // Measured with benches/ab.sh against the old order (50 clients): -P 16
            // GET 5% more throughput for 6% less CPU per request; -P 1 within the noise.
            self.worker.collect_dropped();
            self.deliver_and_flush(now);
            self.worker.flush_conns();
            self.worker.collect_dropped();
            if !self.worker.deliveries.is_empty() {
                // Requests a failed write or connect gave back (or dropped), answered
                // this turn rather than after the next wait.
                self.deliver_and_flush(now);
            }
            if !self.worker.retry.is_empty() {
                let soon = now + RETRY_POLL;
                retry_at = Some(retry_at.map_or(soon, |r| r.min(soon)));
            }

            if stopping.is_none() && self.stop.load(Relaxed) {
                stopping = Some(now);
                self.begin_stop();
            }
            if let Some(since) = stopping {
                if self.sessions.is_empty() || since.elapsed() >= DRAIN_TIMEOUT {
                    break;
                }
            }
        }
        let left = self.sessions.len();
        for key in self.sessions.iter().map(|(k, _)| k).collect::<Vec<_>>() {
            self.close_session(key);
        }
        tracing::debug!(worker = self.worker.index, left, "worker stopped");
    }

    /// Accept every waiting client of the plain listener, or with `tls` of the TLS one
    /// (its sessions' handshake runs in their first reads).
    fn accept(&mut self, tls: bool) {
        let (listener, tls_config) = if tls {
            match self.tls_listener.as_ref() {
                Some((listener, config)) => (listener, Some(config)),
                None => return,
            }
        } else {
            match self.listener.as_ref() {
                Some(listener) => (listener, None),
                None => return,
            }
        };
        let max_clients = self.worker.config.max_clients as u64;
        loop {
            let accepted = listener
                .accept()
                .and_then(|(stream, peer)| match tls_config {
                    None => Ok((Transport::from(stream), peer)),
                    Some(config) => Ok((Transport::accept_tls(stream, config.clone())?, peer)),
                });
            let (mut stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of file descriptors and the like: try again shortly.
                    tracing::warn!(error = %e, "accept failed");
                    self.accept_again = Some(Instant::now() + ACCEPT_BACKOFF);
                    return;
                }
            };
            if METRICS.connections_open.load(Relaxed) >= max_clients {
                Metrics::inc(&METRICS.connections_rejected);
                tracing::warn!(%peer, max_clients, "client refused: max_clients reached");
                // A TLS client gets no words: its handshake has not run.
                let _ = stream.write(b"-ERR max number of clients reached\r\n");
                continue;
            }
            if !self.worker.shared.per_address.admit(peer.ip()) {
                Metrics::inc(&METRICS.connections_rejected);
                let limit = self.worker.shared.per_address.limit();
                tracing::warn!(%peer, limit, "client refused: max_clients_per_ip reached");
                let _ = stream.write(b"-ERR max number of clients from this address reached\r\n");
                continue;
            }
            let _ = stream.set_nodelay(true);
            let entry = self.sessions.vacant_entry();
            let key = entry.key();
            if let Err(e) = self.poll.registry().register(
                &mut stream,
                session_token(key),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                tracing::warn!(%peer, error = %e, "cannot watch a client socket");
                self.worker.shared.per_address.leave(peer.ip());
                continue;
            }
            let id = ClientId(NEXT_CLIENT_ID.fetch_add(1, Relaxed));
            Metrics::inc(&METRICS.connections_total);
            Metrics::inc(&METRICS.connections_open);
            entry
                .insert(Session::new(
                    self.worker.shared.clone(),
                    self.worker.config.clone(),
                    id,
                    key,
                    stream,
                    peer,
                ))
                .join(self.worker.index);
        }
    }

    /// `gone`: the client closed its side or the socket failed. A session that is not
    /// reading (paused at a limit) would not find out by reading, and one whose writes
    /// are blocked is not told it may write: it ends now, as Redis drops a client at
    /// end of stream, and what it held is freed.
    fn session_event(&mut self, key: usize, readable: bool, writable: bool, gone: bool) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        if gone && session.read_paused {
            self.close_session(key);
            return;
        }
        if writable && session.writable() {
            self.mark_dirty(key);
        }
        if readable {
            self.read_session(key);
        }
    }

    /// Read a session; it ends at once when the client is gone.
    fn read_session(&mut self, key: usize) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        if !session.read(&mut self.worker) {
            self.close_session(key);
            return;
        }
        if session.wants_flush() {
            self.mark_dirty(key);
        }
    }

    fn mark_dirty(&mut self, key: usize) {
        if let Some(session) = self.sessions.get_mut(key) {
            mark_dirty(session, key, &mut self.dirty);
        }
    }

    /// Hand the replies the worker collected to their sessions and write every session
    /// that has some ready. The caller collects the dropped reply handles first.
    fn deliver_and_flush(&mut self, now: Instant) {
        self.deliver();
        self.flush_sessions(now);
    }

    /// Hand the replies the worker collected to their sessions. A reply for a client
    /// that is gone is dropped here, as it arrives.
    fn deliver(&mut self) {
        for push in self.worker.take_pushes() {
            let Some(session) = self.sessions.get_mut(push.session) else {
                continue;
            };
            if session.id.0 == push.client {
                session.push_frame(push.frame);
                mark_dirty(session, push.session, &mut self.dirty);
            }
        }
        for (place, reply) in self.worker.deliveries.drain(..) {
            let Some(session) = self.sessions.get_mut(place.session) else {
                continue;
            };
            if session.id.0 == place.client && (session.fill(place, reply) || session.has_waiting())
            {
                mark_dirty(session, place.session, &mut self.dirty);
            }
        }
        // Pub/sub messages after the replies: a subscription's confirmation (a reply)
        // leaves before the messages that came with it.
        for message in self.worker.take_messages() {
            let Some(session) = self.sessions.get_mut(message.session) else {
                continue;
            };
            if session.id.0 == message.client {
                session.push_frame(message.frame);
                mark_dirty(session, message.session, &mut self.dirty);
            }
        }
    }

    /// Write every session that has replies ready at its front. A session whose front
    /// replies came with requests still being answered (sent in the same read) is held
    /// back until the rest is in, at most [`HOLD_AT_MOST`], so that a pipeline spread
    /// over several nodes leaves in one write rather than one per node.
    fn flush_sessions(&mut self, now: Instant) {
        self.hold_until = None;
        for key in std::mem::take(&mut self.held) {
            self.mark_dirty(key);
        }
        for i in 0..self.dirty.len() {
            let key = self.dirty[i];
            let Some(session) = self.sessions.get_mut(key) else {
                continue;
            };
            session.dirty = false;
            if session.has_waiting() {
                session.send_waiting(&mut self.worker);
            }
            if session.awaits_more() {
                let until = *session.held_since.get_or_insert(now) + HOLD_AT_MOST;
                if now < until {
                    self.held.push(key);
                    self.hold_until = Some(self.hold_until.map_or(until, |u| u.min(until)));
                    continue;
                }
            }
            session.held_since = None;
            let (writes, written) = (session.writes, session.written);
            let flushed = session.flush(&mut self.out);
            if session.writes != writes {
                self.worker.count(|s| &s.client_writes);
                self.worker.add(|s| &s.bytes_out, session.written - written);
            }
            if session.has_waiting() {
                // Replies left: the window may have room again.
                session.send_waiting(&mut self.worker);
            }
            match flushed {
                Flushed::Failed | Flushed::OverLimit => self.close_session(key),
                Flushed::Blocked => {}
                Flushed::Done if session.finished() => self.close_session(key),
                Flushed::Done => {
                    if session.may_resume() {
                        self.resume.push(key);
                    }
                }
            }
        }
        self.dirty.clear();
        if self.out.capacity() > 256 * 1024 {
            self.out = BytesMut::new();
        }
    }

    /// Once per watchdog tick: publish the bytes of replies this worker holds for its
    /// clients, and when all workers together hold more than `limits.max_output_total`,
    /// close this worker's clients holding the most until it is back under its share
    /// (as Redis's `maxmemory-clients` evicts the biggest clients first).
    fn enforce_output_total(&mut self) {
        let shared = self.worker.shared.clone();
        let mine: usize = (self.sessions.iter())
            .map(|(_, s)| {
                s.publish_buffers();
                s.held
            })
            .sum();
        let stats = &shared.stats[self.worker.index % shared.stats.len()];
        stats.output_bytes.store(mine as u64, Relaxed);
        let cap = self.worker.config.max_output_total;
        if cap == 0 {
            return;
        }
        let total: u64 = shared
            .stats
            .iter()
            .map(|s| s.output_bytes.load(Relaxed))
            .sum();
        if total <= cap as u64 {
            return;
        }
        let share = cap / shared.workers.get().copied().unwrap_or(1).max(1);
        let mut mine = mine;
        while mine > share {
            let Some((key, held)) = (self.sessions.iter())
                .filter(|(_, s)| !s.no_evict())
                .map(|(k, s)| (k, s.held))
                .max_by_key(|&(_, held)| held)
            else {
                break;
            };
            if held == 0 {
                break;
            }
            if let Some(s) = self.sessions.get(key) {
                tracing::warn!(
                    client = s.id.0,
                    peer = %s.peer(),
                    held,
                    total,
                    limit = cap,
                    "closing the client holding the most replies: all clients together hold \
                     more than limits.max_output_total"
                );
            }
            Metrics::inc(&METRICS.clients_over_output_total);
            self.close_session(key);
            mine -= held;
        }
        stats.output_bytes.store(mine as u64, Relaxed);
    }

    /// What other workers (and this one's sessions) left for this worker: clients
    /// `CLIENT KILL` chose, closed now; clients `CLIENT UNBLOCK` chose, unblocked at
    /// their nodes; `MONITOR` lines for its monitoring clients.
    #[cold]
    #[inline(never)]
    fn take_mail(&mut self) {
        let mail = self.worker.shared.clients.take_mail(self.worker.index);
        for (key, id) in mail.kills {
            if self.sessions.get(key).is_some_and(|s| s.id == id) {
                tracing::debug!(
                    worker = self.worker.index,
                    client = id.0,
                    "closing a client: CLIENT KILL"
                );
                self.close_session(key);
            }
        }
        for (key, id, how) in mail.unblocks {
            if let Some(session) = self.sessions.get_mut(key) {
                if session.id == id {
                    session.unblock(&mut self.worker, how);
                }
            }
        }
        let Some(lines) = mail.lines else {
            return;
        };
        for (key, id) in mail.monitoring {
            if let Some(session) = self.sessions.get_mut(key) {
                if session.id == id {
                    session.push_frame(lines.clone());
                    mark_dirty(session, key, &mut self.dirty);
                }
            }
        }
    }

    /// A reload swapped in a new configuration: the worker takes it, then every session
    /// (which keeps its connection; one whose user the reload removed or disabled is
    /// closed, logged), then the reload is told it is in force here.
    #[cold]
    #[inline(never)]
    fn take_config(&mut self) {
        self.worker.take_config();
        let config = self.worker.config.clone();
        let mut closing = Vec::new();
        for (key, session) in self.sessions.iter_mut() {
            if !session.reconfigure(&config) {
                tracing::info!(
                    client = session.id.0,
                    peer = %session.peer(),
                    user = %session.user_name_for_log(),
                    "closing a client: a reload removed or disabled its user"
                );
                closing.push(key);
            }
        }
        for key in closing {
            self.close_session(key);
        }
        self.worker.config_taken();
    }

    fn close_session(&mut self, key: usize) {
        if let Some(mut session) = self.sessions.try_remove(key) {
            session.leave_pubsub(&mut self.worker);
            self.worker.release_session(key, session.id.0);
            let _ = self.poll.registry().deregister(&mut session.stream);
            let buf = session.take_read_buffer();
            if buf.is_empty() {
                self.worker.give_read_buffer(buf);
            }
            METRICS.connections_open.fetch_sub(1, Relaxed);
            self.worker.shared.per_address.leave(session.peer().ip());
        }
    }

    /// Close the clients idle for longer than `timeout` (when configured), as Redis
    /// does; blocked, subscribed and monitoring clients are never idle. Once a second,
    /// at a watchdog tick: no timer per client.
    #[cold]
    fn close_idle(&mut self, now: Instant) {
        self.idle_check_at = now + Duration::from_secs(1);
        let Some(timeout) = self.worker.config.timeout else {
            return;
        };
        let idle: Vec<usize> = (self.sessions.iter_mut())
            .filter_map(|(key, s)| s.idle_longer_than(timeout).then_some(key))
            .collect();
        for key in idle {
            if let Some(s) = self.sessions.get(key) {
                tracing::debug!(client = s.id.0, peer = %s.peer(), "closing an idle client (timeout)");
            }
            self.close_session(key);
        }
    }

    /// Shutdown: accept no more clients; every session stops reading and ends once its
    /// replies are written.
    fn begin_stop(&mut self) {
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        if let Some((mut listener, _)) = self.tls_listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        let keys: Vec<usize> = self.sessions.iter().map(|(k, _)| k).collect();
        for key in keys {
            if let Some(session) = self.sessions.get_mut(key) {
                session.stop();
            }
            self.mark_dirty(key);
        }
        self.flush_sessions(Instant::now());
    }
}
