//! Resumable, bounded RESP frame scanning: where client requests and node replies
//! begin and end.
//!
//! The proxy forwards values as their original bytes, so what it needs from the wire
//! is frame boundaries (and, for requests, where each argument lies). Both scanners
//! here are pure and iterative: they keep an explicit position and stack, never
//! recurse, and remember how far they got when a frame is incomplete, so a frame that
//! arrives in many reads costs O(bytes) in total rather than one re-parse per read.
//! Bulk payloads are skipped by length, never examined. Redis's own limits are
//! enforced before anything is reserved (`proto-max-bulk-len`, 1,048,576 arguments,
//! 64 KiB inline lines), with Redis's own error texts.
//!
//! Every limit check depends only on the bytes, never on how they were split into
//! reads, so feeding a stream whole or one byte at a time gives the same requests,
//! replies and errors. (Redis itself applies the inline and count-line limits only
//! when a read ends without a line end; here they apply to the line itself.)

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Redis's `proto-max-bulk-len` default: 512 MiB.
pub const DEFAULT_MAX_BULK_LEN: usize = 512 * 1024 * 1024;
/// Arguments per request: Redis refused more than 1024*1024 up to 6.x.
pub const DEFAULT_MAX_ARGS: usize = 1024 * 1024;
/// Redis's `PROTO_INLINE_MAX_SIZE`: 64 KiB.
pub const DEFAULT_MAX_INLINE_LEN: usize = 64 * 1024;
/// Nesting bound for replies. Real replies nest a handful of levels (hiredis got by
/// with a fixed 9-level stack for years); 128 also covers deeply nested script and
/// JSON replies while keeping the scanner's stack to a couple of KiB.
pub const DEFAULT_MAX_DEPTH: usize = 128;

/// The longest length header a reply may carry after its type byte: `-9223372036854775808`
/// is 20 bytes, so anything much longer is garbage, refused without waiting for a CRLF.
const MAX_REPLY_HEADER_LEN: usize = 32;

/// Arguments kept inline in a [`Request`] before the offsets spill to the heap.
const INLINE_ARGS: usize = 8;

/// The most argument slots reserved up front from a declared count (Redis reserves at
/// most 1024 too); beyond that the vector grows as arguments actually arrive.
const MAX_ARGS_PREALLOC: usize = 1024;

/// Bounds applied while scanning. One value serves both scanners; each uses the
/// fields that concern it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string accepted, in requests and in replies (`proto-max-bulk-len`).
    /// Also bounds simple reply lines (`+`, `-`, `:` ...), which Redis can make long.
    pub max_bulk_len: usize,
    /// Most arguments in one request (RESP array count, or inline words).
    pub max_args: usize,
    /// Longest inline request line, and longest `*`/`$` count line in a request.
    pub max_inline_len: usize,
    /// Deepest nesting of aggregates (arrays, maps, sets, pushes, attributes, streamed
    /// aggregates) in a reply. Requests are flat and do not use it.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: DEFAULT_MAX_BULK_LEN,
            max_args: DEFAULT_MAX_ARGS,
            max_inline_len: DEFAULT_MAX_INLINE_LEN,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// Why a byte stream is not valid RESP. Final for the connection: the stream cannot be
/// resynchronised, so the proxy answers `-ERR <text>` (client side) and closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    kind: ProtocolErrorKind,
}

/// What exactly was wrong. Client-side kinds display with Redis's own wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolErrorKind {
    /// Request `*` count not an integer, or above `max_args`.
    InvalidMultibulkLength,
    /// Request `$` length not an integer, negative, or above `max_bulk_len`.
    InvalidBulkLength,
    /// A request array element did not start with `$`.
    ExpectedDollar(u8),
    /// Inline request line longer than `max_inline_len`.
    TooBigInlineRequest,
    /// Inline request with an unclosed quote, or a closing quote not followed by a space.
    UnbalancedQuotes,
    /// Request `*` line longer than `max_inline_len`.
    TooBigMbulkCountString,
    /// Request `$` line longer than `max_inline_len`.
    TooBigBulkCountString,
    /// Request bulk data not followed by CRLF. Redis skips those two bytes unchecked;
    /// the proxy refuses, so that it can never disagree with a node about framing.
    MissingCrlf,
    /// Reply starting with a byte that is no RESP2/RESP3 type.
    InvalidReplyType(u8),
    /// Reply aggregates nested deeper than `max_depth`.
    ReplyTooDeep,
    /// Reply length/count header not an integer, negative where that means nothing,
    /// or malformed line ending.
    InvalidReplyLength,
    /// Reply bulk longer than `max_bulk_len`.
    ReplyBulkTooBig,
    /// Simple reply line longer than `max_bulk_len`.
    ReplyLineTooLong,
    /// Reply bulk payload not followed by CRLF.
    ReplyMissingCrlf,
    /// A streamed-reply part (`;` chunk, `.` end) where none may be, or another type
    /// inside a streamed string.
    UnexpectedStreamPart(u8),
}

impl ProtocolError {
    /// What went wrong.
    pub fn kind(&self) -> ProtocolErrorKind {
        self.kind
    }

    /// True when a node's reply was malformed (the backend side failed), false when a
    /// client's request was.
    pub fn is_reply_error(&self) -> bool {
        use ProtocolErrorKind::*;
        matches!(
            self.kind,
            InvalidReplyType(_)
                | ReplyTooDeep
                | InvalidReplyLength
                | ReplyBulkTooBig
                | ReplyLineTooLong
                | ReplyMissingCrlf
                | UnexpectedStreamPart(_)
        )
    }
}

impl From<ProtocolErrorKind> for ProtocolError {
    fn from(kind: ProtocolErrorKind) -> Self {
        ProtocolError { kind }
    }
}

/// A byte quoted in an error line. Redis prints the raw byte and blanks CR/LF; raw
/// non-ASCII bytes cannot go into a `String`, so those are written `\xHH`.
struct ShowByte(u8);

impl fmt::Display for ShowByte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            b'\r' | b'\n' => f.write_str(" "),
            b @ 0x20..=0x7e => write!(f, "{}", char::from(b)),
            b => write!(f, "\\x{b:02x}"),
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ProtocolErrorKind::*;
        f.write_str("Protocol error: ")?;
        match self.kind {
            InvalidMultibulkLength => f.write_str("invalid multibulk length"),
            InvalidBulkLength => f.write_str("invalid bulk length"),
            ExpectedDollar(b) => write!(f, "expected '$', got '{}'", ShowByte(b)),
            TooBigInlineRequest => f.write_str("too big inline request"),
            UnbalancedQuotes => f.write_str("unbalanced quotes in request"),
            TooBigMbulkCountString => f.write_str("too big mbulk count string"),
            TooBigBulkCountString => f.write_str("too big bulk count string"),
            MissingCrlf => f.write_str("expected CRLF after bulk data"),
            InvalidReplyType(b) => write!(f, "invalid reply type byte '{}'", ShowByte(b)),
            ReplyTooDeep => f.write_str("reply nested too deeply"),
            InvalidReplyLength => f.write_str("invalid reply length"),
            ReplyBulkTooBig => f.write_str("reply bulk too big"),
            ReplyLineTooLong => f.write_str("reply line too long"),
            ReplyMissingCrlf => f.write_str("reply bulk not followed by CRLF"),
            UnexpectedStreamPart(b) => write!(f, "unexpected '{}' in streamed reply", ShowByte(b)),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Counts bytes the scanners look at, so tests can check the work is O(bytes).
/// Zero-sized outside tests.
#[derive(Debug, Clone, Default)]
struct WorkCounter {
    #[cfg(test)]
    bytes: usize,
}

impl WorkCounter {
    #[inline]
    fn add(&mut self, _n: usize) {
        #[cfg(test)]
        {
            self.bytes += _n;
        }
    }
}

/// Argument positions `(start, len)` inside a request's bytes: inline up to
/// [`INLINE_ARGS`] (as `u32`, which keeps a [`Request`] small enough to move without a
/// `memcpy` call), then one vector for all of them. An argument past 4 GiB spills too.
#[derive(Debug, Clone, Default)]
struct ArgOffsets {
    len: usize,
    inline: [(u32, u32); INLINE_ARGS],
    spilled: Vec<(usize, usize)>,
}

impl ArgOffsets {
    /// Appends one argument; `expected` (the declared total) sizes the vector when the
    /// inline slots run out, capped at [`MAX_ARGS_PREALLOC`].
    #[inline]
    fn push(&mut self, arg: (usize, usize), expected: usize) {
        if self.spilled.is_empty() {
            let small = (u32::try_from(arg.0), u32::try_from(arg.1));
            if let (Some(slot), (Ok(start), Ok(len))) = (self.inline.get_mut(self.len), small) {
                *slot = (start, len);
                self.len += 1;
                return;
            }
            self.spilled
                .reserve(expected.clamp(INLINE_ARGS + 1, MAX_ARGS_PREALLOC));
            let inline = self.inline.get(..self.len).unwrap_or(&[]);
            self.spilled
                .extend(inline.iter().map(|&(s, l)| (s as usize, l as usize)));
        }
        self.spilled.push(arg);
        self.len += 1;
    }

    /// Argument `i`'s `(start, len)`.
    #[inline]
    fn get(&self, i: usize) -> Option<(usize, usize)> {
        if self.spilled.is_empty() {
            let &(start, len) = self.inline.get(..self.len)?.get(i)?;
            Some((start as usize, len as usize))
        } else {
            self.spilled.get(i).copied()
        }
    }

    fn iter(&self) -> impl ExactSizeIterator<Item = (usize, usize)> + Clone + '_ {
        (0..self.len).map(|i| self.get(i).unwrap_or((0, 0)))
    }

    fn len(&self) -> usize {
        self.len
    }
}

/// One complete client request: its RESP bytes plus where each argument lies in them.
#[derive(Debug, Clone)]
pub struct Request {
    raw: Bytes,
    args: ArgOffsets,
}

impl Request {
    /// The request as RESP bytes to forward unchanged: the client's own bytes for a
    /// RESP array, or a RESP array encoding of an inline command's arguments.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Takes the RESP bytes, e.g. to queue them for a node.
    pub fn into_raw(self) -> Bytes {
        self.raw
    }

    /// Number of arguments, the command name included; never 0 for a scanned request.
    pub fn argc(&self) -> usize {
        self.args.len()
    }

    /// Argument `i` (0 is the command name); empty when `i >= argc()`.
    pub fn arg(&self, i: usize) -> &[u8] {
        self.args
            .get(i)
            .map_or(&[][..], |(start, len)| self.slice(start, len))
    }

