//! Zoom OAuth apps (DESIGN.md §3 `zoom_oauth_app`): their secrets, the Zoom webhook
//! timestamps, and the re-check a client secret change schedules.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::sql::{after, before, keyset, ots, page_clause, page_of, ts, Lock, Row};
use super::{Page, PageRequest, Sealed, StoreResult, WebhookVerification};

text_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum AppKind("app kind") {
        UserLevel = "user_level",
        AccountLevel = "account_level",
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
    /// When Zoom last validated the app's event notification endpoint URL.
    pub webhook_last_validation_at: Option<DateTime<Utc>>,
    /// Filled by reads (`get_app`, `list_apps`); ignored by writes.
    pub connection_count: i64,
}

/// Filters of an app list; `None` matches everything, ranges are inclusive.
#[derive(Debug, Clone, Default)]
pub struct AppFilter {
    pub client_id: Option<String>,
    pub kind: Option<AppKind>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub validated_after: Option<DateTime<Utc>>,
    pub validated_before: Option<DateTime<Utc>>,
}

/// One line of an app's log ([`AppStore::list_app_events`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppEventRow {
    pub id: i64,
    pub app_id: String,
    pub kind: String,
    pub message: String,
    pub created_at: DateTime<Utc>,
}

/// Filters of the project's app log; ranges are inclusive.
#[derive(Debug, Clone, Default)]
pub struct AppEventFilter {
    pub app_id: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
}

/// A change to an app's secrets. `None` leaves a field alone;
/// `webhook_secret: Some(None)` removes the webhook secret.
#[derive(Debug, Clone, Default)]
pub struct AppSecretsUpdate {
    pub client_secret: Option<Sealed>,
    pub webhook_secret: Option<Option<Sealed>>,
}

/// A worker's claim on an app's due re-check ([`AppStore::claim_app_recheck`]):
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

