//! Per-project request rate limit: a token bucket per project, in memory (each
//! process limits what it serves; the limit is generous and meant against runaway
//! clients, not for billing).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Buckets idle this long are full again and can be forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(600);
const SWEEP_WHEN_OVER: usize = 10_000;

impl RateLimiter {
    pub fn new(per_second: f64, burst: u32) -> RateLimiter {
        RateLimiter {
            per_second,
            burst: f64::from(burst),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `project_id`; `Err(wait)` when none is left.
    pub fn check(&self, project_id: &str) -> Result<(), Duration> {
        self.check_at(project_id, Instant::now())
    }

    fn check_at(&self, project_id: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > SWEEP_WHEN_OVER {
            buckets.retain(|_, b| now.duration_since(b.updated) < FORGET_AFTER);
        }
        let bucket = buckets.entry(project_id.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_second,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let limiter = RateLimiter::new(2.0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at("p", t0).is_ok());
        }
        let wait = limiter.check_at("p", t0).expect_err("bucket empty");
        assert!(wait <= Duration::from_millis(500));
        assert!(
            limiter.check_at("other", t0).is_ok(),
            "projects are separate"
        );
        assert!(limiter
            .check_at("p", t0 + Duration::from_millis(500))
            .is_ok());
    }
}
