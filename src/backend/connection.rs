//! One backend connection: a task that owns the socket. It connects on first use,
//! writes everything queued in one syscall, keeps the in-flight requests in FIFO order
//! and hands each reply to the worker's decision point. When the socket dies every
//! in-flight request is answered with an error; requests that were never written go
//! back to the worker, which may retry them elsewhere.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::signal::LocalSignal;
use super::{BackendError, BackendRequest, NodeShared, Worker};
use crate::admin::{Metrics, METRICS};
use crate::cluster::NodeAddr;
use crate::config::BackendConfig;
use crate::protocol::reply::{encode_command, Proto};
use crate::protocol::scan::{Limits, ReplyScanner};

const ASKING: &[u8] = b"*1\r\n$6\r\nASKING\r\n";
const READ_CHUNK: usize = 16 * 1024;
const MAX_BACKOFF: Duration = Duration::from_secs(1);
const MIN_BACKOFF: Duration = Duration::from_millis(50);

/// The sending side of a connection, shared (on one thread) by the sessions that use it.
pub struct Conn {
    /// What all workers share about this node: its address, dial address, down state.
    pub node: Arc<NodeShared>,
    /// The announced address (for errors and logs).
    pub addr: NodeAddr,
    /// Requests not yet written. Sessions push; the connection task drains.
    queue: RefCell<VecDeque<BackendRequest>>,
    /// Fired when a request is queued (or the watchdog times the connection out); the
    /// connection task waits on it.
    queued: LocalSignal,
    /// Requests are in flight. Written by the connection task, read by the watchdog.
    busy: Cell<bool>,
    /// The worker's watchdog tick at which a reply last arrived (or the connection last
    /// went from idle to busy).
    progress: Cell<u64>,
    /// Set by the watchdog when `busy` and no progress for the backend timeout.
    timed_out: Cell<bool>,
}

impl Conn {
    pub fn new(node: Arc<NodeShared>) -> Conn {
        Conn {
            addr: node.addr.clone(),
            node,
            queue: RefCell::new(VecDeque::new()),
            queued: LocalSignal::default(),
            busy: Cell::new(false),
            progress: Cell::new(0),
            timed_out: Cell::new(false),
        }
    }

    /// The watchdog's check, once per tick: time the connection out when requests have
    /// waited `limit_ticks` with no reply.
    pub fn check_timeout(&self, now_tick: u64, limit_ticks: u64) {
        if self.busy.get() && now_tick.saturating_sub(self.progress.get()) > limit_ticks {
            self.timed_out.set(true);
            self.queued.fire();
        }
    }

    pub fn push(&self, req: BackendRequest) {
        self.queue.borrow_mut().push_back(req);
        self.queued.fire();
    }

    fn take_queued(&self) -> VecDeque<BackendRequest> {
        std::mem::take(&mut *self.queue.borrow_mut())
    }
}

/// An entry waiting for its reply, in the order the requests were written.
enum InFlight {
    /// The `+OK` of an `ASKING` written just before the request that follows it.
    AskingAck,
    Request(BackendRequest),
}

