//! Housekeeping (DESIGN.md §6): a loop in `serve` (role `worker` or `all`) that drops
//! what is no longer worth keeping — Zoom webhook receipts older than
//! [`RECEIPT_RETENTION`], index rows of meetings that started more than
//! [`PAST_MEETING_RETENTION`] ago (PMI rows and rows without a start time, i.e.
//! recurring meetings, stay), outgoing webhook deliveries finished (`success` or
//! `failure`) more than `webhook_delivery_retention` ago, with their attempt
//! summaries, outbox events fanned out more than `outbox_event_retention` ago, bot
//! platform calls older than [`BOT_PLATFORM_CALL_RETENTION`], and the signed message
//! ids remembered for replay refusal once they are outside the timestamp window, and
//! hosted connect sessions older than [`CONNECT_SESSION_RETENTION`], and lines of
//! the apps' logs older than [`APP_EVENT_RETENTION`].
//! A delivery still pending (waiting for its first attempt or a retry) and an outbox
//! event not fanned out yet are never deleted, however old. Beside the sweep, every
//! [`PRUNE_EVERY`] it drops routine events beyond each connection log's newest few
//! ([`connections::prune_event_logs`]): every retention rule runs here.
//!
//! It runs [`FIRST_RUN_AFTER`] after start, then every [`EVERY`] (± [`JITTER`]).
//! Each sweep deletes [`BATCH`] rows per statement, each statement its own short
//! transaction, so it never holds the SQLite write lock (or PostgreSQL row locks)
//! for long; it checks for shutdown between statements.
//!
//! No lease: unlike the other loops it has no side effect outside the database and
//! every delete is idempotent (a cutoff from the database clock, nothing else), so
//! two processes sweeping at once only repeat a few cheap statements — PostgreSQL's
//! `SKIP LOCKED` even lets them split the rows. A lease would cost more than it saves.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Pass;
use crate::core::jitter;
use crate::domain::{bot_platforms, connections};
use crate::storage::StoreError;
use crate::Keeper;

/// How long a Zoom webhook receipt is kept. Zoom retries a delivery for about
/// 85 minutes at most; a week also covers a replay captured by a third party, whose
/// signature timestamp is already refused after 300 s anyway.
pub const RECEIPT_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// How long after its start a one-off meeting stays indexed (a bot may join a
/// meeting that runs late or is restarted the next day).
pub const PAST_MEETING_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// How long a hosted connect session stays readable (its link expires long before).
pub const CONNECT_SESSION_RETENTION: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// How long a bot platform's calls stay in its log.
pub const BOT_PLATFORM_CALL_RETENTION: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// How long a line stays in an app's log (`/api/v2/zoom-oauth-app-logs/`).
pub const APP_EVENT_RETENTION: Duration = Duration::from_secs(90 * 24 * 60 * 60);
/// How often the connections' event logs are pruned (every refresh writes an
/// event).
pub const PRUNE_EVERY: Duration = Duration::from_secs(5 * 60);
/// Time between sweeps.
pub const EVERY: Duration = Duration::from_secs(10 * 60);
/// Up to this much is added to or taken from [`EVERY`], so processes drift apart.
pub const JITTER: Duration = Duration::from_secs(60);
/// The first sweep, shortly after start (not at once: start-up has enough to do).
pub const FIRST_RUN_AFTER: Duration = Duration::from_secs(30);
/// Rows per delete statement: a few milliseconds of write lock on SQLite.
pub const BATCH: u32 = 1_000;
/// Pause between full batches, so webhook writes interleave with a large backlog.
const PAUSE: Duration = Duration::from_millis(5);

/// What one sweep deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sweep {
    pub receipts: u64,
    pub meetings: u64,
    pub webhook_deliveries: u64,
    pub outbox_events: u64,
    /// Bot platform calls past [`BOT_PLATFORM_CALL_RETENTION`] and signed message
    /// ids past the replay window.
    pub bot_platform_logs: u64,
    /// Hosted connect sessions created more than [`CONNECT_SESSION_RETENTION`] ago.
    pub connect_sessions: u64,
    /// Dashboard sessions past their idle timeout and ended sign-in throttling windows.
    pub operator_sessions: u64,
    /// App log lines written more than [`APP_EVENT_RETENTION`] ago.
    pub app_events: u64,
    /// Shutdown began before the sweep finished; the next process carries on.
    pub interrupted: bool,
}

