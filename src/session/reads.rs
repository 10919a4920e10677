//! A client's reads at replicas: where its reads go (`read_from`, switched per client
//! by `READONLY` and `READWRITE`), and the requests that carry that choice to the
//! worker ([`crate::dispatch::reads`] picks the node). Only a read sent on its own or
//! split per slot (`MGET`) may go to a replica: nothing inside a transaction (nor after
//! `WATCH`: an optimistic lock checked against a stale read is no lock), no blocking
//! command, no script but `EVAL_RO`/`EVALSHA_RO`/`FCALL_RO` (their command says they
//! only read).

use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;

use super::Session;
use crate::backend::Target;
use crate::clients::flags;
use crate::config::ReadFrom;
use crate::dispatch::Worker;
use crate::protocol::scan::Request;

impl Session {
    /// `READONLY`: this client's reads go to replicas (as `read_from = "replica"`).
    pub(super) fn read_only(&mut self) {
        self.reads = ReadFrom::Replica;
        self.set_readonly_flag(true);
        if !self.shared.replica_reads_asked.swap(true, Relaxed) {
            // The replica poller waits for this when `read_from` is `master`.
            self.shared.replica_reads_wanted.notify_one();
        }
        self.push_local(|w| w.ok())
    }

    /// `READWRITE` (and `RESET`): back to the configured `read_from`.
    pub(super) fn read_write(&mut self) {
        self.reads = self.config.reads.read_from;
        self.set_readonly_flag(false);
    }

    /// `CLIENT LIST`'s `r`: the client asked for `READONLY`.
    fn set_readonly_flag(&self, on: bool) {
        if let Some(handle) = &self.client.handle {
            handle.set_flag(flags::READONLY, on);
        }
    }

    /// Where this read goes, `reads` not being [`ReadFrom::Master`]: its mode, or the
    /// master inside a transaction (or after `WATCH`).
    fn read_mode(&self) -> ReadFrom {
        if self.txn.is_some() {
            ReadFrom::Master
        } else {
            self.reads
        }
    }

    /// [`Session::forward`] for a read of a client that reads from replicas.
    #[cold]
    #[inline(never)]
    pub(super) fn forward_read(&mut self, w: &mut Worker, request: Request, target: Target) {
        let mut req = self.whole(request, target);
        req.reads = self.read_mode();
        self.submit(w, req);
    }

    /// A read split per slot (`MGET`, `EXISTS`) of a client that reads from replicas:
    /// each part may go to a replica of its slot.
    #[cold]
    #[inline(never)]
    pub(super) fn gather_read(
        &mut self,
        w: &mut Worker,
        combine: crate::dispatch::merge::Merge,
        parts: Vec<(Bytes, Target)>,
    ) {
        let reads = self.read_mode();
        self.gather_as(w, combine, parts, reads);
    }
}
