//! What happens to a request after a node's reply, or after it could not be sent: the
//! one decision, as a pure function. [`decide`] reads the reply, the request's
//! [`RequestState`] and the [`Policy`], and takes the time as an argument; it does no
//! IO, reads no clock and touches nothing shared. The worker carries the
//! [`Decision`] out (`Worker::complete`, `Worker::unsent`, `Worker::dispatch_now`).

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::backend::{BackendError, BackendRequest, ReplyResult, Side};
use crate::cluster::NodeAddr;
use crate::config::Config;
use crate::protocol::redirect::{parse_redirect, Redirect};
use crate::slot::Slot;

/// What became of a request sent (or meant) for a node.
#[derive(Debug)]
pub enum Outcome<'a> {
    /// The node `from` answered with `frame` (one whole RESP frame).
    Reply { frame: Bytes, from: &'a NodeAddr },
    /// The request reached no node: none serves its target, or the node could not be
    /// reached. `err` says which.
    NotSent(BackendError),
}

/// What a request carries from one try to the next.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestState {
    /// Redirects (`MOVED`, `ASK`) followed so far, against the redirect budget.
    pub redirects: u32,
    /// Retries after `TRYAGAIN`/`LOADING` so far (sets the backoff).
    pub retries: u32,
    /// Retries stop at this instant; set by the first retry.
    pub retry_deadline: Option<Instant>,
    /// Part of a transaction, on the connection held for it: the node's error goes to
    /// the client as it is, redirect or not, and nothing is retried.
    pub in_transaction: bool,
}

impl RequestState {
    /// The state `req` carries.
    #[inline]
    pub fn of(req: &BackendRequest) -> RequestState {
        RequestState {
            redirects: u32::from(req.redirects),
            retries: req.retries,
            retry_deadline: req.retry_deadline,
            in_transaction: req.in_transaction(),
        }
    }

    /// Store this state in `req` (after a decision that keeps the request going).
    #[inline]
    pub fn write_to(self, req: &mut BackendRequest) {
        req.redirects = u16::try_from(self.redirects).unwrap_or(u16::MAX);
        req.retries = self.retries;
        req.retry_deadline = self.retry_deadline;
    }
}

/// The rules [`decide`] applies, from the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Redirects one request may follow; the next one fails it.
    pub redirect_budget: u32,
    /// How long a request may be retried, counted from its first retry (the backend
    /// timeout).
    pub retry_for: Duration,
    /// `TRYAGAIN`/`LOADING` backoff: this much per retry so far...
    pub backoff_step: Duration,
    /// ...counting at most this many retries (5 ms × 20: 100 ms at most).
    pub backoff_max_steps: u32,
    /// A retry after a refresh waits at least this long, so a node that is down is not
    /// hammered.
    pub refresh_pause: Duration,
}

impl Policy {
    pub fn new(config: &Config) -> Policy {
        Policy {
            redirect_budget: config.redirect_budget,
            retry_for: config.backend.timeout,
            backoff_step: Duration::from_millis(5),
            backoff_max_steps: 20,
            refresh_pause: Duration::from_millis(10),
        }
    }

    /// The wait before retry number `retries` (1 for the first).
    pub fn backoff(&self, retries: u32) -> Duration {
        self.backoff_step
            .saturating_mul(retries.min(self.backoff_max_steps))
    }
}

/// What the proxy reacted to: the node's error reply or the failure to send. The worker
/// counts it, whatever the decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    Moved,
    Ask,
    /// `TRYAGAIN` or `LOADING`.
    TryAgain,
    /// `CLUSTERDOWN` or `MASTERDOWN`.
    ClusterDown,
    /// The request reached no node ([`Outcome::NotSent`]).
    NotSent,
}

/// What the client gets when its request fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The node's own last error reply, byte for byte (`-TRYAGAIN ...`,
    /// `-CLUSTERDOWN ...`): the client sees what Redis said.
    NodeReply(Bytes),
    /// The proxy's error (sent as `-ERR slotgate: ...`): no node reply to show, or the
    /// proxy gave up on the node's (redirect budget).
    Proxy(BackendError),
}

impl Failure {
    /// What goes into the client's reply place.
    pub fn into_result(self) -> ReplyResult {
        match self {
            Failure::NodeReply(frame) => Ok(frame),
            Failure::Proxy(err) => Err(err),
        }
    }

