//! Topology parsing: a node's `CLUSTER SHARDS` or `CLUSTER SLOTS` reply → shards
//! (slot ranges, master, replicas). Pure: decoded frames in, values out.
//!
//! Choices shared by both parsers:
//! - **Address**: the node's preferred endpoint (`CLUSTER SHARDS` `endpoint`, the
//!   first element of a `CLUSTER SLOTS` node), because that is what `MOVED` and `ASK`
//!   carry: one node keeps one name whether the proxy learnt it from a refresh or a
//!   redirect, and `[address_map]` maps that name (with
//!   `cluster-preferred-endpoint-type hostname`, the host name a container announces,
//!   not its ip). When the endpoint is missing, empty or `"?"`, the `ip`, then the
//!   hostname; when nothing usable is announced, the host we queried (Redis leaves the
//!   ip empty for a node that does not know its own address: "reach me the way you
//!   reached me"). These are *announced* addresses; mapping them to dialled ones is
//!   the address map's job.
//! - **Health** (`CLUSTER SHARDS` only): a node whose health is `fail` is skipped.
//!   Replicas must be `online` to serve: a `loading` replica has not finished its
//!   first sync (Redis reports `loading` for a replica whose replication offset is 0)
//!   and cannot serve reads; `CLUSTER SLOTS` leaves such replicas out too. They are
//!   kept apart ([`ShardInfo::loading_replicas`]) for admin commands sent to every node.
//! - A shard with no slots, or with no live master, is dropped: its slots show up in
//!   [`Topology::uncovered`].
//! - `CLUSTER SLOTS` has no health for masters: a failed master that still owns
//!   slots is reported as their owner. Prefer `CLUSTER SHARDS` where the server has it.
//! - Shards come out ordered by their lowest slot, each shard's ranges sorted.
//! - Structural problems (wrong types, missing `slots`/`nodes`, slot numbers out of
//!   range, an odd name/value list) are errors; unknown fields are ignored.

use std::collections::HashMap;
use std::fmt;

use redis_protocol::resp2::types::OwnedFrame;
use redis_protocol::resp3::types::OwnedFrame as Resp3Frame;

use crate::cluster::addr::NodeAddr;
use crate::slot::SLOT_COUNT;

/// The highest slot number.
const MAX_SLOT: u16 = (SLOT_COUNT - 1) as u16;

/// One shard as the cluster reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardInfo {
    /// Inclusive slot ranges, sorted.
    pub slots: Vec<(u16, u16)>,
    pub master: NodeAddr,
    /// The master's node id, when the reply carries it.
    pub master_id: Option<String>,
    /// Live, synced replicas.
    pub replicas: Vec<NodeAddr>,
    /// Replicas `CLUSTER SHARDS` calls `loading`: connected but not synced, or (Redis
    /// 7.0) synced with a master that has not written yet (its offset is 0). No reads go
    /// there; admin commands meant for every node (`CONFIG SET`) do.
    pub loading_replicas: Vec<NodeAddr>,
}

/// The cluster's shards as one node sees them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topology {
    pub shards: Vec<ShardInfo>,
}

impl Topology {
    /// Slots (as inclusive ranges) that no shard covers — for the start-up error
    /// "slots 0-99, 5000 are not covered" (see [`format_slot_ranges`]).
    pub fn uncovered(&self) -> Vec<(u16, u16)> {
        let mut covered = vec![false; SLOT_COUNT];
        for shard in &self.shards {
            for &(start, end) in &shard.slots {
                // The parsers validate ranges; a hand-built topology is clamped
                // rather than trusted.
                let (start, end) = (usize::from(start), usize::from(end.min(MAX_SLOT)));
                if let Some(run) = covered.get_mut(start..=end) {
                    run.fill(true);
                }
            }
        }
        let mut ranges = Vec::new();
        let mut open: Option<u16> = None;
        for (slot, &is_covered) in (0..=MAX_SLOT).zip(covered.iter()) {
            match (is_covered, open) {
                (false, None) => open = Some(slot),
                (true, Some(start)) => {
                    ranges.push((start, slot - 1));
                    open = None;
                }
                _ => {}
            }
        }
        if let Some(start) = open {
            ranges.push((start, MAX_SLOT));
        }
        ranges
    }

    /// Whether every one of the 16384 slots has a shard.
    pub fn covers_all(&self) -> bool {
        self.uncovered().is_empty()
    }
}

/// `[(0, 99), (5000, 5000)]` → `"0-99, 5000"`.
pub fn format_slot_ranges(ranges: &[(u16, u16)]) -> String {
    let parts: Vec<String> = ranges
        .iter()
        .map(|&(start, end)| {
            if start == end {
                start.to_string()
            } else {
                format!("{start}-{end}")
            }
        })
        .collect();
    parts.join(", ")
}

/// A topology reply that cannot be understood; the message says which command,
/// which node was asked and what was malformed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopologyError(String);

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TopologyError {}

/// Parse a decoded RESP2 reply of `CLUSTER SHARDS` (Redis 7.0+, Valkey 8).
///
/// `queried` is the node we asked; its host stands in for nodes that announce no
/// usable address. See the module docs for which nodes and shards are kept.
pub fn parse_cluster_shards(
    frame: &OwnedFrame,
    queried: &NodeAddr,
) -> Result<Topology, TopologyError> {
    let fail = |msg: String| TopologyError(format!("CLUSTER SHARDS from {queried}: {msg}"));
    let shards = reply_array(frame).map_err(fail)?;
    let queried_host = host_of(queried);
    let mut out = Vec::new();
    for (i, shard) in shards.iter().enumerate() {
        if let Some(info) =
            parse_shard(shard, queried_host).map_err(|m| fail(format!("shard {i}: {m}")))?
        {
            out.push(info);
        }
    }
    Ok(finish(out))
}

/// Parse `CLUSTER SLOTS` (the fallback for servers without `CLUSTER SHARDS`):
/// `[[start, end, [ip, port, id, {hostname...}], replicas...], ...]`.
///
/// Entries of one master are merged into one shard.
pub fn parse_cluster_slots(
    frame: &OwnedFrame,
    queried: &NodeAddr,
) -> Result<Topology, TopologyError> {
    let fail = |msg: String| TopologyError(format!("CLUSTER SLOTS from {queried}: {msg}"));
    let entries = reply_array(frame).map_err(fail)?;
    let queried_host = host_of(queried);
    let mut out: Vec<ShardInfo> = Vec::new();
    let mut by_master: HashMap<NodeAddr, usize> = HashMap::new();
    for (i, entry) in entries.iter().enumerate() {
        let SlotsEntry {
            range,
            master,
            replicas,
        } = parse_slots_entry(entry, queried_host).map_err(|m| fail(format!("entry {i}: {m}")))?;
        let shard = match by_master.get(&master.addr) {
            Some(&at) => out.get_mut(at),
            None => {
                by_master.insert(master.addr.clone(), out.len());
                out.push(ShardInfo {
                    slots: Vec::new(),
                    master: master.addr,
                    master_id: master.id,
                    replicas: Vec::new(),
                    loading_replicas: Vec::new(),
                });
                out.last_mut()
            }
        };
        if let Some(shard) = shard {
            shard.slots.push(range);
            for replica in replicas {
                if !shard.replicas.contains(&replica.addr) {
                    shard.replicas.push(replica.addr);
                }
            }
        }
    }
    Ok(finish(out))
}

