//! PostgreSQL implementation of [`super::Store`].
//!
//! Any number of zoomkeeper processes may share one database: everything that must
//! happen once (first-start bootstrap, deleting an app only when it has no
//! connections) is decided inside the database, under locks, never in memory.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::Row as _;

use super::connections::{
    duration_micros, event_cursor_id, failure_from_json, failure_to_json, parse_state,
    scopes_from_text, scopes_to_text, MEETING_TOKEN_MARGIN_MICROS,
};
use super::meetings::{
    meeting_cursor_key, parse_source, MeetingFilter, MeetingIndexChange, MeetingRow,
    ReceiptOutcome, WebhookVerification,
};
use super::sync::{CompletedSync, SyncCommit};
use super::{
    is_foreign_key_violation, map_unique_violation, sealed_column_index, truncate_to_micros,
    ApiKeyRow, AppKind, AppRecheckClaim, AppRow, AppSecretsUpdate, ConnectionEventRow,
    ConnectionFilter, ConnectionRow, ConnectionSettingsUpdate, ConnectionState, DeleteAppOutcome,
    Direction, DisconnectOutcome, EventPruning, FailureData, GrantReplacement, NewConnectionEvent,
    NewOutboxEvent, OutboxEventRow, OutboxSource, Page, PageRequest, ProjectRow, RefreshedTokens,
    Sealed, SealedField, Store, StoreError, StoreResult, SEALED_COLUMNS,
};

use super::webhooks::{
    delivery_payload, parse_delivery_status, triggers_from_json, DeliveryAttempt, DeliveryStatus,
    Dispatched, PreviousWebhookSecret, WebhookDeliveryRow, WebhookQueueDepths,
    WebhookSubscriptionRow, WebhookSubscriptionUpdate, WEBHOOK_SUBSCRIPTION_LIMIT,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

const MAX_CONNECTIONS: u32 = 16;
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// Advisory lock key serialising first-start bootstrap across processes
/// (arbitrary, fixed: "zk-boot" in ASCII).
const BOOTSTRAP_LOCK: i64 = 0x007a_6b2d_626f_6f74;

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://…` or `postgresql://…`). Does not migrate.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await?;
        Ok(PostgresStore { pool })
    }

    /// The pool, for tests and later storage modules that need raw access.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// `disconnect_connection` and `disconnect_connection_keeping_grant`.
    async fn disconnect(
        &self,
        id: &str,
        fence: Option<i64>,
        failure: &FailureData,
        event: &NewConnectionEvent,
        outbox: Option<&dyn OutboxSource>,
        keep_refresh_token: bool,
    ) -> StoreResult<DisconnectOutcome> {
        let erase_refresh_token = if keep_refresh_token {
            ""
        } else {
            "refresh_token = NULL, "
        };
        let mut tx = self.pool.begin().await?;
        // Concurrent callers queue on the row lock and then see `disconnected`.
        let row = sqlx::query(&format!(
            "UPDATE zoom_oauth_connections SET state = 'disconnected', \
             connection_failure_data = $1, {erase_refresh_token}access_token = NULL, \
             access_token_expires_at = NULL, lease_owner = NULL, lease_until = NULL, \
             fence = fence + 1, updated_at = now() \
             WHERE id = $2 AND state = 'connected' AND ($3::bigint IS NULL OR fence = $3) \
             RETURNING {CONNECTION_COLUMNS}"
        ))
        .bind(failure_to_json(failure))
        .bind(id)
        .bind(fence)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            let exists: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM zoom_oauth_connections WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            tx.rollback().await?;
            return Ok(match exists {
                Some(_) => DisconnectOutcome::Unchanged,
                None => DisconnectOutcome::NotFound,
            });
        };
        let row = connection_from_row(&row)?;
        write_connection_event(&mut tx, id, event).await?;
        if let Some(outbox) = outbox {
            write_outbox_event(&mut tx, &row.project_id, &outbox.event_for(&row)).await?;
        }
        tx.commit().await?;
        Ok(DisconnectOutcome::Disconnected(Box::new(row)))
    }
}

fn ts(at: DateTime<Utc>) -> DateTime<Utc> {
    truncate_to_micros(at)
}

fn project_from_row(row: &PgRow) -> StoreResult<ProjectRow> {
    Ok(ProjectRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        webhook_secret: Sealed(row.try_get("webhook_secret")?),
        created_at: row.try_get("created_at")?,
    })
}

fn api_key_from_row(row: &PgRow) -> StoreResult<ApiKeyRow> {
    Ok(ApiKeyRow {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        name: row.try_get("name")?,
        key_hash: row.try_get("key_hash")?,
        prefix: row.try_get("prefix")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        disabled_at: row.try_get("disabled_at")?,
    })
}

const APP_COLUMNS: &str = "a.id, a.project_id, a.client_id, a.client_secret, a.webhook_secret, \
     a.kind, a.created_at, a.updated_at, a.last_verified_webhook_received_at, \
     a.last_unverified_webhook_received_at, a.webhook_events_stale_since, \
     (SELECT COUNT(*) FROM zoom_oauth_connections c WHERE c.app_id = a.id) AS connection_count";

fn app_from_row(row: &PgRow) -> StoreResult<AppRow> {
    let kind: String = row.try_get("kind")?;
    Ok(AppRow {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        client_id: row.try_get("client_id")?,
        client_secret: Sealed(row.try_get("client_secret")?),
        webhook_secret: row
            .try_get::<Option<Vec<u8>>, _>("webhook_secret")?
            .map(Sealed),
        kind: AppKind::parse(&kind).ok_or_else(|| {
            StoreError::Database(sqlx::Error::Decode(
                format!("unknown app kind {kind:?}").into(),
            ))
        })?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        last_verified_webhook_received_at: row.try_get("last_verified_webhook_received_at")?,
        last_unverified_webhook_received_at: row.try_get("last_unverified_webhook_received_at")?,
        webhook_events_stale_since: row.try_get("webhook_events_stale_since")?,
        connection_count: row.try_get("connection_count")?,
    })
}

const INSERT_PROJECT: &str =
    "INSERT INTO projects (id, name, webhook_secret, created_at) VALUES ($1, $2, $3, $4)";
const INSERT_API_KEY: &str = "INSERT INTO api_keys \
     (id, project_id, name, key_hash, prefix, created_at, last_used_at, disabled_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

fn bind_project<'q>(
    project: &'q ProjectRow,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(INSERT_PROJECT)
        .bind(&project.id)
        .bind(&project.name)
        .bind(&project.webhook_secret.0)
        .bind(ts(project.created_at))
}

fn bind_api_key<'q>(
    key: &'q ApiKeyRow,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(INSERT_API_KEY)
        .bind(&key.id)
        .bind(&key.project_id)
        .bind(&key.name)
        .bind(&key.key_hash)
        .bind(&key.prefix)
        .bind(ts(key.created_at))
        .bind(key.last_used_at.map(ts))
        .bind(key.disabled_at.map(ts))
}

const CONNECTION_COLUMNS: &str = "id, project_id, app_id, user_id, account_id, email, pmi, \
     personal_meeting_url, state, connection_failure_data, metadata, deduplication_key, \
     is_local_recording_token_supported, is_onbehalf_token_supported, scopes, refresh_token, \
     access_token, access_token_expires_at, lease_owner, lease_until, fence, refresh_due_at, \
     last_attempted_sync_at, last_successful_sync_at, next_sync_at, \
     last_successful_token_refresh_at, created_at, updated_at";

