//! The one retry delay both binaries use (the origin's purges to the edge, the edge's purges to
//! other regions): exponential from `base`, capped at `max`, with full jitter, so many clients
//! retrying against one recovering server do not arrive in lockstep.

use std::time::Duration;

/// The delay before retry number `attempt` (1 for the first retry): a random time up to
/// `base × 2^(attempt−1)`, capped at `max`, and never less than half of that.
pub fn delay(attempt: u32, base: Duration, max: Duration) -> Duration {
    let ceiling = base
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(max);
    ceiling.mul_f64(0.5 + fastrand::f64() / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_is_capped_and_jitters() {
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(10));
        for _ in 0..100 {
            let first = delay(1, base, max);
            assert!(first >= base / 2 && first <= base, "{first:?}");
            let third = delay(3, base, max);
            assert!(third >= base * 2 && third <= base * 4, "{third:?}");
            assert!(delay(30, base, max) <= max);
        }
        let spread: std::collections::BTreeSet<Duration> =
            (0..20).map(|_| delay(5, base, max)).collect();
        assert!(spread.len() > 10, "jittered: {spread:?}");
    }
}
