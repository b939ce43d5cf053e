//! Storage: the one seam between the domain and SQL.
//!
//! Narrow traits per resource ([`ProjectStore`], [`AppStore`], [`ConnectionStore`],
//! [`LeaseStore`], [`EventStore`], [`MeetingStore`], [`SyncStore`],
//! [`WebhookStore`], [`BotPlatformStore`], [`ConnectSessionStore`], [`OperatorStore`],
//! [`HousekeepingStore`], [`VaultStore`])
//! combine into [`Store`];
//! a domain module takes the narrow one it needs. One implementation,
//! [`SqlStore`], runs each resource's SQL (written once, in its own file) on SQLite
//! or PostgreSQL. Every query that reads or changes a project's objects is scoped by
//! `project_id`. Rules are decided in Rust (`crate::domain::meetings`, `crate::domain::tokens`);
//! SQL fetches and writes.
//!
//! Secrets arrive here already sealed by the vault ([`Sealed`]): storage never sees a
//! plaintext secret and never needs a key.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::core::clock::Clock;

#[macro_use]
mod sql;
pub mod apps;
pub mod bot_platforms;
pub mod connect_sessions;
pub mod connections;
pub mod events;
pub mod housekeeping;
pub mod leases;
pub mod meetings;
pub mod operators;
mod pg_receipts;
pub mod projects;
mod sqlite_receipts;
pub mod sync;
pub mod vault;
pub mod webhooks;

pub use apps::*;
pub use bot_platforms::*;
pub use connect_sessions::*;
pub use connections::*;
pub use events::*;
pub use housekeeping::*;
pub use leases::*;
pub use meetings::*;
pub use operators::*;
pub use projects::*;
pub use sql::SqlStore;
pub use sync::*;
pub use vault::*;
pub use webhooks::*;

/// The store on SQLite ([`SqlStore::connect`] with a path or `sqlite:` URL).
pub mod sqlite {
    pub type SqliteStore = super::SqlStore;
}

/// The store on PostgreSQL ([`SqlStore::connect`] with a `postgres://` URL).
pub mod postgres {
    pub type PostgresStore = super::SqlStore;
}

/// `Store`, every narrow trait at once, and its blanket impl.
macro_rules! store {
    ($($narrow:ident),*) => {
        /// Everything storage offers; `&dyn Store` upcasts to any narrow trait.
        pub trait Store: $($narrow +)* {}

        impl<T> Store for T where T: $($narrow +)* {}
    };
}

store!(
    DatabaseStore,
    ProjectStore,
    AppStore,
    BotPlatformStore,
    ConnectSessionStore,
    ConnectionStore,
    LeaseStore,
    EventStore,
    MeetingStore,
    OperatorStore,
    SyncStore,
    WebhookStore,
    HousekeepingStore,
    VaultStore
);

/// The database itself.
#[async_trait]
pub trait DatabaseStore: Send + Sync + 'static {
    /// Which database this is, for logs and metrics: `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;
    async fn migrate(&self) -> StoreResult<()>;
    /// Cheap round trip for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;
    /// The database clock; leases and due times are computed from it.
    async fn now(&self) -> StoreResult<DateTime<Utc>>;
    /// The clock [`now`](Self::now) follows (advance it to move time in tests).
    fn clock(&self) -> &Clock;
}

/// Opens the database named by `database_url` ([`is_postgres_url`]): the SQLite file
/// and its directory are created when missing. Does not migrate.
pub async fn open_store(database_url: &str) -> StoreResult<std::sync::Arc<dyn Store>> {
    Ok(std::sync::Arc::new(SqlStore::connect(database_url).await?))
}

/// Whether `database_url` names a PostgreSQL database
/// ([`Database::named_by`](crate::core::config::Database::named_by), the one rule);
/// anything else is SQLite (a `sqlite:` URL or a file path).
pub fn is_postgres_url(database_url: &str) -> bool {
    crate::core::config::Database::named_by(database_url)
        == Some(crate::core::config::Database::Postgres)
}

/// The outgoing-webhook event a connection write records, built from the row as the
/// write left it (so a concurrent `PATCH` of metadata cannot make it stale).
pub trait OutboxSource: Send + Sync {
    fn event_for(&self, written: &ConnectionRow) -> NewOutboxEvent;
}

/// A fixed event, whatever the row.
impl OutboxSource for NewOutboxEvent {
    fn event_for(&self, _written: &ConnectionRow) -> NewOutboxEvent {
        self.clone()
    }
}

