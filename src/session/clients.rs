//! The session's side of the client registry ([`crate::clients`]): what it publishes
//! about itself, and the `CLIENT` subcommands that look at every client of this
//! slotgate (`LIST`, `INFO`, `KILL`) or change how this one is served (`REPLY`,
//! `NO-EVICT`, `NO-TOUCH`).
//!
//! Per request the session pays nothing here unless [`ClientState::special`] is set
//! (monitoring, or replies off or skipped); per read it notes the last command of the
//! read (a table lookup unless it is the command noted before) and stores it with a
//! coarse time, one relaxed store.

use super::Session;
use crate::clients::{
    flags, Buffers, ClientHandle, KillFilter, ListFilter, Names, NewClient, NO_COMMAND,
};
use crate::command::CommandSpec;
use crate::protocol::reply::Proto;
use crate::protocol::scan::Request;

/// A session's registration and the client state the registry's commands set.
pub(super) struct ClientState {
    /// Registered when the event loop accepts the client ([`Session::join`]); a
    /// session made by a unit test has none.
    pub(super) handle: Option<ClientHandle>,
    /// Each request needs a look before it is handled ([`Session::screen`]):
    /// monitoring, or replies off or to be skipped.
    pub(super) special: bool,
    /// `CLIENT REPLY OFF`.
    reply_off: bool,
    /// `CLIENT REPLY SKIP`: the next request's reply is not written.
    skip_next: bool,
    /// Places whose replies are not written, as `start..end` sequence numbers in order
    /// (`end` is `u64::MAX` while replies are off); a few at most.
    quiet: Vec<(u64, u64)>,
    /// `CLIENT NO-EVICT on`: not closed for `limits.max_output_total`.
    no_evict: bool,
    /// Table position of the last command of the current read ([`NO_COMMAND`]: none).
    last_command: u16,
    /// The last command noted (its position is `noted_position`): a request of the
    /// same plain command (a run of GETs) is known without a table lookup.
    noted: Option<&'static CommandSpec>,
    noted_position: u16,
}

impl Default for ClientState {
    fn default() -> ClientState {
        ClientState {
            handle: None,
            special: false,
            reply_off: false,
            skip_next: false,
            quiet: Vec::new(),
            no_evict: false,
            last_command: NO_COMMAND,
            noted: None,
            noted_position: NO_COMMAND,
        }
    }
}

impl ClientState {
    fn update_special(&mut self) {
        let monitoring = self.handle.as_ref().is_some_and(|h| h.is_monitoring());
        self.special = monitoring || self.reply_off || self.skip_next;
    }

    /// Whether the reply in place `seq` is not to be written; forgets quiet ranges
    /// before it.
    #[inline(always)]
    pub(super) fn is_quiet(&mut self, seq: u64) -> bool {
        !self.quiet.is_empty() && self.is_quiet_now(seq)
    }

    #[cold]
    #[inline(never)]
    fn is_quiet_now(&mut self, seq: u64) -> bool {
        let done = self
            .quiet
            .iter()
            .take_while(|&&(_, end)| end <= seq)
            .count();
        self.quiet.drain(..done);
        self.quiet.first().is_some_and(|&(start, _)| start <= seq)
    }

    /// Replies are written again from place `seq` on (`CLIENT REPLY ON`, `RESET`).
    fn replies_on(&mut self, seq: u64) {
        self.reply_off = false;
        self.skip_next = false;
        for range in self.quiet.iter_mut() {
            range.1 = range.1.min(seq);
        }
        self.quiet.retain(|&(start, end)| start < end);
        self.update_special();
    }
}

impl Session {
    /// Register with the client registry: called by the event loop once it has
    /// accepted the client, on worker `worker`.
    pub fn join(&mut self, worker: usize) {
        let handle = self.shared.clients.join(NewClient {
            id: self.id,
            worker,
            key: self.key,
            addr: self.peer,
            laddr: self.local_addr,
            fd: self.stream.fd(),
        });
        self.client.handle = Some(handle);
    }

    /// `CLIENT KILL` chose this client: it ends now.
    #[inline(always)]
    pub(super) fn killed(&self) -> bool {
        self.client.handle.as_ref().is_some_and(|h| h.killed())
    }

