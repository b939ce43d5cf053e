//! The meeting sync (DESIGN.md §6): a loop in `serve` (role `worker` or `all`) that
//! reads each local-recording connection's meetings from Zoom and indexes them, so a
//! bot can get a local recording token for meetings created before the connection
//! existed, or whose `meeting.created` webhook never arrived.
//!
//! A sync runs on connect (`next_sync_at = now` on create), on `POST …/{id}/sync`, and
//! daily (24 h ± 1 h jitter) for every connected connection with local recording on.
//! Each round claims due connections from the database ([`Store::claim_due_syncs`]),
//! so any number of processes can run it and none syncs a connection another is
//! syncing. The claim moves `next_sync_at` to its end and that value is the fence:
//! the result is written only while it still holds, so a sync voided by a newer
//! request, a re-bind or a disconnect writes nothing.
//!
//! One sync: an access token from the broker (refreshing if needed; a revoked grant
//! disconnects there, the one place that decides it), every page of the user's
//! upcoming and scheduled meetings (deduplicated by id) and `GET /users/me` for the
//! PMI; then, in one transaction under the claim: this connection's `sync` rows are
//! replaced by the new set (its `webhook` rows stay), the PMI row is upserted,
//! `last_attempted_sync_at` / `last_successful_sync_at` / `next_sync_at` are set and a
//! `sync_completed` event is written.
//!
//! Whose meeting is it, when two connections claim one? [`crate::domain::meetings::replaces`]
//! decides (a `pmi` row is never taken; a `webhook` row only when Zoom's listing names
//! this connection's user as the host, `host_id`). Listed meetings whose `host_id` is another user (e.g. where this user is only an
//! alternative host) are not indexed: only the host's credentials mint a local
//! recording token. Meetings whose id is not a meeting number are skipped and
//! counted; they never fail the sync.
//!
//! Every Zoom call first takes a slot in its Zoom account's budget
//! ([`crate::core::zoom_account_limits`]), and a 429 pauses the account's background work.
//! Failures: Zoom's rate limit is waited out inside the sync when `Retry-After` is
//! short (the listing resumes at the page it stopped on), otherwise the sync is
//! rescheduled after it; outages back off exponentially with jitter. Either way
//! `last_attempted_sync_at` is recorded.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use serde_json::json;
use tokio::sync::watch;
use zoom::{MeetingListType, ZoomError, ZoomMeeting, ZoomUser};

use super::Pass;
use crate::core::jitter;
use crate::domain::meetings::is_meeting_number;
use crate::domain::tokens::{BrokeredCallError, TokenError};
use crate::storage::{
    AppKind, CompletedSync, ConnectionRow, NewConnectionEvent, StoreError, SyncCommit,
    SyncedMeeting,
};
use crate::Keeper;

/// Connections claimed per round.
pub const BATCH: u32 = 20;
/// Syncs in flight at once per process.
pub const CONCURRENCY: usize = 4;
/// How long a claim lasts. A sync gives up well before ([`BUDGET`]).
pub const CLAIM: Duration = Duration::from_secs(10 * 60);
/// Time one sync may spend, rate-limit waits included.
pub const BUDGET: Duration = Duration::from_secs(5 * 60);
/// A successful sync is repeated this much later…
pub const EVERY: Duration = Duration::from_secs(24 * 60 * 60);
/// …plus or minus up to this much, so connections made together spread out.
pub const JITTER: Duration = Duration::from_secs(60 * 60);
/// The longest `Retry-After` waited out inside a sync; longer ones reschedule it.
pub const MAX_INLINE_WAIT: Duration = Duration::from_secs(30);
/// Rate-limited calls retried inside one sync before it is rescheduled.
const MAX_RATE_LIMIT_RETRIES: u32 = 30;
/// Calls that met an outage (5xx, timeout) retried inside one sync.
const MAX_OUTAGE_RETRIES: u32 = 2;
/// Retry delay after Zoom refused the sync for a reason that waiting may not fix
/// (a missing scope, a deactivated user).
const REFUSED_RETRY: Duration = Duration::from_secs(60 * 60);
/// Safety stop: 1,000 pages of 300 per list.
const MAX_PAGES: usize = 1_000;
/// Times one list is read again from its first page after Zoom refused an expired
/// page token (they live 15 minutes), before the sync is retried later.
const MAX_LIST_RESTARTS: u32 = 3;

