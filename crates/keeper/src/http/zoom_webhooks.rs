//! Zoom webhook ingress: `POST /external_webhooks/zoom/oauth_apps/{app_id}` and its
//! alias `POST /api/v2/zoom-oauth-apps/{app_id}/webhook`. No API key: Zoom's
//! signature is the authentication. A thin handler over [`crate::domain::zoom_webhooks`].

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;
use zoom::webhook::{SignatureError, SIGNATURE_HEADER, TIMESTAMP_HEADER};

use super::error::{ApiError, ErrorBody};
use super::extract::ApiPath;
use super::AppState;
use crate::core::ids::IdKind;
use crate::domain::zoom_webhooks::{self, Delivery, IngressError, Outcome};

pub const PATH: &str = "/external_webhooks/zoom/oauth_apps/{app_id}";
/// Attendee's path for the same endpoint.
pub const ALIAS: &str = "/api/v2/zoom-oauth-apps/{app_id}/webhook";

/// One URL for every app (Attendee's older guide): the app is found by its secret.
pub const SHARED_PATH: &str = "/api/v1/zoom_oauth/webhooks";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(PATH, post(receive_webhook))
        .route(ALIAS, post(receive_webhook))
        .route(SHARED_PATH, post(receive_shared_webhook))
}

/// The answer to every verified event but `endpoint.url_validation`.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAnswer {
    /// `applied`, `duplicate` (received before; nothing changed) or `ignored`.
    #[schema(value_type = super::schema_enums::WebhookOutcomeDoc)]
    pub outcome: &'static str,
    /// Why nothing changed, for `ignored`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

/// The answer to `endpoint.url_validation`, as Zoom expects it.
#[derive(Debug, Serialize, ToSchema)]
pub struct UrlValidationAnswer {
    #[serde(rename = "plainToken")]
    pub plain_token: String,
    /// Hex HMAC-SHA256 of plainToken under the app's webhook secret.
    #[serde(rename = "encryptedToken")]
    pub encrypted_token: String,
}

/// What Zoom answers with: a verified event's outcome, or the URL-validation answer.
#[derive(ToSchema)]
#[serde(untagged)]
#[schema(example = json!({"outcome": "applied"}))]
#[allow(dead_code)]
pub enum ZoomWebhookReply {
    Handled(WebhookAnswer),
    UrlValidation(UrlValidationAnswer),
}

/// The headers Zoom signs each event with.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct ZoomSignature {
    /// `v0=` and the hex HMAC-SHA256, under the app's webhook secret, of
    /// `v0:{x-zm-request-timestamp}:{body}`.
    #[param(
        rename = "x-zm-signature",
        example = "v0=5d41402abc4b2a76b9719d911017c592"
    )]
    signature: String,
    /// When Zoom signed the event, in seconds since the epoch; older than 5 minutes
    /// is refused.
    #[param(rename = "x-zm-request-timestamp", example = "1764000000")]
    timestamp: String,
}

/// A Zoom event as Zoom posts it (documentation only: the handler reads the bytes,
/// since the signature covers them exactly).
#[derive(ToSchema)]
#[schema(example = json!({
    "event": "meeting.created",
    "event_ts": 1_764_000_000_000_i64,
    "payload": {
        "account_id": "AAAAAAAAAAAAAAAAAAAAAA",
        "operator_id": "z8yCxjabcdEFGHfp8uQ",
        "object": {"id": 85746065432_i64, "host_id": "z8yCxjabcdEFGHfp8uQ", "topic": "Weekly sync", "type": 2}
    }
}))]
#[allow(dead_code)]
pub struct ZoomEvent {
    /// The event's name: `meeting.created`, `meeting.started`, `endpoint.url_validation`, …
    event: String,
    /// When Zoom sent it, in milliseconds since the epoch (an integer).
    #[schema(value_type = Value)]
    event_ts: Option<serde_json::Value>,
    /// The event's object, as Zoom documents it for that event. Events zoomkeeper
    /// does not act on are answered `ignored` whatever their payload holds.
    #[schema(value_type = Value)]
    payload: Option<serde_json::Value>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A 401 in the one error shape.
fn unauthorized(code: &str, error: String) -> Response {
    let body = ErrorBody {
        error,
        code: code.to_owned(),
        fields: None,
        detail: None,
    };
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

fn signature_code(e: &SignatureError) -> &'static str {
    match e {
        SignatureError::MissingTimestamp | SignatureError::MissingSignature => {
            "missing_zoom_signature"
        }
        SignatureError::MalformedTimestamp | SignatureError::MalformedSignature => {
            "malformed_zoom_signature"
        }
        SignatureError::StaleTimestamp { .. } => "stale_zoom_timestamp",
        SignatureError::Mismatch => "invalid_zoom_signature",
    }
}

fn error_response(e: IngressError) -> Response {
    match e {
        IngressError::AppNotFound => ApiError::NotFound {
            what: "Zoom OAuth app",
        }
        .into_response(),
        IngressError::NoWebhookSecret => unauthorized(
            "webhook_secret_missing",
            "This app has no webhook secret, so Zoom's signature cannot be checked. Set the app's webhook_secret (PATCH /api/v1/zoom_oauth_apps/{id}) to the Secret Token of the Zoom app's Event Subscription.".to_owned(),
        ),
        IngressError::Signature(e) => unauthorized(
            signature_code(&e),
            format!("Zoom webhook refused: {e}."),
        ),
        IngressError::InvalidEvent(message) => ApiError::BadRequest {
            code: "invalid_zoom_event",
            message,
        }
        .into_response(),
        IngressError::Internal(cause) => ApiError::Internal(cause).into_response(),
    }
}

/// Receive a Zoom webhook.
#[utoipa::path(
    post, path = "/external_webhooks/zoom/oauth_apps/{app_id}", tag = "Zoom webhooks",
    params(
        ("app_id" = String, Path, description = "App id (`zoa_…`); the app's `webhook_url` ends with it"),
        ZoomSignature,
    ),
    request_body(content = ZoomEvent, content_type = "application/json",
        description = "A Zoom event, signed with `x-zm-signature` and `x-zm-request-timestamp`. Also answered at `/api/v2/zoom-oauth-apps/{app_id}/webhook`, where the app is named by its `zoa_` id or its `/api/v2` UUID."),
    responses(
        (status = 200, description = "Verified: applied, a duplicate, or ignored; `endpoint.url_validation` gets `{plainToken, encryptedToken}`", body = ZoomWebhookReply),
        (status = 400, description = "Verified, but the event cannot be read (`invalid_zoom_event`)", body = ErrorBody),
        (status = 401, description = "Signature missing, malformed, stale or wrong, or the app has no webhook secret", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
    )
)]
pub async fn receive_webhook(
    State(state): State<AppState>,
    ApiPath(app_id): ApiPath,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Ok(_slot) = state.keeper.ingress_slots.try_acquire() else {
        return shed(&state);
    };
    let body = match read_body(body) {
        Ok(body) => body,
        Err(refused) => return refused.into_response(),
    };
    // `/api/v2` names apps by UUID: the app's `webhook_url` there carries it.
    let app_id = uuid::Uuid::try_parse(&app_id)
        .ok()
        .and_then(|uuid| IdKind::App.from_uuid(uuid))
        .unwrap_or(app_id);
    let delivery = Delivery {
        app_id: &app_id,
        timestamp: header(&headers, TIMESTAMP_HEADER),
        signature: header(&headers, SIGNATURE_HEADER),
        body: &body,
    };
    answer(zoom_webhooks::receive(&state.keeper, delivery).await)
}

