//! Requests waiting to be sent again (after `TRYAGAIN`, a refresh, an unreachable
//! node), one FIFO per worker. While a slot has a request waiting here, new requests for
//! that slot queue behind it, so a client's requests to one slot never overtake each
//! other through a retry.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::backend::{BackendRequest, ReplyResult, ReplyTo, Target};
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
    /// the proxy's error (decided when the request queued).
    on_deadline: ReplyResult,
}

/// What the front of the queue is ready for ([`RetryQueue::next_due`]).
pub enum Due {
    /// Its turn came: send it.
    Send(BackendRequest),
    /// Its deadline passed first: answer the client with this.
    Expired(ReplyTo, ReplyResult),
    /// Nothing more leaves now; look again at this instant (`None`: nothing waits).
    Wait(Option<Instant>),
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
            Target::Any(_) | Target::Shard(_) | Target::Replica(..) => false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn push(&mut self, req: BackendRequest, when: When, on_deadline: ReplyResult) {
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

    /// Take the front if its time has come or its deadline has passed (a request ready
    /// to go goes, even at its deadline), at `now`, with `refreshes` refreshes finished.
    /// Only the front leaves, so each slot's requests leave in the order they queued.
    pub fn next_due(&mut self, now: Instant, refreshes: u64) -> Due {
        let Some(front) = self.items.front() else {
            return Due::Wait(None);
        };
        // The earliest instant the front may change by itself.
        let (ready, next) = match front.when {
            When::Now => (true, None),
            When::After(t) => (now >= t, Some(t)),
            When::Refresh { seen, not_before } if refreshes > seen => {
                (now >= not_before, Some(not_before))
            }
            When::Refresh { .. } => (false, Some(now + RETRY_POLL)),
        };
        let deadline = front.req.retry_deadline;
        let expired = deadline.is_some_and(|d| now >= d);
        if !ready && !expired {
            let next = match (next, deadline) {
                (Some(n), Some(d)) => Some(n.min(d)),
                (n, d) => n.or(d),
            };
            return Due::Wait(next);
        }
        let Some(item) = self.pop() else {
            return Due::Wait(None);
        };
        if ready {
            Due::Send(item.req)
        } else {
            Due::Expired(item.req.reply, item.on_deadline)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::backend::{BackendError, Place};
    use crate::cluster::table::SlotTable;
    use crate::cluster::topology::{ShardInfo, Topology};
    use crate::cluster::NodeAddr;
    use crate::config::Config;
    use crate::dispatch::Worker;
    use crate::protocol::reply::Proto;
    use crate::shared::Shared;
    use crate::slot::Slot;

    fn slot(n: u16) -> Slot {
        Slot::new(n).unwrap()
    }

    /// Request number `seq` for `target`.
    fn request(seq: u64, target: Target) -> BackendRequest {
        let place = Place {
            session: 0,
            client: 1,
            seq,
            part: Place::WHOLE,
        };
        BackendRequest::new(
            Bytes::from_static(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"),
            target,
            Proto::Resp2,
            0,
            ReplyTo::new(place),
        )
    }

    /// The sequence number of a request sent, answering its place.
    fn sent(due: Due) -> u64 {
        match due {
            Due::Send(req) => req.reply.into_place().seq,
            Due::Expired(reply, _) => panic!("#{} expired", reply.into_place().seq),
            Due::Wait(next) => panic!("nothing left; next look at {next:?}"),
        }
    }

    fn waits(due: Due) -> Option<Instant> {
        match due {
            Due::Wait(next) => next,
            Due::Send(req) => panic!("#{} sent", req.reply.into_place().seq),
            Due::Expired(reply, _) => panic!("#{} expired", reply.into_place().seq),
        }
    }

    #[test]
    fn requests_behind_a_waiting_one_leave_after_it_in_order() {
        let t0 = Instant::now();
        let backoff = t0 + Duration::from_millis(10);
        let mut queue = RetryQueue::default();
        assert!(!queue.holds(Target::Slot(slot(5))));
        queue.push(
            request(1, Target::Slot(slot(5))),
            When::After(backoff),
            Err(BackendError::Dropped),
        );
        // Slot 5 has one waiting: a new request for it queues behind (`Worker::dispatch`);
        // other slots and keyless requests go at once.
        assert!(queue.holds(Target::Slot(slot(5))));
        assert!(!queue.holds(Target::Slot(slot(6))));
        assert!(!queue.holds(Target::Any(5)));
        queue.push(
            request(2, Target::Slot(slot(5))),
            When::Now,
            Err(BackendError::Dropped),
        );
        queue.push(
            request(3, Target::Slot(slot(5))),
            When::Now,
            Err(BackendError::Dropped),
        );
        // #2 and #3 may go now, but not ahead of #1.
        assert_eq!(waits(queue.next_due(t0, 0)), Some(backoff));
        assert!(queue.holds(Target::Slot(slot(5))));
        assert_eq!(sent(queue.next_due(backoff, 0)), 1);
        assert!(queue.holds(Target::Slot(slot(5))));
        assert_eq!(sent(queue.next_due(backoff, 0)), 2);
        assert_eq!(sent(queue.next_due(backoff, 0)), 3);
        assert_eq!(waits(queue.next_due(backoff, 0)), None);
        assert!(!queue.holds(Target::Slot(slot(5))));
        assert!(queue.is_empty());
    }

    #[test]
    fn a_refresh_retry_waits_for_the_refresh_and_its_pause() {
        let t0 = Instant::now();
        let not_before = t0 + Duration::from_millis(10);
        let mut queue = RetryQueue::default();
        queue.push(
            request(1, Target::Any(0)),
            When::Refresh {
                seen: 3,
                not_before,
            },
            Err(BackendError::NoNodes),
        );
        // No refresh since it queued: look again soon.
        let late = t0 + Duration::from_millis(50);
        assert_eq!(waits(queue.next_due(late, 3)), Some(late + RETRY_POLL));
        // Refreshed, but too soon after the failure.
        assert_eq!(waits(queue.next_due(t0, 4)), Some(not_before));
        assert_eq!(sent(queue.next_due(not_before, 4)), 1);
    }

    #[test]
    fn a_request_past_its_deadline_gets_its_answer_and_the_next_goes() {
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(1);
        let frame = Bytes::from_static(b"-CLUSTERDOWN The cluster is down\r\n");
        let mut queue = RetryQueue::default();
        let mut first = request(1, Target::Slot(slot(5)));
        first.retry_deadline = Some(deadline);
        queue.push(
            first,
            When::Refresh {
                seen: 0,
                not_before: t0,
            },
            Ok(frame.clone()),
        );
        queue.push(
            request(2, Target::Slot(slot(5))),
            When::Now,
            Err(BackendError::Dropped),
        );
        // Waiting for a refresh: the deadline is later than the next poll.
        assert_eq!(waits(queue.next_due(t0, 0)), Some(t0 + RETRY_POLL));
        let Due::Expired(reply, answer) = queue.next_due(deadline, 0) else {
            panic!("#1 did not expire at its deadline");
        };
        assert_eq!(reply.into_place().seq, 1);
        assert_eq!(answer, Ok(frame), "the client gets the node's own error");
        assert_eq!(sent(queue.next_due(deadline, 0)), 2);
    }

    #[test]
    fn a_request_ready_at_its_deadline_still_goes() {
        let t0 = Instant::now();
        let mut queue = RetryQueue::default();
        let mut req = request(1, Target::Slot(slot(5)));
        req.retry_deadline = Some(t0);
        queue.push(req, When::After(t0), Err(BackendError::Dropped));
        assert_eq!(sent(queue.next_due(t0, 0)), 1);
    }

    #[test]
    fn dispatch_queues_behind_a_waiting_request_of_the_same_slot_only() {
        let config = Config::from_toml("seeds = [\"127.0.0.1:1\"]").unwrap();
        let shared = Shared::new(config, 1);
        let serving = |slots: Vec<(u16, u16)>| {
            let topology = Topology {
                shards: vec![ShardInfo {
                    slots,
                    master: NodeAddr::parse("127.0.0.1:1").unwrap(),
                    master_id: None,
                    replicas: Vec::new(),
                    loading_replicas: Vec::new(),
                }],
            };
            Arc::new(SlotTable::build(&topology, &SlotTable::empty()))
        };
        // Slot 6 is served, slot 5 is not (yet).
        shared.table.store(serving(vec![(6, 6)]));
        let poll = mio::Poll::new().unwrap();
        let registry = poll.registry().try_clone().unwrap();
        let mut worker = Worker::new(Arc::clone(&shared), 0, registry);

        worker.dispatch(request(1, Target::Slot(slot(5))));
        assert_eq!(worker.retry.items.len(), 1, "no node serves slot 5");
        worker.dispatch(request(2, Target::Slot(slot(5))));
        assert_eq!(worker.retry.items.len(), 2, "#2 queues behind #1");
        assert!(matches!(worker.retry.items[1].when, When::Now));
        worker.dispatch(request(3, Target::Slot(slot(6))));
        assert_eq!(worker.retry.items.len(), 2, "slot 6 goes at once");

        // A refresh finds slot 5: both leave, and nothing waits.
        shared.table.store(serving(vec![(5, 6)]));
        shared.refreshed.send_replace(1);
        let later = Instant::now() + Duration::from_secs(1);
        assert_eq!(worker.run_retries(later), None);
        assert!(worker.retry.is_empty());
        assert!(
            worker.deliveries.is_empty(),
            "nobody was answered with an error"
        );
    }
}
