//! A wake-up signal between tasks of one worker thread (no atomics, no locks): one side
//! fires it, the task that owns it waits for it. Firing before the wait is remembered.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};

#[derive(Default)]
pub struct LocalSignal {
    fired: Cell<bool>,
    waiter: RefCell<Option<Waker>>,
}

impl LocalSignal {
    pub fn fire(&self) {
        if !self.fired.replace(true) {
            if let Some(waker) = self.waiter.borrow_mut().take() {
                waker.wake();
            }
        }
    }

    /// Resolves once the signal has fired since the last wait, and clears it.
    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.fired.replace(false) {
                return Poll::Ready(());
            }
            let mut waiter = self.waiter.borrow_mut();
            match waiter.as_ref() {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *waiter = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }
}
