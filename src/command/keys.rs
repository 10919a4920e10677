//! Key positions of a request, found without heap allocation, and the argument checks the
//! positions depend on (`numkeys`, `STREAMS`), with Redis's own error texts.

use std::borrow::Cow;

use super::{Args, CommandError, CommandSpec, KeySpec, NumKeysRule};

/// Positions (argument indices) of a request's keys, in argument order: an optional key
/// before a stepped range (ZUNIONSTORE's destination), the range, and an optional key
/// after it (SORT's `STORE` destination). Argument 0 is never a key, so 0 marks "none".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyIndices {
    lead: usize,
    start: usize,
    end: usize,
    step: usize,
    tail: usize,
}

impl KeyIndices {
    /// No keys.
    pub const NONE: KeyIndices = KeyIndices {
        lead: 0,
        start: 0,
        end: 0,
        step: 1,
        tail: 0,
    };

    /// Keys at `start, start + step, ...` below `end`.
    #[inline]
    fn range(start: usize, end: usize, step: usize) -> KeyIndices {
        KeyIndices {
            lead: 0,
            start,
            end: end.max(start),
            step: step.max(1),
            tail: 0,
        }
    }

    fn with_lead(mut self, lead: usize) -> KeyIndices {
        self.lead = lead;
        self
    }

    fn with_tail(mut self, tail: usize) -> KeyIndices {
        self.tail = tail;
        self
    }

    /// The key positions in argument order.
    #[inline]
    pub fn iter(&self) -> KeyIter {
        KeyIter { keys: *self }
    }

    /// Number of keys.
    #[inline]
    pub fn len(&self) -> usize {
        let in_range = if self.start < self.end {
            (self.end - self.start - 1) / self.step + 1
        } else {
            0
        };
        usize::from(self.lead != 0) + in_range + usize::from(self.tail != 0)
    }

    /// Whether there are no keys.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.lead == 0 && self.start >= self.end && self.tail == 0
    }

    /// Position of the first key.
    #[inline]
    pub fn first(&self) -> Option<usize> {
        self.iter().next()
    }
}

impl IntoIterator for &KeyIndices {
    type Item = usize;
    type IntoIter = KeyIter;
    fn into_iter(self) -> KeyIter {
        self.iter()
    }
}

/// Iterator over [`KeyIndices`].
#[derive(Debug, Clone)]
pub struct KeyIter {
    keys: KeyIndices,
}

impl Iterator for KeyIter {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        let k = &mut self.keys;
        if k.lead != 0 {
            return Some(std::mem::take(&mut k.lead));
        }
        if k.start < k.end {
            let pos = k.start;
            k.start = k.start.saturating_add(k.step).min(k.end);
            return Some(pos);
        }
        if k.tail != 0 {
            return Some(std::mem::take(&mut k.tail));
        }
        None
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.keys.len();
        (n, Some(n))
    }
}

impl ExactSizeIterator for KeyIter {}

/// Key positions of a request whose arity has been checked, and whether it asked to block
/// (XREAD/XREADGROUP `BLOCK`).
#[inline]
pub(super) fn extract<A: Args + ?Sized>(
    spec: &'static CommandSpec,
    args: &A,
    out: &mut KeyIndices,
) -> Result<bool, CommandError> {
    let argc = args.argc();
    *out = match spec.keys {
        KeySpec::None => KeyIndices::NONE,
        KeySpec::Range { first, last, step } => {
            let first = usize::from(first);
            let step = usize::from(step.max(1));
            if first >= argc {
                KeyIndices::NONE
            } else {
                let last = if last < 0 {
                    argc.checked_sub(usize::from(last.unsigned_abs()))
                } else {
                    Some(usize::from(last.unsigned_abs()).min(argc - 1))
                };
                match last {
                    Some(last) if last >= first => {
                        if step > 1 && (argc - first) % step != 0 {
                            // MSET/MSETNX with a key and no value.
                            return Err(CommandError::Arity { command: spec.name });
                        }
                        KeyIndices::range(first, last + 1, step)
                    }
                    _ => KeyIndices::NONE,
                }
            }
        }
        KeySpec::NumKeys { at, dest, rule } => {
            let keys = numkeys(spec, args, usize::from(at), rule)?;
            match dest {
                Some(dest) => keys.with_lead(usize::from(dest)),
                None => keys,
            }
        }
        KeySpec::Sort => sort_keys(args),
        KeySpec::GeoStore { options } => geo_store_keys(args, usize::from(options)),
        KeySpec::Streams { group } => {
            let (keys, block) = streams(args, group)?;
            *out = keys;
            return Ok(block);
        }
    };
    Ok(false)
}