    /// All arguments in order.
    pub fn args(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.args
            .iter()
            .map(move |(start, len)| self.slice(start, len))
    }

    /// Encodes `args` as a RESP array of bulk strings: for requests the proxy makes
    /// itself (`ASKING`, `CLUSTER SHARDS`, split `MGET`s).
    pub fn from_args<A: AsRef<[u8]>>(args: &[A]) -> Request {
        encode_request(args.iter().map(AsRef::as_ref))
    }

    fn slice(&self, start: usize, len: usize) -> &[u8] {
        self.raw
            .get(start..start.saturating_add(len))
            .unwrap_or(&[])
    }
}

/// Number of decimal digits of `n`.
fn decimal_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

fn put_decimal(out: &mut BytesMut, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        if let Some(d) = digits.get_mut(at) {
            // n % 10 < 10, so the cast is exact.
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || at == 0 {
            break;
        }
    }
    out.put_slice(digits.get(at..).unwrap_or(&[]));
}

/// Builds `*N\r\n$len\r\narg\r\n...` in one allocation, recording argument offsets.
fn encode_request<'a, I>(args: I) -> Request
where
    I: Iterator<Item = &'a [u8]> + Clone,
{
    let (count, size) = args.clone().fold((0usize, 0usize), |(n, size), arg| {
        let len = arg.len();
        (n + 1, size.saturating_add(len + decimal_len(len) + 5))
    });
    let mut out = BytesMut::with_capacity(size.saturating_add(decimal_len(count) + 3));
    out.put_u8(b'*');
    put_decimal(&mut out, count);
    out.put_slice(b"\r\n");
    let mut offsets = ArgOffsets::default();
    for arg in args {
        out.put_u8(b'$');
        put_decimal(&mut out, arg.len());
        out.put_slice(b"\r\n");
        offsets.push((out.len(), arg.len()), count);
        out.put_slice(arg);
        out.put_slice(b"\r\n");
    }
    Request {
        raw: out.freeze(),
        args: offsets,
    }
}

/// Parses a decimal integer exactly as Redis's `string2ll` does: optional `-`, no `+`,
/// no leading zeros, no spaces, at most 20 bytes, no overflow.
pub(crate) fn parse_int(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    let mut v: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    if negative {
        i64::try_from(-i128::from(v)).ok()
    } else {
        i64::try_from(v).ok()
    }
}

/// A plain decimal at `buf[at..]` ending in `\r\n`: digits only, no sign, no leading
/// zero unless it is `0`, at most 18 digits (so it cannot overflow). Returns the value
/// and the index after the `\n`; `None` for anything else, including too few bytes.
/// For the fast paths only: one pass that finds the line end as it goes, where
/// [`strict_line`] + [`parse_int`] take two. What it refuses, they decide.
#[inline(always)]
fn fast_decimal(buf: &[u8], at: usize) -> Option<(usize, usize)> {
    let digits = buf.get(at..)?;
    let first = *digits.first()?;
    if !first.is_ascii_digit() {
        return None;
    }
    let mut value = usize::from(first - b'0');
    let mut i = 1;
    loop {
        let b = *digits.get(i)?;
        if b == b'\r' {
            break;
        }
        if !b.is_ascii_digit() || first == b'0' || i == 18 {
            return None;
        }
        value = value * 10 + usize::from(b - b'0');
        i += 1;
    }
    (*digits.get(i + 1)? == b'\n').then_some((value, at + i + 2))
}

/// Index of the first `byte` in `buf` at or after `from`.
fn find_byte(buf: &[u8], from: usize, byte: u8) -> Option<usize> {
    crate::slot::find_byte(buf.get(from..)?, byte).map(|i| from + i)
}

/// Where a strict count/length line stands: the line starts at `start` (its type byte),
/// `*scanned` is where the search for `\r` resumes. Returns the index of `\r` once
/// `\r\n` is there, `None` if more bytes are needed. A line whose content (type byte
/// excluded for replies, included for requests — `content_from` says where it starts)
/// exceeds `limit` fails with `too_long`; `\r` not followed by `\n` fails with `bad_end`.
fn strict_line(
    buf: &[u8],
    content_from: usize,
    scanned: &mut usize,
    work: &mut WorkCounter,
    limit: usize,
    too_long: ProtocolErrorKind,
    bad_end: ProtocolErrorKind,
) -> Result<Option<usize>, ProtocolErrorKind> {
    let from = (*scanned).max(content_from);
    match find_byte(buf, from, b'\r') {
        None => {
            work.add(buf.len().saturating_sub(from));
            *scanned = buf.len().max(from);
            if buf.len().saturating_sub(content_from) > limit {
                return Err(too_long);
            }
            Ok(None)
        }
        Some(cr) => {
            work.add(cr + 1 - from);
            if cr - content_from > limit {
                return Err(too_long);
            }
            match buf.get(cr + 1) {
                None => {
                    *scanned = cr;
                    Ok(None)
                }
                Some(b'\n') => Ok(Some(cr)),
                Some(_) => Err(bad_end),
            }
        }
    }
}

/// Where the scanner is inside the request that starts at `buf[0]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestState {
    /// Between requests.
    Idle,
    /// In an inline command line.
    Inline,
    /// In the `*N` line.
    Count,
    /// At or in a `$len` line starting at `pos`.
    BulkLen,
    /// In the payload of `len` bytes starting at `pos`.
    Bulk { len: usize },
}

/// Client-side scanner: splits whole requests off the front of the session's read
/// buffer. Requests are RESP arrays of bulk strings (first byte `*`) or inline commands
/// (any other first byte: a line split like Redis's `sdssplitargs`).
#[derive(Debug, Clone)]
pub struct RequestScanner {
    limits: Limits,
    state: RequestState,
    /// Next unparsed byte of the current request, relative to `buf[0]`.
    pos: usize,
    /// Where the current line's end search resumes.
    scanned: usize,
    /// Bulk strings still expected in the current array.
    remaining: usize,
    /// Declared argument count of the current array.
    declared: usize,
    /// Arguments parsed so far, relative to `buf[0]`.
    args: ArgOffsets,
    work: WorkCounter,
}

impl RequestScanner {
    pub fn new(limits: Limits) -> Self {
        RequestScanner {
            limits,
            state: RequestState::Idle,
            pos: 0,
            scanned: 0,
            remaining: 0,
            declared: 0,
            args: ArgOffsets::default(),
            work: WorkCounter::default(),
        }
    }

    /// Forgets any partial request (e.g. after the caller cleared the buffer).
    pub fn reset(&mut self) {
        self.state = RequestState::Idle;
        self.pos = 0;
        self.scanned = 0;
        self.remaining = 0;
        self.declared = 0;
        self.args = ArgOffsets::default();
    }

