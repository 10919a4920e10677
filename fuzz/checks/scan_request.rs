//! The client-side request scanner. Invariants beyond "no panic":
//! - the stream fed whole, cut once at any point, cut into small chunks or fed one byte
//!   at a time gives the same requests, the same error and the same unscanned rest;
//! - every request's bytes are the canonical RESP encoding of its arguments (what a
//!   node receives is what the proxy understood), re-scan to that one request, and no
//!   proper prefix of them is a request.
//!
//! Input: byte 0 picks the limits, bytes 1-2 the cut, the rest is the stream.

use bytes::BytesMut;
use slotgate::protocol::scan::{Limits, ProtocolError, Request, RequestScanner};

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    requests: Vec<Vec<Vec<u8>>>,
    error: Option<ProtocolError>,
    rest: usize,
}

fn limits(b: u8) -> Limits {
    if b & 1 == 0 {
        return Limits::default();
    }
    let inline = [4, 16, 64, 1024][usize::from(b >> 1 & 3)];
    Limits {
        max_bulk_len: inline + [0, 5, 100, 4096][usize::from(b >> 5 & 3)],
        max_args: [1, 3, 16, 1024][usize::from(b >> 3 & 3)],
        max_inline_len: inline,
        max_depth: 8,
    }
}

fn scan(limits: Limits, chunks: &[&[u8]], requests: &mut Vec<Request>) -> Outcome {
    let mut scanner = RequestScanner::new(limits);
    let mut buf = BytesMut::new();
    let mut out = Outcome {
        requests: Vec::new(),
        error: None,
        rest: 0,
    };
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match scanner.next_request(&mut buf) {
                Ok(Some(request)) => {
                    out.requests
                        .push(request.args().map(<[u8]>::to_vec).collect());
                    requests.push(request);
                }
                Ok(None) => break,
                Err(e) => {
                    out.error = Some(e);
                    return out;
                }
            }
        }
    }
    out.rest = buf.len();
    out
}

fn check_request(request: &Request) {
    assert!(request.argc() >= 1, "a scanned request has a name");
    let args: Vec<&[u8]> = request.args().collect();
    let canonical = Request::from_args(&args);
    assert_eq!(
        request.raw(),
        canonical.raw(),
        "a request's bytes are its arguments' RESP encoding"
    );
    let raw = request.raw();
    let mut fresh = RequestScanner::new(Limits::default());
    let mut buf = BytesMut::from(&raw[..]);
    let again = fresh
        .next_request(&mut buf)
        .expect("re-scan")
        .expect("complete");
    assert!(buf.is_empty());
    assert!(again.args().eq(request.args()));
    let mut fresh = RequestScanner::new(Limits::default());
    let mut prefix = BytesMut::from(&raw[..raw.len() - 1]);
    assert!(
        matches!(fresh.next_request(&mut prefix), Ok(None)),
        "a proper prefix is incomplete"
    );
}

/// One fuzz input through the checks above; panics on a broken invariant.
pub fn run(data: &[u8]) {
    let [l, c0, c1, stream @ ..] = data else {
        return;
    };
    let limits = limits(*l);
    let mut requests = Vec::new();
    let whole = scan(limits, &[stream], &mut requests);
    for request in &requests {
        check_request(request);
    }
    let mut ignore = Vec::new();
    let cut = usize::from(u16::from_le_bytes([*c0, *c1])) % (stream.len() + 1);
    let (a, b) = stream.split_at(cut);
    assert_eq!(scan(limits, &[a, b], &mut ignore), whole, "cut at {cut}");
    let size = usize::from(*c0 % 7) + 2;
    let chunks: Vec<&[u8]> = stream.chunks(size).collect();
    assert_eq!(
        scan(limits, &chunks, &mut ignore),
        whole,
        "chunks of {size}"
    );
    if stream.len() <= 512 {
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(scan(limits, &bytes, &mut ignore), whole, "byte by byte");
    }
}
