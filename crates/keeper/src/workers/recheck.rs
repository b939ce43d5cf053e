//! The re-check worker: runs the due re-checks of apps whose client secret changed
//! ([`crate::domain::recheck`]), one after the other, every
//! `token_keeper_interval`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Pass;
use crate::domain::recheck;
use crate::Keeper;

/// Runs due re-checks until `shutdown` turns true; a re-check in flight runs to its
/// end (it may hold a rotated refresh token that must be stored).
pub async fn run(keeper: Arc<Keeper>, shutdown: watch::Receiver<bool>) {
    let interval = keeper.config.token_keeper_interval;
    super::poll_loop(
        "recheck",
        keeper.clock.clone(),
        shutdown,
        Duration::ZERO,
        || interval,
        || async {
            Ok(match recheck::run_due_once(&keeper).await? {
                Some(_) => Pass::More,
                None => Pass::Done,
            })
        },
    )
    .await
}