/// [`parse_cluster_shards`] for a RESP3 reply (maps instead of name/value lists).
pub fn parse_cluster_shards_resp3(
    frame: &Resp3Frame,
    queried: &NodeAddr,
) -> Result<Topology, TopologyError> {
    parse_cluster_shards(&to_resp2_shape(frame, 0), queried)
}

/// [`parse_cluster_slots`] for a RESP3 reply.
pub fn parse_cluster_slots_resp3(
    frame: &Resp3Frame,
    queried: &NodeAddr,
) -> Result<Topology, TopologyError> {
    parse_cluster_slots(&to_resp2_shape(frame, 0), queried)
}

/// The slots the node that answered `CLUSTER NODES` imports: the `[slot-<-source]`
/// entries of its own (`myself`) line. Only a node itself shows its migrations
/// (Redis 7, Valkey 8); `CLUSTER SHARDS` and `CLUSTER SLOTS` never do. Malformed
/// entries are skipped.
pub fn importing_slots(cluster_nodes: &str) -> Vec<u16> {
    let Some(line) = cluster_nodes.lines().find(|line| {
        (line.split(' ').nth(2)).is_some_and(|flags| flags.split(',').any(|f| f == "myself"))
    }) else {
        return Vec::new();
    };
    (line.split(' ').skip(8))
        .filter_map(|entry| entry.strip_prefix('[')?.split_once("-<-"))
        .filter_map(|(slot, _)| slot.parse::<u16>().ok())
        .filter(|&slot| slot <= MAX_SLOT)
        .collect()
}

/// Sort ranges within shards and shards by their lowest slot.
fn finish(mut shards: Vec<ShardInfo>) -> Topology {
    for shard in &mut shards {
        shard.slots.sort_unstable();
    }
    shards.sort_by_key(|shard| shard.slots.first().copied());
    Topology { shards }
}

/// Inner parse failures; the callers add command, node and position.
type Malformed = String;

fn reply_array(frame: &OwnedFrame) -> Result<&[OwnedFrame], Malformed> {
    match frame {
        OwnedFrame::Array(items) => Ok(items),
        OwnedFrame::Error(text) => Err(format!("server replied with an error: {text}")),
        other => Err(format!("expected an array, got {}", kind(other))),
    }
}

