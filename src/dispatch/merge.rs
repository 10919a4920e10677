//! How the replies of a request's parts become the one reply the client gets, as a
//! standalone Redis would give it: the parts of a request split per slot (`MGET`,
//! `DEL`, ...) or fanned out to every master (`DBSIZE`, `KEYS`, `SCRIPT LOAD`, ...).
//! [`merge`] takes the parts' replies in part order and the [`Merge`] the plan chose;
//! it does no IO and touches nothing shared. Also here: the proxy's SCAN cursor
//! ([`ScanCursor`]) and the sums over the masters' `INFO` ([`node_sums`]).
//!
//! Part replies are whole RESP frames in the client's protocol (a node connection
//! speaks its client's protocol). A small reader (`Value`, `Items`) finds the byte
//! ranges of a frame's elements with the proxy's own [`ReplyScanner`], so a merge that
//! only moves elements (`MGET`, `KEYS`, `SCAN`, `SLOWLOG GET` entries) copies them
//! verbatim, once, without decoding them. Only the headers, integers and short strings a
//! merge must read are looked at.
//!
//! Failures, in one rule: the first part in part order that failed, whether it got no
//! reply ([`BackendError`](crate::backend::BackendError)) or an error reply (`-...`, RESP3 `!...`), is the client's
//! reply, as a command that failed on a standalone Redis gives its error. The exception
//! is [`Merge::AnyOk`] (`SCRIPT KILL`): one node's `+OK` wins over the others' errors.
//! A part reply of a shape the merge cannot use (a node answering `DBSIZE` with a
//! string, a malformed frame) becomes an `-ERR slotgate: ...` error reply saying so.

use std::collections::HashSet;

use bytes::{Bytes, BytesMut};

use crate::backend::ReplyResult;
use crate::clients::SubscriptionCounts;
use crate::protocol::reply::{Proto, ReplyWriter};
use crate::protocol::scan::{parse_int, Limits, ReplyScanner};

/// How the replies of a request's parts become the client's one reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merge {
    /// MGET split per slot: element i of the reply is the next unused element of part
    /// `order[i]`. Each part must have exactly as many elements as `order` names it.
    Interleave(Vec<u16>),
    /// DEL, UNLINK, EXISTS, TOUCH, DBSIZE, SLOWLOG LEN, PUBSUB NUMPAT, LATENCY RESET:
    /// sum of the integers.
    Sum,
    /// MSET, FLUSHALL, FLUSHDB, SCRIPT FLUSH, FUNCTION FLUSH/DELETE/RESTORE, CONFIG SET,
    /// CONFIG RESETSTAT, MEMORY PURGE, SLOWLOG RESET: `+OK` when every part says OK.
    AllOk,
    /// KEYS: the arrays concatenated in part order.
    Concat,
    /// PUBSUB CHANNELS, PUBSUB SHARDCHANNELS: union of the arrays, each element once,
    /// first-seen order.
    Union,
    /// SCRIPT EXISTS: element-wise: 1 only where every part says 1.
    AllOnes,
    /// SCRIPT LOAD, FUNCTION LOAD: every part's reply is the same -> that reply; else an
    /// error saying the nodes disagree.
    Same,
    /// RANDOMKEY: the first part's reply that is not null (null when all are).
    FirstNonNull,
    /// SCRIPT KILL, FUNCTION KILL: `+OK` if any part said OK, else the first part's error
    /// (NOTBUSY).
    AnyOk,
    /// PUBSUB NUMSUB, PUBSUB SHARDNUMSUB: per-channel sum of counts, channels in the
    /// request's order (every part lists them so), each adjusted by slotgate's share
    /// (its hubs' subscriptions out, its clients in; by position, none past the end);
    /// a flat array `[ch, n, ...]` or a map, as the nodes give it (Redis 7.0 gives the
    /// flat array in RESP3 too).
    NumSub(Vec<SubscriptionCounts>),
    /// PUBSUB NUMPAT: the sum, adjusted by slotgate's share.
    NumPat(SubscriptionCounts),
    /// SLOWLOG GET \[count\]: every node's entries, newest first by timestamp, at most
    /// `count` (None: Redis's default 10; a negative count given by the client: all),
    /// each entry with the node's address appended as one more element (parts are in
    /// the order of `nodes`).
    /// LATENCY LATEST, LATENCY HISTORY: every node's entries concatenated in part
    /// order (the order of `nodes`), each with the node's address appended as one more
    /// element.
    Tagged { nodes: Vec<String> },
    /// LATENCY DOCTOR, LATENCY GRAPH: every node's text after a line naming the node,
    /// as one text reply.
    Texts { nodes: Vec<String> },
    SlowlogGet {
        count: Option<i64>,
        nodes: Vec<String>,
    },
    /// LATENCY HISTOGRAM: per command, in first-seen order over the parts, `calls`
    /// summed and the nodes' cumulative `histogram_usec` buckets merged bucket by
    /// bucket (at each bucket any node reports, the sum of every node's cumulative
    /// count up to it). A map in RESP3, flat arrays in RESP2, as Redis gives it.
    LatencyHistogram,
    /// FUNCTION STATS: the first part's reply, its `running_script` that of the first
    /// part whose is not null (a function runs on one node at a time per client).
    FunctionStats,
    /// SCAN over one node (one part): the node's reply `[cursor, [keys...]]` with its
    /// cursor replaced by the proxy's [`ScanCursor`]: a node cursor other than 0 is `at`
    /// with that node cursor; node cursor 0 moves on to `next` (cursor 0, the scan's
    /// end, when `None`). A node cursor over [`ScanCursor::NODE_MAX`] gets an error
    /// reply: the proxy's cursor cannot hold it.
    Scan {
        at: ScanCursor,
        next: Option<ScanCursor>,
    },
}

/// Redis's `SLOWLOG GET` default entry count.
const SLOWLOG_DEFAULT_COUNT: usize = 10;

/// Merge the parts' replies (in part order) into the client's reply, in `proto`.
///
/// Contracts per variant are on [`Merge`]; details:
/// - The first failed part (no reply, or an error reply) is the reply, except for
///   [`Merge::AnyOk`], where any `+OK` wins and otherwise the first failed part is the
///   reply.
/// - No parts at all: the neutral reply (`:0`, `+OK`, an empty array, a null) where
///   there is one, else an `-ERR slotgate: ...` error.
/// - [`Merge::Concat`], [`Merge::Union`] accept arrays and RESP3 sets and give an array
///   (`KEYS` and `PUBSUB CHANNELS` reply with arrays in both protocols).
/// - [`Merge::NumSub`] gives the aggregate type the nodes gave: Redis 7.0 answers
///   `PUBSUB NUMSUB` with a flat array in RESP3 too; a node that answers with a map
///   gets its client a map.
/// - [`Merge::SlowlogGet`]: entries with equal timestamps keep part order, then each
///   node's own order (newest first).
pub fn merge(merge: &Merge, parts: Vec<ReplyResult>, proto: Proto) -> ReplyResult {
    if matches!(merge, Merge::AnyOk)
        && parts
            .iter()
            .any(|p| matches!(p.as_deref().map(value), Ok(Ok(Value::Simple(b"OK")))))
    {
        return Ok(ok_reply(proto));
    }
    let mut frames = Vec::with_capacity(parts.len());
    for part in parts {
        match part {
            Err(e) => return Err(e),
            Ok(frame) if is_error_reply(&frame) => return Ok(frame),
            Ok(frame) => frames.push(frame),
        }
    }
    let merged = match merge {
        Merge::Interleave(order) => interleave(order, &frames, proto),
        Merge::Sum => sum(&frames, proto),
        Merge::AllOk => all_ok(&frames, proto),
        Merge::Concat => concat(&frames, proto),
        Merge::Union => union(&frames, proto),
        Merge::AllOnes => all_ones(&frames, proto),
        Merge::Same => same(&frames, proto),
        Merge::FirstNonNull => first_non_null(&frames, proto),
        // No part said OK and none failed.
        Merge::AnyOk => none_ok(&frames),
        Merge::NumSub(adjust) => numsub(adjust, &frames, proto),
        Merge::NumPat(adjust) => sum(&frames, proto).and_then(|total| {
            let mut out = BytesMut::new();
            writer(&mut out, proto).int(adjust.adjust(int(&total)?));
            Ok(out.freeze())
        }),
        Merge::SlowlogGet { count, nodes } => slowlog_get(*count, nodes, &frames, proto),
        Merge::Tagged { nodes } => tagged(nodes, &frames, proto),
        Merge::Texts { nodes } => texts(nodes, &frames, proto),
        Merge::Scan { at, next } => scan(*at, *next, &frames, proto),
        Merge::LatencyHistogram => latency_histogram(&frames, proto),
        Merge::FunctionStats => function_stats(&frames),
    };
    Ok(merged.unwrap_or_else(|why| why.into_reply(proto)))
}

/// True for an error reply (`-...`, RESP3 blob error `!...`), attributes skipped.
fn is_error_reply(frame: &[u8]) -> bool {
    match frame.first() {
        Some(b'-' | b'!') => true,
        Some(b'|') => matches!(value(frame), Ok(Value::Error)),
        _ => false,
    }
}

/// Why a part reply cannot be merged: the client gets `-ERR slotgate: <why>`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Unexpected(String);

impl Unexpected {
    fn new(why: impl Into<String>) -> Unexpected {
        Unexpected(why.into())
    }

