//! TLS with rustls (the `ring` provider) over the data plane's non-blocking sockets,
//! both ways: clients of the `[tls]` listener (a server session) and nodes reached
//! through `[backend.tls]` (a client session); plus loading the PEM files of the
//! configuration into rustls configurations, checked at start.
//!
//! [`TlsStream`] keeps the contract [`super::Transport`]'s callers rely on with plain
//! TCP under edge-triggered readiness:
//! - a read returns fewer bytes than asked only when the socket said "would block" (or
//!   ended): plaintext rustls already decrypted is handed out first, so none is left
//!   waiting for an event that will not come;
//! - bytes a write took may still sit, encrypted, inside rustls when the socket is full:
//!   `flush` says "would block" until they are out, and the caller waits for writable;
//! - the handshake runs inside reads (server) or [`TlsStream::handshake`] (client)
//!   before the first request; what it has to send goes out as it can;
//! - dropping the stream sends `close_notify`; a peer's `close_notify` or a bare end of
//!   the TCP stream reads as the end.

use std::fs;
use std::io::{self, IoSlice, Read, Write};
use std::path::Path;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{crypto::CryptoProvider, ServerConnection};
use rustls::{ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig};

/// One TLS session over a non-blocking TCP socket.
pub struct TlsStream {
    pub(super) sock: TcpStream,
    conn: Connection,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("sock", &self.sock)
            .field("handshaking", &self.conn.is_handshaking())
            .finish()
    }
}

impl TlsStream {
    /// The server side of a session with a client just accepted.
    pub fn server(sock: TcpStream, config: Arc<ServerConfig>) -> io::Result<TlsStream> {
        let conn = ServerConnection::new(config).map_err(io::Error::other)?;
        Ok(TlsStream {
            sock,
            conn: conn.into(),
        })
    }

    /// The client side of a session with a node, over a socket whose connect is under
    /// way; `name` is what the node's certificate must show.
    pub fn client(
        sock: TcpStream,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<TlsStream> {
        let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
        Ok(TlsStream {
            sock,
            conn: conn.into(),
        })
    }

    /// Encrypted bytes wait inside rustls for the socket.
    #[inline]
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Drive the handshake as far as the socket allows: true once it is done (what it
    /// still has to send goes out before the next write's bytes), false while it waits
    /// for the peer or for the socket. An error is a failed handshake (the peer's
    /// certificate refused, a protocol error, the peer gone).
    pub fn handshake(&mut self) -> io::Result<bool> {
        loop {
            match self.send_pending() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if !self.conn.is_handshaking() {
                return Ok(true);
            }
            if !self.conn.wants_read() {
                return Ok(false);
            }
            match self.conn.read_tls(&mut self.sock) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "closed by the peer during the TLS handshake",
                    ))
                }
                Ok(_) => self.process()?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Decrypt what was read; send what that produced (handshake messages, alerts) as
    /// far as the socket takes it. A TLS error sends its alert first.
    fn process(&mut self) -> io::Result<()> {
        if let Err(e) = self.conn.process_new_packets() {
            let _ = self.send_pending();
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("tls: {e}"),
            ));
        }
        match self.send_pending() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(()),
        }
    }

    /// Write the encrypted bytes rustls holds until none is left (`Ok`) or the socket
    /// would block (that error).
    fn send_pending(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Read for TlsStream {
    /// Plaintext rustls holds first, then more from the socket until `buf` is full or
    /// the socket would block: a short read means the socket is drained.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut filled = 0;
        let mut ended = false;
        loop {
            match self.conn.reader().read(&mut buf[filled..]) {
                // `close_notify` received and everything before it handed out.
                Ok(0) => return Ok(filled),
                Ok(n) => {
                    filled += n;
                    if filled == buf.len() {
                        return Ok(filled);
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The TCP stream ended without `close_notify`: most clients just close.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(filled),
                Err(e) => return Err(e),
            }
            if ended {
                // Nothing more will come (rustls says so above in every other case).
                return Ok(filled);
            }
            match self.conn.read_tls(&mut self.sock) {
                Ok(0) => ended = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return if filled > 0 { Ok(filled) } else { Err(e) };
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            self.process()?;
        }
    }
}

impl Write for TlsStream {
    /// Takes plaintext only once what rustls held is out (so at most its buffer limit,
    /// 64 KiB, waits inside it), encrypts it and writes as much as the socket takes.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send_pending()?;
        let n = self.conn.writer().write(buf)?;
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        match self.send_pending() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(n),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.send_pending()?;
        let n = self.conn.writer().write_vectored(bufs)?;
        if n == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        match self.send_pending() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(n),
        }
    }

    /// `Ok` once every byte written is on the socket; "would block" while some wait.
    fn flush(&mut self) -> io::Result<()> {
        self.send_pending()
    }
}

impl Drop for TlsStream {
    /// Say goodbye (`close_notify`) as far as the socket takes it without waiting.
    fn drop(&mut self) {
        if !self.conn.is_handshaking() {
            self.conn.send_close_notify();
            let _ = self.send_pending();
        }
    }
}

/// The crypto every configuration here uses: rustls's `ring` provider.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in the PEM file at `path` (a chain: the leaf first); at least one.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let text = read(path)?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&text).collect();
    let certs = certs.map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// The private key in the PEM file at `path` (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let text = read(path)?;
    PrivateKeyDer::from_pem_slice(&text)
        .map_err(|e| format!("{} holds no usable PEM private key: {e}", path.display()))
}