    /// Which side failed.
    pub fn side(&self) -> Side {
        match self {
            Failure::NodeReply(_) => Side::Node,
            Failure::Proxy(err) => err.side(),
        }
    }
}

/// What the worker does with the request. Every variant that keeps the request going
/// carries its new [`RequestState`].
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// The node's reply goes to the client as it is.
    Deliver(Bytes),
    /// `ASK`: send this request (only) to `to`, preceded by `ASKING` when `asking`; the
    /// slot table stays as it is.
    Resend {
        slot: Slot,
        to: NodeAddr,
        asking: bool,
        state: RequestState,
    },
    /// `MOVED`: resend to `to`, then point `slot` at `to` in the slot table and ask for
    /// one refresh.
    PatchAndResend {
        slot: Slot,
        to: NodeAddr,
        state: RequestState,
    },
    /// `TRYAGAIN`/`LOADING`: queue the request and send it again at `at` (the topology
    /// has not changed). If the deadline passes first, the client gets `on_deadline`.
    RetryAfter {
        at: Instant,
        state: RequestState,
        on_deadline: Failure,
    },
    /// `CLUSTERDOWN`, `MASTERDOWN`, or not sent: ask for a refresh, queue the request and
    /// send it again once a refresh has finished, not before `not_before`. If the
    /// deadline passes first, the client gets `on_deadline`.
    RetryAfterRefresh {
        not_before: Instant,
        state: RequestState,
        on_deadline: Failure,
        cause: Cause,
    },
    /// The request is over: the redirect budget is spent or the deadline passed.
    Fail { failure: Failure, cause: Cause },
    /// A transaction's request met a redirect or a retryable error it may not follow
    /// (the transaction lives on one connection; the node has already marked it to
    /// fail): the node's error goes to the client as it is. After `MOVED` the slot is
    /// pointed at `moved`'s node; after a redirect or `CLUSTERDOWN` the topology is
    /// refreshed.
    Unfollowed {
        frame: Bytes,
        cause: Cause,
        moved: Option<(Slot, NodeAddr)>,
    },
}

impl Decision {
    /// What the decision reacted to; `None` for a reply delivered as it is.
    pub fn cause(&self) -> Option<Cause> {
        match self {
            Decision::Deliver(_) => None,
            Decision::Resend { .. } => Some(Cause::Ask),
            Decision::PatchAndResend { .. } => Some(Cause::Moved),
            Decision::RetryAfter { .. } => Some(Cause::TryAgain),
            Decision::RetryAfterRefresh { cause, .. }
            | Decision::Fail { cause, .. }
            | Decision::Unfollowed { cause, .. } => Some(*cause),
        }
    }
}

/// A reply that is not an error (`-...`) asks nothing of the proxy: [`decide`] delivers
/// it as it is, without parsing it. The worker checks this first, so an ordinary reply
/// costs neither a clock read nor a decision.
#[inline]
pub fn is_error(frame: &[u8]) -> bool {
    frame.first() == Some(&b'-')
}

/// The decision after `outcome` for a request in `state`, at `now`.
#[inline]
pub fn decide(
    outcome: Outcome<'_>,
    state: &RequestState,
    policy: &Policy,
    now: Instant,
) -> Decision {
    match outcome {
        Outcome::Reply { frame, from } => {
            if !is_error(&frame) {
                return Decision::Deliver(frame);
            }
            decide_error(frame, from, state, policy, now)
        }
        Outcome::NotSent(err) if state.in_transaction => Decision::Fail {
            failure: Failure::Proxy(err),
            cause: Cause::NotSent,
        },
        Outcome::NotSent(err) => {
            retry_after_refresh(Failure::Proxy(err), Cause::NotSent, state, policy, now)
        }
    }
}

