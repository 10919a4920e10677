//! Requests waiting to be sent again (after `TRYAGAIN`, a refresh, an unreachable
//! node), one FIFO per worker. While a slot has a request waiting here, new requests for
//! that slot queue behind it, so a client's requests to one slot never overtake each
//! other through a retry.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::backend::{BackendError, BackendRequest, Target, Worker};
use crate::slot::SLOT_COUNT;

/// While requests wait to be retried (for a refresh, say), the worker looks at them at
/// least this often.
pub const RETRY_POLL: Duration = Duration::from_millis(5);

/// When a waiting request may go.
pub enum When {
    /// As soon as it reaches the front (it only queued behind another one).
    Now,
    /// After a backoff.
    After(Instant),
    /// After the refresh that follows `seen` (the refresh counter when it queued), and
    /// not before `not_before` (so a node that is down is not hammered).
    Refresh { seen: u64, not_before: Instant },
}

struct Waiting {
    req: BackendRequest,
    when: When,
    /// What the client gets if the deadline passes first: the node's own reply, or else
    /// the error.
    on_deadline: (BackendError, Option<Bytes>),
}

pub struct RetryQueue {
    items: VecDeque<Waiting>,
    /// Waiting requests per slot.
    held: Vec<u16>,
}

impl Default for RetryQueue {
    fn default() -> Self {
        RetryQueue {
            items: VecDeque::new(),
            held: vec![0; SLOT_COUNT],
        }
    }
}

impl RetryQueue {
    /// Does `target` have a request waiting here (so a new one must queue behind it)?
    #[inline]
    pub fn holds(&self, target: Target) -> bool {
        if self.items.is_empty() {
            return false;
        }
        match target {
            Target::Slot(slot) => self.held[slot.index()] > 0,
            Target::Any(_) => false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn push(
        &mut self,
        req: BackendRequest,
        when: When,
        on_deadline: (BackendError, Option<Bytes>),
    ) {
        if let Target::Slot(slot) = req.target {
            self.held[slot.index()] += 1;
        }
        self.items.push_back(Waiting {
            req,
            when,
            on_deadline,
        });
    }

    fn pop(&mut self) -> Option<Waiting> {
        let item = self.items.pop_front()?;
        if let Target::Slot(slot) = item.req.target {
            self.held[slot.index()] = self.held[slot.index()].saturating_sub(1);
        }
        Some(item)
    }
}

impl Worker {
    /// Send the waiting requests whose time has come, in order, and answer those whose
    /// deadline passed first. Returns when to look again (`None`: nothing waits).
    pub fn run_retries(&mut self, now: Instant) -> Option<Instant> {
        if self.retry.is_empty() {
            return None;
        }
        let refresh_count = *self.router.refreshed.borrow();
        // The earliest instant the front may change by itself.
        let mut next: Option<Instant> = None;
        while let Some(front) = self.retry.items.front() {
            let ready = match front.when {
                When::Now => true,
                When::After(t) => {
                    if now < t {
                        next = Some(t);
                    }
                    now >= t
                }
                When::Refresh { seen, not_before } => {
                    if refresh_count > seen {
                        if now < not_before {
                            next = Some(not_before);
                        }
                        now >= not_before
                    } else {
                        next = Some(now + RETRY_POLL);
                        false
                    }
                }
            };
            let deadline = front.req.retry_deadline;
            let expired = deadline.is_some_and(|d| now >= d);
            if !ready && !expired {
                if let Some(d) = deadline {
                    next = Some(next.map_or(d, |n| n.min(d)));
                }
                break;
            }
            let Some(item) = self.retry.pop() else {
                break;
            };
            if ready {
                let mut req = item.req;
                req.asking = false;
                self.dispatch_now(req);
            } else {
                match item.on_deadline {
                    (_, Some(frame)) => self.deliver(item.req.reply, Ok(frame)),
                    (err, None) => self.deliver(item.req.reply, Err(err)),
                }
            }
        }
        next
    }
}
