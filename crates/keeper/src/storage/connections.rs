//! Zoom OAuth connections (DESIGN.md §3 `zoom_oauth_connection`): their rows and
//! settings. Leases and grant write-backs are in [`super::leases`], the event log and
//! outbox in [`super::events`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::events::write_connection_change;
use super::sql::{ots, page_clause, ts, Row};
use super::{OutboxSource, Page, PageRequest, Sealed, StoreResult};

text_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum ConnectionState("connection state") {
        Connected = "connected",
        Disconnected = "disconnected",
    }
}

/// Why a connection is disconnected: Attendee's `connection_failure_data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureData {
    /// A sentence a person can act on; never holds a token.
    pub error: String,
    /// Stable snake_case (`invalid_grant`, `app_deauthorized`, `invalid_client`, …).
    pub code: String,
    pub timestamp: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct ConnectionRow {
    pub id: String,
    pub project_id: String,
    pub app_id: String,
    /// Zoom's user id.
    pub user_id: String,
    pub account_id: String,
    pub email: Option<String>,
    pub pmi: Option<String>,
    pub personal_meeting_url: Option<String>,
    pub state: ConnectionState,
    pub connection_failure_data: Option<FailureData>,
    /// A JSON object of string values, or None.
    pub metadata: Option<serde_json::Value>,
    pub deduplication_key: Option<String>,
    pub is_local_recording_token_supported: bool,
    pub is_onbehalf_token_supported: bool,
    pub scopes: Vec<String>,
    /// Sealed under slot (`zoom_oauth_connections`, `refresh_token`, id).
    pub refresh_token: Option<Sealed>,
    /// Sealed under slot (`zoom_oauth_connections`, `access_token`, id).
    pub access_token: Option<Sealed>,
    pub access_token_expires_at: Option<DateTime<Utc>>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    /// Bumped by every lease claim and every grant replacement; write-backs that
    /// carry an older fence change nothing.
    pub fence: i64,
    /// When the token keeper must refresh this connection next (at the latest).
    pub refresh_due_at: Option<DateTime<Utc>>,
    pub last_attempted_sync_at: Option<DateTime<Utc>>,
    pub last_successful_sync_at: Option<DateTime<Utc>>,
    pub next_sync_at: Option<DateTime<Utc>>,
    pub last_successful_token_refresh_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When a meeting sync was last asked for (on connect, on re-authorisation, on
    /// request); see [`MeetingSyncStatus`].
    pub sync_requested_at: Option<DateTime<Utc>>,
    /// A customer-managed connection's URL its access tokens come from (it then has
    /// no refresh token); sealed under slot (`zoom_oauth_connections`,
    /// `access_token_callback_url`, id).
    pub access_token_callback_url: Option<Sealed>,
    /// When the account-wide meeting sync pass under way began (account-level
    /// connections; `None` when no pass is under way). Set by the meeting sync only.
    pub sync_pass_started_at: Option<DateTime<Utc>>,
    /// Users of the Zoom account read by the pass under way, or by the last one.
    pub sync_users_done: Option<i64>,
    /// Users of the Zoom account the pass under way (or the last one) found.
    pub sync_users_total: Option<i64>,
}

/// Filters of `GET /api/v1/zoom_oauth_connections`; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct ConnectionFilter {
    pub app_id: Option<String>,
    pub user_id: Option<String>,
    pub account_id: Option<String>,
    pub state: Option<ConnectionState>,
    pub deduplication_key: Option<String>,
    /// `(key, value)`: the metadata has this key with this value.
    pub metadata: Option<(String, String)>,
    /// Created at or after this time.
    pub created_after: Option<DateTime<Utc>>,
    /// Created at or before this time.
    pub created_before: Option<DateTime<Utc>>,
    pub meeting_sync_status: Option<MeetingSyncStatus>,
}

text_enum! {
    /// Where a connection's meeting sync stands (Recall's `meeting_sync_status`).
    /// The rule is [`MeetingSyncStatus::of`]; [`MeetingSyncStatus::condition`] is the
    /// same rule in SQL, for filtering, and a storage test holds them together.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum MeetingSyncStatus("meeting sync status") {
        /// No sync was ever asked for or attempted (e.g. without the local
        /// recording capability, which is what syncs are for).
        NotStarted = "not_started",
        /// A sync was asked for after the last attempt, or an account-wide pass is
        /// under way, and the connection is connected: the meeting sync worker will
        /// run it (or is running it).
        InProgress = "in_progress",
        /// The last attempt succeeded and nothing newer was asked for.
        Completed = "completed",
        /// The last attempt failed, or a sync was asked for while the connection
        /// is disconnected (it cannot run).
        Failed = "failed",
    }
}

