//! Replies the proxy writes itself, in the client's protocol (RESP2 until `HELLO 3`).

use bytes::{BufMut, BytesMut};

/// The protocol a client (and the backend connections serving it) speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Resp2,
    Resp3,
}

/// Appends RESP replies to an output buffer.
pub struct ReplyWriter<'a> {
    pub out: &'a mut BytesMut,
    pub proto: Proto,
}

impl ReplyWriter<'_> {
    pub fn simple(&mut self, text: &str) {
        self.line(b'+', text.as_bytes());
    }

    pub fn ok(&mut self) {
        self.out.extend_from_slice(b"+OK\r\n");
    }

    /// An error reply; `text` starts with its code (`ERR ...`, `CROSSSLOT ...`).
    pub fn error(&mut self, text: &str) {
        // An error line must not contain CR or LF.
        let clean: String = text
            .chars()
            .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
            .collect();
        self.line(b'-', clean.as_bytes());
    }

    pub fn int(&mut self, n: i64) {
        let mut b = itoa::Buffer::new();
        self.line(b':', b.format(n).as_bytes());
    }

    pub fn bulk(&mut self, data: &[u8]) {
        self.header(b'$', data.len());
        self.out.extend_from_slice(data);
        self.out.extend_from_slice(b"\r\n");
    }

    pub fn null(&mut self) {
        match self.proto {
            Proto::Resp2 => self.out.extend_from_slice(b"$-1\r\n"),
            Proto::Resp3 => self.out.extend_from_slice(b"_\r\n"),
        }
    }

    pub fn array(&mut self, len: usize) {
        self.header(b'*', len);
    }

    /// A map of `pairs` entries: RESP3 `%`, or a flat array of 2×pairs in RESP2.
    pub fn map(&mut self, pairs: usize) {
        match self.proto {
            Proto::Resp2 => self.header(b'*', pairs * 2),
            Proto::Resp3 => self.header(b'%', pairs),
        }
    }

    /// A push of `len` elements (pub/sub confirmations): RESP3 `>`, RESP2 an array.
    pub fn push(&mut self, len: usize) {
        match self.proto {
            Proto::Resp2 => self.header(b'*', len),
            Proto::Resp3 => self.header(b'>', len),
        }
    }

    /// A verbatim text reply (`INFO`, `CLIENT INFO`): RESP3 `=txt:`, RESP2 a bulk string.
    pub fn verbatim(&mut self, text: &str) {
        match self.proto {
            Proto::Resp2 => self.bulk(text.as_bytes()),
            Proto::Resp3 => {
                self.header(b'=', text.len() + 4);
                self.out.extend_from_slice(b"txt:");
                self.out.extend_from_slice(text.as_bytes());
                self.out.extend_from_slice(b"\r\n");
            }
        }
    }

    fn header(&mut self, kind: u8, len: usize) {
        let mut b = itoa::Buffer::new();
        self.line(kind, b.format(len).as_bytes());
    }

    fn line(&mut self, kind: u8, text: &[u8]) {
        self.out.reserve(text.len() + 3);
        self.out.put_u8(kind);
        self.out.extend_from_slice(text);
        self.out.extend_from_slice(b"\r\n");
    }
}

/// Encode a command as a RESP array of bulk strings (requests the proxy makes itself).
pub fn encode_command(args: &[&[u8]]) -> BytesMut {
    let mut out = BytesMut::new();
    let mut w = ReplyWriter {
        out: &mut out,
        proto: Proto::Resp2,
    };
    w.array(args.len());
    for a in args {
        w.bulk(a);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(proto: Proto, f: impl FnOnce(&mut ReplyWriter)) -> Vec<u8> {
        let mut out = BytesMut::new();
        f(&mut ReplyWriter {
            out: &mut out,
            proto,
        });
        out.to_vec()
    }

    #[test]
    fn encodes_by_protocol() {
        assert_eq!(with(Proto::Resp2, |w| w.null()), b"$-1\r\n");
        assert_eq!(with(Proto::Resp3, |w| w.null()), b"_\r\n");
        assert_eq!(with(Proto::Resp2, |w| w.map(2)), b"*4\r\n");
        assert_eq!(with(Proto::Resp3, |w| w.map(2)), b"%2\r\n");
        assert_eq!(with(Proto::Resp2, |w| w.push(3)), b"*3\r\n");
        assert_eq!(with(Proto::Resp3, |w| w.push(3)), b">3\r\n");
        assert_eq!(with(Proto::Resp3, |w| w.verbatim("a")), b"=5\r\ntxt:a\r\n");
        assert_eq!(with(Proto::Resp2, |w| w.int(-7)), b":-7\r\n");
        assert_eq!(
            with(Proto::Resp2, |w| w.error("ERR a\r\nb")),
            b"-ERR a  b\r\n"
        );
        assert_eq!(
            encode_command(&[b"GET", b"k"]).to_vec(),
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
        );
    }
}
