//! Requests whose keys hash to several slots (`MGET`, `MSET`, `DEL`, `UNLINK`, `EXISTS`,
//! `TOUCH`), made into one request per slot. A Redis Cluster node refuses keys of two
//! slots in one request even when it owns both, so the parts are per slot; the parts
//! for one node go out together in one write (they share the client's connection to
//! it), and their replies are merged in the client's key order ([`Merge`]).
//!
//! Pure: the client's request in, the parts and how to merge their replies out.

use std::collections::HashMap;

use bytes::Bytes;

use crate::command::Args;
use crate::dispatch::merge::Merge;
use crate::protocol::reply::encode_command;
use crate::slot::Slot;

/// A request split per slot: the parts in the order their slots first appear among the
/// keys, and how their replies become the client's one reply.
#[derive(Debug)]
pub struct Split {
    pub merge: Merge,
    pub parts: Vec<(Bytes, Slot)>,
}

/// Split a splittable request (its command is one of those above, its keys checked by
/// the command table). `MSET` keeps each key with its value; the others take every
/// argument after the name as a key. Each part names the command as the client wrote it.
pub fn split(request: &(impl Args + ?Sized)) -> Split {
    let name = request.arg(0);
    let step = if name.eq_ignore_ascii_case(b"mset") {
        2
    } else {
        1
    };
    // Per part: its slot and the argument positions of its keys (values follow them).
    let mut groups: Vec<(Slot, Vec<usize>)> = Vec::new();
    let mut by_slot: HashMap<Slot, u16> = HashMap::new();
    let mut order = Vec::with_capacity((request.argc() - 1) / step);
    for at in (1..request.argc()).step_by(step) {
        let slot = Slot::of_key(request.arg(at));
        let part = *by_slot.entry(slot).or_insert_with(|| {
            groups.push((slot, Vec::new()));
            (groups.len() - 1) as u16
        });
        groups[part as usize].1.push(at);
        order.push(part);
    }
    let parts = groups
        .into_iter()
        .map(|(slot, keys)| {
            let mut args = Vec::with_capacity(1 + keys.len() * step);
            args.push(name);
            args.extend(
                keys.into_iter()
                    .flat_map(|at| at..at + step)
                    .map(|i| request.arg(i)),
            );
            (encode_command(&args).freeze(), slot)
        })
        .collect();
    let merge = if name.eq_ignore_ascii_case(b"mget") {
        Merge::Interleave(order)
    } else if step == 2 {
        Merge::AllOk
    } else {
        Merge::Sum
    };
    Split { merge, parts }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(key: &str) -> Slot {
        Slot::of_key(key.as_bytes())
    }

    fn parts(split: &Split) -> Vec<(String, Slot)> {
        split
            .parts
            .iter()
            .map(|(b, s)| (String::from_utf8(b.to_vec()).unwrap(), *s))
            .collect()
    }

    #[test]
    fn mget_is_split_per_slot_and_merged_in_key_order() {
        assert_ne!(slot("a"), slot("b"));
        let split = split(&["MGET", "a", "b", "{a}x", "a"]);
        assert_eq!(
            parts(&split),
            vec![
                (
                    "*4\r\n$4\r\nMGET\r\n$1\r\na\r\n$4\r\n{a}x\r\n$1\r\na\r\n".to_string(),
                    slot("a")
                ),
                ("*2\r\n$4\r\nMGET\r\n$1\r\nb\r\n".to_string(), slot("b")),
            ]
        );
        assert_eq!(split.merge, Merge::Interleave(vec![0, 1, 0, 0]));
    }

    #[test]
    fn mset_keeps_each_value_with_its_key() {
        let split = split(&["mset", "a", "1", "b", "2", "{b}c", "3"]);
        assert_eq!(
            parts(&split),
            vec![
                (
                    "*3\r\n$4\r\nmset\r\n$1\r\na\r\n$1\r\n1\r\n".to_string(),
                    slot("a")
                ),
                (
                    "*5\r\n$4\r\nmset\r\n$1\r\nb\r\n$1\r\n2\r\n$4\r\n{b}c\r\n$1\r\n3\r\n"
                        .to_string(),
                    slot("b")
                ),
            ]
        );
        assert_eq!(split.merge, Merge::AllOk);
    }

    #[test]
    fn counting_commands_sum_their_parts() {
        for name in ["DEL", "unlink", "EXISTS", "touch"] {
            let split = split(&[name, "a", "b", "c"]);
            assert_eq!(split.merge, Merge::Sum, "{name}");
            let keys: usize = split
                .parts
                .iter()
                .map(|(b, _)| b.iter().filter(|&&c| c == b'$').count() - 1)
                .sum();
            assert_eq!(keys, 3, "{name}: every key in exactly one part");
        }
    }
}
