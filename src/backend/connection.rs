//! One backend connection, driven by its worker's event loop. It connects on first use,
//! authenticates, writes everything queued in one syscall per turn of the loop, keeps
//! the in-flight requests in FIFO order and hands each reply back in that order. Its
//! worker's [`super::NodeConnections`] decides what happens on failure: in-flight
//! requests are answered with an error, requests never written are reported as unsent,
//! to be retried elsewhere.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use mio::{Interest, Registry, Token};

use super::handshake::{Handshake, HandshakeError, Reply, Step};
use super::{BackendRequest, NodeShared, ReplyDeadline};
use crate::cluster::NodeAddr;
use crate::config::BackendTls;
use crate::net::{read_some, write_all_now, ReadSome, Transport, Written};
use crate::protocol::reply::Proto;
use crate::protocol::scan::{parse_int, Limits, ProtocolError, ReplyScanner};

const ASKING: &[u8] = b"*1\r\n$6\r\nASKING\r\n";
/// Asked by a pinned connection once connected: `CLIENT UNBLOCK` at the node needs it.
const CLIENT_ID: &[u8] = b"*2\r\n$6\r\nCLIENT\r\n$2\r\nID\r\n";
/// Buffers bigger than this are given back once empty.
const KEEP_BUFFER: usize = 64 * 1024;
/// One turn of the event loop reads at most this much from one connection; the rest
/// waits for the next turn, so a node streaming big replies for one client does not
/// keep the worker from the others (the limit is checked between reads).
pub const READ_PER_TURN: usize = 256 * 1024;

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// No socket; the next request queued makes one.
    Idle,
    /// The TCP connect is under way.
    Connecting,
    /// Connected; the `HELLO`/`AUTH` reply is awaited. Requests wait in the queue.
    Handshaking,
    /// Requests go out as they come.
    Ready,
}

