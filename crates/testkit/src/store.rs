//! One storage test story, run against both databases (STYLE.md: atuin's
//! `tests-database`): [`crate::on_both_databases!`] turns each `async fn
//! behaviour(s: TestStore)` into `behaviour::sqlite` and `behaviour::postgres`; the
//! latter skips (with a note on stderr) when the machine has no PostgreSQL, unless
//! `ZOOMKEEPER_REQUIRE_POSTGRES=1`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use keeper::storage::postgres::PostgresStore;
use keeper::storage::sqlite::SqliteStore;
use keeper::storage::{
    ApiKeyRow, AppKind, AppRow, ConnectionRow, ConnectionState, NewConnectionEvent, NewOutboxEvent,
    ProjectRow, Sealed, Store,
};

/// A fresh, migrated database of one kind, with raw SQL access for rows the
/// `Store` trait cannot write yet.
pub struct TestStore {
    pub store: Arc<dyn Store>,
    raw: Raw,
    _dir: Option<tempfile::TempDir>,
    /// The SQLite database file.
    pub sqlite_path: Option<std::path::PathBuf>,
}

enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl std::ops::Deref for TestStore {
    type Target = dyn Store;
    fn deref(&self) -> &Self::Target {
        &*self.store
    }
}

pub async fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("data").join("zoomkeeper.db");
    let store = SqliteStore::connect(path.to_str().expect("utf-8 temp path"))
        .await
        .expect("open SQLite");
    store.migrate().await.expect("migrate SQLite");
    TestStore {
        raw: Raw::Sqlite(store.sqlite_pool().expect("SQLite").clone()),
        store: Arc::new(store),
        _dir: Some(dir),
        sqlite_path: Some(path),
    }
}

/// `None` (skip) without PostgreSQL binaries; panics when they are required.
pub async fn postgres() -> Option<TestStore> {
    let Some(url) = crate::postgres_database().await else {
        eprintln!(
            "skipped: no PostgreSQL binaries found (set {}=1 to make this an error)",
            crate::pg_cluster::REQUIRE_ENV
        );
        return None;
    };
    let store = PostgresStore::connect(&url).await.expect("open PostgreSQL");
    Some(TestStore {
        raw: Raw::Postgres(store.postgres_pool().expect("PostgreSQL").clone()),
        store: Arc::new(store),
        _dir: None,
        sqlite_path: None,
    })
}

impl TestStore {
    /// Inserts a connection row directly (the `Store` methods for connections come
    /// in a later issue). Returns its id.
    pub async fn insert_connection(
        &self,
        project_id: &str,
        app_id: &str,
        user_id: &str,
        refresh_token: Option<&Sealed>,
        access_token: Option<&Sealed>,
    ) -> String {
        let id = keeper::ids::IdKind::Connection.generate();
        let refresh = refresh_token.map(|s| s.0.clone());
        let access = access_token.map(|s| s.0.clone());
        match &self.raw {
            Raw::Sqlite(pool) => {
                let now = Utc::now().timestamp_micros();
                sqlx::query(
                    "INSERT INTO zoom_oauth_connections (id, project_id, app_id, user_id, \
                     account_id, refresh_token, access_token, created_at, updated_at) \
                     VALUES (?, ?, ?, ?, 'acct', ?, ?, ?, ?)",
                )
                .bind(&id)
                .bind(project_id)
                .bind(app_id)
                .bind(user_id)
                .bind(refresh)
                .bind(access)
                .bind(now)
                .bind(now)
                .execute(pool)
                .await
                .expect("insert connection");
            }
            Raw::Postgres(pool) => {
                sqlx::query(
                    "INSERT INTO zoom_oauth_connections (id, project_id, app_id, user_id, \
                     account_id, refresh_token, access_token, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, 'acct', $5, $6, now(), now())",
                )
                .bind(&id)
                .bind(project_id)
                .bind(app_id)
                .bind(user_id)
                .bind(refresh)
                .bind(access)
                .execute(pool)
                .await
                .expect("insert connection");
            }
        }
        id
    }

    /// Indexes a meeting of `connection_id` directly (the meetings API comes in a
    /// later issue).
    pub async fn insert_meeting(
        &self,
        project_id: &str,
        app_id: &str,
        meeting_id: &str,
        connection_id: &str,
        start_time: DateTime<Utc>,
    ) {
        match &self.raw {
            Raw::Sqlite(pool) => {
                sqlx::query(
                    "INSERT INTO zoom_meetings (project_id, app_id, meeting_id, connection_id, \
                     source, start_time, synced_at) VALUES (?, ?, ?, ?, 'sync', ?, ?)",
                )
                .bind(project_id)
                .bind(app_id)
                .bind(meeting_id)
                .bind(connection_id)
                .bind(start_time.timestamp_micros())
                .bind(Utc::now().timestamp_micros())
                .execute(pool)
                .await
                .expect("insert meeting");
            }
            Raw::Postgres(pool) => {
                sqlx::query(
                    "INSERT INTO zoom_meetings (project_id, app_id, meeting_id, connection_id, \
                     source, start_time, synced_at) VALUES ($1, $2, $3, $4, 'sync', $5, now())",
                )
                .bind(project_id)
                .bind(app_id)
                .bind(meeting_id)
                .bind(connection_id)
                .bind(start_time)
                .execute(pool)
                .await
                .expect("insert meeting");
            }
        }
    }

