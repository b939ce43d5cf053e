//! Dashboard operators, their sessions and failed sign-ins (DESIGN.md §13). The
//! rules (password hashing, idle timeout, throttling) are in
//! `crate::domain::operators`; this only fetches and writes.

use chrono::{DateTime, Utc};

use super::sql::{ts, Row};
use super::StoreResult;

#[derive(Debug, Clone)]
pub struct OperatorRow {
    /// `opr_…`
    pub id: String,
    /// Lower-cased.
    pub email: String,
    /// argon2id, PHC string format.
    pub password_hash: String,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A signed-in browser, with its operator.
#[derive(Debug, Clone)]
pub struct OperatorSessionRow {
    /// SHA-256 of the cookie's token.
    pub token_hash: Vec<u8>,
    pub operator_id: String,
    pub email: String,
    /// The project the dashboard shows.
    pub project_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

const OPERATOR_COLUMNS: &str = "id, email, password_hash, created_by, created_at";

fn operator_from_row(row: &impl Row) -> StoreResult<OperatorRow> {
    from_row!(row => OperatorRow { id, email, password_hash, created_by, created_at })
}

fn session_from_row(row: &impl Row) -> StoreResult<OperatorSessionRow> {
    from_row!(row => OperatorSessionRow {
        token_hash, operator_id, email, project_id, created_at, last_seen_at
    })
}

store_trait! {
    pub trait OperatorStore {
        /// `Conflict { constraint: "operators_email" }` when the email is taken.
        async fn insert_operator(&self, o: &OperatorRow) -> StoreResult<()> {
            sql!(execute &mut self.conn().await?,
                &format!("INSERT INTO operators ({OPERATOR_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"),
                &o.id, &o.email, &o.password_hash, &o.created_by, ts(o.created_at))?;
            Ok(())
        }

        async fn operator_by_email(&self, email: &str) -> StoreResult<Option<OperatorRow>> {
            sql!(optional &mut self.conn().await?, operator_from_row,
                &format!("SELECT {OPERATOR_COLUMNS} FROM operators WHERE email = $1"), email)
        }

        /// Every operator, by email.
        async fn list_operators(&self) -> StoreResult<Vec<OperatorRow>> {
            sql!(all &mut self.conn().await?, operator_from_row,
                &format!("SELECT {OPERATOR_COLUMNS} FROM operators ORDER BY email"))
        }

        async fn insert_operator_session(&self, s: &OperatorSessionRow) -> StoreResult<()> {
            sql!(execute &mut self.conn().await?,
                "INSERT INTO operator_sessions \
                 (token_hash, operator_id, project_id, created_at, last_seen_at) \
                 VALUES ($1, $2, $3, $4, $5)",
                &s.token_hash, &s.operator_id, &s.project_id, ts(s.created_at),
                ts(s.last_seen_at))?;
            Ok(())
        }

        async fn operator_session(&self, token_hash: &[u8])
            -> StoreResult<Option<OperatorSessionRow>> {
            sql!(optional &mut self.conn().await?, session_from_row,
                "SELECT s.token_hash, s.operator_id, o.email, s.project_id, s.created_at, \
                 s.last_seen_at FROM operator_sessions s \
                 JOIN operators o ON o.id = s.operator_id WHERE s.token_hash = $1",
                token_hash)
        }

        /// Records activity; callers throttle how often.
        async fn touch_operator_session(&self, token_hash: &[u8], at: DateTime<Utc>)
            -> StoreResult<()> {
            sql!(execute &mut self.conn().await?,
                "UPDATE operator_sessions SET last_seen_at = $1 \
                 WHERE token_hash = $2 AND last_seen_at < $1",
                ts(at), token_hash)?;
            Ok(())
        }

        /// Which project the session shows.
        async fn set_operator_session_project(&self, token_hash: &[u8], project_id: &str)
            -> StoreResult<bool> {
            sql!(one_changed &mut self.conn().await?,
                "UPDATE operator_sessions SET project_id = $1 WHERE token_hash = $2",
                project_id, token_hash)
        }

        async fn delete_operator_session(&self, token_hash: &[u8]) -> StoreResult<()> {
            sql!(execute &mut self.conn().await?,
                "DELETE FROM operator_sessions WHERE token_hash = $1", token_hash)?;
            Ok(())
        }

        /// Deletes sessions idle since before `before`; returns how many.
        async fn delete_operator_sessions_idle_before(&self, before: DateTime<Utc>)
            -> StoreResult<u64> {
            sql!(execute &mut self.conn().await?,
                "DELETE FROM operator_sessions WHERE last_seen_at < $1", ts(before))
        }

        /// Counts one sign-in attempt for `key` — in the current window, or starting a
        /// new one at `now` when the current one started at or before `window_after` —
        /// and returns the attempts counted in the window and when it started. One
        /// statement, so concurrent attempts each get their own count.
        async fn count_login_attempt(&self, key: &str, now: DateTime<Utc>,
            window_after: DateTime<Utc>) -> StoreResult<(i64, DateTime<Utc>)> {
            sql!(one &mut self.conn().await?,
                |row| super::sql::pair(row, "failures", "window_started_at"),
                "INSERT INTO login_failures (key, failures, window_started_at) \
                 VALUES ($1, 1, $2) \
                 ON CONFLICT (key) DO UPDATE SET \
                 failures = CASE WHEN login_failures.window_started_at > $3 \
                     THEN login_failures.failures + 1 ELSE 1 END, \
                 window_started_at = CASE WHEN login_failures.window_started_at > $3 \
                     THEN login_failures.window_started_at ELSE $2 END \
                 RETURNING failures, window_started_at",
                key, ts(now), ts(window_after))
        }

        async fn clear_login_failures(&self, key: &str) -> StoreResult<()> {
            sql!(execute &mut self.conn().await?,
                "DELETE FROM login_failures WHERE key = $1", key)?;
            Ok(())
        }

        /// Forgets windows that started before `before`.
        async fn delete_login_failures_before(&self, before: DateTime<Utc>) -> StoreResult<u64> {
            sql!(execute &mut self.conn().await?,
                "DELETE FROM login_failures WHERE window_started_at < $1", ts(before))
        }
    }
}