/// An error reply: a redirect, a retryable error, or anything else (delivered).
fn decide_error(
    frame: Bytes,
    from: &NodeAddr,
    state: &RequestState,
    policy: &Policy,
    now: Instant,
) -> Decision {
    let Some(redirect) = parse_redirect(&frame, from) else {
        return Decision::Deliver(frame);
    };
    if state.in_transaction {
        return unfollowed(frame, redirect);
    }
    match redirect {
        Redirect::Moved { slot, addr } => match redirected(state, policy) {
            Some(state) => Decision::PatchAndResend {
                slot,
                to: addr,
                state,
            },
            None => too_many_redirects(&frame, Cause::Moved),
        },
        Redirect::Ask { slot, addr } => match redirected(state, policy) {
            Some(state) => Decision::Resend {
                slot,
                to: addr,
                asking: true,
                state,
            },
            None => too_many_redirects(&frame, Cause::Ask),
        },
        Redirect::TryAgain | Redirect::Loading => {
            let Some(deadline) = deadline(state, policy, now) else {
                return Decision::Fail {
                    failure: Failure::NodeReply(frame),
                    cause: Cause::TryAgain,
                };
            };
            let retries = state.retries.saturating_add(1);
            Decision::RetryAfter {
                at: now + policy.backoff(retries),
                state: RequestState {
                    retries,
                    retry_deadline: Some(deadline),
                    ..*state
                },
                on_deadline: Failure::NodeReply(frame),
            }
        }
        Redirect::ClusterDown | Redirect::MasterDown => retry_after_refresh(
            Failure::NodeReply(frame),
            Cause::ClusterDown,
            state,
            policy,
            now,
        ),
    }
}

/// A transaction's request and the redirect or retryable error its node answered.
fn unfollowed(frame: Bytes, redirect: Redirect) -> Decision {
    let (cause, moved) = match redirect {
        Redirect::Moved { slot, addr } => (Cause::Moved, Some((slot, addr))),
        Redirect::Ask { .. } => (Cause::Ask, None),
        Redirect::TryAgain | Redirect::Loading => (Cause::TryAgain, None),
        Redirect::ClusterDown | Redirect::MasterDown => (Cause::ClusterDown, None),
    };
    Decision::Unfollowed {
        frame,
        cause,
        moved,
    }
}

/// The state after one more redirect; `None` once that is over the budget.
fn redirected(state: &RequestState, policy: &Policy) -> Option<RequestState> {
    let redirects = state.redirects.saturating_add(1);
    (redirects <= policy.redirect_budget).then_some(RequestState {
        redirects,
        ..*state
    })
}

/// The budget is spent: the proxy's error, naming the last redirect.
fn too_many_redirects(frame: &[u8], cause: Cause) -> Decision {
    let text = frame.get(1..).unwrap_or_default();
    let last = String::from_utf8_lossy(text).trim_end().to_string();
    Decision::Fail {
        failure: Failure::Proxy(BackendError::TooManyRedirects { last }),
        cause,
    }
}

/// Retry after a refresh, or fail with `on_deadline` once the deadline has passed.
fn retry_after_refresh(
    on_deadline: Failure,
    cause: Cause,
    state: &RequestState,
    policy: &Policy,
    now: Instant,
) -> Decision {
    match deadline(state, policy, now) {
        Some(deadline) => Decision::RetryAfterRefresh {
            not_before: now + policy.refresh_pause,
            state: RequestState {
                retry_deadline: Some(deadline),
                ..*state
            },
            on_deadline,
            cause,
        },
        None => Decision::Fail {
            failure: on_deadline,
            cause,
        },
    }
}

