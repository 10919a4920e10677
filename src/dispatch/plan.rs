//! What the session does with one request, decided in one place for built-in and
//! learned commands alike. Pure: a request's arguments in, a [`Plan`] or a
//! [`PlanError`] (the client's error reply, with Redis's own wording) out; the session
//! only carries it out.
//!
//! The hot path (a known, well-formed command whose keys share a slot) allocates
//! nothing: [`classify`] does not, and the keys are hashed in one pass. Only errors,
//! refusals and learned commands allocate.

use crate::backend::Target;
use crate::command::blocking::{block_for, BlockFor};
use crate::command::learned::{LearnedCommands, LearnedRoute};
use crate::command::{classify, flags, Args, CommandError, FanOut, Local, Route};
use crate::slot::Slot;

/// What the session must do with a request. It borrows nothing, so the session can
/// decide once and then change its own state (a transaction's) before carrying it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// The proxy answers it itself.
    Local(Local),
    /// Send it to one node: a slot's master (keyed) or any master (keyless; the
    /// number is the client's, so a client's keyless requests stay on one node).
    Node(Target),
    /// An `EVAL`/`EVAL_RO`: the session remembers the script (to heal a `NOSCRIPT`
    /// later), then sends it like [`Plan::Node`].
    Script(Target),
    /// A splittable command (`MGET`, `MSET`, `DEL`, ...) whose keys hash to several
    /// slots: one request per slot, the replies merged
    /// ([`split`](crate::dispatch::split::split)).
    Split,
    /// A cluster-wide command: to every master (or every node), the replies merged.
    FanOut(FanOut),
    /// A blocking command: to its slot's master on a connection pinned to the client,
    /// waiting as long as its own timeout says.
    Pinned { target: Target, wait: BlockFor },
    /// `WAIT`, `WAITAOF` (lower-case name): on a connection pinned to the client at the
    /// master of its last write, after a write there to count from
    /// (`session::wait`), waiting as long as its own timeout says.
    Wait { name: &'static str, wait: BlockFor },
    /// Answer `ERR 'NAME' is not supported: reason` ([`Plan::refusal`]). `name` is the
    /// lower-case command name (`container|sub` for a subcommand); `None` for a learned
    /// command, whose name is the request's first argument.
    Refuse {
        name: Option<&'static str>,
        reason: &'static str,
    },
    /// `MULTI`, `EXEC`, `DISCARD`, `WATCH`, `UNWATCH` (lower-case): the session's
    /// transaction state decides.
    Transaction(&'static str),
    /// `(P|S)SUBSCRIBE`, `(P|S)UNSUBSCRIBE` (lower-case): the session's subscriptions
    /// and its worker's pub/sub hub. A sharded one's channels share a slot.
    PubSub(&'static str),
    /// A list command over keys of several slots that the session runs one slot after
    /// another ([`ACROSS_SLOTS`]: `LMOVE`, `BLPOP`, ...), which Redis Cluster refuses.
    AcrossSlots,
}

/// The commands whose keys in several slots the session serves one slot after another
/// (`session::across`) rather than answering `CROSSSLOT`.
pub const ACROSS_SLOTS: &[&str] = &[
    "lmove",
    "rpoplpush",
    "blmove",
    "brpoplpush",
    "blpop",
    "brpop",
];

/// A request answered with an error before it reaches a node. `Display` is the error
/// reply's text (without `-` and CRLF), as Redis words it; all are the client's fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// From the built-in table: unknown command or subcommand, wrong number of
    /// arguments, a bad `numkeys` or `STREAMS`.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// A learned command's own check failed (its arity); the full text.
    #[error("{0}")]
    Learned(String),
    /// The keys hash to different slots.
    #[error("CROSSSLOT Keys in request don't hash to the same slot")]
    CrossSlot,
    /// `MSETNX` over keys in different slots: split, it could set some keys and not
    /// others.
    #[error("CROSSSLOT Keys in request don't hash to the same slot (slotgate does not split MSETNX: it must set all of its keys or none, and keys of different slots cannot be set at once)")]
    NotAtomic,
}

/// Decide what happens to `request`. `learned`: the commands learned from the
/// cluster, asked only when the built-in table does not know the command. `client`
/// spreads keyless requests over the masters ([`Target::Any`]).
pub fn plan(
    request: &(impl Args + ?Sized),
    learned: Option<&LearnedCommands>,
    client: u32,
) -> Result<Plan, PlanError> {
    plan_with_flags(request, learned, client).0
}

/// [`plan`], with the command's [`flags`] (0 when it is unknown or learned), for the
/// counters by class.
#[inline]
pub fn plan_with_flags(
    request: &(impl Args + ?Sized),
    learned: Option<&LearnedCommands>,
    client: u32,
) -> (Result<Plan, PlanError>, u32) {
    let classified = match classify(request) {
        Ok(classified) => classified,
        Err(unknown @ CommandError::Unknown { .. }) => {
            return (plan_learned(request, learned, unknown, client), 0)
        }
        Err(e) => return (Err(e.into()), 0),
    };
    let flags = classified.spec.flags;
    (plan_classified(request, classified, client), flags)
}

/// [`plan`] of a command the built-in table knows.
#[inline]
fn plan_classified(
    request: &(impl Args + ?Sized),
    classified: crate::command::Classified,
    client: u32,
) -> Result<Plan, PlanError> {
    let name = classified.spec.name;
    let refuse = |reason| Plan::Refuse {
        name: Some(name),
        reason,
    };
    let node = |target| match classified.spec.flags & flags::SCRIPT_BODY {
        0 => Plan::Node(target),
        _ => Plan::Script(target),
    };
    Ok(match classified.route {
        Route::Local(which) => Plan::Local(which),
        Route::Slot => match target(request, classified.keys.iter(), client) {
            Ok(target) => node(target),
            Err(PlanError::CrossSlot) if classified.spec.has_flag(flags::SPLITTABLE) => Plan::Split,
            Err(PlanError::CrossSlot) if name == "msetnx" => return Err(PlanError::NotAtomic),
            Err(PlanError::CrossSlot) if ACROSS_SLOTS.contains(&name) => Plan::AcrossSlots,
            Err(e) => return Err(e),
        },
        Route::AnyNode => node(Target::Any(client)),
        Route::FanOut(kind) => Plan::FanOut(kind),
        Route::SlotArgument => Plan::Node(slot_argument(request, client)),
        Route::Blocking if classified.keys.is_empty() => Plan::Wait {
            name,
            wait: block_for(name, request),
        },
        Route::Blocking => match target(request, classified.keys.iter(), client) {
            Ok(target) => Plan::Pinned {
                target,
                wait: block_for(name, request),
            },
            Err(PlanError::CrossSlot) if ACROSS_SLOTS.contains(&name) => Plan::AcrossSlots,
            Err(e) => return Err(e),
        },
        Route::PubSub => {
            // SSUBSCRIBE and SUNSUBSCRIBE take channels of one slot, as Redis does.
            target(request, classified.keys.iter(), client)?;
            Plan::PubSub(name)
        }
        Route::Refused(reason) => refuse(reason),
        Route::Transaction => Plan::Transaction(name),
    })
}

/// A command the built-in table does not know: route it by what the cluster said
/// about it, or answer Redis's "unknown command" (`unknown`).
fn plan_learned(
    request: &(impl Args + ?Sized),
    learned: Option<&LearnedCommands>,
    unknown: CommandError,
    client: u32,
) -> Result<Plan, PlanError> {
    let cmd = match learned {
        Some(learned) if request.argc() > 0 => learned.get(request.arg(0)),
        _ => None,
    };
    let Some(cmd) = cmd else {
        return Err(unknown.into());
    };
    match cmd.route(request).map_err(PlanError::Learned)? {
        LearnedRoute::Refused(reason) => Ok(Plan::Refuse { name: None, reason }),
        LearnedRoute::NoKeys => Ok(Plan::Node(Target::Any(client))),
        LearnedRoute::Keys(keys) => Ok(Plan::Node(target(request, keys.iter().copied(), client)?)),
    }
}

/// The node for the keys at `positions`: their slot's master, any master when there
/// are none, or `CROSSSLOT` when they hash to different slots. Each key is hashed once.
#[inline]
fn target(
    request: &(impl Args + ?Sized),
    mut positions: impl Iterator<Item = usize>,
    client: u32,
) -> Result<Target, PlanError> {
    let Some(first) = positions.next() else {
        return Ok(Target::Any(client));
    };
    let slot = Slot::of_key(request.arg(first));
    if positions.any(|i| Slot::of_key(request.arg(i)) != slot) {
        return Err(PlanError::CrossSlot);
    }
    Ok(Target::Slot(slot))
}

/// `CLUSTER COUNTKEYSINSLOT slot` and `GETKEYSINSLOT slot count` go to the master of
/// `slot` (argument 2; the arity guarantees it). A slot number Redis would refuse goes
/// to any master, whose reply is Redis's own error (`ERR Invalid slot`, `ERR value is
/// not an integer or out of range`); so does anything that parses here but not in Redis
/// (`+5`, `05`), from the slot's master.
fn slot_argument(request: &(impl Args + ?Sized), client: u32) -> Target {
    std::str::from_utf8(request.arg(2))
        .ok()
        .and_then(|text| text.parse::<u16>().ok())
        .and_then(Slot::new)
        .map_or(Target::Any(client), Target::Slot)
}

impl Plan {
    /// The error text of a [`Plan::Refuse`] of `request` ([`refusal`]).
    pub fn refusal(name: Option<&str>, reason: &str, request: &(impl Args + ?Sized)) -> String {
        match name {
            Some(name) => refusal(name, reason),
            None => refusal(
                &String::from_utf8_lossy(request.arg(0)).to_lowercase(),
                reason,
            ),
        }
    }
}

/// The error text for a refused command: `ERR 'NAME' is not supported: reason`, the
/// name upper-cased with a subcommand's `|` made a space (`CLIENT KILL`).
pub fn refusal(name: &str, reason: &str) -> String {
    let name = name.replace('|', " ").to_uppercase();
    format!("ERR '{name}' is not supported: {reason}")
}

#[cfg(test)]
mod tests {
    use redis_protocol::resp2::types::OwnedFrame;

    use super::*;

    const CLIENT: u32 = 7;

    fn plan_of(args: &[&str]) -> Result<Plan, PlanError> {
        plan(args, None, CLIENT)
    }

    fn slot(key: &str) -> Target {
        Target::Slot(Slot::of_key(key.as_bytes()))
    }

    /// The error reply's text.
    fn error(args: &[&str]) -> String {
        match plan_of(args) {
            Err(e) => e.to_string(),
            other => panic!("{args:?}: expected an error, got {other:?}"),
        }
    }

    /// The refusal's text.
    fn refused(result: Result<Plan, PlanError>) -> String {
        match result {
            Ok(Plan::Refuse {
                name: Some(name),
                reason,
            }) => refusal(name, reason),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

    #[test]
    fn a_keyed_command_goes_to_its_slot() {
        assert_eq!(plan_of(&["GET", "foo"]), Ok(Plan::Node(slot("foo"))));
        assert_eq!(plan_of(&["get", "foo"]), Ok(Plan::Node(slot("foo"))));
        assert_eq!(plan_of(&["SET", "k", "v"]), Ok(Plan::Node(slot("k"))));
        assert_eq!(
            plan_of(&["SPUBLISH", "ch", "hello"]),
            Ok(Plan::Node(slot("ch"))),
            "a shard channel is a key"
        );
    }

    #[test]
    fn keys_in_different_slots_are_crossslot() {
        assert_ne!(Slot::of_key(b"a"), Slot::of_key(b"b"));
        assert_eq!(error(&["RENAME", "a", "b"]), CROSSSLOT);
        assert_eq!(error(&["SMOVE", "a", "b", "m"]), CROSSSLOT);
        assert_eq!(
            error(&["SUNIONSTORE", "a", "a", "b"]),
            CROSSSLOT,
            "the last key"
        );
        assert_eq!(error(&["EVAL", "return 1", "2", "a", "b"]), CROSSSLOT);
        assert!(error(&["MSETNX", "a", "1", "b", "2"]).starts_with(CROSSSLOT));
        assert!(error(&["MSETNX", "a", "1", "b", "2"]).contains("all of its keys or none"));
        assert_eq!(
            plan_of(&["MSETNX", "{a}1", "1", "{a}2", "2"]),
            Ok(Plan::Node(slot("a")))
        );
        assert_eq!(plan_of(&["MGET", "a", "a"]), Ok(Plan::Node(slot("a"))));
    }

    #[test]
    fn splittable_keys_in_different_slots_are_split() {
        for args in [
            &["MGET", "a", "b"][..],
            &["mget", "a", "a", "b"],
            &["MSET", "a", "1", "b", "2"],
            &["DEL", "a", "b"],
            &["UNLINK", "a", "b"],
            &["EXISTS", "a", "b"],
            &["TOUCH", "a", "b"],
        ] {
            assert_eq!(plan_of(args), Ok(Plan::Split), "{args:?}");
        }
        assert_eq!(
            error(&["MSET", "a", "1", "b"]),
            "ERR wrong number of arguments for 'mset' command"
        );
    }

    #[test]
    fn cluster_wide_commands_fan_out() {
        assert_eq!(plan_of(&["DBSIZE"]), Ok(Plan::FanOut(FanOut::DbSize)));
        assert_eq!(plan_of(&["keys", "*"]), Ok(Plan::FanOut(FanOut::Keys)));
        assert_eq!(plan_of(&["SCAN", "0"]), Ok(Plan::FanOut(FanOut::Scan)));
        assert_eq!(
            plan_of(&["SCRIPT", "LOAD", "return 1"]),
            Ok(Plan::FanOut(FanOut::ScriptLoad))
        );
        assert_eq!(
            plan_of(&["slowlog", "get", "5"]),
            Ok(Plan::FanOut(FanOut::SlowlogGet))
        );
    }

    #[test]
    fn a_hash_tag_keeps_keys_in_one_slot() {
        assert_eq!(
            plan_of(&["MGET", "{user1000}.following", "{user1000}.followers"]),
            Ok(Plan::Node(slot("user1000")))
        );
        assert_eq!(
            plan_of(&["MSET", "{t}a", "1", "{t}b", "2"]),
            Ok(Plan::Node(slot("t")))
        );
    }

    #[test]
    fn a_keyless_command_goes_to_any_node() {
        assert_eq!(plan_of(&["TIME"]), Ok(Plan::Node(Target::Any(CLIENT))));
        assert_eq!(
            plan_of(&["EVAL", "return 1", "0"]),
            Ok(Plan::Script(Target::Any(CLIENT)))
        );
        assert_eq!(
            plan_of(&["EVAL", "return 1", "1", "k"]),
            Ok(Plan::Script(slot("k")))
        );
        assert_eq!(
            plan_of(&["EVALSHA", "0123", "1", "k"]),
            Ok(Plan::Node(slot("k"))),
            "only a request with the script's body is remembered"
        );
        assert_eq!(
            plan_of(&["PUBLISH", "ch", "hello"]),
            Ok(Plan::Node(Target::Any(CLIENT)))
        );
    }

    #[test]
    fn local_commands_are_answered_here() {
        assert_eq!(plan_of(&["PING"]), Ok(Plan::Local(Local::Ping)));
        assert_eq!(plan_of(&["ping", "hi"]), Ok(Plan::Local(Local::Ping)));
        assert_eq!(
            plan_of(&["CLIENT", "SETNAME", "me"]),
            Ok(Plan::Local(Local::ClientSetName))
        );
    }

    #[test]
    fn unsupported_routes_are_refused_with_the_reason() {
        assert_eq!(
            plan_of(&["BLPOP", "q", "0"]),
            Ok(Plan::Pinned {
                target: slot("q"),
                wait: BlockFor::Forever
            })
        );
        assert_eq!(
            plan_of(&["XREAD", "BLOCK", "250", "STREAMS", "s", "$"]),
            Ok(Plan::Pinned {
                target: slot("s"),
                wait: BlockFor::For(std::time::Duration::from_millis(250))
            })
        );
        assert_eq!(
            plan_of(&["BZPOPMAX", "a", "b", "0"]),
            Err(PlanError::CrossSlot)
        );
        assert_eq!(
            plan_of(&["WAIT", "1", "0"]),
            Ok(Plan::Wait {
                name: "wait",
                wait: BlockFor::Forever
            }),
            "no key: the session knows the slot of the client's last write"
        );
        assert_eq!(
            plan_of(&["waitaof", "0", "1", "100"]),
            Ok(Plan::Wait {
                name: "waitaof",
                wait: BlockFor::For(std::time::Duration::from_millis(100))
            })
        );
        assert_eq!(
            plan_of(&["XREAD", "STREAMS", "s", "0"]),
            Ok(Plan::Node(slot("s"))),
            "XREAD without BLOCK is not blocking"
        );
        assert_eq!(
            refused(plan_of(&["ASKING"])),
            "ERR 'ASKING' is not supported: the proxy hides the cluster topology"
        );
        assert_eq!(
            refused(plan_of(&["cluster", "addslots", "1"])),
            "ERR 'CLUSTER ADDSLOTS' is not supported: the proxy hides the cluster topology",
            "a subcommand is named as the client typed it, upper-cased"
        );
    }

    #[test]
    fn keys_in_slot_go_to_the_master_of_the_slot_argument() {
        let at = |n| Ok(Plan::Node(Target::Slot(Slot::new(n).unwrap())));
        assert_eq!(plan_of(&["CLUSTER", "COUNTKEYSINSLOT", "12182"]), at(12182));
        assert_eq!(plan_of(&["cluster", "countkeysinslot", "0"]), at(0));
        assert_eq!(
            plan_of(&["CLUSTER", "GETKEYSINSLOT", "16383", "10"]),
            at(16383)
        );
        // What Redis refuses goes to any master, which answers Redis's own error.
        for bad in ["16384", "-1", "x", "", "99999999999"] {
            assert_eq!(
                plan_of(&["CLUSTER", "COUNTKEYSINSLOT", bad]),
                Ok(Plan::Node(Target::Any(CLIENT))),
                "{bad:?}"
            );
            assert_eq!(
                plan_of(&["CLUSTER", "GETKEYSINSLOT", bad, "1"]),
                Ok(Plan::Node(Target::Any(CLIENT))),
                "{bad:?}"
            );
        }
        assert_eq!(
            error(&["CLUSTER", "COUNTKEYSINSLOT"]),
            "ERR wrong number of arguments for 'cluster|countkeysinslot' command"
        );
        assert_eq!(
            error(&["CLUSTER", "GETKEYSINSLOT", "1"]),
            "ERR wrong number of arguments for 'cluster|getkeysinslot' command"
        );
    }

    #[test]
    fn cluster_queries_are_answered_here_and_the_rest_refused() {
        for (args, which) in [
            (&["CLUSTER", "SLOTS"][..], Local::ClusterSlots),
            (&["cluster", "shards"], Local::ClusterShards),
            (&["CLUSTER", "NODES"], Local::ClusterNodes),
            (&["CLUSTER", "INFO"], Local::ClusterInfo),
            (&["CLUSTER", "MYID"], Local::ClusterMyId),
            (&["CLUSTER", "MYSHARDID"], Local::ClusterMyShardId),
            (&["CLUSTER", "KEYSLOT", "foo"], Local::ClusterKeySlot),
        ] {
            assert_eq!(plan_of(args), Ok(Plan::Local(which)), "{args:?}");
        }
        assert_eq!(
            error(&["CLUSTER", "KEYSLOT"]),
            "ERR wrong number of arguments for 'cluster|keyslot' command"
        );
        for args in [
            &["CLUSTER", "LINKS"][..],
            &["CLUSTER", "HELP"],
            &["CLUSTER", "RESET"],
            &["CLUSTER", "SETSLOT", "1", "STABLE"],
        ] {
            assert_eq!(
                refused(plan_of(args)),
                format!(
                    "ERR 'CLUSTER {}' is not supported: the proxy hides the cluster topology",
                    args[1]
                )
            );
        }
    }

    #[test]
    fn transaction_commands_go_to_the_session_state() {
        assert_eq!(plan_of(&["MULTI"]), Ok(Plan::Transaction("multi")));
        assert_eq!(plan_of(&["exec"]), Ok(Plan::Transaction("exec")));
        assert_eq!(plan_of(&["WATCH", "k"]), Ok(Plan::Transaction("watch")));
        assert_eq!(plan_of(&["UNWATCH"]), Ok(Plan::Transaction("unwatch")));
    }

    #[test]
    fn subscriptions_go_to_the_session_state() {
        assert_eq!(
            plan_of(&["SUBSCRIBE", "a", "b"]),
            Ok(Plan::PubSub("subscribe"))
        );
        assert_eq!(plan_of(&["punsubscribe"]), Ok(Plan::PubSub("punsubscribe")));
        assert_eq!(
            plan_of(&["SSUBSCRIBE", "{t}a", "{t}b"]),
            Ok(Plan::PubSub("ssubscribe"))
        );
        assert_eq!(error(&["SSUBSCRIBE", "a", "b"]), CROSSSLOT);
        assert_eq!(error(&["SUNSUBSCRIBE", "a", "b"]), CROSSSLOT);
        assert_eq!(plan_of(&["SUNSUBSCRIBE"]), Ok(Plan::PubSub("sunsubscribe")));
        assert_eq!(
            plan_of(&["SUBSCRIBE", "a", "b"]),
            Ok(Plan::PubSub("subscribe")),
            "plain channels are not keys"
        );
    }

    #[test]
    fn classify_errors_keep_redis_wording() {
        assert_eq!(
            error(&["FOO", "a", "b"]),
            "ERR unknown command 'FOO', with args beginning with: 'a' 'b' "
        );
        assert_eq!(
            error(&["GET"]),
            "ERR wrong number of arguments for 'get' command"
        );
        assert_eq!(
            error(&["CONFIG", "NOPE"]),
            "ERR unknown subcommand 'NOPE'. Try CONFIG HELP."
        );
        assert_eq!(
            error(&["EVAL", "return 1", "-1"]),
            "ERR Number of keys can't be negative"
        );
        assert_eq!(
            plan(&[] as &[&str], Some(&learned()), CLIENT)
                .unwrap_err()
                .to_string(),
            "ERR unknown command '', with args beginning with: "
        );
    }

    use crate::command::learned::command_entry as entry;

    fn learned() -> LearnedCommands {
        LearnedCommands::from_command_reply(&OwnedFrame::Array(vec![
            entry("newmget", -2, &["readonly"], 1, -1, 1),
            entry("newmset", -3, &["write"], 1, -1, 2),
            entry("newping", -1, &["fast"], 0, 0, 0),
            entry("newblpop", -3, &["write", "blocking"], 1, -2, 1),
            entry("newsub", -2, &["pubsub"], 0, 0, 0),
            entry("newmovable", -3, &["write", "movablekeys"], 0, 0, 0),
        ]))
    }

    #[test]
    fn a_learned_command_routes_by_its_keys() {
        let learned = learned();
        let plan = |args: &[&str]| plan(args, Some(&learned), CLIENT);
        assert_eq!(plan(&["NEWMGET", "a"]), Ok(Plan::Node(slot("a"))));
        assert_eq!(
            plan(&["newmget", "{t}a", "{t}b"]),
            Ok(Plan::Node(slot("t")))
        );
        assert_eq!(plan(&["newmget", "a", "b"]), Err(PlanError::CrossSlot));
        assert_eq!(
            plan(&["newmget", "a", "b"]).unwrap_err().to_string(),
            CROSSSLOT
        );
        // Values are not keys: only "a" and "{a}c" count.
        assert_eq!(
            plan(&["newmset", "a", "b", "{a}c", "d"]),
            Ok(Plan::Node(slot("a")))
        );
        assert_eq!(
            plan(&["newmset", "a", "1", "b", "2"]),
            Err(PlanError::CrossSlot)
        );
        assert_eq!(plan(&["newping"]), Ok(Plan::Node(Target::Any(CLIENT))));
        assert_eq!(
            plan(&["newmset", "a"]).unwrap_err().to_string(),
            "ERR wrong number of arguments for 'newmset' command"
        );
    }

    #[test]
    fn a_learned_command_is_refused_when_it_cannot_be_served() {
        let learned = learned();
        let refused = |args: &[&str]| match plan(args, Some(&learned), CLIENT) {
            Ok(Plan::Refuse { name: None, reason }) => Plan::refusal(None, reason, args),
            other => panic!("expected a learned command's refusal, got {other:?}"),
        };
        assert_eq!(
            refused(&["newblpop", "q", "0"]),
            "ERR 'NEWBLPOP' is not supported: blocking commands newer than slotgate's table are not supported yet (their timeout's position is unknown)"
        );
        assert_eq!(
            refused(&["NewSub", "ch"]),
            "ERR 'NEWSUB' is not supported: pub/sub commands newer than slotgate's table are not supported yet"
        );
        assert_eq!(
            refused(&["newmovable", "x", "y"]),
            "ERR 'NEWMOVABLE' is not supported: its keys move with its arguments and this build does not know where"
        );
    }

    #[test]
    fn learned_commands_never_shadow_the_table_or_invent_commands() {
        let learned = learned();
        assert_eq!(
            plan(&["GET", "foo"], Some(&learned), CLIENT),
            Ok(Plan::Node(slot("foo")))
        );
        assert_eq!(
            plan(&["nosuch", "x"], Some(&learned), CLIENT)
                .unwrap_err()
                .to_string(),
            "ERR unknown command 'nosuch', with args beginning with: 'x' "
        );
        assert_eq!(
            plan_of(&["newmget", "a"]).unwrap_err().to_string(),
            "ERR unknown command 'newmget', with args beginning with: 'a' ",
            "nothing learned yet"
        );
    }

    #[test]
    fn list_commands_across_slots_are_served_one_slot_after_another() {
        for args in [
            &["LMOVE", "a", "b", "LEFT", "RIGHT"][..],
            &["RPOPLPUSH", "a", "b"],
            &["BLMOVE", "a", "b", "LEFT", "RIGHT", "0"],
            &["BRPOPLPUSH", "a", "b", "1"],
            &["BLPOP", "a", "b", "0"],
            &["BRPOP", "a", "b", "c", "1"],
        ] {
            assert_eq!(plan_of(args), Ok(Plan::AcrossSlots), "{args:?}");
        }
        // One slot: as before.
        assert!(matches!(
            plan_of(&["BLPOP", "{a}x", "{a}y", "0"]),
            Ok(Plan::Pinned { .. })
        ));
        assert!(matches!(
            plan_of(&["LMOVE", "{a}x", "{a}y", "LEFT", "LEFT"]),
            Ok(Plan::Node(_))
        ));
        // The others keep Redis Cluster's CROSSSLOT.
        for args in [&["BZPOPMIN", "a", "b", "0"][..], &["SMOVE", "a", "b", "m"]] {
            assert_eq!(plan_of(args), Err(PlanError::CrossSlot), "{args:?}");
        }
    }
}