    /// `request` ended a read: remember its command for `CLIENT LIST`'s `cmd`.
    #[inline]
    pub(super) fn note_command(&mut self, request: &Request) {
        match self.client.noted {
            Some(spec)
                if !spec.container
                    && request.argc() > 0
                    && spec.name.as_bytes().eq_ignore_ascii_case(request.arg(0)) =>
            {
                self.client.last_command = self.client.noted_position;
            }
            _ => self.note_new_command(request),
        }
    }

    /// [`Session::note_command`] for another command than the last: looked up.
    #[cold]
    #[inline(never)]
    fn note_new_command(&mut self, request: &Request) {
        let Some(position) = crate::command::position(request) else {
            return;
        };
        if let Some(spec) = crate::command::at_position(position) {
            self.client.last_command = position;
            self.client.noted = Some(spec);
            self.client.noted_position = position;
        }
    }

    /// The client sent something: publish when, and its last command.
    #[inline(always)]
    pub(super) fn after_read(&mut self) {
        if let Some(handle) = &self.client.handle {
            handle.touched(self.client.last_command);
            self.client.last_command = NO_COMMAND;
        }
    }

    /// Publish the buffers for other workers' `CLIENT LIST` (each watchdog tick).
    pub fn publish_buffers(&self) {
        if let Some(handle) = &self.client.handle {
            handle.publish(self.buffers());
        }
    }

    /// `CLIENT NO-EVICT on`: spared when all clients together hold too much.
    pub fn no_evict(&self) -> bool {
        self.client.no_evict
    }

    /// The client's buffers now.
    fn buffers(&self) -> Buffers {
        let mut flags = 0;
        if self.blocked_at.is_some() {
            flags |= flags::BLOCKED;
        }
        if self.closing {
            flags |= flags::CLOSING;
        }
        Buffers {
            query: self.rbuf.len() as u64,
            read_capacity: self.rbuf.capacity() as u64,
            held: self.held as u64,
            replies: (self.places.len() - self.pending + self.unwritten.len() + self.pushed.len())
                as u64,
            flags,
        }
    }

    /// The sequence number the next request's place gets.
    pub(super) fn next_seq(&self) -> u64 {
        self.front_seq + self.places.len() as u64
    }

    /// Look at `request` before it is handled, when [`ClientState::special`] is set or
    /// a client monitors: feed the monitors, keep a monitor to what Redis lets it send,
    /// skip the reply after `CLIENT REPLY SKIP`. True when the request was answered
    /// here.
    #[cold]
    #[inline(never)]
    pub(super) fn screen(&mut self, request: &Request) -> bool {
        if self.client.special {
            if self.client.skip_next {
                self.client.skip_next = false;
                let seq = self.next_seq();
                self.client.quiet.push((seq, seq + 1));
                self.client.update_special();
            }
            if self.monitor_refuses(request) {
                return true;
            }
        }
        if self.shared.clients.monitored() {
            self.feed_monitors(request);
        }
        false
    }

    /// Publish the name, library and protocol (after `CLIENT SETNAME`/`SETINFO`,
    /// `HELLO`, `RESET`).
    pub(super) fn publish_names(&self) {
        if let Some(handle) = &self.client.handle {
            handle.set_names(Names {
                name: self.name.clone(),
                lib_name: self.lib_name.clone(),
                lib_ver: self.lib_ver.clone(),
                user: self.user_shown(),
            });
            handle.set_resp(if self.proto == Proto::Resp3 { 3 } else { 2 });
        }
    }

    /// `RESET`: replies on, not monitoring, evictable (the reply to `RESET` itself is
    /// written).
    pub(super) fn reset_client_state(&mut self) {
        let seq = self.next_seq();
        self.client.no_evict = false;
        if let Some(handle) = &self.client.handle {
            handle.set_monitoring(false);
            handle.set_flag(flags::NO_EVICT, false);
        }
        self.client.replies_on(seq);
    }

    /// `CLIENT INFO`.
    pub(super) fn client_info(&mut self, request: &Request) {
        let line = self.own_line(request);
        self.push_local(|w| w.verbatim(&line))
    }

    /// This client's `CLIENT LIST` line, as it is now, running `request`.
    fn own_line(&self, request: &Request) -> String {
        let Some(handle) = &self.client.handle else {
            return String::new();
        };
        let command = crate::command::position(request).unwrap_or(NO_COMMAND);
        handle
            .entry()
            .line(handle.registry(), Some((self.buffers(), command)))
    }

