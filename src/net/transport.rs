//! The one socket type that client sessions and backend connections read and write
//! through: plain TCP, or TLS over it ([`TlsStream`]); the sessions, connections and
//! event loop that hold a [`Transport`] do not care which.
//!
//! Every method is one `match` over the variants, inlined, so the plain-TCP data path
//! pays one well-predicted branch for the seam. Callers keep to what TLS needs too:
//! a write is done once `flush` says so (TLS may hold encrypted bytes until the socket
//! is writable again), and [`Transport::wants_write`] says when a writable event must
//! be answered with a flush even though nothing new is to be written.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};

use super::tls::TlsStream;

/// A non-blocking byte stream to a client or a node, registered with a worker's poll.
#[derive(Debug)]
pub enum Transport {
    Tcp(TcpStream),
    /// Boxed: a TLS session is a few hundred bytes more than a socket, and plain
    /// sessions should not carry them.
    Tls(Box<TlsStream>),
}

impl Transport {
    /// Start a non-blocking plain-TCP connect: the socket reports writable once the
    /// connect ends, and then [`Transport::take_error`] and [`Transport::peer_addr`]
    /// tell how it ended.
    pub fn connect(addr: SocketAddr) -> io::Result<Transport> {
        TcpStream::connect(addr).map(Transport::Tcp)
    }

    /// Start a non-blocking connect to a node that speaks TLS; the handshake runs in
    /// [`Transport::handshake`] once the connect ends.
    pub fn connect_tls(
        addr: SocketAddr,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<Transport> {
        let sock = TcpStream::connect(addr)?;
        Ok(Transport::Tls(Box::new(TlsStream::client(
            sock, config, name,
        )?)))
    }

    /// A client accepted on the TLS listener; its handshake runs in its first reads.
    pub fn accept_tls(sock: TcpStream, config: Arc<ServerConfig>) -> io::Result<Transport> {
        Ok(Transport::Tls(Box::new(TlsStream::server(sock, config)?)))
    }

    /// The client side's handshake, driven as far as the socket allows: true once done
    /// (at once for plain TCP). An error is a failed handshake.
    pub fn handshake(&mut self) -> io::Result<bool> {
        match self {
            Transport::Tcp(_) => Ok(true),
            Transport::Tls(s) => s.handshake(),
        }
    }

    /// Bytes already written wait for the socket to become writable (TLS only): a
    /// writable event should flush even with nothing new to write.
    #[inline]
    pub fn wants_write(&self) -> bool {
        match self {
            Transport::Tcp(_) => false,
            Transport::Tls(s) => s.wants_write(),
        }
    }

    /// Plain TCP or TLS, for `CLIENT LIST` and logs.
    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }

    #[inline]
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Transport::Tcp(s) => s.peer_addr(),
            Transport::Tls(s) => s.sock.peer_addr(),
        }
    }

    #[inline]
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Transport::Tcp(s) => s.local_addr(),
            Transport::Tls(s) => s.sock.local_addr(),
        }
    }

    #[inline]
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.set_nodelay(nodelay),
            Transport::Tls(s) => s.sock.set_nodelay(nodelay),
        }
    }

    /// The socket's file descriptor (`CLIENT LIST`'s `fd`), or -1 where there is none.
    pub fn fd(&self) -> i32 {
        match self {
            #[cfg(unix)]
            Transport::Tcp(s) => std::os::fd::AsRawFd::as_raw_fd(s),
            #[cfg(unix)]
            Transport::Tls(s) => std::os::fd::AsRawFd::as_raw_fd(&s.sock),
            #[cfg(not(unix))]
            _ => -1,
        }
    }

    /// The socket's pending error (`SO_ERROR`), e.g. why a connect failed.
    #[inline]
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Transport::Tcp(s) => s.take_error(),
            Transport::Tls(s) => s.sock.take_error(),
        }
    }
}

impl From<TcpStream> for Transport {
    #[inline]
    fn from(stream: TcpStream) -> Transport {
        Transport::Tcp(stream)
    }
}

impl Read for Transport {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.read(buf),
            Transport::Tls(s) => s.read(buf),
        }
    }

    #[inline]
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.read_vectored(bufs),
            Transport::Tls(s) => s.read_vectored(bufs),
        }
    }
}

impl Write for Transport {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.write(buf),
            Transport::Tls(s) => s.write(buf),
        }
    }

    #[inline]
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.write_vectored(bufs),
            Transport::Tls(s) => s.write_vectored(bufs),
        }
    }

    #[inline]
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.flush(),
            Transport::Tls(s) => s.flush(),
        }
    }
}

impl Source for Transport {
    #[inline]
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.register(registry, token, interests),
            Transport::Tls(s) => s.sock.register(registry, token, interests),
        }
    }

    #[inline]
    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.reregister(registry, token, interests),
            Transport::Tls(s) => s.sock.reregister(registry, token, interests),
        }
    }

    #[inline]
    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.deregister(registry),
            Transport::Tls(s) => s.sock.deregister(registry),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{read_some, write_all_now, ReadSome, Written};

    /// Bytes go both ways through a registered transport, and the socket facts it
    /// passes through are the TCP socket's own.
    #[test]
    fn carries_bytes_both_ways_and_reports_the_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut poll = mio::Poll::new().unwrap();
        let mut client = Transport::connect(addr).unwrap();
        poll.registry()
            .register(
                &mut client,
                Token(1),
                Interest::READABLE | Interest::WRITABLE,
            )
            .unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let mut server = Transport::from(TcpStream::from_std(server));

        let mut events = mio::Events::with_capacity(4);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while client.peer_addr().is_err() {
            assert!(std::time::Instant::now() < deadline, "connect never ended");
            poll.poll(&mut events, Some(std::time::Duration::from_millis(50)))
                .unwrap();
        }
        assert!(client.take_error().unwrap().is_none());
        client.set_nodelay(true).unwrap();
        assert_eq!(client.peer_addr().unwrap(), addr);
        assert_eq!(server.local_addr().unwrap(), addr);
        assert_eq!(server.peer_addr().unwrap(), client.local_addr().unwrap());

        let (n, end) = write_all_now(&mut client, b"PING\r\n");
        assert_eq!(n, 6);
        assert!(matches!(end, Written::All));
        let mut buf = [0u8; 16];
        let mut got = Vec::new();
        while got.len() < 6 {
            assert!(std::time::Instant::now() < deadline, "bytes never came");
            match read_some(&mut server, &mut buf) {
                ReadSome::Data(n) => got.extend_from_slice(&buf[..n]),
                ReadSome::Drained => std::thread::sleep(std::time::Duration::from_millis(1)),
                ReadSome::Closed | ReadSome::Failed(_) => panic!("server side lost"),
            }
        }
        assert_eq!(got, b"PING\r\n");
        poll.registry().deregister(&mut client).unwrap();
    }
}
