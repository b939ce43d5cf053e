//! Row and write types for outgoing webhooks: subscriptions, deliveries and the
//! project's previous signing secret (DESIGN.md §3, §4 "Outgoing webhooks", §6).
//! The rules are in `crate::domain::webhooks` and `crate::workers::webhook_delivery`.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::events::{outbox_event_from_row, OUTBOX_COLUMNS};
use super::sql::{after, ots, page_clause, pair, ts, Lock, Row};
use super::{Page, PageRequest, Sealed, StoreError, StoreResult};

/// The rule [`super::StoreError::Conflict`] names when a project already has the
/// most subscriptions [`WebhookStore::insert_webhook_subscription`] allows.
pub const WEBHOOK_SUBSCRIPTION_LIMIT: &str = "webhook_subscriptions_per_project";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSubscriptionRow {
    /// `webhook_…`
    pub id: String,
    pub project_id: String,
    pub url: String,
    pub triggers: Vec<String>,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A change to a subscription; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct WebhookSubscriptionUpdate {
    pub url: Option<String>,
    pub triggers: Option<Vec<String>>,
    pub is_active: Option<bool>,
}

text_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum DeliveryStatus("webhook delivery status") {
        Pending = "pending",
        Success = "success",
        Failure = "failure",
    }
}

#[derive(Debug, Clone)]
pub struct WebhookDeliveryRow {
    /// A UUID v4; also in `payload.idempotency_key` and the `webhook-id` header.
    pub idempotency_key: String,
    pub project_id: String,
    pub subscription_id: String,
    pub trigger: String,
    /// What is sent, `idempotency_key` included.
    pub payload: serde_json::Value,
    pub status: DeliveryStatus,
    pub attempt_count: i64,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub succeeded_at: Option<DateTime<Utc>>,
    /// A JSON array of attempt summaries, oldest first (bounded by the writer).
    pub responses: serde_json::Value,
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub fence: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The result of one delivery attempt, written by
/// [`WebhookStore::record_webhook_attempt`]: `attempt_count + 1`, `last_attempt_at
/// = now`, the lease released.
#[derive(Debug, Clone)]
pub struct DeliveryAttempt {
    /// `Success` sets `succeeded_at = now`; `Pending` needs `retry_in`.
    pub status: DeliveryStatus,
    /// For `Pending`: `next_attempt_at = now + retry_in`.
    pub retry_in: Option<std::time::Duration>,
    /// The whole new list of attempt summaries.
    pub responses: serde_json::Value,
}

/// What one [`WebhookStore::dispatch_outbox_events`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dispatched {
    /// Outbox events marked dispatched.
    pub events: u64,
    /// Delivery rows written.
    pub deliveries: u64,
}

/// What [`WebhookStore::webhook_queue_depths`] counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookQueueDepths {
    /// Pending deliveries whose next attempt is due.
    pub deliveries_due: u64,
    /// Outbox events not yet fanned out.
    pub outbox_undispatched: u64,
}

/// The signing secret replaced by the last rotation, still signing until `until`.
#[derive(Debug, Clone)]
pub struct PreviousWebhookSecret {
    /// Sealed under slot (`projects`, `previous_webhook_secret`, project id).
    pub secret: Sealed,
    pub until: DateTime<Utc>,
}

/// The payload a delivery sends: the outbox event's payload with its own key.
fn delivery_payload(event_payload: &serde_json::Value, key: &str) -> serde_json::Value {
    let mut payload = event_payload.clone();
    if let Some(object) = payload.as_object_mut() {
        object.insert(
            "idempotency_key".to_owned(),
            serde_json::Value::String(key.to_owned()),
        );
    }
    payload
}

