//! Cluster-wide commands: sent to every master (`CONFIG SET` and `CONFIG RESETSTAT`:
//! every node), the replies merged into the one reply a standalone server gives
//! ([`Merge`]); `SCAN` walks the masters one at a time behind one cursor. Which nodes
//! and which merge is the command table's ([`FanOut::nodes`], [`FanOut::combine`]).

use super::Session;
use crate::backend::Target;
use crate::command::{Combine, FanOut, FanOutNodes};
use crate::dispatch::merge::{Merge, ScanCursor};
use crate::dispatch::plan::refusal;
use crate::dispatch::pubsub::Kind;
use crate::dispatch::Worker;
use crate::protocol::reply::encode_command;
use crate::protocol::scan::Request;

impl Session {
    /// Send a cluster-wide command to every node it concerns ([`FanOut::nodes`]), its
    /// replies merged as [`FanOut::combine`] says.
    pub(super) fn fan_out(&mut self, w: &mut Worker, request: Request, kind: FanOut) {
        if kind == FanOut::ScriptLoad {
            self.shared.scripts.remember(request.arg(2));
        }
        let replicas = match kind.nodes() {
            FanOutNodes::MastersInTurn => return self.scan(w, &request),
            FanOutNodes::Masters => false,
            FanOutNodes::MastersAndReplicas => true,
        };
        if replicas && !self.config.config_commands {
            let sub = String::from_utf8_lossy(request.arg(1)).to_lowercase();
            let text = refusal(
                &format!("config|{sub}"),
                "disabled by cluster.config_commands in slotgate's configuration",
            );
            return self.push_error(&text);
        }
        let mut nodes = w.every_node(replicas);
        let addrs = |nodes: &[(Target, String)]| nodes.iter().map(|(_, a)| a.clone()).collect();
        let merge = match kind.combine() {
            Combine::Sum => Merge::Sum,
            Combine::Concat => Merge::Concat,
            Combine::AllOk => Merge::AllOk,
            Combine::FirstNonNull => {
                // Start at a different master each time, so every master's keys come up.
                if !nodes.is_empty() {
                    let start = (self.id.0 as usize + self.front_seq as usize) % nodes.len();
                    nodes.rotate_left(start);
                }
                Merge::FirstNonNull
            }
            Combine::Same => Merge::Same,
            Combine::AllOnes => Merge::AllOnes,
            Combine::AnyOk => Merge::AnyOk,
            Combine::Union => Merge::Union,
            Combine::NumSub => {
                let hub = match kind {
                    FanOut::PubSubShardNumSub => Kind::Shard,
                    _ => Kind::Channel,
                };
                let channels: Vec<&[u8]> = request.args().skip(2).collect();
                Merge::NumSub(
                    self.shared
                        .clients
                        .subscriber_counts(hub.index(), &channels),
                )
            }
            Combine::NumPat => Merge::NumPat(self.shared.clients.pattern_counts()),
            Combine::SlowlogGet => Merge::SlowlogGet {
                count: slowlog_count(&request),
                nodes: addrs(&nodes),
            },
            Combine::Tagged => Merge::Tagged {
                nodes: addrs(&nodes),
            },
            Combine::Texts => Merge::Texts {
                nodes: addrs(&nodes),
            },
            Combine::LatencyHistogram => Merge::LatencyHistogram,
            Combine::FunctionStats => Merge::FunctionStats,
            Combine::Scan => return self.scan(w, &request),
        };
        let bytes = request.into_raw();
        let parts = nodes
            .into_iter()
            .map(|(target, _)| (bytes.clone(), target))
            .collect();
        self.gather(w, merge, parts);
    }

    /// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`: the masters one after
    /// another, in slot-table order (the walk), then again each master that imports a
    /// slot from a master walked after it (the rescans). The client's cursor says where
    /// ([`ScanCursor`]) and the slot ownership the scan started on: when that changed
    /// (a migration finished, a failover), the scan starts over at the first master.
    ///
    /// So a key that exists throughout the scan is returned at least once, as Redis
    /// promises, also while slots migrate: a key a migration moves from a master not
    /// walked yet to one walked already is found at the importer's rescan (it left the
    /// source before the source was walked, so it is at the importer by then); a
    /// migration that finishes mid-scan changes the ownership. What slotgate knows of
    /// migrations comes from its topology refresh (`cluster.refresh_interval_ms`).
    fn scan(&mut self, w: &mut Worker, request: &Request) {
        let cursor = match ScanCursor::decode(request.arg(1)) {
            Ok(cursor) => cursor,
            Err(text) => return self.push_error(text),
        };
        let view = w.scan_view();
        if view.shards == 0 {
            return self.gather(w, Merge::Sum, Vec::new());
        }
        if view.shards > usize::from(ScanCursor::SHARDS_MAX) {
            return self.push_error(&format!(
                "ERR slotgate: SCAN walks at most {} masters; the cluster has {}",
                ScanCursor::SHARDS_MAX,
                view.shards
            ));
        }
        let cursor = if cursor != ScanCursor::START
            && (cursor.fingerprint != view.fingerprint || cursor.shard as usize >= view.shards)
        {
            tracing::debug!(
                client = self.id.0,
                "SCAN: the topology changed; starting over"
            );
            ScanCursor::START
        } else {
            cursor
        };
        let at = ScanCursor {
            fingerprint: view.fingerprint,
            ..cursor
        };
        let next = if !at.rescan && usize::from(at.shard) + 1 < view.shards {
            Some(ScanCursor::shard_start(at.shard + 1, at.fingerprint, false))
        } else {
            (view.rescans.iter())
                .find(|&&shard| !at.rescan || shard > at.shard)
                .map(|&shard| ScanCursor::shard_start(shard, at.fingerprint, true))
        };
        let mut node_cursor = itoa::Buffer::new();
        let node_cursor = node_cursor.format(at.node).as_bytes();
        let args: Vec<&[u8]> = (request.args().enumerate())
            .map(|(i, arg)| if i == 1 { node_cursor } else { arg })
            .collect();
        let bytes = encode_command(&args).freeze();
        let merge = Merge::Scan { at, next };
        self.gather(w, merge, vec![(bytes, Target::Shard(at.shard))]);
    }
}

/// `SLOWLOG GET [count]`'s count, when it is a number (the nodes check it).
fn slowlog_count(request: &Request) -> Option<i64> {
    if request.argc() < 3 {
        return None;
    }
    std::str::from_utf8(request.arg(2)).ok()?.parse().ok()
}
