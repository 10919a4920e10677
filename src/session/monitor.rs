//! `MONITOR` at the proxy: every request any client of this slotgate sends, whichever
//! worker serves it, written to each monitoring client as Redis writes it
//! (`+1700000000.123456 [0 127.0.0.1:5555] "SET" "k" "v"`).
//!
//! A session feeding a request formats its line and posts it to every worker with a
//! monitoring client ([`crate::clients::ClientRegistry::feed`]); each such worker's
//! event loop hands what it got in one turn to its monitors as one frame, in the order
//! fed. With no monitor, a request pays one relaxed load. A monitor that does not read
//! holds its lines like any reply: past `limits.max_output_buffer` it is closed.

use std::time::{SystemTime, UNIX_EPOCH};

use super::Session;
use crate::clients::{monitor_line, redacted};
use crate::command::{classify, flags, Local};
use crate::dispatch::plan::{plan, Plan};
use crate::protocol::scan::Request;

impl Session {
    /// `MONITOR`: from now on this client gets a line for every request. A second
    /// `MONITOR` gets no reply, as in Redis.
    pub(super) fn monitor(&mut self) {
        let Some(handle) = &mut self.client.handle else {
            return self.push_error("ERR slotgate: MONITOR needs a registered client");
        };
        if handle.is_monitoring() {
            return;
        }
        handle.set_monitoring(true);
        self.client.special = true;
        self.push_local(|w| w.ok())
    }

    /// Whether this client monitors and `request` is one Redis refuses a monitor (it
    /// reads or writes keys): answered here.
    pub(super) fn monitor_refuses(&mut self, request: &Request) -> bool {
        let monitoring = self
            .client
            .handle
            .as_ref()
            .is_some_and(|h| h.is_monitoring());
        if !monitoring {
            return false;
        }
        let keyspace =
            classify(request).is_ok_and(|c| c.spec.flags & (flags::READONLY | flags::WRITE) != 0);
        if keyspace {
            self.push_error("ERR Replica can't interact with the keyspace");
        }
        keyspace
    }

    /// Post `request`'s line to the monitors, if Redis would show it: not an
    /// administrative command (`CLIENT LIST`, `CONFIG`, `MONITOR`, ...), not one refused
    /// before it runs (unknown, wrong arity, `CROSSSLOT`, refused by slotgate), not
    /// `QUIT` (Redis 7.0 runs it before any command). Passwords are redacted.
    pub(super) fn feed_monitors(&self, worker: usize, request: &Request) {
        let shown = match plan(request, self.shared.learned.get(), self.id.0 as u32) {
            Ok(Plan::Refuse { .. } | Plan::Local(Local::Quit)) | Err(_) => false,
            // A learned command is not in the table, and not administrative.
            Ok(_) => classify(request).map_or(true, |c| !c.spec.has_flag(flags::ADMIN)),
        };
        if !shown {
            return;
        }
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let args: Vec<&[u8]> = request.args().collect();
        let line = monitor_line(micros, &self.peer, args.iter().copied(), redacted(&args));
        self.shared.clients.feed(&line, worker);
    }
}
