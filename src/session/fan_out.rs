//! Cluster-wide commands: sent to every master (`CONFIG SET` and `CONFIG RESETSTAT`:
//! every node), the replies merged into the one reply a standalone server gives
//! ([`Merge`]); `SCAN` walks the masters one at a time behind one cursor.

use super::Session;
use crate::backend::Target;
use crate::command::FanOut;
use crate::dispatch::merge::{Merge, ScanCursor};
use crate::dispatch::plan::refusal;
use crate::dispatch::Worker;
use crate::protocol::reply::encode_command;
use crate::protocol::scan::Request;

impl Session {
    /// Send a cluster-wide command to every node it concerns, its replies merged.
    pub(super) fn fan_out(&mut self, w: &mut Worker, request: Request, kind: FanOut) {
        if kind == FanOut::Scan {
            return self.scan(w, &request);
        }
        if kind == FanOut::ScriptLoad {
            self.shared.scripts.remember(request.arg(2));
        }
        let replicas = matches!(kind, FanOut::ConfigSet | FanOut::ConfigResetStat);
        if replicas && !self.shared.config.config_commands {
            let name = if kind == FanOut::ConfigSet {
                "config|set"
            } else {
                "config|resetstat"
            };
            let text = refusal(
                name,
                "disabled by cluster.config_commands in slotgate's configuration",
            );
            return self.push_error(&text);
        }
        let mut nodes = w.every_node(replicas);
        let merge = match kind {
            FanOut::DbSize | FanOut::PubSubNumPat | FanOut::SlowlogLen | FanOut::LatencyReset => {
                Merge::Sum
            }
            FanOut::Keys => Merge::Concat,
            FanOut::FlushAll
            | FanOut::FlushDb
            | FanOut::ScriptFlush
            | FanOut::FunctionDelete
            | FanOut::FunctionFlush
            | FanOut::FunctionRestore
            | FanOut::MemoryPurge
            | FanOut::SlowlogReset
            | FanOut::ConfigSet
            | FanOut::ConfigResetStat => Merge::AllOk,
            FanOut::RandomKey => {
                // Start at a different master each time, so every master's keys come up.
                if !nodes.is_empty() {
                    let start = (self.id.0 as usize + self.front_seq as usize) % nodes.len();
                    nodes.rotate_left(start);
                }
                Merge::FirstNonNull
            }
            FanOut::ScriptLoad | FanOut::FunctionLoad => Merge::Same,
            FanOut::ScriptExists => Merge::AllOnes,
            FanOut::ScriptKill | FanOut::FunctionKill => Merge::AnyOk,
            FanOut::PubSubShardChannels | FanOut::PubSubChannels => Merge::Union,
            FanOut::PubSubShardNumSub | FanOut::PubSubNumSub => Merge::NumSub,
            FanOut::SlowlogGet => Merge::SlowlogGet {
                count: slowlog_count(&request),
                nodes: nodes.iter().map(|(_, addr)| addr.clone()).collect(),
            },
            FanOut::LatencyEntries => Merge::Tagged {
                nodes: nodes.iter().map(|(_, addr)| addr.clone()).collect(),
            },
            FanOut::LatencyText => Merge::Texts {
                nodes: nodes.iter().map(|(_, addr)| addr.clone()).collect(),
            },
            FanOut::Scan => unreachable!("SCAN is served above"),
        };
        let bytes = request.into_raw();
        let parts = nodes
            .into_iter()
            .map(|(target, _)| (bytes.clone(), target))
            .collect();
        self.gather(w, merge, parts);
    }

    /// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`: the masters one after
    /// another, in slot-table order. The client's cursor says which master and where in
    /// it ([`ScanCursor`]), and the topology the scan started on: when that changed (a
    /// slot moved or a failover), the scan starts over at the first master, so a key
    /// that exists throughout is returned at least once, as Redis promises.
    fn scan(&mut self, w: &mut Worker, request: &Request) {
        let cursor = match ScanCursor::decode(request.arg(1)) {
            Ok(cursor) => cursor,
            Err(text) => return self.push_error(text),
        };
        let (shards, fingerprint) = w.shards_and_fingerprint();
        if shards == 0 {
            return self.gather(w, Merge::Sum, Vec::new());
        }
        let cursor = if cursor != ScanCursor::START
            && (cursor.fingerprint != fingerprint || cursor.shard as usize >= shards)
        {
            tracing::debug!(
                client = self.id.0,
                "SCAN: the topology changed; starting over"
            );
            ScanCursor::START
        } else {
            cursor
        };
        let mut node_cursor = itoa::Buffer::new();
        let node_cursor = node_cursor.format(cursor.node).as_bytes();
        let args: Vec<&[u8]> = (request.args().enumerate())
            .map(|(i, arg)| if i == 1 { node_cursor } else { arg })
            .collect();
        let bytes = encode_command(&args).freeze();
        let merge = Merge::Scan {
            shard: cursor.shard,
            shards: shards as u16,
            fingerprint,
        };
        self.gather(w, merge, vec![(bytes, Target::Shard(cursor.shard))]);
    }
}

/// `SLOWLOG GET [count]`'s count, when it is a number (the nodes check it).
fn slowlog_count(request: &Request) -> Option<i64> {
    if request.argc() < 3 {
        return None;
    }
    std::str::from_utf8(request.arg(2)).ok()?.parse().ok()
}