/// The request's retry deadline — the first retry starts the clock — or `None` once it
/// has passed.
fn deadline(state: &RequestState, policy: &Policy, now: Instant) -> Option<Instant> {
    let deadline = state.retry_deadline.unwrap_or(now + policy.retry_for);
    (now < deadline).then_some(deadline)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            redirect_budget: 5,
            retry_for: Duration::from_secs(5),
            backoff_step: Duration::from_millis(5),
            backoff_max_steps: 20,
            refresh_pause: Duration::from_millis(10),
        }
    }

    fn node(text: &str) -> NodeAddr {
        NodeAddr::parse(text).unwrap()
    }

    fn slot(n: u16) -> Slot {
        Slot::new(n).unwrap()
    }

    /// A fresh request: no redirect, no retry, no deadline yet.
    fn fresh() -> RequestState {
        RequestState::default()
    }

    /// `frame` from node 10.0.0.1:7000, decided for a request in `state` at `now`.
    fn reply(frame: &'static [u8], state: &RequestState, now: Instant) -> Decision {
        let from = node("10.0.0.1:7000");
        let frame = Bytes::from_static(frame);
        decide(Outcome::Reply { frame, from: &from }, state, &policy(), now)
    }

    const MOVED: &[u8] = b"-MOVED 3999 10.0.0.2:7001\r\n";
    const ASK: &[u8] = b"-ASK 3999 10.0.0.3:7002\r\n";
    const TRYAGAIN: &[u8] = b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n";
    const LOADING: &[u8] = b"-LOADING Redis is loading the dataset in memory\r\n";
    const CLUSTERDOWN: &[u8] = b"-CLUSTERDOWN The cluster is down\r\n";
    const MASTERDOWN: &[u8] =
        b"-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.\r\n";

    #[test]
    fn moved_patches_the_slot_and_resends() {
        let now = Instant::now();
        let state = RequestState {
            retries: 2,
            ..fresh()
        };
        assert_eq!(
            reply(MOVED, &state, now),
            Decision::PatchAndResend {
                slot: slot(3999),
                to: node("10.0.0.2:7001"),
                state: RequestState {
                    redirects: 1,
                    retries: 2,
                    retry_deadline: None,
                    in_transaction: false,
                },
            }
        );
    }

    #[test]
    fn ask_resends_with_asking_and_leaves_the_table() {
        let now = Instant::now();
        let decision = reply(ASK, &fresh(), now);
        assert_eq!(
            decision,
            Decision::Resend {
                slot: slot(3999),
                to: node("10.0.0.3:7002"),
                asking: true,
                state: RequestState {
                    redirects: 1,
                    ..fresh()
                },
            }
        );
        assert_eq!(decision.cause(), Some(Cause::Ask));
    }

    #[test]
    fn redirect_to_an_empty_host_goes_to_the_senders_host() {
        let decision = reply(b"-MOVED 5 :7005\r\n", &fresh(), Instant::now());
        assert!(
            matches!(&decision, Decision::PatchAndResend { to, .. } if *to == node("10.0.0.1:7005")),
            "{decision:?}"
        );
    }

    #[test]
    fn tryagain_retries_after_a_backoff_and_starts_the_clock() {
        let now = Instant::now();
        assert_eq!(
            reply(TRYAGAIN, &fresh(), now),
            Decision::RetryAfter {
                at: now + Duration::from_millis(5),
                state: RequestState {
                    retries: 1,
                    retry_deadline: Some(now + Duration::from_secs(5)),
                    ..fresh()
                },
                on_deadline: Failure::NodeReply(Bytes::from_static(TRYAGAIN)),
            }
        );
    }

    #[test]
    fn loading_backoff_grows_with_retries_and_is_capped() {
        let start = Instant::now();
        let deadline = start + Duration::from_secs(5);
        let mut state = fresh();
        let mut waits = Vec::new();
        for n in 0..25 {
            let now = start + Duration::from_millis(n);
            let Decision::RetryAfter {
                at,
                state: next,
                on_deadline,
            } = reply(LOADING, &state, now)
            else {
                panic!("LOADING #{n} was not retried");
            };
            assert_eq!(on_deadline, Failure::NodeReply(Bytes::from_static(LOADING)));
            // The clock started at the first retry and stays put.
            assert_eq!(next.retry_deadline, Some(deadline));
            assert_eq!(next.retries, state.retries + 1);
            waits.push((at - now).as_millis());
            state = next;
        }
        assert_eq!(waits[..4], [5, 10, 15, 20]);
        assert_eq!(waits[19], 100);
        assert!(waits[19..].iter().all(|&w| w == 100), "{waits:?}");
    }

    #[test]
    fn clusterdown_and_masterdown_retry_after_a_refresh() {
        let now = Instant::now();
        for frame in [CLUSTERDOWN, MASTERDOWN] {
            let decision = reply(frame, &fresh(), now);
            assert_eq!(
                decision,
                Decision::RetryAfterRefresh {
                    not_before: now + Duration::from_millis(10),
                    state: RequestState {
                        retry_deadline: Some(now + Duration::from_secs(5)),
                        ..fresh()
                    },
                    on_deadline: Failure::NodeReply(Bytes::from_static(frame)),
                    cause: Cause::ClusterDown,
                }
            );
            assert_eq!(decision.cause(), Some(Cause::ClusterDown));
        }
    }

    #[test]
    fn an_ordinary_error_is_delivered() {
        for frame in [
            b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n".as_slice(),
            b"-ERR unknown command 'FOO'\r\n",
            // A redirect too malformed to act on goes to the client as it is.
            b"-MOVED 99999 10.0.0.2:7001\r\n",
        ] {
            let frame = Bytes::from_static(frame);
            let decision = decide(
                Outcome::Reply {
                    frame: frame.clone(),
                    from: &node("10.0.0.1:7000"),
                },
                &fresh(),
                &policy(),
                Instant::now(),
            );
            assert_eq!(decision, Decision::Deliver(frame));
            assert_eq!(decision.cause(), None);
        }
    }

    #[test]
    fn a_non_error_is_delivered() {
        // Even one whose text looks like a redirect: only `-` replies are read.
        for frame in [
            b"+OK\r\n".as_slice(),
            b"$5\r\nMOVED\r\n",
            b"+MOVED 3999 10.0.0.2:7001\r\n",
            b"",
        ] {
            assert_eq!(
                reply(frame, &fresh(), Instant::now()),
                Decision::Deliver(Bytes::from_static(frame))
            );
            assert!(!is_error(frame));
        }
    }

    #[test]
    fn the_redirect_after_the_budget_fails_with_the_last_redirect() {
        let now = Instant::now();
        let mut state = fresh();
        for n in 1..=5 {
            let Decision::PatchAndResend { state: next, .. } = reply(MOVED, &state, now) else {
                panic!("redirect {n} within the budget was not followed");
            };
            assert_eq!(next.redirects, n);
            state = next;
        }
        for (frame, cause, last) in [
            (MOVED, Cause::Moved, "MOVED 3999 10.0.0.2:7001"),
            (ASK, Cause::Ask, "ASK 3999 10.0.0.3:7002"),
        ] {
            let decision = reply(frame, &state, now);
            assert_eq!(
                decision,
                Decision::Fail {
                    failure: Failure::Proxy(BackendError::TooManyRedirects {
                        last: last.to_string()
                    }),
                    cause,
                }
            );
            assert_eq!(decision.cause(), Some(cause));
        }
    }

    #[test]
    fn the_first_retry_starts_the_clock_and_later_ones_keep_it() {
        let start = Instant::now();
        let Decision::RetryAfterRefresh { state, .. } = reply(CLUSTERDOWN, &fresh(), start) else {
            panic!("CLUSTERDOWN was not retried");
        };
        assert_eq!(state.retry_deadline, Some(start + Duration::from_secs(5)));
        let later = start + Duration::from_secs(3);
        let Decision::RetryAfter { state, .. } = reply(TRYAGAIN, &state, later) else {
            panic!("TRYAGAIN was not retried");
        };
        assert_eq!(state.retry_deadline, Some(start + Duration::from_secs(5)));
        // Redirects neither start nor move the clock.
        let Decision::PatchAndResend { state: moved, .. } = reply(MOVED, &fresh(), start) else {
            panic!("MOVED was not followed");
        };
        assert_eq!(moved.retry_deadline, None);
    }

    #[test]
    fn after_the_deadline_the_client_gets_the_nodes_own_error() {
        let start = Instant::now();
        let state = RequestState {
            retries: 7,
            retry_deadline: Some(start + Duration::from_secs(5)),
            ..fresh()
        };
        let just_before = start + Duration::from_millis(4_999);
        assert!(matches!(
            reply(TRYAGAIN, &state, just_before),
            Decision::RetryAfter { .. }
        ));
        assert!(matches!(
            reply(CLUSTERDOWN, &state, just_before),
            Decision::RetryAfterRefresh { .. }
        ));
        let at = start + Duration::from_secs(5);
        for (frame, cause) in [
            (TRYAGAIN, Cause::TryAgain),
            (LOADING, Cause::TryAgain),
            (CLUSTERDOWN, Cause::ClusterDown),
            (MASTERDOWN, Cause::ClusterDown),
        ] {
            let decision = reply(frame, &state, at);
            assert_eq!(
                decision,
                Decision::Fail {
                    failure: Failure::NodeReply(Bytes::from_static(frame)),
                    cause,
                }
            );
            let Decision::Fail { failure, .. } = decision else {
                unreachable!()
            };
            assert_eq!(failure.side(), Side::Node);
        }
    }

    #[test]
    fn an_unreachable_node_retries_after_a_refresh_then_gets_the_proxys_error() {
        let unreachable = || BackendError::Unreachable {
            addr: node("10.0.0.4:7003"),
            reason: "connection refused".into(),
        };
        let start = Instant::now();
        let decision = decide(Outcome::NotSent(unreachable()), &fresh(), &policy(), start);
        let deadline = start + Duration::from_secs(5);
        assert_eq!(
            decision,
            Decision::RetryAfterRefresh {
                not_before: start + Duration::from_millis(10),
                state: RequestState {
                    retry_deadline: Some(deadline),
                    ..fresh()
                },
                on_deadline: Failure::Proxy(unreachable()),
                cause: Cause::NotSent,
            }
        );
        let Decision::RetryAfterRefresh { state, .. } = decision else {
            unreachable!()
        };
        let decision = decide(Outcome::NotSent(unreachable()), &state, &policy(), deadline);
        assert_eq!(
            decision,
            Decision::Fail {
                failure: Failure::Proxy(unreachable()),
                cause: Cause::NotSent,
            }
        );
        let Decision::Fail { failure, .. } = decision else {
            unreachable!()
        };
        assert_eq!(
            failure.into_result(),
            Err(unreachable()),
            "the client gets the proxy's error, not a node reply"
        );
    }

    #[test]
    fn a_transactions_request_follows_no_redirect_and_is_not_retried() {
        let now = Instant::now();
        let txn = RequestState {
            in_transaction: true,
            ..fresh()
        };
        // Its node's redirect goes to the client as it is; after MOVED the slot is
        // patched and the table refreshed.
        assert_eq!(
            reply(MOVED, &txn, now),
            Decision::Unfollowed {
                frame: Bytes::from_static(MOVED),
                cause: Cause::Moved,
                moved: Some((slot(3999), node("10.0.0.2:7001"))),
            }
        );
        for (frame, cause) in [
            (ASK, Cause::Ask),
            (TRYAGAIN, Cause::TryAgain),
            (LOADING, Cause::TryAgain),
            (CLUSTERDOWN, Cause::ClusterDown),
            (MASTERDOWN, Cause::ClusterDown),
        ] {
            assert_eq!(
                reply(frame, &txn, now),
                Decision::Unfollowed {
                    frame: Bytes::from_static(frame),
                    cause,
                    moved: None,
                },
                "{}",
                String::from_utf8_lossy(frame)
            );
        }
        // Other replies as for any request.
        assert_eq!(
            reply(b"+QUEUED\r\n", &txn, now),
            Decision::Deliver(Bytes::from_static(b"+QUEUED\r\n"))
        );
        assert_eq!(
            reply(b"-EXECABORT Transaction discarded\r\n", &txn, now),
            Decision::Deliver(Bytes::from_static(b"-EXECABORT Transaction discarded\r\n"))
        );
        // Not sent: failed at once, never retried.
        assert_eq!(
            decide(
                Outcome::NotSent(BackendError::HeldGone),
                &txn,
                &policy(),
                now
            ),
            Decision::Fail {
                failure: Failure::Proxy(BackendError::HeldGone),
                cause: Cause::NotSent,
            }
        );
    }

    #[test]
    fn a_slot_no_node_serves_retries_after_a_refresh() {
        let now = Instant::now();
        let decision = decide(
            Outcome::NotSent(BackendError::SlotNotServed(slot(42))),
            &fresh(),
            &policy(),
            now,
        );
        assert!(
            matches!(
                &decision,
                Decision::RetryAfterRefresh {
                    on_deadline: Failure::Proxy(BackendError::SlotNotServed(s)),
                    cause: Cause::NotSent,
                    ..
                } if *s == slot(42)
            ),
            "{decision:?}"
        );
    }

    #[test]
    fn failures_say_which_side_failed() {
        let addr = node("10.0.0.4:7003");
        for (failure, side) in [
            (
                Failure::NodeReply(Bytes::from_static(CLUSTERDOWN)),
                Side::Node,
            ),
            (
                Failure::Proxy(BackendError::Timeout { addr, millis: 5 }),
                Side::Node,
            ),
            (Failure::Proxy(BackendError::NoNodes), Side::Node),
            (Failure::Proxy(BackendError::Dropped), Side::Proxy),
        ] {
            assert_eq!(failure.side(), side, "{failure:?}");
        }
    }

    #[test]
    fn policy_from_config() {
        let config = Config::from_toml(
            "seeds = [\"127.0.0.1:1\"]\n[cluster]\nredirect_budget = 3\n[backend]\ntimeout_ms = 1234\n",
        )
        .unwrap();
        let policy = Policy::new(&config);
        assert_eq!(policy.redirect_budget, 3);
        assert_eq!(policy.retry_for, Duration::from_millis(1234));
        assert_eq!(policy.backoff(0), Duration::ZERO);
        assert_eq!(policy.backoff(1), Duration::from_millis(5));
        assert_eq!(policy.backoff(u32::MAX), Duration::from_millis(100));
    }
}