/// Zoom's answer to a `next_page_token` it no longer accepts: 400, code 300 "The
/// next page token is invalid or expired." (Zoom's Meeting API: "The expiration
/// period for this token is 15 minutes."). Asked only of a request that carried a
/// token whose first page, with the same query, was accepted.
fn is_expired_page_token(e: &ZoomError) -> bool {
    matches!(e, ZoomError::BadRequest { status: 400, code, .. } if code == "300")
}

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub claimed: usize,
    pub synced: usize,
    /// Account-wide passes that read part of the account and resume soon.
    pub paused: usize,
    /// Rescheduled for a retry.
    pub failed: usize,
    /// The grant was gone; the broker disconnected the connection.
    pub disconnected: usize,
    /// The claim was void at write-back (a newer request, a re-bind, a disconnect).
    pub lost: usize,
    /// Claimed but handed back unsynced because shutdown began.
    pub released: usize,
}

/// Runs rounds every `token_keeper_interval` (the background loops' polling
/// interval) until `shutdown` turns true; syncs in flight finish or are rescheduled.
pub async fn run(keeper: Arc<Keeper>, shutdown: watch::Receiver<bool>) {
    let interval = keeper.config.token_keeper_interval;
    let stopping = shutdown.clone();
    super::poll_loop(
        "meeting_sync",
        keeper.clock.clone(),
        shutdown,
        Duration::ZERO,
        || interval,
        || async {
            let round = run_once(&keeper, &stopping).await?;
            if round.claimed > 0 {
                tracing::info!(
                    claimed = round.claimed,
                    synced = round.synced,
                    paused = round.paused,
                    failed = round.failed,
                    disconnected = round.disconnected,
                    lost = round.lost,
                    released = round.released,
                    "meeting sync round"
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

/// One round: claim what is due and sync it with bounded concurrency.
pub async fn run_once(
    keeper: &Arc<Keeper>,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<Round> {
    let claimed = keeper.store.claim_due_syncs(BATCH, CLAIM).await?;
    let mut round = Round {
        claimed: claimed.len(),
        ..Round::default()
    };
    let outcomes: Vec<Outcome> = futures::stream::iter(claimed)
        .map(|row| sync_one(keeper, row, shutdown))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for outcome in outcomes {
        match outcome {
            Outcome::Synced => round.synced += 1,
            Outcome::Paused => round.paused += 1,
            Outcome::Failed => round.failed += 1,
            Outcome::Disconnected => round.disconnected += 1,
            Outcome::Lost => round.lost += 1,
            Outcome::Released => round.released += 1,
        }
    }
    Ok(round)
}

enum Outcome {
    Synced,
    /// An account-wide pass stopped short after some progress and resumes soon.
    Paused,
    Failed,
    Disconnected,
    Lost,
    Released,
}

/// Why a sync stopped short.
enum Stop {
    /// The grant is gone (the broker has disconnected the connection).
    Disconnected,
    /// Try again after `wait`; `refusal` is a sentence for the connection's log when
    /// Zoom refused for a reason a person may need to fix.
    Retry {
        wait: Duration,
        reason: String,
        refusal: Option<String>,
    },
    Shutdown,
    /// An account-wide pass made progress and stopped short (its budget, a rate
    /// limit, an outage): due again after `wait`, without the failure backoff. What
    /// it read is kept ([`crate::storage::SyncStore::stage_account_user`]).
    Paused {
        wait: Duration,
        reason: String,
        users_done: usize,
        users_total: usize,
    },
    /// The claim was void at a write (a newer request, a re-bind, a disconnect).
    Lost,
}

/// What Zoom said, before it is written.
#[derive(Debug, Default)]
struct Listing {
    meetings: BTreeMap<String, SyncedMeeting>,
    /// Listed ids that are not meeting numbers.
    skipped_invalid: u64,
    /// Listed meetings whose host is another user.
    hosted_by_others: u64,
    pmi: Option<String>,
    personal_meeting_url: Option<String>,
    /// When Zoom says each indexed meeting was made (those it says).
    created: Vec<DateTime<Utc>>,
    /// Set when this was an account-wide pass.
    account: Option<AccountSummary>,
}

/// What an account-wide pass read.
#[derive(Debug, Default)]
struct AccountSummary {
    users: usize,
    /// Meetings of hosts with their own connection in the app, left to it.
    left_to_own_connections: u64,
}

async fn sync_one(
    keeper: &Arc<Keeper>,
    row: ConnectionRow,
    shutdown: &watch::Receiver<bool>,
) -> Outcome {
    let Some(claim) = row.next_sync_at else {
        // Claims always set it; a row without one cannot be written back.
        tracing::error!(connection_id = %row.id, "a claimed sync has no next_sync_at");
        return Outcome::Lost;
    };
    if *shutdown.borrow() {
        return release(keeper, &row, claim).await;
    }
    let started = Instant::now();
    let account_wide = match syncs_account(keeper, &row).await {
        Ok(account_wide) => account_wide,
        Err(e) => {
            tracing::warn!(connection_id = %row.id, error = %e, "reading a connection's app failed; the sync runs again when its claim expires");
            return Outcome::Failed;
        }
    };
    let fetched = if account_wide {
        fetch_account(keeper, &row, claim, started, shutdown).await
    } else {
        fetch(keeper, &row, started, shutdown).await
    };
    match fetched {
        Ok(listing) => commit(keeper, &row, claim, listing).await,
        Err(Stop::Disconnected) => Outcome::Disconnected,
        Err(Stop::Shutdown) => release(keeper, &row, claim).await,
        Err(Stop::Lost) => lost(keeper, &row),
        Err(Stop::Paused {
            wait,
            reason,
            users_done,
            users_total,
        }) => pause(keeper, &row, claim, wait, &reason, users_done, users_total).await,
        Err(Stop::Retry {
            wait,
            reason,
            refusal,
        }) => {
            tracing::warn!(
                connection_id = %row.id,
                reason = %reason,
                retry_in_s = wait.as_secs(),
                "meeting sync failed; will retry"
            );
            let event = refusal.map(|message| NewConnectionEvent {
                kind: "sync_failed".to_owned(),
                message,
                data: None,
            });
            // Repeated failures wait longer: the longer syncs have failed, the later.
            let wait = wait.max(zoom::error::backoff_delay(failing_for(
                &row,
                keeper.clock.now(),
            )));
            let retry_at =
                keeper.clock.now() + chrono::Duration::from_std(wait).unwrap_or_default();
            match keeper
                .store
                .reschedule_meeting_sync(&row.id, claim, retry_at, true, event.as_ref())
                .await
            {
                Ok(true) => Outcome::Failed,
                Ok(false) => lost(keeper, &row),
                Err(e) => {
                    // The claim expires on its own and the sync runs again then.
                    tracing::warn!(connection_id = %row.id, error = %e, "rescheduling a failed meeting sync failed");
                    Outcome::Failed
                }
            }
        }
    }
}

/// An account-wide pass that stopped short after some progress: due again after
/// `wait`, with a line in the connection's log saying how far it got.
async fn pause(
    keeper: &Keeper,
    row: &ConnectionRow,
    claim: DateTime<Utc>,
    wait: Duration,
    reason: &str,
    users_done: usize,
    users_total: usize,
) -> Outcome {
    tracing::info!(connection_id = %row.id, users_done, users_total, reason, resume_in_s = wait.as_secs(), "account meeting sync paused");
    let event = NewConnectionEvent {
        kind: "sync_paused".to_owned(),
        message: format!(
            "Meeting sync paused after reading {users_done} of {users_total} users of the Zoom account ({reason}); it resumes where it stopped in {} s.",
            wait.as_secs().max(1)
        ),
        data: Some(json!({"users_done": users_done, "users_total": users_total})),
    };
    let resume_at = keeper.clock.now() + chrono::Duration::from_std(wait).unwrap_or_default();
    match keeper
        .store
        .reschedule_meeting_sync(&row.id, claim, resume_at, true, Some(&event))
        .await
    {
        Ok(true) => Outcome::Paused,
        Ok(false) => lost(keeper, row),
        Err(e) => {
            tracing::warn!(connection_id = %row.id, error = %e, "rescheduling a paused meeting sync failed; it resumes when its claim expires");
            Outcome::Paused
        }
    }
}

/// Hands an unstarted claim back: due again at once, nothing recorded.
async fn release(keeper: &Keeper, row: &ConnectionRow, claim: DateTime<Utc>) -> Outcome {
    if let Err(e) = keeper
        .store
        .reschedule_meeting_sync(&row.id, claim, keeper.clock.now(), false, None)
        .await
    {
        tracing::warn!(connection_id = %row.id, error = %e, "handing back a meeting sync claim failed; it expires on its own");
    }
    Outcome::Released
}

fn lost(keeper: &Keeper, row: &ConnectionRow) -> Outcome {
    keeper.metrics.record_lease_conflict();
    tracing::info!(connection_id = %row.id, "a meeting sync's claim was voided (a newer sync request, a re-bind or a disconnect); its result is discarded");
    Outcome::Lost
}

async fn commit(
    keeper: &Keeper,
    row: &ConnectionRow,
    claim: DateTime<Utc>,
    mut listing: Listing,
) -> Outcome {
    let now = match keeper.store.now().await {
        Ok(now) => now,
        Err(e) => {
            tracing::warn!(connection_id = %row.id, error = %e, "reading the database clock failed; the sync runs again when its claim expires");
            return Outcome::Failed;
        }
    };
    let found = listing.meetings.len();
    let created = std::mem::take(&mut listing.created);
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let mut message = match &listing.account {
        Some(account) => format!(
            "Meeting sync completed: {} user{} of the Zoom account read, {found} meeting{} found.",
            account.users,
            plural(account.users),
            plural(found)
        ),
        None => format!(
            "Meeting sync completed: {found} meeting{} found.",
            plural(found)
        ),
    };
    if let Some(account) = listing
        .account
        .as_ref()
        .filter(|a| a.left_to_own_connections > 0)
    {
        message.push_str(&format!(
            " {} left to their hosts' own connections.",
            account.left_to_own_connections
        ));
    }
    if listing.skipped_invalid > 0 {
        message.push_str(&format!(
            " {} skipped: not meeting numbers.",
            listing.skipped_invalid
        ));
    }
    if listing.hosted_by_others > 0 {
        message.push_str(&format!(
            " {} not indexed: hosted by another user.",
            listing.hosted_by_others
        ));
    }
    let done = CompletedSync {
        connection_id: row.id.clone(),
        claim,
        event: NewConnectionEvent {
            kind: "sync_completed".to_owned(),
            message,
            data: Some(json!({
                "meetings": found,
                "skipped_invalid": listing.skipped_invalid,
                "hosted_by_others": listing.hosted_by_others,
                "pmi": listing.pmi,
                "users": listing.account.as_ref().map(|a| a.users),
                "left_to_own_connections": listing.account.as_ref().map(|a| a.left_to_own_connections),
            })),
        },
        meetings: listing.meetings.into_values().collect(),
        pmi: listing.pmi,
        personal_meeting_url: listing.personal_meeting_url,
        next_sync_at: next_daily_sync(now),
        ends_account_pass: listing.account.is_some(),
    };
    match keeper.store.complete_meeting_sync(&done).await {
        Ok(SyncCommit::Committed {
            indexed,
            held_elsewhere,
            removed,
        }) => {
            tracing::info!(
                connection_id = %row.id,
                found,
                indexed,
                held_elsewhere,
                removed,
                "meeting sync completed"
            );
            notice_unannounced_meetings(keeper, row, &created, now).await;
            Outcome::Synced
        }
        Ok(SyncCommit::LostClaim) => lost(keeper, row),
        Err(e) => {
            tracing::warn!(connection_id = %row.id, error = %e, "committing a meeting sync failed; it runs again when its claim expires");
            Outcome::Failed
        }
    }
}

/// The connection event written when an app is flagged.
pub const WEBHOOK_EVENTS_STALE_EVENT: &str = "webhook_events_stale";
/// An app with no verified Zoom webhook for this long is silent…
pub const WEBHOOK_SILENCE: chrono::Duration = chrono::Duration::minutes(10);
/// …and a meeting made more than this after its last verified webhook was not
/// announced (each process writes that time at most every 5 s).
const ANNOUNCE_SLACK: chrono::Duration = chrono::Duration::minutes(1);

/// Flags the app when its verified webhooks stopped while this connection kept
/// scheduling meetings: Zoom listed meetings made after the connection and after
/// the app's last verified webhook (by more than [`ANNOUNCE_SLACK`]), and no
/// verified webhook arrived for [`WEBHOOK_SILENCE`]. Zoom stops an app's events
/// after an event's last failed retry until someone intervenes, so the operator
/// must learn it before bots go without tokens: the app's
/// `webhook_events_stale_since`, a metric and a connection event. Apps without a
/// webhook secret expect no webhooks. Failures are logged; the sync stands.
async fn notice_unannounced_meetings(
    keeper: &Keeper,
    row: &ConnectionRow,
    created: &[DateTime<Utc>],
    now: DateTime<Utc>,
) {
    let app = match keeper.store.app_by_id(&row.app_id).await {
        Ok(Some(app)) => app,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(app_id = %row.app_id, error = %e, "reading an app to check its Zoom webhooks failed");
            return;
        }
    };
    if app.webhook_secret.is_none() || app.webhook_events_stale_since.is_some() {
        return;
    }
    let last = app.last_verified_webhook_received_at;
    if last.is_some_and(|l| l > now - WEBHOOK_SILENCE) {
        return;
    }
    let after = last.map_or(row.created_at, |l| (l + ANNOUNCE_SLACK).max(row.created_at));
    let unannounced: Vec<DateTime<Utc>> = created.iter().copied().filter(|c| *c > after).collect();
    let Some(first) = unannounced.iter().min().copied() else {
        return;
    };
    let since = last.unwrap_or(first);
    match keeper
        .store
        .flag_app_webhook_events_stale(&app.id, since)
        .await
    {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!(app_id = %app.id, error = %e, "flagging an app whose Zoom webhooks stopped failed");
            return;
        }
    }
    keeper.metrics.record_webhook_events_stale();
    crate::domain::apps::note(
        &*keeper.store,
        &app.project_id,
        &app.id,
        "webhook_events_stale",
        &format!(
            "Zoom has sent no verified webhook since {} while this app's connections kept scheduling meetings that no webhook announced; Zoom stops an app's events after its last failed retry. Check the Event Subscription's endpoint URL and Secret Token in the Zoom app, revalidate it, and ask Zoom support to resume the events.",
            last.map_or_else(|| "the connection was made".to_owned(), |l| l.to_rfc3339())
        ),
        None,
    )
    .await;
    let message = format!(
        "Zoom listed {} meeting{} of this connection that no verified Zoom webhook announced; the app has received none since {}. Zoom stops an app's events after its last failed retry: check the app's Event Subscription and ask Zoom support to resume its events. Until then meetings are found by the daily meeting sync only.",
        unannounced.len(),
        if unannounced.len() == 1 { "" } else { "s" },
        last.map_or_else(|| "it was connected".to_owned(), |l| l.to_rfc3339()),
    );
    tracing::warn!(app_id = %app.id, connection_id = %row.id, unannounced = unannounced.len(), "an app's verified Zoom webhooks stopped while its connections keep scheduling meetings");
    let event = NewConnectionEvent {
        kind: WEBHOOK_EVENTS_STALE_EVENT.to_owned(),
        message,
        data: Some(json!({
            "zoom_oauth_app_id": app.id,
            "unannounced_meetings": unannounced.len(),
            "webhook_events_stale_since": since,
        })),
    };
    if let Err(e) = keeper.store.insert_connection_event(&row.id, &event).await {
        tracing::warn!(connection_id = %row.id, error = %e, "writing a webhook_events_stale event failed");
    }
}

/// A backoff attempt number that grows with how long syncs have been failing
/// (since the last success, or since the connection was made).
fn failing_for(row: &ConnectionRow, now: DateTime<Utc>) -> u32 {
    jitter::attempt_since(row.last_successful_sync_at.unwrap_or(row.created_at), now)
}

/// `now + 24 h ± 1 h`.
pub fn next_daily_sync(now: DateTime<Utc>) -> DateTime<Utc> {
    jitter::after(now, jitter::around(EVERY, JITTER))
}

/// Whether `row` syncs its whole Zoom account: it is the account's connection of an
/// account-level app (the oldest connected one, the one join tokens use). Any other
/// connection syncs its own user's meetings.
async fn syncs_account(keeper: &Keeper, row: &ConnectionRow) -> Result<bool, StoreError> {
    let Some(app) = keeper.store.app_by_id(&row.app_id).await? else {
        return Ok(false);
    };
    if app.kind != AppKind::AccountLevel {
        return Ok(false);
    }
    let account = keeper
        .store
        .connection_in_account(&row.app_id, &row.account_id)
        .await?;
    Ok(account.is_some_and(|c| c.id == row.id))
}

/// Reads the user's meetings and PMI from Zoom.
async fn fetch(
    keeper: &Arc<Keeper>,
    row: &ConnectionRow,
    started: Instant,
    shutdown: &watch::Receiver<bool>,
) -> Result<Listing, Stop> {
    let mut listing = Listing::default();
    let mut calls = Calls::new(keeper, row, started, shutdown);
    read_meetings(&mut calls, "me", &row.user_id, &mut listing).await?;
    let me = calls
        .call(|access| async move { keeper.zoom.me(&access).await })
        .await?;
    listing.pmi = me.pmi.filter(|p| is_meeting_number(p));
    listing.personal_meeting_url = me.personal_meeting_url.filter(|u| !u.trim().is_empty());
    Ok(listing)
}

/// A pass that began this long ago is begun again rather than resumed (Zoom's
/// daily limit may hold one for up to a day).
const PASS_RESUMABLE_FOR: chrono::Duration = chrono::Duration::hours(72);

/// An account-wide pass (DESIGN.md §15): every active user of the Zoom account
/// (`GET /users`) and each one's meetings (`/users/{id}/meetings`, upcoming and
/// scheduled) plus their PMI, each user's recorded as it is read, so a pass that
/// stops (budget, rate limit, restart) resumes with the users it has not read.
/// When every user is read, the listing is what the pass staged, less the
/// meetings of hosts with their own connection in the app (theirs to index).
async fn fetch_account(
    keeper: &Arc<Keeper>,
    row: &ConnectionRow,
    claim: DateTime<Utc>,
    started: Instant,
    shutdown: &watch::Receiver<bool>,
) -> Result<Listing, Stop> {
    let now = keeper.clock.now();
    let pass = keeper
        .store
        .resume_account_sync_pass(&row.id, claim, now - PASS_RESUMABLE_FOR)
        .await
        .map_err(store_stop)?
        .ok_or(Stop::Lost)?;
    let mut calls = Calls::new(keeper, row, started, shutdown);
    let mut users_done = pass.users_done.len();
    let mut users_total = None;
    let mut read_now = 0usize;
    // Pauses after progress in this claim; anything else is a failed attempt.
    let paused = |stop: Stop, users_done: usize, users_total: Option<usize>, read_now| match stop {
        Stop::Retry {
            wait,
            reason,
            refusal: None,
        } if read_now > 0 => Stop::Paused {
            wait,
            reason,
            users_done,
            users_total: users_total.unwrap_or(users_done),
        },
        other => other,
    };
    let users = read_users(&mut calls)
        .await
        .map_err(|stop| paused(stop, users_done, None, read_now))?;
    let total = users.len();
    users_total = users_total.or(Some(total));
    if pass.began {
        let event = NewConnectionEvent {
            kind: "sync_started".to_owned(),
            message: format!(
                "Account meeting sync started: reading the meetings of {total} user{} of the Zoom account.",
                if total == 1 { "" } else { "s" }
            ),
            data: Some(json!({"users_total": total})),
        };
        if let Err(e) = keeper.store.insert_connection_event(&row.id, &event).await {
            tracing::warn!(connection_id = %row.id, error = %e, "writing a sync_started event failed");
        }
    }
    let total_i64 = i64::try_from(total).unwrap_or(i64::MAX);
    for user in users.iter().filter(|u| !pass.users_done.contains(&u.id)) {
        let mut listing = Listing::default();
        // The admin's own meetings need no admin rights.
        let as_whom = if user.id == row.user_id {
            "me"
        } else {
            user.id.as_str()
        };
        read_meetings(&mut calls, as_whom, &user.id, &mut listing)
            .await
            .map_err(|stop| paused(stop, users_done, users_total, read_now))?;
        // A member's personal meeting room is theirs too; the admin's own PMI is
        // the connection's (`GET /users/me` below).
        if user.id != row.user_id {
            if let Some(pmi) = user.pmi.as_deref().filter(|p| is_meeting_number(p)) {
                listing
                    .meetings
                    .entry(pmi.to_owned())
                    .or_insert_with(|| SyncedMeeting {
                        meeting_id: pmi.to_owned(),
                        topic: None,
                        start_time: None,
                        host_confirmed: true,
                        host_user_id: Some(user.id.clone()),
                    });
            }
        }
        let meetings: Vec<SyncedMeeting> = listing.meetings.into_values().collect();
        let held = keeper
            .store
            .stage_account_user(&row.id, claim, &user.id, total_i64, &meetings)
            .await
            .map_err(store_stop)?;
        if !held {
            return Err(Stop::Lost);
        }
        users_done += 1;
        read_now += 1;
    }
    let me = calls
        .call(|access| async move { keeper.zoom.me(&access).await })
        .await
        .map_err(|stop| paused(stop, users_done, users_total, read_now))?;
    let own = keeper
        .store
        .users_with_own_connection(&row.app_id, &row.id)
        .await
        .map_err(store_stop)?;
    let staged = keeper
        .store
        .staged_account_meetings(&row.id)
        .await
        .map_err(store_stop)?;
    let mut listing = Listing::default();
    let mut left_to_own_connections = 0;
    for meeting in staged {
        if meeting
            .host_user_id
            .as_ref()
            .is_some_and(|h| own.contains(h))
        {
            left_to_own_connections += 1;
            continue;
        }
        listing.meetings.insert(meeting.meeting_id.clone(), meeting);
    }
    listing.pmi = me.pmi.filter(|p| is_meeting_number(p));
    listing.personal_meeting_url = me.personal_meeting_url.filter(|u| !u.trim().is_empty());
    listing.account = Some(AccountSummary {
        users: total,
        left_to_own_connections,
    });
    Ok(listing)
}

/// A storage failure in the middle of a sync: tried again later.
fn store_stop(e: StoreError) -> Stop {
    Stop::Retry {
        wait: Duration::from_secs(60),
        reason: format!("the database failed: {e}"),
        refusal: None,
    }
}

/// The account's active users, deduplicated by id.
async fn read_users(calls: &mut Calls<'_>) -> Result<Vec<ZoomUser>, Stop> {
    let keeper = calls.keeper;
    let users = read_list(calls, "user list", |access, token| async move {
        let page = keeper
            .zoom
            .list_users_page(&access, token.as_deref())
            .await?;
        Ok((page.users, page.next_page_token))
    })
    .await?;
    let mut seen = std::collections::HashSet::new();
    Ok(users
        .into_iter()
        .filter(|u| !u.id.trim().is_empty() && seen.insert(u.id.clone()))
        .collect())
}

/// User `as_whom`'s (`me`, or a user id) upcoming and scheduled meetings into
/// `listing`, keeping those `host` hosts.
async fn read_meetings(
    calls: &mut Calls<'_>,
    as_whom: &str,
    host: &str,
    listing: &mut Listing,
) -> Result<(), Stop> {
    let keeper = calls.keeper;
    for list_type in [MeetingListType::Upcoming, MeetingListType::Scheduled] {
        let what = format!("{} meeting list", list_type.as_str());
        let meetings = read_list(calls, &what, |access, token| async move {
            let page = keeper
                .zoom
                .list_meetings_page(&access, as_whom, list_type, token.as_deref())
                .await?;
            Ok((page.meetings, page.next_page_token))
        })
        .await?;
        for meeting in meetings {
            listing.add(host, meeting);
        }
    }
    Ok(())
}

/// Every page of one of Zoom's paged lists, through [`Calls::call`]: `page` reads
/// the page a token names (the first for `None`) and returns its items and the
/// next token. Zoom's page tokens live 15 minutes: an expired one starts the list
/// again (what was read stays; callers deduplicate).
async fn read_list<T, F, Fut>(
    calls: &mut Calls<'_>,
    what: &str,
    mut page: F,
) -> Result<Vec<T>, Stop>
where
    F: FnMut(secrecy::SecretString, Option<String>) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, Option<String>), ZoomError>>,
{
    let mut items = Vec::new();
    let mut next: Option<String> = None;
    let mut restarts = 0;
    for page_number in 0.. {
        if page_number >= MAX_PAGES {
            return Err(Stop::Retry {
                wait: REFUSED_RETRY,
                reason: format!("the {what} did not end after {MAX_PAGES} pages"),
                refusal: None,
            });
        }
        let token = next.clone();
        let got = calls
            .call(|access| {
                let token = token.clone();
                let had_token = token.is_some();
                let read = page(access, token);
                async move {
                    match read.await {
                        Err(e) if had_token && is_expired_page_token(&e) => Ok(None),
                        other => other.map(Some),
                    }
                }
            })
            .await?;
        let Some((page_items, next_token)) = got else {
            restarts += 1;
            if restarts > MAX_LIST_RESTARTS {
                return Err(Stop::Retry {
                    wait: Duration::from_secs(60),
                    reason: format!("the {what}'s page token expired {restarts} times"),
                    refusal: None,
                });
            }
            tracing::info!(
                connection_id = %calls.row.id,
                list = what,
                "Zoom's page token expired; the list is read again from its first page"
            );
            next = None;
            continue;
        };
        items.extend(page_items);
        match next_token {
            Some(t) if Some(&t) == next.as_ref() => {
                return Err(Stop::Retry {
                    wait: REFUSED_RETRY,
                    reason: "Zoom returned the same page token twice".to_owned(),
                    refusal: None,
                })
            }
            Some(t) => next = Some(t),
            None => break,
        }
    }
    Ok(items)
}

impl Listing {
    /// Adds a listed meeting if `host` hosts it (as far as Zoom says).
    fn add(&mut self, host: &str, meeting: ZoomMeeting) {
        let id = meeting.meeting_id();
        if !is_meeting_number(&id) {
            self.skipped_invalid += 1;
            return;
        }
        let host_confirmed = match meeting.host_id.as_deref().map(str::trim) {
            Some(listed) if !listed.is_empty() && listed != host => {
                self.hosted_by_others += 1;
                return;
            }
            Some(listed) => !listed.is_empty(),
            None => false,
        };
        // Recurring meetings: the listed start says nothing about the next occurrence
        // (and must not make housekeeping drop the row).
        let start_time = match meeting.meeting_type {
            Some(3 | 8) => None,
            _ => meeting.start_time,
        };
        if let Some(created) = meeting
            .created_at
            .filter(|_| !self.meetings.contains_key(&id))
        {
            self.created.push(created);
        }
        self.meetings.entry(id.clone()).or_insert(SyncedMeeting {
            meeting_id: id,
            topic: meeting.topic.map(|t| t.chars().take(300).collect()),
            start_time,
            host_confirmed,
            host_user_id: host_confirmed.then(|| host.to_owned()),
        });
    }
}

/// Zoom calls of one sync: through the broker, paced per Zoom account, with rate
/// limits and outages waited out inside the sync while that is short.
struct Calls<'a> {
    keeper: &'a Arc<Keeper>,
    row: &'a ConnectionRow,
    started: Instant,
    shutdown: &'a watch::Receiver<bool>,
    rate_limit_retries: u32,
    outage_retries: u32,
}

impl<'a> Calls<'a> {
    fn new(
        keeper: &'a Arc<Keeper>,
        row: &'a ConnectionRow,
        started: Instant,
        shutdown: &'a watch::Receiver<bool>,
    ) -> Calls<'a> {
        Calls {
            keeper,
            row,
            started,
            shutdown,
            rate_limit_retries: 0,
            outage_retries: 0,
        }
    }

    async fn call<T, F, Fut>(&mut self, mut call: F) -> Result<T, Stop>
    where
        F: FnMut(secrecy::SecretString) -> Fut,
        Fut: Future<Output = Result<T, ZoomError>>,
    {
        loop {
            if *self.shutdown.borrow() {
                return Err(Stop::Shutdown);
            }
            // A slot in the Zoom account's budget, shared with the other loops.
            let left = BUDGET.saturating_sub(self.started.elapsed());
            if let Err(wait) = self
                .keeper
                .zoom_accounts
                .acquire_within(&self.row.account_id, left)
                .await
            {
                return Err(Stop::Retry {
                    wait,
                    reason: "the Zoom account's request budget is spent".to_owned(),
                    refusal: None,
                });
            }
            let result =
                crate::domain::tokens::with_access_token(self.keeper, self.row, &mut call).await;
            let error = match result {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            let rate_limited = matches!(
                error,
                BrokeredCallError::Zoom(ZoomError::RateLimited { .. })
                    | BrokeredCallError::Token(TokenError::RateLimited { .. })
            );
            let stop = stop_for(error, self.rate_limit_retries + self.outage_retries);
            let Stop::Retry {
                wait,
                refusal: None,
                ..
            } = &stop
            else {
                return Err(stop);
            };
            let wait = *wait;
            let retries = if rate_limited {
                &mut self.rate_limit_retries
            } else {
                &mut self.outage_retries
            };
            let max = if rate_limited {
                MAX_RATE_LIMIT_RETRIES
            } else {
                MAX_OUTAGE_RETRIES
            };
            if wait > MAX_INLINE_WAIT || *retries >= max || self.started.elapsed() + wait > BUDGET {
                return Err(stop);
            }
            *retries += 1;
            if rate_limited {
                self.keeper
                    .zoom_accounts
                    .pause_until(&self.row.account_id, tokio::time::Instant::now() + wait);
            }
            let mut shutdown = self.shutdown.clone();
            tokio::select! {
                _ = self.keeper.clock.sleep(wait) => {}
                _ = shutdown.changed() => return Err(Stop::Shutdown),
            }
        }
    }
}

/// What a failed call means for the sync.
fn stop_for(e: BrokeredCallError, attempt: u32) -> Stop {
    let backoff = || zoom::error::backoff_delay(attempt);
    match e {
        BrokeredCallError::Token(TokenError::Disconnected(_)) => Stop::Disconnected,
        BrokeredCallError::Token(TokenError::RateLimited { retry_after }) => Stop::Retry {
            wait: retry_after,
            reason: "Zoom's rate limit (token refresh)".to_owned(),
            refusal: None,
        },
        BrokeredCallError::Token(e @ (TokenError::Busy | TokenError::LostFence)) => Stop::Retry {
            wait: backoff(),
            reason: e.to_string(),
            refusal: None,
        },
        BrokeredCallError::Token(e) => Stop::Retry {
            wait: backoff().max(Duration::from_secs(60)),
            reason: e.to_string(),
            refusal: None,
        },
        BrokeredCallError::Zoom(ZoomError::RateLimited { retry_after }) => Stop::Retry {
            wait: retry_after.unwrap_or_else(backoff),
            reason: "Zoom's rate limit".to_owned(),
            refusal: None,
        },
        BrokeredCallError::Zoom(e) if e.is_temporary() => Stop::Retry {
            wait: backoff(),
            reason: e.description(),
            refusal: None,
        },
        BrokeredCallError::Zoom(e @ ZoomError::BadResponse { .. }) => Stop::Retry {
            wait: backoff().max(Duration::from_secs(60)),
            reason: e.description(),
            refusal: None,
        },
        BrokeredCallError::Zoom(e) => Stop::Retry {
            wait: REFUSED_RETRY,
            reason: e.description(),
            refusal: Some(format!(
                "Meeting sync failed: {} It is retried in an hour.",
                e.description()
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daily_syncs_are_spread_within_the_jitter() {
        let now = Utc::now();
        for _ in 0..100 {
            let next = next_daily_sync(now);
            let hours = (next - now).num_minutes() as f64 / 60.0;
            assert!((23.0..=25.0).contains(&hours), "{hours}");
        }
    }

    #[test]
    fn rate_limits_wait_for_retry_after_and_grants_gone_stop() {
        let stop = stop_for(
            BrokeredCallError::Zoom(ZoomError::RateLimited {
                retry_after: Some(Duration::from_secs(7)),
            }),
            0,
        );
        assert!(
            matches!(stop, Stop::Retry { wait, refusal: None, .. } if wait == Duration::from_secs(7))
        );
        let stop = stop_for(BrokeredCallError::Token(TokenError::Disconnected(None)), 0);
        assert!(matches!(stop, Stop::Disconnected));
        let stop = stop_for(
            BrokeredCallError::Zoom(ZoomError::Forbidden {
                code: "4711".into(),
                message: "Invalid access token, does not contain scopes".into(),
            }),
            0,
        );
        assert!(matches!(
            stop,
            Stop::Retry {
                refusal: Some(_),
                ..
            }
        ));
    }
}
