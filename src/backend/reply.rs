//! The contract between a session and the connections serving it: the session's
//! [`ReplyQueue`] holds one place per request in request order; a [`ReplyTo`] fills one
//! place, exactly once.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use bytes::Bytes;

use super::signal::LocalSignal;
use super::{BackendError, ReplyResult};

/// A session's replies in request order. Lives on the session's worker thread.
#[derive(Default)]
pub struct ReplyQueue {
    inner: RefCell<Places>,
    /// Fired when the front place is filled, or when the worker asks the session to
    /// stop; the session waits on it.
    pub front_ready: LocalSignal,
    /// Set by the worker on shutdown: read no more requests.
    stop: std::cell::Cell<bool>,
}

#[derive(Default)]
struct Places {
    /// `None` while the reply is still on its way.
    places: VecDeque<Option<ReplyResult>>,
    /// Sequence number of the front place.
    front_seq: u64,
}

impl ReplyQueue {
    /// Reserve the next place; the returned handle fills it.
    pub fn reserve(self: &Rc<Self>) -> ReplyTo {
        let mut inner = self.inner.borrow_mut();
        let seq = inner.front_seq + inner.places.len() as u64;
        inner.places.push_back(None);
        ReplyTo {
            queue: Some(self.clone()),
            seq,
        }
    }

    /// Ask the session to stop reading (shutdown) and wake it.
    pub fn request_stop(&self) {
        self.stop.set(true);
        self.front_ready.fire();
    }

    pub fn stop_requested(&self) -> bool {
        self.stop.get()
    }

    /// Queue a reply that is ready now (made by the proxy itself).
    pub fn push_ready(&self, reply: Bytes) {
        self.inner.borrow_mut().places.push_back(Some(Ok(reply)));
    }

    pub fn len(&self) -> usize {
        self.inner.borrow().places.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.borrow().places.is_empty()
    }

    /// Take the replies that are ready at the front, in order.
    pub fn drain_ready(&self, mut each: impl FnMut(ReplyResult)) {
        let mut inner = self.inner.borrow_mut();
        while let Some(Some(_)) = inner.places.front() {
            if let Some(Some(reply)) = inner.places.pop_front() {
                each(reply);
            }
            inner.front_seq += 1;
        }
    }

    fn fill(&self, seq: u64, reply: ReplyResult) {
        let mut inner = self.inner.borrow_mut();
        let Some(index) = seq.checked_sub(inner.front_seq) else {
            return;
        };
        if let Some(place) = inner.places.get_mut(index as usize) {
            *place = Some(reply);
            if index == 0 {
                drop(inner);
                self.front_ready.fire();
            }
        }
    }
}

/// Fills one place of a [`ReplyQueue`]. Dropping it unfilled fills the place with
/// [`BackendError::Dropped`], so no client waits for a reply that cannot come.
pub struct ReplyTo {
    queue: Option<Rc<ReplyQueue>>,
    seq: u64,
}

impl ReplyTo {
    pub fn send(mut self, reply: ReplyResult) {
        if let Some(queue) = self.queue.take() {
            queue.fill(self.seq, reply);
        }
    }
}

impl Drop for ReplyTo {
    fn drop(&mut self) {
        if let Some(queue) = self.queue.take() {
            queue.fill(self.seq, Err(BackendError::Dropped));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_leave_in_request_order_and_drops_resolve() {
        let q = Rc::new(ReplyQueue::default());
        let a = q.reserve();
        let b = q.reserve();
        q.push_ready(Bytes::from_static(b"+local\r\n"));
        let c = q.reserve();
        b.send(Ok(Bytes::from_static(b"+b\r\n")));
        let mut out = Vec::new();
        q.drain_ready(|r| out.push(r));
        assert!(out.is_empty(), "nothing leaves before the front");
        a.send(Ok(Bytes::from_static(b"+a\r\n")));
        drop(c);
        q.drain_ready(|r| out.push(r));
        let texts: Vec<String> = out
            .into_iter()
            .map(|r| match r {
                Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                Err(e) => e.to_string(),
            })
            .collect();
        assert_eq!(texts[..3], ["+a\r\n", "+b\r\n", "+local\r\n"]);
        assert!(texts[3].contains("dropped"));
        assert!(q.is_empty());
    }
}
