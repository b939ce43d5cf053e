//! Hosted connect sessions (DESIGN.md §12). The rules are in
//! `crate::domain::connect_sessions`; this only fetches and writes, each state
//! change guarded by the state it leaves, so a session is used once.

use chrono::{DateTime, Utc};

use super::sql::{page_clause, ts, Row};
use super::{Page, PageRequest, Sealed, StoreResult};

text_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum ConnectSessionStatus("connect session status") {
        /// Waiting for the user (the link may have been opened).
        Pending = "pending",
        /// The user came back from Zoom; the code is being exchanged.
        Exchanging = "exchanging",
        Completed = "completed",
        Failed = "failed",
    }
}

#[derive(Debug, Clone)]
pub struct ConnectSessionRow {
    /// `zcs_…`
    pub id: String,
    pub project_id: String,
    pub app_id: String,
    pub return_url: String,
    pub metadata: Option<serde_json::Value>,
    pub deduplication_key: Option<String>,
    pub is_local_recording_token_supported: Option<bool>,
    pub is_onbehalf_token_supported: Option<bool>,
    /// SHA-256 of the link's token.
    pub token_hash: Vec<u8>,
    /// SHA-256 of the `state` of the newest authorize redirect.
    pub state_hash: Option<Vec<u8>>,
    pub code_verifier: Option<Sealed>,
    pub status: ConnectSessionStatus,
    pub connection_id: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, project_id, app_id, return_url, metadata, deduplication_key, \
     is_local_recording_token_supported, is_onbehalf_token_supported, token_hash, state_hash, \
     code_verifier, status, connection_id, error, error_description, expires_at, created_at, \
     updated_at";

fn session_from_row(row: &impl Row) -> StoreResult<ConnectSessionRow> {
    from_row!(row => ConnectSessionRow {
        id, project_id, app_id, return_url, metadata, deduplication_key,
        is_local_recording_token_supported, is_onbehalf_token_supported, token_hash, state_hash,
        code_verifier, status, connection_id, error, error_description, expires_at, created_at,
        updated_at,
    })
}

store_trait! {
    pub trait ConnectSessionStore {
        async fn insert_connect_session(&self, s: &ConnectSessionRow) -> StoreResult<()> {
            sql!(execute &mut self.conn().await?,
                &format!("INSERT INTO connect_sessions ({COLUMNS}) VALUES ({})",
                    super::sql::placeholders(1, 18)),
                &s.id, &s.project_id, &s.app_id, &s.return_url, &s.metadata,
                &s.deduplication_key, s.is_local_recording_token_supported,
                s.is_onbehalf_token_supported, &s.token_hash, &s.state_hash,
                s.code_verifier.as_ref().map(|v| &v.0), s.status.as_str(), &s.connection_id,
                &s.error, &s.error_description, ts(s.expires_at), ts(s.created_at),
                ts(s.updated_at))?;
            Ok(())
        }

        async fn get_connect_session(&self, project_id: &str, id: &str)
            -> StoreResult<Option<ConnectSessionRow>> {
            sql!(optional &mut self.conn().await?, session_from_row,
                &format!("SELECT {COLUMNS} FROM connect_sessions \
                          WHERE project_id = $1 AND id = $2"),
                project_id, id)
        }

        /// A project's sessions, newest first.
        async fn list_connect_sessions(&self, project_id: &str, page: &PageRequest)
            -> StoreResult<Page<ConnectSessionRow>> {
            sql!(page &mut self.conn().await?, session_from_row, page,
                &format!("SELECT {COLUMNS} FROM connect_sessions WHERE project_id = $1{}",
                    page_clause(page, "created_at, id", 2)),
                project_id)
        }

        /// The session whose link token hashes to `token_hash`.
        async fn connect_session_by_token(&self, token_hash: &[u8])
            -> StoreResult<Option<ConnectSessionRow>> {
            sql!(optional &mut self.conn().await?, session_from_row,
                &format!("SELECT {COLUMNS} FROM connect_sessions WHERE token_hash = $1"),
                token_hash)
        }

        /// The session whose newest authorize redirect carried the state hashing to
        /// `state_hash`.
        async fn connect_session_by_state(&self, state_hash: &[u8])
            -> StoreResult<Option<ConnectSessionRow>> {
            sql!(optional &mut self.conn().await?, session_from_row,
                &format!("SELECT {COLUMNS} FROM connect_sessions WHERE state_hash = $1"),
                state_hash)
        }

        /// Records a new authorize redirect (its state and PKCE verifier replace any
        /// earlier one), only while the session is pending and not expired at `now`;
        /// false otherwise.
        async fn begin_connect_authorization(&self, id: &str, state_hash: &[u8],
            code_verifier: &Sealed, now: DateTime<Utc>) -> StoreResult<bool> {
            sql!(one_changed &mut self.conn().await?,
                "UPDATE connect_sessions SET state_hash = $1, code_verifier = $2, updated_at = $3 \
                 WHERE id = $4 AND status = 'pending' AND expires_at > $3",
                state_hash, &code_verifier.0, ts(now), id)
        }

        /// Moves the session from `from` to `to` with its outcome, only if it is still
        /// in `from` (and, leaving `pending`, not expired at `now` and still on
        /// `state_hash` when given); false when another request got there first.
        async fn move_connect_session(&self, id: &str, from: ConnectSessionStatus,
            to: ConnectSessionStatus, outcome: &ConnectSessionOutcome, now: DateTime<Utc>)
            -> StoreResult<bool> {
            sql!(one_changed &mut self.conn().await?,
                "UPDATE connect_sessions SET status = $1, connection_id = $2, error = $3, \
                 error_description = $4, updated_at = $5, code_verifier = NULL \
                 WHERE id = $6 AND status = $7 \
                 AND ($7 <> 'pending' OR expires_at > $5) \
                 AND ($8 IS NULL OR state_hash = $8)",
                to.as_str(), &outcome.connection_id, &outcome.error, &outcome.error_description,
                ts(now), id, from.as_str(), &outcome.state_hash)
        }

        /// Deletes up to `limit` sessions created before `before`; returns how many.
        async fn delete_connect_sessions_before(&self, before: DateTime<Utc>, limit: u32)
            -> StoreResult<u64> {
            sql!(execute &mut self.conn().await?,
                "DELETE FROM connect_sessions WHERE id IN \
                 (SELECT id FROM connect_sessions WHERE created_at < $1 \
                  ORDER BY created_at LIMIT $2)",
                ts(before), i64::from(limit))
        }
    }
}

/// What [`ConnectSessionStore::move_connect_session`] writes, and the state it
/// requires.
#[derive(Debug, Clone, Default)]
pub struct ConnectSessionOutcome {
    pub connection_id: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    /// Only move a session still on this state.
    pub state_hash: Option<Vec<u8>>,
}
