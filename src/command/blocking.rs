//! How long a blocking command may wait, read from its own timeout argument. Pure.
//!
//! `BLPOP`, `BRPOP`, `BZPOPMIN`, `BZPOPMAX` (last argument), `BLMOVE`, `BRPOPLPUSH` (last),
//! `BLMPOP`, `BZMPOP` (first) take seconds as a decimal number; `XREAD`/`XREADGROUP
//! ... BLOCK ms` and `WAIT`/`WAITAOF` take milliseconds. 0 is forever.

use std::time::Duration;

use super::Args;

/// A blocking command's own wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockFor {
    /// Timeout 0: until something arrives.
    Forever,
    For(Duration),
    /// Not a timeout the node will accept: it answers with an error at once.
    Invalid,
}

/// The wait of blocking command `name` (the table's lower-case name) in `args`.
pub fn block_for(name: &str, args: &(impl Args + ?Sized)) -> BlockFor {
    let argc = args.argc();
    match name {
        "blpop" | "brpop" | "bzpopmin" | "bzpopmax" | "blmove" | "brpoplpush" => {
            seconds(args.arg(argc - 1))
        }
        "blmpop" | "bzmpop" if argc > 1 => seconds(args.arg(1)),
        "xread" | "xreadgroup" => (1..argc.saturating_sub(1))
            .take_while(|&i| !args.arg(i).eq_ignore_ascii_case(b"STREAMS"))
            .find(|&i| args.arg(i).eq_ignore_ascii_case(b"BLOCK"))
            .map_or(BlockFor::Invalid, |i| millis(args.arg(i + 1))),
        "wait" if argc > 2 => millis(args.arg(2)),
        "waitaof" if argc > 3 => millis(args.arg(3)),
        _ => BlockFor::Invalid,
    }
}

/// Seconds as Redis reads them for `BLPOP` and friends (a non-negative decimal).
fn seconds(arg: &[u8]) -> BlockFor {
    let Some(secs) = std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
    else {
        return BlockFor::Invalid;
    };
    if !secs.is_finite() || secs < 0.0 {
        BlockFor::Invalid
    } else if secs == 0.0 {
        BlockFor::Forever
    } else {
        Duration::try_from_secs_f64(secs).map_or(BlockFor::Invalid, BlockFor::For)
    }
}

/// Whole milliseconds (`BLOCK`, `WAIT`).
fn millis(arg: &[u8]) -> BlockFor {
    match std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        Some(0) => BlockFor::Forever,
        Some(ms) => BlockFor::For(Duration::from_millis(ms)),
        None => BlockFor::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(line: &str) -> BlockFor {
        let args: Vec<&str> = line.split(' ').collect();
        let name = args[0].to_ascii_lowercase();
        block_for(&name, &args[..])
    }

    #[test]
    fn timeouts_are_read_where_each_command_has_them() {
        assert_eq!(wait("BLPOP a b 0"), BlockFor::Forever);
        assert_eq!(
            wait("BRPOP a 1.5"),
            BlockFor::For(Duration::from_millis(1500))
        );
        assert_eq!(wait("BZPOPMIN z 2"), BlockFor::For(Duration::from_secs(2)));
        assert_eq!(
            wait("BLMOVE a b LEFT RIGHT 0.25"),
            BlockFor::For(Duration::from_millis(250))
        );
        assert_eq!(wait("BRPOPLPUSH a b 0"), BlockFor::Forever);
        assert_eq!(
            wait("BLMPOP 3 2 a b LEFT"),
            BlockFor::For(Duration::from_secs(3))
        );
        assert_eq!(wait("BZMPOP 0 1 z MIN"), BlockFor::Forever);
        assert_eq!(
            wait("XREAD COUNT 2 BLOCK 100 STREAMS s 0"),
            BlockFor::For(Duration::from_millis(100))
        );
        assert_eq!(
            wait("XREADGROUP GROUP g c BLOCK 0 STREAMS s >"),
            BlockFor::Forever
        );
        assert_eq!(wait("WAIT 1 50"), BlockFor::For(Duration::from_millis(50)));
        assert_eq!(wait("WAITAOF 1 0 0"), BlockFor::Forever);
    }

    #[test]
    fn bad_timeouts_are_left_to_the_node() {
        assert_eq!(wait("BLPOP a -1"), BlockFor::Invalid);
        assert_eq!(wait("BLPOP a soon"), BlockFor::Invalid);
        assert_eq!(wait("BLPOP a inf"), BlockFor::Invalid);
        assert_eq!(wait("XREAD BLOCK x STREAMS s 0"), BlockFor::Invalid);
        // A stream named BLOCK after STREAMS is not the option.
        assert_eq!(wait("XREAD STREAMS BLOCK 0"), BlockFor::Invalid);
    }
}