    /// Takes the next complete request off the front of `buf`, or returns `Ok(None)`
    /// when more bytes are needed; the scanner then remembers how far it got, and the
    /// next call (after more bytes were appended) continues from there. The caller must
    /// not remove bytes from `buf` other than through this method. Empty inline lines
    /// and `*0`/negative-count arrays are consumed and skipped, as Redis does. An error
    /// is final for the connection.
    pub fn next_request(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, ProtocolError> {
        loop {
            match self.state {
                RequestState::Idle => {
                    let Some(&first) = buf.first() else {
                        return Ok(None);
                    };
                    if first == b'*' {
                        if let Some((len, args)) = self.whole_request(buf) {
                            let raw = buf.split_to(len).freeze();
                            return Ok(Some(Request { raw, args }));
                        }
                    }
                    self.reset();
                    if first == b'*' {
                        self.state = RequestState::Count;
                        self.scanned = 1;
                    } else {
                        self.state = RequestState::Inline;
                    }
                }
                RequestState::Inline => {
                    let from = self.scanned;
                    let Some(nl) = find_byte(buf, from, b'\n') else {
                        self.work.add(buf.len().saturating_sub(from));
                        self.scanned = buf.len();
                        if buf.len() > self.limits.max_inline_len {
                            return Err(ProtocolErrorKind::TooBigInlineRequest.into());
                        }
                        return Ok(None);
                    };
                    self.work.add(nl + 1 - from);
                    if nl > self.limits.max_inline_len {
                        return Err(ProtocolErrorKind::TooBigInlineRequest.into());
                    }
                    let end = if nl > 0 && buf.get(nl - 1) == Some(&b'\r') {
                        nl - 1
                    } else {
                        nl
                    };
                    let request = parse_inline(buf.get(..end).unwrap_or(&[]), &self.limits)?;
                    buf.advance(nl + 1);
                    self.reset();
                    if let Some(request) = request {
                        return Ok(Some(request));
                    }
                }
                RequestState::Count => {
                    let Some(cr) = strict_line(
                        buf,
                        0,
                        &mut self.scanned,
                        &mut self.work,
                        self.limits.max_inline_len,
                        ProtocolErrorKind::TooBigMbulkCountString,
                        ProtocolErrorKind::InvalidMultibulkLength,
                    )?
                    else {
                        return Ok(None);
                    };
                    let count = buf
                        .get(1..cr)
                        .and_then(parse_int)
                        .ok_or(ProtocolErrorKind::InvalidMultibulkLength)?;
                    if count <= 0 {
                        buf.advance(cr + 2);
                        self.reset();
                        continue;
                    }
                    let count = usize::try_from(count)
                        .ok()
                        .filter(|&n| n <= self.limits.max_args)
                        .ok_or(ProtocolErrorKind::InvalidMultibulkLength)?;
                    self.remaining = count;
                    self.declared = count;
                    self.pos = cr + 2;
                    self.scanned = self.pos;
                    self.state = RequestState::BulkLen;
                }
                RequestState::BulkLen => {
                    let Some(&first) = buf.get(self.pos) else {
                        return Ok(None);
                    };
                    if first != b'$' {
                        return Err(ProtocolErrorKind::ExpectedDollar(first).into());
                    }
                    let Some(cr) = strict_line(
                        buf,
                        self.pos,
                        &mut self.scanned,
                        &mut self.work,
                        self.limits.max_inline_len,
                        ProtocolErrorKind::TooBigBulkCountString,
                        ProtocolErrorKind::InvalidBulkLength,
                    )?
                    else {
                        return Ok(None);
                    };
                    let len = buf
                        .get(self.pos + 1..cr)
                        .and_then(parse_int)
                        .and_then(|n| usize::try_from(n).ok())
                        .filter(|&n| n <= self.limits.max_bulk_len)
                        .ok_or(ProtocolErrorKind::InvalidBulkLength)?;
                    self.pos = cr + 2;
                    self.state = RequestState::Bulk { len };
                }
                RequestState::Bulk { len } => {
                    let end = self.pos.saturating_add(len);
                    let Some(crlf) = buf.get(end..end.saturating_add(2)) else {
                        return Ok(None);
                    };
                    if crlf != b"\r\n" {
                        return Err(ProtocolErrorKind::MissingCrlf.into());
                    }
                    self.args.push((self.pos, len), self.declared);
                    self.pos = end + 2;
                    self.scanned = self.pos;
                    self.remaining = self.remaining.saturating_sub(1);
                    if self.remaining == 0 {
                        let raw = buf.split_to(self.pos).freeze();
                        let args = std::mem::take(&mut self.args);
                        self.reset();
                        return Ok(Some(Request { raw, args }));
                    }
                    self.state = RequestState::BulkLen;
                }
            }
        }
    }

    /// The fast path for the usual case: a whole, well-formed RESP array at the front of
    /// `buf`, taken in one pass without the state machine's bookkeeping. Returns its
    /// length and argument offsets, or `None` for anything else (incomplete, malformed,
    /// over a limit, an unusual but valid form like `*0` or a leading `+`): the state
    /// machine then scans it from the start and decides, so every error and every edge
    /// is still its. Tried once per request, when the scanner is between requests.
    fn whole_request(&mut self, buf: &[u8]) -> Option<(usize, ArgOffsets)> {
        let limits = &self.limits;
        // `*count\r\n`: the line (type byte included) within max_inline_len, as strict.
        let (count, mut pos) = fast_decimal(buf, 1)?;
        self.work.add(pos);
        if count == 0 || count > limits.max_args || pos - 2 > limits.max_inline_len {
            return None;
        }
        let mut args = ArgOffsets::default();
        for _ in 0..count {
            if *buf.get(pos)? != b'$' {
                return None;
            }
            let (len, start) = fast_decimal(buf, pos + 1)?;
            self.work.add(start - pos);
            if len > limits.max_bulk_len || start - 2 - pos > limits.max_inline_len {
                return None;
            }
            let end = start + len;
            if buf.get(end..end + 2)? != b"\r\n" {
                return None;
            }
            args.push((start, len), count);
            pos = end + 2;
        }
        Some((pos, args))
    }

    /// Bytes the current partial request still needs at least (the rest of a declared
    /// bulk and its CRLF), so the caller can reserve once; 0 when unknown.
    pub fn bytes_needed(&self, buf: &BytesMut) -> usize {
        match self.state {
            RequestState::Bulk { len } => self
                .pos
                .saturating_add(len)
                .saturating_add(2)
                .saturating_sub(buf.len()),
            _ => 0,
        }
    }

    #[cfg(test)]
    fn bytes_examined(&self) -> usize {
        self.work.bytes
    }
}

/// Splits one inline line (without its line end) into a request; `None` for a line
/// with no words, which Redis ignores.
fn parse_inline(line: &[u8], limits: &Limits) -> Result<Option<Request>, ProtocolError> {
    let mut data = Vec::with_capacity(line.len());
    let mut words = ArgOffsets::default();
    split_args(line, &mut data, &mut words)?;
    if words.len() == 0 {
        return Ok(None);
    }
    if words.len() > limits.max_args {
        return Err(ProtocolErrorKind::InvalidMultibulkLength.into());
    }
    let args = words
        .iter()
        .map(|(start, len)| data.get(start..start + len).unwrap_or(&[]));
    Ok(Some(encode_request(args)))
}

/// C's `isspace`.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Redis's `sdssplitargs`, word for word: words separated by whitespace;
/// `"double quotes"` with `\n \r \t \b \a \xHH` and `\<any>` escapes; `'single quotes'`
/// with `\'`; a quote may open mid-word (`a"b c"` is `ab c`) but a closing quote must be
/// followed by whitespace or the end. Redis works on a C string, so the line ends at
/// its first NUL byte, here too. Words go into `data`, their offsets into `words`.
fn split_args(
    line: &[u8],
    data: &mut Vec<u8>,
    words: &mut ArgOffsets,
) -> Result<(), ProtocolError> {
    let line = line
        .iter()
        .position(|&b| b == 0)
        .and_then(|nul| line.get(..nul))
        .unwrap_or(line);
    // Past the end reads as NUL, like the C string's terminator.
    let at = |i: usize| line.get(i).copied().unwrap_or(0);
    let unbalanced = || ProtocolError::from(ProtocolErrorKind::UnbalancedQuotes);
    let mut p = 0;
    loop {
        while at(p) != 0 && is_c_space(at(p)) {
            p += 1;
        }
        if at(p) == 0 {
            return Ok(());
        }
        let start = data.len();
        let (mut in_double, mut in_single, mut done) = (false, false, false);
        while !done {
            let c = at(p);
            if in_double {
                let hex = (at(p + 1) == b'x')
                    .then(|| Some(hex_value(at(p + 2))? * 16 + hex_value(at(p + 3))?))
                    .flatten();
                if let (b'\\', Some(byte)) = (c, hex) {
                    data.push(byte);
                    p += 3;
                } else if c == b'\\' && at(p + 1) != 0 {
                    p += 1;
                    data.push(match at(p) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    if at(p + 1) != 0 && !is_c_space(at(p + 1)) {
                        return Err(unbalanced());
                    }
                    done = true;
                } else if c == 0 {
                    return Err(unbalanced());
                } else {
                    data.push(c);
                }
            } else if in_single {
                if c == b'\\' && at(p + 1) == b'\'' {
                    p += 1;
                    data.push(b'\'');
                } else if c == b'\'' {
                    if at(p + 1) != 0 && !is_c_space(at(p + 1)) {
                        return Err(unbalanced());
                    }
                    done = true;
                } else if c == 0 {
                    return Err(unbalanced());
                } else {
                    data.push(c);
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => done = true,
                    b'"' => in_double = true,
                    b'\'' => in_single = true,
                    _ => data.push(c),
                }
            }
            if at(p) != 0 {
                p += 1;
            }
        }
        words.push((start, data.len() - start), 0);
    }
}

/// One open aggregate in a reply being scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    /// Values still to come: elements, 2 per map entry, and for an attribute its
    /// entries plus the value it annotates.
    Counted(u64),
    /// `*?`, `%?`, `~?`: values until `.`; `odd` tracks map key/value pairing.
    Streamed { map: bool, odd: bool },
    /// `$?`: `;n` chunks until `;0`.
    StreamedString,
}

/// A bulk payload being skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Payload {
    /// Where the payload's CRLF must be.
    crlf_at: usize,
    /// A streamed-string chunk: not a value of its own.
    chunk: bool,
}

/// Reply-side scanner: finds the end of one complete RESP2 or RESP3 frame at the front
/// of a buffer (types `+ - : $ *` and `_ , # ! = ( % ~ > |`, streamed strings and
/// aggregates). An attribute (`|`) and the value it annotates form one frame.
/// Iterative, with an explicit stack bounded by `max_depth`; payloads are skipped by
/// length; repeated calls on a growing buffer cost O(new bytes).
#[derive(Debug, Clone)]
pub struct ReplyScanner {
    limits: Limits,
    /// Next unparsed byte of the current frame, relative to `buf[0]`.
    pos: usize,
    /// Where the current line's end search resumes.
    scanned: usize,
    payload: Option<Payload>,
    stack: Vec<Level>,
    work: WorkCounter,
}

impl ReplyScanner {
    pub fn new(limits: Limits) -> Self {
        ReplyScanner {
            limits,
            pos: 0,
            scanned: 0,
            payload: None,
            stack: Vec::new(),
            work: WorkCounter::default(),
        }
    }

    /// Forgets any partial frame.
    pub fn reset(&mut self) {
        self.pos = 0;
        self.scanned = 0;
        self.payload = None;
        self.stack.clear();
    }

