//! The contract between a session and the connections serving it. The session's
//! [`ReplyQueue`] holds one place per request in request order and the client's socket
//! for writing; a [`ReplyTo`] fills one place, exactly once.
//!
//! Replies leave from the front of the queue only. When a connection completes the front
//! of a queue, the queue is marked for flushing; one flusher task per worker then writes
//! every marked queue once, after the connection tasks already scheduled have delivered
//! theirs. So a client whose pipeline spans several nodes gets one write per turn of the
//! event loop, and no session task is woken per reply.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;

use bytes::{Buf, Bytes, BytesMut};
use tokio::net::TcpStream;

use super::signal::LocalSignal;
use super::{BackendError, ReplyResult};
use crate::admin::{Metrics, METRICS};
use crate::protocol::reply::{Proto, ReplyWriter};

/// A write buffer bigger than this is given back once it is empty.
const KEEP_WRITE_BUFFER: usize = 4096;

/// A session's replies in request order, and the client socket they go out on. Lives
/// on the session's worker thread.
pub struct ReplyQueue {
    inner: RefCell<Places>,
    client: RefCell<Client>,
    /// Fired when the session has something to do: the front was filled outside a
    /// delivery batch, a write would block, the client failed, the queue drained while
    /// closing, or the worker asks it to stop. The session task waits on it.
    pub wake: LocalSignal,
    /// Set by the worker on shutdown: read no more requests.
    stop: Cell<bool>,
    /// Set by the session once it reads no more: wake it when the queue drains.
    closing: Cell<bool>,
    /// Already in this thread's list of queues to flush.
    dirty: Cell<bool>,
}

struct Places {
    /// `None` while the reply is still on its way.
    places: VecDeque<Option<ReplyResult>>,
    /// Sequence number of the front place.
    front_seq: u64,
}

struct Client {
    stream: TcpStream,
    wbuf: BytesMut,
    proto: Proto,
    /// The socket would block: the session waits for it to be writable and flushes.
    blocked: bool,
    /// Writing failed: the session ends.
    failed: bool,
}

/// What [`ReplyQueue::flush`] left behind.
#[derive(Debug, PartialEq, Eq)]
pub enum Flushed {
    /// Everything ready was written.
    Done,
    /// Some bytes wait for the socket to become writable.
    Blocked,
    /// The client is gone.
    Failed,
}

thread_local! {
    /// Queues whose front was completed since the flusher last ran, on this worker.
    static DIRTY: RefCell<Vec<Rc<ReplyQueue>>> = const { RefCell::new(Vec::new()) };
    /// Wakes this worker's flusher task.
    static FLUSH_WANTED: Rc<LocalSignal> = Rc::new(LocalSignal::default());
}

/// Write every queue marked since the last call (see [`run_flusher`]).
pub fn flush_dirty() {
    let dirty = DIRTY.with(|d| std::mem::take(&mut *d.borrow_mut()));
    for queue in dirty {
        queue.dirty.set(false);
        if queue.flush() != Flushed::Done {
            queue.wake.fire();
        }
    }
}

/// The worker's flusher task: runs for the life of the worker.
pub async fn run_flusher() {
    let wanted = FLUSH_WANTED.with(Rc::clone);
    loop {
        wanted.wait().await;
        flush_dirty();
    }
}

impl ReplyQueue {
    pub fn new(stream: TcpStream) -> ReplyQueue {
        ReplyQueue {
            inner: RefCell::new(Places {
                places: VecDeque::new(),
                front_seq: 0,
            }),
            client: RefCell::new(Client {
                stream,
                wbuf: BytesMut::new(),
                proto: Proto::Resp2,
                blocked: false,
                failed: false,
            }),
            wake: LocalSignal::default(),
            stop: Cell::new(false),
            closing: Cell::new(false),
            dirty: Cell::new(false),
        }
    }

    /// Reserve the next place; the returned handle fills it.
    pub fn reserve(self: &Rc<Self>) -> ReplyTo {
        let mut inner = self.inner.borrow_mut();
        let seq = inner.front_seq + inner.places.len() as u64;
        inner.places.push_back(None);
        ReplyTo {
            queue: Some(self.clone()),
            seq,
        }
    }

    /// Queue a reply that is ready now (made by the proxy itself).
    pub fn push_ready(&self, reply: Bytes) {
        self.inner.borrow_mut().places.push_back(Some(Ok(reply)));
    }

    /// Ask the session to stop reading (shutdown) and wake it.
    pub fn request_stop(&self) {
        self.stop.set(true);
        self.wake.fire();
    }

    pub fn stop_requested(&self) -> bool {
        self.stop.get()
    }

    /// The session reads no more requests; it ends once the queue is empty.
    pub fn set_closing(&self) {
        self.closing.set(true);
    }

    pub fn is_closing(&self) -> bool {
        self.closing.get()
    }

    /// The client's protocol: replies made here (errors) are written in it.
    pub fn set_proto(&self, proto: Proto) {
        self.client.borrow_mut().proto = proto;
    }

