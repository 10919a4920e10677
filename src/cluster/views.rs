//! Several nodes' views of the cluster → the one topology the slot table is built from
//! (pure). One node can be wrong: partitioned from the others, stopped and resumed,
//! or simply behind on gossip, it still answers `CLUSTER SHARDS` with what it last
//! knew. Asking one node and trusting it lets that node flap the table; so the
//! refresher asks several and each slot follows the claim with the highest config
//! epoch, which is how Redis Cluster itself settles two nodes claiming one slot (the
//! claim with the greater epoch wins: a promoted replica and a migration's target both
//! bump theirs). Equal epochs (or epochs not known) go to the owner more views agree
//! on, then to the view asked first.

use std::collections::HashMap;

use crate::cluster::topology::{ShardInfo, Topology};
use crate::cluster::NodeAddr;
use crate::slot::SLOT_COUNT;

/// One node's view: its shards (from `CLUSTER SHARDS` or `CLUSTER SLOTS`) and the
/// config epoch it knows for each node id (from `CLUSTER NODES`; empty when not known).
#[derive(Clone, Debug, Default)]
pub struct View {
    /// The node asked.
    pub from: Option<NodeAddr>,
    pub topology: Topology,
    pub epochs: HashMap<String, u64>,
}

impl View {
    /// The config epoch this view knows for the shard's master (0 when unknown).
    fn epoch_of(&self, shard: &ShardInfo) -> u64 {
        shard
            .master_id
            .as_deref()
            .and_then(|id| self.epochs.get(id))
            .copied()
            .unwrap_or(0)
    }

    /// `(start, end, shard index)` of every range this view assigns, sorted by start
    /// and disjoint. A view whose ranges overlap (no healthy node sends one; the fuzzer
    /// built one) gives each slot to the range that starts first: a range inside an
    /// earlier one is dropped and one reaching past it keeps only its tail, so every slot
    /// the view covers keeps exactly one claim.
    fn ranges(&self) -> Vec<(u16, u16, usize)> {
        let mut ranges: Vec<(u16, u16, usize)> = self
            .topology
            .shards
            .iter()
            .enumerate()
            .flat_map(|(i, shard)| shard.slots.iter().map(move |&(a, b)| (a, b, i)))
            .filter(|&(a, b, _)| a <= b)
            .collect();
        ranges.sort_unstable();
        let mut disjoint: Vec<(u16, u16, usize)> = Vec::with_capacity(ranges.len());
        for (a, b, shard) in ranges {
            let start = match disjoint.last() {
                Some(&(_, end, _)) if end >= b => continue,
                Some(&(_, end, _)) => a.max(end + 1),
                None => a,
            };
            disjoint.push((start, b, shard));
        }
        disjoint
    }
}

/// One view's claim on a run of slots.
#[derive(Clone, Copy)]
struct Claim {
    view: usize,
    shard: usize,
    epoch: u64,
}

/// The topology the views agree on: each run of slots goes to the master claiming it
/// with the highest config epoch; equal epochs to the master most views name, then to
/// the earliest view naming one of them. A master's id and replicas come from the view
/// whose claim won its first run. Slots no view covers stay uncovered.
pub fn merge(views: &[View]) -> Topology {
    let ranges: Vec<Vec<(u16, u16, usize)>> = views.iter().map(View::ranges).collect();
    // Every point where some view's claim may change.
    let mut cuts: Vec<u32> = ranges
        .iter()
        .flatten()
        .flat_map(|&(a, b, _)| [u32::from(a), u32::from(b) + 1])
        .filter(|&cut| cut <= SLOT_COUNT as u32)
        .collect();
    cuts.sort_unstable();
    cuts.dedup();

    let mut out: Vec<ShardInfo> = Vec::new();
    for pair in cuts.windows(2) {
        let (start, end) = (pair[0] as u16, (pair[1] - 1) as u16);
        let claims: Vec<Claim> = views
            .iter()
            .zip(&ranges)
            .enumerate()
            .filter_map(|(view, (v, r))| {
                let shard = claim_at(r, start)?;
                Some(Claim {
                    view,
                    shard,
                    epoch: v.epoch_of(&v.topology.shards[shard]),
                })
            })
            .collect();
        let Some(winner) = strongest(views, &claims) else {
            continue;
        };
        let shard = &views[winner.view].topology.shards[winner.shard];
        match out.iter_mut().find(|s| s.master == shard.master) {
            Some(known) => known.slots.push((start, end)),
            None => out.push(ShardInfo {
                slots: vec![(start, end)],
                ..shard.clone()
            }),
        }
    }
    for shard in &mut out {
        shard.slots = coalesce(&shard.slots);
    }
    out.sort_by_key(|shard| shard.slots.first().copied());
    Topology { shards: out }
}

/// The shard a view's sorted ranges assign `slot` to.
fn claim_at(ranges: &[(u16, u16, usize)], slot: u16) -> Option<usize> {
    let after = ranges.partition_point(|&(a, _, _)| a <= slot);
    let &(_, end, shard) = ranges.get(after.checked_sub(1)?)?;
    (slot <= end).then_some(shard)
}