store_trait! {
    pub trait AppStore {
        /// `Conflict { constraint: "apps_project_client_id" }` on a duplicate client_id.
        async fn insert_app(&self, app: &AppRow) -> StoreResult<()> {
            sql!(execute &mut self.conn().await?,
                "INSERT INTO zoom_oauth_apps (id, project_id, client_id, client_secret, \
                 webhook_secret, kind, created_at, updated_at, \
                 last_verified_webhook_received_at, last_unverified_webhook_received_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &app.id, &app.project_id, &app.client_id, &app.client_secret.0,
                app.webhook_secret.as_ref().map(|s| &s.0), app.kind.as_str(), ts(app.created_at),
                ts(app.updated_at), ots(app.last_verified_webhook_received_at),
                ots(app.last_unverified_webhook_received_at))?;
            Ok(())
        }

        /// The project's apps matching `filter`, newest first.
        async fn list_apps_filtered(&self, project_id: &str, filter: &AppFilter,
            page: &PageRequest) -> StoreResult<Page<AppRow>> {
            sql!(page &mut self.conn().await?, app_from_row, page,
                &format!("SELECT {APP_COLUMNS}, {CONNECTION_COUNT} FROM zoom_oauth_apps a \
                          WHERE a.project_id = $1 AND ($2 IS NULL OR a.client_id = $2) \
                          AND ($3 IS NULL OR a.kind = $3) \
                          AND ($4 IS NULL OR a.created_at >= $4) \
                          AND ($5 IS NULL OR a.created_at <= $5) \
                          AND ($6 IS NULL OR a.webhook_last_validation_at >= $6) \
                          AND ($7 IS NULL OR a.webhook_last_validation_at <= $7){}",
                         page_clause(page, "a.created_at, a.id", 8)),
                project_id, &filter.client_id, filter.kind.map(AppKind::as_str),
                ots(filter.created_after), ots(filter.created_before),
                ots(filter.validated_after), ots(filter.validated_before))
        }

        /// Records that Zoom validated the app's event notification endpoint URL now
        /// (database clock), with a line in the app's log.
        async fn record_app_url_validation(&self, project_id: &str, app_id: &str,
            message: &str) -> StoreResult<()> {
            let now = self.now().await?;
            let mut tx = self.begin().await?;
            sql!(execute &mut tx,
                "UPDATE zoom_oauth_apps SET webhook_last_validation_at = $1 WHERE id = $2",
                ts(now), app_id)?;
            sql!(execute &mut tx,
                "INSERT INTO app_events (project_id, app_id, kind, message, created_at) \
                 VALUES ($1, $2, 'url_validated', $3, $4)",
                project_id, app_id, message, ts(now))?;
            tx.commit().await?;
            Ok(())
        }

        /// Adds a line to the app's log (database clock). With `once_per`, only when
        /// the log has no line of this `kind` newer than that; true when written.
        async fn add_app_event(&self, project_id: &str, app_id: &str, kind: &str, message: &str,
            once_per: Option<Duration>) -> StoreResult<bool> {
            let now = self.now().await?;
            let since = once_per.map(|d| before(now, d));
            sql!(one_changed &mut self.conn().await?,
                "INSERT INTO app_events (project_id, app_id, kind, message, created_at) \
                 SELECT $1, $2, $3, $4, $5 WHERE $6 IS NULL OR NOT EXISTS (\
                     SELECT 1 FROM app_events WHERE app_id = $2 AND kind = $3 \
                     AND created_at > $6)",
                project_id, app_id, kind, message, ts(now), since)
        }

        /// The project's app log matching `filter`, newest first; cursors carry the
        /// line's id.
        async fn list_app_events(&self, project_id: &str, filter: &AppEventFilter,
            page: &PageRequest) -> StoreResult<Page<AppEventRow>> {
            let (cmp, order) = keyset(page);
            let after_id = page.cursor.as_ref().map(|c| {
                super::parse_event_cursor_id(&c.id).ok_or_else(|| {
                    super::StoreError::Database(sqlx::Error::InvalidArgument(format!(
                        "app event cursor id {:?} is not a number", c.id)))
                })
            }).transpose()?;
            let items = sql!(all &mut self.conn().await?, app_event_from_row,
                &format!("SELECT id, app_id, kind, message, created_at FROM app_events \
                          WHERE project_id = $1 AND ($2 IS NULL OR app_id = $2) \
                          AND ($3 IS NULL OR created_at >= $3) \
                          AND ($4 IS NULL OR created_at <= $4) \
                          AND ($5 IS NULL OR id {cmp} $5) ORDER BY id {order} LIMIT $6"),
                project_id, &filter.app_id, ots(filter.created_after),
                ots(filter.created_before), after_id, i64::from(page.limit) + 1)?;
            Ok(page_of(items, page))
        }

        /// Deletes app log lines older than `before`, at most `limit`; how many.
        async fn prune_app_events(&self, before: DateTime<Utc>, limit: u32) -> StoreResult<u64> {
            sql!(execute &mut self.conn().await?,
                "DELETE FROM app_events WHERE id IN (SELECT id FROM app_events \
                 WHERE created_at < $1 ORDER BY created_at LIMIT $2)",
                ts(before), i64::from(limit))
        }

        async fn get_app(&self, project_id: &str, id: &str) -> StoreResult<Option<AppRow>> {
            sql!(optional &mut self.conn().await?, app_from_row,
                &format!("SELECT {APP_COLUMNS}, {CONNECTION_COUNT} FROM zoom_oauth_apps a \
                          WHERE a.project_id = $1 AND a.id = $2"),
                project_id, id)
        }

        async fn list_apps(&self, project_id: &str, page: &PageRequest)
            -> StoreResult<Page<AppRow>> {
            self.list_apps_filtered(project_id, &AppFilter::default(), page).await
        }

        async fn count_apps(&self, project_id: &str) -> StoreResult<i64> {
            sql!(scalar_one &mut self.conn().await?,
                "SELECT COUNT(*) FROM zoom_oauth_apps WHERE project_id = $1", project_id)
        }

        /// Returns the updated row, or `None` when the app does not exist in the project.
        /// A new client secret also makes the app's re-check due now (database clock),
        /// in the same statement ([`AppStore::claim_app_recheck`]).
        async fn update_app_secrets(&self, project_id: &str, id: &str, update: &AppSecretsUpdate,
            at: DateTime<Utc>) -> StoreResult<Option<AppRow>> {
            let now = self.now().await?;
            let mut tx = self.begin().await?;
            let webhook_secret = update.webhook_secret.as_ref().and_then(|w| w.as_ref());
            let updated = sql!(execute &mut tx,
                "UPDATE zoom_oauth_apps SET \
                 client_secret = CASE WHEN $1 THEN $2 ELSE client_secret END, \
                 webhook_secret = CASE WHEN $3 THEN $4 ELSE webhook_secret END, \
                 recheck_due_at = CASE WHEN $1 THEN $8 ELSE recheck_due_at END, \
                 updated_at = $5 WHERE project_id = $6 AND id = $7",
                update.client_secret.is_some(), update.client_secret.as_ref().map(|s| &s.0),
                update.webhook_secret.is_some(), webhook_secret.map(|s| &s.0), ts(at), project_id,
                id, ts(now))?;
            if updated == 0 {
                return Ok(None);
            }
            let row = sql!(one &mut tx, app_from_row,
                &format!("SELECT {APP_COLUMNS}, {CONNECTION_COUNT} FROM zoom_oauth_apps a \
                          WHERE a.project_id = $1 AND a.id = $2"),
                project_id, id)?;
            tx.commit().await?;
            Ok(Some(row))
        }

        /// Deletes the app only if it has no connections, atomically.
        async fn delete_app(&self, project_id: &str, id: &str) -> StoreResult<DeleteAppOutcome> {
            let mut tx = self.begin().await?;
            // The row lock conflicts with the key-share lock a connection insert takes on
            // its app, so no connection can appear between the check and the delete.
            let found: Option<String> = sql!(scalar_optional &mut tx,
                &format!("SELECT id FROM zoom_oauth_apps WHERE project_id = $1 AND id = $2{}",
                         self.pool.lock(Lock::Update)),
                project_id, id)?;
            if found.is_none() {
                return Ok(DeleteAppOutcome::NotFound);
            }
            let has_connections: bool = sql!(scalar_one &mut tx,
                "SELECT EXISTS (SELECT 1 FROM zoom_oauth_connections WHERE app_id = $1)", id)?;
            if has_connections {
                return Ok(DeleteAppOutcome::HasConnections);
            }
            let deleted = sql!(execute &mut tx,
                "DELETE FROM zoom_oauth_apps WHERE project_id = $1 AND id = $2", project_id, id);
            if let Err(e) = deleted {
                return match super::foreign_key_not_found(e) {
                    super::StoreError::NotFound => Ok(DeleteAppOutcome::HasConnections),
                    e => Err(e),
                };
            }
            tx.commit().await?;
            Ok(DeleteAppOutcome::Deleted)
        }

        /// Unscoped read for webhook ingress, which knows only the app id in its URL.
        async fn app_by_id(&self, id: &str) -> StoreResult<Option<AppRow>> {
            sql!(optional &mut self.conn().await?, app_from_row,
                &format!("SELECT {APP_COLUMNS}, {NO_CONNECTION_COUNT} FROM zoom_oauth_apps a \
                          WHERE a.id = $1"),
                id)
        }

        /// Apps that a webhook at the shared URL (no app in it) may be for, by id:
        /// with `account_id`, apps with a webhook secret and a connection in that Zoom
        /// account; without, apps with a webhook secret, oldest first. At most `limit`.
        async fn apps_for_shared_webhook(&self, account_id: Option<&str>, limit: u32)
            -> StoreResult<Vec<String>> {
            let limit = i64::from(limit);
            match account_id {
                Some(account) => sql!(scalar_all &mut self.conn().await?,
                    "SELECT DISTINCT c.app_id FROM zoom_oauth_connections c \
                     JOIN zoom_oauth_apps a ON a.id = c.app_id \
                     WHERE c.account_id = $1 AND a.webhook_secret IS NOT NULL \
                     ORDER BY c.app_id LIMIT $2",
                    account, limit),
                None => sql!(scalar_all &mut self.conn().await?,
                    "SELECT id FROM zoom_oauth_apps WHERE webhook_secret IS NOT NULL \
                     ORDER BY created_at, id LIMIT $1",
                    limit),
            }
        }

        /// Moves the app's `last_verified_webhook_received_at` or
        /// `last_unverified_webhook_received_at` forward to `at` (never back). Callers
        /// throttle how often they call it.
        async fn record_app_webhook_received(&self, app_id: &str, which: WebhookVerification,
            at: DateTime<Utc>) -> StoreResult<()> {
            let column = webhook_timestamp_column(which);
            sql!(execute &mut self.conn().await?,
                &format!("UPDATE zoom_oauth_apps SET {column} = $1 \
                          WHERE id = $2 AND ({column} IS NULL OR {column} < $1)"),
                ts(at), app_id)?;
            Ok(())
        }

        /// Flags the app's Zoom webhooks as stopped since `since`, unless already
        /// flagged; true when this call flagged it.
        async fn flag_app_webhook_events_stale(&self, app_id: &str, since: DateTime<Utc>)
            -> StoreResult<bool> {
            sql!(one_changed &mut self.conn().await?,
                "UPDATE zoom_oauth_apps SET webhook_events_stale_since = $1 \
                 WHERE id = $2 AND webhook_events_stale_since IS NULL",
                ts(since), app_id)
        }

        /// Clears the flag (a verified webhook arrived); true when it was set.
        async fn clear_app_webhook_events_stale(&self, app_id: &str) -> StoreResult<bool> {
            sql!(one_changed &mut self.conn().await?,
                "UPDATE zoom_oauth_apps SET webhook_events_stale_since = NULL \
                 WHERE id = $1 AND webhook_events_stale_since IS NOT NULL",
                app_id)
        }

        /// Claims the app whose re-check after a client secret change is due
        /// (`recheck_due_at <= now`, database clock; oldest due first; only `app_id` when
        /// given): sets `recheck_due_at = now + lease_for` and returns that claim. `None`
        /// when nothing is due (or it is claimed and the lease has not run out).
        /// Skips rows another process has locked, on PostgreSQL.
        async fn claim_app_recheck(&self, app_id: Option<&str>, lease_for: Duration)
            -> StoreResult<Option<AppRecheckClaim>> {
            let now = self.now().await?;
            let mut tx = self.begin().await?;
            let claim = sql!(optional &mut tx, claim_from_row,
                &format!("WITH due(due_id) AS MATERIALIZED (\
                              SELECT id FROM zoom_oauth_apps \
                              WHERE recheck_due_at <= $1 AND ($2 IS NULL OR id = $2) \
                              ORDER BY recheck_due_at LIMIT 1{}) \
                          UPDATE zoom_oauth_apps SET recheck_due_at = $3 \
                          FROM due WHERE id = due.due_id \
                          RETURNING id AS app_id, recheck_due_at AS due_at",
                         self.pool.lock(Lock::SkipLocked)),
                ts(now), app_id, after(now, lease_for))?;
            tx.commit().await?;
            Ok(claim)
        }

        /// Extends a claim to `now + lease_for` while `recheck_due_at` still equals
        /// `claim.due_at`; the new claim, or `None` when a newer change (or another
        /// process, after the lease ran out) took the row over.
        async fn renew_app_recheck(&self, claim: &AppRecheckClaim, lease_for: Duration)
            -> StoreResult<Option<AppRecheckClaim>> {
            let now = self.now().await?;
            sql!(optional &mut self.conn().await?, claim_from_row,
                "UPDATE zoom_oauth_apps SET recheck_due_at = $1 \
                 WHERE id = $2 AND recheck_due_at = $3 \
                 RETURNING id AS app_id, recheck_due_at AS due_at",
                after(now, lease_for), &claim.app_id, ts(claim.due_at))
        }

        /// Ends a claimed re-check while `recheck_due_at` still equals `claim.due_at`:
        /// clears it, or with `retry_in` makes it due again then (database clock). False
        /// (nothing written) when a newer change made it due meanwhile: that one stays.
        async fn finish_app_recheck(&self, claim: &AppRecheckClaim, retry_in: Option<Duration>)
            -> StoreResult<bool> {
            let now = self.now().await?;
            sql!(one_changed &mut self.conn().await?,
                "UPDATE zoom_oauth_apps SET recheck_due_at = $1 \
                 WHERE id = $2 AND recheck_due_at = $3",
                retry_in.map(|d| after(now, d)), &claim.app_id, ts(claim.due_at))
        }
    }
}

