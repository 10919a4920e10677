//! A user's rules in Redis ACL syntax (`+@read -@dangerous ~app:* &news:*`), compiled
//! once at start-up into a bit per command of the table, so checking a request is a
//! table lookup and a bit test, plus a glob per key when the keys are restricted.
//!
//! The syntax is Redis's (`ACL SETUSER`), less what belongs elsewhere here: passwords
//! and `on`/`off` are the user's own config keys, and selectors and read/write key
//! permissions (`%R~`) are not supported. Unlike Redis 7 (`acl-pubsub-default
//! resetchannels`), channels are all allowed unless the rules name some (`&pattern`,
//! `resetchannels`, `reset`).

use super::categories;
use crate::command::{self, Args, CommandSpec};

/// What the rules allow a request, when they do not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// The command (its table name, `client|setname` for a subcommand).
    Command(String),
    /// One of its keys.
    Key,
    /// One of its channels.
    Channel,
}

/// Key or channel patterns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Patterns {
    /// Every name (`~*`, `allkeys`; `&*`, `allchannels`).
    All,
    /// Names matching one of these globs; none when empty.
    Some(Vec<Vec<u8>>),
}

impl Patterns {
    fn none() -> Patterns {
        Patterns::Some(Vec::new())
    }

    fn add(&mut self, pattern: &str) {
        if pattern == "*" {
            *self = Patterns::All;
        } else if let Patterns::Some(list) = self {
            if !list.iter().any(|p| p == pattern.as_bytes()) {
                list.push(pattern.as_bytes().to_vec());
            }
        }
    }

    /// Whether `name` matches a pattern (globs as Redis's `stringmatchlen`).
    pub fn matches(&self, name: &[u8]) -> bool {
        match self {
            Patterns::All => true,
            Patterns::Some(list) => list.iter().any(|p| glob(p, name)),
        }
    }

    /// Whether `pattern` (a `PSUBSCRIBE` pattern) is one of these, literally: as Redis,
    /// a pattern subscription is allowed only for a pattern the rules name.
    fn has_literally(&self, pattern: &[u8]) -> bool {
        match self {
            Patterns::All => true,
            Patterns::Some(list) => list.iter().any(|p| p == pattern),
        }
    }

    fn is_all(&self) -> bool {
        matches!(self, Patterns::All)
    }