    fn into_reply(self, proto: Proto) -> Bytes {
        let mut out = BytesMut::new();
        ReplyWriter {
            out: &mut out,
            proto,
        }
        .error(&format!(
            "ERR slotgate: unexpected reply from a node to a fanned-out or split request: {}",
            self.0
        ));
        out.freeze()
    }
}

// ---------------------------------------------------------------------------------
// The reader: zero-copy views of a RESP frame.

/// One RESP value, attributes (`|`) in front of it skipped, with its payload and
/// elements as slices of the frame.
#[derive(Debug)]
enum Value<'a> {
    /// `_`, `$-1`, `*-1`.
    Null,
    /// `-...`, `!...`.
    Error,
    /// `:n`.
    Int(i64),
    /// `+text`.
    Simple(&'a [u8]),
    /// `$` payload.
    Bulk(&'a [u8]),
    /// `=` payload after its 3-byte format and `:` (`txt:`).
    Verbatim(&'a [u8]),
    /// `*` or `~` (the type byte in `kind`).
    List { kind: u8, items: Items<'a> },
    /// `%`: `items` holds keys and values alternately.
    Map(Items<'a>),
    /// Anything else (doubles, booleans, big numbers, pushes).
    Other(u8),
}

/// The elements of an aggregate, each a whole frame (attributes included), in order.
#[derive(Debug)]
struct Items<'a> {
    /// The bytes of the elements not yet taken.
    rest: &'a [u8],
    left: usize,
    scanner: ReplyScanner,
}

impl<'a> Items<'a> {
    fn new(rest: &'a [u8], count: usize) -> Items<'a> {
        Items {
            rest,
            left: count,
            scanner: ReplyScanner::new(Limits::default()),
        }
    }

    /// Elements not yet taken.
    fn len(&self) -> usize {
        self.left
    }

    /// [`len`](Self::len), at most the bytes left (an element takes at least 3): safe
    /// to reserve space by, whatever count a malformed header claims.
    fn bounded_len(&self) -> usize {
        self.left.min(self.rest.len() / 3)
    }

    /// The bytes of the elements not yet taken, contiguous (the rest of the frame).
    fn body(&self) -> &'a [u8] {
        self.rest
    }

    /// The next element's whole frame.
    fn next_item(&mut self) -> Result<Option<&'a [u8]>, Unexpected> {
        if self.left == 0 {
            return Ok(None);
        }
        self.scanner.reset();
        let len = match self.scanner.scan(self.rest) {
            Ok(Some(len)) => len,
            Ok(None) => return Err(Unexpected::new("truncated aggregate")),
            Err(e) => return Err(Unexpected::new(e.to_string())),
        };
        let (item, rest) = self.rest.split_at_checked(len).unwrap_or((self.rest, &[]));
        self.rest = rest;
        self.left -= 1;
        Ok(Some(item))
    }

    /// Checks the elements not yet taken are whole frames that end the aggregate, so
    /// that their bytes ([`body`](Self::body), taken before) can be copied as they are.
    fn check_rest(mut self) -> Result<(), Unexpected> {
        while self.next_item()?.is_some() {}
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(Unexpected::new("bytes after the reply's last element"))
        }
    }

    /// The next element, which must exist.
    fn item(&mut self) -> Result<&'a [u8], Unexpected> {
        self.next_item()?
            .ok_or_else(|| Unexpected::new("aggregate shorter than its count"))
    }
}

/// The type byte, the header line after it, and the bytes after the line's CRLF.
fn header(frame: &[u8]) -> Result<(u8, &[u8], &[u8]), Unexpected> {
    let (&ty, after) = frame
        .split_first()
        .ok_or_else(|| Unexpected::new("empty reply"))?;
    let cr = after
        .iter()
        .position(|&b| b == b'\r')
        .ok_or_else(|| Unexpected::new("reply line without CRLF"))?;
    let (line, rest) = after.split_at(cr);
    let rest = rest
        .strip_prefix(b"\r\n")
        .ok_or_else(|| Unexpected::new("reply line without CRLF"))?;
    Ok((ty, line, rest))
}

fn count(line: &[u8]) -> Result<usize, Unexpected> {
    parse_int(line)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| {
            Unexpected::new(format!(
                "bad length {:?}",
                String::from_utf8_lossy(line.get(..24).unwrap_or(line))
            ))
        })
}

/// The value `frame` holds: the header is read, elements and payloads are not.
fn value(frame: &[u8]) -> Result<Value<'_>, Unexpected> {
    let mut frame = frame;
    loop {
        let (ty, line, rest) = header(frame)?;
        return Ok(match ty {
            b'|' => {
                let mut attrs = Items::new(rest, count(line)?.saturating_mul(2));
                while attrs.next_item()?.is_some() {}
                frame = attrs.body();
                continue;
            }
            b'_' => Value::Null,
            b'$' | b'*' if line == b"-1" => Value::Null,
            b'-' | b'!' => Value::Error,
            b':' => {
                Value::Int(parse_int(line).ok_or_else(|| Unexpected::new("bad integer reply"))?)
            }
            b'+' => Value::Simple(line),
            b'$' | b'=' => {
                let payload = rest
                    .get(..count(line)?)
                    .ok_or_else(|| Unexpected::new("truncated bulk string"))?;
                if ty == b'$' {
                    Value::Bulk(payload)
                } else {
                    Value::Verbatim(payload.get(4..).unwrap_or(&[]))
                }
            }
            b'*' | b'~' => Value::List {
                kind: ty,
                items: Items::new(rest, count(line)?),
            },
            b'%' => Value::Map(Items::new(rest, count(line)?.saturating_mul(2))),
            other => Value::Other(other),
        });
    }
}

/// What a part's reply was, for an error message.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Error => "error".into(),
        Value::Int(n) => format!("integer {n}"),
        Value::Simple(s) => format!("status {:?}", preview(s)),
        Value::Bulk(b) | Value::Verbatim(b) => format!("string {:?}", preview(b)),
        Value::List { items, .. } => format!("array of {}", items.len()),
        Value::Map(items) => format!("map of {}", items.len() / 2),
        Value::Other(ty) => format!("value of type '{}'", char::from(*ty)),
    }
}

/// At most 40 bytes of `s`, as text.
fn preview(s: &[u8]) -> String {
    String::from_utf8_lossy(s.get(..40).unwrap_or(s)).into_owned()
}

/// The elements of an array or set reply.
fn list(frame: &[u8]) -> Result<Items<'_>, Unexpected> {
    match value(frame)? {
        Value::List { items, .. } => Ok(items),
        other => Err(Unexpected::new(format!(
            "expected an array, got {}",
            describe(&other)
        ))),
    }
}

fn int(frame: &[u8]) -> Result<i64, Unexpected> {
    match value(frame)? {
        Value::Int(n) => Ok(n),
        other => Err(Unexpected::new(format!(
            "expected an integer, got {}",
            describe(&other)
        ))),
    }
}

fn is_ok(frame: &[u8]) -> Result<bool, Unexpected> {
    Ok(matches!(value(frame)?, Value::Simple(b"OK")))
}

fn ok_reply(proto: Proto) -> Bytes {
    let mut out = BytesMut::with_capacity(5);
    writer(&mut out, proto).ok();
    out.freeze()
}

// ---------------------------------------------------------------------------------
// The merges.

fn writer(out: &mut BytesMut, proto: Proto) -> ReplyWriter<'_> {
    ReplyWriter { out, proto }
}

/// Bytes an array header takes at most (`*` + 20 digits + CRLF).
const HEADER_MAX: usize = 23;

fn interleave(order: &[u16], frames: &[Bytes], proto: Proto) -> Result<Bytes, Unexpected> {
    let mut parts = frames
        .iter()
        .map(|f| list(f))
        .collect::<Result<Vec<_>, _>>()?;
    let mut wanted = vec![0usize; parts.len()];
    for &p in order {
        let n = wanted
            .get_mut(usize::from(p))
            .ok_or_else(|| Unexpected::new(format!("MGET key for part {p} of {}", frames.len())))?;
        *n += 1;
    }
    for (i, (part, &n)) in parts.iter().zip(&wanted).enumerate() {
        if part.len() != n {
            return Err(Unexpected::new(format!(
                "part {i} has {} values for {n} keys",
                part.len()
            )));
        }
    }
    let size = parts.iter().map(|p| p.body().len()).sum::<usize>() + HEADER_MAX;
    let mut out = BytesMut::with_capacity(size);
    writer(&mut out, proto).array(order.len());
    for &p in order {
        if let Some(part) = parts.get_mut(usize::from(p)) {
            out.extend_from_slice(part.item()?);
        }
    }
    for part in parts {
        part.check_rest()?;
    }
    Ok(out.freeze())
}

fn sum(frames: &[Bytes], proto: Proto) -> Result<Bytes, Unexpected> {
    let mut total: i64 = 0;
    for f in frames {
        total = total
            .checked_add(int(f)?)
            .ok_or_else(|| Unexpected::new("sum of integers overflows"))?;
    }
    let mut out = BytesMut::with_capacity(HEADER_MAX);
    writer(&mut out, proto).int(total);
    Ok(out.freeze())
}

fn all_ok(frames: &[Bytes], proto: Proto) -> Result<Bytes, Unexpected> {
    for f in frames {
        if !is_ok(f)? {
            return Err(Unexpected::new(format!(
                "expected OK, got {}",
                describe(&value(f)?)
            )));
        }
    }
    Ok(ok_reply(proto))
}

