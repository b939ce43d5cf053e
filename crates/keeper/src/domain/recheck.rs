//! After an app's client secret changes, the connections a bad secret disconnected
//! (and whose grant was kept, [`BAD_CLIENT_SECRET`]) are tried again under the new
//! one. The work is durable: the write that stores the secret also makes the app's
//! re-check due (`recheck_due_at`); [`run_due_once`] claims a due app with a lease
//! ([`LEASE`], renewed while the re-check runs), runs it, then clears the mark only
//! if it still holds the claim — a newer secret stored meanwhile keeps it due for
//! another round. A process that dies mid-re-check leaves a lease that runs out and
//! any process's next round does it again. The API process that stored the secret
//! starts the same claimed work at once ([`start_now`]), so nobody waits for a round.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;

use crate::domain::grant::BAD_CLIENT_SECRET;
use crate::domain::tokens::{refresh_claimed, take_account_slot, AccessToken, TokenError};
use crate::storage::{AppRecheckClaim, StoreError};
use crate::Keeper;

/// A claimed re-check stays with its process this long unless renewed.
pub const LEASE: Duration = Duration::from_secs(60);
/// A running re-check renews its lease this often.
const RENEW_EVERY: Duration = Duration::from_secs(20);
/// A re-check that could not finish (a temporary Zoom or database failure, or a
/// rate-limited account) runs again this much later.
pub const RETRY: Duration = Duration::from_secs(5 * 60);
/// Connections one re-check claims at a time.
const BATCH: u32 = 20;
/// Re-check refreshes in flight at once.
const CONCURRENCY: usize = 4;

/// What [`recheck_after_client_secret_change`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recheck {
    pub claimed: usize,
    pub reconnected: usize,
    /// Zoom refused again; the connection stays disconnected (with the new cause).
    pub still_disconnected: usize,
    /// A temporary failure (or its account's rate limit); the connection stays as
    /// it was, grant kept, and the next client secret change retries it.
    pub failed: usize,
}

/// After an app's client secret changed (and Zoom accepted the new one): every
/// connection of `app_id` disconnected with [`BAD_CLIENT_SECRET`] is refreshed with
/// the new credentials under its lease, through [`refresh_claimed`] —
/// the one place that decides what each Zoom answer means. Zoom accepts → connected
/// again (event, state-change outbox row); a final error → stays disconnected with
/// the new cause and its tokens erased. Visits each connection once, a few at a time,
/// within its Zoom account's rate limit.
pub async fn recheck_after_client_secret_change(
    keeper: &Keeper,
    app_id: &str,
) -> anyhow::Result<Recheck> {
    let mut summary = Recheck::default();
    let mut after: Option<String> = None;
    loop {
        let claimed = keeper
            .store
            .claim_disconnected_connections(
                app_id,
                BAD_CLIENT_SECRET,
                after.as_deref(),
                keeper.tokens.owner(),
                BATCH,
                keeper.config.token_lease_duration,
            )
            .await?;
        let Some(last) = claimed.last() else {
            return Ok(summary);
        };
        after = Some(last.id.clone());
        summary.claimed += claimed.len();
        let outcomes: Vec<Result<AccessToken, TokenError>> = futures::stream::iter(claimed)
            .map(|row| async move {
                if !take_account_slot(keeper, &row).await {
                    return Err(TokenError::Busy);
                }
                refresh_claimed(keeper, &row).await
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for outcome in outcomes {
            match outcome {
                Ok(_) => summary.reconnected += 1,
                Err(TokenError::Disconnected(_)) => summary.still_disconnected += 1,
                Err(_) => summary.failed += 1,
            }
        }
    }
}

/// What one [`run_due_once`] did.
#[derive(Debug, Clone)]
pub struct RecheckStep {
    pub app_id: String,
    /// `None` when the re-check failed as a whole (it runs again later).
    pub summary: Option<Recheck>,
}

/// One step of the re-check loop: claims the app whose re-check is due the longest
/// (or whose claim's lease ran out) and runs it. `None` when nothing is due.
pub async fn run_due_once(keeper: &Keeper) -> Result<Option<RecheckStep>, StoreError> {
    let Some(claim) = keeper.store.claim_app_recheck(None, LEASE).await? else {
        return Ok(None);
    };
    let app_id = claim.app_id.clone();
    let summary = run_claimed(keeper, claim).await;
    Ok(Some(RecheckStep { app_id, summary }))
}

/// Right after an app's new client secret is stored: runs its re-check in this
/// process now, under the same claim as [`run_due_once`], unless another process
/// holds it already. If this process dies meanwhile, the lease runs out and a
/// re-check loop does it.
pub fn start_now(keeper: Arc<Keeper>, app_id: String) {
    tokio::spawn(async move {
        match keeper.store.claim_app_recheck(Some(&app_id), LEASE).await {
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
/// [`RETRY`]) — only where the mark still holds this claim. The summary, or
/// `None` when the re-check failed as a whole.
async fn run_claimed(keeper: &Keeper, mut claim: AppRecheckClaim) -> Option<Recheck> {
    let app_id = claim.app_id.clone();
    let work = recheck_after_client_secret_change(keeper, &app_id);
    tokio::pin!(work);
    // False once the claim is lost (a newer secret made it due again): the mark is
    // no longer ours to renew or clear.
    let mut held = true;
    let outcome = loop {
        tokio::select! {
            outcome = &mut work => break outcome,
            _ = tokio::time::sleep(RENEW_EVERY), if held => {
                match keeper.store.renew_app_recheck(&claim, LEASE).await {
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
            (Some(r), (r.failed > 0).then_some(RETRY))
        }
        Err(e) => {
            tracing::warn!(
                app_id = %app_id,
                error = format!("{e:#}"),
                "re-checking connections disconnected by a bad client secret failed"
            );
            (None, Some(RETRY))
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
