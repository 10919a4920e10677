//! The slot table: 16384 entries → the shard that serves each slot. Immutable once
//! built; a new table is built off to the side and published whole. Shared by every
//! worker thread; each worker maps shard indexes to its own connections.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::cluster::topology::Topology;
use crate::cluster::NodeAddr;
use crate::slot::{Slot, SLOT_COUNT};

const UNSERVED: u16 = u16::MAX;

/// Every table built gets a new generation, so workers can tell their cached shard →
/// connection map is stale with one integer compare.
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// One shard: the master the proxy sends to, and its replicas (for later use).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    pub master: NodeAddr,
    pub replicas: Vec<NodeAddr>,
    /// Connected replicas that do not serve yet ([`ShardInfo::loading_replicas`]).
    ///
    /// [`ShardInfo::loading_replicas`]: crate::cluster::topology::ShardInfo::loading_replicas
    pub loading_replicas: Vec<NodeAddr>,
}

impl Shard {
    /// Every replica connected to the master, serving or not: where a command meant for
    /// every node goes (`CONFIG SET`). [`Target::Replica`]'s index counts in this order.
    ///
    /// [`Target::Replica`]: crate::backend::Target::Replica
    pub fn connected_replicas(&self) -> impl Iterator<Item = &NodeAddr> {
        self.replicas.iter().chain(self.loading_replicas.iter())
    }
}

#[derive(Clone)]
pub struct SlotTable {
    /// Slot → index into `shards`, or `UNSERVED`.
    owner: Box<[u16]>,
    shards: Vec<Shard>,
    /// Slots a master is importing (a migration under way: `CLUSTER SETSLOT ...
    /// IMPORTING` on it), as `(slot, index into shards)`, sorted. The slot's owner is
    /// still the migration's source; its keys move to the importer one `MIGRATE` at a
    /// time. Learned from each master's own `CLUSTER NODES` line.
    importing: Vec<(u16, u16)>,
    generation: u64,
}

