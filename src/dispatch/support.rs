//! The command support table in README.md: every command and subcommand of the built-in
//! table and how slotgate serves it, generated from the code so it cannot drift. Pure.
//!
//! Nothing per command is written here. Each row comes from the command's entry in
//! `command/table.rs` (its [`Route`]) and from what [`plan`] makes of example requests
//! built from its key spec: keys in one slot, keys in two slots (split, refused as not
//! atomic, or `CROSSSLOT`), no keys where `numkeys` allows none, `BLOCK` where the
//! command takes it. The only words here are one phrase per route kind
//! ([`route_phrase`]) and per fan-out merge ([`fan_out_phrase`]), the legend, and the
//! kinds of learned command; a route, a refusal's reason or a plan that changes changes
//! its rows by itself.
//!
//! # Changing a route
//! `tests/command_table.rs` compares README.md's table, between
//! `<!-- command-table:begin -->` and `<!-- command-table:end -->`, with
//! [`support_table`] and fails when they differ. After changing the command table, a
//! refusal's reason or `plan`, run `SLOTGATE_BLESS=1 cargo test --test command_table`:
//! it rewrites README's table in place; review the diff and commit it with the change.
//! A new [`Route`] or [`FanOut`] variant needs its phrase here; the compiler says where.
//!
//! This lives in `dispatch`, not beside the table in `command`, because it asks
//! [`plan`], and `command` imports nothing from above it.

use std::fmt::Write;

use redis_protocol::resp2::types::OwnedFrame;

use super::plan::{plan, refusal, Plan, PlanError};
use crate::command::learned::LearnedCommands;
use crate::command::{
    all, classify, Combine, CommandSpec, FanOut, FanOutNodes, KeySpec, NumKeysRule, Route,
};

/// One row of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// As a client types it, upper case: `GET`, `CLIENT KILL`.
    pub command: String,
    /// How slotgate serves it, one phrase: "by key (its slot's master)", "refused: ...".
    pub served: String,
    /// What else the examples showed: across slots, without keys, with `BLOCK`.
    pub notes: Vec<String>,
}

/// The phrase for a command whose keys in several slots are split per slot.
const SPLIT: &str = "split per slot, merged";
/// The note for a command whose keys must share a slot.
const ONE_SLOT: &str = "keys must share a slot";
/// The note for a list command whose keys in several slots are served one slot after
/// another.
const ACROSS: &str = "keys in several slots: one slot after another, not atomic (see List commands across slots above)";
/// The phrase for `WAIT` and `WAITAOF`.
const WAIT: &str = "pinned connection to the master of the client's last write, after a write there to count from (see Blocking commands above)";
/// The note for a command whose request carries a script slotgate remembers.
const SCRIPT: &str = "the script is remembered, to heal a `NOSCRIPT`";

/// How a request of `route` is served, one phrase.
pub fn route_phrase(route: Route) -> String {
    match route {
        Route::Local(_) => "answered by slotgate".into(),
        Route::Slot => "by key (its slot's master)".into(),
        Route::AnyNode => "any master".into(),
        Route::FanOut(kind) => fan_out_phrase(kind),
        Route::SlotArgument => "the master of the slot it names".into(),
        Route::Blocking => "pinned connection to its slot's master".into(),
        Route::Transaction => "slotgate's transaction handling (see Transactions above)".into(),
        Route::PubSub => "subscriptions kept by slotgate (see Pub/sub above)".into(),
        Route::Refused(reason) => refused(reason),
    }
}

/// Where a cluster-wide command goes and how the replies become one: one phrase per
/// kind of node set and per [`Combine`], from the command's [`FanOut::nodes`] and
/// [`FanOut::combine`].
pub fn fan_out_phrase(kind: FanOut) -> String {
    let nodes = match kind.nodes() {
        FanOutNodes::Masters => "every master",
        FanOutNodes::MastersAndReplicas => "every master and replica",
        FanOutNodes::MastersInTurn => "every master in turn",
    };
    let combined = match kind.combine() {
        Combine::Sum => "summed",
        Combine::Concat => "concatenated",
        Combine::AllOk => "`OK` when all say so",
        Combine::FirstNonNull => "the first key found",
        Combine::Same => "the same reply from each",
        Combine::AllOnes => "1 where all have it",
        Combine::AnyOk => "`OK` if one killed it",
        Combine::Union => "their union",
        Combine::NumSub => "subscribers per channel, slotgate's clients counted",
        Combine::NumPat => "patterns summed, slotgate's clients' patterns counted",
        Combine::SlowlogGet => "newest first, each entry naming its node",
        Combine::Tagged => "each entry naming its node",
        Combine::Texts => "each text under its node's name",
        Combine::Scan => "behind one cursor",
        Combine::LatencyHistogram => "calls summed and histograms merged per command",
        Combine::FunctionStats => "the libraries of one, the running function of any that runs one",
    };
    format!("{nodes}, {combined}")
}