    pub fn proto(&self) -> Proto {
        self.client.borrow().proto
    }

    pub fn len(&self) -> usize {
        self.inner.borrow().places.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.borrow().places.is_empty()
    }

    /// Run `f` with the client socket (the session reads through this).
    pub fn with_stream<T>(&self, f: impl FnOnce(&mut TcpStream) -> T) -> T {
        f(&mut self.client.borrow_mut().stream)
    }

    /// Wait until a blocked write can go on (the session task does this).
    pub async fn writable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.client.borrow().stream.poll_write_ready(cx)).await?;
        self.client.borrow_mut().blocked = false;
        Ok(())
    }

    /// Write every reply that is ready at the front, in order, in one write.
    pub fn flush(&self) -> Flushed {
        let mut client = self.client.borrow_mut();
        let client = &mut *client;
        if client.failed {
            return Flushed::Failed;
        }
        {
            let mut inner = self.inner.borrow_mut();
            while let Some(Some(_)) = inner.places.front() {
                if let Some(Some(reply)) = inner.places.pop_front() {
                    match reply {
                        Ok(bytes) => client.wbuf.extend_from_slice(&bytes),
                        Err(e) => {
                            Metrics::inc(&METRICS.proxy_errors);
                            ReplyWriter {
                                out: &mut client.wbuf,
                                proto: client.proto,
                            }
                            .error(&format!("ERR slotgate: {e}"));
                        }
                    }
                }
                inner.front_seq += 1;
            }
            if inner.places.is_empty() && self.closing.get() {
                self.wake.fire();
            }
        }
        if client.blocked {
            return Flushed::Blocked;
        }
        while !client.wbuf.is_empty() {
            match client.stream.try_write(&client.wbuf) {
                Ok(n) => client.wbuf.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    client.blocked = true;
                    return Flushed::Blocked;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "client write failed");
                    client.failed = true;
                    return Flushed::Failed;
                }
            }
        }
        if client.wbuf.capacity() > KEEP_WRITE_BUFFER {
            client.wbuf = BytesMut::new();
        }
        Flushed::Done
    }

    /// Fill place `seq`; true when that completed the front.
    fn fill(&self, seq: u64, reply: ReplyResult) -> bool {
        let mut inner = self.inner.borrow_mut();
        let Some(index) = seq.checked_sub(inner.front_seq) else {
            return false;
        };
        match inner.places.get_mut(index as usize) {
            Some(place) => {
                *place = Some(reply);
                index == 0
            }
            None => false,
        }
    }

    /// The front was completed: mark the queue for the worker's flusher.
    fn front_completed(self: Rc<Self>) {
        if !self.dirty.replace(true) {
            DIRTY.with(|d| d.borrow_mut().push(self));
            FLUSH_WANTED.with(|s| s.fire());
        }
    }
}

/// Fills one place of a [`ReplyQueue`]. Dropping it unfilled fills the place with
/// [`BackendError::Dropped`], so no client waits for a reply that cannot come.
pub struct ReplyTo {
    queue: Option<Rc<ReplyQueue>>,
    seq: u64,
}

impl ReplyTo {
    pub fn send(mut self, reply: ReplyResult) {
        if let Some(queue) = self.queue.take() {
            if queue.fill(self.seq, reply) {
                queue.front_completed();
            }
        }
    }
}

impl Drop for ReplyTo {
    fn drop(&mut self) {
        if let Some(queue) = self.queue.take() {
            if queue.fill(self.seq, Err(BackendError::Dropped)) {
                queue.front_completed();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A queue on one end of a loopback connection, and the other end.
    async fn queue_and_peer() -> (Rc<ReplyQueue>, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Rc::new(ReplyQueue::new(server)), client)
    }

    async fn read_exactly(peer: &mut TcpStream, n: usize) -> String {
        let mut buf = vec![0u8; n];
        peer.read_exact(&mut buf).await.unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn replies_leave_in_request_order_and_drops_resolve() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (q, mut peer) = queue_and_peer().await;
            let a = q.reserve();
            let b = q.reserve();
            q.push_ready(Bytes::from_static(b"+local\r\n"));
            let c = q.reserve();
            // Completing a later place writes nothing: the front is still missing.
            b.send(Ok(Bytes::from_static(b"+b\r\n")));
            flush_dirty();
            assert_eq!(q.len(), 4);
            // Completing the front marks the queue; one flush writes every ready reply.
            a.send(Ok(Bytes::from_static(b"+a\r\n")));
            flush_dirty();
            assert_eq!(read_exactly(&mut peer, 16).await, "+a\r\n+b\r\n+local\r\n");
            // A dropped handle answers with an error, in its place.
            drop(c);
            flush_dirty();
            let text = read_exactly(&mut peer, 67).await;
            assert!(text.starts_with("-ERR slotgate: request dropped"), "{text}");
            assert!(q.is_empty());
        });
    }
}
