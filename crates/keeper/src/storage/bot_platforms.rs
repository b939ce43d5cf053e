//! Bot platforms (DESIGN.md §11): the platforms whose bots ask zoomkeeper for tokens,
//! the log of their calls, the signed message ids seen (replays), and the project's
//! default ZAK user. The rules are in `crate::domain::bot_platforms`.

use chrono::{DateTime, Utc};

use super::events::write_connection_event;
use super::sql::{page_clause, ts, Row};
use super::{NewConnectionEvent, Page, PageRequest, Sealed, StoreResult};

text_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum Platform("bot platform") {
        Attendee = "attendee",
        Recall = "recall",
    }
}

#[derive(Debug, Clone)]
pub struct BotPlatformRow {
    /// `bpl_…`
    pub id: String,
    pub project_id: String,
    pub platform: Platform,
    pub name: String,
    /// What the platform signs with; `None` for a Recall workspace without one.
    pub verification_secret: Option<Sealed>,
    /// SHA-256 of the `token` query parameter that stands in for a missing secret.
    pub query_token_hash: Option<Vec<u8>>,
    pub zoom_oauth_app_id: Option<String>,
    pub zak_user_id: Option<String>,
    pub onbehalf_metadata_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One callback a platform made.
#[derive(Debug, Clone, PartialEq)]
pub struct BotPlatformCallRow {
    /// `bpc_…`
    pub id: String,
    pub platform_id: String,
    /// `attendee_zoom_tokens`, `recall_zak`, `recall_obf`, `recall_join_token`.
    pub endpoint: String,
    /// The HTTP status answered.
    pub status: i64,
    /// `minted`, `partial`, `none`, `refused`.
    pub outcome: String,
    pub bot_id: Option<String>,
    pub meeting_id: Option<String>,
    /// Names of the tokens handed out (never the tokens).
    pub minted: serde_json::Value,
    /// `[{token, code, message}]`.
    pub problems: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

const PLATFORM_COLUMNS: &str = "id, project_id, platform, name, verification_secret, \
     query_token_hash, zoom_oauth_app_id, zak_user_id, onbehalf_metadata_key, created_at, \
     updated_at";

const CALL_COLUMNS: &str =
    "id, platform_id, endpoint, status, outcome, bot_id, meeting_id, minted, problems, created_at";

fn platform_from_row(row: &impl Row) -> StoreResult<BotPlatformRow> {
    from_row!(row => BotPlatformRow {
        id, project_id, platform, name, verification_secret, query_token_hash,
        zoom_oauth_app_id, zak_user_id, onbehalf_metadata_key, created_at, updated_at,
    })
}

fn call_from_row(row: &impl Row) -> StoreResult<BotPlatformCallRow> {
    from_row!(row => BotPlatformCallRow {
        id, platform_id, endpoint, status, outcome, bot_id, meeting_id, minted, problems,
        created_at,
    })
}

store_trait! {
    pub trait BotPlatformStore {
        async fn insert_bot_platform(&self, row: &BotPlatformRow) -> StoreResult<()> {
            sql!(execute &mut self.conn().await?,
                &format!("INSERT INTO bot_platforms ({PLATFORM_COLUMNS}) \
                          VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"),
                &row.id, &row.project_id, row.platform.as_str(), &row.name,
                row.verification_secret.as_ref().map(|s| &s.0), &row.query_token_hash,
                &row.zoom_oauth_app_id, &row.zak_user_id, &row.onbehalf_metadata_key,
                ts(row.created_at), ts(row.updated_at))?;
            Ok(())
        }

        async fn get_bot_platform(&self, project_id: &str, id: &str)
            -> StoreResult<Option<BotPlatformRow>> {
            sql!(optional &mut self.conn().await?, platform_from_row,
                &format!("SELECT {PLATFORM_COLUMNS} FROM bot_platforms \
                          WHERE project_id = $1 AND id = $2"),
                project_id, id)
        }

        /// Unscoped: a callback knows only the platform id in its URL.
        async fn bot_platform_by_id(&self, id: &str) -> StoreResult<Option<BotPlatformRow>> {
            sql!(optional &mut self.conn().await?, platform_from_row,
                &format!("SELECT {PLATFORM_COLUMNS} FROM bot_platforms WHERE id = $1"), id)
        }

        async fn list_bot_platforms(&self, project_id: &str, page: &PageRequest)
            -> StoreResult<Page<BotPlatformRow>> {
            sql!(page &mut self.conn().await?, platform_from_row, page,
                &format!("SELECT {PLATFORM_COLUMNS} FROM bot_platforms WHERE project_id = $1{}",
                    page_clause(page, "created_at, id", 2)),
                project_id)
        }

        /// Writes every changeable field of `row` (found by project and id); false
        /// when it does not exist.
        async fn update_bot_platform(&self, row: &BotPlatformRow) -> StoreResult<bool> {
            let done = sql!(execute &mut self.conn().await?,
                "UPDATE bot_platforms SET name = $1, verification_secret = $2, \
                 query_token_hash = $3, zoom_oauth_app_id = $4, zak_user_id = $5, \
                 onbehalf_metadata_key = $6, updated_at = $7 \
                 WHERE project_id = $8 AND id = $9",
                &row.name, row.verification_secret.as_ref().map(|s| &s.0),
                &row.query_token_hash, &row.zoom_oauth_app_id, &row.zak_user_id,
                &row.onbehalf_metadata_key, ts(row.updated_at), &row.project_id, &row.id)?;
            Ok(done == 1)
        }

        /// Deletes the platform with its call log; false when it does not exist.
        async fn delete_bot_platform(&self, project_id: &str, id: &str) -> StoreResult<bool> {
            let done = sql!(execute &mut self.conn().await?,
                "DELETE FROM bot_platforms WHERE project_id = $1 AND id = $2",
                project_id, id)?;
            Ok(done == 1)
        }

        /// Logs a call and its events on the connections it used, in one
        /// transaction (an event for a connection deleted meanwhile is skipped).
        async fn insert_bot_platform_call(&self, call: &BotPlatformCallRow,
            events: &[(String, NewConnectionEvent)]) -> StoreResult<()> {
            let mut tx = self.begin().await?;
            sql!(execute &mut tx,
                &format!("INSERT INTO bot_platform_calls ({CALL_COLUMNS}) \
                          VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
                &call.id, &call.platform_id, &call.endpoint, call.status, &call.outcome,
                &call.bot_id, &call.meeting_id, &call.minted, &call.problems,
                ts(call.created_at))?;
            for (connection_id, event) in events {
                write_connection_event(&mut tx, connection_id, event, call.created_at).await?;
            }
            tx.commit().await
        }

        /// The platform's calls, newest first.
        async fn list_bot_platform_calls(&self, platform_id: &str, page: &PageRequest)
            -> StoreResult<Page<BotPlatformCallRow>> {
            sql!(page &mut self.conn().await?, call_from_row, page,
                &format!("SELECT {CALL_COLUMNS} FROM bot_platform_calls WHERE platform_id = $1{}",
                    page_clause(page, "created_at, id", 2)),
                platform_id)
        }

        /// Records that the platform signed message `message_id`; false when it was
        /// seen before (a replay), changing nothing. Safe across processes: the
        /// primary key decides.
        async fn first_use_of_message_id(&self, platform_id: &str, message_id: &str)
            -> StoreResult<bool> {
            let now = self.now().await?;
            let inserted = sql!(execute &mut self.conn().await?,
                "INSERT INTO bot_platform_message_ids (platform_id, message_id, seen_at) \
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                platform_id, message_id, ts(now))?;
            Ok(inserted == 1)
        }

        /// Forgets up to `limit` message ids seen before `before`; returns how many.
        async fn delete_bot_platform_message_ids_before(&self, before: DateTime<Utc>, limit: u32)
            -> StoreResult<u64> {
            sql!(execute &mut self.conn().await?,
                "DELETE FROM bot_platform_message_ids WHERE (platform_id, message_id) IN \
                 (SELECT platform_id, message_id FROM bot_platform_message_ids \
                  WHERE seen_at < $1 ORDER BY seen_at LIMIT $2)",
                ts(before), i64::from(limit))
        }

        /// Deletes up to `limit` calls logged before `before`; returns how many.
        async fn delete_bot_platform_calls_before(&self, before: DateTime<Utc>, limit: u32)
            -> StoreResult<u64> {
            sql!(execute &mut self.conn().await?,
                "DELETE FROM bot_platform_calls WHERE id IN \
                 (SELECT id FROM bot_platform_calls WHERE created_at < $1 \
                  ORDER BY created_at LIMIT $2)",
                ts(before), i64::from(limit))
        }

        /// The Zoom user whose connection mints ZAKs when a request names none.
        async fn project_default_zak_user(&self, project_id: &str) -> StoreResult<Option<String>> {
            let found: Option<Option<String>> = sql!(scalar_optional &mut self.conn().await?,
                "SELECT default_zak_user_id FROM projects WHERE id = $1", project_id)?;
            Ok(found.flatten())
        }

        async fn set_project_default_zak_user(&self, project_id: &str, user_id: Option<&str>)
            -> StoreResult<()> {
            sql!(execute &mut self.conn().await?,
                "UPDATE projects SET default_zak_user_id = $1 WHERE id = $2",
                user_id, project_id)?;
            Ok(())
        }
    }
}