fn refused(reason: &str) -> String {
    format!("refused: {reason}")
}

/// Every command and subcommand, sorted by name with subcommands after their container.
/// A container is a row only when it may be called alone (`COMMAND`).
pub fn rows() -> Vec<Row> {
    let mut specs: Vec<&'static CommandSpec> = all()
        .filter(|spec| !spec.container || spec.arity_ok(1))
        .collect();
    specs.sort_by_key(|spec| spec.name.split_once('|').unwrap_or((spec.name, "")));
    specs.into_iter().map(row).collect()
}

/// What [`classify`] and [`plan`] make of one example request.
struct Probe {
    route: Route,
    plan: Result<Plan, PlanError>,
}

impl Probe {
    /// `None` when the table refuses the request itself (the example is malformed).
    fn of(args: &[String]) -> Option<Probe> {
        let route = classify(args).ok()?.route;
        Some(Probe {
            route,
            plan: plan(args, None, 0),
        })
    }

    /// The phrase for how this request is served.
    fn served(&self) -> String {
        match &self.plan {
            Ok(Plan::Refuse { reason, .. }) => refused(reason),
            Ok(Plan::Split) => SPLIT.into(),
            Ok(Plan::Wait { .. }) => WAIT.into(),
            _ => route_phrase(self.route),
        }
    }
}

fn row(spec: &'static CommandSpec) -> Row {
    let command = spec.name.replace('|', " ").to_uppercase();
    let one = example(spec, 2, false);
    let Some(probe) = Probe::of(&one) else {
        // Only a table entry no example fits gets here; the tests below catch it.
        return Row {
            command,
            served: route_phrase(spec.route),
            notes: vec![],
        };
    };
    let mut served = probe.served();
    let mut notes = Vec::new();
    if matches!(
        probe.plan,
        Ok(Plan::Script(_)) | Ok(Plan::FanOut(FanOut::ScriptLoad))
    ) {
        notes.push(SCRIPT.to_string());
    }
    if let Some(across) = across_slots(&one) {
        match across.plan {
            Ok(Plan::Split) if probe.plan.is_ok() => served = SPLIT.into(),
            Ok(Plan::AcrossSlots) => notes.push(ACROSS.into()),
            Err(PlanError::CrossSlot) => notes.push(ONE_SLOT.into()),
            Err(e) => notes.push(format!("keys in several slots: `{e}`")),
            Ok(_) => {}
        }
    }
    if let KeySpec::NumKeys { .. } = spec.keys {
        if let Some(keyless) = Probe::of(&example(spec, 0, false)) {
            let phrase = keyless.served();
            if phrase != served {
                notes.push(format!("no keys: {phrase}"));
            }
        }
    }
    if let KeySpec::Streams { .. } = spec.keys {
        if let Some(blocking) = Probe::of(&example(spec, 1, true)) {
            notes.push(format!("with `BLOCK`: {}", blocking.served()));
        }
    }
    Row {
        command,
        served,
        notes,
    }
}

/// Every argument that is neither a key nor a number of keys: a valid integer, timeout
/// (0 waits forever), slot number, name and key. A request of fillers has its keys in
/// one slot.
const FILLER: &str = "0";
/// Keys in different slots, alternated over a request's keys.
const KEYS_APART: [&str; 2] = ["a", "b"];

/// The request `one` with its keys spread over two slots, when it has two keys.
fn across_slots(one: &[String]) -> Option<Probe> {
    let keys = classify(one).ok()?.keys;
    if keys.len() < 2 {
        return None;
    }
    let mut across = one.to_vec();
    for (n, at) in keys.iter().enumerate() {
        across[at] = KEYS_APART[n % 2].into();
    }
    Probe::of(&across)
}

