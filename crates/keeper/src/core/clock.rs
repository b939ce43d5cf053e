//! The one clock and the one sleeper. Every lease, expiry, schedule and retention is
//! measured on [`Clock::now`], never on `Utc::now()` directly, so a test can move
//! time forward ([`Clock::advance`]) instead of sleeping for it, and a worker asleep
//! on [`Clock::sleep`] wakes when it does.
//!
//! The storage layer reads the same clock: on SQLite it is this process's time
//! (kept strictly increasing there); on PostgreSQL the database server's
//! `clock_timestamp()` plus [`Clock::ahead`], so every process sharing one database
//! agrees on what "now" is.
//!
//! In-process pacing (the API rate limiter, Zoom account budgets, the ingress's
//! short caches) is measured on a monotonic `Instant` instead: it never leaves the
//! process and must not jump when the wall clock does.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

/// Wall time, shared by everything one [`Keeper`](crate::Keeper) runs. Cloning
/// shares it: a clone that is advanced advances them all.
#[derive(Clone, Default)]
pub struct Clock(Arc<Shared>);

#[derive(Default)]
struct Shared {
    /// How far this clock runs ahead of the system clock, in microseconds (0 in
    /// production; only [`Clock::advance`] changes it).
    ahead_micros: AtomicI64,
    /// Wakes every [`Clock::sleep`] when the clock is advanced.
    advanced: Notify,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clock")
            .field("ahead", &self.ahead())
            .finish()
    }
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// Now, on this clock.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.ahead()
    }

    /// How far this clock has been advanced past the system clock.
    pub fn ahead(&self) -> chrono::Duration {
        chrono::Duration::microseconds(self.0.ahead_micros.load(Ordering::SeqCst))
    }

    /// Moves this clock (and every clone of it) forward by `by`, and wakes every
    /// sleeper so it can see whether its time has come. For tests: what would have
    /// happened after `by` of waiting happens now.
    pub fn advance(&self, by: Duration) {
        let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.0.ahead_micros.fetch_add(micros, Ordering::SeqCst);
        self.0.advanced.notify_waiters();
    }

    /// Waits until `duration` has passed on this clock: the system's time passing,
    /// or the clock being advanced, whichever gets there first.
    pub async fn sleep(&self, duration: Duration) {
        let until =
            self.now() + chrono::Duration::from_std(duration).unwrap_or(chrono::TimeDelta::MAX);
        loop {
            // Registered before reading the time, so an advance in between is seen.
            let advanced = self.0.advanced.notified();
            let left = until - self.now();
            let Ok(left) = left.to_std() else { return };
            if left.is_zero() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(left) => {}
                _ = advanced => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn advancing_moves_every_clone_and_wakes_sleepers() {
        let clock = Clock::system();
        let other = clock.clone();
        let before = clock.now();
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep(Duration::from_secs(3600)).await }
        });
        tokio::task::yield_now().await;
        other.advance(Duration::from_secs(3600));
        tokio::time::timeout(Duration::from_secs(10), sleeper)
            .await
            .expect("the sleeper woke when the clock moved past its time")
            .expect("sleeper");
        assert!(clock.now() - before >= chrono::Duration::seconds(3600));
        assert_eq!(clock.ahead(), chrono::Duration::seconds(3600));
    }

    #[tokio::test]
    async fn a_sleeper_not_yet_due_sleeps_on() {
        let clock = Clock::system();
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep(Duration::from_secs(3600)).await }
        });
        tokio::task::yield_now().await;
        clock.advance(Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!sleeper.is_finished(), "an hour has not passed yet");
        clock.advance(Duration::from_secs(3540));
        tokio::time::timeout(Duration::from_secs(10), sleeper)
            .await
            .expect("due now")
            .expect("sleeper");
    }
}
