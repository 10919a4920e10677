//! The log of slot ownership: every change of a slot range's owner, with the old and
//! the new owner, at info.

use std::sync::Arc;

use crate::cluster::table::SlotTable;
use crate::cluster::NodeAddr;

/// Compares each table the refresher ends with against the one it ended with before,
/// not against the published table of the moment, which `MOVED` patches change slot by
/// slot in between: a migration of many slots then reads as a few lines of ranges.
pub struct OwnerLog {
    last: Arc<SlotTable>,
}

impl OwnerLog {
    pub fn new(table: Arc<SlotTable>) -> OwnerLog {
        OwnerLog { last: table }
    }

    /// Log what changed owner since the last call, one line per old and new owner.
    pub fn update(&mut self, now: Arc<SlotTable>) {
        if now.generation() == self.last.generation() {
            return;
        }
        for change in self.last.owner_changes(&now) {
            tracing::info!(
                slots = %ranges(&change.slots),
                from = %owner(change.from.as_ref()),
                to = %owner(change.to.as_ref()),
                "slot owner changed"
            );
        }
        self.last = now;
    }
}

/// `0-99,5000`: no spaces, so the value reads as one word in the text log.
fn ranges(slots: &[(u16, u16)]) -> String {
    let parts: Vec<String> = slots
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    parts.join(",")
}

fn owner(node: Option<&NodeAddr>) -> &str {
    node.map_or("none", NodeAddr::as_str)
}
