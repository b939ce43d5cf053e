//! Random spread for schedules, so work planned together does not run together.
//! Every jittered delay in the service is drawn here.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng as _;

/// A delay drawn uniformly from `low..=high` (`high` below `low` gives `low`).
pub fn between(low: Duration, high: Duration) -> Duration {
    if high <= low {
        return low;
    }
    let low_ms = u64::try_from(low.as_millis()).unwrap_or(u64::MAX);
    let high_ms = u64::try_from(high.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::thread_rng().gen_range(low_ms..=high_ms))
}

/// `base` ± up to `spread`, never below zero.
pub fn around(base: Duration, spread: Duration) -> Duration {
    between(base.saturating_sub(spread), base.saturating_add(spread))
}

/// `base` ± up to `percent` % of it.
pub fn around_percent(base: Duration, percent: u32) -> Duration {
    around(base, base * percent / 100)
}

/// `now + delay`, saturating at `now` if the sum does not fit.
pub fn after(now: DateTime<Utc>, delay: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(delay)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(now)
}

/// A backoff attempt number that grows with how long something has been overdue
/// (log2 of the seconds since `since`), so repeated failures wait longer without
/// keeping a counter.
pub fn attempt_since(since: DateTime<Utc>, now: DateTime<Utc>) -> u32 {
    (now - since).num_seconds().max(1).unsigned_abs().ilog2()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_stay_within_their_bounds() {
        let base = Duration::from_secs(100);
        for _ in 0..1_000 {
            let d = around_percent(base, 10);
            assert!(
                d >= Duration::from_secs(90) && d <= Duration::from_secs(110),
                "{d:?}"
            );
            let d = around(Duration::from_secs(1), Duration::from_secs(5));
            assert!(d <= Duration::from_secs(6), "{d:?}");
        }
        assert_eq!(between(base, Duration::ZERO), base);
    }

    #[test]
    fn attempts_grow_with_the_time_overdue() {
        let now = Utc::now();
        assert_eq!(attempt_since(now, now), 0);
        assert_eq!(attempt_since(now - chrono::Duration::seconds(8), now), 3);
        assert_eq!(attempt_since(now + chrono::Duration::seconds(8), now), 0);
    }
}
