//! `/api/v1/webhooks`, `/api/v1/webhook_deliveries`, `/api/v1/webhook_secret`:
//! thin handlers over [`crate::domain::webhooks`].

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::apps::{timestamp, DeletedResponse};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::pagination::{List, ListPage, ListParams};
use super::AppState;
use crate::domain::api_keys::Caller;
use crate::domain::webhooks::{self, SubscriptionChange, SubscriptionError, MAX_SUBSCRIPTIONS};
use crate::storage::{DeliveryStatus, WebhookDeliveryRow, WebhookSubscriptionRow};
use crate::Keeper;

pub const PATH: &str = "/api/v1/webhooks";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(PATH, get(list_webhooks).post(create_webhook))
        .route(
            "/api/v1/webhooks/{id}",
            get(get_webhook)
                .patch(update_webhook)
                .delete(delete_webhook),
        )
        .route("/api/v1/webhooks/{id}/deliveries", get(list_deliveries))
        .route(
            "/api/v1/webhook_deliveries/{idempotency_key}/resend",
            post(resend_delivery),
        )
        .route("/api/v1/webhook_secret", get(get_secret))
        .route("/api/v1/webhook_secret/rotate", post(rotate_secret))
}

/// What saving a subscription needs, from the keeper.
pub(crate) fn subscriptions(keeper: &Keeper) -> webhooks::Subscriptions<'_> {
    webhooks::Subscriptions {
        store: &*keeper.store,
        clock: &keeper.clock,
        allow_private_callback_urls: keeper.config.allow_private_callback_urls,
    }
}

impl From<SubscriptionError> for ApiError {
    fn from(e: SubscriptionError) -> ApiError {
        match e {
            SubscriptionError::Invalid(fields) => ApiError::invalid_fields(fields),
            SubscriptionError::NotFound => ApiError::NotFound {
                what: "webhook subscription",
            },
            SubscriptionError::DeliveryNotFound => ApiError::NotFound {
                what: "webhook delivery",
            },
            SubscriptionError::TooMany => ApiError::Conflict {
                code: "too_many_webhooks",
                message: format!(
                    "This project already has {MAX_SUBSCRIPTIONS} webhook subscriptions, the most allowed. Delete one, or change one's url or triggers, instead."
                ),
            },
            SubscriptionError::Secret => {
                ApiError::Internal(anyhow::anyhow!("the project's webhook secret did not open"))
            }
            SubscriptionError::Store(e) => e.into(),
        }
    }
}

/// Body of `POST /api/v1/webhooks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://example.com/zoomkeeper/webhooks", "triggers": ["zoom_oauth_connection.state_change"]}))]
pub struct CreateWebhookRequest {
    /// Where deliveries are POSTed: an absolute https:// URL on a public address.
    #[schema(example = "https://example.com/zoomkeeper/webhooks")]
    #[schema(format = "uri", min_length = 1)]
    pub url: String,
    #[schema(value_type = Vec<super::schema_enums::TriggerDoc>, min_items = 1)]
    pub triggers: Vec<String>,
}

/// Body of `PATCH /api/v1/webhooks/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"is_active": false}))]
pub struct UpdateWebhookRequest {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<super::schema_enums::TriggerDoc>>)]
    pub triggers: Option<Vec<String>>,
    /// Inactive subscriptions get no new deliveries.
    #[serde(default)]
    pub is_active: Option<bool>,
}

