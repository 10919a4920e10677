//! What the replica poller ([`crate::replicas`]) learns about a node for reads at
//! replicas: its smoothed round trip, how far it is behind its master, whether its
//! last poll found it unfit. Written by the poller (control plane, about once a
//! second) and, on a timed-out read, by the worker that saw it; read by the workers
//! only when they choose where a read goes (never for a client that reads from
//! masters).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A node's health for reads. Every field is a relaxed atomic: a worker may see one
/// poll's round trip with the previous poll's lag, which changes nothing it decides.
#[derive(Debug)]
pub struct ReadHealth {
    /// Smoothed round trip of the poller's `PING`s, microseconds; 0: not measured yet.
    srtt_us: AtomicU64,
    /// Bytes of replication offset behind its master at the last poll; `u64::MAX`:
    /// not known (not polled yet, or the master did not say).
    lag: AtomicU64,
    /// The last poll, or a read since, found it unfit to serve: its `PING` went
    /// unanswered, its master or the cluster flags it failing (`fail?`, `fail`), its
    /// replication link is not up, or a read at it timed out.
    unfit: AtomicBool,
}

impl Default for ReadHealth {
    fn default() -> Self {
        ReadHealth {
            srtt_us: AtomicU64::new(0),
            lag: AtomicU64::new(u64::MAX),
            unfit: AtomicBool::new(false),
        }
    }
}

/// Weight of the newest sample in the smoothed round trip: 1/4 (TCP's SRTT uses 1/8,
/// for a sample per packet; here there is one a second, so a change shows in a few).
const NEW_SAMPLE_SHIFT: u32 = 2;

impl ReadHealth {
    /// A `PING`'s round trip: folded into the smoothed value (the first one taken as is).
    pub fn record_rtt(&self, rtt: Duration) {
        let sample = (rtt.as_micros() as u64).max(1);
        let old = self.srtt_us.load(Relaxed);
        let new = if old == 0 {
            sample
        } else {
            old - (old >> NEW_SAMPLE_SHIFT) + (sample >> NEW_SAMPLE_SHIFT)
        };
        self.srtt_us.store(new.max(1), Relaxed);
    }

    /// The smoothed round trip in microseconds; 0 when not measured yet.
    pub fn rtt_us(&self) -> u64 {
        self.srtt_us.load(Relaxed)
    }

    /// Bytes behind its master at the last poll (`None`: not known).
    pub fn set_lag(&self, lag: Option<u64>) {
        self.lag.store(lag.unwrap_or(u64::MAX), Relaxed);
    }

    /// Bytes behind its master; `u64::MAX` when not known.
    pub fn lag(&self) -> u64 {
        self.lag.load(Relaxed)
    }

    pub fn set_unfit(&self, unfit: bool) {
        self.unfit.store(unfit, Relaxed);
    }

    pub fn is_unfit(&self) -> bool {
        self.unfit.load(Relaxed)
    }

    /// May serve reads under a lag limit of `max_lag` bytes (0: no limit): not unfit,
    /// and known to be within the limit.
    pub fn fit_for_reads(&self, max_lag: u64) -> bool {
        !self.is_unfit() && (max_lag == 0 || self.lag() <= max_lag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_are_smoothed() {
        let h = ReadHealth::default();
        assert_eq!(h.rtt_us(), 0);
        h.record_rtt(Duration::from_micros(400));
        assert_eq!(h.rtt_us(), 400);
        h.record_rtt(Duration::from_micros(800));
        assert_eq!(h.rtt_us(), 500);
        for _ in 0..40 {
            h.record_rtt(Duration::from_micros(100));
        }
        assert!((100..110).contains(&h.rtt_us()), "{}", h.rtt_us());
    }

    #[test]
    fn fitness_needs_a_known_lag_under_a_limit() {
        let h = ReadHealth::default();
        assert!(h.fit_for_reads(0), "no limit: lag unknown is fine");
        assert!(!h.fit_for_reads(1024), "a limit: lag must be known");
        h.set_lag(Some(100));
        assert!(h.fit_for_reads(1024));
        h.set_lag(Some(4096));
        assert!(!h.fit_for_reads(1024));
        assert!(h.fit_for_reads(0));
        h.set_lag(Some(0));
        h.set_unfit(true);
        assert!(!h.fit_for_reads(0) && !h.fit_for_reads(1024));
    }
}
