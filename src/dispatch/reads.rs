//! Where a read goes when its client reads from replicas (`read_from`, or `READONLY`):
//! [`pick`] chooses among a shard's master and its replicas from what is known of each
//! ([`Candidate`]). Pure; the worker ([`super::Worker`]) gathers the candidates from the
//! slot table and the node registry, only for such reads.
//!
//! - `replica` and `prefer-replica`: a usable replica, the same one for a client as
//!   long as the shard's usable replicas stay the same (picked by the client's number,
//!   so one client's reads do not go back in time by hopping between replicas that
//!   are behind by different amounts); the master when the shard has none.
//! - `nearest`: the node with the lowest smoothed round trip among the master and the
//!   usable replicas; a node not measured yet is not chosen over one that is, and the
//!   master wins ties and the case where nothing is measured.
//!
//! A replica is usable when the slot table lists it as serving (not `loading`, not
//! `fail`), no connect to it failed moments ago, the replica poller found it fit
//! (answering, not flagged failing, link up) and within the lag limit.

use crate::config::ReadFrom;

/// What the choice needs to know of one node of the shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// May serve reads now (for the master: reachable).
    pub usable: bool,
    /// Smoothed round trip in microseconds; 0: not measured.
    pub rtt_us: u64,
}

/// The node a read goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    Master,
    /// The replica at this index among the shard's replicas.
    Replica(usize),
}

/// Choose the node for a read under `mode` among the shard's `master` and its `count`
/// replicas (`replica(i)` describes the `i`-th), `spread` being the client's number.
/// Allocates nothing: the replicas are looked at through `replica`, twice at most.
pub fn pick(
    mode: ReadFrom,
    master: Candidate,
    count: usize,
    replica: impl Fn(usize) -> Candidate,
    spread: u32,
) -> Pick {
    match mode {
        ReadFrom::Master => Pick::Master,
        ReadFrom::Replica | ReadFrom::PreferReplica => {
            let usable = (0..count).filter(|&i| replica(i).usable).count();
            if usable == 0 {
                return Pick::Master;
            }
            let nth = spread as usize % usable;
            (0..count)
                .filter(|&i| replica(i).usable)
                .nth(nth)
                .map_or(Pick::Master, Pick::Replica)
        }
        ReadFrom::Nearest => {
            // (round trip, pick): unmeasured nodes sort after every measured one.
            let key = |c: Candidate| if c.rtt_us == 0 { u64::MAX } else { c.rtt_us };
            let mut best = (key(master), Pick::Master);
            for i in 0..count {
                let c = replica(i);
                if c.usable && key(c) < best.0 {
                    best = (key(c), Pick::Replica(i));
                }
            }
            best.1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(usable: bool, rtt_us: u64) -> Candidate {
        Candidate { usable, rtt_us }
    }

    fn choose(mode: ReadFrom, master: Candidate, replicas: &[Candidate], spread: u32) -> Pick {
        pick(mode, master, replicas.len(), |i| replicas[i], spread)
    }

    const UP: Candidate = Candidate {
        usable: true,
        rtt_us: 0,
    };
    const DOWN: Candidate = Candidate {
        usable: false,
        rtt_us: 0,
    };

    #[test]
    fn master_mode_always_picks_the_master() {
        assert_eq!(choose(ReadFrom::Master, UP, &[UP, UP], 3), Pick::Master);
    }

    #[test]
    fn replica_modes_spread_clients_over_usable_replicas_only() {
        for mode in [ReadFrom::Replica, ReadFrom::PreferReplica] {
            let replicas = [UP, DOWN, UP];
            assert_eq!(choose(mode, UP, &replicas, 0), Pick::Replica(0));
            assert_eq!(choose(mode, UP, &replicas, 1), Pick::Replica(2));
            assert_eq!(choose(mode, UP, &replicas, 2), Pick::Replica(0));
            // One client sticks to one replica.
            assert_eq!(
                choose(mode, UP, &replicas, 7),
                choose(mode, UP, &replicas, 7)
            );
        }
    }

    #[test]
    fn replica_modes_fall_back_to_the_master_without_a_usable_replica() {
        for mode in [ReadFrom::Replica, ReadFrom::PreferReplica] {
            assert_eq!(choose(mode, UP, &[], 5), Pick::Master, "no replica at all");
            // Down, loading (left out of the table), lagging or flagged: all unusable.
            assert_eq!(choose(mode, UP, &[DOWN, DOWN], 5), Pick::Master);
        }
    }

    #[test]
    fn a_loading_or_lagging_replica_is_skipped() {
        // The worker makes a loading replica (not in the table's serving list) or one
        // past the lag limit unusable; here the second replica is such a one.
        let replicas = [node(true, 0), node(false, 0)];
        for spread in 0..4 {
            assert_eq!(
                choose(ReadFrom::Replica, UP, &replicas, spread),
                Pick::Replica(0)
            );
        }
    }

    #[test]
    fn nearest_picks_the_lowest_round_trip_among_usable_nodes() {
        let master = node(true, 300);
        let replicas = [node(true, 500), node(true, 120), node(false, 50)];
        assert_eq!(
            choose(ReadFrom::Nearest, master, &replicas, 0),
            Pick::Replica(1),
            "the unusable replica at 50 us is skipped"
        );
        let replicas = [node(true, 500), node(true, 900)];
        assert_eq!(
            choose(ReadFrom::Nearest, master, &replicas, 0),
            Pick::Master
        );
    }

    #[test]
    fn nearest_prefers_measured_nodes_and_the_master_on_ties() {
        assert_eq!(
            choose(ReadFrom::Nearest, node(true, 0), &[node(true, 0)], 0),
            Pick::Master,
            "nothing measured: the master"
        );
        assert_eq!(
            choose(ReadFrom::Nearest, node(true, 0), &[node(true, 800)], 0),
            Pick::Replica(0),
            "a measured replica beats an unmeasured master"
        );
        assert_eq!(
            choose(ReadFrom::Nearest, node(true, 200), &[node(true, 200)], 0),
            Pick::Master,
            "a tie: the master"
        );
        assert_eq!(
            choose(ReadFrom::Nearest, node(true, 200), &[node(true, 0)], 0),
            Pick::Master,
            "an unmeasured replica is not chosen"
        );
    }
}
