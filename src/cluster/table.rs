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
}

#[derive(Clone)]
pub struct SlotTable {
    /// Slot → index into `shards`, or `UNSERVED`.
    owner: Box<[u16]>,
    shards: Vec<Shard>,
    generation: u64,
}

impl SlotTable {
    pub fn empty() -> SlotTable {
        SlotTable {
            owner: vec![UNSERVED; SLOT_COUNT].into_boxed_slice(),
            shards: Vec::new(),
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Build from a parsed topology. Slots the topology leaves uncovered keep their owner
    /// from `previous` (a node that briefly lost its view of a shard should not make
    /// those slots unroutable).
    pub fn build(topology: &Topology, previous: &SlotTable) -> SlotTable {
        let mut table = SlotTable::empty();
        for info in &topology.shards {
            let index = table.shard_index(&info.master, &info.replicas);
            for &(start, end) in &info.slots {
                for slot in start..=end.min(SLOT_COUNT as u16 - 1) {
                    table.owner[slot as usize] = index;
                }
            }
        }
        for slot in 0..SLOT_COUNT {
            if table.owner[slot] == UNSERVED {
                if let Some(shard) = previous.shard_of(slot) {
                    let index = table.shard_index(&shard.master, &shard.replicas);
                    table.owner[slot] = index;
                }
            }
        }
        table
    }

    /// Index of the shard whose master is `master`, adding it when new.
    fn shard_index(&mut self, master: &NodeAddr, replicas: &[NodeAddr]) -> u16 {
        if let Some(i) = self.shards.iter().position(|s| &s.master == master) {
            return i as u16;
        }
        self.shards.push(Shard {
            master: master.clone(),
            replicas: replicas.to_vec(),
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
        let index = table.shard_index(addr, &[]);
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