store_trait! {
    pub trait WebhookStore {
        /// Inserts a subscription unless the project already has `max_per_project`
        /// (then [`StoreError::Conflict`] naming [`WEBHOOK_SUBSCRIPTION_LIMIT`]).
        async fn insert_webhook_subscription(&self, row: &WebhookSubscriptionRow,
            max_per_project: u32) -> StoreResult<()> {
            let mut tx = self.begin().await?;
            // The project row's lock serialises concurrent creations for one project.
            let _: Option<String> = sql!(scalar_optional &mut tx,
                &format!("SELECT id FROM projects WHERE id = $1{}", self.pool.lock(Lock::Update)),
                &row.project_id)?;
            let count: i64 = sql!(scalar_one &mut tx,
                "SELECT COUNT(*) FROM webhook_subscriptions WHERE project_id = $1",
                &row.project_id)?;
            if count >= i64::from(max_per_project) {
                return Err(StoreError::Conflict {
                    constraint: WEBHOOK_SUBSCRIPTION_LIMIT,
                });
            }
            sql!(execute &mut tx,
                &format!("INSERT INTO webhook_subscriptions ({SUBSCRIPTION_COLUMNS}) \
                          VALUES ($1, $2, $3, $4, $5, $6, $7)"),
                &row.id, &row.project_id, &row.url, triggers_json(&row.triggers), row.is_active,
                ts(row.created_at), ts(row.updated_at))?;
            tx.commit().await
        }

        async fn get_webhook_subscription(&self, project_id: &str, id: &str)
            -> StoreResult<Option<WebhookSubscriptionRow>> {
            sql!(optional &mut self.conn().await?, subscription_from_row,
                &format!("SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions \
                          WHERE project_id = $1 AND id = $2"),
                project_id, id)
        }

        async fn list_webhook_subscriptions(&self, project_id: &str, page: &PageRequest)
            -> StoreResult<Page<WebhookSubscriptionRow>> {
            sql!(page &mut self.conn().await?, subscription_from_row, page,
                &format!("SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions \
                          WHERE project_id = $1{}", page_clause(page, "created_at, id", 2)),
                project_id)
        }

        /// Applies `update` (and `updated_at = at`); `None` when there is no such row.
        async fn update_webhook_subscription(&self, project_id: &str, id: &str,
            update: &WebhookSubscriptionUpdate, at: DateTime<Utc>)
            -> StoreResult<Option<WebhookSubscriptionRow>> {
            sql!(optional &mut self.conn().await?, subscription_from_row,
                &format!("UPDATE webhook_subscriptions SET url = COALESCE($1, url), \
                          triggers = COALESCE($2, triggers), is_active = COALESCE($3, is_active), \
                          updated_at = $4 WHERE project_id = $5 AND id = $6 \
                          RETURNING {SUBSCRIPTION_COLUMNS}"),
                update.url.as_deref(), update.triggers.as_deref().map(triggers_json),
                update.is_active, ts(at), project_id, id)
        }

        /// Deletes a subscription and its deliveries; false when there is no such row.
        async fn delete_webhook_subscription(&self, project_id: &str, id: &str)
            -> StoreResult<bool> {
            sql!(one_changed &mut self.conn().await?,
                "DELETE FROM webhook_subscriptions WHERE project_id = $1 AND id = $2",
                project_id, id)
        }

        /// The secret the last rotation replaced, while it is still valid (`until > now`).
        async fn previous_webhook_secret(&self, project_id: &str)
            -> StoreResult<Option<PreviousWebhookSecret>> {
            let now = self.now().await?;
            sql!(optional &mut self.conn().await?, previous_secret_from_row,
                "SELECT previous_webhook_secret AS secret, previous_webhook_secret_until AS until \
                 FROM projects WHERE id = $1 AND previous_webhook_secret IS NOT NULL \
                 AND previous_webhook_secret_until > $2",
                project_id, ts(now))
        }

        /// Replaces the project's signing secret with `new` and keeps `previous` (the old
        /// one, sealed for its own slot) until `previous_until` — only while the stored
        /// secret still equals `current`. False when another rotation came first.
        async fn rotate_project_webhook_secret(&self, project_id: &str, current: &Sealed,
            new: &Sealed, previous: &Sealed, previous_until: DateTime<Utc>) -> StoreResult<bool> {
            sql!(one_changed &mut self.conn().await?,
                "UPDATE projects SET webhook_secret = $1, previous_webhook_secret = $2, \
                 previous_webhook_secret_until = $3 WHERE id = $4 AND webhook_secret = $5",
                &new.0, &previous.0, ts(previous_until), project_id, &current.0)
        }

        /// In one transaction: takes up to `limit` undispatched outbox events, oldest
        /// first (skipping rows another process has locked, on PostgreSQL), writes one
        /// pending delivery due now per active subscription of the event's project with
        /// the event's trigger — each with a fresh UUID v4 `idempotency_key`, also put
        /// into its payload — and marks the events dispatched.
        async fn dispatch_outbox_events(&self, limit: u32) -> StoreResult<Dispatched> {
            let mut tx = self.begin().await?;
            let now = self.now().await?;
            let events = sql!(all &mut tx, outbox_event_from_row,
                &format!("SELECT {OUTBOX_COLUMNS} FROM outbox_events WHERE dispatched_at IS NULL \
                          ORDER BY created_at, id LIMIT $1{}", self.pool.lock(Lock::SkipLocked)),
                i64::from(limit))?;
            let mut done = Dispatched::default();
            for event in &events {
                let subscriptions = sql!(all &mut tx, subscription_from_row,
                    &format!("SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions \
                              WHERE project_id = $1 AND is_active ORDER BY created_at, id"),
                    &event.project_id)?;
                for subscription in subscriptions
                    .iter()
                    .filter(|s| s.triggers.contains(&event.trigger))
                {
                    let key = uuid::Uuid::new_v4().to_string();
                    sql!(execute &mut tx,
                        "INSERT INTO webhook_deliveries (idempotency_key, project_id, \
                         subscription_id, \"trigger\", payload, status, attempt_count, \
                         next_attempt_at, responses, fence, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, '[]', 0, $6, $6)",
                        &key, &event.project_id, &subscription.id, &event.trigger,
                        delivery_payload(&event.payload, &key), ts(now))?;
                    done.deliveries += 1;
                }
                sql!(execute &mut tx, "UPDATE outbox_events SET dispatched_at = $1 WHERE id = $2",
                    ts(now), &event.id)?;
                done.events += 1;
            }
            tx.commit().await?;
            Ok(done)
        }

        /// Claims up to `limit` pending deliveries that are due and not leased, oldest
        /// due first: `lease_owner = owner`, `lease_until = now + lease_for`, `fence + 1`.
        async fn claim_due_webhook_deliveries(&self, owner: &str, limit: u32, lease_for: Duration)
            -> StoreResult<Vec<WebhookDeliveryRow>> {
            let now = self.now().await?;
            let mut tx = self.begin().await?;
            let mut claimed = sql!(all &mut tx, delivery_from_row,
                &format!("WITH due(due_key) AS MATERIALIZED (\
                              SELECT idempotency_key FROM webhook_deliveries \
                              WHERE status = 'pending' AND next_attempt_at <= $1 \
                              AND (lease_until IS NULL OR lease_until < $1) \
                              ORDER BY next_attempt_at LIMIT $2{}) \
                          UPDATE webhook_deliveries SET lease_owner = $3, lease_until = $4, \
                          fence = fence + 1 FROM due WHERE idempotency_key = due.due_key \
                          RETURNING {DELIVERY_COLUMNS}",
                         self.pool.lock(Lock::SkipLocked)),
                ts(now), i64::from(limit), owner, after(now, lease_for))?;
            tx.commit().await?;
            claimed.sort_by_key(|d| d.next_attempt_at);
            Ok(claimed)
        }

        /// Writes an attempt's result, only while `fence` is current. False otherwise.
        async fn record_webhook_attempt(&self, idempotency_key: &str, fence: i64,
            attempt: &DeliveryAttempt) -> StoreResult<bool> {
            let now = self.now().await?;
            let next = (attempt.status == DeliveryStatus::Pending)
                .then(|| after(now, attempt.retry_in.unwrap_or_default()));
            let succeeded = (attempt.status == DeliveryStatus::Success).then_some(now);
            sql!(one_changed &mut self.conn().await?,
                "UPDATE webhook_deliveries SET status = $1, attempt_count = attempt_count + 1, \
                 next_attempt_at = $2, last_attempt_at = $3, \
                 succeeded_at = COALESCE($4, succeeded_at), responses = $5, \
                 lease_owner = NULL, lease_until = NULL, updated_at = $3 \
                 WHERE idempotency_key = $6 AND fence = $7",
                attempt.status.as_str(), next, ts(now), ots(succeeded), &attempt.responses,
                idempotency_key, fence)
        }

        /// A subscription's deliveries, newest first, optionally of one status.
        async fn list_webhook_deliveries(&self, project_id: &str, subscription_id: &str,
            status: Option<DeliveryStatus>, page: &PageRequest)
            -> StoreResult<Page<WebhookDeliveryRow>> {
            sql!(page &mut self.conn().await?, delivery_from_row, page,
                &format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
                          WHERE project_id = $1 AND subscription_id = $2 \
                          AND ($3 IS NULL OR status = $3){}",
                         page_clause(page, "created_at, idempotency_key", 4)),
                project_id, subscription_id, status.map(DeliveryStatus::as_str))
        }

        /// Puts a delivery back to pending, due now, lease released (`fence + 1`, so an
        /// attempt in flight writes nothing). False when there is no such row.
        async fn resend_webhook_delivery(&self, project_id: &str, idempotency_key: &str)
            -> StoreResult<bool> {
            let now = self.now().await?;
            sql!(one_changed &mut self.conn().await?,
                "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $1, \
                 lease_owner = NULL, lease_until = NULL, fence = fence + 1, updated_at = $1 \
                 WHERE project_id = $2 AND idempotency_key = $3",
                ts(now), project_id, idempotency_key)
        }

        /// For `/metrics`, read at scrape time: pending deliveries due now (database
        /// clock; leased ones included) and outbox events not yet dispatched, across all
        /// projects — two indexed counts.
        async fn webhook_queue_depths(&self) -> StoreResult<WebhookQueueDepths> {
            let now = self.now().await?;
            let (due, undispatched): (i64, i64) = sql!(one &mut self.conn().await?,
                |r| pair(r, "deliveries_due", "outbox_undispatched"),
                "SELECT (SELECT COUNT(*) FROM webhook_deliveries \
                         WHERE status = 'pending' AND next_attempt_at <= $1) AS deliveries_due, \
                        (SELECT COUNT(*) FROM outbox_events WHERE dispatched_at IS NULL) \
                         AS outbox_undispatched",
                ts(now))?;
            Ok(WebhookQueueDepths {
                deliveries_due: due.max(0) as u64,
                outbox_undispatched: undispatched.max(0) as u64,
            })
        }
    }
}

