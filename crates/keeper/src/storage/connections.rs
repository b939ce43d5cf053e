//! Row and write types for Zoom OAuth connections, their event log, and the outbox
//! of outgoing-webhook events (DESIGN.md §3, §6). The methods are on [`super::Store`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Sealed;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    Connected,
    Disconnected,
}

impl ConnectionState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Connected => "connected",
            ConnectionState::Disconnected => "disconnected",
        }
    }

    pub fn parse(s: &str) -> Option<ConnectionState> {
        match s {
            "connected" => Some(ConnectionState::Connected),
            "disconnected" => Some(ConnectionState::Disconnected),
            _ => None,
        }
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
}

/// Filters of `GET /api/v1/zoom_oauth_connections`; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct ConnectionFilter {
    pub app_id: Option<String>,
    pub user_id: Option<String>,
    pub account_id: Option<String>,
    pub state: Option<ConnectionState>,
    pub deduplication_key: Option<String>,
}

/// A fresh grant from a code exchange, replacing an existing connection's identity,
/// tokens and settings in place (same id). State becomes `connected`, failure data
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

/// What one step of [`super::Store::prune_connection_events`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventPruning {
    /// Events deleted.
    pub deleted: u64,
    /// The last connection id this step walked, to pass as `after` to the next
    /// step; `None` when the walk reached the last connection (start over).
    pub next_after: Option<String>,
}

// Encoding shared by both databases.

/// A decode failure of a stored value.
pub(super) fn decode_error(what: impl std::fmt::Display) -> super::StoreError {
    super::StoreError::Database(sqlx::Error::Decode(what.to_string().into()))
}

pub(super) fn parse_state(s: &str) -> super::StoreResult<ConnectionState> {
    ConnectionState::parse(s).ok_or_else(|| decode_error(format!("unknown connection state {s:?}")))
}

/// `{error, code, timestamp}` with an RFC 3339 microsecond `Z` timestamp (DESIGN.md §3).
pub(super) fn failure_to_json(failure: &FailureData) -> serde_json::Value {
    serde_json::json!({
        "error": failure.error,
        "code": failure.code,
        "timestamp": super::truncate_to_micros(failure.timestamp)
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    })
}

pub(super) fn failure_from_json(value: serde_json::Value) -> super::StoreResult<FailureData> {
    serde_json::from_value(value).map_err(|e| decode_error(format!("connection_failure_data: {e}")))
}

pub(super) fn json_from_text(column: &str, text: &str) -> super::StoreResult<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| decode_error(format!("{column}: {e}")))
}

/// Scopes are stored space-separated, as Zoom grants them.
pub(super) fn scopes_to_text(scopes: &[String]) -> String {
    scopes.join(" ")
}

pub(super) fn scopes_from_text(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

/// A duration in whole microseconds, saturating.
pub(super) fn duration_micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// How long before an indexed meeting's start (plus this margin after it) the access
/// token must stay valid; see `Store::claim_due_refreshes`.
pub(super) const MEETING_TOKEN_MARGIN_MICROS: i64 = 5 * 60 * 1_000_000;

/// The numeric event id a `connection_events` cursor id holds, if it holds one. The
/// API checks cursors with this before a query sees them (a bad one is a 400).
pub fn parse_event_cursor_id(id: &str) -> Option<i64> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

/// The numeric event id a `connection_events` cursor carries. Only reached with a
/// cursor the API has already checked with [`parse_event_cursor_id`].
pub(super) fn event_cursor_id(cursor: &super::Cursor) -> super::StoreResult<i64> {
    parse_event_cursor_id(&cursor.id).ok_or_else(|| {
        super::StoreError::Database(sqlx::Error::InvalidArgument(format!(
            "connection event cursor id {:?} is not a number",
            cursor.id
        )))
    })
}
