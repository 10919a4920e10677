//! One task per client: read and frame requests, route each, and write the replies back
//! strictly in request order, one write per batch of ready replies.

mod local;

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;

use crate::admin::{Metrics, METRICS};
use crate::backend::connection::poll_read_once;
use crate::backend::reply::Flushed;
use crate::backend::{BackendRequest, ReplyQueue, Target, Worker};
use crate::command::learned::LearnedRoute;
use crate::command::{classify, CommandError, Route};
use crate::protocol::reply::{Proto, ReplyWriter};
use crate::protocol::scan::{Request, RequestScanner};
use crate::slot::Slot;

/// Identifies a client connection (`CLIENT ID`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientId(pub u64);

const READ_CHUNK: usize = 16 * 1024;

/// Per-client state.
struct Session {
    worker: Rc<Worker>,
    id: ClientId,
    peer: SocketAddr,
    local_addr: SocketAddr,
    name: Option<Bytes>,
    lib_name: Option<Bytes>,
    lib_ver: Option<Bytes>,
    /// Replies in request order; connections fill their places. Also says whether the
    /// session is closing (QUIT, protocol error, shutdown): then no more requests are
    /// read and the session ends once the pending replies are written.
    replies: Rc<ReplyQueue>,
}

/// Serve one client until it disconnects or the proxy closes it. On shutdown (the
/// worker's `stop_sessions`) the session reads no more requests, writes the replies
/// still owed, and ends. Buffers exist only while there is something in them, so an
/// idle client costs little memory.
pub async fn run(worker: Rc<Worker>, stream: TcpStream, id: ClientId) {
    let peer = stream
        .peer_addr()
        .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into());
    let local_addr = stream
        .local_addr()
        .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into());
    let replies = Rc::new(ReplyQueue::new(stream));
    worker.session_opened(id.0, replies.clone());
    let session = Session {
        worker: worker.clone(),
        id,
        peer,
        local_addr,
        name: None,
        lib_name: None,
        lib_ver: None,
        replies,
    };
    session.serve().await;
    worker.session_closed(id.0);
    METRICS
        .connections_open
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
}

impl Session {
    /// The session loop: write what is ready, then wait for the client or for a wake-up
    /// (replies the connections could not write themselves, shutdown).
    async fn serve(mut self) {
        let max_pipeline = self.worker.router.config.max_pipeline;
        let mut scanner = RequestScanner::new(self.worker.router.config.limits);
        let mut rbuf = BytesMut::new();
        loop {
            match self.replies.flush() {
                Flushed::Done => {}
                Flushed::Blocked => {
                    if self.replies.writable().await.is_err() {
                        return;
                    }
                    continue;
                }
                Flushed::Failed => return,
            }
            if self.replies.stop_requested() {
                self.close();
            }
            if self.replies.is_closing() && self.replies.is_empty() {
                return;
            }
            let reading = !self.replies.is_closing() && self.replies.len() < max_pipeline;
            let replies = self.replies.clone();
            tokio::select! {
                biased;
                _ = replies.wake.wait() => {}
                ready = poll_fn(|cx| replies.with_stream(|s| s.poll_read_ready(cx))), if reading => {
                    if ready.is_err() {
                        return;
                    }
                    if rbuf.capacity() == 0 {
                        rbuf = self.worker.take_read_buffer();
                    }
                    rbuf.reserve(scanner.bytes_needed(&rbuf).max(READ_CHUNK));
                    let read = poll_fn(|cx| {
                        Poll::Ready(replies.with_stream(|s| poll_read_once(s, cx, &mut rbuf)))
                    })
                    .await;
                    match read {
                        None => continue,
                        Some(Ok(0)) => return,
                        Some(Ok(_)) => {}
                        Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        Some(Err(e)) => {
                            tracing::debug!(client = self.id.0, error = %e, "client read failed");
                            return;
                        }
                    }
                    self.take_requests(&mut scanner, &mut rbuf);
                    if rbuf.is_empty() {
                        // Nothing partial is waiting: an idle client keeps no buffer; the
                        // worker keeps a few for whichever client reads next.
                        self.worker.give_read_buffer(std::mem::take(&mut rbuf));
                    }
                }
            }
        }
    }

    /// Read no more requests; end once the replies owed are written.
    fn close(&mut self) {
        self.replies.set_closing();
    }

    /// The client's protocol (RESP2 until `HELLO 3`); the reply queue keeps it, as it
    /// writes the replies.
    fn proto(&self) -> Proto {
        self.replies.proto()
    }

