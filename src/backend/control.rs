//! The control plane's own connections to nodes, for the proxy's queries (topology,
//! `COMMAND`, `INFO`) on the tokio runtime: a tokio socket framed by tokio-util's
//! [`Framed`] with redis-protocol's RESP2 codec, opened with the one [`Handshake`].
//! A query opens a connection of its own, so a slow or dead node cannot hold up the
//! workers' client traffic, and client traffic cannot hold up a refresh. With
//! `[backend.tls]` it speaks TLS (tokio-rustls, the data plane's rustls configuration).

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use redis_protocol::codec::Resp2;
use redis_protocol::error::RedisProtocolError;
use redis_protocol::resp2::types::{BorrowedFrame, BytesFrame};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, Encoder, Framed};

use super::handshake::{Handshake, HandshakeError, Reply};
use crate::cluster::NodeAddr;
use crate::config::BackendConfig;
use crate::protocol::reply::Proto;

/// The largest reply a query takes: redis-protocol's codec has no bound of its own.
/// Measured: `CLUSTER SHARDS` is about 260 bytes per node (the 6-node fixture), so 3 MB
/// for 10,000 nodes; `COMMAND` on Redis 7.0 is 90 KB.
const MAX_REPLY: usize = 64 * 1024 * 1024;

/// Why a query to a node got no reply. The caller names the node
/// (`backend {addr}: ...`).
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("cannot connect: {0}")]
    Connect(#[source] io::Error),
    #[error("tls handshake: {0}")]
    TlsHandshake(#[source] io::Error),
    #[error("tls: {0}")]
    Tls(String),
    #[error("handshake timed out after {0:?}")]
    HandshakeTimeout(Duration),
    #[error(transparent)]
    Refused(#[from] HandshakeError),
    #[error("closed before replying")]
    Closed,
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    #[error("bad reply: {0}")]
    BadReply(#[from] RedisProtocolError),
    #[error("reply larger than {0} bytes")]
    TooLarge(usize),
    #[error("no reply within {0:?}")]
    Timeout(Duration),
}

/// Dial `dial`, open the connection with the RESP2 [`Handshake`], send one command and
/// decode its reply (an error reply is a reply), all within the connect timeout plus
/// the backend timeout.
pub async fn query(
    dial: &NodeAddr,
    config: &BackendConfig,
    args: &[&[u8]],
) -> Result<BytesFrame, ControlError> {
    let limit = config.timeout + config.connect_timeout;
    let exchange = async {
        let mut conn = ControlConnection::open(dial, config).await?;
        conn.request(args).await
    };
    tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| ControlError::Timeout(limit))?
}

/// A control connection's byte stream: plain TCP or TLS over it.
trait ControlIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ControlIo for T {}

/// One control-plane connection to a node, past its handshake.
pub struct ControlConnection {
    framed: Framed<Box<dyn ControlIo>, BoundedResp2>,
}

impl ControlConnection {
    /// Dial within the connect timeout, then run the handshake within the connect
    /// timeout (at least a second: a node may be slow to check a password).
    pub async fn open(
        dial: &NodeAddr,
        config: &BackendConfig,
    ) -> Result<ControlConnection, ControlError> {
        let connect = TcpStream::connect(dial.as_str());
        let stream = tokio::time::timeout(config.connect_timeout, connect)
            .await
            .map_err(|_| ControlError::ConnectTimeout(config.connect_timeout))?
            .map_err(ControlError::Connect)?;
        stream.set_nodelay(true).map_err(ControlError::Connect)?;
        let stream: Box<dyn ControlIo> = match &config.tls {
            None => Box::new(stream),
            Some(tls) => {
                let name = tls.name_for(dial).map_err(ControlError::Tls)?;
                let connector = tokio_rustls::TlsConnector::from(tls.client.clone());
                let handshake = connector.connect(name, stream);
                let stream = tokio::time::timeout(config.connect_timeout, handshake)
                    .await
                    .map_err(|_| ControlError::HandshakeTimeout(config.connect_timeout))?
                    .map_err(ControlError::TlsHandshake)?;
                Box::new(stream)
            }
        };
        let mut conn = ControlConnection {
            framed: Framed::new(stream, BoundedResp2::new(MAX_REPLY)),
        };
        let handshake = Handshake::new(Proto::Resp2, config);
        let limit = config.connect_timeout.max(Duration::from_secs(1));
        tokio::time::timeout(limit, conn.handshake(handshake))
            .await
            .map_err(|_| ControlError::HandshakeTimeout(limit))??;
        Ok(conn)
    }

    /// Send every step, then read and check each reply in order (as the data plane
    /// does).
    async fn handshake(&mut self, handshake: Handshake<'_>) -> Result<(), ControlError> {
        for &step in handshake.steps() {
            let parts = bulk_strings(&handshake.args(step));
            self.framed.feed(BorrowedFrame::Array(&parts)).await?;
        }
        self.framed.flush().await?;
        for &step in handshake.steps() {
            let reply = self.reply().await?;
            step.read_reply(Reply::from_frame(&reply))?;
        }
        Ok(())
    }

    /// Send one command and wait for its reply.
    pub async fn request(&mut self, args: &[&[u8]]) -> Result<BytesFrame, ControlError> {
        let parts = bulk_strings(args);
        self.framed.send(BorrowedFrame::Array(&parts)).await?;
        self.reply().await
    }

    async fn reply(&mut self) -> Result<BytesFrame, ControlError> {
        self.framed.next().await.ok_or(ControlError::Closed)?
    }
}

/// A command's arguments as the elements of the array the codec sends, borrowed.
fn bulk_strings<'a>(args: &[&'a [u8]]) -> Vec<BorrowedFrame<'a>> {
    args.iter()
        .map(|arg| BorrowedFrame::BulkString(arg))
        .collect()
}

