//! Log lines that could come once per request, kept to one line per subject per
//! interval with the count of what was not logged: a refused command sent in a loop
//! writes one line a minute, not a million.
//!
//! Only rare paths call it (a refusal is already an error reply), so a mutex is fine.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// How often one subject may log.
pub const INTERVAL: Duration = Duration::from_secs(60);

/// At most this many subjects are remembered; past it the oldest are forgotten (each
/// subject is a command name, a bounded set in practice).
const MAX_SUBJECTS: usize = 1024;

/// What the limiter says about one occurrence.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Log it, saying how many occurrences the line stands for (this one and those
    /// silenced since the subject's last line).
    Log { count: u64 },
    /// Silenced: counted for the subject's next line.
    Quiet,
}

/// Per-subject counts and the time of each subject's last line (pure but for the clock
/// the caller passes).
#[derive(Default)]
pub struct Limiter {
    subjects: HashMap<String, (Instant, u64)>,
}

impl Limiter {
    /// One occurrence of `subject` at `now`.
    pub fn note(&mut self, subject: &str, now: Instant) -> Verdict {
        if let Some((last, silenced)) = self.subjects.get_mut(subject) {
            if now.duration_since(*last) < INTERVAL {
                *silenced += 1;
                return Verdict::Quiet;
            }
            let count = *silenced + 1;
            *last = now;
            *silenced = 0;
            return Verdict::Log { count };
        }
        if self.subjects.len() >= MAX_SUBJECTS {
            if let Some(oldest) = (self.subjects.iter())
                .min_by_key(|(_, (last, _))| *last)
                .map(|(k, _)| k.clone())
            {
                self.subjects.remove(&oldest);
            }
        }
        self.subjects.insert(subject.to_string(), (now, 0));
        Verdict::Log { count: 1 }
    }
}

static REFUSALS: LazyLock<Mutex<Limiter>> = LazyLock::new(Mutex::default);

/// A request slotgate refused (a command it does not serve), `text` the error reply
/// (which names the command and why): logged at info once a minute per reply text, with
/// how many were refused since the last line.
#[cold]
#[inline(never)]
pub fn refused(text: &str) {
    let verdict = match REFUSALS.lock() {
        Ok(mut limiter) => limiter.note(text, Instant::now()),
        Err(_) => return,
    };
    if let Verdict::Log { count } = verdict {
        tracing::info!(
            count,
            reply = text,
            "refused a command (one line per command a minute; count: refused since the last line)"
        );
    }
}

static FALLBACKS: LazyLock<Mutex<Limiter>> = LazyLock::new(Mutex::default);

/// A read meant for a replica went to the master instead, for the reason `err` (which
/// names the replica): logged at info once a minute per reason.
#[cold]
#[inline(never)]
pub fn replica_read_fallback(err: &dyn std::fmt::Display) {
    let text = err.to_string();
    let verdict = match FALLBACKS.lock() {
        Ok(mut limiter) => limiter.note(&text, Instant::now()),
        Err(_) => return,
    };
    if let Verdict::Log { count } = verdict {
        tracing::info!(
            count,
            reason = %text,
            "a read meant for a replica went to the master (one line per reason a minute)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_subject_per_interval_with_the_silenced_count() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        assert_eq!(l.note("wait", t0), Verdict::Log { count: 1 });
        for i in 1..=5 {
            assert_eq!(l.note("wait", t0 + Duration::from_secs(i)), Verdict::Quiet);
        }
        // Another subject is not silenced by the first.
        assert_eq!(l.note("monitor", t0), Verdict::Log { count: 1 });
        // After the interval: the line stands for the 5 silenced and this one.
        assert_eq!(l.note("wait", t0 + INTERVAL), Verdict::Log { count: 6 });
        assert_eq!(l.note("wait", t0 + INTERVAL), Verdict::Quiet);
        assert_eq!(l.note("wait", t0 + INTERVAL * 2), Verdict::Log { count: 2 });
    }

    #[test]
    fn subjects_are_bounded() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        for i in 0..MAX_SUBJECTS + 10 {
            let now = t0 + Duration::from_millis(i as u64);
            assert_eq!(l.note(&i.to_string(), now), Verdict::Log { count: 1 });
        }
        assert_eq!(l.subjects.len(), MAX_SUBJECTS);
        // The oldest went first.
        assert!(!l.subjects.contains_key("0"));
        assert!(l.subjects.contains_key(&(MAX_SUBJECTS + 9).to_string()));
    }
}
