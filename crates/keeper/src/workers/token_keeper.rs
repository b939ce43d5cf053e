//! The token keeper (DESIGN.md §6): a loop in `serve` (role `worker` or `all`) that
//! refreshes every connected connection at least every `token_refresh_max_age`
//! (spread out with jitter) and ahead of indexed meetings.
//!
//! Each round claims due connections from the database with a lease, so any number
//! of processes can run it and none refreshes a connection another is refreshing.
//! Refreshes go through [`crate::domain::tokens::TokenBroker::refresh_claimed`], the same
//! path as on-demand refreshes, each after a slot of its Zoom account's rate limit
//! ([`crate::core::zoom_account_limits`]); a connection whose account is paused (Zoom
//! said 429) is handed back for when the pause ends.
//!
//! The loop also prunes the connections' event logs (every refresh writes an
//! event), at most every [`PRUNE_EVERY`]: see [`crate::domain::connections::prune_event_logs`].
//!
//! Beside it runs the re-check loop: after an app's client secret changes, the
//! connections a bad secret disconnected are tried again
//! ([`crate::domain::tokens::recheck_after_client_secret_change`]). The write that stores the
//! secret also makes the app's re-check due (`recheck_due_at`), so the work survives
//! a crash: [`recheck_once`] claims a due app with a lease ([`RECHECK_LEASE`], renewed
//! while the re-check runs), runs it, then clears the mark only if it still holds
//! the claim — a newer secret stored meanwhile keeps it due for another round. A
//! process that dies mid-re-check leaves a lease that runs out; the next round (of
//! any process) does it again. The API process that stored the secret starts the
//! same claimed work at once ([`recheck_app_now`]), so nobody waits for a round.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use tokio::sync::watch;

use crate::domain::tokens::{Recheck, TokenError};
use crate::storage::{AppRecheckClaim, ConnectionRow, StoreError};
use crate::Keeper;