/// redis-protocol's RESP2 codec, with a bound on the bytes buffered for one reply.
struct BoundedResp2 {
    inner: Resp2,
    max: usize,
}

impl BoundedResp2 {
    fn new(max: usize) -> BoundedResp2 {
        BoundedResp2 {
            inner: Resp2::default(),
            max,
        }
    }
}

impl Decoder for BoundedResp2 {
    type Item = BytesFrame;
    type Error = ControlError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesFrame>, ControlError> {
        match self.inner.decode(src)? {
            None if src.len() > self.max => Err(ControlError::TooLarge(self.max)),
            decoded => Ok(decoded),
        }
    }
}

impl<'a> Encoder<BorrowedFrame<'a>> for BoundedResp2 {
    type Error = ControlError;

    fn encode(&mut self, item: BorrowedFrame<'a>, dst: &mut BytesMut) -> Result<(), ControlError> {
        Ok(self.inner.encode(item, dst)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_codec_decodes_whole_replies_and_bounds_a_partial_one() {
        let mut codec = BoundedResp2::new(16);
        let mut buf = BytesMut::from(&b"+OK\r\n$3\r\nab"[..]);
        let ok = codec.decode(&mut buf).unwrap();
        assert_eq!(ok, Some(BytesFrame::SimpleString("OK".into())));
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            None,
            "a partial bulk waits"
        );
        buf.extend_from_slice(b"c\r\n");
        let abc = codec.decode(&mut buf).unwrap();
        assert_eq!(abc, Some(BytesFrame::BulkString("abc".into())));

        let mut big = BytesMut::from(&b"$100\r\n0123456789abcdef"[..]);
        match codec.decode(&mut big) {
            Err(ControlError::TooLarge(16)) => {}
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn the_codec_sends_a_command_as_an_array_of_bulk_strings() {
        let mut codec = BoundedResp2::new(MAX_REPLY);
        let mut out = BytesMut::new();
        let parts = bulk_strings(&[b"CLUSTER", b"SHARDS"]);
        codec
            .encode(BorrowedFrame::Array(&parts), &mut out)
            .unwrap();
        assert_eq!(&out[..], b"*2\r\n$7\r\nCLUSTER\r\n$6\r\nSHARDS\r\n");
    }
}