fn concat(frames: &[Bytes], proto: Proto) -> Result<Bytes, Unexpected> {
    let parts = frames
        .iter()
        .map(|f| list(f))
        .collect::<Result<Vec<_>, _>>()?;
    let total = parts.iter().fold(0usize, |n, p| n.saturating_add(p.len()));
    let size = parts.iter().map(|p| p.body().len()).sum::<usize>() + HEADER_MAX;
    let mut out = BytesMut::with_capacity(size);
    writer(&mut out, proto).array(total);
    for part in parts {
        out.extend_from_slice(part.body());
        part.check_rest()?;
    }
    Ok(out.freeze())
}

fn union(frames: &[Bytes], proto: Proto) -> Result<Bytes, Unexpected> {
    let mut seen: HashSet<&[u8]> = HashSet::new();
    let mut kept: Vec<&[u8]> = Vec::new();
    for f in frames {
        let mut items = list(f)?;
        while let Some(item) = items.next_item()? {
            if seen.insert(item) {
                kept.push(item);
            }
        }
    }
    let size = kept.iter().map(|i| i.len()).sum::<usize>() + HEADER_MAX;
    let mut out = BytesMut::with_capacity(size);
    writer(&mut out, proto).array(kept.len());
    for item in kept {
        out.extend_from_slice(item);
    }
    Ok(out.freeze())
}

fn all_ones(frames: &[Bytes], proto: Proto) -> Result<Bytes, Unexpected> {
    let mut ones: Option<Vec<bool>> = None;
    for f in frames {
        let mut items = list(f)?;
        let mut these = Vec::with_capacity(items.bounded_len());
        while let Some(item) = items.next_item()? {
            these.push(int(item)? == 1);
        }
        ones = Some(match ones {
            None => these,
            Some(so_far) if so_far.len() == these.len() => {
                so_far.iter().zip(these).map(|(&a, b)| a && b).collect()
            }
            Some(so_far) => {
                return Err(Unexpected::new(format!(
                    "parts answered {} and {} values",
                    so_far.len(),
                    these.len()
                )))
            }
        });
    }
    let ones = ones.unwrap_or_default();
    let mut out = BytesMut::with_capacity(HEADER_MAX + 4 * ones.len());
    let mut w = writer(&mut out, proto);
    w.array(ones.len());
    for one in ones {
        w.int(i64::from(one));
    }
    Ok(out.freeze())
}

/// Every part the same: that reply (the first part's bytes); else an error naming the
/// first two that differ. Parts are compared as values, attributes skipped.
fn same(frames: &[Bytes], proto: Proto) -> Result<Bytes, Unexpected> {
    let Some((first, rest)) = frames.split_first() else {
        return Err(Unexpected::new("no node replied"));
    };
    let body = |f: &Bytes| -> Bytes {
        match f.first() {
            Some(b'|') => skip_attributes(f).unwrap_or_else(|| f.clone()),
            _ => f.clone(),
        }
    };
    let expect = body(first);
    for other in rest {
        if body(other) != expect {
            let mut out = BytesMut::new();
            writer(&mut out, proto).error(&format!(
                "ERR slotgate: the nodes disagree: one answered {:?}, another {:?}",
                preview(&expect),
                preview(&body(other))
            ));
            return Ok(out.freeze());
        }
    }
    Ok(first.clone())
}

/// The frame after its leading attributes, as a slice of the same buffer.
fn skip_attributes(frame: &Bytes) -> Option<Bytes> {
    let mut rest: &[u8] = frame;
    while rest.first() == Some(&b'|') {
        let (_, line, after) = header(rest).ok()?;
        let mut attrs = Items::new(after, count(line).ok()?.saturating_mul(2));
        while attrs.next_item().ok()?.is_some() {}
        rest = attrs.body();
    }
    Some(frame.slice_ref(rest))
}

fn first_non_null(frames: &[Bytes], proto: Proto) -> Result<Bytes, Unexpected> {
    for f in frames {
        if !matches!(value(f)?, Value::Null) {
            return Ok(f.clone());
        }
    }
    let mut out = BytesMut::with_capacity(5);
    writer(&mut out, proto).null();
    Ok(out.freeze())
}

/// `SCRIPT KILL` where no part said OK and none failed: the replies are of a shape
/// the merge cannot use.
fn none_ok(frames: &[Bytes]) -> Result<Bytes, Unexpected> {
    let Some(first) = frames.first() else {
        return Err(Unexpected::new("no node replied"));
    };
    Err(Unexpected::new(format!(
        "expected OK or an error, got {}",
        describe(&value(first)?)
    )))
}

/// Keys and values of a `PUBSUB NUMSUB` reply: a RESP3 map, or a flat array.
fn pairs(frame: &[u8]) -> Result<(u8, Items<'_>), Unexpected> {
    match value(frame)? {
        Value::Map(items) => Ok((b'%', items)),
        Value::List { kind: b'*', items } if items.len() % 2 == 0 => Ok((b'*', items)),
        other => Err(Unexpected::new(format!(
            "expected channels and counts, got {}",
            describe(&other)
        ))),
    }
}

fn numsub(
    adjust: &[SubscriptionCounts],
    frames: &[Bytes],
    proto: Proto,
) -> Result<Bytes, Unexpected> {
    let mut channels: Vec<(&[u8], i64)> = Vec::new();
    let mut kind = b'*';
    for (i, f) in frames.iter().enumerate() {
        let (k, mut items) = pairs(f)?;
        if i == 0 {
            kind = k;
            channels.reserve(items.bounded_len() / 2);
            while let Some(channel) = items.next_item()? {
                channels.push((channel, int(items.item()?)?));
            }
            continue;
        }
        if items.len() != channels.len() * 2 {
            return Err(Unexpected::new("parts answered different channel counts"));
        }
        for (channel, n) in &mut channels {
            if items.item()? != *channel {
                return Err(Unexpected::new("parts answered different channels"));
            }
            *n = n
                .checked_add(int(items.item()?)?)
                .ok_or_else(|| Unexpected::new("sum of counts overflows"))?;
        }
    }
    for ((_, n), adjust) in channels.iter_mut().zip(adjust) {
        *n = adjust.adjust(*n);
    }
    let size = channels.iter().map(|(c, _)| c.len() + 24).sum::<usize>() + HEADER_MAX;
    let mut out = BytesMut::with_capacity(size);
    let mut w = writer(&mut out, proto);
    if kind == b'%' {
        // Only a RESP3 node answers with a map; `map` writes `%` in RESP3.
        w.map(channels.len());
    } else {
        w.array(channels.len() * 2);
    }
    for (channel, n) in channels {
        w.out.extend_from_slice(channel);
        w.int(n);
    }
    Ok(out.freeze())
}

fn slowlog_get(
    count: Option<i64>,
    nodes: &[String],
    frames: &[Bytes],
    proto: Proto,
) -> Result<Bytes, Unexpected> {
    if nodes.len() != frames.len() {
        return Err(Unexpected::new(format!(
            "{} SLOWLOG replies for {} nodes",
            frames.len(),
            nodes.len()
        )));
    }
    let limit = match count {
        None => SLOWLOG_DEFAULT_COUNT,
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
    };
    // (timestamp, node, the entry's elements' bytes, their count)
    let mut entries: Vec<(i64, &str, &[u8], usize)> = Vec::new();
    for (f, node) in frames.iter().zip(nodes) {
        let mut items = list(f)?;
        while let Some(entry) = items.next_item()? {
            let mut fields = list(entry)?;
            let (n, body) = (fields.len(), fields.body());
            let _id = fields.item()?;
            let timestamp = int(fields.item()?)?;
            fields.check_rest()?;
            entries.push((timestamp, node, body, n));
        }
    }
    // Stable: equal timestamps keep part order, then each node's newest-first order.
    entries.sort_by_key(|e| std::cmp::Reverse(e.0));
    entries.truncate(limit);
    let size = entries
        .iter()
        .map(|(_, node, body, _)| body.len() + node.len() + 2 * HEADER_MAX)
        .sum::<usize>()
        + HEADER_MAX;
    let mut out = BytesMut::with_capacity(size);
    let mut w = writer(&mut out, proto);
    w.array(entries.len());
    for (_, node, body, n) in entries {
        w.array(n + 1);
        w.out.extend_from_slice(body);
        w.bulk(node.as_bytes());
    }
    Ok(out.freeze())
}

/// One reply per node, in the order of `nodes`.
fn per_node<'a>(nodes: &'a [String], frames: &[Bytes]) -> Result<&'a [String], Unexpected> {
    if nodes.len() == frames.len() {
        Ok(nodes)
    } else {
        Err(Unexpected::new(format!(
            "{} replies for {} nodes",
            frames.len(),
            nodes.len()
        )))
    }
}

fn tagged(nodes: &[String], frames: &[Bytes], proto: Proto) -> Result<Bytes, Unexpected> {
    let nodes = per_node(nodes, frames)?;
    let mut entries: Vec<(&str, &[u8], usize)> = Vec::new();
    for (f, node) in frames.iter().zip(nodes) {
        let mut items = list(f)?;
        while let Some(entry) = items.next_item()? {
            let fields = list(entry)?;
            let (n, body) = (fields.len(), fields.body());
            fields.check_rest()?;
            entries.push((node, body, n));
        }
    }
    let mut out = BytesMut::new();
    let mut w = writer(&mut out, proto);
    w.array(entries.len());
    for (node, body, n) in entries {
        w.array(n + 1);
        w.out.extend_from_slice(body);
        w.bulk(node.as_bytes());
    }
    Ok(out.freeze())
}

