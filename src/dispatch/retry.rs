//! Requests waiting to be sent again (after `TRYAGAIN`, a refresh, an unreachable
//! node), one FIFO per worker. While a slot has a request waiting here, new requests for
//! that slot queue behind it, so a client's requests to one slot never overtake each
//! other through a retry.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;

use crate::backend::signal::LocalSignal;
use crate::backend::{BackendError, BackendRequest, Target, Worker};
use crate::slot::SLOT_COUNT;

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
    items: RefCell<VecDeque<Waiting>>,
    /// Waiting requests per slot.
    held: RefCell<Vec<u16>>,
    /// Waiting requests in all (a cheap test for the common case: none).
    total: Cell<usize>,
    /// Fired when a request is queued; the retry task waits on it.
    queued: LocalSignal,
}

impl Default for RetryQueue {
    fn default() -> Self {
        RetryQueue {
            items: RefCell::new(VecDeque::new()),
            held: RefCell::new(vec![0; SLOT_COUNT]),
            total: Cell::new(0),
            queued: LocalSignal::default(),
        }
    }
}

impl RetryQueue {
    /// Does `target` have a request waiting here (so a new one must queue behind it)?
    #[inline]
    pub fn holds(&self, target: Target) -> bool {
        if self.total.get() == 0 {
            return false;
        }
        match target {
            Target::Slot(slot) => self.held.borrow()[slot.index()] > 0,
            Target::Any(_) => false,
        }
    }

    pub fn push(
        &self,
        req: BackendRequest,
        when: When,
        on_deadline: (BackendError, Option<Bytes>),
    ) {
        if let Target::Slot(slot) = req.target {
            self.held.borrow_mut()[slot.index()] += 1;
        }
        self.total.set(self.total.get() + 1);
        self.items.borrow_mut().push_back(Waiting {
            req,
            when,
            on_deadline,
        });
        self.queued.fire();
    }

    fn pop(&self) -> Option<Waiting> {
        let item = self.items.borrow_mut().pop_front()?;
        if let Target::Slot(slot) = item.req.target {
            let mut held = self.held.borrow_mut();
            held[slot.index()] = held[slot.index()].saturating_sub(1);
        }
        self.total.set(self.total.get().saturating_sub(1));
        Some(item)
    }
}

impl Worker {
    /// The retry task: sends waiting requests in order as they become ready, answers
    /// those whose deadline passes first. Runs for the life of the worker.
    pub async fn run_retries(self: Rc<Self>) {
        let mut refreshed = self.router.refreshed.subscribe();
        loop {
            let now = Instant::now();
            let refresh_count = *refreshed.borrow_and_update();
            // The earliest instant the front may change by itself.
            let mut next: Option<Instant> = None;
            loop {
                let (ready, deadline) = {
                    let items = self.retry.items.borrow();
                    let Some(front) = items.front() else {
                        break;
                    };
                    let ready = match front.when {
                        When::Now => Some(true),
                        When::After(t) => (now >= t).then_some(true).or_else(|| {
                            next = Some(t);
                            None
                        }),
                        When::Refresh { seen, not_before } => {
                            if refresh_count > seen && now >= not_before {
                                Some(true)
                            } else {
                                if refresh_count > seen {
                                    next = Some(not_before);
                                }
                                None
                            }
                        }
                    };
                    (ready.unwrap_or(false), front.req.retry_deadline)
                };
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
                        (_, Some(frame)) => item.req.reply.send(Ok(frame)),
                        (err, None) => item.req.reply.send(Err(err)),
                    }
                }
            }
            let sleep = async {
                match next {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.retry.queued.wait() => {}
                _ = refreshed.changed(), if self.retry.total.get() > 0 => {}
                _ = sleep => {}
            }
        }
    }
}