/// Connections claimed per round.
pub const BATCH: u32 = 50;
/// Refreshes in flight at once per process.
pub const CONCURRENCY: usize = 8;
/// Refresh ahead of an indexed meeting starting within this long.
pub const AHEAD_OF_MEETINGS: Duration = Duration::from_secs(30 * 60);
/// How often the loop prunes event logs.
pub const PRUNE_EVERY: Duration = Duration::from_secs(5 * 60);
/// A claimed re-check stays with its process this long unless renewed.
pub const RECHECK_LEASE: Duration = Duration::from_secs(60);
/// A running re-check renews its lease this often.
const RECHECK_RENEW_EVERY: Duration = Duration::from_secs(20);
/// A re-check that could not finish (a temporary Zoom or database failure, or a
/// rate-limited account) runs again this much later.
pub const RECHECK_RETRY: Duration = Duration::from_secs(5 * 60);

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
    let rechecks = tokio::spawn(run_rechecks(keeper.clone(), shutdown.clone()));
    let mut prune_cursor: Option<String> = None;
    let mut next_prune = Instant::now() + PRUNE_EVERY;
    loop {
        if *shutdown.borrow() {
            break;
        }
        if Instant::now() >= next_prune {
            next_prune = Instant::now() + PRUNE_EVERY;
            match crate::domain::connections::prune_event_logs(&keeper, &mut prune_cursor).await {
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
    if let Err(e) = rechecks.await {
        tracing::error!(error = %e, "the re-check loop panicked");
    }
    tracing::info!("token keeper stopped");
}

/// Every `token_keeper_interval`, runs the due re-checks one after the other until
/// `shutdown` turns true. A re-check in flight runs to its end (it may hold a
/// rotated refresh token that must be stored).
async fn run_rechecks(keeper: Arc<Keeper>, mut shutdown: watch::Receiver<bool>) {
    let interval = keeper.config.token_keeper_interval;
    while !*shutdown.borrow() {
        loop {
            match recheck_once(&keeper).await {
                Ok(Some(_)) if !*shutdown.borrow() => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming a due re-check failed");
                    break;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// What one [`recheck_once`] did.
#[derive(Debug, Clone)]
pub struct RecheckStep {
    pub app_id: String,
    /// `None` when the re-check failed as a whole (it runs again later).
    pub summary: Option<Recheck>,
}

/// One step of the re-check loop: claims the app whose re-check is due the longest
/// (or whose claim's lease ran out) and runs it. `None` when nothing is due.
pub async fn recheck_once(keeper: &Keeper) -> Result<Option<RecheckStep>, StoreError> {
    let Some(claim) = keeper.store.claim_app_recheck(None, RECHECK_LEASE).await? else {
        return Ok(None);
    };
    let app_id = claim.app_id.clone();
    let summary = run_claimed(keeper, claim).await;
    Ok(Some(RecheckStep { app_id, summary }))
}

/// Right after an app's new client secret is stored: runs its re-check in this
/// process now, under the same claim as [`recheck_once`], unless another process
/// holds it already. If this process dies meanwhile, the lease runs out and a
/// re-check loop does it.
pub fn recheck_app_now(keeper: Arc<Keeper>, app_id: String) {
    tokio::spawn(async move {
        match keeper
            .store
            .claim_app_recheck(Some(&app_id), RECHECK_LEASE)
            .await
        {
            Ok(Some(claim)) => {
                run_claimed(&keeper, claim).await;
            }
            Ok(None) => {}
            // The mark stays due: a re-check loop takes it.
            Err(e) => tracing::warn!(
                app_id = %app_id,
                error = %e,
                "claiming a re-check failed; a worker will run it"
            ),
        }
    });
}

/// Runs a claimed re-check, renewing its lease meanwhile, then clears the mark
/// (or, when some connections could not be checked, makes it due again after
/// [`RECHECK_RETRY`]) — only where the mark still holds this claim. The summary, or
/// `None` when the re-check failed as a whole.
async fn run_claimed(keeper: &Keeper, mut claim: AppRecheckClaim) -> Option<Recheck> {
    let app_id = claim.app_id.clone();
    let work = crate::domain::tokens::recheck_after_client_secret_change(keeper, &app_id);
    tokio::pin!(work);
    // False once the claim is lost (a newer secret made it due again): the mark is
    // no longer ours to renew or clear.
    let mut held = true;
    let outcome = loop {
        tokio::select! {
            outcome = &mut work => break outcome,
            _ = tokio::time::sleep(RECHECK_RENEW_EVERY), if held => {
                match keeper.store.renew_app_recheck(&claim, RECHECK_LEASE).await {
                    Ok(Some(renewed)) => claim = renewed,
                    Ok(None) => held = false,
                    // Try again at the next tick; the lease has margin.
                    Err(e) => tracing::warn!(
                        app_id = %app_id,
                        error = %e,
                        "renewing a re-check's lease failed"
                    ),
                }
            }
        }
    };
    let (summary, retry_in) = match outcome {
        Ok(r) => {
            if r.claimed > 0 {
                tracing::info!(
                    app_id = %app_id,
                    checked = r.claimed,
                    reconnected = r.reconnected,
                    still_disconnected = r.still_disconnected,
                    failed = r.failed,
                    "re-checked connections disconnected by a bad client secret"
                );
            }
            (Some(r), (r.failed > 0).then_some(RECHECK_RETRY))
        }
        Err(e) => {
            tracing::warn!(
                app_id = %app_id,
                error = format!("{e:#}"),
                "re-checking connections disconnected by a bad client secret failed"
            );
            (None, Some(RECHECK_RETRY))
        }
    };
    if held {
        if let Err(e) = keeper.store.finish_app_recheck(&claim, retry_in).await {
            // The lease runs out and the re-check runs again: harmless.
            tracing::warn!(app_id = %app_id, error = %e, "finishing a re-check failed");
        }
    }
    summary
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
