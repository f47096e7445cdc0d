//! A per-server circuit breaker: after `failures` consecutive errors or timeouts a server is
//! skipped (its items are misses) for `open_for`; then one probe is let through, and its
//! outcome closes the breaker or opens it again. Keeps a dead or frozen memcached from costing
//! every request its deadline.

use parking_lot::Mutex;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is in flight; everyone else is refused until it reports, or until `until`:
    /// a probe whose request was dropped mid-flight never reports, and must not leave the
    /// server skipped for good.
    HalfOpen {
        until: Instant,
    },
}

pub struct Breaker {
    state: Mutex<State>,
    failures: u32,
    open_for: Duration,
}

impl Breaker {
    pub fn new(failures: u32, open_for: Duration) -> Self {
        Self {
            state: Mutex::new(State::Closed { failures: 0 }),
            failures: failures.max(1),
            open_for,
        }
    }

    /// May an operation be sent now? (At most one caller gets `true` while half-open.)
    pub fn allow(&self, now: Instant) -> bool {
        let mut state = self.state.lock();
        match *state {
            State::Closed { .. } => true,
            State::Open { until } | State::HalfOpen { until } if now >= until => {
                *state = State::HalfOpen {
                    until: now + self.open_for,
                };
                true
            }
            State::Open { .. } | State::HalfOpen { .. } => false,
        }
    }

    pub fn record(&self, ok: bool, now: Instant) {
        let mut state = self.state.lock();
        *state = match (*state, ok) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < self.failures => State::Closed {
                failures: failures + 1,
            },
            (_, false) => State::Open {
                until: now + self.open_for,
            },
        };
    }

    pub fn is_open(&self) -> bool {
        !matches!(*self.state.lock(), State::Closed { .. })
    }

    #[cfg(test)]
    pub fn state(&self) -> Option<State> {
        Some(*self.state.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_and_probes_to_close() {
        let t0 = Instant::now();
        let b = Breaker::new(3, Duration::from_secs(1));
        b.record(false, t0);
        b.record(true, t0);
        b.record(false, t0);
        b.record(false, t0);
        assert!(b.allow(t0) && !b.is_open(), "two in a row is not three");
        b.record(false, t0);
        assert!(b.is_open());
        assert!(!b.allow(t0 + Duration::from_millis(999)), "open: refused");
        let later = t0 + Duration::from_secs(1);
        assert!(b.allow(later), "one probe after the open period");
        assert!(!b.allow(later), "…and only one");
        b.record(true, later);
        assert_eq!(b.state(), Some(State::Closed { failures: 0 }));
        assert!(b.allow(later));
    }

    #[test]
    fn a_failed_probe_reopens() {
        let t0 = Instant::now();
        let b = Breaker::new(1, Duration::from_secs(1));
        b.record(false, t0);
        let later = t0 + Duration::from_secs(2);
        assert!(b.allow(later));
        b.record(false, later);
        assert_eq!(
            b.state(),
            Some(State::Open {
                until: later + Duration::from_secs(1)
            })
        );
    }

    #[test]
    fn a_probe_that_never_reports_does_not_keep_the_server_skipped() {
        let t0 = Instant::now();
        let b = Breaker::new(1, Duration::from_secs(1));
        b.record(false, t0);
        let probe = t0 + Duration::from_secs(1);
        assert!(
            b.allow(probe),
            "the probe goes out and its request is dropped: no record()"
        );
        assert!(!b.allow(probe + Duration::from_millis(999)));
        assert!(
            b.allow(probe + Duration::from_secs(1)),
            "another probe after a further period"
        );
    }
}
