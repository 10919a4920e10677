//! Commands the built-in table does not know, learned from a node's `COMMAND` reply at
//! start-up, so commands newer than this build (a later Redis, Valkey, a module) still
//! route by the key positions the server itself reports. Pure: a decoded reply in, a
//! lookup table out.

use std::collections::HashMap;

use redis_protocol::resp2::types::OwnedFrame;

use super::{lookup, Args};

/// One learned command: its arity and legacy key positions (`first`, `last`, `step`;
/// `last` negative counts from the end), and the flags that decide whether it can be
/// served through the shared connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LearnedCommand {
    pub name: String,
    pub arity: i64,
    pub first: i64,
    pub last: i64,
    pub step: i64,
    pub blocking: bool,
    pub pubsub: bool,
    pub movable_keys: bool,
}

/// How a learned command is served.
#[derive(Debug, PartialEq, Eq)]
pub enum LearnedRoute {
    /// Argument indices of its keys (all must share a slot).
    Keys(Vec<usize>),
    /// No key: any master.
    NoKeys,
    /// Cannot be served here; the reason.
    Refused(&'static str),
}

impl LearnedCommand {
    /// Check the arity and find the keys of one request. `Err` is the error text.
    pub fn route(&self, args: &(impl Args + ?Sized)) -> Result<LearnedRoute, String> {
        let argc = args.argc() as i64;
        let arity_ok = if self.arity >= 0 {
            argc == self.arity
        } else {
            argc >= -self.arity
        };
        if !arity_ok {
            return Err(format!(
                "ERR wrong number of arguments for '{}' command",
                self.name
            ));
        }
        if self.blocking {
            return Ok(LearnedRoute::Refused(
                "blocking commands newer than slotgate's table are not supported yet (their timeout's position is unknown)",
            ));
        }
        if self.pubsub {
            return Ok(LearnedRoute::Refused(
                "pub/sub commands newer than slotgate's table are not supported yet",
            ));
        }
        if self.movable_keys {
            return Ok(LearnedRoute::Refused(
                "its keys move with its arguments and this build does not know where",
            ));
        }
        if self.first <= 0 {
            return Ok(LearnedRoute::NoKeys);
        }
        let last = if self.last < 0 {
            argc + self.last
        } else {
            self.last
        };
        let step = self.step.max(1);
        let mut keys = Vec::new();
        let mut i = self.first;
        while i <= last && i < argc {
            keys.push(i as usize);
            i += step;
        }
        Ok(if keys.is_empty() {
            LearnedRoute::NoKeys
        } else {
            LearnedRoute::Keys(keys)
        })
    }
}

/// Learned commands by lower-case name.
#[derive(Debug, Default)]
pub struct LearnedCommands {
    by_name: HashMap<Vec<u8>, LearnedCommand>,
}

impl LearnedCommands {
    /// From a decoded `COMMAND` (or `COMMAND INFO`) reply: every entry the built-in table
    /// does not know. Malformed entries are skipped.
    pub fn from_command_reply(reply: &OwnedFrame) -> LearnedCommands {
        let mut by_name = HashMap::new();
        let OwnedFrame::Array(entries) = reply else {
            return LearnedCommands { by_name };
        };
        for entry in entries {
            if let Some(cmd) = parse_entry(entry) {
                if lookup(cmd.name.as_bytes()).is_none() {
                    by_name.insert(cmd.name.as_bytes().to_vec(), cmd);
                }
            }
        }
        LearnedCommands { by_name }
    }

