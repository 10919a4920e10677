//! The sockets of the data plane: [`Transport`], the one stream type that client
//! sessions and backend connections hold (plain TCP, or TLS over it: [`tls`]), and
//! the non-blocking reads and writes the event loop does on it: interrupted calls are
//! retried, "would block" is an outcome rather than an error, and a write is over once
//! the stream's `flush` says so (TLS may still hold encrypted bytes).

pub mod tls;
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
/// and how it ended. All of it written but not yet flushed (TLS) counts as blocked.
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
    (written, flushed(stream))
}

/// How the end of a write stands: all out, or bytes the stream holds wait for the
/// socket (plain TCP holds none: inlined to nothing).
#[inline]
fn flushed(stream: &mut impl Write) -> Written {
    loop {
        return match stream.flush() {
            Ok(()) => Written::All,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Written::Blocked,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Written::Failed(e),
        };
    }
}

/// How many chunks one vectored write takes at most.
const MAX_IOVECS: usize = 32;

/// Write the chunks at the front of `chunks` (the first from `offset` on) with vectored
/// writes until all are written or the socket would block. Written chunks are removed
/// and `offset` follows the first one left. Returns the bytes written and how it ended
/// (all written but not yet flushed counts as blocked).
pub fn write_chunks(
    stream: &mut impl Write,
    chunks: &mut std::collections::VecDeque<bytes::Bytes>,
    offset: &mut usize,
) -> (usize, Written) {
    let mut written = 0;
    while !chunks.is_empty() {
        let mut slices = [io::IoSlice::new(&[]); MAX_IOVECS];
        let mut count = 0;
        for (i, chunk) in chunks.iter().take(MAX_IOVECS).enumerate() {
            let from = if i == 0 { *offset } else { 0 };
            slices[i] = io::IoSlice::new(&chunk[from..]);
            count += 1;
        }
        match stream.write_vectored(&slices[..count]) {
            Ok(0) => {
                let closed = io::Error::new(io::ErrorKind::WriteZero, "socket closed");
                return (written, Written::Failed(closed));
            }
            Ok(mut n) => {
                written += n;
                while n > 0 {
                    let Some(front) = chunks.front() else { break };
                    let left = front.len() - *offset;
                    if n >= left {
                        n -= left;
                        *offset = 0;
                        chunks.pop_front();
                    } else {
                        *offset += n;
                        n = 0;
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return (written, Written::Blocked),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (written, Written::Failed(e)),
        }
    }
    (written, flushed(stream))
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::io::{self, Write};

    use bytes::Bytes;

    use super::{write_chunks, Written};

    /// Takes at most `room` bytes, then would block.
    struct Narrow {
        taken: Vec<u8>,
        room: usize,
    }

    impl Write for Narrow {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room).min(3);
            self.room -= n;
            self.taken.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn chunks_are_written_in_order_and_resume_where_they_stopped() {
        let mut chunks: VecDeque<Bytes> = ["+a\r\n", "$5\r\nhello\r\n", ":1\r\n"]
            .iter()
            .map(|s| Bytes::from_static(s.as_bytes()))
            .collect();
        let mut offset = 0;
        let mut sink = Narrow {
            taken: Vec::new(),
            room: 7,
        };
        let (n, end) = write_chunks(&mut sink, &mut chunks, &mut offset);
        assert_eq!(n, 7);
        assert!(matches!(end, Written::Blocked));
        assert_eq!(chunks.len(), 2, "the first chunk is gone");
        assert_eq!(offset, 3, "the second is 3 bytes in");
        sink.room = 100;
        let (n, end) = write_chunks(&mut sink, &mut chunks, &mut offset);
        assert_eq!(n, 12);
        assert!(matches!(end, Written::All));
        assert!(chunks.is_empty());
        assert_eq!(offset, 0);
        assert_eq!(sink.taken, b"+a\r\n$5\r\nhello\r\n:1\r\n");
    }
}
