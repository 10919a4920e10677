//! `CLIENT UNBLOCK id [TIMEOUT|ERROR]` of a client of this slotgate, on any worker.
//!
//! A client blocked through slotgate waits in a command on a node connection pinned to
//! it (a blocking command, `WAIT`, a step of a pop across slots). The session publishes
//! whether it is blocked in its registry entry when that changes (on the cold paths of
//! blocking commands only); `CLIENT UNBLOCK` answers `:1` when the client is blocked
//! and posts it to the client's worker, which asks the node to unblock the pinned
//! connection's own client (`CLIENT UNBLOCK <node's id> TIMEOUT|ERROR`, the id learned
//! with `CLIENT ID` when the connection opened). The node then answers the command as
//! Redis does (its null reply, what `WAIT` counted, or `-UNBLOCKED`), and the reply
//! reaches the client the usual way: nothing is popped that the client does not get,
//! since the connection is never closed under a reply on its way. A pop across slots
//! also ends at the step under way, even when that step's own short wait ran out first.
//!
//! A client unblocked at the very moment its command reaches the node (or while its
//! pinned connection is still connecting) is asked for again at each watchdog tick
//! (100 ms), a few times, while the command is on its way.

use super::Session;
use crate::clients::{ClientId, Unblock};
use crate::dispatch::Worker;
use crate::protocol::scan::{parse_int, Request};

/// `-UNBLOCKED`, as Redis words it.
pub(super) const UNBLOCKED: &str = "UNBLOCKED client unblocked via CLIENT UNBLOCK";

impl Session {
    /// `CLIENT UNBLOCK id [TIMEOUT|ERROR]`: `:1` when client `id` is blocked (it is
    /// unblocked), else `:0`; Redis's errors for a bad reason or id.
    pub(super) fn client_unblock(&mut self, request: &Request) {
        if request.argc() > 4 {
            let text = format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try CLIENT HELP.",
                String::from_utf8_lossy(request.arg(1))
            );
            return self.push_error(&text);
        }
        let how = match request.argc() {
            4 => match Unblock::parse(request.arg(3)) {
                Some(how) => how,
                None => {
                    return self.push_error("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
                }
            },
            _ => Unblock::Timeout,
        };
        let Some(id) = parse_int(request.arg(2)) else {
            return self.push_error("ERR value is not an integer or out of range");
        };
        let unblocked = match (&self.client.handle, u64::try_from(id)) {
            (Some(handle), Ok(id)) if id != self.id.0 => {
                handle.registry().unblock(ClientId(id), how)
            }
            _ => false,
        };
        self.push_local(|w| w.int(i64::from(unblocked)))
    }

    /// `CLIENT UNBLOCK` chose this client (through its worker's mail): the command it
    /// waits in is unblocked at its node. Nothing when it no longer waits.
    pub fn unblock(&mut self, w: &mut Worker, how: Unblock) {
        let Some(seq) = self.blocked_at else {
            return;
        };
        if self.on_held_connection() {
            // A transaction's request on its way: not a blocked client.
            return;
        }
        self.unblock_across(seq, how);
        tracing::debug!(client = self.id.0, ?how, "CLIENT UNBLOCK");
        w.unblock_pinned(self.key, self.id.0, seq, how);
    }

    /// Publish whether the client is blocked in a command (`CLIENT UNBLOCK` looks).
    pub(super) fn note_blocked(&self, on: bool) {
        if let Some(handle) = &self.client.handle {
            handle.set_blocked(on);
        }
    }
}
