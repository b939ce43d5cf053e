//! Storage: the one seam between the domain and SQL.
//!
//! [`Store`] is implemented once per database (`sqlite`, `postgres`), each with its
//! own migrations. Domain modules take `&dyn Store`; no SQL lives anywhere else.
//! Every query that reads or changes a project's objects is scoped by `project_id`.
//!
//! Secrets arrive here already sealed by the vault ([`Sealed`]): storage never sees a
//! plaintext secret and never needs a key.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub mod connections;
pub mod meetings;
pub mod postgres;
pub mod sqlite;
mod sqlite_receipts;
pub mod sync;
pub mod webhooks;

pub use connections::*;
pub use meetings::*;
pub use sync::*;
pub use webhooks::*;

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
    Database(#[from] sqlx::Error),
    /// From the SQLite receipt writer, which runs SQLite without sqlx.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone)]
pub struct ProjectRow {
    pub id: String,
    pub name: String,
    pub webhook_secret: Sealed,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct ApiKeyRow {
    pub id: String,
    pub project_id: String,
    pub name: String,
    /// SHA-256 of the full key; the key itself is never stored.
    pub key_hash: Vec<u8>,
    /// The first characters of the key, shown so a person can tell keys apart.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub disabled_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppKind {
    UserLevel,
    AccountLevel,
}

impl AppKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AppKind::UserLevel => "user_level",
            AppKind::AccountLevel => "account_level",
        }
    }

    pub fn parse(s: &str) -> Option<AppKind> {
        match s {
            "user_level" => Some(AppKind::UserLevel),
            "account_level" => Some(AppKind::AccountLevel),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AppRow {
    pub id: String,
    pub project_id: String,
    pub client_id: String,
    pub client_secret: Sealed,
    pub webhook_secret: Option<Sealed>,
    pub kind: AppKind,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_verified_webhook_received_at: Option<DateTime<Utc>>,
    pub last_unverified_webhook_received_at: Option<DateTime<Utc>>,
    /// When the app's verified Zoom webhooks stopped while its connections kept
    /// scheduling meetings; `None` while they arrive.
    pub webhook_events_stale_since: Option<DateTime<Utc>>,
    /// Filled by reads (`get_app`, `list_apps`); ignored by writes.
    pub connection_count: i64,
}

/// A change to an app's secrets. `None` leaves a field alone;
/// `webhook_secret: Some(None)` removes the webhook secret.
#[derive(Debug, Clone, Default)]
pub struct AppSecretsUpdate {
    pub client_secret: Option<Sealed>,
    pub webhook_secret: Option<Option<Sealed>>,
}

/// A worker's claim on an app's due re-check ([`Store::claim_app_recheck`]):
/// `due_at` is what the claim wrote (the end of its lease) and what renewing or
/// finishing it must still find; a newer client secret change overwrites it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRecheckClaim {
    pub app_id: String,
    pub due_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteAppOutcome {
    Deleted,
    NotFound,
    /// The app still has connections; nothing was deleted.
    HasConnections,
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

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which database this is, for logs and metrics: `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;
    async fn migrate(&self) -> StoreResult<()>;
    /// Cheap round trip for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;
    /// The database clock; leases and due times are computed from it.
    async fn now(&self) -> StoreResult<DateTime<Utc>>;

    // Projects
    /// `Conflict { constraint: "projects_name" }` when the name is taken.
    async fn insert_project(&self, project: &ProjectRow) -> StoreResult<()>;
    async fn project_by_id(&self, id: &str) -> StoreResult<Option<ProjectRow>>;
    async fn project_by_name(&self, name: &str) -> StoreResult<Option<ProjectRow>>;
    async fn count_projects(&self) -> StoreResult<i64>;
    /// Creates `project` and `key` atomically, but only when no project exists yet
    /// (first start). Returns false, changing nothing, when one already exists —
    /// safe when several processes start at once.
    async fn bootstrap_first_project(
        &self,
        project: &ProjectRow,
        key: &ApiKeyRow,
    ) -> StoreResult<bool>;

    // API keys
    async fn insert_api_key(&self, key: &ApiKeyRow) -> StoreResult<()>;
    async fn api_key_by_hash(&self, key_hash: &[u8]) -> StoreResult<Option<ApiKeyRow>>;
    /// Records use; callers throttle how often they call it.
    async fn touch_api_key(&self, id: &str, at: DateTime<Utc>) -> StoreResult<()>;

    // Zoom OAuth apps
    /// `Conflict { constraint: "apps_project_client_id" }` on a duplicate client_id.
    async fn insert_app(&self, app: &AppRow) -> StoreResult<()>;
    async fn get_app(&self, project_id: &str, id: &str) -> StoreResult<Option<AppRow>>;
    async fn list_apps(&self, project_id: &str, page: &PageRequest) -> StoreResult<Page<AppRow>>;
    async fn count_apps(&self, project_id: &str) -> StoreResult<i64>;
    /// Returns the updated row, or `None` when the app does not exist in the project.
    /// A new client secret also makes the app's re-check due now (database clock),
    /// in the same statement ([`Store::claim_app_recheck`]).
    async fn update_app_secrets(
        &self,
        project_id: &str,
        id: &str,
        update: &AppSecretsUpdate,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<AppRow>>;
    /// Deletes the app only if it has no connections, atomically.
    async fn delete_app(&self, project_id: &str, id: &str) -> StoreResult<DeleteAppOutcome>;

    // Zoom OAuth connections (issue 4). Every write that changes `state` writes its
    // connection event and, when given, its outbox event in the same transaction.
    /// `Conflict { constraint: "connections_app_user_id" | "connections_app_deduplication_key" }`.
    async fn insert_connection(
        &self,
        row: &ConnectionRow,
        event: &NewConnectionEvent,
    ) -> StoreResult<()>;
    async fn get_connection(
        &self,
        project_id: &str,
        id: &str,
    ) -> StoreResult<Option<ConnectionRow>>;
    /// Unscoped read for workers that already hold the id from a claim.
    async fn connection_by_id(&self, id: &str) -> StoreResult<Option<ConnectionRow>>;
    async fn connection_by_user(
        &self,
        app_id: &str,
        user_id: &str,
    ) -> StoreResult<Option<ConnectionRow>>;
    async fn connection_by_deduplication_key(
        &self,
        app_id: &str,
        key: &str,
    ) -> StoreResult<Option<ConnectionRow>>;
    async fn list_connections(
        &self,
        project_id: &str,
        filter: &ConnectionFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<ConnectionRow>>;
    /// Replaces the grant of connection `id` in place (see [`GrantReplacement`]),
    /// writing `event` and `outbox` in the same transaction. Returns the new row, or
    /// `None` when it no longer exists. Conflicts as for `insert_connection`.
    async fn replace_connection_grant(
        &self,
        project_id: &str,
        id: &str,
        grant: &GrantReplacement,
        event: &NewConnectionEvent,
        outbox: Option<&dyn OutboxSource>,
    ) -> StoreResult<Option<ConnectionRow>>;
    /// `Conflict { constraint: "connections_app_deduplication_key" }` on a taken key.
    async fn update_connection_settings(
        &self,
        project_id: &str,
        id: &str,
        update: &ConnectionSettingsUpdate,
    ) -> StoreResult<Option<ConnectionRow>>;
    /// Asks for a meeting sync of connection `id` now (`next_sync_at = now`, database
    /// clock). False when it does not exist in the project.
    async fn schedule_connection_sync(&self, project_id: &str, id: &str) -> StoreResult<bool>;
    /// Deletes the connection (its meetings and events go with it); returns the row
    /// as it was, so the caller can revoke its token at Zoom. With `fence: Some(f)`
    /// only while the fence is still `f` (the caller holds the lease).
    async fn delete_connection(
        &self,
        project_id: &str,
        id: &str,
        fence: Option<i64>,
    ) -> StoreResult<Option<ConnectionRow>>;

    // Leases (DESIGN.md §6): only the holder of the current fence may write tokens.
    /// Claims connection `id` for a refresh when it is connected and its lease is
    /// free or expired (database clock): sets owner, `lease_until = now + lease_for`,
    /// `fence = fence + 1`. Returns the claimed row (with the new fence), or `None`
    /// when it is leased by someone else, disconnected, or gone.
    async fn claim_connection_lease(
        &self,
        id: &str,
        owner: &str,
        lease_for: std::time::Duration,
    ) -> StoreResult<Option<ConnectionRow>>;
    /// Claims connection `id` whatever its state, when its lease is free or expired:
    /// for changes that must not race a refresh (delete, re-bind) and then revoke the
    /// grant they read. Same fields and answer as [`Store::claim_connection_lease`].
    async fn claim_connection_lease_any_state(
        &self,
        id: &str,
        owner: &str,
        lease_for: std::time::Duration,
    ) -> StoreResult<Option<ConnectionRow>>;
    /// Extends a held lease to `now + lease_for` (database clock), only `WHERE id
    /// AND fence`: false when the fence moved on (the lease is lost).
    async fn renew_connection_lease(
        &self,
        id: &str,
        fence: i64,
        lease_for: std::time::Duration,
    ) -> StoreResult<bool>;
    /// Claims up to `limit` connected connections whose refresh is due
    /// (`refresh_due_at <= now`, or whose access token expires before an indexed
    /// meeting starting within `ahead_of_meetings`), oldest due first, skipping
    /// leased ones (`FOR UPDATE SKIP LOCKED` on PostgreSQL).
    async fn claim_due_refreshes(
        &self,
        owner: &str,
        limit: u32,
        lease_for: std::time::Duration,
        ahead_of_meetings: std::time::Duration,
    ) -> StoreResult<Vec<ConnectionRow>>;
    /// Writes refreshed tokens and releases the lease, only `WHERE id AND fence`;
    /// false (nothing written) when the fence moved on.
    async fn store_refreshed_tokens(
        &self,
        id: &str,
        fence: i64,
        tokens: &RefreshedTokens,
        event: Option<&NewConnectionEvent>,
    ) -> StoreResult<bool>;
    /// Releases the lease without writing tokens (temporary failure), optionally
    /// pushing `refresh_due_at` back for a retry. False when the fence moved on.
    async fn release_connection_lease(
        &self,
        id: &str,
        fence: i64,
        retry_at: Option<DateTime<Utc>>,
    ) -> StoreResult<bool>;
    /// Marks a connected connection disconnected with `failure`, erasing its tokens
    /// and releasing any lease, with `event` and `outbox` in the same transaction.
    /// With `fence: Some(f)` only while the fence is still `f`.
    async fn disconnect_connection(
        &self,
        id: &str,
        fence: Option<i64>,
        failure: &FailureData,
        event: &NewConnectionEvent,
        outbox: Option<&dyn OutboxSource>,
    ) -> StoreResult<DisconnectOutcome>;
    async fn insert_connection_event(
        &self,
        connection_id: &str,
        event: &NewConnectionEvent,
    ) -> StoreResult<()>;
    /// Newest first.
    async fn list_connection_events(
        &self,
        project_id: &str,
        connection_id: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<ConnectionEventRow>>;
    /// Newest first; for tests and the delivery worker.
    async fn list_outbox_events(
        &self,
        project_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<OutboxEventRow>>;

    // Key rotation
    /// Sealed values in a stable order, `limit` at a time, after `after`
    /// (`(table, column, row_id)` of the last one seen).
    async fn sealed_fields(
        &self,
        after: Option<(&str, &str, &str)>,
        limit: u32,
    ) -> StoreResult<Vec<SealedField>>;
    /// Replaces a sealed value if it still equals `field.value`; false if it changed.
    async fn reseal_field(&self, field: &SealedField, new_value: &Sealed) -> StoreResult<bool>;

    // Zoom webhook ingress and the meeting → host index (issue 5; see `meetings`).
    /// Unscoped read for webhook ingress, which knows only the app id in its URL.
    async fn app_by_id(&self, id: &str) -> StoreResult<Option<AppRow>>;
    /// Moves the app's `last_verified_webhook_received_at` or
    /// `last_unverified_webhook_received_at` forward to `at` (never back). Callers
    /// throttle how often they call it.
    async fn record_app_webhook_received(
        &self,
        app_id: &str,
        which: WebhookVerification,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Flags the app's Zoom webhooks as stopped since `since`, unless already
    /// flagged; true when this call flagged it.
    async fn flag_app_webhook_events_stale(
        &self,
        app_id: &str,
        since: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Clears the flag (a verified webhook arrived); true when it was set.
    async fn clear_app_webhook_events_stale(&self, app_id: &str) -> StoreResult<bool>;
    /// The oldest connected connection of `app_id` in Zoom account `account_id`
    /// (account-level apps: an admin's grant covers the account's meetings).
    async fn connection_in_account(
        &self,
        app_id: &str,
        account_id: &str,
    ) -> StoreResult<Option<ConnectionRow>>;
    /// Records Zoom webhook `(app_id, dedupe_key)` and applies `change` in one
    /// transaction. `Duplicate` (nothing changed) when the receipt exists already.
    /// Errors (e.g. `NotFound` for a vanished connection) leave no receipt.
    async fn record_webhook_receipt_and_apply(
        &self,
        app_id: &str,
        dedupe_key: &str,
        received_at: DateTime<Utc>,
        change: &MeetingIndexChange,
    ) -> StoreResult<ReceiptOutcome>;
    async fn webhook_receipt_exists(&self, app_id: &str, dedupe_key: &str) -> StoreResult<bool>;
    /// Applies one index change on its own (meeting sync, connection changes).
    async fn apply_meeting_change(&self, change: &MeetingIndexChange) -> StoreResult<()>;
    /// Who hosts `meeting_id` in the project: the rows of every app, or of `app_id`
    /// only; most recently indexed first. The join-token lookup.
    async fn meeting_hosts(
        &self,
        project_id: &str,
        app_id: Option<&str>,
        meeting_id: &str,
    ) -> StoreResult<Vec<MeetingRow>>;
    /// The project's index, most recently indexed (`synced_at`) first; cursors carry
    /// `synced_at` and [`meeting_cursor_id`].
    async fn list_meetings(
        &self,
        project_id: &str,
        filter: &MeetingFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<MeetingRow>>;
    /// Housekeeping: deletes up to `limit` receipts received before `before`;
    /// returns how many.
    async fn delete_webhook_receipts_before(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<u64>;
    /// Housekeeping: deletes up to `limit` non-PMI index rows of meetings that
    /// started before `before` (rows without a start time stay); returns how many.
    async fn delete_meetings_started_before(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<u64>;
    /// Housekeeping: deletes up to `limit` finished webhook deliveries (`success` or
    /// `failure`, their attempt summaries with them) last changed before `before`;
    /// returns how many. Pending deliveries (waiting for an attempt or a retry) stay.
    async fn delete_finished_webhook_deliveries_before(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<u64>;
    /// Housekeeping: deletes up to `limit` outbox events fanned out before `before`;
    /// returns how many. Events not yet fanned out stay, however old.
    async fn delete_dispatched_outbox_events_before(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<u64>;

    // Connection upkeep (issue 4 follow-ups): a wrong client secret keeps the users'
    // grants for a re-check, and the event log is pruned.
    /// Like [`Store::disconnect_connection`], but keeps the sealed refresh token
    /// (the access token is erased): for a failure of the app's own credentials
    /// (`invalid_client`), which leaves the user's grant alive, so a corrected
    /// client secret can bring the connection back ([`Store::reconnect_connection`]).
    async fn disconnect_connection_keeping_grant(
        &self,
        id: &str,
        fence: Option<i64>,
        failure: &FailureData,
        event: &NewConnectionEvent,
        outbox: Option<&dyn OutboxSource>,
    ) -> StoreResult<DisconnectOutcome>;
    /// Claims, as [`Store::claim_connection_lease`] does, up to `limit` disconnected
    /// connections of `app_id` whose `connection_failure_data.code` is `code`, that
    /// still hold a refresh token and whose lease is free or expired, in id order
    /// after `after` (a walk that visits each once). Returns the claimed rows.
    async fn claim_disconnected_connections(
        &self,
        app_id: &str,
        code: &str,
        after: Option<&str>,
        owner: &str,
        limit: u32,
        lease_for: std::time::Duration,
    ) -> StoreResult<Vec<ConnectionRow>>;
    /// Brings a disconnected connection claimed with
    /// [`Store::claim_disconnected_connections`] back: state `connected`, failure
    /// data cleared, `tokens` written, lease released, `event` and `outbox` in the
    /// same transaction — only `WHERE id AND fence AND state = 'disconnected'`.
    /// False (nothing written) when the fence moved on.
    async fn reconnect_connection(
        &self,
        id: &str,
        fence: i64,
        tokens: &RefreshedTokens,
        event: &NewConnectionEvent,
        outbox: Option<&dyn OutboxSource>,
    ) -> StoreResult<bool>;
    /// For a disconnected connection claimed with
    /// [`Store::claim_disconnected_connections`] whose grant turned out to be gone:
    /// replaces its failure data with `failure`, erases its tokens, releases the
    /// lease and writes `event`, under the fence. The state does not change, so no
    /// outbox row. False when the fence moved on.
    async fn erase_disconnected_grant(
        &self,
        id: &str,
        fence: i64,
        failure: &FailureData,
        event: &NewConnectionEvent,
    ) -> StoreResult<bool>;
    /// Claims the app whose re-check after a client secret change is due
    /// (`recheck_due_at <= now`, database clock; oldest due first; only `app_id` when
    /// given): sets `recheck_due_at = now + lease_for` and returns that claim. `None`
    /// when nothing is due (or it is claimed and the lease has not run out).
    /// Skips rows another process has locked, on PostgreSQL.
    async fn claim_app_recheck(
        &self,
        app_id: Option<&str>,
        lease_for: std::time::Duration,
    ) -> StoreResult<Option<AppRecheckClaim>>;
    /// Extends a claim to `now + lease_for` while `recheck_due_at` still equals
    /// `claim.due_at`; the new claim, or `None` when a newer change (or another
    /// process, after the lease ran out) took the row over.
    async fn renew_app_recheck(
        &self,
        claim: &AppRecheckClaim,
        lease_for: std::time::Duration,
    ) -> StoreResult<Option<AppRecheckClaim>>;
    /// Ends a claimed re-check while `recheck_due_at` still equals `claim.due_at`:
    /// clears it, or with `retry_in` makes it due again then (database clock). False
    /// (nothing written) when a newer change made it due meanwhile: that one stays.
    async fn finish_app_recheck(
        &self,
        claim: &AppRecheckClaim,
        retry_in: Option<std::time::Duration>,
    ) -> StoreResult<bool>;
    /// Event-log housekeeping, one step: for the next `connections` connections in
    /// id order after `after`, deletes the events whose kind is one of `kinds` and
    /// that are not among the connection's `keep_newest` newest events (any kind).
    /// Events of other kinds are never deleted.
    async fn prune_connection_events(
        &self,
        after: Option<&str>,
        connections: u32,
        keep_newest: u32,
        kinds: &[&str],
    ) -> StoreResult<EventPruning>;

    // Meeting sync and join tokens (issue 5; see `sync`).
    /// Claims up to `limit` connected connections with local recording on whose
    /// meeting sync is due (`next_sync_at` NULL or `<= now`) and whose refresh lease
    /// is free, oldest due first, skipping locked rows (`FOR UPDATE SKIP LOCKED` on
    /// PostgreSQL). The claim sets `next_sync_at = now + claim_for`; the returned
    /// rows carry that value, the fence of [`Store::complete_meeting_sync`] and
    /// [`Store::reschedule_meeting_sync`]. The refresh lease and `fence` are untouched.
    async fn claim_due_syncs(
        &self,
        limit: u32,
        claim_for: std::time::Duration,
    ) -> StoreResult<Vec<ConnectionRow>>;
    /// Writes a sync's result in one transaction, only while the connection is
    /// connected and its `next_sync_at` still equals `done.claim`: upserts
    /// `done.meetings` as `sync` rows of the connection (taking over another
    /// connection's `sync` row, or its `webhook` row when `host_confirmed`; never a
    /// `pmi` row), deletes the connection's `sync` rows not in the set (its `webhook`
    /// rows stay), replaces its PMI row and `pmi`/`personal_meeting_url` when
    /// `done.pmi` is given, sets `last_attempted_sync_at = last_successful_sync_at =
    /// now`, `next_sync_at = done.next_sync_at`, and writes `done.event`.
    async fn complete_meeting_sync(&self, done: &CompletedSync) -> StoreResult<SyncCommit>;
    /// A sync that did not complete: `next_sync_at = retry_at` (and
    /// `last_attempted_sync_at = now` when `attempted`), with `event` when given,
    /// only while `next_sync_at` still equals `claim`. False when the claim was void.
    async fn reschedule_meeting_sync(
        &self,
        id: &str,
        claim: DateTime<Utc>,
        retry_at: DateTime<Utc>,
        attempted: bool,
        event: Option<&NewConnectionEvent>,
    ) -> StoreResult<bool>;
    /// Connections of the project (of `app_id` only, when given) whose
    /// `personal_meeting_url` ends in `/my/{vanity}` or has `/my/{vanity}?` (so the
    /// path ends there), compared case-insensitively with `vanity` lowercased; at
    /// most 20, connected ones first, then newest first. The caller still parses
    /// each URL and compares the vanity.
    async fn connections_by_personal_link(
        &self,
        project_id: &str,
        app_id: Option<&str>,
        vanity: &str,
    ) -> StoreResult<Vec<ConnectionRow>>;

    // Outgoing webhooks (issue 6; see `webhooks`).
    /// Inserts a subscription unless the project already has `max_per_project`
    /// (then [`StoreError::Conflict`] naming [`WEBHOOK_SUBSCRIPTION_LIMIT`]).
    async fn insert_webhook_subscription(
        &self,
        row: &WebhookSubscriptionRow,
        max_per_project: u32,
    ) -> StoreResult<()>;
    async fn get_webhook_subscription(
        &self,
        project_id: &str,
        id: &str,
    ) -> StoreResult<Option<WebhookSubscriptionRow>>;
    async fn list_webhook_subscriptions(
        &self,
        project_id: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<WebhookSubscriptionRow>>;
    /// Applies `update` (and `updated_at = at`); `None` when there is no such row.
    async fn update_webhook_subscription(
        &self,
        project_id: &str,
        id: &str,
        update: &WebhookSubscriptionUpdate,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<WebhookSubscriptionRow>>;
    /// Deletes a subscription and its deliveries; false when there is no such row.
    async fn delete_webhook_subscription(&self, project_id: &str, id: &str) -> StoreResult<bool>;
    /// The secret the last rotation replaced, while it is still valid (`until > now`).
    async fn previous_webhook_secret(
        &self,
        project_id: &str,
    ) -> StoreResult<Option<PreviousWebhookSecret>>;
    /// Replaces the project's signing secret with `new` and keeps `previous` (the old
    /// one, sealed for its own slot) until `previous_until` — only while the stored
    /// secret still equals `current`. False when another rotation came first.
    async fn rotate_project_webhook_secret(
        &self,
        project_id: &str,
        current: &Sealed,
        new: &Sealed,
        previous: &Sealed,
        previous_until: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// In one transaction: takes up to `limit` undispatched outbox events, oldest
    /// first (skipping rows another process has locked, on PostgreSQL), writes one
    /// pending delivery due now per active subscription of the event's project with
    /// the event's trigger — each with a fresh UUID v4 `idempotency_key`, also put
    /// into its payload — and marks the events dispatched.
    async fn dispatch_outbox_events(&self, limit: u32) -> StoreResult<Dispatched>;
    /// Claims up to `limit` pending deliveries that are due and not leased, oldest
    /// due first: `lease_owner = owner`, `lease_until = now + lease_for`, `fence + 1`.
    async fn claim_due_webhook_deliveries(
        &self,
        owner: &str,
        limit: u32,
        lease_for: std::time::Duration,
    ) -> StoreResult<Vec<WebhookDeliveryRow>>;
    /// Writes an attempt's result, only while `fence` is current. False otherwise.
    async fn record_webhook_attempt(
        &self,
        idempotency_key: &str,
        fence: i64,
        attempt: &DeliveryAttempt,
    ) -> StoreResult<bool>;
    /// A subscription's deliveries, newest first, optionally of one status.
    async fn list_webhook_deliveries(
        &self,
        project_id: &str,
        subscription_id: &str,
        status: Option<DeliveryStatus>,
        page: &PageRequest,
    ) -> StoreResult<Page<WebhookDeliveryRow>>;
    /// Puts a delivery back to pending, due now, lease released (`fence + 1`, so an
    /// attempt in flight writes nothing). False when there is no such row.
    async fn resend_webhook_delivery(
        &self,
        project_id: &str,
        idempotency_key: &str,
    ) -> StoreResult<bool>;

    // Operations (issue 6): queue depths for `/metrics`, read at scrape time.
    /// Pending deliveries due now (database clock; leased ones included) and outbox
    /// events not yet dispatched, across all projects: two indexed counts.
    async fn webhook_queue_depths(&self) -> StoreResult<WebhookQueueDepths>;
}

/// Every sealed column, in the order [`Store::sealed_fields`] walks them (sorted by
/// table, then column). The names are also the vault slots' `table` and `column`.
pub const SEALED_COLUMNS: &[(&str, &str)] = &[
    ("projects", "previous_webhook_secret"),
    ("projects", "webhook_secret"),
    ("zoom_oauth_apps", "client_secret"),
    ("zoom_oauth_apps", "webhook_secret"),
    ("zoom_oauth_connections", "access_token"),
    ("zoom_oauth_connections", "refresh_token"),
];

/// Opens the database named by `database_url`: `postgres://…` or `postgresql://…`
/// for PostgreSQL; `sqlite:…` or a plain file path for SQLite (the file and its
/// directory are created when missing). Does not migrate.
pub async fn open_store(database_url: &str) -> StoreResult<std::sync::Arc<dyn Store>> {
    if is_postgres_url(database_url) {
        Ok(std::sync::Arc::new(
            postgres::PostgresStore::connect(database_url).await?,
        ))
    } else {
        Ok(std::sync::Arc::new(
            sqlite::SqliteStore::connect(database_url).await?,
        ))
    }
}

/// Whether `database_url` names a PostgreSQL database (otherwise it is SQLite).
pub fn is_postgres_url(database_url: &str) -> bool {
    let lower = database_url.trim_start().to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// A named uniqueness rule: what [`StoreError::Conflict`] reports. PostgreSQL names
/// its constraints and indexes exactly so; SQLite reports the columns instead.
struct UniqueRule {
    name: &'static str,
    table: &'static str,
    columns: &'static [&'static str],
}

const UNIQUE_RULES: &[UniqueRule] = &[
    UniqueRule {
        name: "projects_pkey",
        table: "projects",
        columns: &["id"],
    },
    UniqueRule {
        name: "projects_name",
        table: "projects",
        columns: &["name"],
    },
    UniqueRule {
        name: "api_keys_pkey",
        table: "api_keys",
        columns: &["id"],
    },
    UniqueRule {
        name: "api_keys_key_hash",
        table: "api_keys",
        columns: &["key_hash"],
    },
    UniqueRule {
        name: "apps_pkey",
        table: "zoom_oauth_apps",
        columns: &["id"],
    },
    UniqueRule {
        name: "apps_project_client_id",
        table: "zoom_oauth_apps",
        columns: &["project_id", "client_id"],
    },
    UniqueRule {
        name: "connections_pkey",
        table: "zoom_oauth_connections",
        columns: &["id"],
    },
    UniqueRule {
        name: "connections_app_user_id",
        table: "zoom_oauth_connections",
        columns: &["app_id", "user_id"],
    },
    UniqueRule {
        name: "connections_app_deduplication_key",
        table: "zoom_oauth_connections",
        columns: &["app_id", "deduplication_key"],
    },
    UniqueRule {
        name: "meetings_app_meeting_id",
        table: "zoom_meetings",
        columns: &["app_id", "meeting_id"],
    },
    UniqueRule {
        name: "webhook_subscriptions_pkey",
        table: "webhook_subscriptions",
        columns: &["id"],
    },
    UniqueRule {
        name: "webhook_deliveries_pkey",
        table: "webhook_deliveries",
        columns: &["idempotency_key"],
    },
    UniqueRule {
        name: "webhook_receipts_app_dedupe_key",
        table: "zoom_webhook_receipts",
        columns: &["app_id", "dedupe_key"],
    },
];

/// The rule a PostgreSQL constraint name stands for.
fn unique_rule_by_name(name: &str) -> Option<&'static str> {
    UNIQUE_RULES.iter().find(|r| r.name == name).map(|r| r.name)
}

/// The rule a SQLite message (`UNIQUE constraint failed: t.a, t.b`) stands for.
fn unique_rule_by_sqlite_message(message: &str) -> Option<&'static str> {
    let columns = message.split_once("constraint failed: ")?.1.trim();
    UNIQUE_RULES
        .iter()
        .find(|r| {
            let mut expected = r.columns.iter().map(|c| format!("{}.{c}", r.table));
            let mut actual = columns.split(',').map(str::trim);
            loop {
                match (expected.next(), actual.next()) {
                    (None, None) => return true,
                    (Some(e), Some(a)) if e == a => {}
                    _ => return false,
                }
            }
        })
        .map(|r| r.name)
}

/// Turns a unique violation into [`StoreError::Conflict`]; other errors pass through.
fn map_unique_violation(err: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &err {
        if db.is_unique_violation() {
            let rule = match db.constraint() {
                Some(name) => unique_rule_by_name(name),
                None => unique_rule_by_sqlite_message(db.message()),
            };
            return StoreError::Conflict {
                constraint: rule.unwrap_or("unique"),
            };
        }
    }
    StoreError::Database(err)
}

fn is_foreign_key_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_foreign_key_violation())
}

/// Timestamps are stored with microsecond precision on both databases; values are
/// truncated (not rounded) on the way in so both agree.
fn truncate_to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

/// Which sealed column comes at or after `after`, by position in [`SEALED_COLUMNS`].
fn sealed_column_index(table: &str, column: &str) -> Option<usize> {
    SEALED_COLUMNS
        .iter()
        .position(|(t, c)| *t == table && *c == column)
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

    #[test]
    fn sealed_columns_are_sorted() {
        let mut sorted = SEALED_COLUMNS.to_vec();
        sorted.sort();
        assert_eq!(sorted, SEALED_COLUMNS);
    }
}