impl MeetingSyncStatus {
    /// The status of `row`.
    pub fn of(row: &ConnectionRow) -> MeetingSyncStatus {
        let attempted = row.last_attempted_sync_at;
        // A sync asked for after the last attempt, or an account-wide pass under way
        // (it spans several attempts).
        let pending = row
            .sync_requested_at
            .is_some_and(|requested| attempted.is_none_or(|a| requested > a))
            || row.sync_pass_started_at.is_some();
        if pending {
            return if row.state == ConnectionState::Connected {
                MeetingSyncStatus::InProgress
            } else {
                MeetingSyncStatus::Failed
            };
        }
        match (attempted, row.last_successful_sync_at) {
            (None, _) => MeetingSyncStatus::NotStarted,
            (Some(a), Some(ok)) if ok >= a => MeetingSyncStatus::Completed,
            (Some(_), _) => MeetingSyncStatus::Failed,
        }
    }

    /// [`MeetingSyncStatus::of`] as a condition on a `zoom_oauth_connections` row.
    fn condition(self) -> String {
        // A sync asked for after the last attempt, or an account-wide pass under way
        // (never NULL).
        const PENDING: &str =
            "((sync_requested_at IS NOT NULL AND (last_attempted_sync_at IS NULL \
             OR sync_requested_at > last_attempted_sync_at)) OR sync_pass_started_at IS NOT NULL)";
        match self {
            MeetingSyncStatus::InProgress => format!("({PENDING} AND state = 'connected')"),
            MeetingSyncStatus::NotStarted => {
                format!("(NOT {PENDING} AND last_attempted_sync_at IS NULL)")
            }
            MeetingSyncStatus::Completed => format!(
                "(NOT {PENDING} AND last_attempted_sync_at IS NOT NULL \
                 AND last_successful_sync_at >= last_attempted_sync_at)"
            ),
            MeetingSyncStatus::Failed => format!(
                "(({PENDING} AND state <> 'connected') OR (NOT {PENDING} \
                 AND last_attempted_sync_at IS NOT NULL AND (last_successful_sync_at IS NULL \
                 OR last_successful_sync_at < last_attempted_sync_at)))"
            ),
        }
    }
}

/// A fresh grant from a code exchange, replacing an existing connection's identity,
/// tokens and settings in place (same id). A customer-managed connection becomes an
/// ordinary one: its `access_token_callback_url` is dropped (the grant's refresh
/// token is where its tokens come from now). State becomes `connected`, failure data
/// is cleared, the lease is released and the fence bumped (so an in-flight refresh
/// of the old grant cannot write back).
#[derive(Debug, Clone)]
pub struct GrantReplacement {
    pub user_id: String,
    pub account_id: String,
    pub email: Option<String>,
    pub pmi: Option<String>,
    pub personal_meeting_url: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub deduplication_key: Option<String>,
    pub is_local_recording_token_supported: bool,
    pub is_onbehalf_token_supported: bool,
    pub scopes: Vec<String>,
    pub refresh_token: Sealed,
    pub access_token: Sealed,
    pub access_token_expires_at: DateTime<Utc>,
    pub refresh_due_at: DateTime<Utc>,
    pub next_sync_at: Option<DateTime<Utc>>,
    /// Drop the connection's meeting index (the connection now belongs to another
    /// Zoom user).
    pub clear_meetings: bool,
    /// Keep the state and failure data as they are (a re-authorisation that failed
    /// for another reason still stores its grant, DESIGN.md §5).
    pub keep_state: bool,
    /// Write only while the connection's fence is still this one (the row the
    /// decision was made on); `None` writes whatever the fence.
    pub expected_fence: Option<i64>,
}

/// `PATCH` of a connection's settings; `None` leaves a field alone, `Some(None)`
/// clears a nullable one.
#[derive(Debug, Clone, Default)]
pub struct ConnectionSettingsUpdate {
    pub metadata: Option<Option<serde_json::Value>>,
    pub deduplication_key: Option<Option<String>>,
    pub is_local_recording_token_supported: Option<bool>,
    pub is_onbehalf_token_supported: Option<bool>,
}