/// Receive a Zoom webhook for whichever app's webhook secret verifies it.
#[utoipa::path(
    post, path = "/api/v1/zoom_oauth/webhooks", tag = "Zoom webhooks",
    params(ZoomSignature),
    request_body(content = ZoomEvent, content_type = "application/json",
        description = "A Zoom event, signed with `x-zm-signature` and `x-zm-request-timestamp`. One URL for every app: the event is handled for the app (or apps) whose webhook secret verifies its signature, as at that app's own `webhook_url`. Apps with a connection in the event's Zoom account are tried first (at most 16), then apps with a webhook secret (at most 64, oldest first); an installation with more apps should give Zoom each app's own URL."),
    responses(
        (status = 200, description = "Verified: applied, a duplicate, or ignored; `endpoint.url_validation` gets `{plainToken, encryptedToken}`", body = ZoomWebhookReply),
        (status = 400, description = "Verified, but the event cannot be read (`invalid_zoom_event`)", body = ErrorBody),
        (status = 401, description = "Signature missing, malformed or stale, or no app's webhook secret verifies it", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
    )
)]
pub async fn receive_shared_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Ok(_slot) = state.keeper.ingress_slots.try_acquire() else {
        return shed(&state);
    };
    let body = match read_body(body) {
        Ok(body) => body,
        Err(refused) => return refused.into_response(),
    };
    answer(
        zoom_webhooks::receive_shared(
            &state.keeper,
            header(&headers, TIMESTAMP_HEADER),
            header(&headers, SIGNATURE_HEADER),
            &body,
        )
        .await,
    )
}

/// The answer to an event that arrives while this process handles as many as it may
/// (`zoom_webhooks_in_flight`): a 503 at once, nothing recorded, so Zoom sends it again
/// later, rather than an answer that comes after Zoom's 3 s.
fn shed(state: &AppState) -> Response {
    state.keeper.metrics.record_zoom_webhook_shed();
    ApiError::Busy {
        message: "zoomkeeper is handling as many Zoom events as it may at once; this one was not recorded. Zoom sends it again later.".to_owned(),
    }
    .into_response()
}

fn read_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    match body {
        Ok(body) => Ok(body),
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Err(ApiError::PayloadTooLarge)
        }
        Err(_) => Err(ApiError::BadRequest {
            code: "unreadable_body",
            message: "The request body could not be read.".to_owned(),
        }),
    }
}

/// The answer to a received webhook.
fn answer(received: Result<Outcome, IngressError>) -> Response {
    match received {
        Ok(Outcome::UrlValidation(answer)) => Json(UrlValidationAnswer {
            plain_token: answer.plain_token,
            encrypted_token: answer.encrypted_token,
        })
        .into_response(),
        Ok(Outcome::Applied) => Json(WebhookAnswer {
            outcome: "applied",
            reason: None,
        })
        .into_response(),
        Ok(Outcome::Duplicate) => Json(WebhookAnswer {
            outcome: "duplicate",
            reason: None,
        })
        .into_response(),
        Ok(Outcome::Ignored(reason)) => Json(WebhookAnswer {
            outcome: "ignored",
            reason: Some(reason),
        })
        .into_response(),
        Err(e) => error_response(e),
    }
}
