//! SQLite implementation of [`super::Store`].
//!
//! One file, WAL journal, `synchronous=NORMAL`, foreign keys on, a busy timeout so
//! writers queue instead of failing. Timestamps are INTEGER microseconds since the
//! Unix epoch (UTC). Transactions that read before they write start with
//! `BEGIN IMMEDIATE`, so they take the write lock up front and never fail with
//! `SQLITE_BUSY` halfway through.

use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::Row as _;

use super::{
    is_foreign_key_violation, map_unique_violation, sealed_column_index, truncate_to_micros,
    ApiKeyRow, AppKind, AppRow, AppSecretsUpdate, ConnectionEventRow, ConnectionFilter,
    ConnectionRow, ConnectionSettingsUpdate, DeleteAppOutcome, Direction, DisconnectOutcome,
    FailureData, GrantReplacement, NewConnectionEvent, NewOutboxEvent, OutboxEventRow, Page,
    PageRequest, ProjectRow, RefreshedTokens, Sealed, SealedField, Store, StoreError, StoreResult,
    SEALED_COLUMNS,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Readers run in parallel under WAL; writers take turns. A handful is plenty.
const MAX_CONNECTIONS: u32 = 8;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating when missing, with its directory) the database at
    /// `url_or_path`: a `sqlite:` URL (`sqlite:///abs/path.db`, `sqlite:rel.db`,
    /// `sqlite::memory:`) or a plain file path. Does not migrate.
    pub async fn connect(url_or_path: &str) -> StoreResult<Self> {
        let in_memory = url_or_path.contains(":memory:") || url_or_path.contains("mode=memory");
        let options = if url_or_path.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url_or_path)?
        } else {
            SqliteConnectOptions::new().filename(url_or_path)
        };
        let options = options
            .create_if_missing(true)
            .journal_mode(if in_memory {
                SqliteJournalMode::Memory
            } else {
                SqliteJournalMode::Wal
            })
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        if !in_memory {
            if let Some(dir) = options.get_filename().parent() {
                if !dir.as_os_str().is_empty() && !dir.exists() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        sqlx::Error::Configuration(
                            format!("creating the database directory {}: {e}", dir.display())
                                .into(),
                        )
                    })?;
                }
            }
        }
        // Every connection to `:memory:` is its own database: keep exactly one.
        let pool_options = if in_memory {
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(MAX_CONNECTIONS)
        };
        let path = options.get_filename().to_path_buf();
        let pool = pool_options.connect_with(options).await?;
        Ok(SqliteStore { pool, path })
    }

    /// The database file, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pool, for tests and later storage modules that need raw access.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn from_micros(column: &str, value: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_micros(value).ok_or_else(|| {
        StoreError::Database(sqlx::Error::Decode(
            format!("{column}: timestamp {value} out of range").into(),
        ))
    })
}

fn get_time(row: &SqliteRow, column: &str) -> StoreResult<DateTime<Utc>> {
    from_micros(column, row.try_get::<i64, _>(column)?)
}

fn get_opt_time(row: &SqliteRow, column: &str) -> StoreResult<Option<DateTime<Utc>>> {
    row.try_get::<Option<i64>, _>(column)?
        .map(|v| from_micros(column, v))
        .transpose()
}

fn project_from_row(row: &SqliteRow) -> StoreResult<ProjectRow> {
    Ok(ProjectRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        webhook_secret: Sealed(row.try_get("webhook_secret")?),
        created_at: get_time(row, "created_at")?,
    })
}

fn api_key_from_row(row: &SqliteRow) -> StoreResult<ApiKeyRow> {
    Ok(ApiKeyRow {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        name: row.try_get("name")?,
        key_hash: row.try_get("key_hash")?,
        prefix: row.try_get("prefix")?,
        created_at: get_time(row, "created_at")?,
        last_used_at: get_opt_time(row, "last_used_at")?,
        disabled_at: get_opt_time(row, "disabled_at")?,
    })
}

const APP_COLUMNS: &str = "a.id, a.project_id, a.client_id, a.client_secret, a.webhook_secret, \
     a.kind, a.created_at, a.updated_at, a.last_verified_webhook_received_at, \
     a.last_unverified_webhook_received_at, \
     (SELECT COUNT(*) FROM zoom_oauth_connections c WHERE c.app_id = a.id) AS connection_count";

fn app_from_row(row: &SqliteRow) -> StoreResult<AppRow> {
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
        created_at: get_time(row, "created_at")?,
        updated_at: get_time(row, "updated_at")?,
        last_verified_webhook_received_at: get_opt_time(row, "last_verified_webhook_received_at")?,
        last_unverified_webhook_received_at: get_opt_time(
            row,
            "last_unverified_webhook_received_at",
        )?,
        connection_count: row.try_get("connection_count")?,
    })
}

const INSERT_PROJECT: &str =
    "INSERT INTO projects (id, name, webhook_secret, created_at) VALUES (?, ?, ?, ?)";
const INSERT_API_KEY: &str = "INSERT INTO api_keys \
     (id, project_id, name, key_hash, prefix, created_at, last_used_at, disabled_at) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)";

fn bind_project<'q>(
    project: &'q ProjectRow,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    sqlx::query(INSERT_PROJECT)
        .bind(&project.id)
        .bind(&project.name)
        .bind(&project.webhook_secret.0)
        .bind(micros(project.created_at))
}