/// One element of `CLUSTER SHARDS`; `None` when the shard is dropped (no slots or
/// no live master).
fn parse_shard(frame: &OwnedFrame, queried_host: &str) -> Result<Option<ShardInfo>, Malformed> {
    let fields = Fields::new(frame)?;
    let slots = fields.get("slots").ok_or("no \"slots\" field")?;
    let slots = parse_flat_ranges(slots).map_err(|m| format!("slots: {m}"))?;
    let nodes = match fields.get("nodes").ok_or("no \"nodes\" field")? {
        OwnedFrame::Array(nodes) => nodes,
        other => return Err(format!("nodes: expected an array, got {}", kind(other))),
    };
    let mut master: Option<AnnouncedNode> = None;
    let mut replicas = Vec::new();
    let mut loading_replicas = Vec::new();
    for (j, node) in nodes.iter().enumerate() {
        let node = parse_shard_node(node, queried_host).map_err(|m| format!("node {j}: {m}"))?;
        match (node.role, node.health) {
            (_, Health::Fail) | (Role::Other, _) => {}
            // A second live master in one shard is a transient view; the first wins.
            (Role::Master, _) => {
                if master.is_none() {
                    master = Some(node.announced);
                }
            }
            (Role::Replica, Health::Online) => replicas.push(node.announced.addr),
            (Role::Replica, Health::Loading) => loading_replicas.push(node.announced.addr),
        }
    }
    let Some(master) = master else {
        return Ok(None);
    };
    if slots.is_empty() {
        return Ok(None);
    }
    replicas.retain(|replica| *replica != master.addr);
    loading_replicas.retain(|replica| *replica != master.addr);
    Ok(Some(ShardInfo {
        slots,
        master: master.addr,
        master_id: master.id,
        replicas,
        loading_replicas,
    }))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Master,
    Replica,
    /// A role this parser does not know; such nodes are skipped.
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Health {
    /// `online`, an unknown value, or no health field at all.
    Online,
    Loading,
    Fail,
}

/// A node's address and id as the cluster announces it.
struct AnnouncedNode {
    addr: NodeAddr,
    id: Option<String>,
}

struct ShardNode {
    announced: AnnouncedNode,
    role: Role,
    health: Health,
}

fn parse_shard_node(frame: &OwnedFrame, queried_host: &str) -> Result<ShardNode, Malformed> {
    let fields = Fields::new(frame)?;
    // `port` is the plaintext port; a node that has only `tls-port` announces that.
    let port = [fields.get("port"), fields.get("tls-port")]
        .into_iter()
        .flatten()
        .filter(|value| !matches!(value, OwnedFrame::Null))
        .map(port_of)
        .find(|port| *port != Ok(0))
        .ok_or("no usable \"port\" or \"tls-port\" field")??;
    let host = first_usable([
        fields.text("endpoint"),
        fields.text("ip"),
        fields.text("hostname"),
    ])
    .unwrap_or(queried_host);
    let role = match fields.text("role") {
        Some(role) if role.eq_ignore_ascii_case("master") => Role::Master,
        Some(role)
            if role.eq_ignore_ascii_case("replica") || role.eq_ignore_ascii_case("slave") =>
        {
            Role::Replica
        }
        Some(_) => Role::Other,
        None => return Err("no \"role\" field".into()),
    };
    let health = match fields.text("health") {
        Some(health) if health.eq_ignore_ascii_case("fail") => Health::Fail,
        Some(health) if health.eq_ignore_ascii_case("loading") => Health::Loading,
        _ => Health::Online,
    };
    Ok(ShardNode {
        announced: AnnouncedNode {
            addr: NodeAddr::new(host, port),
            id: fields
                .text("id")
                .filter(|id| !id.is_empty())
                .map(str::to_owned),
        },
        role,
        health,
    })
}

/// One element of `CLUSTER SLOTS`: `[start, end, master, replicas...]`.
struct SlotsEntry {
    range: (u16, u16),
    master: AnnouncedNode,
    replicas: Vec<AnnouncedNode>,
}

fn parse_slots_entry(frame: &OwnedFrame, queried_host: &str) -> Result<SlotsEntry, Malformed> {
    let items = match frame {
        OwnedFrame::Array(items) => items,
        other => return Err(format!("expected an array, got {}", kind(other))),
    };
    let [start, end, master, replicas @ ..] = items.as_slice() else {
        return Err(format!("expected at least 3 elements, got {}", items.len()));
    };
    let range = slot_range(start, end)?;
    let master = parse_slots_node(master, queried_host).map_err(|m| format!("master: {m}"))?;
    let replicas = replicas
        .iter()
        .enumerate()
        .map(|(j, node)| {
            parse_slots_node(node, queried_host).map_err(|m| format!("replica {j}: {m}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SlotsEntry {
        range,
        master,
        replicas,
    })
}

/// A `CLUSTER SLOTS` node: `[endpoint, port, id?, metadata?, ...]`, where the
/// endpoint may be null, `""` or `"?"` and the metadata (Redis 7.0+) is a name/value
/// list carrying `hostname` and, when the endpoint is not the ip, `ip`.
fn parse_slots_node(frame: &OwnedFrame, queried_host: &str) -> Result<AnnouncedNode, Malformed> {
    let items = match frame {
        OwnedFrame::Array(items) => items,
        other => return Err(format!("expected an array, got {}", kind(other))),
    };
    let [endpoint, port, rest @ ..] = items.as_slice() else {
        return Err(format!("expected at least 2 elements, got {}", items.len()));
    };
    let port = port_of(port)?;
    if port == 0 {
        return Err("port 0".into());
    }
    let id = rest.first().and_then(text).filter(|id| !id.is_empty());
    let metadata = match rest.get(1) {
        None | Some(OwnedFrame::Null) => Fields(&[]),
        Some(frame) => Fields::new(frame).map_err(|m| format!("metadata: {m}"))?,
    };
    let host = first_usable([
        text(endpoint),
        metadata.text("ip"),
        metadata.text("hostname"),
    ])
    .unwrap_or(queried_host);
    Ok(AnnouncedNode {
        addr: NodeAddr::new(host, port),
        id: id.map(str::to_owned),
    })
}

/// A RESP2 flat `name, value, name, value, ...` list, as `CLUSTER SHARDS` sends
/// each shard and node, and `CLUSTER SLOTS` the node metadata.
struct Fields<'a>(&'a [OwnedFrame]);

impl<'a> Fields<'a> {
    fn new(frame: &'a OwnedFrame) -> Result<Fields<'a>, Malformed> {
        match frame {
            OwnedFrame::Array(items) if items.len() % 2 == 0 => Ok(Fields(items)),
            OwnedFrame::Array(items) => Err(format!(
                "name/value list has an odd number of elements ({})",
                items.len()
            )),
            other => Err(format!("expected a name/value array, got {}", kind(other))),
        }
    }

    /// The value of the first field called `name` (ASCII case-insensitive).
    fn get(&self, name: &str) -> Option<&'a OwnedFrame> {
        self.0.chunks_exact(2).find_map(|pair| match pair {
            [key, value] if text(key).is_some_and(|key| key.eq_ignore_ascii_case(name)) => {
                Some(value)
            }
            _ => None,
        })
    }

    fn text(&self, name: &str) -> Option<&'a str> {
        self.get(name).and_then(text)
    }
}

/// A string value; `None` for other types and for bytes that are not UTF-8.
fn text(frame: &OwnedFrame) -> Option<&str> {
    match frame {
        OwnedFrame::BulkString(bytes) | OwnedFrame::SimpleString(bytes) => {
            std::str::from_utf8(bytes).ok()
        }
        _ => None,
    }
}

/// An integer, sent as an integer or as decimal text.
fn integer(frame: &OwnedFrame) -> Result<i64, Malformed> {
    match frame {
        OwnedFrame::Integer(n) => Ok(*n),
        OwnedFrame::BulkString(_) | OwnedFrame::SimpleString(_) => text(frame)
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| format!("expected an integer, got {frame:?}")),
        other => Err(format!("expected an integer, got {}", kind(other))),
    }
}

fn port_of(frame: &OwnedFrame) -> Result<u16, Malformed> {
    let n = integer(frame)?;
    u16::try_from(n).map_err(|_| format!("port {n} out of range"))
}

fn slot_of(frame: &OwnedFrame) -> Result<u16, Malformed> {
    let n = integer(frame)?;
    u16::try_from(n)
        .ok()
        .filter(|slot| *slot <= MAX_SLOT)
        .ok_or_else(|| format!("slot {n} out of range"))
}

fn slot_range(start: &OwnedFrame, end: &OwnedFrame) -> Result<(u16, u16), Malformed> {
    let (start, end) = (slot_of(start)?, slot_of(end)?);
    if start > end {
        return Err(format!("slot range {start}-{end} is reversed"));
    }
    Ok((start, end))
}

/// `CLUSTER SHARDS` slots: a flat list `start, end, start, end, ...`.
fn parse_flat_ranges(frame: &OwnedFrame) -> Result<Vec<(u16, u16)>, Malformed> {
    let items = match frame {
        OwnedFrame::Array(items) => items,
        other => return Err(format!("expected an array, got {}", kind(other))),
    };
    if items.len() % 2 != 0 {
        return Err(format!("odd number of slot bounds ({})", items.len()));
    }
    items
        .chunks_exact(2)
        .map(|pair| match pair {
            [start, end] => slot_range(start, end),
            _ => Err("slot bounds come in pairs".into()),
        })
        .collect()
}

/// The first host that names a node: not missing, not empty, not `"?"` (Redis's
/// "unknown endpoint").
fn first_usable<const N: usize>(candidates: [Option<&str>; N]) -> Option<&str> {
    candidates
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|host| !host.is_empty() && *host != "?")
}

