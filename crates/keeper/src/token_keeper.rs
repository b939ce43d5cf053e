//! The token keeper (DESIGN.md §6): a loop in `serve` (role `worker` or `all`) that
//! refreshes every connected connection at least every `token_refresh_max_age`
//! (spread out with jitter) and ahead of indexed meetings.
//!
//! Each round claims due connections from the database with a lease, so any number
//! of processes can run it and none refreshes a connection another is refreshing.
//! Refreshes go through [`crate::tokens::TokenBroker::refresh_claimed`], the same
//! path as on-demand refreshes, each after a slot of its Zoom account's rate limit
//! ([`crate::zoom_account_limits`]); a connection whose account is paused (Zoom
//! said 429) is handed back for when the pause ends.
//!
//! The loop also prunes the connections' event logs (every refresh writes an
//! event), at most every [`PRUNE_EVERY`]: see [`crate::connections::prune_event_logs`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use tokio::sync::watch;

use crate::storage::ConnectionRow;
use crate::tokens::TokenError;
use crate::Keeper;

/// Connections claimed per round.
pub const BATCH: u32 = 50;
/// Refreshes in flight at once per process.
pub const CONCURRENCY: usize = 8;
/// Refresh ahead of an indexed meeting starting within this long.
pub const AHEAD_OF_MEETINGS: Duration = Duration::from_secs(30 * 60);
/// How often the loop prunes event logs.
pub const PRUNE_EVERY: Duration = Duration::from_secs(5 * 60);

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub claimed: usize,
    pub refreshed: usize,
    pub disconnected: usize,
    pub failed: usize,
    /// Claimed but handed back unrefreshed because shutdown began.
    pub released: usize,
    /// Claimed but handed back for later: its Zoom account is rate limited.
    pub deferred: usize,
}

/// Runs rounds every `token_keeper_interval` until `shutdown` turns true, then
/// finishes the refreshes in flight and releases what it claimed but did not start.
pub async fn run(keeper: Arc<Keeper>, mut shutdown: watch::Receiver<bool>) {
    let interval = keeper.config.token_keeper_interval;
    tracing::info!(
        owner = keeper.tokens.owner(),
        interval_s = interval.as_secs_f64(),
        "token keeper started"
    );
    let mut prune_cursor: Option<String> = None;
    let mut next_prune = Instant::now() + PRUNE_EVERY;
    loop {
        if *shutdown.borrow() {
            break;
        }
        if Instant::now() >= next_prune {
            next_prune = Instant::now() + PRUNE_EVERY;
            match crate::connections::prune_event_logs(&keeper, &mut prune_cursor).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "pruned connection event logs"),
                Err(e) => tracing::warn!(error = %e, "pruning connection event logs failed"),
            }
        }
        // A full batch means more may be due: go again at once.
        let full = match run_once(&keeper, &shutdown).await {
            Ok(round) => {
                if round.claimed > 0 {
                    tracing::info!(
                        claimed = round.claimed,
                        refreshed = round.refreshed,
                        disconnected = round.disconnected,
                        failed = round.failed,
                        released = round.released,
                        deferred = round.deferred,
                        "token keeper round"
                    );
                }
                round.claimed as u32 >= BATCH
            }
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "token keeper round failed");
                false
            }
        };
        if full {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => {}
        }
    }
    tracing::info!("token keeper stopped");
}

/// One round: claim what is due and refresh it with bounded concurrency.
pub async fn run_once(keeper: &Keeper, shutdown: &watch::Receiver<bool>) -> anyhow::Result<Round> {
    let claimed = keeper
        .store
        .claim_due_refreshes(
            keeper.tokens.owner(),
            BATCH,
            keeper.config.token_lease_duration,
            AHEAD_OF_MEETINGS,
        )
        .await?;
    let mut round = Round {
        claimed: claimed.len(),
        ..Round::default()
    };
    let outcomes: Vec<Outcome> = futures::stream::iter(claimed)
        .map(|row| refresh_one(keeper, row, shutdown))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for outcome in outcomes {
        match outcome {
            Outcome::Refreshed => round.refreshed += 1,
            Outcome::Disconnected => round.disconnected += 1,
            Outcome::Failed => round.failed += 1,
            Outcome::Released => round.released += 1,
            Outcome::Deferred => round.deferred += 1,
        }
    }
    Ok(round)
}

enum Outcome {
    Refreshed,
    Disconnected,
    Failed,
    Released,
    Deferred,
}

async fn refresh_one(
    keeper: &Keeper,
    row: ConnectionRow,
    shutdown: &watch::Receiver<bool>,
) -> Outcome {
    if *shutdown.borrow() {
        // Hand it back untouched so another process (or the next start) takes it.
        let _ = keeper
            .store
            .release_connection_lease(&row.id, row.fence, None)
            .await;
        return Outcome::Released;
    }
    if !keeper.tokens.take_account_slot(keeper, &row).await {
        return Outcome::Deferred;
    }
    match keeper.tokens.refresh_claimed(keeper, &row).await {
        Ok(_) => Outcome::Refreshed,
        Err(TokenError::Disconnected(_)) => Outcome::Disconnected,
        // Logged, counted and scheduled for retry by `refresh_claimed`.
        Err(_) => Outcome::Failed,
    }
}
