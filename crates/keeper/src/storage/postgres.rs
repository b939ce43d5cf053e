//! PostgreSQL implementation of [`super::Store`].
//!
//! Any number of zoomkeeper processes may share one database: everything that must
//! happen once (first-start bootstrap, deleting an app only when it has no
//! connections) is decided inside the database, under locks, never in memory.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::Row as _;

use super::{
    is_foreign_key_violation, map_unique_violation, sealed_column_index, truncate_to_micros,
    ApiKeyRow, AppKind, AppRow, AppSecretsUpdate, ConnectionEventRow, ConnectionFilter,
    ConnectionRow, ConnectionSettingsUpdate, ConnectionState, DeleteAppOutcome, Direction,
    DisconnectOutcome, FailureData, GrantReplacement, NewConnectionEvent, NewOutboxEvent,
    OutboxEventRow, Page, PageRequest, ProjectRow, RefreshedTokens, Sealed, SealedField, Store,
    StoreError, StoreResult, SEALED_COLUMNS,
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
     a.last_unverified_webhook_received_at, \
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

fn not_implemented() -> StoreError {
    StoreError::Database(sqlx::Error::Protocol("not implemented yet".into()))
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
        _row: &ConnectionRow,
        _event: &NewConnectionEvent,
    ) -> StoreResult<()> {
        Err(not_implemented())
    }

    async fn get_connection(
        &self,
        _project_id: &str,
        _id: &str,
    ) -> StoreResult<Option<ConnectionRow>> {
        Err(not_implemented())
    }

    async fn connection_by_id(&self, _id: &str) -> StoreResult<Option<ConnectionRow>> {
        Err(not_implemented())
    }

    async fn connection_by_user(
        &self,
        _app_id: &str,
        _user_id: &str,
    ) -> StoreResult<Option<ConnectionRow>> {
        Err(not_implemented())
    }

    async fn connection_by_deduplication_key(
        &self,
        _app_id: &str,
        _key: &str,
    ) -> StoreResult<Option<ConnectionRow>> {
        Err(not_implemented())
    }

    async fn list_connections(
        &self,
        _project_id: &str,
        _filter: &ConnectionFilter,
        _page: &PageRequest,
    ) -> StoreResult<Page<ConnectionRow>> {
        Err(not_implemented())
    }

    async fn replace_connection_grant(
        &self,
        _project_id: &str,
        _id: &str,
        _grant: &GrantReplacement,
        _event: &NewConnectionEvent,
        _outbox: Option<&NewOutboxEvent>,
    ) -> StoreResult<Option<ConnectionRow>> {
        Err(not_implemented())
    }

    async fn update_connection_settings(
        &self,
        _project_id: &str,
        _id: &str,
        _update: &ConnectionSettingsUpdate,
    ) -> StoreResult<Option<ConnectionRow>> {
        Err(not_implemented())
    }

    async fn delete_connection(
        &self,
        _project_id: &str,
        _id: &str,
    ) -> StoreResult<Option<ConnectionRow>> {
        Err(not_implemented())
    }

    async fn claim_connection_lease(
        &self,
        _id: &str,
        _owner: &str,
        _lease_for: Duration,
    ) -> StoreResult<Option<ConnectionRow>> {
        Err(not_implemented())
    }

    async fn claim_due_refreshes(
        &self,
        _owner: &str,
        _limit: u32,
        _lease_for: Duration,
        _ahead_of_meetings: Duration,
    ) -> StoreResult<Vec<ConnectionRow>> {
        Err(not_implemented())
    }

    async fn store_refreshed_tokens(
        &self,
        _id: &str,
        _fence: i64,
        _tokens: &RefreshedTokens,
        _event: Option<&NewConnectionEvent>,
    ) -> StoreResult<bool> {
        Err(not_implemented())
    }

    async fn release_connection_lease(
        &self,
        _id: &str,
        _fence: i64,
        _retry_at: Option<DateTime<Utc>>,
    ) -> StoreResult<bool> {
        Err(not_implemented())
    }

    async fn disconnect_connection(
        &self,
        _id: &str,
        _fence: Option<i64>,
        _failure: &FailureData,
        _event: &NewConnectionEvent,
        _outbox: Option<&NewOutboxEvent>,
    ) -> StoreResult<DisconnectOutcome> {
        Err(not_implemented())
    }

    async fn insert_connection_event(
        &self,
        _connection_id: &str,
        _event: &NewConnectionEvent,
    ) -> StoreResult<()> {
        Err(not_implemented())
    }

    async fn list_connection_events(
        &self,
        _project_id: &str,
        _connection_id: &str,
        _page: &PageRequest,
    ) -> StoreResult<Page<ConnectionEventRow>> {
        Err(not_implemented())
    }

    async fn list_outbox_events(
        &self,
        _project_id: &str,
        _limit: u32,
    ) -> StoreResult<Vec<OutboxEventRow>> {
        Err(not_implemented())
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
}
