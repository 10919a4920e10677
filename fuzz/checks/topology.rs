//! The topology parsers: `CLUSTER SHARDS` and `CLUSTER SLOTS` replies (RESP2 and RESP3)
//! and `CLUSTER NODES` text, and the slot table built from what they give.
//! Invariants beyond "no panic":
//! - every slot range lies in 0..16384 with start <= end, sorted within its shard;
//!   shards come ordered by their lowest slot and none is empty;
//! - every address re-parses as itself (it is what the proxy dials and names in logs);
//! - `uncovered` is exactly the complement of the shards' slots;
//! - the slot table built from it serves exactly the covered slots, each from a master
//!   that claims it; one node's view merged alone covers the same slots;
//! - importing slots from `CLUSTER NODES` are slot numbers.
//!
//! Input: a node's reply as bytes (also read as `CLUSTER NODES` text).

use slotgate::cluster::table::SlotTable;
use slotgate::cluster::topology::{
    format_slot_ranges, importing_slots, parse_cluster_shards, parse_cluster_shards_resp3,
    parse_cluster_slots, parse_cluster_slots_resp3, Topology,
};
use slotgate::cluster::views::{self, View};
use slotgate::cluster::NodeAddr;
use slotgate::slot::{Slot, SLOT_COUNT};

fn check_addr(addr: &NodeAddr) {
    // Brackets are how an IPv6 host is written; a host announced with stray brackets
    // of its own ("[a") cannot come back the same way, and no real node announces one.
    let text = addr.as_str();
    let host = text.rsplit_once(':').map_or(text, |(host, _)| host);
    let inner = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if inner.contains(['[', ']']) {
        return;
    }
    assert_eq!(
        NodeAddr::parse(addr.as_str()).as_ref(),
        Some(addr),
        "{addr} re-parses"
    );
}

fn check(topology: &Topology, queried: &NodeAddr) {
    let mut claims: Vec<Vec<&NodeAddr>> = vec![Vec::new(); SLOT_COUNT];
    let mut last_lowest = None;
    for shard in &topology.shards {
        assert!(!shard.slots.is_empty(), "no empty shard");
        check_addr(&shard.master);
        shard
            .replicas
            .iter()
            .chain(&shard.loading_replicas)
            .for_each(check_addr);
        let lowest = shard.slots[0].0;
        assert!(last_lowest <= Some(lowest), "shards ordered by lowest slot");
        last_lowest = Some(lowest);
        for pair in shard.slots.windows(2) {
            assert!(pair[0] <= pair[1], "ranges sorted");
        }
        for &(start, end) in &shard.slots {
            assert!(
                start <= end && usize::from(end) < SLOT_COUNT,
                "{start}-{end}"
            );
            for slot in start..=end {
                claims[usize::from(slot)].push(&shard.master);
            }
        }
    }
    let uncovered = topology.uncovered();
    let _ = format_slot_ranges(&uncovered);
    let mut is_uncovered = vec![false; SLOT_COUNT];
    for &(start, end) in &uncovered {
        assert!(start <= end && usize::from(end) < SLOT_COUNT);
        for slot in start..=end {
            assert!(!is_uncovered[usize::from(slot)], "uncovered ranges overlap");
            is_uncovered[usize::from(slot)] = true;
        }
    }
    let table = SlotTable::build(topology, &SlotTable::empty());
    let mut served = 0;
    for (n, owners) in claims.iter().enumerate() {
        assert_eq!(
            owners.is_empty(),
            is_uncovered[n],
            "slot {n}: uncovered is the complement"
        );
        let slot = Slot::new(n as u16).expect("slot");
        match table.master(slot) {
            Some(master) => {
                served += 1;
                assert!(
                    owners.contains(&master),
                    "slot {n} goes to a master claiming it"
                );
            }
            None => assert!(owners.is_empty(), "slot {n} is claimed but unserved"),
        }
    }
    assert_eq!(table.unserved(), SLOT_COUNT - served);
    let merged = views::merge(&[View {
        from: Some(queried.clone()),
        topology: topology.clone(),
        epochs: Default::default(),
    }]);
    assert_eq!(
        merged.uncovered(),
        uncovered,
        "one view merged alone covers the same"
    );
}

/// One fuzz input through the checks above; panics on a broken invariant.
pub fn run(data: &[u8]) {
    let queried = NodeAddr::new("127.0.0.1", 7000);
    if let Ok(Some((frame, _))) = redis_protocol::resp2::decode::decode(data) {
        if let Ok(topology) = parse_cluster_shards(&frame, &queried) {
            check(&topology, &queried);
        }
        if let Ok(topology) = parse_cluster_slots(&frame, &queried) {
            check(&topology, &queried);
        }
    }
    if let Ok(Some((frame, _))) = redis_protocol::resp3::decode::complete::decode(data) {
        if let Ok(topology) = parse_cluster_shards_resp3(&frame, &queried) {
            check(&topology, &queried);
        }
        if let Ok(topology) = parse_cluster_slots_resp3(&frame, &queried) {
            check(&topology, &queried);
        }
    }
    let text = String::from_utf8_lossy(data);
    for slot in importing_slots(&text) {
        assert!(usize::from(slot) < SLOT_COUNT);
    }
    let _ = views::parse_config_epochs(&text);
}