/// A well-formed request for `spec` with `keys` keys where the command takes that many
/// (fewer where it takes fewer), every other argument [`FILLER`]; `block` adds `BLOCK 0`
/// to a streams read.
fn example(spec: &CommandSpec, keys: usize, block: bool) -> Vec<String> {
    let mut args: Vec<String> = spec.name.split('|').map(str::to_uppercase).collect();
    let least = spec.arity.unsigned_abs() as usize;
    let pad = |args: &mut Vec<String>, len: usize| {
        while args.len() < len {
            args.push(FILLER.into());
        }
    };
    match spec.keys {
        KeySpec::NumKeys { at, rule, .. } => {
            pad(&mut args, usize::from(at));
            args.push(keys.to_string());
            pad(&mut args, usize::from(at) + 1 + keys);
            if rule == NumKeysRule::MPop {
                // The direction after the keys (LEFT|RIGHT, MIN|MAX); any word will do.
                args.push("LEFT".into());
            }
        }
        KeySpec::Streams { group } => {
            if group {
                args.extend(["GROUP", "group", "consumer"].map(String::from));
            }
            if block {
                args.extend(["BLOCK", FILLER].map(String::from));
            }
            args.push("STREAMS".into());
            let streams = args.len();
            pad(&mut args, streams + 2 * keys.max(1));
        }
        KeySpec::None | KeySpec::Range { .. } | KeySpec::Sort | KeySpec::GeoStore { .. } => {
            pad(&mut args, least);
            // Variadic: add arguments (SORT, GEORADIUS: a STORE destination) until the
            // request has `keys` keys, if the command takes that many.
            let more: &[&str] = match spec.keys {
                KeySpec::Range { .. } if spec.arity < 0 => &[FILLER],
                KeySpec::Sort | KeySpec::GeoStore { .. } => &["STORE", FILLER],
                _ => &[],
            };
            let mut longer = args.clone();
            for _ in 0..4 {
                if more.is_empty() || key_count(&args) >= keys {
                    break;
                }
                longer.extend(more.iter().map(|a| a.to_string()));
                if key_count(&longer) > key_count(&args) {
                    args.clone_from(&longer);
                }
            }
        }
    }
    pad(&mut args, least);
    args
}

/// The keys of a well-formed request; 0 for a malformed one.
fn key_count(args: &[String]) -> usize {
    classify(args).map_or(0, |c| c.keys.len())
}

/// How commands the table does not know are served: each kind of command the cluster's
/// `COMMAND` reply may describe, as [`plan`] serves it once learned.
pub fn learned_rows() -> Vec<(&'static str, String)> {
    // [name, arity, flags, first key, last key, step], as in a `COMMAND` reply.
    let kinds: [(&str, &str, &[&str], i64); 5] = [
        ("keys at the positions it reports", "x-keyed", &[], 1),
        ("no keys", "x-keyless", &[], 0),
        ("blocking", "x-blocking", &["blocking"], 1),
        ("pub/sub", "x-pubsub", &["pubsub"], 1),
        (
            "keys that move with its arguments",
            "x-movable",
            &["movablekeys"],
            1,
        ),
    ];
    let entry = |name: &str, flags: &[&str], first: i64| {
        OwnedFrame::Array(vec![
            OwnedFrame::BulkString(name.as_bytes().to_vec()),
            OwnedFrame::Integer(-1),
            OwnedFrame::Array(
                (flags.iter())
                    .map(|f| OwnedFrame::SimpleString(f.as_bytes().to_vec()))
                    .collect(),
            ),
            OwnedFrame::Integer(first),
            OwnedFrame::Integer(-first),
            OwnedFrame::Integer(1),
        ])
    };
    let learned = LearnedCommands::from_command_reply(&OwnedFrame::Array(
        (kinds.iter())
            .map(|(_, name, flags, first)| entry(name, flags, *first))
            .collect(),
    ));
    let served = |args: &[&str]| match plan(args, Some(&learned), 0) {
        Ok(Plan::Refuse { reason, .. }) => Some(refused(reason)),
        Ok(Plan::Node(crate::backend::Target::Slot(_))) => Some(route_phrase(Route::Slot)),
        Ok(Plan::Node(_)) => Some(route_phrase(Route::AnyNode)),
        Err(PlanError::CrossSlot) => Some(ONE_SLOT.into()),
        _ => None,
    };
    (kinds.iter())
        .map(|&(kind, name, _, _)| {
            let mut how = served(&[name, FILLER]).unwrap_or_default();
            if let Some(note) = served(&[name, KEYS_APART[0], KEYS_APART[1]]) {
                if note == ONE_SLOT {
                    how = format!("{how}; {note}");
                }
            }
            (kind, how)
        })
        .collect()
}

