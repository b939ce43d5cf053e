//! One storage test story, run against both databases (STYLE.md: atuin's
//! `tests-database`). [`store_tests!`] turns each `async fn behaviour(s: TestStore)`
//! into two tests, `on_sqlite::behaviour` and `on_postgres::behaviour`; the latter
//! skips (with a note on stderr) when the machine has no PostgreSQL, unless
//! `ZOOMKEEPER_REQUIRE_POSTGRES=1`.

#![allow(dead_code)]

use std::sync::Arc;

use chrono::{DateTime, Utc};
use keeper::storage::postgres::PostgresStore;
use keeper::storage::sqlite::SqliteStore;
use keeper::storage::{ApiKeyRow, AppKind, AppRow, ProjectRow, Sealed, Store};

/// A fresh, migrated database of one kind, with raw SQL access for rows the
/// `Store` trait cannot write yet.
pub struct TestStore {
    pub store: Arc<dyn Store>,
    raw: Raw,
    _dir: Option<tempfile::TempDir>,
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
        raw: Raw::Sqlite(store.pool().clone()),
        store: Arc::new(store),
        _dir: Some(dir),
    }
}

/// `None` (skip) without PostgreSQL binaries; panics when they are required.
pub async fn postgres() -> Option<TestStore> {
    let cluster = keeper::pg_cluster::shared()
        .await
        .expect("throwaway PostgreSQL");
    let Some(cluster) = cluster else {
        eprintln!(
            "skipped: no PostgreSQL binaries found (set {}=1 to make this an error)",
            keeper::pg_cluster::REQUIRE_ENV
        );
        return None;
    };
    let url = cluster.create_database().await.expect("create database");
    let store = PostgresStore::connect(&url).await.expect("open PostgreSQL");
    store.migrate().await.expect("migrate PostgreSQL");
    Some(TestStore {
        raw: Raw::Postgres(store.pool().clone()),
        store: Arc::new(store),
        _dir: None,
    })
}

#[macro_export]
macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::support::sqlite().await).await
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    if let Some(store) = super::support::postgres().await {
                        super::$name(store).await
                    }
                }
            )*
        }
    };
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
        connection_count: 0,
    }
}