/// A sealed secret as stored: `version | key_id | nonce | ciphertext+tag` (see `vault`).
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed(pub Vec<u8>);

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealed([redacted])")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was broken; `constraint` names the rule (e.g. `apps_project_client_id`).
    #[error("conflict on {constraint}")]
    Conflict { constraint: &'static str },
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// From the SQLite receipt writer, which runs SQLite without sqlx.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Every database error passes here: a unique violation becomes
/// [`StoreError::Conflict`] naming its rule.
impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &err {
            if db.is_unique_violation() {
                let rule = match db.constraint() {
                    Some(name) => UNIQUE_RULES.iter().find(|r| r.0 == name).map(|r| r.0),
                    None => unique_rule_by_sqlite_message(db.message()),
                };
                return StoreError::Conflict {
                    constraint: rule.unwrap_or("unique"),
                };
            }
        }
        StoreError::Database(err)
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A vanished row a write refers to (a foreign key) is `NotFound`.
fn foreign_key_not_found(err: StoreError) -> StoreError {
    match err {
        StoreError::Database(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => {
            StoreError::NotFound
        }
        other => other,
    }
}

/// Keyset pagination over `(created_at, id)`, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub cursor: Option<Cursor>,
    /// Page size, already validated (1..=100).
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: String,
    pub direction: Direction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Rows strictly older than the cursor (the "next" page).
    Older,
    /// Rows strictly newer than the cursor (the "previous" page).
    Newer,
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    /// Newest first, at most `limit` items.
    pub items: Vec<T>,
    /// Whether more rows exist beyond this page in the direction of travel.
    pub has_more: bool,
}

/// One sealed value somewhere in the database, for re-sealing under a new key.
#[derive(Debug, Clone)]
pub struct SealedField {
    pub table: &'static str,
    pub column: &'static str,
    pub row_id: String,
    pub value: Sealed,
}

/// The named uniqueness rules [`StoreError::Conflict`] reports: `(name, table,
/// columns)`. PostgreSQL names its constraints exactly so; SQLite reports columns.
#[rustfmt::skip]
const UNIQUE_RULES: &[(&str, &str, &[&str])] = &[
    ("projects_pkey", "projects", &["id"]),
    ("projects_name", "projects", &["name"]),
    ("operators_email", "operators", &["email"]),
    ("api_keys_pkey", "api_keys", &["id"]),
    ("api_keys_key_hash", "api_keys", &["key_hash"]),
    ("apps_pkey", "zoom_oauth_apps", &["id"]),
    ("apps_project_client_id", "zoom_oauth_apps", &["project_id", "client_id"]),
    ("connections_pkey", "zoom_oauth_connections", &["id"]),
    ("connections_app_user_id", "zoom_oauth_connections", &["app_id", "user_id"]),
    ("connections_app_deduplication_key", "zoom_oauth_connections",
        &["app_id", "deduplication_key"]),
    ("meetings_app_meeting_id", "zoom_meetings", &["app_id", "meeting_id"]),
    ("webhook_subscriptions_pkey", "webhook_subscriptions", &["id"]),
    ("webhook_deliveries_pkey", "webhook_deliveries", &["idempotency_key"]),
    ("webhook_receipts_app_dedupe_key", "zoom_webhook_receipts", &["app_id", "dedupe_key"]),
];

/// The rule a SQLite message (`UNIQUE constraint failed: t.a, t.b`) stands for.
fn unique_rule_by_sqlite_message(message: &str) -> Option<&'static str> {
    let columns = message.split_once("constraint failed: ")?.1.trim();
    let actual: Vec<&str> = columns.split(',').map(str::trim).collect();
    UNIQUE_RULES
        .iter()
        .find(|(_, table, cols)| {
            cols.len() == actual.len()
                && cols
                    .iter()
                    .zip(&actual)
                    .all(|(c, a)| *a == format!("{table}.{c}"))
        })
        .map(|r| r.0)
}

#[cfg(test)]
mod unique_rule_tests {
    use super::*;

    #[test]
    fn sqlite_messages_map_to_rule_names() {
        assert_eq!(
            unique_rule_by_sqlite_message(
                "UNIQUE constraint failed: zoom_oauth_apps.project_id, zoom_oauth_apps.client_id"
            ),
            Some("apps_project_client_id")
        );
        assert_eq!(
            unique_rule_by_sqlite_message("UNIQUE constraint failed: projects.name"),
            Some("projects_name")
        );
        assert_eq!(
            unique_rule_by_sqlite_message("UNIQUE constraint failed: zoom_oauth_apps.project_id"),
            None
        );
    }
}