    /// Case-insensitive lookup.
    pub fn get(&self, name: &[u8]) -> Option<&LearnedCommand> {
        if self.by_name.is_empty() {
            return None;
        }
        self.by_name.get(&name.to_ascii_lowercase())
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// The learned names, sorted (for logs).
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.by_name.values().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        names
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// `[name, arity, [flags...], first, last, step, ...]`.
fn parse_entry(entry: &OwnedFrame) -> Option<LearnedCommand> {
    let OwnedFrame::Array(fields) = entry else {
        return None;
    };
    let text = |f: &OwnedFrame| match f {
        OwnedFrame::BulkString(b) | OwnedFrame::SimpleString(b) => {
            Some(String::from_utf8_lossy(b).to_ascii_lowercase())
        }
        _ => None,
    };
    let int = |f: &OwnedFrame| match f {
        OwnedFrame::Integer(i) => Some(*i),
        _ => None,
    };
    let name = text(fields.first()?)?;
    if name.is_empty() {
        return None;
    }
    let flags: Vec<String> = match fields.get(2)? {
        OwnedFrame::Array(flags) => flags.iter().filter_map(text).collect(),
        _ => return None,
    };
    let has = |flag: &str| flags.iter().any(|f| f == flag);
    Some(LearnedCommand {
        arity: int(fields.get(1)?)?,
        first: int(fields.get(3)?)?,
        last: int(fields.get(4)?)?,
        step: int(fields.get(5)?)?,
        blocking: has("blocking"),
        pubsub: has("pubsub"),
        movable_keys: has("movablekeys"),
        name,
    })
}

/// One entry of a `COMMAND` reply, `[name, arity, [flags], first, last, step]`, for
/// tests here and of the routing built on them.
#[cfg(test)]
pub(crate) fn command_entry(
    name: &str,
    arity: i64,
    flags: &[&str],
    first: i64,
    last: i64,
    step: i64,
) -> OwnedFrame {
    OwnedFrame::Array(vec![
        OwnedFrame::BulkString(name.as_bytes().to_vec()),
        OwnedFrame::Integer(arity),
        OwnedFrame::Array(
            flags
                .iter()
                .map(|f| OwnedFrame::SimpleString(f.as_bytes().to_vec()))
                .collect(),
        ),
        OwnedFrame::Integer(first),
        OwnedFrame::Integer(last),
        OwnedFrame::Integer(step),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::command_entry as entry;

    fn learned() -> LearnedCommands {
        LearnedCommands::from_command_reply(&OwnedFrame::Array(vec![
            entry("get", 2, &["readonly", "fast"], 1, 1, 1),
            entry("newmget", -2, &["readonly"], 1, -1, 1),
            entry("newmset", -3, &["write"], 1, -1, 2),
            entry("newping", -1, &["fast"], 0, 0, 0),
            entry("newblpop", -3, &["write", "blocking"], 1, -2, 1),
            entry("newsub", -2, &["pubsub"], 0, 0, 0),
            entry("newmovable", -3, &["write", "movablekeys"], 0, 0, 0),
            OwnedFrame::Integer(7),
            OwnedFrame::Array(vec![]),
        ]))
    }

    #[test]
    fn only_unknown_commands_are_learned() {
        let l = learned();
        assert!(l.get(b"get").is_none(), "the built-in table wins");
        assert_eq!(l.len(), 6);
        assert!(l.get(b"NEWMGET").is_some(), "lookup ignores case");
    }

    #[test]
    fn key_positions_and_refusals() {
        let l = learned();
        let route = |name: &str, args: &[&str]| {
            let mut all = vec![name];
            all.extend_from_slice(args);
            l.get(name.as_bytes()).unwrap().route(&all[..])
        };
        assert_eq!(
            route("newmget", &["a", "b", "c"]),
            Ok(LearnedRoute::Keys(vec![1, 2, 3]))
        );
        assert_eq!(
            route("newmset", &["a", "1", "b", "2"]),
            Ok(LearnedRoute::Keys(vec![1, 3]))
        );
        assert_eq!(route("newping", &[]), Ok(LearnedRoute::NoKeys));
        assert!(matches!(
            route("newblpop", &["q", "0"]),
            Ok(LearnedRoute::Refused(_))
        ));
        assert!(matches!(
            route("newsub", &["ch"]),
            Ok(LearnedRoute::Refused(_))
        ));
        assert!(matches!(
            route("newmovable", &["x", "y"]),
            Ok(LearnedRoute::Refused(_))
        ));
        assert_eq!(
            route("newmset", &["a"]),
            Err("ERR wrong number of arguments for 'newmset' command".to_string())
        );
    }

    #[test]
    fn a_real_command_info_reply_parses() {
        // `COMMAND INFO GET` from redis-server 7.0.15, decoded.
        let raw = b"*1\r\n*10\r\n$3\r\nget\r\n:2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n*3\r\n+@read\r\n+@string\r\n+@fast\r\n*0\r\n*0\r\n*0\r\n";
        let (frame, _) = redis_protocol::resp2::decode::decode(raw).unwrap().unwrap();
        let OwnedFrame::Array(entries) = &frame else {
            panic!()
        };
        let cmd = parse_entry(&entries[0]).unwrap();
        assert_eq!(
            (cmd.name.as_str(), cmd.arity, cmd.first, cmd.last, cmd.step),
            ("get", 2, 1, 1, 1)
        );
        assert!(LearnedCommands::from_command_reply(&frame).is_empty());
    }
}