/// The connection task: runs for the life of the worker.
pub async fn run(worker: Rc<Worker>, conn: Rc<Conn>, proto: Proto) {
    let mut backoff = MIN_BACKOFF;
    loop {
        conn.queued.wait().await;
        if conn.queue.borrow().is_empty() {
            continue;
        }
        // After a failed connect (by any worker), requests fail at once for a while.
        if conn.node.is_down() {
            fail_queued(
                &worker,
                &conn,
                "recently failed; waiting before reconnecting",
            );
            continue;
        }
        let config = &worker.router.config.backend;
        let dial = &conn.node.dial;
        match connect(dial, proto, config).await {
            Err(reason) => {
                Metrics::inc(&METRICS.backend_connect_failures);
                tracing::warn!(node = %conn.addr, dial = %dial, %reason, "backend connect failed");
                conn.node.mark_down(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                fail_queued(&worker, &conn, &reason);
            }
            Ok(stream) => {
                Metrics::inc(&METRICS.backend_connects);
                tracing::debug!(node = %conn.addr, ?proto, "backend connected");
                conn.node.mark_up();
                backoff = MIN_BACKOFF;
                let mut io = Connection {
                    worker: &worker,
                    conn: &conn,
                    proto,
                    in_flight: VecDeque::new(),
                };
                let reason = io.serve(stream).await;
                tracing::warn!(node = %conn.addr, %reason, "backend connection closed");
                io.fail_in_flight(&reason);
                // Anything queued meanwhile goes out on the next connection.
                if !conn.queue.borrow().is_empty() {
                    conn.queued.fire();
                }
            }
        }
    }
}

/// Hand back everything queued as never sent.
fn fail_queued(worker: &Rc<Worker>, conn: &Conn, reason: &str) {
    let err = BackendError::Unreachable {
        addr: conn.addr.clone(),
        reason: reason.to_string(),
    };
    for req in conn.take_queued() {
        worker.unsent(req, err.clone());
    }
}

/// Dial, then authenticate and pick the protocol. Errors are the reason as text.
pub async fn connect(
    dial: &NodeAddr,
    proto: Proto,
    config: &BackendConfig,
) -> Result<TcpStream, String> {
    let mut stream =
        tokio::time::timeout(config.connect_timeout, TcpStream::connect(dial.as_str()))
            .await
            .map_err(|_| format!("connect timed out after {:?}", config.connect_timeout))?
            .map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;

    let user = config.username.as_deref().unwrap_or("default");
    let hello = match (proto, &config.password) {
        (Proto::Resp3, Some(pass)) => Some(encode_command(&[
            b"HELLO",
            b"3",
            b"AUTH",
            user.as_bytes(),
            pass.as_bytes(),
        ])),
        (Proto::Resp3, None) => Some(encode_command(&[b"HELLO", b"3"])),
        (Proto::Resp2, Some(pass)) => {
            Some(encode_command(&[b"AUTH", user.as_bytes(), pass.as_bytes()]))
        }
        (Proto::Resp2, None) => None,
    };
    if let Some(hello) = hello {
        let reply = tokio::time::timeout(
            config.connect_timeout.max(Duration::from_secs(1)),
            exchange(&mut stream, &hello),
        )
        .await
        .map_err(|_| "handshake timed out".to_string())??;
        if reply.first() == Some(&b'-') {
            let text = String::from_utf8_lossy(&reply[1..]);
            return Err(format!("handshake refused: {}", text.trim_end()));
        }
    }
    Ok(stream)
}

/// Read what the socket has now, if anything: `None` when it has nothing (the readiness
/// was spurious). Unlike `try_read_buf`, a short read clears the socket's readiness, so
/// the next wait goes to epoll instead of costing a read that returns `EAGAIN`.
pub fn poll_read_once(
    stream: &mut TcpStream,
    cx: &mut std::task::Context<'_>,
    buf: &mut BytesMut,
) -> Option<io::Result<usize>> {
    match tokio_util::io::poll_read_buf(std::pin::Pin::new(stream), cx, buf) {
        std::task::Poll::Ready(result) => Some(result),
        std::task::Poll::Pending => None,
    }
}

/// [`poll_read_once`] as a future that resolves at once.
async fn read_now(stream: &mut TcpStream, buf: &mut BytesMut) -> Option<io::Result<usize>> {
    std::future::poll_fn(|cx| std::task::Poll::Ready(poll_read_once(stream, cx, buf))).await
}

/// Write one request and read one complete reply (its raw bytes).
pub async fn exchange(stream: &mut TcpStream, request: &[u8]) -> Result<BytesMut, String> {
    stream.write_all(request).await.map_err(|e| e.to_string())?;
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut scanner = ReplyScanner::new(Limits::default());
    loop {
        if stream.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
            return Err("closed before replying".to_string());
        }
        match scanner.scan(&buf) {
            Ok(Some(len)) => return Ok(buf.split_to(len)),
            Ok(None) => buf.reserve(scanner.bytes_needed(buf.len()).max(READ_CHUNK)),
            Err(e) => return Err(format!("bad reply: {e}")),
        }
    }
}

struct Connection<'a> {
    worker: &'a Rc<Worker>,
    conn: &'a Conn,
    proto: Proto,
    in_flight: VecDeque<InFlight>,
}

