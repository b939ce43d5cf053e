//! `/api/v1/zoom_oauth_apps`: thin handlers over [`crate::domain::apps`].

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody, FieldErrors};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::pagination::{List, ListPage, ListParams};
use super::AppState;
use crate::domain::api_keys::Caller;
use crate::domain::apps::{self, AppChange, AppError, NewApp};
use crate::storage::{AppKind, AppRow};

pub const PATH: &str = "/api/v1/zoom_oauth_apps";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(PATH, get(list_apps).post(create_app))
        .route(
            "/api/v1/zoom_oauth_apps/{id}",
            get(get_app).patch(update_app).delete(delete_app),
        )
}

/// RFC 3339 with microseconds and `Z` (DESIGN.md §3).
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Each user authorises the app for themselves.
    UserLevel,
    /// An admin authorises the app for the whole Zoom account.
    AccountLevel,
}

impl From<Kind> for AppKind {
    fn from(k: Kind) -> AppKind {
        match k {
            Kind::UserLevel => AppKind::UserLevel,
            Kind::AccountLevel => AppKind::AccountLevel,
        }
    }
}

impl From<AppKind> for Kind {
    fn from(k: AppKind) -> Kind {
        match k {
            AppKind::UserLevel => Kind::UserLevel,
            AppKind::AccountLevel => Kind::AccountLevel,
        }
    }
}

/// Body of `POST /api/v1/zoom_oauth_apps`. (No `Debug`: it holds secrets.)
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"client_id": "AbCdEfGhIjKlMnOpQrSt", "client_secret": "<the app's client secret>", "webhook_secret": "<the Event Subscription's Secret Token>", "kind": "user_level"}))]
pub struct CreateAppRequest {
    /// The app's Client ID from the Zoom App Marketplace.
    #[schema(min_length = 1)]
    pub client_id: String,
    /// The app's Client Secret; checked against Zoom before it is stored.
    #[schema(min_length = 1)]
    pub client_secret: String,
    /// The app's Secret Token for Event Subscriptions; needed for local recording tokens.
    #[serde(default)]
    pub webhook_secret: Option<String>,
    /// Defaults to `user_level`.
    #[serde(default)]
    pub kind: Option<Kind>,
}

/// Body of `PATCH /api/v1/zoom_oauth_apps/{id}`. (No `Debug`: it holds secrets.)
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"webhook_secret": "<the new Secret Token>"}))]
pub struct UpdateAppRequest {
    /// Cannot change; accepted only when equal to the current value.
    #[serde(default)]
    pub client_id: Option<String>,
    /// A new client secret, checked against Zoom like on create.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// A new webhook secret, or `null` to remove it.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable)]
    pub webhook_secret: Option<Option<String>>,
}