fn texts(nodes: &[String], frames: &[Bytes], proto: Proto) -> Result<Bytes, Unexpected> {
    let nodes = per_node(nodes, frames)?;
    let mut text = Vec::new();
    for (f, node) in frames.iter().zip(nodes) {
        let body = match value(f)? {
            Value::Bulk(b) | Value::Verbatim(b) | Value::Simple(b) => b,
            other => {
                return Err(Unexpected::new(format!(
                    "expected a text, got {}",
                    describe(&other)
                )))
            }
        };
        text.extend_from_slice(format!("--- node {node} ---\n").as_bytes());
        text.extend_from_slice(body);
        if !body.ends_with(b"\n") {
            text.push(b'\n');
        }
    }
    let mut out = BytesMut::new();
    writer(&mut out, proto).verbatim(&String::from_utf8_lossy(&text));
    Ok(out.freeze())
}

/// A string element's bytes (bulk or status).
fn text(frame: &[u8]) -> Result<&[u8], Unexpected> {
    match value(frame)? {
        Value::Bulk(b) | Value::Simple(b) => Ok(b),
        other => Err(Unexpected::new(format!(
            "expected a string, got {}",
            describe(&other)
        ))),
    }
}

/// One command of `LATENCY HISTOGRAM`: its name, calls over the parts, and each part's
/// cumulative buckets `(usec, count)`.
struct CommandHistogram<'a> {
    name: &'a [u8],
    calls: i64,
    per_node: Vec<Vec<(i64, i64)>>,
}

fn latency_histogram(frames: &[Bytes], proto: Proto) -> Result<Bytes, Unexpected> {
    let mut commands: Vec<CommandHistogram> = Vec::new();
    for frame in frames {
        let (_, mut entries) = pairs(frame)?;
        while let Some(name) = entries.next_item()? {
            let name = text(name)?;
            let (_, mut fields) = pairs(entries.item()?)?;
            let (mut calls, mut buckets) = (0, Vec::new());
            while let Some(field) = fields.next_item()? {
                let field_value = fields.item()?;
                match text(field)? {
                    b"calls" => calls = int(field_value)?,
                    b"histogram_usec" => {
                        let (_, mut items) = pairs(field_value)?;
                        buckets.reserve(items.bounded_len() / 2);
                        while let Some(usec) = items.next_item()? {
                            buckets.push((int(usec)?, int(items.item()?)?));
                        }
                    }
                    _ => {}
                }
            }
            let at = match commands.iter().position(|c| c.name == name) {
                Some(at) => at,
                None => {
                    commands.push(CommandHistogram {
                        name,
                        calls: 0,
                        per_node: Vec::new(),
                    });
                    commands.len() - 1
                }
            };
            let command = &mut commands[at];
            command.calls = command.calls.saturating_add(calls);
            command.per_node.push(buckets);
        }
    }
    let mut out = BytesMut::new();
    let mut w = writer(&mut out, proto);
    w.map(commands.len());
    for command in &commands {
        w.bulk(command.name);
        w.map(2);
        w.bulk(b"calls");
        w.int(command.calls);
        w.bulk(b"histogram_usec");
        let merged = merge_cumulative(&command.per_node);
        w.map(merged.len());
        for (usec, count) in merged {
            w.int(usec);
            w.int(count);
        }
    }
    Ok(out.freeze())
}

/// Cumulative histograms (each ascending by bucket) summed: at every bucket any of them
/// has, the sum of each one's count at its last bucket not above it.
fn merge_cumulative(histograms: &[Vec<(i64, i64)>]) -> Vec<(i64, i64)> {
    let mut bounds: Vec<i64> = histograms.iter().flatten().map(|&(usec, _)| usec).collect();
    bounds.sort_unstable();
    bounds.dedup();
    (bounds.into_iter())
        .map(|bound| {
            let count = (histograms.iter())
                .map(|h| {
                    (h.iter().take_while(|&&(usec, _)| usec <= bound))
                        .last()
                        .map_or(0, |&(_, count)| count)
                })
                .fold(0i64, i64::saturating_add);
            (bound, count)
        })
        .collect()
}

fn function_stats(frames: &[Bytes]) -> Result<Bytes, Unexpected> {
    let [first, ..] = frames else {
        return Err(Unexpected::new("no node replied"));
    };
    // The first non-null `running_script` over the parts.
    let mut running: Option<&[u8]> = None;
    for frame in frames {
        let (_, mut fields) = pairs(frame)?;
        while let Some(field) = fields.next_item()? {
            let field_value = fields.item()?;
            if text(field)? == b"running_script" && !matches!(value(field_value)?, Value::Null) {
                running = Some(field_value);
                break;
            }
        }
        if running.is_some() {
            break;
        }
    }
    let Some(running) = running else {
        return Ok(first.clone());
    };
    let (_, mut fields) = pairs(first)?;
    // The map's (or flat array's) header, copied as the node wrote it.
    let header_len = first.len() - fields.body().len();
    let mut out = BytesMut::with_capacity(first.len() + running.len());
    out.extend_from_slice(&first[..header_len]);
    while let Some(field) = fields.next_item()? {
        let field_value = fields.item()?;
        out.extend_from_slice(field);
        if text(field)? == b"running_script" {
            out.extend_from_slice(running);
        } else {
            out.extend_from_slice(field_value);
        }
    }
    Ok(out.freeze())
}

fn scan(
    at: ScanCursor,
    next: Option<ScanCursor>,
    frames: &[Bytes],
    proto: Proto,
) -> Result<Bytes, Unexpected> {
    let [frame] = frames else {
        return Err(Unexpected::new(format!(
            "{} SCAN replies for one node",
            frames.len()
        )));
    };
    let mut items = list(frame)?;
    if items.len() != 2 {
        return Err(Unexpected::new(format!(
            "SCAN reply of {} elements",
            items.len()
        )));
    }
    let node = match value(items.item()?)? {
        Value::Bulk(digits) => std::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| Unexpected::new("SCAN cursor is not a number"))?,
        other => {
            return Err(Unexpected::new(format!(
                "expected a SCAN cursor, got {}",
                describe(&other)
            )))
        }
    };
    let keys = items.body();
    match value(keys)? {
        Value::List { items: names, .. } => names.check_rest()?,
        other => {
            return Err(Unexpected::new(format!(
                "expected SCAN's key array, got {}",
                describe(&other)
            )))
        }
    }
    let cursor = if node != 0 {
        if node > ScanCursor::NODE_MAX {
            let mut out = BytesMut::new();
            writer(&mut out, proto).error(&format!(
                "ERR slotgate: a node's SCAN cursor {node} is too large for the proxy's cursor encoding (at most 2^47-1)"
            ));
            return Ok(out.freeze());
        }
        ScanCursor { node, ..at }.encode()
    } else {
        next.map_or(0, ScanCursor::encode)
    };
    let mut digits = itoa::Buffer::new();
    let mut out = BytesMut::with_capacity(keys.len() + 2 * HEADER_MAX);
    let mut w = writer(&mut out, proto);
    w.array(2);
    w.bulk(digits.format(cursor).as_bytes());
    w.out.extend_from_slice(keys);
    Ok(out.freeze())
}

// ---------------------------------------------------------------------------------
// SCAN cursors.

/// The proxy's SCAN cursor: which shard (index in the slot table's shard list), the
/// node's own cursor, a fingerprint of the topology the scan started on, and whether the
/// scan is past its walk over every master, rescanning the masters that import slots
/// (see `session::fan_out`).
///
/// The client sees one decimal u64: the rescan flag in the top bit, the node's cursor
/// in the next 47 bits, the fingerprint in the next 8, the shard in the low 8. Shard 0,
/// node cursor 0 of the walk (the start) is `0`, as with Redis; a scan that moves on
/// to the next shard gets a cursor with node 0 and shard ≥ 1 or the rescan flag, never
/// `0`, so `0` only ever means "start" or "done".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanCursor {
    pub shard: u16,
    pub node: u64,
    pub fingerprint: u8,
    pub rescan: bool,
}

impl ScanCursor {
    /// The client's `0`: shard 0, node cursor 0, fingerprint 0.
    pub const START: ScanCursor = ScanCursor {
        shard: 0,
        node: 0,
        fingerprint: 0,
        rescan: false,
    };

    /// Shards a cursor can name (8 bits).
    pub const SHARDS_MAX: u16 = 256;

    /// The largest node cursor the encoding holds (47 bits: a node's cursor runs to its
    /// hash table's size, far below 2^47 slots).
    pub const NODE_MAX: u64 = (1 << 47) - 1;

    /// The first node cursor of `shard`.
    pub fn shard_start(shard: u16, fingerprint: u8, rescan: bool) -> ScanCursor {
        ScanCursor {
            shard,
            node: 0,
            fingerprint,
            rescan,
        }
    }

    /// As the decimal u64 the client sees:
    /// `(rescan << 63) | (node << 16) | (fingerprint << 8) | shard`; shard < 256,
    /// node < 2^47.
    ///
    /// Bits of `shard` and `node` beyond those widths are dropped; [`merge`] answers an
    /// error rather than build such a cursor.
    pub fn encode(self) -> u64 {
        (u64::from(self.rescan) << 63)
            | ((self.node & Self::NODE_MAX) << 16)
            | (u64::from(self.fingerprint) << 8)
            | u64::from(self.shard & 0xff)
    }

