//! A per-Zoom-account request budget for background work (DESIGN.md §6: "All loops
//! honour Zoom's Retry-After and a per-Zoom-account rate limit").
//!
//! Zoom's rate limits are per Zoom account, shared by every app and every user of
//! the account (§5), so background loops (token keeper, meeting sync, the client
//! secret re-check) take a slot from [`ZoomAccountLimits`] before each Zoom call
//! made for a connection, keyed by the connection's `account_id`:
//!
//! ```ignore
//! keeper.zoom_accounts.acquire(&row.account_id).await;          // wait for a slot
//! // … call Zoom …
//! // on a 429: keeper.zoom_accounts.pause_until(&row.account_id, Instant::now() + retry_after);
//! ```
//!
//! Each account has a token bucket (`per_second` slots a second, up to `burst` at
//! once), kept as a theoretical arrival time (GCRA), so a slot is reserved in
//! order and waiters are spread out instead of waking together. A pause (Zoom said
//! 429 with `Retry-After`) holds every waiter of the account until it ends and
//! restarts the account at the steady rate, without a burst.
//!
//! The limit is per process: several `serve` processes each keep their own budget.
//! API requests (a bot asking for a token) do not wait here; they answer 429 when
//! Zoom does.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Default steady rate per Zoom account: Zoom's lowest per-second limit on a Pro
/// account is 10 requests a second (Heavy APIs), shared with every other client.
pub const DEFAULT_PER_SECOND: u32 = 10;
/// Default burst per Zoom account.
pub const DEFAULT_BURST: u32 = 10;
/// Idle accounts are forgotten (an idle bucket is the same as a new one) once the
/// map holds this many, checked every this many acquisitions.
const SWEEP_EVERY: u64 = 1024;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// When the bucket would be empty again if nobody else came (GCRA's TAT).
    tat: Instant,
    paused_until: Option<Instant>,
}

/// Per-Zoom-account token buckets; one per process, shared by every background loop
/// (it is on [`crate::Keeper`] as `zoom_accounts`).
pub struct ZoomAccountLimits {
    /// Time between two slots at the steady rate.
    interval: Duration,
    /// How far ahead of the steady schedule a burst may run.
    tolerance: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    accounts: HashMap<String, Bucket>,
    acquisitions: u64,
}

impl Default for ZoomAccountLimits {
    fn default() -> Self {
        ZoomAccountLimits::new(DEFAULT_PER_SECOND, DEFAULT_BURST)
    }
}

impl ZoomAccountLimits {
    /// `per_second` slots a second per account, up to `burst` at once (both at
    /// least 1).
    pub fn new(per_second: u32, burst: u32) -> ZoomAccountLimits {
        let interval = Duration::from_secs(1) / per_second.max(1);
        ZoomAccountLimits {
            interval,
            tolerance: interval * (burst.max(1) - 1),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until account `account_id` may make one more Zoom call.
    pub async fn acquire(&self, account_id: &str) {
        // `Duration::MAX` never runs out, so this always gets its slot.
        let _ = self.acquire_within(account_id, Duration::MAX).await;
    }

    /// Like [`acquire`](Self::acquire), but gives up without taking a slot when the
    /// account's next free slot is more than `max_wait` away, returning how long
    /// until it is free — so a caller holding a lease can hand the work back
    /// instead of sitting on it.
    pub async fn acquire_within(
        &self,
        account_id: &str,
        max_wait: Duration,
    ) -> Result<(), Duration> {
        let started = Instant::now();
        loop {
            let budget = max_wait.saturating_sub(started.elapsed());
            let at = self.reserve(account_id, budget)?;
            tokio::time::sleep_until(at).await;
            // A pause that began while we waited holds us too: take a new slot after it.
            match self.paused_until(account_id) {
                Some(until) if until > Instant::now() => continue,
                _ => return Ok(()),
            }
        }
    }

    /// Reserves the account's next slot if it comes within `budget`; returns when.
    fn reserve(&self, account_id: &str, budget: Duration) -> Result<Instant, Duration> {
        let now = Instant::now();
        let mut state = self.state();
        state.acquisitions += 1;
        if state.acquisitions.is_multiple_of(SWEEP_EVERY) {
            state
                .accounts
                .retain(|_, b| b.tat > now || b.paused_until.is_some_and(|p| p > now));
        }
        let bucket = state
            .accounts
            .entry(account_id.to_owned())
            .or_insert(Bucket {
                tat: now,
                paused_until: None,
            });
        let tat = bucket.tat.max(now);
        let mut at = tat.checked_sub(self.tolerance).unwrap_or(now).max(now);
        if let Some(until) = bucket.paused_until {
            if until > at {
                at = until;
            }
        }
        let wait = at - now;
        if wait > budget {
            return Err(wait);
        }
        bucket.tat = tat.max(at) + self.interval;
        Ok(at)
    }

    /// Zoom answered 429 for `account_id`: no background call for that account
    /// until `until`; afterwards the account restarts at the steady rate (no burst).
    /// A later pause never shortens an earlier one.
    pub fn pause_until(&self, account_id: &str, until: Instant) {
        let now = Instant::now();
        let mut state = self.state();
        let bucket = state
            .accounts
            .entry(account_id.to_owned())
            .or_insert(Bucket {
                tat: now,
                paused_until: None,
            });
        if bucket.paused_until.is_none_or(|p| p < until) {
            bucket.paused_until = Some(until);
        }
        // The first slot after the pause is at `until`, then one per interval.
        let restart = until + self.tolerance;
        if bucket.tat < restart {
            bucket.tat = restart;
        }
    }

    /// When the account's pause ends, if it is paused now.
    pub fn paused_until(&self, account_id: &str) -> Option<Instant> {
        let now = Instant::now();
        self.state()
            .accounts
            .get(account_id)
            .and_then(|b| b.paused_until)
            .filter(|until| *until > now)
    }
}

#[cfg(test)]
mod tests {
    //! Real clocks, small intervals: lower bounds are exact (a sleep never wakes
    //! early); upper bounds are loose, for a loaded machine.

    use super::*;

    const SLACK: Duration = Duration::from_millis(400);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    async fn time_of(limits: &ZoomAccountLimits, account: &str, n: usize) -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            limits.acquire(account).await;
        }
        start.elapsed()
    }