    /// `CLIENT LIST [TYPE type | ID id ...]`: every client of every worker, in
    /// connection order.
    pub(super) fn client_list(&mut self, request: &Request) {
        let args: Vec<&[u8]> = request.args().skip(2).collect();
        let filter = match ListFilter::parse(&args) {
            Ok(filter) => filter,
            Err(e) => return self.push_error(&e),
        };
        let mut text = String::new();
        if let Some(handle) = &self.client.handle {
            for entry in handle.registry().all() {
                if !filter.matches(&entry) {
                    continue;
                }
                if entry.id == self.id {
                    text.push_str(&self.own_line(request));
                } else {
                    text.push_str(&entry.line(handle.registry(), None));
                }
            }
        }
        self.push_local(|w| w.verbatim(&text))
    }

    /// `CLIENT KILL addr:port` (`+OK` or `No such client`) or `CLIENT KILL <filter>
    /// <value> ...` (how many). Clients of other workers are closed by their worker
    /// at once (it is woken); this one, when it matches and `SKIPME no`, once its reply
    /// is written.
    pub(super) fn client_kill(&mut self, request: &Request) {
        let args: Vec<&[u8]> = request.args().skip(2).collect();
        let users = &self.config.users;
        let known = |user: &[u8]| match users.enforced() {
            true => users.get(user).is_some(),
            false => user == b"default",
        };
        let filter = match KillFilter::parse_with_users(&args, &known) {
            Ok(filter) => filter,
            Err(e) => return self.push_error(&e),
        };
        let Some(handle) = &self.client.handle else {
            return self.push_error("ERR No such client");
        };
        let (killed, self_too) = handle.registry().kill(&filter, self.id);
        if filter.old_form {
            if killed == 0 {
                self.push_error("ERR No such client");
            } else {
                self.push_local(|w| w.ok());
            }
        } else {
            self.push_local(|w| w.int(killed as i64));
        }
        if self_too {
            self.stop();
        }
    }

    /// `CLIENT REPLY ON|OFF|SKIP`: the replies of `OFF` and `SKIP` (and of the request
    /// after `SKIP`, and of everything after `OFF` until `ON`) are not written.
    pub(super) fn client_reply(&mut self, request: &Request) {
        let seq = self.next_seq();
        let mode = request.arg(2);
        if mode.eq_ignore_ascii_case(b"on") {
            self.client.replies_on(seq);
        } else if mode.eq_ignore_ascii_case(b"off") {
            if !self.client.reply_off {
                self.client.quiet.push((seq, u64::MAX));
                self.client.reply_off = true;
            }
        } else if mode.eq_ignore_ascii_case(b"skip") {
            if !self.client.reply_off {
                self.client.quiet.push((seq, seq + 1));
                self.client.skip_next = true;
            }
        } else {
            return self.push_error("ERR syntax error");
        }
        self.client.update_special();
        self.push_local(|w| w.ok())
    }

    /// `CLIENT NO-EVICT on|off`: a client with it on is not closed when all clients
    /// together hold more than `limits.max_output_total` (its own
    /// `limits.max_output_buffer` still applies).
    pub(super) fn client_no_evict(&mut self, request: &Request) {
        let Some(on) = on_off(request.arg(2)) else {
            return self.push_error("ERR syntax error");
        };
        self.client.no_evict = on;
        if let Some(handle) = &self.client.handle {
            handle.set_flag(flags::NO_EVICT, on);
        }
        self.push_local(|w| w.ok())
    }

    /// `CLIENT NO-TOUCH on|off`: slotgate cannot keep its reads from touching keys (its
    /// node connections are shared by clients), so `on` is refused; `off` is what
    /// every client has.
    pub(super) fn client_no_touch(&mut self, request: &Request) {
        match on_off(request.arg(2)) {
            Some(false) => self.push_local(|w| w.ok()),
            Some(true) => self.push_error(
                "ERR 'CLIENT NO-TOUCH' is not supported: the proxy shares backend connections \
                 between clients, so it cannot keep one client's reads from touching keys",
            ),
            None => self.push_error("ERR syntax error"),
        }
    }
}

fn on_off(arg: &[u8]) -> Option<bool> {
    if arg.eq_ignore_ascii_case(b"on") {
        Some(true)
    } else if arg.eq_ignore_ascii_case(b"off") {
        Some(false)
    } else {
        None
    }
}