    /// `~a ~b` / `~*` / empty, with `mark` for `~` or `&`.
    fn describe(&self, mark: char) -> String {
        match self {
            Patterns::All => format!("{mark}*"),
            Patterns::Some(list) => list
                .iter()
                .map(|p| format!("{mark}{}", String::from_utf8_lossy(p)))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

/// A user's compiled rules.
#[derive(Debug, Clone)]
pub struct Rules {
    /// One bit per command table position (commands, then subcommands).
    commands: Vec<u64>,
    /// Commands the table does not know (learned from the nodes, categories unknown)
    /// are allowed: the last category rule was `+@all` and no category was taken away
    /// after it.
    unknown_commands: bool,
    pub keys: Patterns,
    pub channels: Patterns,
    /// The command rules as given (`+@all`/`-@all` for `allcommands`/`nocommands`).
    command_text: Vec<String>,
}

/// The rules of a user configured without any: everything but administration and the
/// dangerous commands, on every key and channel.
pub const DEFAULT_RULES: &str = "+@all -@admin -@dangerous ~* &*";

/// Commands Redis lets every user run whatever the rules (its `no_auth` flag).
const ALWAYS: [&str; 4] = ["auth", "hello", "quit", "reset"];

impl Rules {
    /// Compile rule text; the error names the rule that is wrong.
    pub fn parse(text: &str) -> Result<Rules, String> {
        let total = command::all().count();
        let mut rules = Rules {
            commands: vec![0; total.div_ceil(64)],
            unknown_commands: false,
            keys: Patterns::none(),
            channels: Patterns::All,
            command_text: Vec::new(),
        };
        let mut channels_given = false;
        for rule in text.split_ascii_whitespace() {
            let lower = rule.to_ascii_lowercase();
            match lower.as_str() {
                "allcommands" | "+@all" => {
                    rules.set_all(true);
                    rules.command_text.push("+@all".into());
                }
                "nocommands" | "-@all" => {
                    rules.set_all(false);
                    rules.command_text.push("-@all".into());
                }
                "allkeys" => rules.keys = Patterns::All,
                "resetkeys" => rules.keys = Patterns::none(),
                "allchannels" => {
                    rules.channels = Patterns::All;
                    channels_given = true;
                }
                "resetchannels" => {
                    rules.channels = Patterns::none();
                    channels_given = true;
                }
                "reset" => {
                    rules.set_all(false);
                    rules.command_text.clear();
                    rules.keys = Patterns::none();
                    rules.channels = Patterns::none();
                    channels_given = true;
                }
                "sanitize-payload" | "skip-sanitize-payload" => {}
                "on" | "off" | "nopass" | "resetpass" => {
                    return Err(format!(
                        "`{rule}`: a user's password and whether it is enabled are its own \
                         keys (password, password_sha256, password_env, password_file, \
                         nopass, enabled), not rules"
                    ))
                }
                _ => rules.parse_one(rule, &lower, &mut channels_given)?,
            }
        }
        Ok(rules)
    }

    fn parse_one(
        &mut self,
        rule: &str,
        lower: &str,
        channels_given: &mut bool,
    ) -> Result<(), String> {
        let (first, rest) = rule.split_at(1);
        match first {
            "~" => self.keys.add(rest),
            "&" => {
                if !*channels_given {
                    self.channels = Patterns::none();
                    *channels_given = true;
                }
                self.channels.add(rest);
            }
            ">" | "<" | "#" | "!" => {
                return Err(format!(
                    "`{first}...`: passwords go in the user's password keys (password, \
                     password_sha256, password_env, password_file), never in its rules"
                ))
            }
            "%" => {
                return Err(format!(
                    "`{rule}`: read/write key permissions are not supported; use ~pattern"
                ))
            }
            "(" => return Err(format!("`{rule}`: selectors are not supported")),
            "+" | "-" => {
                let allow = first == "+";
                let name = &lower[1..];
                if let Some(category) = name.strip_prefix('@') {
                    let bit = categories::bit(category)
                        .ok_or_else(|| format!("`{rule}`: unknown category `@{category}`"))?;
                    self.set_category(bit, allow);
                    if !allow {
                        self.unknown_commands = false;
                    }
                } else {
                    self.set_command(name, allow).ok_or_else(|| {
                        format!(
                            "`{rule}`: unknown command `{name}` (slotgate knows the commands \
                             of Redis 7.0 to 8.0; name a subcommand as `container|sub`, or \
                             use a category)"
                        )
                    })?;
                }
                self.command_text.push(lower.to_string());
            }
            _ => return Err(format!("`{rule}`: not an ACL rule")),
        }
        Ok(())
    }

    fn set_bit(&mut self, position: usize, allow: bool) {
        let (word, bit) = (position / 64, 1u64 << (position % 64));
        if allow {
            self.commands[word] |= bit;
        } else {
            self.commands[word] &= !bit;
        }
    }

    fn set_all(&mut self, allow: bool) {
        let total = command::all().count();
        for position in 0..total {
            self.set_bit(position, allow);
        }
        self.unknown_commands = allow;
    }

    fn set_category(&mut self, bit: u32, allow: bool) {
        let positions: Vec<usize> = (command::all().enumerate())
            .filter(|(_, spec)| categories::of(spec.name).unwrap_or(0) & bit != 0)
            .map(|(i, _)| i)
            .collect();
        for position in positions {
            self.set_bit(position, allow);
        }
    }

    /// `+name`/`-name`: a command (with all its subcommands) or one subcommand.
    fn set_command(&mut self, name: &str, allow: bool) -> Option<()> {
        let spec = command::lookup(name.as_bytes())?;
        let prefix = format!("{}|", spec.name);
        let positions: Vec<usize> = (command::all().enumerate())
            .filter(|(_, s)| s.name == spec.name || (spec.container && s.name.starts_with(&prefix)))
            .map(|(i, _)| i)
            .collect();
        for position in positions {
            self.set_bit(position, allow);
        }
        Some(())
    }

    fn allows_position(&self, position: u16) -> bool {
        let position = position as usize;
        self.commands
            .get(position / 64)
            .is_some_and(|word| word & (1 << (position % 64)) != 0)
    }

    /// Every command, key and channel: checking a request would find nothing to deny.
    pub fn unrestricted(&self) -> bool {
        let total = command::all().count();
        self.unknown_commands
            && (0..total).all(|p| self.allows_position(p as u16))
            && self.keys.is_all()
            && self.channels.is_all()
    }

    /// Whether the rules allow `args`. Requests with an unknown command or
    /// subcommand or a wrong arity are allowed here: their error comes next, as Redis
    /// answers those before the rules. A bad `numkeys` is the command's own error, after
    /// the command's permission.
    pub fn check(
        &self,
        args: &(impl Args + ?Sized),
        learned: Option<&command::learned::LearnedCommands>,
    ) -> Result<(), Denied> {
        if args.argc() == 0 {
            return Ok(());
        }
        let classified = match command::classify(args) {
            Ok(classified) => Some(classified),
            Err(command::CommandError::Unknown { .. }) => return self.check_learned(args, learned),
            Err(command::CommandError::Syntax(_)) => None,
            Err(_) => return Ok(()),
        };
        let Some(position) = command::position(args) else {
            return Ok(());
        };
        let Some(spec) = command::at_position(position) else {
            return Ok(());
        };
        if ALWAYS.contains(&spec.name) {
            return Ok(());
        }
        if !self.allows_position(position) {
            return Err(Denied::Command(spec.name.to_string()));
        }
        match classified {
            Some(classified) => self.check_names(spec, args, classified.keys.iter()),
            None => Ok(()),
        }
    }

    /// The keys at `keys` and the channels of `args`.
    fn check_names(
        &self,
        spec: &CommandSpec,
        args: &(impl Args + ?Sized),
        keys: impl Iterator<Item = usize>,
    ) -> Result<(), Denied> {
        if self.keys.is_all() && self.channels.is_all() {
            return Ok(());
        }
        // Shard channels are keys to the command table, channels to the rules.
        let shard_channels = matches!(spec.name, "spublish" | "ssubscribe" | "sunsubscribe");
        for i in keys {
            if shard_channels {
                if spec.name != "sunsubscribe" && !self.channels.matches(args.arg(i)) {
                    return Err(Denied::Channel);
                }
            } else if !self.keys.matches(args.arg(i)) {
                return Err(Denied::Key);
            }
        }
        let argc = args.argc();
        match spec.name {
            // BY and GET read keys the table cannot see: only with every key allowed.
            "sort" | "sort_ro" if !self.keys.is_all() => {
                let external = (2..argc).any(|i| {
                    let a = args.arg(i);
                    a.eq_ignore_ascii_case(b"by") || a.eq_ignore_ascii_case(b"get")
                });
                if external {
                    return Err(Denied::Key);
                }
            }
            "publish" if !self.channels.matches(args.arg(1)) => return Err(Denied::Channel),
            "subscribe" if !(1..argc).all(|i| self.channels.matches(args.arg(i))) => {
                return Err(Denied::Channel)
            }
            "psubscribe" if !(1..argc).all(|i| self.channels.has_literally(args.arg(i))) => {
                return Err(Denied::Channel)
            }
            _ => {}
        }
        Ok(())
    }

    /// A command the table does not know: allowed with `+@all` (its categories are
    /// unknown), its keys as the node described them.
    fn check_learned(
        &self,
        args: &(impl Args + ?Sized),
        learned: Option<&command::learned::LearnedCommands>,
    ) -> Result<(), Denied> {
        let Some(cmd) = learned.and_then(|l| l.get(args.arg(0))) else {
            return Ok(());
        };
        if !self.unknown_commands {
            return Err(Denied::Command(cmd.name.clone()));
        }
        if let Ok(command::learned::LearnedRoute::Keys(keys)) = cmd.route(args) {
            if keys.iter().any(|&i| !self.keys.matches(args.arg(i))) {
                return Err(Denied::Key);
            }
        }
        Ok(())
    }

    /// The command rules, as `ACL GETUSER` shows them (always starting from `+@all` or
    /// `-@all`, as Redis's do).
    pub fn describe_commands(&self) -> String {
        let starts_whole = self
            .command_text
            .first()
            .is_some_and(|r| r == "+@all" || r == "-@all");
        let mut parts = Vec::new();
        if !starts_whole {
            parts.push("-@all".to_string());
        }
        parts.extend(self.command_text.iter().cloned());
        parts.join(" ")
    }

    pub fn describe_keys(&self) -> String {
        self.keys.describe('~')
    }

    pub fn describe_channels(&self) -> String {
        match &self.channels {
            Patterns::Some(list) if list.is_empty() => "resetchannels".to_string(),
            channels => channels.describe('&'),
        }
    }

    /// The rules as `ACL LIST` shows them: keys, channels, commands.
    pub fn describe(&self) -> String {
        [
            self.describe_keys(),
            self.describe_channels(),
            self.describe_commands(),
        ]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
    }

    /// Whether the rules allow a command by its table name (`ACL` tests, `ACL CAT`).
    pub fn allows_name(&self, name: &str) -> bool {
        command::all()
            .position(|s| s.name == name)
            .is_some_and(|p| self.allows_position(p as u16))
    }
}

/// Redis's glob (`stringmatchlen`, case-sensitive): `*`, `?`, `[abc]`, `[^a-z]`, `\x`.
/// Linear in the name for each star in the pattern (the last star is the only
/// backtracking point), so a hostile key costs no more than its length times the
/// pattern's.
pub fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut s) = (0, 0);
    // After a star: where the pattern resumes and the name position it last tried.
    let mut star: Option<(usize, usize)> = None;
    while s < name.len() {
        if p < pattern.len() {
            if pattern[p] == b'*' {
                while p < pattern.len() && pattern[p] == b'*' {
                    p += 1;
                }
                if p == pattern.len() {
                    return true;
                }
                star = Some((p, s));
                continue;
            }
            let (matched, next) = match_one(pattern, p, name[s]);
            if matched {
                p = next;
                s += 1;
                continue;
            }
        }
        match star {
            Some((resume, tried)) => {
                p = resume;
                s = tried + 1;
                star = Some((resume, tried + 1));
            }
            None => return false,
        }
    }
    while p < pattern.len() && pattern[p] == b'*' {
        p += 1;
    }
    p == pattern.len()
}

/// Whether the pattern element at `p` (not a star) matches `c`, and where the next
/// element starts.
fn match_one(pattern: &[u8], mut p: usize, c: u8) -> (bool, usize) {
    match pattern[p] {
        b'?' => (true, p + 1),
        b'[' => {
            p += 1;
            let negate = pattern.get(p) == Some(&b'^');
            if negate {
                p += 1;
            }
            let mut matched = false;
            loop {
                match pattern.get(p) {
                    None => break,
                    Some(b']') => {
                        p += 1;
                        break;
                    }
                    Some(b'\\') if p + 1 < pattern.len() => {
                        matched |= pattern[p + 1] == c;
                        p += 2;
                    }
                    Some(&start) if p + 2 < pattern.len() && pattern[p + 1] == b'-' => {
                        let end = pattern[p + 2];
                        let (lo, hi) = if start <= end {
                            (start, end)
                        } else {
                            (end, start)
                        };
                        matched |= (lo..=hi).contains(&c);
                        p += 3;
                    }
                    Some(&other) => {
                        matched |= other == c;
                        p += 1;
                    }
                }
            }
            (matched != negate, p)
        }
        b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == c, p + 2),
        other => (other == c, p + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Rules {
        Rules::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn check(r: &Rules, args: &[&str]) -> Result<(), Denied> {
        r.check(args, None)
    }

    fn denied_command(name: &str) -> Result<(), Denied> {
        Err(Denied::Command(name.to_string()))
    }

    #[test]
    fn globs_match_as_redis() {
        for (p, s) in [
            ("*", ""),
            ("*", "abc"),
            ("app:*", "app:1"),
            ("app:*", "app:"),
            ("a?c", "abc"),
            ("a[bc]d", "acd"),
            ("a[^x]d", "abd"),
            ("a[a-c]d", "abd"),
            ("a[c-a]d", "abd"),
            ("a\\*b", "a*b"),
            ("*:*:x", "a:b:c:x"),
            ("a*b*c", "aXbYbZc"),
            ("[\\]]", "]"),
        ] {
            assert!(glob(p.as_bytes(), s.as_bytes()), "{p} should match {s}");
        }
        for (p, s) in [
            ("app:*", "other"),
            ("app:*", "app"),
            ("a?c", "ac"),
            ("a[bc]d", "aed"),
            ("a[^x]d", "axd"),
            ("a\\*b", "aXb"),
            ("a*b*c", "aXbYbZ"),
            ("abc", "ABC"),
            ("", "a"),
            ("ab[", "ab"),
            ("ab[", "abc"),
        ] {
            assert!(
                !glob(p.as_bytes(), s.as_bytes()),
                "{p} should not match {s}"
            );
        }
    }

    #[test]
    fn a_hostile_glob_stays_linear() {
        let pattern = "*a*a*a*a*a*a*a*a*a*b".as_bytes();
        let name = vec![b'a'; 20_000];
        assert!(!glob(pattern, &name));
    }

    #[test]
    fn categories_and_commands_apply_in_order() {
        let r = rules("+@all -@dangerous ~*");
        assert_eq!(check(&r, &["GET", "k"]), Ok(()));
        assert_eq!(check(&r, &["FLUSHALL"]), denied_command("flushall"));
        assert_eq!(
            check(&r, &["CONFIG", "SET", "a", "b"]),
            denied_command("config|set")
        );
        let r = rules("+@read ~*");
        assert_eq!(check(&r, &["GET", "k"]), Ok(()));
        assert_eq!(check(&r, &["SET", "k", "v"]), denied_command("set"));
        let r = rules("+@read +set -get ~*");
        assert_eq!(check(&r, &["SET", "k", "v"]), Ok(()));
        assert_eq!(check(&r, &["get", "k"]), denied_command("get"));
        let r = rules("+@all -client +client|setname ~*");
        assert_eq!(check(&r, &["CLIENT", "SETNAME", "x"]), Ok(()));
        assert_eq!(check(&r, &["CLIENT", "ID"]), denied_command("client|id"));
        let r = rules("allcommands allkeys -@scripting");
        assert_eq!(
            check(&r, &["EVAL", "return 1", "0"]),
            denied_command("eval")
        );
        assert_eq!(check(&r, &["FCALL", "f", "0"]), denied_command("fcall"));
        assert_eq!(
            check(&r, &["SCRIPT", "FLUSH"]),
            denied_command("script|flush")
        );
    }

    #[test]
    fn auth_and_connection_resets_are_always_allowed() {
        let r = rules("nocommands");
        for args in [&["AUTH", "p"][..], &["HELLO", "3"], &["QUIT"], &["RESET"]] {
            assert_eq!(check(&r, args), Ok(()), "{args:?}");
        }
        assert_eq!(check(&r, &["PING"]), denied_command("ping"));
    }

    #[test]
    fn errors_of_the_table_come_before_the_rules() {
        let r = rules("nocommands");
        assert_eq!(
            check(&r, &["EVAL", "s", "x"]),
            denied_command("eval"),
            "then numkeys"
        );
        let r = rules("+@all ~app:*");
        assert_eq!(
            check(&r, &["EVAL", "s", "x"]),
            Ok(()),
            "numkeys: plan answers it"
        );
        let r = rules("nocommands");
        assert_eq!(check(&r, &["GET"]), Ok(()), "arity: plan answers it");
        assert_eq!(
            check(&r, &["NOSUCH", "x"]),
            Ok(()),
            "unknown: plan answers it"
        );
        assert_eq!(check(&r, &["CLIENT", "NOSUCH"]), Ok(()));
    }

    #[test]
    fn every_key_is_checked() {
        let r = rules("+@all ~app:*");
        assert_eq!(check(&r, &["GET", "app:1"]), Ok(()));
        assert_eq!(check(&r, &["GET", "other"]), Err(Denied::Key));
        assert_eq!(
            check(&r, &["MGET", "app:1", "app:2", "other"]),
            Err(Denied::Key)
        );
        assert_eq!(
            check(&r, &["MSET", "app:1", "v", "x", "v"]),
            Err(Denied::Key)
        );
        assert_eq!(
            check(&r, &["MSET", "app:1", "x", "app:2", "y"]),
            Ok(()),
            "values are not keys"
        );
        assert_eq!(
            check(&r, &["EVAL", "s", "2", "app:1", "x"]),
            Err(Denied::Key)
        );
        assert_eq!(
            check(&r, &["EVAL", "s", "1", "app:1", "x"]),
            Ok(()),
            "args are not keys"
        );
        assert_eq!(
            check(&r, &["XREAD", "STREAMS", "app:s", "x", "0", "0"]),
            Err(Denied::Key)
        );
        assert_eq!(check(&r, &["SORT", "app:l", "BY", "w_*"]), Err(Denied::Key));
        assert_eq!(check(&r, &["SORT", "app:l", "LIMIT", "0", "1"]), Ok(()));
        assert_eq!(
            check(&r, &["ZUNIONSTORE", "app:d", "2", "app:a", "b"]),
            Err(Denied::Key)
        );
        let r = rules("+@all");
        assert_eq!(
            check(&r, &["GET", "app:1"]),
            Err(Denied::Key),
            "no ~: no keys"
        );
        assert_eq!(check(&r, &["PING"]), Ok(()));
    }

    #[test]
    fn channels_default_to_all_unless_named() {
        let r = rules("+@all ~*");
        assert_eq!(check(&r, &["PUBLISH", "any", "m"]), Ok(()));
        let r = rules("+@all ~* &news:*");
        assert_eq!(check(&r, &["PUBLISH", "news:1", "m"]), Ok(()));
        assert_eq!(check(&r, &["PUBLISH", "other", "m"]), Err(Denied::Channel));
        assert_eq!(
            check(&r, &["SUBSCRIBE", "news:1", "other"]),
            Err(Denied::Channel)
        );
        assert_eq!(check(&r, &["SPUBLISH", "other", "m"]), Err(Denied::Channel));
        assert_eq!(
            check(&r, &["SSUBSCRIBE", "news:a"]),
            Ok(()),
            "shard channels are channels, not keys"
        );
        assert_eq!(check(&r, &["PSUBSCRIBE", "news:*"]), Ok(()));
        assert_eq!(
            check(&r, &["PSUBSCRIBE", "news:1*"]),
            Err(Denied::Channel),
            "literally"
        );
        let r = rules("+@all ~* resetchannels");
        assert_eq!(check(&r, &["PUBLISH", "any", "m"]), Err(Denied::Channel));
    }

    #[test]
    fn unknown_rules_and_secrets_are_refused() {
        for (text, says) in [
            ("+@nosuch", "unknown category"),
            ("+nosuch", "unknown command"),
            (">secret", "passwords go in"),
            ("#abcd", "passwords go in"),
            ("on", "enabled"),
            ("%R~app:*", "not supported"),
            ("(+get)", "selectors"),
            ("bogus", "not an ACL rule"),
        ] {
            let e = Rules::parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn only_everything_is_unrestricted() {
        assert!(rules("+@all ~* &*").unrestricted());
        assert!(rules("allcommands allkeys").unrestricted());
        assert!(!rules("+@all ~app:*").unrestricted());
        assert!(!rules("+@all -debug ~*").unrestricted());
        assert!(!rules(DEFAULT_RULES).unrestricted());
    }

    #[test]
    fn descriptions_as_acl_list_shows_them() {
        assert_eq!(
            rules(DEFAULT_RULES).describe(),
            "~* &* +@all -@admin -@dangerous"
        );
        assert_eq!(
            rules("+@read ~app:* ~b").describe(),
            "~app:* ~b &* -@all +@read"
        );
        assert_eq!(rules("reset +get").describe(), "resetchannels -@all +get");
    }

    #[test]
    fn learned_commands_need_all_commands() {
        let reply =
            redis_protocol::resp2::types::OwnedFrame::Array(vec![command::learned::command_entry(
                "newcmd",
                -2,
                &["readonly"],
                1,
                1,
                1,
            )]);
        let learned = command::learned::LearnedCommands::from_command_reply(&reply);
        let r = rules("+@all ~app:*");
        assert_eq!(r.check(&["NEWCMD", "app:1"][..], Some(&learned)), Ok(()));
        assert_eq!(
            r.check(&["NEWCMD", "x"][..], Some(&learned)),
            Err(Denied::Key)
        );
        let r = rules("+@all -@dangerous ~*");
        assert_eq!(
            r.check(&["NEWCMD", "x"][..], Some(&learned)),
            denied_command("newcmd")
        );
    }
}
