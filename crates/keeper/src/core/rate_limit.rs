//! Per-project request rate limit, in memory (each process limits what it serves;
//! the limit is generous and meant against runaway clients, not for billing).
//! governor's keyed GCRA limiter: one timestamp per project, checked without a
//! global lock.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::Quota;

type Limiter<C> = governor::RateLimiter<
    String,
    DefaultKeyedStateStore<String>,
    C,
    NoOpMiddleware<<C as Clock>::Instant>,
>;

/// Projects remembered before the ones idle long enough to be full again are
/// forgotten.
const SWEEP_WHEN_OVER: usize = 10_000;

pub struct RateLimiter<C: Clock = DefaultClock> {
    limiter: Limiter<C>,
    clock: C,
}

/// `per_second` requests a second, after a burst of `burst`.
fn quota(per_second: f64, burst: u32) -> Quota {
    let period = Duration::from_secs_f64(1.0 / per_second.max(1e-6));
    Quota::with_period(period.max(Duration::from_nanos(1)))
        .expect("a period of at least 1 ns")
        .allow_burst(NonZeroU32::new(burst.max(1)).expect("at least 1"))
}

impl RateLimiter {
    pub fn new(per_second: f64, burst: u32) -> RateLimiter {
        RateLimiter::with_clock(per_second, burst, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimiter<C> {
    fn with_clock(per_second: f64, burst: u32, clock: C) -> RateLimiter<C> {
        RateLimiter {
            limiter: governor::RateLimiter::new(
                quota(per_second, burst),
                DefaultKeyedStateStore::default(),
                clock.clone(),
            ),
            clock,
        }
    }

    /// Takes one request of `project_id`'s budget; `Err(wait)` when none is left.
    pub fn check(&self, project_id: &str) -> Result<(), Duration> {
        if self.limiter.len() > SWEEP_WHEN_OVER {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(&project_id.to_owned())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    #[test]
    fn burst_then_refill() {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::with_clock(2.0, 3, clock.clone());
        for _ in 0..3 {
            assert!(limiter.check("p").is_ok());
        }
        let wait = limiter.check("p").expect_err("bucket empty");
        assert!(wait <= Duration::from_millis(500), "{wait:?}");
        assert!(limiter.check("other").is_ok(), "projects are separate");
        clock.advance(Duration::from_millis(500));
        assert!(limiter.check("p").is_ok());
        assert!(limiter.check("p").is_err(), "one request came back");
    }
}