/// Why a connection failed. The worker adds which node, as the reason of a
/// [`BackendError`](super::BackendError) (`backend {addr}: ...`) and in its log line.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("resolving {dial}: {source}")]
    Resolve { dial: NodeAddr, source: io::Error },
    #[error("resolving {dial}: no address")]
    NoAddress { dial: NodeAddr },
    /// The last lookup failed (the refresher tries again after every refresh).
    #[error("resolving {dial}: {reason}")]
    Unresolved { dial: NodeAddr, reason: String },
    /// Opening or registering the socket, or the connect itself, failed.
    #[error("{0}")]
    Connect(#[source] io::Error),
    /// The TLS handshake failed (the node's certificate refused, ours refused, ...).
    #[error("tls handshake: {0}")]
    TlsHandshake(#[source] io::Error),
    /// No name to check the node's certificate against.
    #[error("tls: {0}")]
    Tls(String),
    #[error("no socket")]
    NoSocket,
    #[error("write: {0}")]
    Write(#[source] io::Error),
    #[error("read: {0}")]
    Read(#[source] io::Error),
    #[error("closed by the node")]
    Closed,
    #[error("bad reply: {0}")]
    BadReply(#[source] ProtocolError),
    #[error("reply with no request waiting")]
    Unexpected,
}

/// An entry waiting for its reply, in the order the requests were written.
enum InFlight {
    /// The reply to one step of the connection's handshake (`HELLO`/`AUTH`).
    Handshake(Step),
    /// The `+OK` of an `ASKING` written just before the request that follows it.
    AskingAck,
    /// The reply to a pinned connection's `CLIENT ID`, written right after the handshake
    /// (requests do not wait for it).
    ClientId,
    Request(BackendRequest),
}

/// What a read brought.
pub enum ReadOutcome {
    /// Replies were handed out (maybe none); the socket has nothing more for now.
    Open,
    /// The handshake completed: queued requests may go.
    HandshakeDone,
    /// The node refused the handshake, e.g. a wrong password.
    HandshakeRefused(HandshakeError),
    /// The socket is dead.
    Failed(ConnError),
}

/// Who a connection serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Every client of the worker: requests are multiplexed, replies matched in order.
    Shared,
    /// One client (its session key and client id) while its request waits (a blocking
    /// command); then back to [`Owner::Spare`].
    Pinned { session: usize, client: u64 },
    /// A pinned connection between owners, kept open for the next one.
    Spare,
    /// The worker's pub/sub hub (`dispatch::pubsub`): it writes (un)subscribe commands
    /// and every frame read after the handshake is handed to it as it comes (messages,
    /// confirmations, errors), never matched to a request.
    Subscriber,
}

pub struct Conn {
    /// Whom the connection serves.
    pub owner: Owner,
    /// What all workers share about this node: its address, dial address, down state.
    pub node: Arc<NodeShared>,
    /// The node's index among its worker's nodes.
    pub node_index: usize,
    pub proto: Proto,
    pub token: Token,
    pub state: State,
    stream: Option<Transport>,
    /// Requests not yet written, in order.
    pub queue: VecDeque<BackendRequest>,
    in_flight: VecDeque<InFlight>,
    wbuf: Vec<u8>,
    rbuf: BytesMut,
    scanner: ReplyScanner,
    /// A write would block: wait for the socket to become writable.
    write_blocked: bool,
    /// In the worker's list of connections to flush at the end of this turn.
    pub dirty: bool,
    /// The worker's watchdog tick at which a reply last arrived (or the connection last
    /// went from idle to busy, or the connect started).
    pub progress: u64,
    /// The last read stopped at [`READ_PER_TURN`]: the socket may hold more, and no new
    /// readiness event will say so (edge-triggered).
    pub unread: bool,
    /// Push frames read for the client this connection is pinned to, in order; on a
    /// [`Owner::Subscriber`] connection, every frame read after the handshake.
    pub pushed: Vec<Bytes>,
    /// A subscriber connection's commands, written once it is ready (their replies come
    /// as frames in `pushed`).
    pub commands: Vec<u8>,
    /// The node's id for this connection (`CLIENT ID`), asked by a pinned connection
    /// when it connects (`CLIENT UNBLOCK` of its client names it); `None` until then,
    /// and when the node refuses to say.
    pub node_client_id: Option<i64>,
}

impl Conn {
    pub fn new(
        node: Arc<NodeShared>,
        node_index: usize,
        proto: Proto,
        token: Token,
        limits: Limits,
    ) -> Conn {
        Conn {
            owner: Owner::Shared,
            node,
            node_index,
            proto,
            token,
            state: State::Idle,
            stream: None,
            queue: VecDeque::new(),
            in_flight: VecDeque::new(),
            wbuf: Vec::new(),
            rbuf: BytesMut::new(),
            scanner: ReplyScanner::new(limits),
            write_blocked: false,
            dirty: false,
            progress: 0,
            unread: false,
            pushed: Vec::new(),
            commands: Vec::new(),
            node_client_id: None,
        }
    }

    pub fn addr(&self) -> &NodeAddr {
        &self.node.addr
    }

    /// Requests are written and wait for replies.
    pub fn busy(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// Nothing written waits for a reply and nothing waits to be written.
    pub fn is_quiet(&self) -> bool {
        self.in_flight.is_empty() && self.queue.is_empty()
    }

    /// The reply deadline of the oldest entry in flight (the handshake and `ASKING` have
    /// the backend's); `None` when nothing is in flight.
    pub fn front_deadline(&self) -> Option<ReplyDeadline> {
        match self.in_flight.front()? {
            InFlight::Request(req) => Some(req.deadline),
            InFlight::Handshake(_) | InFlight::AskingAck | InFlight::ClientId => {
                Some(ReplyDeadline::Backend)
            }
        }
    }

    /// A request of place sequence number `seq` is written and waits for its reply.
    pub fn awaits(&self, seq: u64) -> bool {
        self.in_flight
            .iter()
            .any(|e| matches!(e, InFlight::Request(req) if req.reply.place().seq == seq))
    }

    /// A request of place sequence number `seq` is written or waits to be.
    pub fn carries(&self, seq: u64) -> bool {
        self.awaits(seq) || self.queue.iter().any(|req| req.reply.place().seq == seq)
    }

    /// Start a non-blocking connect to the node's dial address, in TLS when `tls` is
    /// configured (`[backend.tls]`).
    pub fn start_connect(
        &mut self,
        registry: &Registry,
        tick: u64,
        tls: Option<&BackendTls>,
    ) -> Result<(), ConnError> {
        let addr = resolve(&self.node)?;
        let mut stream = match tls {
            None => Transport::connect(addr),
            Some(tls) => {
                let name = tls.name_for(&self.node.dial()).map_err(ConnError::Tls)?;
                Transport::connect_tls(addr, tls.client.clone(), name)
            }
        }
        .map_err(ConnError::Connect)?;
        registry
            .register(
                &mut stream,
                self.token,
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(ConnError::Connect)?;
        self.stream = Some(stream);
        self.state = State::Connecting;
        self.progress = tick;
        Ok(())
    }

    /// After an event on a connecting socket: `Ok(true)` once connected, and past the
    /// TLS handshake on a TLS connection (then the handshake's commands, if any, are
    /// written next), `Ok(false)` while still connecting.
    pub fn finish_connect(
        &mut self,
        handshake: Handshake<'_>,
        tick: u64,
    ) -> Result<bool, ConnError> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(ConnError::NoSocket);
        };
        if let Some(e) = stream.take_error().map_err(ConnError::Connect)? {
            return Err(ConnError::Connect(e));
        }
        match stream.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(false),
            Err(e) => return Err(ConnError::Connect(e)),
        }
        stream.set_nodelay(true).map_err(ConnError::Connect)?;
        if !stream.handshake().map_err(ConnError::TlsHandshake)? {
            return Ok(false);
        }
        self.progress = tick;
        let steps = handshake.steps();
        if !steps.is_empty() {
            self.wbuf.extend_from_slice(&handshake.encode());
            let entries = steps.iter().map(|&step| InFlight::Handshake(step));
            self.in_flight.extend(entries);
        }
        self.state = if steps.is_empty() {
            State::Ready
        } else {
            State::Handshaking
        };
        if let Owner::Pinned { .. } = self.owner {
            self.wbuf.extend_from_slice(CLIENT_ID);
            self.in_flight.push_back(InFlight::ClientId);
        }
        Ok(true)
    }

    /// Move the queued requests into the write buffer (when the connection is ready).
    pub fn take_queue(&mut self, tick: u64) {
        if self.state != State::Ready || self.queue.is_empty() {
            self.take_commands();
            return;
        }
        if self.in_flight.is_empty() {
            self.progress = tick;
        }
        for req in self.queue.drain(..) {
            if req.asking {
                self.wbuf.extend_from_slice(ASKING);
                self.in_flight.push_back(InFlight::AskingAck);
            }
            self.wbuf.extend_from_slice(&req.bytes);
            self.in_flight.push_back(InFlight::Request(req));
        }
    }

    /// Move a subscriber connection's commands into the write buffer, once it is ready.
    fn take_commands(&mut self) {
        if self.state == State::Ready && !self.commands.is_empty() {
            self.wbuf.extend_from_slice(&self.commands);
            self.commands.clear();
        }
    }

    /// Write what the write buffer holds, until done or the socket would block; true
    /// when something was written.
    pub fn write_out(&mut self) -> Result<bool, ConnError> {
        if self.write_blocked {
            return Ok(false);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(ConnError::NoSocket);
        };
        // An empty buffer still flushes what TLS holds (it was blocked, now writable).
        if self.wbuf.is_empty() && !stream.wants_write() {
            return Ok(false);
        }
        let (written, end) = write_all_now(stream, &self.wbuf);
        match end {
            Written::All => {}
            Written::Blocked => self.write_blocked = true,
            Written::Failed(e) => return Err(ConnError::Write(e)),
        }
        self.wbuf.drain(..written);
        if self.wbuf.is_empty() && self.wbuf.capacity() > KEEP_BUFFER {
            self.wbuf = Vec::new();
        }
        Ok(written > 0)
    }

    /// The socket became writable again.
    pub fn writable(&mut self) {
        self.write_blocked = false;
    }

    /// Read what the socket has and hand every complete reply to `out` with its
    /// request, in order. `scratch` is the worker's read buffer.
    pub fn read_in(
        &mut self,
        scratch: &mut [u8],
        out: &mut Vec<(BackendRequest, Bytes)>,
        tick: u64,
    ) -> ReadOutcome {
        let Some(stream) = self.stream.as_mut() else {
            return ReadOutcome::Open;
        };
        let mut outcome = ReadOutcome::Open;
        let mut read = 0;
        self.unread = false;
        loop {
            if read >= READ_PER_TURN {
                self.unread = true;
                break;
            }
            let n = match read_some(stream, scratch) {
                ReadSome::Data(n) => n,
                ReadSome::Drained => break,
                ReadSome::Closed => return ReadOutcome::Failed(ConnError::Closed),
                ReadSome::Failed(e) => return ReadOutcome::Failed(ConnError::Read(e)),
            };
            read += n;
            // Room for the rest of a big reply in one allocation of the size it needs:
            // its frame is not copied again as the buffer doubles, and holds no more
            // memory than its length while it waits for its client.
            let need = n.max(self.scanner.bytes_needed(self.rbuf.len()));
            if need > n && self.rbuf.capacity() - self.rbuf.len() < need {
                let mut exact = BytesMut::with_capacity(self.rbuf.len() + need);
                exact.extend_from_slice(&self.rbuf);
                self.rbuf = exact;
            }
            self.rbuf.extend_from_slice(&scratch[..n]);
            self.progress = tick;
            loop {
                let len = match self.scanner.scan(&self.rbuf) {
                    Ok(Some(len)) => len,
                    Ok(None) => break,
                    Err(e) => return ReadOutcome::Failed(ConnError::BadReply(e)),
                };
                let frame = self.rbuf.split_to(len).freeze();
                if self.proto == Proto::Resp3 && frame[0] == b'>' {
                    // An out-of-band push answers no request: it is for the client a
                    // pinned connection serves; on a shared one it is no one's.
                    if let Owner::Pinned { .. } = self.owner {
                        self.pushed.push(frame);
                    } else {
                        tracing::debug!(node = %self.node.addr, "dropped a push message on a shared connection");
                    }
                    continue;
                }
                match self.in_flight.pop_front() {
                    Some(InFlight::Request(req)) => out.push((req, frame)),
                    Some(InFlight::AskingAck) => {}
                    Some(InFlight::Handshake(step)) => {
                        if let Err(refused) = step.read_reply(Reply::from_wire(&frame)) {
                            return ReadOutcome::HandshakeRefused(refused);
                        }
                        if !matches!(self.in_flight.front(), Some(InFlight::Handshake(_))) {
                            self.state = State::Ready;
                            outcome = ReadOutcome::HandshakeDone;
                        }
                    }
                    Some(InFlight::ClientId) => {
                        // An error (a user not allowed `CLIENT`) leaves it unknown.
                        self.node_client_id = frame
                            .strip_prefix(b":")
                            .and_then(|rest| rest.strip_suffix(b"\r\n"))
                            .and_then(parse_int);
                    }
                    // Nothing is ever in flight on a subscriber connection once it is
                    // ready: every frame is for the hub.
                    None if self.owner == Owner::Subscriber => self.pushed.push(frame),
                    None => return ReadOutcome::Failed(ConnError::Unexpected),
                }
            }
            // A short read emptied the socket: with edge-triggered readiness the next
            // bytes bring a new event, so no read that would only say EAGAIN.
            if n < scratch.len() {
                break;
            }
        }
        if self.rbuf.is_empty() && self.rbuf.capacity() > KEEP_BUFFER {
            self.rbuf = BytesMut::new();
        }
        outcome
    }

    /// Close the socket. The requests in flight are returned (they may or may not have
    /// run); the queue is kept for the next connection.
    pub fn close(&mut self, registry: &Registry) -> Vec<BackendRequest> {
        if let Some(mut stream) = self.stream.take() {
            let _ = registry.deregister(&mut stream);
        }
        self.state = State::Idle;
        self.unread = false;
        self.wbuf.clear();
        self.commands.clear();
        self.rbuf = BytesMut::new();
        self.scanner.reset();
        self.write_blocked = false;
        self.node_client_id = None;
        self.in_flight
            .drain(..)
            .filter_map(|entry| match entry {
                InFlight::Request(req) => Some(req),
                _ => None,
            })
            .collect()
    }
}

/// The socket address to dial: an IP literal as is; a host name as the refresher last
/// found it, or else through the system resolver (which blocks this worker, so it is
/// only the fallback for a node the refresher has not seen yet). A name whose last
/// lookup failed fails at once: the refresher looks it up again after every refresh.
fn resolve(node: &NodeShared) -> Result<SocketAddr, ConnError> {
    if let Some(addr) = node.dial_ip().or_else(|| node.resolved()) {
        return Ok(addr);
    }
    let dial = &*node.dial();
    if let Some(reason) = node.unresolved() {
        return Err(ConnError::Unresolved {
            dial: dial.clone(),
            reason,
        });
    }
    let by = "worker (blocking)";
    let found: Vec<SocketAddr> = match dial.as_str().to_socket_addrs() {
        Ok(found) => found.collect(),
        Err(source) => {
            node.set_unresolved(&source.to_string(), by);
            return Err(ConnError::Resolve {
                dial: dial.clone(),
                source,
            });
        }
    };
    let Some(addr) = prefer_ipv4(&found) else {
        node.set_unresolved("no address", by);
        return Err(ConnError::NoAddress { dial: dial.clone() });
    };
    node.set_resolved(addr, by);
    Ok(addr)
}

/// The address to use among a name's addresses: the first IPv4 one when there is one
/// (`localhost` often has `::1` too, where a node bound to 127.0.0.1 is not).
pub fn prefer_ipv4(found: &[SocketAddr]) -> Option<SocketAddr> {
    found
        .iter()
        .find(|a| a.is_ipv4())
        .or(found.first())
        .copied()
}