/// Tells "field absent" (outer `None`) from "field is null" (`Some(None)`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// A Zoom OAuth app. Secrets are never returned.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "zoa_a1b2c3d4e5f6g7h8", "client_id": "AbCdEfGhIjKlMnOpQrSt", "kind": "user_level", "has_webhook_secret": true, "webhook_url": "https://zoomkeeper.example.com/external_webhooks/zoom/oauth_apps/zoa_a1b2c3d4e5f6g7h8", "connect_redirect_url": "https://zoomkeeper.example.com/connect/zoom/callback", "connection_count": 12, "last_verified_webhook_received_at": "2026-12-01T09:30:00Z", "last_unverified_webhook_received_at": null, "webhook_events_stale_since": null, "webhook_events_problem": null, "created_at": "2026-12-01T09:30:00Z", "updated_at": "2026-12-01T09:30:00Z"}))]
pub struct AppResponse {
    #[schema(example = "zoa_a1b2c3d4e5f6g7h8")]
    #[schema(pattern = "^zoa_[A-Za-z0-9]{16}$")]
    pub id: String,
    pub client_id: String,
    pub kind: Kind,
    pub has_webhook_secret: bool,
    /// Paste this into the Zoom app's Event Subscription.
    #[schema(format = "uri")]
    pub webhook_url: String,
    /// Add this to the Zoom app's OAuth redirect URLs (and allow list) to use
    /// hosted connect (`POST /api/v1/zoom_oauth_connect_sessions`).
    #[schema(format = "uri")]
    pub connect_redirect_url: String,
    pub connection_count: i64,
    #[schema(format = DateTime)]
    pub last_verified_webhook_received_at: Option<String>,
    #[schema(format = DateTime)]
    pub last_unverified_webhook_received_at: Option<String>,
    /// Set when the app's verified Zoom webhooks stopped while its connections kept
    /// scheduling meetings (the meeting sync found meetings no webhook announced).
    /// Zoom stops sending an app's events after its last failed retry until someone
    /// intervenes; cleared by the next verified webhook.
    #[schema(format = DateTime)]
    pub webhook_events_stale_since: Option<String>,
    /// What to do while `webhook_events_stale_since` is set; `null` otherwise.
    pub webhook_events_problem: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl AppResponse {
    pub(crate) fn new(row: &AppRow, public_url: &str) -> AppResponse {
        AppResponse {
            id: row.id.clone(),
            client_id: row.client_id.clone(),
            kind: row.kind.into(),
            has_webhook_secret: row.webhook_secret.is_some(),
            webhook_url: format!("{public_url}/external_webhooks/zoom/oauth_apps/{}", row.id),
            connect_redirect_url: crate::domain::connect_sessions::callback_url(public_url),
            connection_count: row.connection_count,
            last_verified_webhook_received_at: row.last_verified_webhook_received_at.map(timestamp),
            last_unverified_webhook_received_at: row
                .last_unverified_webhook_received_at
                .map(timestamp),
            webhook_events_stale_since: row.webhook_events_stale_since.map(timestamp),
            webhook_events_problem: row.webhook_events_stale_since.map(|since| {
                format!(
                    "Zoom has sent no verified webhook since {} while this app's connections kept scheduling meetings that no webhook announced; Zoom stops an app's events after its last failed retry. Check the Event Subscription's endpoint URL and secret token in the Zoom app, revalidate it, and ask Zoom support to resume the events. Until then meetings are found by the daily meeting sync only.",
                    timestamp(since)
                )
            }),
            created_at: timestamp(row.created_at),
            updated_at: timestamp(row.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "zoa_a1b2c3d4e5f6g7h8", "deleted": true}))]
pub struct DeletedResponse {
    pub id: String,
    pub deleted: bool,
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> ApiError {
        match e {
            AppError::Invalid(fields) => ApiError::invalid_fields(fields),
            AppError::NotFound => ApiError::NotFound {
                what: "Zoom OAuth app",
            },
            AppError::InvalidClientCredentials => ApiError::BadRequest {
                code: "invalid_client_credentials",
                message: "Zoom rejected this client_id and client_secret. Copy both again from the app's page in the Zoom App Marketplace.".to_owned(),
            },
            AppError::ZoomUnavailable => ApiError::ZoomUnavailable,
            AppError::DuplicateClientId => ApiError::Conflict {
                code: "duplicate_client_id",
                message: "An app with this client_id already exists in this project; update it instead.".to_owned(),
            },
            AppError::ClientIdImmutable => {
                let mut fields = FieldErrors::new();
                fields.insert(
                    "client_id".to_owned(),
                    vec!["Cannot be changed. Create a new app for another client_id.".to_owned()],
                );
                ApiError::validation(
                    "client_id_immutable",
                    "client_id cannot be changed. Create a new app for another client_id.",
                    fields,
                )
            }
            AppError::HasConnections => ApiError::Conflict {
                code: "app_has_connections",
                message: "This app still has connections. Delete its connections first.".to_owned(),
            },
            AppError::Store(e) => e.into(),
        }
    }
}

fn secret(s: String) -> SecretString {
    SecretString::from(s)
}

/// Create a Zoom OAuth app.
#[utoipa::path(
    post, path = "/api/v1/zoom_oauth_apps", tag = "Zoom OAuth apps",
    request_body = CreateAppRequest,
    responses(
        (status = 201, description = "Created", body = AppResponse),
        (status = 400, description = "Invalid input or Zoom rejected the credentials (`invalid_client_credentials`)", body = ErrorBody),
        (status = 409, description = "client_id already used in this project (`duplicate_client_id`)", body = ErrorBody),
        (status = 502, description = "Zoom unreachable (`zoom_unavailable`)", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn create_app(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateAppRequest>,
) -> Result<(StatusCode, Json<AppResponse>), ApiError> {
    let new = NewApp {
        client_id: body.client_id,
        client_secret: secret(body.client_secret),
        webhook_secret: body.webhook_secret.map(secret),
        kind: body.kind.unwrap_or(Kind::UserLevel).into(),
    };
    let row = apps::create(&state.keeper, &caller.project_id, new).await?;
    Ok((
        StatusCode::CREATED,
        Json(AppResponse::new(&row, &state.public_url)),
    ))
}

/// List the project's Zoom OAuth apps, newest first.
#[utoipa::path(
    get, path = "/api/v1/zoom_oauth_apps", tag = "Zoom OAuth apps",
    params(ListParams),
    responses(
        (status = 200, description = "A page of apps", body = ListPage<AppResponse>),
        (status = 400, description = "Bad page_size or cursor (`invalid_cursor`)", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list_apps(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<ListPage<AppResponse>>, ApiError> {
    let request = params.page_request(List::Apps)?;
    let page = apps::list(&*state.keeper.store, &caller.project_id, &request).await?;
    let list_url = format!("{}{PATH}", state.public_url);
    Ok(Json(ListPage::of(
        List::Apps,
        &list_url,
        &request,
        &page,
        |a| (a.created_at, a.id.clone()),
        |a| AppResponse::new(a, &state.public_url),
    )))
}

/// Get one Zoom OAuth app.
#[utoipa::path(
    get, path = "/api/v1/zoom_oauth_apps/{id}", tag = "Zoom OAuth apps",
    params(("id" = String, Path, description = "App id (`zoa_…`)")),
    responses(
        (status = 200, description = "The app", body = AppResponse),
        (status = 404, description = "No such app in this project", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get_app(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
) -> Result<Json<AppResponse>, ApiError> {
    let row = apps::get(&*state.keeper.store, &caller.project_id, &id).await?;
    Ok(Json(AppResponse::new(&row, &state.public_url)))
}

/// Change an app's client secret or webhook secret.
///
/// A new client secret is checked against Zoom first, like on create. Once it is
/// saved, the app's connections that were disconnected because Zoom refused the old
/// secret (`connection_failure_data.code` = `invalid_client`; their authorisation is
/// kept) are re-checked in the background with the new one: this answer does not
/// wait for them. Each becomes `connected` again (with a `state_change` webhook), or
/// stays `disconnected` with the new cause if Zoom no longer accepts its grant.
#[utoipa::path(
    patch, path = "/api/v1/zoom_oauth_apps/{id}", tag = "Zoom OAuth apps",
    params(("id" = String, Path, description = "App id (`zoa_…`)")),
    request_body = UpdateAppRequest,
    responses(
        (status = 200, description = "The updated app", body = AppResponse),
        (status = 400, description = "Invalid input, client_id changed, or Zoom rejected the new secret", body = ErrorBody),
        (status = 404, description = "No such app in this project", body = ErrorBody),
        (status = 502, description = "Zoom unreachable (`zoom_unavailable`)", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn update_app(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
    ApiJson(body): ApiJson<UpdateAppRequest>,
) -> Result<Json<AppResponse>, ApiError> {
    let change = AppChange {
        client_id: body.client_id,
        client_secret: body.client_secret.map(secret),
        webhook_secret: body.webhook_secret.map(|s| s.map(secret)),
    };
    let row = apps::update(&state.keeper, &caller.project_id, &id, change).await?;
    Ok(Json(AppResponse::new(&row, &state.public_url)))
}

/// Delete an app that has no connections.
#[utoipa::path(
    delete, path = "/api/v1/zoom_oauth_apps/{id}", tag = "Zoom OAuth apps",
    params(("id" = String, Path, description = "App id (`zoa_…`)")),
    responses(
        (status = 200, description = "Deleted", body = DeletedResponse),
        (status = 404, description = "No such app in this project", body = ErrorBody),
        (status = 409, description = "The app still has connections (`app_has_connections`)", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn delete_app(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
) -> Result<Json<DeletedResponse>, ApiError> {
    apps::delete(&*state.keeper.store, &caller.project_id, &id).await?;
    Ok(Json(DeletedResponse { id, deleted: true }))
}