fn connection_from_row(row: &PgRow) -> StoreResult<ConnectionRow> {
    let state: String = row.try_get("state")?;
    let scopes: String = row.try_get("scopes")?;
    Ok(ConnectionRow {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        app_id: row.try_get("app_id")?,
        user_id: row.try_get("user_id")?,
        account_id: row.try_get("account_id")?,
        email: row.try_get("email")?,
        pmi: row.try_get("pmi")?,
        personal_meeting_url: row.try_get("personal_meeting_url")?,
        state: parse_state(&state)?,
        connection_failure_data: row
            .try_get::<Option<serde_json::Value>, _>("connection_failure_data")?
            .map(failure_from_json)
            .transpose()?,
        metadata: row.try_get("metadata")?,
        deduplication_key: row.try_get("deduplication_key")?,
        is_local_recording_token_supported: row.try_get("is_local_recording_token_supported")?,
        is_onbehalf_token_supported: row.try_get("is_onbehalf_token_supported")?,
        scopes: scopes_from_text(&scopes),
        refresh_token: row
            .try_get::<Option<Vec<u8>>, _>("refresh_token")?
            .map(Sealed),
        access_token: row
            .try_get::<Option<Vec<u8>>, _>("access_token")?
            .map(Sealed),
        access_token_expires_at: row.try_get("access_token_expires_at")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_until: row.try_get("lease_until")?,
        fence: row.try_get("fence")?,
        refresh_due_at: row.try_get("refresh_due_at")?,
        last_attempted_sync_at: row.try_get("last_attempted_sync_at")?,
        last_successful_sync_at: row.try_get("last_successful_sync_at")?,
        next_sync_at: row.try_get("next_sync_at")?,
        last_successful_token_refresh_at: row.try_get("last_successful_token_refresh_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn connection_event_from_row(row: &PgRow) -> StoreResult<ConnectionEventRow> {
    Ok(ConnectionEventRow {
        id: row.try_get("id")?,
        connection_id: row.try_get("connection_id")?,
        kind: row.try_get("kind")?,
        message: row.try_get("message")?,
        data: row.try_get("data")?,
        created_at: row.try_get("created_at")?,
    })
}

fn outbox_event_from_row(row: &PgRow) -> StoreResult<OutboxEventRow> {
    Ok(OutboxEventRow {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        trigger: row.try_get("trigger")?,
        payload: row.try_get("payload")?,
        created_at: row.try_get("created_at")?,
        dispatched_at: row.try_get("dispatched_at")?,
    })
}

/// Appends `event` to connection `connection_id`'s log; false when it does not exist.
async fn write_connection_event(
    conn: &mut PgConnection,
    connection_id: &str,
    event: &NewConnectionEvent,
) -> StoreResult<bool> {
    let written = sqlx::query(
        "INSERT INTO connection_events (project_id, connection_id, kind, message, data, \
         created_at) SELECT project_id, id, $1, $2, $3, clock_timestamp() \
         FROM zoom_oauth_connections WHERE id = $4",
    )
    .bind(&event.kind)
    .bind(&event.message)
    .bind(event.data.as_ref())
    .bind(connection_id)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(written == 1)
}

async fn write_outbox_event(
    conn: &mut PgConnection,
    project_id: &str,
    outbox: &NewOutboxEvent,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO outbox_events (id, project_id, \"trigger\", payload, created_at) \
         VALUES ($1, $2, $3, $4, clock_timestamp())",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(project_id)
    .bind(&outbox.trigger)
    .bind(&outbox.payload)
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn migrate(&self) -> StoreResult<()> {
        // sqlx holds an advisory lock while migrating: concurrent starts are safe.
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn now(&self) -> StoreResult<DateTime<Utc>> {
        Ok(sqlx::query_scalar("SELECT clock_timestamp()")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn insert_project(&self, project: &ProjectRow) -> StoreResult<()> {
        bind_project(project)
            .execute(&self.pool)
            .await
            .map_err(map_unique_violation)?;
        Ok(())
    }

    async fn project_by_id(&self, id: &str) -> StoreResult<Option<ProjectRow>> {
        sqlx::query("SELECT id, name, webhook_secret, created_at FROM projects WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| project_from_row(&r))
            .transpose()
    }

    async fn project_by_name(&self, name: &str) -> StoreResult<Option<ProjectRow>> {
        sqlx::query("SELECT id, name, webhook_secret, created_at FROM projects WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| project_from_row(&r))
            .transpose()
    }

    async fn count_projects(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM projects")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn bootstrap_first_project(
        &self,
        project: &ProjectRow,
        key: &ApiKeyRow,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        // Held until commit; the check below runs after any earlier bootstrap
        // committed, and (read committed) sees its project.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(BOOTSTRAP_LOCK)
            .execute(&mut *tx)
            .await?;
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM projects)")
            .fetch_one(&mut *tx)
            .await?;
        if exists {
            tx.rollback().await?;
            return Ok(false);
        }
        bind_project(project)
            .execute(&mut *tx)
            .await
            .map_err(map_unique_violation)?;
        bind_api_key(key)
            .execute(&mut *tx)
            .await
            .map_err(map_unique_violation)?;
        tx.commit().await?;
        Ok(true)
    }

    async fn insert_api_key(&self, key: &ApiKeyRow) -> StoreResult<()> {
        bind_api_key(key)
            .execute(&self.pool)
            .await
            .map_err(map_unique_violation)?;
        Ok(())
    }

    async fn api_key_by_hash(&self, key_hash: &[u8]) -> StoreResult<Option<ApiKeyRow>> {
        sqlx::query(
            "SELECT id, project_id, name, key_hash, prefix, created_at, last_used_at, disabled_at \
             FROM api_keys WHERE key_hash = $1",
        )
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| api_key_from_row(&r))
        .transpose()
    }

    async fn touch_api_key(&self, id: &str, at: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query(
            "UPDATE api_keys SET last_used_at = $1 \
             WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
        )
        .bind(ts(at))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn insert_app(&self, app: &AppRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO zoom_oauth_apps (id, project_id, client_id, client_secret, \
             webhook_secret, kind, created_at, updated_at, last_verified_webhook_received_at, \
             last_unverified_webhook_received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&app.id)
        .bind(&app.project_id)
        .bind(&app.client_id)
        .bind(&app.client_secret.0)
        .bind(app.webhook_secret.as_ref().map(|s| &s.0))
        .bind(app.kind.as_str())
        .bind(ts(app.created_at))
        .bind(ts(app.updated_at))
        .bind(app.last_verified_webhook_received_at.map(ts))
        .bind(app.last_unverified_webhook_received_at.map(ts))
        .execute(&self.pool)
        .await
        .map_err(map_unique_violation)?;
        Ok(())
    }

    async fn get_app(&self, project_id: &str, id: &str) -> StoreResult<Option<AppRow>> {
        sqlx::query(&format!(
            "SELECT {APP_COLUMNS} FROM zoom_oauth_apps a WHERE a.project_id = $1 AND a.id = $2"
        ))
        .bind(project_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| app_from_row(&r))
        .transpose()
    }

    async fn list_apps(&self, project_id: &str, page: &PageRequest) -> StoreResult<Page<AppRow>> {
        let fetch = i64::from(page.limit) + 1;
        let rows = match &page.cursor {
            None => {
                sqlx::query(&format!(
                    "SELECT {APP_COLUMNS} FROM zoom_oauth_apps a WHERE a.project_id = $1 \
                     ORDER BY a.created_at DESC, a.id DESC LIMIT $2"
                ))
                .bind(project_id)
                .bind(fetch)
                .fetch_all(&self.pool)
                .await?
            }
            Some(cursor) => {
                let (cmp, order) = match cursor.direction {
                    Direction::Older => ("<", "DESC"),
                    Direction::Newer => (">", "ASC"),
                };
                sqlx::query(&format!(
                    "SELECT {APP_COLUMNS} FROM zoom_oauth_apps a WHERE a.project_id = $1 \
                     AND (a.created_at, a.id) {cmp} ($2, $3) \
                     ORDER BY a.created_at {order}, a.id {order} LIMIT $4"
                ))
                .bind(project_id)
                .bind(ts(cursor.created_at))
                .bind(&cursor.id)
                .bind(fetch)
                .fetch_all(&self.pool)
                .await?
            }
        };
        let mut items = rows
            .iter()
            .map(app_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        let has_more = items.len() > page.limit as usize;
        items.truncate(page.limit as usize);
        if matches!(&page.cursor, Some(c) if c.direction == Direction::Newer) {
            items.reverse();
        }
        Ok(Page { items, has_more })
    }

    async fn count_apps(&self, project_id: &str) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM zoom_oauth_apps WHERE project_id = $1")
                .bind(project_id)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn update_app_secrets(
        &self,
        project_id: &str,
        id: &str,
        update: &AppSecretsUpdate,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<AppRow>> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE zoom_oauth_apps SET \
             client_secret = CASE WHEN $1 THEN $2 ELSE client_secret END, \
             webhook_secret = CASE WHEN $3 THEN $4 ELSE webhook_secret END, \
             recheck_due_at = CASE WHEN $1 THEN clock_timestamp() ELSE recheck_due_at END, \
             updated_at = $5 \
             WHERE project_id = $6 AND id = $7",
        )
        .bind(update.client_secret.is_some())
        .bind(update.client_secret.as_ref().map(|s| &s.0))
        .bind(update.webhook_secret.is_some())
        .bind(
            update
                .webhook_secret
                .as_ref()
                .and_then(|w| w.as_ref())
                .map(|s| &s.0),
        )
        .bind(ts(at))
        .bind(project_id)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        let row = sqlx::query(&format!(
            "SELECT {APP_COLUMNS} FROM zoom_oauth_apps a WHERE a.project_id = $1 AND a.id = $2"
        ))
        .bind(project_id)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        app_from_row(&row).map(Some)
    }

    async fn delete_app(&self, project_id: &str, id: &str) -> StoreResult<DeleteAppOutcome> {
        let mut tx = self.pool.begin().await?;
        // The row lock conflicts with the key-share lock a connection insert takes on
        // its app, so no connection can appear between the count and the delete.
        let found: Option<String> = sqlx::query_scalar(
            "SELECT id FROM zoom_oauth_apps WHERE project_id = $1 AND id = $2 FOR UPDATE",
        )
        .bind(project_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        if found.is_none() {
            tx.rollback().await?;
            return Ok(DeleteAppOutcome::NotFound);
        }
        let has_connections: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM zoom_oauth_connections WHERE app_id = $1)",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        if has_connections {
            tx.rollback().await?;
            return Ok(DeleteAppOutcome::HasConnections);
        }
        let deleted = sqlx::query("DELETE FROM zoom_oauth_apps WHERE project_id = $1 AND id = $2")
            .bind(project_id)
            .bind(id)
            .execute(&mut *tx)
            .await;
        match deleted {
            Ok(_) => {
                tx.commit().await?;
                Ok(DeleteAppOutcome::Deleted)
            }
            Err(e) if is_foreign_key_violation(&e) => Ok(DeleteAppOutcome::HasConnections),
            Err(e) => Err(e.into()),
        }
    }

    async fn insert_connection(
        &self,
        row: &ConnectionRow,
        event: &NewConnectionEvent,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!(
            "INSERT INTO zoom_oauth_connections ({CONNECTION_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
             $19, $20, $21, $22, $23, $24, $25, $26, $27, $28)"
        ))
        .bind(&row.id)
        .bind(&row.project_id)
        .bind(&row.app_id)
        .bind(&row.user_id)
        .bind(&row.account_id)
        .bind(&row.email)
        .bind(&row.pmi)
        .bind(&row.personal_meeting_url)
        .bind(row.state.as_str())
        .bind(row.connection_failure_data.as_ref().map(failure_to_json))
        .bind(row.metadata.as_ref())
        .bind(&row.deduplication_key)
        .bind(row.is_local_recording_token_supported)
        .bind(row.is_onbehalf_token_supported)
        .bind(scopes_to_text(&row.scopes))
        .bind(row.refresh_token.as_ref().map(|s| &s.0))
        .bind(row.access_token.as_ref().map(|s| &s.0))
        .bind(row.access_token_expires_at.map(ts))
        .bind(&row.lease_owner)
        .bind(row.lease_until.map(ts))
        .bind(row.fence)
        .bind(row.refresh_due_at.map(ts))
        .bind(row.last_attempted_sync_at.map(ts))
        .bind(row.last_successful_sync_at.map(ts))
        .bind(row.next_sync_at.map(ts))
        .bind(row.last_successful_token_refresh_at.map(ts))
        .bind(ts(row.created_at))
        .bind(ts(row.updated_at))
        .execute(&mut *tx)
        .await
        .map_err(map_unique_violation)?;
        write_connection_event(&mut tx, &row.id, event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_connection(
        &self,
        project_id: &str,
        id: &str,
    ) -> StoreResult<Option<ConnectionRow>> {
        sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM zoom_oauth_connections \
             WHERE project_id = $1 AND id = $2"
        ))
        .bind(project_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| connection_from_row(&r))
        .transpose()
    }

    async fn connection_by_id(&self, id: &str) -> StoreResult<Option<ConnectionRow>> {
        sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM zoom_oauth_connections WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| connection_from_row(&r))
        .transpose()
    }

    async fn connection_by_user(
        &self,
        app_id: &str,
        user_id: &str,
    ) -> StoreResult<Option<ConnectionRow>> {
        sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM zoom_oauth_connections \
             WHERE app_id = $1 AND user_id = $2"
        ))
        .bind(app_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| connection_from_row(&r))
        .transpose()
    }

    async fn connection_by_deduplication_key(
        &self,
        app_id: &str,
        key: &str,
    ) -> StoreResult<Option<ConnectionRow>> {
        sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM zoom_oauth_connections \
             WHERE app_id = $1 AND deduplication_key = $2"
        ))
        .bind(app_id)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| connection_from_row(&r))
        .transpose()
    }

    async fn list_connections(
        &self,
        project_id: &str,
        filter: &ConnectionFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<ConnectionRow>> {
        let fetch = i64::from(page.limit) + 1;
        let (cmp, order) = match page.cursor.as_ref().map(|c| c.direction) {
            None | Some(Direction::Older) => ("<", "DESC"),
            Some(Direction::Newer) => (">", "ASC"),
        };
        let rows = sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM zoom_oauth_connections WHERE project_id = $1 \
             AND ($2::text IS NULL OR app_id = $2) AND ($3::text IS NULL OR user_id = $3) \
             AND ($4::text IS NULL OR account_id = $4) AND ($5::text IS NULL OR state = $5) \
             AND ($6::text IS NULL OR deduplication_key = $6) \
             AND ($7::timestamptz IS NULL OR (created_at, id) {cmp} ($7, $8::text)) \
             ORDER BY created_at {order}, id {order} LIMIT $9"
        ))
        .bind(project_id)
        .bind(&filter.app_id)
        .bind(&filter.user_id)
        .bind(&filter.account_id)
        .bind(filter.state.map(ConnectionState::as_str))
        .bind(&filter.deduplication_key)
        .bind(page.cursor.as_ref().map(|c| ts(c.created_at)))
        .bind(page.cursor.as_ref().map(|c| c.id.as_str()))
        .bind(fetch)
        .fetch_all(&self.pool)
        .await?;
        let mut items = rows
            .iter()
            .map(connection_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        let has_more = items.len() > page.limit as usize;
        items.truncate(page.limit as usize);
        if matches!(&page.cursor, Some(c) if c.direction == Direction::Newer) {
            items.reverse();
        }
        Ok(Page { items, has_more })
    }

    async fn replace_connection_grant(
        &self,
        project_id: &str,
        id: &str,
        grant: &GrantReplacement,
        event: &NewConnectionEvent,
        outbox: Option<&dyn OutboxSource>,
    ) -> StoreResult<Option<ConnectionRow>> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "UPDATE zoom_oauth_connections SET user_id = $1, account_id = $2, email = $3, \
             pmi = $4, personal_meeting_url = $5, metadata = $6, deduplication_key = $7, \
             is_local_recording_token_supported = $8, is_onbehalf_token_supported = $9, \
             scopes = $10, refresh_token = $11, access_token = $12, \
             access_token_expires_at = $13, refresh_due_at = $14, \
             next_sync_at = CASE WHEN $19 THEN next_sync_at ELSE $15 END, \
             state = CASE WHEN $19 THEN state ELSE 'connected' END, \
             connection_failure_data = CASE WHEN $19 THEN connection_failure_data ELSE NULL END, \
             lease_owner = NULL, lease_until = NULL, fence = fence + 1, \
             last_attempted_sync_at = CASE WHEN $16 THEN NULL ELSE last_attempted_sync_at END, \
             last_successful_sync_at = CASE WHEN $16 THEN NULL ELSE last_successful_sync_at END, \
             updated_at = now() \
             WHERE project_id = $17 AND id = $18 AND ($20::bigint IS NULL OR fence = $20) \
             RETURNING {CONNECTION_COLUMNS}"
        ))
        .bind(&grant.user_id)
        .bind(&grant.account_id)
        .bind(&grant.email)
        .bind(&grant.pmi)
        .bind(&grant.personal_meeting_url)
        .bind(grant.metadata.as_ref())
        .bind(&grant.deduplication_key)
        .bind(grant.is_local_recording_token_supported)
        .bind(grant.is_onbehalf_token_supported)
        .bind(scopes_to_text(&grant.scopes))
        .bind(&grant.refresh_token.0)
        .bind(&grant.access_token.0)
        .bind(ts(grant.access_token_expires_at))
        .bind(ts(grant.refresh_due_at))
        .bind(grant.next_sync_at.map(ts))
        .bind(grant.clear_meetings)
        .bind(project_id)
        .bind(id)
        .bind(grant.keep_state)
        .bind(grant.expected_fence)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_unique_violation)?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        let row = connection_from_row(&row)?;
        if grant.clear_meetings {
            sqlx::query("DELETE FROM zoom_meetings WHERE connection_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        write_connection_event(&mut tx, id, event).await?;
        if let Some(outbox) = outbox {
            write_outbox_event(&mut tx, &row.project_id, &outbox.event_for(&row)).await?;
        }
        tx.commit().await?;
        Ok(Some(row))
    }

    async fn update_connection_settings(
        &self,
        project_id: &str,
        id: &str,
        update: &ConnectionSettingsUpdate,
    ) -> StoreResult<Option<ConnectionRow>> {
        sqlx::query(&format!(
            "UPDATE zoom_oauth_connections SET \
             metadata = CASE WHEN $1 THEN $2::jsonb ELSE metadata END, \
             deduplication_key = CASE WHEN $3 THEN $4::text ELSE deduplication_key END, \
             is_local_recording_token_supported = \
                 COALESCE($5, is_local_recording_token_supported), \
             is_onbehalf_token_supported = COALESCE($6, is_onbehalf_token_supported), \
             updated_at = now() \
             WHERE project_id = $7 AND id = $8 RETURNING {CONNECTION_COLUMNS}"
        ))
        .bind(update.metadata.is_some())
        .bind(update.metadata.as_ref().and_then(|m| m.as_ref()))
        .bind(update.deduplication_key.is_some())
        .bind(update.deduplication_key.as_ref().and_then(|k| k.as_deref()))
        .bind(update.is_local_recording_token_supported)
        .bind(update.is_onbehalf_token_supported)
        .bind(project_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_unique_violation)?
        .map(|r| connection_from_row(&r))
        .transpose()
    }

    async fn schedule_connection_sync(&self, project_id: &str, id: &str) -> StoreResult<bool> {
        let changed = sqlx::query(
            "UPDATE zoom_oauth_connections SET next_sync_at = now() WHERE project_id = $1 AND id = $2",
        )
        .bind(project_id)
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(changed == 1)
    }

    async fn delete_connection(
        &self,
        project_id: &str,
        id: &str,
        fence: Option<i64>,
    ) -> StoreResult<Option<ConnectionRow>> {
        sqlx::query(&format!(
            "DELETE FROM zoom_oauth_connections WHERE project_id = $1 AND id = $2 \
             AND ($3::bigint IS NULL OR fence = $3) RETURNING {CONNECTION_COLUMNS}"
        ))
        .bind(project_id)
        .bind(id)
        .bind(fence)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| connection_from_row(&r))
        .transpose()
    }

    async fn claim_connection_lease(
        &self,
        id: &str,
        owner: &str,
        lease_for: Duration,
    ) -> StoreResult<Option<ConnectionRow>> {
        // clock_timestamp(), not now(): a claim that waited on a row lock must not
        // date its lease from before the wait.
        sqlx::query(&format!(
            "UPDATE zoom_oauth_connections SET lease_owner = $1, \
             lease_until = clock_timestamp() + $2::float8 * interval '1 microsecond', \
             fence = fence + 1 \
             WHERE id = $3 AND state = 'connected' \
             AND (lease_until IS NULL OR lease_until < clock_timestamp()) \
             RETURNING {CONNECTION_COLUMNS}"
        ))
        .bind(owner)
        .bind(duration_micros(lease_for) as f64)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| connection_from_row(&r))
        .transpose()
    }

    async fn claim_connection_lease_any_state(
        &self,
        id: &str,
        owner: &str,
        lease_for: Duration,
    ) -> StoreResult<Option<ConnectionRow>> {
        sqlx::query(&format!(
            "UPDATE zoom_oauth_connections SET lease_owner = $1, \
             lease_until = clock_timestamp() + $2::float8 * interval '1 microsecond', \
             fence = fence + 1 \
             WHERE id = $3 AND (lease_until IS NULL OR lease_until < clock_timestamp()) \
             RETURNING {CONNECTION_COLUMNS}"
        ))
        .bind(owner)
        .bind(duration_micros(lease_for) as f64)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| connection_from_row(&r))
        .transpose()
    }

    async fn renew_connection_lease(
        &self,
        id: &str,
        fence: i64,
        lease_for: Duration,
    ) -> StoreResult<bool> {
        let renewed = sqlx::query(
            "UPDATE zoom_oauth_connections \
             SET lease_until = clock_timestamp() + $1::float8 * interval '1 microsecond' \
             WHERE id = $2 AND fence = $3 AND lease_owner IS NOT NULL",
        )
        .bind(duration_micros(lease_for) as f64)
        .bind(id)
        .bind(fence)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(renewed == 1)
    }

    async fn claim_due_refreshes(
        &self,
        owner: &str,
        limit: u32,
        lease_for: Duration,
        ahead_of_meetings: Duration,
    ) -> StoreResult<Vec<ConnectionRow>> {
        // NULL refresh_due_at counts as due: a connection nobody scheduled must still
        // be refreshed (DESIGN.md §5, at least every 30 days).
        let rows = sqlx::query(&format!(
            "WITH due AS MATERIALIZED (\
                 SELECT c.id FROM zoom_oauth_connections c \
                 WHERE c.state = 'connected' \
                 AND (c.lease_until IS NULL OR c.lease_until < clock_timestamp()) \
                 AND (c.refresh_due_at IS NULL OR c.refresh_due_at <= clock_timestamp() \
                      OR EXISTS (\
                     SELECT 1 FROM zoom_meetings m WHERE m.connection_id = c.id \
                     AND m.start_time >= clock_timestamp() \
                     AND m.start_time <= clock_timestamp() \
                         + $1::float8 * interval '1 microsecond' \
                     AND (c.access_token_expires_at IS NULL \
                          OR c.access_token_expires_at \
                             < m.start_time + $2::float8 * interval '1 microsecond'))) \
                 ORDER BY c.refresh_due_at NULLS FIRST LIMIT $3 \
                 FOR UPDATE OF c SKIP LOCKED) \
             UPDATE zoom_oauth_connections z SET lease_owner = $4, \
             lease_until = clock_timestamp() + $5::float8 * interval '1 microsecond', \
             fence = z.fence + 1 \
             FROM due WHERE z.id = due.id \
             RETURNING {}",
            CONNECTION_COLUMNS
                .split(", ")
                .map(|c| format!("z.{}", c.trim()))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .bind(duration_micros(ahead_of_meetings) as f64)
        .bind(MEETING_TOKEN_MARGIN_MICROS as f64)
        .bind(i64::from(limit))
        .bind(owner)
        .bind(duration_micros(lease_for) as f64)
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = rows
            .iter()
            .map(connection_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        // None (never scheduled) first, like the claim's ORDER BY.
        claimed.sort_by_key(|c| c.refresh_due_at);
        Ok(claimed)
    }

    async fn store_refreshed_tokens(
        &self,
        id: &str,
        fence: i64,
        tokens: &RefreshedTokens,
        event: Option<&NewConnectionEvent>,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let written = sqlx::query(
            "UPDATE zoom_oauth_connections SET refresh_token = $1, access_token = $2, \
             access_token_expires_at = $3, refresh_due_at = $4, \
             scopes = COALESCE($5, scopes), last_successful_token_refresh_at = now(), \
             lease_owner = NULL, lease_until = NULL, updated_at = now() \
             WHERE id = $6 AND fence = $7",
        )
        .bind(&tokens.refresh_token.0)
        .bind(&tokens.access_token.0)
        .bind(ts(tokens.access_token_expires_at))
        .bind(ts(tokens.refresh_due_at))
        .bind(tokens.scopes.as_deref().map(scopes_to_text))
        .bind(id)
        .bind(fence)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if written == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        if let Some(event) = event {
            write_connection_event(&mut tx, id, event).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn release_connection_lease(
        &self,
        id: &str,
        fence: i64,
        retry_at: Option<DateTime<Utc>>,
    ) -> StoreResult<bool> {
        let released = sqlx::query(
            "UPDATE zoom_oauth_connections SET lease_owner = NULL, lease_until = NULL, \
             refresh_due_at = COALESCE($1, refresh_due_at) WHERE id = $2 AND fence = $3",
        )
        .bind(retry_at.map(ts))
        .bind(id)
        .bind(fence)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(released == 1)
    }

    async fn disconnect_connection(
        &self,
        id: &str,
        fence: Option<i64>,
        failure: &FailureData,
        event: &NewConnectionEvent,
        outbox: Option<&dyn OutboxSource>,
    ) -> StoreResult<DisconnectOutcome> {
        self.disconnect(id, fence, failure, event, outbox, false)
            .await
    }

    async fn insert_connection_event(
        &self,
        connection_id: &str,
        event: &NewConnectionEvent,
    ) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await?;
        if write_connection_event(&mut conn, connection_id, event).await? {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    async fn list_connection_events(
        &self,
        project_id: &str,
        connection_id: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<ConnectionEventRow>> {
        let fetch = i64::from(page.limit) + 1;
        let (cmp, order) = match page.cursor.as_ref().map(|c| c.direction) {
            None | Some(Direction::Older) => ("<", "DESC"),
            Some(Direction::Newer) => (">", "ASC"),
        };
        let after = page.cursor.as_ref().map(event_cursor_id).transpose()?;
        let rows = sqlx::query(&format!(
            "SELECT id, connection_id, kind, message, data, created_at FROM connection_events \
             WHERE project_id = $1 AND connection_id = $2 \
             AND ($3::bigint IS NULL OR id {cmp} $3) \
             ORDER BY id {order} LIMIT $4"
        ))
        .bind(project_id)
        .bind(connection_id)
        .bind(after)
        .bind(fetch)
        .fetch_all(&self.pool)
        .await?;
        let mut items = rows
            .iter()
            .map(connection_event_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        let has_more = items.len() > page.limit as usize;
        items.truncate(page.limit as usize);
        if matches!(&page.cursor, Some(c) if c.direction == Direction::Newer) {
            items.reverse();
        }
        Ok(Page { items, has_more })
    }

    async fn list_outbox_events(
        &self,
        project_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<OutboxEventRow>> {
        let rows = sqlx::query(
            "SELECT id, project_id, \"trigger\", payload, created_at, dispatched_at \
             FROM outbox_events WHERE project_id = $1 \
             ORDER BY created_at DESC, id DESC LIMIT $2",
        )
        .bind(project_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(outbox_event_from_row).collect()
    }

    async fn sealed_fields(
        &self,
        after: Option<(&str, &str, &str)>,
        limit: u32,
    ) -> StoreResult<Vec<SealedField>> {
        let mut out = Vec::new();
        for (index, (table, column)) in SEALED_COLUMNS.iter().enumerate() {
            let after_row = match after {
                None => None,
                Some((t, c, r)) => match sealed_column_index(t, c) {
                    Some(i) if index < i => continue,
                    Some(i) if index == i => Some(r),
                    Some(_) => None,
                    None if (*table, *column) <= (t, c) => continue,
                    None => None,
                },
            };
            let remaining = i64::from(limit) - out.len() as i64;
            if remaining <= 0 {
                break;
            }
            let rows = sqlx::query(&format!(
                "SELECT id, {column} AS value FROM {table} \
                 WHERE {column} IS NOT NULL AND ($1::text IS NULL OR id > $1) \
                 ORDER BY id LIMIT $2"
            ))
            .bind(after_row)
            .bind(remaining)
            .fetch_all(&self.pool)
            .await?;
            for row in rows {
                out.push(SealedField {
                    table,
                    column,
                    row_id: row.try_get("id")?,
                    value: Sealed(row.try_get("value")?),
                });
            }
        }
        Ok(out)
    }

    async fn reseal_field(&self, field: &SealedField, new_value: &Sealed) -> StoreResult<bool> {
        let (table, column) = sealed_column_index(field.table, field.column)
            .map(|i| SEALED_COLUMNS[i])
            .ok_or_else(|| {
                StoreError::Database(sqlx::Error::InvalidArgument(format!(
                    "{}.{} is not a sealed column",
                    field.table, field.column
                )))
            })?;
        let updated = sqlx::query(&format!(
            "UPDATE {table} SET {column} = $1 WHERE id = $2 AND {column} = $3"
        ))
        .bind(&new_value.0)
        .bind(&field.row_id)
        .bind(&field.value.0)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    async fn app_by_id(&self, id: &str) -> StoreResult<Option<AppRow>> {
        sqlx::query(&format!(
            "SELECT {APP_COLUMNS_UNCOUNTED} FROM zoom_oauth_apps a WHERE a.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| app_from_row(&r))
        .transpose()
    }

    async fn record_app_webhook_received(
        &self,
        app_id: &str,
        which: WebhookVerification,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let column = webhook_timestamp_column(which);
        sqlx::query(&format!(
            "UPDATE zoom_oauth_apps SET {column} = GREATEST(COALESCE({column}, $1), $1) \
             WHERE id = $2"
        ))
        .bind(ts(at))
        .bind(app_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn flag_app_webhook_events_stale(
        &self,
        app_id: &str,
        since: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE zoom_oauth_apps SET webhook_events_stale_since = $1 \
             WHERE id = $2 AND webhook_events_stale_since IS NULL",
        )
        .bind(ts(since))
        .bind(app_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn clear_app_webhook_events_stale(&self, app_id: &str) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE zoom_oauth_apps SET webhook_events_stale_since = NULL \
             WHERE id = $1 AND webhook_events_stale_since IS NOT NULL",
        )
        .bind(app_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn connection_in_account(
        &self,
        app_id: &str,
        account_id: &str,
    ) -> StoreResult<Option<ConnectionRow>> {
        sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM zoom_oauth_connections \
             WHERE app_id = $1 AND account_id = $2 AND state = 'connected' \
             ORDER BY created_at, id LIMIT 1"
        ))
        .bind(app_id)
        .bind(account_id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| connection_from_row(&r))
        .transpose()
    }

    async fn record_webhook_receipt_and_apply(
        &self,
        app_id: &str,
        dedupe_key: &str,
        received_at: DateTime<Utc>,
        change: &MeetingIndexChange,
    ) -> StoreResult<ReceiptOutcome> {
        let mut tx = self.pool.begin().await?;
        // A concurrent delivery of the same event waits here on the key, then sees
        // the first one's receipt and changes nothing.
        let inserted = sqlx::query(
            "INSERT INTO zoom_webhook_receipts (app_id, dedupe_key, received_at) \
             VALUES ($1, $2, $3) ON CONFLICT (app_id, dedupe_key) DO NOTHING",
        )
        .bind(app_id)
        .bind(dedupe_key)
        .bind(ts(received_at))
        .execute(&mut *tx)
        .await
        .map_err(meeting_write_error)?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            return Ok(ReceiptOutcome::Duplicate);
        }
        apply_meeting_change_in(&mut tx, change).await?;
        tx.commit().await?;
        Ok(ReceiptOutcome::Applied)
    }

    async fn webhook_receipt_exists(&self, app_id: &str, dedupe_key: &str) -> StoreResult<bool> {
        let found: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM zoom_webhook_receipts WHERE app_id = $1 AND dedupe_key = $2",
        )
        .bind(app_id)
        .bind(dedupe_key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    async fn apply_meeting_change(&self, change: &MeetingIndexChange) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        apply_meeting_change_in(&mut tx, change).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn meeting_hosts(
        &self,
        project_id: &str,
        app_id: Option<&str>,
        meeting_id: &str,
    ) -> StoreResult<Vec<MeetingRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {MEETING_COLUMNS} FROM zoom_meetings \
             WHERE meeting_id = $1 AND project_id = $2 AND ($3::text IS NULL OR app_id = $3) \
             ORDER BY synced_at DESC, app_id DESC"
        ))
        .bind(meeting_id)
        .bind(project_id)
        .bind(app_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(meeting_from_row).collect()
    }

    async fn list_meetings(
        &self,
        project_id: &str,
        filter: &MeetingFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<MeetingRow>> {
        // Conditions are added only when given, so each filter can use its index.
        let mut query = sqlx::QueryBuilder::<sqlx::Postgres>::new(format!(
            "SELECT {MEETING_COLUMNS} FROM zoom_meetings WHERE project_id = "
        ));
        query.push_bind(project_id);
        if let Some(meeting_id) = &filter.meeting_id {
            query.push(" AND meeting_id = ").push_bind(meeting_id);
        }
        if let Some(connection_id) = &filter.connection_id {
            query.push(" AND connection_id = ").push_bind(connection_id);
        }
        let order = match &page.cursor {
            None => "DESC",
            Some(c) => {
                let (app_id, meeting_id) = meeting_cursor_key(c)?;
                let (cmp, order) = match c.direction {
                    Direction::Older => ("<", "DESC"),
                    Direction::Newer => (">", "ASC"),
                };
                query
                    .push(format!(" AND (synced_at, app_id, meeting_id) {cmp} ("))
                    .push_bind(ts(c.created_at))
                    .push(", ")
                    .push_bind(app_id)
                    .push(", ")
                    .push_bind(meeting_id)
                    .push(")");
                order
            }
        };
        query
            .push(format!(
                " ORDER BY synced_at {order}, app_id {order}, meeting_id {order} LIMIT "
            ))
            .push_bind(i64::from(page.limit) + 1);
        let rows = query.build().fetch_all(&self.pool).await?;
        let mut items = rows
            .iter()
            .map(meeting_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        let has_more = items.len() > page.limit as usize;
        items.truncate(page.limit as usize);
        if matches!(&page.cursor, Some(c) if c.direction == Direction::Newer) {
            items.reverse();
        }
        Ok(Page { items, has_more })
    }

    async fn delete_webhook_receipts_before(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<u64> {
        Ok(sqlx::query(
            "DELETE FROM zoom_webhook_receipts WHERE (app_id, dedupe_key) IN \
             (SELECT app_id, dedupe_key FROM zoom_webhook_receipts WHERE received_at < $1 \
              LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(ts(before))
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn delete_meetings_started_before(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<u64> {
        Ok(sqlx::query(
            "DELETE FROM zoom_meetings WHERE (app_id, meeting_id) IN \
             (SELECT app_id, meeting_id FROM zoom_meetings \
              WHERE start_time < $1 AND source <> 'pmi' LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(ts(before))
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn delete_finished_webhook_deliveries_before(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<u64> {
        // The locking subquery re-reads a row changed meanwhile (a resend makes it
        // pending again) and drops it if it no longer matches.
        Ok(sqlx::query(
            "DELETE FROM webhook_deliveries WHERE idempotency_key IN \
             (SELECT idempotency_key FROM webhook_deliveries \
              WHERE status <> 'pending' AND updated_at < $1 \
              LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(ts(before))
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn delete_dispatched_outbox_events_before(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<u64> {
        // NULL (not fanned out yet) is never `< $1`; rows the dispatcher holds are
        // skipped.
        Ok(sqlx::query(
            "DELETE FROM outbox_events WHERE id IN \
             (SELECT id FROM outbox_events WHERE dispatched_at < $1 \
              LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(ts(before))
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn disconnect_connection_keeping_grant(
        &self,
        id: &str,
        fence: Option<i64>,
        failure: &FailureData,
        event: &NewConnectionEvent,
        outbox: Option<&dyn OutboxSource>,
    ) -> StoreResult<DisconnectOutcome> {
        self.disconnect(id, fence, failure, event, outbox, true)
            .await
    }

    async fn claim_disconnected_connections(
        &self,
        app_id: &str,
        code: &str,
        after: Option<&str>,
        owner: &str,
        limit: u32,
        lease_for: Duration,
    ) -> StoreResult<Vec<ConnectionRow>> {
        let rows = sqlx::query(&format!(
            "WITH due AS MATERIALIZED (\
                 SELECT c.id FROM zoom_oauth_connections c \
                 WHERE c.app_id = $1 AND c.state = 'disconnected' \
                 AND c.refresh_token IS NOT NULL \
                 AND c.connection_failure_data ->> 'code' = $2 \
                 AND (c.lease_until IS NULL OR c.lease_until < clock_timestamp()) \
                 AND ($3::text IS NULL OR c.id > $3) \
                 ORDER BY c.id LIMIT $4 \
                 FOR UPDATE OF c SKIP LOCKED) \
             UPDATE zoom_oauth_connections z SET lease_owner = $5, \
             lease_until = clock_timestamp() + $6::float8 * interval '1 microsecond', \
             fence = z.fence + 1 \
             FROM due WHERE z.id = due.id \
             RETURNING {}",
            CONNECTION_COLUMNS
                .split(", ")
                .map(|c| format!("z.{}", c.trim()))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .bind(app_id)
        .bind(code)
        .bind(after)
        .bind(i64::from(limit))
        .bind(owner)
        .bind(duration_micros(lease_for) as f64)
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = rows
            .iter()
            .map(connection_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        claimed.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(claimed)
    }

    async fn reconnect_connection(
        &self,
        id: &str,
        fence: i64,
        tokens: &RefreshedTokens,
        event: &NewConnectionEvent,
        outbox: Option<&dyn OutboxSource>,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "UPDATE zoom_oauth_connections SET state = 'connected', \
             connection_failure_data = NULL, refresh_token = $1, access_token = $2, \
             access_token_expires_at = $3, refresh_due_at = $4, \
             scopes = COALESCE($5, scopes), last_successful_token_refresh_at = now(), \
             lease_owner = NULL, lease_until = NULL, updated_at = now() \
             WHERE id = $6 AND fence = $7 AND state = 'disconnected' \
             RETURNING {CONNECTION_COLUMNS}"
        ))
        .bind(&tokens.refresh_token.0)
        .bind(&tokens.access_token.0)
        .bind(ts(tokens.access_token_expires_at))
        .bind(ts(tokens.refresh_due_at))
        .bind(tokens.scopes.as_deref().map(scopes_to_text))
        .bind(id)
        .bind(fence)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(false);
        };
        let row = connection_from_row(&row)?;
        write_connection_event(&mut tx, id, event).await?;
        if let Some(outbox) = outbox {
            write_outbox_event(&mut tx, &row.project_id, &outbox.event_for(&row)).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn erase_disconnected_grant(
        &self,
        id: &str,
        fence: i64,
        failure: &FailureData,
        event: &NewConnectionEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let written = sqlx::query(
            "UPDATE zoom_oauth_connections SET connection_failure_data = $1, \
             refresh_token = NULL, access_token = NULL, access_token_expires_at = NULL, \
             lease_owner = NULL, lease_until = NULL, updated_at = now() \
             WHERE id = $2 AND fence = $3 AND state = 'disconnected'",
        )
        .bind(failure_to_json(failure))
        .bind(id)
        .bind(fence)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if written == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        write_connection_event(&mut tx, id, event).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn claim_app_recheck(
        &self,
        app_id: Option<&str>,
        lease_for: Duration,
    ) -> StoreResult<Option<AppRecheckClaim>> {
        let row = sqlx::query(
            "WITH due AS MATERIALIZED (\
                 SELECT id FROM zoom_oauth_apps \
                 WHERE recheck_due_at <= clock_timestamp() AND ($1::text IS NULL OR id = $1) \
                 ORDER BY recheck_due_at LIMIT 1 FOR UPDATE SKIP LOCKED) \
             UPDATE zoom_oauth_apps a \
             SET recheck_due_at = clock_timestamp() + $2::float8 * interval '1 microsecond' \
             FROM due WHERE a.id = due.id \
             RETURNING a.id, a.recheck_due_at",
        )
        .bind(app_id)
        .bind(duration_micros(lease_for) as f64)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(AppRecheckClaim {
                app_id: row.try_get("id")?,
                due_at: row.try_get("recheck_due_at")?,
            })
        })
        .transpose()
    }

    async fn renew_app_recheck(
        &self,
        claim: &AppRecheckClaim,
        lease_for: Duration,
    ) -> StoreResult<Option<AppRecheckClaim>> {
        let due_at: Option<DateTime<Utc>> = sqlx::query_scalar(
            "UPDATE zoom_oauth_apps \
             SET recheck_due_at = clock_timestamp() + $1::float8 * interval '1 microsecond' \
             WHERE id = $2 AND recheck_due_at = $3 RETURNING recheck_due_at",
        )
        .bind(duration_micros(lease_for) as f64)
        .bind(&claim.app_id)
        .bind(ts(claim.due_at))
        .fetch_optional(&self.pool)
        .await?;
        Ok(due_at.map(|due_at| AppRecheckClaim {
            app_id: claim.app_id.clone(),
            due_at,
        }))
    }

    async fn finish_app_recheck(
        &self,
        claim: &AppRecheckClaim,
        retry_in: Option<Duration>,
    ) -> StoreResult<bool> {
        let updated = sqlx::query(
            "UPDATE zoom_oauth_apps SET recheck_due_at = \
             clock_timestamp() + $1::float8 * interval '1 microsecond' \
             WHERE id = $2 AND recheck_due_at = $3",
        )
        .bind(retry_in.map(|d| duration_micros(d) as f64))
        .bind(&claim.app_id)
        .bind(ts(claim.due_at))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    async fn prune_connection_events(
        &self,
        after: Option<&str>,
        connections: u32,
        keep_newest: u32,
        kinds: &[&str],
    ) -> StoreResult<EventPruning> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM zoom_oauth_connections WHERE ($1::text IS NULL OR id > $1) \
             ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(connections))
        .fetch_all(&self.pool)
        .await?;
        let Some(last) = ids.last().cloned() else {
            return Ok(EventPruning::default());
        };
        let deleted = sqlx::query(
            "DELETE FROM connection_events WHERE id IN (\
                 SELECT id FROM (\
                     SELECT e.id, e.kind, ROW_NUMBER() OVER (\
                         PARTITION BY e.connection_id ORDER BY e.id DESC) AS newer \
                     FROM connection_events e WHERE e.connection_id = ANY($1)) ranked \
                 WHERE newer > $2 AND kind = ANY($3))",
        )
        .bind(&ids)
        .bind(i64::from(keep_newest))
        .bind(kinds)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(EventPruning {
            deleted,
            next_after: (ids.len() >= connections as usize).then_some(last),
        })
    }

    async fn claim_due_syncs(
        &self,
        limit: u32,
        claim_for: Duration,
    ) -> StoreResult<Vec<ConnectionRow>> {
        let rows = sqlx::query(&format!(
            "WITH due AS MATERIALIZED (\
                 SELECT c.id FROM zoom_oauth_connections c \
                 WHERE c.state = 'connected' AND c.is_local_recording_token_supported \
                 AND (c.next_sync_at IS NULL OR c.next_sync_at <= clock_timestamp()) \
                 AND (c.lease_until IS NULL OR c.lease_until < clock_timestamp()) \
                 ORDER BY c.next_sync_at NULLS FIRST LIMIT $1 \
                 FOR UPDATE OF c SKIP LOCKED) \
             UPDATE zoom_oauth_connections z \
             SET next_sync_at = date_trunc('microseconds', clock_timestamp()) \
                 + $2::float8 * interval '1 microsecond' \
             FROM due WHERE z.id = due.id \
             RETURNING {}",
            CONNECTION_COLUMNS
                .split(", ")
                .map(|c| format!("z.{}", c.trim()))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .bind(i64::from(limit))
        .bind(duration_micros(claim_for) as f64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(connection_from_row).collect()
    }

    async fn complete_meeting_sync(&self, done: &CompletedSync) -> StoreResult<SyncCommit> {
        let mut tx = self.pool.begin().await?;
        let at: DateTime<Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
            .fetch_one(&mut *tx)
            .await?;
        let at = ts(at);
        let owner = sqlx::query(
            "UPDATE zoom_oauth_connections SET last_attempted_sync_at = $1, \
             last_successful_sync_at = $1, next_sync_at = $2 \
             WHERE id = $3 AND next_sync_at = $4 AND state = 'connected' \
             RETURNING project_id, app_id",
        )
        .bind(at)
        .bind(ts(done.next_sync_at))
        .bind(&done.connection_id)
        .bind(ts(done.claim))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(owner) = owner else {
            tx.rollback().await?;
            return Ok(SyncCommit::LostClaim);
        };
        let project_id: String = owner.try_get("project_id")?;
        let app_id: String = owner.try_get("app_id")?;
        let (mut indexed, mut held_elsewhere) = (0, 0);
        for meeting in &done.meetings {
            // A pmi row is never taken; another connection's webhook row only when
            // Zoom named this connection's user as the host.
            let written = sqlx::query(
                "INSERT INTO zoom_meetings (project_id, app_id, meeting_id, connection_id, \
                 source, topic, start_time, synced_at) \
                 VALUES ($1, $2, $3, $4, 'sync', $5, $6, $7) \
                 ON CONFLICT (app_id, meeting_id) DO UPDATE SET \
                 connection_id = EXCLUDED.connection_id, source = 'sync', \
                 topic = EXCLUDED.topic, start_time = EXCLUDED.start_time, \
                 synced_at = EXCLUDED.synced_at \
                 WHERE zoom_meetings.source <> 'pmi' \
                 AND (zoom_meetings.connection_id = EXCLUDED.connection_id \
                      OR zoom_meetings.source = 'sync' OR $8)",
            )
            .bind(&project_id)
            .bind(&app_id)
            .bind(&meeting.meeting_id)
            .bind(&done.connection_id)
            .bind(&meeting.topic)
            .bind(meeting.start_time.map(ts))
            .bind(at)
            .bind(meeting.host_confirmed)
            .execute(&mut *tx)
            .await
            .map_err(meeting_write_error)?
            .rows_affected();
            if written == 0 {
                held_elsewhere += 1;
            } else {
                indexed += 1;
            }
        }
        let removed = sqlx::query(
            "DELETE FROM zoom_meetings WHERE connection_id = $1 AND source = 'sync' \
             AND synced_at <> $2",
        )
        .bind(&done.connection_id)
        .bind(at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if let Some(pmi) = &done.pmi {
            let change = MeetingIndexChange::ReplacePmi {
                row: MeetingRow {
                    project_id,
                    app_id,
                    meeting_id: pmi.clone(),
                    connection_id: done.connection_id.clone(),
                    source: super::MeetingSource::Pmi,
                    topic: None,
                    start_time: None,
                    synced_at: at,
                },
                personal_meeting_url: done.personal_meeting_url.clone(),
            };
            apply_meeting_change_in(&mut tx, &change).await?;
        }
        write_connection_event(&mut tx, &done.connection_id, &done.event).await?;
        tx.commit().await?;
        Ok(SyncCommit::Committed {
            indexed,
            held_elsewhere,
            removed,
        })
    }

    async fn reschedule_meeting_sync(
        &self,
        id: &str,
        claim: DateTime<Utc>,
        retry_at: DateTime<Utc>,
        attempted: bool,
        event: Option<&NewConnectionEvent>,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE zoom_oauth_connections SET next_sync_at = $1, \
             last_attempted_sync_at = CASE WHEN $2 THEN clock_timestamp() \
                                      ELSE last_attempted_sync_at END \
             WHERE id = $3 AND next_sync_at = $4",
        )
        .bind(ts(retry_at))
        .bind(attempted)
        .bind(id)
        .bind(ts(claim))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 1 {
            if let Some(event) = event {
                write_connection_event(&mut tx, id, event).await?;
            }
        }
        tx.commit().await?;
        Ok(updated == 1)
    }

    async fn connections_by_personal_link(
        &self,
        project_id: &str,
        app_id: Option<&str>,
        vanity: &str,
    ) -> StoreResult<Vec<ConnectionRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM zoom_oauth_connections \
             WHERE project_id = $1 AND ($2::text IS NULL OR app_id = $2) \
             AND (right(lower(personal_meeting_url), length($3)) = $3 \
                  OR strpos(lower(personal_meeting_url), $3 || '?') > 0) \
             ORDER BY state = 'connected' DESC, created_at DESC, id DESC LIMIT 20"
        ))
        .bind(project_id)
        .bind(app_id)
        .bind(format!("/my/{}", vanity.to_lowercase()))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(connection_from_row).collect()
    }

    // Outgoing webhooks (issue 6).

    async fn insert_webhook_subscription(
        &self,
        row: &WebhookSubscriptionRow,
        max_per_project: u32,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        // The project row's lock serialises concurrent creations for one project.
        sqlx::query("SELECT id FROM projects WHERE id = $1 FOR UPDATE")
            .bind(&row.project_id)
            .fetch_optional(&mut *tx)
            .await?;
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM webhook_subscriptions WHERE project_id = $1")
                .bind(&row.project_id)
                .fetch_one(&mut *tx)
                .await?;
        if count >= i64::from(max_per_project) {
            tx.rollback().await?;
            return Err(StoreError::Conflict {
                constraint: WEBHOOK_SUBSCRIPTION_LIMIT,
            });
        }
        sqlx::query(
            "INSERT INTO webhook_subscriptions \
             (id, project_id, url, triggers, is_active, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&row.id)
        .bind(&row.project_id)
        .bind(&row.url)
        .bind(serde_json::Value::from(row.triggers.clone()))
        .bind(row.is_active)
        .bind(truncate_to_micros(row.created_at))
        .bind(truncate_to_micros(row.updated_at))
        .execute(&mut *tx)
        .await
        .map_err(map_unique_violation)?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_webhook_subscription(
        &self,
        project_id: &str,
        id: &str,
    ) -> StoreResult<Option<WebhookSubscriptionRow>> {
        sqlx::query(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions \
             WHERE project_id = $1 AND id = $2"
        ))
        .bind(project_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| subscription_from_row(&r))
        .transpose()
    }

    async fn list_webhook_subscriptions(
        &self,
        project_id: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<WebhookSubscriptionRow>> {
        let fetch = i64::from(page.limit) + 1;
        let (cmp, order) = match page.cursor.as_ref().map(|c| c.direction) {
            None | Some(Direction::Older) => ("<", "DESC"),
            Some(Direction::Newer) => (">", "ASC"),
        };
        let rows = sqlx::query(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions WHERE project_id = $1 \
             AND ($2::timestamptz IS NULL OR (created_at, id) {cmp} ($2, $3)) \
             ORDER BY created_at {order}, id {order} LIMIT $4"
        ))
        .bind(project_id)
        .bind(page.cursor.as_ref().map(|c| c.created_at))
        .bind(page.cursor.as_ref().map(|c| c.id.as_str()).unwrap_or(""))
        .bind(fetch)
        .fetch_all(&self.pool)
        .await?;
        let items = rows
            .iter()
            .map(subscription_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(page_of(items, page))
    }

    async fn update_webhook_subscription(
        &self,
        project_id: &str,
        id: &str,
        update: &WebhookSubscriptionUpdate,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<WebhookSubscriptionRow>> {
        sqlx::query(&format!(
            "UPDATE webhook_subscriptions SET url = COALESCE($1, url), \
             triggers = COALESCE($2, triggers), is_active = COALESCE($3, is_active), \
             updated_at = $4 WHERE project_id = $5 AND id = $6 \
             RETURNING {SUBSCRIPTION_COLUMNS}"
        ))
        .bind(update.url.as_deref())
        .bind(
            update
                .triggers
                .as_ref()
                .map(|t| serde_json::Value::from(t.clone())),
        )
        .bind(update.is_active)
        .bind(truncate_to_micros(at))
        .bind(project_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| subscription_from_row(&r))
        .transpose()
    }

    async fn delete_webhook_subscription(&self, project_id: &str, id: &str) -> StoreResult<bool> {
        let deleted =
            sqlx::query("DELETE FROM webhook_subscriptions WHERE project_id = $1 AND id = $2")
                .bind(project_id)
                .bind(id)
                .execute(&self.pool)
                .await?
                .rows_affected();
        Ok(deleted == 1)
    }

    async fn previous_webhook_secret(
        &self,
        project_id: &str,
    ) -> StoreResult<Option<PreviousWebhookSecret>> {
        let row = sqlx::query(
            "SELECT previous_webhook_secret, previous_webhook_secret_until FROM projects \
             WHERE id = $1 AND previous_webhook_secret IS NOT NULL \
             AND previous_webhook_secret_until > clock_timestamp()",
        )
        .bind(project_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(PreviousWebhookSecret {
                secret: Sealed(r.try_get("previous_webhook_secret")?),
                until: r.try_get("previous_webhook_secret_until")?,
            })
        })
        .transpose()
    }

    async fn rotate_project_webhook_secret(
        &self,
        project_id: &str,
        current: &Sealed,
        new: &Sealed,
        previous: &Sealed,
        previous_until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let updated = sqlx::query(
            "UPDATE projects SET webhook_secret = $1, previous_webhook_secret = $2, \
             previous_webhook_secret_until = $3 WHERE id = $4 AND webhook_secret = $5",
        )
        .bind(&new.0)
        .bind(&previous.0)
        .bind(truncate_to_micros(previous_until))
        .bind(project_id)
        .bind(&current.0)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    async fn dispatch_outbox_events(&self, limit: u32) -> StoreResult<Dispatched> {
        let mut tx = self.pool.begin().await?;
        let events = sqlx::query(
            "SELECT id, project_id, \"trigger\", payload, created_at, dispatched_at \
             FROM outbox_events WHERE dispatched_at IS NULL \
             ORDER BY created_at, id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(outbox_event_from_row)
        .collect::<StoreResult<Vec<_>>>()?;
        let mut done = Dispatched::default();
        for event in &events {
            let subscriptions = sqlx::query(&format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions \
                 WHERE project_id = $1 AND is_active ORDER BY created_at, id"
            ))
            .bind(&event.project_id)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(subscription_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
            for subscription in subscriptions
                .iter()
                .filter(|s| s.triggers.contains(&event.trigger))
            {
                let key = uuid::Uuid::new_v4().to_string();
                sqlx::query(
                    "INSERT INTO webhook_deliveries (idempotency_key, project_id, \
                     subscription_id, \"trigger\", payload, status, attempt_count, \
                     next_attempt_at, responses, fence, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, 'pending', 0, clock_timestamp(), '[]', 0, \
                     clock_timestamp(), clock_timestamp())",
                )
                .bind(&key)
                .bind(&event.project_id)
                .bind(&subscription.id)
                .bind(&event.trigger)
                .bind(delivery_payload(&event.payload, &key))
                .execute(&mut *tx)
                .await?;
                done.deliveries += 1;
            }
            sqlx::query("UPDATE outbox_events SET dispatched_at = clock_timestamp() WHERE id = $1")
                .bind(&event.id)
                .execute(&mut *tx)
                .await?;
            done.events += 1;
        }
        tx.commit().await?;
        Ok(done)
    }

    async fn claim_due_webhook_deliveries(
        &self,
        owner: &str,
        limit: u32,
        lease_for: Duration,
    ) -> StoreResult<Vec<WebhookDeliveryRow>> {
        let rows = sqlx::query(&format!(
            "WITH due AS MATERIALIZED (\
                 SELECT idempotency_key FROM webhook_deliveries \
                 WHERE status = 'pending' AND next_attempt_at <= clock_timestamp() \
                 AND (lease_until IS NULL OR lease_until < clock_timestamp()) \
                 ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
             UPDATE webhook_deliveries d SET lease_owner = $2, \
             lease_until = clock_timestamp() + $3::float8 * interval '1 microsecond', \
             fence = d.fence + 1 \
             FROM due WHERE d.idempotency_key = due.idempotency_key \
             RETURNING {}",
            DELIVERY_COLUMNS
                .split(", ")
                .map(|c| format!("d.{}", c.trim()))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .bind(i64::from(limit))
        .bind(owner)
        .bind(duration_micros(lease_for) as f64)
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = rows
            .iter()
            .map(delivery_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        claimed.sort_by_key(|d| d.next_attempt_at);
        Ok(claimed)
    }

    async fn record_webhook_attempt(
        &self,
        idempotency_key: &str,
        fence: i64,
        attempt: &DeliveryAttempt,
    ) -> StoreResult<bool> {
        let retry_micros = match attempt.status {
            DeliveryStatus::Pending => {
                Some(duration_micros(attempt.retry_in.unwrap_or_default()) as f64)
            }
            _ => None,
        };
        let updated = sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, attempt_count = attempt_count + 1, \
             next_attempt_at = clock_timestamp() + $2::float8 * interval '1 microsecond', \
             last_attempt_at = clock_timestamp(), \
             succeeded_at = CASE WHEN $1 = 'success' THEN clock_timestamp() \
                                 ELSE succeeded_at END, \
             responses = $3, lease_owner = NULL, lease_until = NULL, \
             updated_at = clock_timestamp() \
             WHERE idempotency_key = $4 AND fence = $5",
        )
        .bind(attempt.status.as_str())
        .bind(retry_micros)
        .bind(&attempt.responses)
        .bind(idempotency_key)
        .bind(fence)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    async fn list_webhook_deliveries(
        &self,
        project_id: &str,
        subscription_id: &str,
        status: Option<DeliveryStatus>,
        page: &PageRequest,
    ) -> StoreResult<Page<WebhookDeliveryRow>> {
        let fetch = i64::from(page.limit) + 1;
        let (cmp, order) = match page.cursor.as_ref().map(|c| c.direction) {
            None | Some(Direction::Older) => ("<", "DESC"),
            Some(Direction::Newer) => (">", "ASC"),
        };
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
             WHERE project_id = $1 AND subscription_id = $2 \
             AND ($3::text IS NULL OR status = $3) \
             AND ($4::timestamptz IS NULL OR (created_at, idempotency_key) {cmp} ($4, $5)) \
             ORDER BY created_at {order}, idempotency_key {order} LIMIT $6"
        ))
        .bind(project_id)
        .bind(subscription_id)
        .bind(status.map(DeliveryStatus::as_str))
        .bind(page.cursor.as_ref().map(|c| c.created_at))
        .bind(page.cursor.as_ref().map(|c| c.id.as_str()).unwrap_or(""))
        .bind(fetch)
        .fetch_all(&self.pool)
        .await?;
        let items = rows
            .iter()
            .map(delivery_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(page_of(items, page))
    }

    async fn resend_webhook_delivery(
        &self,
        project_id: &str,
        idempotency_key: &str,
    ) -> StoreResult<bool> {
        let updated = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', \
             next_attempt_at = clock_timestamp(), lease_owner = NULL, lease_until = NULL, \
             fence = fence + 1, updated_at = clock_timestamp() \
             WHERE project_id = $1 AND idempotency_key = $2",
        )
        .bind(project_id)
        .bind(idempotency_key)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    async fn webhook_queue_depths(&self) -> StoreResult<WebhookQueueDepths> {
        let row = sqlx::query(
            "SELECT \
             (SELECT COUNT(*) FROM webhook_deliveries \
              WHERE status = 'pending' AND next_attempt_at <= clock_timestamp()) \
              AS deliveries_due, \
             (SELECT COUNT(*) FROM outbox_events WHERE dispatched_at IS NULL) \
              AS outbox_undispatched",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(WebhookQueueDepths {
            deliveries_due: row.try_get::<i64, _>("deliveries_due")?.max(0) as u64,
            outbox_undispatched: row.try_get::<i64, _>("outbox_undispatched")?.max(0) as u64,
        })
    }
}

// The meeting → host index (issue 5).

/// [`APP_COLUMNS`] without the connection count, which webhook ingress does not
/// need and which costs a scan of the app's connections.
const APP_COLUMNS_UNCOUNTED: &str = "a.id, a.project_id, a.client_id, a.client_secret, \
     a.webhook_secret, a.kind, a.created_at, a.updated_at, \
     a.last_verified_webhook_received_at, a.last_unverified_webhook_received_at, \
     a.webhook_events_stale_since, 0::bigint AS connection_count";

const MEETING_COLUMNS: &str =
    "project_id, app_id, meeting_id, connection_id, source, topic, start_time, synced_at";

fn webhook_timestamp_column(which: WebhookVerification) -> &'static str {
    match which {
        WebhookVerification::Verified => "last_verified_webhook_received_at",
        WebhookVerification::Unverified => "last_unverified_webhook_received_at",
    }
}

fn meeting_from_row(row: &PgRow) -> StoreResult<MeetingRow> {
    let source: String = row.try_get("source")?;
    Ok(MeetingRow {
        project_id: row.try_get("project_id")?,
        app_id: row.try_get("app_id")?,
        meeting_id: row.try_get("meeting_id")?,
        connection_id: row.try_get("connection_id")?,
        source: parse_source(&source)?,
        topic: row.try_get("topic")?,
        start_time: row.try_get("start_time")?,
        synced_at: row.try_get("synced_at")?,
    })
}

/// A vanished connection or app (foreign key) is `NotFound`.
fn meeting_write_error(e: sqlx::Error) -> StoreError {
    if is_foreign_key_violation(&e) {
        StoreError::NotFound
    } else {
        StoreError::Database(e)
    }
}

async fn upsert_meeting_in(conn: &mut PgConnection, row: &MeetingRow) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO zoom_meetings (project_id, app_id, meeting_id, connection_id, source, \
         topic, start_time, synced_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (app_id, meeting_id) DO UPDATE SET connection_id = EXCLUDED.connection_id, \
         source = EXCLUDED.source, topic = EXCLUDED.topic, start_time = EXCLUDED.start_time, \
         synced_at = EXCLUDED.synced_at \
         WHERE zoom_meetings.source <> 'pmi' OR EXCLUDED.source = 'pmi'",
    )
    .bind(&row.project_id)
    .bind(&row.app_id)
    .bind(&row.meeting_id)
    .bind(&row.connection_id)
    .bind(row.source.as_str())
    .bind(&row.topic)
    .bind(row.start_time.map(ts))
    .bind(ts(row.synced_at))
    .execute(conn)
    .await
    .map_err(meeting_write_error)?;
    Ok(())
}

async fn apply_meeting_change_in(
    conn: &mut PgConnection,
    change: &MeetingIndexChange,
) -> StoreResult<()> {
    match change {
        MeetingIndexChange::Upsert(row) => upsert_meeting_in(conn, row).await,
        MeetingIndexChange::UpsertIfHost {
            row,
            user_id,
            state,
        } => {
            // FOR SHARE: a rebind or disconnect waits for this transaction.
            sqlx::query(
                "SELECT 1 FROM zoom_oauth_connections \
                 WHERE id = $1 AND user_id = $2 AND state = $3 FOR SHARE",
            )
            .bind(&row.connection_id)
            .bind(user_id)
            .bind(state.as_str())
            .fetch_optional(&mut *conn)
            .await?
            .ok_or(StoreError::NotFound)?;
            upsert_meeting_in(conn, row).await
        }
        MeetingIndexChange::Delete { app_id, meeting_id } => {
            sqlx::query(
                "DELETE FROM zoom_meetings \
                 WHERE app_id = $1 AND meeting_id = $2 AND source <> 'pmi'",
            )
            .bind(app_id)
            .bind(meeting_id)
            .execute(conn)
            .await?;
            Ok(())
        }
        MeetingIndexChange::ReplacePmi {
            row,
            personal_meeting_url,
        } => {
            let updated = sqlx::query(
                "UPDATE zoom_oauth_connections SET pmi = $1, \
                 personal_meeting_url = COALESCE($2, personal_meeting_url), updated_at = $3 \
                 WHERE id = $4",
            )
            .bind(&row.meeting_id)
            .bind(personal_meeting_url)
            .bind(ts(row.synced_at))
            .bind(&row.connection_id)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if updated == 0 {
                return Err(StoreError::NotFound);
            }
            sqlx::query(
                "DELETE FROM zoom_meetings WHERE connection_id = $1 AND source = 'pmi' \
                 AND meeting_id <> $2",
            )
            .bind(&row.connection_id)
            .bind(&row.meeting_id)
            .execute(&mut *conn)
            .await?;
            upsert_meeting_in(conn, row).await
        }
        MeetingIndexChange::Nothing => Ok(()),
    }
}

// Outgoing webhooks (issue 6).

const SUBSCRIPTION_COLUMNS: &str =
    "id, project_id, url, triggers, is_active, created_at, updated_at";

fn subscription_from_row(row: &PgRow) -> StoreResult<WebhookSubscriptionRow> {
    Ok(WebhookSubscriptionRow {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        url: row.try_get("url")?,
        triggers: triggers_from_json(row.try_get("triggers")?)?,
        is_active: row.try_get("is_active")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

const DELIVERY_COLUMNS: &str = "idempotency_key, project_id, subscription_id, \"trigger\", \
     payload, status, attempt_count, next_attempt_at, last_attempt_at, succeeded_at, \
     responses, lease_owner, lease_until, fence, created_at, updated_at";

fn delivery_from_row(row: &PgRow) -> StoreResult<WebhookDeliveryRow> {
    let status: String = row.try_get("status")?;
    Ok(WebhookDeliveryRow {
        idempotency_key: row.try_get("idempotency_key")?,
        project_id: row.try_get("project_id")?,
        subscription_id: row.try_get("subscription_id")?,
        trigger: row.try_get("trigger")?,
        payload: row.try_get("payload")?,
        status: parse_delivery_status(&status)?,
        attempt_count: i64::from(row.try_get::<i32, _>("attempt_count")?),
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_attempt_at: row.try_get("last_attempt_at")?,
        succeeded_at: row.try_get("succeeded_at")?,
        responses: row.try_get("responses")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_until: row.try_get("lease_until")?,
        fence: row.try_get("fence")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// A page from rows fetched one past `page.limit` in the cursor's direction.
fn page_of<T>(mut items: Vec<T>, page: &PageRequest) -> Page<T> {
    let has_more = items.len() > page.limit as usize;
    items.truncate(page.limit as usize);
    if matches!(&page.cursor, Some(c) if c.direction == Direction::Newer) {
        items.reverse();
    }
    Page { items, has_more }
}
