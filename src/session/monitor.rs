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
use crate::command::{flags, CommandSpec, Local, Route};
use crate::protocol::scan::Request;

impl Session {
    /// `MONITOR`: from now on this client gets a line for every request. A second
    /// `MONITOR` gets no reply, as in Redis.
    pub(super) fn monitor(&mut self) {
        let Some(handle) = &self.client.handle else {
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
            spec_of(request).is_some_and(|spec| spec.flags & (flags::READONLY | flags::WRITE) != 0);
        if keyspace {
            self.push_error("ERR Replica can't interact with the keyspace");
        }
        keyspace
    }

    /// Post `request`'s line to the monitors, if Redis would show it: not an
    /// administrative command (`CLIENT LIST`, `CONFIG`, `MONITOR`, ...), not one refused
    /// before it runs (unknown, wrong number of arguments, refused by slotgate), not
    /// `QUIT` (Redis 7.0 answers it before any command runs). Passwords are redacted.
    ///
    /// Judged from the table entry alone: `classify` and `plan` are called from one
    /// place each, so that the compiler inlines them into the request path.
    pub(super) fn feed_monitors(&self, request: &Request) {
        let shown = match spec_of(request) {
            Some(spec) => {
                let unknown_subcommand = spec.container && request.argc() >= 2;
                let refused = matches!(spec.route, Route::Refused(_) | Route::Local(Local::Quit));
                spec.arity_ok(request.argc())
                    && !unknown_subcommand
                    && !refused
                    && !spec.has_flag(flags::ADMIN)
            }
            None => self
                .shared
                .learned
                .get()
                .is_some_and(|l| request.argc() > 0 && l.get(request.arg(0)).is_some()),
        };
        if !shown {
            return;
        }
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let args: Vec<&[u8]> = request.args().collect();
        let line = monitor_line(micros, &self.peer, args.iter().copied(), redacted(&args));
        self.shared.clients.feed(&line);
    }
}

/// The table's entry for `request`'s command (its subcommand's, when known).
fn spec_of(request: &Request) -> Option<&'static CommandSpec> {
    crate::command::position(request).and_then(crate::command::at_position)
}
