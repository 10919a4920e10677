//! The router: where a request goes, and the one place that decides what happens after
//! a node's reply — deliver it, follow a redirect, or retry after a refresh.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::sync::{watch, Notify};

use crate::admin::{Metrics, METRICS};
use crate::backend::{BackendError, BackendRequest, Node, NodeRegistry, Target};
use crate::cluster::table::SlotTable;
use crate::cluster::NodeAddr;
use crate::config::Config;
use crate::protocol::redirect::{parse_redirect, Redirect};
use crate::slot::Slot;

/// Shared by every session and connection task.
pub struct Router {
    pub config: Config,
    /// The published slot table: readers `load()` without locking; the refresher and
    /// `MOVED` handling swap in a new table.
    pub table: ArcSwap<SlotTable>,
    pub registry: NodeRegistry,
    /// Wakes the refresher. Anyone may notify; notifications while a refresh runs merge
    /// into one more refresh.
    pub refresh_wanted: Notify,
    /// Counts finished refreshes (successful or not). The refresher sends; requests
    /// waiting to be retried after a refresh receive.
    pub refreshed: watch::Sender<u64>,
    /// `redis_version` of the cluster's nodes, learned at start-up (for `HELLO`/`INFO`).
    pub server_version: arc_swap::ArcSwapOption<String>,
}

impl Router {
    pub fn new(config: Config) -> Arc<Router> {
        Arc::new(Router {
            config,
            table: ArcSwap::from_pointee(SlotTable::empty()),
            registry: NodeRegistry::default(),
            refresh_wanted: Notify::new(),
            refreshed: watch::Sender::new(0),
            server_version: arc_swap::ArcSwapOption::empty(),
        })
    }

    pub fn node(self: &Arc<Self>, addr: &NodeAddr) -> Arc<Node> {
        self.registry.get_or_create(addr, self)
    }

    /// Send a request to the node its target names in the current table.
    pub fn dispatch(self: &Arc<Self>, req: BackendRequest) {
        let table = self.table.load();
        let node = match req.target {
            Target::Slot(slot) => table.master(slot),
            Target::Any => table.any_master(req.conn_hint as usize),
        };
        match node {
            Some(node) => node.send(req),
            None => {
                let err = match req.target {
                    Target::Slot(slot) => BackendError::SlotNotServed(slot),
                    Target::Any => BackendError::NoNodes,
                };
                self.retry_after_refresh(req, err, None);
            }
        }
    }

    /// The one decision point for a node's reply to `req`.
    pub fn complete(self: &Arc<Self>, req: BackendRequest, frame: Bytes, from: &NodeAddr) {
        let redirect = if frame.first() == Some(&b'-') {
            parse_redirect(&frame, from)
        } else {
            None
        };
        let Some(redirect) = redirect else {
            req.reply.send(Ok(frame));
            return;
        };
        match redirect {
            Redirect::Moved { slot, addr } => {
                Metrics::inc(&METRICS.redirects_moved);
                let Some(mut req) = self.take_redirect(req, &frame) else {
                    return;
                };
                tracing::debug!(%slot, from = %from, to = %addr, "MOVED");
                req.asking = false;
                let node = self.node(&addr);
                // Resend before patching the table: a later request from the same
                // client, routed by the patched table, then queues behind this one on
                // the same connection and cannot overtake it.
                node.send(req);
                self.patch_slot(slot, node);
                self.refresh_wanted.notify_one();
            }
            Redirect::Ask { slot, addr } => {
                Metrics::inc(&METRICS.redirects_ask);
                let Some(mut req) = self.take_redirect(req, &frame) else {
                    return;
                };
                tracing::debug!(%slot, from = %from, to = %addr, "ASK");
                req.asking = true;
                self.node(&addr).send(req);
            }
            Redirect::TryAgain | Redirect::Loading => {
                let mut req = req;
                Metrics::inc(&METRICS.retries_tryagain);
                if !self.within_deadline(&mut req) || req.no_retry {
                    req.reply.send(Ok(frame));
                    return;
                }
                req.retries += 1;
                let delay = Duration::from_millis(5 * u64::from(req.retries.min(20)));
                let router = self.clone();
                req.asking = false;
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    router.dispatch(req);
                });
            }
            Redirect::ClusterDown | Redirect::MasterDown => {
                Metrics::inc(&METRICS.retries_clusterdown);
                let err = BackendError::Lost {
                    addr: from.clone(),
                    reason: String::from_utf8_lossy(&frame[1..]).trim_end().to_string(),
                };
                self.retry_after_refresh(req, err, Some(frame));
            }
        }
    }

    /// A request that never reached its node (it could not be connected).
    pub fn unsent(self: &Arc<Self>, req: BackendRequest, err: BackendError) {
        Metrics::inc(&METRICS.retries_unreachable);
        self.retry_after_refresh(req, err, None);
    }

    /// Count a redirect against the budget; when it is spent, answer the client with an
    /// error and return `None`.
    fn take_redirect(&self, mut req: BackendRequest, frame: &Bytes) -> Option<BackendRequest> {
        req.redirects += 1;
        if req.redirects > self.config.redirect_budget || req.no_retry {
            let last = String::from_utf8_lossy(&frame[1..]).trim_end().to_string();
            tracing::warn!(%last, "redirect budget spent");
            req.reply.send(Err(BackendError::TooManyRedirects { last }));
            return None;
        }
        Some(req)
    }

    /// Starts the retry clock on first use; false once it has run out.
    fn within_deadline(&self, req: &mut BackendRequest) -> bool {
        let now = Instant::now();
        let deadline = *req
            .retry_deadline
            .get_or_insert(now + self.config.backend.timeout);
        now < deadline
    }

    /// Ask for a refresh, wait for it, and send `req` again — until its deadline, when
    /// the client gets `final_reply` (the node's own error) or `err`.
    fn retry_after_refresh(
        self: &Arc<Self>,
        mut req: BackendRequest,
        err: BackendError,
        final_reply: Option<Bytes>,
    ) {
        if req.no_retry || !self.within_deadline(&mut req) {
            match final_reply {
                Some(frame) => req.reply.send(Ok(frame)),
                None => req.reply.send(Err(err)),
            }
            return;
        }
        let deadline = req.retry_deadline.unwrap_or_else(Instant::now);
        let router = self.clone();
        let mut refreshed = self.refreshed.subscribe();
        self.refresh_wanted.notify_one();
        tokio::spawn(async move {
            // Wait for the next refresh, but not past the deadline, and not less than a
            // moment so a node that is down is not hammered.
            let wait = tokio::time::timeout_at(deadline.into(), refreshed.changed());
            let _ = wait.await;
            tokio::time::sleep(Duration::from_millis(10)).await;
            req.asking = false;
            router.dispatch(req);
        });
    }

    /// Point one slot at `node` at once (after `MOVED`); the full refresh follows.
    fn patch_slot(&self, slot: Slot, node: Arc<Node>) {
        if self
            .table
            .load()
            .master(slot)
            .is_some_and(|n| n.addr == node.addr)
        {
            return;
        }
        self.table
            .rcu(|table| table.with_slot_moved(slot, node.clone()));
    }
}
