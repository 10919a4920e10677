//! One backend connection: a task that owns the socket. It connects on first use,
//! writes every queued request in one syscall, keeps the in-flight requests in FIFO
//! order and hands each reply to the router. When the socket dies every in-flight
//! request is answered with an error; requests that were never written go back to the
//! router, which may retry them elsewhere.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::{BackendError, BackendRequest};
use crate::admin::{Metrics, METRICS};
use crate::cluster::NodeAddr;
use crate::config::BackendConfig;
use crate::dispatch::Router;
use crate::protocol::reply::{encode_command, Proto};
use crate::protocol::scan::ReplyScanner;

const ASKING: &[u8] = b"*1\r\n$6\r\nASKING\r\n";
const READ_CHUNK: usize = 16 * 1024;
const MAX_BACKOFF: Duration = Duration::from_secs(1);
const MIN_BACKOFF: Duration = Duration::from_millis(50);

/// An entry waiting for its reply, in the order the requests were written.
enum InFlight {
    /// The `+OK` of an `ASKING` written just before the request that follows it.
    AskingAck,
    Request(BackendRequest),
}

/// The connection task. `rx` receives from the node's senders; the task ends when
/// every sender is dropped.
pub async fn run(
    router: Arc<Router>,
    addr: NodeAddr,
    dial: NodeAddr,
    proto: Proto,
    mut rx: mpsc::UnboundedReceiver<BackendRequest>,
) {
    let mut backoff = MIN_BACKOFF;
    // After a failed connect, requests fail at once until this instant.
    let mut down_until: Option<Instant> = None;
    while let Some(first) = rx.recv().await {
        if down_until.is_some_and(|t| Instant::now() < t) {
            let reason = "recently failed; waiting before reconnecting".to_string();
            fail_queued(&router, &addr, &reason, first, &mut rx);
            continue;
        }
        let config = &router.config.backend;
        match connect(&dial, proto, config).await {
            Err(reason) => {
                Metrics::inc(&METRICS.backend_connect_failures);
                tracing::warn!(node = %addr, dial = %dial, %reason, "backend connect failed");
                down_until = Some(Instant::now() + backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                fail_queued(&router, &addr, &reason, first, &mut rx);
            }
            Ok(stream) => {
                Metrics::inc(&METRICS.backend_connects);
                tracing::debug!(node = %addr, ?proto, "backend connected");
                backoff = MIN_BACKOFF;
                down_until = None;
                let mut conn = Connection {
                    router: &router,
                    addr: &addr,
                    proto,
                    in_flight: VecDeque::new(),
                };
                if let Err(reason) = conn.serve(stream, first, &mut rx).await {
                    tracing::warn!(node = %addr, %reason, "backend connection closed");
                    conn.fail_in_flight(&reason);
                }
            }
        }
    }
}

/// Hand back `first` and everything queued behind it as never sent.
fn fail_queued(
    router: &Arc<Router>,
    addr: &NodeAddr,
    reason: &str,
    first: BackendRequest,
    rx: &mut mpsc::UnboundedReceiver<BackendRequest>,
) {
    let err = BackendError::Unreachable {
        addr: addr.clone(),
        reason: reason.to_string(),
    };
    router.unsent(first, err.clone());
    while let Ok(req) = rx.try_recv() {
        router.unsent(req, err.clone());
    }
}

/// Dial, then authenticate and pick the protocol. Errors are the reason as text.
async fn connect(
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
        let exchange = async {
            stream.write_all(&hello).await.map_err(|e| e.to_string())?;
            let mut buf = BytesMut::with_capacity(1024);
            let mut scanner = ReplyScanner::new(Default::default());
            loop {
                if stream.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
                    return Err("closed during handshake".to_string());
                }
                match scanner.scan(&buf) {
                    Ok(Some(len)) => {
                        if buf[0] == b'-' {
                            let text = String::from_utf8_lossy(&buf[1..len]);
                            return Err(format!("handshake refused: {}", text.trim_end()));
                        }
                        return Ok(());
                    }
                    Ok(None) => continue,
                    Err(e) => return Err(format!("handshake: {e}")),
                }
            }
        };
        tokio::time::timeout(config.connect_timeout.max(Duration::from_secs(1)), exchange)
            .await
            .map_err(|_| "handshake timed out".to_string())??;
    }
    Ok(stream)
}