    /// The client's cursor argument; Redis's `ERR invalid cursor` for anything that is
    /// not an unsigned decimal u64 (`0` is [`START`](Self::START)).
    ///
    /// Stricter than Redis's `strtoul`, which also takes `""`, `-1` and `+1`: a cursor the
    /// proxy gave out is always plain digits.
    pub fn decode(arg: &[u8]) -> Result<ScanCursor, &'static str> {
        const INVALID: &str = "ERR invalid cursor";
        if arg.is_empty() || !arg.iter().all(u8::is_ascii_digit) {
            return Err(INVALID);
        }
        let v = std::str::from_utf8(arg)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or(INVALID)?;
        Ok(ScanCursor {
            shard: (v & 0xff) as u16,
            node: (v >> 16) & Self::NODE_MAX,
            fingerprint: ((v >> 8) & 0xff) as u8,
            rescan: v >> 63 == 1,
        })
    }
}

// ---------------------------------------------------------------------------------
// INFO sums.

/// INFO fields summed over the masters, in the order [`NodeSums::fields`] gives them.
pub const SUMMED_FIELDS: [&str; 12] = [
    "used_memory",
    "used_memory_peak",
    "used_memory_dataset",
    "total_commands_processed",
    "total_connections_received",
    "keyspace_hits",
    "keyspace_misses",
    "expired_keys",
    "evicted_keys",
    "total_net_input_bytes",
    "total_net_output_bytes",
    "instantaneous_ops_per_sec",
];

/// Fields a standalone Redis's INFO gives that slotgate reports summed over the
/// masters, read from each part's INFO text (a bulk string in RESP2, verbatim `=` in
/// RESP3): [`SUMMED_FIELDS`] and `db0`'s `keys`/`expires`/`avg_ttl`. Parts that failed
/// (no reply, an error reply, not an INFO text) are skipped and counted.
///
/// `used_memory_peak` is the sum of each node's own peak, an upper bound of the
/// cluster's peak (the nodes peak at different times). `avg_ttl` is the nodes'
/// `avg_ttl` weighted by their `expires` (Redis averages over keys with a TTL), rounded
/// down; 0 when no node has keys with a TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSums {
    /// Every field of [`SUMMED_FIELDS`], in that order (0 where no node gave it).
    pub fields: Vec<(&'static str, u64)>,
    /// `db0`'s `keys`, summed.
    pub keys: u64,
    /// `db0`'s `expires`, summed.
    pub expires: u64,
    /// `db0`'s `avg_ttl`, weighted by `expires`.
    pub avg_ttl: u64,
    /// Parts whose INFO was read.
    pub nodes: usize,
    /// Parts skipped: no reply, an error reply, or not an INFO text.
    pub failed: usize,
}

impl NodeSums {
    /// The sum of field `name`, if it is one of [`SUMMED_FIELDS`].
    pub fn get(&self, name: &str) -> Option<u64> {
        self.fields
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, v)| v)
    }
}

/// Sums the INFO of the masters' parts; see [`NodeSums`].
pub fn node_sums(parts: &[ReplyResult]) -> NodeSums {
    let mut sums = NodeSums {
        fields: SUMMED_FIELDS.iter().map(|&name| (name, 0)).collect(),
        keys: 0,
        expires: 0,
        avg_ttl: 0,
        nodes: 0,
        failed: 0,
    };
    // Σ avg_ttl × expires, for the weighted average.
    let mut ttl_weighted: u128 = 0;
    for part in parts {
        let text = match part.as_ref().map(|f| value(f)) {
            Ok(Ok(Value::Bulk(text) | Value::Verbatim(text))) => text,
            _ => {
                sums.failed += 1;
                continue;
            }
        };
        sums.nodes += 1;
        for line in text.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let (name, rest) = line.split_at(colon);
            let v = rest.get(1..).unwrap_or(&[]);
            if name == b"db0" {
                let (mut keys, mut expires, mut ttl) = (0, 0, 0);
                for kv in v.split(|&b| b == b',') {
                    match kv.iter().position(|&b| b == b'=') {
                        Some(eq) => match kv.split_at(eq) {
                            (b"keys", n) => keys = number(n.get(1..).unwrap_or(&[])),
                            (b"expires", n) => expires = number(n.get(1..).unwrap_or(&[])),
                            (b"avg_ttl", n) => ttl = number(n.get(1..).unwrap_or(&[])),
                            _ => {}
                        },
                        None => continue,
                    }
                }
                sums.keys = sums.keys.saturating_add(keys);
                sums.expires = sums.expires.saturating_add(expires);
                ttl_weighted += u128::from(ttl) * u128::from(expires);
            } else if let Some(field) = sums.fields.iter_mut().find(|(n, _)| n.as_bytes() == name) {
                field.1 = field.1.saturating_add(number(v));
            }
        }
    }
    if sums.expires > 0 {
        sums.avg_ttl = u64::try_from(ttl_weighted / u128::from(sums.expires)).unwrap_or(u64::MAX);
    }
    sums
}