/// Tokens from a successful refresh, written back under the lease's fence.
#[derive(Debug, Clone)]
pub struct RefreshedTokens {
    pub refresh_token: Sealed,
    pub access_token: Sealed,
    pub access_token_expires_at: DateTime<Utc>,
    pub refresh_due_at: DateTime<Utc>,
    pub scopes: Option<Vec<String>>,
}

/// A line in a connection's log (`GET …/{id}/events`).
#[derive(Debug, Clone)]
pub struct NewConnectionEvent {
    /// snake_case: `created`, `reconnected`, `rebound`, `token_refreshed`,
    /// `sync_completed`, `disconnected`, `deauthorized`, `revoke_failed`, …
    pub kind: String,
    /// A sentence a person can read; never holds a token.
    pub message: String,
    pub data: Option<serde_json::Value>,
}

#[derive(Debug, Clone)]
pub struct ConnectionEventRow {
    pub id: i64,
    pub connection_id: String,
    pub kind: String,
    pub message: String,
    pub data: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

/// An outgoing-webhook event, written in the same transaction as its cause. The
/// delivery worker (issue 6) fans each one out to the project's subscriptions.
#[derive(Debug, Clone)]
pub struct NewOutboxEvent {
    /// e.g. `zoom_oauth_connection.state_change`.
    pub trigger: String,
    /// The payload without `idempotency_key` (added per delivery).
    pub payload: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct OutboxEventRow {
    pub id: String,
    pub project_id: String,
    pub trigger: String,
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub dispatched_at: Option<DateTime<Utc>>,
}

/// What happened to a `disconnect_connection` call.
#[derive(Debug, Clone)]
pub enum DisconnectOutcome {
    /// The connection was connected and now is not; the event and outbox row were
    /// written. Carries the new row.
    Disconnected(Box<ConnectionRow>),
    /// It was already disconnected (or the fence moved on): nothing was written.
    Unchanged,
    NotFound,
}

store_trait! {
    pub trait ConnectionStore {
        /// How many of the project's connections are in each state, by state.
        async fn count_connections_by_state(&self, project_id: &str)
            -> StoreResult<Vec<(String, i64)>> {
            sql!(all &mut self.conn().await?,
                |row| super::sql::pair(row, "state", "n"),
                "SELECT state, COUNT(*) AS n FROM zoom_oauth_connections \
                 WHERE project_id = $1 GROUP BY state ORDER BY state",
                project_id)
        }

        /// Writes the row and its `event` in one transaction. `Conflict { constraint:
        /// "connections_app_user_id" | "connections_app_deduplication_key" }`.
        /// A new connection with its `created` event, and the outgoing webhook
        /// `outbox` makes of it (in the same transaction) when given.
        async fn insert_connection(&self, row: &ConnectionRow, event: &NewConnectionEvent,
            outbox: Option<&dyn OutboxSource>) -> StoreResult<()> {
            let now = self.now().await?;
            let mut tx = self.begin().await?;
            sql!(execute &mut tx,
                &format!("INSERT INTO zoom_oauth_connections ({INSERTED_COLUMNS}) VALUES \
                          ({})", super::sql::placeholders(1, 30)),
                &row.id, &row.project_id, &row.app_id, &row.user_id, &row.account_id, &row.email,
                &row.pmi, &row.personal_meeting_url, row.state.as_str(),
                row.connection_failure_data.as_ref().map(failure_to_json), &row.metadata,
                &row.deduplication_key, row.is_local_recording_token_supported,
                row.is_onbehalf_token_supported, scopes_to_text(&row.scopes),
                row.refresh_token.as_ref().map(|s| &s.0), row.access_token.as_ref().map(|s| &s.0),
                ots(row.access_token_expires_at), &row.lease_owner, ots(row.lease_until), row.fence,
                ots(row.refresh_due_at), ots(row.last_attempted_sync_at),
                ots(row.last_successful_sync_at), ots(row.next_sync_at),
                ots(row.last_successful_token_refresh_at), ts(row.created_at), ts(row.updated_at),
                ots(row.sync_requested_at), row.access_token_callback_url.as_ref().map(|s| &s.0))?;
            write_connection_change(&mut tx, row, event, outbox, now).await?;
            tx.commit().await
        }

        async fn get_connection(&self, project_id: &str, id: &str)
            -> StoreResult<Option<ConnectionRow>> {
            sql!(optional &mut self.conn().await?, connection_from_row,
                &format!("SELECT {CONNECTION_COLUMNS} FROM zoom_oauth_connections \
                          WHERE project_id = $1 AND id = $2"),
                project_id, id)
        }

        /// Unscoped read for workers that already hold the id from a claim.
        async fn connection_by_id(&self, id: &str) -> StoreResult<Option<ConnectionRow>> {
            sql!(optional &mut self.conn().await?, connection_from_row,
                &format!("SELECT {CONNECTION_COLUMNS} FROM zoom_oauth_connections WHERE id = $1"),
                id)
        }

        async fn connection_by_user(&self, app_id: &str, user_id: &str)
            -> StoreResult<Option<ConnectionRow>> {
            sql!(optional &mut self.conn().await?, connection_from_row,
                &format!("SELECT {CONNECTION_COLUMNS} FROM zoom_oauth_connections \
                          WHERE app_id = $1 AND user_id = $2"),
                app_id, user_id)
        }

        async fn connection_by_deduplication_key(&self, app_id: &str, key: &str)
            -> StoreResult<Option<ConnectionRow>> {
            sql!(optional &mut self.conn().await?, connection_from_row,
                &format!("SELECT {CONNECTION_COLUMNS} FROM zoom_oauth_connections \
                          WHERE app_id = $1 AND deduplication_key = $2"),
                app_id, key)
        }

        async fn list_connections(&self, project_id: &str, filter: &ConnectionFilter,
            page: &PageRequest) -> StoreResult<Page<ConnectionRow>> {
            sql!(page &mut self.conn().await?, connection_from_row, page,
                &format!("SELECT {CONNECTION_COLUMNS} FROM zoom_oauth_connections \
                          WHERE project_id = $1 \
                          AND ($2 IS NULL OR app_id = $2) AND ($3 IS NULL OR user_id = $3) \
                          AND ($4 IS NULL OR account_id = $4) AND ($5 IS NULL OR state = $5) \
                          AND ($6 IS NULL OR deduplication_key = $6) \
                          AND ($7 IS NULL OR {}) \
                          AND ($9 IS NULL OR created_at >= $9) \
                          AND ($10 IS NULL OR created_at <= $10){}{}",
                         // The one dialect arm here: the databases' JSON functions differ.
                         match self.pool {
                             super::sql::Either::Sqlite(_) => "EXISTS (SELECT 1 FROM \
                                 json_each(metadata) AS m WHERE m.key = $7 AND m.value = $8)",
                             super::sql::Either::Postgres(_) => "metadata ->> $7 = $8",
                         },
                         filter.meeting_sync_status
                             .map_or(String::new(), |s| format!(" AND {}", s.condition())),
                         page_clause(page, "created_at, id", 11)),
                project_id, &filter.app_id, &filter.user_id, &filter.account_id,
                filter.state.map(ConnectionState::as_str), &filter.deduplication_key,
                filter.metadata.as_ref().map(|(k, _)| k), filter.metadata.as_ref().map(|(_, v)| v),
                ots(filter.created_after), ots(filter.created_before))
        }

        /// Replaces the grant of connection `id` in place (see [`GrantReplacement`]),
        /// writing `event` and `outbox` in the same transaction. Returns the new row, or
        /// `None` when it no longer exists. Conflicts as for `insert_connection`.
        async fn replace_connection_grant(&self, project_id: &str, id: &str,
            grant: &GrantReplacement, event: &NewConnectionEvent, outbox: Option<&dyn OutboxSource>)
            -> StoreResult<Option<ConnectionRow>> {
            let now = self.now().await?;
            let mut tx = self.begin().await?;
            let row = sql!(optional &mut tx, connection_from_row,
                &format!("UPDATE zoom_oauth_connections SET user_id = $1, account_id = $2, \
                 email = $3, pmi = $4, personal_meeting_url = $5, metadata = $6, \
                 deduplication_key = $7, is_local_recording_token_supported = $8, \
                 is_onbehalf_token_supported = $9, scopes = $10, refresh_token = $11, \
                 access_token = $12, access_token_expires_at = $13, refresh_due_at = $14, \
                 access_token_callback_url = NULL, \
                 next_sync_at = CASE WHEN $20 THEN next_sync_at ELSE $15 END, \
                 sync_requested_at = \
                     CASE WHEN $20 OR $15 IS NULL THEN sync_requested_at ELSE $15 END, \
                 state = CASE WHEN $20 THEN state ELSE 'connected' END, \
                 connection_failure_data = \
                     CASE WHEN $20 THEN connection_failure_data ELSE NULL END, \
                 lease_owner = NULL, lease_until = NULL, fence = fence + 1, \
                 last_attempted_sync_at = \
                     CASE WHEN $16 THEN NULL ELSE last_attempted_sync_at END, \
                 last_successful_sync_at = \
                     CASE WHEN $16 THEN NULL ELSE last_successful_sync_at END, \
                 updated_at = $17 \
                 WHERE project_id = $18 AND id = $19 AND ($21 IS NULL OR fence = $21) \
                 RETURNING {CONNECTION_COLUMNS}"),
                &grant.user_id, &grant.account_id, &grant.email, &grant.pmi,
                &grant.personal_meeting_url, &grant.metadata, &grant.deduplication_key,
                grant.is_local_recording_token_supported, grant.is_onbehalf_token_supported,
                scopes_to_text(&grant.scopes), &grant.refresh_token.0, &grant.access_token.0,
                ts(grant.access_token_expires_at), ts(grant.refresh_due_at),
                ots(grant.next_sync_at), grant.clear_meetings, ts(now), project_id, id,
                grant.keep_state,
                grant.expected_fence)?;
            let Some(row) = row else {
                return Ok(None);
            };
            if grant.clear_meetings {
                sql!(execute &mut tx, "DELETE FROM zoom_meetings WHERE connection_id = $1", id)?;
            }
            write_connection_change(&mut tx, &row, event, outbox, now).await?;
            tx.commit().await?;
            Ok(Some(row))
        }

        /// `Conflict { constraint: "connections_app_deduplication_key" }` on a taken key.
        async fn update_connection_settings(&self, project_id: &str, id: &str,
            update: &ConnectionSettingsUpdate) -> StoreResult<Option<ConnectionRow>> {
            let now = self.now().await?;
            sql!(optional &mut self.conn().await?, connection_from_row,
                &format!("UPDATE zoom_oauth_connections SET \
                 metadata = CASE WHEN $1 THEN $2 ELSE metadata END, \
                 deduplication_key = CASE WHEN $3 THEN $4 ELSE deduplication_key END, \
                 is_local_recording_token_supported = \
                     COALESCE($5, is_local_recording_token_supported), \
                 is_onbehalf_token_supported = COALESCE($6, is_onbehalf_token_supported), \
                 updated_at = $7 WHERE project_id = $8 AND id = $9 RETURNING {CONNECTION_COLUMNS}"),
                update.metadata.is_some(), update.metadata.as_ref().and_then(|m| m.as_ref()),
                update.deduplication_key.is_some(),
                update.deduplication_key.as_ref().and_then(|k| k.as_deref()),
                update.is_local_recording_token_supported, update.is_onbehalf_token_supported,
                ts(now), project_id, id)
        }

        /// Asks for a meeting sync of connection `id` now (`next_sync_at = now`, database
        /// clock). False when it does not exist in the project.
        async fn schedule_connection_sync(&self, project_id: &str, id: &str) -> StoreResult<bool> {
            let now = self.now().await?;
            sql!(one_changed &mut self.conn().await?,
                "UPDATE zoom_oauth_connections SET next_sync_at = $1, sync_requested_at = $1 \
                 WHERE project_id = $2 AND id = $3",
                ts(now), project_id, id)
        }

        /// Deletes the connection (its meetings and events go with it); returns the row
        /// as it was, so the caller can revoke its token at Zoom. With `fence: Some(f)`
        /// only while the fence is still `f` (the caller holds the lease).
        async fn delete_connection(&self, project_id: &str, id: &str, fence: Option<i64>)
            -> StoreResult<Option<ConnectionRow>> {
            sql!(optional &mut self.conn().await?, connection_from_row,
                &format!("DELETE FROM zoom_oauth_connections WHERE project_id = $1 AND id = $2 \
                          AND ($3 IS NULL OR fence = $3) RETURNING {CONNECTION_COLUMNS}"),
                project_id, id, fence)
        }

        /// The oldest connected connection of `app_id` in Zoom account `account_id`
        /// (account-level apps: an admin's grant covers the account's meetings).
        async fn connection_in_account(&self, app_id: &str, account_id: &str)
            -> StoreResult<Option<ConnectionRow>> {
            sql!(optional &mut self.conn().await?, connection_from_row,
                &format!("SELECT {CONNECTION_COLUMNS} FROM zoom_oauth_connections \
                          WHERE app_id = $1 AND account_id = $2 AND state = 'connected' \
                          ORDER BY created_at, id LIMIT 1"),
                app_id, account_id)
        }

        /// Connections of the project (of `app_id` only, when given) whose
        /// `personal_meeting_url` ends in `/my/{vanity}` or has `/my/{vanity}?` (so the
        /// path ends there), compared case-insensitively with `vanity` lowercased; at
        /// most 20, connected ones first, then newest first. The caller still parses
        /// each URL and compares the vanity.
        async fn connections_by_personal_link(&self, project_id: &str, app_id: Option<&str>,
            vanity: &str) -> StoreResult<Vec<ConnectionRow>> {
            let path = like_escaped(&format!("/my/{}", vanity.to_lowercase()));
            sql!(all &mut self.conn().await?, connection_from_row,
                &format!("SELECT {CONNECTION_COLUMNS} FROM zoom_oauth_connections \
                          WHERE project_id = $1 AND ($2 IS NULL OR app_id = $2) \
                          AND (lower(personal_meeting_url) LIKE $3 ESCAPE '\\' \
                               OR lower(personal_meeting_url) LIKE $4 ESCAPE '\\') \
                          ORDER BY state = 'connected' DESC, created_at DESC, id DESC LIMIT 20"),
                project_id, app_id, format!("%{path}"), format!("%{path}?%"))
        }
    }
}

/// The columns a new connection is written with…
macro_rules! inserted_columns {
    () => {
        "id, project_id, app_id, user_id, account_id, \
         email, pmi, personal_meeting_url, state, connection_failure_data, metadata, \
         deduplication_key, is_local_recording_token_supported, is_onbehalf_token_supported, \
         scopes, refresh_token, access_token, access_token_expires_at, lease_owner, lease_until, \
         fence, refresh_due_at, last_attempted_sync_at, last_successful_sync_at, next_sync_at, \
         last_successful_token_refresh_at, created_at, updated_at, sync_requested_at, \
         access_token_callback_url"
    };
}
const INSERTED_COLUMNS: &str = inserted_columns!();
/// …and those read: with the account sync's progress, which only the meeting sync writes.
pub(super) const CONNECTION_COLUMNS: &str = concat!(
    inserted_columns!(),
    ", sync_pass_started_at, sync_users_done, sync_users_total"
);

pub(super) fn connection_from_row(row: &impl Row) -> StoreResult<ConnectionRow> {
    let scopes: String = row.get("scopes")?;
    let failure: Option<serde_json::Value> = row.get("connection_failure_data")?;
    let failure = failure.map(|v| {
        serde_json::from_value(v)
            .map_err(|e| super::sql::decode_error(format!("connection_failure_data: {e}")))
    });
    from_row!(row => ConnectionRow {
        id, project_id, app_id, user_id, account_id, email, pmi, personal_meeting_url, state,
        metadata, deduplication_key, is_local_recording_token_supported,
        is_onbehalf_token_supported, refresh_token, access_token, access_token_expires_at,
        lease_owner, lease_until, fence, refresh_due_at, last_attempted_sync_at,
        last_successful_sync_at, next_sync_at, last_successful_token_refresh_at, created_at,
        updated_at, sync_requested_at, access_token_callback_url, sync_pass_started_at,
        sync_users_done, sync_users_total;
        connection_failure_data: failure.transpose()?,
        scopes: scopes.split_whitespace().map(str::to_owned).collect(),
    })
}

/// `{error, code, timestamp}` with an RFC 3339 microsecond `Z` timestamp (DESIGN.md §3).
pub(super) fn failure_to_json(failure: &FailureData) -> serde_json::Value {
    serde_json::json!({
        "error": failure.error,
        "code": failure.code,
        "timestamp": super::sql::truncate_to_micros(failure.timestamp)
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    })
}

/// Scopes are stored space-separated, as Zoom grants them.
pub(super) fn scopes_to_text(scopes: &[String]) -> String {
    scopes.join(" ")
}

/// The numeric event id a `connection_events` cursor id holds, if it holds one. The
/// API checks cursors with this before a query sees them (a bad one is a 400).
pub fn parse_event_cursor_id(id: &str) -> Option<i64> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

/// `\`, `%` and `_` escaped for a `LIKE … ESCAPE '\'` pattern.
fn like_escaped(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}