/// The host part of `host:port` / `[v6]:port`, without brackets.
fn host_of(addr: &NodeAddr) -> &str {
    let text = addr.as_str();
    let host = text.rsplit_once(':').map_or(text, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

fn kind(frame: &OwnedFrame) -> &'static str {
    match frame {
        OwnedFrame::SimpleString(_) => "simple string",
        OwnedFrame::Error(_) => "error",
        OwnedFrame::Integer(_) => "integer",
        OwnedFrame::BulkString(_) => "bulk string",
        OwnedFrame::Array(_) => "array",
        OwnedFrame::Null => "null",
    }
}

/// Deepest RESP3 nesting converted; a topology reply needs 4 levels
/// (reply → shard → nodes → node). Deeper values become null.
const MAX_RESP3_DEPTH: usize = 8;

/// A RESP3 value in the RESP2 shape the parsers read: maps become flat name/value
/// arrays, sets and pushes arrays, numbers integers, other scalars strings.
fn to_resp2_shape(frame: &Resp3Frame, depth: usize) -> OwnedFrame {
    if depth > MAX_RESP3_DEPTH {
        return OwnedFrame::Null;
    }
    let nested = |frames: &mut dyn Iterator<Item = &Resp3Frame>| {
        OwnedFrame::Array(frames.map(|f| to_resp2_shape(f, depth + 1)).collect())
    };
    match frame {
        Resp3Frame::BlobString { data, .. }
        | Resp3Frame::SimpleString { data, .. }
        | Resp3Frame::VerbatimString { data, .. }
        | Resp3Frame::BigNumber { data, .. } => OwnedFrame::BulkString(data.clone()),
        Resp3Frame::SimpleError { data, .. } => OwnedFrame::Error(data.clone()),
        Resp3Frame::BlobError { data, .. } => {
            OwnedFrame::Error(String::from_utf8_lossy(data).into_owned())
        }
        Resp3Frame::Number { data, .. } => OwnedFrame::Integer(*data),
        Resp3Frame::Boolean { data, .. } => OwnedFrame::Integer(i64::from(*data)),
        Resp3Frame::Double { data, .. } => OwnedFrame::BulkString(data.to_string().into_bytes()),
        Resp3Frame::Array { data, .. } | Resp3Frame::Push { data, .. } => nested(&mut data.iter()),
        Resp3Frame::Set { data, .. } => nested(&mut data.iter()),
        Resp3Frame::Map { data, .. } => {
            nested(&mut data.iter().flat_map(|(key, value)| [key, value]))
        }
        Resp3Frame::Null | Resp3Frame::Hello { .. } | Resp3Frame::ChunkedString(_) => {
            OwnedFrame::Null
        }
    }
}

#[cfg(test)]
mod tests {
    //! Fixtures in `fixtures/` are raw RESP bytes captured from a Redis 7.0.15 cluster
    //! of 3 masters + 3 replicas on 127.0.0.1:27001-27006 (see `fixtures/README.md`).

    use super::*;

    const ID_27001: &str = "15ead326a758895f034c3f3f497b0cef6cff2637";
    const ID_27002: &str = "793e2fd25e157f32342e5351e6ddb0c1cdc31f48";
    const ID_27003: &str = "1bccc6bbd26ea507024e72b04c1445652f21d58e";
    const ID_27004: &str = "15c315a5fd7180b06cbef32b5548d42a2f099021";

    /// Found by the `topology` fuzz target (a RESP3 `CLUSTER SHARDS` no real node sends:
    /// slot ranges that overlap within and across shards): merged as the only view, it
    /// must cover the same slots (`views::merge` dropped 12183-16383 before each view's
    /// ranges were made disjoint).
    #[test]
    fn overlapping_ranges_merged_alone_cover_the_same_slots() {
        let bytes = include_bytes!("fixtures/fuzz_overlapping_ranges_shards.resp");
        let (frame, _) = redis_protocol::resp3::decode::complete::decode(bytes)
            .unwrap()
            .unwrap();
        let queried = NodeAddr::new("127.0.0.1", 7000);
        let topology = parse_cluster_shards_resp3(&frame, &queried).unwrap();
        let merged = crate::cluster::views::merge(&[crate::cluster::views::View {
            from: Some(queried),
            topology: topology.clone(),
            epochs: Default::default(),
        }]);
        assert_eq!(merged.uncovered(), topology.uncovered());
    }

    fn decode(bytes: &[u8]) -> OwnedFrame {
        let (frame, used) = redis_protocol::resp2::decode::decode(bytes)
            .unwrap()
            .unwrap();
        assert_eq!(used, bytes.len(), "fixture holds exactly one frame");
        frame
    }

    fn local(port: u16) -> NodeAddr {
        NodeAddr::new("127.0.0.1", port)
    }

    fn shards(bytes: &[u8], queried: u16) -> Topology {
        parse_cluster_shards(&decode(bytes), &local(queried)).unwrap()
    }

    fn slots(bytes: &[u8], queried: u16) -> Topology {
        parse_cluster_slots(&decode(bytes), &local(queried)).unwrap()
    }

    fn shard(ranges: &[(u16, u16)], master: u16, id: &str, replicas: &[u16]) -> ShardInfo {
        ShardInfo {
            slots: ranges.to_vec(),
            master: local(master),
            master_id: Some(id.to_owned()),
            replicas: replicas.iter().map(|&port| local(port)).collect(),
            loading_replicas: vec![],
        }
    }

    fn healthy() -> Topology {
        Topology {
            shards: vec![
                shard(&[(0, 5460)], 27001, ID_27001, &[27005]),
                shard(&[(5461, 10922)], 27002, ID_27002, &[27006]),
                shard(&[(10923, 16383)], 27003, ID_27003, &[27004]),
            ],
        }
    }

    /// After slot 12182 moved from 27003 to 27001.
    fn resharded() -> Topology {
        Topology {
            shards: vec![
                shard(&[(0, 5460), (12182, 12182)], 27001, ID_27001, &[27005]),
                shard(&[(5461, 10922)], 27002, ID_27002, &[27006]),
                shard(&[(10923, 12181), (12183, 16383)], 27003, ID_27003, &[27004]),
            ],
        }
    }

    #[test]
    fn a_node_shows_the_slots_it_imports_on_its_own_line() {
        let nodes = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host1 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 myself,master - 0 1426238316232 2 connected 5461-10922 [93-<-292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f] [77->-e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca] [x-<-y] [99999-<-z] [16383-<-a]
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10923-16383 [94-<-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
";
        assert_eq!(importing_slots(nodes), [93, 16383]);
        assert!(importing_slots(&nodes.replace("myself,", "")).is_empty());
        assert!(importing_slots("").is_empty());
    }

    #[test]
    fn healthy_cluster() {
        let want = healthy();
        assert_eq!(
            shards(include_bytes!("fixtures/healthy_shards.resp"), 27001),
            want
        );
        assert_eq!(
            slots(include_bytes!("fixtures/healthy_slots.resp"), 27001),
            want
        );
        assert!(want.covers_all());
        assert_eq!(want.uncovered(), vec![]);
    }

    #[test]
    fn the_preferred_endpoint_names_each_node_as_redirects_do() {
        // Five nodes announce `node-<port>.example.test`; 27006 announces none.
        let want = healthy();
        // Default endpoint type (ip); CLUSTER SLOTS carries the 7.0 hostname map.
        assert_eq!(
            shards(include_bytes!("fixtures/hostnames_shards.resp"), 27001),
            want
        );
        assert_eq!(
            slots(include_bytes!("fixtures/hostnames_slots.resp"), 27001),
            want
        );
        // `cluster-preferred-endpoint-type hostname`: the endpoint (and MOVED) is the
        // hostname, `?` for 27006, which falls back to its ip; SLOTS moves the ip into
        // the map.
        let named = |port: u16| NodeAddr::new(&format!("node-{port}.example.test"), port);
        let mut by_name = want.clone();
        for shard in &mut by_name.shards {
            let port = |addr: &NodeAddr| addr.as_str().rsplit_once(':').unwrap().1.parse().unwrap();
            shard.master = named(port(&shard.master));
            for replica in &mut shard.replicas {
                if port(replica) != 27006 {
                    *replica = named(port(replica));
                }
            }
        }
        assert_eq!(
            shards(include_bytes!("fixtures/prefhost_shards.resp"), 27001),
            by_name
        );
        assert_eq!(
            slots(include_bytes!("fixtures/prefhost_slots.resp"), 27001),
            by_name
        );
        // `unknown-endpoint`: SLOTS endpoints are null, SHARDS endpoints empty.
        assert_eq!(
            shards(include_bytes!("fixtures/unknownep_shards.resp"), 27001),
            want
        );
        assert_eq!(
            slots(include_bytes!("fixtures/unknownep_slots.resp"), 27001),
            want
        );
    }

    #[test]
    fn migrating_slot_stays_with_its_owner() {
        // Slot 12182 MIGRATING on 27003 / IMPORTING on 27001, one of its keys moved.
        let want = healthy();
        assert_eq!(
            shards(include_bytes!("fixtures/migrating_shards.resp"), 27003),
            want
        );
        assert_eq!(
            slots(include_bytes!("fixtures/migrating_slots.resp"), 27003),
            want
        );
    }

    #[test]
    fn resharded_slot_splits_ranges() {
        let want = resharded();
        assert_eq!(
            shards(include_bytes!("fixtures/resharded_shards.resp"), 27002),
            want
        );
        // CLUSTER SLOTS lists 27001 and 27003 twice each: merged per master.
        assert_eq!(
            slots(include_bytes!("fixtures/resharded_slots.resp"), 27002),
            want
        );
    }

    #[test]
    fn failover_promotes_the_replica_and_drops_the_dead_master() {
        // 27003 killed; 27004 took over. SHARDS still lists 27003 as a slotless
        // master with health "fail", in a shard of its own.
        let mut want = resharded();
        want.shards[2] = shard(&[(10923, 12181), (12183, 16383)], 27004, ID_27004, &[]);
        let topology = shards(include_bytes!("fixtures/failover_shards.resp"), 27001);
        assert_eq!(topology, want);
        assert!(topology.covers_all());
        assert_eq!(
            slots(include_bytes!("fixtures/failover_slots.resp"), 27001),
            want
        );

        // 27003 restarted and rejoined as 27004's replica, captured before its
        // first sync: SHARDS says health "loading" (offset 0), SLOTS omits it.
        // Neither counts it as a replica yet; SHARDS keeps it as a loading one.
        let mut loading = want.clone();
        loading.shards[2].loading_replicas = vec![local(27003)];
        assert_eq!(
            shards(include_bytes!("fixtures/rejoined_shards.resp"), 27001),
            loading
        );
        assert_eq!(
            slots(include_bytes!("fixtures/rejoined_slots.resp"), 27001),
            want
        );
    }

    #[test]
    fn failed_replica_is_left_out() {
        // Then 27006 (27002's replica) was killed.
        let mut want = resharded();
        want.shards[1].replicas.clear();
        want.shards[2] = shard(&[(10923, 12181), (12183, 16383)], 27004, ID_27004, &[27003]);
        assert_eq!(
            shards(include_bytes!("fixtures/replica_failed_shards.resp"), 27001),
            want
        );
        assert_eq!(
            slots(include_bytes!("fixtures/replica_failed_slots.resp"), 27001),
            want
        );
    }

    #[test]
    fn shard_without_a_live_master_leaves_its_slots_uncovered() {
        // Then 27002 too: nobody serves 5461-10922.
        let topology = shards(include_bytes!("fixtures/shard_down_shards.resp"), 27001);
        assert_eq!(topology.shards.len(), 2);
        assert!(topology.shards.iter().all(|s| s.master != local(27002)));
        assert!(!topology.covers_all());
        assert_eq!(topology.uncovered(), vec![(5461, 10922)]);
        assert_eq!(format_slot_ranges(&topology.uncovered()), "5461-10922");

        // CLUSTER SLOTS has no master health: the dead master still owns them.
        let topology = slots(include_bytes!("fixtures/shard_down_slots.resp"), 27001);
        assert!(topology.covers_all());
        assert_eq!(topology.shards[1].master, local(27002));
        assert_eq!(topology.shards[1].replicas, vec![]);
    }

    #[test]
    fn unassigned_slot_is_uncovered() {
        // Then `CLUSTER DELSLOTS 9189` on 27001 (the node asked).
        let topology = slots(include_bytes!("fixtures/unassigned_slots.resp"), 27001);
        assert_eq!(topology.uncovered(), vec![(9189, 9189)]);
        assert_eq!(topology.shards[1].slots, vec![(5461, 9188), (9190, 10922)]);
        let topology = shards(include_bytes!("fixtures/unassigned_shards.resp"), 27001);
        assert_eq!(topology.uncovered(), vec![(5461, 10922)]);
    }

    #[test]
    fn resp3_map_form() {
        // Asked of 27004 over `HELLO 3` with 27002 and 27006 down.
        let bytes = include_bytes!("fixtures/resp3_shards.resp");
        let (frame, used) = redis_protocol::resp3::decode::complete::decode(bytes)
            .unwrap()
            .unwrap();
        assert_eq!(used, bytes.len());
        let topology = parse_cluster_shards_resp3(&frame, &local(27004)).unwrap();
        let want = Topology {
            shards: vec![
                shard(&[(0, 5460), (12182, 12182)], 27001, ID_27001, &[27005]),
                shard(&[(10923, 12181), (12183, 16383)], 27004, ID_27004, &[27003]),
            ],
        };
        assert_eq!(topology, want);
        assert_eq!(topology.uncovered(), vec![(5461, 10922)]);
    }

    // Hand-built replies for what a healthy 7.0 cluster does not produce on demand.

    fn bulk(text: &str) -> OwnedFrame {
        OwnedFrame::BulkString(text.as_bytes().to_vec())
    }

    fn array(items: Vec<OwnedFrame>) -> OwnedFrame {
        OwnedFrame::Array(items)
    }

    fn fields(pairs: &[(&str, OwnedFrame)]) -> OwnedFrame {
        array(
            pairs
                .iter()
                .flat_map(|(k, v)| [bulk(k), v.clone()])
                .collect(),
        )
    }

    fn shard_node(ip: &str, port: i64, role: &str, health: &str) -> OwnedFrame {
        fields(&[
            ("id", bulk(&format!("id-{port}"))),
            ("port", OwnedFrame::Integer(port)),
            ("ip", bulk(ip)),
            ("endpoint", bulk(ip)),
            ("role", bulk(role)),
            ("replication-offset", OwnedFrame::Integer(100)),
            ("health", bulk(health)),
        ])
    }

    fn shards_reply(shards: Vec<(Vec<i64>, Vec<OwnedFrame>)>) -> OwnedFrame {
        array(
            shards
                .into_iter()
                .map(|(slots, nodes)| {
                    fields(&[
                        (
                            "slots",
                            array(slots.into_iter().map(OwnedFrame::Integer).collect()),
                        ),
                        ("nodes", array(nodes)),
                    ])
                })
                .collect(),
        )
    }

    fn one_shard(nodes: Vec<OwnedFrame>) -> Result<Topology, TopologyError> {
        parse_cluster_shards(&shards_reply(vec![(vec![0, 16383], nodes)]), &local(7000))
    }

    #[test]
    fn unusable_endpoint_falls_back_to_ip_then_hostname_then_queried_host() {
        let node = |pairs: &[(&str, OwnedFrame)]| {
            let mut all = vec![
                ("port", OwnedFrame::Integer(7001)),
                ("role", bulk("master")),
                ("health", bulk("online")),
            ];
            all.extend(pairs.iter().cloned());
            one_shard(vec![fields(&all)]).unwrap().shards[0]
                .master
                .clone()
        };
        let queried_host = NodeAddr::new("127.0.0.1", 7001);
        assert_eq!(node(&[("ip", bulk(""))]), queried_host);
        assert_eq!(
            node(&[("ip", bulk("?")), ("endpoint", bulk("?"))]),
            queried_host
        );
        assert_eq!(node(&[("ip", OwnedFrame::Null)]), queried_host);
        assert_eq!(node(&[]), queried_host);
        // The endpoint first: it is what MOVED and ASK carry.
        assert_eq!(
            node(&[
                ("ip", bulk("10.0.0.1")),
                ("hostname", bulk("a.example")),
                ("endpoint", bulk("a.example"))
            ]),
            NodeAddr::new("a.example", 7001)
        );
        assert_eq!(
            node(&[
                ("ip", bulk("10.0.0.1")),
                ("hostname", bulk("a.example")),
                ("endpoint", bulk("?"))
            ]),
            NodeAddr::new("10.0.0.1", 7001)
        );
        assert_eq!(
            node(&[
                ("ip", bulk("")),
                ("hostname", bulk("a.example")),
                ("endpoint", bulk(""))
            ]),
            NodeAddr::new("a.example", 7001)
        );
        assert_eq!(
            node(&[("ip", bulk("")), ("endpoint", bulk("b"))]),
            NodeAddr::new("b", 7001)
        );
        assert_eq!(
            node(&[("ip", bulk("::1"))]),
            NodeAddr::parse("[::1]:7001").unwrap()
        );
        // An IPv6 queried node stands in for an unannounced ip.
        let reply = shards_reply(vec![(
            vec![0, 16383],
            vec![shard_node("", 7001, "master", "online")],
        )]);
        let topology =
            parse_cluster_shards(&reply, &NodeAddr::parse("[::1]:7000").unwrap()).unwrap();
        assert_eq!(topology.shards[0].master.as_str(), "[::1]:7001");
    }

    #[test]
    fn liberal_field_reading() {
        // Ports as text, names in other cases, unknown fields (Valkey 8 adds some).
        let node = array(vec![
            bulk("ID"),
            bulk("abc"),
            bulk("Port"),
            bulk("7001"),
            bulk("availability-zone"),
            bulk("az-1"),
            bulk("ip"),
            bulk("10.1.2.3"),
            bulk("role"),
            OwnedFrame::SimpleString(b"master".to_vec()),
        ]);
        let reply = array(vec![array(vec![
            bulk("shard-id"),
            bulk("f00"),
            bulk("slots"),
            array(vec![bulk("0"), bulk("16383")]),
            bulk("nodes"),
            array(vec![node]),
        ])]);
        let topology = parse_cluster_shards(&reply, &local(7000)).unwrap();
        assert_eq!(
            topology.shards,
            vec![ShardInfo {
                slots: vec![(0, 16383)],
                master: NodeAddr::new("10.1.2.3", 7001),
                master_id: Some("abc".into()),
                replicas: vec![],
                loading_replicas: vec![],
            }]
        );
    }

    #[test]
    fn tls_port_is_used_only_without_a_plaintext_port() {
        let node = |pairs: &[(&str, OwnedFrame)]| {
            let mut all = vec![("ip", bulk("10.0.0.1")), ("role", bulk("master"))];
            all.extend(pairs.iter().cloned());
            one_shard(vec![fields(&all)]).map(|t| t.shards[0].master.clone())
        };
        let port = |n| OwnedFrame::Integer(n);
        assert_eq!(
            node(&[("port", port(7001)), ("tls-port", port(8001))]),
            Ok(NodeAddr::new("10.0.0.1", 7001))
        );
        assert_eq!(
            node(&[("tls-port", port(8001)), ("port", port(7001))]),
            Ok(NodeAddr::new("10.0.0.1", 7001))
        );
        assert_eq!(
            node(&[("tls-port", port(8001))]),
            Ok(NodeAddr::new("10.0.0.1", 8001))
        );
        assert_eq!(
            node(&[("port", port(0)), ("tls-port", port(8001))]),
            Ok(NodeAddr::new("10.0.0.1", 8001))
        );
        assert!(node(&[]).is_err());
        assert!(node(&[("port", port(0))]).is_err());
        assert!(node(&[("port", port(65536))]).is_err());
        assert!(node(&[("port", port(-1))]).is_err());
    }

    #[test]
    fn node_health_and_roles() {
        let topology = one_shard(vec![
            shard_node("10.0.0.1", 7001, "master", "fail"),
            shard_node("10.0.0.2", 7002, "replica", "online"),
            shard_node("10.0.0.3", 7003, "replica", "loading"),
            shard_node("10.0.0.4", 7004, "replica", "fail"),
            shard_node("10.0.0.5", 7005, "master", "online"),
            shard_node("10.0.0.6", 7006, "slave", "online"),
            shard_node("10.0.0.7", 7007, "arbiter", "online"),
        ])
        .unwrap();
        assert_eq!(
            topology.shards,
            vec![ShardInfo {
                slots: vec![(0, 16383)],
                master: NodeAddr::new("10.0.0.5", 7005),
                master_id: Some("id-7005".into()),
                replicas: vec![
                    NodeAddr::new("10.0.0.2", 7002),
                    NodeAddr::new("10.0.0.6", 7006)
                ],
                loading_replicas: vec![NodeAddr::new("10.0.0.3", 7003)],
            }]
        );
        // Only failed or loading nodes: no live master, the shard is dropped.
        let topology = one_shard(vec![
            shard_node("10.0.0.1", 7001, "master", "fail"),
            shard_node("10.0.0.2", 7002, "replica", "online"),
        ])
        .unwrap();
        assert_eq!(topology.shards, vec![]);
        assert_eq!(topology.uncovered(), vec![(0, 16383)]);
    }

    #[test]
    fn shards_without_slots_are_dropped() {
        let reply = shards_reply(vec![
            (
                vec![],
                vec![shard_node("10.0.0.1", 7001, "master", "online")],
            ),
            (
                vec![0, 99, 5000, 5000],
                vec![shard_node("10.0.0.2", 7002, "master", "online")],
            ),
        ]);
        let topology = parse_cluster_shards(&reply, &local(7000)).unwrap();
        assert_eq!(topology.shards.len(), 1);
        assert_eq!(topology.shards[0].slots, vec![(0, 99), (5000, 5000)]);
        assert_eq!(
            format_slot_ranges(&topology.uncovered()),
            "100-4999, 5001-16383"
        );
    }

    fn slots_node(endpoint: OwnedFrame, port: i64, metadata: Option<OwnedFrame>) -> OwnedFrame {
        let mut items = vec![
            endpoint,
            OwnedFrame::Integer(port),
            bulk(&format!("id-{port}")),
        ];
        items.extend(metadata);
        array(items)
    }

    #[test]
    fn cluster_slots_addresses() {
        let entry = |master: OwnedFrame| {
            let reply = array(vec![array(vec![
                OwnedFrame::Integer(0),
                OwnedFrame::Integer(16383),
                master,
            ])]);
            parse_cluster_slots(&reply, &local(7000)).unwrap().shards[0]
                .master
                .clone()
        };
        let meta = |pairs: &[(&str, &str)]| {
            Some(array(
                pairs.iter().flat_map(|(k, v)| [bulk(k), bulk(v)]).collect(),
            ))
        };
        // Null, empty or unknown endpoint with nothing else: the host we asked.
        assert_eq!(entry(slots_node(OwnedFrame::Null, 7001, None)), local(7001));
        assert_eq!(entry(slots_node(bulk(""), 7001, meta(&[]))), local(7001));
        assert_eq!(entry(slots_node(bulk("?"), 7001, None)), local(7001));
        // The endpoint (what MOVED carries) wins over the map's ip and hostname.
        assert_eq!(
            entry(slots_node(
                bulk("h.example"),
                7001,
                meta(&[("ip", "10.0.0.1"), ("hostname", "h.example")])
            )),
            NodeAddr::new("h.example", 7001)
        );
        // An unknown endpoint: the map's ip, then its hostname.
        assert_eq!(
            entry(slots_node(
                bulk("?"),
                7001,
                meta(&[("ip", "10.0.0.1"), ("hostname", "h.example")])
            )),
            NodeAddr::new("10.0.0.1", 7001)
        );
        assert_eq!(
            entry(slots_node(
                bulk("10.0.0.2"),
                7001,
                meta(&[("hostname", "h.example")])
            )),
            NodeAddr::new("10.0.0.2", 7001)
        );
        assert_eq!(
            entry(slots_node(
                bulk("?"),
                7001,
                meta(&[("hostname", "h.example")])
            )),
            NodeAddr::new("h.example", 7001)
        );
        // Pre-7.0 servers send no map; Redis 3 no id either.
        assert_eq!(
            entry(array(vec![bulk("fe80::1"), OwnedFrame::Integer(7001)])),
            NodeAddr::parse("[fe80::1]:7001").unwrap()
        );
    }

    #[test]
    fn cluster_slots_merges_entries_of_one_master() {
        let a = || slots_node(bulk("10.0.0.1"), 7001, None);
        let b = || slots_node(bulk("10.0.0.2"), 7002, None);
        let c = || slots_node(bulk("10.0.0.3"), 7003, None);
        let entry = |start: i64, end: i64, nodes: Vec<OwnedFrame>| {
            let mut items = vec![OwnedFrame::Integer(start), OwnedFrame::Integer(end)];
            items.extend(nodes);
            array(items)
        };
        let reply = array(vec![
            entry(100, 200, vec![a(), b()]),
            entry(0, 99, vec![c()]),
            entry(300, 300, vec![a(), b()]),
            entry(201, 299, vec![c(), a()]),
        ]);
        let topology = parse_cluster_slots(&reply, &local(7000)).unwrap();
        assert_eq!(
            topology.shards,
            vec![
                ShardInfo {
                    slots: vec![(0, 99), (201, 299)],
                    master: NodeAddr::new("10.0.0.3", 7003),
                    master_id: Some("id-7003".into()),
                    replicas: vec![NodeAddr::new("10.0.0.1", 7001)],
                    loading_replicas: vec![],
                },
                ShardInfo {
                    slots: vec![(100, 200), (300, 300)],
                    master: NodeAddr::new("10.0.0.1", 7001),
                    master_id: Some("id-7001".into()),
                    replicas: vec![NodeAddr::new("10.0.0.2", 7002)],
                    loading_replicas: vec![],
                },
            ]
        );
        assert_eq!(topology.uncovered(), vec![(301, 16383)]);
    }

    #[test]
    fn malformed_replies_are_errors() {
        let queried = local(7000);
        let int = OwnedFrame::Integer;
        let master = || shard_node("10.0.0.1", 7001, "master", "online");
        let bad_shards = [
            OwnedFrame::Error("ERR unknown subcommand 'shards'. Try CLUSTER HELP.".into()),
            int(1),
            OwnedFrame::Null,
            bulk("x"),
            array(vec![int(1)]),
            array(vec![array(vec![bulk("slots")])]),
            array(vec![fields(&[("nodes", array(vec![master()]))])]),
            array(vec![fields(&[("slots", array(vec![int(0), int(16383)]))])]),
            shards_reply(vec![(vec![0], vec![master()])]),
            shards_reply(vec![(vec![0, 16384], vec![master()])]),
            shards_reply(vec![(vec![-1, 5], vec![master()])]),
            shards_reply(vec![(vec![10, 5], vec![master()])]),
            shards_reply(vec![(vec![0, 16383], vec![int(5)])]),
            shards_reply(vec![(
                vec![0, 16383],
                vec![fields(&[("ip", bulk("10.0.0.1"))])],
            )]),
            array(vec![fields(&[
                ("slots", array(vec![int(0), int(1)])),
                ("nodes", int(3)),
            ])]),
            array(vec![fields(&[
                ("slots", bulk("0-16383")),
                ("nodes", array(vec![master()])),
            ])]),
        ];
        for reply in &bad_shards {
            let err = parse_cluster_shards(reply, &queried).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("CLUSTER SHARDS from 127.0.0.1:7000: "),
                "{err}"
            );
        }
        let err = parse_cluster_shards(&bad_shards[0], &queried).unwrap_err();
        assert!(err.to_string().contains("unknown subcommand"), "{err}");
        let err = parse_cluster_shards(&bad_shards[9], &queried).unwrap_err();
        assert_eq!(
            err.to_string(),
            "CLUSTER SHARDS from 127.0.0.1:7000: shard 0: slots: slot 16384 out of range"
        );

        let node = || slots_node(bulk("10.0.0.1"), 7001, None);
        let bad_slots = [
            OwnedFrame::Error("ERR This instance has cluster support disabled".into()),
            int(1),
            array(vec![int(1)]),
            array(vec![array(vec![int(0), int(1)])]),
            array(vec![array(vec![int(0), int(16384), node()])]),
            array(vec![array(vec![int(5), int(1), node()])]),
            array(vec![array(vec![bulk("a"), int(1), node()])]),
            array(vec![array(vec![int(0), int(1), int(7)])]),
            array(vec![array(vec![
                int(0),
                int(1),
                array(vec![bulk("10.0.0.1")]),
            ])]),
            array(vec![array(vec![
                int(0),
                int(1),
                array(vec![bulk("10.0.0.1"), int(70000)]),
            ])]),
            array(vec![array(vec![
                int(0),
                int(1),
                array(vec![bulk("10.0.0.1"), int(0)]),
            ])]),
            array(vec![array(vec![int(0), int(1), node(), int(3)])]),
            array(vec![array(vec![
                int(0),
                int(1),
                slots_node(bulk("h"), 1, Some(array(vec![bulk("ip")]))),
            ])]),
        ];
        for reply in &bad_slots {
            let err = parse_cluster_slots(reply, &queried).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("CLUSTER SLOTS from 127.0.0.1:7000: "),
                "{err}"
            );
        }
    }

    #[test]
    fn empty_replies() {
        let empty = array(vec![]);
        for topology in [
            parse_cluster_shards(&empty, &local(7000)).unwrap(),
            parse_cluster_slots(&empty, &local(7000)).unwrap(),
        ] {
            assert_eq!(topology.shards, vec![]);
            assert_eq!(topology.uncovered(), vec![(0, 16383)]);
            assert_eq!(format_slot_ranges(&topology.uncovered()), "0-16383");
        }
    }

    #[test]
    fn uncovered_tolerates_hand_built_ranges() {
        let mut topology = Topology {
            shards: vec![shard(&[(16000, 20000), (10, 5), (0, 0)], 7000, "x", &[])],
        };
        assert_eq!(topology.uncovered(), vec![(1, 15999)]);
        topology.shards[0].slots = vec![(0, 8191), (8192, 16383)];
        assert!(topology.covers_all());
        topology.shards[0].slots = vec![(1, 16382)];
        assert_eq!(topology.uncovered(), vec![(0, 0), (16383, 16383)]);
        assert_eq!(format_slot_ranges(&topology.uncovered()), "0, 16383");
    }

    /// Every sub-frame of every fixture replaced, one at a time, by odd values:
    /// the parsers answer (Ok or Err) and never panic.
    #[test]
    fn mutated_fixtures_never_panic() {
        let fixtures: [&[u8]; 10] = [
            include_bytes!("fixtures/healthy_shards.resp"),
            include_bytes!("fixtures/healthy_slots.resp"),
            include_bytes!("fixtures/prefhost_shards.resp"),
            include_bytes!("fixtures/prefhost_slots.resp"),
            include_bytes!("fixtures/unknownep_slots.resp"),
            include_bytes!("fixtures/failover_shards.resp"),
            include_bytes!("fixtures/resharded_slots.resp"),
            include_bytes!("fixtures/shard_down_shards.resp"),
            include_bytes!("fixtures/unassigned_slots.resp"),
            include_bytes!("fixtures/hostnames_slots.resp"),
        ];
        let replacements = [
            OwnedFrame::Null,
            OwnedFrame::Integer(-1),
            OwnedFrame::Integer(i64::MAX),
            OwnedFrame::Integer(16384),
            bulk(""),
            bulk("?"),
            OwnedFrame::BulkString(vec![0xff, 0xfe]),
            OwnedFrame::Error("ERR".into()),
            array(vec![]),
            array(vec![bulk("slots")]),
        ];
        fn count(frame: &OwnedFrame) -> usize {
            match frame {
                OwnedFrame::Array(items) => 1 + items.iter().map(count).sum::<usize>(),
                _ => 1,
            }
        }
        fn replace(frame: &mut OwnedFrame, index: &mut usize, with: &OwnedFrame) {
            if *index == 0 {
                *frame = with.clone();
                *index = usize::MAX;
                return;
            }
            *index -= 1;
            if let OwnedFrame::Array(items) = frame {
                for item in items {
                    if *index == usize::MAX {
                        return;
                    }
                    replace(item, index, with);
                }
            }
        }
        let queried = NodeAddr::parse("[::1]:7000").unwrap();
        let mut parsed = 0;
        for bytes in fixtures {
            let original = decode(bytes);
            for at in 0..count(&original) {
                for with in &replacements {
                    let mut frame = original.clone();
                    replace(&mut frame, &mut at.clone(), with);
                    let _ = parse_cluster_shards(&frame, &queried);
                    let _ = parse_cluster_slots(&frame, &queried);
                    parsed += 1;
                }
            }
        }
        assert!(parsed > 5_000, "{parsed}");
    }
}