/// An INFO number; 0 when it is not one.
fn number(s: &[u8]) -> u64 {
    std::str::from_utf8(s)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendError;
    use crate::protocol::reply::Proto::{Resp2, Resp3};

    fn ok(frame: &str) -> ReplyResult {
        Ok(Bytes::copy_from_slice(frame.as_bytes()))
    }

    /// The merged reply as text; a `BackendError` as `Err:<display>`.
    fn run(m: &Merge, parts: Vec<ReplyResult>, proto: Proto) -> String {
        match merge(m, parts, proto) {
            Ok(frame) => String::from_utf8_lossy(&frame).into_owned(),
            Err(e) => format!("Err:{e}"),
        }
    }

    /// One command of a `LATENCY HISTOGRAM` reply: name, calls, `(usec, cumulative)`.
    type Histogram<'a> = (&'a str, i64, &'a [(i64, i64)]);

    /// A node's `LATENCY HISTOGRAM` reply.
    fn histogram(proto: Proto, commands: &[Histogram]) -> String {
        let mut out = BytesMut::new();
        let mut w = writer(&mut out, proto);
        w.map(commands.len());
        for (name, calls, buckets) in commands {
            w.bulk(name.as_bytes());
            w.map(2);
            w.bulk(b"calls");
            w.int(*calls);
            w.bulk(b"histogram_usec");
            w.map(buckets.len());
            for (usec, count) in *buckets {
                w.int(*usec);
                w.int(*count);
            }
        }
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn latency_histograms_sum_calls_and_merge_cumulative_buckets() {
        for proto in [Resp2, Resp3] {
            let a = histogram(
                proto,
                &[("set", 3, &[(1, 1), (4, 3)]), ("get", 1, &[(2, 1)])],
            );
            let b = histogram(
                proto,
                &[("config|set", 1, &[(16, 1)]), ("set", 4, &[(2, 2), (8, 4)])],
            );
            let want = histogram(
                proto,
                &[
                    // At 1: 1+0; at 2: 1+2; at 4: 3+2; at 8: 3+4.
                    ("set", 7, &[(1, 1), (2, 3), (4, 5), (8, 7)]),
                    ("get", 1, &[(2, 1)]),
                    ("config|set", 1, &[(16, 1)]),
                ],
            );
            let merged = run(&Merge::LatencyHistogram, vec![ok(&a), ok(&b)], proto);
            assert_eq!(merged, want, "{proto:?}");
            // Nothing recorded anywhere: an empty map.
            let empty = histogram(proto, &[]);
            let merged = run(
                &Merge::LatencyHistogram,
                vec![ok(&empty), ok(&empty)],
                proto,
            );
            assert_eq!(merged, empty);
            let text = run(&Merge::LatencyHistogram, vec![ok(":1\r\n")], proto);
            assert!(is_slotgate_error(&text), "{text}");
        }
    }

    fn function_stats_reply(proto: Proto, running: Option<&str>) -> String {
        let mut out = BytesMut::new();
        let mut w = writer(&mut out, proto);
        w.map(2);
        w.bulk(b"running_script");
        match running {
            Some(name) => {
                w.map(3);
                w.bulk(b"name");
                w.bulk(name.as_bytes());
                w.bulk(b"command");
                w.array(1);
                w.bulk(b"fcall");
                w.bulk(b"duration_ms");
                w.int(1500);
            }
            None => w.null(),
        }
        w.bulk(b"engines");
        w.map(1);
        w.bulk(b"LUA");
        w.map(2);
        w.bulk(b"libraries_count");
        w.int(1);
        w.bulk(b"functions_count");
        w.int(2);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn function_stats_shows_the_function_running_on_any_node() {
        for proto in [Resp2, Resp3] {
            let idle = function_stats_reply(proto, None);
            let busy = function_stats_reply(proto, Some("slow"));
            let parts = || vec![ok(&idle), ok(&busy), ok(&idle)];
            assert_eq!(run(&Merge::FunctionStats, parts(), proto), busy);
            let all_idle = vec![ok(&idle), ok(&idle)];
            assert_eq!(run(&Merge::FunctionStats, all_idle, proto), idle);
            let text = run(&Merge::FunctionStats, vec![ok(":1\r\n")], proto);
            assert!(is_slotgate_error(&text), "{text}");
        }
    }

    #[test]
    fn latency_entries_and_texts_say_their_node() {
        let nodes = vec!["n1:1".to_string(), "n2:2".to_string()];
        let m = Merge::Tagged {
            nodes: nodes.clone(),
        };
        let a = ok("*1\r\n*4\r\n$7\r\ncommand\r\n:10\r\n:5\r\n:7\r\n");
        let b = ok("*0\r\n");
        assert_eq!(
            run(&m, vec![a, b], Resp2),
            "*1\r\n*5\r\n$7\r\ncommand\r\n:10\r\n:5\r\n:7\r\n$4\r\nn1:1\r\n"
        );
        let m = Merge::Texts { nodes };
        let a = ok("$3\r\nok.\r\n");
        let b = ok("=8\r\ntxt:fine\r\n");
        assert_eq!(
            run(&m, vec![a.clone(), b.clone()], Resp2),
            "$45\r\n--- node n1:1 ---\nok.\n--- node n2:2 ---\nfine\n\r\n"
        );
        assert!(run(&m, vec![a, b], Resp3).starts_with("=49\r\ntxt:--- node n1:1"));
    }

    fn lost() -> BackendError {
        BackendError::Lost {
            addr: crate::cluster::NodeAddr::new("127.0.0.1", 7001),
            reason: "reset".into(),
        }
    }

    fn is_slotgate_error(reply: &str) -> bool {
        reply.starts_with("-ERR slotgate: ") && reply.ends_with("\r\n")
    }

    #[test]
    fn interleave_takes_each_parts_values_in_key_order() {
        let m = Merge::Interleave(vec![0, 1, 1, 0, 1]);
        let parts = || {
            vec![
                ok("*2\r\n$1\r\na\r\n$-1\r\n"),
                ok("*3\r\n$1\r\nb\r\n$2\r\ncc\r\n$-1\r\n"),
            ]
        };
        assert_eq!(
            run(&m, parts(), Resp2),
            "*5\r\n$1\r\na\r\n$1\r\nb\r\n$2\r\ncc\r\n$-1\r\n$-1\r\n"
        );
        let resp3 = vec![
            ok("*2\r\n_\r\n$1\r\nd\r\n"),
            ok("*3\r\n$1\r\nb\r\n_\r\n_\r\n"),
        ];
        assert_eq!(
            run(&m, resp3, Resp3),
            "*5\r\n_\r\n$1\r\nb\r\n_\r\n$1\r\nd\r\n_\r\n"
        );
    }

    #[test]
    fn interleave_copies_values_verbatim() {
        // A big value, a value with an attribute, a value holding CRLF and '$'.
        let big = "x".repeat(100_000);
        let part0 = format!("*2\r\n$100000\r\n{big}\r\n|1\r\n+ttl\r\n:5\r\n$1\r\nv\r\n");
        let part1 = "*1\r\n$6\r\n$1\r\n\r\n\r\n";
        let m = Merge::Interleave(vec![1, 0, 0]);
        assert_eq!(
            run(&m, vec![ok(&part0), ok(part1)], Resp3),
            format!(
                "*3\r\n$6\r\n$1\r\n\r\n\r\n$100000\r\n{big}\r\n|1\r\n+ttl\r\n:5\r\n$1\r\nv\r\n"
            )
        );
    }

    #[test]
    fn interleave_refuses_parts_of_the_wrong_size() {
        let m = Merge::Interleave(vec![0, 1]);
        for proto in [Resp2, Resp3] {
            let short = run(&m, vec![ok("*1\r\n$1\r\na\r\n"), ok("*0\r\n")], proto);
            assert!(is_slotgate_error(&short), "{short}");
            let long = run(
                &m,
                vec![ok("*2\r\n:1\r\n:2\r\n"), ok("*1\r\n:3\r\n")],
                proto,
            );
            assert!(is_slotgate_error(&long), "{long}");
            let unknown_part = run(&Merge::Interleave(vec![2]), vec![ok("*0\r\n")], proto);
            assert!(is_slotgate_error(&unknown_part), "{unknown_part}");
            let not_array = run(&m, vec![ok("$1\r\na\r\n"), ok("*1\r\n:3\r\n")], proto);
            assert!(is_slotgate_error(&not_array), "{not_array}");
        }
    }

    #[test]
    fn the_first_failed_part_is_the_reply() {
        let m = Merge::Interleave(vec![0, 1, 2]);
        let values = "*1\r\n$1\r\na\r\n";
        // An error reply, then a lost connection: the error reply, byte for byte.
        let parts = vec![
            ok(values),
            ok("-MOVED 3999 127.0.0.1:7002\r\n"),
            Err(lost()),
        ];
        assert_eq!(run(&m, parts, Resp2), "-MOVED 3999 127.0.0.1:7002\r\n");
        // A lost connection first: the client gets the BackendError.
        let parts = vec![Err(lost()), ok("-ERR first\r\n"), ok(values)];
        assert_eq!(
            merge(&m, parts, Resp3),
            Err(lost()),
            "the BackendError comes back as it is"
        );
        // A RESP3 blob error counts as an error reply.
        let parts = vec![ok(values), ok("!9\r\nERR blob!\r\n"), ok("-ERR later\r\n")];
        assert_eq!(run(&m, parts, Resp3), "!9\r\nERR blob!\r\n");
        // So do an error behind an attribute, and errors in every variant.
        let attributed = "|1\r\n+a\r\n:1\r\n-ERR x\r\n";
        for m in [
            Merge::Sum,
            Merge::AllOk,
            Merge::Concat,
            Merge::Same,
            Merge::NumSub(vec![]),
        ] {
            assert_eq!(
                run(&m, vec![ok(":1\r\n"), ok(attributed)], Resp3),
                attributed,
                "{m:?}"
            );
        }
    }

    #[test]
    fn sum_adds_the_integers() {
        for proto in [Resp2, Resp3] {
            let parts = vec![ok(":3\r\n"), ok(":0\r\n"), ok("|1\r\n+a\r\n:1\r\n:39\r\n")];
            assert_eq!(run(&Merge::Sum, parts, proto), ":42\r\n");
            assert_eq!(run(&Merge::Sum, vec![], proto), ":0\r\n");
            let text = run(&Merge::Sum, vec![ok(":1\r\n"), ok("+OK\r\n")], proto);
            assert!(is_slotgate_error(&text), "{text}");
            let max = format!(":{}\r\n", i64::MAX);
            let overflow = run(&Merge::Sum, vec![ok(&max), ok(":1\r\n")], proto);
            assert!(is_slotgate_error(&overflow), "{overflow}");
        }
    }

    #[test]
    fn all_ok_needs_every_part_ok() {
        for proto in [Resp2, Resp3] {
            let parts = vec![ok("+OK\r\n"), ok("+OK\r\n")];
            assert_eq!(run(&Merge::AllOk, parts, proto), "+OK\r\n");
            assert_eq!(run(&Merge::AllOk, vec![], proto), "+OK\r\n");
            let oom = "-OOM command not allowed when used memory > 'maxmemory'.\r\n";
            assert_eq!(run(&Merge::AllOk, vec![ok("+OK\r\n"), ok(oom)], proto), oom);
            let odd = run(&Merge::AllOk, vec![ok("+OK\r\n"), ok("+QUEUED\r\n")], proto);
            assert!(is_slotgate_error(&odd), "{odd}");
        }
    }

    #[test]
    fn concat_joins_arrays_in_part_order() {
        let parts = || {
            vec![
                ok("*2\r\n$1\r\na\r\n$1\r\nb\r\n"),
                ok("*0\r\n"),
                ok("*1\r\n$1\r\nc\r\n"),
            ]
        };
        let joined = "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n";
        assert_eq!(run(&Merge::Concat, parts(), Resp2), joined);
        assert_eq!(run(&Merge::Concat, parts(), Resp3), joined);
        // RESP3 sets give an array too.
        let sets = vec![ok("~1\r\n$1\r\na\r\n"), ok("~1\r\n$1\r\nb\r\n")];
        assert_eq!(
            run(&Merge::Concat, sets, Resp3),
            "*2\r\n$1\r\na\r\n$1\r\nb\r\n"
        );
        assert_eq!(run(&Merge::Concat, vec![], Resp3), "*0\r\n");
        let null = run(&Merge::Concat, vec![ok("*-1\r\n")], Resp2);
        assert!(is_slotgate_error(&null), "{null}");
    }

    #[test]
    fn union_keeps_each_element_once_in_first_seen_order() {
        for proto in [Resp2, Resp3] {
            let parts = vec![
                ok("*2\r\n$2\r\nch\r\n$1\r\na\r\n"),
                ok("*3\r\n$1\r\nb\r\n$2\r\nch\r\n$1\r\na\r\n"),
                ok("*0\r\n"),
            ];
            assert_eq!(
                run(&Merge::Union, parts, proto),
                "*3\r\n$2\r\nch\r\n$1\r\na\r\n$1\r\nb\r\n"
            );
        }
    }

    #[test]
    fn all_ones_is_one_only_where_every_part_says_one() {
        for proto in [Resp2, Resp3] {
            let parts = vec![
                ok("*3\r\n:1\r\n:1\r\n:0\r\n"),
                ok("*3\r\n:1\r\n:0\r\n:1\r\n"),
            ];
            assert_eq!(
                run(&Merge::AllOnes, parts, proto),
                "*3\r\n:1\r\n:0\r\n:0\r\n"
            );
            let uneven = vec![ok("*1\r\n:1\r\n"), ok("*2\r\n:1\r\n:1\r\n")];
            let text = run(&Merge::AllOnes, uneven, proto);
            assert!(is_slotgate_error(&text), "{text}");
        }
    }

    #[test]
    fn same_needs_every_part_to_agree() {
        let sha = "$40\r\na42059b356c875f0717db19a51f6aaca9ae659ea\r\n";
        for proto in [Resp2, Resp3] {
            assert_eq!(
                run(&Merge::Same, vec![ok(sha), ok(sha), ok(sha)], proto),
                sha
            );
            let other = "$40\r\n0000000000000000000000000000000000000000\r\n";
            let text = run(&Merge::Same, vec![ok(sha), ok(other)], proto);
            assert!(
                text.starts_with("-ERR slotgate: the nodes disagree"),
                "{text}"
            );
            let none = run(&Merge::Same, vec![], proto);
            assert!(is_slotgate_error(&none), "{none}");
        }
        let lib = "$5\r\nmylib\r\n";
        assert_eq!(
            run(
                &Merge::Same,
                vec![ok(lib), ok("|1\r\n+a\r\n:1\r\n$5\r\nmylib\r\n")],
                Resp3
            ),
            lib,
            "attributes are not part of the value"
        );
    }

    #[test]
    fn first_non_null_skips_nulls() {
        assert_eq!(
            run(
                &Merge::FirstNonNull,
                vec![ok("$-1\r\n"), ok("$3\r\nkey\r\n"), ok("$1\r\nk\r\n")],
                Resp2
            ),
            "$3\r\nkey\r\n"
        );
        assert_eq!(
            run(
                &Merge::FirstNonNull,
                vec![ok("_\r\n"), ok("$1\r\nk\r\n")],
                Resp3
            ),
            "$1\r\nk\r\n"
        );
        assert_eq!(
            run(
                &Merge::FirstNonNull,
                vec![ok("$-1\r\n"), ok("$-1\r\n")],
                Resp2
            ),
            "$-1\r\n"
        );
        assert_eq!(
            run(&Merge::FirstNonNull, vec![ok("_\r\n"), ok("_\r\n")], Resp3),
            "_\r\n"
        );
        assert_eq!(run(&Merge::FirstNonNull, vec![], Resp3), "_\r\n");
    }

    #[test]
    fn any_ok_wins_over_errors() {
        let notbusy = "-NOTBUSY No scripts in execution right now.\r\n";
        for proto in [Resp2, Resp3] {
            let m = Merge::AnyOk;
            assert_eq!(run(&m, vec![ok(notbusy), ok("+OK\r\n")], proto), "+OK\r\n");
            assert_eq!(run(&m, vec![Err(lost()), ok("+OK\r\n")], proto), "+OK\r\n");
            assert_eq!(
                run(&m, vec![ok(notbusy), ok("-ERR other\r\n")], proto),
                notbusy
            );
            assert_eq!(
                merge(&m, vec![Err(lost()), ok(notbusy)], proto),
                Err(lost())
            );
            let odd = run(&m, vec![ok(":1\r\n"), ok(":1\r\n")], proto);
            assert!(is_slotgate_error(&odd), "{odd}");
        }
    }

    #[test]
    fn numsub_sums_counts_per_channel_in_request_order() {
        // Redis 7.0's reply, RESP2 and RESP3 alike: a flat array.
        let a = "*6\r\n$1\r\nx\r\n:1\r\n$1\r\ny\r\n:0\r\n$1\r\nx\r\n:1\r\n";
        let b = "*6\r\n$1\r\nx\r\n:2\r\n$1\r\ny\r\n:5\r\n$1\r\nx\r\n:2\r\n";
        let flat = "*6\r\n$1\r\nx\r\n:3\r\n$1\r\ny\r\n:5\r\n$1\r\nx\r\n:3\r\n";
        assert_eq!(run(&Merge::NumSub(vec![]), vec![ok(a), ok(b)], Resp2), flat);
        assert_eq!(run(&Merge::NumSub(vec![]), vec![ok(a), ok(b)], Resp3), flat);
        // A node that answers a RESP3 map gets its client a map.
        let a = "%2\r\n$1\r\nx\r\n:1\r\n$1\r\ny\r\n:0\r\n";
        let b = "%2\r\n$1\r\nx\r\n:2\r\n$1\r\ny\r\n:7\r\n";
        assert_eq!(
            run(&Merge::NumSub(vec![]), vec![ok(a), ok(b)], Resp3),
            "%2\r\n$1\r\nx\r\n:3\r\n$1\r\ny\r\n:7\r\n"
        );
        assert_eq!(
            run(&Merge::NumSub(vec![]), vec![ok("*0\r\n")], Resp2),
            "*0\r\n"
        );
        // Parts that name other channels cannot be merged.
        let c = "%2\r\n$1\r\ny\r\n:2\r\n$1\r\nx\r\n:7\r\n";
        let text = run(&Merge::NumSub(vec![]), vec![ok(a), ok(c)], Resp3);
        assert!(is_slotgate_error(&text), "{text}");
        let odd = run(&Merge::NumSub(vec![]), vec![ok("*1\r\n$1\r\nx\r\n")], Resp2);
        assert!(is_slotgate_error(&odd), "{odd}");
        // Slotgate's share: its 2 hub subscriptions to x out, its 5 clients in; y none.
        let share = |clients, at_nodes| SubscriptionCounts { clients, at_nodes };
        let a = "*4\r\n$1\r\nx\r\n:2\r\n$1\r\ny\r\n:1\r\n";
        let b = "*4\r\n$1\r\nx\r\n:1\r\n$1\r\ny\r\n:0\r\n";
        let m = Merge::NumSub(vec![share(5, 2), share(0, 0)]);
        assert_eq!(
            run(&m, vec![ok(a), ok(b)], Resp2),
            "*4\r\n$1\r\nx\r\n:6\r\n$1\r\ny\r\n:1\r\n"
        );
        // Never below 0 (a hub's subscription not at its node yet).
        assert_eq!(share(0, 3).adjust(1), 0);
        let m = Merge::NumPat(share(2, 3));
        assert_eq!(run(&m, vec![ok(":3\r\n"), ok(":1\r\n")], Resp3), ":3\r\n");
    }

    /// A SLOWLOG entry as Redis 7.0 gives it.
    fn entry(id: u32, at: u32, cmd: &str) -> String {
        format!(
            "*6\r\n:{id}\r\n:{at}\r\n:12\r\n*1\r\n${}\r\n{cmd}\r\n$15\r\n127.0.0.1:43570\r\n$0\r\n\r\n",
            cmd.len()
        )
    }

    /// The merged entry: the node's entry with the node's address appended.
    fn merged_entry(id: u32, at: u32, cmd: &str, node: &str) -> String {
        let e = entry(id, at, cmd);
        let body = e.strip_prefix("*6\r\n").unwrap();
        format!("*7\r\n{body}${}\r\n{node}\r\n", node.len())
    }

    fn slowlog(n: usize, at: &[(u32, u32, &str)]) -> String {
        let entries: String = at.iter().map(|&(id, t, c)| entry(id, t, c)).collect();
        assert_eq!(n, at.len());
        format!("*{n}\r\n{entries}")
    }

    #[test]
    fn slowlog_get_merges_newest_first_with_each_node() {
        let nodes = vec!["127.0.0.1:7001".to_string(), "127.0.0.1:7002".to_string()];
        let parts = || {
            vec![
                ok(&slowlog(
                    3,
                    &[(9, 300, "a9"), (8, 200, "a8"), (7, 100, "a7")],
                )),
                ok(&slowlog(2, &[(4, 250, "b4"), (3, 200, "b3")])),
            ]
        };
        let all = [
            (9, 300, "a9", &nodes[0]),
            (4, 250, "b4", &nodes[1]),
            (8, 200, "a8", &nodes[0]),
            (3, 200, "b3", &nodes[1]),
            (7, 100, "a7", &nodes[0]),
        ];
        let expect = |n: usize| {
            let entries: String = all
                .iter()
                .take(n)
                .map(|&(id, t, c, node)| merged_entry(id, t, c, node))
                .collect();
            format!("*{n}\r\n{entries}")
        };
        for proto in [Resp2, Resp3] {
            for (count, n) in [(None, 5), (Some(-1), 5), (Some(3), 3), (Some(0), 0)] {
                let m = Merge::SlowlogGet {
                    count,
                    nodes: nodes.clone(),
                };
                assert_eq!(run(&m, parts(), proto), expect(n), "{count:?}");
            }
        }
        // The default is Redis's 10.
        let many: Vec<(u32, u32, &str)> = (0..8).map(|i| (i, 1000 - i, "x")).collect();
        let m = Merge::SlowlogGet {
            count: None,
            nodes: nodes.clone(),
        };
        let text = run(
            &m,
            vec![ok(&slowlog(8, &many)), ok(&slowlog(8, &many))],
            Resp2,
        );
        assert!(text.starts_with("*10\r\n*7\r\n"), "{text}");
        // Replies for other nodes than named cannot be told apart.
        let short = Merge::SlowlogGet {
            count: None,
            nodes: vec![nodes[0].clone()],
        };
        assert!(is_slotgate_error(&run(&short, parts(), Resp2)));
    }

    fn cursor(shard: u16, node: u64, rescan: bool) -> ScanCursor {
        ScanCursor {
            shard,
            node,
            fingerprint: 0xab,
            rescan,
        }
    }

    /// SCAN of `shard`, moving on to `next` (a shard's start) when the node is done.
    fn scan_of(shard: u16, next: Option<(u16, bool)>) -> Merge {
        Merge::Scan {
            at: cursor(shard, 0, false),
            next: next.map(|(shard, rescan)| cursor(shard, 0, rescan)),
        }
    }

    fn scan_reply(cursor: u64) -> String {
        let c = cursor.to_string();
        format!("*2\r\n${}\r\n{c}\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n", c.len())
    }

    #[test]
    fn scan_replaces_the_nodes_cursor() {
        for proto in [Resp2, Resp3] {
            // Mid-node: the same shard, the node's cursor.
            assert_eq!(
                run(
                    &scan_of(1, Some((2, false))),
                    vec![ok(&scan_reply(17))],
                    proto
                ),
                scan_reply(cursor(1, 17, false).encode())
            );
            // The node is done: the next shard, from its start.
            assert_eq!(
                run(
                    &scan_of(1, Some((2, false))),
                    vec![ok(&scan_reply(0))],
                    proto
                ),
                scan_reply(cursor(2, 0, false).encode())
            );
            // The walk is done, a master importing slots is to be scanned again: even
            // shard 0's rescan is not cursor 0.
            let rescan = run(
                &scan_of(2, Some((0, true))),
                vec![ok(&scan_reply(0))],
                proto,
            );
            assert_eq!(rescan, scan_reply(cursor(0, 0, true).encode()));
            assert_ne!(cursor(0, 0, true).encode(), 0);
            // The last shard is done: the scan is.
            assert_eq!(
                run(&scan_of(2, None), vec![ok(&scan_reply(0))], proto),
                scan_reply(0)
            );
            // The largest node cursor that fits, and the first that does not.
            let max = ScanCursor::NODE_MAX;
            let top = run(&scan_of(0, None), vec![ok(&scan_reply(max))], proto);
            let got = ScanCursor::decode(top.split("\r\n").nth(2).unwrap().as_bytes());
            assert_eq!(got.map(|c| (c.node, c.rescan)), Ok((max, false)));
            let text = run(&scan_of(0, None), vec![ok(&scan_reply(max + 1))], proto);
            assert!(text.contains("too large"), "{text}");
            assert!(text.starts_with("-ERR slotgate: ") && text.ends_with("\r\n"));
            // Malformed replies.
            for bad in [
                "*1\r\n$1\r\n0\r\n",
                "*2\r\n$1\r\nx\r\n*0\r\n",
                "*2\r\n$1\r\n0\r\n:1\r\n",
            ] {
                let text = run(&scan_of(0, None), vec![ok(bad)], proto);
                assert!(is_slotgate_error(&text), "{bad:?}: {text}");
            }
            let two = vec![ok(&scan_reply(0)), ok(&scan_reply(0))];
            assert!(is_slotgate_error(&run(&scan_of(0, None), two, proto)));
        }
    }

    #[test]
    fn scan_cursor_round_trips() {
        assert_eq!(ScanCursor::decode(b"0"), Ok(ScanCursor::START));
        assert_eq!(ScanCursor::START.encode(), 0);
        for c in [
            ScanCursor::START,
            ScanCursor {
                shard: 255,
                node: ScanCursor::NODE_MAX,
                fingerprint: 255,
                rescan: true,
            },
            ScanCursor {
                shard: 3,
                node: 123_456_789,
                fingerprint: 7,
                rescan: false,
            },
            ScanCursor {
                shard: 1,
                node: 0,
                fingerprint: 0,
                rescan: false,
            },
            ScanCursor::shard_start(0, 0, true),
        ] {
            let text = c.encode().to_string();
            assert_eq!(ScanCursor::decode(text.as_bytes()), Ok(c), "{text}");
        }
        assert_eq!(
            ScanCursor {
                shard: 2,
                node: 5,
                fingerprint: 1,
                rescan: false,
            }
            .encode(),
            (5 << 16) | (1 << 8) | 2
        );
        assert_eq!(ScanCursor::shard_start(0, 0, true).encode(), 1 << 63);
        let all_ones = ScanCursor::decode(b"18446744073709551615").unwrap();
        assert_eq!(
            (all_ones.node, all_ones.rescan),
            (ScanCursor::NODE_MAX, true)
        );
        for bad in [
            &b"-1"[..],
            b"abc",
            b"18446744073709551616",
            b"",
            b"+1",
            b" 1",
            b"1 ",
            b"1.0",
        ] {
            assert_eq!(
                ScanCursor::decode(bad),
                Err("ERR invalid cursor"),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn huge_counts_in_headers_reserve_nothing() {
        let huge = format!("*{}\r\n:1\r\n", i64::MAX);
        for m in [
            Merge::AllOnes,
            Merge::NumSub(vec![]),
            Merge::Concat,
            Merge::Union,
        ] {
            let text = run(&m, vec![ok(&huge), ok(&huge)], Resp3);
            assert!(is_slotgate_error(&text), "{m:?}: {text}");
        }
    }

    #[test]
    fn malformed_parts_are_an_error_reply() {
        for proto in [Resp2, Resp3] {
            for m in [
                Merge::Concat,
                Merge::Union,
                Merge::Interleave(vec![0, 0]),
                Merge::Sum,
            ] {
                for bad in [
                    "*2\r\n$1\r\na\r\n",
                    "*2\r\n$5\r\na\r\n",
                    "*x\r\n",
                    "",
                    "?\r\n",
                ] {
                    let text = run(&m, vec![ok(bad)], proto);
                    assert!(is_slotgate_error(&text), "{m:?} {bad:?}: {text}");
                }
            }
        }
    }

    /// `INFO everything` of a redis-server 7.0.15, shortened: two keys, one with a TTL.
    const INFO_7_0: &str = "# Server
redis_version:7.0.15
redis_git_sha1:00000000
redis_git_dirty:0
redis_build_id:ae4d7c971a948f0
redis_mode:standalone
os:Linux 6.18.44-fc-v782 x86_64
arch_bits:64
monotonic_clock:POSIX clock_gettime
multiplexing_api:epoll

# Clients
connected_clients:1
cluster_connections:0
maxclients:10000

# Memory
used_memory:965896
used_memory_human:943.26K
used_memory_rss:12120064
used_memory_rss_human:11.56M
used_memory_peak:965896
used_memory_peak_human:943.26K
used_memory_peak_perc:100.19%
used_memory_overhead:876496
used_memory_startup:876128
used_memory_dataset:89400
used_memory_dataset_perc:99.59%

# Stats
total_connections_received:4
total_commands_processed:3
instantaneous_ops_per_sec:0
total_net_input_bytes:117
total_net_output_bytes:17
total_net_repl_input_bytes:0
instantaneous_input_kbps:0.00
rejected_connections:0
expired_keys:0
expired_stale_perc:0.00
evicted_keys:0
evicted_clients:0
keyspace_hits:0
keyspace_misses:0
pubsub_channels:0

# Replication
role:master
connected_slaves:0

# CPU
used_cpu_sys:0.000000
used_cpu_user:0.017463

# Commandstats
cmdstat_set:calls=2,usec=24,usec_per_call=12.00,rejected_calls=0,failed_calls=0

# Cluster
cluster_enabled:0

# Keyspace
db0:keys=2,expires=1,avg_ttl=0
";

    fn info_text(changes: &[(&str, &str)]) -> String {
        let mut text = INFO_7_0.replace('\n', "\r\n");
        for (from, to) in changes {
            assert!(text.contains(from), "{from}");
            text = text.replace(from, to);
        }
        text
    }

    fn bulk(text: &str) -> ReplyResult {
        ok(&format!("${}\r\n{text}\r\n", text.len()))
    }

    fn verbatim(text: &str) -> ReplyResult {
        ok(&format!("={}\r\ntxt:{text}\r\n", text.len() + 4))
    }

    #[test]
    fn node_sums_add_up_the_masters_info() {
        let other = info_text(&[
            ("used_memory:965896", "used_memory:1000000"),
            ("total_commands_processed:3", "total_commands_processed:97"),
            ("keyspace_hits:0", "keyspace_hits:10"),
            (
                "instantaneous_ops_per_sec:0",
                "instantaneous_ops_per_sec:1500",
            ),
            (
                "db0:keys=2,expires=1,avg_ttl=0",
                "db0:keys=8,expires=3,avg_ttl=4000",
            ),
        ]);
        let first = info_text(&[("avg_ttl=0", "avg_ttl=1000")]);
        for parts in [
            vec![
                bulk(&first),
                bulk(&other),
                Err(lost()),
                ok("-LOADING wait\r\n"),
            ],
            vec![
                verbatim(&first),
                verbatim(&other),
                Err(lost()),
                ok("*0\r\n"),
            ],
        ] {
            let sums = node_sums(&parts);
            assert_eq!((sums.nodes, sums.failed), (2, 2));
            assert_eq!(sums.get("used_memory"), Some(965_896 + 1_000_000));
            assert_eq!(sums.get("used_memory_peak"), Some(2 * 965_896));
            assert_eq!(sums.get("used_memory_dataset"), Some(2 * 89_400));
            assert_eq!(sums.get("total_commands_processed"), Some(100));
            assert_eq!(sums.get("total_connections_received"), Some(8));
            assert_eq!(sums.get("keyspace_hits"), Some(10));
            assert_eq!(sums.get("keyspace_misses"), Some(0));
            assert_eq!(sums.get("total_net_input_bytes"), Some(234));
            assert_eq!(sums.get("total_net_output_bytes"), Some(34));
            assert_eq!(sums.get("instantaneous_ops_per_sec"), Some(1500));
            assert_eq!(sums.get("expired_keys"), Some(0));
            assert_eq!(sums.get("evicted_keys"), Some(0));
            assert_eq!(sums.get("used_memory_human"), None);
            assert_eq!(sums.fields.len(), SUMMED_FIELDS.len());
            assert_eq!((sums.keys, sums.expires), (10, 4));
            // (1000 × 1 + 4000 × 3) / 4
            assert_eq!(sums.avg_ttl, 3250);
        }
        let none = node_sums(&[]);
        assert_eq!((none.nodes, none.failed, none.avg_ttl), (0, 0, 0));
        assert!(none.fields.iter().all(|&(_, v)| v == 0));
    }
}
