//! The sockets of the data plane: [`Transport`], the one stream type that client
//! sessions and backend connections hold (plain TCP now, TLS as one more variant), and
//! the non-blocking reads and writes the event loop does on it: interrupted calls are
//! retried, "would block" is an outcome rather than an error.

mod transport;

use std::io::{self, Read, Write};

pub use transport::Transport;

/// What one read brought.
pub enum ReadSome {
    /// This many bytes.
    Data(usize),
    /// Nothing now: wait for the next readiness event.
    Drained,
    /// The peer closed its side.
    Closed,
    Failed(io::Error),
}

/// Read once into `buf`.
pub fn read_some(stream: &mut impl Read, buf: &mut [u8]) -> ReadSome {
    loop {
        return match stream.read(buf) {
            Ok(0) => ReadSome::Closed,
            Ok(n) => ReadSome::Data(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadSome::Drained,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => ReadSome::Failed(e),
        };
    }
}

/// How writing a buffer ended.
#[derive(Debug)]
pub enum Written {
    /// All of it went.
    All,
    /// The socket would block: wait until it is writable.
    Blocked,
    Failed(io::Error),
}

/// Write `buf` until all of it is written or the socket would block; the bytes written
/// and how it ended.
pub fn write_all_now(stream: &mut impl Write, buf: &[u8]) -> (usize, Written) {
    let mut written = 0;
    while written < buf.len() {
        match stream.write(&buf[written..]) {
            Ok(0) => {
                let closed = io::Error::new(io::ErrorKind::WriteZero, "socket closed");
                return (written, Written::Failed(closed));
            }
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return (written, Written::Blocked),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (written, Written::Failed(e)),
        }
    }
    (written, Written::All)
}
