//! The token keeper (DESIGN.md §6): a loop in `serve` (role `worker` or `all`) that
//! refreshes every connected connection at least every `token_refresh_max_age`
//! (spread out with jitter) and ahead of indexed meetings.
//!
//! Each round claims due connections from the database with a lease, so any number
//! of processes can run it and none refreshes a connection another is refreshing.
//! Refreshes go through [`crate::domain::tokens::refresh_claimed`], the same
//! path as on-demand refreshes, each after a slot of its Zoom account's rate limit
//! ([`crate::core::zoom_account_limits`]); a connection whose account is paused (Zoom
//! said 429) is handed back for when the pause ends.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use tokio::sync::watch;

use super::Pass;
use crate::domain::tokens::TokenError;
use crate::storage::ConnectionRow;
use crate::Keeper;

/// Connections claimed per round.
pub const BATCH: u32 = 50;
/// Refreshes in flight at once per process.
pub const CONCURRENCY: usize = 8;
/// Refresh ahead of an indexed meeting starting within this long.
pub const AHEAD_OF_MEETINGS: Duration = Duration::from_secs(30 * 60);

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
pub async fn run(keeper: Arc<Keeper>, shutdown: watch::Receiver<bool>) {
    let interval = keeper.config.token_keeper_interval;
    let stopping = shutdown.clone();
    super::poll_loop(
        "token_keeper",
        keeper.clock.clone(),
        shutdown,
        Duration::ZERO,
        || interval,
        || async {
            let round = run_once(&keeper, &stopping).await?;
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
            Ok(if round.claimed as u32 >= BATCH {
                Pass::More
            } else {
                Pass::Done
            })
        },
    )
    .await
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
    if !crate::domain::tokens::take_account_slot(keeper, &row).await {
        return Outcome::Deferred;
    }
    match crate::domain::tokens::refresh_claimed(keeper, &row).await {
        Ok(_) => Outcome::Refreshed,
        Err(TokenError::Disconnected(_)) => Outcome::Disconnected,
        // Logged, counted and scheduled for retry by `refresh_claimed`.
        Err(_) => Outcome::Failed,
    }
}