/// A webhook subscription.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "webhook_K2j3H4g5F6d7S8a9", "url": "https://example.com/zoomkeeper/webhooks", "triggers": ["zoom_oauth_connection.state_change"], "is_active": true, "created_at": "2026-12-01T09:30:00Z", "updated_at": "2026-12-01T09:30:00Z"}))]
pub struct WebhookResponse {
    #[schema(example = "webhook_a1b2c3d4e5f6g7h8")]
    #[schema(pattern = "^webhook_[A-Za-z0-9]{16}$")]
    pub id: String,
    #[schema(format = "uri")]
    pub url: String,
    #[schema(value_type = Vec<super::schema_enums::TriggerDoc>)]
    pub triggers: Vec<String>,
    pub is_active: bool,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<&WebhookSubscriptionRow> for WebhookResponse {
    fn from(row: &WebhookSubscriptionRow) -> WebhookResponse {
        WebhookResponse {
            id: row.id.clone(),
            url: row.url.clone(),
            triggers: row.triggers.clone(),
            is_active: row.is_active,
            created_at: timestamp(row.created_at),
            updated_at: timestamp(row.updated_at),
        }
    }
}

/// One delivery of an event to a subscription.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"idempotency_key": "7f9c2ba4-e88f-4d27-8c1b-3f6a2c8d9e01", "trigger": "zoom_oauth_connection.state_change", "status": "success", "attempt_count": 1, "payload": {"idempotency_key": "7f9c2ba4-e88f-4d27-8c1b-3f6a2c8d9e01", "trigger": "zoom_oauth_connection.state_change", "data": {"id": "zoc_q7w8e9r0t1y2u3i4", "state": "disconnected"}}, "responses": [{"attempt": 1, "attempted_at": "2026-12-01T09:30:00Z", "status_code": 200, "latency_ms": 84, "body": "ok"}], "last_attempt_at": "2026-12-01T09:30:00Z", "next_attempt_at": null, "succeeded_at": "2026-12-01T09:30:00Z"}))]
pub struct DeliveryResponse {
    /// Also `payload.idempotency_key` and the `webhook-id` header.
    pub idempotency_key: String,
    #[schema(value_type = super::schema_enums::TriggerDoc)]
    pub trigger: String,
    #[schema(value_type = super::schema_enums::DeliveryStatusDoc)]
    pub status: String,
    pub attempt_count: i64,
    #[schema(format = DateTime)]
    pub next_attempt_at: Option<String>,
    #[schema(format = DateTime)]
    pub last_attempt_at: Option<String>,
    #[schema(format = DateTime)]
    pub succeeded_at: Option<String>,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// The last attempts, oldest first: `{attempt, attempted_at, status_code,
    /// latency_ms, body (first 1 KiB), error, error_message}`.
    #[schema(value_type = Vec<Object>)]
    pub responses: serde_json::Value,
}

impl From<&WebhookDeliveryRow> for DeliveryResponse {
    fn from(row: &WebhookDeliveryRow) -> DeliveryResponse {
        DeliveryResponse {
            idempotency_key: row.idempotency_key.clone(),
            trigger: row.trigger.clone(),
            status: row.status.as_str().to_owned(),
            attempt_count: row.attempt_count,
            next_attempt_at: row
                .next_attempt_at
                .filter(|_| row.status == DeliveryStatus::Pending)
                .map(timestamp),
            last_attempt_at: row.last_attempt_at.map(timestamp),
            succeeded_at: row.succeeded_at.map(timestamp),
            payload: row.payload.clone(),
            responses: row.responses.clone(),
        }
    }
}

/// Query of `GET /api/v1/webhooks/{id}/deliveries`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryListParams {
    /// Opaque cursor from a previous page's `next` or `previous` link.
    pub cursor: Option<String>,
    /// Items per page, 1 to 100 (default 25).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub page_size: Option<String>,
    /// Only deliveries with this status.
    #[param(value_type = Option<super::schema_enums::DeliveryStatusDoc>)]
    pub status: Option<String>,
}

/// The project's webhook signing secret.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"secret": "<32 bytes, base64>"}))]
pub struct SecretResponse {
    /// 32 bytes, base64. HMAC-SHA256 key for `X-Webhook-Signature` and
    /// `webhook-signature` (Standard Webhooks: use it as `whsec_<secret>`).
    pub secret: String,
}

/// Answer of a resend.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"idempotency_key": "7f9c2ba4-e88f-4d27-8c1b-3f6a2c8d9e01", "status": "pending"}))]
pub struct ResendResponse {
    pub idempotency_key: String,
    #[schema(value_type = super::schema_enums::DeliveryStatusDoc)]
    pub status: String,
}