struct Connection<'a> {
    router: &'a Arc<Router>,
    addr: &'a NodeAddr,
    proto: Proto,
    in_flight: VecDeque<InFlight>,
}

impl Connection<'_> {
    /// Serve until the socket fails (Err with the reason) or every sender is gone and
    /// nothing is in flight (Ok).
    async fn serve(
        &mut self,
        stream: TcpStream,
        first: BackendRequest,
        rx: &mut mpsc::UnboundedReceiver<BackendRequest>,
    ) -> Result<(), String> {
        let (mut rd, mut wr) = stream.into_split();
        let limits = self.router.config.limits;
        let timeout = self.router.config.backend.timeout;
        let mut scanner = ReplyScanner::new(limits);
        let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
        let mut wbuf = BytesMut::with_capacity(READ_CHUNK);
        let mut batch: Vec<BackendRequest> = Vec::with_capacity(64);
        let mut ticker = tokio::time::interval((timeout / 4).max(Duration::from_millis(10)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // When a reply (or the first request of an idle connection) was last seen; the
        // connection has timed out when requests are in flight and nothing came back
        // for `timeout` since.
        let mut last_progress = Instant::now();
        let mut open = true;

        batch.push(first);
        loop {
            if !batch.is_empty() {
                if self.in_flight.is_empty() {
                    last_progress = Instant::now();
                }
                for req in batch.drain(..) {
                    if req.asking {
                        wbuf.extend_from_slice(ASKING);
                        self.in_flight.push_back(InFlight::AskingAck);
                    }
                    wbuf.extend_from_slice(&req.bytes);
                    self.in_flight.push_back(InFlight::Request(req));
                }
                wr.write_all(&wbuf)
                    .await
                    .map_err(|e| format!("write: {e}"))?;
                wbuf.clear();
            }
            if !open && self.in_flight.is_empty() {
                return Ok(());
            }
            let want = scanner.bytes_needed(rbuf.len()).max(READ_CHUNK);
            rbuf.reserve(want);
            tokio::select! {
                biased;
                read = rd.read_buf(&mut rbuf) => {
                    match read {
                        Ok(0) => return Err("closed by the node".into()),
                        Ok(_) => {}
                        Err(e) => return Err(format!("read: {e}")),
                    }
                    last_progress = Instant::now();
                    self.take_replies(&mut scanner, &mut rbuf)?;
                }
                n = rx.recv_many(&mut batch, 256), if open => {
                    if n == 0 {
                        open = false;
                    }
                }
                _ = ticker.tick(), if !self.in_flight.is_empty() => {
                    if last_progress.elapsed() >= timeout {
                        let err = |addr: &NodeAddr| BackendError::Timeout {
                            addr: addr.clone(),
                            millis: timeout.as_millis(),
                        };
                        for entry in self.in_flight.drain(..) {
                            if let InFlight::Request(req) = entry {
                                req.reply.send(Err(err(self.addr)));
                            }
                        }
                        return Err(format!("no reply within {timeout:?}"));
                    }
                }
            }
        }
    }

    /// Hand every complete reply in `rbuf` to the router, in order.
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
                tracing::debug!(node = %self.addr, "dropped a push message on a shared connection");
                continue;
            }
            match self.in_flight.pop_front() {
                Some(InFlight::AskingAck) => {}
                Some(InFlight::Request(req)) => self.router.complete(req, frame, self.addr),
                None => return Err("reply with no request waiting".into()),
            }
        }
    }

    fn fail_in_flight(&mut self, reason: &str) {
        if !self.in_flight.is_empty() {
            Metrics::inc(&METRICS.backend_connections_lost);
        }
        for entry in self.in_flight.drain(..) {
            if let InFlight::Request(req) = entry {
                req.reply.send(Err(BackendError::Lost {
                    addr: self.addr.clone(),
                    reason: reason.to_string(),
                }));
            }
        }
    }
}
