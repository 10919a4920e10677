//! PLACEHOLDER (replaced by the merge helper's module; never lands on main as is).
use crate::backend::ReplyResult;
use crate::protocol::reply::Proto;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merge {
    Interleave(Vec<u16>),
    Sum,
    AllOk,
    Concat,
    Union,
    AllOnes,
    Same,
    FirstNonNull,
    AnyOk,
    NumSub,
    SlowlogGet {
        count: Option<i64>,
        nodes: Vec<String>,
    },
    Scan {
        shard: u16,
        shards: u16,
        fingerprint: u8,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanCursor {
    pub shard: u16,
    pub node: u64,
    pub fingerprint: u8,
}

impl ScanCursor {
    pub const START: ScanCursor = ScanCursor {
        shard: 0,
        node: 0,
        fingerprint: 0,
    };
    pub fn encode(self) -> u64 {
        (self.node << 16) | ((self.fingerprint as u64) << 8) | self.shard as u64
    }
    pub fn decode(arg: &[u8]) -> Result<ScanCursor, &'static str> {
        let n: u64 = std::str::from_utf8(arg)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("ERR invalid cursor")?;
        Ok(ScanCursor {
            shard: (n & 0xff) as u16,
            node: n >> 16,
            fingerprint: ((n >> 8) & 0xff) as u8,
        })
    }
}

pub fn merge(_merge: &Merge, mut parts: Vec<ReplyResult>, _proto: Proto) -> ReplyResult {
    parts.swap_remove(0)
}