    fn set_proto(&mut self, proto: Proto) {
        self.replies.set_proto(proto);
    }

    /// Frame and handle every complete request in `rbuf`.
    fn take_requests(&mut self, scanner: &mut RequestScanner, rbuf: &mut BytesMut) {
        loop {
            match scanner.next_request(rbuf) {
                Ok(Some(request)) => {
                    self.handle(request);
                    if self.replies.is_closing() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::info!(client = self.id.0, peer = %self.peer, error = %e, "closing client after a protocol error");
                    self.push_error(&format!("ERR {e}"));
                    self.close();
                    return;
                }
            }
        }
    }

    /// Route one request: answer it here, or send it to a node.
    fn handle(&mut self, request: Request) {
        self.worker.count_request();
        let classified = match classify(&request) {
            Ok(c) => c,
            Err(e @ CommandError::Unknown { .. }) => return self.handle_learned(request, e),
            Err(e) => return self.push_error(&e.message()),
        };
        match classified.route {
            Route::Local(which) => {
                Metrics::inc(&METRICS.requests_local);
                self.local(which, &request);
            }
            Route::Slot => {
                let mut slot: Option<Slot> = None;
                for i in classified.keys.iter() {
                    let s = Slot::of_key(request.arg(i));
                    match slot {
                        None => slot = Some(s),
                        Some(first) if first != s => {
                            return self.push_error(
                                "CROSSSLOT Keys in request don't hash to the same slot",
                            );
                        }
                        Some(_) => {}
                    }
                }
                let target = slot.map_or(Target::Any(self.id.0 as u32), Target::Slot);
                self.forward(request, target);
            }
            Route::AnyNode => self.forward(request, Target::Any(self.id.0 as u32)),
            Route::FanOut(_) => self.refuse(
                classified.spec.name,
                "cluster-wide commands are not supported by slotgate yet",
            ),
            Route::Blocking => self.refuse(
                classified.spec.name,
                "blocking commands are not supported by slotgate yet",
            ),
            Route::Transaction => self.refuse(
                classified.spec.name,
                "transactions are not supported by slotgate yet",
            ),
            Route::PubSub => self.refuse(
                classified.spec.name,
                "pub/sub is not supported by slotgate yet",
            ),
            Route::Refused(reason) => self.refuse(classified.spec.name, reason),
        }
    }

    /// A command the built-in table does not know: route it by what the cluster told us
    /// about it at start-up, or answer Redis's "unknown command".
    fn handle_learned(&mut self, request: Request, unknown: CommandError) {
        let router = &self.worker.router;
        let Some(cmd) = router.learned.get().and_then(|l| l.get(request.arg(0))) else {
            return self.push_error(&unknown.message());
        };
        match cmd.route(&request) {
            Err(text) => self.push_error(&text),
            Ok(LearnedRoute::Refused(reason)) => {
                let name = cmd.name.clone();
                self.refuse(&name, reason)
            }
            Ok(LearnedRoute::NoKeys) => self.forward(request, Target::Any(self.id.0 as u32)),
            Ok(LearnedRoute::Keys(keys)) => {
                let slot = Slot::of_key(request.arg(keys[0]));
                if keys.iter().any(|&k| Slot::of_key(request.arg(k)) != slot) {
                    return self
                        .push_error("CROSSSLOT Keys in request don't hash to the same slot");
                }
                self.forward(request, Target::Slot(slot))
            }
        }
    }

    fn refuse(&mut self, name: &str, reason: &str) {
        let name = name.replace('|', " ").to_uppercase();
        self.push_error(&format!("ERR '{name}' is not supported: {reason}"));
    }

    /// Send to a node; the reply fills this request's place in the queue.
    fn forward(&mut self, request: Request, target: Target) {
        let reply = self.replies.reserve();
        self.worker.dispatch(BackendRequest::new(
            request.into_raw(),
            target,
            self.proto(),
            self.id.0 as u32,
            reply,
        ));
    }

    /// Queue a reply made here, with `f` writing it.
    fn push_local(&mut self, f: impl FnOnce(&mut ReplyWriter)) {
        let mut out = BytesMut::new();
        f(&mut ReplyWriter {
            out: &mut out,
            proto: self.proto(),
        });
        self.replies.push_ready(out.freeze());
    }

    fn push_error(&mut self, text: &str) {
        Metrics::inc(&METRICS.proxy_errors);
        self.push_local(|w| w.error(text));
    }
}