impl Connection<'_> {
    /// Serve until the socket fails; returns the reason.
    async fn serve(&mut self, mut stream: TcpStream) -> String {
        let limits = self.worker.router.config.limits;
        let timeout = self.worker.router.config.backend.timeout;
        let mut scanner = ReplyScanner::new(limits);
        let mut rbuf = BytesMut::new();
        let mut wbuf = BytesMut::new();
        self.conn.timed_out.set(false);

        loop {
            // Drained in place (nothing below queues on this connection), so the queue
            // keeps its buffer.
            if !self.conn.queue.borrow().is_empty() {
                let mut queued = self.conn.queue.borrow_mut();
                if self.in_flight.is_empty() {
                    self.conn.progress.set(self.worker.tick());
                }
                for req in queued.drain(..) {
                    if req.asking {
                        wbuf.extend_from_slice(ASKING);
                        self.in_flight.push_back(InFlight::AskingAck);
                    }
                    wbuf.extend_from_slice(&req.bytes);
                    self.in_flight.push_back(InFlight::Request(req));
                }
            }
            self.conn.busy.set(!self.in_flight.is_empty());
            while !wbuf.is_empty() {
                match stream.try_write(&wbuf) {
                    Ok(n) => wbuf.advance(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if let Err(e) = std::future::poll_fn(|cx| stream.poll_write_ready(cx)).await
                        {
                            return format!("write: {e}");
                        }
                    }
                    Err(e) => return format!("write: {e}"),
                }
            }
            if wbuf.capacity() > 4 * READ_CHUNK {
                wbuf = BytesMut::new();
            }
            tokio::select! {
                biased;
                // poll_read_ready uses the socket's own waker slot: no waiter list, no lock.
                ready = std::future::poll_fn(|cx| stream.poll_read_ready(cx)) => {
                    if let Err(e) = ready {
                        return format!("read: {e}");
                    }
                    rbuf.reserve(scanner.bytes_needed(rbuf.len()).max(READ_CHUNK));
                    match read_now(&mut stream, &mut rbuf).await {
                        None => {}
                        Some(Ok(0)) => return "closed by the node".into(),
                        Some(Ok(_)) => {
                            self.conn.progress.set(self.worker.tick());
                            if let Err(reason) = self.take_replies(&mut scanner, &mut rbuf) {
                                return reason;
                            }
                            if rbuf.is_empty() && rbuf.capacity() > 4 * READ_CHUNK {
                                rbuf = BytesMut::new();
                            }
                        }
                        Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Some(Err(e)) => return format!("read: {e}"),
                    }
                }
                _ = self.conn.queued.wait() => {
                    if self.conn.timed_out.get() {
                        for entry in self.in_flight.drain(..) {
                            if let InFlight::Request(req) = entry {
                                req.reply.send(Err(BackendError::Timeout {
                                    addr: self.conn.addr.clone(),
                                    millis: timeout.as_millis(),
                                }));
                            }
                        }
                        self.conn.busy.set(false);
                        return format!("no reply within {timeout:?}");
                    }
                }
            }
        }
    }

    /// Hand every complete reply in `rbuf` to the worker, in order.
    fn take_replies(
        &mut self,
        scanner: &mut ReplyScanner,
        rbuf: &mut BytesMut,
    ) -> Result<(), String> {
        loop {
            let len = match scanner.scan(rbuf) {
                Ok(Some(len)) => len,
                Ok(None) => return Ok(()),
                Err(e) => return Err(format!("bad reply: {e}")),
            };
            let frame = rbuf.split_to(len).freeze();
            if self.proto == Proto::Resp3 && frame[0] == b'>' {
                // An out-of-band push on a shared connection answers no request.
                tracing::debug!(node = %self.conn.addr, "dropped a push message on a shared connection");
                continue;
            }
            match self.in_flight.pop_front() {
                Some(InFlight::AskingAck) => {}
                Some(InFlight::Request(req)) => self.worker.complete(req, frame, &self.conn.addr),
                None => return Err("reply with no request waiting".into()),
            }
        }
    }

    fn fail_in_flight(&mut self, reason: &str) {
        self.conn.busy.set(false);
        if !self.in_flight.is_empty() {
            Metrics::inc(&METRICS.backend_connections_lost);
        }
        for entry in self.in_flight.drain(..) {
            if let InFlight::Request(req) = entry {
                req.reply.send(Err(BackendError::Lost {
                    addr: self.conn.addr.clone(),
                    reason: reason.to_string(),
                }));
            }
        }
    }
}