const APP_COLUMNS: &str = "a.id, a.project_id, a.client_id, a.client_secret, a.webhook_secret, \
     a.kind, a.created_at, a.updated_at, a.last_verified_webhook_received_at, \
     a.last_unverified_webhook_received_at, a.webhook_events_stale_since, \
     a.webhook_last_validation_at";
const CONNECTION_COUNT: &str =
    "(SELECT COUNT(*) FROM zoom_oauth_connections c WHERE c.app_id = a.id) AS connection_count";
/// Webhook ingress does not need the count, which costs a scan of the connections.
const NO_CONNECTION_COUNT: &str = "CAST(0 AS BIGINT) AS connection_count";

fn app_from_row(row: &impl Row) -> StoreResult<AppRow> {
    from_row!(row => AppRow {
        id, project_id, client_id, client_secret, webhook_secret, kind, created_at, updated_at,
        last_verified_webhook_received_at, last_unverified_webhook_received_at,
        webhook_events_stale_since, webhook_last_validation_at, connection_count,
    })
}

fn app_event_from_row(row: &impl Row) -> StoreResult<AppEventRow> {
    from_row!(row => AppEventRow { id, app_id, kind, message, created_at })
}

fn claim_from_row(row: &impl Row) -> StoreResult<AppRecheckClaim> {
    from_row!(row => AppRecheckClaim { app_id, due_at })
}

fn webhook_timestamp_column(which: WebhookVerification) -> &'static str {
    match which {
        WebhookVerification::Verified => "last_verified_webhook_received_at",
        WebhookVerification::Unverified => "last_unverified_webhook_received_at",
    }
}