/// The winning claim: highest epoch, then most views naming the same master, then the
/// earliest view.
fn strongest(views: &[View], claims: &[Claim]) -> Option<Claim> {
    let master = |c: &Claim| &views[c.view].topology.shards[c.shard].master;
    let top = claims.iter().map(|c| c.epoch).max()?;
    let contenders: Vec<&Claim> = claims.iter().filter(|c| c.epoch == top).collect();
    let votes = |c: &Claim| contenders.iter().filter(|o| master(o) == master(c)).count();
    let most = contenders.iter().map(|c| votes(c)).max()?;
    contenders.iter().find(|c| votes(c) == most).map(|c| **c)
}

/// Sorted ranges with touching neighbours joined: `[(0, 9), (10, 20)]` → `[(0, 20)]`.
fn coalesce(ranges: &[(u16, u16)]) -> Vec<(u16, u16)> {
    let mut sorted = ranges.to_vec();
    sorted.sort_unstable();
    let mut out: Vec<(u16, u16)> = Vec::with_capacity(sorted.len());
    for (a, b) in sorted {
        match out.last_mut() {
            Some(last) if u32::from(last.1) + 1 >= u32::from(a) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// Node id → config epoch from a `CLUSTER NODES` reply: one line per node,
/// `<id> <addr> <flags> <master> <ping-sent> <pong-recv> <config-epoch> <link> ...`.
/// Lines that do not parse are skipped.
pub fn parse_config_epochs(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let id = fields.next()?;
            let epoch = fields.nth(5)?.parse().ok()?;
            Some((id.to_string(), epoch))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(port: u16) -> NodeAddr {
        NodeAddr::new("127.0.0.1", port)
    }

    fn shard(port: u16, slots: &[(u16, u16)], replicas: &[u16]) -> ShardInfo {
        ShardInfo {
            slots: slots.to_vec(),
            master: node(port),
            master_id: Some(format!("id-{port}")),
            replicas: replicas.iter().map(|&p| node(p)).collect(),
            loading_replicas: Vec::new(),
        }
    }

    /// A view from `from` with these shards and `(port, epoch)` config epochs.
    fn view(from: u16, shards: Vec<ShardInfo>, epochs: &[(u16, u64)]) -> View {
        View {
            from: Some(node(from)),
            topology: Topology { shards },
            epochs: epochs
                .iter()
                .map(|&(port, epoch)| (format!("id-{port}"), epoch))
                .collect(),
        }
    }

    /// 7001 owns 0-5460 (replica 7004), 7002 5461-10922, 7003 the rest.
    fn healthy(from: u16, epochs: &[(u16, u64)]) -> View {
        view(
            from,
            vec![
                shard(7001, &[(0, 5460)], &[7004]),
                shard(7002, &[(5461, 10922)], &[7005]),
                shard(7003, &[(10923, 16383)], &[7006]),
            ],
            epochs,
        )
    }

    /// The same cluster after 7004 took over 7001's slots with epoch 7.
    fn failed_over(from: u16) -> View {
        view(
            from,
            vec![
                shard(7004, &[(0, 5460)], &[]),
                shard(7002, &[(5461, 10922)], &[7005]),
                shard(7003, &[(10923, 16383)], &[7006]),
            ],
            &[(7001, 1), (7002, 2), (7003, 3), (7004, 7)],
        )
    }

    fn owner(topology: &Topology, slot: u16) -> Option<u16> {
        topology
            .shards
            .iter()
            .find(|s| s.slots.iter().any(|&(a, b)| a <= slot && slot <= b))
            .map(|s| {
                s.master
                    .as_str()
                    .rsplit_once(':')
                    .unwrap()
                    .1
                    .parse()
                    .unwrap()
            })
    }

    #[test]
    fn a_partitioned_master_asked_first_does_not_outvote_its_promoted_replica() {
        // 7001, cut off, still claims its slots with its old epoch.
        let stale = healthy(7001, &[(7001, 1), (7002, 2), (7003, 3)]);
        let merged = merge(&[stale, failed_over(7002), failed_over(7003)]);
        assert_eq!(owner(&merged, 0), Some(7004));
        assert_eq!(owner(&merged, 5460), Some(7004));
        assert_eq!(owner(&merged, 5461), Some(7002));
        assert!(merged.covers_all());
        // The winner's view supplies the shard: 7004 has no replica yet.
        assert_eq!(merged.shards[0].slots, vec![(0, 5460)]);
        assert!(merged.shards[0].replicas.is_empty());
        // One fresh view is enough, whatever the order.
        let stale = healthy(7001, &[(7001, 1), (7002, 2), (7003, 3)]);
        let merged = merge(&[failed_over(7002), stale]);
        assert_eq!(owner(&merged, 0), Some(7004));
    }

    #[test]
    fn a_migrated_slot_follows_the_target_even_when_one_view_knows_it() {
        // Slot 100 moved to 7002, which bumped its epoch to 9; two nodes missed it.
        let behind = || healthy(7003, &[(7001, 5), (7002, 2), (7003, 3)]);
        let knows = view(
            7002,
            vec![
                shard(7001, &[(0, 99), (101, 5460)], &[7004]),
                shard(7002, &[(100, 100), (5461, 10922)], &[7005]),
                shard(7003, &[(10923, 16383)], &[7006]),
            ],
            &[(7001, 5), (7002, 9), (7003, 3)],
        );
        let merged = merge(&[behind(), behind(), knows]);
        assert_eq!(owner(&merged, 99), Some(7001));
        assert_eq!(owner(&merged, 100), Some(7002));
        assert_eq!(owner(&merged, 101), Some(7001));
        let by_7002 = merged
            .shards
            .iter()
            .find(|s| s.master == node(7002))
            .unwrap();
        assert_eq!(by_7002.slots, vec![(100, 100), (5461, 10922)]);
        assert_eq!(by_7002.replicas, vec![node(7005)]);
    }

    #[test]
    fn equal_epochs_go_to_the_majority_then_to_the_first_view() {
        let a = || view(1, vec![shard(7001, &[(0, 16383)], &[])], &[]);
        let b = || view(2, vec![shard(7002, &[(0, 16383)], &[])], &[]);
        assert_eq!(owner(&merge(&[a(), b(), b()]), 0), Some(7002));
        assert_eq!(owner(&merge(&[b(), a(), a()]), 0), Some(7001));
        assert_eq!(owner(&merge(&[a(), b()]), 0), Some(7001));
        assert_eq!(owner(&merge(&[b(), a()]), 0), Some(7002));
    }

    #[test]
    fn views_that_each_miss_a_shard_cover_the_cluster_together() {
        // A view drops a shard whose master it saw fail; another still has it.
        let epochs = [(7001, 1), (7002, 2), (7003, 3)];
        let without_first = view(
            7002,
            vec![
                shard(7002, &[(5461, 10922)], &[]),
                shard(7003, &[(10923, 16383)], &[]),
            ],
            &epochs,
        );
        let without_last = view(
            7003,
            vec![
                shard(7001, &[(0, 5460)], &[]),
                shard(7002, &[(5461, 10922)], &[]),
            ],
            &epochs,
        );
        let merged = merge(&[without_first, without_last.clone()]);
        assert!(merged.covers_all());
        assert_eq!(owner(&merged, 0), Some(7001));
        assert_eq!(owner(&merged, 16383), Some(7003));
        // Alone, a partial view leaves its gap uncovered.
        assert_eq!(merge(&[without_last]).uncovered(), vec![(10923, 16383)]);
        assert_eq!(merge(&[]), Topology::default());
    }

    #[test]
    fn overlapping_ranges_in_one_view_keep_every_slot_claimed() {
        let epochs = [(7001, 1), (7002, 1)];
        let overlapping = view(
            1,
            vec![
                shard(7001, &[(0, 16383), (100, 200)], &[]),
                shard(7002, &[(50, 300), (12000, 12100)], &[]),
            ],
            &epochs,
        );
        let merged = merge(&[overlapping]);
        assert_eq!(merged.uncovered(), vec![]);
        let slots: u32 = (merged.shards.iter())
            .flat_map(|s| &s.slots)
            .map(|&(a, b)| u32::from(b - a) + 1)
            .sum();
        assert_eq!(slots, 16384, "each slot claimed once");
    }

    #[test]
    fn ranges_split_by_other_views_are_joined_again() {
        let epochs = [(7001, 1), (7002, 2)];
        let coarse = view(1, vec![shard(7001, &[(0, 16383)], &[])], &epochs);
        let fine = view(
            2,
            vec![shard(7001, &[(0, 99), (100, 199), (200, 16383)], &[])],
            &epochs,
        );
        let merged = merge(&[coarse, fine]);
        assert_eq!(merged.shards.len(), 1);
        assert_eq!(merged.shards[0].slots, vec![(0, 16383)]);
    }

    #[test]
    fn config_epochs_from_cluster_nodes() {
        let text = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,node-4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 [5461->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
garbage
";
        let epochs = parse_config_epochs(text);
        assert_eq!(epochs.len(), 3);
        assert_eq!(epochs["07c37dfeb235213a872192d90877d0cd55635b91"], 4);
        assert_eq!(epochs["67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1"], 2);
        assert_eq!(epochs["e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca"], 1);
    }

    #[test]
    fn claim_lookup_in_sorted_ranges() {
        let ranges = [(0, 9, 0), (20, 29, 1)];
        assert_eq!(claim_at(&ranges, 0), Some(0));
        assert_eq!(claim_at(&ranges, 9), Some(0));
        assert_eq!(claim_at(&ranges, 10), None);
        assert_eq!(claim_at(&ranges, 25), Some(1));
        assert_eq!(claim_at(&ranges, 30), None);
        assert_eq!(claim_at(&[], 0), None);
    }
}
