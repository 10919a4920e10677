//! Case-insensitive name → spec lookup through an open-addressing hash index built at
//! compile time. The hash folds ASCII case as it goes, so a request's name is neither
//! copied nor case-converted, and a subcommand's hash continues from its container's
//! (`client` + `|` + `setname`).

use super::table::{COMMANDS, SUBCOMMANDS};
use super::CommandSpec;

const INDEX_BITS: u32 = 10;
const INDEX_LEN: usize = 1 << INDEX_BITS;
const INDEX_MASK: usize = INDEX_LEN - 1;

/// Slot → 1 + position in `COMMANDS` followed by `SUBCOMMANDS`; 0 is empty.
static INDEX: [u16; INDEX_LEN] = build_index();

/// Longest name in the table; longer names are unknown without hashing.
const MAX_NAME_LEN: usize = max_name_len();

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

/// FNV-1a over the lower-cased bytes, continuing from `hash`.
#[inline]
const fn hash_more(mut hash: u32, bytes: &[u8]) -> u32 {
    let mut i = 0;
    while i < bytes.len() {
        hash = (hash ^ bytes[i].to_ascii_lowercase() as u32).wrapping_mul(FNV_PRIME);
        i += 1;
    }
    hash
}

/// Index slot of a hash: its top bits after a Fibonacci multiply.
#[inline]
const fn slot_of(hash: u32) -> usize {
    (hash.wrapping_mul(0x9e37_79b1) >> (32 - INDEX_BITS)) as usize
}

const fn spec_at(i: usize) -> &'static CommandSpec {
    if i < COMMANDS.len() {
        &COMMANDS[i]
    } else {
        &SUBCOMMANDS[i - COMMANDS.len()]
    }
}

const fn build_index() -> [u16; INDEX_LEN] {
    let total = COMMANDS.len() + SUBCOMMANDS.len();
    // Keep the load factor at or under one half so probe chains stay short.
    assert!(
        total * 2 <= INDEX_LEN,
        "command index too small for the table"
    );
    assert!(total < u16::MAX as usize);
    let mut index = [0u16; INDEX_LEN];
    let mut i = 0;
    while i < total {
        let mut slot = slot_of(hash_more(FNV_OFFSET, spec_at(i).name.as_bytes()));
        while index[slot] != 0 {
            slot = (slot + 1) & INDEX_MASK;
        }
        index[slot] = (i + 1) as u16;
        i += 1;
    }
    index
}

const fn max_name_len() -> usize {
    let total = COMMANDS.len() + SUBCOMMANDS.len();
    let mut max = 0;
    let mut i = 0;
    while i < total {
        let len = spec_at(i).name.len();
        if len > max {
            max = len;
        }
        i += 1;
    }
    max
}

/// Probes from `hash` for the first entry within `range` that `matches`: its position
/// in `COMMANDS` followed by `SUBCOMMANDS`.
#[inline(always)]
fn probe(
    hash: u32,
    range: core::ops::Range<usize>,
    matches: impl Fn(&CommandSpec) -> bool,
) -> Option<usize> {
    let mut slot = slot_of(hash);
    loop {
        let entry = INDEX[slot] as usize;
        if entry == 0 {
            return None;
        }
        let i = entry - 1;
        if range.contains(&i) && matches(spec_at(i)) {
            return Some(i);
        }
        slot = (slot + 1) & INDEX_MASK;
    }
}

/// A top-level command by the name a client sent (never a subcommand, so `client|setname`
/// as a command name is unknown, as in Redis). Always inlined, with
/// [`command_position`]: it is on every request's path (`classify`), and its other
/// callers (`position`) would otherwise make it a call of its own.
#[inline(always)]
pub(super) fn command(name: &[u8]) -> Option<&'static CommandSpec> {
    command_position(name).map(spec_at)
}

/// A container's subcommand by the name a client sent.
#[inline]
pub(super) fn subcommand(container: &CommandSpec, sub: &[u8]) -> Option<&'static CommandSpec> {
    subcommand_position(container, sub).map(spec_at)
}

/// Any spec by its full name (`get`, `client|setname`).
#[inline]
pub(super) fn any(name: &[u8]) -> Option<&'static CommandSpec> {
    if name.len() > MAX_NAME_LEN {
        return None;
    }
    let total = COMMANDS.len() + SUBCOMMANDS.len();
    probe(hash_more(FNV_OFFSET, name), 0..total, |spec| {
        spec.name.as_bytes().eq_ignore_ascii_case(name)
    })
    .map(spec_at)
}