impl SlotTable {
    pub fn empty() -> SlotTable {
        SlotTable {
            owner: vec![UNSERVED; SLOT_COUNT].into_boxed_slice(),
            shards: Vec::new(),
            importing: Vec::new(),
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// This table with the slots each master in `importers` says it imports; a master
    /// the table does not route to is left out (it owns no slot yet, and a `SCAN`
    /// cannot name it).
    pub fn with_importing(mut self, importers: &[(NodeAddr, Vec<u16>)]) -> SlotTable {
        self.importing.clear();
        for (master, slots) in importers {
            let Some(shard) = self.shards.iter().position(|s| &s.master == master) else {
                continue;
            };
            for &slot in slots.iter().filter(|&&s| usize::from(s) < SLOT_COUNT) {
                self.importing.push((slot, shard as u16));
            }
        }
        self.importing.sort_unstable();
        self.importing.dedup();
        self
    }

    /// Slots being imported, as `(slot, importing shard)`; see [`SlotTable::with_importing`].
    pub fn importing(&self) -> &[(u16, u16)] {
        &self.importing
    }

    /// The shards a `SCAN` must walk again after walking every shard in order, so that a
    /// key moved during the walk is still returned: those importing a slot whose owner
    /// (the migration's source) comes after them. A key the walk did not find at the
    /// source had left it before the source was walked, so it is at the importer by the
    /// time the walk is over. Sorted, each once.
    pub fn rescans(&self) -> Vec<u16> {
        let mut shards: Vec<u16> = (self.importing.iter())
            .filter(|&&(slot, importer)| {
                let owner = self.owner[usize::from(slot)];
                owner != UNSERVED && owner > importer
            })
            .map(|&(_, importer)| importer)
            .collect();
        shards.sort_unstable();
        shards.dedup();
        shards
    }

    /// Build from a parsed topology. Slots the topology leaves uncovered keep their owner
    /// from `previous` (a node that briefly lost its view of a shard should not make
    /// those slots unroutable).
    pub fn build(topology: &Topology, previous: &SlotTable) -> SlotTable {
        let mut table = SlotTable::empty();
        for info in &topology.shards {
            let index = table.shard_index(&info.master, &info.replicas, &info.loading_replicas);
            for &(start, end) in &info.slots {
                for slot in start..=end.min(SLOT_COUNT as u16 - 1) {
                    table.owner[slot as usize] = index;
                }
            }
        }
        for slot in 0..SLOT_COUNT {
            if table.owner[slot] == UNSERVED {
                if let Some(shard) = previous.shard_of(slot) {
                    let index =
                        table.shard_index(&shard.master, &shard.replicas, &shard.loading_replicas);
                    table.owner[slot] = index;
                }
            }
        }
        table
    }

    /// Index of the shard whose master is `master`, adding it when new.
    fn shard_index(
        &mut self,
        master: &NodeAddr,
        replicas: &[NodeAddr],
        loading: &[NodeAddr],
    ) -> u16 {
        if let Some(i) = self.shards.iter().position(|s| &s.master == master) {
            return i as u16;
        }
        self.shards.push(Shard {
            master: master.clone(),
            replicas: replicas.to_vec(),
            loading_replicas: loading.to_vec(),
        });
        (self.shards.len() - 1) as u16
    }

    fn shard_of(&self, slot: usize) -> Option<&Shard> {
        self.shards.get(*self.owner.get(slot)? as usize)
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// Index (into [`SlotTable::shards`]) of the shard serving `slot`.
    #[inline]
    pub fn shard_for(&self, slot: Slot) -> Option<usize> {
        let index = self.owner[slot.index()];
        (index != UNSERVED).then_some(index as usize)
    }

    /// The master serving `slot`, if any.
    pub fn master(&self, slot: Slot) -> Option<&NodeAddr> {
        self.shard_of(slot.index()).map(|s| &s.master)
    }

    /// A copy with one slot pointing at `addr` (after `MOVED`).
    pub fn with_slot_moved(&self, slot: Slot, addr: &NodeAddr) -> SlotTable {
        let mut table = self.clone();
        table.generation = GENERATION.fetch_add(1, Ordering::Relaxed);
        let index = table.shard_index(addr, &[], &[]);
        table.owner[slot.index()] = index;
        table
    }

    /// Every master the table routes to.
    pub fn masters(&self) -> impl Iterator<Item = &NodeAddr> {
        self.shards.iter().map(|s| &s.master)
    }

    pub fn replicas(&self) -> impl Iterator<Item = &NodeAddr> {
        self.shards.iter().flat_map(|s| s.replicas.iter())
    }

    /// Number of slots with no owner.
    pub fn unserved(&self) -> usize {
        self.owner.iter().filter(|&&o| o == UNSERVED).count()
    }

    /// `(start, end, master)` runs, for logs and comparisons.
    pub fn ranges(&self) -> Vec<(u16, u16, NodeAddr)> {
        let mut out: Vec<(u16, u16, NodeAddr)> = Vec::new();
        for slot in 0..SLOT_COUNT {
            let Some(shard) = self.shard_of(slot) else {
                continue;
            };
            match out.last_mut() {
                Some(last) if last.1 as usize + 1 == slot && last.2 == shard.master => {
                    last.1 = slot as u16
                }
                _ => out.push((slot as u16, slot as u16, shard.master.clone())),
            }
        }
        out
    }
}

/// Slots that changed owner between two tables: every run from one old owner to one new
/// owner (`None`: unserved), for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerChange {
    pub from: Option<NodeAddr>,
    pub to: Option<NodeAddr>,
    /// Inclusive ranges, sorted.
    pub slots: Vec<(u16, u16)>,
}

impl SlotTable {
    /// What changed owner from `self` to `newer`: one entry per (old owner, new owner)
    /// pair, in the order of their first slot.
    pub fn owner_changes(&self, newer: &SlotTable) -> Vec<OwnerChange> {
        let mut changes: Vec<OwnerChange> = Vec::new();
        for slot in 0..SLOT_COUNT {
            let from = self.shard_of(slot).map(|s| &s.master);
            let to = newer.shard_of(slot).map(|s| &s.master);
            if from == to {
                continue;
            }
            let slot = slot as u16;
            let same = |c: &OwnerChange| c.from.as_ref() == from && c.to.as_ref() == to;
            match changes.iter_mut().find(|c| same(c)) {
                Some(change) => match change.slots.last_mut() {
                    Some(last) if last.1 + 1 == slot => last.1 = slot,
                    _ => change.slots.push((slot, slot)),
                },
                None => changes.push(OwnerChange {
                    from: from.cloned(),
                    to: to.cloned(),
                    slots: vec![(slot, slot)],
                }),
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::topology::ShardInfo;

    fn node(text: &str) -> NodeAddr {
        NodeAddr::parse(text).unwrap()
    }

    fn slot(n: u16) -> Slot {
        Slot::new(n).unwrap()
    }

    fn shard(master: &str, replica: &str, slots: &[(u16, u16)]) -> ShardInfo {
        ShardInfo {
            slots: slots.to_vec(),
            master: node(master),
            master_id: None,
            replicas: vec![node(replica)],
            loading_replicas: vec![],
        }
    }

    /// Three masters over the whole range, as a fresh cluster has them.
    fn three_shards() -> Topology {
        Topology {
            shards: vec![
                shard("10.0.0.1:7000", "10.0.0.4:7003", &[(0, 5460)]),
                shard("10.0.0.2:7001", "10.0.0.5:7004", &[(5461, 10922)]),
                shard("10.0.0.3:7002", "10.0.0.6:7005", &[(10923, 16383)]),
            ],
        }
    }

    #[test]
    fn build_routes_each_slot_to_its_master() {
        let table = SlotTable::build(&three_shards(), &SlotTable::empty());
        assert_eq!(table.unserved(), 0);
        assert_eq!(table.master(slot(0)), Some(&node("10.0.0.1:7000")));
        assert_eq!(table.master(slot(5461)), Some(&node("10.0.0.2:7001")));
        assert_eq!(table.master(slot(16383)), Some(&node("10.0.0.3:7002")));
        assert_eq!(SlotTable::empty().unserved(), SLOT_COUNT);
        assert_eq!(SlotTable::empty().master(slot(0)), None);
    }

    #[test]
    fn slots_a_new_topology_leaves_uncovered_keep_their_previous_owner() {
        let previous = SlotTable::build(&three_shards(), &SlotTable::empty());
        // The node asked lost its view of the third shard, and moved slot 0 to the second.
        let partial = Topology {
            shards: vec![
                shard("10.0.0.1:7000", "10.0.0.4:7003", &[(1, 5460)]),
                shard("10.0.0.2:7001", "10.0.0.5:7004", &[(0, 0), (5461, 10922)]),
            ],
        };
        let table = SlotTable::build(&partial, &previous);
        assert_eq!(table.unserved(), 0);
        assert_eq!(table.master(slot(10923)), Some(&node("10.0.0.3:7002")));
        assert_eq!(table.master(slot(16383)), Some(&node("10.0.0.3:7002")));
        // What the new topology covers, it decides.
        assert_eq!(table.master(slot(0)), Some(&node("10.0.0.2:7001")));
        // The kept shard keeps its replicas.
        assert!(table.replicas().any(|r| *r == node("10.0.0.6:7005")));
        assert_ne!(table.generation(), previous.generation());
        // With no previous owner an uncovered slot stays unserved.
        let alone = SlotTable::build(&partial, &SlotTable::empty());
        assert_eq!(alone.master(slot(10923)), None);
        assert_eq!(alone.unserved(), 16383 - 10923 + 1);
    }

    #[test]
    fn a_scan_walks_again_the_importers_of_slots_owned_further_on() {
        let table = SlotTable::build(&three_shards(), &SlotTable::empty());
        assert!(table.rescans().is_empty());
        let (first, second, third) = (
            node("10.0.0.1:7000"),
            node("10.0.0.2:7001"),
            node("10.0.0.3:7002"),
        );
        let table = table.with_importing(&[
            // Slot 16000 moves from the third to the first: walk the first again.
            (first.clone(), vec![16000]),
            // Slot 10 moves from the first to the third: the walk meets the third
            // after the first, nothing to walk again.
            (third, vec![10]),
            // A master the table does not know, and a slot out of range: ignored.
            (node("10.0.0.9:7009"), vec![1]),
            (second.clone(), vec![20000]),
        ]);
        assert_eq!(table.importing(), [(10, 2), (16000, 0)]);
        assert_eq!(table.rescans(), [0]);
        let both = table
            .clone()
            .with_importing(&[(first, vec![16000, 16001, 6000]), (second, vec![16002])]);
        assert_eq!(both.rescans(), [0, 1]);
        assert!(both.with_importing(&[]).importing().is_empty());
    }

    #[test]
    fn with_slot_moved_points_one_slot_elsewhere() {
        let table = SlotTable::build(&three_shards(), &SlotTable::empty());
        // To a master the table knows: no new shard.
        let moved = table.with_slot_moved(slot(100), &node("10.0.0.2:7001"));
        assert_eq!(moved.master(slot(100)), Some(&node("10.0.0.2:7001")));
        assert_eq!(moved.master(slot(99)), Some(&node("10.0.0.1:7000")));
        assert_eq!(moved.master(slot(101)), Some(&node("10.0.0.1:7000")));
        assert_eq!(moved.shards().len(), 3);
        assert_ne!(moved.generation(), table.generation());
        // The original is unchanged (it may still be published).
        assert_eq!(table.master(slot(100)), Some(&node("10.0.0.1:7000")));
        // To a master it does not know: a new shard, with no replicas known yet.
        let moved = moved.with_slot_moved(slot(16383), &node("10.0.0.9:7009"));
        assert_eq!(moved.master(slot(16383)), Some(&node("10.0.0.9:7009")));
        assert_eq!(moved.shards().len(), 4);
        assert!(moved.shards()[3].replicas.is_empty());
        assert_eq!(
            moved.ranges(),
            vec![
                (0, 99, node("10.0.0.1:7000")),
                (100, 100, node("10.0.0.2:7001")),
                (101, 5460, node("10.0.0.1:7000")),
                (5461, 10922, node("10.0.0.2:7001")),
                (10923, 16382, node("10.0.0.3:7002")),
                (16383, 16383, node("10.0.0.9:7009")),
            ]
        );
        // An unserved slot can be pointed somewhere too.
        let empty = SlotTable::empty().with_slot_moved(slot(7), &node("10.0.0.1:7000"));
        assert_eq!(empty.master(slot(7)), Some(&node("10.0.0.1:7000")));
        assert_eq!(empty.unserved(), SLOT_COUNT - 1);
    }

    #[test]
    fn owner_changes_group_runs_by_old_and_new_owner() {
        let before = SlotTable::build(&three_shards(), &SlotTable::empty());
        assert!(before.owner_changes(&before).is_empty());
        // Slots 0-9 and 20 move to the second master; the third shard fails over.
        let after = before
            .with_slot_moved(slot(20), &node("10.0.0.2:7001"))
            .with_slot_moved(slot(5), &node("10.0.0.2:7001"));
        let mut topology = three_shards();
        topology.shards[0].slots = vec![(10, 19), (21, 5460)];
        topology.shards[1].slots = vec![(0, 9), (20, 20), (5461, 10922)];
        topology.shards[2].master = node("10.0.0.6:7005");
        let after = SlotTable::build(&topology, &after);
        assert_eq!(
            before.owner_changes(&after),
            vec![
                OwnerChange {
                    from: Some(node("10.0.0.1:7000")),
                    to: Some(node("10.0.0.2:7001")),
                    slots: vec![(0, 9), (20, 20)],
                },
                OwnerChange {
                    from: Some(node("10.0.0.3:7002")),
                    to: Some(node("10.0.0.6:7005")),
                    slots: vec![(10923, 16383)],
                },
            ]
        );
        // From and to nothing.
        let changes = SlotTable::empty().owner_changes(&before);
        assert_eq!(changes.len(), 3);
        assert_eq!(changes[0].from, None);
        assert_eq!(changes[0].slots, vec![(0, 5460)]);
        let gone = before.owner_changes(&SlotTable::empty());
        assert_eq!(gone[2].to, None);
    }
}