/// The certificates of the PEM file at `path` as trusted roots.
pub fn roots(path: &Path) -> Result<Arc<RootCertStore>, String> {
    let mut store = RootCertStore::empty();
    for cert in certificates(path)? {
        store
            .add(cert)
            .map_err(|e| format!("{}: not a CA certificate rustls takes: {e}", path.display()))?;
    }
    Ok(Arc::new(store))
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The listener's configuration: its certificate chain and key, and with `clients`
/// (a CA), only clients showing a certificate that CA signed are let in.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    clients: Option<Arc<RootCertStore>>,
) -> Result<Arc<ServerConfig>, String> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match clients {
        Some(roots) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| e.to_string())?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("the key does not go with the certificate: {e}"))?;
    Ok(Arc::new(config))
}

/// The configuration for connections to nodes: the CA their certificates must chain
/// to, and a certificate of our own when the nodes ask for one.
pub fn client_config(
    roots: Arc<RootCertStore>,
    own: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<ClientConfig>, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match own {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("the key does not go with the certificate: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// `host` (a DNS name or an IP address) as the name a node's certificate must show.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string())
        .map_err(|_| format!("`{host}` is neither a DNS name nor an IP address"))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use mio::{Events, Interest, Poll, Token};

    use super::*;
    use crate::net::{read_some, write_all_now, ReadSome, Transport, Written};

    /// A CA and a certificate for 127.0.0.1 it signed, as rustls takes them.
    fn test_pki() -> (
        Arc<RootCertStore>,
        Vec<CertificateDer<'static>>,
        PrivateKeyDer<'static>,
    ) {
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = ca.self_signed(&ca_key).unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = leaf.signed_by(&key, &ca, &ca_key).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let key = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        (Arc::new(roots), vec![leaf.der().clone()], key)
    }

    /// Four megabytes one way through TLS on a loopback socket, more than the socket
    /// buffers hold, read and written only as edge-triggered events allow (a short
    /// read means drained, a blocked write waits for writable): every byte arrives in
    /// order, and the writer's drop reads as the end at the other side.
    #[test]
    fn bulk_bytes_under_edge_triggered_readiness_then_close_notify() {
        let (roots, chain, key) = test_pki();
        let server_config = server_config(chain, key, None).unwrap();
        let client_config = client_config(roots, None).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut poll = Poll::new().unwrap();
        let name = server_name("127.0.0.1").unwrap();
        let mut client = Transport::connect_tls(addr, client_config, name).unwrap();
        let both = Interest::READABLE | Interest::WRITABLE;
        poll.registry()
            .register(&mut client, Token(1), both)
            .unwrap();
        let mut client = Some(client);
        let (sock, _) = listener.accept().unwrap();
        sock.set_nonblocking(true).unwrap();
        let mut server =
            Transport::accept_tls(mio::net::TcpStream::from_std(sock), server_config).unwrap();
        poll.registry()
            .register(&mut server, Token(2), both)
            .unwrap();

        let total = 4 << 20;
        let data: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
        let mut sent = 0;
        let mut connected = false;
        let mut blocked = false;
        let mut got = Vec::with_capacity(total);
        let mut buf = vec![0u8; 64 * 1024];
        let mut ended = false;
        let mut events = Events::with_capacity(16);
        let deadline = Instant::now() + Duration::from_secs(120);
        while !ended {
            assert!(
                Instant::now() < deadline,
                "stuck at {} of {total} bytes",
                got.len()
            );
            poll.poll(&mut events, Some(Duration::from_millis(500)))
                .unwrap();
            for event in events.iter() {
                if event.token() == Token(1) {
                    let Some(client) = client.as_mut() else {
                        continue;
                    };
                    if !connected && client.peer_addr().is_ok() {
                        connected = client.handshake().unwrap();
                    }
                    // What the server sends after the handshake (TLS 1.3 session
                    // tickets) is taken in: a socket closed with unread bytes resets.
                    if connected && event.is_readable() {
                        let mut sink = [0u8; 256];
                        while let ReadSome::Data(_) = read_some(client, &mut sink) {}
                    }
                    if event.is_writable() {
                        blocked = false;
                    }
                } else {
                    // Edge-triggered: read until a short read, as the sessions do.
                    loop {
                        match read_some(&mut server, &mut buf) {
                            ReadSome::Data(n) => {
                                got.extend_from_slice(&buf[..n]);
                                if n < buf.len() {
                                    break;
                                }
                            }
                            ReadSome::Drained => break,
                            ReadSome::Closed => {
                                ended = true;
                                break;
                            }
                            ReadSome::Failed(e) => panic!("server read: {e}"),
                        }
                    }
                }
            }
            if let Some(stream) = client
                .as_mut()
                .filter(|_| connected && !blocked && sent < total)
            {
                let (n, end) = write_all_now(stream, &data[sent..]);
                sent += n;
                match end {
                    Written::All => assert_eq!(sent, total),
                    Written::Blocked => blocked = true,
                    Written::Failed(e) => panic!("client write: {e}"),
                }
            }
            if got.len() == total {
                // Everything arrived: the goodbye (`close_notify`) follows, once the
                // client took in what the server sent it (a socket closed with unread
                // bytes resets the connection).
                if let Some(mut stream) = client.take() {
                    let mut sink = [0u8; 256];
                    while let ReadSome::Data(_) = read_some(&mut stream, &mut sink) {}
                    poll.registry().deregister(&mut stream).unwrap();
                }
            }
        }
        assert_eq!(got.len(), total);
        assert!(got == data, "the bytes arrived changed");
    }

    #[test]
    fn files_that_are_not_what_they_should_be_say_so() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem\n").unwrap();
        assert!(certificates(&empty)
            .unwrap_err()
            .contains("no PEM certificate"));
        assert!(private_key(&empty)
            .unwrap_err()
            .contains("no usable PEM private key"));
        let missing = dir.path().join("missing.pem");
        assert!(roots(&missing).unwrap_err().contains("cannot read"));
        assert!(server_name("not a name!").is_err());
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("redis.internal").is_ok());
    }
}
