//! Opening a connection to a node: the handshake that authenticates and picks the
//! protocol, and a blocking-style request/reply exchange for the proxy's own queries
//! (topology, `COMMAND`), which run on the control runtime, not on a worker.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cluster::NodeAddr;
use crate::config::BackendConfig;
use crate::protocol::reply::{encode_command, Proto};
use crate::protocol::scan::{Limits, ReplyScanner};

const READ_CHUNK: usize = 16 * 1024;

/// The first command on a new connection: `HELLO 3` (with `AUTH` when a password is
/// configured) for RESP3, `AUTH` for RESP2 with a password, nothing otherwise.
pub fn hello_command(proto: Proto, config: &BackendConfig) -> Option<BytesMut> {
    let user = config.username.as_deref().unwrap_or("default");
    match (proto, &config.password) {
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
    }
}

/// The reason a handshake reply refuses the connection, if it does.
pub fn handshake_refusal(reply: &[u8]) -> Option<String> {
    (reply.first() == Some(&b'-')).then(|| {
        let text = String::from_utf8_lossy(&reply[1..]);
        format!("handshake refused: {}", text.trim_end())
    })
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
    if let Some(hello) = hello_command(proto, config) {
        let reply = tokio::time::timeout(
            config.connect_timeout.max(Duration::from_secs(1)),
            exchange(&mut stream, &hello),
        )
        .await
        .map_err(|_| "handshake timed out".to_string())??;
        if let Some(reason) = handshake_refusal(&reply) {
            return Err(reason);
        }
    }
    Ok(stream)
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