    #[tokio::test]
    async fn a_burst_goes_at_once_then_the_steady_rate_applies() {
        let limits = ZoomAccountLimits::new(50, 5);
        assert!(time_of(&limits, "acct", 5).await < SLACK);
        // Ten more at 50/s take at least 180 ms (the first comes 20 ms after the burst).
        let t = time_of(&limits, "acct", 10).await;
        assert!(t >= ms(180) && t < ms(200) + SLACK, "{t:?}");
    }

    #[tokio::test]
    async fn accounts_do_not_share_a_budget() {
        let limits = ZoomAccountLimits::new(2, 1);
        limits.acquire("a").await;
        let start = Instant::now();
        limits.acquire("b").await;
        limits.acquire("c").await;
        assert!(start.elapsed() < SLACK);
        limits.acquire("a").await;
        assert!(start.elapsed() >= ms(450), "{:?}", start.elapsed());
    }

    #[tokio::test]
    async fn concurrent_waiters_are_spread_at_the_rate() {
        let limits = std::sync::Arc::new(ZoomAccountLimits::new(50, 1));
        let start = Instant::now();
        let mut done: Vec<Duration> = futures::future::join_all((0..10).map(|_| {
            let limits = limits.clone();
            async move {
                limits.acquire("acct").await;
                start.elapsed()
            }
        }))
        .await;
        done.sort();
        for (i, at) in done.iter().enumerate() {
            let slot = ms(20) * u32::try_from(i).expect("small");
            assert!(
                *at >= slot,
                "waiter {i} went at {at:?}, before its slot {slot:?}"
            );
        }
        assert!(done[9] < ms(180) + SLACK, "{done:?}");
    }

    #[tokio::test]
    async fn a_pause_holds_the_account_and_restarts_it_without_a_burst() {
        let limits = ZoomAccountLimits::new(10, 10);
        let start = Instant::now();
        let until = start + ms(300);
        limits.pause_until("acct", until);
        assert_eq!(limits.paused_until("acct"), Some(until));
        assert_eq!(limits.paused_until("other"), None);
        limits.acquire("other").await;
        assert!(start.elapsed() < ms(300), "other accounts go on");
        limits.acquire("acct").await;
        assert!(Instant::now() >= until);
        limits.acquire("acct").await;
        assert!(Instant::now() >= until + ms(100), "no burst after a pause");
        assert_eq!(limits.paused_until("acct"), None);
    }

    #[tokio::test]
    async fn a_shorter_pause_does_not_cut_a_longer_one() {
        let limits = ZoomAccountLimits::default();
        let start = Instant::now();
        limits.pause_until("acct", start + Duration::from_secs(60));
        limits.pause_until("acct", start + Duration::from_secs(5));
        assert_eq!(
            limits.paused_until("acct"),
            Some(start + Duration::from_secs(60))
        );
    }

    #[tokio::test]
    async fn a_pause_that_begins_while_waiting_holds_the_waiter() {
        let limits = std::sync::Arc::new(ZoomAccountLimits::new(5, 1));
        limits.acquire("acct").await;
        let start = Instant::now();
        let waiter = {
            let limits = limits.clone();
            tokio::spawn(async move {
                limits.acquire("acct").await;
                Instant::now()
            })
        };
        tokio::time::sleep(ms(50)).await;
        let until = start + ms(500);
        limits.pause_until("acct", until);
        let went_at = waiter.await.expect("waiter");
        assert!(went_at >= until, "{:?}", went_at - start);
    }

    #[tokio::test]
    async fn acquire_within_gives_up_without_taking_a_slot() {
        let limits = ZoomAccountLimits::new(1, 1);
        let start = Instant::now();
        let until = start + Duration::from_secs(120);
        limits.pause_until("acct", until);
        let wait = limits
            .acquire_within("acct", Duration::from_secs(10))
            .await
            .expect_err("too far away");
        assert!(wait > Duration::from_secs(119) && wait <= Duration::from_secs(120));
        assert!(start.elapsed() < SLACK, "did not wait");
        // The refusal took no slot: the next free slot is still the pause's end.
        assert_eq!(limits.reserve("acct", Duration::from_secs(200)), Ok(until));
    }

    #[tokio::test]
    async fn idle_accounts_are_forgotten() {
        let limits = ZoomAccountLimits::new(1000, 1);
        for i in 0..SWEEP_EVERY {
            limits.acquire(&format!("acct-{i}")).await;
        }
        tokio::time::sleep(ms(20)).await;
        let busy = ZoomAccountLimits::new(1_000_000, 1_000_000);
        // Bursting through one account reaches the next sweep quickly.
        *busy.state() = std::mem::take(&mut *limits.state());
        for _ in 0..SWEEP_EVERY {
            busy.acquire("busy").await;
        }
        let held = busy.state().accounts.len();
        assert!(held < 10, "{held} accounts still held");
    }
}