/// The Markdown README.md carries between its command-table markers: a legend, one row
/// per command, and how commands the table does not know are served.
pub fn support_table() -> String {
    let rows = rows();
    let refused_rows = rows
        .iter()
        .filter(|r| r.served.starts_with("refused"))
        .count();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<!-- Generated from src/command/table.rs and src/dispatch/plan.rs by \
         src/dispatch/support.rs; to update: SLOTGATE_BLESS=1 cargo test --test command_table -->"
    );
    out.push('\n');
    let _ = writeln!(
        out,
        "Every command and subcommand slotgate knows ({} rows, {refused_rows} refused), and \
         how it is served:",
        rows.len()
    );
    out.push('\n');
    let legend = [
        format!(
            "**{}**: the request goes to the master of its keys' slot over a shared \
             connection; redirects are followed by slotgate.",
            route_phrase(Route::Slot)
        ),
        format!(
            "**{ONE_SLOT}**: keys in different slots get Redis Cluster's `{}`.",
            PlanError::CrossSlot
        ),
        format!(
            "**{SPLIT}**: keys are grouped by slot, one request per slot (one request when \
             they share a slot), and the replies merged into the one reply Redis gives."
        ),
        format!(
            "**{}**: no key; one master answers, the same one for all of a client's keyless \
             requests.",
            route_phrase(Route::AnyNode)
        ),
        "**every master, ...**: sent to every master (or every node), the replies merged as \
         the phrase says."
            .to_string(),
        format!(
            "**{}**: held for the client while it waits, up to its own timeout.",
            route_phrase(Route::Blocking)
        ),
        format!(
            "**{}**: slotgate replies itself; no node sees the request.",
            route_phrase(Route::Local(crate::command::Local::Ping))
        ),
        format!(
            "**refused: *reason***: the reply is `{}`.",
            refusal("NAME", "reason")
        ),
        "A container's subcommand missing here gets Redis's `ERR unknown subcommand`.".to_string(),
    ];
    for line in legend {
        let _ = writeln!(out, "- {line}");
    }
    out.push('\n');
    out.push_str("| command | how slotgate serves it | notes |\n");
    out.push_str("| --- | --- | --- |\n");
    for row in &rows {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} |",
            row.command,
            cell(&row.served),
            cell(&row.notes.join("; "))
        );
    }
    out.push('\n');
    out.push_str(
        "A command not in this table (newer than this build, or a module's) is learned from \
         the cluster's `COMMAND` reply at start-up and served by what it reports:\n\n",
    );
    for (kind, how) in learned_rows() {
        let _ = writeln!(out, "- {kind}: {}", cell(&how));
    }
    out
}