const SUBSCRIPTION_COLUMNS: &str =
    "id, project_id, url, triggers, is_active, created_at, updated_at";
/// `attempt_count` is an `integer` on PostgreSQL; read as 64 bits on both.
const DELIVERY_COLUMNS: &str = "idempotency_key, project_id, subscription_id, \"trigger\", \
     payload, status, CAST(attempt_count AS BIGINT) AS attempt_count, next_attempt_at, \
     last_attempt_at, succeeded_at, responses, lease_owner, lease_until, fence, created_at, \
     updated_at";

fn subscription_from_row(row: &impl Row) -> StoreResult<WebhookSubscriptionRow> {
    from_row!(row => WebhookSubscriptionRow {
        id, project_id, url, is_active, created_at, updated_at;
        triggers: serde_json::from_value(row.get("triggers")?)
            .map_err(|e| super::sql::decode_error(format!("webhook triggers: {e}")))?,
    })
}

fn delivery_from_row(row: &impl Row) -> StoreResult<WebhookDeliveryRow> {
    from_row!(row => WebhookDeliveryRow {
        idempotency_key, project_id, subscription_id, trigger, payload, status, attempt_count,
        next_attempt_at, last_attempt_at, succeeded_at, responses, lease_owner, lease_until,
        fence, created_at, updated_at,
    })
}

fn previous_secret_from_row(row: &impl Row) -> StoreResult<PreviousWebhookSecret> {
    from_row!(row => PreviousWebhookSecret { secret, until })
}

fn triggers_json(triggers: &[String]) -> serde_json::Value {
    serde_json::Value::from(triggers.to_vec())
}