/// Subscribe a URL to triggers.
#[utoipa::path(
    post, path = "/api/v1/webhooks", tag = "Webhooks",
    request_body = CreateWebhookRequest,
    responses(
        (status = 201, description = "Created", body = WebhookResponse),
        (status = 400, description = "Invalid url or triggers", body = ErrorBody),
        (status = 409, description = "The project has 10 subscriptions already (`too_many_webhooks`)", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn create_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateWebhookRequest>,
) -> Result<(StatusCode, Json<WebhookResponse>), ApiError> {
    let row = webhooks::create(
        subscriptions(&state.keeper),
        &caller.project_id,
        &body.url,
        &body.triggers,
    )
    .await?;
    Ok((StatusCode::CREATED, Json((&row).into())))
}

/// List the project's webhook subscriptions, newest first.
#[utoipa::path(
    get, path = "/api/v1/webhooks", tag = "Webhooks",
    params(ListParams),
    responses(
        (status = 200, description = "A page of subscriptions", body = ListPage<WebhookResponse>),
        (status = 400, description = "Bad page_size or cursor", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list_webhooks(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<ListPage<WebhookResponse>>, ApiError> {
    let request = params.page_request(List::Webhooks)?;
    let page = webhooks::list(&*state.keeper.store, &caller.project_id, &request).await?;
    let list_url = format!("{}{PATH}", state.public_url);
    Ok(Json(ListPage::of(
        List::Webhooks,
        &list_url,
        &request,
        &page,
        |w| (w.created_at, w.id.clone()),
        |row| row.into(),
    )))
}

/// Get one webhook subscription.
#[utoipa::path(
    get, path = "/api/v1/webhooks/{id}", tag = "Webhooks",
    params(("id" = String, Path, description = "Subscription id (`webhook_…`)")),
    responses(
        (status = 200, description = "The subscription", body = WebhookResponse),
        (status = 404, description = "No such subscription in this project", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
) -> Result<Json<WebhookResponse>, ApiError> {
    let row = webhooks::get(&*state.keeper.store, &caller.project_id, &id).await?;
    Ok(Json((&row).into()))
}

/// Change a subscription's url, triggers or is_active.
#[utoipa::path(
    patch, path = "/api/v1/webhooks/{id}", tag = "Webhooks",
    params(("id" = String, Path, description = "Subscription id (`webhook_…`)")),
    request_body = UpdateWebhookRequest,
    responses(
        (status = 200, description = "The updated subscription", body = WebhookResponse),
        (status = 400, description = "Invalid url or triggers", body = ErrorBody),
        (status = 404, description = "No such subscription in this project", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn update_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
    ApiJson(body): ApiJson<UpdateWebhookRequest>,
) -> Result<Json<WebhookResponse>, ApiError> {
    let change = SubscriptionChange {
        url: body.url,
        triggers: body.triggers,
        is_active: body.is_active,
    };
    let row = webhooks::update(
        subscriptions(&state.keeper),
        &caller.project_id,
        &id,
        change,
    )
    .await?;
    Ok(Json((&row).into()))
}

/// Delete a subscription and its deliveries.
#[utoipa::path(
    delete, path = "/api/v1/webhooks/{id}", tag = "Webhooks",
    params(("id" = String, Path, description = "Subscription id (`webhook_…`)")),
    responses(
        (status = 200, description = "Deleted", body = DeletedResponse),
        (status = 404, description = "No such subscription in this project", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn delete_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
) -> Result<Json<DeletedResponse>, ApiError> {
    webhooks::delete(&*state.keeper.store, &caller.project_id, &id).await?;
    Ok(Json(DeletedResponse { id, deleted: true }))
}

/// A subscription's deliveries, newest first.
#[utoipa::path(
    get, path = "/api/v1/webhooks/{id}/deliveries", tag = "Webhooks",
    params(("id" = String, Path, description = "Subscription id (`webhook_…`)"), DeliveryListParams),
    responses(
        (status = 200, description = "A page of deliveries", body = ListPage<DeliveryResponse>),
        (status = 400, description = "Bad status, page_size or cursor", body = ErrorBody),
        (status = 404, description = "No such subscription in this project", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
    ApiQuery(params): ApiQuery<DeliveryListParams>,
) -> Result<Json<ListPage<DeliveryResponse>>, ApiError> {
    let status = webhooks::delivery_status(params.status.as_deref())?;
    let request = ListParams {
        cursor: params.cursor,
        page_size: params.page_size,
    }
    .page_request(List::WebhookDeliveries)?;
    let page = webhooks::deliveries(
        &*state.keeper.store,
        &caller.project_id,
        &id,
        status,
        &request,
    )
    .await?;
    let mut list_url = format!("{}{PATH}/{id}/deliveries", state.public_url);
    if let Some(status) = status {
        list_url.push_str("?status=");
        list_url.push_str(status.as_str());
    }
    Ok(Json(ListPage::of(
        List::WebhookDeliveries,
        &list_url,
        &request,
        &page,
        |d| (d.created_at, d.idempotency_key.clone()),
        |row| row.into(),
    )))
}

/// Send a delivery again: back to pending, due now, same idempotency key.
#[utoipa::path(
    post, path = "/api/v1/webhook_deliveries/{idempotency_key}/resend", tag = "Webhooks",
    params(("idempotency_key" = String, Path, description = "The delivery's idempotency key")),
    responses(
        (status = 202, description = "Queued", body = ResendResponse),
        (status = 404, description = "No such delivery in this project", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn resend_delivery(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(key): ApiPath,
) -> Result<(StatusCode, Json<ResendResponse>), ApiError> {
    let key = webhooks::resend(&*state.keeper.store, &caller.project_id, &key).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ResendResponse {
            idempotency_key: key,
            status: DeliveryStatus::Pending.as_str().to_owned(),
        }),
    ))
}

/// The project's webhook signing secret (base64 of 32 bytes).
#[utoipa::path(
    get, path = "/api/v1/webhook_secret", tag = "Webhooks",
    responses(
        (status = 200, description = "The secret", body = SecretResponse),
    ),
    security(("api_key" = []))
)]
pub async fn get_secret(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<SecretResponse>, ApiError> {
    let secret = webhooks::secret_base64(
        &*state.keeper.store,
        &state.keeper.vault,
        &caller.project_id,
    )
    .await?;
    Ok(Json(SecretResponse { secret }))
}

/// Replace the signing secret. For 24 hours the old one keeps signing too: the
/// `webhook-signature` header carries `v1,<new> v1,<old>`; `X-Webhook-Signature`
/// uses the new one.
#[utoipa::path(
    post, path = "/api/v1/webhook_secret/rotate", tag = "Webhooks",
    responses(
        (status = 200, description = "The new secret", body = SecretResponse),
    ),
    security(("api_key" = []))
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<SecretResponse>, ApiError> {
    let secret = webhooks::rotate_secret(
        &*state.keeper.store,
        &state.keeper.vault,
        &state.keeper.clock,
        &caller.project_id,
    )
    .await?;
    Ok(Json(SecretResponse { secret }))
}