fn bind_api_key<'q>(
    key: &'q ApiKeyRow,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    sqlx::query(INSERT_API_KEY)
        .bind(&key.id)
        .bind(&key.project_id)
        .bind(&key.name)
        .bind(&key.key_hash)
        .bind(&key.prefix)
        .bind(micros(key.created_at))
        .bind(key.last_used_at.map(micros))
        .bind(key.disabled_at.map(micros))
}

fn not_implemented() -> StoreError {
    StoreError::Database(sqlx::Error::Protocol("not implemented yet".into()))
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// SQLite runs in this process, so its clock is this process's clock.
    async fn now(&self) -> StoreResult<DateTime<Utc>> {
        Ok(truncate_to_micros(Utc::now()))
    }

    async fn insert_project(&self, project: &ProjectRow) -> StoreResult<()> {
        bind_project(project)
            .execute(&self.pool)
            .await
            .map_err(map_unique_violation)?;
        Ok(())
    }

    async fn project_by_id(&self, id: &str) -> StoreResult<Option<ProjectRow>> {
        sqlx::query("SELECT id, name, webhook_secret, created_at FROM projects WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| project_from_row(&r))
            .transpose()
    }

    async fn project_by_name(&self, name: &str) -> StoreResult<Option<ProjectRow>> {
        sqlx::query("SELECT id, name, webhook_secret, created_at FROM projects WHERE name = ?")
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
        // IMMEDIATE takes the write lock before the check: no other writer can slip in.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
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
             FROM api_keys WHERE key_hash = ?",
        )
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| api_key_from_row(&r))
        .transpose()
    }

    async fn touch_api_key(&self, id: &str, at: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query(
            "UPDATE api_keys SET last_used_at = ?1 \
             WHERE id = ?2 AND (last_used_at IS NULL OR last_used_at < ?1)",
        )
        .bind(micros(at))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn insert_app(&self, app: &AppRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO zoom_oauth_apps (id, project_id, client_id, client_secret, \
             webhook_secret, kind, created_at, updated_at, last_verified_webhook_received_at, \
             last_unverified_webhook_received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&app.id)
        .bind(&app.project_id)
        .bind(&app.client_id)
        .bind(&app.client_secret.0)
        .bind(app.webhook_secret.as_ref().map(|s| &s.0))
        .bind(app.kind.as_str())
        .bind(micros(app.created_at))
        .bind(micros(app.updated_at))
        .bind(app.last_verified_webhook_received_at.map(micros))
        .bind(app.last_unverified_webhook_received_at.map(micros))
        .execute(&self.pool)
        .await
        .map_err(map_unique_violation)?;
        Ok(())
    }

    async fn get_app(&self, project_id: &str, id: &str) -> StoreResult<Option<AppRow>> {
        sqlx::query(&format!(
            "SELECT {APP_COLUMNS} FROM zoom_oauth_apps a WHERE a.project_id = ? AND a.id = ?"
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
                    "SELECT {APP_COLUMNS} FROM zoom_oauth_apps a WHERE a.project_id = ? \
                     ORDER BY a.created_at DESC, a.id DESC LIMIT ?"
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
                    "SELECT {APP_COLUMNS} FROM zoom_oauth_apps a WHERE a.project_id = ? \
                     AND (a.created_at, a.id) {cmp} (?, ?) \
                     ORDER BY a.created_at {order}, a.id {order} LIMIT ?"
                ))
                .bind(project_id)
                .bind(micros(cursor.created_at))
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
            sqlx::query_scalar("SELECT COUNT(*) FROM zoom_oauth_apps WHERE project_id = ?")
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let updated = sqlx::query(
            "UPDATE zoom_oauth_apps SET \
             client_secret = CASE WHEN ?1 THEN ?2 ELSE client_secret END, \
             webhook_secret = CASE WHEN ?3 THEN ?4 ELSE webhook_secret END, \
             updated_at = ?5 \
             WHERE project_id = ?6 AND id = ?7",
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
        .bind(micros(at))
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
            "SELECT {APP_COLUMNS} FROM zoom_oauth_apps a WHERE a.project_id = ? AND a.id = ?"
        ))
        .bind(project_id)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        app_from_row(&row).map(Some)
    }

    async fn delete_app(&self, project_id: &str, id: &str) -> StoreResult<DeleteAppOutcome> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let connections: Option<i64> = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM zoom_oauth_connections c WHERE c.app_id = a.id) \
             FROM zoom_oauth_apps a WHERE a.project_id = ? AND a.id = ?",
        )
        .bind(project_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let outcome = match connections {
            None => DeleteAppOutcome::NotFound,
            Some(n) if n > 0 => DeleteAppOutcome::HasConnections,
            Some(_) => {
                let deleted =
                    sqlx::query("DELETE FROM zoom_oauth_apps WHERE project_id = ? AND id = ?")
                        .bind(project_id)
                        .bind(id)
                        .execute(&mut *tx)
                        .await;
                match deleted {
                    Ok(_) => DeleteAppOutcome::Deleted,
                    Err(e) if is_foreign_key_violation(&e) => DeleteAppOutcome::HasConnections,
                    Err(e) => return Err(e.into()),
                }
            }
        };
        if outcome == DeleteAppOutcome::Deleted {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(outcome)
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
                    // Unknown column: order by name like the list does.
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
                 WHERE {column} IS NOT NULL AND id > ? ORDER BY id LIMIT ?"
            ))
            .bind(after_row.unwrap_or(""))
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
            "UPDATE {table} SET {column} = ? WHERE id = ? AND {column} = ?"
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
