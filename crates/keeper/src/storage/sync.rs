//! The meeting sync's claims and commits (DESIGN.md §6 "meeting sync").
//!
//! The sync's claim is its own: claiming moves the connection's `next_sync_at` to
//! the end of the claim, and that value is the fence every write-back checks. The
//! refresh lease (`lease_owner`, `lease_until`, `fence`) is left alone, so a sync
//! never blocks or voids a token refresh — and the sync itself gets its tokens from
//! the broker, which needs that lease.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::connections::{connection_from_row, CONNECTION_COLUMNS};
use super::events::write_connection_event;
use super::meetings::{apply, index_meeting};
use super::sql::{after, ots, pair, ts, Lock, Row as _};
use super::StoreResult;
use super::{ConnectionRow, MeetingIndexChange, MeetingRow, MeetingSource, NewConnectionEvent};

/// A meeting the sync found for the syncing connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncedMeeting {
    /// A checked meeting number (9 to 11 digits).
    pub meeting_id: String,
    pub topic: Option<String>,
    pub start_time: Option<DateTime<Utc>>,
    /// Zoom's listing names the connection's user as the host (`host_id`). Only
    /// then may the row take over a `webhook` row of another connection.
    pub host_confirmed: bool,
    /// The Zoom user the listing names as the host.
    pub host_user_id: Option<String>,
}

/// A successful sync, committed in one transaction while the claim holds.
#[derive(Debug, Clone)]
pub struct CompletedSync {
    pub connection_id: String,
    /// `next_sync_at` as the claim set it: the fence.
    pub claim: DateTime<Utc>,
    /// Deduplicated by meeting id.
    pub meetings: Vec<SyncedMeeting>,
    /// The user's PMI (a checked meeting number), indexed as source `pmi` and
    /// stored on the connection; `None` leaves the PMI alone.
    pub pmi: Option<String>,
    pub personal_meeting_url: Option<String>,
    pub next_sync_at: DateTime<Utc>,
    pub event: NewConnectionEvent,
    /// The end of an account-wide pass ([`SyncStore::stage_account_user`]): its
    /// staging is cleared and `sync_pass_started_at` unset in the same transaction.
    pub ends_account_pass: bool,
}

/// An account-wide meeting sync pass under way (DESIGN.md §15), as
/// [`SyncStore::resume_account_sync_pass`] found or began it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSyncPass {
    pub started_at: DateTime<Utc>,
    /// Whether this call began it (no pass was under way, or it was too old).
    pub began: bool,
    /// Users whose meetings the pass has read.
    pub users_done: std::collections::HashSet<String>,
}

/// What `complete_meeting_sync` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncCommit {
    Committed {
        /// Rows of this connection written (inserted, refreshed or taken over).
        indexed: u64,
        /// Meetings left to another connection's `webhook` or `pmi` row.
        held_elsewhere: u64,
        /// This connection's `sync` rows Zoom no longer lists, deleted.
        removed: u64,
    },
    /// The claim was void (another sync, a re-bind or a disconnect moved
    /// `next_sync_at`, or the connection is gone or disconnected): nothing written.
    LostClaim,
}