/// The spec at `position` (in `COMMANDS` followed by `SUBCOMMANDS`).
pub(super) fn at(position: usize) -> Option<&'static CommandSpec> {
    (position < COMMANDS.len() + SUBCOMMANDS.len()).then(|| spec_at(position))
}

/// [`command`]'s position.
#[inline(always)]
pub(super) fn command_position(name: &[u8]) -> Option<usize> {
    if name.len() > MAX_NAME_LEN {
        return None;
    }
    probe(hash_more(FNV_OFFSET, name), 0..COMMANDS.len(), |spec| {
        spec.name.as_bytes().eq_ignore_ascii_case(name)
    })
}

/// [`subcommand`]'s position.
#[inline]
pub(super) fn subcommand_position(container: &CommandSpec, sub: &[u8]) -> Option<usize> {
    let prefix = container.name.len() + 1;
    if prefix + sub.len() > MAX_NAME_LEN {
        return None;
    }
    let hash = hash_more(
        hash_more(hash_more(FNV_OFFSET, container.name.as_bytes()), b"|"),
        sub,
    );
    let total = COMMANDS.len() + SUBCOMMANDS.len();
    probe(hash, COMMANDS.len()..total, |spec| {
        let full = spec.name.as_bytes();
        full.len() == prefix + sub.len()
            && full[prefix..].eq_ignore_ascii_case(sub)
            && full[..prefix - 1] == *container.name.as_bytes()
            && full[prefix - 1] == b'|'
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spec_is_found_by_its_name_in_any_case() {
        for spec in COMMANDS.iter().chain(SUBCOMMANDS.iter()) {
            let upper = spec.name.to_ascii_uppercase();
            assert_eq!(any(spec.name.as_bytes()).map(|s| s.name), Some(spec.name));
            assert_eq!(any(upper.as_bytes()).map(|s| s.name), Some(spec.name));
        }
    }

    #[test]
    fn top_level_lookup_skips_subcommands() {
        assert_eq!(command(b"GeT").map(|s| s.name), Some("get"));
        assert!(command(b"client|setname").is_none());
        assert!(command(b"").is_none());
        assert!(command(b"getx").is_none());
        assert!(command(&[b'a'; 300]).is_none());
    }

    #[test]
    fn subcommand_lookup_is_per_container() {
        let client = command(b"client").unwrap();
        let object = command(b"object").unwrap();
        assert_eq!(
            subcommand(client, b"SetName").map(|s| s.name),
            Some("client|setname")
        );
        assert!(subcommand(object, b"setname").is_none());
        assert!(subcommand(client, b"").is_none());
        assert!(subcommand(client, b"setname|x").is_none());
    }

    #[test]
    fn a_requests_position_names_its_command_or_subcommand() {
        let name = |args: &[&str]| {
            crate::command::position(args)
                .and_then(crate::command::at_position)
                .map(|s| s.name)
        };
        assert_eq!(name(&["GET", "k"]), Some("get"));
        assert_eq!(
            name(&["client", "LIST", "TYPE", "normal"]),
            Some("client|list")
        );
        assert_eq!(
            name(&["CLIENT", "nope"]),
            Some("client"),
            "an unknown subcommand"
        );
        assert_eq!(name(&["CLIENT"]), Some("client"));
        assert_eq!(name(&["nosuchcommand"]), None);
        assert_eq!(name(&[]), None);
        assert!(crate::command::at_position(u16::MAX).is_none());
    }

    #[test]
    fn probe_chains_are_short() {
        // Not a timing assertion: a bound on the work a lookup can do.
        let mut longest = 0;
        for spec in COMMANDS.iter().chain(SUBCOMMANDS.iter()) {
            let mut slot = slot_of(hash_more(FNV_OFFSET, spec.name.as_bytes()));
            let mut steps = 1;
            while spec_at(INDEX[slot] as usize - 1).name != spec.name {
                slot = (slot + 1) & INDEX_MASK;
                steps += 1;
            }
            longest = longest.max(steps);
        }
        assert!(longest <= 8, "longest probe chain is {longest}");
    }
}