    /// `SELECT COUNT(*) FROM {table}`, optionally `WHERE connection_id = ?`.
    pub async fn count_rows(&self, table: &str, connection_id: Option<&str>) -> i64 {
        match &self.raw {
            Raw::Sqlite(pool) => sqlx::query_scalar(&format!(
                "SELECT COUNT(*) FROM {table} WHERE ?1 IS NULL OR connection_id = ?1"
            ))
            .bind(connection_id)
            .fetch_one(pool)
            .await
            .expect("count"),
            Raw::Postgres(pool) => sqlx::query_scalar(&format!(
                "SELECT COUNT(*) FROM {table} WHERE $1::text IS NULL OR connection_id = $1"
            ))
            .bind(connection_id)
            .fetch_one(pool)
            .await
            .expect("count"),
        }
    }

    /// Overwrites one sealed column of one row with raw bytes, like an attacker
    /// (or a bad restore) with database access would.
    pub async fn overwrite_sealed(&self, table: &str, column: &str, row_id: &str, value: &[u8]) {
        let sql = match &self.raw {
            Raw::Sqlite(_) => format!("UPDATE {table} SET {column} = ? WHERE id = ?"),
            Raw::Postgres(_) => format!("UPDATE {table} SET {column} = $1 WHERE id = $2"),
        };
        let affected = match &self.raw {
            Raw::Sqlite(pool) => sqlx::query(&sql)
                .bind(value)
                .bind(row_id)
                .execute(pool)
                .await
                .expect("overwrite")
                .rows_affected(),
            Raw::Postgres(pool) => sqlx::query(&sql)
                .bind(value)
                .bind(row_id)
                .execute(pool)
                .await
                .expect("overwrite")
                .rows_affected(),
        };
        assert_eq!(affected, 1, "overwrote {table}.{column} of {row_id}");
    }
}

/// A timestamp with microsecond precision (what both databases keep).
pub fn micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).expect("in range")
}

pub fn project(name: &str) -> ProjectRow {
    ProjectRow {
        id: keeper::ids::IdKind::Project.generate(),
        name: name.to_owned(),
        webhook_secret: Sealed(vec![1, 2, 3]),
        created_at: micros(Utc::now()),
    }
}

pub fn api_key(project_id: &str, hash_seed: u8) -> ApiKeyRow {
    ApiKeyRow {
        id: keeper::ids::IdKind::ApiKey.generate(),
        project_id: project_id.to_owned(),
        name: "test key".to_owned(),
        key_hash: vec![hash_seed; 32],
        prefix: "zk_abcd".to_owned(),
        created_at: micros(Utc::now()),
        last_used_at: None,
        disabled_at: None,
    }
}

pub fn app(project_id: &str, client_id: &str, created_at: DateTime<Utc>) -> AppRow {
    AppRow {
        id: keeper::ids::IdKind::App.generate(),
        project_id: project_id.to_owned(),
        client_id: client_id.to_owned(),
        client_secret: Sealed(format!("secret of {client_id}").into_bytes()),
        webhook_secret: None,
        kind: AppKind::UserLevel,
        created_at: micros(created_at),
        updated_at: micros(created_at),
        last_verified_webhook_received_at: None,
        last_unverified_webhook_received_at: None,
        webhook_events_stale_since: None,
        webhook_last_validation_at: None,
        connection_count: 0,
    }
}

/// A connected connection with tokens, due for refresh in 30 days.
pub fn connection(
    project_id: &str,
    app_id: &str,
    user_id: &str,
    created_at: DateTime<Utc>,
) -> ConnectionRow {
    let created_at = micros(created_at);
    ConnectionRow {
        id: keeper::ids::IdKind::Connection.generate(),
        project_id: project_id.to_owned(),
        app_id: app_id.to_owned(),
        user_id: user_id.to_owned(),
        account_id: "acct_1".to_owned(),
        email: Some(format!("{user_id}@example.com")),
        pmi: Some("1234567890".to_owned()),
        personal_meeting_url: Some("https://zoom.us/j/1234567890".to_owned()),
        state: ConnectionState::Connected,
        connection_failure_data: None,
        metadata: Some(serde_json::json!({ "team": "blue" })),
        deduplication_key: None,
        is_local_recording_token_supported: true,
        is_onbehalf_token_supported: false,
        scopes: vec![
            "user:read:user".to_owned(),
            "meeting:read:list_meetings".to_owned(),
        ],
        refresh_token: Some(Sealed(format!("refresh of {user_id}").into_bytes())),
        access_token: Some(Sealed(format!("access of {user_id}").into_bytes())),
        access_token_expires_at: Some(created_at + chrono::Duration::hours(1)),
        lease_owner: None,
        lease_until: None,
        fence: 0,
        refresh_due_at: Some(created_at + chrono::Duration::days(30)),
        last_attempted_sync_at: None,
        last_successful_sync_at: None,
        next_sync_at: None,
        last_successful_token_refresh_at: None,
        created_at,
        updated_at: created_at,
        sync_requested_at: None,
        access_token_callback_url: None,
        sync_pass_started_at: None,
        sync_users_done: None,
        sync_users_total: None,
    }
}

pub fn event(kind: &str) -> NewConnectionEvent {
    NewConnectionEvent {
        kind: kind.to_owned(),
        message: format!("{kind} happened"),
        data: Some(serde_json::json!({ "kind": kind })),
    }
}

pub fn state_change(connection_id: &str, state: &str) -> NewOutboxEvent {
    NewOutboxEvent {
        trigger: "zoom_oauth_connection.state_change".to_owned(),
        payload: serde_json::json!({ "id": connection_id, "state": state }),
    }
}
