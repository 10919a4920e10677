//! Errors from classifying a request, worded exactly as Redis 7 words them.

use std::borrow::Cow;
use std::fmt;

use super::{Args, CommandSpec};

/// Redis prints user-supplied names with `%.128s`.
const NAME_LIMIT: usize = 128;

/// Why a request cannot be classified. Every variant is answered to the client as one
/// `-ERR ...` error; [`CommandError::message`] gives its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// `ERR unknown command '<name>', with args beginning with: '<arg1>' '<arg2>' `.
    /// Holds the name and the argument list as Redis prints them (truncated at 128 bytes
    /// and at a NUL byte, the arguments within a 128-byte budget).
    Unknown { name: Vec<u8>, args: Vec<u8> },
    /// `ERR unknown subcommand '<sub>'. Try <CONTAINER> HELP.`
    UnknownSubcommand {
        command: &'static str,
        subcommand: Vec<u8>,
    },
    /// `ERR wrong number of arguments for '<name>' command`; subcommands are named
    /// `container|sub`.
    Arity { command: &'static str },
    /// A bad argument the key positions depend on (`numkeys`, `STREAMS`); the text after
    /// "ERR ", e.g. "syntax error" or "Number of keys can't be negative".
    Syntax(Cow<'static, str>),
}

impl CommandError {
    pub(super) fn unknown<A: Args + ?Sized>(args: &A) -> CommandError {
        let argc = args.argc();
        let name = if argc > 0 {
            c_string(args.arg(0), NAME_LIMIT).to_vec()
        } else {
            Vec::new()
        };
        // sdscatprintf(args, "'%.*s' ", 128 - sdslen(args), argv[i]) while sdslen < 128.
        let mut list = Vec::new();
        let mut i = 1;
        while i < argc && list.len() < NAME_LIMIT {
            let budget = NAME_LIMIT - list.len();
            list.push(b'\'');
            list.extend_from_slice(c_string(args.arg(i), budget));
            list.extend_from_slice(b"' ");
            i += 1;
        }
        CommandError::Unknown { name, args: list }
    }

    pub(super) fn unknown_subcommand(container: &'static CommandSpec, sub: &[u8]) -> CommandError {
        CommandError::UnknownSubcommand {
            command: container.name,
            subcommand: c_string(sub, NAME_LIMIT).to_vec(),
        }
    }

    /// The error text without the leading `-` and the CRLF, byte for byte as Redis sends
    /// it (a client's bytes are not necessarily UTF-8).
    pub fn message_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        match self {
            CommandError::Unknown { name, args } => {
                out.extend_from_slice(b"ERR unknown command '");
                out.extend_from_slice(name);
                out.extend_from_slice(b"', with args beginning with: ");
                out.extend_from_slice(args);
            }
            CommandError::UnknownSubcommand {
                command,
                subcommand,
            } => {
                out.extend_from_slice(b"ERR unknown subcommand '");
                out.extend_from_slice(subcommand);
                out.extend_from_slice(b"'. Try ");
                out.extend(command.bytes().map(|b| b.to_ascii_uppercase()));
                out.extend_from_slice(b" HELP.");
            }
            CommandError::Arity { command } => {
                out.extend_from_slice(b"ERR wrong number of arguments for '");
                out.extend_from_slice(command.as_bytes());
                out.extend_from_slice(b"' command");
            }
            CommandError::Syntax(text) => {
                out.extend_from_slice(b"ERR ");
                out.extend_from_slice(text.as_bytes());
            }
        }
        // Redis replaces CR and LF from user input so the error stays one line.
        for b in &mut out {
            if *b == b'\r' || *b == b'\n' {
                *b = b' ';
            }
        }
        out
    }

    /// The error text without the leading `-` and the CRLF; bytes that are not UTF-8 are
    /// replaced (see [`CommandError::message_bytes`] for the exact bytes).
    pub fn message(&self) -> String {
        String::from_utf8_lossy(&self.message_bytes()).into_owned()
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for CommandError {}

/// `s` as C's `%.*s` prints it: up to the first NUL byte, at most `limit` bytes.
fn c_string(s: &[u8], limit: usize) -> &[u8] {
    let s = match s.iter().position(|&b| b == 0) {
        Some(nul) => &s[..nul],
        None => s,
    };
    &s[..s.len().min(limit)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unknown(args: &[&[u8]]) -> String {
        CommandError::unknown(args).message()
    }

    #[test]
    fn unknown_command_lists_the_arguments() {
        assert_eq!(
            unknown(&[b"FOO", b"a", b"b"]),
            "ERR unknown command 'FOO', with args beginning with: 'a' 'b' "
        );
        assert_eq!(
            unknown(&[b"FOO"]),
            "ERR unknown command 'FOO', with args beginning with: "
        );
        assert_eq!(
            CommandError::unknown(&Vec::<Vec<u8>>::new()).message(),
            "ERR unknown command '', with args beginning with: "
        );
    }

    #[test]
    fn unknown_command_truncates_as_redis_does() {
        // Checked against redis-server 7.0.15.
        let a200 = [b'a'; 200];
        assert_eq!(
            unknown(&[b"FOO", &a200, b"b"]),
            format!(
                "ERR unknown command 'FOO', with args beginning with: '{}' ",
                "a".repeat(128)
            )
        );
        let (a100, b100) = ([b'a'; 100], [b'b'; 100]);
        assert_eq!(
            unknown(&[b"FOO", &a100, &b100, b"c"]),
            format!(
                "ERR unknown command 'FOO', with args beginning with: '{}' '{}' ",
                "a".repeat(100),
                "b".repeat(25)
            )
        );
        let f200 = [b'F'; 200];
        assert_eq!(
            unknown(&[&f200, b"b"]),
            format!(
                "ERR unknown command '{}', with args beginning with: 'b' ",
                "F".repeat(128)
            )
        );
        assert_eq!(
            unknown(&[b"FOO", b"a\r\nb", b"c\0d", b"e"]),
            "ERR unknown command 'FOO', with args beginning with: 'a  b' 'c' 'e' "
        );
    }

    #[test]
    fn unknown_command_keeps_non_utf8_bytes() {
        let err = CommandError::unknown(&[&b"\xff"[..]]);
        assert_eq!(
            err.message_bytes(),
            b"ERR unknown command '\xff', with args beginning with: ".to_vec()
        );
    }
}