const NOT_AN_INTEGER: &str = "value is not an integer or out of range";
const SYNTAX: &str = "syntax error";
const TOO_MANY_KEYS: &str = "Number of keys can't be greater than number of args";
const NEGATIVE_KEYS: &str = "Number of keys can't be negative";
const NUMKEYS_POSITIVE: &str = "numkeys should be greater than 0";
const BAD_FUNCTION_NUMKEYS: &str = "Bad number of keys provided";

fn syntax(text: &'static str) -> CommandError {
    CommandError::Syntax(Cow::Borrowed(text))
}

/// `numkeys` at `at`, keys right after it; the checks and texts of each command family.
fn numkeys<A: Args + ?Sized>(
    spec: &'static CommandSpec,
    args: &A,
    at: usize,
    rule: NumKeysRule,
) -> Result<KeyIndices, CommandError> {
    let argc = args.argc();
    let first = at + 1;
    // Arity guarantees the numkeys argument itself is there.
    let available = argc.saturating_sub(first) as i64;
    let parsed = if at < argc {
        parse_i64(args.arg(at))
    } else {
        None
    };
    let n = match rule {
        NumKeysRule::Script | NumKeysRule::Function => {
            let n = parsed.ok_or_else(|| {
                syntax(if rule == NumKeysRule::Script {
                    NOT_AN_INTEGER
                } else {
                    BAD_FUNCTION_NUMKEYS
                })
            })?;
            if n > available {
                return Err(syntax(TOO_MANY_KEYS));
            }
            if n < 0 {
                return Err(syntax(NEGATIVE_KEYS));
            }
            n
        }
        NumKeysRule::ZSetOp => {
            let n = parsed.ok_or_else(|| syntax(NOT_AN_INTEGER))?;
            if n < 1 {
                return Err(CommandError::Syntax(Cow::Owned(format!(
                    "at least 1 input key is needed for '{}' command",
                    spec.name
                ))));
            }
            if n > available {
                return Err(syntax(SYNTAX));
            }
            n
        }
        NumKeysRule::SetInterCard => {
            let n = parsed
                .filter(|&n| n >= 1)
                .ok_or_else(|| syntax(NUMKEYS_POSITIVE))?;
            if n > available {
                return Err(syntax(TOO_MANY_KEYS));
            }
            n
        }
        NumKeysRule::MPop => {
            let n = parsed
                .filter(|&n| n >= 1)
                .ok_or_else(|| syntax(NUMKEYS_POSITIVE))?;
            // The keys must be followed by LEFT|RIGHT or MIN|MAX.
            if n >= available {
                return Err(syntax(SYNTAX));
            }
            n
        }
    };
    // 0 <= n <= available, so this fits.
    let n = usize::try_from(n).unwrap_or(0);
    Ok(KeyIndices::range(first, first + n, 1))
}

/// SORT key [BY pattern] [LIMIT offset count] [GET pattern ...] [ASC|DESC] [ALPHA]
/// [STORE destination]: the key and the last STORE destination, skipping option
/// arguments as Redis's `sortGetKeys` does.
fn sort_keys<A: Args + ?Sized>(args: &A) -> KeyIndices {
    let argc = args.argc();
    let mut store = 0;
    let mut i = 2;
    while i < argc {
        let arg = args.arg(i);
        if arg.eq_ignore_ascii_case(b"limit") {
            i += 2;
        } else if arg.eq_ignore_ascii_case(b"get") || arg.eq_ignore_ascii_case(b"by") {
            i += 1;
        } else if arg.eq_ignore_ascii_case(b"store") && i + 1 < argc {
            store = i + 1;
        }
        i += 1;
    }
    let keys = KeyIndices::range(1, 2, 1);
    if store != 0 {
        keys.with_tail(store)
    } else {
        keys
    }
}