    /// `Some(len)` when `buf[..len]` is one complete frame; the scanner has then reset
    /// itself for the next frame, which starts at `buf[len..]` once the caller has
    /// removed the first `len` bytes. `None`: incomplete, progress remembered; the caller
    /// only appends to `buf` before calling again. An error is final for the connection.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        if self.pos == 0 && self.scanned == 0 {
            if let Some(len) = self.whole_simple_frame(buf) {
                return Ok(Some(len));
            }
        }
        loop {
            if let Some(payload) = self.payload {
                let end = payload.crlf_at.saturating_add(2);
                let Some(crlf) = buf.get(payload.crlf_at..end) else {
                    return Ok(None);
                };
                if crlf != b"\r\n" {
                    return Err(ProtocolErrorKind::ReplyMissingCrlf.into());
                }
                self.payload = None;
                self.move_to(end);
                if !payload.chunk {
                    if let Some(len) = self.value_done() {
                        return Ok(Some(len));
                    }
                }
                continue;
            }
            let Some(&ty) = buf.get(self.pos) else {
                return Ok(None);
            };
            if self.stack.last() == Some(&Level::StreamedString) && ty != b';' {
                return Err(ProtocolErrorKind::UnexpectedStreamPart(ty).into());
            }
            let done = match ty {
                b'+' | b'-' | b':' | b',' | b'(' | b'#' | b'_' => {
                    let Some(cr) = self.simple_line(buf)? else {
                        return Ok(None);
                    };
                    self.move_to(cr + 2);
                    self.value_done()
                }
                b'$' | b'!' | b'=' | b';' | b'*' | b'%' | b'~' | b'>' | b'|' | b'.' => {
                    let Some(cr) = strict_line(
                        buf,
                        self.pos + 1,
                        &mut self.scanned,
                        &mut self.work,
                        MAX_REPLY_HEADER_LEN,
                        ProtocolErrorKind::InvalidReplyLength,
                        ProtocolErrorKind::InvalidReplyLength,
                    )?
                    else {
                        return Ok(None);
                    };
                    let header = buf.get(self.pos + 1..cr).unwrap_or(&[]);
                    let next = cr + 2;
                    self.header(ty, header, next)?
                }
                other => return Err(ProtocolErrorKind::InvalidReplyType(other).into()),
            };
            if let Some(len) = done {
                return Ok(Some(len));
            }
        }
    }

    /// The fast path for the replies most requests get: a whole `+`/`-`/`:` line or a
    /// whole `$` bulk string at the front of `buf`, in one pass. `None` for anything
    /// else (incomplete, aggregates, RESP3 types, `$-1`, a bare `\r` inside a line, a
    /// length over the limit): the general scanner then starts on the frame and decides.
    /// Tried once per frame, before the general scanner has looked at it.
    fn whole_simple_frame(&mut self, buf: &[u8]) -> Option<usize> {
        match *buf.first()? {
            b'+' | b'-' | b':' => {
                let cr = find_byte(buf, 1, b'\r')?;
                self.work.add(cr);
                (cr - 1 <= self.limits.max_bulk_len && *buf.get(cr + 1)? == b'\n').then_some(cr + 2)
            }
            b'$' => {
                let (len, start) = fast_decimal(buf, 1)?;
                self.work.add(start);
                if len > self.limits.max_bulk_len {
                    return None;
                }
                let end = start + len;
                (buf.get(end..end + 2)? == b"\r\n").then_some(end + 2)
            }
            _ => None,
        }
    }

    /// Bytes known still to be missing for the current frame (the rest of a bulk
    /// payload and its CRLF), 0 when unknown.
    pub fn bytes_needed(&self, buf_len: usize) -> usize {
        self.payload
            .map_or(0, |p| p.crlf_at.saturating_add(2).saturating_sub(buf_len))
    }

    /// Acts on a complete header line of type `ty`; the next item starts at `next`.
    /// Returns the frame length when this completed the frame.
    fn header(
        &mut self,
        ty: u8,
        header: &[u8],
        next: usize,
    ) -> Result<Option<usize>, ProtocolError> {
        use ProtocolErrorKind::*;
        self.move_to(next);
        let streamed = header == b"?";
        match ty {
            b'.' => {
                let closes = matches!(self.stack.last(), Some(Level::Streamed { map, odd }) if !(*map && *odd));
                if !header.is_empty() || !closes {
                    return Err(UnexpectedStreamPart(b'.').into());
                }
                self.stack.pop();
                Ok(self.value_done())
            }
            b';' => {
                if self.stack.last() != Some(&Level::StreamedString) {
                    return Err(UnexpectedStreamPart(b';').into());
                }
                let len = self.bulk_len(header)?;
                if len == 0 {
                    self.stack.pop();
                    return Ok(self.value_done());
                }
                self.expect_payload(len, true)?;
                Ok(None)
            }
            b'$' if streamed => {
                // A streamed string holds only chunks, so it cannot deepen the nesting.
                self.stack.push(Level::StreamedString);
                Ok(None)
            }
            b'$' | b'!' | b'=' => {
                if ty == b'$' && header == b"-1" {
                    return Ok(self.value_done());
                }
                let len = self.bulk_len(header)?;
                self.expect_payload(len, false)?;
                Ok(None)
            }
            b'*' | b'%' | b'~' if streamed => {
                self.push(Level::Streamed {
                    map: ty == b'%',
                    odd: false,
                })?;
                Ok(None)
            }
            _ => {
                // '*' '%' '~' '>' '|'
                if ty == b'*' && header == b"-1" {
                    return Ok(self.value_done());
                }
                let n = parse_int(header)
                    .and_then(|n| u64::try_from(n).ok())
                    .ok_or(InvalidReplyLength)?;
                // n < 2^63, so neither can overflow.
                let values = match ty {
                    b'%' => n * 2,
                    b'|' => n * 2 + 1,
                    _ => n,
                };
                if values == 0 {
                    return Ok(self.value_done());
                }
                self.push(Level::Counted(values))?;
                Ok(None)
            }
        }
    }

    fn bulk_len(&self, header: &[u8]) -> Result<usize, ProtocolError> {
        let n = parse_int(header)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or(ProtocolErrorKind::InvalidReplyLength)?;
        if n > self.limits.max_bulk_len {
            return Err(ProtocolErrorKind::ReplyBulkTooBig.into());
        }
        Ok(n)
    }

    fn expect_payload(&mut self, len: usize, chunk: bool) -> Result<(), ProtocolError> {
        let crlf_at = self
            .pos
            .checked_add(len)
            .ok_or(ProtocolErrorKind::ReplyBulkTooBig)?;
        self.payload = Some(Payload { crlf_at, chunk });
        Ok(())
    }

    fn push(&mut self, level: Level) -> Result<(), ProtocolError> {
        if self.stack.len() >= self.limits.max_depth {
            return Err(ProtocolErrorKind::ReplyTooDeep.into());
        }
        self.stack.push(level);
        Ok(())
    }

    fn move_to(&mut self, pos: usize) {
        self.pos = pos;
        self.scanned = pos;
    }

    /// One value ended at `self.pos`: closes every aggregate it completes. Returns the
    /// frame length (and resets) when the outermost value is complete.
    fn value_done(&mut self) -> Option<usize> {
        loop {
            match self.stack.last_mut() {
                None => {
                    let len = self.pos;
                    self.reset();
                    return Some(len);
                }
                Some(Level::Counted(left)) => {
                    *left = left.saturating_sub(1);
                    if *left > 0 {
                        return None;
                    }
                    self.stack.pop();
                }
                Some(Level::Streamed { map, odd }) => {
                    if *map {
                        *odd = !*odd;
                    }
                    return None;
                }
                // Chunks do not come through here; nothing to count.
                Some(Level::StreamedString) => return None,
            }
        }
    }

    /// Finds the CRLF ending a simple line (`+ - : , ( # _`) at `pos`. A lone `\r`
    /// inside the line is content, as hiredis reads it.
    fn simple_line(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        let content_from = self.pos + 1;
        let mut from = self.scanned.max(content_from);
        loop {
            let Some(cr) = find_byte(buf, from, b'\r') else {
                self.work.add(buf.len().saturating_sub(from));
                self.scanned = buf.len().max(from);
                if buf.len().saturating_sub(content_from) > self.limits.max_bulk_len {
                    return Err(ProtocolErrorKind::ReplyLineTooLong.into());
                }
                return Ok(None);
            };
            self.work.add(cr + 1 - from);
            if cr - content_from > self.limits.max_bulk_len {
                return Err(ProtocolErrorKind::ReplyLineTooLong.into());
            }
            match buf.get(cr + 1) {
                None => {
                    self.scanned = cr;
                    return Ok(None);
                }
                Some(b'\n') => return Ok(Some(cr)),
                Some(_) => from = cr + 1,
            }
        }
    }

    #[cfg(test)]
    fn bytes_examined(&self) -> usize {
        self.work.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---------------------------------------------------------------- helpers

    fn limits() -> Limits {
        Limits::default()
    }

    fn args_of(r: &Request) -> Vec<Vec<u8>> {
        r.args().map(<[u8]>::to_vec).collect()
    }

    fn strs(v: &[&str]) -> Vec<Vec<u8>> {
        v.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    /// Every request in `input` fed at once, then the outcome that stopped the scan.
    fn requests(input: &[u8]) -> (Vec<Vec<Vec<u8>>>, Option<String>) {
        requests_with(input, limits())
    }

    fn requests_with(input: &[u8], limits: Limits) -> (Vec<Vec<Vec<u8>>>, Option<String>) {
        let mut scanner = RequestScanner::new(limits);
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        loop {
            match scanner.next_request(&mut buf) {
                Ok(Some(r)) => out.push(args_of(&r)),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e.to_string())),
            }
        }
    }

    fn request_error(input: &[u8]) -> String {
        request_error_with(input, limits())
    }

    fn request_error_with(input: &[u8], limits: Limits) -> String {
        match requests_with(input, limits) {
            (_, Some(e)) => e,
            (reqs, None) => panic!("no error for {input:?}: {reqs:?}"),
        }
    }

    fn one_request(input: &[u8]) -> Request {
        let mut scanner = RequestScanner::new(limits());
        let mut buf = BytesMut::from(input);
        let r = scanner.next_request(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty(), "left over: {buf:?}");
        r
    }

    fn frame_len(input: &[u8]) -> Result<Option<usize>, ProtocolError> {
        ReplyScanner::new(limits()).scan(input)
    }

    fn reply_error(input: &[u8]) -> String {
        reply_error_with(input, limits())
    }

    fn reply_error_with(input: &[u8], limits: Limits) -> String {
        match ReplyScanner::new(limits).scan(input) {
            Err(e) => {
                assert!(e.is_reply_error());
                e.to_string()
            }
            other => panic!("no error for {input:?}: {other:?}"),
        }
    }

    /// Asserts `frame` is exactly one complete frame, fed whole, with garbage after it,
    /// and one byte at a time; and that every proper prefix is incomplete.
    fn assert_frame(frame: &[u8]) {
        assert_eq!(frame_len(frame).unwrap(), Some(frame.len()), "{frame:?}");
        let mut followed = frame.to_vec();
        followed.extend_from_slice(b"+next\r\n");
        assert_eq!(frame_len(&followed).unwrap(), Some(frame.len()));
        for cut in 0..frame.len() {
            let prefix = frame.get(..cut).unwrap();
            assert_eq!(
                frame_len(prefix).unwrap(),
                None,
                "prefix {cut} of {frame:?}"
            );
        }
        let mut scanner = ReplyScanner::new(limits());
        for end in 1..=frame.len() {
            let got = scanner.scan(frame.get(..end).unwrap()).unwrap();
            if end < frame.len() {
                assert_eq!(got, None, "byte {end} of {frame:?}");
            } else {
                assert_eq!(got, Some(frame.len()), "{frame:?}");
            }
        }
    }

    /// Small deterministic PRNG (xorshift64*), so fuzz failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn pick<'a>(&mut self, items: &[&'a [u8]]) -> &'a [u8] {
            items[self.below(items.len())]
        }
    }

    // ---------------------------------------------------------------- requests

    #[test]
    fn request_array_is_forwarded_as_sent() {
        let input = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n";
        let r = one_request(input);
        assert_eq!(r.raw().as_ref(), input);
        assert_eq!(r.argc(), 3);
        assert_eq!(r.arg(0), b"SET");
        assert_eq!(r.arg(1), b"k");
        assert_eq!(r.arg(2), b"hello");
        assert_eq!(r.arg(3), b"");
        assert_eq!(r.into_raw().as_ref(), input);
    }

    #[test]
    fn binary_and_empty_arguments() {
        let r = one_request(b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$4\r\n\r\n\0\xff\r\n");
        assert_eq!(
            args_of(&r),
            vec![b"SET".to_vec(), vec![], b"\r\n\0\xff".to_vec()]
        );
    }

    #[test]
    fn many_arguments_spill_to_the_heap() {
        let words: Vec<String> = (0..100).map(|i| format!("arg{i}")).collect();
        let r = Request::from_args(&words);
        let again = one_request(r.raw());
        assert_eq!(again.argc(), 100);
        for (i, w) in words.iter().enumerate() {
            assert_eq!(again.arg(i), w.as_bytes());
        }
        assert_eq!(again.arg(100), b"");
        // Exactly 8 and 9 arguments, around the inline capacity.
        for n in [8usize, 9] {
            let words: Vec<String> = (0..n).map(|i| i.to_string()).collect();
            let r = one_request(Request::from_args(&words).raw());
            assert_eq!(
                args_of(&r),
                strs(&words.iter().map(String::as_str).collect::<Vec<_>>())
            );
        }
    }

    #[test]
    fn pipeline_of_many_requests_in_one_buffer() {
        let mut input = Vec::new();
        for i in 0..1000 {
            if i % 3 == 0 {
                input.extend_from_slice(format!("GET key{i}\r\n").as_bytes());
            } else {
                let k = format!("key{i}");
                input.extend_from_slice(
                    format!("*2\r\n$3\r\nGET\r\n${}\r\n{k}\r\n", k.len()).as_bytes(),
                );
            }
        }
        let (reqs, err) = requests(&input);
        assert_eq!(err, None);
        assert_eq!(reqs.len(), 1000);
        for (i, r) in reqs.iter().enumerate() {
            assert_eq!(r, &strs(&["GET", &format!("key{i}")]));
        }
    }

    #[test]
    fn partial_request_leaves_buffer_alone_until_complete() {
        let mut scanner = RequestScanner::new(limits());
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1\r\n"[..]);
        assert!(scanner.next_request(&mut buf).unwrap().is_none());
        assert_eq!(buf.len(), 17);
        buf.extend_from_slice(b"k\r\n*1\r\n$4\r\nPI");
        let r = scanner.next_request(&mut buf).unwrap().unwrap();
        assert_eq!(args_of(&r), strs(&["GET", "k"]));
        assert_eq!(&buf[..], b"*1\r\n$4\r\nPI");
        assert!(scanner.next_request(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"NG\r\n");
        let r = scanner.next_request(&mut buf).unwrap().unwrap();
        assert_eq!(args_of(&r), strs(&["PING"]));
        assert!(buf.is_empty());
        assert!(scanner.next_request(&mut buf).unwrap().is_none());
    }

    #[test]
    fn empty_and_negative_arrays_and_empty_lines_are_skipped() {
        let (reqs, err) =
            requests(b"*0\r\n*-1\r\n*-10\r\n\r\n\n   \t \r\n*1\r\n$4\r\nPING\r\n\r\n");
        assert_eq!(err, None);
        assert_eq!(reqs, vec![strs(&["PING"])]);
        // Skipped requests are consumed from the buffer.
        let mut scanner = RequestScanner::new(limits());
        let mut buf = BytesMut::from(&b"*0\r\n\r\n"[..]);
        assert!(scanner.next_request(&mut buf).unwrap().is_none());
        assert!(buf.is_empty());
    }

    #[test]
    fn inline_commands() {
        let (reqs, err) = requests(b"PING\r\nset  k   v\nGET k\r\n  ECHO\t x \r\n");
        assert_eq!(err, None);
        assert_eq!(
            reqs,
            vec![
                strs(&["PING"]),
                strs(&["set", "k", "v"]),
                strs(&["GET", "k"]),
                strs(&["ECHO", "x"])
            ]
        );
    }

    #[test]
    fn inline_raw_is_a_resp_array() {
        let r = one_request(b"SET k \"a b\"\r\n");
        assert_eq!(
            r.raw().as_ref(),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\na b\r\n"
        );
        assert_eq!(r.arg(2), b"a b");
        // And it scans back to the same arguments.
        assert_eq!(args_of(&one_request(r.raw())), strs(&["SET", "k", "a b"]));
    }

    #[test]
    fn inline_quotes_and_escapes_follow_sdssplitargs() {
        let cases: &[(&[u8], &[&[u8]])] = &[
            (b"set \"a b\" 'c d'", &[b"set", b"a b", b"c d"]),
            (br#"x "\n\r\t\b\a\\\"\q""#, &[b"x", b"\n\r\t\x08\x07\\\"q"]),
            (br#"x "\x41\x7a\xff\x4""#, &[b"x", b"Az\xffx4"]),
            (br"x 'it\'s' 'a\nb'", &[b"x", b"it's", b"a\\nb"]),
            (b"x foo\"bar baz\" y", &[b"x", b"foobar baz", b"y"]),
            (b"x \"\" ''", &[b"x", b"", b""]),
            (b"a\x0bb c", &[b"a\x0bb", b"c"]),
            (b"a\rb", &[b"a", b"b"]),
            (b"get k\0ignored \"", &[b"get", b"k"]),
        ];
        for (line, want) in cases {
            let mut input = line.to_vec();
            input.extend_from_slice(b"\r\n");
            let r = one_request(&input);
            let want: Vec<Vec<u8>> = want.iter().map(|w| w.to_vec()).collect();
            assert_eq!(args_of(&r), want, "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn inline_unbalanced_quotes() {
        for line in [
            &b"set \"abc\r\n"[..],
            b"set 'abc\r\n",
            b"set \"a\"b\r\n",
            b"set 'a'b\r\n",
            b"set \"ab\\\"\r\n",
            b"set \"a\0\"\r\n",
        ] {
            assert_eq!(
                request_error(line),
                "Protocol error: unbalanced quotes in request",
                "{line:?}"
            );
        }
    }

    #[test]
    fn inline_too_big() {
        let small = Limits {
            max_inline_len: 10,
            ..limits()
        };
        // 10 bytes before the newline is the most accepted.
        assert_eq!(requests_with(b"aaaaaaaaa\r\n", small).0.len(), 1);
        assert_eq!(requests_with(b"aaaaaaaaaa\n", small).0.len(), 1);
        assert_eq!(
            request_error_with(b"aaaaaaaaaaa\n", small),
            "Protocol error: too big inline request"
        );
        // Refused as soon as the line is too long, without waiting for its end.
        assert_eq!(
            request_error_with(b"aaaaaaaaaaa", small),
            "Protocol error: too big inline request"
        );
        assert_eq!(requests_with(b"aaaaaaaaaa", small), (vec![], None));
        // Default limit: 64 KiB.
        let long = vec![b'a'; 64 * 1024 + 1];
        assert_eq!(
            request_error(&long),
            "Protocol error: too big inline request"
        );
        assert_eq!(requests(&long[1..]), (vec![], None));
    }

    #[test]
    fn redis_test_suite_vectors() {
        // tests/unit/protocol.tcl
        assert_eq!(requests(b"\r\n"), (vec![], None));
        assert_eq!(requests(b"*-10\r\n"), (vec![], None));
        assert_eq!(
            request_error(b"*20000000\r\n"),
            "Protocol error: invalid multibulk length"
        );
        assert_eq!(
            request_error(b"*3000000000\r\n"),
            "Protocol error: invalid multibulk length"
        );
        assert_eq!(
            request_error(b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n"),
            "Protocol error: expected '$', got 'f'"
        );
        assert_eq!(
            request_error(b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$-10\r\n"),
            "Protocol error: invalid bulk length"
        );
        assert_eq!(
            request_error(b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$2000000000\r\n"),
            "Protocol error: invalid bulk length"
        );
        assert_eq!(
            request_error(b"*1\r\n$\xff\r\n"),
            "Protocol error: invalid bulk length"
        );
    }

    #[test]
    fn request_count_and_length_errors() {
        for bad in [
            &b"*\r\n"[..],
            b"*x\r\n",
            b"*01\r\n",
            b"*+1\r\n",
            b"*1 \r\n",
            b"*-0\r\n",
            b"*1\rx",
        ] {
            assert_eq!(
                request_error(bad),
                "Protocol error: invalid multibulk length",
                "{bad:?}"
            );
        }
        for bad in [
            &b"*1\r\n$\r\n"[..],
            b"*1\r\n$x\r\n",
            b"*1\r\n$03\r\n",
            b"*1\r\n$-1\r\n",
            b"*1\r\n$3\rx",
        ] {
            assert_eq!(
                request_error(bad),
                "Protocol error: invalid bulk length",
                "{bad:?}"
            );
        }
        assert_eq!(
            request_error(b"*1\r\n:1\r\n"),
            "Protocol error: expected '$', got ':'"
        );
        assert_eq!(
            request_error(b"*2\r\n$1\r\na\r\n\r\n"),
            "Protocol error: expected '$', got ' '"
        );
        assert_eq!(
            request_error(b"*1\r\n\x80"),
            "Protocol error: expected '$', got '\\x80'"
        );
        assert_eq!(
            request_error(b"*1\r\n$3\r\nfooXY"),
            "Protocol error: expected CRLF after bulk data"
        );
        assert_eq!(
            request_error(b"*1\r\n$3\r\nfoo\rX"),
            "Protocol error: expected CRLF after bulk data"
        );
    }

    #[test]
    fn request_limits_are_checked_before_the_payload_arrives() {
        let small = Limits {
            max_bulk_len: 10,
            max_args: 3,
            ..limits()
        };
        assert_eq!(
            request_error_with(b"*4\r\n", small),
            "Protocol error: invalid multibulk length"
        );
        assert_eq!(requests_with(b"*3\r\n", small), (vec![], None));
        assert_eq!(
            request_error_with(b"*1\r\n$11\r\n", small),
            "Protocol error: invalid bulk length"
        );
        assert_eq!(
            requests_with(b"*1\r\n$10\r\n0123456789\r\n", small).0,
            vec![strs(&["0123456789"])]
        );
        // Default: 512 MiB allowed, one more refused; nothing is reserved for either.
        assert_eq!(requests(b"*1\r\n$536870912\r\n"), (vec![], None));
        assert_eq!(
            request_error(b"*1\r\n$536870913\r\n"),
            "Protocol error: invalid bulk length"
        );
        assert_eq!(requests(b"*1048576\r\n"), (vec![], None));
        assert_eq!(
            request_error(b"*1048577\r\n"),
            "Protocol error: invalid multibulk length"
        );
        // Inline words count as arguments too.
        assert_eq!(
            request_error_with(b"a b c d\r\n", small),
            "Protocol error: invalid multibulk length"
        );
    }

    #[test]
    fn count_strings_too_big() {
        let mut mbulk = b"*".to_vec();
        mbulk.extend(vec![b'1'; 64 * 1024]);
        assert_eq!(
            request_error(&mbulk),
            "Protocol error: too big mbulk count string"
        );
        assert_eq!(requests(&mbulk[..64 * 1024]), (vec![], None));
        let mut bulk = b"*1\r\n$".to_vec();
        bulk.extend(vec![b'1'; 64 * 1024]);
        assert_eq!(
            request_error(&bulk),
            "Protocol error: too big bulk count string"
        );
        assert_eq!(requests(&bulk[..bulk.len() - 1]), (vec![], None));
        // The same line with its CRLF already there gets the same error.
        bulk.extend_from_slice(b"\r\n");
        assert_eq!(
            request_error(&bulk),
            "Protocol error: too big bulk count string"
        );
    }

    #[test]
    fn hundred_args_one_byte_per_read_is_linear() {
        let words: Vec<String> = (0..100).map(|i| format!("value-{i}")).collect();
        let input = Request::from_args(&words).into_raw();
        let mut scanner = RequestScanner::new(limits());
        let mut buf = BytesMut::new();
        let mut got = None;
        for (i, &b) in input.iter().enumerate() {
            buf.extend_from_slice(&[b]);
            let r = scanner.next_request(&mut buf).unwrap();
            if i + 1 < input.len() {
                assert!(r.is_none());
            } else {
                got = r;
            }
        }
        let got = got.unwrap();
        assert_eq!(got.raw(), &input);
        assert_eq!(got.argc(), 100);
        assert_eq!(got.arg(99), b"value-99");
        // Each byte looked at about once (a partial "\r" is looked at twice), and
        // payload bytes not at all.
        assert!(
            scanner.bytes_examined() <= 2 * input.len(),
            "{}",
            scanner.bytes_examined()
        );
        assert!(scanner.bytes_examined() < input.len() - 100 * 7);
    }

    #[test]
    fn big_bulk_in_16k_reads() {
        let value = vec![b'v'; 2 * 1024 * 1024];
        let input = Request::from_args(&[&b"SET"[..], b"key", &value]).into_raw();
        let mut scanner = RequestScanner::new(limits());
        let mut buf = BytesMut::new();
        let mut calls = 0;
        let mut needed_seen = 0;
        let mut got = None;
        for chunk in input.chunks(16 * 1024) {
            buf.extend_from_slice(chunk);
            calls += 1;
            if let Some(r) = scanner.next_request(&mut buf).unwrap() {
                got = Some(r);
            } else {
                let needed = scanner.bytes_needed(&buf);
                assert_eq!(buf.len() + needed, input.len());
                needed_seen += 1;
            }
        }
        let got = got.unwrap();
        assert_eq!(got.arg(2).len(), value.len());
        assert_eq!(got.raw(), &input);
        assert_eq!(calls, 129);
        assert_eq!(needed_seen, 128);
        // Only the header lines were scanned; the 2 MB payload never was.
        assert!(
            scanner.bytes_examined() < 64,
            "{}",
            scanner.bytes_examined()
        );
        assert_eq!(scanner.bytes_needed(&buf), 0);
    }

    #[test]
    fn from_args_encodes_resp() {
        let r = Request::from_args(&["CLUSTER", "SHARDS"]);
        assert_eq!(r.raw().as_ref(), b"*2\r\n$7\r\nCLUSTER\r\n$6\r\nSHARDS\r\n");
        assert_eq!(r.argc(), 2);
        let big = "x".repeat(12345);
        let r = Request::from_args(&[big.as_str()]);
        assert_eq!(r.raw().len(), 4 + 8 + 12345 + 2);
        assert_eq!(r.arg(0), big.as_bytes());
        let empty = Request::from_args::<&str>(&[]);
        assert_eq!(empty.raw().as_ref(), b"*0\r\n");
        assert_eq!(empty.argc(), 0);
    }

    #[test]
    fn parse_int_matches_string2ll() {
        assert_eq!(parse_int(b"0"), Some(0));
        assert_eq!(parse_int(b"7"), Some(7));
        assert_eq!(parse_int(b"-1"), Some(-1));
        assert_eq!(parse_int(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_int(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"00",
            b"01",
            b"+1",
            b" 1",
            b"1 ",
            b"1a",
            b"1.5",
            b"x",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"99999999999999999999",
            b"123456789012345678901",
        ] {
            assert_eq!(parse_int(bad), None, "{bad:?}");
        }
    }

    // ---------------------------------------------------------------- replies

    #[test]
    fn every_simple_type() {
        for frame in [
            &b"+OK\r\n"[..],
            b"-ERR unknown command 'foo'\r\n",
            b"-MOVED 3999 127.0.0.1:6381\r\n",
            b":0\r\n",
            b":-42\r\n",
            b"+\r\n",
            b"_\r\n",
            b",3.14\r\n",
            b",-inf\r\n",
            b"#t\r\n",
            b"#f\r\n",
            b"(3492890328409238509324850943850943825024385\r\n",
            b"+a\rb\r\n",
        ] {
            assert_frame(frame);
        }
    }

    #[test]
    fn bulk_types_and_nulls() {
        for frame in [
            &b"$5\r\nhello\r\n"[..],
            b"$0\r\n\r\n",
            b"$-1\r\n",
            b"$4\r\n\r\n\r\n\r\n",
            b"!21\r\nSYNTAX invalid syntax\r\n",
            b"=15\r\ntxt:Some string\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b"%0\r\n",
            b"~0\r\n",
            b">0\r\n",
        ] {
            assert_frame(frame);
        }
    }

    #[test]
    fn aggregates() {
        for frame in [
            &b"*2\r\n$3\r\nfoo\r\n$3\r\nbar\r\n"[..],
            b"*3\r\n:1\r\n:2\r\n:3\r\n",
            b"*2\r\n*3\r\n:1\r\n:2\r\n:3\r\n*2\r\n+Foo\r\n-Bar\r\n",
            b"*3\r\n$3\r\nfoo\r\n$-1\r\n$3\r\nbar\r\n",
            b"*2\r\n*-1\r\n*0\r\n",
            b"*1\r\n*1\r\n*1\r\n*0\r\n",
            b"%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n",
            b"%1\r\n*2\r\n:1\r\n:2\r\n%1\r\n+a\r\n_\r\n",
            b"~3\r\n+orange\r\n+apple\r\n#t\r\n",
            b">3\r\n$7\r\nmessage\r\n$3\r\nch1\r\n$5\r\nhello\r\n",
            b"*3\r\n$5\r\nslots\r\n*2\r\n:0\r\n:5460\r\n%1\r\n$2\r\nid\r\n$3\r\nabc\r\n",
        ] {
            assert_frame(frame);
        }
    }

    #[test]
    fn attributes_prefix_the_value_they_annotate() {
        let frame = b"|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n*2\r\n:2039123\r\n:9543892\r\n";
        assert_frame(frame);
        // Inside an aggregate the attribute and its value are one element.
        assert_frame(b"*3\r\n:1\r\n:2\r\n|1\r\n+ttl\r\n:3600\r\n:3\r\n");
        assert_frame(b"|0\r\n+OK\r\n");
        // An attribute alone is not a frame yet.
        assert_eq!(frame_len(b"|1\r\n+a\r\n+b\r\n").unwrap(), None);
        // Attribute before a push.
        assert_frame(b"|1\r\n+a\r\n+b\r\n>2\r\n+pubsub\r\n+x\r\n");
    }

    #[test]
    fn streamed_strings_and_aggregates() {
        for frame in [
            &b"$?\r\n;4\r\nHell\r\n;5\r\no wor\r\n;1\r\nd\r\n;0\r\n"[..],
            b"$?\r\n;0\r\n",
            b"*?\r\n:1\r\n:2\r\n:3\r\n.\r\n",
            b"*?\r\n.\r\n",
            b"%?\r\n+a\r\n:1\r\n+b\r\n:2\r\n.\r\n",
            b"~?\r\n+a\r\n+b\r\n.\r\n",
            b"*2\r\n*?\r\n$?\r\n;1\r\nx\r\n;0\r\n.\r\n:5\r\n",
        ] {
            assert_frame(frame);
        }
    }

    #[test]
    fn pipeline_of_replies() {
        let frames: &[&[u8]] = &[
            b"+OK\r\n",
            b"$3\r\nfoo\r\n",
            b"*2\r\n:1\r\n$-1\r\n",
            b"%1\r\n+a\r\n+b\r\n",
            b"_\r\n",
        ];
        let mut buf = BytesMut::new();
        for f in frames {
            buf.extend_from_slice(f);
        }
        let mut scanner = ReplyScanner::new(limits());
        for f in frames {
            let len = scanner.scan(&buf).unwrap().unwrap();
            assert_eq!(&buf.split_to(len)[..], *f);
        }
        assert_eq!(scanner.scan(&buf).unwrap(), None);
    }

    #[test]
    fn reply_errors() {
        assert_eq!(
            reply_error(b"x\r\n"),
            "Protocol error: invalid reply type byte 'x'"
        );
        assert_eq!(
            reply_error(b"*1\r\n\x01"),
            "Protocol error: invalid reply type byte '\\x01'"
        );
        for bad in [
            &b"$-2\r\n"[..],
            b"$x\r\n",
            b"$\r\n",
            b"*-2\r\n",
            b"%-1\r\n",
            b">-1\r\n",
            b"!-1\r\n",
            b"|?\r\n",
            b">?\r\n",
            b"!?\r\n",
            b"*1\rx",
            b"*99999999999999999999\r\n",
            b"$1111111111111111111111111111111111",
        ] {
            assert_eq!(
                reply_error(bad),
                "Protocol error: invalid reply length",
                "{bad:?}"
            );
        }
        assert_eq!(
            reply_error(b"$3\r\nfoo\n\r"),
            "Protocol error: reply bulk not followed by CRLF"
        );
        assert_eq!(
            reply_error(b"$536870913\r\n"),
            "Protocol error: reply bulk too big"
        );
        let small = Limits {
            max_bulk_len: 4,
            ..limits()
        };
        assert_eq!(
            reply_error_with(b"+hello", small),
            "Protocol error: reply line too long"
        );
        assert_eq!(ReplyScanner::new(small).scan(b"+hell").unwrap(), None);
        assert_eq!(
            ReplyScanner::new(small).scan(b"+hell\r\n").unwrap(),
            Some(7)
        );
        for bad in [
            &b".\r\n"[..],
            b"*1\r\n.\r\n",
            b"%?\r\n+a\r\n.\r\n",
            b"*?\r\n.x\r\n",
        ] {
            assert_eq!(
                reply_error(bad),
                "Protocol error: unexpected '.' in streamed reply",
                "{bad:?}"
            );
        }
        assert_eq!(
            reply_error(b";1\r\n"),
            "Protocol error: unexpected ';' in streamed reply"
        );
        assert_eq!(
            reply_error(b"$?\r\n+x\r\n"),
            "Protocol error: unexpected '+' in streamed reply"
        );
        assert_eq!(
            reply_error(b"$?\r\n;-1\r\n"),
            "Protocol error: invalid reply length"
        );
    }

    #[test]
    fn deep_nesting_is_bounded_without_recursion() {
        let mut deep = b"*1\r\n".repeat(100_000);
        deep.extend_from_slice(b":1\r\n");
        assert_eq!(
            reply_error(&deep),
            "Protocol error: reply nested too deeply"
        );
        // Exactly max_depth levels are fine, one more is not.
        let nested = |n: usize| {
            let mut f = b"*1\r\n".repeat(n);
            f.extend_from_slice(b":1\r\n");
            f
        };
        let f = nested(DEFAULT_MAX_DEPTH);
        assert_eq!(frame_len(&f).unwrap(), Some(f.len()));
        assert_eq!(
            reply_error(&nested(DEFAULT_MAX_DEPTH + 1)),
            "Protocol error: reply nested too deeply"
        );
        // With the bound lifted, 100,000 levels scan fine: no recursion.
        let unbounded = Limits {
            max_depth: usize::MAX,
            ..limits()
        };
        assert_eq!(
            ReplyScanner::new(unbounded).scan(&deep).unwrap(),
            Some(deep.len())
        );
        // Streamed aggregates and attributes count as levels too.
        let tight = Limits {
            max_depth: 1,
            ..limits()
        };
        assert_eq!(
            reply_error_with(b"*?\r\n*?\r\n", tight),
            "Protocol error: reply nested too deeply"
        );
        assert_eq!(
            reply_error_with(b"|1\r\n+a\r\n*1\r\n", tight),
            "Protocol error: reply nested too deeply"
        );
        assert_eq!(
            ReplyScanner::new(tight)
                .scan(b"*1\r\n$?\r\n;0\r\n")
                .unwrap(),
            Some(12)
        );
    }

    #[test]
    fn fast_decimal_takes_only_plain_complete_numbers() {
        assert_eq!(fast_decimal(b"$0\r\n", 1), Some((0, 4)));
        assert_eq!(fast_decimal(b"*123\r\nx", 1), Some((123, 6)));
        let max = b"999999999999999999\r\n";
        assert_eq!(fast_decimal(max, 0), Some((999_999_999_999_999_999, 20)));
        for bad in [
            &b"1234567890123456789\r\n"[..], // 19 digits
            b"00\r\n",
            b"01\r\n",
            b"-1\r\n",
            b"+1\r\n",
            b"1 \r\n",
            b"\r\n",
            b"12\r",
            b"12\rx",
            b"12",
            b"",
        ] {
            assert_eq!(fast_decimal(bad, 0), None, "{bad:?}");
        }
        assert_eq!(fast_decimal(b"5\r\n", 9), None);
    }

    #[test]
    fn arg_offsets_spill_past_the_inline_slots_and_past_4_gib() {
        let mut small = ArgOffsets::default();
        for i in 0..INLINE_ARGS + 3 {
            small.push((i * 10, i), INLINE_ARGS + 3);
        }
        assert_eq!(small.len(), INLINE_ARGS + 3);
        assert!(small.iter().eq((0..INLINE_ARGS + 3).map(|i| (i * 10, i))));
        let far = u32::MAX as usize + 7;
        let mut big = ArgOffsets::default();
        big.push((4, 3), 3);
        big.push((far, 2), 3);
        big.push((far + 4, usize::MAX / 2), 3);
        assert_eq!(big.get(0), Some((4, 3)));
        assert_eq!(big.get(1), Some((far, 2)));
        assert_eq!(big.get(2), Some((far + 4, usize::MAX / 2)));
        assert_eq!(big.get(3), None);
    }

    /// Whole, complete buffers take the fast paths; the limits must hold there exactly
    /// as when the same bytes arrive in pieces.
    #[test]
    fn limits_hold_for_whole_buffers_too() {
        use ProtocolErrorKind::*;
        let tight = Limits {
            max_bulk_len: 10,
            max_args: 2,
            max_inline_len: 3,
            ..Limits::default()
        };
        let request_error = |input: &[u8]| {
            let mut buf = BytesMut::from(input);
            RequestScanner::new(tight)
                .next_request(&mut buf)
                .unwrap_err()
                .kind()
        };
        assert_eq!(
            request_error(b"*2\r\n$3\r\nGET\r\n$11\r\nabcdefghijk\r\n"),
            InvalidBulkLength
        );
        assert_eq!(
            request_error(b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"),
            InvalidMultibulkLength
        );
        assert_eq!(request_error(b"*1\r\n$1000\r\n"), TooBigBulkCountString);
        assert_eq!(request_error(b"*2\r\n$3\r\nGET\r\n$1\r\nkXY"), MissingCrlf);
        // Within the limits the same shapes pass.
        let mut ok = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"[..]);
        let r = RequestScanner::new(tight)
            .next_request(&mut ok)
            .unwrap()
            .unwrap();
        assert_eq!(args_of(&r), strs(&["GET", "k"]));

        let reply_error = |input: &[u8]| ReplyScanner::new(tight).scan(input).unwrap_err().kind();
        assert_eq!(reply_error(b"$11\r\nabcdefghijk\r\n"), ReplyBulkTooBig);
        assert_eq!(reply_error(b"+abcdefghijk\r\n"), ReplyLineTooLong);
        assert_eq!(reply_error(b"$3\r\nabcX\n"), ReplyMissingCrlf);
        // A bare CR inside a simple line is part of the line, as in Redis's own replies.
        assert_eq!(
            ReplyScanner::new(limits()).scan(b"+a\rb\r\n").unwrap(),
            Some(6)
        );
        assert_eq!(
            ReplyScanner::new(tight)
                .scan(b"$10\r\n0123456789\r\n")
                .unwrap(),
            Some(17)
        );
    }

    #[test]
    fn big_reply_bulk_in_16k_reads() {
        let mut frame = b"$2097152\r\n".to_vec();
        frame.extend(vec![b'v'; 2 * 1024 * 1024]);
        frame.extend_from_slice(b"\r\n");
        let mut scanner = ReplyScanner::new(limits());
        let mut buf = Vec::new();
        let mut done = None;
        let mut calls = 0;
        for chunk in frame.chunks(16 * 1024) {
            buf.extend_from_slice(chunk);
            calls += 1;
            match scanner.scan(&buf).unwrap() {
                Some(len) => done = Some(len),
                None => assert_eq!(buf.len() + scanner.bytes_needed(buf.len()), frame.len()),
            }
        }
        assert_eq!(done, Some(frame.len()));
        assert_eq!(calls, 129);
        // Only the header line was examined across all calls: once by the fast path's
        // one try, once by the general scanner; the 2 MiB payload never.
        assert!(
            scanner.bytes_examined() <= 20,
            "{}",
            scanner.bytes_examined()
        );
        assert_eq!(scanner.bytes_needed(buf.len()), 0);
    }

    #[test]
    fn big_aggregate_one_byte_at_a_time_is_linear() {
        let mut frame = b"*1000\r\n".to_vec();
        for i in 0..1000 {
            frame.extend_from_slice(format!("+element {i}\r\n").as_bytes());
        }
        let mut scanner = ReplyScanner::new(limits());
        for end in 1..=frame.len() {
            let got = scanner.scan(&frame[..end]).unwrap();
            assert_eq!(got, (end == frame.len()).then_some(frame.len()));
        }
        assert!(scanner.bytes_examined() <= 2 * frame.len());
    }

    // ---------------------------------------------------------------- fuzz

    /// A random valid RESP3 value, at most `depth` levels deep.
    fn random_frame(rng: &mut Rng, depth: usize, out: &mut Vec<u8>) {
        let kinds = if depth == 0 { 9 } else { 17 };
        let n = rng.below(4);
        match rng.below(kinds) {
            0 => out.extend_from_slice(b"+OK\r\n"),
            1 => out.extend_from_slice(b"-ERR x\ry\r\n"),
            2 => out.extend_from_slice(format!(":{}\r\n", rng.next() as i64).as_bytes()),
            3 => out.extend_from_slice(b"_\r\n"),
            4 => out.extend_from_slice(b"$-1\r\n"),
            5 => {
                let len = rng.below(20);
                out.extend_from_slice(format!("${len}\r\n").as_bytes());
                out.extend(vec![b'\r'; len]);
                out.extend_from_slice(b"\r\n");
            }
            6 => out.extend_from_slice(b"=7\r\ntxt:abc\r\n"),
            7 => out.extend_from_slice(b"*-1\r\n"),
            8 => {
                out.extend_from_slice(b"$?\r\n");
                for _ in 0..n {
                    out.extend_from_slice(b";2\r\nab\r\n");
                }
                out.extend_from_slice(b";0\r\n");
            }
            9 | 10 => {
                out.extend_from_slice(format!("*{n}\r\n").as_bytes());
                (0..n).for_each(|_| random_frame(rng, depth - 1, out));
            }
            11 => {
                out.extend_from_slice(format!("%{n}\r\n").as_bytes());
                (0..2 * n).for_each(|_| random_frame(rng, depth - 1, out));
            }
            12 => {
                out.extend_from_slice(format!("~{n}\r\n").as_bytes());
                (0..n).for_each(|_| random_frame(rng, depth - 1, out));
            }
            13 => {
                out.extend_from_slice(format!(">{n}\r\n").as_bytes());
                (0..n).for_each(|_| random_frame(rng, depth - 1, out));
            }
            14 => {
                out.extend_from_slice(format!("|{n}\r\n").as_bytes());
                (0..2 * n + 1).for_each(|_| random_frame(rng, depth - 1, out));
            }
            15 => {
                out.extend_from_slice(b"*?\r\n");
                (0..n).for_each(|_| random_frame(rng, depth - 1, out));
                out.extend_from_slice(b".\r\n");
            }
            _ => {
                out.extend_from_slice(b"%?\r\n");
                (0..2 * n).for_each(|_| random_frame(rng, depth - 1, out));
                out.extend_from_slice(b".\r\n");
            }
        }
    }

    #[test]
    fn random_valid_frames_scan_whole_and_split() {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        for _ in 0..300 {
            let mut frames = Vec::new();
            let mut stream = Vec::new();
            for _ in 0..1 + rng.below(4) {
                let start = stream.len();
                random_frame(&mut rng, 4, &mut stream);
                frames.push(stream.len() - start);
            }
            assert_eq!(scan_replies(&stream, &[stream.len()]).0, frames);
            let splits = random_splits(&mut rng, stream.len());
            assert_eq!(scan_replies(&stream, &splits).0, frames);
        }
        // A sample fed one byte at a time, cut at every position.
        for _ in 0..30 {
            let mut stream = Vec::new();
            random_frame(&mut rng, 3, &mut stream);
            let ones: Vec<usize> = (1..=stream.len()).collect();
            assert_eq!(scan_replies(&stream, &ones).0, vec![stream.len()]);
        }
    }

    /// Cut points (ends of reads) for `len` bytes.
    fn random_splits(rng: &mut Rng, len: usize) -> Vec<usize> {
        let mut cuts: Vec<usize> = (0..rng.below(8)).map(|_| rng.below(len + 1)).collect();
        if rng.below(4) == 0 {
            cuts.extend(1..len.min(40));
        }
        cuts.push(len);
        cuts.sort_unstable();
        cuts.dedup();
        cuts
    }

    /// Frame lengths found feeding `stream` in reads ending at `cuts`, and the error or
    /// leftover that ended the scan.
    fn scan_replies(stream: &[u8], cuts: &[usize]) -> (Vec<usize>, Result<usize, ProtocolError>) {
        let limits = Limits {
            max_bulk_len: 24,
            max_depth: 5,
            ..Limits::default()
        };
        let mut scanner = ReplyScanner::new(limits);
        let mut buf = BytesMut::new();
        let mut fed = 0;
        let mut frames = Vec::new();
        for &cut in cuts {
            buf.extend_from_slice(&stream[fed..cut]);
            fed = cut;
            loop {
                match scanner.scan(&buf) {
                    Ok(Some(len)) => {
                        assert!(len > 0 && len <= buf.len());
                        frames.push(len);
                        buf.advance(len);
                    }
                    Ok(None) => break,
                    Err(e) => return (frames, Err(e)),
                }
            }
        }
        (frames, Ok(buf.len()))
    }

    type RequestOutcome = (Vec<(Vec<Vec<u8>>, Bytes)>, Result<usize, ProtocolError>);

    fn scan_requests(stream: &[u8], cuts: &[usize]) -> RequestOutcome {
        let limits = Limits {
            max_bulk_len: 16,
            max_args: 6,
            max_inline_len: 24,
            ..Limits::default()
        };
        let mut scanner = RequestScanner::new(limits);
        let mut buf = BytesMut::new();
        let mut fed = 0;
        let mut out = Vec::new();
        for &cut in cuts {
            buf.extend_from_slice(&stream[fed..cut]);
            fed = cut;
            loop {
                let before = buf.len();
                match scanner.next_request(&mut buf) {
                    Ok(Some(r)) => {
                        assert!(r.argc() > 0);
                        assert!(buf.len() < before);
                        let _ = scanner.bytes_needed(&buf);
                        out.push((args_of(&r), r.into_raw()));
                    }
                    Ok(None) => {
                        let _ = scanner.bytes_needed(&buf);
                        break;
                    }
                    Err(e) => return (out, Err(e)),
                }
            }
        }
        (out, Ok(buf.len()))
    }

    const REQUEST_PIECES: &[&[u8]] = &[
        b"*",
        b"$",
        b"*2\r\n",
        b"$3\r\n",
        b"$0\r\n",
        b"$-1\r\n",
        b"*0\r\n",
        b"*-1\r\n",
        b"GET",
        b"foo",
        b"\r\n",
        b"\r",
        b"\n",
        b" ",
        b"\t",
        b"\"",
        b"'",
        b"\\",
        b"\\x4",
        b"1",
        b"0",
        b"-",
        b"9",
        b"17",
        b"x",
        b"\0",
        b"\xff",
        b"*1\r\n$4\r\nPING\r\n",
        b"SET a \"b c\"\r\n",
        b"aaaaaaaaaaaa",
    ];

    const REPLY_PIECES: &[&[u8]] = &[
        b"*",
        b"$",
        b"%",
        b"~",
        b">",
        b"|",
        b"!",
        b"=",
        b";",
        b".",
        b"?",
        b"+",
        b"-",
        b":",
        b",",
        b"(",
        b"#",
        b"_",
        b"\r\n",
        b"\r",
        b"\n",
        b"0",
        b"1",
        b"2",
        b"-1",
        b"9",
        b"x",
        b"\0",
        b"\xff",
        b"+OK\r\n",
        b"$3\r\nabc\r\n",
        b"*2\r\n",
        b"*?\r\n",
        b"$?\r\n",
        b";1\r\n",
        b".\r\n",
        b"%1\r\n",
        b"|1\r\n",
    ];

    fn random_stream(rng: &mut Rng, pieces: &[&[u8]]) -> Vec<u8> {
        let mut stream = Vec::new();
        for _ in 0..rng.below(40) {
            if rng.below(10) == 0 {
                stream.push(rng.next() as u8);
            } else {
                stream.extend_from_slice(rng.pick(pieces));
            }
        }
        stream
    }

    #[test]
    fn fuzz_requests_never_panic_and_split_feeding_agrees() {
        let mut rng = Rng(0x0dd_ba11_cafe_f00d);
        for _ in 0..20_000 {
            let stream = random_stream(&mut rng, REQUEST_PIECES);
            let whole = scan_requests(&stream, &[stream.len()]);
            let splits = random_splits(&mut rng, stream.len());
            let split = scan_requests(&stream, &splits);
            assert_eq!(whole.0, split.0, "{stream:?} cut at {splits:?}");
            assert_eq!(whole.1, split.1, "{stream:?} cut at {splits:?}");
            // Whatever was accepted scans back to itself.
            for (args, raw) in &whole.0 {
                let mut again = BytesMut::from(&raw[..]);
                let r = RequestScanner::new(Limits::default())
                    .next_request(&mut again)
                    .unwrap()
                    .unwrap();
                assert!(again.is_empty());
                assert_eq!(&args_of(&r), args);
            }
        }
    }

    /// Streams of well-formed requests (sometimes over the tight limits of
    /// `scan_requests`, sometimes with one byte changed), scanned whole (the fast path
    /// takes every complete request) and byte by byte (the state machine alone): the
    /// same requests, bytes and error.
    #[test]
    fn fuzz_fast_path_agrees_with_the_state_machine() {
        let mut rng = Rng(0x5eed_fa57_0bad_c0de);
        for _ in 0..5_000 {
            let mut stream = Vec::new();
            for _ in 0..1 + rng.below(4) {
                let argc = 1 + rng.below(8);
                stream.extend_from_slice(format!("*{argc}\r\n").as_bytes());
                for _ in 0..argc {
                    let len = rng.below(20);
                    stream.extend_from_slice(format!("${len}\r\n").as_bytes());
                    let pieces: [&[u8]; 4] = [b"\r", b"\n", b"a", b"$"];
                    for _ in 0..len {
                        stream.extend_from_slice(rng.pick(&pieces));
                    }
                    stream.extend_from_slice(b"\r\n");
                }
            }
            if rng.below(3) == 0 {
                let at = rng.below(stream.len());
                stream[at] = *rng
                    .pick(&[&b"\r"[..], b"0", b"*", b"x", b"-"])
                    .first()
                    .unwrap_or(&0);
            }
            let whole = scan_requests(&stream, &[stream.len()]);
            let byte_by_byte: Vec<usize> = (1..=stream.len()).collect();
            let slow = scan_requests(&stream, &byte_by_byte);
            assert_eq!(whole.0, slow.0, "{stream:?}");
            assert_eq!(whole.1, slow.1, "{stream:?}");
        }
    }

    #[test]
    fn fuzz_replies_never_panic_and_split_feeding_agrees() {
        let mut rng = Rng(0xfeed_face_1234_5678);
        for _ in 0..20_000 {
            let stream = random_stream(&mut rng, REPLY_PIECES);
            let whole = scan_replies(&stream, &[stream.len()]);
            let splits = random_splits(&mut rng, stream.len());
            let split = scan_replies(&stream, &splits);
            assert_eq!(whole, split, "{stream:?} cut at {splits:?}");
        }
    }

    #[test]
    fn fuzz_pure_random_bytes() {
        let mut rng = Rng(42);
        for _ in 0..5_000 {
            let stream: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
            let splits = random_splits(&mut rng, stream.len());
            assert_eq!(
                scan_replies(&stream, &[stream.len()]),
                scan_replies(&stream, &splits)
            );
            let (a, b) = (
                scan_requests(&stream, &[stream.len()]),
                scan_requests(&stream, &splits),
            );
            assert_eq!(a, b);
        }
    }

    /// Flips, inserts or deletes one byte of `stream`.
    fn mutate(rng: &mut Rng, stream: &mut Vec<u8>) {
        let at = rng.below(stream.len() + 1);
        let byte = *rng
            .pick(&[
                &b"\r"[..],
                b"\n",
                b"$",
                b"*",
                b"?",
                b".",
                b";",
                b"0",
                b"-",
                b"x",
            ])
            .first()
            .unwrap_or(&0);
        match rng.below(3) {
            0 if at < stream.len() => stream[at] = byte,
            1 if at < stream.len() => {
                stream.remove(at);
            }
            _ => stream.insert(at, byte),
        }
    }

    #[test]
    fn fuzz_mutated_valid_streams() {
        let mut rng = Rng(0xabad_1dea_0000_0007);
        for _ in 0..5_000 {
            let mut stream = Vec::new();
            for _ in 0..1 + rng.below(3) {
                random_frame(&mut rng, 3, &mut stream);
            }
            mutate(&mut rng, &mut stream);
            let splits = random_splits(&mut rng, stream.len());
            assert_eq!(
                scan_replies(&stream, &[stream.len()]),
                scan_replies(&stream, &splits),
                "{stream:?} cut at {splits:?}"
            );
        }
        for _ in 0..5_000 {
            let mut stream = Vec::new();
            for _ in 0..1 + rng.below(3) {
                let words: Vec<&[u8]> = (0..1 + rng.below(4))
                    .map(|_| rng.pick(&[&b"GET"[..], b"k", b"", b"a b", b"0123456789abcdef"]))
                    .collect();
                if rng.below(3) == 0 {
                    stream.extend_from_slice(&words.join(&b' '));
                    stream.extend_from_slice(b"\r\n");
                } else {
                    stream.extend_from_slice(Request::from_args(&words).raw());
                }
            }
            mutate(&mut rng, &mut stream);
            let splits = random_splits(&mut rng, stream.len());
            assert_eq!(
                scan_requests(&stream, &[stream.len()]),
                scan_requests(&stream, &splits),
                "{stream:?} cut at {splits:?}"
            );
        }
    }
}
