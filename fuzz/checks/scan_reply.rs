//! The node-side reply scanner. Invariants beyond "no panic":
//! - the stream fed whole, cut once at any point, cut into small chunks or fed one byte
//!   at a time gives the same frames, the same error and the same unscanned rest;
//! - every frame re-scans alone to itself, and no proper prefix of it is a frame;
//! - where redis-protocol's decoder also finds a whole frame at the front of the
//!   stream, both agree on its length (framing disagreements desynchronise replies).
//!
//! Input: byte 0 picks the limits, bytes 1-2 the cut, the rest is the stream.

use slotgate::protocol::scan::{Limits, ProtocolError, ReplyScanner};

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    frames: Vec<usize>,
    error: Option<ProtocolError>,
    rest: usize,
}

fn limits(b: u8) -> Limits {
    if b & 1 == 0 {
        return Limits::default();
    }
    Limits {
        max_bulk_len: [0, 3, 64, 4096][usize::from(b >> 1 & 3)],
        max_args: 16,
        max_inline_len: 64,
        max_depth: [1, 2, 5, 128][usize::from(b >> 3 & 3)],
    }
}

fn scan(limits: Limits, chunks: &[&[u8]]) -> Outcome {
    let mut scanner = ReplyScanner::new(limits);
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Outcome {
        frames: Vec::new(),
        error: None,
        rest: 0,
    };
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match scanner.scan(&buf) {
                Ok(Some(len)) => {
                    assert!(len > 0 && len <= buf.len());
                    out.frames.push(len);
                    buf.drain(..len);
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

/// One fuzz input through the checks above; panics on a broken invariant.
pub fn run(data: &[u8]) {
    let [l, c0, c1, stream @ ..] = data else {
        return;
    };
    let limits = limits(*l);
    let whole = scan(limits, &[stream]);
    let mut at = 0;
    for &len in &whole.frames {
        let frame = &stream[at..at + len];
        assert_eq!(
            ReplyScanner::new(limits).scan(frame),
            Ok(Some(len)),
            "re-scan"
        );
        assert_eq!(
            ReplyScanner::new(limits).scan(&frame[..len - 1]),
            Ok(None),
            "a proper prefix is incomplete"
        );
        let mid = usize::from(*c1) % len;
        assert_eq!(ReplyScanner::new(limits).scan(&frame[..mid]), Ok(None));
        at += len;
    }
    if limits == Limits::default() {
        if let (Some(&ours), Ok(Some((_, theirs)))) = (
            whole.frames.first(),
            redis_protocol::resp3::decode::complete::decode(stream),
        ) {
            assert_eq!(ours, theirs, "frame length agrees with redis-protocol");
        }
    }
    let cut = usize::from(u16::from_le_bytes([*c0, *c1])) % (stream.len() + 1);
    let (a, b) = stream.split_at(cut);
    assert_eq!(scan(limits, &[a, b]), whole, "cut at {cut}");
    let size = usize::from(*c0 % 7) + 2;
    let chunks: Vec<&[u8]> = stream.chunks(size).collect();
    assert_eq!(scan(limits, &chunks), whole, "chunks of {size}");
    if stream.len() <= 512 {
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(scan(limits, &bytes), whole, "byte by byte");
    }
}