/// Sweeps shortly after start and then every [`EVERY`], and prunes event logs
/// every [`PRUNE_EVERY`], until `shutdown` turns true.
pub async fn run(keeper: Arc<Keeper>, shutdown: watch::Receiver<bool>) {
    let stopping = shutdown.clone();
    let sweeps = super::poll_loop(
        "housekeeping",
        keeper.clock.clone(),
        shutdown.clone(),
        FIRST_RUN_AFTER,
        || jitter::around(EVERY, JITTER),
        || async {
            let sweep = run_once(&keeper, &stopping).await?;
            if sweep.deleted() > 0 {
                tracing::info!(
                    receipts = sweep.receipts,
                    meetings = sweep.meetings,
                    webhook_deliveries = sweep.webhook_deliveries,
                    outbox_events = sweep.outbox_events,
                    interrupted = sweep.interrupted,
                    "housekeeping swept"
                );
            }
            Ok(Pass::Done)
        },
    );
    // Where the last pruning step stopped; `None` starts from the first connection.
    let cursor = tokio::sync::Mutex::new(None::<String>);
    let pruning = super::poll_loop(
        "event_log_pruning",
        keeper.clock.clone(),
        shutdown,
        PRUNE_EVERY,
        || PRUNE_EVERY,
        || async {
            let mut cursor = cursor.lock().await;
            let deleted = connections::prune_event_logs(&keeper, &mut cursor).await?;
            if deleted > 0 {
                tracing::info!(deleted, "pruned connection event logs");
            }
            Ok(Pass::Done)
        },
    );
    tokio::join!(sweeps, pruning);
}

impl Sweep {
    /// Rows deleted, all kinds together.
    pub fn deleted(&self) -> u64 {
        self.receipts
            + self.meetings
            + self.webhook_deliveries
            + self.outbox_events
            + self.bot_platform_logs
            + self.connect_sessions
            + self.operator_sessions
    }
}

/// One sweep with the retention periods above (and the configured ones), cutoffs
/// from the database clock.
pub async fn run_once(
    keeper: &Keeper,
    shutdown: &watch::Receiver<bool>,
) -> Result<Sweep, StoreError> {
    let now = keeper.store.now().await?;
    let receipts_before = now - RECEIPT_RETENTION;
    let meetings_before = now - PAST_MEETING_RETENTION;
    let deliveries_before = now - keeper.config.webhook_delivery_retention;
    let outbox_before = now - keeper.config.outbox_event_retention;
    let mut sweep = Sweep::default();
    let store = &keeper.store;
    sweep.receipts = in_batches(shutdown, &mut sweep.interrupted, || {
        store.delete_webhook_receipts_before(receipts_before, BATCH)
    })
    .await?;
    sweep.meetings = in_batches(shutdown, &mut sweep.interrupted, || {
        store.delete_meetings_started_before(meetings_before, BATCH)
    })
    .await?;
    sweep.webhook_deliveries = in_batches(shutdown, &mut sweep.interrupted, || {
        store.delete_finished_webhook_deliveries_before(deliveries_before, BATCH)
    })
    .await?;
    sweep.outbox_events = in_batches(shutdown, &mut sweep.interrupted, || {
        store.delete_dispatched_outbox_events_before(outbox_before, BATCH)
    })
    .await?;
    let message_ids_before = now - bot_platforms::MESSAGE_ID_MEMORY;
    sweep.bot_platform_logs = in_batches(shutdown, &mut sweep.interrupted, || {
        store.delete_bot_platform_message_ids_before(message_ids_before, BATCH)
    })
    .await?;
    let sessions_before = now - CONNECT_SESSION_RETENTION;
    sweep.connect_sessions = in_batches(shutdown, &mut sweep.interrupted, || {
        store.delete_connect_sessions_before(sessions_before, BATCH)
    })
    .await?;
    let calls_before = now - BOT_PLATFORM_CALL_RETENTION;
    sweep.bot_platform_logs += in_batches(shutdown, &mut sweep.interrupted, || {
        store.delete_bot_platform_calls_before(calls_before, BATCH)
    })
    .await?;
    let app_events_before = now - APP_EVENT_RETENTION;
    sweep.app_events = in_batches(shutdown, &mut sweep.interrupted, || {
        store.prune_app_events(app_events_before, BATCH)
    })
    .await?;
    sweep.operator_sessions = crate::domain::operators::prune(&**store, now).await?;
    Ok(sweep)
}

/// Runs `delete` (one statement of up to [`BATCH`] rows) until a batch comes back
/// short or shutdown begins; returns the rows deleted.
async fn in_batches<F, Fut>(
    shutdown: &watch::Receiver<bool>,
    interrupted: &mut bool,
    mut delete: F,
) -> Result<u64, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, StoreError>>,
{
    let mut total = 0;
    loop {
        if *shutdown.borrow() {
            *interrupted = true;
            return Ok(total);
        }
        let n = delete().await?;
        total += n;
        if n < u64::from(BATCH) {
            return Ok(total);
        }
        tokio::time::sleep(PAUSE).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_bounds() {
        for _ in 0..1_000 {
            let d = jitter::around(EVERY, JITTER);
            assert!(d >= EVERY - JITTER && d <= EVERY + JITTER, "{d:?}");
        }
    }
}
