//! One task per client: read and frame requests, route each, and write the replies back
//! strictly in request order, one write per batch of ready replies.

mod local;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::admin::{Metrics, METRICS};
use crate::backend::{BackendRequest, ReplyHandle, ReplyResult, ReplySender, Target};
use crate::command::{classify, Route};
use crate::dispatch::Router;
use crate::protocol::reply::{Proto, ReplyWriter};
use crate::protocol::scan::{Request, RequestScanner};
use crate::slot::Slot;

/// Identifies a client connection (`CLIENT ID`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientId(pub u64);

const READ_CHUNK: usize = 16 * 1024;

/// Per-client state.
struct Session {
    router: Arc<Router>,
    id: ClientId,
    peer: SocketAddr,
    local_addr: SocketAddr,
    proto: Proto,
    name: Option<Bytes>,
    lib_name: Option<Bytes>,
    lib_ver: Option<Bytes>,
    /// Replies in request order: `None` while the node's reply is still on its way.
    pending: VecDeque<Option<Bytes>>,
    /// Sequence number of the front of `pending`.
    front_seq: u64,
    /// Handed to every request this client sends to a node; the session's receiver gets
    /// `(seq, reply)` back. Closes when the session ends.
    replies: ReplySender,
    /// No more requests are read (QUIT, protocol error, shutdown); the session ends once
    /// the pending replies are written.
    closing: bool,
}

/// Serve one client until it disconnects or the proxy closes it. When `shutdown`
/// turns true the session reads no more requests, writes the replies still owed, and
/// ends.
pub async fn run(
    router: Arc<Router>,
    stream: TcpStream,
    id: ClientId,
    mut shutdown: watch::Receiver<bool>,
) {
    let peer = stream
        .peer_addr()
        .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into());
    let local_addr = stream
        .local_addr()
        .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into());
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let max_pipeline = router.config.max_pipeline;
    let mut scanner = RequestScanner::new(router.config.limits);
    let mut session = Session {
        router,
        id,
        peer,
        local_addr,
        proto: Proto::Resp2,
        name: None,
        lib_name: None,
        lib_ver: None,
        pending: VecDeque::new(),
        front_seq: 0,
        replies: tx,
        closing: false,
    };
    let mut rbuf = BytesMut::new();
    let mut wbuf = BytesMut::new();

    loop {
        if !wbuf.is_empty() {
            if let Err(e) = wr.write_all(&wbuf).await {
                tracing::debug!(client = id.0, error = %e, "client write failed");
                break;
            }
            wbuf.clear();
        }
        if session.closing && session.pending.is_empty() {
            break;
        }
        let reading = !session.closing && session.pending.len() < max_pipeline;
        if reading && rbuf.capacity() - rbuf.len() < 512 {
            rbuf.reserve(scanner.bytes_needed(&rbuf).max(READ_CHUNK));
        }
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|&stop| stop), if !session.closing => {
                session.closing = true;
            }
            Some((seq, result)) = rx.recv() => {
                session.fill(seq, result);
                while let Ok((seq, result)) = rx.try_recv() {
                    session.fill(seq, result);
                }
                session.drain_ready(&mut wbuf);
            }
            read = rd.read_buf(&mut rbuf), if reading => {
                match read {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(client = id.0, error = %e, "client read failed");
                        break;
                    }
                }
                loop {
                    match scanner.next_request(&mut rbuf) {
                        Ok(Some(request)) => {
                            session.handle(request);
                            if session.closing {
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::info!(client = id.0, peer = %session.peer, error = %e, "closing client after a protocol error");
                            session.push_error(&format!("ERR {e}"));
                            session.closing = true;
                            break;
                        }
                    }
                }
                session.drain_ready(&mut wbuf);
                if rbuf.is_empty() && rbuf.capacity() > 4 * READ_CHUNK {
                    // A big request is done; do not keep its buffer for an idle client.
                    rbuf = BytesMut::new();
                }
            }
        }
    }
}

impl Session {
    /// Route one request: answer it here, or send it to a node.
    fn handle(&mut self, request: Request) {
        Metrics::inc(&METRICS.requests);
        let classified = match classify(&request) {
            Ok(c) => c,
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
                let target = slot.map_or(Target::Any, Target::Slot);
                self.forward(request, target);
            }
            Route::AnyNode => self.forward(request, Target::Any),
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

    fn refuse(&mut self, name: &str, reason: &str) {
        let name = name.replace('|', " ").to_uppercase();
        self.push_error(&format!("ERR '{name}' is not supported: {reason}"));
    }

    /// Send to a node; the reply fills this request's place in the queue.
    fn forward(&mut self, request: Request, target: Target) {
        let seq = self.front_seq + self.pending.len() as u64;
        self.pending.push_back(None);
        self.router.dispatch(BackendRequest {
            bytes: request.into_raw(),
            target,
            proto: self.proto,
            conn_hint: self.id.0 as u32,
            asking: false,
            redirects: 0,
            retries: 0,
            retry_deadline: None,
            no_retry: false,
            reply: ReplyHandle::new(self.replies.clone(), seq),
        });
    }

    /// Put a node's reply (or the error that replaced it) in its place.
    fn fill(&mut self, seq: u64, result: ReplyResult) {
        let Some(index) = seq.checked_sub(self.front_seq) else {
            return;
        };
        let bytes = match result {
            Ok(bytes) => bytes,
            Err(e) => {
                Metrics::inc(&METRICS.proxy_errors);
                let mut out = BytesMut::new();
                ReplyWriter {
                    out: &mut out,
                    proto: self.proto,
                }
                .error(&format!("ERR slotgate: {e}"));
                out.freeze()
            }
        };
        if let Some(place) = self.pending.get_mut(index as usize) {
            *place = Some(bytes);
        }
    }

    /// Move every reply that is ready at the front of the queue into `out`.
    fn drain_ready(&mut self, out: &mut BytesMut) {
        while let Some(Some(_)) = self.pending.front() {
            if let Some(Some(bytes)) = self.pending.pop_front() {
                out.extend_from_slice(&bytes);
            }
            self.front_seq += 1;
        }
    }

    /// Queue a reply made here, with `f` writing it.
    fn push_local(&mut self, f: impl FnOnce(&mut ReplyWriter)) {
        let mut out = BytesMut::new();
        f(&mut ReplyWriter {
            out: &mut out,
            proto: self.proto,
        });
        self.pending.push_back(Some(out.freeze()));
    }

    fn push_error(&mut self, text: &str) {
        Metrics::inc(&METRICS.proxy_errors);
        self.push_local(|w| w.error(text));
    }
}