/// Text safe in a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slot::Slot;

    fn row_of(command: &str) -> Row {
        (rows().into_iter())
            .find(|r| r.command == command)
            .unwrap_or_else(|| panic!("no row for {command}"))
    }

    #[test]
    fn every_example_is_well_formed_and_planned() {
        assert_ne!(
            Slot::of_key(KEYS_APART[0].as_bytes()),
            Slot::of_key(KEYS_APART[1].as_bytes())
        );
        for spec in all().filter(|spec| !spec.container || spec.arity_ok(1)) {
            let one = example(spec, 2, false);
            if let Err(e) = classify(&one) {
                panic!("{one:?}: {}", e.message());
            }
            if let Err(e) = plan(&one, None, 0) {
                panic!("{one:?}: {e}");
            }
        }
    }

    #[test]
    fn one_row_per_command_and_subcommand_sorted() {
        let rows = rows();
        let callable = all().filter(|s| !s.container || s.arity_ok(1)).count();
        assert_eq!(rows.len(), callable);
        let names: Vec<&str> = rows.iter().map(|r| r.command.as_str()).collect();
        let position = |name| names.iter().position(|n| *n == name).unwrap();
        assert!(position("APPEND") < position("CLIENT GETNAME"));
        assert!(position("CLIENT GETNAME") < position("CLIENT KILL"));
        assert!(position("CLIENT UNPAUSE") < position("CLUSTER ADDSLOTS"));
        assert!(position("COMMAND") < position("COMMAND COUNT"));
        assert!(position("XINFO STREAM") < position("XLEN"));
    }

    #[test]
    fn the_route_says_how_a_command_is_served() {
        assert_eq!(row_of("GET").served, "by key (its slot's master)");
        assert!(row_of("GET").notes.is_empty());
        assert_eq!(row_of("TIME").served, "any master");
        assert_eq!(row_of("DBSIZE").served, "every master, summed");
        assert_eq!(
            row_of("CONFIG SET").served,
            "every master and replica, `OK` when all say so"
        );
        assert_eq!(row_of("ECHO").served, "answered by slotgate");
        assert_eq!(
            row_of("CLUSTER GETKEYSINSLOT").served,
            "the master of the slot it names"
        );
        assert_eq!(
            row_of("BLPOP").served,
            "pinned connection to its slot's master"
        );
        assert_eq!(row_of("BLPOP").notes, [ACROSS]);
        assert_eq!(row_of("BZPOPMIN").notes, [ONE_SLOT]);
        assert_eq!(
            row_of("ASKING").served,
            "refused: the proxy hides the cluster topology"
        );
        assert_eq!(row_of("COMMAND").served, "any master");
    }

    #[test]
    fn examples_across_slots_show_split_not_atomic_and_crossslot() {
        for command in ["MGET", "MSET", "DEL", "UNLINK", "EXISTS", "TOUCH"] {
            assert_eq!(row_of(command).served, SPLIT, "{command}");
        }
        let msetnx = row_of("MSETNX");
        assert_eq!(msetnx.served, "by key (its slot's master)");
        assert_eq!(msetnx.notes.len(), 1);
        assert!(msetnx.notes[0].contains("all of its keys or none"));
        for command in [
            "RENAME",
            "SMOVE",
            "SUNIONSTORE",
            "ZUNIONSTORE",
            "SORT",
            "GEORADIUS",
        ] {
            assert_eq!(row_of(command).notes, [ONE_SLOT], "{command}");
        }
        assert!(row_of("SET").notes.is_empty(), "one key");
    }

    #[test]
    fn examples_show_scripts_keyless_calls_and_block() {
        assert_eq!(
            row_of("EVAL").notes,
            [SCRIPT, ONE_SLOT, "no keys: any master"]
        );
        assert_eq!(row_of("EVALSHA").notes, [ONE_SLOT, "no keys: any master"]);
        assert_eq!(row_of("FCALL_RO").notes, [ONE_SLOT, "no keys: any master"]);
        assert_eq!(row_of("ZUNION").notes, [ONE_SLOT], "needs a key");
        assert_eq!(
            row_of("XREAD").notes,
            [
                ONE_SLOT,
                "with `BLOCK`: pinned connection to its slot's master"
            ]
        );
        assert_eq!(row_of("XREADGROUP").served, "by key (its slot's master)");
        assert_eq!(row_of("SCRIPT LOAD").notes, [SCRIPT]);
    }

    #[test]
    fn learned_commands_are_described_by_what_plan_does() {
        let learned = learned_rows();
        assert_eq!(learned.len(), 5);
        assert_eq!(
            learned[0].1,
            format!("by key (its slot's master); {ONE_SLOT}")
        );
        assert_eq!(learned[1].1, "any master");
        for (kind, how) in &learned[2..] {
            assert!(how.starts_with("refused: "), "{kind}: {how}");
        }
    }

    #[test]
    fn the_table_is_markdown_with_a_legend() {
        let table = support_table();
        assert!(table.contains("| `CLIENT PAUSE` | refused: "));
        assert!(table.contains("| `CLIENT KILL` | answered by slotgate |"));
        assert!(table.contains("| `MGET` | split per slot, merged |  |"));
        assert!(table.contains("`ERR 'NAME' is not supported: reason`"));
        for line in table.lines().filter(|l| l.starts_with("| `")) {
            assert_eq!(line.matches(" | ").count(), 2, "{line}");
        }
        assert_eq!(cell("a|b"), "a\\|b");
    }
}
