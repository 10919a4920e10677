//! The slot table: 16384 entries → the shard that serves each slot. Immutable once
//! built; a new table is built off to the side and published whole.

use std::sync::Arc;

use crate::backend::Node;
use crate::cluster::topology::Topology;
use crate::cluster::NodeAddr;
use crate::slot::{Slot, SLOT_COUNT};

const UNSERVED: u16 = u16::MAX;

/// One shard: the master the proxy sends to, and its replicas (for later use).
#[derive(Clone)]
pub struct Shard {
    pub master: Arc<Node>,
    pub replicas: Vec<NodeAddr>,
}

#[derive(Clone)]
pub struct SlotTable {
    /// Slot → index into `shards`, or `UNSERVED`.
    owner: Box<[u16]>,
    shards: Vec<Shard>,
}

impl SlotTable {
    pub fn empty() -> SlotTable {
        SlotTable {
            owner: vec![UNSERVED; SLOT_COUNT].into_boxed_slice(),
            shards: Vec::new(),
        }
    }

    /// Build from a parsed topology; `node` gives the registry's handle for an address.
    /// Slots the topology leaves uncovered keep their owner from `previous` (a node that
    /// briefly lost its view of a shard should not make those slots unroutable).
    pub fn build(
        topology: &Topology,
        previous: &SlotTable,
        mut node: impl FnMut(&NodeAddr) -> Arc<Node>,
    ) -> SlotTable {
        let mut table = SlotTable::empty();
        for info in &topology.shards {
            let index = table.shard_index(node(&info.master), &info.replicas);
            for &(start, end) in &info.slots {
                for slot in start..=end.min(SLOT_COUNT as u16 - 1) {
                    table.owner[slot as usize] = index;
                }
            }
        }
        for slot in 0..SLOT_COUNT {
            if table.owner[slot] == UNSERVED {
                if let Some(shard) = previous.shard_of(slot) {
                    let index = table.shard_index(shard.master.clone(), &shard.replicas);
                    table.owner[slot] = index;
                }
            }
        }
        table
    }

    /// Index of the shard whose master is `master`, adding it when new.
    fn shard_index(&mut self, master: Arc<Node>, replicas: &[NodeAddr]) -> u16 {
        if let Some(i) = self
            .shards
            .iter()
            .position(|s| s.master.addr == master.addr)
        {
            return i as u16;
        }
        self.shards.push(Shard {
            master,
            replicas: replicas.to_vec(),
        });
        (self.shards.len() - 1) as u16
    }

    fn shard_of(&self, slot: usize) -> Option<&Shard> {
        self.shards.get(*self.owner.get(slot)? as usize)
    }

    /// The master serving `slot`, if any.
    #[inline]
    pub fn master(&self, slot: Slot) -> Option<&Arc<Node>> {
        self.shard_of(slot.index()).map(|s| &s.master)
    }

    /// Some master for a keyless command; `hint` spreads clients over the shards.
    pub fn any_master(&self, hint: usize) -> Option<&Arc<Node>> {
        if self.shards.is_empty() {
            return None;
        }
        Some(&self.shards[hint % self.shards.len()].master)
    }

    /// A copy with one slot pointing at `node` (after `MOVED`).
    pub fn with_slot_moved(&self, slot: Slot, node: Arc<Node>) -> SlotTable {
        let mut table = self.clone();
        let index = table.shard_index(node, &[]);
        table.owner[slot.index()] = index;
        table
    }

    /// Every master the table routes to.
    pub fn masters(&self) -> impl Iterator<Item = &Arc<Node>> {
        self.shards.iter().map(|s| &s.master)
    }

    pub fn replicas(&self) -> impl Iterator<Item = &NodeAddr> {
        self.shards.iter().flat_map(|s| s.replicas.iter())
    }

    /// Number of slots with no owner.
    pub fn unserved(&self) -> usize {
        self.owner.iter().filter(|&&o| o == UNSERVED).count()
    }

    /// `(start, end, master)` runs, for `INFO` and logs.
    pub fn ranges(&self) -> Vec<(u16, u16, NodeAddr)> {
        let mut out: Vec<(u16, u16, NodeAddr)> = Vec::new();
        for slot in 0..SLOT_COUNT {
            let Some(shard) = self.shard_of(slot) else {
                continue;
            };
            match out.last_mut() {
                Some(last) if last.1 as usize + 1 == slot && last.2 == shard.master.addr => {
                    last.1 = slot as u16
                }
                _ => out.push((slot as u16, slot as u16, shard.master.addr.clone())),
            }
        }
        out
    }
}