/// GEORADIUS(BYMEMBER) ... [STORE key] [STOREDIST key]: the key and the destination the
/// command writes, that of the last STORE/STOREDIST option.
fn geo_store_keys<A: Args + ?Sized>(args: &A, options: usize) -> KeyIndices {
    let argc = args.argc();
    let mut store = 0;
    let mut i = options;
    while i < argc {
        let arg = args.arg(i);
        if (arg.eq_ignore_ascii_case(b"store") || arg.eq_ignore_ascii_case(b"storedist"))
            && i + 1 < argc
        {
            store = i + 1;
            i += 1;
        }
        i += 1;
    }
    let keys = KeyIndices::range(1, 2, 1);
    if store != 0 {
        keys.with_tail(store)
    } else {
        keys
    }
}

/// Redis 7.4's texts; 7.0 says "Unbalanced XREAD list of streams: for each stream key an
/// ID or '$' must be specified." for both commands, 7.2 "Unbalanced 'xread' list ... an ID
/// or '$' ...".
const XREAD_UNBALANCED: &str =
    "Unbalanced 'xread' list of streams: for each stream key an ID, '+', or '$' must be specified.";
const XREADGROUP_UNBALANCED: &str =
    "Unbalanced 'xreadgroup' list of streams: for each stream key an ID or '>' must be specified.";

/// XREAD [COUNT count] [BLOCK ms] STREAMS key ... id ..., and XREADGROUP GROUP group
/// consumer [COUNT count] [BLOCK ms] [NOACK] STREAMS key ... id ...: parses the options
/// as Redis's `xreadCommand` does, in the same order and with the same errors, so the
/// keys are the ones the command reads.
fn streams<A: Args + ?Sized>(args: &A, group: bool) -> Result<(KeyIndices, bool), CommandError> {
    let argc = args.argc();
    let mut block = false;
    let mut has_group = false;
    let mut streams_at = 0;
    let mut i = 1;
    while i < argc {
        let more = argc - i - 1;
        let opt = args.arg(i);
        if opt.eq_ignore_ascii_case(b"BLOCK") && more > 0 {
            i += 1;
            match parse_i64(args.arg(i)) {
                None => return Err(syntax("timeout is not an integer or out of range")),
                Some(t) if t < 0 => return Err(syntax("timeout is negative")),
                Some(_) => block = true,
            }
        } else if opt.eq_ignore_ascii_case(b"COUNT") && more > 0 {
            i += 1;
            if parse_i64(args.arg(i)).is_none() {
                return Err(syntax(NOT_AN_INTEGER));
            }
        } else if opt.eq_ignore_ascii_case(b"STREAMS") && more > 0 {
            streams_at = i + 1;
            if (argc - streams_at) % 2 != 0 {
                return Err(syntax(if group {
                    XREADGROUP_UNBALANCED
                } else {
                    XREAD_UNBALANCED
                }));
            }
            break;
        } else if opt.eq_ignore_ascii_case(b"GROUP") && more >= 2 {
            if !group {
                return Err(syntax(
                    "The GROUP option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            has_group = true;
            i += 2;
        } else if opt.eq_ignore_ascii_case(b"NOACK") {
            if !group {
                return Err(syntax(
                    "The NOACK option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
        } else {
            return Err(syntax(SYNTAX));
        }
        i += 1;
    }
    if streams_at == 0 {
        return Err(syntax(SYNTAX));
    }
    if group && !has_group {
        return Err(syntax("Missing GROUP option for XREADGROUP"));
    }
    let count = (argc - streams_at) / 2;
    Ok((KeyIndices::range(streams_at, streams_at + count, 1), block))
}

/// An integer exactly as Redis's `string2ll` accepts it (shared with the scanner).
pub(super) use crate::protocol::scan::parse_int as parse_i64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_indices_iterate_lead_range_tail() {
        let k = KeyIndices::range(3, 9, 2).with_lead(1).with_tail(12);
        assert_eq!(k.iter().collect::<Vec<_>>(), vec![1, 3, 5, 7, 12]);
        assert_eq!(k.len(), 5);
        assert_eq!(k.iter().len(), 5);
        assert_eq!(k.first(), Some(1));
        assert!(KeyIndices::NONE.is_empty());
        assert_eq!(KeyIndices::NONE.iter().next(), None);
        assert_eq!(KeyIndices::range(4, 4, 1).len(), 0);
        let mut it = KeyIndices::range(1, 4, 1).iter();
        it.next();
        assert_eq!(it.len(), 2);
    }
}