store_trait! {
    pub trait SyncStore {
        /// Claims up to `limit` connected connections with local recording on whose
        /// meeting sync is due (`next_sync_at` NULL or `<= now`) and whose refresh lease
        /// is free, oldest due first, skipping locked rows on PostgreSQL. The claim sets
        /// `next_sync_at = now + claim_for`; the returned rows carry that value, the
        /// fence of [`SyncStore::complete_meeting_sync`] and
        /// [`SyncStore::reschedule_meeting_sync`]. The refresh lease and `fence` are untouched.
        async fn claim_due_syncs(&self, limit: u32, claim_for: Duration)
            -> StoreResult<Vec<ConnectionRow>> {
            let now = self.now().await?;
            let mut tx = self.begin().await?;
            let claimed = sql!(all &mut tx, connection_from_row,
                &format!("WITH due(due_id) AS MATERIALIZED (\
                              SELECT id FROM zoom_oauth_connections \
                              WHERE state = 'connected' AND is_local_recording_token_supported \
                              AND (next_sync_at IS NULL OR next_sync_at <= $1) \
                              AND (lease_until IS NULL OR lease_until < $1) \
                              ORDER BY next_sync_at NULLS FIRST LIMIT $2{}) \
                          UPDATE zoom_oauth_connections SET next_sync_at = $3 \
                          FROM due WHERE id = due.due_id RETURNING {CONNECTION_COLUMNS}",
                         self.pool.lock(Lock::SkipLocked)),
                ts(now), i64::from(limit), after(now, claim_for))?;
            tx.commit().await?;
            Ok(claimed)
        }

        /// Writes a sync's result in one transaction, only while the connection is
        /// connected and its `next_sync_at` still equals `done.claim`: indexes
        /// `done.meetings` as `sync` rows of the connection where
        /// [`crate::domain::meetings::replaces`] lets them, deletes the connection's `sync` rows
        /// not in the set (its `webhook` rows stay), replaces its PMI row and
        /// `pmi`/`personal_meeting_url` when `done.pmi` is given, sets
        /// `last_attempted_sync_at = last_successful_sync_at = now`, `next_sync_at =
        /// done.next_sync_at`, and writes `done.event`.
        async fn complete_meeting_sync(&self, done: &CompletedSync) -> StoreResult<SyncCommit> {
            let mut tx = self.begin().await?;
            let now = self.now().await?;
            let owner: Option<(String, String)> = sql!(optional &mut tx,
                |r| pair(r, "project_id", "app_id"),
                "UPDATE zoom_oauth_connections SET last_attempted_sync_at = $1, \
                 last_successful_sync_at = $1, next_sync_at = $2 \
                 WHERE id = $3 AND next_sync_at = $4 AND state = 'connected' \
                 RETURNING project_id, app_id",
                ts(now), ts(done.next_sync_at), &done.connection_id, ts(done.claim))?;
            let Some((project_id, app_id)) = owner else {
                return Ok(SyncCommit::LostClaim);
            };
            let row = |meeting_id: &str, source, topic, start_time, host_user_id| MeetingRow {
                project_id: project_id.clone(),
                app_id: app_id.clone(),
                meeting_id: meeting_id.to_owned(),
                connection_id: done.connection_id.clone(),
                source,
                topic,
                start_time,
                synced_at: now,
                host_user_id,
            };
            let (mut indexed, mut held_elsewhere) = (0, 0);
            for m in &done.meetings {
                let meeting = row(
                    &m.meeting_id,
                    MeetingSource::Sync,
                    m.topic.clone(),
                    m.start_time,
                    m.host_user_id.clone(),
                );
                if index_meeting(&mut tx, &meeting, m.host_confirmed).await? {
                    indexed += 1;
                } else {
                    held_elsewhere += 1;
                }
            }
            let removed = sql!(execute &mut tx,
                "DELETE FROM zoom_meetings WHERE connection_id = $1 AND source = 'sync' \
                 AND synced_at <> $2",
                &done.connection_id, ts(now))?;
            if let Some(pmi) = &done.pmi {
                let change = MeetingIndexChange::ReplacePmi {
                    row: row(pmi, MeetingSource::Pmi, None, None, None),
                    personal_meeting_url: done.personal_meeting_url.clone(),
                };
                apply(&mut tx, &change).await?;
            }
            if done.ends_account_pass {
                sql!(execute &mut tx,
                    "DELETE FROM account_sync_users WHERE connection_id = $1", &done.connection_id)?;
                sql!(execute &mut tx,
                    "DELETE FROM account_sync_meetings WHERE connection_id = $1", &done.connection_id)?;
                sql!(execute &mut tx,
                    "UPDATE zoom_oauth_connections SET sync_pass_started_at = NULL WHERE id = $1",
                    &done.connection_id)?;
            }
            write_connection_event(&mut tx, &done.connection_id, &done.event, now).await?;
            tx.commit().await?;
            Ok(SyncCommit::Committed {
                indexed,
                held_elsewhere,
                removed,
            })
        }

        /// The account-wide pass of connection `id`, while its claim holds (`None`
        /// otherwise): the one under way if it began after `fresh_after`, else a new
        /// one (its staging emptied, `sync_users_done = 0`, `sync_users_total` unset).
        async fn resume_account_sync_pass(&self, id: &str, claim: DateTime<Utc>,
            fresh_after: DateTime<Utc>) -> StoreResult<Option<AccountSyncPass>> {
            let now = self.now().await?;
            let mut tx = self.begin().await?;
            let began = sql!(one_changed &mut tx,
                "UPDATE zoom_oauth_connections SET sync_pass_started_at = $1, \
                 sync_users_done = 0, sync_users_total = NULL \
                 WHERE id = $2 AND next_sync_at = $3 AND state = 'connected' \
                 AND (sync_pass_started_at IS NULL OR sync_pass_started_at <= $4)",
                ts(now), id, ts(claim), ts(fresh_after))?;
            if began {
                sql!(execute &mut tx, "DELETE FROM account_sync_users WHERE connection_id = $1", id)?;
                sql!(execute &mut tx, "DELETE FROM account_sync_meetings WHERE connection_id = $1", id)?;
            }
            let started_at: Option<DateTime<Utc>> = sql!(optional &mut tx,
                |r| r.get("sync_pass_started_at"),
                "SELECT sync_pass_started_at FROM zoom_oauth_connections \
                 WHERE id = $1 AND next_sync_at = $2 AND state = 'connected' \
                 AND sync_pass_started_at IS NOT NULL",
                id, ts(claim))?;
            let Some(started_at) = started_at else {
                return Ok(None);
            };
            let users_done: Vec<String> = sql!(scalar_all &mut tx,
                "SELECT user_id FROM account_sync_users WHERE connection_id = $1", id)?;
            tx.commit().await?;
            Ok(Some(AccountSyncPass {
                started_at,
                began,
                users_done: users_done.into_iter().collect(),
            }))
        }

        /// Records that the pass read `user_id`'s meetings (staged, each under the
        /// first user who listed it), with `users_total` users in the account, in one
        /// transaction while the claim holds; false (nothing written) when it does not.
        /// A user already recorded changes nothing.
        async fn stage_account_user(&self, id: &str, claim: DateTime<Utc>, user_id: &str,
            users_total: i64, meetings: &[SyncedMeeting]) -> StoreResult<bool> {
            let mut tx = self.begin().await?;
            let held = sql!(one_changed &mut tx,
                "UPDATE zoom_oauth_connections SET sync_users_total = $1 \
                 WHERE id = $2 AND next_sync_at = $3 AND state = 'connected' \
                 AND sync_pass_started_at IS NOT NULL",
                users_total, id, ts(claim))?;
            if !held {
                return Ok(false);
            }
            let new = sql!(one_changed &mut tx,
                "INSERT INTO account_sync_users (connection_id, user_id) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
                id, user_id)?;
            if new {
                sql!(execute &mut tx,
                    "UPDATE zoom_oauth_connections SET sync_users_done = sync_users_done + 1 \
                     WHERE id = $1",
                    id)?;
                for m in meetings {
                    sql!(execute &mut tx,
                        "INSERT INTO account_sync_meetings (connection_id, meeting_id, \
                         host_user_id, host_confirmed, topic, start_time) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                        id, &m.meeting_id, m.host_user_id.as_deref().unwrap_or(user_id),
                        m.host_confirmed, &m.topic, ots(m.start_time))?;
                }
            }
            tx.commit().await?;
            Ok(true)
        }

        /// The meetings connection `id`'s pass has staged, by meeting id.
        async fn staged_account_meetings(&self, id: &str) -> StoreResult<Vec<SyncedMeeting>> {
            sql!(all &mut self.conn().await?,
                |r| Ok(SyncedMeeting {
                    meeting_id: r.get("meeting_id")?,
                    topic: r.get("topic")?,
                    start_time: r.get("start_time")?,
                    host_confirmed: r.get("host_confirmed")?,
                    host_user_id: Some(r.get("host_user_id")?),
                }),
                "SELECT meeting_id, host_user_id, host_confirmed, topic, start_time \
                 FROM account_sync_meetings WHERE connection_id = $1 ORDER BY meeting_id",
                id)
        }

        /// Zoom users of app `app_id` with their own connected connection that mints
        /// local recording tokens, other than connection `except`: their meetings are
        /// theirs to index, not an account connection's.
        async fn users_with_own_connection(&self, app_id: &str, except: &str)
            -> StoreResult<std::collections::HashSet<String>> {
            let users: Vec<String> = sql!(scalar_all &mut self.conn().await?,
                "SELECT user_id FROM zoom_oauth_connections WHERE app_id = $1 AND id <> $2 \
                 AND state = 'connected' AND is_local_recording_token_supported",
                app_id, except)?;
            Ok(users.into_iter().collect())
        }

        /// A sync that did not complete: `next_sync_at = retry_at` (and
        /// `last_attempted_sync_at = now` when `attempted`), with `event` when given,
        /// only while `next_sync_at` still equals `claim`. False when the claim was void.
        async fn reschedule_meeting_sync(&self, id: &str, claim: DateTime<Utc>,
            retry_at: DateTime<Utc>, attempted: bool, event: Option<&NewConnectionEvent>)
            -> StoreResult<bool> {
            let now = self.now().await?;
            let mut tx = self.begin().await?;
            let updated = sql!(execute &mut tx,
                "UPDATE zoom_oauth_connections SET next_sync_at = $1, \
                 last_attempted_sync_at = CASE WHEN $2 THEN $3 ELSE last_attempted_sync_at END \
                 WHERE id = $4 AND next_sync_at = $5",
                ts(retry_at), attempted, ts(now), id, ts(claim))?;
            if updated == 0 {
                return Ok(false);
            }
            if let Some(event) = event {
                write_connection_event(&mut tx, id, event, now).await?;
            }
            tx.commit().await?;
            Ok(true)
        }
    }
}
