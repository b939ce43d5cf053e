//! Row and write types for outgoing webhooks: subscriptions, deliveries and the
//! project's previous signing secret (DESIGN.md §3, §4 "Outgoing webhooks", §6).
//! The methods are on [`super::Store`]; the rules are in `crate::domain::webhooks` and
//! `crate::workers::webhook_delivery`.

use chrono::{DateTime, Utc};

use super::Sealed;

/// The rule [`super::StoreError::Conflict`] names when a project already has the
/// most subscriptions [`super::Store::insert_webhook_subscription`] allows.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Success,
    Failure,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Success => "success",
            DeliveryStatus::Failure => "failure",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "success" => Some(DeliveryStatus::Success),
            "failure" => Some(DeliveryStatus::Failure),
            _ => None,
        }
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
/// [`super::Store::record_webhook_attempt`]: `attempt_count + 1`, `last_attempt_at
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

/// What one [`super::Store::dispatch_outbox_events`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dispatched {
    /// Outbox events marked dispatched.
    pub events: u64,
    /// Delivery rows written.
    pub deliveries: u64,
}

/// What [`super::Store::webhook_queue_depths`] counts.
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

/// Decodes a subscription's `triggers` (stored as a JSON array).
pub(super) fn triggers_from_json(value: serde_json::Value) -> super::StoreResult<Vec<String>> {
    serde_json::from_value(value)
        .map_err(|e| super::connections::decode_error(format!("webhook triggers: {e}")))
}

pub(super) fn parse_delivery_status(s: &str) -> super::StoreResult<DeliveryStatus> {
    DeliveryStatus::parse(s).ok_or_else(|| {
        super::connections::decode_error(format!("unknown webhook delivery status {s:?}"))
    })
}

/// The payload a delivery sends: the outbox event's payload with its own key.
pub(super) fn delivery_payload(event_payload: &serde_json::Value, key: &str) -> serde_json::Value {
    let mut payload = event_payload.clone();
    if let Some(object) = payload.as_object_mut() {
        object.insert(
            "idempotency_key".to_owned(),
            serde_json::Value::String(key.to_owned()),
        );
    }
    payload
}
